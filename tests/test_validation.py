"""hftsig._validation: each check accepts what it should, refuses wrong types with
TypeError and wrong values with ValueError, and names the argument first."""
import ast
import fractions
import pathlib
import sys

import numpy as np
import pytest

from hftsig._validation import (
    INT64_MAX,
    check_bool,
    check_finite,
    check_int,
    check_numeric,
    check_path_batch,
    check_paths,
    check_positive,
    check_random_state,
    check_real,
    set_path_input_tags,
    show_int,
)


# -- check_int ---------------------------------------------------------------------------
@pytest.mark.parametrize("value", [3, np.int8(3), np.int64(3), np.uint8(3), np.uint64(3)])
def test_check_int_accepts_every_integer_kind_and_returns_a_python_int(value):
    out = check_int(value, "depth", minimum=1, maximum=60)
    assert out == 3 and type(out) is int


@pytest.mark.parametrize("value", [True, np.True_, 3.0, np.float64(3), "3", None, [3],
                                   np.array(3), fractions.Fraction(3)])
def test_check_int_refuses_other_types_with_type_error_naming_the_argument(value):
    with pytest.raises(TypeError, match=r"^depth: expected an int, got "):
        check_int(value, "depth", minimum=1)


def test_check_int_refuses_values_out_of_range_with_value_error_naming_the_argument():
    with pytest.raises(ValueError, match=r"^depth: must be >= 1, got 0$"):
        check_int(0, "depth", minimum=1)
    with pytest.raises(ValueError, match=r"^depth: must be <= 60, got 61$"):
        check_int(61, "depth", minimum=1, maximum=60)
    with pytest.raises(ValueError, match=r"^n_jobs: must be >= -1024, got -1025$"):
        check_int(-1025, "n_jobs", minimum=-1024, maximum=1024)
    # a huge int is described, not printed in full
    with pytest.raises(ValueError, match=r"^depth: must be <= 60, got an int of 16610 bits$"):
        check_int(10**5000, "depth", maximum=60)


def test_check_int_bounds_are_inclusive_and_int64_by_default():
    assert check_int(1, "n", minimum=1, maximum=1) == 1
    assert check_int(-5, "n") == -5  # no lower bound unless given
    assert check_int(INT64_MAX, "n") == INT64_MAX
    with pytest.raises(ValueError, match=r"^n: must be <= 9223372036854775807, got "):
        check_int(INT64_MAX + 1, "n")
    with pytest.raises(ValueError, match=r"^n: must be <= 9223372036854775807, got "):
        check_int(np.uint64(2**64 - 1), "n")


def test_show_int():
    assert show_int(-12) == "-12"
    assert show_int(10**29) == str(10**29)
    assert show_int(2**200) == "an int of 201 bits"


# -- check_bool ----------------------------------------------------------------------------
@pytest.mark.parametrize("value, expected", [(True, True), (False, False), (np.True_, True),
                                             (np.False_, False)])
def test_check_bool_accepts_bools(value, expected):
    out = check_bool(value, "stream")
    assert out is expected


@pytest.mark.parametrize("value", [1, 0, "yes", "", None, np.array([True]), 1.0])
def test_check_bool_refuses_truthy_non_bools(value):
    with pytest.raises(TypeError, match=r"^stream: expected a bool, got "):
        check_bool(value, "stream")


# -- check_real / check_positive -------------------------------------------------------
@pytest.mark.parametrize("value", [2, 2.0, np.float32(2), np.int16(2), fractions.Fraction(2)])
def test_check_real_accepts_real_numbers(value):
    out = check_real(value, "start")
    assert out == 2.0 and type(out) is float


@pytest.mark.parametrize("value", [True, np.False_, "1", None, 1j, np.array(1.0)])
def test_check_real_refuses_other_types(value):
    with pytest.raises(TypeError, match=r"^start: expected a real number, got "):
        check_real(value, "start")


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 10**400])
def test_check_real_refuses_non_finite_values(value):
    with pytest.raises(ValueError, match=r"^start: must be finite, got "):
        check_real(value, "start")


def test_check_positive_accepts_positive_and_optionally_zero():
    assert check_positive(0.5, "T") == 0.5
    assert check_positive(np.int64(2), "T") == 2.0
    assert check_positive(0, "alpha", allow_zero=True) == 0.0


@pytest.mark.parametrize("value, allow_zero, bound", [
    (0, False, "> 0"), (-1.0, False, "> 0"), (np.inf, False, "> 0"), (np.nan, False, "> 0"),
    (-1e-300, True, ">= 0"), (np.nan, True, ">= 0"), (10**400, True, ">= 0")])
def test_check_positive_refuses_values(value, allow_zero, bound):
    with pytest.raises(ValueError, match=rf"^T: must be {bound} and finite, got "):
        check_positive(value, "T", allow_zero=allow_zero)


@pytest.mark.parametrize("value", [True, "1.0", None, [1.0]])
def test_check_positive_refuses_other_types(value):
    with pytest.raises(TypeError, match=r"^T: expected a real number, got "):
        check_positive(value, "T")


# -- check_random_state --------------------------------------------------------------------
def test_check_random_state_seeds_reproducibly_and_passes_a_generator_through():
    draws = [check_random_state(seed).integers(1 << 30, size=4)
             for seed in (5, np.int64(5), np.uint8(5), np.random.SeedSequence(5))]
    for d in draws[1:]:
        np.testing.assert_array_equal(d, draws[0])
    gen = np.random.default_rng(1)
    assert check_random_state(gen) is gen  # the caller's stream continues
    assert isinstance(check_random_state(None), np.random.Generator)


@pytest.mark.parametrize("value", [True, np.True_, 1.5, "0", [0], np.random.RandomState(0)])
def test_check_random_state_refuses_other_types_naming_the_argument(value):
    with pytest.raises(TypeError, match=r"^random_state: expected None, an int, a SeedSequence "
                                        r"or a Generator, got "):
        check_random_state(value)
    with pytest.raises(TypeError, match=r"^rng: expected None, an int"):
        check_random_state(value, "rng")


def test_check_random_state_refuses_negative_seeds():
    with pytest.raises(ValueError, match=r"^random_state: must be >= 0, got -1$"):
        check_random_state(-1)


# -- arrays ------------------------------------------------------------------------------
def test_check_finite_and_check_numeric():
    check_finite(np.array([1.0, 2.0]), "x")
    with np.errstate(over="ignore"):  # the quick sum overflows; the exact check decides
        check_finite(np.array([1e308, 1e308]), "x")
    check_finite(np.zeros(0), "x")
    with pytest.raises(ValueError, match=r"^x: contains NaN or inf$"):
        check_finite(np.array([[0.0, np.nan]]), "x")
    with pytest.raises(ValueError, match=r"^x: contains NaN or inf$"):
        check_finite(np.array([1e308, np.inf]), "x")
    for dtype in (np.float64, np.float32, np.int32, np.uint8):
        check_numeric(np.zeros(2, dtype=dtype), "x")
    for dtype in (np.float16, np.complex128, object, bool, "U1"):
        with pytest.raises(TypeError, match=r"^x: expected a real numeric array, got dtype"):
            check_numeric(np.zeros(2, dtype=dtype), "x")


def test_check_paths_returns_float64_c_contiguous_without_copying_when_it_already_is():
    x = np.random.default_rng(0).standard_normal((4, 5, 2))
    assert check_paths(x) is x
    assert np.shares_memory(check_paths(x[0]), x)
    strided = x[:, ::2]
    out = check_paths(strided)
    assert out.flags.c_contiguous and out.dtype == np.float64
    np.testing.assert_array_equal(out, strided)
    out = check_paths(x.astype(np.float32))
    assert out.dtype == np.float64
    out = check_paths([[0, 1], [2, 3]])
    assert out.dtype == np.float64 and out.shape == (2, 2)


def test_check_paths_dtype_modes():
    x32 = np.zeros((3, 2), dtype=np.float32)
    assert check_paths(x32, dtype="float") is x32  # float32 kept for the transforms
    assert check_paths(np.zeros((3, 2), dtype=np.int32), dtype="float").dtype == np.float64
    xi = np.zeros((3, 2), dtype=np.int64)
    assert check_paths(xi, dtype=None) is xi  # as given
    with pytest.raises(ValueError, match=r"^dtype: expected 'float64', 'float' or None"):
        check_paths(xi, dtype="int")


@pytest.mark.parametrize("bad, error, message", [
    (np.zeros(3), ValueError, r"^x: expected shape \(length, dim\) or \(batch, length, dim\), "
                              r"got 1 dimension\(s\) \(3,\)$"),
    (np.zeros((1, 2, 3, 4)), ValueError, r"^x: expected shape .* got 4 dimension\(s\)"),
    (np.zeros((3, 0)), ValueError, r"^x: dim must be >= 1, got shape \(3, 0\)$"),
    (np.zeros((2, 0, 3)), ValueError, r"^x: needs at least one point, got shape \(2, 0, 3\)$"),
    ([[0.0, 1.0], [2.0]], ValueError, r"^x: not an array of paths of one shape"),
    (np.zeros((3, 2), dtype=complex), TypeError, r"^x: expected a real numeric array"),
    (np.array([["a", "b"]]), TypeError, r"^x: expected a real numeric array"),
    (np.array([[0.0, np.nan]]), ValueError, r"^x: contains NaN or inf$"),
])
def test_check_paths_refuses_naming_the_argument(bad, error, message):
    with pytest.raises(error, match=message):
        check_paths(bad, "x")


def test_check_paths_options_min_points_and_finite():
    with pytest.raises(ValueError, match=r"^x: needs at least 2 points, got shape \(1, 2\)$"):
        check_paths(np.zeros((1, 2)), "x", min_points=2)
    assert check_paths(np.zeros((0, 2)), "x", min_points=0).shape == (0, 2)
    nan = np.array([[np.nan, 0.0]])
    assert np.isnan(check_paths(nan, "x", finite=False)).any()


def test_check_path_batch_follows_the_scikit_learn_conventions():
    sparse = pytest.importorskip("scipy.sparse")
    x = np.zeros((2, 3, 1))
    assert check_path_batch(x) is x
    assert check_path_batch(x.astype(object)).dtype == np.float64
    with pytest.raises(TypeError, match=r"^X: sparse input is not supported"):
        check_path_batch(sparse.csr_matrix(np.zeros((2, 3))))
    with pytest.raises(ValueError, match=r"^X: paths must share one length"):
        check_path_batch([[[0.0], [1.0]], [[0.0]]])
    with pytest.raises(ValueError, match=r"^X: Complex data not supported"):
        check_path_batch(np.zeros((2, 3, 1), dtype=complex))
    with pytest.raises(TypeError, match=r"^X: expected real numbers, got non-numeric objects"):
        check_path_batch(np.array([[["a"]]], dtype=object))
    with pytest.raises(TypeError, match=r"^X: expected real numbers, got dtype"):
        check_path_batch(np.array([[["a"]]]))
    with pytest.raises(ValueError, match=r"^X: expected a 3-d array"):
        check_path_batch(np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"^paths: found array with shape \(0, 3, 1\)"):
        check_path_batch(np.zeros((0, 3, 1)), "paths")
    with pytest.raises(ValueError, match=r"^X: input contains NaN or infinity"):
        check_path_batch(np.full((1, 2, 1), np.inf))


def test_set_path_input_tags():
    sklearn_base = pytest.importorskip("sklearn.base")
    if not hasattr(sklearn_base.BaseEstimator, "__sklearn_tags__"):
        pytest.skip("scikit-learn < 1.6 has no tags objects")
    tags = sklearn_base.BaseEstimator().__sklearn_tags__()
    assert set_path_input_tags(tags) is tags
    assert (tags.input_tags.two_d_array, tags.input_tags.three_d_array,
            tags.input_tags.sparse, tags.input_tags.allow_nan) == (False, True, False, False)


def test_the_module_imports_numpy_only():
    # it sits below every other module (the compiled extensions import it): it may
    # import the standard library and numpy, and no part of hftsig
    import hftsig._validation as module

    tree = ast.parse(pathlib.Path(module.__file__).read_text())
    imported = {alias.name.split(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.level == 0}
    assert imported - set(sys.stdlib_module_names) == {"numpy"}
