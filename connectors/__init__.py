"""The exchange connectors' former top-level package, kept importable.

The connectors live in :mod:`hftsig.connectors`; ``from connectors import
BinanceConnector`` and ``import connectors.binance`` still work and give the
same objects.
"""
import sys

from hftsig import connectors as _connectors
from hftsig.connectors import (  # noqa: F401  # noqa: F401
    BinanceConnector,
    CoinbaseConnector,
    CoinGeckoConnector,
    KrakenConnector,
    base,
    binance,
    coinbase,
    coingecko,
    credentials,
    kraken,
    make_connectors,
    rest,
    websocket,
)

__all__ = _connectors.__all__

for _name in ("base", "binance", "coinbase", "coingecko", "credentials", "kraken", "rest",
              "websocket"):
    sys.modules[f"{__name__}.{_name}"] = getattr(_connectors, _name)
