"""Signature optimal stopping: Longstaff--Schwartz on path signatures, with bounds.

The problem is ``sup_tau E[Z_tau]`` over stopping times ``tau`` taking values
in a finite set of exercise dates, where ``Z`` is a (discounted) payoff
process that may depend on the whole path observed so far -- an American or
Bermudan option, or stopping a non-Markovian process such as fractional
Brownian motion.

:class:`SignatureStopper` approximates the continuation value at each date by
a ridge regression (:class:`sklearn.linear_model.Ridge`, standardised
features) of the realised future cash flows on the truncated signature of the
time-augmented path up to that date (Bayer, Pelizzari & Schoenmakers, *Primal
and dual optimal stopping with signatures*, 2023), optionally with the payoff
and its powers as extra features, and runs the Longstaff--Schwartz backward
induction.  The signature of a path prefix determines the prefix (up to
tree-like pieces), so linear functionals of it approximate any continuous
functional of the history: the estimator needs no Markov state.

Three numbers come out of a fitted stopper:

* :meth:`~SignatureStopper.value` -- a lower bound: the mean discounted
  payoff of the fitted stopping rule on fresh paths, with its standard error.
* :meth:`~SignatureStopper.dual_upper_bound` -- an upper bound from the
  martingale dual (Rogers 2002; Haugh & Kogan 2004), with the martingale built
  from the fitted rule by nested simulation (Andersen & Broadie 2004).  The
  user passes the simulator of continuations, since only the model knows how
  paths continue (:class:`hftsig.paths.GBMContinuation` for Black--Scholes).
* the gap between them, which tells how good the answer is.

Both bounds accept a martingale of the model as control variate
(``control=``, e.g. :meth:`hftsig.paths.FBMContinuation.martingale`, the Doob
martingale ``E[W_1 | F_t]`` of fractional Brownian motion): by optional
sampling ``Z_tau - (M_tau - M_t)`` has the same (conditional) mean as
``Z_tau``, so the estimates stay unbiased, and their variance -- for the
upper bound, the inner noise that biases it up -- falls by an order of
magnitude when ``M`` tracks the payoff.

:class:`PolynomialStopper` is the plain Longstaff--Schwartz baseline: the same
induction on polynomials of the current state (and payoff) only.

Examples
--------
An American put (Longstaff & Schwartz 2001, Table 1: S0=36, K=40, r=0.06,
sigma=0.2, T=1, 50 dates; finite-difference value 4.478) on a small sample:

>>> import numpy as np
>>> from hftsig import paths
>>> from hftsig.stopping import SignatureStopper
>>> def put(s):
...     return np.maximum(40.0 - s[..., 0], 0.0)
>>> train = paths.gbm(2000, 50, s0=36.0, mu=0.06, sigma=0.2, T=1.0, random_state=0)
>>> test = paths.gbm(2000, 50, s0=36.0, mu=0.06, sigma=0.2, T=1.0, random_state=1)
>>> times = np.linspace(0.0, 1.0, 51)
>>> st = SignatureStopper(depth=2).fit(train, put, discount=0.06, times=times)
>>> low = st.value(test, put)
>>> bool(abs(low.value - 4.478) < 3 * low.std_error + 0.05)
True

An upper bound by nested simulation (tiny sizes: the gap shrinks with
``n_inner`` and the number of outer paths):

>>> sim = paths.GBMContinuation(mu=0.06, sigma=0.2, dt=1 / 50)
>>> outer = paths.gbm(20, 50, s0=36.0, mu=0.06, sigma=0.2, T=1.0, random_state=2)
>>> up = st.dual_upper_bound(outer, put, sim, n_inner=20, random_state=3)
>>> bool(up.value + 3 * up.std_error > low.value - 3 * low.std_error)
True
"""
from __future__ import annotations

import numbers
from collections import namedtuple

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.linear_model import Ridge
from sklearn.utils.validation import check_is_fitted

from hftsig.signature import _is_dask_array, sig

__all__ = ["SignatureStopper", "PolynomialStopper", "StoppingValue", "UpperBound"]

StoppingValue = namedtuple("StoppingValue", ["value", "std_error", "n_paths"])
StoppingValue.__doc__ = """Monte Carlo estimate of a stopping value.

Attributes
----------
value : float
    Mean discounted payoff at the stopping times (a lower bound of the
    optimal value, up to Monte Carlo error, when the paths are fresh).
std_error : float
    Standard error of ``value``.
n_paths : int
"""

UpperBound = namedtuple("UpperBound", ["value", "std_error", "n_paths", "n_inner", "gap", "gap_std_error"])
UpperBound.__doc__ = """Dual (martingale) upper bound.

Attributes
----------
value : float
    Estimate of ``E[max_j (Z_j - M_j)]`` (an upper bound of the optimal
    value, up to Monte Carlo error).
std_error : float
n_paths, n_inner : int
    Outer paths and inner (nested) continuations per outer node.
gap, gap_std_error : float
    Mean of ``max_j (Z_j - pi_j)`` with ``pi = M + L_0``: the estimated
    duality gap of the fitted stopping rule (Andersen & Broadie's Delta).
"""

# Ridge solves of well-conditioned standardised problems; the minimum number of
# rows below which a date gets no regression (and no exercise) at all.
_MIN_ROWS = 2


def _check_int(value, name, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_nonneg(value, name):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a real number, got {type(value).__name__}") from None
    if not np.isfinite(v) or v < 0:
        raise ValueError(f"{name} must be >= 0 and finite, got {value!r}")
    return v


def _as_paths(paths):
    if isinstance(paths, (str, bytes)) or paths is None:
        raise TypeError(f"paths must be an array of shape (n_paths, n_points, dim), got {type(paths).__name__}")
    if sp.issparse(paths):
        raise TypeError("paths: sparse input is not supported; pass a dense array of shape "
                        "(n_paths, n_points, dim)")
    ragged = ("paths must share one number of points and of channels (a regular "
              "(n_paths, n_points, dim) array), got ragged input")
    try:
        arr = np.asarray(paths)
    except ValueError as exc:
        # numpy refuses nested sequences of different lengths
        raise ValueError(ragged) from exc
    if arr.dtype == object and any(isinstance(x, (np.ndarray, list, tuple)) for x in arr.flat):
        raise ValueError(ragged)
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError("paths: Complex data not supported; paths must be real numbers")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"paths must be numeric, got dtype {arr.dtype}")
    arr = np.asarray(arr, dtype=np.float64, order="C")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3:
        raise ValueError(f"paths must have shape (n_paths, n_points, dim), got {arr.shape}")
    if arr.shape[0] < 1 or arr.shape[2] < 1:
        raise ValueError(f"paths must have at least one path and one channel, got shape {arr.shape}")
    if arr.shape[1] < 2:
        raise ValueError(f"paths must have n_points >= 2 (n_dates >= 2), got {arr.shape[1]}")
    if not np.isfinite(arr).all():
        raise ValueError("paths contains NaN or infinite values")
    return arr


def _rng(random_state):
    if isinstance(random_state, np.random.Generator):
        return random_state
    return np.random.default_rng(random_state)


def _first_true(mask):
    """Index of the first True along axis 1 (every row has one)."""
    return np.argmax(mask, axis=1)


class _BackwardInduction(BaseEstimator):
    """Longstaff--Schwartz machinery shared by the stoppers; subclasses give features."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # paths are (n_paths, n_points, dim); a 2-d array is accepted only as the
        # dim=1 shorthand (n_paths, n_points), not as scikit-learn's
        # (n_samples, n_features) table, so two_d_array stays False.  fit needs
        # the payoffs, which play the role of y.
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = True
        tags.input_tags.sparse = False
        tags.input_tags.allow_nan = False
        tags.target_tags.required = True
        return tags

    # -- features ---------------------------------------------------------------
    def _path_features(self, paths, exercise_idx):
        """Features of the path history at each exercise date, date-major: (n_dates, n, f)."""
        raise NotImplementedError

    def _design(self, path_feats, z):
        """Regression design at one date from path features and payoffs."""
        if not self.include_payoff or self.payoff_degree == 0:
            return path_feats
        powers = [z[:, None] ** p for p in range(1, self.payoff_degree + 1)]
        return np.concatenate([path_feats] + powers, axis=1)

    # -- validation -------------------------------------------------------------
    def _check_params(self):
        _check_nonneg(self.alpha, "alpha")
        if not isinstance(self.include_payoff, (bool, np.bool_)):
            raise TypeError(f"include_payoff must be a bool, got {type(self.include_payoff).__name__}")
        _check_int(self.payoff_degree, "payoff_degree", 0)
        if self.in_the_money not in ("auto", True, False):
            raise ValueError(f"in_the_money must be 'auto', True or False, got {self.in_the_money!r}")

    def _exercise_index(self, exercise_idx, n_points):
        if exercise_idx is None:
            return np.arange(n_points)
        idx = np.asarray(exercise_idx)
        if idx.ndim != 1 or not np.issubdtype(idx.dtype, np.integer):
            raise TypeError("exercise_idx must be a 1-d array of integer point indices")
        if idx.size < 2:
            raise ValueError(f"exercise_idx must name n_dates >= 2 exercise dates, got {idx.size}")
        if idx.min() < 0 or idx.max() >= n_points:
            raise ValueError(f"exercise_idx must lie in [0, {n_points - 1}] (the path's points)")
        if np.any(np.diff(idx) <= 0):
            raise ValueError("exercise_idx must be strictly increasing")
        return idx.astype(np.intp)

    def _payoffs(self, payoffs, paths, n_dates, name="payoffs"):
        if callable(payoffs):
            z = payoffs(paths)
            where = f"the {name} callable returned"
        else:
            z = payoffs
            where = f"{name} has"
        if isinstance(z, (str, bytes)) or z is None:
            raise TypeError(f"{name} must be an array of shape (n_paths, n_dates) or a callable of the paths")
        z = np.asarray(z)
        if not (np.issubdtype(z.dtype, np.floating) or np.issubdtype(z.dtype, np.integer)
                or z.dtype == bool):
            raise TypeError(f"{name} must be numeric, got dtype {z.dtype}")
        z = np.asarray(z, dtype=np.float64)
        if z.shape != (paths.shape[0], n_dates):
            raise ValueError(f"{where} shape {z.shape}, expected (n_paths, n_dates) = "
                             f"({paths.shape[0]}, {n_dates})")
        if not np.isfinite(z).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        return z

    def _discount_factors(self, discount, times, n_points, exercise_idx):
        if times is None:
            times = np.linspace(0.0, 1.0, n_points)
        else:
            times = np.asarray(times, dtype=np.float64)
            if times.shape != (n_points,):
                raise ValueError(f"times must have shape (n_points,) = ({n_points},), got {times.shape}")
            if not np.isfinite(times).all() or np.any(np.diff(times) <= 0):
                raise ValueError("times must be finite and strictly increasing")
        n_dates = exercise_idx.size
        if discount is None:
            factors = np.ones(n_dates)
        elif np.ndim(discount) == 0:
            rate = discount
            try:
                rate = float(rate)
            except (TypeError, ValueError):
                raise TypeError(f"discount must be None, a rate or an array of factors, "
                                f"got {type(discount).__name__}") from None
            if not np.isfinite(rate):
                raise ValueError(f"discount rate must be finite, got {discount!r}")
            factors = np.exp(-rate * (times[exercise_idx] - times[0]))
        else:
            factors = np.asarray(discount, dtype=np.float64)
            if factors.shape != (n_dates,):
                raise ValueError(f"discount factors must have shape (n_dates,) = ({n_dates},), "
                                 f"got {factors.shape}")
            if not np.isfinite(factors).all() or np.any(factors <= 0):
                raise ValueError("discount factors must be finite and > 0")
        return times, factors

    def _check_new_paths(self, paths):
        check_is_fitted(self, "coef_")
        arr = _as_paths(paths)
        if arr.shape[1] != self.n_points_ or arr.shape[2] != self.dim_:
            raise ValueError(f"paths has shape {arr.shape}; the stopper was fitted on paths with "
                             f"n_points={self.n_points_}, dim={self.dim_}")
        return arr

    # -- fitting ------------------------------------------------------------------
    def fit(self, paths, payoffs, *, exercise_idx=None, discount=None, times=None):
        """Fit the continuation-value regressions by backward induction.

        Parameters
        ----------
        paths : array_like of shape (n_paths, n_points, dim)
            Simulated paths including the starting point; ``(n_paths,
            n_points)`` is read as ``dim=1``.  Without ``exercise_idx`` every
            point is an exercise date.  A dask array chunked over the paths
            is fitted on the cluster (:func:`hftsig.on_dask.fit_stopper`).
        payoffs : array_like of shape (n_paths, n_dates) or callable
            Payoff of stopping at each exercise date, or a function
            ``payoffs(paths) -> (n_paths, n_dates)`` (needed later by
            :meth:`dual_upper_bound`, which simulates new paths).
        exercise_idx : array_like of int, optional
            Indices of the exercise dates among the path's points (strictly
            increasing, at least 2); the path between them still feeds the
            signature.
        discount : None, float or array_like of shape (n_dates,)
            None: payoffs are already discounted.  A float: a continuously
            compounded rate, discount factors ``exp(-r (t - t_0))`` on
            ``times``.  An array: the discount factor of each exercise date.
        times : array_like of shape (n_points,), optional
            Times of the path's points (default ``linspace(0, 1, n_points)``);
            used only for discounting.

        Returns
        -------
        self
        """
        if _is_dask_array(paths):
            from hftsig.on_dask import fit_stopper

            return fit_stopper(self, paths, payoffs, exercise_idx=exercise_idx,
                               discount=discount, times=times)
        self._check_params()
        paths = _as_paths(paths)
        n_paths, n_points, dim = paths.shape
        if n_paths < 2:
            raise ValueError(f"paths must hold at least 2 paths to fit, got {n_paths}")
        idx = self._exercise_index(exercise_idx, n_points)
        n_dates = idx.size
        z = self._payoffs(payoffs, paths, n_dates)
        self.times_, self.discount_factors_ = self._discount_factors(discount, times, n_points, idx)
        z = z * self.discount_factors_
        self.n_points_, self.dim_, self.n_dates_ = n_points, dim, n_dates
        # scikit-learn's input width: for paths, a feature is a channel
        self.n_features_in_ = dim
        self.exercise_idx_ = idx
        self.itm_only_ = bool(np.all(z >= 0)) if self.in_the_money == "auto" else bool(self.in_the_money)

        feats = self._path_features(paths, idx)
        n_features = self._design(feats[0, :1], z[:1, 0]).shape[1]
        self.n_features_ = n_features
        self.coef_ = np.zeros((n_dates, n_features))
        self.intercept_ = np.full(n_dates, np.inf)  # inf: never exercise (no regression)
        self.regressors_ = [None] * n_dates
        self.n_regression_paths_ = np.zeros(n_dates, dtype=np.intp)

        cash = z[:, -1].copy()
        dates = range(n_dates - 2, -1, -1)
        progress = self._progress(n_paths * n_dates)
        if progress is not None:
            dates = progress(dates, desc="SignatureStopper.fit" if isinstance(self, SignatureStopper)
                             else "PolynomialStopper.fit", unit="date")
        for k in dates:
            zk = z[:, k]
            rows = np.flatnonzero(zk > 0) if self.itm_only_ else np.arange(n_paths)
            self.n_regression_paths_[k] = rows.size
            if rows.size < _MIN_ROWS:
                continue
            x = self._design(feats[k][rows], zk[rows])
            cont = self._fit_date(k, x, cash[rows])
            stop = zk[rows] >= cont
            cash[rows[stop]] = zk[rows[stop]]
        self.in_sample_value_ = float(cash.mean())
        return self

    def _progress(self, work):
        if self.progress is False or (self.progress is None and work < 5_000_000):
            return None
        from tqdm.auto import tqdm

        def bar(it, **kw):
            return tqdm(it, disable=None if self.progress is None else False, leave=False, **kw)
        return bar

    def _fit_date(self, k, x, y):
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        # constant columns (deterministic time terms, level 0 at the first date)
        # carry no information beyond the intercept
        keep = scale > 1e-12 * np.maximum(1.0, np.abs(mean))
        coef = np.zeros(x.shape[1])
        if keep.any():
            xs = x[:, keep]
            xs -= mean[keep]
            xs /= scale[keep]
            y_mean = float(y.mean())
            # alpha is per sample: the penalty does not fade as paths are added;
            # the data are centred here, so Ridge needs no intercept of its own
            reg = Ridge(alpha=self.alpha * x.shape[0], fit_intercept=False, solver="cholesky")
            reg.fit(xs, y - y_mean)
            coef[keep] = reg.coef_ / scale[keep]
            intercept = float(y_mean - coef[keep] @ mean[keep])
            self.regressors_[k] = reg
        else:
            intercept = float(y.mean())
        self.coef_[k] = coef
        self.intercept_[k] = intercept
        return x @ coef + intercept

    # -- the stopping rule -----------------------------------------------------------
    def _continuation(self, feats, z):
        """Continuation values (n, n_dates) for discounted payoffs z."""
        n, n_dates = z.shape
        cont = np.empty((n, n_dates))
        for k in range(n_dates):
            cont[:, k] = self._design(feats[k], z[:, k]) @ self.coef_[k] + self.intercept_[k]
        cont[:, -1] = -np.inf
        return cont

    def _exercise(self, feats, z):
        """Exercise decision of the fitted rule at every date (last date: always)."""
        ex = z >= self._continuation(feats, z)
        if self.itm_only_:
            ex[:, :-1] &= z[:, :-1] > 0
        ex[:, -1] = True
        return ex

    def _discounted(self, paths, payoffs, name="payoffs"):
        return self._payoffs(payoffs, paths, self.n_dates_, name) * self.discount_factors_

    def stopping_times(self, paths, payoffs):
        """Exercise date chosen by the fitted rule on each path.

        Parameters
        ----------
        paths : array_like of shape (n_paths, n_points, dim)
        payoffs : array_like of shape (n_paths, n_dates) or callable

        Returns
        -------
        ndarray of int, shape (n_paths,)
            Index of the exercise date (into ``exercise_idx_``) at which each
            path stops; the last date when the rule never stops earlier.
        """
        paths = self._check_new_paths(paths)
        z = self._discounted(paths, payoffs)
        feats = self._path_features(paths, self.exercise_idx_)
        return _first_true(self._exercise(feats, z))

    def value(self, paths, payoffs, *, control=None):
        """Lower bound: mean discounted payoff of the fitted rule on fresh paths.

        Parameters
        ----------
        paths : array_like of shape (n_paths, n_points, dim)
            Paths independent of the training paths (otherwise the estimate
            is biased high).
        payoffs : array_like of shape (n_paths, n_dates) or callable
        control : callable, optional
            A martingale control variate: ``control(paths) -> (n_paths,
            n_points)``, the values at every point of the path of a
            martingale of the model (discounted like the payoffs), e.g.
            :meth:`hftsig.paths.FBMContinuation.martingale`.  By optional
            sampling ``E[M_tau - M_{t_1}] = 0`` for the first exercise date
            ``t_1``, so ``Z_tau - (M_tau - M_{t_1})`` has the same mean as
            ``Z_tau`` (the estimate stays unbiased, with no fitted
            coefficient) and a smaller variance when ``M`` tracks the payoff.

        Returns
        -------
        StoppingValue
            ``(value, std_error, n_paths)``.
        """
        if _is_dask_array(paths):
            from hftsig.on_dask import stopping_value

            return stopping_value(self, paths, payoffs, control=control)
        paths = self._check_new_paths(paths)
        z = self._discounted(paths, payoffs)
        feats = self._path_features(paths, self.exercise_idx_)
        tau = _first_true(self._exercise(feats, z))
        cash = z[np.arange(z.shape[0]), tau]
        if control is not None:
            mart = self._control_values(control, paths)[:, self.exercise_idx_]
            cash = cash - (mart[np.arange(z.shape[0]), tau] - mart[:, 0])
        n = cash.size
        se = float(cash.std(ddof=1) / np.sqrt(n)) if n > 1 else float("nan")
        return StoppingValue(float(cash.mean()), se, n)

    def dual_upper_bound(self, paths, payoffs, simulator, *, n_inner=100, lower=None,
                         random_state=None, max_batch=20_000, control=None):
        """Upper bound from the martingale dual, by Andersen--Broadie nested simulation.

        For any martingale ``M`` with ``M_0 = 0``, ``E[max_j (Z_j - M_j)]`` is
        an upper bound of the optimal value (Rogers 2002; Haugh & Kogan
        2004).  The martingale used is the one of the fitted rule's value
        process ``L_j`` (the value of following the rule from date ``j`` on):
        ``M_{j+1} - M_j = L_{j+1} - L_j - 1{exercise at j} (E_j[L_{j+1}] - Z_j)``.
        ``L_j`` on continuation dates and ``E_j[L_{j+1}]`` on exercise dates
        are estimated by running the rule on ``n_inner`` continuations of the
        path simulated from date ``j``.  Inner noise biases the bound up, never
        down.  When payoffs are non-negative, dates where the payoff is zero
        are left out of the maximum (stopping there is never better than
        waiting; Broadie & Cao 2008), which also skips their inner simulations.

        Parameters
        ----------
        paths : array_like of shape (n_paths, n_points, dim)
            Outer paths, independent of the training paths.
        payoffs : callable
            ``payoffs(paths) -> (n_paths, n_dates)``, as in :meth:`fit`; it must
            be callable since it is evaluated on the simulated continuations.
        simulator : callable
            ``simulator(history, n_inner, n_future, rng)`` returning an array
            of shape ``(m, n_inner, n_future, dim)``: for each of the ``m``
            histories (shape ``(m, t + 1, dim)``, the path up to point ``t``),
            ``n_inner`` conditionally independent continuations over the next
            ``n_future`` points of the grid, drawn from the same model as the
            paths.  See :class:`hftsig.paths.GBMContinuation`.
        n_inner : int
            Continuations per outer node (default 100).
        lower : StoppingValue, optional
            A lower bound from :meth:`value` on paths independent of these.
            The upper bound is then ``lower.value + gap`` (Andersen and
            Broadie's estimator), with standard error
            ``hypot(lower.std_error, gap_std_error)``: far smaller than the
            direct estimate when the value at the start is estimated from few
            inner paths.  Without it, the upper bound is estimated from the
            outer and inner paths alone.
        random_state : None, int or Generator
            Seed of the inner simulations (default: the estimator's
            ``random_state``).
        max_batch : int
            Upper limit on inner paths processed at once (memory).
        control : callable, optional
            A martingale control variate for the inner simulations, as in
            :meth:`value`: each inner estimate of the rule's value from date
            ``t`` uses ``Z_tau - (M_tau - M_t)``, which has the same
            conditional mean given the path up to ``t`` (optional sampling)
            and a smaller variance when ``M`` tracks the payoff.  Inner noise
            is what biases the bound up, so this tightens it for a given
            ``n_inner``.

        Returns
        -------
        UpperBound
        """
        if _is_dask_array(paths):
            from hftsig.on_dask import dual_upper_bound

            return dual_upper_bound(self, paths, payoffs, simulator, n_inner=n_inner, lower=lower,
                                    random_state=random_state, max_batch=max_batch,
                                    control=control)
        paths = self._check_new_paths(paths)
        if not callable(payoffs):
            raise TypeError("payoffs must be a callable of the paths for dual_upper_bound "
                            "(it is evaluated on simulated continuations)")
        if not callable(simulator):
            raise TypeError("simulator must be a callable simulator(history, n_inner, n_future, rng)")
        n_inner = _check_int(n_inner, "n_inner", 1)
        if lower is not None and not isinstance(lower, StoppingValue):
            raise TypeError(f"lower must be a StoppingValue from value(), got {type(lower).__name__}")
        max_batch = _check_int(max_batch, "max_batch", 1)
        rng = _rng(self.random_state if random_state is None else random_state)
        n_outer, n_points, dim = paths.shape
        n_dates, idx = self.n_dates_, self.exercise_idx_

        z = self._discounted(paths, payoffs)
        feats = self._path_features(paths, idx)
        ex = self._exercise(feats, z)
        in_max = (z > 0) if self.itm_only_ else np.ones_like(ex)
        in_max[:, -1] = True
        # inner values are needed where the date enters the maximum, on exercise
        # dates (for the correction) and at date 0 (pi_0 = L_0)
        need = in_max | ex
        if idx[0] == 0:
            need[:, 0] = True
        need[:, -1] = False
        q = np.full((n_outer, n_dates), np.nan)
        dates = range(n_dates - 1)
        progress = self._progress(int(need.sum()) * n_inner * n_points)
        if progress is not None:
            dates = progress(dates, desc="dual_upper_bound", unit="date")
        for k in dates:
            rows = np.flatnonzero(need[:, k])
            if rows.size == 0:
                continue
            t = idx[k]
            n_future = n_points - 1 - t
            step = max(1, max_batch // n_inner)
            for start in range(0, rows.size, step):
                r = rows[start:start + step]
                q[r, k] = self._inner_value(paths[r, :t + 1], k, payoffs, simulator, n_inner,
                                            n_future, rng, control)
        # When the first exercise date is after the start, the martingale starts at
        # the start: M_{t_0} = 0 and its first increment is L_{t_1} - E_{t_0}[L_{t_1}].
        # Anchoring there (shared by the outer paths) rather than at the first date
        # keeps the cross-path spread of L_{t_1} out of the bound's variance.
        start = np.zeros(n_outer)
        if idx[0] > 0:
            step = max(1, max_batch // n_inner)
            for s0 in range(0, n_outer, step):
                r = np.arange(s0, min(n_outer, s0 + step))
                start[r] = self._inner_value(paths[r, :1], -1, payoffs, simulator, n_inner,
                                             n_points - 1, rng, control)
        # L_j: the payoff where the rule exercises, else the inner estimate
        lval = np.where(ex, z, q)
        lval[:, -1] = z[:, -1]
        corr = np.where(ex[:, :-1], q[:, :-1] - z[:, :-1], 0.0)
        corr = np.concatenate([np.zeros((n_outer, 1)), np.cumsum(corr, axis=1)], axis=1)
        pi = lval - corr
        with np.errstate(invalid="ignore"):
            excess = np.where(in_max, z - pi, -np.inf)
        delta = excess.max(axis=1)
        # Z_j - M_j = Z_j - pi_j + L at the anchor (the start, or the first date)
        upper = (start if idx[0] > 0 else pi[:, 0]) + delta
        se = float(upper.std(ddof=1) / np.sqrt(n_outer)) if n_outer > 1 else float("nan")
        dse = float(delta.std(ddof=1) / np.sqrt(n_outer)) if n_outer > 1 else float("nan")
        gap = float(delta.mean())
        value = float(upper.mean())
        if lower is not None:
            value, se = float(lower.value) + gap, float(np.hypot(lower.std_error, dse))
        return UpperBound(value, se, n_outer, n_inner, gap, dse)

    def _inner_value(self, history, k, payoffs, simulator, n_inner, n_future, rng, control=None):
        """Mean over continuations of the discounted payoff of the rule from date k+1."""
        m, t1, dim = history.shape
        cont = np.asarray(simulator(history, n_inner, n_future, rng), dtype=np.float64)
        if cont.shape != (m, n_inner, n_future, dim):
            raise ValueError(f"simulator returned shape {cont.shape}, expected "
                             f"(m, n_inner, n_future, dim) = ({m}, {n_inner}, {n_future}, {dim})")
        full = np.empty((m, n_inner, t1 + n_future, dim))
        full[:, :, :t1] = history[:, None]
        full[:, :, t1:] = cont
        full = full.reshape(m * n_inner, t1 + n_future, dim)
        z = self._discounted(full, payoffs)
        later = self.exercise_idx_[k + 1:]
        feats_at = self._inner_feature_fn(history, cont, full, later)
        zl = z[:, k + 1:]
        n_rows = zl.shape[0]
        cash = zl[:, -1].copy()
        stop_at = np.full(n_rows, later[-1])
        alive = np.ones(n_rows, dtype=bool)
        # walk forward; only live (and, for options, in-the-money) rows need a prediction
        for j in range(later.size - 1):
            kk = k + 1 + j
            live = alive & (zl[:, j] > 0) if self.itm_only_ else alive
            rows = np.flatnonzero(live)
            if rows.size == 0:
                continue
            zr = zl[rows, j]
            c = self._design(feats_at(j, rows), zr) @ self.coef_[kk] + self.intercept_[kk]
            stop = rows[zr >= c]
            cash[stop] = zl[stop, j]
            stop_at[stop] = later[j]
            alive[stop] = False
        if control is not None:
            # optional sampling given the history: E[M_tau - M_t | F_t] = 0
            mart = self._control_values(control, full)
            cash -= mart[np.arange(n_rows), stop_at] - mart[:, t1 - 1]
        return cash.reshape(m, n_inner).mean(axis=1)

    def _control_values(self, control, paths):
        if not callable(control):
            raise TypeError("control must be a callable control(paths) -> (n_paths, n_points) "
                            f"martingale values, got {type(control).__name__}")
        mart = np.asarray(control(paths), dtype=np.float64)
        if mart.shape != paths.shape[:2]:
            raise ValueError(f"control returned shape {mart.shape}, expected (n_paths, n_points) = "
                             f"{paths.shape[:2]}")
        if not np.isfinite(mart).all():
            raise ValueError("control returned NaN or infinite values")
        return mart


    def _continuation_features(self, history, cont, full, later):
        """Features (date-major) at dates ``later`` of ``full`` = history + continuations."""
        return self._path_features(full, later)

    def _inner_feature_fn(self, history, cont, full, later):
        """``at(j, rows)``: features of continuation rows ``rows`` at date ``later[j]``."""
        feats = self._continuation_features(history, cont, full, later)
        return lambda j, rows: feats[j][rows]


def _prefix_signatures(paths, depth, at, n_jobs):
    """Signatures of the path prefixes ending at points ``at``: (n, len(at), siglength)."""
    return sig(paths, depth, at=at, n_jobs=n_jobs)


def _tensor_product(a, b, dim, depth):
    """Chen product of truncated signatures (level 0 = 1 left out), broadcasting.

    ``sig(x * y) = sig(x) (x) sig(y)`` for a path ``x`` followed by ``y``.
    """
    sizes = [dim ** n for n in range(1, depth + 1)]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    shape = np.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    out = np.empty(shape + (offsets[-1],))
    for n in range(1, depth + 1):
        lo, hi = offsets[n - 1], offsets[n]
        level = a[..., lo:hi] + b[..., lo:hi]
        for i in range(1, n):
            ai = a[..., offsets[i - 1]:offsets[i]]
            bj = b[..., offsets[n - i - 1]:offsets[n - i]]
            level = level + (ai[..., :, None] * bj[..., None, :]).reshape(shape + (hi - lo,))
        out[..., lo:hi] = level
    return out


class SignatureStopper(_BackwardInduction):
    """Optimal stopping by Longstaff--Schwartz regression on path signatures.

    At every exercise date the continuation value is a ridge regression of
    the realised (discounted) future cash flow on the truncated signature of
    the path up to that date (the time-augmented path by default), plus the
    payoff and its powers; the rule stops at the first date where the payoff
    is at least the regressed continuation value.

    Parameters
    ----------
    depth : int, default 3
        Signature truncation level (>= 1).
    alpha : float, default 1e-6
        Ridge penalty per sample on standardised features (the objective is
        the mean squared error plus ``alpha * ||w||^2``), so its effect does
        not depend on the number of paths.
    time_aug : bool, default True
        Add time (the grid index scaled to [0, 1]) as the last channel before
        taking signatures; without it the signature cannot tell a path from
        its reparametrisations.
    include_payoff : bool, default True
        Add the payoff and its powers up to ``payoff_degree`` as features.
    logsig : bool, default False
        Use the log-signature (Lyndon basis, :mod:`hftsig.logsignature`)
        instead of the signature: fewer features, same information, but no
        longer linear in the shuffle sense.
    n_jobs : int, default 1
        Threads for the signature computation (``-1``: all cores).
    random_state : None, int or Generator
        Seed of the inner simulations of :meth:`dual_upper_bound`.
    payoff_degree : int, default 3
        Highest payoff power used as a feature (0: none).
    in_the_money : {"auto", True, False}, default "auto"
        Regress (and exercise) only on paths with a positive payoff.  "auto"
        does so when all training payoffs are non-negative (options), not
        when payoffs may be negative (stopping a process).
    progress : None or bool, default None
        tqdm progress bar over the dates: None shows it on long fits when
        writing to a terminal; False never; True always.
    lags : int, default 0
        Also use the last ``lags`` increments ``X_t - X_{t-k}`` (``k = 1 ..
        lags``, every channel, on the grid of the path's points; before the
        start the path is held at its first point) as features.  Low
        signature levels weigh the whole history smoothly; when the memory
        sits in the most recent moves, as for fractional Brownian motion with
        small Hurst parameter (whose conditional mean puts most weight on the
        last few increments), a few lags carry it at little cost (stopping
        fBm at H = 0.3: 0.354 with depth 3 alone, 0.371 with ``lags=5``).
        0 (the default) uses the signature alone.

    Attributes
    ----------
    coef_ : ndarray of shape (n_dates, ``n_features_``)
        Continuation-value coefficients per date, on unstandardised features.
    intercept_ : ndarray of shape (n_dates,)
        ``inf`` at dates without a regression (never exercise there).
    regressors_ : list of Ridge or None
        The fitted ridge of each date (on standardised features).
    n_regression_paths_ : ndarray of int
        Paths used by each date's regression.
    exercise_idx_ : ndarray of int
        Exercise dates among the path's points.
    discount_factors_ : ndarray of shape (n_dates,)
    times_ : ndarray of shape (n_points,)
    n_points_, dim_, n_dates_, n_features_ : int
    n_features_in_ : int
        Number of channels of the training paths (``dim_``): scikit-learn's
        input width, where for paths a feature is a channel.
    itm_only_ : bool
        Whether regressions and exercise are restricted to positive payoffs.
    in_sample_value_ : float
        Mean realised cash flow on the training paths (biased; use
        :meth:`value` on fresh paths).

    See Also
    --------
    PolynomialStopper : the Markovian Longstaff--Schwartz baseline.
    hftsig.paths : simulators of training paths.

    Notes
    -----
    Features of every exercise date come from one streamed pass of
    :func:`hftsig.sig` with ``at=exercise_idx``.  The time channel is added
    here (grid index over ``n_points - 1``, the same convention as
    :func:`hftsig.transforms.time_augment` for a whole path) rather than by
    ``sig(time_aug=True)``, so that continuation pieces simulated by
    :meth:`dual_upper_bound` carry the absolute grid times and their
    signatures combine with the history's by Chen's identity.

    References
    ----------
    Longstaff & Schwartz (2001), Valuing American options by simulation: a
    simple least-squares approach.  Bayer, Pelizzari & Schoenmakers (2023),
    Primal and dual optimal stopping with signatures.  Andersen & Broadie
    (2004), Primal-dual simulation algorithm for pricing multidimensional
    American options.
    """

    def __init__(self, depth=3, alpha=1e-6, time_aug=True, include_payoff=True, logsig=False,
                 n_jobs=1, random_state=None, payoff_degree=3, in_the_money="auto", progress=None,
                 lags=0):
        self.depth = depth
        self.alpha = alpha
        self.time_aug = time_aug
        self.include_payoff = include_payoff
        self.logsig = logsig
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.payoff_degree = payoff_degree
        self.in_the_money = in_the_money
        self.progress = progress
        self.lags = lags

    def _check_params(self):
        _check_int(self.depth, "depth", 1)
        _check_int(self.lags, "lags", 0)
        if isinstance(self.n_jobs, (bool, np.bool_)) or not isinstance(self.n_jobs, numbers.Integral):
            raise TypeError(f"n_jobs must be an integer, got {type(self.n_jobs).__name__}")
        if self.n_jobs == 0:
            raise ValueError("n_jobs must be a non-zero integer (-1: all cores)")
        for name in ("time_aug", "logsig"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be a bool, got {type(getattr(self, name)).__name__}")
        super()._check_params()

    def _augment(self, paths, offset=0):
        """Append the time channel (grid index over n_points - 1) for points from ``offset``."""
        if not self.time_aug:
            return paths
        n, length, dim = paths.shape
        t = (offset + np.arange(length, dtype=np.float64)) / (self.n_points_ - 1)
        out = np.empty((n, length, dim + 1))
        out[:, :, :dim] = paths
        out[:, :, dim] = t
        return out

    def _sig_dim(self):
        return self.dim_ + bool(self.time_aug)

    def _to_features(self, s):
        if not self.logsig:
            return s
        from hftsig.logsignature import sig_to_logsig

        return sig_to_logsig(s, self._sig_dim(), self.depth, n_jobs=self.n_jobs)

    def _path_features(self, paths, exercise_idx):
        n = paths.shape[0]
        out = None
        # chunks small enough that the transposition to date-major stays in cache;
        # per-date slices are then contiguous for the regressions
        step = max(1, (1 << 21) // max(1, exercise_idx.size * self._sig_len()))
        for i in range(0, n, step):
            s = self._to_features(_prefix_signatures(self._augment(paths[i:i + step]), self.depth,
                                                     exercise_idx, self.n_jobs))
            if out is None:
                out = np.empty((exercise_idx.size, n, s.shape[2]))
            out[:, i:i + step] = s.transpose(1, 0, 2)
        if self.lags:
            out = np.concatenate([out, self._lag_features(paths, exercise_idx)], axis=2)
        return out

    def _lag_features(self, paths, at, rows=None):
        """Increments ``X_t - X_{t-k}``, k = 1..lags, at points ``at``.

        Date-major ``(len(at), n, lags * dim)``, or ``(n, lags * dim)`` for a
        scalar ``at``; before the start the path sits at its first point.
        """
        idx = np.atleast_1d(at)
        x = paths if rows is None else paths[rows]
        n, _, dim = x.shape
        now = x[:, idx].transpose(1, 0, 2)
        feats = np.empty((idx.size, n, self.lags * dim))
        for k in range(1, self.lags + 1):
            back = x[:, np.maximum(idx - k, 0)].transpose(1, 0, 2)
            np.subtract(now, back, out=feats[:, :, (k - 1) * dim:k * dim])
        return feats[0] if np.ndim(at) == 0 else feats

    def _sig_len(self):
        d = self._sig_dim()
        return sum(d ** k for k in range(1, self.depth + 1))

    def _inner_feature_fn(self, history, cont, full, later):
        # the Chen product is formed lazily, only for the rows still deciding
        prefix, tail = self._prefix_and_tail(history, cont, later)
        n_inner = cont.shape[1]
        dim, depth = self._sig_dim(), self.depth

        def at(j, rows):
            s = self._to_features(_tensor_product(prefix[rows // n_inner], tail[rows, j], dim, depth))
            if self.lags:
                s = np.concatenate([s, self._lag_features(full, int(later[j]), rows)], axis=1)
            return s
        return at

    def _prefix_and_tail(self, history, cont, later):
        """Signature of each history (m, L) and of each continuation at ``later`` (m*n_inner, J, L)."""
        m, t1, dim = history.shape
        n_inner, n_future = cont.shape[1], cont.shape[2]
        t = t1 - 1
        prefix = _prefix_signatures(self._augment(history, 0), self.depth, [t], self.n_jobs)[:, 0]
        piece = np.empty((m, n_inner, n_future + 1, dim))
        piece[:, :, 0] = history[:, None, -1]
        piece[:, :, 1:] = cont
        piece = self._augment(piece.reshape(m * n_inner, n_future + 1, dim), t)
        return prefix, _prefix_signatures(piece, self.depth, later - t, self.n_jobs)

    def _continuation_features(self, history, cont, full, later):
        # Chen's identity: signature of the history times the signature of the
        # continuation, so each continuation costs its own length only
        m, t1, dim = history.shape
        n_inner, n_future = cont.shape[1], cont.shape[2]
        t = t1 - 1
        prefix = _prefix_signatures(self._augment(history, 0), self.depth, [t], self.n_jobs)[:, 0]
        piece = np.empty((m, n_inner, n_future + 1, dim))
        piece[:, :, 0] = history[:, None, -1]
        piece[:, :, 1:] = cont
        piece = self._augment(piece.reshape(m * n_inner, n_future + 1, dim), t)
        tail = _prefix_signatures(piece, self.depth, later - t, self.n_jobs)
        tail = tail.reshape(m, n_inner, later.size, -1)
        s = _tensor_product(prefix[:, None, None, :], tail, self._sig_dim(), self.depth)
        s = self._to_features(s.reshape(m * n_inner, later.size, -1))
        s = s.transpose(1, 0, 2)
        if self.lags:
            s = np.concatenate([s, self._lag_features(full, later)], axis=2)
        return np.ascontiguousarray(s)


class PolynomialStopper(_BackwardInduction):
    """Plain Longstaff--Schwartz: regression on polynomials of the current state.

    The Markovian baseline of :class:`SignatureStopper`: the features at a
    date are the monomials of the current point of the path up to
    ``degree`` (and the payoff powers), nothing of the history.

    Parameters
    ----------
    degree : int, default 3
        Highest total degree of the state monomials (>= 1).
    alpha, include_payoff, payoff_degree, in_the_money, random_state, progress
        As in :class:`SignatureStopper`.

    Examples
    --------
    >>> import numpy as np
    >>> from hftsig import paths
    >>> x = paths.gbm(2000, 10, s0=36.0, mu=0.06, sigma=0.2, T=1.0, random_state=0)
    >>> put = lambda s: np.maximum(40.0 - s[..., 0], 0.0)
    >>> PolynomialStopper(degree=2).fit(x, put, discount=0.06).coef_.shape
    (11, 5)
    """

    def __init__(self, degree=3, alpha=1e-6, include_payoff=True, random_state=None,
                 payoff_degree=3, in_the_money="auto", progress=None):
        self.degree = degree
        self.alpha = alpha
        self.include_payoff = include_payoff
        self.random_state = random_state
        self.payoff_degree = payoff_degree
        self.in_the_money = in_the_money
        self.progress = progress

    def _check_params(self):
        _check_int(self.degree, "degree", 1)
        super()._check_params()

    def _path_features(self, paths, exercise_idx):
        from itertools import combinations_with_replacement

        x = np.ascontiguousarray(paths[:, exercise_idx].transpose(1, 0, 2))
        dim = x.shape[2]
        cols = []
        for deg in range(1, self.degree + 1):
            for combo in combinations_with_replacement(range(dim), deg):
                cols.append(np.prod(x[:, :, list(combo)], axis=2))
        return np.stack(cols, axis=2)
