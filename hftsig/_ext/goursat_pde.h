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
 * Pairs are vectorised ACROSS pairs, as the signatures in sigkernels.h are
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
 * block of pairs, not O(Lx * Ly * 4^o).
 */
#ifndef HFTSIG_GOURSAT_PDE_H
#define HFTSIG_GOURSAT_PDE_H

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Pairs per block: 4 doubles fill an AVX2 register. */
#ifndef GP_VL
#define GP_VL 4
#endif

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

/* kappa(x_i, y_j) for j = 0..Ly-1, one vector per j */
static void gp_rbf_row(const gp_block *B, int64_t i, gp_vec *G)
{
    const int d = B->d;
    for (int64_t j = 0; j < B->Ly; ++j) {
        gp_vec g;
        for (int l = 0; l < GP_VL; ++l) {
            const double *xp = B->X + (B->xa[l] * B->Lx + i) * d;
            const double *yp = B->Y + (B->yb[l] * B->Ly + j) * d;
            double s = 0.0;
            for (int c = 0; c < d; ++c) {
                double t = xp[c] - yp[c];
                s += t * t;
            }
            g[l] = exp(-s * B->inv_sigma);
        }
        G[j] = g;
    }
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
    int rc = 0;
    if (!R || !M || !A || !Bc || (!rbf && !dy) || (rbf && (!G0 || !G1))) {
        rc = 1;
        goto done;
    }
    for (int64_t j = 0; j < cols; ++j) R[j] = gp_splat(1.0);
    if (rbf) gp_rbf_row(B, 0, G0);
    else gp_y_increments(B, dy);
    for (int64_t i = 0; i < nx; ++i) {
        if (rbf) {
            gp_rbf_row(B, i + 1, G1);
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
    free(R); free(M); free(A); free(Bc); free(dy); free(G0); free(G1);
    return rc;
}

/* Gradients of sum_l w[l] * k(x_xa[l], y_yb[l]) added to gx (nX, Lx, d) and
 * gy (nY, Ly, d) (gy may be gx: the symmetric Gram matrix).  Lanes with
 * w[l] == 0 contribute nothing.  Returns nonzero when out of memory. */
static int gp_block_backward(const gp_block *B, const double *w, double *gx, double *gy)
{
    const int64_t nx = B->Lx - 1, ny = B->Ly - 1;
    if (nx <= 0 || ny <= 0) return 0;
    const int d = B->d;
    const int ox = B->ox, oy = B->oy;
    const int64_t subx = (int64_t)1 << ox, suby = (int64_t)1 << oy;
    const int64_t cols = (ny << oy) + 1;
    const double scale = 1.0 / (double)((int64_t)1 << (ox + oy));
    const int rbf = B->kind == GP_RBF;
    gp_vec *M = (gp_vec *)gp_alloc((size_t)(nx * ny));      /* source terms */
    gp_vec *dM = (gp_vec *)gp_alloc((size_t)(nx * ny));     /* dk/dM */
    gp_vec *ck = (gp_vec *)gp_alloc((size_t)(B->Lx * cols)); /* rows at points */
    gp_vec *Kb = (gp_vec *)gp_alloc((size_t)((subx + 1) * cols)); /* one block */
    gp_vec *An = (gp_vec *)gp_alloc((size_t)(cols + 1));     /* adjoint row i+1 */
    gp_vec *Ac = (gp_vec *)gp_alloc((size_t)(cols + 1));     /* adjoint row i */
    gp_vec *A = (gp_vec *)gp_alloc((size_t)ny);
    gp_vec *Bc = (gp_vec *)gp_alloc((size_t)ny);
    gp_vec *Ap = (gp_vec *)gp_alloc((size_t)ny);             /* a of the row below */
    gp_vec *Bp = (gp_vec *)gp_alloc((size_t)ny);
    gp_vec *dy = (gp_vec *)gp_alloc((size_t)(rbf ? B->Ly : ny * d));
    gp_vec *G0 = rbf ? (gp_vec *)gp_alloc((size_t)B->Ly) : NULL;
    int rc = 0;
    if (!M || !dM || !ck || !Kb || !An || !Ac || !A || !Bc || !Ap || !Bp || !dy
            || (rbf && !G0)) {
        rc = 1;
        goto done;
    }
    /* forward sweep, keeping the rows at path points and the source terms */
    for (int64_t j = 0; j < cols; ++j) ck[j] = gp_splat(1.0);
    if (rbf) gp_rbf_row(B, 0, G0);
    else gp_y_increments(B, dy);
    for (int64_t i = 0; i < nx; ++i) {
        if (rbf) {
            gp_vec *G1 = dy;  /* dy is scratch of Ly vectors for rbf */
            gp_rbf_row(B, i + 1, G1);
            gp_source_row(B, i, NULL, G0, G1, M + i * ny);
            memcpy(G0, G1, sizeof(gp_vec) * (size_t)B->Ly);
        } else {
            gp_source_row(B, i, dy, NULL, NULL, M + i * ny);
        }
        gp_coefficients(M + i * ny, ny, scale, A, Bc);
        gp_vec *R = ck + (i + 1) * cols;
        memcpy(R, ck + i * cols, sizeof(gp_vec) * (size_t)cols);
        for (int64_t s = 0; s < subx; ++s) gp_sweep(R, A, Bc, ny, oy);
    }
    memset(dM, 0, sizeof(gp_vec) * (size_t)(nx * ny));
    memset(An, 0, sizeof(gp_vec) * (size_t)(cols + 1));
    /* adjoint sweep: An holds dk/dK of refined row i + 1, Ac of row i.  The
     * top row (i = nx * subx) is seeded by dk/dK[top][cols-1] = 1. */
    gp_coefficients(M + (nx - 1) * ny, ny, scale, A, Bc);
    An[cols - 1] = gp_splat(1.0);
    for (int64_t j = cols - 2; j >= 1; --j) An[j] = A[j >> oy] * An[j + 1];
    for (int64_t ii = nx - 1; ii >= 0; --ii) {
        gp_coefficients(M + ii * ny, ny, scale, A, Bc);
        if (ii > 0) gp_coefficients(M + (ii - 1) * ny, ny, scale, Ap, Bp);
        /* refined rows of this block, recomputed from the stored bottom row */
        memcpy(Kb, ck + ii * cols, sizeof(gp_vec) * (size_t)cols);
        for (int64_t s = 1; s < subx; ++s) {
            memcpy(Kb + s * cols, Kb + (s - 1) * cols, sizeof(gp_vec) * (size_t)cols);
            gp_sweep(Kb + s * cols, A, Bc, ny, oy);
        }
        memcpy(Kb + subx * cols, ck + (ii + 1) * cols, sizeof(gp_vec) * (size_t)cols);
        const gp_vec *Mi = M + ii * ny;
        gp_vec *dMi = dM + ii * ny;
        for (int64_t s = subx - 1; s >= 0; --s) {
            const gp_vec *Klo = Kb + s * cols, *Khi = Kb + (s + 1) * cols;
            /* dk/dI of every sub-cell of refined row i = ii * subx + s */
            for (int64_t jj = 0; jj < ny; ++jj) {
                const gp_vec I = Mi[jj] * scale;
                const gp_vec h = 0.5 + I * (1.0 / 6.0), q = I * (1.0 / 6.0);
                gp_vec acc = gp_splat(0.0);
                for (int64_t j = jj * suby; j < (jj + 1) * suby; ++j)
                    acc += An[j + 1] * ((Khi[j] + Klo[j + 1]) * h + Klo[j] * q);
                dMi[jj] += acc * scale;
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
    /* chain rule from dk/dM to the points of each lane's pair */
    for (int l = 0; l < GP_VL; ++l) {
        const double wl = w[l];
        if (wl == 0.0) continue;
        const double *xp = B->X + B->xa[l] * B->Lx * d;
        const double *yp = B->Y + B->yb[l] * B->Ly * d;
        double *gxp = gx + B->xa[l] * B->Lx * d;
        double *gyp = gy + B->yb[l] * B->Ly * d;
        if (!rbf) {
            for (int64_t i = 0; i < nx; ++i)
                for (int64_t j = 0; j < ny; ++j) {
                    const double W = wl * dM[i * ny + j][l];
                    for (int c = 0; c < d; ++c) {
                        const double dxc = xp[(i + 1) * d + c] - xp[i * d + c];
                        const double dyc = yp[(j + 1) * d + c] - yp[j * d + c];
                        gxp[(i + 1) * d + c] += W * dyc;
                        gxp[i * d + c] -= W * dyc;
                        gyp[(j + 1) * d + c] += W * dxc;
                        gyp[j * d + c] -= W * dxc;
                    }
                }
        } else {
            const double g2 = 2.0 * B->inv_sigma;
            for (int64_t i = 0; i <= nx; ++i)
                for (int64_t j = 0; j <= ny; ++j) {
                    /* dk/dkappa(x_i, y_j): kappa(x_i, y_j) enters the four
                     * cells around node (i, j) */
                    double W = 0.0;
                    if (i > 0 && j > 0) W += dM[(i - 1) * ny + (j - 1)][l];
                    if (i > 0 && j < ny) W -= dM[(i - 1) * ny + j][l];
                    if (i < nx && j > 0) W -= dM[i * ny + (j - 1)][l];
                    if (i < nx && j < ny) W += dM[i * ny + j][l];
                    if (W == 0.0) continue;
                    double s2 = 0.0;
                    for (int c = 0; c < d; ++c) {
                        const double t = xp[i * d + c] - yp[j * d + c];
                        s2 += t * t;
                    }
                    const double f = wl * W * exp(-s2 * B->inv_sigma) * g2;
                    for (int c = 0; c < d; ++c) {
                        const double t = xp[i * d + c] - yp[j * d + c];
                        gxp[i * d + c] -= f * t;
                        gyp[j * d + c] += f * t;
                    }
                }
        }
    }
done:
    free(M); free(dM); free(ck); free(Kb); free(An); free(Ac); free(A); free(Bc);
    free(Ap); free(Bp); free(dy); free(G0);
    return rc;
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

/* Adds the gradient of sum_p w[p] * k(x_xa[p], y_yb[p]) over block b's pairs. */
static int gp_backward_at(const gp_block *tmpl, const int64_t *xa, const int64_t *yb,
                          const double *w, int64_t npairs, int64_t b, double *gx,
                          double *gy)
{
    gp_block B;
    double wl[GP_VL];
    gp_fill_lanes(&B, tmpl, xa, yb, npairs, b);
    for (int l = 0; l < GP_VL; ++l)
        wl[l] = b * GP_VL + l < npairs ? w[b * GP_VL + l] : 0.0;
    return gp_block_backward(&B, wl, gx, gy);
}

#endif /* HFTSIG_GOURSAT_PDE_H */
