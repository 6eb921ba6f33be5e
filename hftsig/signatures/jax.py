"""JAX glue: differentiable signatures and signature kernels on CPU arrays.

Each function runs hftsig's compiled kernels on the arrays' data through
:func:`jax.pure_callback` and gives JAX the matching backprop through
:func:`jax.custom_vjp`, so losses built on them (MMD between a generator's
paths and data, kernel scores, signature moments) train by :func:`jax.grad`,
inside :func:`jax.jit` and under :func:`jax.vmap`.  Importing this module
imports JAX; ``import hftsig`` does not.

Precision.  hftsig computes in float64 whatever the input dtype, and the
result comes back in the input's dtype.  JAX makes float32 arrays unless
64-bit mode is on (``jax.config.update("jax_enable_x64", True)`` or the
``JAX_ENABLE_X64=1`` environment variable); without it, inputs and results
are rounded to float32 (about 7 significant digits), which is too coarse for
finite-difference checks and for kernels of long or large paths.  Turn
64-bit mode on for research-grade values.

Limits.  Derivatives are first order and reverse mode only: :func:`jax.grad`,
:func:`jax.vjp` and :func:`jax.jacrev` work; forward mode (:func:`jax.jvp`,
:func:`jax.jacfwd`) and second derivatives (Hessians) do not, since the
backward passes are themselves host callbacks.  The computation runs on the
host CPU; arrays on an accelerator are copied to the host and back.

>>> import jax
>>> import jax.numpy as jnp
>>> import hftsig.signatures.jax as hj
>>> x = jnp.array([[0.0, 0.0], [0.5, 0.2], [0.3, 0.6]])
>>> y = jnp.array([[0.0, 0.0], [0.1, 0.4], [0.7, 0.5]])
>>> gx = jax.grad(hj.sig_kernel)(x, y, dyadic_order=2)
>>> gx.shape
(3, 2)
"""
import functools

try:
    import jax
    import jax.numpy as jnp
except ImportError as exc:  # hftsig's other modules never import this one
    raise ImportError("hftsig.signatures.jax needs JAX, which could not be imported "
                      f"({exc}); install it with: pip install jax") from exc
import numpy as np

import hftsig
from hftsig._validation import check_bool, check_int
from hftsig.signatures.kernels import _dyadic, _static
from hftsig.signatures.kernels import sig_kernel as _sig_kernel
from hftsig.signatures.kernels import sig_kernel_backprop as _sig_kernel_backprop
from hftsig.signatures.kernels import sig_kernel_gram as _sig_kernel_gram
from hftsig.signatures.kernels import sig_kernel_gram_backprop as _sig_kernel_gram_backprop
from hftsig.signatures.signature import _n_threads

__all__ = ["sig", "logsig", "sig_kernel", "sig_kernel_gram", "sig_mmd"]


def _array(a, name):
    """``a`` as a floating point JAX array (or tracer), with an error naming the argument."""
    if isinstance(a, (str, bytes)) or a is None:
        raise TypeError(f"{name}: expected an array, got {type(a).__name__}")
    try:
        arr = jnp.asarray(a)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name}: expected an array, got {type(a).__name__} ({exc})") from None
    if not jnp.issubdtype(arr.dtype, jnp.floating):
        raise TypeError(f"{name}: expected a floating point array, got {arr.dtype}")
    return arr


def _paths(a, name, ndim=None):
    arr = _array(a, name)
    if ndim is None and arr.ndim < 2:
        raise ValueError(f"{name}: expected shape (..., length, dim), got shape {arr.shape}")
    if ndim is not None and arr.ndim != ndim:
        raise ValueError(f"{name}: expected a batch of paths (batch, length, dim), "
                         f"got shape {arr.shape}")
    return arr


def _host(a):
    return np.ascontiguousarray(a, dtype=np.float64)


def _flat_paths(a):
    """(..., length, dim) float64 host array -> (batch, length, dim), batch = prod(...)."""
    a = _host(a)
    return a.reshape((-1,) + a.shape[-2:])


def _struct(shape, like):
    return jax.ShapeDtypeStruct(tuple(shape), like.dtype)


def _host_function(forward_host, backward_host, out_shape, vmap_method):
    """A custom_vjp function of arrays computed on the host by hftsig.

    ``forward_host(*args)`` gives the value, of shape ``out_shape(*args)`` and
    the first argument's dtype; ``backward_host(grad, *args)`` the gradient
    with respect to each argument (one array when there is one argument, a
    tuple otherwise), in their shapes and dtypes.
    """
    @jax.custom_vjp
    def function(*args):
        return jax.pure_callback(forward_host, _struct(out_shape(*args), args[0]), *args,
                                 vmap_method=vmap_method)

    def function_fwd(*args):
        return function(*args), args

    def function_bwd(args, grad):
        structs = tuple(_struct(a.shape, a) for a in args)
        grads = jax.pure_callback(backward_host, structs[0] if len(args) == 1 else structs,
                                  grad, *args, vmap_method=vmap_method)
        return (grads,) if len(args) == 1 else tuple(grads)

    function.defvjp(function_fwd, function_bwd)
    return function


# --------------------------------------------------------------------- signatures

def _signature_function(forward, backward, out_length):
    """A custom_vjp function path (..., length, dim) -> (..., out_length).

    ``forward(flat_paths)`` and ``backward(flat_grads, flat_paths)`` are the
    hftsig functions on a (batch, length, dim) float64 batch; leading axes of
    any number are flattened into that batch (which is also how
    ``vmap_method="broadcast_all"`` batches: the callback sees the vmapped
    axes in front).
    """
    def forward_host(path):
        out = forward(_flat_paths(path))
        return out.reshape(path.shape[:-2] + (out_length,)).astype(path.dtype, copy=False)

    def backward_host(grad, path):
        g = _host(grad).reshape(-1, out_length)
        out = backward(g, _flat_paths(path))
        return out.reshape(path.shape).astype(path.dtype, copy=False)

    return _host_function(forward_host, backward_host,
                          lambda path: path.shape[:-2] + (out_length,), "broadcast_all")


@functools.lru_cache(maxsize=128)
def _sig_function(dim, depth, basepoint, time_aug, lead_lag, n_jobs):
    kwargs = dict(basepoint=basepoint, time_aug=time_aug, lead_lag=lead_lag, n_jobs=n_jobs)
    # a two-point path gives the output length and checks every option now, at trace
    # time, rather than inside a callback where the error would surface wrapped
    out_length = hftsig.sig(np.zeros((2, dim)), depth, **kwargs).shape[-1]
    return _signature_function(lambda p: hftsig.sig(p, depth, **kwargs),
                               lambda g, p: hftsig.sigbackprop(g, p, depth, **kwargs),
                               out_length)


@functools.lru_cache(maxsize=128)
def _logsig_function(dim, depth, basis, basepoint, time_aug, lead_lag, n_jobs):
    kwargs = dict(basis=basis, basepoint=basepoint, time_aug=time_aug, lead_lag=lead_lag,
                  n_jobs=n_jobs)
    out_length = hftsig.logsig(np.zeros((2, dim)), depth, **kwargs).shape[-1]
    return _signature_function(lambda p: hftsig.logsig(p, depth, **kwargs),
                               lambda g, p: hftsig.logsigbackprop(g, p, depth, **kwargs),
                               out_length)


def _transform_flags(basepoint, time_aug, lead_lag):
    return (check_bool(basepoint, "basepoint"), check_bool(time_aug, "time_aug"),
            check_bool(lead_lag, "lead_lag"))


def sig(path, depth, *, basepoint=False, time_aug=False, lead_lag=False, n_jobs=1):
    """Truncated signature (:func:`hftsig.sig`) of a JAX array, differentiable.

    Parameters
    ----------
    path : jax.Array, shape (..., length, dim)
        Floating point; any number of leading batch axes (``(length, dim)``
        is one path).
    depth : int
        Truncation level, >= 1.
    basepoint, time_aug, lead_lag, n_jobs
        As for :func:`hftsig.sig`.

    Returns
    -------
    jax.Array, shape (..., siglength), the dtype of ``path``
        The backward pass is :func:`hftsig.sigbackprop`.

    Examples
    --------
    >>> import jax
    >>> import jax.numpy as jnp
    >>> sig(jnp.array([[0.0], [1.0], [3.0]]), 2).tolist()
    [3.0, 4.5]
    >>> jax.grad(lambda p: sig(p, 2)[1])(jnp.array([[0.0], [1.0], [3.0]])).tolist()
    [[-3.0], [0.0], [3.0]]
    """
    path = _paths(path, "path")
    depth = check_int(depth, "depth", minimum=1)
    flags = _transform_flags(basepoint, time_aug, lead_lag)
    _n_threads(n_jobs)
    return _sig_function(path.shape[-1], depth, *flags, n_jobs)(path)


def logsig(path, depth, *, basis="lyndon", basepoint=False, time_aug=False, lead_lag=False,
           n_jobs=1):
    """Log-signature (:func:`hftsig.logsig`) of a JAX array, differentiable.

    Parameters
    ----------
    path : jax.Array, shape (..., length, dim)
        Floating point; any number of leading batch axes.
    depth : int
        Truncation level, >= 1.
    basis : {"lyndon", "expanded"}, default "lyndon"
    basepoint, time_aug, lead_lag, n_jobs
        As for :func:`hftsig.logsig`.

    Returns
    -------
    jax.Array, shape (..., logsiglength), the dtype of ``path``
        The backward pass is :func:`hftsig.logsigbackprop`.

    Examples
    --------
    The Lyndon coordinate ``[0,1]`` is the signed (Levy) area:

    >>> import jax
    >>> import jax.numpy as jnp
    >>> x = jnp.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    >>> logsig(x, 2).tolist()
    [1.0, 1.0, 0.5]
    >>> jax.grad(lambda p: logsig(p, 2)[2])(x).tolist()
    [[-0.5, 0.0], [0.5, -0.5], [0.0, 0.5]]
    """
    path = _paths(path, "path")
    depth = check_int(depth, "depth", minimum=1)
    if not isinstance(basis, str):
        raise TypeError(f"basis: expected 'lyndon' or 'expanded', got {type(basis).__name__}")
    flags = _transform_flags(basepoint, time_aug, lead_lag)
    _n_threads(n_jobs)
    return _logsig_function(path.shape[-1], depth, basis, *flags, n_jobs)(path)


# ---------------------------------------------------------------- signature kernels

def _kernel_options(dyadic_order, static_kernel, sigma, n_jobs):
    """Checked, hashable kernel options (errors now, at trace time, naming the argument)."""
    dyadic = _dyadic(dyadic_order)
    _static(static_kernel, sigma)
    _n_threads(n_jobs)
    return (("dyadic_order", dyadic), ("static_kernel", static_kernel),
            ("sigma", float(sigma)), ("n_jobs", n_jobs))


@functools.lru_cache(maxsize=128)
def _sig_kernel_function(options):
    opts = dict(options)

    def forward_host(x, y):
        X, Y = _flat_paths(x), _flat_paths(y)
        out = np.asarray(_sig_kernel(X, Y, **opts))
        return out.reshape(x.shape[:-2]).astype(x.dtype, copy=False)

    def backward_host(grad, x, y):
        X, Y = _flat_paths(x), _flat_paths(y)
        gx, gy = _sig_kernel_backprop(_host(grad).reshape(-1), X, Y, **opts)
        return (gx.reshape(x.shape).astype(x.dtype, copy=False),
                gy.reshape(y.shape).astype(y.dtype, copy=False))

    return _host_function(forward_host, backward_host, lambda x, y: x.shape[:-2],
                          "broadcast_all")


def _common_dtype(a, b):
    dtype = jnp.result_type(a.dtype, b.dtype)
    return a.astype(dtype), b.astype(dtype)


def sig_kernel(x, y, *, dyadic_order=0, static_kernel="linear", sigma=1.0, n_jobs=1):
    """Differentiable :func:`hftsig.sig_kernel` of JAX arrays.

    Parameters
    ----------
    x, y : jax.Array, shape (..., length_x, dim) and (..., length_y, dim)
        One path each, or batches of pairs with the same leading axes
        (``x[i]`` is paired with ``y[i]``).
    dyadic_order, static_kernel, sigma, n_jobs
        As for :func:`hftsig.sig_kernel`.

    Returns
    -------
    jax.Array, shape () or the leading axes
        Gradients flow to ``x`` and ``y`` through the PDE's adjoint
        (:func:`hftsig.sig_kernel_backprop`).

    Examples
    --------
    >>> import jax
    >>> import jax.numpy as jnp
    >>> x = jnp.array([[0.0], [1.0]])   # straight line: S(x) = (1, 1, 1/2, 1/6, ...)
    >>> round(float(sig_kernel(x, x, dyadic_order=5)), 4)
    2.2796
    >>> jax.jit(sig_kernel)(jnp.zeros((3, 5, 2)), jnp.ones((3, 4, 2))).shape
    (3,)
    """
    x = _paths(x, "x")
    y = _paths(y, "y")
    if y.shape[-1] != x.shape[-1]:
        raise ValueError(f"y: dim {y.shape[-1]} differs from x's dim {x.shape[-1]}")
    if y.shape[:-2] != x.shape[:-2]:
        raise ValueError(f"y: leading (batch) axes {y.shape[:-2]} differ from x's "
                         f"{x.shape[:-2]}")
    x, y = _common_dtype(x, y)
    options = _kernel_options(dyadic_order, static_kernel, sigma, n_jobs)
    return _sig_kernel_function(options)(x, y)


@functools.lru_cache(maxsize=128)
def _gram_functions(options):
    """(symmetric Gram of X, Gram of X against Y) as custom_vjp functions."""
    opts = dict(options)

    def gram_host(X, Y=None):
        out = _sig_kernel_gram(_host(X), None if Y is None else _host(Y), **opts)
        return out.astype(X.dtype, copy=False)

    def symmetric_backward_host(grad, X):
        return _sig_kernel_gram_backprop(_host(grad), _host(X), **opts).astype(X.dtype,
                                                                               copy=False)

    def backward_host(grad, X, Y):
        gX, gY = _sig_kernel_gram_backprop(_host(grad), _host(X), _host(Y), **opts)
        return gX.astype(X.dtype, copy=False), gY.astype(Y.dtype, copy=False)

    # vmapped over, a Gram matrix is one hftsig call per batch element ("sequential")
    symmetric = _host_function(gram_host, symmetric_backward_host,
                               lambda X: (X.shape[0], X.shape[0]), "sequential")
    cross = _host_function(gram_host, backward_host, lambda X, Y: (X.shape[0], Y.shape[0]),
                           "sequential")
    return symmetric, cross


def sig_kernel_gram(X, Y=None, *, dyadic_order=0, static_kernel="linear", sigma=1.0, n_jobs=1):
    """Differentiable :func:`hftsig.sig_kernel_gram` of JAX arrays, shape (n, m).

    Parameters
    ----------
    X : jax.Array, shape (n, length_x, dim)
    Y : jax.Array, shape (m, length_y, dim), optional
        Default ``X``: the symmetric Gram matrix, each pair solved once and
        the gradient taken through both arguments.
    dyadic_order, static_kernel, sigma, n_jobs
        As for :func:`hftsig.sig_kernel`.

    Returns
    -------
    jax.Array, shape (n, m)
        The backward pass is :func:`hftsig.sig_kernel_gram_backprop`.

    Examples
    --------
    >>> import jax
    >>> import jax.numpy as jnp
    >>> X = jax.random.normal(jax.random.key(0), (4, 6, 2)) * 0.2
    >>> jax.grad(lambda a: sig_kernel_gram(a).sum())(X).shape
    (4, 6, 2)
    """
    X = _paths(X, "X", ndim=3)
    options = _kernel_options(dyadic_order, static_kernel, sigma, n_jobs)
    symmetric, cross = _gram_functions(options)
    if Y is None:
        return symmetric(X)
    Y = _paths(Y, "Y", ndim=3)
    if Y.shape[-1] != X.shape[-1]:
        raise ValueError(f"Y: dim {Y.shape[-1]} differs from X's dim {X.shape[-1]}")
    return cross(*_common_dtype(X, Y))


def sig_mmd(X, Y, *, unbiased=True, dyadic_order=0, static_kernel="linear", sigma=1.0,
            n_jobs=1):
    """Differentiable squared MMD between two batches of paths (see :func:`hftsig.sig_mmd`).

    Parameters
    ----------
    X : jax.Array, shape (m, length_x, dim)
    Y : jax.Array, shape (n, length_y, dim)
    unbiased : bool, default True
        The U-statistic (diagonals left out) rather than the V-statistic.
    dyadic_order, static_kernel, sigma, n_jobs
        As for :func:`hftsig.sig_kernel`.

    Returns
    -------
    jax.Array, shape ()

    Examples
    --------
    >>> import jax
    >>> X = jax.random.normal(jax.random.key(1), (8, 5, 2)) * 0.2
    >>> Y = jax.random.normal(jax.random.key(2), (8, 5, 2)) * 0.2
    >>> g = jax.grad(sig_mmd)(X, Y)
    >>> g.shape, bool(jax.numpy.isfinite(g).all())
    ((8, 5, 2), True)
    """
    unbiased = check_bool(unbiased, "unbiased")
    X = _paths(X, "X", ndim=3)
    Y = _paths(Y, "Y", ndim=3)
    m, n = X.shape[0], Y.shape[0]
    if unbiased and (m < 2 or n < 2):
        raise ValueError("X, Y: the unbiased MMD needs at least 2 paths in each")
    opts = dict(dyadic_order=dyadic_order, static_kernel=static_kernel, sigma=sigma,
                n_jobs=n_jobs)
    kxx = sig_kernel_gram(X, **opts)
    kyy = sig_kernel_gram(Y, **opts)
    kxy = sig_kernel_gram(X, Y, **opts)
    if unbiased:
        sxx = (kxx.sum() - jnp.trace(kxx)) / (m * (m - 1))
        syy = (kyy.sum() - jnp.trace(kyy)) / (n * (n - 1))
    else:
        sxx = kxx.sum() / (m * m)
        syy = kyy.sum() / (n * n)
    return sxx + syy - 2.0 * kxy.sum() / (m * n)
