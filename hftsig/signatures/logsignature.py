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

How it is computed: the signature comes from :func:`hftsig.signatures.signature.sig`;
``log(1 + x)`` is evaluated by Horner's scheme in the truncated tensor algebra
(``x (1 - x (1/2 - x (1/3 - ...)))``, only the levels that can still reach
the truncation being formed); the Lyndon coordinates come from the tensor
logarithm's coefficients on the Lyndon words, and for them the last Horner
product is formed at the Lyndon words only (about ``d**N`` products instead of
``N d**N``).  The expansion of ``P_w`` is
``w`` plus words lexicographically greater than ``w`` (Reutenauer, *Free Lie
Algebras*, ch. 5; checked when the table is built), so the matrix ``<P_w, u>`` over Lyndon words ``u, w`` is
unit lower-triangular and one forward substitution per path turns the
coefficients into coordinates.  The sparse triangle is built once per
``(dim, depth)`` and cached.  Both steps run in Cython without the GIL,
threaded over the batch with ``n_jobs``.

The Lyndon tables grow faster than the signature: building them expands
each bracket of length ``m`` into ``2**(m-1)`` words (0.2 GiB measured for
``dim=2, depth=14``, four times more per level).  Their memory is estimated
(from Witt's formula, before any word is listed) and counted with the output
against ``max_output_bytes``; beyond it the call raises ``ValueError``
naming ``depth``, and ``basis="expanded"``, which needs no tables, may
still fit.  Errors and limits are otherwise those of
:mod:`hftsig.signatures.signature`: the right answer, or ``TypeError``/``ValueError``
naming the argument, never a crash, a hang or an allocation beyond the limit.
"""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from hftsig._ext import _logsignature
from hftsig._ext import _signature as _k
from hftsig._validation import check_finite, check_int, check_numeric, is_dask_array
from hftsig.signatures.signature import _MAX_DEPTH, _MAX_DIM, _n_threads, _SigPlan

if TYPE_CHECKING:
    import dask.array as da
    from numpy.typing import ArrayLike

__all__ = ["logsig", "logsiglength", "lyndon_words", "lyndon_brackets", "sig_to_logsig"]

_BASES = ("lyndon", "expanded")
# about 100 microseconds of tensor-log work (multiply-adds) per thread
_MIN_WORK_PER_THREAD = 1 << 17


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


def _check_dim_depth(dim, depth):
    return (check_int(dim, "dim", minimum=1, maximum=_MAX_DIM),
            check_int(depth, "depth", minimum=1, maximum=_MAX_DEPTH))


# Python memory per Lyndon word of length <= depth while the words are
# listed (the tuple, 40 bytes + 8 a letter, list slots, the sort key) and
# turned into arrays: up to 180 + 8 * depth bytes measured.
def _word_list_bytes(count, depth):
    return count * (192 + 8 * depth)


@lru_cache(maxsize=256)
def _lyndon_table_bytes(dim, depth):
    """Upper estimate of the peak memory of building the Lyndon-basis tables.

    :func:`_lyndon_system` expands each bracket ``P_w`` of length ``m`` into
    ``2**(m-1)`` signed words: 9 bytes a term kept for the levels below the
    top, and at the top level about 24 bytes a term measured for ``dim=2``
    (up to 47 for ``dim=8``, where more terms land on Lyndon words and are
    collected), plus an int64 lookup over the ``dim**m`` words of a level.
    """
    counts = [_lyndon_count(dim, m) for m in range(1, depth + 1)]
    terms = [n * 2 ** (m - 1) for m, n in enumerate(counts, start=1)]
    splits = sum(n * (m - 1) for m, n in enumerate(counts, start=1))
    fixed = 1 << 21  # numpy's temporaries for the smallest tables: about 1.2 MiB measured
    return (fixed + 9 * sum(terms[:-1]) + 48 * terms[-1] + 16 * dim**depth + 24 * splits
            + _word_list_bytes(sum(counts), depth))


def _check_logsig_memory(dim, depth, basis, n_rows, n_threads, check=None):
    """Refuse (``ValueError``) the log-signatures of ``n_rows`` signatures beyond the memory limit.

    Counts the output, one scratch signature per thread and, for the Lyndon
    basis, the tables.  With ``check`` (a :class:`~hftsig.signatures.signature._SigPlan`'s
    ``check_memory``) the signatures are computed in the same call and are
    counted with them.
    """
    siglen = _k.signature_length(dim, depth)
    width = siglen if basis == "expanded" else logsiglength(dim, depth)
    out_bytes = 8 * (n_rows * width + n_threads * siglen)
    if basis == "lyndon":
        table_bytes = _lyndon_table_bytes(dim, depth)
        tables, hint = "the Lyndon-basis tables", ", or use basis='expanded' (no tables)"
    else:
        table_bytes, tables, hint = 0, "", ""
    logsigs = f"log-signatures ({_k.show_int(width)} coordinates each)"
    if check is not None:
        check(out_bytes, f", their {logsigs}{', ' + tables if tables else ''}", hint,
              fixed_bytes=table_bytes)
        return
    if out_bytes + table_bytes <= _k.max_output_bytes():
        return
    rows = f"{n_rows} signature{'s' if n_rows != 1 else ''} of dim={dim}, depth={depth}"
    # depth is to blame when even one signature does not fit with the tables
    one_row = table_bytes + 8 * (width + n_threads * siglen)
    _k.check_bytes(out_bytes + table_bytes,
                   "depth" if one_row > _k.max_output_bytes() else "signature",
                   f"the {logsigs} of {rows}{' and ' + tables if tables else ''}",
                   f"pass fewer signatures per call or lower depth{hint}")


def logsiglength(dim: int, depth: int) -> int:
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
    dim, depth = _check_dim_depth(dim, depth)
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


def lyndon_words(dim: int, depth: int) -> list[tuple[int, ...]]:
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
    >>> from hftsig.signatures.logsignature import lyndon_words
    >>> lyndon_words(2, 3)
    [(0,), (1,), (0, 1), (0, 0, 1), (0, 1, 1)]
    """
    dim, depth = _check_dim_depth(dim, depth)
    count = logsiglength(dim, depth)
    _k.check_bytes(_word_list_bytes(count, depth), "depth",
                   f"the {_k.show_int(count)} Lyndon words of dim={dim}, depth={depth}",
                   "lower depth")
    return list(_lyndon_words_cached(dim, depth))


def _standard_factorisation(word, lyndon_set):
    # The right factor is the longest proper suffix that is a Lyndon word.
    for start in range(1, len(word)):
        if word[start:] in lyndon_set:
            return word[:start], word[start:]
    raise AssertionError(f"{word} is not a Lyndon word")


def lyndon_brackets(dim: int, depth: int) -> list[str]:
    """The Lie brackets ``P_w`` of the Lyndon basis, as strings.

    Each Lyndon word is bracketed by its standard factorisation; letters are
    ``0 .. dim-1``.  iisignature's ``basis`` gives the same brackets with
    letters ``1 .. dim``.

    Examples
    --------
    >>> from hftsig.signatures.logsignature import lyndon_brackets
    >>> lyndon_brackets(2, 4)
    ['0', '1', '[0,1]', '[0,[0,1]]', '[[0,1],1]', '[0,[0,[0,1]]]', '[0,[[0,1],1]]', '[[[0,1],1],1]']
    """
    dim, depth = _check_dim_depth(dim, depth)
    count = logsiglength(dim, depth)
    # the words, their set, and a memoised string (and dict entry) per word
    _k.check_bytes(_word_list_bytes(count, depth) + count * (200 + 4 * depth), "depth",
                   f"the brackets of the {_k.show_int(count)} Lyndon words of dim={dim}, "
                   f"depth={depth}", "lower depth")
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


def _lyndon_levels(dim, depth):
    """Lyndon words of each length ``m`` as their positions within level ``m``.

    A word's position in its level of the signature layout is the word read
    as a number in base ``dim``; lexicographic order is numeric order.
    """
    words = _lyndon_words_cached(dim, depth)
    levels = {}
    for m in range(1, depth + 1):
        letters = np.array([w for w in words if len(w) == m], dtype=np.int64).reshape(-1, m)
        powers = dim ** np.arange(m - 1, -1, -1, dtype=np.int64)
        levels[m] = letters @ powers
    return levels


@lru_cache(maxsize=32)
def _lyndon_system(dim, depth):
    """Precomputed data of the Lyndon projection for ``(dim, depth)``.

    Returns ``(flat, indptr, indices, data)``: ``flat[i]`` is the position of
    the ``i``-th Lyndon word in the signature layout, and the CSR triple holds
    the strictly lower triangle of ``A[u, w] = <P_w, u>`` (``u, w`` Lyndon,
    same level, ``w < u``); the diagonal is 1.

    ``P_w = [P_u, P_v] = P_u P_v - P_v P_u`` is expanded without collecting
    terms (``2**(m-1)`` signed words for length ``m``), a whole level at a
    time, grouped by the length of ``u``; terms are collected only on the
    Lyndon words, where the triangle is read off.
    """
    levels = _lyndon_levels(dim, depth)

    def row_in_level(m, index):
        # Lyndon words of a level are sorted, so are their indices
        return np.searchsorted(levels[m], index)

    def is_lyndon(m, index):
        rows = np.minimum(row_in_level(m, index), len(levels[m]) - 1)
        return levels[m][rows] == index

    # expansions[m] = (word indices, signs), each of shape (n_m, 2**(m-1))
    index1 = levels[1]
    expansions = {1: (index1[:, None], np.ones((len(index1), 1), dtype=np.int8))}
    flat_parts, indptr_parts, index_parts, data_parts = [], [np.zeros(1, dtype=np.intp)], [], []
    start = 0  # first slot of the level in the signature layout
    base = 0  # number of Lyndon words at lower levels
    n_entries = 0
    for m in range(1, depth + 1):
        index = levels[m]
        n_m = len(index)
        if m > 1:
            # standard factorisation w = uv: v is the longest proper Lyndon suffix
            split = np.zeros(n_m, dtype=np.int64)
            for a in range(m - 1, 0, -1):
                split[is_lyndon(m - a, index % dim ** (m - a))] = a
            idx = np.empty((n_m, 2 ** (m - 1)), dtype=np.int64)
            sign = np.empty((n_m, 2 ** (m - 1)), dtype=np.int8)
            for a in np.unique(split):
                a = int(a)
                b = m - a
                group = np.flatnonzero(split == a)
                ru = row_in_level(a, index[group] // dim**b)
                rv = row_in_level(b, index[group] % dim**b)
                iu, su = expansions[a][0][ru], expansions[a][1][ru]
                iv, sv = expansions[b][0][rv], expansions[b][1][rv]
                half = 2 ** (m - 2)
                idx[group, :half] = (iu[:, :, None] * dim**b + iv[:, None, :]).reshape(len(group), half)
                sign[group, :half] = (su[:, :, None] * sv[:, None, :]).reshape(len(group), half)
                idx[group, half:] = (iv[:, :, None] * dim**a + iu[:, None, :]).reshape(len(group), half)
                sign[group, half:] = -(sv[:, :, None] * su[:, None, :]).reshape(len(group), half)
            if m < depth:
                expansions[m] = (idx, sign)
        else:
            idx, sign = expansions[1]
        # collect the terms on Lyndon words u: A[u, w] for w of this level
        row_of = np.full(dim**m, -1, dtype=np.int64)
        row_of[index] = np.arange(n_m)
        rows = row_of[idx]
        cols = np.broadcast_to(np.arange(n_m)[:, None], rows.shape)
        keep = rows >= 0
        keys, inverse = np.unique(rows[keep] * n_m + cols[keep], return_inverse=True)
        sums = np.bincount(inverse, weights=sign[keep].astype(np.float64))
        r, c = np.divmod(keys, n_m)
        if not (np.all(c <= r) and np.array_equal(sums[r == c], np.ones(n_m))):
            raise AssertionError("Lyndon basis matrix is not unit lower-triangular")
        lower = (r > c) & (sums != 0)
        r, c, sums = r[lower], c[lower], sums[lower]
        counts = np.bincount(r, minlength=n_m)
        indptr_parts.append(n_entries + np.cumsum(counts))
        n_entries += len(r)
        index_parts.append(base + c)
        data_parts.append(sums)
        flat_parts.append(start + index)
        start += dim**m
        base += n_m
    tables = (
        np.concatenate(flat_parts).astype(np.intp),
        np.concatenate(indptr_parts).astype(np.intp),
        np.concatenate(index_parts).astype(np.intp),
        np.concatenate(data_parts).astype(np.float64),
    )
    for t in tables:
        t.flags.writeable = False
    return tables


@lru_cache(maxsize=32)
def _lyndon_splits(dim, depth):
    """Positions of the prefix/suffix pairs of every Lyndon word.

    For word ``u`` of length ``m``, split ``i`` (``0 < i < m``) pairs the
    position of ``u[:i]`` in the signature layout with that of ``u[i:]``;
    ``split_ptr`` delimits each word's splits (CSR).  The kernel forms the
    tensor logarithm's coefficient at ``u`` from these pairs only.
    """
    levels = _lyndon_levels(dim, depth)
    starts = [0]
    for level in range(1, depth + 1):
        starts.append(starts[-1] + dim**level)  # starts[l - 1]: first slot of level l
    counts, xs, rs = [], [], []
    for m in range(1, depth + 1):
        index = levels[m]
        counts.append(np.full(len(index), m - 1, dtype=np.intp))
        if m == 1:
            continue
        i = np.arange(1, m)
        suffix_size = dim ** (m - i)
        xs.append((np.asarray(starts)[i - 1] + index[:, None] // suffix_size).ravel())
        rs.append((np.asarray(starts)[m - i - 1] + index[:, None] % suffix_size).ravel())
    ptr = np.concatenate([[0], np.cumsum(np.concatenate(counts))]).astype(np.intp)
    empty = np.zeros(0, dtype=np.intp)
    tables = (
        ptr,
        np.concatenate(xs).astype(np.intp) if xs else empty,
        np.concatenate(rs).astype(np.intp) if rs else empty,
    )
    for t in tables:
        t.flags.writeable = False
    return tables


def _check_basis(basis):
    if not isinstance(basis, str):
        raise TypeError(f"basis: expected a string, got {type(basis).__name__}")
    if basis not in _BASES:
        raise ValueError(f"basis: must be one of {_BASES}, got {basis!r}")
    return basis


def sig_to_logsig(signature: ArrayLike, dim: int, depth: int, *, basis: str = "lyndon",
                  n_jobs: int | None = 1) -> np.ndarray:
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
    >>> from hftsig.signatures.logsignature import sig_to_logsig
    >>> s = np.array([1.0, 2.0, 0.5, 1.0, 1.0, 2.0])
    >>> sig_to_logsig(s, 2, 2)
    array([1., 2., 0.])
    """
    dim, depth = _check_dim_depth(dim, depth)
    basis = _check_basis(basis)
    n_threads = _n_threads(n_jobs)
    s = np.asarray(signature)
    check_numeric(s, "signature")
    length = _k.signature_length(dim, depth)
    if s.ndim < 1 or s.shape[-1] != length:
        raise ValueError(
            f"signature: last axis must have siglength(dim={dim}, depth={depth}) = "
            f"{_k.show_int(length)}, got shape {s.shape}"
        )
    check_finite(s, "signature")
    n_rows = s.size // length
    n_threads = _threads_for(n_rows, length, depth, n_threads)
    _check_logsig_memory(dim, depth, basis, n_rows, n_threads)
    return _log_of_signatures(s, dim, depth, basis, n_threads)


def _threads_for(n_rows, length, depth, n_threads):
    if n_rows * length * depth < _MIN_WORK_PER_THREAD * n_threads:
        # below ~100 us of work per thread, waking threads costs more than it saves
        n_threads = max(1, n_rows * length * depth // _MIN_WORK_PER_THREAD)
    return n_threads


def _log_of_signatures(s, dim, depth, basis, n_threads):
    """:func:`sig_to_logsig` on checked arguments."""
    length = s.shape[-1]
    dtype = np.float32 if s.dtype == np.float32 else np.float64
    lead = s.shape[:-1]
    flat = np.ascontiguousarray(s.reshape(-1, length), dtype=dtype)
    if basis == "expanded":
        out = np.empty_like(flat)
        _logsignature.tensor_log(flat, out, dim, depth, n_threads)
    else:
        words, indptr, indices, data = _lyndon_system(dim, depth)
        split_ptr, split_x, split_r = _lyndon_splits(dim, depth)
        out = np.empty((flat.shape[0], words.shape[0]), dtype=dtype)
        _logsignature.lyndon_logsig(
            flat, out, dim, depth, words, split_ptr, split_x, split_r, indptr, indices, data,
            n_threads,
        )
    return out.reshape(lead + out.shape[-1:])


def logsig(path: ArrayLike | da.Array, depth: int, *, basis: str = "lyndon", stream: bool = False,
           at: ArrayLike | None = None, time_aug: bool = False, lead_lag: bool = False,
           basepoint: bool = False, n_jobs: int | None = 1) -> np.ndarray | da.Array:
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
        the channels after ``time_aug``/``lead_lag``.  For a dask array
        ``path``, a dask array chunked like ``path`` over the batch
        (:func:`hftsig.distributed.on_dask.logsig`).

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
    if is_dask_array(path):
        from hftsig.distributed.on_dask import logsig as logsig_on_dask

        return logsig_on_dask(path, depth, basis=basis, stream=stream, at=at, time_aug=time_aug,
                              lead_lag=lead_lag, basepoint=basepoint, n_jobs=n_jobs)
    try:
        path = np.asarray(path)
    except ValueError as exc:  # ragged nested sequences
        raise ValueError(f"path: not an array of paths of one shape ({exc})") from None
    depth = check_int(depth, "depth", minimum=1, maximum=_MAX_DEPTH)
    basis = _check_basis(basis)
    plan = _SigPlan(path, depth, stream=stream, at=at, basepoint=basepoint, time_aug=time_aug,
                    lead_lag=lead_lag, n_jobs=n_jobs)
    n_rows = plan.out_bytes() // (8 * plan.siglen)
    n_threads = _threads_for(n_rows, plan.siglen, depth, plan.nthreads)
    # one check for the signatures, the log-signatures and the tables together
    _check_logsig_memory(plan.dim, depth, basis, n_rows, n_threads, check=plan.check_memory)
    return _log_of_signatures(plan.run(), plan.dim, depth, basis, n_threads)
