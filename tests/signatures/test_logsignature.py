"""Tests of hftsig/signatures/logsignature.py: log-signatures against iisignature and algebra."""
import re

import numpy as np
import pytest

import hftsig
from hftsig.signatures.logsignature import (
    _lyndon_system,
    logsig,
    logsiglength,
    lyndon_brackets,
    lyndon_words,
    sig_to_logsig,
)
from iisignature_reference import iisignature  # iisignature 0.24, or its stored outputs

RNG = np.random.default_rng(20261125)


# --- a dense reference of the truncated tensor algebra, written independently -------------
def _levels(flat, dim, depth):
    """Split a signature-layout row into [level0 scalar, level1 (d,), level2 (d,d), ...]."""
    out, start = [np.ones(())], 0
    for level in range(1, depth + 1):
        size = dim**level
        out.append(flat[start : start + size].reshape((dim,) * level))
        start += size
    return out


def _flatten(levels):
    return np.concatenate([t.ravel() for t in levels[1:]])


def _mul(a, b, depth):
    out = [np.zeros(np.shape(a[k])) for k in range(depth + 1)]
    for i in range(depth + 1):
        for j in range(depth + 1 - i):
            out[i + j] = out[i + j] + np.multiply.outer(a[i], b[j])
    return out


def _exp(x_flat, dim, depth):
    """exp of a tensor with zero level 0, by its power series."""
    x = _levels(x_flat, dim, depth)
    x[0] = np.zeros(())
    result = [np.ones(())] + [np.zeros((dim,) * k) for k in range(1, depth + 1)]
    term = [np.ones(())] + [np.zeros((dim,) * k) for k in range(1, depth + 1)]
    for n in range(1, depth + 1):
        term = [t / n for t in _mul(term, x, depth)]
        result = [r + t for r, t in zip(result, term)]
    return _flatten(result)


def _bracket_tensor(expr, dim):
    """Dense tensor of a bracket string such as '[0,[0,1]]' (letters 0-based)."""
    tokens = re.findall(r"\[|\]|,|\d+", expr)
    pos = 0

    def parse():
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        if tok == "[":
            left = parse()
            assert tokens[pos] == ","
            pos += 1
            right = parse()
            assert tokens[pos] == "]"
            pos += 1
            # a tensor indexed by the letters of its words: outer(B, A) is B (x) A
            return np.multiply.outer(left, right) - np.multiply.outer(right, left)
        e = np.zeros(dim)
        e[int(tok)] = 1.0
        return e

    return parse()


def _random_paths(batch, length, dim, scale=0.3):
    return RNG.standard_normal((batch, length, dim)).cumsum(axis=1) * scale


# --- lengths and words ------------------------------------------------------------------
@pytest.mark.parametrize("dim", [1, 2, 3, 4, 5])
@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5, 6])
def test_logsiglength_matches_iisignature_and_words(dim, depth):
    n = logsiglength(dim, depth)
    assert n == len(lyndon_words(dim, depth)) == len(lyndon_brackets(dim, depth))
    if dim >= 2:
        assert n == iisignature.logsiglength(dim, depth)
    else:
        assert n == 1


@pytest.mark.parametrize("dim,depth", [(2, 5), (3, 4), (4, 3), (5, 2)])
def test_lyndon_words_are_lyndon_and_ordered(dim, depth):
    words = lyndon_words(dim, depth)
    for w in words:
        # strictly smaller than each of its proper rotations
        assert all(w < w[k:] + w[:k] for k in range(1, len(w)))
    for a, b in zip(words, words[1:]):
        assert (len(a), a) < (len(b), b)
    # every Lyndon word is listed: count by brute force over all words
    from itertools import product

    brute = [
        w
        for n in range(1, depth + 1)
        for w in product(range(dim), repeat=n)
        if all(w < w[k:] + w[:k] for k in range(1, n))
    ]
    assert sorted(brute, key=lambda w: (len(w), w)) == words


@pytest.mark.parametrize("dim,depth", [(2, 6), (3, 4), (5, 3)])
def test_brackets_match_iisignature_basis(dim, depth):
    theirs = [b.replace(" ", "") for b in iisignature.basis(iisignature.prepare(dim, depth, "S"))]
    ours = [re.sub(r"\d+", lambda m: str(int(m.group()) + 1), b) for b in lyndon_brackets(dim, depth)]
    assert ours == theirs


@pytest.mark.parametrize("dim,depth", [(2, 6), (3, 5), (4, 4), (5, 4)])
def test_lyndon_triangle_is_strictly_lower_and_matches_dense_brackets(dim, depth):
    flat, indptr, indices, data = _lyndon_system(dim, depth)
    rows = np.repeat(np.arange(len(flat)), np.diff(indptr))
    assert np.all(indices < rows)
    words = lyndon_words(dim, depth)
    # <P_w, u> from the dense expansion of the bracket strings
    dense = np.zeros((len(words), len(words)))
    brackets = lyndon_brackets(dim, depth)
    for col, (w, expr) in enumerate(zip(words, brackets)):
        p = _bracket_tensor(expr, dim)
        for row, u in enumerate(words):
            if len(u) == len(w):
                dense[row, col] = p[u]
    assert np.array_equal(np.diag(dense), np.ones(len(words)))
    lower = np.zeros_like(dense)
    lower[rows, indices] = data
    assert np.array_equal(lower, np.tril(dense, -1))
    assert np.array_equal(np.triu(dense, 1), np.zeros_like(dense))


# --- against iisignature ------------------------------------------------------------------
@pytest.mark.parametrize("dim", [2, 3, 4, 5])
@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5, 6])
def test_sig_to_logsig_matches_iisignature(dim, depth):
    x = _random_paths(3, 9, dim)
    s = iisignature.sig(x, depth)
    prep = iisignature.prepare(dim, depth, "SX")
    ours = sig_to_logsig(s, dim, depth)
    np.testing.assert_allclose(ours, iisignature.logsig(x, prep, "S"), rtol=1e-10, atol=1e-12)
    expanded = sig_to_logsig(s, dim, depth, basis="expanded")
    np.testing.assert_allclose(expanded, iisignature.logsig(x, prep, "X"), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dim,depth", [(2, 6), (3, 5), (4, 4), (5, 4), (5, 3)])
def test_sig_to_logsig_matches_iisignature_default_method(dim, depth):
    # iisignature's default logsig method (compiled BCH, "C") is the reference of the API
    x = _random_paths(4, 30, dim, scale=0.2)
    prep = iisignature.prepare(dim, depth)
    np.testing.assert_allclose(
        sig_to_logsig(iisignature.sig(x, depth), dim, depth),
        iisignature.logsig(x, prep),
        rtol=1e-10,
        atol=1e-10,
    )


def test_sig_to_logsig_keeps_leading_axes_of_streamed_signatures():
    dim, depth = 3, 4
    x = _random_paths(2, 6, dim)
    stream = iisignature.sig(x, depth, 2)  # (2, 5, siglength)
    ours = sig_to_logsig(stream, dim, depth)
    assert ours.shape == (2, 5, logsiglength(dim, depth))
    prep = iisignature.prepare(dim, depth, "S")
    for b in range(2):
        for k in range(5):
            np.testing.assert_allclose(
                ours[b, k], iisignature.logsig(x[b, : k + 2], prep, "S"), rtol=1e-10, atol=1e-12
            )


def test_sig_to_logsig_float32_and_noncontiguous_and_threads():
    dim, depth = 3, 4
    x = _random_paths(7, 12, dim)
    s = iisignature.sig(x, depth)
    ref = sig_to_logsig(s, dim, depth)
    s32 = sig_to_logsig(s.astype(np.float32), dim, depth)
    assert s32.dtype == np.float32
    np.testing.assert_allclose(s32, ref, rtol=1e-4, atol=1e-5)
    fortran = np.asfortranarray(s)
    strided = np.repeat(s, 2, axis=0)[::2]
    assert not strided.flags.c_contiguous
    np.testing.assert_array_equal(sig_to_logsig(fortran, dim, depth), ref)
    np.testing.assert_array_equal(sig_to_logsig(strided, dim, depth), ref)
    np.testing.assert_array_equal(sig_to_logsig(s, dim, depth, n_jobs=2), ref)
    # enough rows that the work is really split over threads (any tensor
    # with zero level 0 has a logarithm, so random rows will do)
    many = RNG.standard_normal((3000, s.shape[1])) * 0.1
    for basis in ("lyndon", "expanded"):
        one = sig_to_logsig(many, dim, depth, basis=basis)
        np.testing.assert_array_equal(sig_to_logsig(many, dim, depth, basis=basis, n_jobs=2), one)
        np.testing.assert_array_equal(sig_to_logsig(many, dim, depth, basis=basis, n_jobs=-1), one)
        np.testing.assert_array_equal(
            sig_to_logsig(many.astype(np.float32), dim, depth, basis=basis, n_jobs=2),
            sig_to_logsig(many.astype(np.float32), dim, depth, basis=basis),
        )


@pytest.mark.parametrize("dim", [2, 3, 4, 5])
@pytest.mark.parametrize("depth", [1, 2, 3, 4, 5, 6])
def test_logsig_of_paths_matches_iisignature(dim, depth):
    x = _random_paths(4, 11, dim)
    prep = iisignature.prepare(dim, depth, "SX")
    np.testing.assert_allclose(logsig(x, depth), iisignature.logsig(x, prep, "S"), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(
        logsig(x[1], depth, basis="expanded"), iisignature.logsig(x[1], prep, "X"), rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize("dim,depth", [(2, 7), (2, 8), (3, 7)])
def test_logsig_high_depth_matches_iisignature(dim, depth):
    x = _random_paths(3, 25, dim, scale=0.2)
    prep = iisignature.prepare(dim, depth, "S")
    np.testing.assert_allclose(logsig(x, depth), iisignature.logsig(x, prep, "S"), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("shape", [(32, 60, 5, 4), (16, 40, 3, 5), (8, 50, 4, 4), (1, 300, 2, 6)])
def test_logsig_batches_match_iisignature_default(shape):
    batch, length, dim, depth = shape
    x = _random_paths(batch, length, dim, scale=0.05)
    prep = iisignature.prepare(dim, depth)
    expected = iisignature.logsig(x, prep)
    np.testing.assert_allclose(logsig(x, depth), expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(logsig(x, depth, n_jobs=2), expected, rtol=1e-10, atol=1e-10)


def test_logsig_short_paths_float32_noncontiguous_and_reexport():
    assert hftsig.logsig is logsig and hftsig.logsiglength is logsiglength
    # a one-point path has the zero log-signature; two points give the increment
    np.testing.assert_array_equal(logsig(np.ones((1, 3)), 3), np.zeros(logsiglength(3, 3)))
    two = np.array([[1.0, 2.0, 3.0], [2.0, 0.0, 3.5]])
    np.testing.assert_allclose(logsig(two, 4)[:3], [1.0, -2.0, 0.5])
    np.testing.assert_allclose(logsig(two, 4)[3:], 0.0, atol=1e-15)
    x = _random_paths(5, 20, 3)
    ref = logsig(x, 4)
    np.testing.assert_allclose(logsig(x.astype(np.float32), 4), ref, rtol=1e-4, atol=1e-5)
    wide = np.repeat(x, 2, axis=2)[:, :, ::2]
    assert not wide.flags.c_contiguous
    np.testing.assert_array_equal(logsig(wide, 4), ref)
    np.testing.assert_array_equal(logsig(x.tolist(), 4), ref)
    # dimension 1: a scalar path's log-signature is its increment
    np.testing.assert_allclose(logsig(x[:, :, :1], 5), (x[:, -1, :1] - x[:, 0, :1]), rtol=1e-12)


def test_logsig_passes_transforms_stream_and_at_to_sig():
    x = _random_paths(3, 12, 2)
    depth = 3
    for kwargs in ({"time_aug": True}, {"lead_lag": True}, {"basepoint": True},
                   {"time_aug": True, "lead_lag": True, "basepoint": True}):
        transformed = x
        if kwargs.get("lead_lag"):
            transformed = hftsig.signatures.augmentations.lead_lag(transformed)
        if kwargs.get("time_aug"):
            transformed = hftsig.signatures.augmentations.time_augment(transformed)
        if kwargs.get("basepoint"):
            transformed = hftsig.signatures.augmentations.basepoint(transformed)
        dim = transformed.shape[-1]
        prep = iisignature.prepare(dim, depth, "S")
        np.testing.assert_allclose(
            logsig(x, depth, **kwargs), iisignature.logsig(transformed, prep, "S"), rtol=1e-10, atol=1e-12
        )
    stream = logsig(x, depth, stream=True)
    assert stream.shape == (3, 11, logsiglength(2, depth))
    np.testing.assert_allclose(stream[:, 4], logsig(x[:, :6], depth), rtol=1e-10, atol=1e-13)
    at = logsig(x, depth, at=[11, 3], basis="expanded")
    np.testing.assert_allclose(at[:, 0], logsig(x, depth, basis="expanded"), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(at[:, 1], logsig(x[:, :4], depth, basis="expanded"), rtol=1e-10, atol=1e-13)


def test_logsig_rejects_bad_input():
    x = _random_paths(2, 5, 3)
    with pytest.raises(ValueError, match="path"):
        logsig(x[0, 0], 2)
    with pytest.raises(ValueError, match="path"):
        logsig(x[None], 2)
    bad = x.copy()
    bad[0, 1, 2] = np.inf
    with pytest.raises(ValueError, match="path"):
        logsig(bad, 2)
    bad[0, 1, 2] = np.nan
    with pytest.raises(ValueError, match="path"):
        logsig(bad, 2)
    with pytest.raises(ValueError, match="path"):
        logsig([x[0], x[1, :4]], 2)
    with pytest.raises(TypeError, match="path"):
        logsig(x.astype(complex), 2)
    with pytest.raises(ValueError, match="depth"):
        logsig(x, 0)
    with pytest.raises(TypeError, match="depth"):
        logsig(x, 2.0)
    with pytest.raises(ValueError, match="basis"):
        logsig(x, 2, basis="hall")
    with pytest.raises(ValueError, match="n_jobs"):
        logsig(x, 2, n_jobs=0)


# --- algebra --------------------------------------------------------------------------------
@pytest.mark.parametrize("dim,depth", [(1, 5), (2, 6), (3, 4), (4, 3)])
def test_exp_of_log_is_the_signature(dim, depth):
    x = _random_paths(3, 8, dim)
    for path in x:
        if dim >= 2:
            s = iisignature.sig(path, depth)
        else:
            # a 1-d path's signature is exp of its increment
            s = _exp(np.r_[path[-1] - path[0], np.zeros(depth - 1)], 1, depth)
        log = sig_to_logsig(s, dim, depth, basis="expanded")
        np.testing.assert_allclose(_exp(log, dim, depth), s, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dim,depth", [(2, 5), (3, 4), (4, 3)])
def test_lyndon_coordinates_rebuild_the_tensor_log(dim, depth):
    # sum_w c_w P_w, with P_w expanded densely from the bracket strings, is log(S)
    s = iisignature.sig(_random_paths(1, 10, dim)[0], depth)
    coords = sig_to_logsig(s, dim, depth)
    expanded = sig_to_logsig(s, dim, depth, basis="expanded")
    levels = [np.zeros((dim,) * n) for n in range(depth + 1)]
    for c, expr in zip(coords, lyndon_brackets(dim, depth)):
        p = _bracket_tensor(expr, dim)
        levels[p.ndim] = levels[p.ndim] + c * p
    np.testing.assert_allclose(_flatten(levels), expanded, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dim,depth", [(1, 4), (2, 5), (3, 4), (5, 3)])
def test_log_of_a_straight_line_is_its_increment(dim, depth):
    inc = RNG.standard_normal(dim)
    higher = sum(dim**k for k in range(2, depth + 1))
    s = _exp(np.r_[inc, np.zeros(higher)], dim, depth)
    expected_lyndon = np.r_[inc, np.zeros(logsiglength(dim, depth) - dim)]
    np.testing.assert_allclose(sig_to_logsig(s, dim, depth), expected_lyndon, atol=1e-12)
    expected_tensor = np.r_[inc, np.zeros(s.size - dim)]
    np.testing.assert_allclose(sig_to_logsig(s, dim, depth, basis="expanded"), expected_tensor, atol=1e-12)


# --- bad input ------------------------------------------------------------------------------
def test_sig_to_logsig_rejects_bad_input():
    s = np.zeros(14)  # siglength(2, 3)
    with pytest.raises(ValueError, match="signature"):
        sig_to_logsig(np.zeros(13), 2, 3)
    with pytest.raises(ValueError, match="signature"):
        sig_to_logsig(np.float64(1.0), 2, 3)
    with pytest.raises(ValueError, match="depth"):
        sig_to_logsig(s, 2, 0)
    with pytest.raises(TypeError, match="depth"):
        sig_to_logsig(s, 2, 3.0)
    with pytest.raises(TypeError, match="depth"):
        sig_to_logsig(s, 2, True)
    with pytest.raises(ValueError, match="dim"):
        sig_to_logsig(s, 0, 3)
    with pytest.raises(ValueError, match="basis"):
        sig_to_logsig(s, 2, 3, basis="hall")
    with pytest.raises(TypeError, match="basis"):
        sig_to_logsig(s, 2, 3, basis=None)
    with pytest.raises(TypeError, match="signature"):
        sig_to_logsig(s.astype(complex), 2, 3)
    with pytest.raises(TypeError, match="signature"):
        sig_to_logsig(np.array(["a"] * 14), 2, 3)
    with pytest.raises(ValueError, match="signature"):
        sig_to_logsig(np.r_[np.nan, np.zeros(13)], 2, 3)
    with pytest.raises(ValueError, match="n_jobs"):
        sig_to_logsig(s, 2, 3, n_jobs=0)
    with pytest.raises(TypeError, match="n_jobs"):
        sig_to_logsig(s, 2, 3, n_jobs=1.5)


def test_logsiglength_rejects_bad_input():
    with pytest.raises(ValueError, match="dim"):
        logsiglength(0, 2)
    with pytest.raises(ValueError, match="depth"):
        logsiglength(2, 0)
    with pytest.raises(TypeError, match="depth"):
        logsiglength(2, "3")
    with pytest.raises(TypeError, match="dim"):
        lyndon_words(2.0, 3)
