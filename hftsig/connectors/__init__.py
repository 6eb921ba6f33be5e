"""Exchange connectors: one declarative class per exchange over shared websocket/REST machinery.

>>> from hftsig.connectors import BinanceConnector, KrakenConnector, CoinbaseConnector, CoinGeckoConnector
>>> BinanceConnector(["BTC-USDT"]).exchange
'binance'

Every connector keeps one contract, the ``Connector`` protocol
(:class:`hftsig.market.connector_protocol.Connector`, re-exported here; see
:mod:`hftsig.connectors.base`): attributes ``exchange`` and ``symbols``,
``start()``, ``stop(timeout=1.0)``, ``on_tick`` and ``stats()``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from hftsig import venues
from hftsig.connectors.binance import BinanceConnector
from hftsig.connectors.coinbase import CoinbaseConnector
from hftsig.connectors.coingecko import CoinGeckoConnector
from hftsig.connectors.kraken import KrakenConnector
from hftsig.market.connector_protocol import Connector

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

__all__ = ["BinanceConnector", "KrakenConnector", "CoinbaseConnector", "CoinGeckoConnector",
           "Connector", "make_connectors"]


def make_connectors(exchanges: Iterable[str], symbols: Iterable[str],
                    endpoints: Mapping[str, Mapping[str, str | None]] | None = None,
                    options: Mapping[str, Mapping[str, Any]] | None = None) -> list[Connector]:
    """One connector per exchange name, for ``symbols``, with optional endpoint kwargs.

    Any venue of the registry (:mod:`hftsig.venues`) may be named, those
    registered at run time included.  ``endpoints`` maps exchange ->
    ``{"ws_url": ..., "rest_url": ...}`` (from the simulators or the command
    line; None values are left out, so a REST-only connector gets no
    ``ws_url``); missing ones default to the live exchange.  ``options`` maps
    exchange -> extra constructor keyword arguments.
    """
    out = []
    for ex in exchanges:
        ex = ex.lower()
        if ex not in venues.names():
            raise ValueError(f"exchanges: unknown exchange {ex!r}; one of {venues.names()}")
        kw = {k: v for k, v in (endpoints or {}).get(ex, {}).items() if v is not None}
        kw.update((options or {}).get(ex, {}))
        out.append(venues.get(ex).connector_class()(list(symbols), **kw))
    return out
