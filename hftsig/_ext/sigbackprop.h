/* Gradients of truncated signatures (hand-written C, called from
 * _sigbackprop.pyx).  Layout as in signature_c.h: level 0 left out, levels
 * 1..N concatenated, words lexicographic; level k at lvl_off[k].
 *
 * sb_block_fn_{v,s} run the backward pass over blocks of path pieces (see
 * sigbackprop_impl.h); the per-step arithmetic is instantiated for the
 * SIMD lane type of signature_c.h (SK_VL pieces per register) and for plain
 * double.  Memory is one signature and one gradient per piece, whatever the
 * length: the signature before each step is recomputed from the one after.
 * Scratch is handed in by the caller (so that Python's allocator, and its
 * tracing, see it).
 */
#ifndef HFTSIG_SIGBACKPROP_H
#define HFTSIG_SIGBACKPROP_H

#include "signature_c.h"

/* A backward pass over n_items pieces.  base holds the path X (batch, len,
 * d), N, lvl_off, siglen and the pieces (path_idx, start, end: steps
 * start..end-1 of path path_idx).  Send (n_items, lvl_off[N]) holds each
 * piece's own signature (levels 1..N-1) at its end point.  Gradients enter
 * at points: for item i, entries inj_ptr[i]..inj_ptr[i+1]-1 give a point
 * (inj_pt, descending) and a row of grads (inj_row; siglen wide) that is
 * dL/d(signature of the prefix ending there).  dZ (batch, len-1, d)
 * receives dL/d(increment) of every step the pieces cover.
 *
 * Scratch: n_slots regions of block_bytes at work, one per thread that can
 * run a block at once; a block claims a free region for its duration. */
typedef struct {
    sk_ctx base;
    const double *Send;
    const int64_t *inj_ptr, *inj_pt, *inj_row;
    const double *grads;
    double *dZ;
    char *work;
    int64_t block_bytes;
    int *slot_busy;
    int n_slots;
} sb_ctx;

/* At most n_slots blocks run at once (one per participating thread), so a
 * free region always exists and the loop ends on its first pass. */
static int sb_slot_acquire(sb_ctx *cx)
{
    for (;;)
        for (int i = 0; i < cx->n_slots; ++i) {
            int expected = 0;
            if (__atomic_compare_exchange_n(&cx->slot_busy[i], &expected, 1, 0,
                                            __ATOMIC_ACQ_REL, __ATOMIC_RELAXED))
                return i;
        }
}

static void sb_slot_release(sb_ctx *cx, int i)
{
    __atomic_store_n(&cx->slot_busy[i], 0, __ATOMIC_RELEASE);
}

/* the vector and the scalar instance of the kernels */
#define SK_IMPL "sigbackprop_impl.h"
#include "sk_instances.h"

/* Pieces per block (lanes) used for n_items pieces: the scalar instance for
 * one or two, as sk_sig does. */
static int sb_lanes(int64_t n_items) { return n_items <= 2 ? 1 : SK_VL; }

/* Bytes of scratch one block needs, a multiple of 64. */
static int64_t sb_block_bytes(int d, int N, int lanes)
{
    int64_t siglen = sk_siglength(d, N);
    int64_t lvl_off[64];
    sk_level_offsets(d, N, lvl_off);
    int64_t n = lanes == 1 ? sb_block_scratch_s(d, N, siglen, lvl_off)
                           : sb_block_scratch_v(d, N, siglen, lvl_off) * SK_VL;
    int64_t bytes = n * (int64_t)sizeof(double);
    return (bytes + 63) / 64 * 64;
}

/* Threads the pass will use, hence scratch regions it needs. */
static int sb_slots(int64_t n_items, int nthreads)
{
    int lanes = sb_lanes(n_items);
    int64_t nblocks = (n_items + lanes - 1) / lanes;
    int t = sk_threads(nthreads);
    return nblocks < t ? (int)(nblocks > 0 ? nblocks : 1) : t;
}

/* Run the backward pass; work must hold sb_slots * sb_block_bytes bytes, be
 * 64-byte aligned, and slot_busy hold sb_slots zeros. */
static void sb_run(sb_ctx *cx, int nthreads)
{
    int lanes = sb_lanes(cx->base.n_items);
    cx->block_bytes = sb_block_bytes(cx->base.d, cx->base.N, lanes);
    cx->n_slots = sb_slots(cx->base.n_items, nthreads);
    int64_t nblocks = (cx->base.n_items + lanes - 1) / lanes;
    sk_parallel(lanes == 1 ? sb_block_fn_s : sb_block_fn_v, &cx->base, nblocks,
                cx->n_slots);
}

/* dL/dX from dL/d(increments): X[t] enters increment t-1 with + and
 * increment t with -.  dZ (batch, len-1, d) -> out (batch, len, d). */
static void sb_points_from_increments(const double *dZ, double *out, int64_t batch,
                                      int64_t len, int d)
{
    for (int64_t b = 0; b < batch; ++b) {
        const double *z = dZ + b * (len - 1) * d;
        double *o = out + b * len * d;
        for (int64_t t = 0; t < len; ++t)
            for (int c = 0; c < d; ++c) {
                double v = 0.0;
                if (t > 0) v += z[(t - 1) * d + c];
                if (t < len - 1) v -= z[t * d + c];
                o[t * d + c] = v;
            }
    }
}

/* out[v] = H[v] + sum_{|u| >= 1} A[u] H[u v]: the gradient with respect to
 * B of A (x) B, given H = dL/d(A (x) B).  A needs levels 1..N-1 only. */
static void sb_left_contract(const double *restrict A, const double *restrict H,
                             double *restrict out, int d, int N, const int64_t *lvl_off)
{
    const int64_t n = sk_siglength(d, N);
    if (n <= 0) return;  /* never: sizes are checked before any kernel runs */
    memcpy(out, H, sizeof(double) * (size_t)n);
    int64_t nv = 1;
    for (int m = 1; m < N; ++m) {
        nv *= d;
        double *om = out + lvl_off[m];
        int64_t nu = 1;
        for (int a = 1; a + m <= N; ++a) {
            nu *= d;
            const double *Au = A + lvl_off[a];
            const double *Hk = H + lvl_off[a + m];
            for (int64_t u = 0; u < nu; ++u) {
                const double x = Au[u];
                const double *row = Hk + u * nv;
                for (int64_t v = 0; v < nv; ++v) om[v] += x * row[v];
            }
        }
    }
}

/* out[u] = H[u] + sum_{|v| >= 1} H[u v] B[v]: the gradient with respect to
 * A of A (x) B, given H = dL/d(A (x) B).  B needs levels 1..N-1 only. */
static void sb_right_contract(const double *restrict H, const double *restrict B,
                              double *restrict out, int d, int N, const int64_t *lvl_off)
{
    const int64_t n = sk_siglength(d, N);
    if (n <= 0) return;  /* never: sizes are checked before any kernel runs */
    memcpy(out, H, sizeof(double) * (size_t)n);
    int64_t nu = 1;
    for (int m = 1; m < N; ++m) {
        nu *= d;
        double *om = out + lvl_off[m];
        int64_t nb = 1;
        for (int b = 1; b + m <= N; ++b) {
            nb *= d;
            const double *Bv = B + lvl_off[b];
            const double *Hk = H + lvl_off[m + b];
            for (int64_t u = 0; u < nu; ++u) {
                const double *row = Hk + u * nb;
                double acc = 0.0;
                for (int64_t v = 0; v < nb; ++v) acc += row[v] * Bv[v];
                om[u] += acc;
            }
        }
    }
}

/* Backward through s' = s (x) exp(z) for one signature: g = dL/ds' on
 * entry, dL/ds on exit; zb = dL/dz.  scratch: sb_block_scratch_s doubles. */
static void sb_join_back(const double *restrict s, double *restrict g,
                         const double *restrict z, double *restrict zb, int d, int N,
                         const int64_t *lvl_off, double *restrict scratch)
{
    int64_t siglen = sk_siglength(d, N);
    sb_block_s b;
    sb_block_carve_s(&b, scratch, d, N, siglen, lvl_off);
    for (int c = 0; c < d; ++c)
        for (int j = 1; j <= N; ++j) b.zs[(int64_t)j * d + c] = z[c] * (1.0 / j);
    sb_step_back_s(s, g, b.zs, zb, b.Bf, b.Bb, d, N, lvl_off);
}

/* dL/dx given gbar = dL/dlog(1 + x), for one tensor x (levels 1..N, level
 * 0 of 1 + x being 1).  log(1 + x) = sum_n c_n x^n, c_n = (-1)^(n+1) / n;
 * the powers P_n = P_(n-1) (x) x (zero below level n) are formed forwards
 * and differentiated backwards:
 *     dL/dP_(n-1)[u] += sum_v dL/dP_n[u v] x[v],
 *     dL/dx[v]       += sum_u P_(n-1)[u] dL/dP_n[u v].
 * scratch: (N + 1) * siglen doubles (P_2..P_(N-1) and two gradients). */
static void sb_log_back(const double *restrict x, const double *restrict gbar,
                        double *restrict xbar, int d, int N, const int64_t *lvl_off,
                        double *restrict scratch)
{
    const int64_t siglen = sk_siglength(d, N);
    int64_t pw[SK_MAX_DEPTH + 2]; /* d^k */
    pw[0] = 1;
    for (int k = 1; k <= N; ++k) pw[k] = pw[k - 1] * d;
    /* P_n at scratch + (n - 2) * siglen for n = 2..N-1; P_1 = x */
    double *pb = scratch + (int64_t)(N > 2 ? N - 2 : 0) * siglen;
    double *nb = pb + siglen;
#define SB_POW(n) ((n) == 1 ? x : scratch + (int64_t)((n) - 2) * siglen)
    for (int n = 2; n < N; ++n) {
        double *P = (double *)SB_POW(n);
        const double *Q = SB_POW(n - 1);
        memset(P, 0, sizeof(double) * siglen);
        for (int m = n; m <= N; ++m)
            for (int a = n - 1; a < m; ++a) {
                const int b = m - a;
                const double *Qa = Q + lvl_off[a], *xb = x + lvl_off[b];
                double *Pm = P + lvl_off[m];
                for (int64_t u = 0; u < pw[a]; ++u) {
                    const double q = Qa[u];
                    double *row = Pm + u * pw[b];
                    for (int64_t v = 0; v < pw[b]; ++v) row[v] += q * xb[v];
                }
            }
    }
    memset(xbar, 0, sizeof(double) * siglen);
    memset(pb, 0, sizeof(double) * siglen);
    const double cN = (N % 2 ? 1.0 : -1.0) / N;
    for (int64_t w = lvl_off[N]; w < siglen; ++w) pb[w] = cN * gbar[w];
    for (int n = N; n >= 2; --n) {
        const double c = ((n - 1) % 2 ? 1.0 : -1.0) / (n - 1);
        const double *Q = SB_POW(n - 1);
        memset(nb, 0, sizeof(double) * siglen);
        for (int64_t w = lvl_off[n - 1]; w < siglen; ++w) nb[w] = c * gbar[w];
        for (int m = n; m <= N; ++m)
            for (int a = n - 1; a < m; ++a) {
                const int b = m - a;
                const double *Qa = Q + lvl_off[a], *xb = x + lvl_off[b];
                const double *pm = pb + lvl_off[m];
                double *na = nb + lvl_off[a], *xbb = xbar + lvl_off[b];
                for (int64_t u = 0; u < pw[a]; ++u) {
                    const double q = Qa[u];
                    const double *row = pm + u * pw[b];
                    double acc = 0.0;
                    for (int64_t v = 0; v < pw[b]; ++v) {
                        acc += row[v] * xb[v];
                        xbb[v] += q * row[v];
                    }
                    na[u] += acc;
                }
            }
        double *t = pb;
        pb = nb;
        nb = t;
    }
#undef SB_POW
    for (int64_t w = 0; w < siglen; ++w) xbar[w] += pb[w];
}

#endif
