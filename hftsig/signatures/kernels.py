"""Signature kernels: inner products of untruncated signatures, by a PDE.

The signature kernel of two paths ``x`` and ``y`` is
``k(x, y) = <S(x), S(y)>``, the inner product of their full (untruncated)
signatures, level 0 (the constant 1) included.  It is never formed from
signatures: ``k(s, t) = <S(x)_[0,s], S(y)_[0,t]>`` solves the Goursat PDE
``d^2 k / ds dt = <x'(s), y'(t)> k`` with ``k(0, .) = k(., 0) = 1``
(Salvi, Cass, Foster, Lyons and Yang, "The signature kernel is the solution
of a Goursat PDE", SIAM J. Math. Data Sci. 2021), solved here with the
explicit second-order finite-difference scheme of the ``sigkernel`` package
and pysiglib on the grid of path points, each cell cut into
``2**dyadic_order`` pieces per side.  The scheme is exact as
``dyadic_order`` grows; with ``dyadic_order=0`` it is already within a few
parts in a thousand for smooth paths with small increments.

A *static kernel* ``kappa`` on points can replace the Euclidean inner
product (the signature kernel of the paths lifted into the feature space of
``kappa``): ``"linear"``, ``kappa(a, b) = <a, b>``, or ``"rbf"``,
``kappa(a, b) = exp(-|a - b|**2 / sigma)`` (the convention of pysiglib and
``sigkernel``).

Paths are ``(length, dim)`` or ``(batch, length, dim)`` float64 (float32 and
integers are converted); batches of pairs are solved several pairs per SIMD
register (``hftsig/_ext/goursat_pde.h``) on ``n_jobs`` threads with the GIL
released.

>>> import numpy as np
>>> import hftsig
>>> x = np.array([[0.0, 0.0], [0.5, 0.2], [0.3, 0.6]])
>>> y = np.array([[0.0, 0.0], [0.1, 0.4], [0.7, 0.5]])
>>> k = hftsig.sig_kernel(x, y, dyadic_order=3)
>>> round(k, 4)
1.5486
>>> s = hftsig.sig(np.stack([x, y]), 8)          # <S(x), S(y)> truncated at depth 8
>>> round(1.0 + float(s[0] @ s[1]), 4)
1.5486
"""
from __future__ import annotations

from collections import namedtuple
from typing import TYPE_CHECKING

import numpy as np

from hftsig._ext import _signature_kernel as _k
from hftsig._ext._signature import check_bytes as _check_bytes
from hftsig._validation import (
    check_bool,
    check_finite,
    check_int,
    check_numeric,
    check_paths,
    check_positive,
    check_random_state,
)
from hftsig.signatures.signature import _n_threads

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

    from hftsig._validation import RandomStateLike

__all__ = ["sig_kernel", "sig_kernel_backprop", "sig_kernel_gram",
           "sig_kernel_gram_backprop", "sig_mmd", "sig_mmd_test", "MMDTestResult"]

# 2**16 refinements per side already turn a 10-point path into 600 000 grid
# columns; beyond that a typo should raise rather than run for hours.
_MAX_DYADIC_ORDER = 16
_STATIC = {"linear": 0, "rbf": 1}


def _dyadic(dyadic_order):
    """``dyadic_order`` as (order of x, order of y)."""
    if isinstance(dyadic_order, (tuple, list)):
        if len(dyadic_order) != 2:
            raise ValueError("dyadic_order: expected an int or a pair of ints, got "
                             f"{len(dyadic_order)} values")
        ox, oy = (check_int(o, "dyadic_order", minimum=0) for o in dyadic_order)
    else:
        ox = oy = check_int(dyadic_order, "dyadic_order", minimum=0)
    if max(ox, oy) > _MAX_DYADIC_ORDER:
        raise ValueError(f"dyadic_order: at most {_MAX_DYADIC_ORDER}, got {dyadic_order}")
    return ox, oy


def _static(static_kernel, sigma):
    """(kind code, 1 / sigma) of a static kernel name."""
    if not isinstance(static_kernel, str):
        raise TypeError(f"static_kernel: expected 'linear' or 'rbf', got "
                        f"{type(static_kernel).__name__}")
    if static_kernel not in _STATIC:
        raise ValueError(f"static_kernel: expected 'linear' or 'rbf', got {static_kernel!r}")
    return _STATIC[static_kernel], 1.0 / check_positive(sigma, "sigma")


def _check_grid(lx, ly, ox, oy):
    # cells of the refined grid solved per pair; refuse what cannot finish
    cells = max(lx - 1, 0) * max(ly - 1, 0) * (1 << (ox + oy))
    if cells > (1 << 40):
        raise ValueError(f"dyadic_order: a {lx} x {ly} point grid refined {2**ox} x {2**oy} "
                         f"times has {cells} cells per pair, too many")


def _block_bytes(lx, ly, d, ox, oy, backward):
    """Working memory of one thread's block of pairs (see goursat_pde.h)."""
    nx, ny = max(lx - 1, 0), max(ly - 1, 0)
    cols = (ny << oy) + 1
    if backward:  # gp_backward_workspace: source terms and grid rows at the path points
        vectors = (nx * ny + lx * cols + ((1 << ox) + 1) * cols + 2 * (cols + 1) + 6 * ny
                   + 2 * ly + ny * d + 2 * ly * d + 2 * d)
    else:  # gp_block_forward: one grid row and a few rows of coefficients
        vectors = cols + 3 * ny + ny * d + 2 * ly + ly * d
    return 8 * _k.lanes() * vectors


def _check_memory(n_pairs, out_values, shapes, ox, oy, nthreads, backward, names):
    """Refuse (ValueError) a call that would take more than hftsig's memory limit.

    ``out_values`` float64 results, 16 bytes of pair indices per pair, and the
    blocks' working memory (one per thread; in backprop also one gradient
    accumulator per thread).  The limit is :func:`hftsig.signatures.signature.set_config`'s
    ``max_output_bytes``.
    """
    (lx, ly, d), (xname, argument_many) = shapes, names
    threads = max(1, min(nthreads, -(-n_pairs // _k.lanes()))) if n_pairs else 1
    block = _block_bytes(lx, ly, d, ox, oy, backward)
    total = 8 * out_values + 16 * n_pairs + threads * block
    # one block alone over the limit: the paths' lengths and the refinement
    _check_bytes(block, "dyadic_order" if (ox or oy) else xname,
                 f"solving the PDE on a grid of {lx} x {ly} points refined "
                 f"{2 ** ox} x {2 ** oy} times"
                 + (" (backprop keeps the grid rows at the path points)" if backward else ""),
                 "lower dyadic_order or cut the paths shorter")
    _check_bytes(total, argument_many,
                 f"{n_pairs} pair{'s' if n_pairs != 1 else ''} of paths (results and the "
                 f"working memory of {threads} thread{'s' if threads != 1 else ''})",
                 "pass fewer paths per call or use fewer threads (n_jobs)")


def _same_dim(x, y, xname, yname):
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"{yname}: dim {y.shape[-1]} differs from {xname}'s dim "
                         f"{x.shape[-1]}")


def _pair_setup(x, y, dyadic_order, static_kernel, sigma, n_jobs):
    x = check_paths(x, "x")
    y = check_paths(y, "y")
    _same_dim(x, y, "x", "y")
    if x.ndim != y.ndim:
        raise ValueError(f"y: expected a {'batch of paths' if x.ndim == 3 else 'single path'} "
                         f"like x, got shape {y.shape} for x's {x.shape}")
    if x.ndim == 3 and x.shape[0] != y.shape[0]:
        raise ValueError(f"y: batch of {y.shape[0]} paths, x has {x.shape[0]}")
    ox, oy = _dyadic(dyadic_order)
    kind, inv_sigma = _static(static_kernel, sigma)
    nthreads = _n_threads(n_jobs)
    _check_grid(x.shape[-2], y.shape[-2], ox, oy)
    single = x.ndim == 2
    X = x[None] if single else x
    Y = y[None] if single else y
    idx = np.arange(X.shape[0], dtype=np.int64)
    return X, Y, idx, single, (kind, inv_sigma, ox, oy, nthreads)


def sig_kernel(x: ArrayLike, y: ArrayLike, *, dyadic_order: int | tuple[int, int] = 0,
               static_kernel: str = "linear", sigma: float = 1.0,
               n_jobs: int | None = 1) -> float | np.ndarray:
    """Signature kernel ``<S(x), S(y)>`` of a pair of paths or of pairs in a batch.

    Parameters
    ----------
    x, y : array_like, shape (length, dim) or (batch, length, dim)
        One path each, or two batches of the same size (``x[i]`` is paired
        with ``y[i]``).  Lengths may differ between ``x`` and ``y``; ``dim``
        may not.  float64 (float32 and integers are converted).
    dyadic_order : int or (int, int), default 0
        Each cell of the PDE grid is cut into ``2**dyadic_order`` pieces per
        side (a pair: separate orders for ``x`` and ``y``).  Higher is more
        accurate and costs ``4**dyadic_order`` times more.
    static_kernel : {"linear", "rbf"}, default "linear"
        Kernel on points: ``<a, b>``, or ``exp(-|a - b|**2 / sigma)``.
    sigma : float, default 1.0
        Scale of the ``"rbf"`` static kernel (ignored by ``"linear"``).
    n_jobs : int, default 1
        Threads over the pairs; ``-1`` uses every core.

    Returns
    -------
    float or ndarray of shape (batch,)

    See Also
    --------
    sig_kernel_gram : every pair of two batches.
    sig_kernel_backprop : gradients with respect to both paths.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0.0], [1.0]])       # straight line: S(x) = (1, 1, 1/2, 1/6, ...)
    >>> round(sig_kernel(x, x, dyadic_order=5), 4)  # sum 1/(k!)^2 = I_0(2) = 2.27959
    2.2796
    >>> xs = np.random.default_rng(0).standard_normal((3, 5, 2)) * 0.3
    >>> sig_kernel(xs, xs).shape
    (3,)
    """
    X, Y, idx, single, (kind, inv_sigma, ox, oy, nt) = _pair_setup(
        x, y, dyadic_order, static_kernel, sigma, n_jobs)
    _check_memory(len(idx), len(idx), (X.shape[1], Y.shape[1], X.shape[2]), ox, oy, nt, False,
                  ("x", "x"))
    out = _k.kernel_pairs(X, Y, idx, idx, kind, inv_sigma, ox, oy, nt)
    return float(out[0]) if single else out


def sig_kernel_backprop(grad_out: ArrayLike, x: ArrayLike, y: ArrayLike, *,
                        dyadic_order: int | tuple[int, int] = 0, static_kernel: str = "linear",
                        sigma: float = 1.0,
                        n_jobs: int | None = 1) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of ``sum(grad_out * sig_kernel(x, y))`` with respect to ``x`` and ``y``.

    The adjoint of the PDE scheme is swept back from the far corner of the
    grid (reverse-mode differentiation of the discrete solver, so the result
    is the exact gradient of :func:`sig_kernel`'s value).  Memory per pair
    in flight is the grid at the path points, ``length_x * length_y *
    2**dyadic_order`` values, not the whole refined grid.

    Parameters
    ----------
    grad_out : float or array_like of shape (batch,)
        Gradient of the loss with respect to each kernel value.
    x, y, dyadic_order, static_kernel, sigma, n_jobs
        As for :func:`sig_kernel`.

    Returns
    -------
    grad_x, grad_y : ndarray
        Shapes of ``x`` and ``y``.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0.0], [1.0]]); y = np.array([[0.0], [2.0]])
    >>> gx, gy = sig_kernel_backprop(1.0, x, y, dyadic_order=2)
    >>> h = 1e-6; xp = x.copy(); xp[1, 0] += h; xm = x.copy(); xm[1, 0] -= h
    >>> fd = (sig_kernel(xp, y, dyadic_order=2) - sig_kernel(xm, y, dyadic_order=2)) / (2 * h)
    >>> bool(abs(gx[1, 0] - fd) < 1e-6)
    True
    """
    X, Y, idx, single, (kind, inv_sigma, ox, oy, nt) = _pair_setup(
        x, y, dyadic_order, static_kernel, sigma, n_jobs)
    g = np.asarray(grad_out)
    check_numeric(g, "grad_out")
    want = () if single else (X.shape[0],)
    if g.shape != want:
        raise ValueError(f"grad_out: expected shape {want} (one value per pair), got {g.shape}")
    g = np.ascontiguousarray(g, dtype=np.float64).reshape(-1)
    check_finite(g, "grad_out")
    grads = (X.size + Y.size) * (1 + max(1, min(nt, len(idx))))  # result + per-thread sums
    _check_memory(len(idx), grads, (X.shape[1], Y.shape[1], X.shape[2]), ox, oy, nt, True,
                  ("x", "x"))
    gx, gy = _k.backward_pairs(X, Y, idx, idx, g, kind, inv_sigma, ox, oy, nt, False)
    return (gx[0], gy[0]) if single else (gx, gy)


def _gram_setup(X, Y, dyadic_order, static_kernel, sigma, n_jobs):
    X = check_paths(X, "X")
    if X.ndim == 2:
        raise ValueError(f"X: expected a batch of paths (batch, length, dim), got shape {X.shape}")
    symmetric = Y is None or Y is X
    if symmetric:
        Y = X
    else:
        Y = check_paths(Y, "Y")
        if Y.ndim == 2:
            raise ValueError(f"Y: expected a batch of paths (batch, length, dim), "
                             f"got shape {Y.shape}")
        _same_dim(X, Y, "X", "Y")
    ox, oy = _dyadic(dyadic_order)
    kind, inv_sigma = _static(static_kernel, sigma)
    nthreads = _n_threads(n_jobs)
    _check_grid(X.shape[1], Y.shape[1], ox, oy)
    # k(x, y) = k(y, x) holds for the scheme only when both sides are refined alike
    symmetric = symmetric and ox == oy
    return X, Y, symmetric, (kind, inv_sigma, ox, oy, nthreads)


def _gram_pairs(n, m, symmetric):
    if symmetric:
        a, b = np.triu_indices(n)
        return a.astype(np.int64), b.astype(np.int64)
    a = np.repeat(np.arange(n, dtype=np.int64), m)
    b = np.tile(np.arange(m, dtype=np.int64), n)
    return a, b


def sig_kernel_gram(X: ArrayLike, Y: ArrayLike | None = None, *,
                    dyadic_order: int | tuple[int, int] = 0, static_kernel: str = "linear",
                    sigma: float = 1.0, n_jobs: int | None = 1) -> np.ndarray:
    """Gram matrix ``G[i, j] = sig_kernel(X[i], Y[j])``.

    Parameters
    ----------
    X : array_like, shape (n, length_x, dim)
    Y : array_like, shape (m, length_y, dim), optional
        Default ``X``: the symmetric Gram matrix of ``X``, each pair solved
        once (``n (n + 1) / 2`` solves).
    dyadic_order, static_kernel, sigma, n_jobs
        As for :func:`sig_kernel`.

    Returns
    -------
    ndarray of shape (n, m)

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(1).standard_normal((4, 6, 2)) * 0.3
    >>> G = sig_kernel_gram(X, dyadic_order=1)
    >>> G.shape, bool(np.allclose(G, G.T))
    ((4, 4), True)
    >>> bool(np.isclose(G[1, 2], sig_kernel(X[1], X[2], dyadic_order=1)))
    True
    """
    X, Y, symmetric, (kind, inv_sigma, ox, oy, nt) = _gram_setup(
        X, Y, dyadic_order, static_kernel, sigma, n_jobs)
    n, m = X.shape[0], Y.shape[0]
    n_pairs = n * (n + 1) // 2 if symmetric else n * m
    _check_memory(n_pairs, n * m + n_pairs, (X.shape[1], Y.shape[1], X.shape[2]), ox, oy, nt,
                  False, ("X", "X"))
    a, b = _gram_pairs(n, m, symmetric)
    vals = _k.kernel_pairs(X, Y, a, b, kind, inv_sigma, ox, oy, nt)
    if not symmetric:
        return vals.reshape(n, m)
    G = np.empty((n, n))
    G[a, b] = vals
    G[b, a] = vals
    return G


def sig_kernel_gram_backprop(
        grad_out: ArrayLike, X: ArrayLike, Y: ArrayLike | None = None, *,
        dyadic_order: int | tuple[int, int] = 0, static_kernel: str = "linear", sigma: float = 1.0,
        n_jobs: int | None = 1) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Gradients of ``sum(grad_out * sig_kernel_gram(X, Y))``.

    Parameters
    ----------
    grad_out : array_like, shape (n, m)
        Gradient of the loss with respect to each Gram matrix entry.
    X, Y, dyadic_order, static_kernel, sigma, n_jobs
        As for :func:`sig_kernel_gram`.

    Returns
    -------
    ndarray or (ndarray, ndarray)
        With ``Y`` given, ``(grad_X, grad_Y)``; without, ``grad_X`` alone:
        the gradient through both arguments of ``G(X, X)``.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(2).standard_normal((3, 4, 2)) * 0.3
    >>> sig_kernel_gram_backprop(np.ones((3, 3)), X).shape
    (3, 4, 2)
    """
    X, Y, symmetric, (kind, inv_sigma, ox, oy, nt) = _gram_setup(
        X, Y, dyadic_order, static_kernel, sigma, n_jobs)
    same_input = Y is X
    n, m = X.shape[0], Y.shape[0]
    g = np.asarray(grad_out)
    check_numeric(g, "grad_out")
    if g.shape != (n, m):
        raise ValueError(f"grad_out: expected shape {(n, m)}, got {g.shape}")
    g = np.ascontiguousarray(g, dtype=np.float64)
    check_finite(g, "grad_out")
    n_pairs = n * (n + 1) // 2 if symmetric else n * m
    grads = (X.size + (0 if same_input else Y.size)) * (1 + max(1, min(nt, n_pairs)))
    _check_memory(n_pairs, n_pairs + grads, (X.shape[1], Y.shape[1], X.shape[2]), ox, oy, nt,
                  True, ("X", "X"))
    if symmetric:
        # one solve per unordered pair {i, j}: k(X_i, X_j) = k(X_j, X_i)
        a, b = _gram_pairs(n, n, True)
        w = np.where(a == b, g[a, b], g[a, b] + g[b, a])
    else:
        a, b = _gram_pairs(n, m, False)
        w = g.reshape(-1)
    w = np.ascontiguousarray(w)
    if same_input:
        return _k.backward_pairs(X, Y, a, b, w, kind, inv_sigma, ox, oy, nt, True)
    return _k.backward_pairs(X, Y, a, b, w, kind, inv_sigma, ox, oy, nt, False)


def _mmd_from_blocks(kxx, kyy, kxy, unbiased):
    m, n = kxx.shape[0], kyy.shape[0]
    if unbiased:
        sxx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        syy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    else:
        sxx = kxx.sum() / (m * m)
        syy = kyy.sum() / (n * n)
    return float(sxx + syy - 2.0 * kxy.sum() / (m * n))


def _two_samples(X, Y, unbiased):
    unbiased = check_bool(unbiased, "unbiased")
    X = check_paths(X, "X")
    Y = check_paths(Y, "Y")
    for arr, name in ((X, "X"), (Y, "Y")):
        if arr.ndim != 3:
            raise ValueError(f"{name}: expected a batch of paths (batch, length, dim), "
                             f"got shape {arr.shape}")
        if arr.shape[0] < (2 if unbiased else 1):
            raise ValueError(f"{name}: needs at least {2 if unbiased else 1} paths, "
                             f"got {arr.shape[0]}")
    _same_dim(X, Y, "X", "Y")
    return X, Y, unbiased


def _blocks(X, Y, kw):
    kxx = sig_kernel_gram(X, **kw)
    kyy = sig_kernel_gram(Y, **kw)
    kxy = sig_kernel_gram(X, Y, **kw)
    return kxx, kyy, kxy


def sig_mmd(X: ArrayLike, Y: ArrayLike, *, unbiased: bool = True,
            dyadic_order: int | tuple[int, int] = 0, static_kernel: str = "linear",
            sigma: float = 1.0, n_jobs: int | None = 1) -> float:
    """Squared maximum mean discrepancy between two samples of paths.

    ``MMD^2 = E k(x, x') + E k(y, y') - 2 E k(x, y)`` with the signature
    kernel ``k``: zero when the two laws have the same expected signature
    (for a characteristic static kernel such as ``"rbf"``, the same law).

    Parameters
    ----------
    X : array_like, shape (m, length_x, dim)
    Y : array_like, shape (n, length_y, dim)
    unbiased : bool, default True
        The U-statistic (leaves the diagonals ``k(x_i, x_i)`` out; can be
        negative) rather than the V-statistic (biased, ``>= 0``).
    dyadic_order, static_kernel, sigma, n_jobs
        As for :func:`sig_kernel`.

    Returns
    -------
    float

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = np.cumsum(rng.standard_normal((20, 10, 1)) * 0.1, axis=1)
    >>> Y = np.cumsum(rng.standard_normal((20, 10, 1)) * 0.1 + 0.05, axis=1)
    >>> sig_mmd(X, Y) > sig_mmd(X, X[::-1])
    True
    >>> abs(sig_mmd(X, X, unbiased=False)) < 1e-12
    True
    """
    X, Y, unbiased = _two_samples(X, Y, unbiased)
    kw = dict(dyadic_order=dyadic_order, static_kernel=static_kernel, sigma=sigma,
              n_jobs=n_jobs)
    return _mmd_from_blocks(*_blocks(X, Y, kw), unbiased)


MMDTestResult = namedtuple("MMDTestResult", ["statistic", "pvalue", "null_distribution"])
MMDTestResult.__doc__ = """Result of :func:`sig_mmd_test`.

Attributes
----------
statistic : float
    MMD² of the two samples as given.
pvalue : float
    ``(1 + #{null >= statistic}) / (1 + n_permutations)``.
null_distribution : ndarray of shape (n_permutations,)
    MMD² of each random relabelling of the pooled sample.
"""


def sig_mmd_test(X: ArrayLike, Y: ArrayLike, *, n_permutations: int = 1000,
                 random_state: RandomStateLike = None, unbiased: bool = True,
                 dyadic_order: int | tuple[int, int] = 0, static_kernel: str = "linear",
                 sigma: float = 1.0, n_jobs: int | None = 1) -> MMDTestResult:
    """Permutation two-sample test: do ``X`` and ``Y`` come from one law of paths?

    The Gram matrix of the pooled sample is computed once; each permutation
    relabels its rows and columns (no new PDE solve), and all relabellings
    are evaluated together with matrix products.

    Parameters
    ----------
    X : array_like, shape (m, length_x, dim)
    Y : array_like, shape (n, length_y, dim)
    n_permutations : int, default 1000
        Random relabellings of the pooled sample (``>= 1``).
    random_state : None, int, numpy SeedSequence or Generator
        Seed of the permutations.
    unbiased, dyadic_order, static_kernel, sigma, n_jobs
        As for :func:`sig_mmd`.

    Returns
    -------
    MMDTestResult
        ``(statistic, pvalue, null_distribution)``.

    Examples
    --------
    >>> import numpy as np
    >>> from hftsig.signatures.augmentations import time_augment
    >>> rng = np.random.default_rng(0)
    >>> calm = time_augment(np.cumsum(rng.standard_normal((30, 12, 1)) * 0.1, axis=1))
    >>> wild = time_augment(np.cumsum(rng.standard_normal((30, 12, 1)) * 0.3, axis=1))
    >>> res = sig_mmd_test(calm, wild, static_kernel="rbf", n_permutations=200,
    ...                    random_state=0)
    >>> bool(res.pvalue < 0.05)
    True
    """
    X, Y, unbiased = _two_samples(X, Y, unbiased)
    n_permutations = check_int(n_permutations, "n_permutations", minimum=1)
    rng = check_random_state(random_state)
    kw = dict(dyadic_order=dyadic_order, static_kernel=static_kernel, sigma=sigma,
              n_jobs=n_jobs)
    kxx, kyy, kxy = _blocks(X, Y, kw)
    m, n = kxx.shape[0], kyy.shape[0]
    K = np.block([[kxx, kxy], [kxy.T, kyy]])
    statistic = _mmd_from_blocks(kxx, kyy, kxy, unbiased)

    N = m + n
    row = K.sum(axis=1)
    total = row.sum()
    diag = np.diag(K)
    null = np.empty(n_permutations)
    chunk = max(1, min(n_permutations, (1 << 22) // N))  # indicator columns per matmul
    for start in range(0, n_permutations, chunk):
        p = min(chunk, n_permutations - start)
        S = np.zeros((N, p))
        perms = rng.permuted(np.tile(np.arange(N), (p, 1)), axis=1)[:, :m]
        S[perms.T, np.arange(p)] = 1.0  # S[i, c] = 1: point i labelled X in relabelling c
        sxx = np.einsum("ic,ic->c", S, K @ S)
        rs = row @ S
        syy = total - 2.0 * rs + sxx
        sxy = rs - sxx
        if unbiased:
            tx = diag @ S
            ty = diag.sum() - tx
            stat = (sxx - tx) / (m * (m - 1)) + (syy - ty) / (n * (n - 1))
        else:
            stat = sxx / (m * m) + syy / (n * n)
        null[start:start + p] = stat - 2.0 * sxy / (m * n)
    # a relabelling equal to the observed one must count as reaching it, so
    # compare with a tolerance well below any real difference
    tol = 1e-12 * max(1.0, abs(statistic), float(np.abs(K).max()))
    pvalue = (1.0 + np.count_nonzero(null >= statistic - tol)) / (1.0 + n_permutations)
    return MMDTestResult(statistic, float(pvalue), null)
