# cython: freethreading_compatible = True
"""Typed kernels behind :mod:`hftsig.signatures.signature`.

The arithmetic lives in ``signature_c.h`` (hand-written C, vectorised across
paths); this module hands it C-contiguous float64 buffers with the GIL
released, and holds :class:`SignatureStream`, whose per-tick ``push`` must stay
well under a microsecond and so avoids any array allocation.  Arguments are
validated by :mod:`hftsig.signatures.signature` before they reach these functions; the
kernels still refuse sizes that do not fit (``ValueError``) rather than
allocate a wrapped-around buffer.

It also holds what every signature entry point shares and that
:class:`SignatureStream` needs at this level: the memory limit
(:func:`max_output_bytes`, :func:`check_bytes`) that
:func:`hftsig.signatures.signature.set_config` sets.  Integer arguments are
checked by :func:`hftsig._validation.check_int`, as everywhere in hftsig.
"""
import os

import numpy as np

from hftsig._validation import check_int, show_int

cimport numpy as cnp
from libc.math cimport isfinite
from libc.stdint cimport int64_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy, memset

cnp.import_array()


cdef extern from "signature_c.h" nogil:
    ctypedef struct sk_work:
        int d
        int N
        int64_t siglen
        int64_t lvl_off[64]
    int SK_MAX_DEPTH
    int SK_ERR_NOMEM
    int SK_ERR_SIZE
    int64_t sk_siglength(int d, int N)
    void sk_level_offsets(int d, int N, int64_t *lvl_off)
    int64_t sk_sig_scratch_bytes(int64_t batch, int64_t length, int d, int N, int nthreads)
    int64_t sk_sig_at_scratch_bytes(int64_t batch, int64_t length, int d, int N,
                                    const int64_t *at, int64_t n_at, int nthreads)
    int64_t sk_work_bytes(int d, int N)
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


# --- argument checks and the memory limit --------------------------------------------------

#: Deepest signature the kernels compute (level offsets live in fixed arrays).
MAX_DEPTH = SK_MAX_DEPTH
#: Most channels a path may have: the kernels index letters with a C int.
MAX_DIM = (1 << 31) - 1
#: Most threads ``n_jobs`` may ask for; more would be a typo, not a machine.
MAX_JOBS = 1024
_INT64_MAX = (1 << 63) - 1

#: Default of :func:`max_output_bytes` (2 GiB).
DEFAULT_MAX_OUTPUT_BYTES = 2 << 30
ENV_MAX_OUTPUT_BYTES = "HFTSIG_MAX_OUTPUT_BYTES"
_max_output_bytes = None  # set by hftsig.signatures.signature.set_config; None: environment/default


def format_bytes(n):
    """``n`` bytes in binary units for a message (``"8.3 GiB"``)."""
    if n >= 1 << 80:  # beyond any machine, and n / size could overflow a float
        return f"more than 2**{n.bit_length() - 1} bytes"
    for unit, size in (("EiB", 1 << 60), ("PiB", 1 << 50), ("TiB", 1 << 40), ("GiB", 1 << 30),
                       ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            return f"{n / size:.1f} {unit}" if n < size << 20 else f"{n / size:.3g} {unit}"
    return f"{n} bytes"


def max_output_bytes():
    """The memory one signature call may allocate, in bytes.

    The value given to :func:`hftsig.signatures.signature.set_config`, else the
    environment variable ``HFTSIG_MAX_OUTPUT_BYTES`` (a positive integer),
    else :data:`DEFAULT_MAX_OUTPUT_BYTES`.
    """
    if _max_output_bytes is not None:
        return _max_output_bytes
    raw = os.environ.get(ENV_MAX_OUTPUT_BYTES, "").strip()
    if not raw:
        return DEFAULT_MAX_OUTPUT_BYTES
    try:
        value = int(raw.replace("_", ""), 10)
    except ValueError:
        value = 0
    if not 1 <= value <= _INT64_MAX:
        raise ValueError(f"{ENV_MAX_OUTPUT_BYTES}: expected a positive whole number of bytes "
                         f"(at most 2**63 - 1), got {raw[:40]!r}")
    return value


def set_max_output_bytes(value):
    """Set (an int) or clear (``None``) the limit of :func:`max_output_bytes`."""
    global _max_output_bytes
    if value is not None:
        value = check_int(value, "max_output_bytes", minimum=1)
    _max_output_bytes = value


def configured_max_output_bytes():
    """The value set by :func:`set_max_output_bytes` (``None``: not set)."""
    return _max_output_bytes


def check_bytes(nbytes, argument, what, hint=""):
    """Raise ``ValueError`` naming ``argument`` if ``nbytes`` exceeds the limit.

    ``what`` says what would take the memory; ``hint`` how to ask for less.
    Either may be a function returning the text, so that a call within the
    limit (every call on a hot path) formats nothing.
    """
    limit = max_output_bytes()
    if nbytes > limit:
        if callable(what):
            what = what()
        if callable(hint):
            hint = hint()
        raise ValueError(
            f"{argument}: {what} would take {format_bytes(nbytes)}, more than the limit of "
            f"{format_bytes(limit)} (max_output_bytes){'; ' + hint if hint else ''}; the limit "
            f"is set by hftsig.signatures.signature.set_config(max_output_bytes=...) or the environment "
            f"variable {ENV_MAX_OUTPUT_BYTES}")


def signature_length(dim, depth):
    """``dim + dim**2 + ... + dim**depth`` in closed form (exact, any size)."""
    if dim == 1:
        return depth
    return (dim ** (depth + 1) - dim) // (dim - 1)


cdef _raise_for(int rc, str where):
    if rc == SK_ERR_SIZE:
        raise ValueError(f"{where}: a buffer size overflows 64 bits")
    if rc != 0:
        raise MemoryError(f"hftsig: out of memory in {where}")


# --- kernels ----------------------------------------------------------------------------------

def _set_unfused(bint flag):
    """Use the plain two-step pass instead of the level-fused one (for tests)."""
    global sk_unfused
    sk_unfused = flag


def lanes():
    """Number of paths one SIMD block of the batched kernel advances at once."""
    return SK_VL


def siglength(int d, int N):
    cdef int64_t n = sk_siglength(d, N)
    if n < 0:
        raise ValueError(f"siglength: dim={d}, depth={N} out of range or too long")
    return n


cdef int64_t _siglen_for(int64_t width, int d, int N, str name) except -1:
    # the private kernels below are entry points too: a row that is not
    # siglength(d, N) long would be read or written past its end
    cdef int64_t n = sk_siglength(d, N)
    if n < 0 or width != n:
        raise ValueError(f"{name}: rows of {width} entries, not siglength(dim={d}, depth={N})")
    return n


def sig_scratch_bytes(int64_t batch, int64_t length, int d, int N, int nthreads):
    """Bytes :func:`sig_batch` allocates besides its output."""
    cdef int64_t n = sk_sig_scratch_bytes(batch, length, d, N, nthreads)
    if n < 0:
        raise ValueError("path: the signature's working buffers overflow 64 bits")
    return n


def sig_at_scratch_bytes(int64_t batch, int64_t length, int d, int N,
                         const int64_t[::1] at_sorted, int nthreads):
    """Bytes :func:`sig_at` allocates besides its output."""
    cdef int64_t n_at = at_sorted.shape[0]
    cdef int64_t n = sk_sig_at_scratch_bytes(batch, length, d, N,
                                             &at_sorted[0] if n_at > 0 else NULL, n_at,
                                             nthreads)
    if n < 0:
        raise ValueError("at: the signature's working buffers overflow 64 bits")
    return n


def work_bytes(int d, int N):
    """Bytes of the per-tick scratch of :class:`SignatureStream` and :func:`join`."""
    cdef int64_t n = sk_work_bytes(d, N)
    if n < 0:
        raise ValueError(f"depth: dim={d}, depth={N} out of range or too large")
    return n


def sig_batch(const double[:, :, ::1] X, int N, int nthreads):
    """Signatures of X (batch, length, dim) -> (batch, siglength)."""
    cdef int64_t batch = X.shape[0], length = X.shape[1]
    if X.shape[2] > MAX_DIM:
        raise ValueError(f"path: dim must be <= {MAX_DIM}, got {X.shape[2]}")
    cdef int d = <int>X.shape[2]
    cdef int64_t siglen = sk_siglength(d, N)
    if siglen < 0:
        raise ValueError(f"depth: dim={d}, depth={N} out of range or too long")
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
    _raise_for(rc, "the signature kernel")
    return out


def sig_at(const double[:, :, ::1] X, int N, const int64_t[::1] at_sorted,
           const int64_t[::1] slot, int nthreads):
    """Prefix signatures at sorted point indices -> (batch, n_at, siglength)."""
    cdef int64_t batch = X.shape[0], length = X.shape[1]
    if X.shape[2] > MAX_DIM:
        raise ValueError(f"path: dim must be <= {MAX_DIM}, got {X.shape[2]}")
    cdef int d = <int>X.shape[2]
    cdef int64_t n_at = at_sorted.shape[0], j
    cdef int64_t siglen = sk_siglength(d, N)
    if siglen < 0:
        raise ValueError(f"depth: dim={d}, depth={N} out of range or too long")
    if slot.shape[0] != n_at:
        raise ValueError("slot: must have one entry per index of at")
    # the kernel walks the path up to each index and writes row slot[j]
    for j in range(n_at):
        if (at_sorted[j] < 0 or at_sorted[j] >= length
                or (j > 0 and at_sorted[j] < at_sorted[j - 1])
                or slot[j] < 0 or slot[j] >= n_at):
            raise ValueError("at: indices must be sorted and within the path")
    if batch == 0 or n_at == 0 or length == 0 or siglen == 0:
        return np.zeros((batch, n_at, siglen), dtype=np.float64)
    out = np.empty((batch, n_at, siglen), dtype=np.float64)
    cdef double[:, :, ::1] o = out
    cdef int rc
    with nogil:
        rc = sk_sig_at(&X[0, 0, 0], batch, length, d, N, &at_sorted[0], &slot[0],
                       n_at, &o[0, 0, 0], nthreads)
    _raise_for(rc, "the signature kernel")
    return out


def combine(const double[:, ::1] a, const double[:, ::1] b, int d, int N):
    """Chen products a[i] (x) b[i] -> (n, siglength)."""
    cdef Py_ssize_t n = a.shape[0], i
    cdef int64_t siglen = _siglen_for(a.shape[1], d, N, "s1")
    cdef int64_t lvl_off[64]
    if b.shape[0] != n or b.shape[1] != siglen:
        raise ValueError("s2: shape does not match s1's")
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
    cdef int64_t siglen = _siglen_for(s.shape[1], d, N, "s")
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


def join_inplace(double[:, ::1] s, const double[:, ::1] z, int N):
    """s[i] <- s[i] (x) exp(z[i]), in place."""
    cdef Py_ssize_t n = s.shape[0], i
    if z.shape[1] > MAX_DIM:
        raise ValueError(f"segment: dim must be <= {MAX_DIM}, got {z.shape[1]}")
    cdef int d = <int>z.shape[1]
    _siglen_for(s.shape[1], d, N, "s")
    if z.shape[0] != n:
        raise ValueError("segment: one segment per signature")
    if n == 0:
        return
    cdef sk_work w
    _raise_for(sk_work_init(&w, d, N), "sigjoin")
    with nogil:
        for i in range(n):
            sk_join(&w, &s[i, 0], &z[i, 0])
    sk_work_free(&w)


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
        dim = check_int(dim, "dim", minimum=1, maximum=MAX_DIM)
        depth = check_int(depth, "depth", minimum=1, maximum=MAX_DEPTH)
        if window is not None:
            window = check_int(window, "window", minimum=1)
        if n_paths is not None:
            n_paths = check_int(n_paths, "n_paths", minimum=1)
        npath = 1 if n_paths is None else n_paths
        win = -1 if window is None else window - 1
        # every buffer size in Python ints first: a product that wraps in C
        # would allocate a small buffer that the pushes then overrun
        siglen = signature_length(dim, depth)
        sig_bytes = 8 * siglen * (2 if win > 0 else 1)  # S, and F with a window
        ring_bytes = 8 * max(win, 0) * dim
        per_path = sig_bytes + ring_bytes + 8 * 2 * dim  # + last point, increment
        work = sk_work_bytes(dim, depth) if siglen <= _INT64_MAX else -1
        if work < 0:
            work = siglen  # the scratch is smaller than one signature
        if n_paths is not None and per_path + work <= max_output_bytes():
            culprit = "n_paths"
        else:
            culprit = "window" if ring_bytes > sig_bytes else "depth"
        check_bytes(npath * per_path + work, culprit,
                    lambda: f"SignatureStream(dim={dim}, depth={depth}, "
                            f"window={None if window is None else show_int(window)}, "
                            f"n_paths={None if n_paths is None else show_int(n_paths)})")
        self._free()
        self.dim = dim
        self.depth = depth
        self.window = window
        self.n_paths = n_paths
        self._np = npath
        self._win = win
        self._siglen = siglen
        cdef size_t sig_size = sizeof(double) * <size_t>npath * <size_t>siglen
        cdef size_t point_size = sizeof(double) * <size_t>npath * <size_t>dim
        self._S = <double *>malloc(sig_size)
        self._last = <double *>malloc(point_size)
        self._z = <double *>malloc(point_size)
        if self._win > 0:
            self._F = <double *>malloc(sig_size)
            self._ring = <double *>malloc(point_size * <size_t>self._win)
        cdef int rc = 0
        if (self._S == NULL or self._last == NULL or self._z == NULL
                or (self._win > 0 and (self._F == NULL or self._ring == NULL))):
            rc = SK_ERR_NOMEM
        else:
            rc = sk_work_init(&self._w, dim, depth)
        if rc != 0:
            self._free()
            _raise_for(rc, "SignatureStream")
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

