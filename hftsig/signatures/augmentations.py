"""Path transforms applied before taking a signature.

Each function takes one path ``(length, dim)`` or a batch ``(batch, length,
dim)`` and returns an array of the same rank; float32 input stays float32,
any other numeric input becomes float64.  :func:`hftsig.sig` applies them in
the order ``lead_lag`` -> ``time_augment`` -> ``basepoint``.

>>> import numpy as np
>>> from hftsig.signatures import augmentations
>>> x = np.array([[1.0], [3.0], [2.0]])
>>> augmentations.lead_lag(x)[:, :]
array([[1., 1.],
       [3., 1.],
       [3., 3.],
       [2., 3.],
       [2., 2.]])
>>> augmentations.time_augment(x)[:, 1]
array([0. , 0.5, 1. ])
>>> augmentations.basepoint(x)[:, 0]
array([0., 1., 3., 2.])
>>> augmentations.cumsum(x)[:, 0]
array([1., 4., 6.])
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hftsig._validation import check_paths, check_real

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

__all__ = ["time_augment", "lead_lag", "basepoint", "cumsum"]


def _as_path(path: ArrayLike) -> np.ndarray:
    # float32 stays float32 (the transforms keep the caller's precision);
    # empty paths are left to each transform
    return check_paths(path, "path", dtype="float", finite=False, min_points=0)


def time_augment(path: ArrayLike, *, start: float = 0.0, end: float = 1.0) -> np.ndarray:
    """Append time as the last channel.

    Parameters
    ----------
    path : array_like, shape (length, dim) or (batch, length, dim)
    start, end : float
        Time of the first and of the last point; points are equally spaced
        in between (a one-point path gets ``start``).  The defaults match
        pysiglib's ``time_aug`` (time in ``[0, 1]``, last channel).

    Returns
    -------
    ndarray, shape (..., length, dim + 1)
    """
    start = check_real(start, "start")
    end = check_real(end, "end")
    x = _as_path(path)
    length = x.shape[-2]
    t = np.linspace(start, end, length, dtype=x.dtype) if length > 1 else np.full(
        length, start, dtype=x.dtype)
    t = np.broadcast_to(t[:, None], x.shape[:-1] + (1,))
    return np.concatenate([x, t], axis=-1)


def lead_lag(path: ArrayLike) -> np.ndarray:
    """Lead-lag transform, lead channels first.

    For points ``x_0, ..., x_{L-1}`` the result has ``2L - 1`` points of
    dimension ``2 dim``: ``(x_0, x_0), (x_1, x_0), (x_1, x_1), (x_2, x_1),
    ...``, i.e. the lead moves first and the lag catches up.  Channels
    ``[:dim]`` are the lead, ``[dim:]`` the lag: the common convention
    (Chevyrev & Kormilitzin's primer, esig/iisignature-based code).
    pysiglib's ``lead_lag=True`` puts the lag first (``(lag, lead)``), so its
    signatures are ours with the two channel blocks swapped.

    Parameters
    ----------
    path : array_like, shape (length, dim) or (batch, length, dim)

    Returns
    -------
    ndarray, shape (..., 2 * length - 1, 2 * dim)
    """
    x = _as_path(path)
    length = x.shape[-2]
    if length == 0:
        return np.concatenate([x, x], axis=-1)
    lead = np.repeat(x, 2, axis=-2)[..., 1:, :]
    lag = np.repeat(x, 2, axis=-2)[..., :-1, :]
    return np.concatenate([lead, lag], axis=-1)


def basepoint(path: ArrayLike, point: ArrayLike | None = None) -> np.ndarray:
    """Prepend a starting point (the origin by default).

    Makes the signature see the path's starting value, not only its
    increments.

    Parameters
    ----------
    path : array_like, shape (length, dim) or (batch, length, dim)
    point : array_like, shape (dim,), optional
        The point to prepend; zeros if omitted.

    Returns
    -------
    ndarray, shape (..., length + 1, dim)
    """
    x = _as_path(path)
    dim = x.shape[-1]
    if point is None:
        p = np.zeros(dim, dtype=x.dtype)
    else:
        p = np.asarray(point)
        if p.dtype.kind not in "fiu":
            raise TypeError(f"point: expected a real numeric array, got dtype {p.dtype}")
        if p.shape != (dim,):
            raise ValueError(f"point: expected shape ({dim},), got {p.shape}")
        p = p.astype(x.dtype)
    first = np.broadcast_to(p, x.shape[:-2] + (1, dim))
    return np.concatenate([first, x], axis=-2)


def cumsum(path: ArrayLike) -> np.ndarray:
    """Cumulative sum along the length axis.

    Turns a series of increments (returns, order flow) into the path they
    drive: point ``i`` is the sum of points ``0..i``.

    Parameters
    ----------
    path : array_like, shape (length, dim) or (batch, length, dim)

    Returns
    -------
    ndarray, same shape as ``path``
    """
    x = _as_path(path)
    return np.cumsum(x, axis=-2, dtype=x.dtype)
