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
  paths continue (:class:`hftsig.stopping.processes.GBMContinuation` for Black--Scholes).
* the gap between them, which tells how good the answer is.

Both bounds accept a martingale of the model as control variate
(``control=``, e.g. :meth:`hftsig.stopping.processes.FBMContinuation.martingale`, the Doob
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
>>> from hftsig.stopping import processes
>>> from hftsig.stopping.stoppers import SignatureStopper
>>> def put(s):
...     return np.maximum(40.0 - s[..., 0], 0.0)
>>> train = processes.gbm(2000, 50, s0=36.0, mu=0.06, sigma=0.2, T=1.0, random_state=0)
>>> test = processes.gbm(2000, 50, s0=36.0, mu=0.06, sigma=0.2, T=1.0, random_state=1)
>>> times = np.linspace(0.0, 1.0, 51)
>>> st = SignatureStopper(depth=2).fit(train, put, discount=0.06, times=times)
>>> low = st.value(test, put)
>>> bool(abs(low.value - 4.478) < 3 * low.std_error + 0.05)
True

With no settings given, depth, lags, ridge strength and the sign split are
chosen on held-out training paths (explicit ones, like ``depth=2`` above, are
kept):

>>> auto = SignatureStopper(random_state=0).fit(train, put, discount=0.06, times=times)
>>> sorted(auto.best_params_)
['alpha', 'depth', 'lags', 'sign_split']
>>> int(auto.cv_results_["chosen"].sum())
1

An upper bound by nested simulation (tiny sizes: the gap shrinks with
``n_inner`` and the number of outer paths):

>>> sim = processes.GBMContinuation(mu=0.06, sigma=0.2, dt=1 / 50)
>>> outer = processes.gbm(20, 50, s0=36.0, mu=0.06, sigma=0.2, T=1.0, random_state=2)
>>> up = st.dual_upper_bound(outer, put, sim, n_inner=20, random_state=3)
>>> bool(up.value + 3 * up.std_error > low.value - 3 * low.std_error)
True
"""
from __future__ import annotations

import numbers
import time
from collections import namedtuple

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator
from sklearn.linear_model import Ridge
from sklearn.utils.validation import check_is_fitted

from hftsig._validation import (
    check_int,
    check_positive,
    check_random_state,
    is_dask_array,
    set_path_input_tags,
)
from hftsig.signatures.signature import sig

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


def _first_true(mask):
    """Index of the first True along axis 1 (every row has one)."""
    return np.argmax(mask, axis=1)


# Grids of the "auto" settings of SignatureStopper.  Depths whose signature
# has more than _MAX_SIG_FEATURES terms, and lags beyond _MAX_LAG_FEATURES
# columns, are left out (cost and memory grow with the square of the width).
_AUTO_DEPTHS = (1, 2, 3)
_AUTO_LAGS = (0, 1, 5, 10)
_AUTO_ALPHAS = (1e-8, 1e-6, 1e-4, 1e-2)
_MAX_SIG_FEATURES = 300
_MAX_LAG_FEATURES = 50
# Paths the selection uses at most (fitting plus validation), and the memory
# its widest features may take (fewer paths when they would need more); the
# final fit uses every path.
_MAX_SELECTION_PATHS = 60_000
_SELECTION_BYTES = 768 * 2 ** 20
# quantiles of each date's payoffs at which payoff_hinges places its hinges:
# dense in the tails, where one smooth fit to the bulk of the paths goes wrong
_HINGE_QUANTILES = (0.001, 0.005, 0.02, 0.1, 0.5, 0.9, 0.98, 0.995, 0.999)


def _selection_rows(n):
    """The evenly spaced paths (at most ``_MAX_SELECTION_PATHS``) the settings are chosen on."""
    return np.unique(np.linspace(0, n - 1, min(n, _MAX_SELECTION_PATHS)).round().astype(np.intp))


def _hinge_knots(z):
    """Per-date hinge locations: the ``_HINGE_QUANTILES`` of the payoffs ``z`` (n, n_dates)."""
    return np.ascontiguousarray(np.quantile(z, _HINGE_QUANTILES, axis=0).T)


def _itm_only(in_the_money, nonneg):
    """Whether regressions and exercise keep to positive payoffs: as given, or for "auto"
    when every training payoff is non-negative (``nonneg``)."""
    return bool(nonneg) if in_the_money == "auto" else bool(in_the_money)


def _splittable(z, itm_only):
    """Payoffs that take both signs, regressed on every path (stopping a process): where
    the sign split is tried and the hinges are on by default."""
    return bool((z > 0).any() and (z < 0).any()) and not itm_only


def _uses_hinges(setting, z, itm_only):
    """Whether ``payoff_hinges`` is on: as given, or for "auto" on splittable payoffs."""
    return _splittable(z, itm_only) if _is_auto(setting) else bool(setting)


def _is_auto(value):
    return isinstance(value, str) and value == "auto"


def _moments(x, y):
    """Sufficient statistics of a least-squares fit: (rows, mean, centred Gram, centred X'Y, sum Y)."""
    m = x.shape[0]
    if m == 0:
        f = x.shape[1]
        return 0, np.zeros(f), np.zeros((f, f)), np.zeros((f, y.shape[1])), np.zeros(y.shape[1])
    mu = x.mean(axis=0)
    xc = x - mu
    return m, mu, xc.T @ xc, xc.T @ y, y.sum(axis=0)


def _merge_moments(a, b):
    """Moments of the union of two row sets (parallel-axis shifts of the centred sums)."""
    ma, mua, ga, ba, ya = a
    mb, mub, gb, bb, yb = b
    if ma == 0:
        return b
    if mb == 0:
        return a
    m = ma + mb
    mu = (ma * mua + mb * mub) / m
    d = mua - mub
    g = ga + gb + (ma * mb / m) * np.outer(d, d)
    xy = ba + bb + np.outer(mua - mu, ya) + np.outer(mub - mu, yb)
    return m, mu, g, xy, ya + yb


def _ridges_from_moments(mom, cols, js, alphas):
    """The standardised ridge of ``_BackwardInduction._ridge`` from moments, for several targets.

    Candidates ``js`` share the columns ``cols`` and differ in their cash
    flows (columns of the cross products) and ridge ``alphas``; one
    eigendecomposition of the standardised Gram matrix serves them all.
    Returns ``(coef, intercept)`` of shapes ``(n_columns, len(js))`` and
    ``(len(js),)``.
    """
    m, mu, g, xy, ysum = mom
    coef = np.zeros((mu.size, len(js)))
    var = np.diag(g)[cols] / m
    keep = np.sqrt(np.maximum(var, 0.0)) > 1e-12 * np.maximum(1.0, np.abs(mu[cols]))
    idx = np.flatnonzero(cols)[keep]
    if idx.size:
        sd = np.sqrt(var[keep])
        lam, vec = np.linalg.eigh(g[np.ix_(idx, idx)] / (m * np.outer(sd, sd)))
        rhs = vec.T @ (xy[np.ix_(idx, js)] / (m * sd[:, None]))
        # the standardised Gram matrix is positive semi-definite: rounding may
        # leave its smallest eigenvalues a little below zero
        w = vec @ (rhs / (np.maximum(lam, 0.0)[:, None] + np.asarray(alphas)[None, :]))
        coef[idx] = w / sd[:, None]
    return coef, ysum[js] / m - mu @ coef


def _selection_folds(n_paths, n_folds):
    """Fold of each of ``n_paths`` selection paths: interleaved, so each fold is evenly spaced.

    Every path is in exactly one fold and fold sizes differ by at most one.
    """
    return np.arange(n_paths) % n_folds


def _validate_candidates(design, z, fit_mask, val_mask, columns, alphas, splits, itm_only, progress=None,
                         mart=None):
    """Longstaff--Schwartz for many settings at once; their cash flows on held-out paths.

    ``design(k, rows)`` is the widest regression design at date ``k`` on the
    selection paths ``rows``; candidate ``j`` regresses on the columns ``columns[j]``
    with ridge ``alphas[j]``, split by the sign of the payoff when
    ``splits[j]``.  The backward induction runs for all candidates together on
    the rows of ``fit_mask``: the Gram matrix of a date is shared, and the
    cross products with every candidate's cash flows are one matrix product.
    Returns the discounted cash flow of each candidate's rule on the rows of
    ``val_mask``, shape ``(n_val, n_candidates)``.  With ``mart`` (a
    martingale's values at the exercise dates, ``(n_paths, n_dates)``) the
    regressions and the returned cash flows are those of
    ``Z_tau - (M_tau - M_t)`` (see :meth:`_BackwardInduction.fit`).
    """
    n_dates = z.shape[1]
    n_cand, width = len(columns), len(columns[0])
    columns = np.asarray(columns)
    splits = np.asarray(splits, dtype=bool)
    alphas = np.asarray(alphas, dtype=np.float64)
    groups = {}
    for j in range(n_cand):
        groups.setdefault(columns[j].tobytes(), []).append(j)
    any_split = bool(splits.any())
    fit_rows, val_rows = np.flatnonzero(fit_mask), np.flatnonzero(val_mask)
    zf, zv = z[fit_rows], z[val_rows]
    mf = None if mart is None else mart[fit_rows]
    # with a control, cash holds Z_tau - M_tau: the target at date k adds M_k back
    cash = np.repeat(zf[:, -1:] if mf is None else zf[:, -1:] - mf[:, -1:], n_cand, axis=1)
    coef = np.zeros((n_dates, 2, width, n_cand))   # side 0: payoff > 0, side 1: <= 0
    intercept = np.full((n_dates, 2, n_cand), np.inf)
    dates = range(n_dates - 2, -1, -1)
    if progress is not None:
        dates = progress(dates, desc="SignatureStopper model selection", unit="date")
    for k in dates:
        zk = zf[:, k]
        rows = np.flatnonzero(zk > 0) if itm_only else np.arange(fit_rows.size)
        if rows.size < _MIN_ROWS:
            continue
        x = design(k, fit_rows[rows])
        y = cash[rows] if mf is None else cash[rows] + mf[rows, k, None]
        pos = zk[rows] > 0
        if any_split:
            sides = [_moments(x[pos], y[pos]), _moments(x[~pos], y[~pos])]
            whole = _merge_moments(*sides)
        else:
            whole = _moments(x, y)
        for cols_key, js in groups.items():
            cols, js = columns[js[0]], np.array(js)
            for split in (False, True):
                sel = js[splits[js] == split]
                if sel.size == 0:
                    continue
                if split and min(sides[0][0], sides[1][0]) >= max(_MIN_ROWS, int(cols.sum())):
                    for side in (0, 1):
                        c, b = _ridges_from_moments(sides[side], cols, sel, alphas[sel])
                        coef[k, side][:, sel], intercept[k, side, sel] = c, b
                else:
                    c, b = _ridges_from_moments(whole, cols, sel, alphas[sel])
                    coef[k, 0][:, sel], intercept[k, 0, sel] = c, b
                    coef[k, 1][:, sel], intercept[k, 1, sel] = c, b
        cont = x @ coef[k, 0] + intercept[k, 0]
        if any_split:
            cont = np.where(pos[:, None], cont, x @ coef[k, 1] + intercept[k, 1])
        zr = zk[rows, None]
        cash[rows] = np.where(zr >= cont, zr, y)
        if mf is not None:
            cash[rows] -= mf[rows, k, None]
    # the fitted rules on the held-out paths
    out = np.zeros((val_rows.size, n_cand))
    mv = None if mart is None else mart[val_rows]
    alive = np.ones((val_rows.size, n_cand), dtype=bool)
    for k in range(n_dates - 1):
        zk = zv[:, k]
        live = np.flatnonzero(zk > 0) if itm_only else np.arange(val_rows.size)
        if live.size == 0 or not np.isfinite(intercept[k]).any():
            continue
        x = design(k, val_rows[live])
        with np.errstate(invalid="ignore"):
            cont = x @ coef[k, 0] + intercept[k, 0]
            if any_split:
                cont = np.where((zk[live] > 0)[:, None], cont, x @ coef[k, 1] + intercept[k, 1])
        stop = alive[live] & (zk[live, None] >= cont)
        gain = zk[live, None] if mv is None else zk[live, None] - (mv[live, k, None] - mv[live, :1])
        out[live] = np.where(stop, gain, out[live])
        alive[live] &= ~stop
    last = zv[:, -1:] if mv is None else zv[:, -1:] - (mv[:, -1:] - mv[:, :1])
    return np.where(alive, last, out)


class _BackwardInduction(BaseEstimator):
    """Longstaff--Schwartz machinery shared by the stoppers; subclasses give features."""

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        # paths are (n_paths, n_points, dim); a 2-d array is accepted only as the
        # dim=1 shorthand (n_paths, n_points), not as scikit-learn's
        # (n_samples, n_features) table, so two_d_array stays False.  fit needs
        # the payoffs, which play the role of y.
        set_path_input_tags(tags)
        tags.target_tags.required = True
        return tags

    # -- features ---------------------------------------------------------------
    def _path_features(self, paths, exercise_idx):
        """Features of the path history at each exercise date, date-major: (n_dates, n, f)."""
        raise NotImplementedError

    def _design(self, path_feats, z, split=None, k=None):
        """Regression design at date ``k`` from path features and payoffs.

        With hinges (``hinge_knots_``), ``max(z - q, 0)`` for the date's
        knots ``q`` follow the payoff powers.
        With the sign split (``sign_split_``), every column appears twice,
        multiplied by the indicators of ``z > 0`` and ``z <= 0``, followed by
        the indicator of ``z > 0``: one linear map on this design is a
        separate regression on each side of zero payoff.
        """
        x = path_feats
        if self.include_payoff and self.payoff_degree > 0:
            powers = [z[:, None] ** p for p in range(1, self.payoff_degree + 1)]
            x = np.concatenate([path_feats] + powers, axis=1)
        knots = getattr(self, "hinge_knots_", None)
        if knots is not None:
            x = np.concatenate([x, np.maximum(z[:, None] - knots[k][None, :], 0.0)], axis=1)
        if self.sign_split_ if split is None else split:
            pos = (z > 0)[:, None]
            x = np.concatenate([x * pos, x * ~pos, pos.astype(np.float64)], axis=1)
        return x

    # -- validation -------------------------------------------------------------
    def _check_params(self):
        if not (isinstance(self.alpha, str) and self.alpha == "auto"):
            check_positive(self.alpha, "alpha", allow_zero=True)
        if not isinstance(self.include_payoff, (bool, np.bool_)):
            raise TypeError(f"include_payoff must be a bool, got {type(self.include_payoff).__name__}")
        check_int(self.payoff_degree, "payoff_degree", minimum=0)
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
    def fit(self, paths, payoffs, *, exercise_idx=None, discount=None, times=None, control=None):
        """Fit the continuation-value regressions by backward induction.

        Parameters
        ----------
        paths : array_like of shape (n_paths, n_points, dim)
            Simulated paths including the starting point; ``(n_paths,
            n_points)`` is read as ``dim=1``.  Without ``exercise_idx`` every
            point is an exercise date.  A dask array chunked over the paths
            is fitted on the cluster (:func:`hftsig.distributed.on_dask.fit_stopper`).
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
        control : callable, optional
            A martingale of the model, ``control(paths) -> (n_paths,
            n_points)`` (discounted like the payoffs), as in :meth:`value`.
            Each date's regression target is then ``Z_tau - (M_tau - M_t)``
            instead of the realised cash flow ``Z_tau``: by optional sampling
            it has the same conditional mean, so the regression estimates the
            same continuation value, with far less noise when ``M`` tracks
            the payoff (stopping fBm at H = 0.4 from 50,000 paths with the
            defaults: 0.1557 without, 0.1572 with ``FBMContinuation.martingale``).  The "auto"
            selection uses it too, for its regressions and to compare the
            candidates' held-out values.  Any callable that is not a
            martingale leaves the rule's value on fresh paths a lower bound
            but biases its regressions.

        Returns
        -------
        self
        """
        if is_dask_array(paths):
            from hftsig.distributed.on_dask import fit_stopper

            return fit_stopper(self, paths, payoffs, exercise_idx=exercise_idx,
                               discount=discount, times=times, control=control)
        self._check_params()
        # The regressions are many small dense products: on a shared machine
        # OpenBLAS's own threads make them many times slower than one thread.
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1, user_api="blas"):
            return self._fit(paths, payoffs, exercise_idx, discount, times, control)

    def _fit(self, paths, payoffs, exercise_idx, discount, times, control=None):
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
        self.itm_only_ = _itm_only(self.in_the_money, np.all(z >= 0))
        mart = None if control is None else self._control_values(control, paths)[:, idx]
        self.hinge_knots_ = (_hinge_knots(z[_selection_rows(n_paths)])
                             if _uses_hinges(getattr(self, "payoff_hinges", False), z, self.itm_only_)
                             else None)

        self._choose_params(paths, z, idx, mart)
        feats = self._path_features(paths, idx)
        n_features = self._design(feats[0, :1], z[:1, 0], k=0).shape[1]
        self.n_features_ = n_features
        self.coef_ = np.zeros((n_dates, n_features))
        self.intercept_ = np.full(n_dates, np.inf)  # inf: never exercise (no regression)
        self.regressors_ = [None] * n_dates
        self.n_regression_paths_ = np.zeros(n_dates, dtype=np.intp)

        cash = z[:, -1].copy()
        # with a control, adj is Z_tau - M_tau and the target at date k is adj + M_k
        adj = None if mart is None else cash - mart[:, -1]
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
            x = self._design(feats[k][rows], zk[rows], split=False, k=k)
            y = cash[rows] if adj is None else adj[rows] + mart[rows, k]
            cont = self._fit_date(k, x, y, zk[rows])
            stop = zk[rows] >= cont
            cash[rows[stop]] = zk[rows[stop]]
            if adj is not None:
                adj[rows[stop]] = zk[rows[stop]] - mart[rows[stop], k]
        self.in_sample_value_ = float(cash.mean())
        return self

    def _progress(self, work):
        if self.progress is False or (self.progress is None and work < 5_000_000):
            return None
        from tqdm.auto import tqdm

        def bar(it, **kw):
            return tqdm(it, disable=None if self.progress is None else False, leave=False, **kw)
        return bar

    def _choose_params(self, paths, z, exercise_idx, mart=None):
        """Resolve the settings used by the fit (``alpha_``, ``sign_split_``)."""
        self.alpha_ = float(self.alpha)
        self.sign_split_ = False

    def _fit_date(self, k, x, y, z):
        """Fit date ``k``'s continuation value on design ``x`` (unsplit); predictions on x."""
        if not self.sign_split_:
            coef, intercept, reg = self._ridge(x, y)
            self.coef_[k], self.intercept_[k], self.regressors_[k] = coef, intercept, reg
            return x @ coef + intercept
        f = x.shape[1]
        pos = z > 0
        if min(pos.sum(), (~pos).sum()) < max(_MIN_ROWS, f):
            # too few rows on one side for its own regression: both sides share one
            coef, intercept, reg = self._ridge(x, y)
            self.coef_[k] = np.concatenate([coef, coef, [0.0]])
            self.intercept_[k], self.regressors_[k] = intercept, (reg, reg)
            return x @ coef + intercept
        c_pos, b_pos, r_pos = self._ridge(x[pos], y[pos])
        c_neg, b_neg, r_neg = self._ridge(x[~pos], y[~pos])
        self.coef_[k] = np.concatenate([c_pos, c_neg, [b_pos - b_neg]])
        self.intercept_[k], self.regressors_[k] = b_neg, (r_pos, r_neg)
        return np.where(pos, x @ c_pos + b_pos, x @ c_neg + b_neg)

    def _ridge(self, x, y):
        """Standardised ridge of y on x: (coef, intercept, Ridge or None) on raw features."""
        reg = None
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
            reg = Ridge(alpha=self.alpha_ * x.shape[0], fit_intercept=False, solver="cholesky")
            reg.fit(xs, y - y_mean)
            coef[keep] = reg.coef_ / scale[keep]
            intercept = float(y_mean - coef[keep] @ mean[keep])
        else:
            intercept = float(y.mean())
        return coef, intercept, reg

    # -- the stopping rule -----------------------------------------------------------
    def _continuation(self, feats, z):
        """Continuation values (n, n_dates) for discounted payoffs z."""
        n, n_dates = z.shape
        cont = np.empty((n, n_dates))
        for k in range(n_dates):
            cont[:, k] = self._design(feats[k], z[:, k], k=k) @ self.coef_[k] + self.intercept_[k]
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
            :meth:`hftsig.stopping.processes.FBMContinuation.martingale`.  By optional
            sampling ``E[M_tau - M_{t_1}] = 0`` for the first exercise date
            ``t_1``, so ``Z_tau - (M_tau - M_{t_1})`` has the same mean as
            ``Z_tau`` (the estimate stays unbiased, with no fitted
            coefficient) and a smaller variance when ``M`` tracks the payoff.

        Returns
        -------
        StoppingValue
            ``(value, std_error, n_paths)``.
        """
        if is_dask_array(paths):
            from hftsig.distributed.on_dask import stopping_value

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
            paths.  See :class:`hftsig.stopping.processes.GBMContinuation`.
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
        if is_dask_array(paths):
            from hftsig.distributed.on_dask import dual_upper_bound

            return dual_upper_bound(self, paths, payoffs, simulator, n_inner=n_inner, lower=lower,
                                    random_state=random_state, max_batch=max_batch,
                                    control=control)
        paths = self._check_new_paths(paths)
        if not callable(payoffs):
            raise TypeError("payoffs must be a callable of the paths for dual_upper_bound "
                            "(it is evaluated on simulated continuations)")
        if not callable(simulator):
            raise TypeError("simulator must be a callable simulator(history, n_inner, n_future, rng)")
        n_inner = check_int(n_inner, "n_inner", minimum=1)
        if lower is not None and not isinstance(lower, StoppingValue):
            raise TypeError(f"lower must be a StoppingValue from value(), got {type(lower).__name__}")
        max_batch = check_int(max_batch, "max_batch", minimum=1)
        rng = check_random_state(self.random_state if random_state is None else random_state)
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
            c = self._design(feats_at(j, rows), zr, k=kk) @ self.coef_[kk] + self.intercept_[kk]
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

    Settings left at ``"auto"`` (depth, lags, alpha, sign_split: the
    default) are chosen inside :meth:`fit` by the value of the fitted rule on
    validation paths held out of the training paths: any rule's value on
    paths it was not fitted on is an unbiased estimate of a lower bound, so
    the best held-out value is an honest objective.  The choice is reported
    in ``best_params_`` and ``cv_results_``; the rule is then refitted on all
    the training paths.  Explicit values are used exactly as given.

    Parameters
    ----------
    depth : int or "auto", default "auto"
        Signature truncation level (>= 1).  "auto" tries 1 to 3, leaving out
        levels whose signature has more than 300 terms.
    alpha : float or "auto", default "auto"
        Ridge penalty per sample on standardised features (the objective is
        the mean squared error plus ``alpha * ||w||^2``), so its effect does
        not depend on the number of paths.  "auto" tries 1e-8, 1e-6, 1e-4
        and 1e-2 for the best feature set.
    time_aug : bool, default True
        Add time (the grid index scaled to [0, 1]) as the last channel before
        taking signatures; without it the signature cannot tell a path from
        its reparametrisations.
    include_payoff : bool, default True
        Add the payoff and its powers up to ``payoff_degree`` as features.
    logsig : bool, default False
        Use the log-signature (Lyndon basis, :mod:`hftsig.signatures.logsignature`)
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
        0 uses the signature alone.  "auto" (the default) tries 0, 1, 5 and
        10 (at most 50 lag columns).
    sign_split : bool or "auto", default "auto"
        Fit separate regressions on the paths with a positive payoff and on
        the others.  The continuation value of a payoff that takes both signs
        is often kinked at zero payoff (stopping a process: wait when ahead,
        stop at once when behind), a kink no smooth function of the features
        resolves; split, each side is smooth.  "auto" tries both when the
        training payoffs take both signs and regressions are not restricted
        to in-the-money paths (where every regressed payoff is positive).
        A side with fewer rows than features shares the regression of the
        whole date.
    validation_fraction : float, default 1/3
        Share of the selection paths in each validation fold: the "auto"
        candidates are cross-fitted on ``round(1 / validation_fraction)``
        folds (at least 2), each fold's rules fitted on the other folds and
        valued on it, so every selection path validates exactly once and the
        candidates are compared (paired) on all of them.  The selection paths
        are the training paths (at most 60,000, fewer when the widest
        candidate's features would exceed 768 MB, evenly spaced among them);
        the folds are interleaved, so each is evenly spaced: simulated paths
        are exchangeable, and the choice then depends on the data alone (not
        on ``random_state``).  More folds fit the candidates on more paths
        and cost proportionally more.  Unused when no setting is "auto".
    payoff_hinges : bool or "auto", default "auto"
        Also use ``max(Z_t - q, 0)`` at nine quantiles ``q`` of each date's
        training payoffs (0.1, 0.5, 2, 10, 50, 90, 98, 99.5 and 99.9 %, from
        the evenly spaced selection paths) as features.  One smooth fit is
        ruled by the bulk of the paths and can be far off in the payoff's
        tails, where the continuation may fall away from the payoff (stopping
        fBm at H = 0.9: on the lowest 0.2 % of payoffs at an early date the
        rule without hinges continues where its own continuation value is
        0.4 below the payoff); the hinges let the fit bend there.  The rule's
        value barely moves (those paths are rare), but the decisions off its
        path do, and with them the gap of :meth:`dual_upper_bound` (H = 0.9:
        1.51 % without, 0.77 % with).  "auto" turns them on when the training
        payoffs take both signs and the regressions are not restricted to
        in-the-money paths (stopping a process; as for ``sign_split``), and
        off for options, whose regressions see positive payoffs only.

    Attributes
    ----------
    depth_, lags_, alpha_, sign_split_ : int, int, float, bool
        The settings the rule was fitted with (the explicit ones, or those
        chosen for "auto").
    best_params_ : dict
        The same settings as a dict (keys depth, lags, alpha, sign_split).
    cv_results_ : dict of ndarray or None
        One entry per candidate tried (None when nothing was "auto"):
        ``params`` (list of dicts), ``param_depth``, ``param_lags``,
        ``param_alpha``, ``param_sign_split``, ``mean_validation_value``
        and ``std_error_validation_value`` (value of the candidate's rules
        on the validation paths),
        ``diff_to_best`` and ``std_error_diff_to_best`` (paired difference
        to the best candidate on the same paths),
        ``rank_validation_value`` (1: the best value), ``chosen`` (the
        pick: the best value, among exact ties the narrowest design),
        ``n_columns`` (regression columns) and ``split{f}_validation_value``
        for each fold ``f`` (value on that fold's paths, of the rules fitted
        on the other folds).  Values and differences are over all the
        selection paths, each valued by the rules of the folds it was not in.
    hinge_knots_ : ndarray of shape (n_dates, 9) or None
        With ``payoff_hinges``, each date's hinge locations (quantiles of the
        training payoffs); None without.
    n_selection_paths_ : tuple of int
        Paths that fitted each fold's candidates (the fewest over the folds)
        and paths that validated them (all the selection paths); only after
        a selection.
    n_folds_ : int
        Folds of the cross-fitted selection (only after a selection).
    selection_time_ : float
        Wall-clock seconds spent choosing the "auto" settings (0 without).
    coef_ : ndarray of shape (n_dates, ``n_features_``)
        Continuation-value coefficients per date, on unstandardised features
        (with ``sign_split_``, on the split design: the coefficients of the
        positive side, of the other side, then the difference of their
        intercepts).
    intercept_ : ndarray of shape (n_dates,)
        ``inf`` at dates without a regression (never exercise there).
    regressors_ : list of Ridge, tuple of Ridge, or None
        The fitted ridge of each date (on standardised features); with
        ``sign_split_``, the pair (positive side, other side).
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
    hftsig.stopping.processes : simulators of training paths.

    Notes
    -----
    Features of every exercise date come from one streamed pass of
    :func:`hftsig.sig` with ``at=exercise_idx``.  The time channel is added
    here (grid index over ``n_points - 1``, the same convention as
    :func:`hftsig.signatures.augmentations.time_augment` for a whole path) rather than by
    ``sig(time_aug=True)``, so that continuation pieces simulated by
    :meth:`dual_upper_bound` carry the absolute grid times and their
    signatures combine with the history's by Chen's identity.

    References
    ----------
    Longstaff & Schwartz (2001), Valuing American options by simulation: a
    simple least-squares approach.  Bayer, Pelizzari & Schoenmakers (2023),
    Primal and dual optimal stopping with signatures.  Andersen & Broadie
    (2004), Primal-dual simulation algorithm for pricing multidimensional
    American options.  Rasmussen (2005), Control variates for Monte Carlo
    valuation of American options (control variates in the regressions:
    ``fit(control=...)``).
    """

    def __init__(self, depth="auto", alpha="auto", time_aug=True, include_payoff=True, logsig=False,
                 n_jobs=1, random_state=None, payoff_degree=3, in_the_money="auto", progress=None,
                 lags="auto", sign_split="auto", validation_fraction=1 / 3, payoff_hinges="auto"):
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
        self.sign_split = sign_split
        self.validation_fraction = validation_fraction
        self.payoff_hinges = payoff_hinges

    def _check_params(self):
        if not _is_auto(self.depth):
            check_int(self.depth, "depth", minimum=1)
        if not _is_auto(self.lags):
            check_int(self.lags, "lags", minimum=0)
        if not (_is_auto(self.sign_split) or isinstance(self.sign_split, (bool, np.bool_))):
            raise TypeError(f"sign_split must be 'auto' or a bool, got {self.sign_split!r}")
        frac = self.validation_fraction
        if isinstance(frac, (bool, np.bool_)) or not isinstance(frac, numbers.Real):
            raise TypeError(f"validation_fraction must be a real number, got {type(frac).__name__}")
        if not 0.0 < frac < 1.0:
            raise ValueError(f"validation_fraction must lie in (0, 1), got {frac!r}")
        if isinstance(self.n_jobs, (bool, np.bool_)) or not isinstance(self.n_jobs, numbers.Integral):
            raise TypeError(f"n_jobs must be an integer, got {type(self.n_jobs).__name__}")
        if self.n_jobs == 0:
            raise ValueError("n_jobs must be a non-zero integer (-1: all cores)")
        if not (_is_auto(self.payoff_hinges) or isinstance(self.payoff_hinges, (bool, np.bool_))):
            raise TypeError(f"payoff_hinges must be 'auto' or a bool, got {self.payoff_hinges!r}")
        for name in ("time_aug", "logsig"):
            if not isinstance(getattr(self, name), (bool, np.bool_)):
                raise TypeError(f"{name} must be a bool, got {type(getattr(self, name)).__name__}")
        super()._check_params()

    # -- model selection ------------------------------------------------------------
    def _auto_grid(self, z):
        """Candidate values of each setting: the explicit value, or the "auto" grid."""
        if _is_auto(self.depth):
            depths = [d for d in _AUTO_DEPTHS if self._sig_len_at(d) <= _MAX_SIG_FEATURES] or [1]
        else:
            depths = [int(self.depth)]
        if _is_auto(self.lags):
            lags = [g for g in _AUTO_LAGS if g * self.dim_ <= _MAX_LAG_FEATURES] or [0]
        else:
            lags = [int(self.lags)]
        alphas = list(_AUTO_ALPHAS) if _is_auto(self.alpha) else [float(self.alpha)]
        if _is_auto(self.sign_split):
            # with in-the-money regressions every row has a positive payoff: nothing to split
            splits = [False, True] if _splittable(z, self.itm_only_) else [False]
        else:
            splits = [bool(self.sign_split)]
        return depths, lags, alphas, splits

    def _n_folds(self):
        """Folds of the cross-fitted selection: one per held-out share, at least two."""
        return max(2, int(round(1.0 / self.validation_fraction)))

    def _sig_len_at(self, depth):
        d = self._sig_dim()
        if self.logsig:
            from hftsig.signatures.logsignature import logsiglength

            return logsiglength(d, depth)
        return sum(d ** k for k in range(1, depth + 1))

    def _choose_params(self, paths, z, exercise_idx, mart=None):
        """Set depth_, lags_, alpha_, sign_split_: explicit, or best on held-out paths."""
        depths, lags, alphas, splits = self._auto_grid(z)
        if len(depths) * len(lags) * len(alphas) * len(splits) == 1:
            self.depth_, self.lags_, self.alpha_, self.sign_split_ = depths[0], lags[0], alphas[0], splits[0]
            self.best_params_ = dict(depth=self.depth_, lags=self.lags_, alpha=self.alpha_,
                                     sign_split=self.sign_split_)
            self.cv_results_ = None
            self.selection_time_ = 0.0
            return

        start = time.perf_counter()
        n = paths.shape[0]
        width = self._sig_len_at(max(depths)) + max(lags) * self.dim_
        n_sel = min(n, _MAX_SELECTION_PATHS, max(1_000, _SELECTION_BYTES // (8 * width * z.shape[1])))
        # simulated paths are exchangeable: evenly spaced subsets are as good as
        # random ones, and make the choice a function of the data alone
        chosen = np.unique(np.linspace(0, n - 1, n_sel).round().astype(np.intp))
        n_folds = self._n_folds()
        fold = _selection_folds(chosen.size, n_folds)
        if chosen.size < n_folds or chosen.size - np.bincount(fold).max() < _MIN_ROWS:
            raise ValueError(f"paths: {n} paths are too few to hold out validation paths for the "
                             "'auto' settings; pass more paths or explicit depth, lags, alpha and "
                             "sign_split")
        # features once, at the largest depth and number of lags tried: the
        # smaller settings use a subset of these columns (signature levels come
        # first and in order, then the lags by increasing distance)
        self.depth_, self.lags_ = max(depths), max(lags)
        self.sign_split_ = False
        feats = self._path_features(paths[chosen], exercise_idx)
        n_sig = self._sig_len_at(self.depth_)
        n_path_cols = feats.shape[2]
        n_design = self._design(feats[0, :1], z[:1, 0], split=False, k=0).shape[1]

        def columns(depth, n_lags):
            # the payoff's powers and hinges follow the path features
            cols = np.zeros(n_design, dtype=bool)
            cols[:self._sig_len_at(depth)] = True
            cols[n_sig:n_sig + n_lags * self.dim_] = True
            cols[n_path_cols:] = True
            return cols

        zs = z[chosen]
        ms = None if mart is None else mart[chosen]

        def design(k, rows):
            return self._design(feats[k][rows], zs[rows, k], split=False, k=k)
        cands = [dict(depth=d, lags=g, alpha=a, sign_split=sp_)
                 for d in depths for g in lags for sp_ in splits for a in alphas]
        widths = np.array([columns(c["depth"], c["lags"]).sum() * (2 if c["sign_split"] else 1)
                           for c in cands])
        progress = self._progress(n_folds * chosen.size * z.shape[1] * len(cands))
        # cross-fitting: each fold's cash flows come from rules fitted on the
        # other folds, so every selection path validates once and the paired
        # comparison of two candidates uses all of them; a single held-out
        # share is too few paths to separate candidates 0.5-1 % apart
        cash = np.empty((chosen.size, len(cands)))
        col_sets = [columns(c["depth"], c["lags"]) for c in cands]
        for f in range(n_folds):
            held = fold == f
            cash[held] = _validate_candidates(design, zs, ~held, held, col_sets, [c["alpha"] for c in cands],
                                              [c["sign_split"] for c in cands], self.itm_only_, progress,
                                              mart=ms)
        n_val = chosen.size
        values = cash.mean(axis=0)
        diffs = cash - cash[:, [int(np.argmax(values))]]
        diff_se = diffs.std(axis=0, ddof=1) / np.sqrt(n_val)
        # the best held-out value; ties (identical rules) go to the narrowest design.
        # Preferring narrower designs within a standard error of the best cost up to
        # 1 % on the max-call (depth 1 chosen, where the refit on all paths gains
        # from depth 2)
        best = values.max()
        tied = np.flatnonzero(values == best)
        pick = int(tied[np.argmin(widths[tied])])
        self.cv_results_ = {
            "params": cands,
            "param_depth": np.array([c["depth"] for c in cands]),
            "param_lags": np.array([c["lags"] for c in cands]),
            "param_alpha": np.array([c["alpha"] for c in cands]),
            "param_sign_split": np.array([c["sign_split"] for c in cands]),
            "n_columns": widths,
            "mean_validation_value": values,
            "std_error_validation_value": cash.std(axis=0, ddof=1) / np.sqrt(n_val),
            "diff_to_best": diffs.mean(axis=0),
            "std_error_diff_to_best": diff_se,
            "rank_validation_value": np.argsort(np.argsort(-values, kind="stable"), kind="stable") + 1,
            "chosen": np.arange(len(cands)) == pick,
        }
        for f in range(n_folds):
            self.cv_results_[f"split{f}_validation_value"] = cash[fold == f].mean(axis=0)
        self.n_folds_ = n_folds
        self.best_params_ = dict(cands[pick])
        self.depth_, self.lags_ = self.best_params_["depth"], self.best_params_["lags"]
        self.alpha_, self.sign_split_ = self.best_params_["alpha"], self.best_params_["sign_split"]
        self.n_selection_paths_ = (int(chosen.size - np.bincount(fold).max()), n_val)
        self.selection_time_ = time.perf_counter() - start

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
        from hftsig.signatures.logsignature import sig_to_logsig

        return sig_to_logsig(s, self._sig_dim(), self.depth_, n_jobs=self.n_jobs)

    def _path_features(self, paths, exercise_idx):
        n = paths.shape[0]
        out = None
        # chunks small enough that the transposition to date-major stays in cache;
        # per-date slices are then contiguous for the regressions
        step = max(1, (1 << 21) // max(1, exercise_idx.size * self._sig_len()))
        n_lag = self.lags_ * paths.shape[2]
        for i in range(0, n, step):
            s = self._to_features(_prefix_signatures(self._augment(paths[i:i + step]), self.depth_,
                                                     exercise_idx, self.n_jobs))
            if out is None:
                # one array for the signature and the lags: no copy to join them
                out = np.empty((exercise_idx.size, n, s.shape[2] + n_lag))
                n_sig = s.shape[2]
            out[:, i:i + step, :n_sig] = s.transpose(1, 0, 2)
            if n_lag:
                out[:, i:i + step, n_sig:] = self._lag_features(paths[i:i + step], exercise_idx)
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
        feats = np.empty((idx.size, n, self.lags_ * dim))
        for k in range(1, self.lags_ + 1):
            back = x[:, np.maximum(idx - k, 0)].transpose(1, 0, 2)
            np.subtract(now, back, out=feats[:, :, (k - 1) * dim:k * dim])
        return feats[0] if np.ndim(at) == 0 else feats

    def _sig_len(self):
        d = self._sig_dim()
        return sum(d ** k for k in range(1, self.depth_ + 1))

    def _inner_feature_fn(self, history, cont, full, later):
        # the Chen product is formed lazily, only for the rows still deciding
        prefix, tail = self._prefix_and_tail(history, cont, later)
        n_inner = cont.shape[1]
        dim, depth = self._sig_dim(), self.depth_

        def at(j, rows):
            s = self._to_features(_tensor_product(prefix[rows // n_inner], tail[rows, j], dim, depth))
            if self.lags_:
                s = np.concatenate([s, self._lag_features(full, int(later[j]), rows)], axis=1)
            return s
        return at

    def _prefix_and_tail(self, history, cont, later):
        """Signature of each history (m, L) and of each continuation at ``later`` (m*n_inner, J, L)."""
        m, t1, dim = history.shape
        n_inner, n_future = cont.shape[1], cont.shape[2]
        t = t1 - 1
        prefix = _prefix_signatures(self._augment(history, 0), self.depth_, [t], self.n_jobs)[:, 0]
        piece = np.empty((m, n_inner, n_future + 1, dim))
        piece[:, :, 0] = history[:, None, -1]
        piece[:, :, 1:] = cont
        piece = self._augment(piece.reshape(m * n_inner, n_future + 1, dim), t)
        return prefix, _prefix_signatures(piece, self.depth_, later - t, self.n_jobs)

    def _continuation_features(self, history, cont, full, later):
        # Chen's identity: signature of the history times the signature of the
        # continuation, so each continuation costs its own length only
        m, t1, dim = history.shape
        n_inner, n_future = cont.shape[1], cont.shape[2]
        t = t1 - 1
        prefix = _prefix_signatures(self._augment(history, 0), self.depth_, [t], self.n_jobs)[:, 0]
        piece = np.empty((m, n_inner, n_future + 1, dim))
        piece[:, :, 0] = history[:, None, -1]
        piece[:, :, 1:] = cont
        piece = self._augment(piece.reshape(m * n_inner, n_future + 1, dim), t)
        tail = _prefix_signatures(piece, self.depth_, later - t, self.n_jobs)
        tail = tail.reshape(m, n_inner, later.size, -1)
        s = _tensor_product(prefix[:, None, None, :], tail, self._sig_dim(), self.depth_)
        s = self._to_features(s.reshape(m * n_inner, later.size, -1))
        s = s.transpose(1, 0, 2)
        if self.lags_:
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
    >>> from hftsig.stopping import processes
    >>> x = processes.gbm(2000, 10, s0=36.0, mu=0.06, sigma=0.2, T=1.0, random_state=0)
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
        check_int(self.degree, "degree", minimum=1)
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
