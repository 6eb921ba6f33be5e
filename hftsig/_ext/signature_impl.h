/* One lane-width instance of the truncated-signature kernels.
 *
 * Included by signature_c.h once per lane width with SK_T (the lane type: a
 * GCC vector of SK_L doubles, or plain double), SK_L, SK_NAME(x) (suffixes
 * function names), SK_GET(v, l) and SK_SET(v, l, x) defined.
 *
 * A block of SK_L paths is processed together: every tensor coordinate is
 * one SK_T holding that coordinate for all SK_L paths, so each arithmetic
 * instruction advances SK_L paths at once (the batch is the innermost,
 * contiguous axis).  The signature of a block is stored level by level,
 * level k at offset lvl_off[k] (lvl_off[1] = 0), words in lexicographic
 * order, level 0 (the constant 1) left out: the iisignature layout.
 */

/* S <- S (x) exp(z), in place, by Horner's scheme.
 *
 * Levels 1..N-1 of S live at low + lvl_off[k], level N at top (the two may
 * be one contiguous signature: top = low + lvl_off[N]).  For level k
 * (processed from N down to 1 so that lower levels are still the old
 * values when level k reads them):
 *     S_k[w] += B_{k-1}[w_1..w_{k-1}] * z[w_k]
 *     B_j    = B_{j-1} * z[w_j] / (k - j + 1) + S_j[w_1..w_j],  B_0 = 1.
 * B_{k-2} is formed for all prefixes in the scratch Bbuf (d^(k-2) entries,
 * 1/d^2 of the level); B_{k-1} is formed in a register inside the loop that
 * updates level k, so the only large stores are the d^k updated
 * coordinates.
 *
 * zs holds z[c] / j at zs[j * d + c] for j = 1..N; Bbuf needs
 * max(1, d^(N-2)) entries. */
static inline __attribute__((always_inline)) void SK_NAME(sk_chain)(
    const SK_T *restrict low, const SK_T *restrict zs, int d, int k,
    const int64_t *restrict lvl_off, SK_T *restrict Bbuf)
{
    /* Bbuf <- B_{k-2} for every prefix of k-2 letters (k >= 3) */
    const SK_T *zk = zs + (int64_t)k * d;
    for (int a = 0; a < d; ++a) Bbuf[a] = zk[a] + low[a];
    int64_t n = d;
    for (int j = 2; j <= k - 2; ++j) {
        const SK_T *zj = zs + (int64_t)(k - j + 1) * d;
        const SK_T *Sj = low + lvl_off[j];
        /* in place, prefixes from the last so that each B_{j-1}[u] is read
         * before its slot is overwritten */
        for (int64_t u = n - 1; u >= 0; --u) {
            const SK_T bu = Bbuf[u];
            for (int a = 0; a < d; ++a) Bbuf[u * d + a] = bu * zj[a] + Sj[u * d + a];
        }
        n *= d;
    }
}

static inline __attribute__((always_inline)) void SK_NAME(sk_horner)(
    SK_T *restrict low, SK_T *restrict top, const SK_T *restrict zs, int d, int N,
    const int64_t *restrict lvl_off, SK_T *restrict Bbuf)
{
    const SK_T *z1 = zs + d, *z2 = zs + 2 * d;
    for (int k = N; k >= 1; --k) {
        SK_T *Sk = k == N ? top : low + lvl_off[k];
        if (k == 1) {
            for (int c = 0; c < d; ++c) Sk[c] += z1[c];
            continue;
        }
        if (k == 2) {
            for (int a = 0; a < d; ++a) {
                SK_T b = z2[a] + low[a];
                SK_T *row = Sk + (int64_t)a * d;
                for (int c = 0; c < d; ++c) row[c] += b * z1[c];
            }
            continue;
        }
        SK_NAME(sk_chain)(low, zs, d, k, lvl_off, Bbuf);
        int64_t n = lvl_off[k - 1] - lvl_off[k - 2]; /* d^(k-2) */
        const SK_T *Skm1 = low + lvl_off[k - 1];
        for (int64_t u = 0; u < n; ++u) {
            const SK_T bu = Bbuf[u];
            for (int a = 0; a < d; ++a) {
                SK_T b = bu * z2[a] + Skm1[u * d + a];
                SK_T *row = Sk + (u * d + a) * d;
                for (int c = 0; c < d; ++c) row[c] += b * z1[c];
            }
        }
    }
}

/* dst <- src (x) exp(z) on levels 1..K, out of place (src and dst hold
 * levels 1..K contiguously and do not overlap): the same arithmetic as
 * sk_horner, reading only src, so no level has to be copied first. */
static inline __attribute__((always_inline)) void SK_NAME(sk_horner_oop)(
    const SK_T *restrict src, SK_T *restrict dst, const SK_T *restrict zs, int d, int K,
    const int64_t *restrict lvl_off, SK_T *restrict Bbuf)
{
    const SK_T *z1 = zs + d, *z2 = zs + 2 * d;
    for (int c = 0; c < d; ++c) dst[c] = src[c] + z1[c];
    if (K >= 2) {
        const SK_T *s2 = src + lvl_off[2];
        SK_T *d2 = dst + lvl_off[2];
        for (int a = 0; a < d; ++a) {
            SK_T b = z2[a] + src[a];
            for (int c = 0; c < d; ++c) d2[a * d + c] = s2[a * d + c] + b * z1[c];
        }
    }
    for (int k = 3; k <= K; ++k) {
        SK_NAME(sk_chain)(src, zs, d, k, lvl_off, Bbuf);
        int64_t n = lvl_off[k - 1] - lvl_off[k - 2]; /* d^(k-2) */
        const SK_T *Skm1 = src + lvl_off[k - 1];
        const SK_T *Sk = src + lvl_off[k];
        SK_T *Dk = dst + lvl_off[k];
        for (int64_t u = 0; u < n; ++u) {
            const SK_T bu = Bbuf[u];
            for (int a = 0; a < d; ++a) {
                SK_T b = bu * z2[a] + Skm1[u * d + a];
                const SK_T *row = Sk + (u * d + a) * d;
                SK_T *orow = Dk + (u * d + a) * d;
                for (int c = 0; c < d; ++c) orow[c] = row[c] + b * z1[c];
            }
        }
    }
}

/* Top level of two steps at once: S_N <- S_N + A(S, z) + A(T, y), where
 * A(S, z)[w] = B_{N-1}(S, z)[w_1..w_{N-1}] z[w_N] is what sk_horner adds to
 * level N, S the lower levels before the two steps and T those after the
 * first.  Each coordinate of level N is then loaded and stored once per two
 * steps, which halves the stores that bound the single-step kernel (N >= 2). */
static inline __attribute__((always_inline)) void SK_NAME(sk_top2)(
    const SK_T *restrict S, const SK_T *restrict T, SK_T *restrict top,
    const SK_T *restrict zs, const SK_T *restrict ys, int d, int N,
    const int64_t *restrict lvl_off, SK_T *restrict BA, SK_T *restrict BB)
{
    const SK_T *z1 = zs + d, *z2 = zs + 2 * d;
    const SK_T *y1 = ys + d, *y2 = ys + 2 * d;
    if (N == 2) {
        for (int a = 0; a < d; ++a) {
            SK_T ba = z2[a] + S[a];
            SK_T bb = y2[a] + T[a];
            SK_T *row = top + (int64_t)a * d;
            for (int c = 0; c < d; ++c) row[c] += ba * z1[c] + bb * y1[c];
        }
        return;
    }
    SK_NAME(sk_chain)(S, zs, d, N, lvl_off, BA);
    SK_NAME(sk_chain)(T, ys, d, N, lvl_off, BB);
    int64_t n = lvl_off[N - 1] - lvl_off[N - 2];
    const SK_T *Sm = S + lvl_off[N - 1], *Tm = T + lvl_off[N - 1];
    for (int64_t u = 0; u < n; ++u) {
        const SK_T ba0 = BA[u], bb0 = BB[u];
        for (int a = 0; a < d; ++a) {
            SK_T ba = ba0 * z2[a] + Sm[u * d + a];
            SK_T bb = bb0 * y2[a] + Tm[u * d + a];
            SK_T *row = top + (u * d + a) * d;
            for (int c = 0; c < d; ++c) row[c] += ba * z1[c] + bb * y1[c];
        }
    }
}

/* Scratch needed by sk_horner plus the block signature and zs, in SK_T units. */
/* Two steps for N >= 4, with level N-1 fused into the top-level loop:
 * T (lower levels after the first step) is needed only up to level N-2,
 * since T_{N-1} = S_{N-1} + C_A z is formed in registers where it is used,
 * and the final level N-1, T_{N-1} + C_B y, is written there too.  Stores
 * per two steps: d^N + d^(N-1) + 2 (levels 1..N-2), instead of
 * d^N + 2 (levels 1..N-1).  CA, CB: chains of level N-1 (d^(N-3) each). */
static inline __attribute__((always_inline)) void SK_NAME(sk_two_steps_fused)(
    SK_T *restrict S, SK_T *restrict T, const SK_T *restrict zs,
    const SK_T *restrict ys, int d, int N, const int64_t *restrict lvl_off,
    SK_T *restrict BA, SK_T *restrict BB, SK_T *restrict CA, SK_T *restrict CB)
{
    const SK_T *z1 = zs + d, *z2 = zs + 2 * d;
    const SK_T *y1 = ys + d, *y2 = ys + 2 * d;
    SK_NAME(sk_horner_oop)(S, T, zs, d, N - 2, lvl_off, BA);
    SK_NAME(sk_chain)(S, zs, d, N, lvl_off, BA);
    SK_NAME(sk_chain)(T, ys, d, N, lvl_off, BB);
    SK_NAME(sk_chain)(S, zs, d, N - 1, lvl_off, CA);
    SK_NAME(sk_chain)(T, ys, d, N - 1, lvl_off, CB);
    int64_t np = lvl_off[N - 2] - lvl_off[N - 3]; /* d^(N-3) */
    SK_T *Sm1 = S + lvl_off[N - 1];
    const SK_T *Sm2 = S + lvl_off[N - 2], *Tm2 = T + lvl_off[N - 2];
    SK_T *top = S + lvl_off[N];
    for (int64_t up = 0; up < np; ++up) {
        const SK_T ca0 = CA[up], cb0 = CB[up];
        for (int ap = 0; ap < d; ++ap) {
            const int64_t u = up * d + ap;
            const SK_T cA = ca0 * z2[ap] + Sm2[u];
            const SK_T cB = cb0 * y2[ap] + Tm2[u];
            const SK_T ba0 = BA[u], bb0 = BB[u];
            for (int a = 0; a < d; ++a) {
                const SK_T s_old = Sm1[u * d + a];
                const SK_T t = s_old + cA * z1[a];
                const SK_T ba = ba0 * z2[a] + s_old;
                const SK_T bb = bb0 * y2[a] + t;
                Sm1[u * d + a] = t + cB * y1[a];
                SK_T *row = top + (u * d + a) * d;
                for (int c = 0; c < d; ++c) row[c] += ba * z1[c] + bb * y1[c];
            }
        }
    }
    SK_NAME(sk_horner_oop)(T, S, ys, d, N - 2, lvl_off, BA);
}

/* Load the increment X[t+1] - X[t] of every lane into zs (scaled copies). */
static inline __attribute__((always_inline)) void SK_NAME(sk_load_z)(SK_T *restrict zs, const double *const *rows,
                                      const int64_t *restrict nsteps, int64_t t,
                                      int d, int N)
{
    for (int c = 0; c < d; ++c) {
        SK_T z;
        for (int l = 0; l < SK_L; ++l) {
            double v = 0.0;
            if (rows[l] != NULL && t < nsteps[l])
                v = rows[l][(t + 1) * d + c] - rows[l][t * d + c];
            SK_SET(z, l, v);
        }
        zs[d + c] = z;
        for (int j = 2; j <= N; ++j) zs[(int64_t)j * d + c] = z * (1.0 / j);
    }
}

/* Block state: the signature S (contiguous, level N at S + lvl_off[N]), a
 * second copy T of its lower levels, scaled increments zs, ys and chains. */
typedef struct {
    SK_T *S, *T, *zs, *ys, *BA, *BB, *CA, *CB;
} SK_NAME(sk_block);

static int SK_NAME(sk_block_init)(SK_NAME(sk_block) *b, int d, int N, int64_t siglen,
                                   const int64_t *lvl_off)
{
    int64_t n = sk_block_entries(d, N, siglen), nbytes;
    if (n < 0 || sk_mul(n, (int64_t)sizeof(SK_T), &nbytes)) return -1;
    SK_T *mem = (SK_T *)sk_aligned_alloc((size_t)nbytes);
    if (mem == NULL) return -1;
    memset(mem, 0, (size_t)nbytes);
    b->S = mem;
    b->T = mem + siglen;
    b->zs = b->T + lvl_off[N];
    b->ys = b->zs + (int64_t)(N + 1) * d;
    b->BA = b->ys + (int64_t)(N + 1) * d;
    b->BB = b->BA + sk_chain_len(d, N);
    b->CA = b->BB + sk_chain_len(d, N);
    b->CB = b->CA + sk_chain_len(d, N);
    return 0;
}

/* Steps t0..t1-1 of a block, two at a time (sk_top2) and a last single
 * step when the count is odd.  Inlined into sk_run with d a compile-time
 * constant so that the letter loops unroll and the increments stay in
 * registers. */
static inline __attribute__((always_inline)) void SK_NAME(sk_steps)(
    SK_NAME(sk_block) *restrict b, const double *const *rows, const int64_t *nsteps,
    int64_t t0, int64_t t1, int d, int N, const int64_t *lvl_off)
{
    SK_T *S = b->S, *T = b->T;
    int64_t t = t0;
    if (N >= 2) {
        const int64_t nlow = lvl_off[N];
        /* the fused pass measured faster for d <= 3 (lower levels are a
         * large share of the work there) and no faster for d = 4, 5 */
        if (N >= 4 && d <= 3 && !sk_unfused) {
            for (; t + 1 < t1; t += 2) {
                SK_NAME(sk_load_z)(b->zs, rows, nsteps, t, d, N);
                SK_NAME(sk_load_z)(b->ys, rows, nsteps, t + 1, d, N);
                SK_NAME(sk_two_steps_fused)(S, T, b->zs, b->ys, d, N, lvl_off, b->BA,
                                            b->BB, b->CA, b->CB);
            }
        }
        for (; t + 1 < t1; t += 2) {
            SK_NAME(sk_load_z)(b->zs, rows, nsteps, t, d, N);
            SK_NAME(sk_load_z)(b->ys, rows, nsteps, t + 1, d, N);
            /* T = lower levels after the first step; then the top level of
             * both steps; then the lower levels after the second step,
             * written straight back over S's */
            SK_NAME(sk_horner_oop)(S, T, b->zs, d, N - 1, lvl_off, b->BA);
            SK_NAME(sk_top2)(S, T, S + nlow, b->zs, b->ys, d, N, lvl_off, b->BA, b->BB);
            SK_NAME(sk_horner_oop)(T, S, b->ys, d, N - 1, lvl_off, b->BA);
        }
    }
    for (; t < t1; ++t) {
        SK_NAME(sk_load_z)(b->zs, rows, nsteps, t, d, N);
        SK_NAME(sk_horner)(S, S + lvl_off[N], b->zs, d, N, lvl_off, b->BA);
    }
}

#define SK_STEPS_D(D) \
    case D: SK_NAME(sk_steps)(b, rows, nsteps, t0, t1, D, N, lvl_off); break;

static void SK_NAME(sk_run)(SK_NAME(sk_block) *restrict b, const double *const *rows,
                            const int64_t *nsteps, int64_t t0, int64_t t1, int d, int N,
                            const int64_t *lvl_off)
{
#ifndef SK_SPECIALISE
    /* one generic copy keeps the build short where speed matters less */
    SK_NAME(sk_steps)(b, rows, nsteps, t0, t1, d, N, lvl_off);
    return;
#endif
    switch (d) {
        SK_STEPS_D(1) SK_STEPS_D(2) SK_STEPS_D(3) SK_STEPS_D(4)
        SK_STEPS_D(5) SK_STEPS_D(6) SK_STEPS_D(7) SK_STEPS_D(8)
    default:
        SK_NAME(sk_steps)(b, rows, nsteps, t0, t1, d, N, lvl_off);
    }
}
#undef SK_STEPS_D

/* Signatures of n_items path pieces.  Piece i runs over points
 * start[i]..end[i] of path path_idx[i] in X (shape (batch, len, d), C order)
 * and its signature goes to out[i * siglen ...].  Pieces are taken SK_L at a
 * time; the caller orders them so that a block's pieces have similar
 * lengths (shorter lanes see zero increments, i.e. the identity). */
static void SK_NAME(sk_pieces_block)(sk_ctx *cx, int64_t blk)
{
    const int d = cx->d, N = cx->N;
    const int64_t *lvl_off = cx->lvl_off, siglen = cx->siglen, n_items = cx->n_items;
    SK_NAME(sk_block) blkst;
    if (SK_NAME(sk_block_init)(&blkst, d, N, siglen, lvl_off) != 0) {
        cx->failed = 1;
        return;
    }
    SK_T *S = blkst.S;
    const double *rows[SK_L];
    int64_t nsteps[SK_L];
    int64_t maxsteps = 0;
    for (int l = 0; l < SK_L; ++l) {
        int64_t it = blk * SK_L + l;
        if (it < n_items) {
            rows[l] = cx->X + (cx->path_idx[it] * cx->len + cx->start[it]) * d;
            nsteps[l] = cx->end[it] - cx->start[it];
            if (nsteps[l] > maxsteps) maxsteps = nsteps[l];
        } else {
            rows[l] = NULL;
            nsteps[l] = 0;
        }
    }
    SK_NAME(sk_run)(&blkst, rows, nsteps, 0, maxsteps, d, N, lvl_off);
    for (int l = 0; l < SK_L; ++l) {
        int64_t it = blk * SK_L + l;
        if (it >= n_items) break;
        double *o = cx->out + it * siglen;
        for (int64_t w = 0; w < siglen; ++w) o[w] = SK_GET(S[w], l);
    }
    sk_aligned_free(blkst.S);
}

static int SK_NAME(sk_sig_pieces)(const double *X, int64_t len, int d, int N,
                                   const int64_t *lvl_off, int64_t siglen,
                                   const int64_t *path_idx, const int64_t *start,
                                   const int64_t *end, int64_t n_items,
                                   double *out, int nthreads)
{
    sk_ctx cx;
    memset(&cx, 0, sizeof(cx));
    cx.X = X; cx.len = len; cx.d = d; cx.N = N; cx.lvl_off = lvl_off; cx.siglen = siglen;
    cx.path_idx = path_idx; cx.start = start; cx.end = end; cx.n_items = n_items;
    cx.out = out;
    int64_t nblocks = (n_items + SK_L - 1) / SK_L;
    sk_parallel(SK_NAME(sk_pieces_block), &cx, nblocks, nthreads);
    return cx.failed;
}

/* Prefix signatures of every path of X (shape (batch, len, d)) ending at the
 * point indices at[0] <= at[1] <= ... (n_at of them, sorted); the prefix
 * ending at at[j] goes to out[(b * n_at + slot[j]) * siglen ...]. */
static void SK_NAME(sk_at_block)(sk_ctx *cx, int64_t blk)
{
    const int d = cx->d, N = cx->N;
    const int64_t *lvl_off = cx->lvl_off, siglen = cx->siglen, batch = cx->batch;
    const int64_t *at = cx->at, *slot = cx->slot, n_at = cx->n_at;
    SK_NAME(sk_block) blkst;
    if (SK_NAME(sk_block_init)(&blkst, d, N, siglen, lvl_off) != 0) {
        cx->failed = 1;
        return;
    }
    SK_T *S = blkst.S;
    const double *rows[SK_L];
    int64_t nsteps[SK_L];
    int nl = 0;
    for (int l = 0; l < SK_L; ++l) {
        int64_t b = blk * SK_L + l;
        rows[l] = b < batch ? cx->X + b * cx->len * d : NULL;
        nsteps[l] = b < batch ? cx->len - 1 : 0;
        if (b < batch) nl = l + 1;
    }
    /* run from one requested index to the next, emitting at each */
    int64_t j = 0, t = 0;
    while (j < n_at) {
        SK_NAME(sk_run)(&blkst, rows, nsteps, t, at[j], d, N, lvl_off);
        t = at[j];
        for (; j < n_at && at[j] == t; ++j) {
            for (int l = 0; l < nl; ++l) {
                double *o = cx->out + ((blk * SK_L + l) * n_at + slot[j]) * siglen;
                for (int64_t w = 0; w < siglen; ++w) o[w] = SK_GET(S[w], l);
            }
        }
    }
    sk_aligned_free(blkst.S);
}

static int SK_NAME(sk_sig_at)(const double *X, int64_t batch, int64_t len, int d,
                               int N, const int64_t *lvl_off, int64_t siglen,
                               const int64_t *at, const int64_t *slot,
                               int64_t n_at, double *out, int nthreads)
{
    sk_ctx cx;
    memset(&cx, 0, sizeof(cx));
    cx.X = X; cx.batch = batch; cx.len = len; cx.d = d; cx.N = N; cx.lvl_off = lvl_off;
    cx.siglen = siglen; cx.at = at; cx.slot = slot; cx.n_at = n_at; cx.out = out;
    int64_t nblocks = (batch + SK_L - 1) / SK_L;
    sk_parallel(SK_NAME(sk_at_block), &cx, nblocks, nthreads);
    return cx.failed;
}
