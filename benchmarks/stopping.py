"""Signature optimal stopping against published values, beside plain Longstaff--Schwartz.

    python -m benchmarks.stopping            # full size (minutes)
    python -m benchmarks.stopping --quick    # small sizes (about a minute)
    python -m benchmarks.stopping --only put --no-dual   # the timing row alone
    python -m benchmarks.stopping --only fbm             # the fBm brackets alone

For each reference problem of :func:`hftsig.datasets.stopping_reference` it fits
:class:`hftsig.stopping.SignatureStopper` and the Markovian baseline
:class:`hftsig.stopping.PolynomialStopper` (polynomials of the current state
and payoff) on the *same* training paths, evaluates the lower bound on the same
fresh paths, and, where a continuation simulator exists (Black--Scholes
models), the Andersen--Broadie dual upper bound on the same outer paths
(reported as lower bound + estimated duality gap; the gap column is that gap
relative to the reference).  A second table certifies stopping fractional
Brownian motion for several Hurst parameters by its own primal--dual bracket
(exact conditional continuations, :class:`hftsig.paths.FBMContinuation`, and
its Doob martingale as control variate), beside the state-only regression.
Times are wall-clock seconds, CPU seconds of the process in brackets (the
machine may be shared): ``fit``, ``eval`` (lower bound on the fresh paths) and
``dual``.  Prints a markdown table.
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from hftsig import paths
from hftsig.datasets import stopping_reference
from hftsig.stopping import PolynomialStopper, SignatureStopper

REF = stopping_reference()


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


# Stopping fBm, sup E[W^H_tau] over 100 dates on [0, 1]: no confirmed published value
# for most H, so each row is certified by its own primal-dual bracket.  Training paths,
# outer x inner paths of the Andersen-Broadie upper bound per H (the settings of the slow
# tests): where the value is small the rule needs more training paths and the dual
# more inner paths for the same relative accuracy.
FBM_HURST = {0.01: (50_000, 40, 200), 0.05: (50_000, 40, 200), 0.1: (50_000, 40, 200),
             0.2: (50_000, 50, 300), 0.3: (50_000, 60, 400), 0.4: (150_000, 40, 500),
             0.5: (50_000, 10, 50)}
FBM_STOPPER = dict(depth=3, lags=5)


def _fbm_reference(hurst):
    for c in REF["fbm"]["cases"]:
        if c["hurst"] == hurst:
            if c["kind"] == "bracket":
                return f"bracket [{c['lower']:.4f}, {c['upper']:.4f}] (BPS 2023)"
            if c["kind"] == "exact":
                return f"{c['value']:g} (exact)"
            return f"{c['value']} (BCJ 2019, recalled, not confirmed)"
    return "none published here"


def run_fbm(quick, hursts=None):
    """Certified brackets for stopping fBm: lower bound, dual upper bound, state-only lower bound."""
    n_eval = 20_000 if quick else 100_000
    rows = []

    def payoff(w):
        return w[..., 0]

    for h, (n_train, n_outer, n_inner) in FBM_HURST.items():
        if hursts is not None and h not in hursts:
            continue
        if quick:
            n_train, n_outer, n_inner = 10_000, 10, max(50, n_inner // 4)
        sim = paths.FBMContinuation(hurst=h, n_steps=100)
        # at H = 1/2 the Doob martingale is W itself: the control would make the lower
        # bounds exactly 0 and hide what the fitted rules do, so they are plain there
        # (the dual keeps it: with it the inner estimates, and the gap, are exact)
        control = None if h == 0.5 else sim.martingale
        t0 = time.perf_counter()
        train = paths.fbm(n_train, 100, h, random_state=1)
        test = paths.fbm(n_eval, 100, h, random_state=2)
        st = SignatureStopper(**FBM_STOPPER, random_state=4).fit(train, payoff)
        low = st.value(test, payoff, control=control)
        t1 = time.perf_counter()
        up = st.dual_upper_bound(paths.fbm(n_outer, 100, h, random_state=3), payoff, sim, n_inner=n_inner,
                                 lower=low, random_state=5, control=sim.martingale)
        t2 = time.perf_counter()
        poly = PolynomialStopper(degree=3).fit(train, payoff).value(test, payoff, control=control)
        # V - low lies in [-2 se_low, gap + 2 hypot(se_low, se_gap)] (two standard errors)
        half = max(2 * low.std_error, up.gap + 2 * np.hypot(low.std_error, up.gap_std_error))
        rows.append(dict(hurst=h, low=low, up=up, half=half, poly=poly, ref=_fbm_reference(h),
                         t_low=t1 - t0, t_dual=t2 - t1, n=f"{n_train}/{n_eval}, dual {n_outer}x{n_inner}"))
        print(_format_fbm_row(rows[-1]), flush=True)
    return rows


FBM_HEADER = ("| H | lower ± SE | upper ± SE | gap | certified within | reference | state-only lower ± SE "
              "| fit+eval s | dual s | paths |\n"
              "|---|---|---|---|---|---|---|---|---|---|")


def _format_fbm_row(r):
    low, up = r["low"], r["up"]
    if abs(low.value) > 10 * low.std_error:
        gap, cert = f"{100 * up.gap / low.value:.2f}%", f"{100 * r['half'] / low.value:.2f}%"
    else:
        gap, cert = f"{up.gap:.4f} (abs)", f"±{r['half']:.4f} (abs)"
    return (f"| {r['hurst']} | {low.value:.4f} ± {low.std_error:.4f} | {up.value:.4f} ± {up.std_error:.4f} | "
            f"{gap} | {cert} | {r['ref']} | {r['poly'].value:.4f} ± {r['poly'].std_error:.4f} | "
            f"{r['t_low']:.1f} | {r['t_dual']:.1f} | {r['n']} |")


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
    parser.add_argument("--only", help="run the problems whose name contains this text (e.g. 'put'); "
                                       "'fbm': the fBm table alone")
    parser.add_argument("--no-dual", action="store_true", help="skip the nested-simulation upper bounds")
    args = parser.parse_args(argv)
    print(f"# benchmarks.stopping ({'quick' if args.quick else 'full'}) on {platform.machine()}, "
          f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"load average {os.getloadavg()[0]:.1f}")
    fbm_only = (args.only or "").lower() == "fbm"
    if not fbm_only:
        print(HEADER, flush=True)
        run(args.quick, args.only, not args.no_dual)
    if not args.only or fbm_only:
        print("\n## Stopping fBm, 100 dates: signature(depth=3, lags=5) lower bound and Andersen-Broadie upper "
              "bound, both with the Doob-martingale control variate; 'certified within' = the true value lies "
              "within this of the lower bound (two standard errors)", flush=True)
        print(FBM_HEADER, flush=True)
        run_fbm(args.quick)


if __name__ == "__main__":
    main()
