"""Gradients of signatures (hftsig.signatures.gradients) against exact derivatives and iisignature.

Exact references: signatures are polynomials in the path, so the complex-step
derivative ``Im f(x + i h v) / h`` (h = 1e-30) of a plain numpy signature
computed in complex arithmetic is exact to rounding, with no cancellation;
it checks every gradient to ~1e-12.  iisignature's backprop functions compute
in float64 but return float32 (bottler/iisignature#7), so they are compared
at float32 precision; central differences check every option.
"""
import itertools
import tracemalloc

import numpy as np
import pytest

import hftsig
from hftsig import logsig, sig, sigcombine, sigjoin, siglength
from hftsig.signatures.gradients import (
    logsigbackprop,
    sig_to_logsig_backprop,
    sigbackprop,
    sigcombinebackprop,
    sigjoinbackprop,
    sigscale,
    sigscalebackprop,
)
from hftsig.signatures.logsignature import sig_to_logsig
from iisignature_reference import iisignature  # iisignature 0.24, or its stored outputs

EXACT = 1e-10
H = 1e-30  # complex step


def rng(seed=0):
    return np.random.default_rng(seed)


def close(a, b, rtol=EXACT):
    scale = max(1.0, float(np.abs(b).max()) if np.size(b) else 1.0)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale)


def close_f32(a, b):
    """Against iisignature's float32 outputs."""
    close(a, b, rtol=2e-6)


def walk(shape, seed=0, scale=1.0):
    x = rng(seed).standard_normal(shape)
    return np.cumsum(x * scale / np.sqrt(shape[-2]), axis=-2)


# --- a reference signature algebra that works in complex arithmetic ------------

def split(s, dim, depth):
    """Flat tensor (level 0 left out) -> list of levels, index = level (0: the scalar 0)."""
    out, start = [np.zeros(1, dtype=s.dtype)], 0
    for k in range(1, depth + 1):
        out.append(s[start:start + dim**k])
        start += dim**k
    return out


def join_levels(levels):
    return np.concatenate(levels[1:])


def tensor_mul(a, b, depth, a0=1.0, b0=1.0):
    """(a0 + a) (x) (b0 + b), levels 1..depth (level 0 dropped)."""
    A = [np.full(1, a0, dtype=complex)] + list(a[1:])
    B = [np.full(1, b0, dtype=complex)] + list(b[1:])
    return [np.zeros(1, dtype=complex)] + [
        sum(np.outer(A[i], B[k - i]).ravel() for i in range(k + 1)) for k in range(1, depth + 1)]


def tensor_exp_segment(z, depth):
    levels = [np.ones(1, dtype=complex)]
    for k in range(1, depth + 1):
        levels.append(np.outer(levels[-1], z).ravel() / k)
    levels[0] = np.zeros(1, dtype=complex)
    return levels


def ref_sig(x, depth):
    """Signature of one path (length, dim), any dtype, by Chen's identity."""
    dim = x.shape[1]
    S = [np.zeros(dim**k, dtype=complex) for k in range(depth + 1)]
    for t in range(x.shape[0] - 1):
        S = tensor_mul(S, tensor_exp_segment(x[t + 1] - x[t], depth), depth)
    return join_levels(S)


def tensor_log(s, dim, depth):
    x = split(s.astype(complex), dim, depth)
    out = [np.zeros(dim**k, dtype=complex) for k in range(depth + 1)]
    power = x
    for n in range(1, depth + 1):
        for k in range(1, depth + 1):
            out[k] = out[k] + (-1.0) ** (n + 1) / n * power[k]
        power = tensor_mul(power, x, depth, a0=0.0, b0=0.0)
    return join_levels(out)


def tensor_exp(v, dim, depth):
    x = split(v.astype(complex), dim, depth)
    out = [np.zeros(dim**k, dtype=complex) for k in range(depth + 1)]
    power = x
    fact = 1.0
    for n in range(1, depth + 1):
        fact *= n
        for k in range(1, depth + 1):
            out[k] = out[k] + power[k] / fact
        power = tensor_mul(power, x, depth, a0=0.0, b0=0.0)
    return join_levels(out)


def cs_grad(f, x):
    """Exact gradient of the real scalar f at x by complex steps."""
    out = np.zeros(x.shape)
    for idx in np.ndindex(*x.shape):
        xc = x.astype(complex)
        xc[idx] += 1j * H
        out[idx] = f(xc).imag / H
    return out


def ref_transform(x, lead_lag, time_aug, basepoint):
    """The transforms of hftsig.sig, on complex arrays (one path)."""
    if lead_lag:
        lead = np.repeat(x, 2, axis=0)[1:]
        lag = np.repeat(x, 2, axis=0)[:-1]
        x = np.concatenate([lead, lag], axis=1)
    if time_aug:
        t = np.linspace(0.0, 1.0, x.shape[0]) if x.shape[0] > 1 else np.zeros(1)
        x = np.concatenate([x, t[:, None]], axis=1)
    if basepoint:
        x = np.concatenate([np.zeros((1, x.shape[1])), x], axis=0)
    return x


# --- sigbackprop -----------------------------------------------------------------

@pytest.mark.parametrize("dim,depth", [(1, 1), (1, 5), (2, 1), (2, 2), (2, 6), (3, 4),
                                       (4, 3), (5, 3), (7, 2)])
@pytest.mark.parametrize("length", [2, 3, 12])
def test_sigbackprop_is_exact(dim, depth, length):
    x = walk((length, dim), seed=dim * 10 + depth)
    g = rng(1).standard_normal(siglength(dim, depth))
    close(sigbackprop(g, x, depth), cs_grad(lambda xc: g @ ref_sig(xc, depth), x))


@pytest.mark.parametrize("batch", [1, 2, 3, 4, 5, 9, 17])
@pytest.mark.parametrize("dim,depth", [(2, 5), (3, 4), (5, 3), (9, 2), (10, 3)])
def test_sigbackprop_batch_matches_iisignature(batch, dim, depth):
    x = walk((batch, 30, dim), seed=batch)
    g = rng(2).standard_normal((batch, siglength(dim, depth)))
    ours = sigbackprop(g, x, depth)
    assert ours.shape == x.shape and ours.dtype == np.float64
    close_f32(ours, iisignature.sigbackprop(g, x, depth))
    for b in range(batch):  # each path's gradient is its own
        close(ours[b], sigbackprop(g[b], x[b], depth), rtol=1e-12)


@pytest.mark.parametrize("n_jobs", [1, 2, -1])
@pytest.mark.parametrize("shape,depth", [((1, 700, 2), 6), ((2, 500, 3), 4), ((3, 300, 4), 3),
                                         ((1, 400, 1), 7), ((5, 200, 2), 4)])
def test_long_paths_cut_into_pieces_are_exact(shape, depth, n_jobs):
    # small batches are cut into pieces whose gradients come from Chen's identity
    x = walk(shape, seed=3)
    g = rng(4).standard_normal((shape[0], siglength(shape[2], depth)))
    v = rng(5).standard_normal(shape)
    ours = sigbackprop(g, x, depth, n_jobs=n_jobs)
    for b in range(shape[0]):
        exact = (g[b] @ ref_sig(x[b] + 1j * H * v[b], depth)).imag / H
        close(np.sum(ours[b] * v[b]), exact)
    close_f32(ours, iisignature.sigbackprop(g, x, depth))


@pytest.mark.parametrize("lead_lag,time_aug,basepoint",
                         list(itertools.product([False, True], repeat=3)))
def test_transforms_map_back_to_the_original_points(lead_lag, time_aug, basepoint):
    x = walk((2, 5, 2), seed=6)
    opts = dict(lead_lag=lead_lag, time_aug=time_aug, basepoint=basepoint)
    depth = 3
    s = sig(x, depth, **opts)
    g = rng(7).standard_normal(s.shape)
    ours = sigbackprop(g, x, depth, **opts)
    assert ours.shape == x.shape
    for b in range(2):
        ref = cs_grad(lambda xc: g[b] @ ref_sig(
            ref_transform(xc, lead_lag, time_aug, basepoint), depth), x[b])
        close(ours[b], ref)


def central_differences(f, x, h=1e-6):
    out = np.zeros(x.shape)
    for idx in np.ndindex(*x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        out[idx] = (f(xp) - f(xm)) / (2 * h)
    return out


OPTION_SETS = [dict(), dict(basepoint=True), dict(time_aug=True), dict(lead_lag=True),
               dict(lead_lag=True, time_aug=True, basepoint=True), dict(stream=True),
               dict(at=[3, 0, -1, 3]), dict(stream=True, lead_lag=True, basepoint=True),
               dict(at=[2], time_aug=True)]


@pytest.mark.parametrize("opts", OPTION_SETS)
def test_sigbackprop_central_differences(opts):
    x = walk((2, 5, 2), seed=8)
    depth = 3
    g = rng(9).standard_normal(sig(x, depth, **opts).shape)
    grad = sigbackprop(g, x, depth, **opts)
    fd = central_differences(lambda y: float(np.sum(g * sig(y, depth, **opts))), x)
    close(grad, fd, rtol=1e-6)


def test_stream_equals_the_sum_over_prefixes():
    x = walk((6, 2), seed=10)
    depth = 4
    g = rng(11).standard_normal((5, siglength(2, depth)))
    expected = np.zeros_like(x)
    for i in range(1, 6):
        expected[:i + 1] += sigbackprop(g[i - 1], x[:i + 1], depth)
    close(sigbackprop(g, x, depth, stream=True), expected, rtol=1e-12)


def test_at_with_repeats_zero_and_negative_indices():
    x = walk((3, 9, 3), seed=12)
    depth = 3
    at = [5, 0, -2, 5, 2]
    g = rng(13).standard_normal((3, len(at), siglength(3, depth)))
    expected = np.zeros_like(x)
    for j, i in enumerate([5, 0, 7, 5, 2]):
        expected[:, :i + 1] += sigbackprop(g[:, j], x[:, :i + 1], depth)
    close(sigbackprop(g, x, depth, at=at), expected, rtol=1e-12)
    assert np.array_equal(sigbackprop(g[:, 1:2], x, depth, at=[0]), np.zeros_like(x))


@pytest.mark.parametrize("n_jobs", [1, 2])
@pytest.mark.parametrize("batch", [1, 2, 6])
def test_at_many_dates_on_long_paths(batch, n_jobs):
    # a small batch is cut at the dates; a large one runs whole paths
    x = walk((batch, 600, 3), seed=42)
    depth = 4
    dates = np.linspace(11, 599, 50).astype(np.int64)
    g = rng(43).standard_normal((batch, 50, siglength(3, depth)))
    expected = np.zeros_like(x)
    for j, i in enumerate(dates):
        expected[:, :i + 1] += sigbackprop(g[:, j], x[:, :i + 1], depth)
    close(sigbackprop(g, x, depth, at=dates, n_jobs=n_jobs), expected, rtol=1e-11)


def test_degenerate_shapes():
    g = np.ones(siglength(2, 3))
    assert np.array_equal(sigbackprop(g, np.ones((1, 2)), 3), np.zeros((1, 2)))
    assert sigbackprop(np.zeros((0, 14)), np.zeros((0, 5, 2)), 3).shape == (0, 5, 2)
    assert np.array_equal(sigbackprop(np.zeros((4, 14)), walk((4, 5, 2)), 3),
                          np.zeros((4, 5, 2)))


def test_float32_and_integer_paths():
    x = walk((3, 20, 2), seed=14)
    g = rng(15).standard_normal((3, siglength(2, 4)))
    x32 = x.astype(np.float32)
    ours = sigbackprop(g, x32, 4)
    assert ours.dtype == np.float64
    close(ours, sigbackprop(g, x32.astype(np.float64), 4), rtol=1e-14)
    close(sigbackprop(g.astype(np.float32), x32, 4),
          sigbackprop(g.astype(np.float32).astype(np.float64), x32, 4), rtol=1e-14)
    xi = np.arange(12).reshape(6, 2) % 5
    close(sigbackprop(g[0], xi, 4), sigbackprop(g[0], xi.astype(float), 4), rtol=1e-14)


def test_threads_agree():
    x = walk((13, 80, 3), seed=16)
    g = rng(17).standard_normal((13, siglength(3, 4)))
    close(sigbackprop(g, x, 4, n_jobs=2), sigbackprop(g, x, 4), rtol=1e-12)
    ga = rng(41).standard_normal((13, 3, siglength(3, 4)))
    close(sigbackprop(ga, x, 4, at=[70, 10, 40], n_jobs=-1),
          sigbackprop(ga, x, 4, at=[70, 10, 40]), rtol=1e-12)


def test_memory_does_not_grow_with_length_times_siglength():
    # 100 000 points, siglength 126: a stored signature per step would be ~100 MB
    length, dim, depth = 100_000, 2, 6
    x = walk((length, dim), seed=18)
    g = rng(19).standard_normal(siglength(dim, depth))
    sigbackprop(g, x[:100], depth)  # first call: imports, caches
    tracemalloc.start()
    try:
        out = sigbackprop(g, x, depth)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    per_step = length * siglength(dim, depth) * 8
    # the output and one buffer of increment gradients, each x.nbytes, plus O(siglength)
    assert peak < 3 * x.nbytes + (1 << 20), (peak, x.nbytes)
    assert peak < per_step / 10
    close_f32(out, iisignature.sigbackprop(g, x, depth))


@pytest.mark.parametrize("call,exc,name", [
    (lambda: sigbackprop(np.ones(5), walk((4, 2)), 2), ValueError, "grad_out"),
    (lambda: sigbackprop(np.ones((2, 6)), walk((4, 2)), 2), ValueError, "grad_out"),
    (lambda: sigbackprop(np.ones((3, 6)), walk((2, 4, 2)), 2), ValueError, "grad_out"),
    (lambda: sigbackprop(np.array(["a"] * 6), walk((4, 2)), 2), TypeError, "grad_out"),
    (lambda: sigbackprop(np.full(6, np.nan), walk((4, 2)), 2), ValueError, "grad_out"),
    (lambda: sigbackprop(np.ones(6), np.ones(4), 2), ValueError, "path"),
    (lambda: sigbackprop(np.ones(6), np.full((4, 2), np.inf), 2), ValueError, "path"),
    (lambda: sigbackprop(np.ones(6), np.array([["a", "b"]]), 2), TypeError, "path"),
    (lambda: sigbackprop(np.ones(6), walk((4, 2)), 0), ValueError, "depth"),
    (lambda: sigbackprop(np.ones(6), walk((4, 2)), 2.0), TypeError, "depth"),
    (lambda: sigbackprop(np.ones(6), walk((4, 2)), 2, n_jobs=0), ValueError, "n_jobs"),
    (lambda: sigbackprop(np.ones((3, 6)), walk((4, 2)), 2, stream=True, at=[1]),
     ValueError, "stream"),
    (lambda: sigbackprop(np.ones((1, 6)), walk((4, 2)), 2, at=[4]), ValueError, "at"),
    (lambda: sigbackprop(np.ones((2, 6)), walk((4, 2)), 2, stream=True), ValueError,
     "grad_out"),
    (lambda: sigbackprop(np.ones(6), walk((4, 2)), 2, lead_lag=True), ValueError,
     "grad_out"),
    (lambda: logsigbackprop(np.ones(3), walk((4, 2)), 2, basis="words"), ValueError, "basis"),
    (lambda: logsigbackprop(np.ones(6), walk((4, 2)), 2), ValueError, "grad_out"),
    (lambda: sigcombinebackprop(np.ones(6), np.ones(6), np.ones((2, 6)), 2, 2), ValueError,
     "s2"),
    (lambda: sigcombinebackprop(np.ones(5), np.ones(6), np.ones(6), 2, 2), ValueError,
     "grad_out"),
    (lambda: sigcombinebackprop(np.ones(6), np.ones(5), np.ones(6), 2, 2), ValueError, "s1"),
    (lambda: sigjoinbackprop(np.ones(6), np.ones(6), np.ones(3), 2), ValueError, "s"),
    (lambda: sigjoinbackprop(np.ones((2, 6)), np.ones((2, 6)), np.ones((3, 2)), 2),
     ValueError, "segment"),
    (lambda: sigjoinbackprop(np.ones(6), np.ones(6), np.ones(2), 2, ), None, None),
    (lambda: sigscale(np.ones(6), np.ones(3), 2), ValueError, "s"),
    (lambda: sigscale(np.ones((2, 6)), np.ones((3, 2)), 2), ValueError, "scales"),
    (lambda: sigscalebackprop(np.ones(5), np.ones(6), np.ones(2), 2), ValueError, "grad_out"),
    (lambda: sig_to_logsig_backprop(np.ones(3), np.ones(5), 2, 2), ValueError, "signature"),
])
def test_bad_input_names_the_argument(call, exc, name):
    if exc is None:  # a well-formed call, to show the cases above fail for their stated reason
        call()
        return
    with pytest.raises(exc, match=f"^{name}:"):
        call()


# --- logsigbackprop -----------------------------------------------------------------

@pytest.mark.parametrize("dim,depth", [(2, 1), (2, 2), (2, 4), (3, 3), (3, 4), (4, 3),
                                       (2, 6)])
@pytest.mark.parametrize("basis", ["lyndon", "expanded"])
def test_logsigbackprop_matches_iisignature(dim, depth, basis):
    x = walk((3, 10, dim), seed=dim + depth, scale=2.0)
    g = rng(20).standard_normal(logsig(x, depth, basis=basis).shape)
    # hftsig's Lyndon basis is iisignature's default method; "expanded" is its "x"
    if basis == "lyndon":
        theirs = iisignature.logsigbackprop(g, x, iisignature.prepare(dim, depth))
    else:
        theirs = iisignature.logsigbackprop(g, x, iisignature.prepare(dim, depth, "x"), "x")
    close_f32(logsigbackprop(g, x, depth, basis=basis), theirs)


@pytest.mark.parametrize("dim,depth", [(2, 3), (3, 4), (2, 5)])
@pytest.mark.parametrize("basis", ["lyndon", "expanded"])
def test_logsigbackprop_is_exact(dim, depth, basis):
    x = walk((6, dim), seed=21, scale=2.0)
    g = rng(22).standard_normal(logsig(x, depth, basis=basis).shape)
    ours = logsigbackprop(g, x, depth, basis=basis)
    for seed in range(3):
        v = rng(23 + seed).standard_normal(x.shape)
        # the tangent of log(sig) is exact by complex step; the Lyndon coordinates
        # are a fixed linear map of it, applied by hftsig itself to exp(tangent)
        tangent = tensor_log(ref_sig(x + 1j * H * v, depth), dim, depth).imag / H
        if basis == "lyndon":
            tangent = sig_to_logsig(tensor_exp(tangent, dim, depth).real, dim, depth)
        close(np.sum(ours * v), g @ tangent)


@pytest.mark.parametrize("opts", [dict(), dict(stream=True), dict(at=[4, 2]),
                                  dict(lead_lag=True, time_aug=True, basepoint=True)])
@pytest.mark.parametrize("basis", ["lyndon", "expanded"])
def test_logsigbackprop_central_differences(opts, basis):
    x = walk((2, 5, 2), seed=24, scale=2.0)
    depth = 3
    g = rng(25).standard_normal(logsig(x, depth, basis=basis, **opts).shape)
    grad = logsigbackprop(g, x, depth, basis=basis, **opts)
    fd = central_differences(
        lambda y: float(np.sum(g * logsig(y, depth, basis=basis, **opts))), x)
    close(grad, fd, rtol=1e-6)


def test_sig_to_logsig_backprop_keeps_leading_axes():
    x = walk((2, 3, 7, 2), seed=26).reshape(6, 7, 2)
    s = sig(x, 3).reshape(2, 3, -1)
    g = rng(27).standard_normal((2, 3, 5))
    out = sig_to_logsig_backprop(g, s, 2, 3)
    assert out.shape == s.shape
    close(out[1, 2], sig_to_logsig_backprop(g[1, 2], s[1, 2], 2, 3), rtol=1e-14)
    close(sig_to_logsig_backprop(g, s, 2, 3, n_jobs=2), out, rtol=1e-14)
    close(logsigbackprop(g.reshape(6, 5), x, 3, n_jobs=-1), logsigbackprop(g.reshape(6, 5), x, 3),
          rtol=1e-13)


# --- sigcombine, sigjoin, sigscale ----------------------------------------------------

@pytest.mark.parametrize("dim,depth", [(1, 3), (2, 4), (3, 3), (4, 2)])
def test_sigcombinebackprop(dim, depth):
    a = sig(walk((3, 6, dim), seed=28), depth)
    b = sig(walk((3, 5, dim), seed=29), depth)
    g = rng(30).standard_normal(a.shape)
    da, db = sigcombinebackprop(g, a, b, dim, depth)
    ia, ib = iisignature.sigcombinebackprop(g, a, b, dim, depth)
    close_f32(da, ia)
    close_f32(db, ib)

    def combine(u, w):
        return join_levels(tensor_mul([None] + split(u, dim, depth)[1:],
                                      [None] + split(w, dim, depth)[1:], depth))
    for i in range(3):
        close(da[i], cs_grad(lambda u: g[i] @ combine(u, b[i].astype(complex)), a[i]))
        close(db[i], cs_grad(lambda w: g[i] @ combine(a[i].astype(complex), w), b[i]))
        close(sigcombine(a[i], b[i], dim, depth), combine(a[i], b[i]).real, rtol=1e-12)
    # central differences through hftsig.sigcombine itself
    close(da[0], central_differences(lambda u: float(g[0] @ sigcombine(u, b[0], dim, depth)),
                                     a[0]), rtol=1e-6)
    close(db[0], central_differences(lambda w: float(g[0] @ sigcombine(a[0], w, dim, depth)),
                                     b[0]), rtol=1e-6)
    one_a, one_b = sigcombinebackprop(g[0], a[0], b[0], dim, depth)
    close(one_a, da[0], rtol=1e-14)
    close(one_b, db[0], rtol=1e-14)


@pytest.mark.parametrize("dim,depth", [(1, 4), (2, 5), (3, 3), (5, 2)])
def test_sigjoinbackprop(dim, depth):
    s = sig(walk((4, 6, dim), seed=31), depth)
    z = rng(32).standard_normal((4, dim))
    g = rng(33).standard_normal(s.shape)
    ds, dz = sigjoinbackprop(g, s, z, depth)
    ids, idz = iisignature.sigjoinbackprop(g, s, z, depth)
    close_f32(ds, ids)
    close_f32(dz, idz)

    def join(u, w):
        return join_levels(tensor_mul([None] + split(u, dim, depth)[1:],
                                      tensor_exp_segment(w, depth), depth))
    for i in range(4):
        close(ds[i], cs_grad(lambda u: g[i] @ join(u, z[i].astype(complex)), s[i]))
        close(dz[i], cs_grad(lambda w: g[i] @ join(s[i].astype(complex), w), z[i]))
        close(sigjoin(s[i], z[i], depth), join(s[i], z[i]).real, rtol=1e-12)
    # central differences through hftsig.sigjoin itself
    close(ds[1], central_differences(lambda u: float(g[1] @ sigjoin(u, z[1], depth)), s[1]),
          rtol=1e-6)
    close(dz[1], central_differences(lambda w: float(g[1] @ sigjoin(s[1], w, depth)), z[1]),
          rtol=1e-6)


def test_sigjoinbackprop_sums_over_a_broadcast_argument():
    s = sig(walk((3, 6, 2), seed=34), 3)
    z = rng(35).standard_normal(2)
    g = rng(36).standard_normal(s.shape)
    ds, dz = sigjoinbackprop(g, s, z, 3)
    assert ds.shape == s.shape and dz.shape == z.shape
    per_row = [sigjoinbackprop(g[i], s[i], z, 3) for i in range(3)]
    close(dz, sum(r[1] for r in per_row), rtol=1e-14)
    ds1, dz1 = sigjoinbackprop(g, s[0], rng(37).standard_normal((3, 2)), 3)
    assert ds1.shape == s[0].shape and dz1.shape == (3, 2)


@pytest.mark.parametrize("dim,depth", [(1, 3), (2, 4), (3, 3)])
def test_sigscale_and_backprop(dim, depth):
    x = walk((4, 6, dim), seed=38)
    s = sig(x, depth)
    c = rng(39).standard_normal((4, dim))
    close(sigscale(s, c, depth), sig(x * c[:, None, :], depth), rtol=1e-12)
    close_f32(sigscale(s, c, depth), iisignature.sigscale(s, c, depth))
    g = rng(40).standard_normal(s.shape)
    ds, dc = sigscalebackprop(g, s, c, depth)
    ids, idc = iisignature.sigscalebackprop(g, s, c, depth)
    close_f32(ds, ids)
    close_f32(dc, idc)
    for i in range(4):
        close(ds[i], cs_grad(lambda u: g[i] @ sigscale(u.real, c[i], depth)
                             + 1j * (g[i] @ sigscale(u.imag, c[i], depth)), s[i]))
        fd = central_differences(lambda w: float(g[i] @ sigscale(s[i], w, depth)), c[i])
        close(dc[i], fd, rtol=1e-6)


def test_top_level_names():
    for name in ("sigbackprop", "logsigbackprop", "sigcombinebackprop", "sigjoinbackprop",
                 "sigscale", "sigscalebackprop"):
        assert getattr(hftsig, name) is getattr(hftsig.signatures.gradients, name)
