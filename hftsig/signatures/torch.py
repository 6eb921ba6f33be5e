"""PyTorch glue: differentiable signature kernels (and signatures) on CPU tensors.

Each function runs hftsig's compiled kernels on the tensors' data and hands
autograd the matching backprop, so losses built on them (MMD between a
generator's paths and data, kernel scores, signature moments) train by
gradient.  Only CPU tensors are taken; float32 tensors are computed in
float64 and returned in float32.  Importing this module imports torch;
``import hftsig`` does not.

>>> import torch
>>> import hftsig.signatures.torch as ht
>>> x = torch.tensor([[0.0, 0.0], [0.5, 0.2], [0.3, 0.6]], dtype=torch.float64,
...                  requires_grad=True)
>>> y = torch.tensor([[0.0, 0.0], [0.1, 0.4], [0.7, 0.5]], dtype=torch.float64)
>>> k = ht.sig_kernel(x, y, dyadic_order=2)
>>> k.backward()
>>> x.grad.shape
torch.Size([3, 2])
"""
import numpy as np
import torch

import hftsig
from hftsig.signatures.kernels import sig_kernel as _sig_kernel
from hftsig.signatures.kernels import sig_kernel_backprop as _sig_kernel_backprop
from hftsig.signatures.kernels import sig_kernel_gram as _sig_kernel_gram
from hftsig.signatures.kernels import sig_kernel_gram_backprop as _sig_kernel_gram_backprop

__all__ = ["sig", "sig_kernel", "sig_kernel_gram", "sig_mmd"]


def _numpy(t, name):
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.device.type != "cpu":
        raise ValueError(f"{name}: expected a CPU tensor, got device {t.device}")
    if not t.is_floating_point():
        raise TypeError(f"{name}: expected a floating point tensor, got {t.dtype}")
    return t.detach().to(torch.float64).contiguous().numpy()


def _back(arr, like):
    return torch.from_numpy(np.ascontiguousarray(arr)).to(like.dtype)


class _SigKernel(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, y, opts):
        xn, yn = _numpy(x, "x"), _numpy(y, "y")
        ctx.save_for_backward(x, y)
        ctx.opts = opts
        out = np.asarray(_sig_kernel(xn, yn, **opts), dtype=np.float64)
        return torch.from_numpy(out).to(x.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        x, y = ctx.saved_tensors
        g = grad.detach().to(torch.float64).numpy()
        gx, gy = _sig_kernel_backprop(g if g.ndim else float(g), _numpy(x, "x"),
                                      _numpy(y, "y"), **ctx.opts)
        return (_back(gx, x) if ctx.needs_input_grad[0] else None,
                _back(gy, y) if ctx.needs_input_grad[1] else None, None)


class _SigKernelGram(torch.autograd.Function):
    @staticmethod
    def forward(ctx, X, Y, opts):
        ctx.symmetric = Y is None
        Xn = _numpy(X, "X")
        Yn = None if Y is None else _numpy(Y, "Y")
        ctx.save_for_backward(X) if Y is None else ctx.save_for_backward(X, Y)
        ctx.opts = opts
        return torch.from_numpy(_sig_kernel_gram(Xn, Yn, **opts)).to(X.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        g = grad.detach().to(torch.float64).contiguous().numpy()
        if ctx.symmetric:
            (X,) = ctx.saved_tensors
            gX = _sig_kernel_gram_backprop(g, _numpy(X, "X"), **ctx.opts)
            return _back(gX, X), None, None
        X, Y = ctx.saved_tensors
        gX, gY = _sig_kernel_gram_backprop(g, _numpy(X, "X"), _numpy(Y, "Y"), **ctx.opts)
        return (_back(gX, X) if ctx.needs_input_grad[0] else None,
                _back(gY, Y) if ctx.needs_input_grad[1] else None, None)


def _opts(dyadic_order, static_kernel, sigma, n_jobs):
    return dict(dyadic_order=dyadic_order, static_kernel=static_kernel, sigma=sigma,
                n_jobs=n_jobs)


def sig_kernel(x, y, *, dyadic_order=0, static_kernel="linear", sigma=1.0, n_jobs=1):
    """Differentiable :func:`hftsig.sig_kernel` of CPU tensors.

    Parameters
    ----------
    x, y : torch.Tensor, shape (length, dim) or (batch, length, dim)
    dyadic_order, static_kernel, sigma, n_jobs
        As for :func:`hftsig.sig_kernel`.

    Returns
    -------
    torch.Tensor, shape () or (batch,)
        Gradients flow to ``x`` and ``y`` through the PDE's adjoint
        (:func:`hftsig.sig_kernel_backprop`).
    """
    return _SigKernel.apply(x, y, _opts(dyadic_order, static_kernel, sigma, n_jobs))


def sig_kernel_gram(X, Y=None, *, dyadic_order=0, static_kernel="linear", sigma=1.0, n_jobs=1):
    """Differentiable :func:`hftsig.sig_kernel_gram` of CPU tensors, shape (n, m).

    Examples
    --------
    >>> import torch
    >>> X = (torch.randn(4, 6, 2, dtype=torch.float64) * 0.2).requires_grad_()
    >>> sig_kernel_gram(X).sum().backward()
    >>> X.grad.shape
    torch.Size([4, 6, 2])
    """
    return _SigKernelGram.apply(X, Y, _opts(dyadic_order, static_kernel, sigma, n_jobs))


def sig_mmd(X, Y, *, unbiased=True, dyadic_order=0, static_kernel="linear", sigma=1.0,
            n_jobs=1):
    """Differentiable squared MMD between two batches of paths (see :func:`hftsig.sig_mmd`).

    Examples
    --------
    >>> import torch
    >>> X = (torch.randn(8, 5, 2, dtype=torch.float64) * 0.2).requires_grad_()
    >>> Y = torch.randn(8, 5, 2, dtype=torch.float64) * 0.2
    >>> loss = sig_mmd(X, Y)
    >>> loss.backward()
    >>> bool(torch.isfinite(X.grad).all())
    True
    """
    if not isinstance(unbiased, bool):
        raise TypeError(f"unbiased: expected a bool, got {type(unbiased).__name__}")
    opts = _opts(dyadic_order, static_kernel, sigma, n_jobs)
    kxx = sig_kernel_gram(X, **opts)
    kyy = sig_kernel_gram(Y, **opts)
    kxy = sig_kernel_gram(X, Y, **opts)
    m, n = kxx.shape[0], kyy.shape[0]
    if unbiased:
        if m < 2 or n < 2:
            raise ValueError("X, Y: the unbiased MMD needs at least 2 paths in each")
        sxx = (kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1))
        syy = (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
    else:
        sxx = kxx.sum() / (m * m)
        syy = kyy.sum() / (n * n)
    return sxx + syy - 2.0 * kxy.sum() / (m * n)


class _Sig(torch.autograd.Function):
    @staticmethod
    def forward(ctx, path, depth, kwargs):
        ctx.save_for_backward(path)
        ctx.depth = depth
        ctx.kwargs = kwargs
        return torch.from_numpy(hftsig.sig(_numpy(path, "path"), depth, **kwargs)).to(path.dtype)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        (path,) = ctx.saved_tensors
        g = hftsig.sigbackprop(grad.detach().to(torch.float64).contiguous().numpy(),
                               _numpy(path, "path"), ctx.depth, **ctx.kwargs)
        return _back(g, path), None, None


def sig(path, depth, *, basepoint=False, time_aug=False, lead_lag=False, n_jobs=1):
    """Truncated signature (:func:`hftsig.sig`) of a CPU tensor, differentiable.

    The backward pass is :func:`hftsig.sigbackprop`.

    Examples
    --------
    >>> import torch
    >>> sig(torch.tensor([[0.0], [1.0], [3.0]], dtype=torch.float64), 2)
    tensor([3.0000, 4.5000], dtype=torch.float64)
    """
    kwargs = dict(basepoint=basepoint, time_aug=time_aug, lead_lag=lead_lag, n_jobs=n_jobs)
    return _Sig.apply(path, depth, kwargs)
