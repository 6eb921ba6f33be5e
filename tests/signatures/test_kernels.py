"""Signature kernels (hftsig.signatures.kernels): against an independent PDE solver, pysiglib,
truncated signatures and finite differences; Gram matrices, MMD, the permutation test and
scikit-learn."""
import itertools
import math
import subprocess
import sys

import numpy as np
import pytest

import hftsig
from hftsig import (
    sig_kernel,
    sig_kernel_backprop,
    sig_kernel_gram,
    sig_kernel_gram_backprop,
    sig_mmd,
    sig_mmd_test,
)
from hftsig.signatures.augmentations import time_augment


def rng(seed=0):
    return np.random.default_rng(seed)


def walks(n, length, dim, scale=0.3, seed=0):
    return np.cumsum(rng(seed).standard_normal((n, length, dim)) * scale, axis=1)


def reference_pde(x, y, ox=0, oy=0, static="linear", sigma=1.0):
    """Textbook solver: full refined grid, one cell at a time (no shared code with hftsig)."""
    if static == "linear":
        G = x @ y.T
    else:
        G = np.exp(-((x[:, None, :] - y[None, :, :]) ** 2).sum(-1) / sigma)
    M = G[1:, 1:] - G[1:, :-1] - G[:-1, 1:] + G[:-1, :-1]
    M = np.repeat(np.repeat(M, 2**ox, axis=0), 2**oy, axis=1) / 2.0 ** (ox + oy)
    K = np.ones((M.shape[0] + 1, M.shape[1] + 1))
    for i in range(M.shape[0]):
        for j in range(M.shape[1]):
            inc = M[i, j]
            K[i + 1, j + 1] = ((K[i + 1, j] + K[i, j + 1]) * (1 + inc / 2 + inc**2 / 12)
                               - K[i, j] * (1 - inc**2 / 12))
    return K[-1, -1]


# --- values ----------------------------------------------------------------------------

@pytest.mark.parametrize("static,sigma", [("linear", 1.0), ("rbf", 0.7), ("rbf", 0.01)])
@pytest.mark.parametrize("orders", [0, 1, (2, 0), (1, 3)])
@pytest.mark.parametrize("lengths", [(2, 2), (7, 5), (12, 9)])
def test_matches_independent_pde_solver(static, sigma, orders, lengths):
    ox, oy = orders if isinstance(orders, tuple) else (orders, orders)
    x = walks(1, lengths[0], 3, seed=1)[0]
    y = walks(1, lengths[1], 3, seed=2)[0]
    ours = sig_kernel(x, y, dyadic_order=orders, static_kernel=static, sigma=sigma)
    ref = reference_pde(x, y, ox, oy, static, sigma)
    assert ours == pytest.approx(ref, rel=1e-10, abs=1e-12)


def test_rbf_of_distant_points_underflows_to_zero():
    # exp(-|a - b|^2 / sigma) below the normal range: the static kernel is 0, the
    # source term vanishes and the signature kernel is 1, as with libm's exp
    x = np.array([[0.0, 0.0], [0.1, 0.0], [0.2, 0.1]])
    for shift in (18.5, 18.8, 19.0, 100.0):  # squared distances 2 * shift^2 around 708, and far
        k = sig_kernel(x, x + shift, static_kernel="rbf", sigma=1.0)
        assert k == pytest.approx(reference_pde(x, x + shift, static="rbf"), abs=1e-300)


@pytest.mark.parametrize("batch", [1, 2, 3, 4, 5, 9, 17])
def test_batch_of_pairs_matches_single_pairs(batch):
    # pairs are solved several to a SIMD block; partial blocks must not leak
    X = walks(batch, 6, 2, seed=3)
    Y = walks(batch, 8, 2, seed=4)
    out = sig_kernel(X, Y, dyadic_order=1)
    assert out.shape == (batch,)
    for i in range(batch):
        assert out[i] == pytest.approx(reference_pde(X[i], Y[i], 1, 1), rel=1e-10)


def test_gram_matrix_entries_symmetry_and_threads():
    X = walks(7, 9, 2, seed=5)
    Y = walks(5, 6, 2, seed=6)
    G = sig_kernel_gram(X, Y, dyadic_order=1)
    assert G.shape == (7, 5)
    for i, j in itertools.product(range(7), range(5)):
        assert G[i, j] == pytest.approx(reference_pde(X[i], Y[j], 1, 1), rel=1e-10)
    S = sig_kernel_gram(X, dyadic_order=1)
    assert np.array_equal(S, S.T)
    assert np.allclose(S, sig_kernel_gram(X, X.copy(), dyadic_order=1), rtol=1e-12)
    assert np.array_equal(sig_kernel_gram(X, Y, dyadic_order=1, n_jobs=2), G)
    assert np.array_equal(sig_kernel_gram(X, dyadic_order=1, n_jobs=-1), S)
    # unequal refinements: k(x, y) != k(y, x) in the scheme, so nothing is mirrored
    A = sig_kernel_gram(X, dyadic_order=(2, 0))
    assert A[1, 2] == pytest.approx(reference_pde(X[1], X[2], 2, 0), rel=1e-10)
    assert A[2, 1] == pytest.approx(reference_pde(X[2], X[1], 2, 0), rel=1e-10)


def test_gram_is_positive_semidefinite_once_refined():
    X = walks(30, 8, 2, scale=0.2, seed=0)
    for static in ("linear", "rbf"):
        G = sig_kernel_gram(X, dyadic_order=3, static_kernel=static)
        eig = np.linalg.eigvalsh(G)
        assert eig[0] > -1e-8 * eig[-1], static


def test_float32_and_integer_paths_are_converted():
    x = walks(1, 6, 2, seed=7)[0]
    y = walks(1, 5, 2, seed=8)[0]
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    assert sig_kernel(x32, y32) == sig_kernel(x32.astype(np.float64), y32.astype(np.float64))
    xi = np.array([[0, 0], [1, 2], [2, 1]])
    assert sig_kernel(xi, xi) == sig_kernel(xi.astype(float), xi.astype(float))


def test_one_point_paths_have_kernel_one_and_zero_gradient():
    x = np.array([[0.3, 0.1]])
    y = walks(1, 4, 2)[0]
    assert sig_kernel(x, y) == 1.0
    gx, gy = sig_kernel_backprop(1.0, x, y)
    assert not gx.any() and not gy.any()


# --- against the truncated signature ---------------------------------------------------

def test_converges_to_truncated_signature_inner_product():
    x = walks(1, 5, 2, scale=0.4, seed=9)[0]
    y = walks(1, 4, 2, scale=0.4, seed=10)[0]
    s = hftsig.sig(np.stack([x[:], np.vstack([y, y[-1:]])]), 14)  # y padded to a batch
    exact = 1.0 + float(s[0] @ s[1])
    truncated = [1.0 + float(a @ b) for a, b in
                 (hftsig.sig(np.stack([x, np.vstack([y, y[-1:]])]), n) for n in (2, 4, 8))]
    trunc_err = [abs(t - exact) for t in truncated]
    assert trunc_err[0] > trunc_err[1] > trunc_err[2]
    errs = [abs(sig_kernel(x, y, dyadic_order=o) - exact) for o in range(6)]
    # second-order scheme: each refinement cuts the error about four times
    for a, b in zip(errs[1:], errs[2:]):
        assert b < a / 3
    assert errs[5] < 1e-5 * exact


def test_straight_line_kernel_is_bessel_series():
    # a segment of length a: S = (1, a, a^2/2, ...), so k = sum a^(2k) / (k!)^2 = I_0(2a)
    a = 0.8
    exact = sum(a ** (2 * k) / math.factorial(k) ** 2 for k in range(30))
    x = np.array([[0.0], [a]])
    err7 = abs(sig_kernel(x, x, dyadic_order=7) - exact)
    err8 = abs(sig_kernel(x, x, dyadic_order=8) - exact)
    assert err8 < 1e-6 * exact and err8 < err7 / 3


# --- against pysiglib ------------------------------------------------------------------

@pytest.fixture(scope="module")
def pysiglib():
    pytest.importorskip("torch")  # pysiglib needs torch imported first
    return pytest.importorskip("pysiglib")


@pytest.mark.parametrize("orders", [0, 2, (1, 3)])
def test_matches_pysiglib(pysiglib, orders):
    X = walks(6, 20, 3, scale=0.2, seed=11)
    Y = walks(5, 13, 3, scale=0.2, seed=12)
    ours = sig_kernel_gram(X, Y, dyadic_order=orders)
    ref = pysiglib.sig_kernel_gram(X, Y, dyadic_order=orders)
    np.testing.assert_allclose(ours, ref, rtol=1e-10)
    ours = sig_kernel_gram(X, Y, dyadic_order=orders, static_kernel="rbf", sigma=0.5)
    ref = pysiglib.sig_kernel_gram(X, Y, dyadic_order=orders,
                                   static_kernel=pysiglib.RBFKernel(0.5))
    np.testing.assert_allclose(ours, ref, rtol=1e-10)
    Z = walks(6, 13, 3, scale=0.2, seed=13)
    np.testing.assert_allclose(sig_kernel(X, Z, dyadic_order=orders),
                               pysiglib.sig_kernel(X, Z, dyadic_order=orders), rtol=1e-10)


@pytest.mark.parametrize("orders", [0, (1, 2)])
@pytest.mark.parametrize("static,sigma", [("linear", 1.0), ("rbf", 0.5)])
def test_gradients_match_pysiglib(pysiglib, orders, static, sigma):
    X = walks(8, 30, 3, scale=0.1, seed=30)
    Y = walks(6, 20, 3, scale=0.1, seed=31)
    W = rng(32).standard_normal((8, 6))
    peer_static = pysiglib.RBFKernel(sigma) if static == "rbf" else None
    gX, gY = sig_kernel_gram_backprop(W, X, Y, dyadic_order=orders, static_kernel=static,
                                      sigma=sigma)
    rX, rY = pysiglib.sig_kernel_gram_backprop(W, X, Y, dyadic_order=orders,
                                               static_kernel=peer_static,
                                               left_deriv=True, right_deriv=True)
    np.testing.assert_allclose(gX, rX, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(gY, rY, rtol=1e-9, atol=1e-11)
    Z = walks(8, 20, 3, scale=0.1, seed=33)
    w = W[:, 0] + 0.5
    gx, gz = sig_kernel_backprop(w, X, Z, dyadic_order=orders, static_kernel=static,
                                 sigma=sigma)
    rx, rz = pysiglib.sig_kernel_backprop(w, X, Z, dyadic_order=orders,
                                          static_kernel=peer_static,
                                          left_deriv=True, right_deriv=True)
    np.testing.assert_allclose(gx, rx, rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(gz, rz, rtol=1e-9, atol=1e-11)


# --- gradients -------------------------------------------------------------------------

def _fd_grad(f, x, h=1e-6):
    g = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp = x.copy()
        xm = x.copy()
        xp[idx] += h
        xm[idx] -= h
        g[idx] = (f(xp) - f(xm)) / (2 * h)
    return g


@pytest.mark.parametrize("static", ["linear", "rbf"])
@pytest.mark.parametrize("orders", [0, (2, 1), (0, 2)])
def test_gradient_matches_finite_differences(static, orders):
    x = walks(1, 6, 2, seed=14)[0]
    y = walks(1, 5, 2, seed=15)[0]
    kw = dict(dyadic_order=orders, static_kernel=static, sigma=0.8)
    gx, gy = sig_kernel_backprop(1.5, x, y, **kw)
    fx = _fd_grad(lambda v: 1.5 * sig_kernel(v, y, **kw), x)
    fy = _fd_grad(lambda v: 1.5 * sig_kernel(x, v, **kw), y)
    np.testing.assert_allclose(gx, fx, atol=1e-7)
    np.testing.assert_allclose(gy, fy, atol=1e-7)


def test_batch_gradient_weights_each_pair():
    X = walks(5, 4, 2, seed=16)
    Y = walks(5, 6, 2, seed=17)
    w = np.array([1.0, -2.0, 0.5, 0.0, 3.0])
    gX, gY = sig_kernel_backprop(w, X, Y, dyadic_order=1)
    for i in range(5):
        gx, gy = sig_kernel_backprop(w[i], X[i], Y[i], dyadic_order=1)
        np.testing.assert_allclose(gX[i], gx, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(gY[i], gy, rtol=1e-12, atol=1e-14)


def test_gram_gradients_match_finite_differences():
    X = walks(3, 4, 2, seed=18)
    Y = walks(2, 5, 2, seed=19)
    W = rng(20).standard_normal((3, 2))
    gX, gY = sig_kernel_gram_backprop(W, X, Y, dyadic_order=1)
    fX = _fd_grad(lambda v: (W * sig_kernel_gram(v, Y, dyadic_order=1)).sum(), X)
    fY = _fd_grad(lambda v: (W * sig_kernel_gram(X, v, dyadic_order=1)).sum(), Y)
    np.testing.assert_allclose(gX, fX, atol=1e-7)
    np.testing.assert_allclose(gY, fY, atol=1e-7)
    V = rng(21).standard_normal((3, 3))  # not symmetric: both triangles count
    gS = sig_kernel_gram_backprop(V, X, dyadic_order=1, static_kernel="rbf")
    fS = _fd_grad(lambda v: (V * sig_kernel_gram(v, dyadic_order=1, static_kernel="rbf")).sum(), X)
    np.testing.assert_allclose(gS, fS, atol=1e-7)


# --- MMD and the permutation test ------------------------------------------------------

def test_mmd_matches_its_definition_and_vanishes_on_identical_samples():
    X = walks(6, 5, 2, seed=22)
    Y = walks(4, 7, 2, seed=23)
    kxx, kyy, kxy = sig_kernel_gram(X), sig_kernel_gram(Y), sig_kernel_gram(X, Y)
    u = ((kxx.sum() - np.trace(kxx)) / 30 + (kyy.sum() - np.trace(kyy)) / 12
         - 2 * kxy.mean())
    assert sig_mmd(X, Y) == pytest.approx(u, rel=1e-12)
    assert sig_mmd(X, Y, unbiased=False) == pytest.approx(
        kxx.mean() + kyy.mean() - 2 * kxy.mean(), rel=1e-12)
    assert abs(sig_mmd(X, X, unbiased=False)) < 1e-12
    assert abs(sig_mmd(X, X.copy(), unbiased=False, static_kernel="rbf")) < 1e-12


@pytest.mark.parametrize("unbiased", [True, False])
def test_permutation_null_is_made_of_relabellings(unbiased):
    # two paths per sample: the pooled four have exactly six splits, so every null value
    # must be the MMD of one of them
    X = walks(2, 5, 2, seed=24)
    Y = walks(2, 4, 2, seed=25) + 0.5
    Yp = np.concatenate([Y, np.repeat(Y[:, -1:], 1, axis=1)], axis=1)  # same length as X
    Z = np.concatenate([X, Yp])
    splits = {float(np.round(sig_mmd(Z[list(a)], Z[[i for i in range(4) if i not in a]],
                                     unbiased=unbiased), 10))
              for a in itertools.combinations(range(4), 2)}
    res = sig_mmd_test(X, Yp, n_permutations=50, random_state=3, unbiased=unbiased)
    assert res.statistic == pytest.approx(sig_mmd(X, Yp, unbiased=unbiased), rel=1e-12)
    assert {float(np.round(v, 10)) for v in res.null_distribution} <= splits
    assert res.pvalue == (1 + np.count_nonzero(res.null_distribution >= res.statistic - 1e-12)) / 51


def test_permutation_test_separates_regimes_and_not_one_regime():
    calm = time_augment(walks(40, 12, 1, scale=0.1, seed=26))
    wild = time_augment(walks(40, 12, 1, scale=0.25, seed=27))
    calm2 = time_augment(walks(40, 12, 1, scale=0.1, seed=28))
    kw = dict(static_kernel="rbf", sigma=0.5, n_permutations=300)
    assert sig_mmd_test(calm, wild, random_state=0, **kw).pvalue < 0.01
    assert sig_mmd_test(calm, calm2, random_state=0, **kw).pvalue > 0.05
    # seeded: the same call gives the same answer
    a = sig_mmd_test(calm, calm2, random_state=5, **kw)
    b = sig_mmd_test(calm, calm2, random_state=np.random.default_rng(5), **kw)
    assert a.pvalue == b.pvalue and np.array_equal(a.null_distribution, b.null_distribution)


# --- scikit-learn ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def regression_data():
    paths = walks(60, 8, 2, scale=0.2, seed=29)
    # the Levy area plus a product of increments: linear in the signature, so the
    # signature kernel should learn it from few samples
    inc = paths[:, -1] - paths[:, 0]
    area = hftsig.sig(paths, 2)[:, 3] - hftsig.sig(paths, 2)[:, 4]
    return paths, inc[:, 0] * inc[:, 1] + area


def test_sklearn_kernel_ridge_and_gaussian_process(regression_data):
    pytest.importorskip("sklearn")
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, WhiteKernel
    from sklearn.kernel_ridge import KernelRidge

    paths, target = regression_data
    rows = paths.reshape(len(paths), -1)
    kernel = hftsig.SignatureKernel(dim=2, dyadic_order=2)
    kr = KernelRidge(kernel=kernel, alpha=1e-4).fit(rows[:45], target[:45])
    assert kr.score(rows[45:], target[45:]) > 0.9
    gp = GaussianProcessRegressor(kernel=ConstantKernel() * kernel + WhiteKernel(1e-3),
                                  random_state=0).fit(rows[:45], target[:45])
    assert gp.score(rows[45:], target[45:]) > 0.9
    # fitted to the data: the posterior spread is well below the target's own spread
    _, std = gp.predict(rows[45:], return_std=True)
    assert np.all(np.isfinite(std)) and std.mean() < 0.2 * target.std()
    np.testing.assert_allclose(kernel.diag(rows[:5]), np.diag(kernel(rows[:5])), rtol=1e-12)
    np.testing.assert_allclose(kernel(rows[:4], rows[4:7]),
                               sig_kernel_gram(paths[:4], paths[4:7], dyadic_order=2))


def test_sklearn_svc_precomputed_and_callable(regression_data):
    pytest.importorskip("sklearn")
    from sklearn.svm import SVC

    paths, target = regression_data
    labels = (target > np.median(target)).astype(int)
    rows = paths.reshape(len(paths), -1)
    G = sig_kernel_gram(paths[:45], dyadic_order=2)
    Gt = sig_kernel_gram(paths[45:], paths[:45], dyadic_order=2)
    pre = SVC(kernel="precomputed", C=10.0).fit(G, labels[:45])
    assert pre.score(Gt, labels[45:]) > 0.7
    call = SVC(kernel=hftsig.SignatureKernel(dim=2, dyadic_order=2), C=10.0).fit(rows[:45],
                                                                                 labels[:45])
    assert np.array_equal(call.predict(rows[45:]), pre.predict(Gt))


def test_sklearn_kernel_rejects_rows_of_the_wrong_width():
    pytest.importorskip("sklearn")
    with pytest.raises(ValueError, match="X: rows of 5 numbers"):
        hftsig.SignatureKernel(dim=2)(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="static_kernel"):
        hftsig.SignatureKernel(dim=1, static_kernel="poly")(np.zeros((3, 4)))


def test_import_hftsig_does_not_import_sklearn_or_torch():
    code = ("import sys, hftsig; hftsig.sig_kernel; "
            "assert 'sklearn' not in sys.modules and 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True)


# --- bad input -------------------------------------------------------------------------

X3 = walks(3, 4, 2)


@pytest.mark.parametrize("call,exc,match", [
    (lambda: sig_kernel(np.zeros(4), np.zeros(4)), ValueError, "x: expected shape"),
    (lambda: sig_kernel(X3[0], np.zeros((4, 3))), ValueError, "y: dim 3"),
    (lambda: sig_kernel(X3, X3[0]), ValueError, "y: expected a batch"),
    (lambda: sig_kernel(X3, X3[:2]), ValueError, "y: batch of 2"),
    (lambda: sig_kernel(X3[0], np.full((3, 2), np.nan)), ValueError, "y: contains NaN"),
    (lambda: sig_kernel(X3[0].astype(str), X3[0]), TypeError, "x: expected a real"),
    (lambda: sig_kernel(X3[0], X3[0], dyadic_order=-1), ValueError, "dyadic_order"),
    (lambda: sig_kernel(X3[0], X3[0], dyadic_order=1.5), TypeError, "dyadic_order"),
    (lambda: sig_kernel(X3[0], X3[0], dyadic_order=True), TypeError, "dyadic_order"),
    (lambda: sig_kernel(X3[0], X3[0], dyadic_order=(1, 2, 3)), ValueError, "dyadic_order"),
    (lambda: sig_kernel(X3[0], X3[0], dyadic_order=40), ValueError, "dyadic_order"),
    (lambda: sig_kernel(X3[0], X3[0], static_kernel="poly"), ValueError, "static_kernel"),
    (lambda: sig_kernel(X3[0], X3[0], static_kernel=None), TypeError, "static_kernel"),
    (lambda: sig_kernel(X3[0], X3[0], static_kernel="rbf", sigma=0.0), ValueError, "sigma"),
    (lambda: sig_kernel(X3[0], X3[0], static_kernel="rbf", sigma="1"), TypeError, "sigma"),
    (lambda: sig_kernel(X3[0], X3[0], n_jobs=0), ValueError, "n_jobs"),
    (lambda: sig_kernel_gram(X3[0]), ValueError, "X: expected a batch"),
    (lambda: sig_kernel_gram(X3, np.zeros((2, 4, 5))), ValueError, "Y: dim 5"),
    (lambda: sig_kernel_backprop(np.ones(2), X3, X3), ValueError, "grad_out"),
    (lambda: sig_kernel_backprop([np.nan] * 3, X3, X3), ValueError, "grad_out"),
    (lambda: sig_kernel_gram_backprop(np.ones((3, 2)), X3), ValueError, "grad_out"),
    (lambda: sig_mmd(X3[:1], X3), ValueError, "X: needs at least 2"),
    (lambda: sig_mmd(X3, X3, unbiased="yes"), TypeError, "unbiased"),
    (lambda: sig_mmd_test(X3, X3, n_permutations=0), ValueError, "n_permutations"),
    (lambda: sig_mmd_test(X3, X3, random_state="seed"), TypeError, "random_state"),
])
def test_bad_input_names_the_argument(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


def test_memory_limit_refuses_before_allocating():
    from hftsig.signatures.signature import config_context

    with config_context(max_output_bytes=1 << 20):
        with pytest.raises(ValueError, match="X: 500500 pairs .*max_output_bytes"):
            sig_kernel_gram(np.zeros((1000, 5, 2)))
        with pytest.raises(ValueError, match="x: solving the PDE on a grid of 300 x 300"):
            sig_kernel_backprop(1.0, np.zeros((300, 2)), np.zeros((300, 2)))
        with pytest.raises(ValueError, match="dyadic_order: solving the PDE"):
            sig_kernel_backprop(1.0, np.zeros((60, 2)), np.zeros((60, 2)), dyadic_order=4)
        # what fits still runs
        assert sig_kernel_gram(X3).shape == (3, 3)
    with pytest.raises(ValueError, match="dyadic_order: a 2000 x 2000 point grid"):
        sig_kernel(np.zeros((2000, 1)), np.zeros((2000, 1)), dyadic_order=12)
