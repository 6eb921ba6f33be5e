/* One lane-width instance of the signature backpropagation kernel.
 *
 * Included by sigbackprop.h once per lane width with SK_T, SK_L, SK_NAME,
 * SK_GET and SK_SET defined as for signature_impl.h: a block of SK_L path
 * pieces is processed together, every tensor coordinate one SK_T holding
 * that coordinate for all SK_L pieces (batch innermost).
 *
 * Backward through one step S' = S (x) exp(z).  sk_horner forms level k of
 * S' as
 *     S'_k[w] = S_k[w] + B_{k-1}[w_1..w_{k-1}] z[w_k],
 *     B_j[p]  = B_{j-1}[p_1..p_{j-1}] z[p_j] / (k - j + 1) + S_j[p],  B_0 = 1,
 * and this kernel is the reverse mode of exactly that arithmetic.  Given
 * G = dL/dS', with Bb_j = dL/dB_j of level k's chain:
 *     Bb_{k-1}[p] = sum_c G_k[p c] z[c],
 *     zb[c]      += sum_p G_k[p c] B_{k-1}[p],
 *     dL/dS_j    += Bb_j,
 *     Bb_{j-1}[q] = sum_a Bb_j[q a] z[a] / (k - j + 1),
 *     zb[a]      += sum_q Bb_j[q a] B_{j-1}[q] / (k - j + 1),
 * and dL/dS_k = G_k + (what the levels above add).  Levels are taken from
 * k = 1 up, so each G_k is read before any higher level adds to it, and the
 * update is in place.  The top level G_N is only read (two multiply-adds per
 * coordinate); everything written is below level N.
 *
 * The chains read S, the signature BEFORE the step: it is recomputed from the
 * one after by S = S' (x) exp(-z), on levels 1..N-1 only (no chain reads
 * level N), so the pass keeps one signature per piece whatever the length.
 */

/* Scratch per block, in SK_T units: S (levels 1..N-1), G (all levels),
 * forward and backward chains (laid out like levels 1..N-1), scaled
 * increments +z and -z, zb, and sk_horner's chain buffer. */
static int64_t SK_NAME(sb_block_scratch)(int d, int N, int64_t siglen, const int64_t *lvl_off)
{
    int64_t low = lvl_off[N];
    return 3 * low + siglen + 2 * (int64_t)(N + 1) * d + d + sk_chain_len(d, N) + 1;
}

typedef struct {
    SK_T *S, *G, *Bf, *Bb, *zs, *zn, *zb, *H;
} SK_NAME(sb_block);

static void SK_NAME(sb_block_carve)(SK_NAME(sb_block) *b, SK_T *mem, int d, int N,
                                    int64_t siglen, const int64_t *lvl_off)
{
    int64_t low = lvl_off[N];
    b->S = mem;
    b->G = b->S + low;
    b->Bf = b->G + siglen;
    b->Bb = b->Bf + low;
    b->zs = b->Bb + low;
    b->zn = b->zs + (int64_t)(N + 1) * d;
    b->zb = b->zn + (int64_t)(N + 1) * d;
    b->H = b->zb + d;
}

/* The contraction at the heart of the backward step, over n rows of d:
 *     out[p] = sum_c R[p d + c] w[c],   zb[c] += sum_p R[p d + c] B[p] f,
 * and, if Gadd is given, Gadd[p d + c] += R[p d + c].  For d <= SB_ZMAX the
 * zb sums are kept in a local array that the compiler keeps in registers:
 * accumulating into zb in memory made every row wait for the previous row's
 * store (measured 18% of the pass on one store at d = 5). */
#ifndef SB_ZMAX
#define SB_ZMAX 8
#endif
#define SB_ROWS_BODY(ZA) \
    for (int64_t p = 0; p < n; ++p) { \
        const SK_T *row = R + p * d; \
        const SK_T bp = B[p] * f; \
        SK_T acc = row[0] * w[0]; \
        ZA[0] += row[0] * bp; \
        for (int c = 1; c < d; ++c) { \
            acc += row[c] * w[c]; \
            ZA[c] += row[c] * bp; \
        } \
        if (Gadd != NULL) \
            for (int c = 0; c < d; ++c) Gadd[p * d + c] += row[c]; \
        out[p] = acc; \
    }

static inline __attribute__((always_inline)) void SK_NAME(sb_rows)(
    const SK_T *restrict R, int64_t n, int d, const SK_T *restrict w,
    const SK_T *restrict B, double f, SK_T *restrict out, SK_T *restrict zb,
    SK_T *restrict Gadd)
{
    if (d <= SB_ZMAX) {
        SK_T zl[SB_ZMAX];
        for (int c = 0; c < d; ++c) zl[c] = zb[c];
        SB_ROWS_BODY(zl)
        for (int c = 0; c < d; ++c) zb[c] = zl[c];
    } else {
        SB_ROWS_BODY(zb)
    }
}
#undef SB_ROWS_BODY

/* Backward through one step, given the signature S before the step (levels
 * 1..N-1), z (scaled copies in zs: zs[j * d + c] = z[c] / j) and G = dL/dS'
 * on entry; on exit G = dL/dS and zb = dL/dz. */
static inline __attribute__((always_inline)) void SK_NAME(sb_step_back)(
    const SK_T *restrict S, SK_T *restrict G, const SK_T *restrict zs, SK_T *restrict zb,
    SK_T *restrict Bf, SK_T *restrict Bb, int d, int N, const int64_t *restrict lvl_off)
{
    const SK_T *z1 = zs + d;
    for (int c = 0; c < d; ++c) zb[c] = G[c];
    for (int k = 2; k <= N; ++k) {
        /* forward chain B_1..B_{k-1} of level k (Bf, level j at lvl_off[j]) */
        const SK_T *zk = zs + (int64_t)k * d;
        for (int a = 0; a < d; ++a) Bf[a] = zk[a] + S[a];
        int64_t n = d;
        for (int j = 2; j <= k - 1; ++j) {
            const SK_T *zj = zs + (int64_t)(k - j + 1) * d;
            const SK_T *Sj = S + lvl_off[j];
            const SK_T *Bp = Bf + lvl_off[j - 1];
            SK_T *Bj = Bf + lvl_off[j];
            for (int64_t q = 0; q < n; ++q) {
                const SK_T bq = Bp[q];
                for (int a = 0; a < d; ++a) Bj[q * d + a] = bq * zj[a] + Sj[q * d + a];
            }
            n *= d;
        }
        /* level k (n = d^(k-1) prefixes): Bb_{k-1} and zb from G_k */
        SK_NAME(sb_rows)(G + lvl_off[k], n, d, z1, Bf + lvl_off[k - 1], 1.0,
                         Bb + lvl_off[k - 1], zb, NULL);
        /* down the chain: j = k-1 .. 1 */
        for (int j = k - 1; j >= 2; --j) {
            n /= d; /* d^(j-1) */
            const double f = 1.0 / (k - j + 1);
            SK_NAME(sb_rows)(Bb + lvl_off[j], n, d, zs + (int64_t)(k - j + 1) * d,
                             Bf + lvl_off[j - 1], f, Bb + lvl_off[j - 1], zb,
                             G + lvl_off[j]);
        }
        /* j = 1: B_0 = 1 */
        const double f = 1.0 / k;
        for (int a = 0; a < d; ++a) {
            G[a] += Bb[a];
            zb[a] += Bb[a] * f;
        }
    }
}

/* Steps maxsteps-1 .. 0 of a block (backwards).  rows[l] points at the first
 * point of lane l's piece, nsteps[l] its number of steps (0: empty lane);
 * lanes beyond their last step see z = 0, the identity.  Before the step
 * that leaves point s+1 of a lane, the gradients injected at that point are
 * added to G. */
static inline __attribute__((always_inline)) void SK_NAME(sb_steps)(
    SK_NAME(sb_block) *restrict b, sb_ctx *restrict cx, int64_t blk,
    const double *const *rows, const int64_t *nsteps, int64_t *cur, int64_t maxsteps,
    int d, int N, const int64_t *restrict lvl_off)
{
    const int64_t siglen = cx->base.siglen, len = cx->base.len;
    for (int64_t s = maxsteps - 1; s >= 0; --s) {
        for (int l = 0; l < SK_L; ++l) {
            if (rows[l] == NULL) continue;
            int64_t it = blk * SK_L + l;
            int64_t pt = cx->base.start[it] + s + 1;
            int64_t e = cx->inj_ptr[it + 1];
            for (; cur[l] < e && cx->inj_pt[cur[l]] == pt; ++cur[l]) {
                const double *g = cx->grads + cx->inj_row[cur[l]] * siglen;
                for (int64_t w = 0; w < siglen; ++w)
                    SK_SET(b->G[w], l, SK_GET(b->G[w], l) + g[w]);
            }
        }
        for (int c = 0; c < d; ++c) {
            SK_T z;
            for (int l = 0; l < SK_L; ++l) {
                double v = 0.0;
                if (rows[l] != NULL && s < nsteps[l])
                    v = rows[l][(s + 1) * d + c] - rows[l][s * d + c];
                SK_SET(z, l, v);
            }
            b->zs[d + c] = z;
            b->zn[d + c] = -z;
            for (int j = 2; j <= N; ++j) {
                b->zs[(int64_t)j * d + c] = z * (1.0 / j);
                b->zn[(int64_t)j * d + c] = z * (-1.0 / j);
            }
        }
        /* the signature before the step: S (x) exp(-z), levels 1..N-1 */
        if (N >= 2)
            SK_NAME(sk_horner)(b->S, b->S + lvl_off[N - 1], b->zn, d, N - 1, lvl_off, b->H);
        SK_NAME(sb_step_back)(b->S, b->G, b->zs, b->zb, b->Bf, b->Bb, d, N, lvl_off);
        for (int l = 0; l < SK_L; ++l) {
            if (rows[l] == NULL || s >= nsteps[l]) continue;
            int64_t it = blk * SK_L + l;
            double *o = cx->dZ + (cx->base.path_idx[it] * (len - 1) + cx->base.start[it] + s) * d;
            for (int c = 0; c < d; ++c) o[c] = SK_GET(b->zb[c], l);
        }
    }
}

#define SB_STEPS_D(D) \
    case D: SK_NAME(sb_steps)(&bs, cx, blk, rows, nsteps, cur, maxsteps, D, N, lvl_off); break;

static void SK_NAME(sb_block_fn)(sk_ctx *base, int64_t blk)
{
    sb_ctx *cx = (sb_ctx *)base;
    const int d = base->d, N = base->N;
    const int64_t *lvl_off = base->lvl_off, siglen = base->siglen, n_items = base->n_items;
    const int64_t low = lvl_off[N];
    int64_t nsc = SK_NAME(sb_block_scratch)(d, N, siglen, lvl_off);
    int slot = sb_slot_acquire(cx);
    SK_T *mem = (SK_T *)(cx->work + slot * cx->block_bytes);
    memset(mem, 0, sizeof(SK_T) * nsc);
    SK_NAME(sb_block) bs;
    SK_NAME(sb_block_carve)(&bs, mem, d, N, siglen, lvl_off);
    const double *rows[SK_L];
    int64_t nsteps[SK_L], cur[SK_L];
    int64_t maxsteps = 0;
    for (int l = 0; l < SK_L; ++l) {
        int64_t it = blk * SK_L + l;
        if (it < n_items) {
            rows[l] = base->X + (base->path_idx[it] * base->len + base->start[it]) * d;
            nsteps[l] = base->end[it] - base->start[it];
            cur[l] = cx->inj_ptr[it];
            if (nsteps[l] > maxsteps) maxsteps = nsteps[l];
            if (low > 0) {
                const double *se = cx->Send + it * low;
                for (int64_t w = 0; w < low; ++w) SK_SET(bs.S[w], l, se[w]);
            }
        } else {
            rows[l] = NULL;
            nsteps[l] = 0;
            cur[l] = 0;
        }
    }
#ifndef SK_SPECIALISE
    SK_NAME(sb_steps)(&bs, cx, blk, rows, nsteps, cur, maxsteps, d, N, lvl_off);
#else
    switch (d) {
        SB_STEPS_D(1) SB_STEPS_D(2) SB_STEPS_D(3) SB_STEPS_D(4)
        SB_STEPS_D(5) SB_STEPS_D(6) SB_STEPS_D(7) SB_STEPS_D(8)
    default:
        SK_NAME(sb_steps)(&bs, cx, blk, rows, nsteps, cur, maxsteps, d, N, lvl_off);
    }
#endif
    sb_slot_release(cx, slot);
}
#undef SB_STEPS_D
