/* Signature kernels by the Goursat PDE (hand-written C, called from
 * _signature_kernel.pyx).
 *
 * k(s, t) = <S(x)_[0,s], S(y)_[0,t]> solves d^2k/dsdt = <x'(s), y'(t)> k with
 * k(0, .) = k(., 0) = 1 (Salvi, Cass, Foster, Lyons, Yang 2021).  For
 * piecewise linear paths the source term is constant on each cell (i, j) of
 * the grid of path points: M[i][j] = kappa(x_i+1, y_j+1) - kappa(x_i+1, y_j)
 * - kappa(x_i, y_j+1) + kappa(x_i, y_j) for the static kernel kappa (for the
 * linear kernel, <x_i+1 - x_i, y_j+1 - y_j>).  Each cell is cut into
 * 2^ox x 2^oy sub-cells (dyadic refinement) with I = M / 2^(ox+oy), and the
 * explicit second-order scheme of the `sigkernel` package and pysiglib,
 *     K[i+1][j+1] = (K[i+1][j] + K[i][j+1]) a - K[i][j] b,
 *     a = 1 + I/2 + I^2/12,  b = 1 - I^2/12,
 * is swept row by row in one buffer of grid values.
 *
 * Pairs are vectorised ACROSS pairs, as the signatures in signature_c.h are
 * across paths: a block of GP_VL pairs with the same lengths is solved at
 * once, every grid value one GCC vector holding it for the GP_VL pairs.  The
 * sweep's recurrence K[i+1][j+1] <- K[i+1][j] is a chain of dependent
 * multiply-adds; written as new = a * prev + (a * up - b * diag) it costs one
 * fused multiply-add of latency per vector, i.e. per GP_VL cells.
 *
 * Backpropagation (gp_block_backward) stores the grid only at the rows of
 * original path points (Lx rows of 2^oy (Ly - 1) + 1 values) plus the source
 * term M; the refined rows between two stored rows are recomputed while the
 * adjoint sweep runs from the far corner back: memory O(Lx * Ly * 2^oy) per
 * block of pairs, not O(Lx * Ly * 4^o), in one workspace per thread that its
 * blocks reuse.  The gradient with respect to the source term of each cell
 * row is chained to the path points as soon as the row is final.
 */
#ifndef HFTSIG_GOURSAT_PDE_H
#define HFTSIG_GOURSAT_PDE_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Pairs per block: the SIMD width in doubles where that measured best (CPU
 * time, 32 x 32 Gram of (100, 3) paths, dyadic order 2 / 0): with AVX-512,
 * 8 lanes 27 / 6.4 ms against 4 lanes' 49 / 9 ms (more independent chains
 * in flight); with AVX2, 4 lanes 53 / 9.7 ms, while 8 (two registers per
 * value) fell to 747 / 84 ms; with SSE2 only, 8 lanes 130 / 23 ms against
 * 4 lanes' 207 / 27 ms.  -DGP_VL=n overrides. */
#ifndef GP_VL
#if defined(__AVX512F__) || !defined(__AVX__)
#define GP_VL 8
#else
#define GP_VL 4
#endif
#endif

/* When a vector is wider than the target's registers (a portable build,
 * HFTSIG_NATIVE=0) GCC warns that passing it by value has another ABI; every
 * such function here is static to this module, so no ABI is shared. */
#pragma GCC diagnostic ignored "-Wpsabi"

typedef double gp_vec __attribute__((vector_size(8 * GP_VL), aligned(8 * GP_VL)));

#define GP_LINEAR 0
#define GP_RBF 1

/* One block of pairs: lane l pairs path xa[l] of X with path yb[l] of Y. */
typedef struct {
    const double *X, *Y;   /* (nX, Lx, d) and (nY, Ly, d), C order */
    int64_t Lx, Ly;
    int d;
    int kind;              /* GP_LINEAR or GP_RBF */
    double inv_sigma;      /* rbf: kappa = exp(-|x - y|^2 * inv_sigma) */
    int ox, oy;            /* dyadic orders of x and y */
    int64_t xa[GP_VL], yb[GP_VL];
} gp_block;

static inline gp_vec gp_splat(double x)
{
    gp_vec v;
    for (int l = 0; l < GP_VL; ++l) v[l] = x;
    return v;
}

static void *gp_alloc(size_t n_vec)
{
    size_t nbytes = (n_vec ? n_vec : 1) * sizeof(gp_vec);
    nbytes = (nbytes + 63) / 64 * 64;
    return aligned_alloc(64, nbytes);
}

typedef int64_t gp_ivec __attribute__((vector_size(8 * GP_VL), aligned(8 * GP_VL)));

/* exp(x) for x <= 0, every lane: Cody-Waite reduction x = k ln2 + r,
 * |r| <= ln2 / 2, and the Taylor polynomial of degree 12 (truncation error
 * below 2e-16 relative), scaled by 2^k built in the exponent bits.  Within
 * 2 ulp of libm's exp; below -708 (where 2^k would leave the normal range)
 * the result is 0, which is what an RBF kernel value that small is worth. */
static inline gp_vec gp_exp_nonpos(gp_vec x)
{
    const double magic = 6755399441055744.0;  /* 1.5 * 2^52: rounds to an integer */
    const gp_ivec tiny = x < -708.0;
    x = (gp_vec)((gp_ivec)x & ~tiny);  /* lanes set in tiny (all ones) become 0 */
    const gp_vec kf = (x * 1.4426950408889634 + magic) - magic;
    const gp_vec r = (x - kf * 0.693147180369123816490) - kf * 1.90821492927058770002e-10;
    gp_vec p = gp_splat(1.0 / 479001600.0);
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    const gp_ivec bits = (__builtin_convertvector(kf, gp_ivec) + 1023) << 52;
    p = p * (gp_vec)bits;
    return (gp_vec)((gp_ivec)p & ~tiny);
}

/* The points of every lane's y path in lane layout: Yv[j * d + c][l]. */
static void gp_y_points(const gp_block *B, gp_vec *Yv)
{
    const int d = B->d;
    for (int64_t j = 0; j < B->Ly; ++j)
        for (int c = 0; c < d; ++c)
            for (int l = 0; l < GP_VL; ++l)
                Yv[j * d + c][l] = B->Y[(B->yb[l] * B->Ly + j) * d + c];
}

/* kappa(x_i, y_j) for j = 0..Ly-1, one vector per j (Yv from gp_y_points) */
static void gp_rbf_row(const gp_block *B, int64_t i, const gp_vec *Yv, gp_vec *G)
{
    const int d = B->d;
    for (int64_t j = 0; j < B->Ly; ++j) G[j] = gp_splat(0.0);
    for (int c = 0; c < d; ++c) {
        gp_vec xc;
        for (int l = 0; l < GP_VL; ++l) xc[l] = B->X[(B->xa[l] * B->Lx + i) * d + c];
        for (int64_t j = 0; j < B->Ly; ++j) {
            const gp_vec t = xc - Yv[j * d + c];
            G[j] += t * t;
        }
    }
    for (int64_t j = 0; j < B->Ly; ++j) G[j] = gp_exp_nonpos(-G[j] * B->inv_sigma);
}

/* Source term of cell row i: M[j] for j = 0..Ly-2.  Linear kernel: from the
 * increments (dy holds the y increments, (Ly - 1) * d vectors).  RBF: Gi and
 * Gi1 hold the static kernel rows i and i + 1. */
static void gp_source_row(const gp_block *B, int64_t i, const gp_vec *dy,
                          const gp_vec *Gi, const gp_vec *Gi1, gp_vec *M)
{
    const int64_t ny = B->Ly - 1;
    const int d = B->d;
    if (B->kind == GP_RBF) {
        for (int64_t j = 0; j < ny; ++j)
            M[j] = Gi1[j + 1] - Gi1[j] - Gi[j + 1] + Gi[j];
        return;
    }
    gp_vec dx[64];
    gp_vec *dxp = d <= 64 ? dx : (gp_vec *)gp_alloc((size_t)d);
    for (int c = 0; c < d; ++c)
        for (int l = 0; l < GP_VL; ++l) {
            const double *xp = B->X + (B->xa[l] * B->Lx + i) * d;
            dxp[c][l] = xp[d + c] - xp[c];
        }
    for (int64_t j = 0; j < ny; ++j) {
        const gp_vec *dyj = dy + j * d;
        gp_vec s = dxp[0] * dyj[0];
        for (int c = 1; c < d; ++c) s += dxp[c] * dyj[c];
        M[j] = s;
    }
    if (dxp != dx) free(dxp);
}

static void gp_y_increments(const gp_block *B, gp_vec *dy)
{
    const int d = B->d;
    for (int64_t j = 0; j + 1 < B->Ly; ++j)
        for (int c = 0; c < d; ++c)
            for (int l = 0; l < GP_VL; ++l) {
                const double *yp = B->Y + (B->yb[l] * B->Ly + j) * d;
                dy[j * d + c][l] = yp[d + c] - yp[c];
            }
}

/* Scheme coefficients of one cell row from its source term. */
static inline void gp_coefficients(const gp_vec *M, int64_t n, double scale,
                                   gp_vec *A, gp_vec *Bc)
{
    for (int64_t j = 0; j < n; ++j) {
        gp_vec I = M[j] * scale;
        gp_vec I2 = I * I * (1.0 / 12.0);
        A[j] = 1.0 + 0.5 * I + I2;
        Bc[j] = 1.0 - I2;
    }
}

/* Advance the grid row R (ny * 2^oy + 1 values) by one refined row. */
static inline void gp_sweep(gp_vec *restrict R, const gp_vec *restrict A,
                            const gp_vec *restrict Bc, int64_t ny, int oy)
{
    const int64_t sub = (int64_t)1 << oy;
    gp_vec diag = R[0], prev = R[0];
    int64_t j = 0;
    for (int64_t jj = 0; jj < ny; ++jj) {
        const gp_vec a = A[jj], b = Bc[jj];
        for (int64_t s = 0; s < sub; ++s, ++j) {
            const gp_vec up = R[j + 1];
            const gp_vec nw = a * prev + (a * up - b * diag);
            diag = up;
            prev = nw;
            R[j + 1] = nw;
        }
    }
}

/* Kernel values of one block -> out[l].  Returns nonzero when out of memory. */
static int gp_block_forward(const gp_block *B, double *out)
{
    const int64_t nx = B->Lx - 1, ny = B->Ly - 1;
    if (nx <= 0 || ny <= 0) {
        for (int l = 0; l < GP_VL; ++l) out[l] = 1.0;
        return 0;
    }
    const int64_t cols = (ny << B->oy) + 1;
    const double scale = 1.0 / (double)((int64_t)1 << (B->ox + B->oy));
    const int rbf = B->kind == GP_RBF;
    gp_vec *R = (gp_vec *)gp_alloc((size_t)cols);
    gp_vec *M = (gp_vec *)gp_alloc((size_t)ny);
    gp_vec *A = (gp_vec *)gp_alloc((size_t)ny);
    gp_vec *Bc = (gp_vec *)gp_alloc((size_t)ny);
    gp_vec *dy = rbf ? NULL : (gp_vec *)gp_alloc((size_t)(ny * B->d));
    gp_vec *G0 = rbf ? (gp_vec *)gp_alloc((size_t)B->Ly) : NULL;
    gp_vec *G1 = rbf ? (gp_vec *)gp_alloc((size_t)B->Ly) : NULL;
    gp_vec *Yv = rbf ? (gp_vec *)gp_alloc((size_t)(B->Ly * B->d)) : NULL;
    int rc = 0;
    if (!R || !M || !A || !Bc || (!rbf && !dy) || (rbf && (!G0 || !G1 || !Yv))) {
        rc = 1;
        goto done;
    }
    for (int64_t j = 0; j < cols; ++j) R[j] = gp_splat(1.0);
    if (rbf) {
        gp_y_points(B, Yv);
        gp_rbf_row(B, 0, Yv, G0);
    }
    else gp_y_increments(B, dy);
    for (int64_t i = 0; i < nx; ++i) {
        if (rbf) {
            gp_rbf_row(B, i + 1, Yv, G1);
            gp_source_row(B, i, NULL, G0, G1, M);
            gp_vec *t = G0; G0 = G1; G1 = t;
        } else {
            gp_source_row(B, i, dy, NULL, NULL, M);
        }
        gp_coefficients(M, ny, scale, A, Bc);
        for (int s = 0; s < (1 << B->ox); ++s) gp_sweep(R, A, Bc, ny, B->oy);
    }
    for (int l = 0; l < GP_VL; ++l) out[l] = R[cols - 1][l];
done:
    free(R); free(M); free(A); free(Bc); free(dy); free(G0); free(G1); free(Yv);
    return rc;
}

/* Vectors of workspace gp_block_backward needs for blocks shaped like B. */
static int64_t gp_backward_workspace(const gp_block *B)
{
    const int64_t nx = B->Lx - 1, ny = B->Ly - 1;
    if (nx <= 0 || ny <= 0) return 0;
    const int64_t subx = (int64_t)1 << B->ox;
    const int64_t cols = (ny << B->oy) + 1;
    const int64_t d = B->d;
    return nx * ny                 /* M: source terms */
           + B->Lx * cols          /* ck: grid rows at the path points */
           + (subx + 1) * cols     /* Kb: the refined rows of one cell row */
           + 2 * (cols + 1)        /* An, Ac: adjoint rows */
           + 6 * ny                /* A, Bc, Ap, Bp, dMr, dMp */
           + 2 * B->Ly + ny * d    /* G0, G1 (rbf) or dy (linear) */
           + B->Ly * d             /* AY: gradient of y in lane layout */
           + B->Ly * d             /* Yv: y points in lane layout (rbf) */
           + 2 * d;                /* AX, dx */
}

/* Lane l of the gradients in lane layout, times w[l], added to a path's. */
static inline void gp_scatter(const gp_vec *V, int64_t n, int d, int l, double wl,
                              double *g)
{
    for (int64_t i = 0; i < n; ++i)
        for (int c = 0; c < d; ++c) g[i * d + c] += wl * V[i * d + c][l];
}

/* Gradients of sum_l w[l] * k(x_xa[l], y_yb[l]) added to gx (nX, Lx, d) and
 * gy (nY, Ly, d) (gy may be gx: the symmetric Gram matrix).  ws holds
 * gp_backward_workspace(B) vectors, 64-byte aligned. */
static void gp_block_backward(const gp_block *B, const double *w, double *gx, double *gy,
                              gp_vec *ws)
{
    const int64_t nx = B->Lx - 1, ny = B->Ly - 1;
    if (nx <= 0 || ny <= 0) return;
    const int d = B->d;
    const int ox = B->ox, oy = B->oy;
    const int64_t subx = (int64_t)1 << ox, suby = (int64_t)1 << oy;
    const int64_t cols = (ny << oy) + 1;
    const double scale = 1.0 / (double)((int64_t)1 << (ox + oy));
    const int rbf = B->kind == GP_RBF;
    gp_vec *M = ws;
    gp_vec *ck = M + nx * ny;
    gp_vec *Kb = ck + B->Lx * cols;
    gp_vec *An = Kb + (subx + 1) * cols;
    gp_vec *Ac = An + cols + 1;
    gp_vec *A = Ac + cols + 1, *Bc = A + ny, *Ap = Bc + ny, *Bp = Ap + ny;
    gp_vec *dMr = Bp + ny, *dMp = dMr + ny;  /* dk/dM of cell rows ii and ii + 1 */
    gp_vec *G0 = dMp + ny, *G1 = G0 + B->Ly;
    gp_vec *dy = G1 + B->Ly;
    gp_vec *AY = dy + ny * d;
    gp_vec *Yv = AY + B->Ly * d;
    gp_vec *AX = Yv + B->Ly * d, *dx = AX + d;

    /* forward sweep, keeping the rows at path points and the source terms */
    for (int64_t j = 0; j < cols; ++j) ck[j] = gp_splat(1.0);
    if (rbf) {
        gp_y_points(B, Yv);
        gp_rbf_row(B, 0, Yv, G0);
    } else {
        gp_y_increments(B, dy);
    }
    for (int64_t i = 0; i < nx; ++i) {
        if (rbf) {
            gp_rbf_row(B, i + 1, Yv, G1);
            gp_source_row(B, i, NULL, G0, G1, M + i * ny);
            gp_vec *t = G0; G0 = G1; G1 = t;
        } else {
            gp_source_row(B, i, dy, NULL, NULL, M + i * ny);
        }
        gp_coefficients(M + i * ny, ny, scale, A, Bc);
        gp_vec *R = ck + (i + 1) * cols;
        memcpy(R, ck + i * cols, sizeof(gp_vec) * (size_t)cols);
        for (int64_t s = 0; s < subx; ++s) gp_sweep(R, A, Bc, ny, oy);
    }
    for (int64_t j = 0; j < ny; ++j) dMp[j] = gp_splat(0.0);
    for (int64_t k = 0; k < B->Ly * d; ++k) AY[k] = gp_splat(0.0);
    /* adjoint sweep: An holds dk/dK of refined row i + 1, Ac of row i.  The
     * top row (i = nx * subx) is seeded by dk/dK[top][cols-1] = 1. */
    for (int64_t j = 0; j <= cols; ++j) An[j] = gp_splat(0.0);
    gp_coefficients(M + (nx - 1) * ny, ny, scale, A, Bc);
    An[cols - 1] = gp_splat(1.0);
    for (int64_t j = cols - 2; j >= 1; --j) An[j] = A[j >> oy] * An[j + 1];
    for (int64_t ii = nx - 1; ii >= -1; --ii) {
        if (ii >= 0) {
            gp_coefficients(M + ii * ny, ny, scale, A, Bc);
            if (ii > 0) gp_coefficients(M + (ii - 1) * ny, ny, scale, Ap, Bp);
            /* refined rows of this cell row, recomputed from the stored bottom row */
            memcpy(Kb, ck + ii * cols, sizeof(gp_vec) * (size_t)cols);
            for (int64_t s = 1; s < subx; ++s) {
                memcpy(Kb + s * cols, Kb + (s - 1) * cols, sizeof(gp_vec) * (size_t)cols);
                gp_sweep(Kb + s * cols, A, Bc, ny, oy);
            }
            memcpy(Kb + subx * cols, ck + (ii + 1) * cols, sizeof(gp_vec) * (size_t)cols);
            const gp_vec *Mi = M + ii * ny;
            for (int64_t jj = 0; jj < ny; ++jj) dMr[jj] = gp_splat(0.0);
            for (int64_t s = subx - 1; s >= 0; --s) {
                const gp_vec *Klo = Kb + s * cols, *Khi = Kb + (s + 1) * cols;
                /* dk/dI of every sub-cell of refined row i = ii * subx + s */
                for (int64_t jj = 0; jj < ny; ++jj) {
                    const gp_vec I = Mi[jj] * scale;
                    const gp_vec h = 0.5 + I * (1.0 / 6.0), q = I * (1.0 / 6.0);
                    gp_vec acc = gp_splat(0.0);
                    for (int64_t j = jj * suby; j < (jj + 1) * suby; ++j)
                        acc += An[j + 1] * ((Khi[j] + Klo[j + 1]) * h + Klo[j] * q);
                    dMr[jj] += acc * scale;
                }
                const int64_t i = ii * subx + s;
                if (i == 0) break;
                /* adjoint of refined row i: node (i, j) feeds cell (i, j-1) with a,
                 * cell (i-1, j) with a of the row below, and cell (i, j) with -b */
                const gp_vec *Ab = s > 0 ? A : Ap;
                Ac[cols - 1] = A[ny - 1] * An[cols - 1];
                for (int64_t j = cols - 2; j >= 1; --j)
                    Ac[j] = A[(j - 1) >> oy] * An[j] + Ab[j >> oy] * Ac[j + 1]
                            - Bc[j >> oy] * An[j + 1];
                gp_vec *t = An; An = Ac; Ac = t;
            }
        }
        /* chain rule, in lane layout, for what is final after cell row ii */
        if (!rbf) {
            if (ii < 0) break;
            /* M[ii][jj] = <dx_ii, dy_jj> */
            for (int c = 0; c < d; ++c)
                for (int l = 0; l < GP_VL; ++l) {
                    const double *xp = B->X + (B->xa[l] * B->Lx + ii) * d;
                    dx[c][l] = xp[d + c] - xp[c];
                }
            for (int c = 0; c < d; ++c) AX[c] = gp_splat(0.0);
            for (int64_t jj = 0; jj < ny; ++jj) {
                const gp_vec g = dMr[jj];
                for (int c = 0; c < d; ++c) {
                    AX[c] += g * dy[jj * d + c];
                    AY[jj * d + c] += g * dx[c];
                }
            }
            for (int l = 0; l < GP_VL; ++l) {
                if (w[l] == 0.0) continue;
                double *g = gx + (B->xa[l] * B->Lx + ii) * d;
                for (int c = 0; c < d; ++c) {
                    g[d + c] += w[l] * AX[c][l];
                    g[c] -= w[l] * AX[c][l];
                }
            }
        } else {
            /* kappa(x_i, y_j) enters the four cells around node (i, j); node
             * row i = ii + 1 is final once cell rows ii and ii + 1 are */
            const int64_t i = ii + 1;
            const gp_vec *below = ii >= 0 ? dMr : NULL, *above = i < nx ? dMp : NULL;
            const double g2 = 2.0 * B->inv_sigma;
            gp_rbf_row(B, i, Yv, G0);  /* kappa(x_i, y_j) (G0 is free after the forward sweep) */
            for (int c = 0; c < d; ++c) {
                AX[c] = gp_splat(0.0);
                for (int l = 0; l < GP_VL; ++l) dx[c][l] = B->X[(B->xa[l] * B->Lx + i) * d + c];
            }
            for (int64_t j = 0; j <= ny; ++j) {
                gp_vec W = gp_splat(0.0);
                if (below && j > 0) W += below[j - 1];
                if (below && j < ny) W -= below[j];
                if (above && j > 0) W -= above[j - 1];
                if (above && j < ny) W += above[j];
                const gp_vec f = W * G0[j] * g2;
                for (int c = 0; c < d; ++c) {
                    const gp_vec diff = dx[c] - Yv[j * d + c];
                    AX[c] -= f * diff;
                    AY[j * d + c] += f * diff;
                }
            }
            for (int l = 0; l < GP_VL; ++l)
                if (w[l] != 0.0)
                    gp_scatter(AX, 1, d, l, w[l], gx + (B->xa[l] * B->Lx + i) * d);
            if (ii < 0) break;
        }
        gp_vec *t = dMp; dMp = dMr; dMr = t;
    }
    for (int l = 0; l < GP_VL; ++l) {
        if (w[l] == 0.0) continue;
        double *g = gy + B->yb[l] * B->Ly * d;
        if (rbf) {
            gp_scatter(AY, B->Ly, d, l, w[l], g);
        } else {
            /* AY holds dk/d(dy); dy_jj = y_jj+1 - y_jj */
            for (int64_t jj = 0; jj < ny; ++jj)
                for (int c = 0; c < d; ++c) {
                    const double v = w[l] * AY[jj * d + c][l];
                    g[(jj + 1) * d + c] += v;
                    g[jj * d + c] -= v;
                }
        }
    }
}

/* Block b of a pair list (xa[p], yb[p]), p < npairs, with the shapes and
 * static kernel of tmpl; the last block is padded with its last pair. */
static void gp_fill_lanes(gp_block *B, const gp_block *tmpl, const int64_t *xa,
                          const int64_t *yb, int64_t npairs, int64_t b)
{
    *B = *tmpl;
    for (int l = 0; l < GP_VL; ++l) {
        int64_t p = b * GP_VL + l;
        if (p >= npairs) p = npairs - 1;
        B->xa[l] = xa[p];
        B->yb[l] = yb[p];
    }
}

static int gp_forward_at(const gp_block *tmpl, const int64_t *xa, const int64_t *yb,
                         int64_t npairs, int64_t b, double *out)
{
    gp_block B;
    double o[GP_VL] = {0};
    gp_fill_lanes(&B, tmpl, xa, yb, npairs, b);
    int rc = gp_block_forward(&B, o);
    for (int l = 0; l < GP_VL && b * GP_VL + l < npairs; ++l) out[b * GP_VL + l] = o[l];
    return rc;
}

/* Adds the gradient of sum_p w[p] * k(x_xa[p], y_yb[p]) over block b's pairs;
 * ws: gp_backward_workspace(tmpl) vectors of this thread, 64-byte aligned. */
static void gp_backward_at(const gp_block *tmpl, const int64_t *xa, const int64_t *yb,
                           const double *w, int64_t npairs, int64_t b, double *gx,
                           double *gy, double *ws)
{
    gp_block B;
    double wl[GP_VL];
    gp_fill_lanes(&B, tmpl, xa, yb, npairs, b);
    int any = 0;
    for (int l = 0; l < GP_VL; ++l) {
        wl[l] = b * GP_VL + l < npairs ? w[b * GP_VL + l] : 0.0;
        any |= wl[l] != 0.0;
    }
    if (any) gp_block_backward(&B, wl, gx, gy, (gp_vec *)ws);
}

#endif /* HFTSIG_GOURSAT_PDE_H */
