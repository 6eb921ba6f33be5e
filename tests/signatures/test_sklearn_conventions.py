"""scikit-learn's estimator conventions on 3-d input (batches of paths).

``SignatureTransformer`` and the stoppers take X of shape (n_samples, length,
dim).  For such input a "feature" in scikit-learn's sense is a channel:
``n_features_in_`` is ``dim``, and channel names play the role of feature
names.  The conventions are tested here directly on 3-d data; scikit-learn's
own ``check_estimator`` suite (written for 2-d X) runs on a probe that claims
2-d input, with the checks that cannot apply to paths listed as expected
failures, each with its reason.
"""
import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.base import clone
from sklearn.exceptions import NotFittedError, SkipTestWarning
from sklearn.linear_model import Ridge
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.utils import estimator_checks as skchecks
from sklearn.utils import get_tags
from sklearn.utils.estimator_checks import check_estimator, parametrize_with_checks

from hftsig import SignatureTransformer
from hftsig.stopping import processes as paths
from hftsig.stopping.stoppers import PolynomialStopper, SignatureStopper, _as_paths

RNG_SEED = 11


def _paths(n=30, length=12, dim=2, seed=RNG_SEED):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, length, dim)).cumsum(axis=1) * 0.3


def _put(s):
    return np.maximum(40.0 - s[..., 0], 0.0)


def _gbm(n=200, seed=0):
    return paths.gbm(n, 8, s0=36.0, mu=0.06, sigma=0.2, T=1.0, random_state=seed)


def _fit(est):
    """Fit any of the three estimators on small 3-d data."""
    if isinstance(est, SignatureTransformer):
        return est.fit(_paths())
    return est.fit(_gbm(), _put, discount=0.06)


def _output(est):
    """What the fitted estimator computes on fresh 3-d data."""
    if isinstance(est, SignatureTransformer):
        return est.transform(_paths(seed=99))
    return est.stopping_times(_gbm(seed=5), _put)


ESTIMATORS = [
    SignatureTransformer(depth=3, logsig=True, time_aug=True),
    SignatureStopper(depth=2, lags=1),
    PolynomialStopper(degree=2),
]
IDS = ["SignatureTransformer", "SignatureStopper", "PolynomialStopper"]


# -- tags ------------------------------------------------------------------------------------


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_tags_declare_3d_dense_finite_input(est):
    tags = get_tags(est).input_tags
    assert tags.three_d_array is True
    assert tags.two_d_array is False
    assert tags.sparse is False
    assert tags.allow_nan is False


def test_stopper_tags_require_the_payoffs():
    assert get_tags(SignatureStopper()).target_tags.required is True
    assert get_tags(PolynomialStopper()).target_tags.required is True


# -- parameters: clone, get_params/set_params, __init__ -----------------------------------------


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_clone_and_params_round_trip(est):
    params = est.get_params()
    copy = clone(est)
    assert copy is not est
    assert copy.get_params() == params
    # set_params returns the estimator and get_params reads back what was set
    changed = {"alpha": 0.5} if "alpha" in params else {"depth": 4}
    assert copy.set_params(**changed) is copy
    assert copy.get_params() == {**params, **changed}
    assert est.get_params() == params  # the original is untouched
    with pytest.raises(ValueError, match="Invalid parameter"):
        copy.set_params(no_such_parameter=1)


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_clone_of_fitted_estimator_is_unfitted(est):
    fitted = _fit(clone(est))
    copy = clone(fitted)
    assert not [a for a in vars(copy) if a.endswith("_")]
    with pytest.raises(NotFittedError):
        _output(copy)


@pytest.mark.parametrize("check", [
    skchecks.check_no_attributes_set_in_init,
    skchecks.check_parameters_default_constructible,
    skchecks.check_get_params_invariance,
    skchecks.check_set_params,
    skchecks.check_estimator_cloneable,
    skchecks.check_estimator_repr,
    skchecks.check_do_not_raise_errors_in_init_or_set_params,
    skchecks.check_valid_tag_types,
    skchecks.check_estimator_tags_renamed,
    skchecks.check_mixin_order,
], ids=lambda c: c.__name__)
@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_data_free_sklearn_checks(est, check):
    """scikit-learn's checks that feed no X apply to 3-d estimators as they are."""
    check(type(est).__name__, clone(est))


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_fitted_attributes_end_in_underscore(est):
    fresh = clone(est)
    before = set(vars(fresh))
    assert before == set(fresh.get_params())
    fitted = _fit(fresh)
    added = set(vars(fitted)) - before
    assert added
    assert all(a.endswith("_") and not a.startswith("__") for a in added), sorted(added)


# -- fit, NotFittedError, pickling ---------------------------------------------------------------


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_fit_returns_self(est):
    est = clone(est)
    assert _fit(est) is est


def test_transformer_not_fitted_error():
    st = SignatureTransformer()
    with pytest.raises(NotFittedError):
        st.transform(_paths())
    with pytest.raises(NotFittedError):
        st.get_feature_names_out()


@pytest.mark.parametrize("est", ESTIMATORS[1:], ids=IDS[1:])
def test_stopper_not_fitted_error(est):
    est = clone(est)
    x = _gbm(20)
    with pytest.raises(NotFittedError):
        est.stopping_times(x, _put)
    with pytest.raises(NotFittedError):
        est.value(x, _put)
    sim = paths.GBMContinuation(mu=0.06, sigma=0.2, dt=1 / 8)
    with pytest.raises(NotFittedError):
        est.dual_upper_bound(x, _put, sim, n_inner=2)


@pytest.mark.parametrize("est", ESTIMATORS, ids=IDS)
def test_pickle_round_trip_gives_identical_output(est):
    fitted = _fit(clone(est))
    restored = pickle.loads(pickle.dumps(fitted))
    assert restored.get_params() == fitted.get_params()
    np.testing.assert_array_equal(_output(restored), _output(fitted))


def test_pickled_stopper_value_is_identical():
    fitted = _fit(SignatureStopper(depth=2))
    restored = pickle.loads(pickle.dumps(fitted))
    fresh = _gbm(seed=7)
    assert restored.value(fresh, _put) == fitted.value(fresh, _put)


# -- n_features_in_ and feature names ---------------------------------------------------------


def test_transformer_n_features_in_is_the_number_of_channels():
    st = SignatureTransformer(depth=2).fit(_paths(n=5, length=9, dim=3))
    assert st.n_features_in_ == 3
    # any number of samples and any length: only the channels must match
    assert st.transform(_paths(n=2, length=4, dim=3)).shape == (2, 3 + 9)
    with pytest.raises(ValueError, match="X: has 2 channels.*fitted with 3"):
        st.transform(_paths(n=2, length=4, dim=2))


@pytest.mark.parametrize("est", ESTIMATORS[1:], ids=IDS[1:])
def test_stopper_n_features_in_is_the_number_of_channels(est):
    two_assets = paths.gbm(100, 6, s0=[36.0, 40.0], mu=0.06, sigma=[0.2, 0.3], T=1.0,
                           random_state=0)
    fitted = clone(est).fit(two_assets, _put)
    assert fitted.n_features_in_ == 2 == fitted.dim_
    with pytest.raises(ValueError, match="dim=2"):
        fitted.stopping_times(two_assets[:, :, :1], _put)


def test_feature_names_in_from_channel_names():
    X = _paths(dim=2)
    st = SignatureTransformer(depth=2).fit(X, channel_names=["bid", "ask"])
    np.testing.assert_array_equal(st.feature_names_in_, ["bid", "ask"])
    assert st.get_feature_names_out().tolist() == [
        "S(bid)", "S(ask)", "S(bid,bid)", "S(bid,ask)", "S(ask,bid)", "S(ask,ask)"]
    assert len(st.get_feature_names_out()) == st.transform(X).shape[1]
    # a refit without names forgets the old ones (no stale feature_names_in_)
    st.fit(X)
    assert not hasattr(st, "feature_names_in_")
    assert st.get_feature_names_out()[:2].tolist() == ["S(0)", "S(1)"]


def test_rejected_channel_names_leave_the_fitted_state_unchanged():
    st = SignatureTransformer(depth=2).fit(_paths(dim=2), channel_names=["bid", "ask"])
    with pytest.raises(ValueError, match="channel_names"):
        st.fit(_paths(dim=3), channel_names=["a"])
    assert st.n_features_in_ == 2
    np.testing.assert_array_equal(st.feature_names_in_, ["bid", "ask"])


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_transformer_refuses_non_finite_in_fit_and_transform(bad):
    X = _paths()
    X[3, 4, 1] = bad
    with pytest.raises(ValueError, match="X: .*NaN or infinity"):
        SignatureTransformer().fit(X)
    st = SignatureTransformer().fit(_paths())
    with pytest.raises(ValueError, match="X: .*NaN or infinity"):
        st.transform(X)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("est", ESTIMATORS[1:], ids=IDS[1:])
def test_stopper_refuses_non_finite_in_fit_and_predict(est, bad):
    x = _gbm()
    x_bad = x.copy()
    x_bad[3, 4, 0] = bad
    with pytest.raises(ValueError, match="paths contains NaN or infinite"):
        clone(est).fit(x_bad, _put)
    fitted = clone(est).fit(x, _put)
    for method in (fitted.stopping_times, fitted.value):
        with pytest.raises(ValueError, match="paths contains NaN or infinite"):
            method(x_bad, _put)


def _ragged_list():
    return [np.zeros((5, 2)), np.zeros((4, 2))]


def _ragged_object_array():
    arr = np.empty(2, dtype=object)
    arr[0], arr[1] = np.zeros((5, 2)), np.zeros((4, 2))
    return arr


BAD_X = [
    pytest.param(np.zeros((0, 5, 2)), ValueError, r"X: .*shape \(0, 5, 2\)", id="no-samples"),
    pytest.param(np.zeros((3, 0, 2)), ValueError, r"X: .*shape \(3, 0, 2\)", id="no-points"),
    pytest.param(np.zeros((3, 5, 0)), ValueError, r"X: .*shape \(3, 5, 0\)", id="no-channels"),
    pytest.param(np.zeros((3, 5, 2), dtype=complex), ValueError, "X: Complex data not supported",
                 id="complex"),
    pytest.param(sp.csr_matrix(np.eye(3)), TypeError, "X: sparse input is not supported",
                 id="sparse-matrix"),
    pytest.param(sp.csr_array(np.eye(3)), TypeError, "X: sparse input is not supported",
                 id="sparse-array"),
    pytest.param(sp.coo_array(np.ones((3, 5, 2))), TypeError, "X: sparse input is not supported",
                 id="sparse-3d-coo"),
    pytest.param(np.zeros((3, 5)), ValueError, r"X: expected a 3-d array .*\(3, 5\)", id="2-d"),
    pytest.param(_ragged_list(), ValueError, "X: paths must share .* ragged", id="ragged-list"),
    pytest.param(_ragged_object_array(), ValueError, "X: paths must share .* ragged",
                 id="ragged-object-array"),
    pytest.param(np.full((3, 5, 2), "a"), TypeError, "X: expected real numbers", id="strings"),
    pytest.param(np.full((3, 5, 2), "a", dtype=object), TypeError, "X: expected real numbers",
                 id="object-strings"),
]


@pytest.mark.parametrize("X, error, message", BAD_X)
def test_transformer_refuses_bad_input_in_fit_and_transform(X, error, message):
    with pytest.raises(error, match=message):
        SignatureTransformer().fit(X)
    st = SignatureTransformer().fit(_paths(dim=2))
    with pytest.raises(error, match=message):
        st.transform(X)


def test_transformer_accepts_object_array_of_numbers():
    X = _paths()
    st = SignatureTransformer(depth=2).fit(X.astype(object))
    np.testing.assert_array_equal(st.transform(X.astype(object)), st.transform(X))


BAD_PATHS = [
    pytest.param(np.zeros((0, 5, 2)), ValueError, "at least one path", id="no-paths"),
    pytest.param(np.zeros((3, 5, 2), dtype=complex), ValueError,
                 "paths: Complex data not supported", id="complex"),
    pytest.param(sp.csr_matrix(np.eye(3)), TypeError, "paths: sparse input is not supported",
                 id="sparse-matrix"),
    pytest.param(sp.coo_array(np.ones((3, 5, 2))), TypeError,
                 "paths: sparse input is not supported", id="sparse-3d-coo"),
    pytest.param(_ragged_list(), ValueError, "paths must share .* ragged", id="ragged-list"),
    pytest.param(_ragged_object_array(), ValueError, "paths must share .* ragged",
                 id="ragged-object-array"),
    pytest.param(np.zeros((3, 5, 2, 1)), ValueError, r"paths must have shape", id="4-d"),
]


@pytest.mark.parametrize("X, error, message", BAD_PATHS)
def test_stopper_paths_refuse_bad_input(X, error, message):
    with pytest.raises(error, match=message):
        _as_paths(X)
    with pytest.raises(error, match=message):
        SignatureStopper().fit(X, np.zeros((3, 5)))


def test_stopper_2d_paths_stay_the_dim_1_shorthand():
    """(n_paths, n_points) is documented as dim=1, not scikit-learn's 2-d table."""
    x = _gbm()
    z = _put(x)
    flat = SignatureStopper(depth=2).fit(x[:, :, 0], z)
    full = SignatureStopper(depth=2).fit(x, z)
    assert flat.n_features_in_ == full.n_features_in_ == 1
    np.testing.assert_array_equal(flat.coef_, full.coef_)


# -- model selection --------------------------------------------------------------------------


def test_pipeline_in_grid_search_over_depth():
    """GridSearchCV over the transformer's depth, channel names routed to its fit.

    The target is the signed area between the two channels, a level-2
    signature coordinate: depth 1 cannot express it, depths 2 and 3 can.
    """
    rng = np.random.default_rng(3)
    X = rng.standard_normal((80, 15, 2)).cumsum(axis=1)
    dx = np.diff(X, axis=1)
    centred = X[:, :-1] - X[:, :1]
    area = 0.5 * ((centred[..., 0] * dx[..., 1]) - (centred[..., 1] * dx[..., 0])).sum(axis=1)
    y = area + 0.01 * rng.standard_normal(80)
    pipe = make_pipeline(SignatureTransformer(), Ridge(alpha=1e-6))
    assert "signaturetransformer" in pipe.named_steps
    search = GridSearchCV(pipe, {"signaturetransformer__depth": [1, 2, 3]},
                          cv=KFold(4, shuffle=True, random_state=0))
    assert search.fit(X, y, signaturetransformer__channel_names=["bid", "ask"]) is search
    assert search.best_params_["signaturetransformer__depth"] in (2, 3)
    scores = search.cv_results_["mean_test_score"]
    assert scores[0] < 0.5 < min(scores[1], scores[2])
    best = search.best_estimator_
    np.testing.assert_array_equal(best[0].feature_names_in_, ["bid", "ask"])
    assert "S(bid,ask)" in best[0].get_feature_names_out()
    assert best.predict(X[:5]).shape == (5,)


# -- scikit-learn's check_estimator suite ---------------------------------------------------------


def test_check_estimator_sees_the_3d_declaration():
    """With the honest tags scikit-learn runs none of its 2-d-input checks, and says why."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        results = check_estimator(SignatureTransformer(), on_fail=None)
    # only the cloneability check runs before scikit-learn reads the input tags
    assert [(r["check_name"], r["status"]) for r in results] == [
        ("check_estimator_cloneable", "passed")]
    assert any(issubclass(w.category, SkipTestWarning) and "Can't test estimator" in str(w.message)
               for w in caught)


class _TwoDimProbe(SignatureTransformer):
    """``SignatureTransformer`` claiming 2-d input so that scikit-learn generates its checks.

    Only the tag differs: every check still runs the real fit/transform,
    which refuse 2-d X.  The checks that fail for that reason alone are the
    expected failures below.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = True
        return tags


_FEEDS_2D = "feeds a 2-d X (n_samples, n_features); SignatureTransformer takes 3-d paths"

# Each of these fails only on the 2-d X it is given; the convention it tests is
# tested on 3-d paths in this file (named in the reason).
PROBE_EXPECTED_FAILURES = {
    "check_fit_score_takes_y": _FEEDS_2D,
    "check_estimators_overwrite_params": _FEEDS_2D + " (see test_clone_and_params_round_trip)",
    "check_dont_overwrite_parameters": _FEEDS_2D
    + " (see test_fitted_attributes_end_in_underscore)",
    "check_estimators_fit_returns_self": _FEEDS_2D + " (see test_fit_returns_self)",
    "check_readonly_memmap_input": _FEEDS_2D,
    "check_n_features_in_after_fitting": _FEEDS_2D
    + " (see test_transformer_n_features_in_is_the_number_of_channels)",
    "check_positive_only_tag_during_fit": _FEEDS_2D,
    "check_estimators_dtypes": _FEEDS_2D,
    "check_dtype_object": _FEEDS_2D + " (see test_transformer_accepts_object_array_of_numbers)",
    "check_estimators_empty_data_messages": _FEEDS_2D
    + " (see test_transformer_refuses_bad_input_in_fit_and_transform)",
    "check_pipeline_consistency": _FEEDS_2D,
    "check_estimators_nan_inf": _FEEDS_2D
    + " (see test_transformer_refuses_non_finite_in_fit_and_transform)",
    "check_estimators_pickle": _FEEDS_2D
    + " (see test_pickle_round_trip_gives_identical_output)",
    "check_f_contiguous_array_estimator": _FEEDS_2D,
    "check_transformer_data_not_an_array": _FEEDS_2D,
    "check_transformer_general": _FEEDS_2D,
    "check_transformer_preserve_dtypes": _FEEDS_2D,
    "check_methods_sample_order_invariance": _FEEDS_2D,
    "check_methods_subset_invariance": _FEEDS_2D,
    "check_fit2d_1sample": _FEEDS_2D,
    "check_fit2d_1feature": _FEEDS_2D,
    "check_dict_unchanged": _FEEDS_2D,
    "check_fit_idempotent": _FEEDS_2D,
    "check_fit_check_is_fitted": _FEEDS_2D + " (see test_transformer_not_fitted_error)",
    "check_n_features_in": _FEEDS_2D,
    "check_fit2d_predict1d": _FEEDS_2D,
}


# xfail_strict: an expected failure that starts passing fails the test, so the
# list above cannot silently outlive its reason
@parametrize_with_checks([_TwoDimProbe()], expected_failed_checks=lambda est:
                         PROBE_EXPECTED_FAILURES, xfail_strict=True)
def test_sklearn_check_estimator_suite(estimator, check):
    check(estimator)


def test_probe_expected_failures_fail_only_on_the_2d_input():
    """Every expected failure is the transformer refusing 2-d X, and nothing else fails."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(_TwoDimProbe(), on_fail=None)
    failed = [r for r in results if r["status"] == "failed"]
    assert {r["check_name"] for r in failed} == set(PROBE_EXPECTED_FAILURES)
    for r in failed:
        chain, exc = [], r["exception"]
        while exc is not None:
            chain.append(str(exc))
            exc = exc.__cause__ or exc.__context__
        assert any(m.startswith("X: expected a 3-d array") for m in chain), (r["check_name"], chain)
    # the rest pass: the skipped one is the array-API check, off unless SCIPY_ARRAY_API is set
    others = {r["status"] for r in results if r["status"] != "failed"}
    assert others <= {"passed", "skipped"}
    assert [r["check_name"] for r in results if r["status"] == "skipped"] in (
        [], ["check_array_api_input"])
