"""hftsig.signatures.augmentations: conventions, shapes, batches, bad input."""
import numpy as np
import pytest

from hftsig.signatures import augmentations as transforms


def test_lead_lag_convention_lead_first():
    x = np.array([[1.0, 10.0], [2.0, 20.0], [4.0, 40.0]])
    out = transforms.lead_lag(x)
    assert out.shape == (5, 4)
    lead, lag = out[:, :2], out[:, 2:]
    np.testing.assert_array_equal(lead[:, 0], [1, 2, 2, 4, 4])
    np.testing.assert_array_equal(lag[:, 0], [1, 1, 2, 2, 4])
    np.testing.assert_array_equal(lead[:, 1], [10, 20, 20, 40, 40])
    # at every step only one of lead and lag moves
    moves = np.abs(np.diff(out, axis=0))
    assert np.all((moves[:, :2].sum(1) == 0) | (moves[:, 2:].sum(1) == 0))


def test_time_augment():
    x = np.zeros((2, 5, 1))
    out = transforms.time_augment(x)
    assert out.shape == (2, 5, 2)
    np.testing.assert_allclose(out[1, :, 1], [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(transforms.time_augment(x[0], start=1.0, end=2.0)[:, 1],
                               [1.0, 1.25, 1.5, 1.75, 2.0])
    np.testing.assert_array_equal(transforms.time_augment(np.ones((1, 2)))[:, 2], [0.0])


def test_basepoint_and_cumsum_batched():
    x = np.arange(12.0).reshape(2, 3, 2)
    bp = transforms.basepoint(x)
    assert bp.shape == (2, 4, 2)
    np.testing.assert_array_equal(bp[:, 0], 0.0)
    np.testing.assert_array_equal(bp[:, 1:], x)
    np.testing.assert_array_equal(transforms.basepoint(x, point=[5, 6])[1, 0], [5, 6])
    cs = transforms.cumsum(x)
    np.testing.assert_array_equal(cs[1, :, 0], [6, 6 + 8, 6 + 8 + 10])


def test_dtypes():
    x32 = np.ones((4, 2), dtype=np.float32)
    assert transforms.lead_lag(x32).dtype == np.float32
    assert transforms.time_augment(np.ones((4, 2), dtype=np.int64)).dtype == np.float64


def test_bad_input():
    with pytest.raises(ValueError, match="path"):
        transforms.lead_lag(np.zeros(3))
    with pytest.raises(TypeError, match="path"):
        transforms.cumsum(np.array([["a"]]))
    with pytest.raises(ValueError, match="point"):
        transforms.basepoint(np.zeros((3, 2)), point=[1, 2, 3])
    with pytest.raises(ValueError, match="^path: not an array of paths of one shape"):
        transforms.lead_lag([np.zeros((3, 2)), np.zeros((4, 2))])
