"""Exchange connectors: one declarative class per exchange over shared websocket/REST machinery.

>>> from connectors import BinanceConnector, KrakenConnector, CoinbaseConnector, CoinGeckoConnector
>>> BinanceConnector(["BTC-USDT"]).exchange
'binance'

Every connector keeps one contract (see :mod:`connectors.base`): attributes
``exchange`` and ``symbols``, ``start()``, ``stop(timeout=1.0)``, ``on_tick``
and ``stats()``.
"""
from connectors.binance import BinanceConnector
from connectors.coinbase import CoinbaseConnector
from connectors.coingecko import CoinGeckoConnector
from connectors.kraken import KrakenConnector

__all__ = ["BinanceConnector", "KrakenConnector", "CoinbaseConnector", "CoinGeckoConnector"]
