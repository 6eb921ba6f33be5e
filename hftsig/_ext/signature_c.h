/* Truncated path-signature kernels (hand-written C, called from _signature.pyx).
 *
 * Layout everywhere: level 0 left out, levels 1..N concatenated, words in
 * lexicographic order (iisignature's layout); level k starts at
 * lvl_off[k] = d + d^2 + ... + d^(k-1).
 *
 * Batched signatures are vectorised ACROSS paths: signature_impl.h is
 * instantiated for a GCC vector of SK_VL doubles (several paths per SIMD
 * register, batch innermost) and for plain double (one path).  A single
 * long path is cut into pieces that fill the lanes and the piece
 * signatures are joined with Chen's identity.  Threads (pthreads) claim
 * blocks of lanes; see sk_parallel.
 */
#ifndef HFTSIG_SIGKERNELS_H
#define HFTSIG_SIGKERNELS_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <pthread.h>
#include <sched.h>
#endif

/* level offsets live in int64_t[64] arrays */
#define SK_MAX_DEPTH 60

/* Error codes of the entry points (0 = success). */
#define SK_ERR_NOMEM 1 /* an allocation failed */
#define SK_ERR_SIZE 2  /* a buffer size does not fit in int64 bytes */

/* Size arithmetic.  Every buffer size is formed with these before it is
 * allocated: a product that wraps would allocate a small buffer and the
 * kernel would then write past its end.  Nonzero means overflow (or a
 * negative operand, which no size may be). */
static inline int sk_mul(int64_t a, int64_t b, int64_t *out)
{
    return a < 0 || b < 0 || __builtin_mul_overflow(a, b, out);
}

static inline int sk_add(int64_t a, int64_t b, int64_t *out)
{
    return a < 0 || b < 0 || __builtin_add_overflow(a, b, out);
}

/* n doubles in bytes, or -1 if that overflows */
static inline int64_t sk_doubles(int64_t n)
{
    int64_t bytes;
    return sk_mul(n, (int64_t)sizeof(double), &bytes) ? -1 : bytes;
}

/* Paths per block.  4 doubles fill one AVX2 register; 8 (two registers
 * per coordinate) measured 2-7x slower here (register spills in the
 * unrolled letter loops), 2 about 2x slower.  -DSK_VL=n overrides. */
#ifndef SK_VL
#define SK_VL 4
#endif

typedef double sk_vec __attribute__((vector_size(8 * SK_VL), aligned(8 * SK_VL)));

static void *sk_aligned_alloc(size_t nbytes)
{
    size_t a = 64;
    if (nbytes > SIZE_MAX - a) return NULL;
    nbytes = (nbytes + a - 1) / a * a;
    if (nbytes == 0) nbytes = a;
    return aligned_alloc(a, nbytes);
}

static void sk_aligned_free(void *p) { free(p); }

/* d^k, or -1 if it overflows int64 */
static int64_t sk_pow(int d, int k)
{
    int64_t n = 1;
    for (int i = 0; i < k; ++i)
        if (sk_mul(n, d, &n)) return -1;
    return n;
}

/* entries of the Horner chain scratch: max(1, d^(N-2)); callers have
 * checked that the signature's length (a larger number) fits */
static int64_t sk_chain_len(int d, int N)
{
    return N > 2 ? sk_pow(d, N - 2) : 1;
}

/* set by tests/benchmarks through sk_set_unfused: run the plain two-step
 * pass instead of the level-fused one (to compare the two) */
static int sk_unfused = 0;

/* Threads over blocks.
 *
 * Each participant claims blocks from a shared counter.  The caller works
 * too, and when no block is left it waits only for blocks other threads
 * have claimed, never for a thread that has not started: on a busy machine
 * a newly created thread may wait many milliseconds for a core, and a
 * fork/join barrier (an OpenMP parallel loop) would wait with it, making
 * n_jobs > 1 slower than one thread.  A thread that starts late finds no
 * block left and exits; the job record is freed by whoever leaves last. */
typedef struct {
    const double *X;
    int64_t batch, len;
    int d, N;
    const int64_t *lvl_off;
    int64_t siglen;
    const int64_t *path_idx, *start, *end;
    int64_t n_items;
    const int64_t *at, *slot;
    int64_t n_at;
    double *out;
    int failed;
} sk_ctx;

typedef void (*sk_block_fn)(sk_ctx *, int64_t);

typedef struct {
    sk_block_fn fn;
    sk_ctx *cx;
    int64_t nblocks;
    int64_t next;
    int64_t done;
    int refs;
} sk_pjob;

static void sk_pjob_work(sk_pjob *j)
{
    for (;;) {
        int64_t b = __atomic_fetch_add(&j->next, 1, __ATOMIC_ACQ_REL);
        if (b >= j->nblocks) break;
        j->fn(j->cx, b);
        __atomic_fetch_add(&j->done, 1, __ATOMIC_ACQ_REL);
    }
}

static void sk_pjob_release(sk_pjob *j)
{
    if (__atomic_sub_fetch(&j->refs, 1, __ATOMIC_ACQ_REL) == 0) free(j);
}

#ifndef _WIN32
static void *sk_pjob_thread(void *p)
{
    sk_pjob *j = (sk_pjob *)p;
    sk_pjob_work(j);
    sk_pjob_release(j);
    return NULL;
}
#endif

static void sk_parallel(sk_block_fn fn, sk_ctx *cx, int64_t nblocks, int nthreads)
{
    if (nthreads > nblocks) nthreads = (int)nblocks;
#ifndef _WIN32
    sk_pjob *j = nthreads > 1 ? (sk_pjob *)malloc(sizeof(sk_pjob)) : NULL;
#else
    sk_pjob *j = NULL;
#endif
    if (j == NULL) {
        for (int64_t b = 0; b < nblocks; ++b) fn(cx, b);
        return;
    }
    j->fn = fn;
    j->cx = cx;
    j->nblocks = nblocks;
    j->next = 0;
    j->done = 0;
    j->refs = 1;
#ifndef _WIN32
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    for (int i = 1; i < nthreads; ++i) {
        pthread_t t;
        __atomic_add_fetch(&j->refs, 1, __ATOMIC_ACQ_REL);
        if (pthread_create(&t, &attr, sk_pjob_thread, j) != 0)
            __atomic_sub_fetch(&j->refs, 1, __ATOMIC_ACQ_REL);
    }
    pthread_attr_destroy(&attr);
#endif
    sk_pjob_work(j);
    while (__atomic_load_n(&j->done, __ATOMIC_ACQUIRE) < nblocks) {
#ifndef _WIN32
        sched_yield();
#endif
    }
    sk_pjob_release(j);
}

/* Entries of one block's scratch per lane (signature_impl.h's sk_block):
 * the signature, a second copy of its lower levels, two scaled increments
 * and four Horner chains; -1 if that overflows. */
static int64_t sk_block_entries(int d, int N, int64_t siglen)
{
    int64_t top = sk_pow(d, N), chain = sk_chain_len(d, N), n, t;
    if (top < 0 || chain < 0 || siglen < top) return -1;
    if (sk_add(siglen, siglen - top, &n)) return -1;
    if (sk_mul(2 * (int64_t)(N + 1), d, &t) || sk_add(n, t, &n)) return -1;
    if (sk_mul(4, chain, &t) || sk_add(n, t, &n)) return -1;
    return n;
}

/* Bytes of one block's scratch with `lanes` paths per block (rounded up to
 * the 64-byte alignment), or -1 if that overflows. */
static int64_t sk_block_bytes(int lanes, int d, int N, int64_t siglen)
{
    int64_t n = sk_block_entries(d, N, siglen), b;
    if (n < 0 || sk_mul(n, (int64_t)sizeof(double) * lanes, &b) || sk_add(b, 63, &b))
        return -1;
    return b / 64 * 64;
}

/* the vector and the scalar instance of the kernels */
#define SK_IMPL "signature_impl.h"
#include "sk_instances.h"

/* d + d^2 + ... + d^N, or -1 if the arguments are out of range or the
 * length overflows int64 */
static int64_t sk_siglength(int d, int N)
{
    if (d < 1 || N < 1 || N > SK_MAX_DEPTH) return -1;
    int64_t s = 0, p = 1;
    for (int k = 1; k <= N; ++k) {
        if (sk_mul(p, d, &p) || sk_add(s, p, &s)) return -1;
    }
    return s;
}

static void sk_level_offsets(int d, int N, int64_t *lvl_off)
{
    int64_t p = 1;
    lvl_off[0] = 0;
    lvl_off[1] = 0;
    for (int k = 1; k < N; ++k) {
        p *= d;
        lvl_off[k + 1] = lvl_off[k] + p;
    }
}

static int sk_threads(int nthreads)
{
#ifdef _WIN32
    (void)nthreads;
    return 1;
#else
    return nthreads < 1 ? 1 : nthreads;
#endif
}

/* a <- a (x) b in place (Chen product of two signatures of one path each).
 * Levels from N down so that a_j, j < k, are still the old values. */
static void sk_mul_inplace(double *restrict a, const double *restrict b, int d,
                           int N, const int64_t *lvl_off)
{
    for (int k = N; k >= 1; --k) {
        double *ak = a + lvl_off[k];
        const double *bk = b + lvl_off[k];
        int64_t nk = 1; /* d^k */
        for (int i = 0; i < k; ++i) nk *= d;
        for (int64_t w = 0; w < nk; ++w) ak[w] += bk[w];
        int64_t du = 1; /* d^j */
        for (int j = 1; j < k; ++j) {
            du *= d;
            int64_t dv = nk / du; /* d^(k-j) */
            const double *aj = a + lvl_off[j];
            const double *bv = b + lvl_off[k - j];
            for (int64_t u = 0; u < du; ++u) {
                double x = aj[u];
                double *row = ak + u * dv;
                for (int64_t v = 0; v < dv; ++v) row[v] += x * bv[v];
            }
        }
    }
}

/* b <- a (x) b in place (a the signature of the earlier piece).  Levels
 * from N down so that b_j, j < k, are still the old values. */
static void sk_mul_inplace_left(const double *restrict a, double *restrict b, int d,
                                int N, const int64_t *lvl_off)
{
    for (int k = N; k >= 1; --k) {
        double *bk = b + lvl_off[k];
        const double *ak = a + lvl_off[k];
        int64_t nk = 1; /* d^k */
        for (int i = 0; i < k; ++i) nk *= d;
        for (int64_t w = 0; w < nk; ++w) bk[w] += ak[w];
        int64_t du = 1; /* d^j */
        for (int j = 1; j < k; ++j) {
            du *= d;
            int64_t dv = nk / du; /* d^(k-j) */
            const double *aj = a + lvl_off[j];
            const double *bv = b + lvl_off[k - j];
            for (int64_t u = 0; u < du; ++u) {
                double x = aj[u];
                double *row = bk + u * dv;
                for (int64_t v = 0; v < dv; ++v) row[v] += x * bv[v];
            }
        }
    }
}

/* out <- s^(-1) in the truncated tensor algebra (for a signature this is
 * the signature of the reversed path):
 *     inv_k = -s_k - sum_{j=1}^{k-1} s_j (x) inv_{k-j}. */
static void sk_inverse(const double *restrict s, double *restrict out, int d,
                       int N, const int64_t *lvl_off)
{
    int64_t nk = 1;
    for (int k = 1; k <= N; ++k) {
        nk *= d;
        double *ok = out + lvl_off[k];
        const double *sk = s + lvl_off[k];
        for (int64_t w = 0; w < nk; ++w) ok[w] = -sk[w];
        int64_t du = 1;
        for (int j = 1; j < k; ++j) {
            du *= d;
            int64_t dv = nk / du;
            const double *sj = s + lvl_off[j];
            const double *iv = out + lvl_off[k - j];
            for (int64_t u = 0; u < du; ++u) {
                double x = sj[u];
                double *row = ok + u * dv;
                for (int64_t v = 0; v < dv; ++v) row[v] -= x * iv[v];
            }
        }
    }
}

/* Scratch for one path's per-tick updates: zs ((N+1)*d), the Horner chain
 * B, and two buffers of d^(N-1) for sk_prepend. */
typedef struct {
    int d, N;
    int64_t siglen;
    int64_t lvl_off[64];
    double *zs, *B, *buf0, *buf1;
} sk_work;

/* Entries of sk_work's two buffers: zs + B, and buf0 + buf1; nonzero if a
 * size overflows (or the arguments are out of range). */
static int sk_work_sizes(int d, int N, int64_t *n_zs, int64_t *n_buf)
{
    int64_t chain = sk_chain_len(d, N), top = sk_pow(d, N - 1), t;
    if (N < 1 || N > SK_MAX_DEPTH || d < 1 || chain < 0 || top < 0) return 1;
    if (sk_mul((int64_t)N + 1, d, &t) || sk_add(t, chain, n_zs)) return 1;
    return sk_mul(2, top, n_buf);
}

/* Bytes sk_work_init allocates, or -1 if that overflows. */
static int64_t sk_work_bytes(int d, int N)
{
    int64_t n_zs, n_buf, n;
    if (sk_work_sizes(d, N, &n_zs, &n_buf) || sk_add(n_zs, n_buf, &n)) return -1;
    return sk_doubles(n);
}

/* 0, SK_ERR_SIZE or SK_ERR_NOMEM; on failure w->d stays 0 and nothing is
 * left to free. */
static int sk_work_init(sk_work *w, int d, int N)
{
    int64_t n_zs, n_buf;
    w->d = 0;
    w->zs = NULL;
    w->buf0 = NULL;
    if (sk_work_sizes(d, N, &n_zs, &n_buf) || sk_doubles(n_zs) < 0 || sk_doubles(n_buf) < 0
        || sk_siglength(d, N) < 0)
        return SK_ERR_SIZE;
    w->zs = (double *)malloc((size_t)sk_doubles(n_zs));
    w->buf0 = (double *)malloc((size_t)sk_doubles(n_buf));
    if (!w->zs || !w->buf0) {
        free(w->zs);
        free(w->buf0);
        w->zs = NULL;
        w->buf0 = NULL;
        return SK_ERR_NOMEM;
    }
    w->d = d;
    w->N = N;
    w->siglen = sk_siglength(d, N);
    sk_level_offsets(d, N, w->lvl_off);
    w->B = w->zs + (N + 1) * (int64_t)d;
    w->buf1 = w->buf0 + n_buf / 2;
    return 0;
}

static void sk_work_free(sk_work *w)
{
    free(w->zs);
    free(w->buf0);
    w->zs = NULL;
    w->buf0 = NULL;
}

/* s <- s (x) exp(z): append the linear segment with displacement z. */
static inline __attribute__((always_inline)) void sk_join_d(sk_work *w, double *restrict s,
                                                            const double *restrict z, int d)
{
    int N = w->N;
    for (int c = 0; c < d; ++c) {
        w->zs[d + c] = z[c];
        for (int j = 2; j <= N; ++j) w->zs[j * d + c] = z[c] * (1.0 / j);
    }
    sk_horner_s(s, s + w->lvl_off[N], w->zs, d, N, w->lvl_off, w->B);
}

/* s <- exp(y) (x) s: prepend the linear segment with displacement y.
 * Horner from the right end of the words, for level k:
 *     C_1 = s_1 + y / k,
 *     C_j[a v] = s_j[a v] + y_a / (k - j + 1) * C_{j-1}[v],   j = 2..k-1,
 *     s'_k[a v] = s_k[a v] + y_a * C_{k-1}[v]. */
static inline __attribute__((always_inline)) void sk_prepend_d(
    sk_work *w, double *restrict s, const double *restrict y, int d)
{
    int N = w->N;
    const int64_t *off = w->lvl_off;
    for (int k = N; k >= 1; --k) {
        double *sk = s + off[k];
        if (k == 1) {
            for (int c = 0; c < d; ++c) sk[c] += y[c];
            continue;
        }
        /* C_1 = s_1 + y / k */
        double *C = w->buf0, *D = w->buf1;
        double inv = 1.0 / k;
        for (int c = 0; c < d; ++c) C[c] = s[c] + y[c] * inv;
        int64_t n = d; /* size of C_j */
        for (int j = 2; j < k; ++j) {
            double f = 1.0 / (k - j + 1);
            const double *sj = s + off[j];
            for (int a = 0; a < d; ++a) {
                double ya = y[a] * f;
                const double *sr = sj + a * n;
                double *dr = D + a * n;
                for (int64_t v = 0; v < n; ++v) dr[v] = sr[v] + ya * C[v];
            }
            double *t = C;
            C = D;
            D = t;
            n *= d;
        }
        for (int a = 0; a < d; ++a) {
            double ya = y[a];
            double *row = sk + a * n;
            for (int64_t v = 0; v < n; ++v) row[v] += ya * C[v];
        }
    }
}

/* Per-tick entry points: d is a compile-time constant in each case, so
 * that the letter loops of a small dimension unroll. */
#define SK_TICK_CASES(F) \
    switch (w->d) { \
    case 1: F(1); break; case 2: F(2); break; case 3: F(3); break; \
    case 4: F(4); break; case 5: F(5); break; default: F(w->d); }

static void sk_join(sk_work *w, double *restrict s, const double *restrict z)
{
#define SK_J(D) sk_join_d(w, s, z, D)
    SK_TICK_CASES(SK_J)
#undef SK_J
}

static void sk_prepend(sk_work *w, double *restrict s, const double *restrict y)
{
#define SK_P(D) sk_prepend_d(w, s, y, D)
    SK_TICK_CASES(SK_P)
#undef SK_P
}

/* How many pieces sk_sig cuts each path into: enough that the pieces fill
 * every lane of every thread, but no piece of fewer than min_steps steps
 * (it would spend more on the Chen joins than it saves). */
static int64_t sk_sig_chunks(int64_t batch, int64_t steps, int N, int nthreads)
{
    int64_t target = (int64_t)SK_VL * nthreads;
    if (batch >= target) return 1;
    int64_t min_steps = 8 * N > 32 ? 8 * N : 32;
    int64_t chunks = (target + batch - 1) / batch;
    int64_t maxc = steps / min_steps;
    if (maxc < 1) maxc = 1;
    return chunks > maxc ? maxc : chunks;
}

/* Block scratch of the threads that run n_items pieces at once (sk_parallel
 * runs min(nthreads, blocks) of them, each holding one block), in bytes, or
 * -1 on overflow. */
static int64_t sk_pieces_scratch_bytes(int64_t n_items, int d, int N, int64_t siglen,
                                       int nthreads)
{
    int lanes = n_items <= 2 ? 1 : SK_VL;
    int64_t nblocks = (n_items + lanes - 1) / lanes, workers = nthreads, bytes;
    if (workers > nblocks) workers = nblocks;
    if (sk_mul(workers, sk_block_bytes(lanes, d, N, siglen), &bytes)) return -1;
    return bytes;
}

/* Bytes sk_sig allocates besides its output, or -1 if a size overflows. */
static int64_t sk_sig_scratch_bytes(int64_t batch, int64_t len, int d, int N, int nthreads)
{
    nthreads = sk_threads(nthreads);
    int64_t siglen = sk_siglength(d, N), steps = len - 1;
    if (siglen < 0 || batch < 0) return -1;
    if (steps <= 0 || batch == 0) return 0;
    int64_t chunks = sk_sig_chunks(batch, steps, N, nthreads);
    int64_t n_items, total, t;
    if (sk_mul(batch, chunks, &n_items) || sk_mul(n_items, 3 * (int64_t)sizeof(int64_t), &total))
        return -1;
    if (chunks > 1 && (sk_mul(n_items, siglen, &t) || sk_add(total, sk_doubles(t), &total)))
        return -1;
    if (sk_add(total, sk_pieces_scratch_bytes(n_items, d, N, siglen, nthreads), &total))
        return -1;
    return total;
}

/* Signatures of a batch of paths X (batch, len, d) into out (batch, siglen).
 * Returns 0, SK_ERR_NOMEM or SK_ERR_SIZE. */
static int sk_sig(const double *X, int64_t batch, int64_t len, int d, int N,
                  double *out, int nthreads)
{
    nthreads = sk_threads(nthreads);
    int64_t siglen = sk_siglength(d, N), out_n;
    if (sk_sig_scratch_bytes(batch, len, d, N, nthreads) < 0 || sk_mul(batch, siglen, &out_n)
        || sk_doubles(out_n) < 0)
        return SK_ERR_SIZE;
    int64_t lvl_off[64];
    sk_level_offsets(d, N, lvl_off);
    int64_t steps = len - 1;
    memset(out, 0, (size_t)sk_doubles(out_n));
    if (steps <= 0 || batch == 0) return 0;

    /* sizes below were checked by sk_sig_scratch_bytes */
    int64_t chunks = sk_sig_chunks(batch, steps, N, nthreads);
    int64_t n_items = batch * chunks;
    int64_t *pi = (int64_t *)malloc(sizeof(int64_t) * 3 * (size_t)n_items);
    if (pi == NULL) return SK_ERR_NOMEM;
    int64_t *st = pi + n_items, *en = st + n_items;
    for (int64_t b = 0; b < batch; ++b)
        for (int64_t c = 0; c < chunks; ++c) {
            int64_t i = b * chunks + c;
            pi[i] = b;
            st[i] = (int64_t)((__int128)steps * c / chunks);
            en[i] = (int64_t)((__int128)steps * (c + 1) / chunks);
        }
    double *pieces = out;
    if (chunks > 1) {
        pieces = (double *)malloc(sizeof(double) * (size_t)n_items * (size_t)siglen);
        if (pieces == NULL) {
            free(pi);
            return SK_ERR_NOMEM;
        }
    }
    int failed;
    if (n_items <= 2)
        failed = sk_sig_pieces_s(X, len, d, N, lvl_off, siglen, pi, st, en, n_items,
                                 pieces, nthreads);
    else
        failed = sk_sig_pieces_v(X, len, d, N, lvl_off, siglen, pi, st, en, n_items,
                                 pieces, nthreads);
    if (chunks > 1) {
        for (int64_t b = 0; b < batch; ++b) {
            double *o = out + b * siglen;
            memcpy(o, pieces + b * chunks * siglen, sizeof(double) * siglen);
            for (int64_t c = 1; c < chunks; ++c)
                sk_mul_inplace(o, pieces + (b * chunks + c) * siglen, d, N, lvl_off);
        }
        free(pieces);
    }
    free(pi);
    return failed ? SK_ERR_NOMEM : 0;
}

/* Distinct nonzero indices among the sorted at[0..n_at-1]: the ends of the
 * pieces sk_sig_at cuts a small batch into. */
static int64_t sk_at_ends(const int64_t *at, int64_t n_at)
{
    int64_t nq = 0;
    for (int64_t j = 0; j < n_at; ++j)
        if (at[j] > 0 && (j == 0 || at[j - 1] != at[j])) ++nq;
    return nq;
}

/* Bytes sk_sig_at allocates besides its output, or -1 if a size overflows. */
static int64_t sk_sig_at_scratch_bytes(int64_t batch, int64_t len, int d, int N,
                                       const int64_t *at, int64_t n_at, int nthreads)
{
    (void)len;
    nthreads = sk_threads(nthreads);
    int64_t siglen = sk_siglength(d, N);
    if (siglen < 0 || batch < 0 || n_at < 0) return -1;
    if (batch == 0 || n_at == 0) return 0;
    if (batch >= (int64_t)SK_VL * nthreads)
        return sk_pieces_scratch_bytes(batch, d, N, siglen, nthreads);
    int64_t nq = sk_at_ends(at, n_at), n_items, total, t;
    if (sk_add(n_at, 1, &total) || sk_mul(total, (int64_t)sizeof(int64_t), &total)) return -1;
    if (nq == 0) return total;
    if (sk_mul(batch, nq, &n_items) || sk_mul(n_items, 3, &t) || sk_add(t, 2 * nq, &t)
        || sk_mul(t, (int64_t)sizeof(int64_t), &t) || sk_add(total, t, &total))
        return -1;
    if (sk_mul(n_items, siglen, &t) || sk_add(total, sk_doubles(t), &total)) return -1;
    if (sk_add(total, sk_pieces_scratch_bytes(n_items, d, N, siglen, nthreads), &total))
        return -1;
    return total;
}

/* Prefix signatures at sorted point indices `at` (see sk_sig_at_*), into
 * out (batch, n_at, siglen).  Returns 0, SK_ERR_NOMEM or SK_ERR_SIZE.
 *
 * A batch too small to fill the lanes (a single long path, say) is cut at
 * the requested indices instead: the pieces between consecutive indices
 * are computed side by side in the lanes, and their running Chen products
 * are the prefix signatures. */
static int sk_sig_at(const double *X, int64_t batch, int64_t len, int d, int N,
                     const int64_t *at, const int64_t *slot, int64_t n_at,
                     double *out, int nthreads)
{
    nthreads = sk_threads(nthreads);
    int64_t siglen = sk_siglength(d, N), out_n;
    if (sk_sig_at_scratch_bytes(batch, len, d, N, at, n_at, nthreads) < 0
        || sk_mul(batch, n_at, &out_n) || sk_mul(out_n, siglen, &out_n)
        || sk_doubles(out_n) < 0)
        return SK_ERR_SIZE;
    int64_t lvl_off[64];
    sk_level_offsets(d, N, lvl_off);
    if (batch == 0 || n_at == 0) return 0;
    if (batch >= (int64_t)SK_VL * nthreads)
        return sk_sig_at_v(X, batch, len, d, N, lvl_off, siglen, at, slot, n_at, out,
                           nthreads) ? SK_ERR_NOMEM : 0;

    /* distinct nonzero indices: the piece ends (sizes below were checked by
     * sk_sig_at_scratch_bytes) */
    int64_t *ends = (int64_t *)malloc(sizeof(int64_t) * ((size_t)n_at + 1));
    if (ends == NULL) return SK_ERR_NOMEM;
    int64_t nq = 0;
    for (int64_t j = 0; j < n_at; ++j)
        if (at[j] > 0 && (nq == 0 || ends[nq - 1] != at[j])) ends[nq++] = at[j];
    if (nq == 0) {
        free(ends);
        memset(out, 0, (size_t)sk_doubles(out_n));
        return 0;
    }
    int64_t n_items = batch * nq;
    int64_t *pi = (int64_t *)malloc(sizeof(int64_t) * (3 * (size_t)n_items + 2 * (size_t)nq));
    double *pieces = (double *)malloc(sizeof(double) * (size_t)n_items * (size_t)siglen);
    if (pi == NULL || pieces == NULL) {
        free(ends);
        free(pi);
        free(pieces);
        return SK_ERR_NOMEM;
    }
    int64_t *st = pi + n_items, *en = st + n_items, *order = en + n_items;
    int64_t *rank = order + nq;
    /* pieces sorted by length, longest first, so that the lanes of one
     * block do similar work (insertion sort: nq is the number of dates) */
    for (int64_t q = 0; q < nq; ++q) {
        int64_t lq = ends[q] - (q ? ends[q - 1] : 0);
        int64_t r = q - 1;
        while (r >= 0 && ends[order[r]] - (order[r] ? ends[order[r] - 1] : 0) < lq) {
            order[r + 1] = order[r];
            --r;
        }
        order[r + 1] = q;
    }
    for (int64_t r = 0; r < nq; ++r) rank[order[r]] = r;
    /* item r * batch + b: piece order[r] of path b */
    for (int64_t r = 0; r < nq; ++r)
        for (int64_t b = 0; b < batch; ++b) {
            int64_t i = r * batch + b, q = order[r];
            pi[i] = b;
            st[i] = q ? ends[q - 1] : 0;
            en[i] = ends[q];
        }
    int failed;
    if (n_items <= 2)
        failed = sk_sig_pieces_s(X, len, d, N, lvl_off, siglen, pi, st, en, n_items,
                                 pieces, nthreads);
    else
        failed = sk_sig_pieces_v(X, len, d, N, lvl_off, siglen, pi, st, en, n_items,
                                 pieces, nthreads);
    for (int64_t b = 0; b < batch; ++b) {
        const double *prev = NULL;
        int64_t j = 0;
        for (; j < n_at && at[j] == 0; ++j) /* prefix of one point: zero */
            memset(out + (b * n_at + slot[j]) * siglen, 0, sizeof(double) * siglen);
        for (int64_t q = 0; q < nq; ++q) {
            double *cur = pieces + (rank[q] * batch + b) * siglen;
            if (prev != NULL) sk_mul_inplace_left(prev, cur, d, N, lvl_off);
            /* cur now holds the prefix ending at ends[q] */
            for (; j < n_at && at[j] == ends[q]; ++j)
                memcpy(out + (b * n_at + slot[j]) * siglen, cur, sizeof(double) * siglen);
            prev = cur;
        }
    }
    free(ends);
    free(pi);
    free(pieces);
    return failed ? SK_ERR_NOMEM : 0;
}

#endif
