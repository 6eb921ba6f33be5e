"""Signature optimal stopping against published values (hftsig.datasets.stopping_reference).

Fast tests use moderate path counts; their tolerance is the published accuracy
target plus a few Monte Carlo standard errors of the estimate at hand, so they
still fail when the method is off by more than sampling noise.  The
full-size checks (100,000 paths, tolerance without the extra noise allowance)
are marked slow.
"""
import numpy as np
import pytest
from sklearn.base import clone

from hftsig.datasets import stopping_reference
from hftsig.stopping import processes as paths
from hftsig.stopping.stoppers import PolynomialStopper, SignatureStopper, StoppingValue, UpperBound

REF = stopping_reference()


def _put_case(s0=36, sigma=0.2, T=1):
    for case in REF["american_put"]["cases"]:
        if (case["S0"], case["sigma"], case["T"]) == (s0, sigma, T):
            return case
    raise KeyError((s0, sigma, T))


K_PUT, R_PUT = REF["american_put"]["parameters"]["K"], REF["american_put"]["parameters"]["r"]


def put_payoff(s):
    return np.maximum(K_PUT - s[..., 0], 0.0)


def put_paths(n, seed, s0=36.0, sigma=0.2, T=1):
    n_steps = 50 * T
    return paths.gbm(n, n_steps, s0=s0, mu=R_PUT, sigma=sigma, T=float(T), random_state=seed)


def put_times(T=1):
    return np.linspace(0.0, float(T), 50 * T + 1)


# -- American put (Longstaff & Schwartz 2001, Table 1) ---------------------------------

@pytest.fixture(scope="module")
def fitted_put():
    st = SignatureStopper(depth=2, random_state=0)
    return st.fit(put_paths(30_000, 0), put_payoff, discount=R_PUT, times=put_times())


def test_put_lower_bound_close_to_finite_difference(fitted_put):
    ref = _put_case()["fd"]
    low = fitted_put.value(put_paths(100_000, 1), put_payoff)
    assert isinstance(low, StoppingValue) and low.n_paths == 100_000
    assert 0.005 < low.std_error < 0.02
    # the target (0.5 %) plus two standard errors of this sample
    assert abs(low.value - ref) <= 0.005 * ref + 2 * low.std_error
    # a stopping rule cannot beat the optimum: no more than noise above it
    assert low.value <= ref + 3 * low.std_error


def test_put_rule_beats_european_and_never_stops_out_of_the_money(fitted_put):
    x = put_paths(5_000, 2)
    tau = fitted_put.stopping_times(x, put_payoff)
    z = put_payoff(x)
    stopped = z[np.arange(len(x)), tau]
    early = tau < fitted_put.n_dates_ - 1
    assert early.mean() > 0.3          # deep in the money early exercise is optimal
    assert np.all(stopped[early] > 0)  # never exercised for nothing
    # the Black-Scholes European put (3.844 in the same table) is a strict lower value
    assert fitted_put.value(x, put_payoff).value > 3.844 + 0.1


def test_max_call_dual_anchored_at_the_start():
    # exercise starts at t = 1/3: the martingale is anchored at t = 0, shared by all
    # outer paths, so the bound is tight even with a small nested simulation
    case = REF["max_call"]["cases"][0]
    st = _fit_max_call(10_000, 32, case["S0"])
    low = st.value(max_call_paths(30_000, 33, case["S0"]), max_call_payoff)
    sim = paths.GBMContinuation(mu=MC["r"] - MC["dividend"], sigma=MC["sigma"], dt=MC["T"] / 9)
    outer = max_call_paths(40, 34, case["S0"])
    up = st.dual_upper_bound(outer, max_call_payoff, sim, n_inner=200, random_state=35)
    ab = st.dual_upper_bound(outer, max_call_payoff, sim, n_inner=200, lower=low, random_state=35)
    assert ab.gap == up.gap and ab.value == pytest.approx(low.value + up.gap)
    assert ab.std_error < up.std_error
    assert 0 <= up.gap < 0.03 * case["value"]
    assert up.value + 3 * up.std_error >= case["value"]
    assert ab.value + 3 * ab.std_error >= case["value"]
    with pytest.raises(TypeError, match="lower"):
        st.dual_upper_bound(outer, max_call_payoff, sim, n_inner=2, lower=1.0)


def test_put_dual_upper_bound_lies_above(fitted_put):
    ref = _put_case()["fd"]
    sim = paths.GBMContinuation(mu=R_PUT, sigma=0.2, dt=1 / 50)
    up = fitted_put.dual_upper_bound(put_paths(60, 3), put_payoff, sim, n_inner=100, random_state=4)
    assert isinstance(up, UpperBound) and up.n_paths == 60 and up.n_inner == 100
    assert up.gap >= 0 and up.std_error > 0
    # an upper bound: above the (American >= Bermudan) reference up to its noise
    assert up.value + 3 * up.std_error >= ref
    # and not absurdly loose even with this little nested simulation
    assert up.value < ref * 1.06


def test_chen_continuation_features_equal_direct_features(fitted_put):
    x = put_paths(3, 5)
    sim = paths.GBMContinuation(mu=R_PUT, sigma=0.2, dt=1 / 50)
    hist = x[:, :21]
    cont = sim(hist, 4, 30, np.random.default_rng(0))
    full = np.concatenate([np.repeat(hist[:, None], 4, axis=1), cont], axis=2).reshape(12, 51, 1)
    later = fitted_put.exercise_idx_[21:]
    a = fitted_put._continuation_features(hist, cont, full, later)
    b = fitted_put._path_features(full, later)
    np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-9)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_put_full_size_bounds_and_gap():
    ref = _put_case()["fd"]
    st = SignatureStopper(depth=2, random_state=0)
    st.fit(put_paths(100_000, 10), put_payoff, discount=R_PUT, times=put_times())
    # 400,000 evaluation paths put the standard error (0.005) well inside the 0.5 % (0.022)
    low = st.value(put_paths(400_000, 11), put_payoff)
    print("put lower", low)
    assert abs(low.value - ref) <= 0.005 * ref
    sim = paths.GBMContinuation(mu=R_PUT, sigma=0.2, dt=1 / 50)
    up = st.dual_upper_bound(put_paths(100, 12), put_payoff, sim, n_inner=2000, random_state=13)
    print("put upper", up)
    assert up.value >= ref - 2 * up.std_error
    assert (up.value - low.value) / ref < 0.01


@pytest.mark.slow
@pytest.mark.parametrize("case", REF["american_put"]["cases"], ids=lambda c: f"S{c['S0']}-v{c['sigma']}-T{c['T']}")
def test_put_table_lower_bounds(case):
    T = case["T"]
    st = SignatureStopper(depth=2).fit(put_paths(100_000, 20, case["S0"], case["sigma"], T), put_payoff,
                                       discount=R_PUT, times=put_times(T))
    low = st.value(put_paths(100_000, 21, case["S0"], case["sigma"], T), put_payoff)
    assert abs(low.value - case["fd"]) <= 0.005 * case["fd"] + 2 * low.std_error


# -- Bermudan max-call (Andersen & Broadie 2004) ------------------------------------------

MC = REF["max_call"]["parameters"]


def max_call_payoff(s):
    # exercise dates are the grid points 1..9 (t = 1/3, ..., 3)
    return np.maximum(s[:, 1:].max(axis=2) - MC["K"], 0.0)


def max_call_paths(n, seed, s0):
    return paths.gbm(n, MC["n_dates"], s0=[float(s0)] * MC["n_assets"], mu=MC["r"] - MC["dividend"],
                     sigma=MC["sigma"], corr=np.eye(MC["n_assets"]), T=MC["T"], random_state=seed)


def _fit_max_call(n, seed, s0):
    st = SignatureStopper(depth=3)
    return st.fit(max_call_paths(n, seed, s0), max_call_payoff, exercise_idx=np.arange(1, 10),
                  discount=MC["r"], times=np.linspace(0.0, MC["T"], 10))


@pytest.mark.parametrize("case", REF["max_call"]["cases"], ids=lambda c: f"S{c['S0']}")
def test_max_call_within_one_percent(case):
    st = _fit_max_call(10_000, 30, case["S0"])
    assert st.n_dates_ == 9 and st.coef_.shape[0] == 9
    low = st.value(max_call_paths(40_000, 31, case["S0"]), max_call_payoff)
    assert abs(low.value - case["value"]) <= 0.01 * case["value"] + 2 * low.std_error


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_max_call_full_size_with_upper_bound():
    case = REF["max_call"]["cases"][1]
    st = _fit_max_call(100_000, 40, case["S0"])
    low = st.value(max_call_paths(100_000, 41, case["S0"]), max_call_payoff)
    assert abs(low.value - case["value"]) <= 0.01 * case["value"]
    sim = paths.GBMContinuation(mu=MC["r"] - MC["dividend"], sigma=MC["sigma"], dt=MC["T"] / 9)
    up = st.dual_upper_bound(max_call_paths(300, 42, case["S0"]), max_call_payoff, sim, n_inner=1000,
                             lower=low, random_state=43)
    print("max-call", low, up)
    assert up.value >= case["value"] - 2 * up.std_error
    assert up.gap / case["value"] < 0.01 and up.value - low.value == pytest.approx(up.gap)


# -- stopping fractional Brownian motion (Becker, Cheridito & Jentzen 2019) ---------------

FBM = {c["hurst"]: c for c in REF["fbm"]["cases"]}
# depth-3 signature of (t, W) plus the last five increments: the conditional law of
# fBm's future puts most weight on the latest moves, which low signature levels
# blur (depth 3 alone: 0.354 at H = 0.3; with lags: 0.371)
FBM_STOPPER = dict(depth=3, lags=5)


def fbm_payoff(w):
    return w[..., 0]


def _fbm_sim(hurst):
    return paths.FBMContinuation(hurst=hurst, n_steps=100)


def _fbm_certificate(low, up):
    """Relative half-width of the bracket the true value lies in, around the lower bound.

    The value V satisfies E[low] <= V <= E[up] with ``up = low + gap``
    (Andersen--Broadie, inner noise only biases it up), so up to two standard
    errors ``-2 se_low <= V - low <= gap + 2 hypot(se_low, se_gap)``.
    """
    below = 2 * low.std_error
    above = up.gap + 2 * np.hypot(low.std_error, up.gap_std_error)
    return max(below, above) / low.value


@pytest.mark.parametrize("hurst", [0.01, 0.05])
def test_fbm_small_hurst_signature_beats_markovian_regression(hurst):
    train, test = paths.fbm(8_000, 100, hurst, random_state=50), paths.fbm(12_000, 100, hurst, random_state=51)
    sig = SignatureStopper(**FBM_STOPPER).fit(train, fbm_payoff)
    markov = PolynomialStopper(degree=3).fit(train, fbm_payoff)
    assert not sig.itm_only_  # payoffs take both signs: regress on every path
    control = _fbm_sim(hurst).martingale
    v_sig, v_markov = sig.value(test, fbm_payoff, control=control), markov.value(test, fbm_payoff, control=control)
    # memory is what pays at small H: the state-only rule gets about half
    # (H = 0.01: 1.52 against 0.83; H = 0.05: 1.29 against 0.63)
    assert v_sig.value > 1.8 * v_markov.value
    assert v_sig.value - v_markov.value > 50 * np.hypot(v_sig.std_error, v_markov.std_error)


def test_fbm_brownian_case_has_value_zero():
    train, test = paths.fbm(5_000, 100, 0.5, random_state=52), paths.fbm(20_000, 100, 0.5, random_state=53)
    st = SignatureStopper(**FBM_STOPPER).fit(train, fbm_payoff)
    low = st.value(test, fbm_payoff)
    assert FBM[0.5]["kind"] == "exact" and FBM[0.5]["value"] == 0.0
    # optional stopping: no rule has non-zero expectation on a martingale
    assert abs(low.value) <= 3 * low.std_error
    # in-sample the regression overfits noise and looks profitable; fresh paths do not
    assert st.in_sample_value_ > low.value
    # at H = 1/2 the Doob martingale E[W_1 | F_t] is W itself: the control removes everything
    exact = st.value(test, fbm_payoff, control=_fbm_sim(0.5).martingale)
    assert abs(exact.value) < 1e-12 and exact.std_error < 1e-12


@pytest.fixture(scope="module")
def fitted_fbm_mid():
    return SignatureStopper(**FBM_STOPPER).fit(paths.fbm(20_000, 100, 0.3, random_state=62), fbm_payoff)


def test_fbm_martingale_control_is_unbiased_and_cuts_the_error(fitted_fbm_mid):
    test = paths.fbm(20_000, 100, 0.3, random_state=54)
    plain = fitted_fbm_mid.value(test, fbm_payoff)
    ctl = fitted_fbm_mid.value(test, fbm_payoff, control=_fbm_sim(0.3).martingale)
    # same paths, same stopping times: the two estimates differ by the sample mean
    # of M_tau, which is zero in expectation (optional sampling)
    assert abs(ctl.value - plain.value) < 3 * plain.std_error
    assert ctl.std_error < plain.std_error / 4
    with pytest.raises(ValueError, match="control returned shape"):
        fitted_fbm_mid.value(test[:5], fbm_payoff, control=lambda p: np.zeros((5, 3)))
    with pytest.raises(TypeError, match="control must be a callable"):
        fitted_fbm_mid.value(test[:5], fbm_payoff, control="martingale")


def test_fbm_mid_hurst_lower_bound_inside_published_bracket(fitted_fbm_mid):
    case = FBM[0.3]
    assert case["kind"] == "bracket" and case["confirmed"]
    low = fitted_fbm_mid.value(paths.fbm(20_000, 100, 0.3, random_state=55), fbm_payoff,
                               control=_fbm_sim(0.3).martingale)
    assert low.std_error < 0.0015
    # a lower bound cannot exceed the published upper bound
    assert low.value <= case["upper"] + 3 * low.std_error
    assert low.value >= 0.98 * case["lower"] - 2 * low.std_error


def test_fbm_primal_dual_bracket_small(fitted_fbm_mid):
    # the certificate of the slow tests at small size: lower bound on fresh paths,
    # Andersen-Broadie upper bound from exact conditional continuations, both with
    # the Doob martingale as control variate; the bracket is within 5 % here
    # (the slow tests: 2 %), and reaches the published lower bound
    sim = _fbm_sim(0.3)
    low = fitted_fbm_mid.value(paths.fbm(20_000, 100, 0.3, random_state=63), fbm_payoff, control=sim.martingale)
    up = fitted_fbm_mid.dual_upper_bound(paths.fbm(10, 100, 0.3, random_state=64), fbm_payoff, sim, n_inner=100,
                                         lower=low, random_state=65, control=sim.martingale)
    assert up.gap >= 0 and up.value == pytest.approx(low.value + up.gap)
    assert _fbm_certificate(low, up) < 0.05
    assert up.value + 3 * up.std_error >= FBM[0.3]["lower"]


def test_lag_features_are_the_latest_increments():
    x = paths.fbm(4, 20, 0.2, random_state=58)
    st = SignatureStopper(depth=2, lags=3).fit(paths.fbm(50, 20, 0.2, random_state=59), fbm_payoff)
    base = SignatureStopper(depth=2).fit(paths.fbm(50, 20, 0.2, random_state=59), fbm_payoff)
    f, g = st._path_features(x, st.exercise_idx_), base._path_features(x, st.exercise_idx_)
    assert f.shape == (21, 4, g.shape[2] + 3) and st.n_features_ == base.n_features_ + 3
    np.testing.assert_array_equal(f[:, :, :g.shape[2]], g)
    w = x[:, :, 0]
    for t in (0, 1, 2, 10, 20):
        want = [w[:, t] - w[:, max(t - k, 0)] for k in (1, 2, 3)]
        np.testing.assert_allclose(f[t, :, g.shape[2]:], np.stack(want, axis=1))


def test_chen_continuation_features_with_lags_equal_direct_features():
    st = SignatureStopper(depth=3, lags=4).fit(paths.fbm(300, 40, 0.3, random_state=60), fbm_payoff)
    x = paths.fbm(3, 40, 0.3, random_state=61)
    hist = x[:, :11]
    cont = hist[:, None, -1:] + np.random.default_rng(0).normal(size=(3, 4, 30, 1)).cumsum(axis=2) * 0.1
    full = np.concatenate([np.repeat(hist[:, None], 4, axis=1), cont], axis=2).reshape(12, 41, 1)
    later = st.exercise_idx_[11:]
    direct = st._path_features(full, later)
    np.testing.assert_allclose(st._continuation_features(hist, cont, full, later), direct, atol=1e-12)
    at = st._inner_feature_fn(hist, cont, full, later)
    rows = np.array([0, 5, 11])
    np.testing.assert_allclose(at(3, rows), direct[3][rows], atol=1e-12)


# Full-size certificates (no published value is confirmed for these H, see
# hftsig/data/stopping_reference.json): training paths, 100,000 fresh paths for the
# lower bound, outer x inner paths for the dual; all with the Doob martingale
# control.  Where the value is small (H near 1/2) the rule needs more training paths
# and the dual more inner paths for the same relative accuracy.
FBM_CERTIFIED = {0.05: (50_000, 40, 200), 0.1: (50_000, 40, 200), 0.2: (50_000, 50, 300),
                 0.3: (50_000, 60, 400), 0.4: (150_000, 40, 500)}


def fbm_certified_bracket(hurst, n_train, n_outer, n_inner, seed=100):
    sim = _fbm_sim(hurst)
    st = SignatureStopper(**FBM_STOPPER).fit(paths.fbm(n_train, 100, hurst, random_state=seed), fbm_payoff)
    low = st.value(paths.fbm(100_000, 100, hurst, random_state=seed + 1), fbm_payoff, control=sim.martingale)
    up = st.dual_upper_bound(paths.fbm(n_outer, 100, hurst, random_state=seed + 2), fbm_payoff, sim,
                             n_inner=n_inner, lower=low, random_state=seed + 3, control=sim.martingale)
    print(f"fbm H={hurst}: lower {low.value:.4f} ± {low.std_error:.4f}, upper {up.value:.4f} ± "
          f"{up.std_error:.4f}, gap {100 * up.gap / low.value:.2f}%, certificate "
          f"{100 * _fbm_certificate(low, up):.2f}%")
    return low, up


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("hurst", sorted(FBM_CERTIFIED))
def test_fbm_certified_within_two_percent(hurst):
    low, up = fbm_certified_bracket(hurst, *FBM_CERTIFIED[hurst])
    # the true value is within 2 % of the lower bound (two standard errors)
    assert _fbm_certificate(low, up) < 0.02
    assert 0 <= up.gap
    if FBM.get(hurst, {}).get("kind") == "bracket":
        # and consistent with the published bracket: our lower bound is within 2 % of
        # its lower end, our upper bound not meaningfully above its upper end
        assert low.value >= 0.98 * FBM[hurst]["lower"]
        assert up.value - 2 * up.std_error <= FBM[hurst]["upper"]



def _fbm_full_size(hurst, seed, **params):
    train = paths.fbm(50_000, 100, hurst, random_state=seed)
    test = paths.fbm(100_000, 100, hurst, random_state=seed + 1)
    control = _fbm_sim(hurst).martingale
    sig = SignatureStopper(**params).fit(train, fbm_payoff).value(test, fbm_payoff, control=control)
    markov = PolynomialStopper(degree=3).fit(train, fbm_payoff).value(test, fbm_payoff, control=control)
    print(f"fbm H={hurst} seed={seed}: signature {sig.value:.4f} ± {sig.std_error:.4f}, "
          f"state-only {markov.value:.4f} ± {markov.std_error:.4f}")
    return sig, markov


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("seed", [56, 70, 80])
def test_fbm_full_size_within_two_percent_of_published_bracket(seed):
    # H = 0.3, several seeds: the lower bound is within 2 % of the published signature
    # lower bound (BPS 2023) and not above the published upper bound
    case = FBM[0.3]
    sig, markov = _fbm_full_size(0.3, seed, **FBM_STOPPER)
    assert sig.value >= 0.98 * case["lower"]
    assert sig.value <= case["upper"] + 2 * sig.std_error
    assert sig.value - markov.value > 50 * np.hypot(sig.std_error, markov.std_error)


# -- settings chosen on held-out paths (the defaults) -------------------------------------

def _linear_paths(n, seed, n_steps=20):
    """W_t = t Z on ``n_steps`` dates of [0, 1]: fBm with H = 1 (``paths.fbm`` needs H < 1)."""
    z = np.random.default_rng(seed).standard_normal((n, 1))
    return (np.linspace(0.0, 1.0, n_steps + 1)[None, :] * z)[:, :, None]


def test_default_settings_resolve_the_kink_at_zero_payoff():
    # the first date reveals Z: the optimal rule waits to t = 1 when Z > 0 and stops at
    # once otherwise, worth (1 - 1/20) E[Z+]; the continuation value is kinked at Z = 0
    exact = (1 - 1 / 20) / np.sqrt(2 * np.pi)
    train, test = _linear_paths(4_000, 90), _linear_paths(100_000, 91)
    st = SignatureStopper(random_state=0).fit(train, fbm_payoff)
    assert st.best_params_["sign_split"] is True and st.sign_split_ is True
    # signature, lags, payoff powers and the nine hinges on each side, then the side's indicator
    assert st.n_features_ == 2 * (st._sig_len() + st.lags_ + 3 + 9) + 1
    low = st.value(test, fbm_payoff)
    assert exact - 0.01 * exact - 2 * low.std_error <= low.value <= exact + 3 * low.std_error
    # one regression across the kink keeps going on negative paths, whatever else is tuned
    whole = SignatureStopper(sign_split=False, random_state=0).fit(train, fbm_payoff)
    paired = fbm_payoff(test)[np.arange(test.shape[0]), st.stopping_times(test, fbm_payoff)] - \
        fbm_payoff(test)[np.arange(test.shape[0]), whole.stopping_times(test, fbm_payoff)]
    assert paired.mean() > 10 * paired.std(ddof=1) / np.sqrt(paired.size)


def _small_put(n=4_000, seed=92):
    return put_paths(n, seed)[:, :11], dict(discount=R_PUT, times=put_times()[:11])


def test_cv_results_report_every_candidate_and_the_choice():
    x, kw = _small_put()
    st = SignatureStopper(random_state=0).fit(x, put_payoff, **kw)
    res = st.cv_results_
    n_cand = len(res["params"])
    # depths 1-3 x lags {0, 1, 5, 10} x 4 ridges; an option is regressed in the money only,
    # so there is nothing to split
    assert n_cand == 3 * 4 * 4
    assert not res["param_sign_split"].any()
    for key in ("param_depth", "param_lags", "param_alpha", "param_sign_split", "n_columns",
                "mean_validation_value", "std_error_validation_value", "diff_to_best",
                "std_error_diff_to_best", "rank_validation_value", "chosen"):
        assert len(res[key]) == n_cand, key
    # three folds of 1,334, 1,333 and 1,333 paths: each fold's rules are fitted on the
    # other two, and every selection path validates once
    assert st.n_selection_paths_ == (2_666, 4_000) and st.n_folds_ == 3
    sizes = np.array([1_334, 1_333, 1_333])
    per_fold = np.array([res[f"split{f}_validation_value"] for f in range(3)])
    np.testing.assert_allclose(sizes @ per_fold / 4_000, res["mean_validation_value"], rtol=1e-12)
    (pick,) = np.flatnonzero(res["chosen"])
    assert res["params"][pick] == st.best_params_ == dict(depth=st.depth_, lags=st.lags_, alpha=st.alpha_,
                                                           sign_split=st.sign_split_)
    best = int(np.argmax(res["mean_validation_value"]))
    assert res["rank_validation_value"][best] == 1 and res["diff_to_best"][best] == 0
    # the best held-out value; among exact ties (identical rules) the narrowest design
    values = res["mean_validation_value"]
    assert values[pick] == values.max() and res["diff_to_best"][pick] == 0
    assert res["n_columns"][pick] == res["n_columns"][values == values.max()].min()
    assert st.selection_time_ > 0
    # the refitted rule uses the chosen settings
    assert st.n_features_ == st._sig_len() + st.lags_ + 3


def test_explicit_settings_bypass_the_selection():
    x, kw = _small_put()
    st = SignatureStopper(depth=2, lags=1, alpha=1e-6, sign_split=False).fit(x, put_payoff, **kw)
    assert st.cv_results_ is None and st.selection_time_ == 0.0
    assert st.best_params_ == dict(depth=2, lags=1, alpha=1e-6, sign_split=False)
    # (time, S) at depth 2: 6 terms, one lag, three payoff powers
    assert st.n_features_ == 6 + 1 + 3
    # one explicit setting is kept while the others are chosen
    some = SignatureStopper(depth=2).fit(x, put_payoff, **kw)
    assert (some.cv_results_["param_depth"] == 2).all() and some.depth_ == 2
    assert len(some.cv_results_["params"]) == 4 * 4


def test_selection_is_reproducible_and_depends_on_the_data_alone():
    x, kw = _small_put()
    a = SignatureStopper(random_state=0).fit(x, put_payoff, **kw)
    b = SignatureStopper(random_state=0).fit(x, put_payoff, **kw)
    c = SignatureStopper(random_state=7).fit(x, put_payoff, **kw)
    for other in (b, c):
        assert other.best_params_ == a.best_params_
        np.testing.assert_array_equal(other.cv_results_["mean_validation_value"],
                                      a.cv_results_["mean_validation_value"])
        np.testing.assert_array_equal(other.coef_, a.coef_)


@pytest.mark.parametrize("n_paths, n_folds", [(4_000, 3), (10, 4), (7, 2), (60_000, 3)])
def test_selection_folds_hold_out_every_path_once(n_paths, n_folds):
    from hftsig.stopping.stoppers import _selection_folds

    fold = _selection_folds(n_paths, n_folds)
    assert fold.shape == (n_paths,)
    counts = np.bincount(fold, minlength=n_folds)
    assert counts.sum() == n_paths and counts.size == n_folds
    assert counts.max() - counts.min() <= 1
    # interleaved: every fold is evenly spaced among the (exchangeable) selection paths
    for f in range(n_folds):
        assert set(np.diff(np.flatnonzero(fold == f))) <= {n_folds}


@pytest.mark.parametrize("frac, n_folds", [(1 / 3, 3), (0.25, 4), (0.5, 2), (0.9, 2)])
def test_validation_fraction_sets_the_number_of_folds(frac, n_folds):
    x, kw = _small_put(1_200)
    st = SignatureStopper(validation_fraction=frac, depth=1, lags=0).fit(x, put_payoff, **kw)
    assert st.n_folds_ == n_folds
    assert st.n_selection_paths_ == (1_200 - -(-1_200 // n_folds), 1_200)
    assert all(f"split{f}_validation_value" in st.cv_results_ for f in range(n_folds))
    assert f"split{n_folds}_validation_value" not in st.cv_results_


@pytest.mark.parametrize("split, hinges", [(False, False), (True, False), (False, True)])
def test_selection_cash_flows_equal_the_refitted_rule(split, hinges):
    # the joint backward induction of the selection gives, for one candidate, the
    # rule an explicit fit on the same paths gives (payoffs of both signs)
    from hftsig.stopping.stoppers import _validate_candidates

    x = paths.fbm(3_000, 20, 0.3, random_state=93)
    fit_mask = np.arange(3_000) < 2_000
    st = SignatureStopper(depth=2, lags=1, alpha=1e-4, sign_split=split, payoff_hinges=hinges)
    st.fit(x[fit_mask], fbm_payoff)
    z = fbm_payoff(x)
    tau = st.stopping_times(x[~fit_mask], fbm_payoff)
    expected = z[~fit_mask][np.arange(1_000), tau]
    feats = st._path_features(x, st.exercise_idx_)

    def design(k, rows):
        return st._design(feats[k][rows], z[rows, k], split=False, k=k)
    cols = np.ones(6 + 1 + 3 + (9 if hinges else 0), dtype=bool)
    cash = _validate_candidates(design, z, fit_mask, ~fit_mask, [cols, cols], [1e-4, 1e-2], [split, split],
                                st.itm_only_)
    # the same decisions up to rounding at exact ties
    assert np.mean(cash[:, 0] == expected) > 0.995
    assert abs(cash[:, 0].mean() - expected.mean()) < 1e-3
    # a different ridge is a different rule
    assert not np.array_equal(cash[:, 1], cash[:, 0])


def test_selection_cash_flows_with_a_control_equal_the_refitted_rule():
    # with a control the candidates regress Z_tau - (M_tau - M_t) and report the
    # control-variate cash flows: the rule of an explicit fit with the same control
    from hftsig.stopping.stoppers import _validate_candidates

    x = paths.fbm(3_000, 20, 0.3, random_state=95)
    fit_mask = np.arange(3_000) < 2_000
    sim = paths.FBMContinuation(hurst=0.3, n_steps=20)
    kw = dict(depth=2, lags=1, alpha=1e-4, sign_split=False, payoff_hinges=False)
    st = SignatureStopper(**kw).fit(x[fit_mask], fbm_payoff, control=sim.martingale)
    plain = SignatureStopper(**kw).fit(x[fit_mask], fbm_payoff)
    assert not np.allclose(st.coef_, plain.coef_)
    z, mart = fbm_payoff(x), sim.martingale(x)
    tau = st.stopping_times(x[~fit_mask], fbm_payoff)
    rows = np.arange(1_000)
    expected = z[~fit_mask][rows, tau] - (mart[~fit_mask][rows, tau] - mart[~fit_mask][:, 0])
    feats = st._path_features(x, st.exercise_idx_)

    def design(k, rows):
        return st._design(feats[k][rows], z[rows, k], split=False)
    cols = np.ones(6 + 1 + 3, dtype=bool)
    cash = _validate_candidates(design, z, fit_mask, ~fit_mask, [cols], [1e-4], [False], st.itm_only_,
                                mart=mart)
    assert np.mean(cash[:, 0] == expected) > 0.995
    assert abs(cash[:, 0].mean() - expected.mean()) < 1e-3


def test_fit_control_changes_only_the_regression_target():
    x = paths.fbm(2_000, 10, 0.4, random_state=96)
    z = fbm_payoff(x)
    kw = dict(depth=2, lags=2, alpha=1e-4, sign_split=False, payoff_hinges=False)
    plain = SignatureStopper(**kw).fit(x, fbm_payoff)
    # a zero martingale is no control at all
    zero = SignatureStopper(**kw).fit(x, fbm_payoff, control=lambda p: np.zeros(p.shape[:2]))
    np.testing.assert_array_equal(zero.coef_, plain.coef_)
    assert zero.in_sample_value_ == plain.in_sample_value_
    poly = PolynomialStopper(degree=2).fit(x, fbm_payoff)
    poly_zero = PolynomialStopper(degree=2).fit(x, fbm_payoff, control=lambda p: np.zeros(p.shape[:2]))
    np.testing.assert_array_equal(poly_zero.coef_, poly.coef_)
    # the last regression (date 9) targets Z_10 - M_10 + M_9
    sim = paths.FBMContinuation(hurst=0.4, n_steps=10)
    st = SignatureStopper(**kw).fit(x, fbm_payoff, control=sim.martingale)
    m = sim.martingale(x)
    feats = st._path_features(x, st.exercise_idx_)
    coef, intercept, _ = st._ridge(st._design(feats[9], z[:, 9]), z[:, 10] - m[:, 10] + m[:, 9])
    np.testing.assert_allclose(st.coef_[9], coef, rtol=1e-10, atol=1e-12)
    assert st.intercept_[9] == pytest.approx(intercept, rel=1e-10)
    # the in-sample value stays the plain mean of the realised cash flows
    tau = st.stopping_times(x, fbm_payoff)
    assert st.in_sample_value_ == pytest.approx(z[np.arange(2_000), tau].mean(), rel=1e-12)
    with pytest.raises(TypeError, match="control must be a callable"):
        SignatureStopper(**kw).fit(x, fbm_payoff, control="martingale")
    with pytest.raises(ValueError, match="control returned shape"):
        SignatureStopper(**kw).fit(x, fbm_payoff, control=lambda p: np.zeros((3, 3)))


def test_fit_control_lifts_the_default_rule_at_hurst_0_4():
    # the control removes most of the noise of the realised cash flows the
    # regressions are fitted to: the same defaults, the same paths, a better rule
    sim = paths.FBMContinuation(hurst=0.4, n_steps=100)
    train, test = paths.fbm(20_000, 100, 0.4, random_state=97), paths.fbm(40_000, 100, 0.4, random_state=98)
    plain = SignatureStopper(random_state=0).fit(train, fbm_payoff)
    ctl = SignatureStopper(random_state=0).fit(train, fbm_payoff, control=sim.martingale)
    a = plain.value(test, fbm_payoff, control=sim.martingale)
    b = ctl.value(test, fbm_payoff, control=sim.martingale)
    print(f"H=0.4, 20k paths: without {a.value:.5f} ± {a.std_error:.5f} {plain.best_params_}, "
          f"with {b.value:.5f} ± {b.std_error:.5f} {ctl.best_params_}")
    assert b.value > a.value + 2 * a.std_error


def test_payoff_hinges_are_hinges_at_the_payoff_quantiles():
    from hftsig.stopping.stoppers import _HINGE_QUANTILES

    x = paths.fbm(2_000, 10, 0.9, random_state=99)
    z = fbm_payoff(x)
    kw = dict(depth=2, lags=1, alpha=1e-4, sign_split=False)
    plain = SignatureStopper(payoff_hinges=False, **kw).fit(x, fbm_payoff)
    st = SignatureStopper(payoff_hinges=True, **kw).fit(x, fbm_payoff)
    # "auto" turns them on for payoffs of both signs, off for options
    assert SignatureStopper(**kw).fit(x, fbm_payoff).hinge_knots_ is not None
    assert SignatureStopper(**kw).fit(x, lambda w: np.abs(w[..., 0])).hinge_knots_ is None
    assert plain.hinge_knots_ is None
    np.testing.assert_allclose(st.hinge_knots_, np.quantile(z, _HINGE_QUANTILES, axis=0).T)
    assert st.n_features_ == plain.n_features_ + len(_HINGE_QUANTILES)
    k = 6
    feats = st._path_features(x, st.exercise_idx_)
    design = st._design(feats[k], z[:, k], k=k)
    np.testing.assert_array_equal(design[:, :plain.n_features_], plain._design(feats[k], z[:, k], k=k))
    np.testing.assert_allclose(design[:, plain.n_features_:],
                               np.maximum(z[:, k, None] - st.hinge_knots_[k][None, :], 0.0))
    # the rule with hinges is another rule, and the dual (inner features) takes them too
    assert not np.array_equal(st.stopping_times(x, fbm_payoff), plain.stopping_times(x, fbm_payoff))
    sim = paths.FBMContinuation(hurst=0.9, n_steps=10)
    low = st.value(paths.fbm(4_000, 10, 0.9, random_state=100), fbm_payoff, control=sim.martingale)
    up = st.dual_upper_bound(paths.fbm(20, 10, 0.9, random_state=101), fbm_payoff, sim, n_inner=50,
                             lower=low, random_state=0, control=sim.martingale)
    assert np.isfinite(up.value) and up.gap >= 0
    with pytest.raises(TypeError, match="payoff_hinges"):
        SignatureStopper(payoff_hinges="yes", **kw).fit(x, fbm_payoff)
    with pytest.raises(TypeError, match="payoff_hinges"):
        SignatureStopper(payoff_hinges=1, **kw).fit(x, fbm_payoff)


def test_payoff_hinges_in_every_candidate_of_the_selection():
    x = paths.fbm(3_000, 20, 0.9, random_state=102)
    # the "auto" selection carries the hinge columns in every candidate
    auto = SignatureStopper(payoff_hinges=True, random_state=0).fit(x, fbm_payoff)
    plain = SignatureStopper(payoff_hinges=False, random_state=0).fit(x, fbm_payoff)
    assert np.all(auto.cv_results_["n_columns"] - plain.cv_results_["n_columns"]
                  == 9 * np.where(plain.cv_results_["param_sign_split"], 2, 1))


def test_payoff_hinges_bend_the_fit_in_the_payoff_tail():
    # stopping fBm at H = 0.9: on the lowest payoffs at an early date the rule without
    # hinges keeps going although its own continuation falls far below the payoff
    sim = paths.FBMContinuation(hurst=0.9, n_steps=100)
    x = paths.fbm(20_000, 100, 0.9, random_state=103)
    z = fbm_payoff(x)
    share = {}
    for hinges in (False, True):
        st = SignatureStopper(depth=3, lags=5, alpha=1e-4, sign_split=False, payoff_hinges=hinges)
        st.fit(x, fbm_payoff, control=sim.martingale)
        cont = st._continuation(st._path_features(x, st.exercise_idx_), z)
        k = 5
        tail = z[:, k] < np.quantile(z[:, k], 0.005)
        share[hinges] = float(np.mean(cont[tail, k] > z[tail, k]))
    print(f"share of the lowest 0.5 % payoffs at date 5 where the rule continues: {share}")
    assert share[True] < share[False] - 0.3


def test_sign_split_coefficients_are_two_regressions():
    x = paths.fbm(2_000, 10, 0.3, random_state=94)
    st = SignatureStopper(depth=2, lags=0, alpha=1e-6, sign_split=True, payoff_hinges=False).fit(x, fbm_payoff)
    z = fbm_payoff(x)
    k = 5
    f = st._sig_len() + 3
    assert st.coef_.shape == (11, 2 * f + 1)
    pos_reg, neg_reg = st.regressors_[k]
    assert pos_reg is not neg_reg
    # on the split design the positive rows see the positive side's coefficients only
    feats = st._path_features(x, st.exercise_idx_)[k]
    design = st._design(feats, z[:, k])
    assert design.shape[1] == 2 * f + 1
    pos = z[:, k] > 0
    np.testing.assert_array_equal(design[pos, f:2 * f], 0.0)
    np.testing.assert_array_equal(design[~pos, :f], 0.0)
    # payoffs are never of one sign only here: both sides were fitted on their own rows
    assert pos.any() and (~pos).any()


def test_value_on_fresh_paths_pools_chunks_exactly(fitted_put):
    # the benchmark's (and the put table test's) lower bound on a million paths, in chunks
    stopbench = pytest.importorskip("benchmarks.stopping")
    rng = np.random.default_rng(7)
    whole = fitted_put.value(np.concatenate([put_paths(700, rng) for _ in range(4)] + [put_paths(200, rng)]),
                             put_payoff)
    pooled = stopbench.value_on_fresh_paths(fitted_put, lambda n, rng: put_paths(n, rng), 3_000, 7, put_payoff,
                                            chunk=700)
    assert pooled.n_paths == 3_000
    np.testing.assert_allclose(pooled[:2], whole[:2], rtol=1e-10)


def test_bermudan_put_lattice_single_date_is_black_scholes():
    # the put table's Bermudan reference: with one exercise date (at T) the lattice is the
    # European put, whose Black-Scholes value LS (2001) Table 1 lists as 3.844 (S0=36, T=1)
    from scipy.stats import norm

    stopbench = pytest.importorskip("benchmarks.stopping")
    s0, k, r, sigma, T = 36.0, 40.0, R_PUT, 0.2, 1.0
    d1 = (np.log(s0 / k) + (r + sigma ** 2 / 2) * T) / (sigma * np.sqrt(T))
    bs = k * np.exp(-r * T) * norm.cdf(-(d1 - sigma * np.sqrt(T))) - s0 * norm.cdf(-d1)
    assert stopbench.bermudan_put_lattice(s0, k, r, sigma, T, 1) == pytest.approx(bs, abs=2e-3)
    # 50 dates: LS's finite-difference value (4.478) to 0.05 %, above the European
    berm = stopbench.bermudan_put_lattice(s0, k, r, sigma, T, 50, steps_per_date=(20, 21))
    assert berm == pytest.approx(4.478, rel=5e-4) and bs < berm


# -- the default constructor on the three reference tables (slow) -------------------------
# Lower bounds on fresh paths of SignatureStopper(random_state=0): every setting chosen
# on held-out training paths.  Tolerances: the targets (0.5 % for the put, 1 %
# for the max-call and fBm) plus two standard errors of the estimate at hand.  The seeds
# are those of `python -m benchmarks.stopping --only validate-...`, whose tables
# (docs/stopping_validation.md) show these very estimates.

@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("row,case", list(enumerate(REF["american_put"]["cases"])),
                         ids=[f"S{c['S0']}-v{c['sigma']}-T{c['T']}" for c in REF["american_put"]["cases"]])
def test_default_constructor_put_table(row, case):
    T, s0, sigma = case["T"], case["S0"], case["sigma"]
    st = SignatureStopper(random_state=0).fit(put_paths(100_000, 20 + row, s0, sigma, T), put_payoff,
                                              discount=R_PUT, times=put_times(T))
    # a million fresh paths: on 100,000 the standard error at S0 = 44 (0.4-0.6 % of the
    # value) is as large as the target, and the distance would show the noise, not the rule
    stopbench = pytest.importorskip("benchmarks.stopping")
    low = stopbench.value_on_fresh_paths(st, lambda n, rng: put_paths(n, rng, s0, sigma, T), 1_000_000, 60 + row,
                                         put_payoff)
    print(f"put {s0}/{sigma}/{T}: {low.value:.4f} ± {low.std_error:.4f} (FD {case['fd']}), {st.best_params_}")
    assert abs(low.value - case["fd"]) <= 0.005 * case["fd"] + 2 * low.std_error


# Becker, Cheridito & Jentzen (2019), Table 1, d = 5 (same parameters as the 2-asset case),
# as quoted in issue 19
MAX_CALL_5 = {90: 16.64, 100: 26.16, 110: 36.77}
MAX_CALL_CASES = [(2, c["S0"], c["value"]) for c in REF["max_call"]["cases"]] + \
    [(5, s0, v) for s0, v in MAX_CALL_5.items()]


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("row,d,s0,ref", [(i,) + c for i, c in enumerate(MAX_CALL_CASES)],
                         ids=[f"d{d}-S{s0}" for d, s0, _ in MAX_CALL_CASES])
def test_default_constructor_max_call(row, d, s0, ref):
    def make(n, seed):
        return paths.gbm(n, MC["n_dates"], s0=[float(s0)] * d, mu=MC["r"] - MC["dividend"], sigma=MC["sigma"],
                         T=MC["T"], random_state=seed)
    st = SignatureStopper(random_state=0).fit(make(100_000, 100 + row), max_call_payoff,
                                              exercise_idx=np.arange(1, 10), discount=MC["r"],
                                              times=np.linspace(0.0, MC["T"], 10))
    low = st.value(make(100_000, 200 + row), max_call_payoff)
    print(f"max-call d={d} S0={s0}: {low.value:.4f} ± {low.std_error:.4f} (ref {ref}), {st.best_params_}")
    assert abs(low.value - ref) <= 0.01 * ref + 2 * low.std_error


def _fbm_any_paths(n, hurst, seed):
    return _linear_paths(n, seed, 100) if hurst == 1.0 else paths.fbm(n, 100, hurst, random_state=seed)


def _linear_path_martingale(w):
    # W_t = t Z: E[W_1 | F_t] = W_t / t = Z once t > 0, and E[W_1] = 0 at t = 0
    out = np.zeros(w.shape[:2])
    out[:, 1:] = w[:, 1:, 0] / np.linspace(0.0, 1.0, 101)[1:]
    return out


# outer x inner paths of the dual upper bound of the default rule, per H.  The estimated
# gap is skewed (a few outer paths carry most of it), so few outer paths tend to understate
# it: 200-600 outer paths per row (docs/stopping_validation.md).  The rule is fitted with the
# model's martingale as control (fit(control=...)): without it H = 0.4 and 0.6 missed the
# target (1.79 % and 1.61 % below their duals; with it 0.37 % and 0.37 %); the default hinges
# at the payoff's quantiles (payoff_hinges="auto") bring H = 0.9 from 1.51 % to 0.77 %.
FBM_DEFAULT_DUAL = {0.01: (200, 200), 0.05: (200, 200), 0.1: (200, 200), 0.2: (200, 300), 0.3: (200, 400),
                    0.4: (200, 300), 0.6: (600, 500), 0.7: (200, 400), 0.8: (600, 300), 0.9: (600, 300)}
FBM_DEFAULT_HURST = [0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0]


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("hurst", FBM_DEFAULT_HURST)
def test_default_constructor_fbm(hurst):
    train, test = _fbm_any_paths(50_000, hurst, 1), _fbm_any_paths(100_000, hurst, 2)
    # the model's martingale E[W_1 | F_t] serves the fit's regressions and the
    # evaluation (at H = 1/2 it is W itself and would make every estimate 0)
    if hurst == 0.5:
        control = None
    elif hurst == 1.0:
        control = _linear_path_martingale
    else:
        control = _fbm_sim(hurst).martingale
    st = SignatureStopper(random_state=0).fit(train, fbm_payoff, control=control)
    if hurst == 0.5:
        # a martingale: every rule is worth exactly 0 (the control would hide the rule, as
        # it makes every estimate 0); absolute tolerance, 1 % of the H = 1 value
        low = st.value(test, fbm_payoff)
        print(f"fbm H=0.5: {low.value:.4f} ± {low.std_error:.4f}, {st.best_params_}")
        assert abs(low.value) <= 0.004 + 2 * low.std_error
        return
    if hurst == 1.0:
        exact = 0.99 / np.sqrt(2 * np.pi)
        low = st.value(test, fbm_payoff, control=_linear_path_martingale)
        print(f"fbm H=1: {low.value:.4f} ± {low.std_error:.4f} (exact {exact:.5f}), {st.best_params_}")
        assert abs(low.value - exact) <= 0.01 * exact + 2 * low.std_error
        return
    sim = _fbm_sim(hurst)
    low = st.value(test, fbm_payoff, control=sim.martingale)
    n_outer, n_inner = FBM_DEFAULT_DUAL[hurst]
    up = st.dual_upper_bound(_fbm_any_paths(n_outer, hurst, 3), fbm_payoff, sim, n_inner=n_inner, lower=low,
                             random_state=5, control=sim.martingale)
    print(f"fbm H={hurst}: {low.value:.4f} ± {low.std_error:.4f}, upper {up.value:.4f} ± {up.std_error:.4f}, "
          f"{st.best_params_}")
    # the upper bound is lower bound + estimated duality gap: the default rule is within
    # 1 % of the value the dual certifies (up to two standard errors of the gap)
    assert up.gap <= 0.01 * up.value + 2 * up.gap_std_error


# -- API, logsig, errors ------------------------------------------------------------------

def test_sklearn_conventions():
    st = SignatureStopper(depth=4, alpha=1e-3)
    assert st.get_params()["depth"] == 4
    c = clone(st)
    assert c.get_params() == st.get_params()
    assert not hasattr(st, "coef_")
    with pytest.raises(Exception, match="not fitted"):
        st.value(put_paths(10, 0), put_payoff)


def test_logsig_features_fit_and_match_signature_information():
    x, y = put_paths(4_000, 60), put_paths(20_000, 61)
    a = SignatureStopper(depth=3, lags=0, logsig=True).fit(x, put_payoff, discount=R_PUT, times=put_times())
    b = SignatureStopper(depth=3, lags=0, logsig=False).fit(x, put_payoff, discount=R_PUT, times=put_times())
    # (time, S) at depth 3: 5 Lyndon words against 14 words, plus 3 payoff powers
    assert a.n_features_ == 5 + 3 and b.n_features_ == 14 + 3
    va, vb = a.value(y, put_payoff), b.value(y, put_payoff)
    assert abs(va.value - vb.value) < 4 * va.std_error
    assert abs(va.value - _put_case()["fd"]) < 0.02 * _put_case()["fd"]


def test_exercise_idx_and_array_payoffs_agree_with_callable():
    x = max_call_paths(2_000, 70, 100)
    z = max_call_payoff(x)
    kw = dict(exercise_idx=np.arange(1, 10), discount=MC["r"], times=np.linspace(0.0, 3.0, 10))
    a = SignatureStopper(depth=2).fit(x, max_call_payoff, **kw)
    b = SignatureStopper(depth=2).fit(x, z, **kw)
    np.testing.assert_allclose(a.coef_, b.coef_)
    assert np.array_equal(a.stopping_times(x, z), b.stopping_times(x, max_call_payoff))
    # explicit discount factors equal the rate
    c = SignatureStopper(depth=2).fit(x, z, exercise_idx=np.arange(1, 10),
                                      discount=np.exp(-MC["r"] * np.arange(1, 10) / 3))
    np.testing.assert_allclose(a.discount_factors_, c.discount_factors_)
    np.testing.assert_allclose(a.coef_, c.coef_, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("make, exc, match", [
    (lambda x, z: SignatureStopper(depth=0).fit(x, z), ValueError, "depth"),
    (lambda x, z: SignatureStopper(depth=2.5).fit(x, z), TypeError, "depth"),
    (lambda x, z: SignatureStopper(alpha=-1).fit(x, z), ValueError, "alpha"),
    (lambda x, z: SignatureStopper().fit(x, z[:, :-1]), ValueError, "payoffs"),
    (lambda x, z: SignatureStopper().fit(x[:-1], z), ValueError, "payoffs"),
    (lambda x, z: SignatureStopper().fit(x[:, :1], z[:, :1]), ValueError, "n_dates >= 2"),
    (lambda x, z: SignatureStopper().fit(x, z, exercise_idx=[3]), ValueError, "n_dates >= 2"),
    (lambda x, z: SignatureStopper().fit(x, z, exercise_idx=[0, 99]), ValueError, "exercise_idx"),
    (lambda x, z: SignatureStopper().fit(x, z, exercise_idx=[2, 1]), ValueError, "exercise_idx"),
    (lambda x, z: SignatureStopper().fit(np.where(x > 37, np.nan, x), z), ValueError, "paths contains NaN"),
    (lambda x, z: SignatureStopper().fit(x, np.where(z > 1, np.nan, z)), ValueError, "payoffs contains NaN"),
    (lambda x, z: SignatureStopper().fit(x, lambda p: p[:, :3, 0]), ValueError, "callable returned"),
    (lambda x, z: SignatureStopper().fit(x, z, discount=np.ones(3)), ValueError, "discount"),
    (lambda x, z: SignatureStopper().fit(x, z, times=np.zeros(x.shape[1])), ValueError, "times"),
    (lambda x, z: SignatureStopper().fit(x[..., 0][..., None, None], z), ValueError, "paths"),
    (lambda x, z: SignatureStopper().fit("paths", z), TypeError, "paths"),
    (lambda x, z: SignatureStopper(in_the_money="yes").fit(x, z), ValueError, "in_the_money"),
    (lambda x, z: SignatureStopper(logsig=1).fit(x, z), TypeError, "logsig"),
    (lambda x, z: SignatureStopper(n_jobs=0).fit(x, z), ValueError, "n_jobs"),
    (lambda x, z: SignatureStopper(lags=-1).fit(x, z), ValueError, "lags"),
    (lambda x, z: SignatureStopper(lags=1.5).fit(x, z), TypeError, "lags"),
    (lambda x, z: PolynomialStopper(degree=0).fit(x, z), ValueError, "degree"),
    (lambda x, z: SignatureStopper(depth="deep").fit(x, z), TypeError, "depth"),
    (lambda x, z: SignatureStopper(alpha="big").fit(x, z), TypeError, "alpha"),
    (lambda x, z: SignatureStopper(sign_split="yes").fit(x, z), TypeError, "sign_split"),
    (lambda x, z: SignatureStopper(validation_fraction=1.0).fit(x, z), ValueError, "validation_fraction"),
    (lambda x, z: SignatureStopper(validation_fraction="a").fit(x, z), TypeError, "validation_fraction"),
    (lambda x, z: SignatureStopper().fit(x[:2], z[:2]), ValueError, "too few"),
])
def test_bad_input_raises_clear_errors(make, exc, match):
    x = put_paths(50, 80)[:, :6]
    z = put_payoff(x)
    with pytest.raises(exc, match=match):
        make(x, z)


def test_bad_input_after_fit():
    x = put_paths(200, 81)[:, :6]
    st = SignatureStopper(depth=2).fit(x, put_payoff)
    with pytest.raises(ValueError, match="n_points=6"):
        st.value(put_paths(10, 82)[:, :5], put_payoff)
    with pytest.raises(TypeError, match="callable"):
        st.dual_upper_bound(x, put_payoff(x), lambda *a: None)
    with pytest.raises(TypeError, match="simulator"):
        st.dual_upper_bound(x, put_payoff, "gbm")
    bad_sim = lambda h, n_inner, n_future, rng: np.zeros((1, 1, 1, 1))  # noqa: E731
    with pytest.raises(ValueError, match="simulator returned shape"):
        st.dual_upper_bound(x[:5], put_payoff, bad_sim, n_inner=2)
