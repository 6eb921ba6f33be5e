"""Heavy compute on Dask: signatures, path simulation and optimal stopping across a cluster.

Everything here takes and returns `Dask <https://docs.dask.org>`_ arrays
chunked over the batch (paths) axis, so the paths never have to fit in the
client's memory, nor in any one machine's: each chunk is simulated,
signed, regressed on and valued on the worker that holds it, and only small
summaries travel to the client.  Install the optional extra::

    pip install 'hftsig[dask]'      # dask[array] and distributed

* :func:`sig` / :func:`logsig` -- also reached by :func:`hftsig.sig`,
  :func:`hftsig.logsig` and :meth:`hftsig.SignatureTransformer.transform`
  when given a dask array: one ``map_blocks`` over the batch chunks.
* :func:`simulate` -- any :mod:`hftsig.stopping.processes` generator run chunk by chunk on
  the workers, with seeds spawned per chunk (``numpy.random.SeedSequence.spawn``):
  the same ``random_state`` and chunking give the same paths.
* :func:`fit_stopper`, :func:`stopping_value`, :func:`dual_upper_bound` --
  :class:`hftsig.stopping.stoppers.SignatureStopper` (and
  :class:`~hftsig.stopping.stoppers.PolynomialStopper`) on paths chunked over the
  cluster; also reached by the stoppers' ``fit``, ``value`` and
  ``dual_upper_bound`` when given a dask array.

How the stopping fit is distributed
-----------------------------------
Longstaff--Schwartz goes backwards over the exercise dates, and the
regression at date ``k`` needs the cash flows that the rule fitted at the
later dates gives each path.  Per date there is one pass over the chunks:
each task applies the rule just fitted at date ``k + 1`` to its chunk's
paths (updating their cash flows), computes the features at date ``k``
(for in-the-money paths), and returns the chunk's ridge sufficient
statistics -- the count, the means of the features and of the cash flow,
and the centred cross-product sums ``sum (x - xbar)(x - xbar)^T`` and
``sum (x - xbar)(y - ybar)``, which hold the same information as
``(n, sum x, sum x x^T, sum y, sum x y)`` without the cancellation that
the raw sums suffer when the features' means dwarf their spreads (signature
levels do).  The client merges them (Chan, Golub & LeVeque's pairwise
update) and solves the same standardised ridge system as the in-memory fit,
so the coefficients do not depend on the chunking and equal the in-memory
fit's to rounding.  The per-path state -- cash flows, the date's design rows
and the discounted payoffs of the dates still to come (evaluated once, in
the first pass; each pass drops the date it used) -- stays on the workers
as persisted chunks.  The cost is ``n_dates + 1`` passes over the paths (one
to check them and evaluate the payoffs, ``n_dates - 1`` regressions, one to
apply the rule at the first date), each computing the signatures of the
prefixes up to its own date only; persist the paths (the default) or they
are recomputed from their graph on every pass.

Threads
-------
In a task on a Dask worker the compiled kernels take at most the worker's
threads shared among the tasks it is running (``n_jobs=-1`` means that,
not ``os.cpu_count()``), so a cluster of ``n_workers * threads_per_worker``
threads runs that many kernel threads, not that many times the cores.
"""
from __future__ import annotations

import copy
import numbers

import numpy as np

from hftsig._validation import check_int

try:
    import dask
    import dask.array as da
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError("hftsig.distributed.on_dask needs Dask: install the extra with "
                      "pip install 'hftsig[dask]' (dask[array] and distributed)") from exc

__all__ = ["sig", "logsig", "simulate", "fit_stopper", "stopping_value", "dual_upper_bound"]


# -- dask arrays of paths ------------------------------------------------------------
def _check_dask_paths(path, name, *, allow_single):
    """``path`` as a dask array whose only chunked axis is the batch (rechunked if needed)."""
    if not isinstance(path, da.Array):
        raise TypeError(f"{name}: expected a dask array, got {type(path).__name__}")
    if any(np.isnan(size) for sizes in path.chunks for size in sizes):
        raise ValueError(f"{name}: chunk sizes are unknown; call {name}.compute_chunk_sizes() first")
    if path.ndim == 2 and allow_single:
        return path.rechunk(-1)  # one path: a single block
    if path.ndim != 3:
        raise ValueError(f"{name}: expected a dask array of shape (batch, length, dim), got "
                         f"{path.ndim} dimension(s) {path.shape}")
    if len(path.chunks[1]) > 1 or len(path.chunks[2]) > 1:
        # a block must hold whole paths: the signature runs along the points
        path = path.rechunk({1: -1, 2: -1})
    return path


def _apply_block(block, func, depth, kwargs, out_tail):
    if block.shape[0] == 0 and block.ndim == 3:
        return np.empty((0,) + out_tail)
    return func(block, depth, **kwargs)


def _map_paths(func, path, depth, kwargs):
    path = _check_dask_paths(path, "path", allow_single=True)
    single = path.ndim == 2
    # the client checks every argument (and learns the output's shape) on one
    # path of zeros of the same shape and dtype: bad arguments fail here, at
    # once, with the in-memory function's message; the values are checked per block
    probe = np.zeros(path.shape if single else (1,) + path.shape[1:], dtype=path.dtype)
    out = func(probe, depth, **kwargs)
    out_tail = out.shape if single else out.shape[1:]
    lead = () if single else (path.chunks[0],)
    chunks = lead + tuple((size,) for size in out_tail)
    drop = list(range(len(chunks), path.ndim))
    return path.map_blocks(_apply_block, func, depth, kwargs, out_tail, chunks=chunks,
                           drop_axis=drop, dtype=out.dtype, meta=np.empty((0,) * len(chunks)))


def sig(path, depth, *, stream=False, at=None, basepoint=False, time_aug=False, lead_lag=False,
        n_jobs=1):
    """:func:`hftsig.sig` of a dask array of paths, block by block.

    Parameters
    ----------
    path : dask.array.Array, shape (batch, length, dim) or (length, dim)
        Chunked over the batch only (other axes are rechunked to one chunk:
        a block holds whole paths).
    depth, stream, at, basepoint, time_aug, lead_lag, n_jobs
        As in :func:`hftsig.sig`; ``n_jobs`` is per task, capped on a worker
        by the worker's threads.

    Returns
    -------
    dask.array.Array
        float64, chunked like ``path`` over the batch, the other axes single
        chunks; nothing is computed until you ask.

    Examples
    --------
    >>> import dask.array as da, numpy as np, hftsig
    >>> x = np.cumsum(np.random.default_rng(0).normal(size=(10, 5, 2)), axis=1)
    >>> s = hftsig.sig(da.from_array(x, chunks=(4, 5, 2)), 2)
    >>> s.chunks
    ((4, 4, 2), (6,))
    >>> bool(np.allclose(s.compute(), hftsig.sig(x, 2)))
    True
    """
    from hftsig.signatures.signature import sig as sig_in_memory

    kwargs = dict(stream=stream, at=at, basepoint=basepoint, time_aug=time_aug,
                  lead_lag=lead_lag, n_jobs=n_jobs)
    return _map_paths(sig_in_memory, path, depth, kwargs)


def logsig(path, depth, *, basis="lyndon", stream=False, at=None, time_aug=False, lead_lag=False,
           basepoint=False, n_jobs=1):
    """:func:`hftsig.logsig` of a dask array of paths, block by block.

    Parameters and the returned chunks are as in :func:`sig`; ``basis`` as
    in :func:`hftsig.logsig`.

    Examples
    --------
    >>> import dask.array as da, numpy as np, hftsig
    >>> x = np.cumsum(np.random.default_rng(0).normal(size=(6, 5, 2)), axis=1)
    >>> ls = hftsig.logsig(da.from_array(x, chunks=3), 3)
    >>> ls.shape, ls.chunks[0]
    ((6, 5), (3, 3))
    >>> bool(np.allclose(ls.compute(), hftsig.logsig(x, 3)))
    True
    """
    from hftsig.signatures.logsignature import logsig as logsig_in_memory

    kwargs = dict(basis=basis, stream=stream, at=at, time_aug=time_aug, lead_lag=lead_lag,
                  basepoint=basepoint, n_jobs=n_jobs)
    return _map_paths(logsig_in_memory, path, depth, kwargs)


# -- simulation on the workers ---------------------------------------------------------
def _seed_sequences(random_state, n, name="random_state"):
    """``n`` independent child seeds of ``random_state`` (None, int or SeedSequence)."""
    if isinstance(random_state, np.random.SeedSequence):
        root = random_state
    elif random_state is None or (isinstance(random_state, numbers.Integral)
                                  and not isinstance(random_state, (bool, np.bool_))):
        root = np.random.SeedSequence(random_state)
    else:
        raise TypeError(f"{name} must be None, an int or a numpy SeedSequence (chunk seeds are "
                        f"spawned from it), got {type(random_state).__name__}")
    return root.spawn(n)


def _seed_spec(seed):
    # plain ints and tuples tokenize deterministically: the same seeds give the
    # same task keys, so a repeated simulate() shares results with the first
    return (seed.entropy, tuple(seed.spawn_key), seed.pool_size)


def _simulate_block(generator, n_paths, n_steps, seed_spec, params):
    entropy, spawn_key, pool_size = seed_spec
    seed = np.random.SeedSequence(entropy, spawn_key=spawn_key, pool_size=pool_size)
    return np.asarray(generator(n_paths, n_steps, random_state=seed, **params), dtype=np.float64)


def simulate(generator, n_paths, n_steps, *, chunk_size=250_000, random_state=None, **params):
    """Paths from a :mod:`hftsig.stopping.processes` generator, simulated chunk by chunk on the workers.

    Parameters
    ----------
    generator : str or callable
        ``"gbm"``, ``"fbm"``, ``"ornstein_uhlenbeck"``, or any callable
        ``generator(n_paths, n_steps, random_state=SeedSequence, **params)``
        returning ``(n_paths, n_steps + 1, dim)``.
    n_paths, n_steps : int
        As in the generator.
    chunk_size : int, default 250_000
        Paths per chunk (a Dask task costs ~2 ms, so chunks of 1e5 paths or
        more keep the scheduling overhead small).
    random_state : None, int or numpy.random.SeedSequence
        Root seed; chunk ``i`` uses its ``i``-th spawned child.  The same
        ``random_state`` and ``chunk_size`` give the same paths; another
        chunking gives other (equally distributed) paths.
    **params
        The generator's keyword arguments (``s0``, ``mu``, ``sigma``,
        ``hurst`` ...).

    Returns
    -------
    dask.array.Array of float64, shape (n_paths, n_steps + 1, dim)

    Examples
    --------
    >>> from hftsig.distributed.on_dask import simulate
    >>> x = simulate("gbm", 10, 4, chunk_size=4, random_state=0, s0=1.0, mu=0.0, sigma=0.2)
    >>> x.shape, x.chunks[0]
    ((10, 5, 1), (4, 4, 2))
    >>> bool((x.compute() == x.compute()).all())
    True
    """
    from hftsig.stopping import processes as path_generators

    if isinstance(generator, str):
        if generator not in ("gbm", "fbm", "ornstein_uhlenbeck"):
            raise ValueError(f"generator must be 'gbm', 'fbm', 'ornstein_uhlenbeck' or a callable, "
                             f"got {generator!r}")
        generator = getattr(path_generators, generator)
    elif not callable(generator):
        raise TypeError(f"generator must be a name or a callable, got {type(generator).__name__}")
    n_paths = check_int(n_paths, "n_paths", minimum=1)
    n_steps = check_int(n_steps, "n_steps", minimum=1)
    chunk_size = check_int(chunk_size, "chunk_size", minimum=1)
    sizes = [chunk_size] * (n_paths // chunk_size)
    if n_paths % chunk_size:
        sizes.append(n_paths % chunk_size)
    seeds = _seed_sequences(random_state, len(sizes))
    # the parameters are checked here, on one path, rather than in every task
    probe = np.asarray(generator(1, n_steps, random_state=0, **params))
    if probe.ndim != 3 or probe.shape[:2] != (1, n_steps + 1):
        raise ValueError(f"generator returned shape {probe.shape} for 1 path, expected "
                         f"(1, n_steps + 1, dim) = (1, {n_steps + 1}, dim)")
    dim = probe.shape[2]
    blocks = [
        da.from_delayed(dask.delayed(_simulate_block, pure=True)(generator, size, n_steps,
                                                                 _seed_spec(seed), params),
                        shape=(size, n_steps + 1, dim), dtype=np.float64,
                        meta=np.empty((0, 0, 0)))
        for size, seed in zip(sizes, seeds)
    ]
    return da.concatenate(blocks, axis=0)


# -- optimal stopping ------------------------------------------------------------------
def _check_stopper(stopper):
    from hftsig.stopping.stoppers import _BackwardInduction

    if not isinstance(stopper, _BackwardInduction):
        raise TypeError(f"stopper must be a SignatureStopper or PolynomialStopper, got "
                        f"{type(stopper).__name__}")
    if isinstance(getattr(stopper, "degree", None), str):
        raise ValueError(f"degree={stopper.degree!r}: expected an integer")


def _stopping_paths(paths, name="paths"):
    if isinstance(paths, da.Array) and paths.ndim == 2:
        paths = paths[:, :, None]  # (n_paths, n_points): the dim=1 shorthand, as in memory
    paths = _check_dask_paths(paths, name, allow_single=False)
    if not (np.issubdtype(paths.dtype, np.floating) or np.issubdtype(paths.dtype, np.integer)):
        raise TypeError(f"{name} must be numeric, got dtype {paths.dtype}")
    if paths.dtype != np.float64:
        paths = paths.astype(np.float64)
    if paths.shape[1] < 2:
        raise ValueError(f"{name} must have n_points >= 2 (n_dates >= 2), got {paths.shape[1]}")
    if paths.shape[2] < 1:
        raise ValueError(f"{name} must have at least one channel, got shape {paths.shape}")
    return paths


def _payoff_blocks(payoffs, paths, n_dates, name="payoffs"):
    """One payoff argument per chunk of ``paths``: the callable, or the matching rows."""
    n_blocks = len(paths.chunks[0])
    if callable(payoffs):
        return [payoffs] * n_blocks
    if not isinstance(payoffs, da.Array):
        payoffs = np.asarray(payoffs)
        if payoffs.ndim != 2:
            raise ValueError(f"{name} has shape {payoffs.shape}, expected (n_paths, n_dates) = "
                             f"({paths.shape[0]}, {n_dates})")
        payoffs = da.from_array(payoffs, chunks=(paths.chunks[0], -1))
    if payoffs.shape != (paths.shape[0], n_dates):
        raise ValueError(f"{name} has shape {payoffs.shape}, expected (n_paths, n_dates) = "
                         f"({paths.shape[0]}, {n_dates})")
    return payoffs.rechunk((paths.chunks[0], -1)).to_delayed().ravel().tolist()


def _check_block(stopper, paths, payoffs, n_dates, control=None):
    """First pass: check a chunk; start its state: cash flows at the last date, payoffs
    (and with a control its values at the exercise dates, and ``Z_tau - M_tau``)."""
    paths = np.asarray(paths, dtype=np.float64)
    if not np.isfinite(paths).all():
        raise ValueError("paths contains NaN or infinite values")
    z = stopper._payoffs(payoffs, paths, n_dates) * stopper.discount_factors_
    # one array per date, so that each pass drops the dates it has done with
    by_date = [np.ascontiguousarray(z[:, j]) for j in range(n_dates - 1)]
    state = {"cash": z[:, -1].copy(), "z": by_date}
    if control is not None:
        mart = stopper._control_values(control, paths)[:, stopper.exercise_idx_]
        state["m"] = [np.ascontiguousarray(mart[:, j]) for j in range(n_dates - 1)]
        state["adj"] = z[:, -1] - mart[:, -1]
    return state, bool(np.all(z >= 0))


def _moments(x, y):
    """Ridge sufficient statistics of one chunk: n, means and centred cross-products."""
    n = x.shape[0]
    if n == 0:
        return 0, None, None, None, None
    mean_x = x.mean(axis=0)
    mean_y = float(y.mean())
    xc = x - mean_x
    return n, mean_x, xc.T @ xc, mean_y, xc.T @ (y - mean_y)


def _merge_moments(a, b):
    """Pairwise update of :func:`_moments` (Chan, Golub & LeVeque 1979)."""
    na, mxa, cxxa, mya, cxya = a
    nb, mxb, cxxb, myb, cxyb = b
    if na == 0:
        return b
    if nb == 0:
        return a
    n = na + nb
    dx, dy = mxb - mxa, myb - mya
    w = na * nb / n
    return (n, mxa + dx * (nb / n), cxxa + cxxb + np.outer(dx, dx) * w, mya + dy * (nb / n),
            cxya + cxyb + dx * (dy * w))


def _continuation_of(rule, x, z):
    """Continuation values of a date's rule on its unsplit design ``x``.

    ``rule`` is ``(coef, intercept)``, or with the sign split
    ``(coef_pos, intercept_pos, coef_other, intercept_other)``.
    """
    if len(rule) == 2:
        return x @ rule[0] + rule[1]
    c_pos, b_pos, c_neg, b_neg = rule
    return np.where(z > 0, x @ c_pos + b_pos, x @ c_neg + b_neg)


def _date_block(stopper, paths, state, k, rule, itm_only):
    """One backward pass on a chunk: apply the rule of date k+1, then statistics at date k.

    The statistics are those of all regression rows, and with the sign split
    also those of each side of zero payoff: ``(all, positive, other)``.
    """
    cash = state["cash"].copy()
    # with a control: adj is Z_tau - M_tau, and the target at date k is adj + M_k
    adj = state["adj"].copy() if "adj" in state else None
    if rule is not None and state.get("rows") is not None:
        stop = state["z_rows"] >= _continuation_of(rule, state["x"], state["z_rows"])
        cash[state["rows"][stop]] = state["z_rows"][stop]
        if adj is not None:
            adj[state["rows"][stop]] = state["z_rows"][stop] - state["m_rows"][stop]
    if k < 0:
        return {"cash": cash}, (cash.size, float(cash.sum()))
    zk = state["z"][k]
    later = {"cash": cash, "z": state["z"][:k]}
    if adj is not None:
        later.update(adj=adj, m=state["m"][:k])
    rows = np.flatnonzero(zk > 0) if itm_only else np.arange(zk.size)
    if rows.size == 0:
        empty = _moments(np.empty((0, 0)), np.empty(0))
        return later, (empty, empty, empty)
    t = stopper.exercise_idx_[k]
    # the features at date k see the path up to its point t only
    prefix = np.asarray(paths)[rows, :t + 1]
    x = stopper._design(stopper._path_features(prefix, np.array([t]))[0], zk[rows], split=False, k=k)
    later.update(rows=rows, x=x, z_rows=zk[rows])
    y = cash[rows]
    if adj is not None:
        later["m_rows"] = state["m"][k][rows]
        y = adj[rows] + later["m_rows"]
    if not stopper.sign_split_:
        return later, (_moments(x, y), None, None)
    pos = zk[rows] > 0
    return later, (_moments(x, y), _moments(x[pos], y[pos]), _moments(x[~pos], y[~pos]))


def _ridge_from_moments(stopper, moments):
    """The in-memory fit's standardised ridge from merged statistics:
    ``(coef, intercept, Ridge or None)`` on raw features."""
    from scipy import linalg
    from sklearn.linear_model import Ridge

    n, mean, cxx, mean_y, cxy = moments
    n_features = mean.size
    scale = np.sqrt(np.maximum(np.diag(cxx), 0.0) / n)
    # the same rule as the in-memory fit: constant columns carry nothing beyond
    # the intercept
    keep = scale > 1e-12 * np.maximum(1.0, np.abs(mean))
    coef = np.zeros(n_features)
    if keep.any():
        s = scale[keep]
        gram = cxx[np.ix_(keep, keep)] / np.outer(s, s)
        rhs = cxy[keep] / s
        alpha = stopper.alpha_ * n
        gram.flat[::gram.shape[0] + 1] += alpha
        # scikit-learn's "cholesky" solver solves this very system
        w = linalg.solve(gram, rhs, assume_a="pos", overwrite_a=True)
        coef[keep] = w / s
        intercept = float(mean_y - coef[keep] @ mean[keep])
        reg = Ridge(alpha=alpha, fit_intercept=False, solver="cholesky")
        reg.coef_, reg.intercept_, reg.n_features_in_ = w, 0.0, int(keep.sum())
        reg.solver_, reg.n_iter_ = "cholesky", None
    else:
        intercept, reg = float(mean_y), None
    return coef, intercept, reg


def _fit_date_from_moments(stopper, k, stats):
    """Date ``k``'s regression(s) from merged ``(all, positive, other)`` statistics,
    as the in-memory ``_fit_date`` fits them; returns the rule for the next pass."""
    from hftsig.stopping.stoppers import _MIN_ROWS

    every, pos, neg = stats
    if not stopper.sign_split_:
        coef, intercept, reg = _ridge_from_moments(stopper, every)
        stopper.coef_[k], stopper.intercept_[k], stopper.regressors_[k] = coef, intercept, reg
        return coef, intercept
    f = every[1].size
    if min(pos[0], neg[0]) < max(_MIN_ROWS, f):
        # too few rows on one side for its own regression: both sides share one
        coef, intercept, reg = _ridge_from_moments(stopper, every)
        stopper.coef_[k] = np.concatenate([coef, coef, [0.0]])
        stopper.intercept_[k], stopper.regressors_[k] = intercept, (reg, reg)
        return coef, intercept
    c_pos, b_pos, r_pos = _ridge_from_moments(stopper, pos)
    c_neg, b_neg, r_neg = _ridge_from_moments(stopper, neg)
    stopper.coef_[k] = np.concatenate([c_pos, c_neg, [b_pos - b_neg]])
    stopper.intercept_[k], stopper.regressors_[k] = b_neg, (r_pos, r_neg)
    return c_pos, b_pos, c_neg, b_neg


def _one_pass(task, blocks, per_chunk, stopper, *args):
    """``task(stopper, block, per_chunk[i], *args)`` on every chunk: the new states stay
    on the workers (persisted), the summaries come back."""
    outs = [dask.delayed(task, nout=2, pure=False)(stopper, block, extra, *args)
            for block, extra in zip(blocks, per_chunk)]
    outs = dask.persist(*outs)
    summaries = dask.compute(*[out[1] for out in outs])
    return [out[0] for out in outs], summaries


_AUTO_SETTINGS = ("depth", "lags", "alpha", "sign_split")


def _resolve_settings(stopper, paths, payoffs, exercise_idx, discount, times, control=None):
    """Set the settings the fit uses (``depth_``, ``lags_``, ``alpha_``, ``sign_split_``).

    Settings left at "auto" are chosen as in memory, on the evenly spaced
    selection sample the in-memory fit would use (at most 60,000 paths),
    gathered to the client: the only paths that ever leave the workers.
    The hinges of ``payoff_hinges`` are placed at the quantiles of the same
    sample's payoffs, as in memory.
    """
    from sklearn.base import clone

    from hftsig.stopping.stoppers import (
        _hinge_knots,
        _is_auto,
        _itm_only,
        _selection_rows,
        _uses_hinges,
    )

    auto = [n for n in _AUTO_SETTINGS if _is_auto(getattr(stopper, n, None))]
    # "auto" hinges depend on the payoffs' signs: decided on the sample below
    hinge_setting = getattr(stopper, "payoff_hinges", False)
    hinges = _is_auto(hinge_setting) or bool(hinge_setting)
    stopper.hinge_knots_ = None
    if not auto and not hinges:
        stopper._choose_params(None, None, stopper.exercise_idx_)
        return
    rows = _selection_rows(paths.shape[0])
    sample = paths[rows].compute()
    if not callable(payoffs):
        payoffs = np.asarray(payoffs[rows] if isinstance(payoffs, da.Array)
                             else np.asarray(payoffs)[rows])
    if not auto:
        # only the hinges need the sample: the quantiles of its payoffs, as in memory
        z = stopper._payoffs(payoffs, sample, stopper.n_dates_) * stopper.discount_factors_
        if _uses_hinges(hinge_setting, z, _itm_only(stopper.in_the_money, np.all(z >= 0))):
            stopper.hinge_knots_ = _hinge_knots(z)
        stopper._choose_params(None, None, stopper.exercise_idx_)
        return
    probe = clone(stopper).fit(sample, payoffs, exercise_idx=exercise_idx, discount=discount,
                               times=times, control=control)
    stopper.hinge_knots_ = probe.hinge_knots_
    for name in _AUTO_SETTINGS:
        setattr(stopper, name + "_", getattr(probe, name + "_"))
    for name in ("best_params_", "cv_results_", "n_folds_", "n_selection_paths_",
                 "selection_time_"):
        setattr(stopper, name, getattr(probe, name, None))


def fit_stopper(stopper, paths, payoffs, *, exercise_idx=None, discount=None, times=None,
                persist=True, control=None):
    """Fit a stopper's backward induction on a dask array of paths.

    The same estimator as ``stopper.fit(paths.compute(), ...)`` (equal
    coefficients to rounding, whatever the chunking) without ever holding
    the paths, their features or their cash flows on the client.

    Parameters
    ----------
    stopper : SignatureStopper or PolynomialStopper
        Fitted in place.  Settings left at "auto" are chosen as in memory on
        an evenly spaced sample of at most 60,000 paths gathered to the
        client; the fit itself then runs on every path on the workers.
    paths : dask.array.Array of shape (n_paths, n_points, dim)
        Chunked over the paths (e.g. :func:`simulate`).
    payoffs : callable, or array of shape (n_paths, n_dates)
        A callable runs on each chunk's paths on the workers (it must be
        picklable: a module-level function, or a closure cloudpickle can
        ship); a numpy or dask array is split like the paths.
    exercise_idx, discount, times
        As in :meth:`SignatureStopper.fit`.
    persist : bool, default True
        Persist ``paths`` on the workers for the ``n_dates + 1`` passes.
        With False each pass recomputes them from their graph (a simulation
        graph from :func:`simulate` gives the same paths every time), which
        trades compute for memory.
    control : callable, optional
        A martingale ``control(paths) -> (n_paths, n_points)``, as in
        :meth:`SignatureStopper.fit`; it runs on each chunk's paths on the
        workers (picklable, like ``payoffs``).

    Returns
    -------
    stopper
    """
    from hftsig.stopping.stoppers import _MIN_ROWS, _itm_only

    _check_stopper(stopper)
    stopper._check_params()
    if control is not None and not callable(control):
        raise TypeError("control must be a callable control(paths) -> (n_paths, n_points) "
                        f"martingale values, got {type(control).__name__}")
    paths = _stopping_paths(paths)
    n_paths, n_points, dim = paths.shape
    if n_paths < 2:
        raise ValueError(f"paths must hold at least 2 paths to fit, got {n_paths}")
    idx = stopper._exercise_index(exercise_idx, n_points)
    n_dates = idx.size
    times_, factors = stopper._discount_factors(discount, times, n_points, idx)
    payoff_blocks = _payoff_blocks(payoffs, paths, n_dates)
    if persist:
        paths = paths.persist()
    blocks = paths.to_delayed().ravel().tolist()

    stopper.times_, stopper.discount_factors_ = times_, factors
    stopper.n_points_, stopper.dim_, stopper.n_dates_ = n_points, dim, n_dates
    stopper.n_features_in_ = dim
    stopper.exercise_idx_ = idx
    _resolve_settings(stopper, paths, payoffs, exercise_idx, discount, times, control)
    # the workers get the settings and the grid, never the coefficients being fitted
    features = copy.copy(stopper)
    probe = np.zeros((2, n_points, dim))
    n_features = stopper._design(stopper._path_features(probe, idx[:1])[0], probe[:, 0, 0], k=0).shape[1]

    states, checks = _one_pass(_check_block, blocks, payoff_blocks, features, n_dates, control)
    nonneg = all(checks)
    stopper.itm_only_ = _itm_only(stopper.in_the_money, nonneg)
    stopper.n_features_ = n_features
    stopper.coef_ = np.zeros((n_dates, n_features))
    stopper.intercept_ = np.full(n_dates, np.inf)  # inf: never exercise (no regression)
    stopper.regressors_ = [None] * n_dates
    stopper.n_regression_paths_ = np.zeros(n_dates, dtype=np.intp)

    dates = range(n_dates - 2, -1, -1)
    progress = stopper._progress(n_paths * n_dates)
    if progress is not None:
        dates = progress(dates, desc=f"{type(stopper).__name__}.fit (dask)", unit="date")
    rule = None
    for k in dates:
        states, stats = _one_pass(_date_block, blocks, states, features, k, rule,
                                  stopper.itm_only_)
        merged = [(0, None, None, None, None)] * 3
        for chunk_stats in stats:
            merged = [m if c is None else _merge_moments(m, c) for m, c in zip(merged, chunk_stats)]
        stopper.n_regression_paths_[k] = merged[0][0]
        rule = None
        if merged[0][0] >= _MIN_ROWS:
            rule = _fit_date_from_moments(stopper, k, merged)
    _, sums = _one_pass(_date_block, blocks, states, features, -1, rule, stopper.itm_only_)
    stopper.in_sample_value_ = float(sum(total for _, total in sums) / n_paths)
    return stopper


def _check_fitted_paths(stopper, paths):
    from sklearn.utils.validation import check_is_fitted

    _check_stopper(stopper)
    check_is_fitted(stopper, "coef_")
    paths = _stopping_paths(paths)
    if paths.shape[1] != stopper.n_points_ or paths.shape[2] != stopper.dim_:
        raise ValueError(f"paths has shape {paths.shape}; the stopper was fitted on paths with "
                         f"n_points={stopper.n_points_}, dim={stopper.dim_}")
    return paths


def _mean_and_m2(estimate):
    """(n, mean, sum of squared deviations) from a mean and its standard error."""
    n, mean, se = estimate
    m2 = se * se * n * (n - 1) if n > 1 else 0.0
    return n, mean, m2


def _pool(parts):
    """Mean and standard error of the union of samples given as (n, mean, m2)."""
    n, mean, m2 = 0, 0.0, 0.0
    for nb, mb, m2b in parts:
        if nb == 0:
            continue
        total = n + nb
        delta = mb - mean
        mean += delta * nb / total
        m2 += m2b + delta * delta * n * nb / total
        n = total
    se = float(np.sqrt(m2 / (n - 1) / n)) if n > 1 else float("nan")
    return n, float(mean), se


def _value_block(stopper, paths, payoffs, control):
    res = stopper.value(np.asarray(paths), payoffs, control=control)
    return _mean_and_m2((res.n_paths, res.value, res.std_error))


def stopping_value(stopper, paths, payoffs, *, control=None):
    """:meth:`SignatureStopper.value` on a dask array of paths, chunk by chunk.

    Each chunk returns its count, mean and sum of squared deviations; the
    client pools them, so the estimate equals the in-memory one on the same
    paths (to rounding) whatever the chunking.

    Returns
    -------
    hftsig.stopping.stoppers.StoppingValue
    """
    from hftsig.stopping.stoppers import StoppingValue

    paths = _check_fitted_paths(stopper, paths)
    payoff_blocks = _payoff_blocks(payoffs, paths, stopper.n_dates_)
    if control is not None and not callable(control):
        raise TypeError("control must be a callable control(paths) -> (n_paths, n_points) "
                        f"martingale values, got {type(control).__name__}")
    parts = [dask.delayed(_value_block, pure=False)(stopper, block, pay, control)
             for block, pay in zip(paths.to_delayed().ravel(), payoff_blocks)]
    n, mean, se = _pool(dask.compute(*parts))
    return StoppingValue(mean, se, n)


def _dual_block(stopper, paths, payoffs, simulator, n_inner, seed_spec, max_batch, control):
    entropy, spawn_key, pool_size = seed_spec
    rng = np.random.default_rng(np.random.SeedSequence(entropy, spawn_key=spawn_key,
                                                       pool_size=pool_size))
    res = stopper.dual_upper_bound(np.asarray(paths), payoffs, simulator, n_inner=n_inner,
                                   random_state=rng, max_batch=max_batch, control=control)
    return (_mean_and_m2((res.n_paths, res.value, res.std_error)),
            _mean_and_m2((res.n_paths, res.gap, res.gap_std_error)))


def dual_upper_bound(stopper, paths, payoffs, simulator, *, n_inner=100, lower=None,
                     random_state=None, max_batch=20_000, control=None):
    """:meth:`SignatureStopper.dual_upper_bound` with the outer paths split by chunks.

    Each chunk runs its nested simulations on a worker with its own seed,
    spawned from ``random_state`` (default: the stopper's), so a result is
    reproducible for a given seed and chunking; the client pools the
    chunks' bounds and gaps.  Arguments and result as in the in-memory
    method.

    Returns
    -------
    hftsig.stopping.stoppers.UpperBound
    """
    from hftsig.stopping.stoppers import StoppingValue, UpperBound

    paths = _check_fitted_paths(stopper, paths)
    if not callable(payoffs):
        raise TypeError("payoffs must be a callable of the paths for dual_upper_bound "
                        "(it is evaluated on simulated continuations)")
    if not callable(simulator):
        raise TypeError("simulator must be a callable simulator(history, n_inner, n_future, rng)")
    n_inner = check_int(n_inner, "n_inner", minimum=1)
    max_batch = check_int(max_batch, "max_batch", minimum=1)
    if lower is not None and not isinstance(lower, StoppingValue):
        raise TypeError(f"lower must be a StoppingValue from value(), got {type(lower).__name__}")
    blocks = paths.to_delayed().ravel().tolist()
    seeds = _seed_sequences(stopper.random_state if random_state is None else random_state,
                            len(blocks))
    parts = [dask.delayed(_dual_block, pure=False)(stopper, block, payoffs, simulator, n_inner,
                                                   _seed_spec(seed), max_batch, control)
             for block, seed in zip(blocks, seeds)]
    parts = dask.compute(*parts)
    n, value, se = _pool([upper for upper, _ in parts])
    _, gap, gap_se = _pool([gap for _, gap in parts])
    if lower is not None:
        value, se = float(lower.value) + gap, float(np.hypot(lower.std_error, gap_se))
    return UpperBound(value, se, n, n_inner, gap, gap_se)
