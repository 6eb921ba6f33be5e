# cython: freethreading_compatible = True
"""Typed kernels behind :mod:`hftsig.signatures.kernels`.

The Goursat PDE solver lives in ``goursat_pde.h`` (hand-written C,
vectorised across pairs of paths); this module hands it C-contiguous float64
paths and lists of pairs, and runs blocks of pairs on OpenMP threads with the
GIL released.  Arguments are validated by :mod:`hftsig.signatures.kernels`
before they reach these functions.
"""
import numpy as np

from cython.parallel cimport prange, threadid
from libc.stdint cimport int64_t

cdef extern from "goursat_pde.h" nogil:
    ctypedef struct gp_block:
        const double *X
        const double *Y
        int64_t Lx
        int64_t Ly
        int d
        int kind
        double inv_sigma
        int ox
        int oy
    int GP_VL
    int GP_LINEAR
    int GP_RBF
    int gp_forward_at(const gp_block *tmpl, const int64_t *xa, const int64_t *yb,
                      int64_t npairs, int64_t b, double *out)
    int64_t gp_backward_workspace(const gp_block *tmpl)
    void gp_backward_at(const gp_block *tmpl, const int64_t *xa, const int64_t *yb,
                        const double *w, int64_t npairs, int64_t b, double *gx, double *gy,
                        double *ws)


def lanes():
    """Number of pairs one SIMD block of the solver advances at once."""
    return GP_VL


cdef gp_block _template(const double[:, :, ::1] X, const double[:, :, ::1] Y,
                        int kind, double inv_sigma, int ox, int oy):
    cdef gp_block t
    t.X = &X[0, 0, 0]
    t.Y = &Y[0, 0, 0]
    t.Lx = X.shape[1]
    t.Ly = Y.shape[1]
    t.d = <int>X.shape[2]
    t.kind = GP_RBF if kind == 1 else GP_LINEAR
    t.inv_sigma = inv_sigma
    t.ox = ox
    t.oy = oy
    return t


def kernel_pairs(const double[:, :, ::1] X, const double[:, :, ::1] Y,
                 const int64_t[::1] xa, const int64_t[::1] yb,
                 int kind, double inv_sigma, int ox, int oy, int nthreads):
    """k(X[xa[p]], Y[yb[p]]) for every p -> (npairs,)."""
    cdef int64_t npairs = xa.shape[0]
    out = np.empty(npairs, dtype=np.float64)
    if npairs == 0:
        return out
    cdef double[::1] o = out
    cdef gp_block t = _template(X, Y, kind, inv_sigma, ox, oy)
    cdef int64_t nblocks = (npairs + GP_VL - 1) // GP_VL, b
    cdef int failed = 0
    cdef int nt = max(1, min(nthreads, nblocks))
    with nogil:
        for b in prange(nblocks, num_threads=nt, schedule="dynamic"):
            failed |= gp_forward_at(&t, &xa[0], &yb[0], npairs, b, &o[0])
    if failed:
        raise MemoryError("hftsig: out of memory in the signature kernel solver")
    return out


def backward_pairs(const double[:, :, ::1] X, const double[:, :, ::1] Y,
                   const int64_t[::1] xa, const int64_t[::1] yb, const double[::1] w,
                   int kind, double inv_sigma, int ox, int oy, int nthreads,
                   bint same):
    """Gradients of sum_p w[p] k(X[xa[p]], Y[yb[p]]) w.r.t. X and Y.

    With ``same`` (X and Y are one array), returns one array: the gradient
    with respect to that array through both arguments.
    """
    cdef int64_t npairs = xa.shape[0]
    cdef int64_t nblocks = (npairs + GP_VL - 1) // GP_VL, b
    cdef int nt = max(1, min(nthreads, max(nblocks, 1)))
    # one accumulator per thread: blocks of a Gram matrix share paths
    gx_t = np.zeros((nt,) + (X.shape[0], X.shape[1], X.shape[2]), dtype=np.float64)
    gy_t = gx_t if same else np.zeros((nt,) + (Y.shape[0], Y.shape[1], Y.shape[2]), dtype=np.float64)
    if npairs == 0 or X.shape[0] == 0 or Y.shape[0] == 0:
        return gx_t[0] if same else (gx_t[0], gy_t[0])
    cdef double[:, :, :, ::1] gx = gx_t
    cdef double[:, :, :, ::1] gy = gy_t
    cdef gp_block t = _template(X, Y, kind, inv_sigma, ox, oy)
    # one workspace per thread, reused by its blocks (the grid at the path
    # points: allocating it per block cost more in page faults than the sweep)
    cdef int64_t wvec = gp_backward_workspace(&t)
    cdef int64_t stride = (wvec * GP_VL + 7) // 8 * 8  # keeps every slice 64-byte aligned
    ws_arr = np.empty(nt * stride + 8, dtype=np.float64)
    cdef double[::1] ws = ws_arr
    cdef size_t base = <size_t>&ws[0]
    cdef int64_t lead = <int64_t>(((64 - base % 64) % 64) // 8)  # doubles up to a 64-byte boundary
    cdef double *wsp = &ws[0] + lead
    with nogil:
        for b in prange(nblocks, num_threads=nt, schedule="dynamic"):
            gp_backward_at(&t, &xa[0], &yb[0], &w[0], npairs, b,
                           &gx[threadid(), 0, 0, 0], &gy[threadid(), 0, 0, 0],
                           wsp + threadid() * stride)
    gxs = gx_t.sum(axis=0)
    if same:
        return gxs
    return gxs, gy_t.sum(axis=0)
