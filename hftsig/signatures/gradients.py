"""Gradients of signatures, log-signatures and the signature algebra.

Every function here takes ``grad_out``, the gradient of a scalar loss ``L``
with respect to the output of the matching forward function, and returns the
gradient of ``L`` with respect to that function's inputs (reverse mode, as
iisignature's ``*backprop`` functions):

==========================  ==================================================
forward                     backward
==========================  ==================================================
:func:`hftsig.sig`          :func:`sigbackprop` -> dL/dpath
:func:`hftsig.logsig`       :func:`logsigbackprop` -> dL/dpath
:func:`hftsig.sigcombine`   :func:`sigcombinebackprop` -> (dL/ds1, dL/ds2)
:func:`hftsig.sigjoin`      :func:`sigjoinbackprop` -> (dL/ds, dL/dsegment)
:func:`sigscale`            :func:`sigscalebackprop` -> (dL/ds, dL/dscales)
==========================  ==================================================

Layout is the signature layout of :mod:`hftsig.signatures.signature` (level 0 left out).
Results are float64.

How :func:`sigbackprop` is computed (``hftsig/_ext/sigbackprop.h``): the
signature is built step by step, ``S_k = S_{k-1} (x) exp(dx_k)``; the pass
walks the steps backwards, recomputing ``S_{k-1} = S_k (x) exp(-dx_k)``
instead of storing it (so memory is one signature and one gradient per path,
whatever the length, as in signatory and pysiglib), and differentiates the
Horner scheme of the forward kernel.  Only levels ``1..depth-1`` of the
signature need recomputing, and the top level of the gradient is only read
(two multiply-adds per coordinate); a backward pass measured 3-6x a forward
``sig`` of the same batch.  Paths are processed four
to a SIMD register; a batch too small to fill the registers (one long path)
is cut into pieces whose gradients follow from Chen's identity.

>>> import numpy as np
>>> import hftsig
>>> path = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 2.0]])
>>> g = np.zeros(hftsig.siglength(2, 2)); g[3] = 1.0   # L = coordinate (0, 1)
>>> hftsig.sigbackprop(g, path, 2)                      # dL/dpath
array([[-2. , -0.5],
       [ 1. , -0.5],
       [ 1. ,  1. ]])
"""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from hftsig._ext import _sigbackprop as _k
from hftsig._validation import check_finite, check_int, check_numeric
from hftsig.signatures.logsignature import _check_basis, _lyndon_system
from hftsig.signatures.signature import (
    _as_sigs,
    _check_size,
    _join_args,
    _n_threads,
    _SigPlan,
    sig,
    siglength,
)

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

__all__ = ["sigbackprop", "logsigbackprop", "sig_to_logsig_backprop", "sigcombinebackprop",
           "sigjoinbackprop", "sigscale", "sigscalebackprop"]


def _as_grad(grad_out, shape, what):
    g = np.asarray(grad_out)
    check_numeric(g, "grad_out")
    if g.shape != shape:
        raise ValueError(f"grad_out: expected the shape of {what}, {shape}, got {g.shape}")
    g = np.ascontiguousarray(g, dtype=np.float64)
    check_finite(g, "grad_out")
    return g


def _untransform(g, lead_lag, time_aug, basepoint):
    """Gradient on the transformed path -> gradient on the original path.

    The transforms are applied in the order lead-lag, time, basepoint, so
    they are undone in reverse.  The prepended basepoint and the time
    channel do not depend on the path: their rows/channel are dropped.
    """
    if basepoint:
        g = g[..., 1:, :]
    if time_aug:
        g = g[..., :-1]
    if lead_lag:
        # point r of the lead-lag path is (x[ceil(r/2)], x[floor(r/2)])
        dim = g.shape[-1] // 2
        lead, lag = g[..., :dim], g[..., dim:]
        out = lead[..., 0::2, :] + lag[..., 0::2, :]
        out[..., 1:, :] += lead[..., 1::2, :]
        out[..., :-1, :] += lag[..., 1::2, :]
        g = out
    return np.ascontiguousarray(g)


def sigbackprop(grad_out: ArrayLike, path: ArrayLike, depth: int, *, stream: bool = False,
                at: ArrayLike | None = None, basepoint: bool = False, time_aug: bool = False,
                lead_lag: bool = False, n_jobs: int | None = 1) -> np.ndarray:
    """Gradient of a loss with respect to a path, given its gradient with respect to ``sig``.

    Parameters
    ----------
    grad_out : array_like
        dL/d ``sig(path, depth, ...)``: the shape of that signature,
        ``(siglength,)`` or ``(batch, siglength)``, with ``stream`` or
        ``at`` one more axis before the last.
    path : array_like, shape (length, dim) or (batch, length, dim)
        The path(s) given to :func:`hftsig.sig`.
    depth : int
        Truncation level, >= 1.
    stream, at, basepoint, time_aug, lead_lag : optional
        Exactly as in :func:`hftsig.sig`; the gradient is with respect to
        the points of ``path`` itself, before the transforms (the
        basepoint and the time channel are constants).
    n_jobs : int
        Threads over the batch and over pieces of long paths (``-1``: all
        cores); the GIL is released.  With ``n_jobs > 1`` on a small batch
        results can differ from ``n_jobs=1`` in the last bits.

    Returns
    -------
    ndarray of float64, the shape of ``path``

    Notes
    -----
    Memory is ``O(batch * siglength)`` besides the output: each signature
    before a step is recomputed from the one after it.  That recomputation
    loses accuracy only as ``sig`` of the reversed path would, which for
    paths whose increments are far larger than 1 at high depth can cost
    digits.  With ``at`` or ``stream``, each path runs from its last
    requested point down, the gradients of the prefixes entering as the pass
    reaches their points; a batch too small to fill the SIMD lanes is cut at
    the requested points instead, as :func:`hftsig.sig` does.

    Examples
    --------
    The first-level term of a signature is the total increment, so its
    gradient moves the end point up and the start point down:

    >>> import numpy as np
    >>> x = np.array([[0.0], [1.0], [3.0]])
    >>> sigbackprop(np.array([1.0, 0.0]), x, 2)
    array([[-1.],
           [ 0.],
           [ 1.]])
    >>> sigbackprop(np.array([0.0, 1.0]), x, 2)   # level 2 is (x_end - x_0)**2 / 2
    array([[-3.],
           [ 0.],
           [ 3.]])
    """
    # the arguments of the sig call whose gradient this is, checked as sig checks them
    plan = _SigPlan(path, depth, stream=stream, at=at, basepoint=basepoint, time_aug=time_aug,
                    lead_lag=lead_lag, n_jobs=n_jobs)
    X, batch, n = plan.X, plan.batch, plan.siglen
    lead = () if plan.single else (batch,)
    if plan.at is not None:
        idx = plan.at
        g = _as_grad(grad_out, lead + (len(idx), n), "sig(path, depth, stream/at=...)")
        out = _k.sig_backprop_at(X, g.reshape(batch * len(idx), n), plan.depth,
                                 np.ascontiguousarray(idx, dtype=np.int64), plan.nthreads)
    else:
        g = _as_grad(grad_out, lead + (n,), "sig(path, depth)")
        out = _k.sig_backprop(X, g.reshape(batch, n), plan.depth, plan.nthreads)
    out = _untransform(out, *plan.transforms)
    return out[0] if plan.single else out


@lru_cache(maxsize=32)
def _lyndon_transpose(dim, depth):
    """A^T (CSR, unit diagonal) of the Lyndon system of :mod:`hftsig.signatures.logsignature`."""
    from scipy.sparse import csr_matrix, identity

    _, indptr, indices, data = _lyndon_system(dim, depth)
    nl = indptr.shape[0] - 1
    A = csr_matrix((data, indices, indptr), shape=(nl, nl)) + identity(nl, format="csr")
    return A.T.tocsr()


def _lyndon_backprop(gy, dim, depth):
    """dL/dlog(s) (expanded layout) given dL/d(Lyndon coordinates).

    The coordinates y solve A y = c, c the tensor logarithm at the Lyndon
    words and A unit lower-triangular (see :mod:`hftsig.signatures.logsignature`), so
    dL/dc = A^-T dL/dy, and c reads the logarithm at the Lyndon words only.
    """
    from scipy.sparse.linalg import spsolve_triangular

    flat, _, _, data = _lyndon_system(dim, depth)
    if data.size:
        gc = spsolve_triangular(_lyndon_transpose(dim, depth), gy.T, lower=False,
                                unit_diagonal=True).T
    else:  # depth 1, or one channel: A is the identity
        gc = gy
    out = np.zeros((gy.shape[0], siglength(dim, depth)))
    out[:, flat] = gc
    return out


def sig_to_logsig_backprop(grad_out: ArrayLike, signature: ArrayLike, dim: int, depth: int, *,
                           basis: str = "lyndon", n_jobs: int | None = 1) -> np.ndarray:
    """Gradient through :func:`hftsig.signatures.logsignature.sig_to_logsig`.

    Parameters
    ----------
    grad_out : array_like, shape (..., logsiglength) or (..., siglength)
        dL/d ``sig_to_logsig(signature, dim, depth, basis=basis)``.
    signature : array_like, shape (..., siglength(dim, depth))
    dim, depth : int
    basis : {"lyndon", "expanded"}
    n_jobs : int
        Threads over the leading axes (``-1``: all cores).

    Returns
    -------
    ndarray of float64, the shape of ``signature``: dL/dsignature

    Notes
    -----
    The tensor logarithm ``log(1 + x) = sum_n (-1)^(n+1) x^n / n`` is
    differentiated through its powers ``x^n = x^(n-1) (x) x``, formed
    forwards and differentiated backwards (``hftsig/_ext/sigbackprop.h``);
    the Lyndon coordinates solve a unit lower-triangular system (see
    :mod:`hftsig.signatures.logsignature`), whose adjoint is one transposed solve.

    Examples
    --------
    At the zero signature (a constant path) the logarithm is the identity
    to first order:

    >>> import numpy as np
    >>> sig_to_logsig_backprop(np.array([1.0, 2.0, 3.0]), np.zeros(6), 2, 2)
    array([1., 2., 0., 3., 0., 0.])
    """
    dim = check_int(dim, "dim", minimum=1)
    depth = check_int(depth, "depth", minimum=1)
    basis = _check_basis(basis)
    nthreads = _n_threads(n_jobs)
    s = np.asarray(signature)
    check_numeric(s, "signature")
    n = _check_size(dim, depth)
    if s.ndim < 1 or s.shape[-1] != n:
        raise ValueError(f"signature: last axis must have siglength(dim={dim}, depth={depth}) "
                         f"= {n}, got shape {s.shape}")
    lead = s.shape[:-1]
    rows = np.ascontiguousarray(s.reshape(-1, n), dtype=np.float64)
    check_finite(rows, "signature")
    width = n if basis == "expanded" else _lyndon_system(dim, depth)[0].shape[0]
    g = _as_grad(grad_out, lead + (width,), f"sig_to_logsig(..., basis={basis!r})")
    g = g.reshape(-1, width)
    if basis == "lyndon":
        g = _lyndon_backprop(g, dim, depth)
    g = np.ascontiguousarray(g, dtype=np.float64)
    out = _k.log_backprop(g, rows, dim, depth, nthreads)
    return out.reshape(lead + (n,))


def logsigbackprop(grad_out: ArrayLike, path: ArrayLike, depth: int, *, basis: str = "lyndon",
                   stream: bool = False, at: ArrayLike | None = None, time_aug: bool = False,
                   lead_lag: bool = False, basepoint: bool = False,
                   n_jobs: int | None = 1) -> np.ndarray:
    """Gradient of a loss with respect to a path, given its gradient with respect to ``logsig``.

    Parameters
    ----------
    grad_out : array_like
        dL/d ``logsig(path, depth, ...)``, of that log-signature's shape.
    path : array_like, shape (length, dim) or (batch, length, dim)
    depth : int
    basis : {"lyndon", "expanded"}, default "lyndon"
        Both bases of :func:`hftsig.logsig`; ``"lyndon"`` gives
        iisignature's ``logsigbackprop`` with its default method.
    stream, at, time_aug, lead_lag, basepoint, n_jobs : optional
        Exactly as in :func:`hftsig.logsig`.

    Returns
    -------
    ndarray of float64, the shape of ``path``

    Examples
    --------
    The Lyndon coordinate ``[0,1]`` is the signed (Levy) area:

    >>> import numpy as np
    >>> x = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    >>> logsigbackprop(np.array([0.0, 0.0, 1.0]), x, 2)
    array([[-0.5,  0. ],
           [ 0.5, -0.5],
           [ 0. ,  0.5]])
    """
    basis = _check_basis(basis)
    depth = check_int(depth, "depth", minimum=1)
    opts = dict(stream=stream, at=at, time_aug=time_aug, lead_lag=lead_lag,
                basepoint=basepoint, n_jobs=n_jobs)
    s = sig(path, depth, **opts)
    dim = _dim_of_signature(s.shape[-1], depth)
    gs = sig_to_logsig_backprop(grad_out, s, dim, depth, basis=basis, n_jobs=n_jobs)
    return sigbackprop(gs, path, depth, **opts)


def _dim_of_signature(length, depth):
    # the channels after time augmentation / lead-lag, from the signature made of them
    dim = 1
    while siglength(dim, depth) < length:
        dim += 1
    return dim


def sigcombinebackprop(grad_out: ArrayLike, s1: ArrayLike, s2: ArrayLike, dim: int,
                       depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Gradients through :func:`hftsig.sigcombine` (the Chen product ``s1 (x) s2``).

    Parameters
    ----------
    grad_out : array_like, the shape of ``sigcombine(s1, s2, dim, depth)``
    s1, s2 : array_like, shape (siglength,) or (batch, siglength)
    dim, depth : int

    Returns
    -------
    (ndarray, ndarray)
        dL/ds1 and dL/ds2, float64, each the shape of ``s1``.

    Examples
    --------
    >>> import numpy as np
    >>> a = np.array([1.0, 0.5]); b = np.array([2.0, 2.0])   # dim 1, depth 2
    >>> sigcombinebackprop(np.array([0.0, 1.0]), a, b, 1, 2)  # level 2: a2 + a1 b1 + b2
    (array([2., 1.]), array([1., 1.]))
    """
    dim = check_int(dim, "dim", minimum=1)
    depth = check_int(depth, "depth", minimum=1)
    a = _as_sigs(s1, "s1", dim, depth)
    b = _as_sigs(s2, "s2", dim, depth)
    if a.shape != b.shape:
        raise ValueError(f"s2: shape {b.shape} does not match s1's {a.shape}")
    g = _as_grad(grad_out, a.shape, "sigcombine(s1, s2, dim, depth)")
    da, db = _k.combine_backprop(np.atleast_2d(g), np.atleast_2d(a), np.atleast_2d(b),
                                 dim, depth)
    return da.reshape(a.shape), db.reshape(a.shape)


def sigjoinbackprop(grad_out: ArrayLike, s: ArrayLike, segment: ArrayLike,
                    depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Gradients through :func:`hftsig.sigjoin` (``s (x) exp(segment)``).

    Parameters
    ----------
    grad_out : array_like, the shape of ``sigjoin(s, segment, depth)``
    s : array_like, shape (siglength,) or (batch, siglength)
    segment : array_like, shape (dim,) or (batch, dim)
    depth : int

    Returns
    -------
    (ndarray, ndarray)
        dL/ds (the shape of ``s``) and dL/dsegment (the shape of
        ``segment``), float64.  Where one of ``s``/``segment`` was
        broadcast over a batch, its gradient is summed over that batch.

    Examples
    --------
    >>> import numpy as np
    >>> s = np.array([1.0, 0.5])                     # dim 1, depth 2
    >>> sigjoinbackprop(np.array([0.0, 1.0]), s, np.array([2.0]), 2)
    (array([2., 1.]), array([3.]))
    """
    a, z, dim, depth, batch_shape = _join_args(s, segment, depth)
    n = a.shape[-1]
    g = _as_grad(grad_out, batch_shape + (n,), "sigjoin(s, segment, depth)")
    a2 = np.ascontiguousarray(np.broadcast_to(a, batch_shape + (n,))).reshape(-1, n)
    z2 = np.ascontiguousarray(np.broadcast_to(z, batch_shape + (dim,))).reshape(-1, dim)
    ds, dz = _k.join_backprop(g.reshape(-1, n), a2, z2, depth)
    ds = ds.reshape(batch_shape + (n,))
    dz = dz.reshape(batch_shape + (dim,))
    if a.ndim < ds.ndim:
        ds = ds.sum(axis=0)
    if z.ndim < dz.ndim:
        dz = dz.sum(axis=0)
    return ds, dz


def _word_letters(dim, depth):
    """Letters of every word of each level: list, index = level, (dim**k, k) ints."""
    out = [None]
    for k in range(1, depth + 1):
        w = np.arange(dim**k)
        out.append(np.stack([(w // dim ** (k - 1 - i)) % dim for i in range(k)], axis=1))
    return out


def _scale_inputs(s, scales, depth):
    depth = check_int(depth, "depth", minimum=1)
    c = np.asarray(scales)
    check_numeric(c, "scales")
    if c.ndim not in (1, 2) or c.shape[-1] < 1:
        raise ValueError(f"scales: expected shape (dim,) or (batch, dim), got {c.shape}")
    dim = c.shape[-1]
    a = _as_sigs(s, "s", dim, depth)
    c = np.ascontiguousarray(c, dtype=np.float64)
    check_finite(c, "scales")
    if a.shape[:-1] != c.shape[:-1]:
        raise ValueError(f"scales: batch {c.shape[:-1]} does not match s's {a.shape[:-1]}")
    return a, c, dim, depth


def sigscale(s: ArrayLike, scales: ArrayLike, depth: int) -> np.ndarray:
    """Signature of the path with channel ``i`` multiplied by ``scales[i]``.

    Coordinate ``w`` of the signature is multiplied by
    ``scales[w_1] * ... * scales[w_k]`` (iisignature's ``sigscale``).

    Parameters
    ----------
    s : array_like, shape (siglength,) or (batch, siglength)
    scales : array_like, shape (dim,) or (batch, dim)
        One row of scales per signature.
    depth : int

    Returns
    -------
    ndarray of float64, the shape of ``s``

    Examples
    --------
    >>> import numpy as np
    >>> import hftsig
    >>> x = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 2.0]])
    >>> bool(np.allclose(sigscale(hftsig.sig(x, 3), np.array([2.0, -1.0]), 3),
    ...                  hftsig.sig(x * [2.0, -1.0], 3)))
    True
    """
    a, c, dim, depth = _scale_inputs(s, scales, depth)
    out = np.empty_like(a)
    start = 0
    for k, letters in enumerate(_word_letters(dim, depth)[1:], 1):
        factor = np.prod(c[..., letters], axis=-1)
        out[..., start:start + dim**k] = a[..., start:start + dim**k] * factor
        start += dim**k
    return out


def sigscalebackprop(grad_out: ArrayLike, s: ArrayLike, scales: ArrayLike,
                     depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Gradients through :func:`sigscale`.

    Parameters
    ----------
    grad_out : array_like, the shape of ``s``
    s : array_like, shape (siglength,) or (batch, siglength)
    scales : array_like, shape (dim,) or (batch, dim)
    depth : int

    Returns
    -------
    (ndarray, ndarray)
        dL/ds (the shape of ``s``) and dL/dscales (the shape of
        ``scales``), float64.

    Examples
    --------
    >>> import numpy as np
    >>> s = np.array([1.0, 2.0])                     # dim 1, depth 2
    >>> sigscalebackprop(np.array([1.0, 1.0]), s, np.array([3.0]), 2)
    (array([3., 9.]), array([13.]))
    """
    a, c, dim, depth = _scale_inputs(s, scales, depth)
    g = _as_grad(grad_out, a.shape, "s")
    ds = np.empty_like(a)
    dc = np.zeros_like(c)
    start = 0
    for k, letters in enumerate(_word_letters(dim, depth)[1:], 1):
        sl = slice(start, start + dim**k)
        f = c[..., letters]  # (..., dim**k, k)
        ds[..., sl] = g[..., sl] * np.prod(f, axis=-1)
        # product of the other letters' scales, by prefix and suffix products
        ones = np.ones(f.shape[:-1] + (1,))
        before = np.cumprod(np.concatenate([ones, f[..., :-1]], axis=-1), axis=-1)
        after = np.cumprod(np.concatenate([ones, f[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
        contrib = (g[..., sl] * a[..., sl])[..., None] * before * after
        onehot = letters[:, :, None] == np.arange(dim)
        dc += np.einsum("...wi,wic->...c", contrib, onehot)
        start += dim**k
    return ds, dc
