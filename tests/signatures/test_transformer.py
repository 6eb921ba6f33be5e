"""Tests of hftsig/signatures/transformer.py: SignatureTransformer as a scikit-learn estimator."""
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import Ridge
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from hftsig import SignatureTransformer, logsiglength
from hftsig.signatures.augmentations import lead_lag as lead_lag_transform
from hftsig.signatures.augmentations import time_augment
from iisignature_reference import iisignature  # iisignature 0.24, or its stored outputs

RNG = np.random.default_rng(7)


def _paths(n=40, length=20, dim=2):
    return RNG.standard_normal((n, length, dim)).cumsum(axis=1) * 0.3


def test_transform_is_the_signature_and_the_logsignature():
    X = _paths(5, 15, 3)
    sig = SignatureTransformer(depth=3).fit_transform(X)
    np.testing.assert_allclose(sig, iisignature.sig(X, 3), rtol=1e-10, atol=1e-12)
    log = SignatureTransformer(depth=3, logsig=True).fit_transform(X)
    np.testing.assert_allclose(
        log, iisignature.logsig(X, iisignature.prepare(3, 3)), rtol=1e-10, atol=1e-12
    )


def test_transforms_are_applied_before_the_signature():
    X = _paths(4, 10, 2)
    st = SignatureTransformer(depth=3, time_aug=True, lead_lag=True).fit(X)
    expected = iisignature.sig(time_augment(lead_lag_transform(X)), 3)
    np.testing.assert_allclose(st.transform(X), expected, rtol=1e-10, atol=1e-12)
    assert st.get_feature_names_out().shape == (expected.shape[1],)
    stl = SignatureTransformer(depth=3, logsig=True, time_aug=True).fit(X)
    assert stl.transform(X).shape == (4, logsiglength(3, 3))
    assert stl.get_feature_names_out().shape == (logsiglength(3, 3),)


def test_feature_names_point_at_the_right_coordinates():
    # with lead-lag, the area between a channel's lead and its lag is its
    # quadratic variation, and the time channel increases by exactly 1
    X = _paths(6, 30, 2)
    st = SignatureTransformer(depth=2, time_aug=True, lead_lag=True)
    feats = st.fit(X, channel_names=["bid", "ask"]).transform(X)
    col = {name: k for k, name in enumerate(st.get_feature_names_out())}
    qv = (np.diff(X, axis=1) ** 2).sum(axis=1)
    for c, name in enumerate(["bid", "ask"]):
        area = feats[:, col[f"S({name}_lead,{name}_lag)"]] - feats[:, col[f"S({name}_lag,{name}_lead)"]]
        np.testing.assert_allclose(area, qv[:, c], rtol=1e-10)
        np.testing.assert_allclose(feats[:, col[f"S({name}_lead)"]], X[:, -1, c] - X[:, 0, c], rtol=1e-10)
    np.testing.assert_allclose(feats[:, col["S(time)"]], 1.0)
    np.testing.assert_allclose(feats[:, col["S(time,time)"]], 0.5)
    # log-signature names: the [0,1] bracket of a path is its Levy area
    st = SignatureTransformer(depth=2, logsig=True).fit(X)
    s = iisignature.sig(X, 2)
    area = st.transform(X)[:, list(st.get_feature_names_out()).index("L(0,1)")]
    np.testing.assert_allclose(area, 0.5 * (s[:, 3] - s[:, 4]), rtol=1e-10)


def test_feature_names_spell_the_words():
    X = _paths(3, 5, 2)
    st = SignatureTransformer(depth=2).fit(X)
    assert st.get_feature_names_out().tolist() == [
        "S(0)", "S(1)", "S(0,0)", "S(0,1)", "S(1,0)", "S(1,1)",
    ]
    names = SignatureTransformer(depth=3, logsig=True).fit(X).get_feature_names_out()
    assert names.tolist() == ["L(0)", "L(1)", "L(0,1)", "L(0,0,1)", "L(0,1,1)"]

    st = SignatureTransformer(depth=2, logsig=True, time_aug=True, lead_lag=True)
    st.fit(X, channel_names=["bid", "ask"])
    assert st.feature_names_in_.tolist() == ["bid", "ask"]
    names = st.get_feature_names_out().tolist()
    assert names[:5] == ["L(bid_lead)", "L(ask_lead)", "L(bid_lag)", "L(ask_lag)", "L(time)"]
    assert names[5] == "L(bid_lead,ask_lead)"
    assert len(names) == logsiglength(5, 2)
    # explicit input_features must agree with the names seen in fit
    assert st.get_feature_names_out(["bid", "ask"]).tolist() == names
    with pytest.raises(ValueError, match="feature_names_in_"):
        st.get_feature_names_out(["a", "b"])
    plain = SignatureTransformer(depth=1).fit(X)
    assert not hasattr(plain, "feature_names_in_")
    assert plain.get_feature_names_out(["x", "y"]).tolist() == ["S(x)", "S(y)"]
    with pytest.raises(ValueError, match="input_features"):
        plain.get_feature_names_out(["x"])


def test_pipeline_with_ridge_learns_a_signature_functional():
    # y is the Levy area plus a level-1 term: linear in the depth-2 signature
    X = _paths(200, 25, 2)
    inc = X[:, -1] - X[:, 0]
    s = iisignature.sig(X, 2)
    area = 0.5 * (s[:, 3] - s[:, 4])
    y = 2.0 * area - inc[:, 0]
    pipe = make_pipeline(SignatureTransformer(depth=2), Ridge(alpha=1e-8))
    pipe.fit(X[:150], y[:150])
    assert pipe.score(X[150:], y[150:]) > 0.999999
    scores = cross_val_score(
        Pipeline([("sig", SignatureTransformer(depth=3, logsig=True)), ("ridge", Ridge(alpha=1e-8))]),
        X,
        y,
        cv=3,
    )
    assert scores.min() > 0.999999
    # the Lyndon coordinate of [0,1] is the area itself
    st = SignatureTransformer(depth=2, logsig=True).fit(X)
    np.testing.assert_allclose(st.transform(X)[:, 2], area, rtol=1e-10, atol=1e-12)


def test_pipeline_passes_channel_names_and_set_output():
    X = _paths(10, 8, 2)
    y = RNG.standard_normal(10)
    pipe = Pipeline([("sig", SignatureTransformer(depth=2)), ("scale", StandardScaler())])
    pipe.fit(X, y, sig__channel_names=["px", "qty"])
    assert pipe.named_steps["sig"].feature_names_in_.tolist() == ["px", "qty"]
    assert pipe.get_feature_names_out()[3] == "S(px,qty)"
    st = SignatureTransformer(depth=2).set_output(transform="pandas")
    frame = st.fit_transform(X)
    assert list(frame.columns) == st.get_feature_names_out().tolist()


def test_clone_and_get_params_round_trip():
    st = SignatureTransformer(depth=4, logsig=True, time_aug=True, lead_lag=False, n_jobs=2)
    params = st.get_params()
    assert params == {
        "depth": 4, "logsig": True, "time_aug": True, "lead_lag": False,
        "basepoint": False, "n_jobs": 2,
    }
    twin = clone(st)
    assert twin is not st and twin.get_params() == params
    assert SignatureTransformer(**params).get_params() == params
    st.set_params(depth=2, basepoint=True)
    assert st.get_params()["depth"] == 2 and st.get_params()["basepoint"] is True
    X = _paths(3, 6, 2)
    np.testing.assert_array_equal(clone(st).fit_transform(X), st.fit_transform(X))
    assert not hasattr(clone(st), "n_features_in_")


def test_basepoint_and_threads():
    X = _paths(6, 7, 3) + 5.0
    with_bp = SignatureTransformer(depth=2, basepoint=True).fit_transform(X)
    zero = np.concatenate([np.zeros((6, 1, 3)), X], axis=1)
    np.testing.assert_allclose(with_bp, iisignature.sig(zero, 2), rtol=1e-10, atol=1e-12)
    one = SignatureTransformer(depth=3, logsig=True).fit_transform(X)
    two = SignatureTransformer(depth=3, logsig=True, n_jobs=2).fit_transform(X)
    np.testing.assert_allclose(one, two, rtol=1e-13, atol=1e-15)


def test_errors():
    X = _paths(4, 6, 2)
    with pytest.raises(NotFittedError):
        SignatureTransformer().transform(X)
    with pytest.raises(NotFittedError):
        SignatureTransformer().get_feature_names_out()
    st = SignatureTransformer(depth=2).fit(X)
    with pytest.raises(ValueError, match="X: has 3 channels"):
        st.transform(_paths(4, 6, 3))
    with pytest.raises(ValueError, match="X: expected a 3-d"):
        st.transform(X[0])
    with pytest.raises(ValueError, match="X: expected a 3-d"):
        SignatureTransformer().fit(X[0])
    with pytest.raises(TypeError, match="X"):
        SignatureTransformer().fit(X.astype(str))
    with pytest.raises(ValueError, match="depth"):
        SignatureTransformer(depth=0).fit(X)
    with pytest.raises(TypeError, match="depth"):
        SignatureTransformer(depth=2.5).fit(X)
    with pytest.raises(TypeError, match="logsig"):
        SignatureTransformer(logsig="yes").fit(X)
    with pytest.raises(ValueError, match="channel_names"):
        SignatureTransformer().fit(X, channel_names=["a"])
    bad = X.copy()
    bad[1, 2, 0] = np.nan
    with pytest.raises(ValueError, match="path"):
        st.transform(bad)
