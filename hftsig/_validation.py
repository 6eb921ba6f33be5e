"""Argument checks shared by hftsig's modules: one function per kind of argument.

Every check returns the value in the form the caller computes with (a Python
``int``, a ``float``, a ``bool``, a :class:`numpy.random.Generator`, an
ndarray) or raises with one error style:

* ``TypeError`` for an argument of the wrong type, ``ValueError`` for a value
  out of range;
* the message starts with the argument's name, then says what was expected
  and what was given: ``"depth: must be >= 1, got 0"``,
  ``"depth: expected an int, got float"``.

Integers of any kind (Python, numpy signed and unsigned) are accepted where
an int is expected; ``bool`` never is (``True`` is an ``int`` to Python, but
``depth=True`` is a bug, not a depth), nor are floats, even integral ones.

This module sits at the bottom of the package (it imports numpy only), so
that any module, the compiled extensions included, can use it.
"""
from __future__ import annotations

import math
import numbers
import sys
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from typing import Any, Union

    from numpy.typing import ArrayLike

    #: What a ``random_state`` argument may be (see :func:`check_random_state`).
    RandomStateLike = Union[int, np.integer, np.random.SeedSequence, np.random.Generator, None]

__all__ = ["INT64_MAX", "show_int", "check_int", "check_bool", "check_real", "check_positive",
           "check_random_state", "check_finite", "check_numeric", "check_paths",
           "check_path_batch", "set_path_input_tags"]

_BOOLS = (bool, np.bool_)
#: The default upper bound of :func:`check_int`: every count ends up in C or in
#: a numpy int64, where a larger value would wrap around.
INT64_MAX = (1 << 63) - 1


def show_int(value: int) -> str:
    """``value`` for an error message; an int too long to print is described.

    >>> show_int(12)
    '12'
    >>> show_int(2**100)
    'an int of 101 bits'
    """
    if -10**30 < value < 10**30:
        return str(value)
    return f"an int of {value.bit_length()} bits"


def check_int(value: Any, name: str, *, minimum: int | None = None,
              maximum: int = INT64_MAX) -> int:
    """``value`` as a Python int in ``minimum .. maximum``.

    Parameters
    ----------
    value : int
        Python or numpy integer; ``bool`` and everything else (floats too,
        even integral ones) raise ``TypeError``.
    name : str
        The argument's name, the start of every message.
    minimum : int, optional
        Inclusive lower bound; a smaller value raises ``ValueError``.
    maximum : int, default ``2**63 - 1``
        Inclusive upper bound; a larger value raises ``ValueError``.

    Returns
    -------
    int

    Examples
    --------
    >>> check_int(np.int32(3), "depth", minimum=1)
    3
    >>> check_int(0, "depth", minimum=1)
    Traceback (most recent call last):
    ...
    ValueError: depth: must be >= 1, got 0
    """
    if type(value) is not int:  # a plain int (the common case) skips the ABC check
        if isinstance(value, _BOOLS) or not isinstance(value, numbers.Integral):
            raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
        value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name}: must be >= {show_int(minimum)}, got {show_int(value)}")
    if value > maximum:
        raise ValueError(f"{name}: must be <= {show_int(maximum)}, got {show_int(value)}")
    return value


def check_bool(value: Any, name: str) -> bool:
    """``value`` as a Python bool; anything but ``bool``/``numpy.bool_`` raises ``TypeError``.

    A truthy array or string must not silently switch an option on.

    >>> check_bool(np.True_, "stream")
    True
    """
    if not isinstance(value, _BOOLS):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")
    return bool(value)


def check_real(value: Any, name: str) -> float:
    """``value`` as a finite float.

    Python and numpy reals are accepted, ``bool`` is not (``TypeError``); NaN,
    infinity and an int beyond the float range raise ``ValueError``.

    >>> check_real(2, "start")
    2.0
    """
    if isinstance(value, _BOOLS) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    try:
        v = float(value)
    except OverflowError:  # an int beyond the float range
        v = math.inf
    if not math.isfinite(v):
        raise ValueError(f"{name}: must be finite, got {v}")
    return v


def check_positive(value: Any, name: str, *, allow_zero: bool = False) -> float:
    """``value`` as a finite float ``> 0`` (``>= 0`` with ``allow_zero``).

    Types as for :func:`check_real`.

    >>> check_positive(0, "alpha", allow_zero=True)
    0.0
    >>> check_positive(0, "T")
    Traceback (most recent call last):
    ...
    ValueError: T: must be > 0 and finite, got 0
    """
    if isinstance(value, _BOOLS) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a real number, got {type(value).__name__}")
    try:
        v = float(value)
    except OverflowError:
        v = math.inf
    if not math.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise ValueError(f"{name}: must be {'>= 0' if allow_zero else '> 0'} and finite, "
                         f"got {value!r}")
    return v


def check_random_state(random_state: RandomStateLike,
                       name: str = "random_state") -> np.random.Generator:
    """A :class:`numpy.random.Generator` from ``random_state``.

    Parameters
    ----------
    random_state : None, int, numpy SeedSequence or Generator
        ``None`` seeds from the operating system, an int (``>= 0``) or a
        SeedSequence seeds reproducibly, a Generator is returned as it is (so
        that successive calls draw different numbers).  ``bool``, floats and
        the legacy ``RandomState`` raise ``TypeError``.
    name : str
        The argument's name, for the messages.

    Returns
    -------
    numpy.random.Generator

    Examples
    --------
    >>> bool(check_random_state(0).integers(10) == np.random.default_rng(0).integers(10))
    True
    """
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, _BOOLS) or not (
            random_state is None
            or isinstance(random_state, (numbers.Integral, np.random.SeedSequence))):
        raise TypeError(f"{name}: expected None, an int, a SeedSequence or a Generator, "
                        f"got {type(random_state).__name__}")
    if isinstance(random_state, numbers.Integral) and random_state < 0:
        raise ValueError(f"{name}: must be >= 0, got {show_int(int(random_state))}")
    return np.random.default_rng(random_state)


def check_finite(arr: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` if the numeric array ``arr`` holds NaN or infinity."""
    # a sum is far cheaper than isfinite(arr).all(); it can only overflow
    # for finite data, in which case the exact check decides
    if arr.size and not np.isfinite(np.add.reduce(arr, axis=None)):
        if not np.isfinite(arr).all():
            raise ValueError(f"{name}: contains NaN or inf")


def check_numeric(arr: np.ndarray, name: str) -> None:
    """Raise ``TypeError`` unless ``arr`` holds real numbers (ints, float32 or float64).

    float16 is refused: the kernels compute in float64 and a half-precision
    path is more likely a mistake than a choice.
    """
    if arr.dtype.kind not in "fiu" or arr.dtype == np.float16:
        raise TypeError(f"{name}: expected a real numeric array, got dtype {arr.dtype}")


_PATH_DTYPES = {"float64", "float", None}


def check_paths(paths: ArrayLike, name: str = "path", *, dtype: str | None = "float64",
                finite: bool = True, min_points: int = 1) -> np.ndarray:
    """``paths`` as an array of shape ``(length, dim)`` or ``(batch, length, dim)``.

    Parameters
    ----------
    paths : array_like
        Real numbers (ints, float32, float64); other dtypes raise
        ``TypeError``, ragged nested sequences ``ValueError``.
    name : str
        The argument's name, for the messages.
    dtype : {"float64", "float", None}
        ``"float64"``: a C-contiguous float64 array, the input itself when it
        already is one (no copy).  ``"float"``: float32 stays float32, any
        other dtype becomes float64 (the rule of the path transforms).
        ``None``: the array as given (a later step converts it).
    finite : bool
        Refuse (``ValueError``) NaN and infinity.
    min_points : int
        Fewest points a path may have (``ValueError``); ``dim`` must be >= 1
        whenever a path must have a point.

    Returns
    -------
    ndarray

    Examples
    --------
    >>> x = np.zeros((5, 2))
    >>> check_paths(x) is x
    True
    >>> check_paths(np.zeros(3))
    Traceback (most recent call last):
    ...
    ValueError: path: expected shape (length, dim) or (batch, length, dim), got 1 dimension(s) (3,)
    """
    if dtype not in _PATH_DTYPES:
        raise ValueError(f"dtype: expected 'float64', 'float' or None, got {dtype!r}")
    try:
        arr = np.asarray(paths)
    except ValueError as exc:  # ragged nested sequences: paths of different lengths
        raise ValueError(f"{name}: not an array of paths of one shape ({exc})") from None
    check_numeric(arr, name)
    if arr.ndim not in (2, 3):
        raise ValueError(f"{name}: expected shape (length, dim) or (batch, length, dim), "
                         f"got {arr.ndim} dimension(s) {arr.shape}")
    if min_points >= 1:
        if arr.shape[-1] < 1:
            raise ValueError(f"{name}: dim must be >= 1, got shape {arr.shape}")
        if arr.shape[-2] < min_points:
            what = "at least one point" if min_points == 1 else f"at least {min_points} points"
            raise ValueError(f"{name}: needs {what}, got shape {arr.shape}")
    if dtype == "float64":
        arr = np.ascontiguousarray(arr, dtype=np.float64)
    elif dtype == "float" and arr.dtype != np.float32:
        arr = arr.astype(np.float64, copy=False)
    if finite:
        check_finite(arr, name)
    return arr


def _is_sparse(obj: Any) -> bool:
    # without scipy.sparse imported, nothing can be one of its matrices
    sparse = sys.modules.get("scipy.sparse")
    return sparse is not None and sparse.issparse(obj)


def check_path_batch(X: Any, name: str = "X") -> np.ndarray:
    """``X`` as a finite real ``(n_samples, length, dim)`` array, as an estimator's input.

    The scikit-learn conventions for what ``fit`` and ``transform`` accept:
    sparse input raises ``TypeError``, an object array of numbers is
    converted (as ``check_array`` does), complex numbers raise
    ``ValueError``, other non-real dtypes ``TypeError``; the array must be
    3-d with at least one sample, one point and one channel, and finite.
    The dtype is kept (ints and floats).

    >>> check_path_batch([[[0.0], [1.0]]]).shape
    (1, 2, 1)
    """
    if _is_sparse(X):
        raise TypeError(f"{name}: sparse input is not supported; pass a dense array of paths "
                        f"(n_samples, length, dim)")
    ragged = (f"{name}: paths must share one length and one number of channels "
              f"(a regular (n_samples, length, dim) array), got ragged input")
    try:
        X = np.asarray(X)
    except ValueError as exc:
        # numpy refuses lists of paths of different lengths or channel counts
        raise ValueError(ragged) from exc
    if X.dtype == object:
        if any(isinstance(x, (np.ndarray, list, tuple)) for x in X.flat):
            raise ValueError(ragged)
        try:
            X = X.astype(np.float64)
        except (TypeError, ValueError):
            raise TypeError(f"{name}: expected real numbers, got non-numeric objects") from None
    if np.issubdtype(X.dtype, np.complexfloating):
        raise ValueError(f"{name}: Complex data not supported; paths must be real numbers")
    if not (np.issubdtype(X.dtype, np.floating) or np.issubdtype(X.dtype, np.integer)):
        raise TypeError(f"{name}: expected real numbers, got dtype {X.dtype}")
    if X.ndim != 3:
        raise ValueError(f"{name}: expected a 3-d array (n_samples, length, dim), "
                         f"got shape {X.shape}")
    if X.shape[0] < 1 or X.shape[1] < 1 or X.shape[2] < 1:
        raise ValueError(f"{name}: found array with shape {X.shape} (n_samples, length, dim); "
                         f"at least 1 sample, 1 point and 1 channel are required")
    if not np.isfinite(X).all():
        raise ValueError(f"{name}: input contains NaN or infinity; paths must be finite")
    return X


def set_path_input_tags(tags: Any) -> Any:
    """scikit-learn's input tags of an estimator whose ``X`` is a batch of paths.

    ``X`` is ``(n_samples, length, dim)``, never scikit-learn's
    ``(n_samples, n_features)`` table, so ``two_d_array`` is False (and
    ``check_estimator`` generates no checks); dense and finite only.
    Returns ``tags``, changed in place.
    """
    tags.input_tags.two_d_array = False
    tags.input_tags.three_d_array = True
    tags.input_tags.sparse = False
    tags.input_tags.allow_nan = False
    return tags


def is_dask_array(obj) -> bool:
    """True for a ``dask.array.Array`` (the functions that accept one hand it
    to :mod:`hftsig.distributed.on_dask`); never imports Dask."""
    # without dask.array imported, nothing can be one of its arrays
    dask_array = sys.modules.get("dask.array")
    return dask_array is not None and isinstance(obj, dask_array.Array)
