"""hftsig.signatures.signature against iisignature and against the algebra of signatures."""
import math

import numpy as np
import pytest

import hftsig
from hftsig.signatures.signature import SignatureStream, sig, sigcombine, siginv, sigjoin, siglength
from iisignature_reference import iisignature  # iisignature 0.24, or its stored outputs

RTOL = 1e-10
F32 = dict(rtol=2e-5, atol=2e-5)  # iisignature's sigjoin/sigcombine return float32


def rng(seed=0):
    return np.random.default_rng(seed)


def close(a, b, rtol=RTOL):
    scale = max(1.0, float(np.abs(b).max()) if np.size(b) else 1.0)
    np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol * scale)


def levels(s, dim, depth):
    out, start = [], 0
    for k in range(1, depth + 1):
        out.append(s[..., start:start + dim**k].reshape(s.shape[:-1] + (dim,) * k))
        start += dim**k
    return out


# --- against iisignature -------------------------------------------------------

@pytest.mark.parametrize("dim,depth", [(1, 1), (1, 8), (2, 1), (2, 6), (2, 8), (3, 5),
                                       (4, 4), (5, 3), (7, 2), (10, 2)])
@pytest.mark.parametrize("length", [2, 3, 17])
def test_single_path_matches_iisignature(dim, depth, length):
    x = rng(dim * 100 + depth).standard_normal((length, dim))
    close(sig(x, depth), iisignature.sig(x, depth))


@pytest.mark.parametrize("batch", [1, 2, 3, 5, 8, 13, 33])
def test_batch_matches_iisignature(batch):
    x = rng(batch).standard_normal((batch, 40, 3))
    close(sig(x, 4), iisignature.sig(x, 4))


@pytest.mark.parametrize("n_jobs", [1, 2, -1])
@pytest.mark.parametrize("shape,depth", [((1, 3000, 2), 6), ((3, 500, 3), 4),
                                         ((20, 60, 4), 3), ((2, 40, 1), 8)])
def test_long_paths_and_threads_match_iisignature(shape, depth, n_jobs):
    # long single paths are cut into pieces joined by Chen's identity
    x = rng(7).standard_normal(shape) * 0.3
    close(sig(x, depth, n_jobs=n_jobs), iisignature.sig(x, depth))


def test_one_point_path_is_zero():
    assert np.array_equal(sig(np.ones((1, 3)), 3), np.zeros(siglength(3, 3)))
    assert np.array_equal(sig(np.ones((4, 1, 2)), 2), np.zeros((4, 6)))


def test_float32_input_is_computed_in_float64():
    x = rng(1).standard_normal((4, 30, 3)).astype(np.float32)
    out = sig(x, 4)
    assert out.dtype == np.float64
    close(out, iisignature.sig(x.astype(np.float64), 4))


def test_integer_input():
    x = np.array([[0, 0], [1, 2], [3, 1]])
    close(sig(x, 3), iisignature.sig(x.astype(float), 3))


def test_non_contiguous_input():
    base = rng(2).standard_normal((6, 50, 8))
    x = base[::2, ::3, 1::3]  # strided in every axis
    assert not x.flags.c_contiguous
    close(sig(x, 4), iisignature.sig(np.ascontiguousarray(x), 4))
    xt = rng(3).standard_normal((3, 20)).T  # Fortran order
    close(sig(xt, 3), iisignature.sig(np.ascontiguousarray(xt), 3))


@pytest.mark.parametrize("shape,depth", [((25, 2), 5), ((5, 30, 3), 4), ((1, 2, 4), 3),
                                         ((9, 12, 1), 6), ((2, 1, 3), 2)])
def test_stream_matches_iisignature(shape, depth):
    x = rng(4).standard_normal(shape)
    out = sig(x, depth, stream=True)
    assert out.shape == shape[:-2] + (shape[-2] - 1, siglength(shape[-1], depth))
    if shape[-2] > 1:
        close(out, iisignature.sig(x, depth, 2))


def test_at_matches_stream_in_given_order():
    x = rng(5).standard_normal((11, 40, 3))
    at = [39, 5, 0, 17, 5, -1, 1]
    out = sig(x, 3, at=at)
    full = iisignature.sig(x, 3, 2)
    assert out.shape == (11, len(at), siglength(3, 3))
    for j, i in enumerate(at):
        i = i % 40
        expect = np.zeros((11, siglength(3, 3))) if i == 0 else full[:, i - 1]
        close(out[:, j], expect)
    close(sig(x[0], 3, at=[20]), full[0, 19:20])
    close(sig(x[0], 3, at=np.int64(20)), full[0, 19:20])


def test_transform_flags_equal_explicit_transforms():
    x = rng(6).standard_normal((3, 15, 2))
    t = hftsig.signatures.augmentations
    close(sig(x, 3, lead_lag=True), iisignature.sig(t.lead_lag(x), 3))
    close(sig(x, 3, time_aug=True), iisignature.sig(t.time_augment(x), 3))
    close(sig(x, 3, basepoint=True), iisignature.sig(t.basepoint(x), 3))
    both = t.basepoint(t.time_augment(t.lead_lag(x)))
    close(sig(x, 3, lead_lag=True, time_aug=True, basepoint=True), iisignature.sig(both, 3))


# --- sigcombine / sigjoin / siginv ------------------------------------------------

def test_chen_identity_via_sigcombine():
    x = rng(8).standard_normal((5, 30, 3))
    a, b = sig(x[:, :12], 4), sig(x[:, 11:], 4)
    close(sigcombine(a, b, 3, 4), sig(x, 4))
    close(sigcombine(a[0], b[0], 3, 4), sig(x[0], 4))
    np.testing.assert_allclose(sigcombine(a, b, 3, 4), iisignature.sigcombine(a, b, 3, 4), **F32)


def test_sigjoin_matches_iisignature_and_chen():
    x = rng(9).standard_normal((4, 20, 3))
    s = sig(x, 5)
    seg = rng(10).standard_normal((4, 3))
    out = sigjoin(s, seg, 5)
    extended = np.concatenate([x, x[:, -1:] + seg[:, None]], axis=1)
    close(out, sig(extended, 5))
    np.testing.assert_allclose(out, iisignature.sigjoin(s, seg, 5), **F32)
    close(sigjoin(s[1], seg[1], 5), out[1])
    # one segment applied to a whole batch
    close(sigjoin(s, seg[0], 5), sigjoin(s, np.repeat(seg[:1], 4, axis=0), 5))


def test_siginv_is_the_inverse():
    x = rng(11).standard_normal((6, 25, 2))
    s = sig(x, 6)
    inv = siginv(s, 2, 6)
    close(inv, sig(x[:, ::-1], 6))
    close(sigcombine(s, inv, 2, 6), np.zeros_like(s))
    close(sigcombine(inv, s, 2, 6), np.zeros_like(s))


# --- algebraic properties -----------------------------------------------------------

def test_shuffle_identity_levels_one_and_two():
    # S^i S^j = S^{ij} + S^{ji}
    x = rng(12).standard_normal((7, 30, 4))
    s1, s2 = levels(sig(x, 2), 4, 2)
    close(s1[:, :, None] * s1[:, None, :], s2 + np.swapaxes(s2, 1, 2))


def test_shuffle_identity_level_one_three():
    # S^i S^{jk} = S^{ijk} + S^{jik} + S^{jki}
    x = rng(13).standard_normal((30, 3))
    s1, s2, s3 = levels(sig(x, 3), 3, 3)
    lhs = s1[:, None, None] * s2[None]
    rhs = s3 + np.transpose(s3, (1, 0, 2)) + np.transpose(s3, (2, 0, 1))
    close(lhs, rhs)


def test_reparametrisation_invariance():
    x = rng(14).standard_normal((12, 3))
    repeated = np.repeat(x, rng(15).integers(1, 4, size=12), axis=0)
    close(sig(repeated, 5), sig(x, 5))
    # inserting a point on a segment does not change the signature either
    mid = np.insert(x, 3, 0.25 * x[2] + 0.75 * x[3], axis=0)
    close(sig(mid, 5), sig(x, 5))


@pytest.mark.parametrize("dim,depth", [(1, 8), (2, 6), (3, 4), (5, 3)])
def test_straight_line_is_tensor_exponential(dim, depth):
    z = rng(16).standard_normal(dim)
    line = np.outer(np.linspace(0.0, 1.0, 7), z) + 3.0
    expected, power = [], np.ones(())
    for k in range(1, depth + 1):
        power = np.multiply.outer(power, z)
        expected.append(power.ravel() / math.factorial(k))
    close(sig(line, depth), np.concatenate(expected))


# --- SignatureStream --------------------------------------------------------------------

@pytest.mark.parametrize("dim,depth", [(1, 3), (2, 4), (3, 4), (4, 2)])
def test_stream_push_matches_sig(dim, depth):
    x = rng(17).standard_normal((50, dim))
    st = SignatureStream(dim, depth)
    assert np.array_equal(st.signature, np.zeros(siglength(dim, depth)))
    for i, p in enumerate(x):
        st.push(p)
        if i in (0, 1, 7, 49):
            close(st.signature, sig(x[:i + 1], depth))
    assert st.n_points == 50


@pytest.mark.parametrize("window", [1, 2, 3, 10])
def test_stream_window_matches_sig_of_last_points(window):
    x = rng(18).standard_normal((60, 2))
    st = SignatureStream(2, 4, window=window)
    for i, p in enumerate(x.tolist()):  # lists are accepted too
        st.push(p)
        lo = max(0, i + 1 - window)
        close(st.signature, sig(x[lo:i + 1], 4), rtol=1e-9)
        assert st.n_points == i + 1 - lo


def test_stream_many_paths():
    x = rng(19).standard_normal((5, 40, 3))
    st = SignatureStream(3, 3, n_paths=5)
    stw = SignatureStream(3, 3, window=7, n_paths=5)
    for t in range(40):
        st.push(x[:, t])  # a non-contiguous view
        stw.push(np.ascontiguousarray(x[:, t]))
    close(st.signature, sig(x, 3))
    close(stw.signature, sig(x[:, -7:], 3), rtol=1e-9)
    st.reset()
    assert np.array_equal(st.signature, np.zeros((5, siglength(3, 3))))


def test_stream_window_stays_accurate_over_long_streams():
    x = np.cumsum(rng(20).standard_normal((5000, 2)), axis=0)
    st = SignatureStream(2, 4, window=37)
    for p in x:
        st.push(p)
    close(st.signature, sig(x[-37:], 4), rtol=1e-9)


def test_stream_bad_input():
    st = SignatureStream(2, 3)
    with pytest.raises(ValueError, match="point"):
        st.push(np.zeros(3))
    with pytest.raises(ValueError, match="point"):
        st.push(np.array([0.0, np.nan]))
    with pytest.raises(TypeError, match="point"):
        st.push(["a", "b"])
    with pytest.raises(ValueError, match="depth"):
        SignatureStream(2, 0)
    with pytest.raises(ValueError, match="window"):
        SignatureStream(2, 2, window=0)
    with pytest.raises(TypeError, match="dim"):
        SignatureStream(2.0, 2)


# --- bad input ------------------------------------------------------------------------------

def test_bad_input_errors_name_the_argument():
    x = np.zeros((5, 2))
    with pytest.raises(ValueError, match="path"):
        sig(np.zeros(5), 2)
    with pytest.raises(ValueError, match="path"):
        sig(np.zeros((2, 3, 4, 5)), 2)
    with pytest.raises(ValueError, match="path"):
        sig(np.zeros((0, 2)), 2)
    with pytest.raises(ValueError, match="depth"):
        sig(x, 0)
    with pytest.raises(TypeError, match="depth"):
        sig(x, 2.5)
    bad = x.copy()
    bad[2, 1] = np.nan
    with pytest.raises(ValueError, match="path"):
        sig(bad, 2)
    bad[2, 1] = np.inf
    with pytest.raises(ValueError, match="path"):
        sig(bad[None], 2)
    with pytest.raises(TypeError, match="path"):
        sig(np.array([["a", "b"], ["c", "d"]]), 2)
    with pytest.raises(TypeError, match="path"):
        sig(np.zeros((3, 2), dtype=complex), 2)
    with pytest.raises(ValueError, match="at"):
        sig(x, 2, at=[5])
    with pytest.raises(ValueError, match="at"):
        sig(x, 2, at=[-6])
    with pytest.raises(TypeError, match="at"):
        sig(x, 2, at=[1.5])
    with pytest.raises(ValueError, match="stream"):
        sig(x, 2, stream=True, at=[1])
    with pytest.raises(ValueError, match="n_jobs"):
        sig(x, 2, n_jobs=0)
    with pytest.raises(ValueError, match="depth"):
        sig(x, 40)
    with pytest.raises(ValueError, match="depth"):
        sig(x[:, :1], 61)
    # a ragged batch (paths of different lengths) cannot form an array
    with pytest.raises(ValueError, match="^path: not an array of paths of one shape"):
        sig([np.zeros((3, 2)), np.zeros((4, 2))], 2)
    with pytest.raises(ValueError, match="^path: not an array of paths of one shape"):
        sig([[[0.0, 1.0], [1.0, 2.0]], [[0.0, 1.0]]], 2, stream=True)


def test_bad_input_to_sig_algebra():
    s = sig(rng(21).standard_normal((3, 10, 2)), 3)
    with pytest.raises(ValueError, match="s2"):
        sigcombine(s, s[:2], 2, 3)
    with pytest.raises(ValueError, match="s1"):
        sigcombine(s[:, :5], s, 2, 3)
    with pytest.raises(ValueError, match="s"):
        siginv(s, 3, 3)
    with pytest.raises(ValueError, match="segment"):
        sigjoin(s, np.zeros((2, 2)), 3)
    with pytest.raises(ValueError, match="segment"):
        sigjoin(s, np.array([np.nan, 0.0]), 3)
    with pytest.raises(ValueError, match="s"):
        sigjoin(s, np.zeros(3), 3)
    with pytest.raises(ValueError, match="depth"):
        siglength(2, 0)
    with pytest.raises(ValueError, match="depth"):
        sigjoin(np.zeros(100), np.zeros(1), 100)


def test_top_level_exports():
    for name in ("sig", "siglength", "sigcombine", "sigjoin", "siginv", "SignatureStream",
                 "augmentations", "processes"):
        assert hasattr(hftsig, name)


@pytest.mark.parametrize("batch,n_jobs", [(1, 1), (2, 1), (3, 2), (9, 2)])
def test_at_small_batches_cut_into_pieces(batch, n_jobs):
    # small batches are cut at the requested indices and joined by Chen
    x = rng(22).standard_normal((batch, 300, 2)) * 0.2
    at = [0, 3, 3, 10, 299, 17, 150, 151, 1]
    out = sig(x, 5, at=at, n_jobs=n_jobs)
    full = iisignature.sig(x, 5, 2)
    for j, i in enumerate(at):
        expect = np.zeros((batch, siglength(2, 5))) if i == 0 else full[:, i - 1]
        close(out[:, j], expect)


@pytest.mark.parametrize("dim,depth", [(2, 6), (3, 5), (1, 4)])
def test_fused_and_plain_two_step_kernels_agree(dim, depth):
    # small dims take a pass with level depth-1 fused into the top level;
    # the plain two-step pass (used for larger dims) must give the same
    from hftsig._ext import _signature
    x = rng(23).standard_normal((9, 31, dim)) * 0.3
    ref = iisignature.sig(x, depth)
    close(sig(x, depth), ref)
    try:
        _signature._set_unfused(True)
        close(sig(x, depth), ref)
    finally:
        _signature._set_unfused(False)


def test_threads_repeatedly_give_identical_results():
    # worker threads claim blocks; a late thread must never touch a finished call
    x = rng(24).standard_normal((37, 50, 3)) * 0.3
    ref = sig(x, 4)
    ref_at = sig(x, 4, at=[10, 49])
    ref_small = sig(x[:2], 4, at=[10, 49])  # cut at the dates: a different summation
    close(ref_small, ref_at[:2])
    for _ in range(30):
        assert np.array_equal(sig(x, 4, n_jobs=4), ref)
        assert np.array_equal(sig(x, 4, at=[10, 49], n_jobs=3), ref_at)
        assert np.array_equal(sig(x[:2], 4, at=[10, 49], n_jobs=2), ref_small)
