# cython: freethreading_compatible = True
"""Typed kernels behind :mod:`hftsig.signatures.gradients`.

The arithmetic lives in ``sigbackprop.h`` (hand-written C, vectorised across
path pieces like ``signature_c.h``); this module allocates every buffer as a
numpy array (so Python's allocator, and ``tracemalloc``, see all of it) and
calls the C code with the GIL released.  Arguments are validated by
:mod:`hftsig.signatures.gradients` before they reach these functions.
"""
import numpy as np

from cython.parallel cimport prange, threadid
from libc.stdint cimport int64_t, uintptr_t
from libc.string cimport memcpy, memset


cdef extern from "sigbackprop.h" nogil:
    ctypedef struct sk_ctx:
        const double *X
        int64_t batch, len
        int d, N
        const int64_t *lvl_off
        int64_t siglen
        const int64_t *path_idx
        const int64_t *start
        const int64_t *end
        int64_t n_items
        double *out
        int failed
    ctypedef struct sb_ctx:
        sk_ctx base
        const double *Send
        const int64_t *inj_ptr
        const int64_t *inj_pt
        const int64_t *inj_row
        const double *grads
        double *dZ
        char *work
        int64_t block_bytes
        int *slot_busy
        int n_slots
    int SK_VL
    int64_t sk_siglength(int d, int N)
    void sk_level_offsets(int d, int N, int64_t *lvl_off)
    void sk_mul_inplace(double *a, const double *b, int d, int N, const int64_t *lvl_off)
    int sk_sig_pieces_v(const double *X, int64_t len, int d, int N, const int64_t *lvl_off,
                        int64_t siglen, const int64_t *path_idx, const int64_t *start,
                        const int64_t *end, int64_t n_items, double *out, int nthreads)
    int sk_sig_pieces_s(const double *X, int64_t len, int d, int N, const int64_t *lvl_off,
                        int64_t siglen, const int64_t *path_idx, const int64_t *start,
                        const int64_t *end, int64_t n_items, double *out, int nthreads)
    int sb_lanes(int64_t n_items)
    int64_t sb_block_bytes(int d, int N, int lanes)
    int sb_slots(int64_t n_items, int nthreads)
    int64_t sb_block_scratch_s(int d, int N, int64_t siglen, const int64_t *lvl_off)
    void sb_run(sb_ctx *cx, int nthreads)
    void sb_points_from_increments(const double *dZ, double *out, int64_t batch,
                                   int64_t len, int d)
    void sb_left_contract(const double *A, const double *H, double *out, int d, int N,
                          const int64_t *lvl_off)
    void sb_right_contract(const double *H, const double *B, double *out, int d, int N,
                           const int64_t *lvl_off)
    void sb_join_back(const double *s, double *g, const double *z, double *zb, int d, int N,
                      const int64_t *lvl_off, double *scratch)
    void sb_log_back(const double *x, const double *gbar, double *xbar, int d, int N,
                     const int64_t *lvl_off, double *scratch)


cdef object _aligned(int64_t nbytes):
    """A 64-byte aligned uint8 buffer of nbytes (a view into a larger array)."""
    raw = np.empty(nbytes + 64, dtype=np.uint8)
    cdef uintptr_t addr = <uintptr_t>raw.ctypes.data
    cdef int64_t shift = (64 - <int64_t>(addr % 64)) % 64
    return raw[shift:shift + nbytes]


cdef object _piece_sigs(const double[:, :, ::1] X, int N, const int64_t[::1] pi,
                        const int64_t[::1] st, const int64_t[::1] en, int nthreads):
    """Signatures (levels 1..N-1) of the pieces -> (n_items, lvl_off[N])."""
    cdef int64_t n_items = pi.shape[0], length = X.shape[1]
    cdef int d = <int>X.shape[2]
    cdef int64_t lvl_off[64]
    sk_level_offsets(d, N, lvl_off)
    cdef int64_t low = lvl_off[N]
    out = np.zeros((n_items, low), dtype=np.float64)
    if N < 2 or n_items == 0:
        return out
    cdef double[:, ::1] o = out
    cdef int rc
    with nogil:
        if n_items <= 2:
            rc = sk_sig_pieces_s(&X[0, 0, 0], length, d, N - 1, lvl_off, low, &pi[0], &st[0],
                                 &en[0], n_items, &o[0, 0], nthreads)
        else:
            rc = sk_sig_pieces_v(&X[0, 0, 0], length, d, N - 1, lvl_off, low, &pi[0], &st[0],
                                 &en[0], n_items, &o[0, 0], nthreads)
    if rc:
        raise MemoryError("hftsig: out of memory in the signature kernel")
    return out


cdef object _run(const double[:, :, ::1] X, int N, const int64_t[::1] pi,
                 const int64_t[::1] st, const int64_t[::1] en, const double[:, ::1] Send,
                 const int64_t[::1] inj_ptr, const int64_t[::1] inj_pt,
                 const int64_t[::1] inj_row, const double[:, ::1] grads, int nthreads):
    """The backward pass over the pieces -> dL/dX, shape of X."""
    cdef int64_t batch = X.shape[0], length = X.shape[1]
    cdef int d = <int>X.shape[2]
    cdef int64_t n_items = pi.shape[0]
    cdef int64_t lvl_off[64]
    sk_level_offsets(d, N, lvl_off)
    out = np.zeros((batch, length, d), dtype=np.float64)
    if batch == 0 or length < 2 or n_items == 0:
        return out
    dZ = np.zeros((batch, length - 1, d), dtype=np.float64)
    cdef double[:, :, ::1] dz = dZ
    cdef double[:, :, ::1] o = out
    cdef int lanes = sb_lanes(n_items)
    cdef int n_slots = sb_slots(n_items, nthreads)
    work = _aligned(n_slots * sb_block_bytes(d, N, lanes))
    busy = np.zeros(n_slots, dtype=np.intc)
    cdef unsigned char[::1] wk = work
    cdef int[::1] bz = busy
    cdef sb_ctx cx
    memset(&cx, 0, sizeof(cx))
    cx.base.X = &X[0, 0, 0]
    cx.base.batch = batch
    cx.base.len = length
    cx.base.d = d
    cx.base.N = N
    cx.base.lvl_off = lvl_off
    cx.base.siglen = sk_siglength(d, N)
    cx.base.path_idx = &pi[0]
    cx.base.start = &st[0]
    cx.base.end = &en[0]
    cx.base.n_items = n_items
    # Send has a zero-width last axis at depth 1: no pointer into it is read
    cx.Send = &Send[0, 0] if Send.shape[1] > 0 else NULL
    cx.inj_ptr = &inj_ptr[0]
    cx.inj_pt = &inj_pt[0] if inj_pt.shape[0] > 0 else NULL
    cx.inj_row = &inj_row[0] if inj_row.shape[0] > 0 else NULL
    cx.grads = &grads[0, 0] if grads.shape[0] > 0 else NULL
    cx.dZ = &dz[0, 0, 0]
    cx.work = <char *>&wk[0]
    cx.slot_busy = &bz[0]
    with nogil:
        sb_run(&cx, nthreads)
        sb_points_from_increments(&dz[0, 0, 0], &o[0, 0, 0], batch, length, d)
    return out


cdef object _piece_grads(const double[:, ::1] Send, const double[:, ::1] Gend, int64_t batch,
                         int64_t m, int d, int N):
    """dL/d(piece signature) for pieces P_0 .. P_{m-1} of each path.

    Item b * m + q is piece q of path b; Gend[b * m + q] is the gradient
    with respect to the prefix P_0 (x) ... (x) P_q (zero if no output ends
    there).  From the right: H <- H + Gend[q], dL/dP_q = H contracted on the
    left by A_{q-1} = P_0 ... P_{q-1}, then H <- H contracted on the right
    by P_q, the gradient with respect to A_{q-1}.
    """
    cdef int64_t siglen = sk_siglength(d, N)
    cdef int64_t lvl_off[64]
    sk_level_offsets(d, N, lvl_off)
    cdef int64_t low = lvl_off[N]
    Gin = np.empty((batch * m, siglen), dtype=np.float64)
    A = np.empty((max(m, 1), max(low, 1)), dtype=np.float64)
    H = np.empty((2, siglen), dtype=np.float64)
    cdef double[:, ::1] gin = Gin, a = A, h = H
    cdef int64_t b, q, base, w
    cdef int cur
    with nogil:
        for b in range(batch):
            base = b * m
            memcpy(&a[0, 0], &Send[base, 0], sizeof(double) * low)
            for q in range(1, m - 1):
                memcpy(&a[q, 0], &a[q - 1, 0], sizeof(double) * low)
                sk_mul_inplace(&a[q, 0], &Send[base + q, 0], d, N - 1, lvl_off)
            memcpy(&h[0, 0], &Gend[base + m - 1, 0], sizeof(double) * siglen)
            cur = 0
            for q in range(m - 1, 0, -1):
                sb_left_contract(&a[q - 1, 0], &h[cur, 0], &gin[base + q, 0], d, N, lvl_off)
                sb_right_contract(&h[cur, 0], &Send[base + q, 0], &h[1 - cur, 0], d, N,
                                  lvl_off)
                cur = 1 - cur
                for w in range(siglen):
                    h[cur, w] += Gend[base + q - 1, w]
            memcpy(&gin[base, 0], &h[cur, 0], sizeof(double) * siglen)
    return Gin


def sig_backprop(const double[:, :, ::1] X, const double[:, ::1] G, int N, int nthreads):
    """dL/dX (batch, length, dim) given G = dL/dsig (batch, siglength).

    A batch too small to fill every lane of every thread is cut into pieces
    (as :func:`hftsig.signatures.signature.sig` does): the gradient with respect to
    each piece's signature follows from Chen's identity, and the pieces are
    then run side by side.
    """
    cdef int64_t batch = X.shape[0], length = X.shape[1]
    cdef int d = <int>X.shape[2]
    cdef int64_t steps = length - 1
    cdef int64_t siglen = sk_siglength(d, N)
    if batch == 0 or steps <= 0:
        return np.zeros((batch, length, d), dtype=np.float64)
    cdef int64_t target = <int64_t>SK_VL * nthreads
    cdef int64_t chunks = 1, min_steps, maxc
    if batch < target and N >= 2:
        min_steps = 8 * N if 8 * N > 32 else 32
        chunks = (target + batch - 1) // batch
        maxc = steps // min_steps
        if maxc < 1:
            maxc = 1
        if chunks > maxc:
            chunks = maxc
    cdef int64_t n_items = batch * chunks
    idx = np.arange(n_items, dtype=np.int64)
    pi = idx // chunks
    c = idx % chunks
    st = steps * c // chunks
    en = steps * (c + 1) // chunks
    Send = _piece_sigs(X, N, pi, st, en, nthreads)
    inj_ptr = np.arange(n_items + 1, dtype=np.int64)
    if chunks == 1:
        return _run(X, N, pi, st, en, Send, inj_ptr, en, idx, G, nthreads)
    # the output is the prefix ending with each path's last piece
    Gend = np.zeros((n_items, siglen), dtype=np.float64)
    Gend[chunks - 1::chunks] = G
    Gin = _piece_grads(Send, Gend, batch, chunks, d, N)
    return _run(X, N, pi, st, en, Send, inj_ptr, en, idx, Gin, nthreads)


def sig_backprop_at(const double[:, :, ::1] X, const double[:, ::1] grads, int N,
                    const int64_t[::1] at, int nthreads):
    """dL/dX given grads[b * n_at + j] = dL/d(prefix signature ending at point at[j]).

    A batch large enough to fill the lanes runs each path from its last
    requested point down, the prefix gradients entering as the pass reaches
    their points.  A smaller one (a single long path with its exercise
    dates, say) is cut at the requested points, as :func:`hftsig.sig` does
    for ``at``: the pieces between consecutive points run side by side, each
    entered with its gradient from Chen's identity.
    """
    cdef int64_t batch = X.shape[0], length = X.shape[1]
    cdef int d = <int>X.shape[2]
    cdef int64_t n_at = at.shape[0]
    cdef int64_t siglen = sk_siglength(d, N)
    at_arr = np.asarray(at)
    ends = np.unique(at_arr[at_arr > 0])
    if batch == 0 or length < 2 or ends.shape[0] == 0:
        return np.zeros((batch, length, d), dtype=np.float64)
    cdef int64_t m = ends.shape[0]
    if batch >= <int64_t>SK_VL * nthreads or N < 2 or m == 1:
        order = np.argsort(-at_arr, kind="stable")
        pi = np.arange(batch, dtype=np.int64)
        st = np.zeros(batch, dtype=np.int64)
        en = np.full(batch, ends[m - 1], dtype=np.int64)
        Send = _piece_sigs(X, N, pi, st, en, nthreads)
        inj_ptr = np.arange(batch + 1, dtype=np.int64) * n_at
        inj_pt = np.ascontiguousarray(np.tile(at_arr[order], batch))
        inj_row = np.ascontiguousarray((pi[:, None] * n_at + order[None, :]).ravel())
        return _run(X, N, pi, st, en, Send, inj_ptr, inj_pt, inj_row, grads, nthreads)
    cdef int64_t n_items = batch * m
    idx = np.arange(n_items, dtype=np.int64)
    pi = idx // m
    q = idx % m
    en = np.ascontiguousarray(ends[q], dtype=np.int64)
    st = np.ascontiguousarray(np.where(q > 0, ends[np.maximum(q - 1, 0)], 0), dtype=np.int64)
    Send = _piece_sigs(X, N, pi, st, en, nthreads)
    # the gradient of every prefix ending with piece q of path b
    Gend = np.zeros((n_items, siglen), dtype=np.float64)
    g3 = np.asarray(grads).reshape(batch, n_at, siglen)
    keep = at_arr > 0
    piece_of = np.searchsorted(ends, at_arr[keep])
    for j, qj in zip(np.flatnonzero(keep), piece_of):
        Gend[qj::m] += g3[:, j]
    Gin = _piece_grads(Send, Gend, batch, m, d, N)
    return _run(X, N, pi, st, en, Send, np.arange(n_items + 1, dtype=np.int64), en, idx, Gin,
                nthreads)


def combine_backprop(const double[:, ::1] G, const double[:, ::1] a, const double[:, ::1] b,
                     int d, int N):
    """Gradients of a[i] (x) b[i] with respect to a[i] and b[i], given G."""
    cdef Py_ssize_t n = G.shape[0], i
    cdef int64_t siglen = G.shape[1]
    cdef int64_t lvl_off[64]
    sk_level_offsets(d, N, lvl_off)
    da = np.empty((n, siglen), dtype=np.float64)
    db = np.empty((n, siglen), dtype=np.float64)
    if n == 0 or siglen == 0:
        return da, db
    cdef double[:, ::1] oa = da, ob = db
    with nogil:
        for i in range(n):
            sb_right_contract(&G[i, 0], &b[i, 0], &oa[i, 0], d, N, lvl_off)
            sb_left_contract(&a[i, 0], &G[i, 0], &ob[i, 0], d, N, lvl_off)
    return da, db


def join_backprop(const double[:, ::1] G, const double[:, ::1] s, const double[:, ::1] z, int N):
    """Gradients of s[i] (x) exp(z[i]) with respect to s[i] and z[i], given G."""
    cdef Py_ssize_t n = G.shape[0], i
    cdef int d = <int>z.shape[1]
    cdef int64_t siglen = G.shape[1]
    cdef int64_t lvl_off[64]
    sk_level_offsets(d, N, lvl_off)
    ds = np.array(G, dtype=np.float64, order="C", copy=True)
    dz = np.empty((n, d), dtype=np.float64)
    if n == 0:
        return ds, dz
    scratch = np.zeros(sb_block_scratch_s(d, N, siglen, lvl_off), dtype=np.float64)
    cdef double[::1] sc = scratch
    cdef double[:, ::1] o = ds, oz = dz
    with nogil:
        for i in range(n):
            sb_join_back(&s[i, 0], &o[i, 0], &z[i, 0], &oz[i, 0], d, N, lvl_off, &sc[0])
    return ds, dz


def log_backprop(const double[:, ::1] G, const double[:, ::1] s, int d, int N, int nthreads):
    """dL/ds[i] given G[i] = dL/dlog(s[i]) (tensor logarithm, level 0 of s being 1)."""
    cdef Py_ssize_t n = G.shape[0], i
    cdef int64_t siglen = G.shape[1]
    cdef int64_t lvl_off[64]
    sk_level_offsets(d, N, lvl_off)
    out = np.empty((n, siglen), dtype=np.float64)
    if n == 0 or siglen == 0:
        return out
    if nthreads > n:
        nthreads = <int>n
    scratch = np.empty((nthreads, (N + 1) * siglen), dtype=np.float64)
    cdef double[:, ::1] sc = scratch
    cdef double[:, ::1] o = out
    for i in prange(n, nogil=True, num_threads=nthreads, schedule="static"):
        sb_log_back(&s[i, 0], &G[i, 0], &o[i, 0], d, N, lvl_off, &sc[threadid(), 0])
    return out
