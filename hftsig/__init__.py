"""hftsig — a lab for high-frequency crypto market research.

Connectors for Binance, Kraken, Coinbase and CoinGecko feed one tick stream
(:mod:`hftsig.ticks`); an aggregator keeps books and consolidated quotes;
arbitrage detectors watch the stream; path signatures
(:func:`hftsig.sig`, :func:`hftsig.logsig`) and signature optimal stopping
turn price paths into features and decisions.
"""
__version__ = "0.1.0"

from hftsig.ticks import TICK_DTYPE, empty_ticks, to_pandas  # noqa: F401

# Public API re-exports, one line per module (keep this list sorted by module).
from hftsig.aggregator import Aggregator  # noqa: F401,E402
from hftsig.arbitrage import Opportunity, TriangularArbitrage  # noqa: F401,E402
from hftsig.logsignature import logsig, logsiglength  # noqa: F401,E402
from hftsig import normalize  # noqa: F401,E402  (callable: hftsig.normalize(exchange, message))
from hftsig import paths  # noqa: F401,E402
from hftsig.recorder import Recorder, ReplayConnector, read_ticks, replay  # noqa: F401,E402
from hftsig.signature import (  # noqa: F401,E402
    SignatureStream, config_context, get_config, set_config, sig, sigcombine, siginv, sigjoin,
    siglength)
from hftsig.signature_grad import (  # noqa: F401,E402
    logsigbackprop, sigbackprop, sigcombinebackprop, sigjoinbackprop, sigscale, sigscalebackprop)
from hftsig.signature_kernel import (  # noqa: F401,E402
    MMDTestResult, sig_kernel, sig_kernel_backprop, sig_kernel_gram, sig_kernel_gram_backprop,
    sig_mmd, sig_mmd_test)
from hftsig import transforms  # noqa: F401,E402


def __getattr__(name):
    # SignatureTransformer is loaded on first use: importing scikit-learn
    # costs seconds, which `import hftsig` (CLI, services) should not pay.
    if name == "SignatureTransformer":
        from hftsig.transformer import SignatureTransformer

        return SignatureTransformer
    if name == "SignatureStopper":  # scikit-learn too, see above
        from hftsig.stopping import SignatureStopper

        return SignatureStopper
    if name == "SignatureKernel":  # scikit-learn too, see above
        from hftsig.signature_kernel_sklearn import SignatureKernel

        return SignatureKernel
    raise AttributeError(f"module 'hftsig' has no attribute {name!r}")
