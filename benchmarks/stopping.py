"""Signature optimal stopping against published values, beside plain Longstaff--Schwartz.

    python -m benchmarks.stopping            # full size (minutes)
    python -m benchmarks.stopping --quick    # small sizes (about a minute)
    python -m benchmarks.stopping --only put --no-dual   # the timing row alone

For each reference problem of ``tests/data/stopping_reference.json`` it fits
:class:`hftsig.stopping.SignatureStopper` and the Markovian baseline
:class:`hftsig.stopping.PolynomialStopper` (polynomials of the current state
and payoff) on the *same* training paths, evaluates the lower bound on the same
fresh paths, and, where a continuation simulator exists (Black--Scholes
models), the Andersen--Broadie dual upper bound on the same outer paths
(reported as lower bound + estimated duality gap; the gap column is that gap
relative to the reference).
Times are wall-clock seconds, CPU seconds of the process in brackets (the
machine may be shared): ``fit``, ``eval`` (lower bound on the fresh paths) and
``dual``.  Prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import time

import numpy as np

from hftsig import paths
from hftsig.stopping import PolynomialStopper, SignatureStopper

REF = json.loads((pathlib.Path(__file__).resolve().parent.parent / "tests" / "data"
                  / "stopping_reference.json").read_text())


def _timed(fn, *args, **kwargs):
    """Result, wall seconds and CPU seconds of this process (the machine may be shared)."""
    t, c = time.perf_counter(), time.process_time()
    out = fn(*args, **kwargs)
    return out, (time.perf_counter() - t, time.process_time() - c)


def _problems(quick):
    n_train = 20_000 if quick else 100_000
    n_eval = 20_000 if quick else 100_000
    put = REF["american_put"]
    K, r = put["parameters"]["K"], put["parameters"]["r"]
    case = put["cases"][0]

    def put_payoff(s):
        return np.maximum(K - s[..., 0], 0.0)

    def put_paths(n, seed):
        return paths.gbm(n, 50, s0=float(case["S0"]), mu=r, sigma=case["sigma"], T=1.0, random_state=seed)

    yield dict(
        name=f"American put S0={case['S0']} sigma={case['sigma']} T={case['T']}, 50 dates",
        reference=case["fd"], ref_note="FD (LS 2001 T1)",
        make=put_paths, payoff=put_payoff, n_train=n_train, n_eval=n_eval,
        fit_kw=dict(discount=r, times=np.linspace(0.0, 1.0, 51)),
        sig=dict(depth=2), poly=dict(degree=3),
        simulator=paths.GBMContinuation(mu=r, sigma=case["sigma"], dt=1 / 50),
        dual=(100, 200) if quick else (100, 2000))

    mc = REF["max_call"]
    p = mc["parameters"]

    def call_payoff(s):
        return np.maximum(s[:, 1:].max(axis=2) - p["K"], 0.0)

    for c in mc["cases"]:
        def call_paths(n, seed, s0=c["S0"]):
            return paths.gbm(n, p["n_dates"], s0=[float(s0)] * p["n_assets"], mu=p["r"] - p["dividend"],
                             sigma=p["sigma"], T=p["T"], random_state=seed)
        yield dict(
            name=f"Max-call 2 assets S0={c['S0']}, 9 dates",
            reference=c["value"], ref_note="binomial (AB 2004 T2)",
            make=call_paths, payoff=call_payoff, n_train=n_train, n_eval=n_eval,
            fit_kw=dict(exercise_idx=np.arange(1, 10), discount=p["r"], times=np.linspace(0.0, p["T"], 10)),
            sig=dict(depth=3), poly=dict(degree=3),
            simulator=paths.GBMContinuation(mu=p["r"] - p["dividend"], sigma=p["sigma"], dt=p["T"] / 9),
            dual=(100, 200) if quick else (200, 1000))

    def fbm_payoff(w):
        return w[..., 0]

    for c in REF["fbm"]["cases"]:
        h = c["hurst"]

        def fbm_paths(n, seed, h=h):
            return paths.fbm(n, 100, h, random_state=seed)
        ref = c.get("value", None)
        note = c["kind"]
        if ref is None:
            ref = 0.5 * (c["lower"] + c["upper"])
            note = f"bracket [{c['lower']:.4f}, {c['upper']:.4f}] (BPS 2023)"
        elif c["kind"] == "estimate":
            note = "BCJ 2019 (unconfirmed)"
        yield dict(
            name=f"fBm H={h}, 100 dates", reference=ref, ref_note=note,
            make=fbm_paths, payoff=fbm_payoff,
            n_train=min(n_train, 50_000), n_eval=min(n_eval, 50_000), fit_kw={},
            sig=dict(depth=3 if quick else 4), poly=dict(degree=3),
            simulator=None, dual=None)


def run(quick, only=None, dual=True):
    rows = []
    for prob in _problems(quick):
        if only and only.lower() not in prob["name"].lower():
            continue
        if not dual:
            prob["dual"] = None
        train = prob["make"](prob["n_train"], 1)
        test = prob["make"](prob["n_eval"], 2)
        outer = prob["make"](prob["dual"][0], 3) if prob["dual"] else None
        for label, est in (("signature " + ",".join(f"{k}={v}" for k, v in prob["sig"].items()),
                            SignatureStopper(**prob["sig"], random_state=4)),
                           ("LS polynomial degree=%d" % prob["poly"]["degree"],
                            PolynomialStopper(**prob["poly"], random_state=4))):
            _, t_fit = _timed(est.fit, train, prob["payoff"], **prob["fit_kw"])
            low, t_eval = _timed(est.value, test, prob["payoff"])
            up, t_dual = (None, (float("nan"), float("nan")))
            if prob["dual"]:
                # Andersen-Broadie: upper = lower + estimated duality gap
                up, t_dual = _timed(est.dual_upper_bound, outer, prob["payoff"], prob["simulator"],
                                    n_inner=prob["dual"][1], lower=low, random_state=5)
            ref = prob["reference"]
            rows.append(dict(problem=prob["name"], method=label, lower=low.value, se=low.std_error,
                             upper=None if up is None else up.value,
                             upper_se=None if up is None else up.std_error,
                             reference=ref, ref_note=prob["ref_note"],
                             err=(low.value - ref) / ref if ref else low.value - ref,
                             gap=None if up is None else (up.value - low.value) / (ref if ref else 1.0),
                             fit=t_fit, eval=t_eval, dual=t_dual,
                             n=f"{prob['n_train']}/{prob['n_eval']}"
                               + ("" if not prob["dual"] else f", dual {prob['dual'][0]}x{prob['dual'][1]}")))
            print(_format_row(rows[-1]), flush=True)
    return rows


HEADER = ("| problem | method | lower ± SE | upper ± SE | reference | error | gap | fit s (cpu) | eval s (cpu) "
          "| dual s (cpu) | paths |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|")


def _format_row(r):
    up = "—" if r["upper"] is None else f"{r['upper']:.4f} ± {r['upper_se']:.4f}"
    gap = "—" if r["gap"] is None else f"{100 * r['gap']:.2f}%"
    err = f"{100 * r['err']:+.2f}%" if r["reference"] else f"{r['err']:+.4f} (abs)"
    dual = "—" if np.isnan(r["dual"][0]) else f"{r['dual'][0]:.1f} ({r['dual'][1]:.1f})"
    return (f"| {r['problem']} | {r['method']} | {r['lower']:.4f} ± {r['se']:.4f} | {up} | "
            f"{r['reference']:.4f} {r['ref_note']} | {err} | {gap} | {r['fit'][0]:.2f} ({r['fit'][1]:.2f}) | "
            f"{r['eval'][0]:.2f} ({r['eval'][1]:.2f}) | "
            f"{dual} | {r['n']} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    parser.add_argument("--only", help="run the problems whose name contains this text (e.g. 'put')")
    parser.add_argument("--no-dual", action="store_true", help="skip the nested-simulation upper bounds")
    args = parser.parse_args(argv)
    print(f"# benchmarks.stopping ({'quick' if args.quick else 'full'}) on {platform.machine()}, "
          f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(HEADER, flush=True)
    run(args.quick, args.only, not args.no_dual)


if __name__ == "__main__":
    main()
