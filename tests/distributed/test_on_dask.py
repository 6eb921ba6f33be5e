"""hftsig on a Dask cluster: signatures, simulation, stopping fits and bounds, thread caps.

One two-worker LocalCluster (separate processes, so everything crosses a
real serialisation boundary) serves the module; skipped without the
``hftsig[dask]`` extra.
"""
import os
import subprocess
import sys

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

import hftsig  # noqa: E402
from hftsig.distributed.on_dask import simulate  # noqa: E402
from hftsig.signatures.signature import _n_threads  # noqa: E402
from hftsig.stopping import processes as paths  # noqa: E402
from hftsig.stopping.stoppers import PolynomialStopper, SignatureStopper  # noqa: E402

# the in-memory fit itself moves its coefficients by ~2e-9 (relative) when the
# same paths come in another order (the standardised Gram matrix of depth-3
# signature features has a condition number near 1e7); the Dask fit must
# agree within a small multiple of that
COEF_RTOL = 2e-8


def put(s):
    return np.maximum(40.0 - s[..., 0], 0.0)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    # the workers' scratch space goes under pytest's temporary directory, not the cwd
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                       dashboard_address=":0", memory_limit="1GiB",
                                       local_directory=str(tmp_path_factory.mktemp("dask")))
    with cluster, distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def gbm_paths():
    return paths.gbm(3000, 20, s0=36.0, mu=0.06, sigma=0.2, T=1.0, random_state=0)


def _coef_close(fitted, reference):
    scale = np.abs(reference.coef_).max()
    np.testing.assert_allclose(fitted.coef_, reference.coef_, rtol=0, atol=COEF_RTOL * scale)
    finite = np.isfinite(reference.intercept_)
    np.testing.assert_array_equal(np.isfinite(fitted.intercept_), finite)
    np.testing.assert_allclose(fitted.intercept_[finite], reference.intercept_[finite], rtol=0,
                               atol=COEF_RTOL * np.abs(reference.intercept_[finite]).max())


# -- signatures ---------------------------------------------------------------------
def test_sig_logsig_transformer_on_dask_arrays(client):
    x = np.cumsum(np.random.default_rng(0).normal(size=(50, 9, 2)), axis=1)
    # chunked along the points too: rechunked so that a block holds whole paths
    xd = da.from_array(x, chunks=(16, 4, 2))
    cases = [
        (hftsig.sig(xd, 3), hftsig.sig(x, 3)),
        (hftsig.sig(xd, 2, at=[8, 3], time_aug=True), hftsig.sig(x, 2, at=[8, 3], time_aug=True)),
        (hftsig.sig(xd, 2, stream=True), hftsig.sig(x, 2, stream=True)),
        (hftsig.logsig(xd, 3, lead_lag=True), hftsig.logsig(x, 3, lead_lag=True)),
        (hftsig.sig(xd[0], 3), hftsig.sig(x[0], 3)),
    ]
    st = hftsig.SignatureTransformer(depth=3, logsig=True, time_aug=True).fit(xd)
    cases.append((st.transform(xd), st.transform(x)))
    for lazy, expected in cases:
        assert isinstance(lazy, da.Array)
        assert lazy.shape == expected.shape
        if lazy.ndim == expected.ndim and x.shape[0] == expected.shape[0]:
            assert lazy.chunks[0] == (16, 16, 16, 2)
        np.testing.assert_allclose(lazy.compute(), expected, rtol=1e-13, atol=1e-13)


def test_sig_builds_a_graph_and_computes_on_the_workers(client):
    import dask

    client_pid = os.getpid()
    seen = []

    def block(seed):
        seen.append(os.getpid())
        return np.cumsum(np.random.default_rng(seed).normal(size=(5, 6, 2)), axis=1), os.getpid()

    parts = [dask.delayed(block)(seed) for seed in range(3)]
    x = da.concatenate([da.from_delayed(p[0], shape=(5, 6, 2), dtype=float) for p in parts])
    lazy = hftsig.sig(x, 2)
    assert seen == []  # sig only built a graph
    values, pids = dask.compute(lazy, [p[1] for p in parts])
    assert seen == [] and client_pid not in pids  # the paths were made and signed on the workers
    np.testing.assert_allclose(values, hftsig.sig(x.compute(), 2), rtol=1e-13)


def test_bad_arguments_fail_on_the_client_before_any_compute(client):
    xd = da.zeros((10, 5, 2), chunks=5)
    with pytest.raises(ValueError, match="depth"):
        hftsig.sig(xd, 0)
    with pytest.raises(TypeError, match="at"):
        hftsig.sig(xd, 2, at=[1.5])
    with pytest.raises(ValueError, match="basis"):
        hftsig.logsig(xd, 2, basis="hall")
    with pytest.raises(TypeError, match="path"):
        hftsig.sig(da.zeros((4, 3, 2), dtype=complex, chunks=2), 2)
    st = hftsig.SignatureTransformer(depth=2).fit(xd)
    with pytest.raises(ValueError, match="channels"):
        st.transform(da.zeros((4, 5, 3), chunks=2))


# -- simulation ---------------------------------------------------------------------
def test_simulate_is_reproducible_per_chunking(client):
    kw = dict(s0=36.0, mu=0.06, sigma=0.2)
    a = simulate("gbm", 1000, 10, chunk_size=300, random_state=7, **kw)
    assert a.chunks[0] == (300, 300, 300, 100)
    first = a.compute()
    np.testing.assert_array_equal(first, simulate("gbm", 1000, 10, chunk_size=300,
                                                  random_state=7, **kw).compute())
    # chunk i is the generator run with the i-th spawned seed
    child = np.random.SeedSequence(7).spawn(4)[2]
    np.testing.assert_array_equal(first[600:900], paths.gbm(300, 10, random_state=child, **kw))
    assert not np.array_equal(first, simulate("gbm", 1000, 10, chunk_size=250,
                                              random_state=7, **kw).compute())
    w = simulate("fbm", 400, 8, chunk_size=100, random_state=1, hurst=0.3).compute()
    assert w.shape == (400, 9, 1) and np.isfinite(w).all()
    with pytest.raises(TypeError, match="random_state"):
        simulate("gbm", 10, 4, random_state=np.random.default_rng(0), **kw)
    with pytest.raises(ValueError, match="generator"):
        simulate("heston", 10, 4)


# -- optimal stopping ----------------------------------------------------------------
# explicit settings (the "auto" ones are chosen on a sample: tested below)
FIXED = dict(lags=0, alpha=1e-6, sign_split=False)


@pytest.mark.parametrize("params", [dict(FIXED, depth=3), dict(FIXED, depth=2, lags=2, logsig=True),
                                    dict(FIXED, depth=2, in_the_money=False),
                                    dict(FIXED, depth=2, in_the_money=False, sign_split=True)])
def test_dask_fit_equals_in_memory_fit_whatever_the_chunking(client, gbm_paths, params):
    x = gbm_paths
    ref = SignatureStopper(progress=False, **params).fit(x, put, discount=0.06)
    fits = [SignatureStopper(progress=False, **params).fit(da.from_array(x, chunks=(c, -1, -1)),
                                                           put, discount=0.06)
            for c in (700, 2000)]
    fresh = paths.gbm(3000, 20, s0=36.0, mu=0.06, sigma=0.2, T=1.0, random_state=1)
    for fitted in fits:
        _coef_close(fitted, ref)
        np.testing.assert_array_equal(fitted.n_regression_paths_, ref.n_regression_paths_)
        assert fitted.itm_only_ == ref.itm_only_
        assert fitted.in_sample_value_ == pytest.approx(ref.in_sample_value_, rel=1e-12)
        np.testing.assert_array_equal(fitted.stopping_times(x, put), ref.stopping_times(x, put))
        np.testing.assert_array_equal(fitted.stopping_times(fresh, put),
                                      ref.stopping_times(fresh, put))


def test_dask_fit_chooses_the_auto_settings_as_in_memory(client, gbm_paths):
    """Left at "auto", the settings are chosen on the same evenly spaced
    sample as in memory (here every path: fewer than the sample's cap), then
    the fit runs on the workers: same choice, same candidates' values."""
    x = gbm_paths[:2000]
    ref = SignatureStopper(progress=False).fit(x, put, discount=0.06)
    got = SignatureStopper(progress=False).fit(da.from_array(x, chunks=(700, -1, -1)), put,
                                               discount=0.06)
    assert got.best_params_ == ref.best_params_
    assert (got.depth_, got.lags_, got.alpha_, got.sign_split_) == (
        ref.depth_, ref.lags_, ref.alpha_, ref.sign_split_)
    np.testing.assert_array_equal(got.cv_results_["mean_validation_value"],
                                  ref.cv_results_["mean_validation_value"])
    assert got.n_selection_paths_ == ref.n_selection_paths_ and got.selection_time_ > 0
    assert got.n_folds_ == ref.n_folds_
    assert got.coef_.shape == ref.coef_.shape
    assert got.in_sample_value_ == pytest.approx(ref.in_sample_value_, rel=1e-6)


def test_dask_fit_with_payoff_array_exercise_dates_and_polynomial_stopper(client, gbm_paths):
    x = gbm_paths[:2000]
    idx = np.arange(0, 21, 4)
    z = put(x[:, idx])
    ref = SignatureStopper(depth=2, progress=False, **FIXED).fit(x, z, exercise_idx=idx,
                                                                 discount=0.06)
    got = SignatureStopper(depth=2, progress=False, **FIXED).fit(da.from_array(x, chunks=600), z,
                                                                 exercise_idx=idx, discount=0.06)
    _coef_close(got, ref)
    ref = PolynomialStopper(degree=2, progress=False).fit(x, put, discount=0.06)
    got = PolynomialStopper(degree=2, progress=False).fit(da.from_array(x, chunks=900), put,
                                                          discount=0.06)
    _coef_close(got, ref)
    assert got.in_sample_value_ == pytest.approx(ref.in_sample_value_, rel=1e-12)


def _fbm_payoff(w):
    return w[..., 0]


def test_dask_fit_with_a_control_equals_in_memory(client):
    from hftsig.stopping.processes import FBMContinuation

    x = paths.fbm(2000, 20, 0.4, random_state=11)
    ctl = FBMContinuation(hurst=0.4, n_steps=20).martingale
    params = dict(depth=2, lags=2, alpha=1e-6, sign_split=False, progress=False)
    ref = SignatureStopper(**params).fit(x, _fbm_payoff, control=ctl)
    plain = SignatureStopper(**params).fit(x, _fbm_payoff)
    assert not np.allclose(ref.coef_, plain.coef_)
    for chunks in (600, 2000):
        got = SignatureStopper(**params).fit(da.from_array(x, chunks=(chunks, -1, -1)), _fbm_payoff,
                                             control=ctl)
        _coef_close(got, ref)
        assert got.in_sample_value_ == pytest.approx(ref.in_sample_value_, rel=1e-12)
    with pytest.raises(TypeError, match="control must be a callable"):
        SignatureStopper(**params).fit(da.from_array(x, chunks=600), _fbm_payoff, control=3)


@pytest.mark.parametrize("params", [dict(depth=2, lags=2, alpha=1e-6, sign_split=False), dict(depth=2)])
def test_dask_fit_with_payoff_hinges_equals_in_memory(client, params):
    # the hinges sit at the quantiles of the evenly spaced selection sample, which the
    # dask fit gathers whether or not any setting is "auto"
    x = paths.fbm(2000, 20, 0.9, random_state=12)
    ref = SignatureStopper(payoff_hinges=True, progress=False, **params).fit(x, _fbm_payoff)
    got = SignatureStopper(payoff_hinges=True, progress=False, **params).fit(
        da.from_array(x, chunks=(700, -1, -1)), _fbm_payoff)
    np.testing.assert_array_equal(got.hinge_knots_, ref.hinge_knots_)
    assert got.best_params_ == ref.best_params_
    _coef_close(got, ref)


def test_dask_fit_on_simulated_paths_never_gathers_them(client):
    x = simulate("gbm", 3000, 10, chunk_size=1000, random_state=3, s0=36.0, mu=0.06, sigma=0.2)
    # (explicit settings: "auto" would gather its selection sample)
    got = SignatureStopper(depth=2, progress=False, **FIXED).fit(x, put, discount=0.06)
    ref = SignatureStopper(depth=2, progress=False, **FIXED).fit(x.compute(), put, discount=0.06)
    _coef_close(got, ref)


def test_dask_fit_rejects_bad_input(client, gbm_paths):
    bad = gbm_paths[:100].copy()
    bad[3, 4, 0] = np.nan
    for params in (FIXED, {}):  # on the workers; in the "auto" selection sample
        with pytest.raises(ValueError, match="NaN"):
            SignatureStopper(depth=2, **params).fit(da.from_array(bad, chunks=50), put)
        with pytest.raises(ValueError, match="payoffs"):
            SignatureStopper(depth=2, **params).fit(da.from_array(gbm_paths[:100], chunks=50),
                                                    np.zeros((100, 3)))
        with pytest.raises(ValueError, match="at least 2 paths"):
            SignatureStopper(depth=2, **params).fit(da.from_array(gbm_paths[:1], chunks=1), put)


def test_value_and_dual_bound_split_by_chunks(client, gbm_paths):
    st = SignatureStopper(depth=2, progress=False, **FIXED).fit(gbm_paths, put, discount=0.06)
    y = paths.gbm(3000, 20, s0=36.0, mu=0.06, sigma=0.2, T=1.0, random_state=1)
    ref = st.value(y, put)
    for chunks in (1000, 1300):
        got = st.value(da.from_array(y, chunks=chunks), put)
        assert got.n_paths == ref.n_paths
        assert got.value == pytest.approx(ref.value, rel=1e-13)
        assert got.std_error == pytest.approx(ref.std_error, rel=1e-10)

    sim = paths.GBMContinuation(mu=0.06, sigma=0.2, dt=1 / 20)
    outer = paths.gbm(40, 20, s0=36.0, mu=0.06, sigma=0.2, T=1.0, random_state=2)
    # one chunk: the in-memory bound with the chunk's spawned seed
    one = st.dual_upper_bound(da.from_array(outer, chunks=40), put, sim, n_inner=16,
                              random_state=5)
    rng = np.random.default_rng(np.random.SeedSequence(5).spawn(1)[0])
    mem = st.dual_upper_bound(outer, put, sim, n_inner=16, random_state=rng)
    assert one == pytest.approx(mem, rel=1e-13)
    # two chunks: reproducible, pooled over the 40 outer paths, above the lower bound
    two = st.dual_upper_bound(da.from_array(outer, chunks=20), put, sim, n_inner=16,
                              random_state=5, lower=ref)
    again = st.dual_upper_bound(da.from_array(outer, chunks=20), put, sim, n_inner=16,
                                random_state=5, lower=ref)
    assert two == again
    assert two.n_paths == 40 and two.gap >= 0
    assert two.value == pytest.approx(ref.value + two.gap)


# -- threads -------------------------------------------------------------------------
def test_kernels_take_the_workers_threads_not_the_machines(client, tmp_path_factory):
    assert _n_threads(-1) == (os.cpu_count() or 1)  # on the client: every core
    # one thread per worker: a task may take one, whatever it asks for
    assert client.submit(_n_threads, -1, pure=False).result() == 1
    assert client.submit(_n_threads, 8, pure=False).result() == 1
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address=":0",
                                  local_directory=str(tmp_path_factory.mktemp("dask"))) as cluster, \
            distributed.Client(cluster) as wide:
        # a lone task on a two-thread worker keeps both (the OpenMP kernels use them)
        assert wide.submit(_n_threads, -1, pure=False).result() == 2
        assert wide.submit(_n_threads, 1, pure=False).result() == 1
        # a worker living in this process caps its tasks, not the client's own calls
        assert _n_threads(-1) == (os.cpu_count() or 1)


def test_missing_extra_names_it():
    code = ("import sys; sys.modules['dask'] = None\n"
            "try:\n    import hftsig.distributed.on_dask\nexcept ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": os.getcwd()}, timeout=120)
    assert "hftsig[dask]" in out.stdout
