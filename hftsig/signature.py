"""Truncated path signatures.

Layout (the same as iisignature and pysiglib): level 0 (the constant 1) is
left out, levels ``1..depth`` are concatenated, and the words of a level are
in lexicographic order, so a signature of a ``dim``-dimensional path has
``siglength(dim, depth) = dim + dim**2 + ... + dim**depth`` coordinates.

Computation is in float64: float32 (or integer) input is converted first and
every result is float64.

How it is computed (``hftsig/_ext/sigkernels.h``): each increment multiplies
the running signature by the segment's tensor exponential with Horner's
scheme, never forming the exponential.  Paths are processed four to a SIMD
register (batch innermost), and two increments are applied per pass over
the top level, so that each top-level coordinate is loaded and stored once
per two steps.  A batch too small to fill the registers (one long path) is
cut into pieces that are computed side by side and joined with Chen's
identity; ``sig(..., at=...)`` on a small batch is cut at the requested
indices the same way.  ``n_jobs`` threads claim those blocks with the GIL
released; the caller works too and never waits for a thread the OS has not
started yet, so on a busy machine ``n_jobs > 1`` costs little over one
thread.

>>> import numpy as np
>>> import hftsig
>>> path = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 2.0]])
>>> hftsig.sig(path, 2)
array([1. , 2. , 0.5, 2. , 0. , 2. ])
>>> hftsig.siglength(2, 2)
6
>>> s1 = hftsig.sig(path[:2], 2); s2 = hftsig.sig(path[1:], 2)
>>> bool(np.allclose(hftsig.sigcombine(s1, s2, 2, 2), hftsig.sig(path, 2)))
True
>>> stream = hftsig.SignatureStream(2, 2)
>>> for point in path:
...     stream.push(point)
>>> stream.signature
array([1. , 2. , 0.5, 2. , 0. , 2. ])
"""
import os

import numpy as np

from hftsig import transforms as _tr
from hftsig._ext import _signature as _k
from hftsig._ext._signature import SignatureStream

__all__ = ["sig", "siglength", "sigcombine", "sigjoin", "siginv", "SignatureStream"]

# Refuse outputs beyond this many float64 per signature (2 GiB): a typo in
# depth should raise, not exhaust memory.
_MAX_SIGLEN = 1 << 28
_MAX_DEPTH = 60  # SK_MAX_DEPTH in hftsig/_ext/sigkernels.h


def _check_int(value, name, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {value}")
    return value


def siglength(dim, depth):
    """Number of signature coordinates: ``dim + dim**2 + ... + dim**depth``.

    >>> siglength(3, 4)
    120
    """
    dim = _check_int(dim, "dim", 1)
    depth = _check_int(depth, "depth", 1)
    return sum(dim**k for k in range(1, depth + 1))


def _check_size(dim, depth):
    if depth > _MAX_DEPTH:
        raise ValueError(f"depth: at most {_MAX_DEPTH}, got {depth}")
    n = siglength(dim, depth)
    if n > _MAX_SIGLEN:
        raise ValueError(f"depth: signature of dim={dim}, depth={depth} has {n} "
                         f"coordinates, more than {_MAX_SIGLEN}")
    return n


def _n_threads(n_jobs):
    n_jobs = _check_int(n_jobs, "n_jobs", -(1 << 30))
    cores = os.cpu_count() or 1
    if n_jobs == 0:
        raise ValueError("n_jobs: must be a positive int or negative (-1 = all cores), got 0")
    if n_jobs < 0:
        return max(1, cores + 1 + n_jobs)
    return n_jobs


def _numeric(arr, name):
    if arr.dtype.kind not in "fiu" or arr.dtype == np.float16:
        raise TypeError(f"{name}: expected a real numeric array, got dtype {arr.dtype}")


def _check_finite(arr, name):
    # a sum is far cheaper than isfinite(arr).all(); it can only overflow
    # for finite data, in which case the exact check decides
    if arr.size and not np.isfinite(np.add.reduce(arr, axis=None)):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name}: contains NaN or inf")


def _as_path(path):
    try:
        arr = np.asarray(path)
    except ValueError as exc:  # ragged nested sequences: paths of different lengths
        raise ValueError(f"path: not an array of paths of one shape ({exc})") from None
    _numeric(arr, "path")
    if arr.ndim not in (2, 3):
        raise ValueError(
            "path: expected shape (length, dim) or (batch, length, dim), "
            f"got {arr.ndim} dimension(s) {arr.shape}")
    if arr.shape[-1] < 1:
        raise ValueError(f"path: dim must be >= 1, got shape {arr.shape}")
    if arr.shape[-2] < 1:
        raise ValueError(f"path: needs at least one point, got shape {arr.shape}")
    return arr


def sig(path, depth, *, stream=False, at=None, basepoint=False, time_aug=False,
        lead_lag=False, n_jobs=1):
    """Truncated signature of a path or of a batch of paths.

    Parameters
    ----------
    path : array_like, shape (length, dim) or (batch, length, dim)
        Points of the path(s), float64 (float32 and integers are converted;
        the computation is float64).  A one-point path has the zero
        signature.
    depth : int
        Truncation level, >= 1.
    stream : bool
        If True, return the signature of every prefix ``path[..., :i+1, :]``
        for ``i = 1..length-1``, shape ``(..., length-1, siglength)``: the
        same as ``iisignature.sig(path, depth, 2)``.
    at : array_like of int, optional
        Point indices ``i`` (negative ones count from the end); return the
        signatures of the prefixes ending at those points, in the given
        order, shape ``(..., len(at), siglength)``, computed in one pass
        (e.g. at the exercise dates of an optimal stopping problem).
        Index 0 gives the zero signature.  Indices refer to the path after
        the transforms below.  Cannot be combined with ``stream``.
    basepoint, time_aug, lead_lag : bool
        Apply :func:`hftsig.transforms.basepoint` (prepend the origin),
        :func:`~hftsig.transforms.time_augment` (time in ``[0, 1]`` as the
        last channel) and :func:`~hftsig.transforms.lead_lag` (lead
        channels first), in the order lead-lag, time, basepoint.
    n_jobs : int
        Threads over the batch (and over pieces of long paths); ``-1``
        uses every core, ``-2`` all but one.  The GIL is released.  For a
        batch smaller than ``4 * n_jobs`` paths, the paths are cut into
        pieces joined by Chen's identity, so results can differ from
        ``n_jobs=1`` in the last bits.

    Returns
    -------
    ndarray of float64
        ``(siglength,)`` or ``(batch, siglength)``; with ``stream`` or
        ``at`` one more axis before the last.

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0.0], [1.0], [3.0]])
    >>> sig(x, 3)
    array([3. , 4.5, 4.5])
    >>> sig(x, 2, stream=True)
    array([[1. , 0.5],
           [3. , 4.5]])
    >>> sig(x, 1, at=[2, 0, 1])
    array([[3.],
           [0.],
           [1.]])
    """
    arr = _as_path(path)
    depth = _check_int(depth, "depth", 1)
    nthreads = _n_threads(n_jobs)
    if stream and at is not None:
        raise ValueError("stream: cannot be combined with at")
    if lead_lag:
        arr = _tr.lead_lag(arr)
    if time_aug:
        arr = _tr.time_augment(arr)
    if basepoint:
        arr = _tr.basepoint(arr)
    single = arr.ndim == 2
    X = np.ascontiguousarray(arr, dtype=np.float64)
    if single:
        X = X[None]
    _check_finite(X, "path")
    dim = X.shape[2]
    _check_size(dim, depth)
    length = X.shape[1]

    if stream or at is not None:
        if stream:
            idx = np.arange(1, length, dtype=np.int64)
        else:
            idx = _as_indices(at, length)
        order = np.argsort(idx, kind="stable")
        out = _k.sig_at(X, depth, np.ascontiguousarray(idx[order]),
                        np.ascontiguousarray(order.astype(np.int64)), nthreads)
    else:
        out = _k.sig_batch(X, depth, nthreads)
    return out[0] if single else out


def _as_indices(at, length):
    idx = np.asarray(at)
    if idx.ndim == 0:
        idx = idx[None]
    if idx.ndim != 1:
        raise ValueError(f"at: expected a 1-d sequence of indices, got shape {idx.shape}")
    if idx.size and idx.dtype.kind not in "iu":
        raise TypeError(f"at: expected integer indices, got dtype {idx.dtype}")
    idx = idx.astype(np.int64)
    bad = (idx < -length) | (idx >= length)
    if bad.any():
        raise ValueError(f"at: index {int(idx[bad][0])} out of range for a path of "
                         f"{length} points")
    return np.where(idx < 0, idx + length, idx)


def _as_sigs(s, name, dim, depth):
    arr = np.asarray(s)
    _numeric(arr, name)
    n = _check_size(dim, depth)
    if arr.ndim not in (1, 2) or arr.shape[-1] != n:
        raise ValueError(f"{name}: expected shape ({n},) or (batch, {n}) for dim={dim}, "
                         f"depth={depth}, got {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    _check_finite(arr, name)
    return arr


def sigcombine(s1, s2, dim, depth):
    """Chen product: the signature of path 1 followed by path 2.

    Parameters
    ----------
    s1, s2 : array_like, shape (siglength,) or (batch, siglength)
        Signatures (same shape) of two paths, the second starting where the
        first ends (only increments matter, so any translate will do).
    dim, depth : int

    Returns
    -------
    ndarray, same shape as ``s1``

    Examples
    --------
    >>> import numpy as np
    >>> a = sig(np.array([[0.0, 0.0], [1.0, 0.0]]), 2)
    >>> b = sig(np.array([[0.0, 0.0], [0.0, 1.0]]), 2)
    >>> sigcombine(a, b, 2, 2)
    array([1. , 1. , 0.5, 1. , 0. , 0.5])
    """
    dim = _check_int(dim, "dim", 1)
    depth = _check_int(depth, "depth", 1)
    a = _as_sigs(s1, "s1", dim, depth)
    b = _as_sigs(s2, "s2", dim, depth)
    if a.shape != b.shape:
        raise ValueError(f"s2: shape {b.shape} does not match s1's {a.shape}")
    out = _k.combine(np.atleast_2d(a), np.atleast_2d(b), dim, depth)
    return out.reshape(a.shape)


def sigjoin(s, segment, depth):
    """Extend a signature by a straight segment: ``s (x) exp(segment)``.

    Parameters
    ----------
    s : array_like, shape (siglength,) or (batch, siglength)
    segment : array_like, shape (dim,) or (batch, dim)
        Displacement of the segment (not its end point); a single segment is
        applied to every signature of a batch.
    depth : int

    Returns
    -------
    ndarray, shape of ``s`` (or ``(batch, siglength)`` for a batch of
    segments)

    Examples
    --------
    >>> import numpy as np
    >>> s = sig(np.array([[0.0], [1.0]]), 2)
    >>> sigjoin(s, np.array([2.0]), 2)
    array([3. , 4.5])
    """
    depth = _check_int(depth, "depth", 1)
    z = np.asarray(segment)
    _numeric(z, "segment")
    if z.ndim not in (1, 2) or z.shape[-1] < 1:
        raise ValueError(f"segment: expected shape (dim,) or (batch, dim), got {z.shape}")
    dim = z.shape[-1]
    a = _as_sigs(s, "s", dim, depth)
    z = np.ascontiguousarray(z, dtype=np.float64)
    _check_finite(z, "segment")
    try:
        batch_shape = np.broadcast_shapes(a.shape[:-1], z.shape[:-1])
        a2 = np.broadcast_to(a, batch_shape + a.shape[-1:])
        z2 = np.broadcast_to(z, batch_shape + z.shape[-1:])
    except ValueError as exc:
        raise ValueError(f"segment: batch {z.shape[:-1]} does not match s's "
                         f"{a.shape[:-1]}") from exc
    out = _k.join(np.ascontiguousarray(np.atleast_2d(a2)),
                  np.ascontiguousarray(np.atleast_2d(z2)), depth)
    return out.reshape(batch_shape + a.shape[-1:])


def siginv(s, dim, depth):
    """Inverse in the truncated tensor algebra: the signature of the reversed path.

    ``sigcombine(s, siginv(s, dim, depth), dim, depth)`` is zero (the
    identity, level 0 left out).

    Parameters
    ----------
    s : array_like, shape (siglength,) or (batch, siglength)
    dim, depth : int

    Returns
    -------
    ndarray, same shape as ``s``

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 2.0]])
    >>> bool(np.allclose(siginv(sig(x, 3), 2, 3), sig(x[::-1], 3)))
    True
    """
    dim = _check_int(dim, "dim", 1)
    depth = _check_int(depth, "depth", 1)
    a = _as_sigs(s, "s", dim, depth)
    out = _k.inverse(np.atleast_2d(a), dim, depth)
    return out.reshape(a.shape)
