# cython: language_level=3
"""Kernels of :mod:`hftsig.logsignature`: tensor logarithm and Lyndon projection.

Tensors are rows in the signature layout: level 0 left out, level ``l``
(``d**l`` coefficients, words in lexicographic order) after levels
``1 .. l-1``.  Every kernel takes C-contiguous rows, one path per row, and
threads over rows with OpenMP when it is available.
"""
from cython.parallel cimport prange, threadid

cimport cython
import numpy as np
from cython cimport floating

cdef inline void _level_offsets(Py_ssize_t dim, Py_ssize_t depth,
                                Py_ssize_t* offsets, Py_ssize_t* sizes) noexcept nogil:
    # offsets[l], sizes[l] for l = 0 .. depth; level 0 is not stored.
    cdef Py_ssize_t level
    offsets[0] = 0
    sizes[0] = 1
    offsets[1] = 0
    for level in range(1, depth + 1):
        sizes[level] = sizes[level - 1] * dim
        if level > 1:
            offsets[level] = offsets[level - 1] + sizes[level - 1]


cdef void _tensor_log_row(const floating* x, floating* r, Py_ssize_t depth,
                          const Py_ssize_t* offsets, const Py_ssize_t* sizes) noexcept nogil:
    """``r = log(1 + x)`` truncated at ``depth``; ``x`` has no level-0 part.

    Horner's scheme: ``r_N = (-1)^(N+1)/N``, ``r_k = (-1)^(k+1)/k + x r_(k+1)``,
    ``log(1+x) = x r_1``.  ``r_k`` is only needed up to level ``N-k`` because
    ``k`` more factors of ``x`` follow.  Level ``m`` of ``x r`` reads levels
    ``< m`` of ``r``, so ``r`` is updated in place from the top level down.
    """
    cdef Py_ssize_t k, m, i, a, b, na, nb
    cdef floating c0, xa
    cdef floating* dst
    cdef const floating* src
    cdef const floating* xi
    # r0 is the level-0 part of r_(k+1); r itself stores levels >= 1.
    cdef floating r0 = (1.0 if depth % 2 == 1 else -1.0) / depth
    for k in range(depth - 1, -1, -1):
        # r_k (k >= 1) needs levels 1 .. depth-k; the final x r_1 (k == 0)
        # needs all levels 1 .. depth.
        for m in range(depth - k, 0, -1):
            dst = r + offsets[m]
            # i == m: x_m times the scalar part
            xi = x + offsets[m]
            nb = sizes[m]
            for b in range(nb):
                dst[b] = r0 * xi[b]
            for i in range(1, m):
                xi = x + offsets[i]
                src = r + offsets[m - i]
                na = sizes[i]
                nb = sizes[m - i]
                for a in range(na):
                    xa = xi[a]
                    for b in range(nb):
                        dst[a * nb + b] += xa * src[b]
        if k > 0:
            r0 = (1.0 if k % 2 == 1 else -1.0) / k


cdef inline void _forward_substitute(const floating* t, floating* out, Py_ssize_t n,
                                     const Py_ssize_t* words, const Py_ssize_t* indptr,
                                     const Py_ssize_t* indices, const double* data) noexcept nogil:
    """Solve ``A c = t[words]`` with ``A`` unit lower-triangular (strict part in CSR)."""
    cdef Py_ssize_t u, j
    cdef floating acc
    for u in range(n):
        acc = t[words[u]]
        for j in range(indptr[u], indptr[u + 1]):
            acc -= <floating> data[j] * out[indices[j]]
        out[u] = acc


@cython.boundscheck(False)
@cython.wraparound(False)
def tensor_log(const floating[:, ::1] sig, floating[:, ::1] out,
               Py_ssize_t dim, Py_ssize_t depth, int n_threads=1):
    """Write ``log(sig[i])`` (tensor logarithm, truncated at ``depth``) to ``out[i]``."""
    cdef Py_ssize_t n = sig.shape[0], length = sig.shape[1], i
    cdef Py_ssize_t offsets[64]
    cdef Py_ssize_t sizes[64]
    if depth < 1 or depth > 62:
        raise ValueError(f"depth must be in 1..62, got {depth}")
    if out.shape[0] != n or out.shape[1] != length:
        raise ValueError("out must have the shape of sig")
    _level_offsets(dim, depth, offsets, sizes)
    if offsets[depth] + sizes[depth] != length:
        raise ValueError("sig rows do not have siglength(dim, depth) entries")
    if n == 0:
        return
    with nogil:
        for i in prange(n, num_threads=max(1, n_threads), schedule="static"):
            _tensor_log_row(&sig[i, 0], &out[i, 0], depth, offsets, sizes)


@cython.boundscheck(False)
@cython.wraparound(False)
def lyndon_logsig(const floating[:, ::1] sig, floating[:, ::1] out,
                  Py_ssize_t dim, Py_ssize_t depth,
                  const Py_ssize_t[::1] words, const Py_ssize_t[::1] indptr,
                  const Py_ssize_t[::1] indices, const double[::1] data,
                  int n_threads=1):
    """Write the Lyndon-basis log-signature of ``sig[i]`` to ``out[i]``.

    ``words[u]`` is the position of Lyndon word ``u`` in the signature layout;
    ``indptr, indices, data`` hold the strict lower triangle of
    ``A[u, w] = <P_w, u>`` in CSR form.
    """
    cdef Py_ssize_t n = sig.shape[0], length = sig.shape[1], n_words = words.shape[0]
    cdef Py_ssize_t i
    cdef Py_ssize_t offsets[64]
    cdef Py_ssize_t sizes[64]
    cdef Py_ssize_t n_threads_used = max(1, min(n_threads, n))
    cdef const Py_ssize_t* words_p = &words[0] if n_words > 0 else NULL
    cdef const Py_ssize_t* indptr_p = &indptr[0]
    cdef const Py_ssize_t* indices_p = &indices[0] if indices.shape[0] > 0 else NULL
    cdef const double* data_p = &data[0] if data.shape[0] > 0 else NULL
    cdef floating[:, ::1] scratch
    if depth < 1 or depth > 62:
        raise ValueError(f"depth must be in 1..62, got {depth}")
    if out.shape[0] != n or out.shape[1] != n_words:
        raise ValueError("out must have shape (len(sig), len(words))")
    if indptr.shape[0] != n_words + 1 or indices.shape[0] != data.shape[0]:
        raise ValueError("malformed CSR triangle")
    _level_offsets(dim, depth, offsets, sizes)
    if offsets[depth] + sizes[depth] != length:
        raise ValueError("sig rows do not have siglength(dim, depth) entries")
    if n == 0:
        return
    # one scratch tensor per thread
    scratch = np.empty((n_threads_used, length), dtype=np.float32 if floating is float else np.float64)
    with nogil:
        for i in prange(n, num_threads=n_threads_used, schedule="static"):
            _tensor_log_row(&sig[i, 0], &scratch[threadid(), 0], depth, offsets, sizes)
            _forward_substitute(&scratch[threadid(), 0], &out[i, 0], n_words, words_p, indptr_p,
                                indices_p, data_p)
