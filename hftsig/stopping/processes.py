"""Vectorised simulators of the price and noise paths used by optimal stopping.

Every simulator returns a float64 array of shape ``(n_paths, n_steps + 1, dim)``
on the uniform grid ``t_j = j * T / n_steps`` *including* ``t_0 = 0``, and takes
a ``random_state`` (``None``, an int seed, a :class:`numpy.random.SeedSequence`
or a :class:`numpy.random.Generator`) so that runs are reproducible.

* :func:`gbm` -- correlated multi-asset geometric Brownian motion, exact
  log-normal steps (no discretisation error).
* :func:`fbm` -- fractional Brownian motion, exact on the grid: Davies--Harte
  circulant embedding of the fractional Gaussian noise, with a Cholesky
  fallback when the embedding is not positive semi-definite.
* :func:`ornstein_uhlenbeck` -- mean-reverting (spread) process, exact
  Gaussian transition.
* :class:`GBMContinuation` -- conditional continuations of GBM paths from
  their last observed point; the simulator that
  :meth:`hftsig.stopping.stoppers.SignatureStopper.dual_upper_bound` needs for nested
  simulation.

Examples
--------
>>> from hftsig.stopping import processes
>>> s = processes.gbm(4, 10, s0=[100.0, 90.0], mu=0.05, sigma=0.2,
...               corr=[[1, 0.5], [0.5, 1]], T=1.0, random_state=0)
>>> s.shape
(4, 11, 2)
>>> bool((s[:, 0] == [100.0, 90.0]).all())
True
>>> processes.fbm(3, 100, 0.3, random_state=1).shape
(3, 101, 1)
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hftsig._validation import check_int, check_positive, check_random_state, check_real

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from hftsig._validation import RandomStateLike

__all__ = ["gbm", "fbm", "ornstein_uhlenbeck", "GBMContinuation", "FBMContinuation"]


def _per_asset(value, name, dim, *, positive=False, allow_zero=True):
    """Broadcast a scalar or per-asset parameter to shape ``(dim,)`` (dim None: infer)."""
    arr = np.asarray(value, dtype=np.float64)
    if arr.ndim > 1:
        raise ValueError(f"{name}: must be a scalar or a 1-d array, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name}: must be finite")
    if positive and (np.any(arr < 0) or (not allow_zero and np.any(arr == 0))):
        raise ValueError(f"{name}: must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    if arr.ndim == 1 and dim is not None and arr.shape[0] != dim:
        raise ValueError(f"{name}: has {arr.shape[0]} entries but the model has dim={dim}")
    return arr


def _cholesky_corr(corr, dim):
    if corr is None:
        return None
    c = np.asarray(corr, dtype=np.float64)
    if c.shape != (dim, dim):
        raise ValueError(f"corr: must have shape ({dim}, {dim}), got {c.shape}")
    if not np.all(np.isfinite(c)):
        raise ValueError("corr: must be finite")
    if not np.allclose(c, c.T) or not np.allclose(np.diag(c), 1.0):
        raise ValueError("corr: must be a symmetric matrix with unit diagonal")
    try:
        return np.linalg.cholesky(c)
    except np.linalg.LinAlgError:
        raise ValueError("corr: must be positive definite") from None


def _correlated_normals(rng, shape, chol):
    z = rng.standard_normal(shape)
    if chol is not None:
        z = z @ chol.T
    return z


def gbm(n_paths: int, n_steps: int, *, s0: ArrayLike, mu: ArrayLike, sigma: ArrayLike,
        corr: ArrayLike | None = None, T: float = 1.0,
        random_state: RandomStateLike = None) -> np.ndarray:
    r"""Correlated geometric Brownian motion, simulated exactly.

    ``S^i_t = S^i_0 exp((mu_i - sigma_i^2 / 2) t + sigma_i W^i_t)`` with
    ``d<W^i, W^j>_t = corr[i, j] dt``.

    Parameters
    ----------
    n_paths, n_steps : int
        Number of paths (>= 1) and of time steps (>= 1).
    s0 : float or array-like of shape (dim,)
        Initial prices (> 0).  Its length fixes ``dim`` unless ``mu`` or
        ``sigma`` are arrays.
    mu : float or array-like of shape (dim,)
        Drift of each asset; under the pricing measure ``r - dividend_yield``.
    sigma : float or array-like of shape (dim,)
        Volatilities (>= 0).
    corr : array-like of shape (dim, dim), optional
        Correlation matrix of the driving Brownian motions (identity if None).
    T : float
        Horizon (> 0).
    random_state : None, int, SeedSequence or Generator

    Returns
    -------
    ndarray of shape (n_paths, n_steps + 1, dim)

    Examples
    --------
    >>> s = gbm(20000, 4, s0=1.0, mu=0.1, sigma=0.3, T=2.0, random_state=3)
    >>> bool(abs(s[:, -1, 0].mean() - np.exp(0.2)) < 0.02)
    True
    """
    n_paths = check_int(n_paths, "n_paths", minimum=1)
    n_steps = check_int(n_steps, "n_steps", minimum=1)
    T = check_positive(T, "T")
    params = {"s0": s0, "mu": mu, "sigma": sigma}
    dims = {np.ndim(v) and np.shape(v)[0] for v in params.values()} - {0}
    if len(dims) > 1:
        raise ValueError(f"s0, mu and sigma have inconsistent lengths {sorted(dims)}")
    dim = dims.pop() if dims else (np.shape(corr)[0] if corr is not None and np.ndim(corr) == 2 else 1)
    s0 = _per_asset(s0, "s0", dim, positive=True, allow_zero=False)
    mu = _per_asset(mu, "mu", dim)
    sigma = _per_asset(sigma, "sigma", dim, positive=True)
    chol = _cholesky_corr(corr, dim)
    rng = check_random_state(random_state)
    dt = T / n_steps
    z = _correlated_normals(rng, (n_paths, n_steps, dim), chol)
    log_inc = (mu - 0.5 * sigma ** 2) * dt + sigma * np.sqrt(dt) * z
    out = np.empty((n_paths, n_steps + 1, dim))
    out[:, 0] = 0.0
    np.cumsum(log_inc, axis=1, out=out[:, 1:])
    np.exp(out, out=out)
    out *= np.broadcast_to(s0, (dim,))
    return out


def _validate_history(history):
    h = np.asarray(history, dtype=np.float64)
    if h.ndim != 3:
        raise ValueError(f"history: must have shape (m, t+1, dim), got {h.shape}")
    return h


class GBMContinuation:
    """Nested-simulation continuation simulator for correlated GBM.

    Calling ``sim(history, n_inner, n_future, rng)`` returns continuations of
    shape ``(m, n_inner, n_future, dim)``: the path values at the next
    ``n_future`` grid points after the last observed point of each history.
    GBM is Markov, so only ``history[:, -1]`` is used.

    Parameters
    ----------
    mu, sigma, corr : see :func:`gbm`.
    dt : float
        Grid step of the paths (``T / n_steps``).
    antithetic : bool
        Pair each normal draw with its negative (halves the draws and cuts the
        variance of inner means for monotone payoffs); ``n_inner`` must be even.

    Examples
    --------
    >>> sim = GBMContinuation(mu=0.06, sigma=0.2, dt=0.02)
    >>> hist = gbm(3, 5, s0=40.0, mu=0.06, sigma=0.2, T=0.1, random_state=0)
    >>> sim(hist, 4, 2, np.random.default_rng(0)).shape
    (3, 4, 2, 1)
    """

    def __init__(self, *, mu: ArrayLike, sigma: ArrayLike, corr: ArrayLike | None = None,
                 dt: float, antithetic: bool = True) -> None:
        self.mu = mu
        self.sigma = sigma
        self.corr = corr
        self.dt = dt
        self.antithetic = antithetic

    def __call__(self, history: ArrayLike, n_inner: int, n_future: int,
                 rng: RandomStateLike) -> np.ndarray:
        h = _validate_history(history)
        m, _, dim = h.shape
        n_inner = check_int(n_inner, "n_inner", minimum=1)
        n_future = check_int(n_future, "n_future", minimum=1)
        dt = check_positive(self.dt, "dt")
        mu = _per_asset(self.mu, "mu", dim)
        sigma = _per_asset(self.sigma, "sigma", dim, positive=True)
        chol = _cholesky_corr(self.corr, dim)
        rng = check_random_state(rng, "rng")
        if self.antithetic:
            if n_inner % 2:
                raise ValueError(f"n_inner: must be even with antithetic=True, got {n_inner}")
            half = _correlated_normals(rng, (m, n_inner // 2, n_future, dim), chol)
            z = np.concatenate([half, -half], axis=1)
        else:
            z = _correlated_normals(rng, (m, n_inner, n_future, dim), chol)
        log_inc = (mu - 0.5 * sigma ** 2) * dt + sigma * np.sqrt(dt) * z
        out = np.cumsum(log_inc, axis=2)
        np.exp(out, out=out)
        out *= h[:, -1][:, None, None, :]
        return out


def _fgn_autocov(n, hurst):
    k = np.arange(n + 1, dtype=np.float64)
    h2 = 2.0 * hurst
    return 0.5 * (np.abs(k + 1) ** h2 - 2 * k ** h2 + np.abs(k - 1) ** h2)


def fbm(n_paths: int, n_steps: int, hurst: float, *, T: float = 1.0,
        random_state: RandomStateLike = None,
        method: str = "auto") -> np.ndarray:
    """Fractional Brownian motion on a uniform grid, simulated exactly.

    ``Cov(W_s, W_t) = (s^{2H} + t^{2H} - |t - s|^{2H}) / 2``.  The
    fractional Gaussian noise (the increments) is drawn by Davies--Harte
    circulant embedding (FFT, ``O(n log n)`` per path); if the embedding has
    negative eigenvalues (it does not for fGn, but the check is cheap) the
    method falls back to a Cholesky factorisation of the increment covariance.

    Parameters
    ----------
    n_paths, n_steps : int
    hurst : float
        Hurst parameter in (0, 1); 0.5 is Brownian motion.
    T : float
        Horizon (> 0).
    random_state : None, int, SeedSequence or Generator
    method : {"auto", "davies-harte", "cholesky"}
        "auto" is Davies--Harte with the Cholesky fallback.

    Returns
    -------
    ndarray of shape (n_paths, n_steps + 1, 1), starting at 0.

    Examples
    --------
    >>> w = fbm(40000, 8, 0.2, random_state=0)
    >>> bool(abs(w[:, -1, 0].var() - 1.0) < 0.03)
    True
    """
    n_paths = check_int(n_paths, "n_paths", minimum=1)
    n_steps = check_int(n_steps, "n_steps", minimum=1)
    T = check_positive(T, "T")
    hurst = check_real(hurst, "hurst")
    if not 0.0 < hurst < 1.0:
        raise ValueError(f"hurst: must be in (0, 1), got {hurst}")
    if method not in ("auto", "davies-harte", "cholesky"):
        raise ValueError(f"method: must be 'auto', 'davies-harte' or 'cholesky', got {method!r}")
    rng = check_random_state(random_state)
    n = n_steps
    gamma = _fgn_autocov(n, hurst)
    scale = (T / n) ** hurst
    noise = None
    if method in ("auto", "davies-harte"):
        # first row of the 2n circulant that embeds the n x n Toeplitz covariance
        row = np.concatenate([gamma, gamma[n - 1:0:-1]])
        lam = np.fft.fft(row).real
        tol = 1e-10 * lam.max()
        if lam.min() >= -tol:
            lam = np.clip(lam, 0.0, None)
            m = row.size
            z = rng.standard_normal((n_paths, m)) + 1j * rng.standard_normal((n_paths, m))
            noise = np.fft.fft(np.sqrt(lam / m) * z, axis=1).real[:, :n]
        elif method == "davies-harte":
            raise ValueError("the circulant embedding is not positive semi-definite for "
                             f"hurst={hurst}, n_steps={n_steps}; use method='cholesky'")
    if noise is None:
        idx = np.arange(n)
        cov = gamma[np.abs(idx[:, None] - idx[None, :])]
        chol = np.linalg.cholesky(cov)
        noise = rng.standard_normal((n_paths, n)) @ chol.T
    out = np.zeros((n_paths, n + 1, 1))
    np.cumsum(noise * scale, axis=1, out=out[:, 1:, 0])
    return out


class FBMContinuation:
    """Nested-simulation continuation simulator for fractional Brownian motion.

    fBm is not Markov: the law of the future depends on the whole observed
    history.  The increments are jointly Gaussian with covariance ``C = L
    L^T`` (Cholesky); the history's increments fix the first ``t`` normals
    ``z = L[:t, :t]^{-1} dW[:t]`` exactly, and the next increments are
    ``L[t:, :t] z + L[t:, t:] z_new`` -- an exact draw from the conditional
    law, for :meth:`hftsig.stopping.stoppers.SignatureStopper.dual_upper_bound`.

    Parameters
    ----------
    hurst : float
        Hurst parameter in (0, 1).
    n_steps : int
        Steps of the full grid of the paths (as in :func:`fbm`).
    T : float
        Horizon of the full grid.

    Examples
    --------
    >>> sim = FBMContinuation(hurst=0.3, n_steps=10)
    >>> hist = fbm(2, 4, 0.3, T=0.4, random_state=0)
    >>> sim(hist, 3, 6, np.random.default_rng(0)).shape
    (2, 3, 6, 1)
    """

    def __init__(self, *, hurst: float, n_steps: int, T: float = 1.0) -> None:
        self.hurst = hurst
        self.n_steps = n_steps
        self.T = T

    def _cholesky(self):
        key = (float(self.hurst), int(self.n_steps), float(self.T))
        if getattr(self, "_chol_key", None) != key:
            if not 0.0 < key[0] < 1.0:
                raise ValueError(f"hurst: must be in (0, 1), got {self.hurst}")
            n = check_int(self.n_steps, "n_steps", minimum=1)
            T = check_positive(self.T, "T")
            gamma = _fgn_autocov(n, key[0]) * (T / n) ** (2 * key[0])
            idx = np.arange(n)
            self._chol = np.linalg.cholesky(gamma[np.abs(idx[:, None] - idx[None, :])])
            self._chol_key = key
        return self._chol

    def martingale(self, paths: ArrayLike) -> np.ndarray:
        """The Doob martingale ``M_t = E[W_T | F_t]`` at every point of fBm paths.

        With ``dW = L z`` (``z`` the i.i.d. standard normal innovations,
        ``L`` the Cholesky factor of the increment covariance),
        ``E[W_T | F_t] = sum_{k <= t} (sum_i L[i, k]) z_k``: exact, and a
        martingale in ``t`` starting at 0.  Used as the control variate of
        :meth:`hftsig.stopping.stoppers.SignatureStopper.value` and
        :meth:`~hftsig.stopping.stoppers.SignatureStopper.dual_upper_bound` when
        stopping ``W`` itself: ``W_tau - M_tau = -E[W_T - W_tau | F_tau]``
        varies far less than ``W_tau``.

        Parameters
        ----------
        paths : array_like of shape (n_paths, n_steps + 1, 1)
            fBm paths on the full grid, starting at 0.

        Returns
        -------
        ndarray of shape (n_paths, n_steps + 1)

        Examples
        --------
        >>> sim = FBMContinuation(hurst=0.3, n_steps=50)
        >>> w = fbm(20000, 50, 0.3, random_state=0)
        >>> m = sim.martingale(w)
        >>> bool(np.allclose(m[:, -1], w[:, -1, 0]) and np.all(m[:, 0] == 0))
        True
        >>> bool(abs(m[:, 20].mean()) < 0.02)
        True
        """
        from scipy.linalg import solve_triangular

        h = _validate_history(paths)
        chol = self._cholesky()
        n = chol.shape[0]
        if h.shape[1:] != (n + 1, 1):
            raise ValueError(f"paths: must have shape (n_paths, n_steps + 1, 1) = (n_paths, {n + 1}, 1), "
                             f"got {h.shape}")
        z = solve_triangular(chol, np.diff(h[:, :, 0], axis=1).T, lower=True).T
        out = np.zeros((h.shape[0], n + 1))
        np.cumsum(z * chol.sum(axis=0), axis=1, out=out[:, 1:])
        return out

    def __call__(self, history: ArrayLike, n_inner: int, n_future: int,
                 rng: RandomStateLike) -> np.ndarray:
        h = _validate_history(history)
        m, t1, dim = h.shape
        if dim != 1:
            raise ValueError(f"history: must have dim 1 for fBm, got {dim}")
        n_inner = check_int(n_inner, "n_inner", minimum=1)
        n_future = check_int(n_future, "n_future", minimum=1)
        chol = self._cholesky()
        t = t1 - 1
        if t + n_future > chol.shape[0]:
            raise ValueError(f"history of {t} steps plus n_future={n_future} exceeds "
                             f"n_steps={chol.shape[0]}")
        rng = check_random_state(rng, "rng")
        past = np.diff(h[:, :, 0], axis=1)
        if t:
            from scipy.linalg import solve_triangular

            z = solve_triangular(chol[:t, :t], past.T, lower=True).T
            mean = z @ chol[t:t + n_future, :t].T
        else:
            mean = np.zeros((m, n_future))
        inc = rng.standard_normal((m, n_inner, n_future)) @ chol[t:t + n_future, t:t + n_future].T
        inc += mean[:, None, :]
        out = np.cumsum(inc, axis=2)
        out += h[:, -1, 0][:, None, None]
        return out[..., None]


def ornstein_uhlenbeck(n_paths: int, n_steps: int, *, theta: ArrayLike, mu: ArrayLike = 0.0,
                       sigma: ArrayLike, x0: ArrayLike | None = None,
                       corr: ArrayLike | None = None, T: float = 1.0,
                       random_state: RandomStateLike = None) -> np.ndarray:
    """Ornstein--Uhlenbeck process ``dX = theta (mu - X) dt + sigma dW``, exact steps.

    The transition over a step ``dt`` is Gaussian with mean
    ``mu + (X - mu) exp(-theta dt)`` and variance
    ``sigma^2 (1 - exp(-2 theta dt)) / (2 theta)`` (``sigma^2 dt`` at
    ``theta = 0``), so the grid values have no discretisation error.

    Parameters
    ----------
    n_paths, n_steps : int
    theta : float or array-like of shape (dim,)
        Mean-reversion speeds (>= 0).
    mu : float or array-like of shape (dim,)
        Long-run means.
    sigma : float or array-like of shape (dim,)
        Volatilities (>= 0).
    x0 : float or array-like of shape (dim,), optional
        Starting point (``mu`` if None).
    corr : array-like of shape (dim, dim), optional
        Correlation of the driving Brownian motions.
    T : float
    random_state : None, int, SeedSequence or Generator

    Returns
    -------
    ndarray of shape (n_paths, n_steps + 1, dim)

    Examples
    --------
    >>> x = ornstein_uhlenbeck(50000, 5, theta=2.0, mu=1.0, sigma=0.5, x0=3.0, random_state=0)
    >>> bool(abs(x[:, -1, 0].mean() - (1 + 2 * np.exp(-2.0))) < 0.01)
    True
    """
    n_paths = check_int(n_paths, "n_paths", minimum=1)
    n_steps = check_int(n_steps, "n_steps", minimum=1)
    T = check_positive(T, "T")
    params = {"theta": theta, "mu": mu, "sigma": sigma, "x0": x0 if x0 is not None else 0.0}
    dims = {np.ndim(v) and np.shape(v)[0] for v in params.values()} - {0}
    if len(dims) > 1:
        raise ValueError(f"theta, mu, sigma and x0 have inconsistent lengths {sorted(dims)}")
    dim = dims.pop() if dims else (np.shape(corr)[0] if corr is not None and np.ndim(corr) == 2 else 1)
    theta = np.broadcast_to(_per_asset(theta, "theta", dim, positive=True), (dim,))
    mu = np.broadcast_to(_per_asset(mu, "mu", dim), (dim,))
    sigma = np.broadcast_to(_per_asset(sigma, "sigma", dim, positive=True), (dim,))
    x0 = mu if x0 is None else np.broadcast_to(_per_asset(x0, "x0", dim), (dim,))
    chol = _cholesky_corr(corr, dim)
    rng = check_random_state(random_state)
    dt = T / n_steps
    decay = np.exp(-theta * dt)
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.where(theta > 0, -np.expm1(-2 * theta * dt) / (2 * theta), dt)
    step_sd = sigma * np.sqrt(var)
    z = _correlated_normals(rng, (n_paths, n_steps, dim), chol)
    out = np.empty((n_paths, n_steps + 1, dim))
    out[:, 0] = x0
    for j in range(n_steps):
        out[:, j + 1] = mu + (out[:, j] - mu) * decay + step_sd * z[:, j]
    return out
