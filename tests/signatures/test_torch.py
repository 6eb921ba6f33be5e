"""hftsig.signatures.torch: differentiable signature kernels on CPU tensors (only where torch is installed)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

import hftsig  # noqa: E402
import hftsig.signatures.torch as ht  # noqa: E402


def walks(*shape, seed=0, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    return torch.cumsum(torch.randn(*shape, generator=g, dtype=torch.float64) * scale, dim=-2)


@pytest.mark.parametrize("kw", [dict(dyadic_order=1), dict(dyadic_order=(2, 0)),
                                dict(static_kernel="rbf", sigma=0.6)])
def test_sig_kernel_gradcheck(kw):
    x = walks(3, 5, 2, seed=1).requires_grad_()
    y = walks(3, 4, 2, seed=2).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: ht.sig_kernel(a, b, **kw), (x, y))
    single = walks(6, 2, seed=3).requires_grad_()
    assert torch.autograd.gradcheck(lambda a: ht.sig_kernel(a, y[0].detach(), **kw), (single,))


def test_gram_and_mmd_gradcheck():
    X = walks(3, 4, 2, seed=4).requires_grad_()
    Y = walks(2, 5, 2, seed=5).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: ht.sig_kernel_gram(a, b, dyadic_order=1), (X, Y))
    assert torch.autograd.gradcheck(lambda a: ht.sig_kernel_gram(a, dyadic_order=1), (X,))
    assert torch.autograd.gradcheck(
        lambda a, b: ht.sig_mmd(a, b, static_kernel="rbf", sigma=0.5), (X, Y))


def test_values_match_numpy_api_and_float32_round_trips():
    X = walks(4, 6, 2, seed=6)
    Y = walks(4, 5, 2, seed=7)
    np.testing.assert_allclose(ht.sig_kernel(X, Y).numpy(), hftsig.sig_kernel(X.numpy(), Y.numpy()))
    np.testing.assert_allclose(ht.sig_mmd(X, Y, unbiased=False).item(),
                               hftsig.sig_mmd(X.numpy(), Y.numpy(), unbiased=False), rtol=1e-12)
    k32 = ht.sig_kernel(X.float(), Y.float())
    assert k32.dtype == torch.float32


def test_mmd_gradient_descent_moves_samples_together():
    # a training loop on the kernel's gradients: the MMD between a learnable sample and a
    # target sample falls
    target = walks(10, 6, 2, seed=8, scale=0.2) + torch.linspace(0, 1, 6)[:, None]
    X = walks(10, 6, 2, seed=9, scale=0.2).requires_grad_()
    opt = torch.optim.SGD([X], lr=0.5)
    first = None
    for _ in range(15):
        opt.zero_grad()
        loss = ht.sig_mmd(X, target, unbiased=False, static_kernel="rbf", sigma=1.0)
        first = loss.item() if first is None else first
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


def test_sig_forward_and_backward():
    path = walks(2, 7, 3, seed=10)
    np.testing.assert_allclose(ht.sig(path, 3).numpy(), hftsig.sig(path.numpy(), 3))
    p = path.clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda a: ht.sig(a, 3), (p,))
    single = walks(6, 2, seed=11).requires_grad_()
    assert torch.autograd.gradcheck(lambda a: ht.sig(a, 2, time_aug=True, basepoint=True),
                                    (single,))


def test_bad_tensors_name_the_argument():
    with pytest.raises(TypeError, match="x: expected a torch.Tensor"):
        ht.sig_kernel(np.zeros((3, 2)), walks(3, 2))
    with pytest.raises(TypeError, match="y: expected a floating point"):
        ht.sig_kernel(walks(3, 2), torch.zeros((3, 2), dtype=torch.int64))
    with pytest.raises(TypeError, match="unbiased"):
        ht.sig_mmd(walks(3, 3, 2), walks(3, 3, 2), unbiased=1)
