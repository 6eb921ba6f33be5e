"""Log-signatures: the tensor logarithm of a path signature, in the Lyndon basis.

The log-signature of a path is ``log(S)`` in the truncated tensor algebra,
where ``S`` is its signature.  It is a Lie series, so it has one coordinate
per Lyndon word instead of one per word: at depth ``N`` over ``d`` channels
:func:`logsiglength` numbers against ``siglength`` (``8`` against ``30`` for
``d=2, N=4``), with the same information as the signature.

Two outputs are offered:

``basis="lyndon"`` (default)
    Coordinates on the Lyndon basis: the Lie polynomials ``P_w`` obtained by
    bracketing each Lyndon word ``w`` by its standard factorisation
    ``w = uv`` (``v`` the longest proper Lyndon suffix, ``P_w = [P_u, P_v]``).
    Levels are concatenated and the words of a level sorted
    lexicographically, so the values equal
    ``iisignature.logsig(path, iisignature.prepare(dim, depth))``;
    :func:`lyndon_words` lists the words in that order.
``basis="expanded"``
    The tensor logarithm itself in the signature layout (level 0 left out,
    levels concatenated, words lexicographic), as iisignature's ``"X"``
    method gives it.

How it is computed: the signature comes from :func:`hftsig.signature.sig`;
``log(1 + x)`` is evaluated by Horner's scheme in the truncated tensor algebra
(``x (1 - x (1/2 - x (1/3 - ...))))``, only the levels that can still reach
the truncation being formed); the Lyndon coordinates come from the tensor
logarithm's coefficients on the Lyndon words.  The expansion of ``P_w`` is
``w`` plus words lexicographically greater than ``w`` (Reutenauer, *Free Lie
Algebras*, Thm 5.1), so the matrix ``<P_w, u>`` over Lyndon words ``u, w`` is
unit lower-triangular and one forward substitution per path turns the
coefficients into coordinates.  The sparse triangle is built once per
``(dim, depth)`` and cached.  Both steps run in Cython without the GIL,
threaded over the batch with ``n_jobs``.
"""
from functools import lru_cache

import numpy as np

from hftsig._ext import _logsignature
from hftsig.signature import _check_finite, _check_int, _n_threads, _numeric, siglength, sig

__all__ = ["logsig", "logsiglength", "lyndon_words", "lyndon_brackets", "sig_to_logsig"]

_BASES = ("lyndon", "expanded")


def _mobius(n):
    result = 1
    p = 2
    while p * p <= n:
        if n % p == 0:
            n //= p
            if n % p == 0:
                return 0
            result = -result
        p += 1
    if n > 1:
        result = -result
    return result


def _lyndon_count(dim, level):
    """Number of Lyndon words of length ``level`` over ``dim`` letters (Witt's formula)."""
    total = sum(_mobius(level // k) * dim**k for k in range(1, level + 1) if level % k == 0)
    return total // level


def logsiglength(dim, depth):
    """Number of log-signature coordinates of a ``dim``-channel path at ``depth``.

    It is the number of Lyndon words of length 1 to ``depth`` over ``dim``
    letters, i.e. the dimension of the free Lie algebra truncated at ``depth``.

    Parameters
    ----------
    dim : int
        Number of channels of the path, ``>= 1``.
    depth : int
        Truncation level, ``>= 1``.

    Returns
    -------
    int

    Examples
    --------
    >>> from hftsig import logsiglength
    >>> logsiglength(2, 4)
    8
    >>> logsiglength(3, 3)
    14
    >>> logsiglength(1, 5)
    1
    """
    dim = _check_int(dim, "dim", 1)
    depth = _check_int(depth, "depth", 1)
    return sum(_lyndon_count(dim, level) for level in range(1, depth + 1))


@lru_cache(maxsize=64)
def _lyndon_words_cached(dim, depth):
    # Duval's algorithm yields every Lyndon word of length <= depth in
    # lexicographic order; a stable sort by length gives the per-level order.
    words = []
    w = [-1]
    while w:
        w[-1] += 1
        words.append(tuple(w))
        m = len(w)
        while len(w) < depth:
            w.append(w[len(w) - m])
        while w and w[-1] == dim - 1:
            w.pop()
    words.sort(key=len)
    return tuple(words)


def lyndon_words(dim, depth):
    """Lyndon words up to length ``depth`` over letters ``0 .. dim-1``.

    They index the Lyndon-basis log-signature: coordinate ``i`` of
    :func:`logsig` belongs to ``lyndon_words(dim, depth)[i]``.  Words are
    grouped by length and sorted lexicographically within a length (the order
    of iisignature's ``basis``, whose letters start at 1).

    Parameters
    ----------
    dim : int
        Number of letters (channels), ``>= 1``.
    depth : int
        Maximal word length, ``>= 1``.

    Returns
    -------
    list of tuple of int

    Examples
    --------
    >>> from hftsig.logsignature import lyndon_words
    >>> lyndon_words(2, 3)
    [(0,), (1,), (0, 1), (0, 0, 1), (0, 1, 1)]
    """
    dim = _check_int(dim, "dim", 1)
    depth = _check_int(depth, "depth", 1)
    return list(_lyndon_words_cached(dim, depth))


def _standard_factorisation(word, lyndon_set):
    # The right factor is the longest proper suffix that is a Lyndon word.
    for start in range(1, len(word)):
        if word[start:] in lyndon_set:
            return word[:start], word[start:]
    raise AssertionError(f"{word} is not a Lyndon word")


def lyndon_brackets(dim, depth):
    """The Lie brackets ``P_w`` of the Lyndon basis, as strings.

    Each Lyndon word is bracketed by its standard factorisation; letters are
    ``0 .. dim-1``.  iisignature's ``basis`` gives the same brackets with
    letters ``1 .. dim``.

    Examples
    --------
    >>> from hftsig.logsignature import lyndon_brackets
    >>> lyndon_brackets(2, 4)
    ['0', '1', '[0,1]', '[0,[0,1]]', '[[0,1],1]', '[0,[0,[0,1]]]', '[0,[[0,1],1]]', '[[[0,1],1],1]']
    """
    words = lyndon_words(dim, depth)
    lyndon_set = set(words)
    memo = {}

    def bracket(word):
        if word not in memo:
            if len(word) == 1:
                memo[word] = str(word[0])
            else:
                u, v = _standard_factorisation(word, lyndon_set)
                memo[word] = f"[{bracket(u)},{bracket(v)}]"
        return memo[word]

    return [bracket(w) for w in words]


@lru_cache(maxsize=32)
def _lyndon_system(dim, depth):
    """Precomputed data of the Lyndon projection for ``(dim, depth)``.

    Returns ``(flat, indptr, indices, data)``: ``flat[i]`` is the position of
    the ``i``-th Lyndon word in the signature layout, and the CSR triple holds
    the strictly lower triangle of ``A[u, w] = <P_w, u>`` (``u, w`` Lyndon,
    same level, ``w < u``); the diagonal is 1.
    """
    words = _lyndon_words_cached(dim, depth)
    lyndon_set = set(words)
    offsets = [0]
    for level in range(1, depth + 1):
        offsets.append(offsets[-1] + dim**level)

    def index(word):
        i = 0
        for letter in word:
            i = i * dim + letter
        return i

    position = {w: k for k, w in enumerate(words)}
    flat = np.array([offsets[len(w) - 1] + index(w) for w in words], dtype=np.intp)

    # P_w as {word index within its level: coefficient}; letters are the base
    # case and [P_u, P_v] = P_u P_v - P_v P_u.
    expansions = {}

    def expand(word):
        p = expansions.get(word)
        if p is not None:
            return p
        if len(word) == 1:
            p = {word[0]: 1}
        else:
            u, v = _standard_factorisation(word, lyndon_set)
            pu, pv = expand(u), expand(v)
            su, sv = dim ** len(u), dim ** len(v)
            p = {}
            for iu, cu in pu.items():
                for iv, cv in pv.items():
                    c = cu * cv
                    k = iu * sv + iv
                    p[k] = p.get(k, 0) + c
                    k = iv * su + iu
                    p[k] = p.get(k, 0) - c
            p = {k: c for k, c in p.items() if c != 0}
        expansions[word] = p
        return p

    rows = [[] for _ in words]
    by_level_index = {(len(w), index(w)): k for k, w in enumerate(words)}
    for w in words:
        col = position[w]
        for k, c in expand(w).items():
            row = by_level_index.get((len(w), k))
            if row is not None and row != col:
                rows[row].append((col, c))
    indptr = np.zeros(len(words) + 1, dtype=np.intp)
    indices, data = [], []
    for r, entries in enumerate(rows):
        entries.sort()
        indices.extend(col for col, _ in entries)
        data.extend(float(c) for _, c in entries)
        indptr[r + 1] = len(indices)
    return (
        flat,
        indptr,
        np.asarray(indices, dtype=np.intp),
        np.asarray(data, dtype=np.float64),
    )


def _check_basis(basis):
    if not isinstance(basis, str):
        raise TypeError(f"basis: expected a string, got {type(basis).__name__}")
    if basis not in _BASES:
        raise ValueError(f"basis: must be one of {_BASES}, got {basis!r}")
    return basis


def sig_to_logsig(signature, dim, depth, *, basis="lyndon", n_jobs=1):
    """Log-signature from a signature already computed.

    Parameters
    ----------
    signature : array_like, shape (..., siglength(dim, depth))
        Signatures in the iisignature layout (level 0 left out).  Leading axes
        are kept (a batch, or the prefixes of a streamed signature).
    dim : int
        Number of channels of the paths.
    depth : int
        Truncation level of ``signature``.
    basis : {"lyndon", "expanded"}, default "lyndon"
        See :func:`logsig`.
    n_jobs : int, default 1
        Threads over the leading axes (``-1``: all cores).

    Returns
    -------
    ndarray, shape (..., logsiglength(dim, depth)) or (..., siglength(dim, depth))
        float64, or float32 when ``signature`` is float32.

    Examples
    --------
    The signature of a straight line with increment ``(1, 2)`` is
    ``exp((1, 2))``; its logarithm is the increment:

    >>> import numpy as np
    >>> from hftsig.logsignature import sig_to_logsig
    >>> s = np.array([1.0, 2.0, 0.5, 1.0, 1.0, 2.0])
    >>> sig_to_logsig(s, 2, 2)
    array([1., 2., 0.])
    """
    dim = _check_int(dim, "dim", 1)
    depth = _check_int(depth, "depth", 1)
    basis = _check_basis(basis)
    n_threads = _n_threads(n_jobs)
    s = np.asarray(signature)
    _numeric(s, "signature")
    length = siglength(dim, depth)
    if s.ndim < 1 or s.shape[-1] != length:
        raise ValueError(
            f"signature: last axis must have siglength(dim={dim}, depth={depth}) = {length}, "
            f"got shape {s.shape}"
        )
    dtype = np.float32 if s.dtype == np.float32 else np.float64
    _check_finite(s, "signature")
    lead = s.shape[:-1]
    flat = np.ascontiguousarray(s.reshape(-1, length), dtype=dtype)
    if basis == "expanded":
        out = np.empty_like(flat)
        _logsignature.tensor_log(flat, out, dim, depth, n_threads)
    else:
        words, indptr, indices, data = _lyndon_system(dim, depth)
        out = np.empty((flat.shape[0], words.shape[0]), dtype=dtype)
        _logsignature.lyndon_logsig(flat, out, dim, depth, words, indptr, indices, data, n_threads)
    return out.reshape(lead + out.shape[-1:])


def _dim_from_siglength(length, depth):
    dim = 1
    while siglength(dim, depth) < length:
        dim += 1
    if siglength(dim, depth) != length:
        raise AssertionError(f"{length} is not a signature length at depth {depth}")
    return dim


def logsig(path, depth, *, basis="lyndon", stream=False, at=None, time_aug=False, lead_lag=False,
           basepoint=False, n_jobs=1):
    """Log-signature of a path, or of a batch of paths.

    Parameters
    ----------
    path : array_like, shape (length, dim) or (batch, length, dim)
        Points of the path(s); float32 and integers are accepted, the
        computation is float64.
    depth : int
        Truncation level, ``>= 1``.
    basis : {"lyndon", "expanded"}, default "lyndon"
        ``"lyndon"``: coordinates on the Lyndon basis, equal to
        ``iisignature.logsig(path, iisignature.prepare(dim, depth))``, in the
        order of :func:`lyndon_words`.  ``"expanded"``: the tensor logarithm in
        the signature layout, equal to iisignature's ``"X"`` method.
    stream : bool, default False
        Log-signature of every prefix ``path[..., :i+1, :]``, ``i = 1 ..
        length-1``, as in :func:`hftsig.sig` (one more axis before the last).
    at : array_like of int, optional
        Log-signatures of the prefixes ending at these point indices only, as
        in :func:`hftsig.sig`.
    time_aug, lead_lag, basepoint : bool, default False
        Path transforms applied before the signature, exactly as in
        :func:`hftsig.sig`; ``time_aug`` and ``lead_lag`` change the number of
        channels the output is indexed by.
    n_jobs : int, default 1
        Threads over the batch (``-1``: all cores); the GIL is released.

    Returns
    -------
    ndarray of float64, shape (logsiglength(dim, depth),) or (batch, logsiglength(dim, depth))
        With ``basis="expanded"``, ``siglength(dim, depth)`` instead; with
        ``stream`` or ``at``, one more axis before the last.  ``dim`` counts
        the channels after ``time_aug``/``lead_lag``.

    Examples
    --------
    A straight line's log-signature is its increment, with nothing above level 1:

    >>> import numpy as np
    >>> import hftsig
    >>> line = np.array([[0.0, 0.0], [1.0, 2.0]])
    >>> hftsig.logsig(line, 2)
    array([1., 2., 0.])
    >>> np.abs(hftsig.logsig(line, 5)[2:]).max() < 1e-15
    np.True_

    Going right then up encloses a signed area of 1/2 (the ``[0,1]`` bracket):

    >>> hftsig.logsig(np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]]), 2)
    array([1. , 1. , 0.5])
    """
    try:
        path = np.asarray(path)
    except ValueError as exc:  # ragged nested sequences
        raise ValueError(f"path: not an array of paths of one shape ({exc})") from None
    depth = _check_int(depth, "depth", 1)
    basis = _check_basis(basis)
    s = sig(
        path,
        depth,
        stream=stream,
        at=at,
        time_aug=time_aug,
        lead_lag=lead_lag,
        basepoint=basepoint,
        n_jobs=n_jobs,
    )
    dim = _dim_from_siglength(s.shape[-1], depth)
    return sig_to_logsig(s, dim, depth, basis=basis, n_jobs=n_jobs)
