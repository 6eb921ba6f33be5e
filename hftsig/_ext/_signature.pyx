# cython: freethreading_compatible = True
"""Typed kernels behind :mod:`hftsig.signature`.

The arithmetic lives in ``sigkernels.h`` (hand-written C, vectorised across
paths); this module hands it C-contiguous float64 buffers with the GIL
released, and holds :class:`SignatureStream`, whose per-tick ``push`` must stay
well under a microsecond and so avoids any array allocation.  Arguments are
validated by :mod:`hftsig.signature` before they reach these functions.
"""
import numpy as np

cimport numpy as cnp
from libc.math cimport isfinite
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

cnp.import_array()


cdef extern from "sigkernels.h" nogil:
    ctypedef struct sk_work:
        int d
        int N
        int64_t siglen
        int64_t lvl_off[64]
    int64_t sk_siglength(int d, int N)
    void sk_level_offsets(int d, int N, int64_t *lvl_off)
    int sk_sig(const double *X, int64_t batch, int64_t length, int d, int N,
               double *out, int nthreads)
    int sk_sig_at(const double *X, int64_t batch, int64_t length, int d, int N,
                  const int64_t *at, const int64_t *slot, int64_t n_at,
                  double *out, int nthreads)
    void sk_mul_inplace(double *a, const double *b, int d, int N,
                        const int64_t *lvl_off)
    void sk_inverse(const double *s, double *out, int d, int N,
                    const int64_t *lvl_off)
    int sk_work_init(sk_work *w, int d, int N)
    void sk_work_free(sk_work *w)
    void sk_join(sk_work *w, double *s, const double *z)
    void sk_prepend(sk_work *w, double *s, const double *y)
    int SK_VL
    int sk_unfused


def _set_unfused(bint flag):
    """Use the plain two-step pass instead of the level-fused one (for tests)."""
    global sk_unfused
    sk_unfused = flag


def lanes():
    """Number of paths one SIMD block of the batched kernel advances at once."""
    return SK_VL


def siglength(int d, int N):
    return sk_siglength(d, N)


def sig_batch(const double[:, :, ::1] X, int N, int nthreads):
    """Signatures of X (batch, length, dim) -> (batch, siglength)."""
    cdef int64_t batch = X.shape[0], length = X.shape[1]
    cdef int d = <int>X.shape[2]
    cdef int64_t siglen = sk_siglength(d, N)
    out = np.empty((batch, siglen), dtype=np.float64)
    cdef double[:, ::1] o = out
    cdef int rc
    cdef const double *xp = &X[0, 0, 0] if batch > 0 and length > 0 else NULL
    cdef double *op = &o[0, 0] if batch > 0 and siglen > 0 else NULL
    if xp == NULL or op == NULL:
        out[...] = 0.0
        return out
    with nogil:
        rc = sk_sig(xp, batch, length, d, N, op, nthreads)
    if rc:
        raise MemoryError("hftsig: out of memory in the signature kernel")
    return out


def sig_at(const double[:, :, ::1] X, int N, const int64_t[::1] at_sorted,
           const int64_t[::1] slot, int nthreads):
    """Prefix signatures at sorted point indices -> (batch, n_at, siglength)."""
    cdef int64_t batch = X.shape[0], length = X.shape[1]
    cdef int d = <int>X.shape[2]
    cdef int64_t n_at = at_sorted.shape[0]
    cdef int64_t siglen = sk_siglength(d, N)
    if batch == 0 or n_at == 0 or length == 0 or siglen == 0:
        return np.zeros((batch, n_at, siglen), dtype=np.float64)
    out = np.empty((batch, n_at, siglen), dtype=np.float64)
    cdef double[:, :, ::1] o = out
    cdef int rc
    with nogil:
        rc = sk_sig_at(&X[0, 0, 0], batch, length, d, N, &at_sorted[0], &slot[0],
                       n_at, &o[0, 0, 0], nthreads)
    if rc:
        raise MemoryError("hftsig: out of memory in the signature kernel")
    return out


def combine(const double[:, ::1] a, const double[:, ::1] b, int d, int N):
    """Chen products a[i] (x) b[i] -> (n, siglength)."""
    cdef Py_ssize_t n = a.shape[0], i
    cdef int64_t siglen = a.shape[1]
    cdef int64_t lvl_off[64]
    sk_level_offsets(d, N, lvl_off)
    out = np.array(a, dtype=np.float64, order="C", copy=True)
    if n == 0 or siglen == 0:
        return out
    cdef double[:, ::1] o = out
    with nogil:
        for i in range(n):
            sk_mul_inplace(&o[i, 0], &b[i, 0], d, N, lvl_off)
    return out


def inverse(const double[:, ::1] s, int d, int N):
    """Tensor-algebra inverses of s[i] -> (n, siglength)."""
    cdef Py_ssize_t n = s.shape[0], i
    cdef int64_t siglen = s.shape[1]
    cdef int64_t lvl_off[64]
    sk_level_offsets(d, N, lvl_off)
    out = np.empty((n, siglen), dtype=np.float64)
    if n == 0 or siglen == 0:
        return out
    cdef double[:, ::1] o = out
    with nogil:
        for i in range(n):
            sk_inverse(&s[i, 0], &o[i, 0], d, N, lvl_off)
    return out


def join(const double[:, ::1] s, const double[:, ::1] z, int N):
    """s[i] (x) exp(z[i]) -> (n, siglength)."""
    cdef Py_ssize_t n = s.shape[0], i
    cdef int d = <int>z.shape[1]
    cdef sk_work w
    out = np.array(s, dtype=np.float64, order="C", copy=True)
    if n == 0:
        return out
    cdef double[:, ::1] o = out
    if sk_work_init(&w, d, N) != 0:
        sk_work_free(&w)
        raise MemoryError("hftsig: out of memory in sigjoin")
    with nogil:
        for i in range(n):
            sk_join(&w, &o[i, 0], &z[i, 0])
    sk_work_free(&w)
    return out


cdef class SignatureStream:
    """Running signature of one path, or of many paths in lockstep, fed a tick at a time.

    Parameters
    ----------
    dim : int
        Dimension of the path's points.
    depth : int
        Truncation level of the signature (>= 1).
    window : int, optional
        If given, the signature of the last ``window`` points only (a path of
        ``window - 1`` increments); otherwise of every point pushed so far.
    n_paths : int, optional
        If given, every :meth:`push` takes one point for each of ``n_paths``
        paths, shape ``(n_paths, dim)``, and :attr:`signature` has shape
        ``(n_paths, siglength)``; otherwise one point of shape ``(dim,)`` and
        a ``(siglength,)`` signature.

    Notes
    -----
    Each push appends the new increment with Horner's scheme,
    ``S <- S (x) exp(dx)``, in place.  With a window, the increment leaving
    the window is removed by Chen's identity with its stored inverse,
    ``S <- exp(-dx_old) (x) S``; so that rounding error cannot accumulate
    over a long stream, a second signature restarted every ``window - 1``
    increments replaces the running one each time it spans exactly the
    window.  A push costs no allocation; reading :attr:`signature` copies.
    """

    cdef readonly int dim
    cdef readonly int depth
    cdef readonly object window
    cdef readonly object n_paths
    cdef Py_ssize_t _np
    cdef Py_ssize_t _win       # window length in increments, -1 if unbounded
    cdef int64_t _siglen
    cdef int64_t _count        # points pushed
    cdef int64_t _ring_n       # increments held in the ring
    cdef int64_t _ring_head    # slot of the oldest increment
    cdef int64_t _fresh_n      # increments in the fresh signature
    cdef double *_S
    cdef double *_F
    cdef double *_last
    cdef double *_z
    cdef double *_ring
    cdef sk_work _w

    def __cinit__(self):
        self._S = NULL
        self._F = NULL
        self._last = NULL
        self._z = NULL
        self._ring = NULL
        self._w.d = 0

    def __init__(self, dim, depth, *, window=None, n_paths=None):
        dim = _check_int(dim, "dim", 1)
        depth = _check_int(depth, "depth", 1)
        if window is not None:
            window = _check_int(window, "window", 1)
        if n_paths is not None:
            n_paths = _check_int(n_paths, "n_paths", 1)
        if depth > 60 or sk_siglength(dim, depth) > (1 << 28):
            raise ValueError(
                f"depth: signature of dim={dim}, depth={depth} is too large")
        self._free()
        self.dim = dim
        self.depth = depth
        self.window = window
        self.n_paths = n_paths
        self._np = 1 if n_paths is None else n_paths
        self._win = -1 if window is None else window - 1
        self._siglen = sk_siglength(dim, depth)
        cdef Py_ssize_t npath = self._np
        self._S = <double *>malloc(sizeof(double) * npath * self._siglen)
        self._last = <double *>malloc(sizeof(double) * npath * dim)
        self._z = <double *>malloc(sizeof(double) * npath * dim)
        if self._win > 0:
            self._F = <double *>malloc(sizeof(double) * npath * self._siglen)
            self._ring = <double *>malloc(sizeof(double) * npath * self._win * dim)
        if (self._S == NULL or self._last == NULL or self._z == NULL
                or (self._win > 0 and (self._F == NULL or self._ring == NULL))
                or sk_work_init(&self._w, dim, depth) != 0):
            self._free()
            raise MemoryError("SignatureStream: out of memory")
        self.reset()

    cdef void _free(self):
        free(self._S)
        free(self._F)
        free(self._last)
        free(self._z)
        free(self._ring)
        self._S = NULL
        self._F = NULL
        self._last = NULL
        self._z = NULL
        self._ring = NULL
        if self._w.d != 0:
            sk_work_free(&self._w)
            self._w.d = 0

    def __dealloc__(self):
        self._free()

    def reset(self):
        """Forget every point pushed so far."""
        memset(self._S, 0, sizeof(double) * self._np * self._siglen)
        if self._F != NULL:
            memset(self._F, 0, sizeof(double) * self._np * self._siglen)
        self._count = 0
        self._ring_n = 0
        self._ring_head = 0
        self._fresh_n = 0

    @property
    def siglength(self):
        """Length of the signature (level 0 left out)."""
        return self._siglen

    @property
    def n_points(self):
        """Number of points the current signature spans (at most ``window``)."""
        if self._win >= 0 and self._count > self._win + 1:
            return self._win + 1
        return self._count

    @property
    def signature(self):
        """Copy of the current signature, ``(siglength,)`` or ``(n_paths, siglength)``."""
        out = np.empty((self._np, self._siglen), dtype=np.float64)
        cdef double[:, ::1] o = out
        if self._np * self._siglen > 0:
            memcpy(&o[0, 0], self._S, sizeof(double) * self._np * self._siglen)
        return out[0] if self.n_paths is None else out

    def push(self, point):
        """Append one point (``(dim,)``, or ``(n_paths, dim)`` with ``n_paths``)."""
        cdef const double *p
        cdef cnp.ndarray arr
        cdef Py_ssize_t need = self._np * self.dim
        if (cnp.PyArray_CheckExact(point)
                and cnp.PyArray_TYPE(<cnp.ndarray>point) == cnp.NPY_DOUBLE
                and cnp.PyArray_IS_C_CONTIGUOUS(<cnp.ndarray>point)
                and cnp.PyArray_SIZE(<cnp.ndarray>point) == need
                and cnp.PyArray_NDIM(<cnp.ndarray>point) == (1 if self.n_paths is None else 2)):
            arr = <cnp.ndarray>point
        else:
            arr = self._coerce(point)
        p = <const double *>cnp.PyArray_DATA(arr)
        cdef Py_ssize_t i
        for i in range(need):
            if not isfinite(p[i]):
                raise ValueError("point: contains NaN or inf")
        self._push(p)

    cdef cnp.ndarray _coerce(self, point):
        try:
            arr = np.ascontiguousarray(point, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"point: expected numbers, got {type(point).__name__}") from exc
        want = (self.dim,) if self.n_paths is None else (self.n_paths, self.dim)
        if arr.shape != want:
            raise ValueError(f"point: expected shape {want}, got {arr.shape}")
        return arr

    cdef void _push(self, const double *p) noexcept:
        cdef Py_ssize_t b, c, npath = self._np
        cdef int d = self.dim
        cdef int64_t L = self._siglen
        cdef double *z
        cdef double *old
        if self._count == 0:
            memcpy(self._last, p, sizeof(double) * npath * d)
            self._count = 1
            return
        self._count += 1
        if self._win == 0:
            memcpy(self._last, p, sizeof(double) * npath * d)
            return
        for b in range(npath * d):
            self._z[b] = p[b] - self._last[b]
        memcpy(self._last, p, sizeof(double) * npath * d)
        for b in range(npath):
            sk_join(&self._w, self._S + b * L, self._z + b * d)
        if self._win < 0:
            return
        cdef int64_t slot
        if self._ring_n == self._win:
            # the oldest increment leaves the window: S <- exp(-dz_old) (x) S
            slot = self._ring_head
            for b in range(npath):
                old = self._ring + (b * self._win + slot) * d
                for c in range(d):
                    old[c] = -old[c]
                sk_prepend(&self._w, self._S + b * L, old)
            self._ring_head = (self._ring_head + 1) % self._win
        else:
            slot = (self._ring_head + self._ring_n) % self._win
            self._ring_n += 1
        for b in range(npath):
            memcpy(self._ring + (b * self._win + slot) * d, self._z + b * d,
                   sizeof(double) * d)
            sk_join(&self._w, self._F + b * L, self._z + b * d)
        self._fresh_n += 1
        if self._fresh_n == self._win:
            # the fresh signature spans exactly the window: take it, restart it
            memcpy(self._S, self._F, sizeof(double) * npath * L)
            memset(self._F, 0, sizeof(double) * npath * L)
            self._fresh_n = 0

    def __repr__(self):
        return (f"SignatureStream(dim={self.dim}, depth={self.depth}, "
                f"window={self.window!r}, n_paths={self.n_paths!r})")


def _check_int(value, name, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected an int, got {type(value).__name__}")
    value = int(value)
    if value < minimum:
        raise ValueError(f"{name}: must be >= {minimum}, got {value}")
    return value
