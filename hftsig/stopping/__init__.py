"""Signature optimal stopping: the estimators
(:mod:`~hftsig.stopping.stoppers`: :class:`SignatureStopper`,
:class:`PolynomialStopper`) and the stochastic processes they are validated on
(:mod:`~hftsig.stopping.processes`: GBM, fractional Brownian motion,
Ornstein-Uhlenbeck, with their exact continuations for dual bounds).

``from hftsig.stopping import SignatureStopper`` works as before; the
estimators are loaded on first use (they import scikit-learn).
"""
_STOPPERS = ("SignatureStopper", "PolynomialStopper", "StoppingValue", "UpperBound")

__all__ = list(_STOPPERS) + ["processes"]


def __getattr__(name):
    if name in _STOPPERS:
        from hftsig.stopping import stoppers

        return getattr(stoppers, name)
    if name == "processes":
        import importlib

        return importlib.import_module("hftsig.stopping.processes")
    raise AttributeError(f"module 'hftsig.stopping' has no attribute {name!r}")
