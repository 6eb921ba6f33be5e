"""Truncated path signatures.

Layout (the same as iisignature and pysiglib): level 0 (the constant 1) is
left out, levels ``1..depth`` are concatenated, and the words of a level are
in lexicographic order, so a signature of a ``dim``-dimensional path has
``siglength(dim, depth) = dim + dim**2 + ... + dim**depth`` coordinates.

Computation is in float64: float32 (or integer) input is converted first and
every result is float64.

How it is computed (``hftsig/_ext/signature_c.h``): each increment multiplies
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

Errors and limits: every function here (and in :mod:`hftsig.signatures.logsignature`,
:class:`SignatureStream`, the :class:`~hftsig.SignatureTransformer`) gives
the right answer or raises ``TypeError`` (an argument of the wrong type:
``depth=2.0``, ``stream="yes"``) or ``ValueError`` (a value out of range,
NaN/inf in a path, or a result too large), with a message that starts with
the argument's name; ``MemoryError`` only if the system refuses memory within
the limit below.  None crashes, hangs or allocates without bound: integer
arguments of any type (Python, numpy signed or unsigned) are range-checked
before use (``depth`` at most 60, ``n_jobs`` at most 1024 in magnitude),
sizes are computed exactly before anything is allocated, and a call that
would take more memory than ``max_output_bytes`` (its result, working
buffers and tables together; default 2 GiB) raises ``ValueError`` before it
starts, saying how much it would take.  Change the limit with
:func:`set_config` or :func:`config_context` (as in scikit-learn), or the
environment variable ``HFTSIG_MAX_OUTPUT_BYTES``.

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
from __future__ import annotations

import contextlib
import numbers
import os
import sys
from typing import TYPE_CHECKING

import numpy as np

from hftsig._ext import _signature as _k
from hftsig._ext._signature import SignatureStream
from hftsig._validation import (
    check_bool,
    check_finite,
    check_int,
    check_numeric,
    check_paths,
    is_dask_array,
)
from hftsig.signatures import augmentations as _tr

if TYPE_CHECKING:
    from collections.abc import Iterator

    import dask.array as da
    from numpy.typing import ArrayLike

__all__ = ["sig", "siglength", "sigcombine", "sigjoin", "siginv", "SignatureStream",
           "set_config", "get_config", "config_context"]

_MAX_DEPTH = _k.MAX_DEPTH  # SK_MAX_DEPTH in hftsig/_ext/signature_c.h
_MAX_DIM = _k.MAX_DIM
_MAX_JOBS = _k.MAX_JOBS


def get_config() -> dict[str, int]:
    """The settings of the signature functions, as a dict.

    Returns
    -------
    dict
        ``max_output_bytes``: the most memory (bytes) one call of
        :func:`sig`, :func:`hftsig.logsig` and their relatives may allocate
        for its result, its working buffers and any table it builds; see
        :func:`set_config`.

    Examples
    --------
    >>> get_config()["max_output_bytes"] >= 1
    True
    """
    return {"max_output_bytes": _k.max_output_bytes()}


def set_config(*, max_output_bytes: int | None = None) -> None:
    """Change the settings of the signature functions (for this process).

    Parameters
    ----------
    max_output_bytes : int, optional
        The most memory (bytes) one call may allocate for its result, its
        working buffers and any table it builds (the Lyndon basis of
        :func:`hftsig.logsig`, the ring of a windowed
        :class:`SignatureStream`).  A call that would need more raises
        ``ValueError`` before doing any work, naming the argument to change
        (for ``stream=True``, ask for the prefixes you need with ``at=``).
        Default: the environment variable ``HFTSIG_MAX_OUTPUT_BYTES`` if
        set, else 2 GiB.  ``None`` leaves the setting as it is.

    See Also
    --------
    config_context : the same for a ``with`` block.

    Examples
    --------
    >>> import numpy as np
    >>> with config_context(max_output_bytes=10_000):  # doctest: +ELLIPSIS
    ...     sig(np.zeros((200, 2)), 2, stream=True)
    Traceback (most recent call last):
    ...
    ValueError: stream: the signatures of 199 prefixes of 1 path (... 9.3 KiB) and ...
    """
    if max_output_bytes is not None:
        _k.set_max_output_bytes(max_output_bytes)


@contextlib.contextmanager
def config_context(*, max_output_bytes: int | None = None) -> Iterator[None]:
    """:func:`set_config` for the duration of a ``with`` block, then the previous settings.

    Examples
    --------
    >>> with config_context(max_output_bytes=2**20):
    ...     get_config()["max_output_bytes"]
    1048576
    """
    previous = _k.configured_max_output_bytes()
    set_config(max_output_bytes=max_output_bytes)
    try:
        yield
    finally:
        _k.set_max_output_bytes(previous)


def siglength(dim: int, depth: int) -> int:
    """Number of signature coordinates: ``dim + dim**2 + … + dim**depth``.

    Parameters
    ----------
    dim : int
        Number of channels, ``1 .. 2**31 - 1``.
    depth : int
        Truncation level, ``1 .. 60`` (the deepest signature hftsig computes).

    Returns
    -------
    int

    >>> siglength(3, 4)
    120
    """
    dim = check_int(dim, "dim", minimum=1, maximum=_MAX_DIM)
    depth = check_int(depth, "depth", minimum=1, maximum=_MAX_DEPTH)
    return _k.signature_length(dim, depth)


def _check_size(dim, depth):
    """``siglength(dim, depth)``, refused if one signature alone exceeds the memory limit."""
    if dim > _MAX_DIM:
        raise ValueError(f"path: dim must be <= {_MAX_DIM}, got {dim}")
    if depth > _MAX_DEPTH:
        raise ValueError(f"depth: must be <= {_MAX_DEPTH}, got {depth}")
    n = _k.signature_length(dim, depth)
    _k.check_bytes(8 * n, "depth",
                   lambda: f"one signature of dim={dim}, depth={depth} "
                           f"({_k.show_int(n)} coordinates)")
    return n


def _n_threads(n_jobs):
    if n_jobs is None:  # scikit-learn's spelling of one thread
        return 1
    n_jobs = check_int(n_jobs, "n_jobs", minimum=-_MAX_JOBS, maximum=_MAX_JOBS)
    if n_jobs == 0:
        raise ValueError("n_jobs: must be a positive int or negative (-1 = all cores), got 0")
    budget = _dask_worker_threads()
    if n_jobs < 0:  # os.cpu_count() costs ~15 us a call: only when needed
        cores = budget if budget is not None else (os.cpu_count() or 1)
        return max(1, cores + 1 + n_jobs)
    return n_jobs if budget is None else min(n_jobs, budget)


def _dask_worker_threads():
    """Threads one task may use on the Dask worker running it; None outside a worker.

    A worker runs ``nthreads`` tasks side by side, so a kernel that took every
    core for each of them would run ``nthreads * cpu_count`` threads: the
    worker's threads are shared out among the tasks it is executing now.
    """
    distributed = sys.modules.get("distributed")
    if distributed is None:  # never imported: this process is no Dask worker
        return None
    try:
        worker = distributed.get_worker()
    except ValueError:  # distributed raises ValueError outside a worker's task
        return None
    state = worker.state
    return max(1, state.nthreads // max(1, state.executing_count))


def sig(path: ArrayLike | da.Array, depth: int, *, stream: bool = False,
        at: ArrayLike | None = None, basepoint: bool = False, time_aug: bool = False,
        lead_lag: bool = False, n_jobs: int | None = 1) -> np.ndarray | da.Array:
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
        Apply :func:`hftsig.signatures.augmentations.basepoint` (prepend the origin),
        :func:`~hftsig.signatures.augmentations.time_augment` (time in ``[0, 1]`` as the
        last channel) and :func:`~hftsig.signatures.augmentations.lead_lag` (lead
        channels first), in the order lead-lag, time, basepoint.
    n_jobs : int or None
        Threads over the batch (and over pieces of long paths); ``-1``
        uses every core, ``-2`` all but one, ``None`` one (as in
        scikit-learn); at most 1024 either way.  The GIL is released.  For a
        batch smaller than ``4 * n_jobs`` paths, the paths are cut into
        pieces joined by Chen's identity, so results can differ from
        ``n_jobs=1`` in the last bits.  In a task on a Dask worker, "every
        core" means the worker's threads shared among its running tasks,
        and no call takes more than that (see :mod:`hftsig.distributed.on_dask`).

    Returns
    -------
    ndarray of float64
        ``(siglength,)`` or ``(batch, siglength)``; with ``stream`` or
        ``at`` one more axis before the last.  For a dask array ``path``,
        a dask array chunked like ``path`` over the batch, computed block
        by block where it is computed (:func:`hftsig.distributed.on_dask.sig`).

    Raises
    ------
    TypeError
        An argument of the wrong type (``depth=2.0``, ``at=[1.5]``,
        ``stream="yes"``).
    ValueError
        A value out of range, NaN or inf in the path, or a result (with the
        kernel's working buffers) larger than ``max_output_bytes`` (default
        2 GiB, see :func:`set_config`): the signatures of every prefix of a
        long path are ``length * siglength`` floats, so ask for the prefixes
        you need with ``at=`` instead of ``stream=True``.

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
    if is_dask_array(path):
        from hftsig.distributed.on_dask import sig as sig_on_dask

        return sig_on_dask(path, depth, stream=stream, at=at, basepoint=basepoint,
                           time_aug=time_aug, lead_lag=lead_lag, n_jobs=n_jobs)
    plan = _SigPlan(path, depth, stream=stream, at=at, basepoint=basepoint, time_aug=time_aug,
                    lead_lag=lead_lag, n_jobs=n_jobs)
    plan.check_memory()
    return plan.run()


class _SigPlan:
    """A validated :func:`sig` call: the path after its transforms, the
    prefixes asked for, and the memory the kernel will take, known before
    any of it is allocated (:func:`hftsig.logsig` adds its own share)."""

    def __init__(self, path, depth, *, stream, at, basepoint, time_aug, lead_lag, n_jobs):
        # the dtype is kept: the transforms compute float32 paths in float32
        arr = check_paths(path, "path", dtype=None, finite=False)
        self.depth = check_int(depth, "depth", minimum=1, maximum=_MAX_DEPTH)
        self.nthreads = _n_threads(n_jobs)
        self.stream = check_bool(stream, "stream")
        basepoint = check_bool(basepoint, "basepoint")
        time_aug = check_bool(time_aug, "time_aug")
        lead_lag = check_bool(lead_lag, "lead_lag")
        if self.stream and at is not None:
            raise ValueError("stream: cannot be combined with at")
        if lead_lag:
            arr = _tr.lead_lag(arr)
        if time_aug:
            arr = _tr.time_augment(arr)
        if basepoint:
            arr = _tr.basepoint(arr)
        self.single = arr.ndim == 2
        X = np.ascontiguousarray(arr, dtype=np.float64)
        if self.single:
            X = X[None]
        check_finite(X, "path")
        self.X = X
        self.batch, self.length, self.dim = X.shape
        self.siglen = _check_size(self.dim, self.depth)
        self.transforms = (lead_lag, time_aug, basepoint)
        self.at = self.at_sorted = self.slot = None
        if self.stream or at is not None:
            if self.stream:
                idx = np.arange(1, self.length, dtype=np.int64)
            else:
                idx = _as_indices(at, self.length)
            self.at = idx  # in the order asked for
            order = np.argsort(idx, kind="stable")
            self.at_sorted = np.ascontiguousarray(idx[order])
            self.slot = np.ascontiguousarray(order.astype(np.int64))

    @property
    def out_shape(self):
        shape = (self.siglen,)
        if self.at_sorted is not None:
            shape = (len(self.at_sorted),) + shape
        return shape if self.single else (self.batch,) + shape

    def out_bytes(self):
        n = 8
        for size in self.out_shape:
            n *= size
        return n

    def nbytes(self):
        """Bytes of the output plus the kernel's working buffers."""
        out = self.out_bytes()
        if self.at_sorted is None:
            work = _k.sig_scratch_bytes(self.batch, self.length, self.dim, self.depth,
                                        self.nthreads)
        else:
            work = _k.sig_at_scratch_bytes(self.batch, self.length, self.dim, self.depth,
                                           self.at_sorted, self.nthreads)
        return out + work

    def check_memory(self, extra_bytes=0, what="", hint="", fixed_bytes=0):
        """Refuse (``ValueError``) a call that would exceed the memory limit.

        ``extra_bytes`` is what the caller allocates on top per output row
        (a log-signature), ``fixed_bytes`` what it allocates once whatever
        the batch (tables), both described by ``what`` and ``hint``.
        """
        need = self.nbytes() + extra_bytes + fixed_bytes
        if need <= _k.max_output_bytes():
            return
        n_paths = f"{self.batch} path{'s' if self.batch != 1 else ''}"
        shape = f"float64 array of shape {self.out_shape}, {_k.format_bytes(self.out_bytes())}"
        if fixed_bytes + 8 * self.siglen > _k.max_output_bytes():
            argument = "depth"  # too much for even one signature
        elif self.stream:
            argument = "stream"
        else:
            argument = "path" if self.at_sorted is None else "at"
        if self.at_sorted is None:
            desc = f"the signatures of {n_paths} ({shape})"
            advice = "pass fewer paths per call, or lower depth"
        else:
            desc = f"the signatures of {len(self.at_sorted)} prefixes of {n_paths} ({shape})"
            advice = ("ask for the prefixes you need with at=[...] instead of stream=True, "
                      "or lower depth" if self.stream else
                      "ask for fewer prefixes in at, pass fewer paths per call, or lower depth")
        _k.check_bytes(need, argument, f"{desc}{what} and the working buffers",
                       f"{advice}{hint}")

    def run(self):
        if self.at_sorted is None:
            out = _k.sig_batch(self.X, self.depth, self.nthreads)
        else:
            out = _k.sig_at(self.X, self.depth, self.at_sorted, self.slot, self.nthreads)
        return out[0] if self.single else out


def _as_indices(at, length):
    """``at`` as int64 indices in ``0 .. length-1`` (negative ones counted from the end)."""
    idx = np.asarray(at)
    if idx.ndim == 0:
        idx = idx[None]
    if idx.ndim != 1:
        raise ValueError(f"at: expected a 1-d sequence of indices, got shape {idx.shape}")
    if idx.size == 0:
        return np.zeros(0, dtype=np.int64)
    if idx.dtype.kind == "O":
        # Python ints beyond int64 (2**64, say) end up in an object array
        values = list(idx)
        for v in values:
            if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Integral):
                raise TypeError(f"at: expected integer indices, got {type(v).__name__}")
        bad = [int(v) for v in values if not -length <= int(v) < length]
        if bad:
            raise ValueError(f"at: index {_k.show_int(bad[0])} out of range for a path of "
                             f"{length} points")
        idx = np.array([int(v) for v in values], dtype=np.int64)
    elif idx.dtype.kind not in "iu":
        raise TypeError(f"at: expected integer indices, got dtype {idx.dtype}")
    # compare in the indices' own dtype: a cast of uint64 2**64-1 to int64
    # would give -1, a valid index
    bad = (idx >= length) if idx.dtype.kind == "u" else (idx < -length) | (idx >= length)
    if bad.any():
        raise ValueError(f"at: index {int(idx[bad][0])} out of range for a path of "
                         f"{length} points")
    idx = idx.astype(np.int64)
    return np.where(idx < 0, idx + length, idx)


def _as_sigs(s, name, dim, depth):
    arr = np.asarray(s)
    check_numeric(arr, name)
    n = _check_size(dim, depth)
    if arr.ndim not in (1, 2) or arr.shape[-1] != n:
        raise ValueError(f"{name}: expected shape ({n},) or (batch, {n}) for dim={dim}, "
                         f"depth={depth}, got {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    check_finite(arr, name)
    return arr


def sigcombine(s1: ArrayLike, s2: ArrayLike, dim: int, depth: int) -> np.ndarray:
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
    dim = check_int(dim, "dim", minimum=1, maximum=_MAX_DIM)
    depth = check_int(depth, "depth", minimum=1, maximum=_MAX_DEPTH)
    a = _as_sigs(s1, "s1", dim, depth)
    b = _as_sigs(s2, "s2", dim, depth)
    if a.shape != b.shape:
        raise ValueError(f"s2: shape {b.shape} does not match s1's {a.shape}")
    _k.check_bytes(a.nbytes, "s1", f"the Chen products (shape {a.shape})",
                   "pass fewer signatures per call")
    out = _k.combine(np.atleast_2d(a), np.atleast_2d(b), dim, depth)
    return out.reshape(a.shape)


def sigjoin(s: ArrayLike, segment: ArrayLike, depth: int) -> np.ndarray:
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
    a, z, dim, depth, batch_shape = _join_args(s, segment, depth)
    a2 = np.broadcast_to(a, batch_shape + a.shape[-1:])
    z2 = np.broadcast_to(z, batch_shape + z.shape[-1:])
    out_shape = batch_shape + a.shape[-1:]
    # a few segments broadcast against one signature give one signature each
    _k.check_bytes(8 * int(np.prod(out_shape, dtype=object)) + _k.work_bytes(dim, depth),
                   "segment" if a.ndim == 1 else "s", f"the joined signatures (shape {out_shape})",
                   "pass fewer segments or signatures per call")
    out = np.array(np.atleast_2d(a2), dtype=np.float64, order="C")  # a copy
    _k.join_inplace(out, np.ascontiguousarray(np.atleast_2d(z2)), depth)
    return out.reshape(out_shape)


def _join_args(s, segment, depth):
    """Checked ``(s, segment, dim, depth, batch_shape)`` of ``sigjoin`` and its backprop."""
    depth = check_int(depth, "depth", minimum=1, maximum=_MAX_DEPTH)
    z = np.asarray(segment)
    check_numeric(z, "segment")
    if z.ndim not in (1, 2) or z.shape[-1] < 1:
        raise ValueError(f"segment: expected shape (dim,) or (batch, dim), got {z.shape}")
    dim = z.shape[-1]
    a = _as_sigs(s, "s", dim, depth)
    z = np.ascontiguousarray(z, dtype=np.float64)
    check_finite(z, "segment")
    try:
        batch_shape = np.broadcast_shapes(a.shape[:-1], z.shape[:-1])
    except ValueError as exc:
        raise ValueError(f"segment: batch {z.shape[:-1]} does not match s's "
                         f"{a.shape[:-1]}") from exc
    return a, z, dim, depth, batch_shape


def siginv(s: ArrayLike, dim: int, depth: int) -> np.ndarray:
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
    dim = check_int(dim, "dim", minimum=1, maximum=_MAX_DIM)
    depth = check_int(depth, "depth", minimum=1, maximum=_MAX_DEPTH)
    a = _as_sigs(s, "s", dim, depth)
    _k.check_bytes(a.nbytes, "s", f"the inverses (shape {a.shape})",
                   "pass fewer signatures per call")
    out = _k.inverse(np.atleast_2d(a), dim, depth)
    return out.reshape(a.shape)
