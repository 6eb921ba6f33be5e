"""hftsig — a lab for high-frequency crypto market research.

Connectors for Binance, Kraken, Coinbase and CoinGecko feed one tick stream
(:mod:`hftsig.market.ticks`); an aggregator keeps books and consolidated
quotes; arbitrage detectors watch the stream; path signatures
(:func:`hftsig.sig`, :func:`hftsig.logsig`) and signature optimal stopping
turn price paths into features and decisions.

The subpackages follow the data flow (``docs/architecture.md``):
:mod:`hftsig.market` (ticks, symbols, books, normalizers, aggregator,
recorder), :mod:`hftsig.connectors` (one module per venue),
:mod:`hftsig.signatures`, :mod:`hftsig.stopping`, :mod:`hftsig.arbitrage`,
:mod:`hftsig.simulator`, :mod:`hftsig.distributed` (tick bus, Dask) and
:mod:`hftsig.app` (command line, demo, live view).  Compiled kernels live in
the private ``hftsig._ext``.
"""
__version__ = "0.2.0"

from hftsig import _moved

# Public API re-exports, one line per module (keep this list sorted by module).
from hftsig.arbitrage.cycles import CycleArbitrage, Opportunity, TriangularArbitrage
from hftsig.market.aggregator import Aggregator
from hftsig.market.normalize import normalize
from hftsig.market.recorder import Recorder, ReplayConnector, read_ticks, replay
from hftsig.market.ticks import TICK_DTYPE, empty_ticks, to_pandas
from hftsig.signatures import augmentations
from hftsig.signatures.gradients import (
    logsigbackprop,
    sigbackprop,
    sigcombinebackprop,
    sigjoinbackprop,
    sigscale,
    sigscalebackprop,
)
from hftsig.signatures.kernels import (
    MMDTestResult,
    sig_kernel,
    sig_kernel_backprop,
    sig_kernel_gram,
    sig_kernel_gram_backprop,
    sig_mmd,
    sig_mmd_test,
)
from hftsig.signatures.logsignature import logsig, logsiglength
from hftsig.signatures.signature import (
    SignatureStream,
    config_context,
    get_config,
    set_config,
    sig,
    sigcombine,
    siginv,
    sigjoin,
    siglength,
)
from hftsig.stopping import processes

__all__ = [
    "Aggregator", "CycleArbitrage", "MMDTestResult", "Opportunity", "PolynomialStopper",
    "Recorder", "ReplayConnector", "SignatureKernel", "SignatureStopper", "SignatureStream",
    "SignatureTransformer", "TICK_DTYPE", "TriangularArbitrage", "augmentations",
    "config_context", "empty_ticks", "get_config", "logsig", "logsigbackprop", "logsiglength",
    "normalize", "processes", "read_ticks", "replay", "set_config", "sig", "sig_kernel",
    "sig_kernel_backprop", "sig_kernel_gram", "sig_kernel_gram_backprop", "sig_mmd",
    "sig_mmd_test", "sigbackprop", "sigcombine", "sigcombinebackprop", "siginv", "sigjoin",
    "sigjoinbackprop", "siglength", "sigscale", "sigscalebackprop", "to_pandas",
]

_moved.install()
# `hftsig.normalize` is the function above; the module it comes from was also
# importable as `hftsig.normalize` (``from hftsig.normalize import Normalizer``).
# Registering the module under that name here keeps both: an import finds it in
# sys.modules and so does not rebind the package attribute to the module.
_moved.alias_now("hftsig.normalize", "hftsig.market.normalize")

#: names loaded on first use: importing scikit-learn costs seconds, which
#: `import hftsig` (command line, services) should not pay
_LAZY = {
    "SignatureTransformer": "hftsig.signatures.transformer",
    "SignatureKernel": "hftsig.signatures.kernel_estimator",
    "SignatureStopper": "hftsig.stopping.stoppers",
    "PolynomialStopper": "hftsig.stopping.stoppers",
}


def __getattr__(name):
    import importlib

    module = _LAZY.get(name)
    if module is not None:
        return getattr(importlib.import_module(module), name)
    if f"hftsig.{name}" in _moved.MOVED:  # an old module name (hftsig.paths...), with a warning
        return importlib.import_module(f"hftsig.{name}")
    raise AttributeError(f"module 'hftsig' has no attribute {name!r}")
