"""The signature kernel as a scikit-learn kernel.

scikit-learn estimators take samples as rows of a 2-d array, so a path of
``length`` points in ``dim`` channels travels as one row of ``length * dim``
numbers (``paths.reshape(n, -1)``, point after point) and
:class:`SignatureKernel` folds it back with its ``dim``.  The class is a
:class:`sklearn.gaussian_process.kernels.Kernel`, so it plugs into
``GaussianProcessRegressor`` and ``GaussianProcessClassifier``, composes with
``ConstantKernel`` and ``WhiteKernel``, and works as the ``kernel`` of
``KernelRidge`` and of ``SVC`` (a callable returning the Gram matrix); for
``SVC(kernel="precomputed")`` pass :func:`hftsig.sig_kernel_gram` matrices.

Importing this module imports scikit-learn; ``import hftsig`` does not.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from sklearn.gaussian_process.kernels import Kernel

from hftsig._validation import check_int
from hftsig.signatures.kernels import _dyadic, _static, sig_kernel, sig_kernel_gram

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

__all__ = ["SignatureKernel"]


class SignatureKernel(Kernel):
    """Signature kernel of paths stored as flattened rows, for scikit-learn.

    Parameters
    ----------
    dim : int, default 1
        Channels per point: a row of ``length * dim`` numbers is the path
        ``row.reshape(length, dim)``.
    dyadic_order : int or (int, int), default 0
    static_kernel : {"linear", "rbf"}, default "linear"
    sigma : float, default 1.0
    n_jobs : int, default 1
        As for :func:`hftsig.sig_kernel`.

    Notes
    -----
    The kernel has no tunable hyperparameters (``theta`` is empty): a
    Gaussian process fits only the hyperparameters of the kernels it is
    combined with (e.g. ``ConstantKernel() * SignatureKernel(2) +
    WhiteKernel()``).  Scale the paths to tune the signature kernel itself.

    The PDE scheme's Gram matrices are positive semi-definite only up to its
    discretisation error: for estimators that factorise them (kernel ridge,
    Gaussian processes) use ``dyadic_order >= 2`` or a nugget.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.kernel_ridge import KernelRidge
    >>> rng = np.random.default_rng(0)
    >>> paths = np.cumsum(rng.standard_normal((40, 8, 2)) * 0.2, axis=1)
    >>> move = paths[:, -1] - paths[:, 0]
    >>> target = move[:, 0] * move[:, 1]          # a level-2 signature functional
    >>> rows = paths.reshape(40, -1)
    >>> kernel = SignatureKernel(dim=2, dyadic_order=2)
    >>> model = KernelRidge(kernel=kernel, alpha=1e-3).fit(rows[:30], target[:30])
    >>> bool(model.score(rows[30:], target[30:]) > 0.99)
    True
    """

    def __init__(self, dim: int = 1, dyadic_order: int | tuple[int, int] = 0,
                 static_kernel: str = "linear", sigma: float = 1.0,
                 n_jobs: int | None = 1) -> None:
        self.dim = dim
        self.dyadic_order = dyadic_order
        self.static_kernel = static_kernel
        self.sigma = sigma
        self.n_jobs = n_jobs

    def _options(self):
        _dyadic(self.dyadic_order)
        _static(self.static_kernel, self.sigma)
        return dict(dyadic_order=self.dyadic_order, static_kernel=self.static_kernel,
                    sigma=self.sigma, n_jobs=self.n_jobs)

    def _paths(self, X, name):
        dim = check_int(self.dim, "dim", minimum=1)
        arr = np.asarray(X)
        if arr.ndim == 3:  # already (n, length, dim)
            if arr.shape[2] != dim:
                raise ValueError(f"{name}: paths of dim {arr.shape[2]}, the kernel has dim={dim}")
            return arr
        if arr.ndim != 2:
            raise ValueError(f"{name}: expected rows of length * dim numbers, got shape "
                             f"{arr.shape}")
        if arr.shape[1] % dim or arr.shape[1] == 0:
            raise ValueError(f"{name}: rows of {arr.shape[1]} numbers are not paths of "
                             f"dim={dim}")
        return arr.reshape(arr.shape[0], arr.shape[1] // dim, dim)

    def __call__(self, X: ArrayLike, Y: ArrayLike | None = None,
                 eval_gradient: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Gram matrix ``K[i, j] = k(X[i], Y[j])`` (``Y`` default ``X``).

        With ``eval_gradient`` (only for ``Y=None``) also the gradient with
        respect to the (empty) log-hyperparameters, shape ``(n, n, 0)``.
        """
        opts = self._options()
        Xp = self._paths(X, "X")
        if Y is None:
            K = sig_kernel_gram(Xp, **opts)
        else:
            if eval_gradient:
                raise ValueError("eval_gradient: only supported when Y is None")
            K = sig_kernel_gram(Xp, self._paths(Y, "Y"), **opts)
        if eval_gradient:
            return K, np.empty((K.shape[0], K.shape[0], 0))
        return K

    def diag(self, X: ArrayLike) -> np.ndarray:
        """``k(X[i], X[i])`` for every row, without the rest of the Gram matrix."""
        Xp = self._paths(X, "X")
        return sig_kernel(Xp, Xp, **self._options())

    def is_stationary(self) -> bool:
        """The signature kernel is not a function of ``x - y``."""
        return False

    @property
    def requires_vector_input(self) -> bool:
        """Rows are flattened paths: numeric vectors."""
        return True

    def __repr__(self) -> str:
        return (f"SignatureKernel(dim={self.dim}, dyadic_order={self.dyadic_order}, "
                f"static_kernel={self.static_kernel!r}, sigma={self.sigma})")
