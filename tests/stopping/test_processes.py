import numpy as np
import pytest

from hftsig.stopping import processes as paths

# -- gbm ---------------------------------------------------------------------------

def test_gbm_shape_start_and_lognormal_moments():
    n, s0, mu, sigma, T = 200_000, 50.0, 0.07, 0.3, 2.0
    s = paths.gbm(n, 8, s0=s0, mu=mu, sigma=sigma, T=T, random_state=0)
    assert s.shape == (n, 9, 1) and s.dtype == np.float64
    assert np.all(s[:, 0] == s0)
    log_ret = np.log(s[:, -1, 0] / s0)
    # exact law: N((mu - sigma^2/2) T, sigma^2 T); tolerances are 5 standard errors
    m, v = (mu - 0.5 * sigma ** 2) * T, sigma ** 2 * T
    assert abs(log_ret.mean() - m) < 5 * np.sqrt(v / n)
    assert abs(log_ret.var() - v) < 5 * v * np.sqrt(2 / n)
    # E[S_T] = s0 exp(mu T)
    assert abs(s[:, -1, 0].mean() / (s0 * np.exp(mu * T)) - 1) < 5 * np.sqrt(np.expm1(v) / n)


def test_gbm_correlation_of_log_increments():
    corr = np.array([[1.0, 0.6, -0.3], [0.6, 1.0, 0.2], [-0.3, 0.2, 1.0]])
    s = paths.gbm(40_000, 5, s0=[100.0, 90.0, 80.0], mu=[0.0, 0.05, 0.1],
                  sigma=[0.2, 0.3, 0.4], corr=corr, T=1.0, random_state=1)
    inc = np.diff(np.log(s), axis=1).reshape(-1, 3)
    est = np.corrcoef(inc.T)
    # standard error of a sample correlation is about (1 - rho^2) / sqrt(n), n = 200,000
    assert np.allclose(est, corr, atol=0.01)
    sd = inc.std(axis=0) / np.sqrt(1.0 / 5)
    assert np.allclose(sd, [0.2, 0.3, 0.4], rtol=0.01)


def test_gbm_is_deterministic_given_seed():
    a = paths.gbm(10, 4, s0=1.0, mu=0.0, sigma=0.2, random_state=42)
    b = paths.gbm(10, 4, s0=1.0, mu=0.0, sigma=0.2, random_state=np.random.default_rng(42))
    c = paths.gbm(10, 4, s0=1.0, mu=0.0, sigma=0.2, random_state=43)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("kwargs, match", [
    (dict(s0=-1.0, mu=0.0, sigma=0.2), "s0"),
    (dict(s0=1.0, mu=0.0, sigma=-0.2), "sigma"),
    (dict(s0=[1.0, 2.0], mu=[0.0, 0.1, 0.2], sigma=0.2), "inconsistent"),
    (dict(s0=[1.0, 2.0], mu=0.0, sigma=0.2, corr=[[1, 2], [2, 1]]), "corr"),
    (dict(s0=[1.0, 2.0], mu=0.0, sigma=0.2, corr=np.eye(3)), "corr"),
    (dict(s0=1.0, mu=np.nan, sigma=0.2), "mu"),
    (dict(s0=1.0, mu=0.0, sigma=0.2, T=0.0), "T"),
])
def test_gbm_errors_name_the_argument(kwargs, match):
    with pytest.raises(ValueError, match=match):
        paths.gbm(5, 3, **kwargs)


def test_count_errors():
    with pytest.raises(ValueError, match="n_paths"):
        paths.gbm(0, 3, s0=1.0, mu=0.0, sigma=0.2)
    with pytest.raises(ValueError, match="n_steps"):
        paths.fbm(3, 0, 0.3)
    with pytest.raises(TypeError, match="n_steps"):
        paths.ornstein_uhlenbeck(3, 2.5, theta=1.0, sigma=1.0)
    with pytest.raises(TypeError, match="random_state"):
        paths.fbm(3, 4, 0.3, random_state="seed")


def test_argument_errors_share_the_package_style():
    # "name: what was expected, got what was given", as in hftsig.signatures
    with pytest.raises(TypeError, match=r"^n_steps: expected an int, got float$"):
        paths.gbm(3, 2.5, s0=1.0, mu=0.0, sigma=0.2)
    with pytest.raises(ValueError, match=r"^n_paths: must be >= 1, got 0$"):
        paths.fbm(0, 3, 0.3)
    with pytest.raises(ValueError, match=r"^T: must be > 0 and finite, got -1.0$"):
        paths.ornstein_uhlenbeck(3, 2, theta=1.0, sigma=1.0, T=-1.0)
    with pytest.raises(TypeError, match=r"^hurst: expected a real number, got str$"):
        paths.fbm(3, 4, "0.3")
    # a bool is no seed: True used to be taken as the seed 1
    with pytest.raises(TypeError, match=r"^random_state: expected None, an int, a SeedSequence "
                                        r"or a Generator, got bool$"):
        paths.gbm(3, 2, s0=1.0, mu=0.0, sigma=0.2, random_state=True)
    sim = paths.GBMContinuation(mu=0.0, sigma=0.2, dt=0.1)
    hist = paths.gbm(2, 2, s0=1.0, mu=0.0, sigma=0.2, random_state=0)
    with pytest.raises(TypeError, match=r"^rng: expected None, an int, a SeedSequence"):
        sim(hist, 2, 1, np.random.RandomState(0))


def test_gbm_continuation_matches_the_model():
    sim = paths.GBMContinuation(mu=0.05, sigma=0.25, dt=0.1)
    hist = paths.gbm(3, 4, s0=[10.0], mu=0.05, sigma=0.25, T=0.4, random_state=0)
    cont = sim(hist, 100_000, 3, np.random.default_rng(1))
    assert cont.shape == (3, 100_000, 3, 1)
    # E[S_{t+3dt} | S_t] = S_t exp(0.05 * 0.3); antithetic pairs keep the mean unbiased
    ratio = cont[:, :, -1, 0].mean(axis=1) / (hist[:, -1, 0] * np.exp(0.05 * 0.3))
    assert np.allclose(ratio, 1.0, atol=0.005)
    with pytest.raises(ValueError, match="n_inner"):
        sim(hist, 3, 2, np.random.default_rng(0))


# -- fbm -----------------------------------------------------------------------------

def _fbm_cov(t, hurst):
    s, u = np.meshgrid(t, t, indexing="ij")
    return 0.5 * (s ** (2 * hurst) + u ** (2 * hurst) - np.abs(s - u) ** (2 * hurst))


@pytest.mark.parametrize("hurst", [0.05, 0.3, 0.5, 0.8])
def test_fbm_covariance_matches_theory(hurst):
    n_paths, n_steps, T = 60_000, 16, 2.0
    w = paths.fbm(n_paths, n_steps, hurst, T=T, random_state=7)
    assert w.shape == (n_paths, n_steps + 1, 1)
    assert np.all(w[:, 0] == 0.0)
    x = w[:, 1:, 0]
    t = np.linspace(0, T, n_steps + 1)[1:]
    theory = _fbm_cov(t, hurst)
    emp = x.T @ x / n_paths
    # entries are second moments of Gaussians: SE <= sqrt(2) * var / sqrt(n)
    scale = np.sqrt(np.outer(np.diag(theory), np.diag(theory)))
    assert np.max(np.abs(emp - theory) / scale) < 6 * np.sqrt(2 / n_paths)
    # increments: stationary fractional Gaussian noise with lag-k autocovariance
    inc = np.diff(w[:, :, 0], axis=1)
    dt = T / n_steps
    for k in (0, 1, 3):
        gamma = 0.5 * dt ** (2 * hurst) * (abs(k + 1) ** (2 * hurst) - 2 * k ** (2 * hurst)
                                             + abs(k - 1) ** (2 * hurst))
        emp_k = np.mean(inc[:, k:] * inc[:, :n_steps - k])
        assert abs(emp_k - gamma) < 6 * dt ** (2 * hurst) * np.sqrt(2 / n_paths)


def test_fbm_cholesky_agrees_with_davies_harte_in_law():
    a = paths.fbm(40_000, 10, 0.2, random_state=1)
    b = paths.fbm(40_000, 10, 0.2, random_state=2, method="cholesky")
    va, vb = a[:, 1:, 0].var(axis=0), b[:, 1:, 0].var(axis=0)
    assert np.allclose(va, vb, rtol=0.05)
    assert np.allclose(va, (np.arange(1, 11) / 10) ** 0.4, rtol=0.05)


def test_fbm_deterministic_and_errors():
    assert np.array_equal(paths.fbm(5, 7, 0.4, random_state=3), paths.fbm(5, 7, 0.4, random_state=3))
    with pytest.raises(ValueError, match="hurst"):
        paths.fbm(5, 7, 1.0)
    with pytest.raises(ValueError, match="hurst"):
        paths.fbm(5, 7, 0.0)
    with pytest.raises(TypeError, match="hurst"):
        paths.fbm(5, 7, "0.3")
    with pytest.raises(ValueError, match="method"):
        paths.fbm(5, 7, 0.3, method="hosking")


# -- Ornstein-Uhlenbeck ------------------------------------------------------------------

def test_ou_mean_and_variance_are_exact():
    theta, mu, sigma, x0, T, n = 1.5, 2.0, 0.8, -1.0, 3.0, 200_000
    x = paths.ornstein_uhlenbeck(n, 6, theta=theta, mu=mu, sigma=sigma, x0=x0, T=T, random_state=0)
    assert x.shape == (n, 7, 1) and np.all(x[:, 0] == x0)
    t = np.linspace(0, T, 7)
    mean = mu + (x0 - mu) * np.exp(-theta * t)
    var = sigma ** 2 * (1 - np.exp(-2 * theta * t)) / (2 * theta)
    assert np.all(np.abs(x[:, :, 0].mean(axis=0) - mean) < 5 * np.sqrt(var / n) + 1e-12)
    assert np.allclose(x[:, 1:, 0].var(axis=0), var[1:], rtol=5 * np.sqrt(2 / n))
    # stationary autocovariance at lag one step: var * exp(-theta dt) at late times
    lag = np.mean((x[:, -1, 0] - mean[-1]) * (x[:, -2, 0] - mean[-2]))
    assert abs(lag - var[-2] * np.exp(-theta * T / 6)) < 5 * var[-1] * np.sqrt(2 / n)


def test_ou_zero_speed_is_brownian_and_multidim():
    x = paths.ornstein_uhlenbeck(50_000, 4, theta=[0.0, 3.0], mu=[0.0, 1.0], sigma=[1.0, 0.5],
                                 corr=[[1.0, 0.5], [0.5, 1.0]], T=1.0, random_state=5)
    assert x.shape == (50_000, 5, 2)
    assert abs(x[:, -1, 0].var() - 1.0) < 0.03
    assert np.all(x[:, 0] == [0.0, 1.0])
    with pytest.raises(ValueError, match="theta"):
        paths.ornstein_uhlenbeck(3, 3, theta=-1.0, sigma=1.0)
    with pytest.raises(ValueError, match="inconsistent"):
        paths.ornstein_uhlenbeck(3, 3, theta=[1.0, 2.0], mu=[0.0, 0.0, 0.0], sigma=1.0)


def test_fbm_continuation_has_the_fbm_law():
    # history up to point 8, continued to 20 points: the joined paths must have
    # the covariance (s^2H + t^2H - |t - s|^2H) / 2 across the junction
    hurst, n = 0.2, 20
    hist = paths.fbm(40_000, 8, hurst, T=8 / n, random_state=3)
    sim = paths.FBMContinuation(hurst=hurst, n_steps=n)
    cont = sim(hist, 1, n - 8, np.random.default_rng(4))
    assert cont.shape == (40_000, 1, n - 8, 1)
    w = np.concatenate([hist[:, :, 0], cont[:, 0, :, 0]], axis=1)
    t = np.linspace(0.0, 1.0, n + 1)
    s_, t_ = np.meshgrid(t, t, indexing="ij")
    cov = 0.5 * (s_ ** (2 * hurst) + t_ ** (2 * hurst) - np.abs(t_ - s_) ** (2 * hurst))
    np.testing.assert_allclose(w.T @ w / w.shape[0], cov, atol=0.03)
    # the future depends on the past (fBm has memory): increments across the
    # junction are negatively correlated for H < 1/2
    assert np.corrcoef(w[:, 8] - w[:, 7], w[:, 9] - w[:, 8])[0, 1] < -0.2


def test_fbm_continuation_rejects_bad_input():
    sim = paths.FBMContinuation(hurst=0.3, n_steps=10)
    hist = paths.fbm(2, 4, 0.3, T=0.4, random_state=0)
    with pytest.raises(ValueError, match="n_future"):
        sim(hist, 2, 7, np.random.default_rng(0))
    with pytest.raises(ValueError, match="dim 1"):
        sim(np.zeros((2, 3, 2)), 2, 2, np.random.default_rng(0))
    with pytest.raises(ValueError, match="hurst"):
        paths.FBMContinuation(hurst=1.5, n_steps=10)(hist, 2, 2, np.random.default_rng(0))


@pytest.mark.parametrize("hurst", [0.1, 0.3, 0.7])
def test_fbm_martingale_is_the_conditional_mean_of_the_terminal_value(hurst):
    n, t = 30, 12
    sim = paths.FBMContinuation(hurst=hurst, n_steps=n)
    w = paths.fbm(6, n, hurst, random_state=5)
    m = sim.martingale(w)
    assert m.shape == (6, n + 1)
    assert np.all(m[:, 0] == 0) and np.allclose(m[:, -1], w[:, -1, 0])
    # E[W_T | F_t] by brute force: mean of many exact continuations of the history
    cont = sim(w[:, :t + 1], 20_000, n - t, np.random.default_rng(6))
    brute = cont[:, :, -1, 0].mean(axis=1)
    sd = cont[:, :, -1, 0].std(axis=1) / np.sqrt(20_000)
    assert np.all(np.abs(m[:, t] - brute) < 4 * sd)
    # and it depends on the path only up to t
    w2 = w.copy()
    w2[:, t + 1:] += 1.0
    np.testing.assert_allclose(sim.martingale(w2)[:, :t + 1], m[:, :t + 1])
    with pytest.raises(ValueError, match="n_steps"):
        sim.martingale(w[:, :-1])
