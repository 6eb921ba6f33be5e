"""hftsig.signatures.jax: differentiable signatures and signature kernels on JAX arrays (only where JAX is
installed)."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

jax = pytest.importorskip("jax")

import jax.numpy as jnp  # noqa: E402

import hftsig  # noqa: E402
import hftsig.signatures.jax as hj  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def x64():
    # 64-bit mode only inside the test: the rest of the session keeps JAX's float32 default
    with jax.enable_x64(True):
        yield


def walks(*shape, seed=0, scale=0.3):
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.standard_normal(shape) * scale, axis=-2)


def central_differences(f, x, h=1e-6):
    """Gradient of the scalar numpy function ``f`` at ``x`` by central differences."""
    x = np.array(x, dtype=np.float64)
    grad = np.empty_like(x)
    for i in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[i] += h
        xm[i] -= h
        grad[i] = (f(xp) - f(xm)) / (2 * h)
    return grad


# ------------------------------------------------------------------------- values

@pytest.mark.parametrize("shape", [(7, 3), (4, 7, 3), (2, 3, 7, 3)])
def test_sig_and_logsig_values_match_numpy_for_any_batch_shape(x64, shape):
    path = walks(*shape, seed=1)
    flat = path.reshape((-1,) + shape[-2:])
    for kw in (dict(), dict(time_aug=True, basepoint=True), dict(lead_lag=True)):
        got = hj.sig(jnp.asarray(path), 3, **kw)
        want = hftsig.sig(flat, 3, **kw).reshape(shape[:-2] + (-1,))
        assert got.dtype == jnp.float64 and got.shape == want.shape
        np.testing.assert_array_equal(np.asarray(got), want)
    for basis in ("lyndon", "expanded"):
        got = hj.logsig(jnp.asarray(path), 3, basis=basis)
        want = hftsig.logsig(flat, 3, basis=basis).reshape(shape[:-2] + (-1,))
        np.testing.assert_array_equal(np.asarray(got), want)


def test_kernel_gram_and_mmd_values_match_numpy(x64):
    X, Y = walks(4, 6, 2, seed=2), walks(4, 5, 2, seed=3)
    kw = dict(dyadic_order=(2, 1), static_kernel="rbf", sigma=0.7)
    np.testing.assert_array_equal(np.asarray(hj.sig_kernel(jnp.asarray(X), jnp.asarray(Y), **kw)),
                                  hftsig.sig_kernel(X, Y, **kw))
    assert float(hj.sig_kernel(jnp.asarray(X[1]), jnp.asarray(Y[2]), **kw)) == \
        hftsig.sig_kernel(X[1], Y[2], **kw)
    # two leading axes: pairs (i, j) matched elementwise
    X4, Y4 = X.reshape(2, 2, 6, 2), Y.reshape(2, 2, 5, 2)
    np.testing.assert_array_equal(np.asarray(hj.sig_kernel(jnp.asarray(X4), jnp.asarray(Y4))),
                                  hftsig.sig_kernel(X, Y).reshape(2, 2))
    np.testing.assert_array_equal(np.asarray(hj.sig_kernel_gram(jnp.asarray(X), **kw)),
                                  hftsig.sig_kernel_gram(X, **kw))
    np.testing.assert_array_equal(
        np.asarray(hj.sig_kernel_gram(jnp.asarray(X), jnp.asarray(Y[:3]), **kw)),
        hftsig.sig_kernel_gram(X, Y[:3], **kw))
    for unbiased in (True, False):
        np.testing.assert_allclose(
            float(hj.sig_mmd(jnp.asarray(X), jnp.asarray(Y), unbiased=unbiased, **kw)),
            hftsig.sig_mmd(X, Y, unbiased=unbiased, **kw), rtol=1e-12, atol=1e-15)


# ---------------------------------------------------------------------- gradients

def test_sig_and_logsig_vjps_are_the_backprop_functions(x64):
    path = walks(3, 6, 2, seed=4)
    for kw in (dict(), dict(time_aug=True, lead_lag=True, basepoint=True)):
        out, vjp = jax.vjp(lambda p: hj.sig(p, 3, **kw), jnp.asarray(path))
        cot = np.random.default_rng(5).standard_normal(out.shape)
        (got,) = vjp(jnp.asarray(cot))
        np.testing.assert_array_equal(np.asarray(got), hftsig.sigbackprop(cot, path, 3, **kw))
        out, vjp = jax.vjp(lambda p: hj.logsig(p, 3, **kw), jnp.asarray(path))
        cot = np.random.default_rng(6).standard_normal(out.shape)
        (got,) = vjp(jnp.asarray(cot))
        np.testing.assert_array_equal(np.asarray(got), hftsig.logsigbackprop(cot, path, 3, **kw))


def test_sig_and_logsig_grads_match_central_differences(x64):
    path = walks(5, 2, seed=7)
    weights = np.random.default_rng(8).standard_normal(hftsig.siglength(3, 3))

    def loss(p):
        return (hftsig.sig(p, 3, time_aug=True) * weights).sum()

    got = jax.grad(lambda p: (hj.sig(p, 3, time_aug=True) * weights).sum())(jnp.asarray(path))
    np.testing.assert_allclose(np.asarray(got), central_differences(loss, path), atol=1e-7)
    got = jax.grad(lambda p: jnp.sin(hj.logsig(p, 3)).sum())(jnp.asarray(path))
    want = central_differences(lambda p: np.sin(hftsig.logsig(p, 3)).sum(), path)
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-7)


@pytest.mark.parametrize("kw", [dict(dyadic_order=1), dict(dyadic_order=(2, 0)),
                                dict(static_kernel="rbf", sigma=0.6)])
def test_sig_kernel_grad_is_backprop_and_central_differences(x64, kw):
    x, y = walks(3, 5, 2, seed=9), walks(3, 4, 2, seed=10)
    weights = np.array([0.5, -1.0, 2.0])
    gx, gy = jax.grad(lambda a, b: (hj.sig_kernel(a, b, **kw) * weights).sum(), argnums=(0, 1))(
        jnp.asarray(x), jnp.asarray(y))
    want_x, want_y = hftsig.sig_kernel_backprop(weights, x, y, **kw)
    np.testing.assert_array_equal(np.asarray(gx), want_x)
    np.testing.assert_array_equal(np.asarray(gy), want_y)
    fd_x = central_differences(lambda a: (hftsig.sig_kernel(a, y, **kw) * weights).sum(), x)
    fd_y = central_differences(lambda b: (hftsig.sig_kernel(x, b, **kw) * weights).sum(), y)
    np.testing.assert_allclose(np.asarray(gx), fd_x, atol=1e-7)
    np.testing.assert_allclose(np.asarray(gy), fd_y, atol=1e-7)
    g1 = jax.grad(hj.sig_kernel)(jnp.asarray(x[0]), jnp.asarray(y[0]), **kw)
    np.testing.assert_allclose(
        np.asarray(g1), central_differences(lambda a: hftsig.sig_kernel(a, y[0], **kw), x[0]),
        atol=1e-7)


def test_gram_and_mmd_grads_are_backprop_and_central_differences(x64):
    X, Y = walks(3, 4, 2, seed=11), walks(2, 5, 2, seed=12)
    kw = dict(dyadic_order=1)
    W = np.random.default_rng(13).standard_normal((3, 2))
    gX, gY = jax.grad(lambda a, b: (hj.sig_kernel_gram(a, b, **kw) * W).sum(), argnums=(0, 1))(
        jnp.asarray(X), jnp.asarray(Y))
    want_X, want_Y = hftsig.sig_kernel_gram_backprop(W, X, Y, **kw)
    np.testing.assert_array_equal(np.asarray(gX), want_X)
    np.testing.assert_array_equal(np.asarray(gY), want_Y)
    V = np.random.default_rng(14).standard_normal((3, 3))   # not symmetric on purpose
    gS = jax.grad(lambda a: (hj.sig_kernel_gram(a, **kw) * V).sum())(jnp.asarray(X))
    np.testing.assert_array_equal(np.asarray(gS), hftsig.sig_kernel_gram_backprop(V, X, **kw))
    np.testing.assert_allclose(
        np.asarray(gS), central_differences(lambda a: (hftsig.sig_kernel_gram(a, **kw) * V).sum(),
                                            X), atol=1e-7)
    mmd_kw = dict(static_kernel="rbf", sigma=0.5)
    gX, gY = jax.grad(hj.sig_mmd, argnums=(0, 1))(jnp.asarray(X), jnp.asarray(Y), **mmd_kw)
    np.testing.assert_allclose(
        np.asarray(gX), central_differences(lambda a: hftsig.sig_mmd(a, Y, **mmd_kw), X),
        atol=1e-7)
    np.testing.assert_allclose(
        np.asarray(gY), central_differences(lambda b: hftsig.sig_mmd(X, b, **mmd_kw), Y),
        atol=1e-7)


# ------------------------------------------------------------------ jit, vmap, dtypes

def test_jit_gives_the_same_values_and_gradients(x64):
    X, Y = jnp.asarray(walks(6, 5, 2, seed=15)), jnp.asarray(walks(6, 5, 2, seed=16))

    def loss(a, b):
        return hj.sig_mmd(a, b, dyadic_order=1) + hj.sig(a, 2).sum() + hj.logsig(b, 2).sum() \
            + hj.sig_kernel(a, b).mean()

    eager_value, eager_grads = jax.value_and_grad(loss, argnums=(0, 1))(X, Y)
    jitted = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    for _ in range(2):  # the second call runs the compiled function
        value, grads = jitted(X, Y)
        np.testing.assert_allclose(float(value), float(eager_value), rtol=1e-14)
        for g, e in zip(grads, eager_grads):
            np.testing.assert_allclose(np.asarray(g), np.asarray(e), rtol=1e-13, atol=1e-15)


def test_vmap_matches_batched_calls(x64):
    X, Y = walks(4, 6, 2, seed=17), walks(4, 5, 2, seed=18)
    np.testing.assert_allclose(np.asarray(jax.vmap(lambda p: hj.sig(p, 3))(jnp.asarray(X))),
                               hftsig.sig(X, 3), rtol=1e-14)
    # x mapped, y shared: broadcast to pairs
    got = jax.vmap(hj.sig_kernel, in_axes=(0, None))(jnp.asarray(X), jnp.asarray(Y[0]))
    np.testing.assert_allclose(np.asarray(got), hftsig.sig_kernel_gram(X, Y[:1])[:, 0],
                               rtol=1e-14)
    per_path = jax.vmap(jax.grad(hj.sig_kernel), in_axes=(0, None))(jnp.asarray(X),
                                                                     jnp.asarray(Y[0]))
    want = hftsig.sig_kernel_backprop(np.ones(4), X, np.broadcast_to(Y[0], (4, 5, 2)))[0]
    np.testing.assert_allclose(np.asarray(per_path), want, rtol=1e-13)
    # a batch of Gram matrices, one hftsig call per element
    grams = jax.vmap(hj.sig_kernel_gram)(jnp.asarray(X.reshape(2, 2, 6, 2)))
    np.testing.assert_allclose(np.asarray(grams[1]), hftsig.sig_kernel_gram(X[2:]), rtol=1e-14)


@pytest.fixture
def x32():
    # JAX's default mode, whatever JAX_ENABLE_X64 says: float64 arrays become float32
    with jax.enable_x64(False):
        yield


def test_float32_default_mode_returns_float32_close_to_float64(x32):
    X, Y = walks(4, 6, 2, seed=19), walks(4, 5, 2, seed=20)
    X32, Y32 = jnp.asarray(X, dtype=jnp.float32), jnp.asarray(Y, dtype=jnp.float32)
    Xr, Yr = np.asarray(X32, dtype=np.float64), np.asarray(Y32, dtype=np.float64)
    k = hj.sig_kernel(X32, Y32)
    assert k.dtype == jnp.float32
    # computed in float64 on the float32 inputs, then rounded once
    np.testing.assert_array_equal(np.asarray(k), hftsig.sig_kernel(Xr, Yr).astype(np.float32))
    s = hj.sig(X32, 3)
    assert s.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(s), hftsig.sig(Xr, 3).astype(np.float32))
    gX = jax.grad(lambda a: hj.sig_mmd(a, Y32))(X32)
    assert gX.dtype == jnp.float32
    eps = 1e-7
    want = central_differences(lambda a: hftsig.sig_mmd(a, Yr), Xr, h=1e-6)
    np.testing.assert_allclose(np.asarray(gX), want, rtol=1e-5, atol=eps)


def test_float32_inputs_in_x64_mode_stay_float32_and_mixed_inputs_promote(x64):
    X, Y = walks(3, 6, 2, seed=21), walks(3, 5, 2, seed=22)
    X32 = jnp.asarray(X, dtype=jnp.float32)
    assert hj.sig(X32, 2).dtype == jnp.float32
    assert jax.grad(lambda a: hj.sig(a, 2).sum())(X32).dtype == jnp.float32
    assert hj.sig_kernel(X32, jnp.asarray(Y)).dtype == jnp.float64
    gX, gY = jax.grad(lambda a, b: hj.sig_kernel_gram(a, b).sum(), argnums=(0, 1))(
        X32, jnp.asarray(Y))
    assert gX.dtype == jnp.float32 and gY.dtype == jnp.float64


def test_mmd_gradient_descent_moves_samples_together(x64):
    target = jnp.asarray(walks(10, 6, 2, seed=23, scale=0.2) + np.linspace(0, 1, 6)[:, None])
    X = jnp.asarray(walks(10, 6, 2, seed=24, scale=0.2))
    step = jax.jit(jax.value_and_grad(
        lambda a: hj.sig_mmd(a, target, unbiased=False, static_kernel="rbf", sigma=1.0)))
    first, _ = step(X)
    for _ in range(15):
        loss, g = step(X)
        X = X - 0.5 * g
    assert float(loss) < 0.5 * float(first)


# ----------------------------------------------------------------------------- errors

def test_bad_arguments_name_the_argument_at_trace_time():
    x = jnp.zeros((3, 2))
    with pytest.raises(TypeError, match="x: expected a floating point"):
        hj.sig_kernel(jnp.zeros((3, 2), dtype=jnp.int32), x)
    with pytest.raises(TypeError, match="path: expected an array"):
        hj.sig("abc", 2)
    with pytest.raises(ValueError, match="path: expected shape"):
        hj.sig(jnp.zeros(3), 2)
    with pytest.raises(ValueError, match="depth"):
        hj.sig(x, 0)
    with pytest.raises(TypeError, match="time_aug"):
        hj.sig(x, 2, time_aug=1)
    with pytest.raises(ValueError, match="basis"):
        hj.logsig(x, 2, basis="hall")
    with pytest.raises(ValueError, match="y: dim 3 differs"):
        hj.sig_kernel(x, jnp.zeros((3, 3)))
    with pytest.raises(ValueError, match="y: leading"):
        hj.sig_kernel(jnp.zeros((2, 3, 2)), jnp.zeros((3, 3, 2)))
    with pytest.raises(ValueError, match="static_kernel"):
        jax.jit(lambda a: hj.sig_kernel(a, a, static_kernel="cubic"))(x)
    with pytest.raises(ValueError, match="dyadic_order"):
        hj.sig_kernel_gram(jnp.zeros((2, 3, 2)), dyadic_order=-1)
    with pytest.raises(ValueError, match="Y: expected a batch"):
        hj.sig_kernel_gram(jnp.zeros((2, 3, 2)), x)
    with pytest.raises(TypeError, match="unbiased"):
        hj.sig_mmd(jnp.zeros((3, 3, 2)), jnp.zeros((3, 3, 2)), unbiased=1)
    with pytest.raises(ValueError, match="at least 2 paths"):
        hj.sig_mmd(jnp.zeros((1, 3, 2)), jnp.zeros((3, 3, 2)))


def _run(code):
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={"PYTHONPATH": str(ROOT)})


def test_import_hftsig_does_not_import_jax():
    done = _run("import sys, hftsig; hftsig.sig_kernel([[0.0], [1.0]], [[0.0], [2.0]]); "
                "print(sorted(m for m in sys.modules if m == 'jax' or m.startswith('jax.')))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_without_jax_the_import_error_says_how_to_install_it():
    # None in sys.modules makes "import jax" fail as it does where JAX is not installed
    done = _run("import sys; sys.modules['jax'] = None\n"
                "try:\n    import hftsig.signatures.jax\n"
                "except ImportError as exc:\n    print(exc)\n")
    assert done.returncode == 0, done.stderr
    assert "hftsig.signatures.jax needs JAX" in done.stdout and "pip install jax" in done.stdout
