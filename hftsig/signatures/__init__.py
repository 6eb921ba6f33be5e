"""Path signatures: truncated signatures and streams
(:mod:`~hftsig.signatures.signature`), log-signatures
(:mod:`~hftsig.signatures.logsignature`), their gradients
(:mod:`~hftsig.signatures.gradients`), signature kernels by the Goursat PDE
(:mod:`~hftsig.signatures.kernels`), path augmentations
(:mod:`~hftsig.signatures.augmentations`), scikit-learn estimators
(:mod:`~hftsig.signatures.transformer`,
:mod:`~hftsig.signatures.kernel_estimator`) and PyTorch/JAX glue
(:mod:`~hftsig.signatures.torch`, :mod:`~hftsig.signatures.jax`).

The common functions are re-exported by :mod:`hftsig` (``hftsig.sig``...).
"""
