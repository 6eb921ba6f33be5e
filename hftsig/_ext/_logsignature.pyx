# cython: language_level=3
"""Kernels of :mod:`hftsig.signatures.logsignature`: tensor logarithm and Lyndon projection.

Tensors are rows in the signature layout: level 0 left out, level ``l``
(``d**l`` coefficients, words in lexicographic order) after levels
``1 .. l-1``.  Every kernel takes C-contiguous rows, one path per row, and
threads over rows with OpenMP when it is available.
"""
from cython.parallel cimport prange, threadid

cimport cython
import numpy as np
from cpython.pyport cimport PY_SSIZE_T_MAX
from cython cimport floating

cdef inline bint _level_offsets(Py_ssize_t dim, Py_ssize_t depth,
                                Py_ssize_t* offsets, Py_ssize_t* sizes) noexcept nogil:
    # offsets[l], sizes[l] for l = 0 .. depth; level 0 is not stored.
    # False if dim < 1 or a size overflows: a wrapped size could match the
    # row length and send the kernels past the end of the rows.
    cdef Py_ssize_t level
    if dim < 1:
        return False
    offsets[0] = 0
    sizes[0] = 1
    offsets[1] = 0
    for level in range(1, depth + 1):
        if sizes[level - 1] > PY_SSIZE_T_MAX // dim:
            return False
        sizes[level] = sizes[level - 1] * dim
        if level > 1:
            if offsets[level - 1] > PY_SSIZE_T_MAX - sizes[level - 1]:
                return False
            offsets[level] = offsets[level - 1] + sizes[level - 1]
    return offsets[depth] <= PY_SSIZE_T_MAX - sizes[depth]


cdef inline void _horner_step(const floating* x, const floating* r, floating* dst, floating r0,
                              Py_ssize_t top, const Py_ssize_t* offsets,
                              const Py_ssize_t* sizes) noexcept nogil:
    """Levels ``1 .. top`` of ``x (r0 + r)`` into ``dst``.

    Level ``m`` reads levels ``< m`` of ``r`` only, so ``dst`` may be ``r``
    itself: levels are written from the top down.
    """
    cdef Py_ssize_t m, i, a, b, na, nb
    cdef floating xa
    cdef floating* d
    cdef const floating* src
    cdef const floating* xi
    for m in range(top, 0, -1):
        d = dst + offsets[m]
        xi = x + offsets[m]
        nb = sizes[m]
        for b in range(nb):
            d[b] = r0 * xi[b]
        for i in range(1, m):
            xi = x + offsets[i]
            src = r + offsets[m - i]
            na = sizes[i]
            nb = sizes[m - i]
            for a in range(na):
                xa = xi[a]
                for b in range(nb):
                    d[a * nb + b] += xa * src[b]


cdef void _horner_r1(const floating* x, floating* r, Py_ssize_t depth,
                     const Py_ssize_t* offsets, const Py_ssize_t* sizes) noexcept nogil:
    """Levels ``1 .. depth-1`` of ``r_1`` into ``r``, so that ``log(1 + x) = x (1 + r)``.

    Horner's scheme for ``log(1+x) = sum_k (-1)^(k+1) x^k / k``:
    ``r_N = (-1)^(N+1)/N``, ``r_k = (-1)^(k+1)/k + x r_(k+1)``, ``log(1+x) = x r_1``.
    ``r_k`` is only needed up to level ``N-k`` because ``k`` more factors of
    ``x`` follow; it overwrites ``r_(k+1)`` in place.
    """
    cdef Py_ssize_t k
    # level-0 part of r_(k+1); r stores levels >= 1
    cdef floating r0 = (1.0 if depth % 2 == 1 else -1.0) / depth
    for k in range(depth - 1, 0, -1):
        _horner_step(x, r, r, r0, depth - k, offsets, sizes)
        r0 = (1.0 if k % 2 == 1 else -1.0) / k


cdef inline void _lyndon_coordinates(const floating* x, const floating* r, floating* out,
                                     Py_ssize_t n, const Py_ssize_t* words,
                                     const Py_ssize_t* split_ptr, const Py_ssize_t* split_x,
                                     const Py_ssize_t* split_r, const Py_ssize_t* indptr,
                                     const Py_ssize_t* indices, const double* data) noexcept nogil:
    """Lyndon coordinates from ``x`` and ``r_1`` (see :func:`_horner_r1`).

    The last Horner step ``x (1 + r_1)`` is formed only at the Lyndon words
    ``u``: the coefficient of ``u = u_1..u_m`` is ``x[u]`` plus
    ``x[u_1..u_i] r_1[u_(i+1)..u_m]`` over the splits ``0 < i < m``, whose
    positions are precomputed (``split_*``, CSR by word).  Then ``A c = t``
    is solved with ``A`` unit lower-triangular (strict part in CSR).
    """
    cdef Py_ssize_t u, j
    cdef floating acc
    for u in range(n):
        acc = x[words[u]]
        for j in range(split_ptr[u], split_ptr[u + 1]):
            acc += x[split_x[j]] * r[split_r[j]]
        for j in range(indptr[u], indptr[u + 1]):
            acc -= <floating> data[j] * out[indices[j]]
        out[u] = acc


cdef inline const Py_ssize_t* _ptr(const Py_ssize_t[::1] a) noexcept:
    # empty arrays (depth 1, dim 1) have no element 0 to take the address of
    return &a[0] if a.shape[0] > 0 else NULL


@cython.boundscheck(False)
@cython.wraparound(False)
def tensor_log(const floating[:, ::1] sig, floating[:, ::1] out,
               Py_ssize_t dim, Py_ssize_t depth, int n_threads=1):
    """Write ``log(sig[i])`` (tensor logarithm, truncated at ``depth``) to ``out[i]``."""
    cdef Py_ssize_t n = sig.shape[0], length = sig.shape[1], i
    cdef Py_ssize_t offsets[64]
    cdef Py_ssize_t sizes[64]
    cdef Py_ssize_t n_threads_used = max(1, min(n_threads, n))
    cdef floating[:, ::1] scratch
    if depth < 1 or depth > 62:
        raise ValueError(f"depth: must be in 1..62, got {depth}")
    if out.shape[0] != n or out.shape[1] != length:
        raise ValueError("out must have the shape of sig")
    if (not _level_offsets(dim, depth, offsets, sizes)
            or offsets[depth] + sizes[depth] != length):
        raise ValueError("signature: rows do not have siglength(dim, depth) entries")
    if n == 0:
        return
    # one r_1 per thread
    scratch = np.empty((n_threads_used, length), dtype=np.float32 if floating is float else np.float64)
    with nogil:
        for i in prange(n, num_threads=n_threads_used, schedule="static"):
            _horner_r1(&sig[i, 0], &scratch[threadid(), 0], depth, offsets, sizes)
            _horner_step(&sig[i, 0], &scratch[threadid(), 0], &out[i, 0], 1.0, depth,
                         offsets, sizes)


@cython.boundscheck(False)
@cython.wraparound(False)
def lyndon_logsig(const floating[:, ::1] sig, floating[:, ::1] out,
                  Py_ssize_t dim, Py_ssize_t depth, const Py_ssize_t[::1] words,
                  const Py_ssize_t[::1] split_ptr, const Py_ssize_t[::1] split_x,
                  const Py_ssize_t[::1] split_r, const Py_ssize_t[::1] indptr,
                  const Py_ssize_t[::1] indices, const double[::1] data,
                  int n_threads=1):
    """Write the Lyndon-basis log-signature of ``sig[i]`` to ``out[i]``.

    ``words[u]`` is the position of Lyndon word ``u`` in the signature layout;
    ``split_ptr, split_x, split_r`` list, per word, the positions of its
    prefix in ``sig`` and its suffix in ``r_1`` for every split;
    ``indptr, indices, data`` hold the strict lower triangle of
    ``A[u, w] = <P_w, u>`` in CSR form.
    """
    cdef Py_ssize_t n = sig.shape[0], length = sig.shape[1], n_words = words.shape[0]
    cdef Py_ssize_t i
    cdef Py_ssize_t offsets[64]
    cdef Py_ssize_t sizes[64]
    cdef Py_ssize_t n_threads_used = max(1, min(n_threads, n))
    cdef floating[:, ::1] scratch
    if depth < 1 or depth > 62:
        raise ValueError(f"depth: must be in 1..62, got {depth}")
    if out.shape[0] != n or out.shape[1] != n_words:
        raise ValueError("out must have shape (len(sig), len(words))")
    if (indptr.shape[0] != n_words + 1 or indices.shape[0] != data.shape[0]
            or split_ptr.shape[0] != n_words + 1 or split_x.shape[0] != split_r.shape[0]):
        raise ValueError("malformed Lyndon tables")
    if (not _level_offsets(dim, depth, offsets, sizes)
            or offsets[depth] + sizes[depth] != length):
        raise ValueError("signature: rows do not have siglength(dim, depth) entries")
    if n == 0:
        return
    cdef const Py_ssize_t* words_p = _ptr(words)
    cdef const Py_ssize_t* split_ptr_p = _ptr(split_ptr)
    cdef const Py_ssize_t* split_x_p = _ptr(split_x)
    cdef const Py_ssize_t* split_r_p = _ptr(split_r)
    cdef const Py_ssize_t* indptr_p = _ptr(indptr)
    cdef const Py_ssize_t* indices_p = _ptr(indices)
    cdef const double* data_p = &data[0] if data.shape[0] > 0 else NULL
    # one r_1 per thread
    scratch = np.empty((n_threads_used, length), dtype=np.float32 if floating is float else np.float64)
    with nogil:
        for i in prange(n, num_threads=n_threads_used, schedule="static"):
            _horner_r1(&sig[i, 0], &scratch[threadid(), 0], depth, offsets, sizes)
            _lyndon_coordinates(&sig[i, 0], &scratch[threadid(), 0], &out[i, 0], n_words,
                                words_p, split_ptr_p, split_x_p, split_r_p, indptr_p,
                                indices_p, data_p)
