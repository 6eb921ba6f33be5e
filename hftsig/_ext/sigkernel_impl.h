/* One lane-width instance of the truncated-signature kernels.
 *
 * Included by sigkernels.h once per lane width with SK_T (the lane type: a
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

/* S <- S (x) exp(z), in place, by Horner's scheme walked depth first.
 *
 * For level k (processed from N down to 1 so that lower levels are still the
 * old values when level k reads them):
 *     S_k[w] += B_{k-1}[w_1..w_{k-1}] * z[w_k]
 *     B_j    = B_{j-1} * z[w_j] / (k - j + 1) + S_j[w_1..w_j],  B_0 = 1.
 * Walking the words as an odometer keeps each B_j in a register-sized
 * scratch slot instead of storing whole intermediate levels, so the only
 * stores are the d^k updated coordinates of each level.
 *
 * zs holds z[c] / j at zs[j * d + c] for j = 1..N.  B and pidx are scratch of N
 * entries each; digit is scratch of N ints. */
static inline __attribute__((always_inline)) void SK_NAME(sk_horner)(SK_T *restrict S, const SK_T *restrict zs, int d,
                              int N, const int64_t *restrict lvl_off,
                              SK_T *restrict B, int64_t *restrict pidx,
                              int *restrict digit)
{
    const SK_T *z1 = zs + d;
    for (int k = N; k >= 1; --k) {
        SK_T *Sk = S + lvl_off[k];
        if (k == 1) {
            for (int c = 0; c < d; ++c) Sk[c] += z1[c];
            continue;
        }
        const SK_T *z2 = zs + 2 * d;
        if (k == 2) {
            for (int a = 0; a < d; ++a) {
                SK_T b = z2[a] + S[a];
                SK_T *row = Sk + (int64_t)a * d;
                for (int c = 0; c < d; ++c) row[c] += b * z1[c];
            }
            continue;
        }
        /* k >= 3: odometer over the first m = k - 2 letters, the last two
         * letters as explicit loops. */
        int m = k - 2;
        for (int i = 0; i < m; ++i) digit[i] = 0;
        int p = 0;
        for (;;) {
            for (int i = p; i < m; ++i) {
                const SK_T *zk = zs + (int64_t)(k - i) * d;
                if (i == 0) {
                    pidx[0] = digit[0];
                    B[0] = zk[digit[0]] + S[digit[0]];
                } else {
                    pidx[i] = pidx[i - 1] * d + digit[i];
                    B[i] = B[i - 1] * zk[digit[i]] + S[lvl_off[i + 1] + pidx[i]];
                }
            }
            const SK_T bm = B[m - 1];
            const SK_T *Skm1 = S + lvl_off[k - 1] + pidx[m - 1] * d;
            SK_T *Skk = Sk + pidx[m - 1] * d * d;
            for (int a = 0; a < d; ++a) {
                SK_T b = bm * z2[a] + Skm1[a];
                SK_T *row = Skk + (int64_t)a * d;
                for (int c = 0; c < d; ++c) row[c] += b * z1[c];
            }
            int i = m - 1;
            while (i >= 0 && ++digit[i] == d) {
                digit[i] = 0;
                --i;
            }
            if (i < 0) break;
            p = i;
        }
    }
}

/* Scratch needed by sk_horner plus the block signature and zs, in SK_T units. */
static int64_t SK_NAME(sk_block_scratch)(int d, int N, int64_t siglen)
{
    return siglen + (int64_t)(N + 1) * d + N;
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

/* Steps t0..t1-1 of a block; d is a compile-time constant in each copy
 * made by sk_run (so that the letter loops unroll and z stays in registers). */
static inline __attribute__((always_inline)) void SK_NAME(sk_steps)(
    SK_T *restrict S, SK_T *restrict zs, const double *const *rows,
    const int64_t *nsteps, int64_t t0, int64_t t1, int d, int N,
    const int64_t *lvl_off, SK_T *B, int64_t *pidx, int *digit)
{
    for (int64_t t = t0; t < t1; ++t) {
        SK_NAME(sk_load_z)(zs, rows, nsteps, t, d, N);
        SK_NAME(sk_horner)(S, zs, d, N, lvl_off, B, pidx, digit);
    }
}

#define SK_STEPS_D(D) \
    case D: SK_NAME(sk_steps)(S, zs, rows, nsteps, t0, t1, D, N, lvl_off, B, pidx, digit); break;

static void SK_NAME(sk_run)(SK_T *restrict S, SK_T *restrict zs, const double *const *rows,
                            const int64_t *nsteps, int64_t t0, int64_t t1, int d, int N,
                            const int64_t *lvl_off, SK_T *B, int64_t *pidx, int *digit)
{
    switch (d) {
        SK_STEPS_D(1) SK_STEPS_D(2) SK_STEPS_D(3) SK_STEPS_D(4)
        SK_STEPS_D(5) SK_STEPS_D(6) SK_STEPS_D(7) SK_STEPS_D(8)
    default:
        SK_NAME(sk_steps)(S, zs, rows, nsteps, t0, t1, d, N, lvl_off, B, pidx, digit);
    }
}
#undef SK_STEPS_D

/* Signatures of n_items path pieces.  Piece i runs over points
 * start[i]..end[i] of path path_idx[i] in X (shape (batch, len, d), C order)
 * and its signature goes to out[i * siglen ...].  Pieces are taken SK_L at a
 * time; the caller orders them so that a block's pieces have similar
 * lengths (shorter lanes see zero increments, i.e. the identity). */
static int SK_NAME(sk_sig_pieces)(const double *X, int64_t len, int d, int N,
                                   const int64_t *lvl_off, int64_t siglen,
                                   const int64_t *path_idx, const int64_t *start,
                                   const int64_t *end, int64_t n_items,
                                   double *out, int nthreads)
{
    int64_t nblocks = (n_items + SK_L - 1) / SK_L;
    int failed = 0;
#ifdef _OPENMP
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads) if (nthreads > 1 && nblocks > 1)
#endif
    for (int64_t blk = 0; blk < nblocks; ++blk) {
        int64_t n_sc = SK_NAME(sk_block_scratch)(d, N, siglen);
        SK_T *mem = (SK_T *)sk_aligned_alloc(sizeof(SK_T) * n_sc);
        int64_t *pidx = (int64_t *)malloc(sizeof(int64_t) * (N + 1));
        int *digit = (int *)malloc(sizeof(int) * (N + 1));
        if (mem == NULL || pidx == NULL || digit == NULL) {
            failed = 1;
            sk_aligned_free(mem); free(pidx); free(digit);
            continue;
        }
        SK_T *S = mem, *zs = mem + siglen, *B = zs + (int64_t)(N + 1) * d;
        memset(S, 0, sizeof(SK_T) * siglen);
        const double *rows[SK_L];
        int64_t nsteps[SK_L];
        int64_t maxsteps = 0;
        for (int l = 0; l < SK_L; ++l) {
            int64_t it = blk * SK_L + l;
            if (it < n_items) {
                rows[l] = X + (path_idx[it] * len + start[it]) * d;
                nsteps[l] = end[it] - start[it];
                if (nsteps[l] > maxsteps) maxsteps = nsteps[l];
            } else {
                rows[l] = NULL;
                nsteps[l] = 0;
            }
        }
        SK_NAME(sk_run)(S, zs, rows, nsteps, 0, maxsteps, d, N, lvl_off, B, pidx, digit);
        for (int l = 0; l < SK_L; ++l) {
            int64_t it = blk * SK_L + l;
            if (it >= n_items) break;
            double *o = out + it * siglen;
            for (int64_t w = 0; w < siglen; ++w) o[w] = SK_GET(S[w], l);
        }
        sk_aligned_free(mem);
        free(pidx);
        free(digit);
    }
    return failed;
}

/* Prefix signatures of every path of X (shape (batch, len, d)) ending at the
 * point indices at[0] <= at[1] <= ... (n_at of them, sorted); the prefix
 * ending at at[j] goes to out[(b * n_at + slot[j]) * siglen ...]. */
static int SK_NAME(sk_sig_at)(const double *X, int64_t batch, int64_t len, int d,
                               int N, const int64_t *lvl_off, int64_t siglen,
                               const int64_t *at, const int64_t *slot,
                               int64_t n_at, double *out, int nthreads)
{
    int64_t nblocks = (batch + SK_L - 1) / SK_L;
    int failed = 0;
#ifdef _OPENMP
    #pragma omp parallel for schedule(dynamic, 1) num_threads(nthreads) if (nthreads > 1 && nblocks > 1)
#endif
    for (int64_t blk = 0; blk < nblocks; ++blk) {
        int64_t n_sc = SK_NAME(sk_block_scratch)(d, N, siglen);
        SK_T *mem = (SK_T *)sk_aligned_alloc(sizeof(SK_T) * n_sc);
        int64_t *pidx = (int64_t *)malloc(sizeof(int64_t) * (N + 1));
        int *digit = (int *)malloc(sizeof(int) * (N + 1));
        if (mem == NULL || pidx == NULL || digit == NULL) {
            failed = 1;
            sk_aligned_free(mem); free(pidx); free(digit);
            continue;
        }
        SK_T *S = mem, *zs = mem + siglen, *B = zs + (int64_t)(N + 1) * d;
        memset(S, 0, sizeof(SK_T) * siglen);
        const double *rows[SK_L];
        int64_t nsteps[SK_L];
        int nl = 0;
        for (int l = 0; l < SK_L; ++l) {
            int64_t b = blk * SK_L + l;
            rows[l] = b < batch ? X + b * len * d : NULL;
            nsteps[l] = b < batch ? len - 1 : 0;
            if (b < batch) nl = l + 1;
        }
        /* run from one requested index to the next, emitting at each */
        int64_t j = 0, t = 0;
        while (j < n_at) {
            SK_NAME(sk_run)(S, zs, rows, nsteps, t, at[j], d, N, lvl_off, B, pidx, digit);
            t = at[j];
            for (; j < n_at && at[j] == t; ++j) {
                for (int l = 0; l < nl; ++l) {
                    double *o = out + ((blk * SK_L + l) * n_at + slot[j]) * siglen;
                    for (int64_t w = 0; w < siglen; ++w) o[w] = SK_GET(S[w], l);
                }
            }
        }
        sk_aligned_free(mem);
        free(pidx);
        free(digit);
    }
    return failed;
}
