"""Signature optimal stopping against published values, beside plain Longstaff--Schwartz.

    python -m benchmarks.stopping            # full size (minutes)
    python -m benchmarks.stopping --quick    # small sizes (about a minute)
    python -m benchmarks.stopping --only put --no-dual   # the timing row alone
    python -m benchmarks.stopping --only fbm             # the fBm brackets alone
    python -m benchmarks.stopping --only validate-fbm --hurst 0.3 1.0   # defaults vs tuned vs dual
    python -m benchmarks.stopping --only timing          # the 100k x 50 put with defaults

The full run starts with the validation of the default constructor
(``SignatureStopper(random_state=0)``, every setting chosen on held-out
paths): the timing of the American put on 100,000 x 50 (model selection
included), then the three reference tables -- all 20 American put rows of
Longstaff & Schwartz (2001), the Bermudan max-call on 2 and 5 assets, and
stopping fractional Brownian motion for H from 0.01 to 1 certified by the
dual upper bound of the default rule -- each with the default beside the
hand-picked ("tuned") settings on the same paths.

For each reference problem of :func:`hftsig.datasets.stopping_reference` it fits
:class:`hftsig.stopping.stoppers.SignatureStopper` and the Markovian baseline
:class:`hftsig.stopping.stoppers.PolynomialStopper` (polynomials of the current state
and payoff) on the *same* training paths, evaluates the lower bound on the same
fresh paths, and, where a continuation simulator exists (Black--Scholes
models), the Andersen--Broadie dual upper bound on the same outer paths
(reported as lower bound + estimated duality gap; the gap column is that gap
relative to the reference).  A second table certifies stopping fractional
Brownian motion for several Hurst parameters by its own primal--dual bracket
(exact conditional continuations, :class:`hftsig.stopping.processes.FBMContinuation`, and
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

from hftsig.datasets import stopping_reference
from hftsig.stopping import processes as paths
from hftsig.stopping.stoppers import PolynomialStopper, SignatureStopper, StoppingValue

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
        sig=dict(depth=2, lags=0, alpha=1e-6, sign_split=False), poly=dict(degree=3),
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
            sig=dict(depth=3, lags=0, alpha=1e-6, sign_split=False), poly=dict(degree=3),
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
FBM_STOPPER = dict(depth=3, lags=5, alpha=1e-6, sign_split=False)


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


# -- validation of the default constructor (issue 19) ------------------------------------------
# "tuned": the settings a person picked for each problem before the automatic choice
# existed (the earlier README tables), fitted on the same paths as the default.
TUNED = {"put": dict(depth=2, lags=0, alpha=1e-6, sign_split=False),
         "max_call": dict(depth=3, lags=0, alpha=1e-6, sign_split=False),
         "fbm": dict(depth=3, lags=5, alpha=1e-6, sign_split=False, payoff_hinges=False)}
# Bermudan max-call on 5 assets (same parameters as the 2-asset case): Becker,
# Cheridito & Jentzen (2019), Table 1, d = 5, the values quoted in issue 19.
MAX_CALL_5 = {90: 16.64, 100: 26.16, 110: 36.77}
# fBm: outer x inner paths of the dual upper bound per H (where the value is small the
# dual needs more inner paths for the same relative accuracy)
# (the estimated gap is skewed, a few outer paths carrying most of it: at H = 0.4, 40 outer
# paths gave 1.33 % +- 0.44 %, 200 gave 1.79 % +- 0.23 %)
FBM_DUAL = {0.01: (200, 200), 0.05: (200, 200), 0.1: (200, 200), 0.2: (200, 300), 0.3: (200, 400),
            0.4: (200, 300), 0.6: (600, 500), 0.7: (200, 400), 0.8: (600, 300), 0.9: (600, 300)}
FBM_ALL_HURST = (0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0)
FBM_EXACT = {0.5: 0.0, 1.0: 0.99 / np.sqrt(2 * np.pi)}


def _params(st):
    p = st.best_params_
    return f"d={p['depth']} lags={p['lags']} a={p['alpha']:g}" + (" split" if p["sign_split"] else "")


def value_on_fresh_paths(st, make, n, seed, payoff, chunk=100_000, **kw):
    """Lower bound of ``st`` on ``n`` fresh paths drawn in chunks from one generator.

    ``make(m, rng)`` simulates ``m`` paths; chunks bound the memory of the
    features (a million paths at once would take gigabytes).  Returns the
    pooled ``StoppingValue`` (mean and standard error over all ``n`` paths).
    """
    rng = np.random.default_rng(seed)
    parts = []
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        parts.append(st.value(make(m, rng), payoff, **kw))
    sizes = np.array([p.n_paths for p in parts], dtype=np.float64)
    means = np.array([p.value for p in parts])
    total = sizes.sum()
    mean = float(sizes @ means / total)
    # pooled sum of squares: within chunks plus between their means
    ss = float(((sizes - 1) * sizes * np.array([p.std_error for p in parts]) ** 2).sum()
               + sizes @ (means - mean) ** 2)
    return StoppingValue(mean, float(np.sqrt(ss / (total - 1) / total)), int(total))


def bermudan_put_lattice(s0, strike, rate, sigma, T, n_dates, steps_per_date=(100, 101)):
    """Put exercisable on ``n_dates`` equally spaced dates (not at 0), on a binomial lattice.

    Cox-Ross-Rubinstein with ``steps_per_date`` steps between exercise dates,
    averaged over the two given counts (adjacent counts cancel most of the
    lattice's odd-even oscillation; the two prices differ by at most 1e-4 on
    Longstaff-Schwartz's Table 1).  The value the simulated rule, which
    exercises on the same dates, aims at.
    """
    prices = []
    for m in steps_per_date:
        n = m * n_dates
        dt = T / n
        up = np.exp(sigma * np.sqrt(dt))
        p = (np.exp(rate * dt) - 1 / up) / (up - 1 / up)
        disc = np.exp(-rate * dt)
        v = np.maximum(strike - s0 * up ** (n - 2.0 * np.arange(n + 1)), 0.0)
        for step in range(n - 1, 0, -1):
            v = disc * (p * v[:-1] + (1 - p) * v[1:])
            if step % m == 0:
                v = np.maximum(v, strike - s0 * up ** (step - 2.0 * np.arange(step + 1)))
        prices.append(float(disc * (p * v[0] + (1 - p) * v[1])))
    return float(np.mean(prices))


# Fresh paths of each put row: at S0 = 44 the standard error on 100,000 paths is
# 0.4-0.6 % of the value, as large as the 0.5 % target itself; on a million it is
# 0.13-0.19 %, and the distance to the reference shows the rule, not the noise
PUT_EVAL_PATHS = 1_000_000


def validate_put(quick, cases=None):
    """LS (2001) Table 1, all rows: default and tuned lower bounds against the FD value."""
    n = 20_000 if quick else 100_000
    n_eval = 20_000 if quick else PUT_EVAL_PATHS
    K, r = REF["american_put"]["parameters"]["K"], REF["american_put"]["parameters"]["r"]

    def payoff(s):
        return np.maximum(K - s[..., 0], 0.0)

    print(f"\n## American put (Longstaff-Schwartz 2001, Table 1; 50 dates a year), target: within 0.5% of FD; "
          f"{n:,} training, {n_eval:,} fresh paths")
    print("| S0 | sigma | T | FD | Bermudan 50/yr (lattice) | default lower ± SE | error | chosen | "
          "tuned (depth=2) lower ± SE | error | default fit s (cpu) | eval s |\n"
          "|---|---|---|---|---|---|---|---|---|---|---|---|", flush=True)
    rows = []
    for i, c in enumerate(REF["american_put"]["cases"]):
        if cases is not None and i not in cases:
            continue
        T = c["T"]

        def make(m, seed, c=c, T=T):
            return paths.gbm(m, 50 * T, s0=float(c["S0"]), mu=r, sigma=c["sigma"], T=float(T), random_state=seed)
        train = make(n, 20 + i)
        kw = dict(discount=r, times=np.linspace(0.0, float(T), 50 * T + 1))
        st, t_fit = _timed(SignatureStopper(random_state=0).fit, train, payoff, **kw)
        # the first 100,000 fresh paths are those of make(100_000, 60 + i)
        low, t_eval = _timed(value_on_fresh_paths, st, make, n_eval, 60 + i, payoff)
        tuned = value_on_fresh_paths(SignatureStopper(**TUNED["put"]).fit(train, payoff, **kw), make, n_eval,
                                     60 + i, payoff)
        err, err_t = (low.value - c["fd"]) / c["fd"], (tuned.value - c["fd"]) / c["fd"]
        berm = bermudan_put_lattice(float(c["S0"]), K, r, c["sigma"], float(T), 50 * T)
        rows.append(dict(case=c, low=low, tuned=tuned, err=err, err_tuned=err_t, bermudan=berm))
        print(f"| {c['S0']} | {c['sigma']} | {T} | {c['fd']} | {berm:.4f} | {low.value:.4f} ± {low.std_error:.4f} | "
              f"{100 * err:+.2f}% | {_params(st)} | {tuned.value:.4f} ± {tuned.std_error:.4f} | "
              f"{100 * err_t:+.2f}% | {t_fit[0]:.1f} ({t_fit[1]:.1f}) | {t_eval[0]:.1f} |", flush=True)
    return rows


def validate_max_call(quick):
    """Bermudan max-call, d = 2 (AB 2004) and d = 5 (BCJ 2019): default and tuned lower bounds."""
    n = 20_000 if quick else 100_000
    p = REF["max_call"]["parameters"]
    refs = [(2, c["S0"], c["value"]) for c in REF["max_call"]["cases"]] + \
        [(5, s0, v) for s0, v in MAX_CALL_5.items()]
    print("\n## Bermudan max-call (9 dates, T = 3), target: within 1% of the reference")
    print("| d | S0 | reference | default lower ± SE | error | chosen | tuned (depth=3) lower ± SE | error | "
          "default fit+eval s (cpu) |\n|---|---|---|---|---|---|---|---|---|", flush=True)
    rows = []
    for i, (d, s0, ref) in enumerate(refs):
        def payoff(s):
            return np.maximum(s[:, 1:].max(axis=2) - p["K"], 0.0)

        def make(m, seed, d=d, s0=s0):
            return paths.gbm(m, p["n_dates"], s0=[float(s0)] * d, mu=p["r"] - p["dividend"], sigma=p["sigma"],
                             T=p["T"], random_state=seed)
        train, test = make(n, 100 + i), make(n, 200 + i)
        kw = dict(exercise_idx=np.arange(1, 10), discount=p["r"], times=np.linspace(0.0, p["T"], 10))
        st, t_fit = _timed(SignatureStopper(random_state=0).fit, train, payoff, **kw)
        low, t_eval = _timed(st.value, test, payoff)
        tuned = SignatureStopper(**TUNED["max_call"]).fit(train, payoff, **kw).value(test, payoff)
        err, err_t = (low.value - ref) / ref, (tuned.value - ref) / ref
        rows.append(dict(d=d, s0=s0, ref=ref, low=low, tuned=tuned, err=err, err_tuned=err_t))
        print(f"| {d} | {s0} | {ref} | {low.value:.4f} ± {low.std_error:.4f} | {100 * err:+.2f}% | {_params(st)} | "
              f"{tuned.value:.4f} ± {tuned.std_error:.4f} | {100 * err_t:+.2f}% | "
              f"{t_fit[0] + t_eval[0]:.1f} ({t_fit[1] + t_eval[1]:.1f}) |", flush=True)
    return rows


def fbm_paths(n, hurst, seed):
    """fBm on 100 dates of [0, 1]; at H = 1 the path is t Z (``paths.fbm`` needs H < 1)."""
    if hurst == 1.0:
        z = np.random.default_rng(seed).standard_normal((n, 1))
        return (np.linspace(0.0, 1.0, 101)[None, :] * z)[:, :, None]
    return paths.fbm(n, 100, hurst, random_state=seed)


def fbm_control(hurst):
    """Doob martingale E[W_1 | F_t] as control variate (None at H = 1/2, where it is W itself)."""
    if hurst == 0.5:
        return None
    if hurst == 1.0:
        t = np.linspace(0.0, 1.0, 101)

        def mart(w):
            # W_t = t Z: E[W_1 | F_t] = Z = W_t / t once t > 0, E[W_1] = 0 at t = 0
            out = np.zeros(w.shape[:2])
            out[:, 1:] = w[:, 1:, 0] / t[1:]
            return out
        return mart
    return paths.FBMContinuation(hurst=hurst, n_steps=100).martingale


def validate_fbm(quick, hursts=FBM_ALL_HURST, n_train=50_000):
    """Stopping fBm: default and tuned lower bounds, the default rule's dual upper bound."""
    n_eval = 20_000 if quick else 100_000
    n_train = 10_000 if quick else n_train

    def payoff(w):
        return w[..., 0]

    print("\n## Stopping fBm, sup E[W^H_tau], 100 dates on [0, 1]; target: default lower bound within 1% of the "
          "certified value (upper bound); exact values at H = 0.5 (absolute) and H = 1")
    print("| H | default lower ± SE | chosen | tuned (depth=3, lags=5) lower ± SE | upper ± SE (dual of default) | "
          "certificate | default vs upper (exact) | fit+eval s | dual s |\n"
          "|---|---|---|---|---|---|---|---|---|", flush=True)
    rows = []
    for h in hursts:
        train, test = fbm_paths(n_train, h, 1), fbm_paths(n_eval, h, 2)
        control = fbm_control(h)
        t0 = time.perf_counter()
        # the model's martingale serves the fit (regression targets) as well as the evaluation
        st = SignatureStopper(random_state=0).fit(train, payoff, control=control)
        low = st.value(test, payoff, control=control)
        t1 = time.perf_counter()
        tuned = SignatureStopper(**TUNED["fbm"]).fit(train, payoff, control=control).value(test, payoff,
                                                                                         control=control)
        up, t_dual = None, float("nan")
        if h in FBM_EXACT:
            cert = FBM_EXACT[h]
            cert_s = f"{cert:.5f} (exact)"
            up_s = "—"
        else:
            n_outer, n_inner = FBM_DUAL[h]
            if quick:
                n_outer, n_inner = 10, max(50, n_inner // 4)
            sim = paths.FBMContinuation(hurst=h, n_steps=100)
            t2 = time.perf_counter()
            up = st.dual_upper_bound(fbm_paths(n_outer, h, 3), payoff, sim, n_inner=n_inner, lower=low,
                                     random_state=5, control=sim.martingale)
            t_dual = time.perf_counter() - t2
            # the true value is at most the upper bound (up to its standard error)
            cert = up.value
            cert_s = f"≤ {up.value + 2 * up.std_error:.4f} (2 SE)"
            up_s = f"{up.value:.4f} ± {up.std_error:.4f}"
        if h == 0.5:
            dist = f"{low.value - cert:+.4f} (abs)"
        else:
            dist = f"{100 * (low.value - cert) / cert:+.2f}%"
        rows.append(dict(hurst=h, low=low, tuned=tuned, up=up, cert=cert, params=st.best_params_))
        print(f"| {h} | {low.value:.4f} ± {low.std_error:.4f} | {_params(st)} | {tuned.value:.4f} ± "
              f"{tuned.std_error:.4f} | {up_s} | {cert_s} | {dist} | {t1 - t0:.1f} | {t_dual:.1f} |", flush=True)
    return rows


def put_timing(n=100_000):
    """The American put on n x 50 with defaults: fit (selection included) and evaluation times."""
    case = REF["american_put"]["cases"][0]
    K, r = REF["american_put"]["parameters"]["K"], REF["american_put"]["parameters"]["r"]

    def payoff(s):
        return np.maximum(K - s[..., 0], 0.0)
    train = paths.gbm(n, 50, s0=float(case["S0"]), mu=r, sigma=case["sigma"], T=1.0, random_state=1)
    test = paths.gbm(n, 50, s0=float(case["S0"]), mu=r, sigma=case["sigma"], T=1.0, random_state=2)
    kw = dict(discount=r, times=np.linspace(0.0, 1.0, 51))
    st, t_fit = _timed(SignatureStopper(random_state=0).fit, train, payoff, **kw)
    low, t_eval = _timed(st.value, test, payoff)
    fixed, t_fixed = _timed(SignatureStopper(**st.best_params_).fit, train, payoff, **kw)
    print(f"\n## Timing: American put S0=36, {n:,} x 50 dates, default constructor: fit {t_fit[0]:.2f} s "
          f"(cpu {t_fit[1]:.2f}; model selection {st.selection_time_:.2f} s of it, "
          f"{len(st.cv_results_['params'])} candidates cross-fitted on {st.n_folds_} folds: each fold's rules "
          f"fitted on {st.n_selection_paths_[0]:,} paths, {st.n_selection_paths_[1]:,} paths validated), value {t_eval[0]:.2f} s (cpu {t_eval[1]:.2f}); "
          f"total {t_fit[0] + t_eval[0]:.2f} s wall.  The same fit with the chosen settings given explicitly "
          f"({_params(st)}): {t_fixed[0]:.2f} s (cpu {t_fixed[1]:.2f}).  Lower bound {low.value:.4f} ± "
          f"{low.std_error:.4f} (FD {case['fd']}).", flush=True)
    return dict(fit=t_fit, eval=t_eval, fixed=t_fixed, selection=st.selection_time_, low=low)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes (about a minute)")
    parser.add_argument("--only", help="run the problems whose name contains this text (e.g. 'put'); "
                                       "'fbm': the fBm brackets alone; 'validate-put', 'validate-max-call', "
                                       "'validate-fbm', 'timing': one part of the validation of the defaults")
    parser.add_argument("--no-dual", action="store_true", help="skip the nested-simulation upper bounds")
    parser.add_argument("--hurst", type=float, nargs="*", help="with --only validate-fbm: these H only")
    args = parser.parse_args(argv)
    print(f"# benchmarks.stopping ({'quick' if args.quick else 'full'}) on {platform.machine()}, "
          f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
          f"load average {os.getloadavg()[0]:.1f}")
    only = (args.only or "").lower()
    if only == "timing":
        put_timing()
        return
    if only.startswith("validate"):
        part = only[len("validate"):].strip("-")
        if part in ("", "put"):
            validate_put(args.quick)
        if part in ("", "max-call"):
            validate_max_call(args.quick)
        if part in ("", "fbm"):
            validate_fbm(args.quick, tuple(args.hurst) if args.hurst else FBM_ALL_HURST)
        return
    if not only:
        # the validation of the default constructor: timing, then the three tables
        put_timing(20_000 if args.quick else 100_000)
        validate_put(args.quick)
        validate_max_call(args.quick)
        validate_fbm(args.quick)
    fbm_only = only == "fbm"
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
