"""Exchange connectors: one declarative class per exchange over shared websocket/REST machinery.

Every connector keeps one contract (see :mod:`connectors.base`): attributes
``exchange`` and ``symbols``, ``start()``, ``stop(timeout=1.0)``, ``on_tick``
and ``stats()``.
"""
from connectors.coingecko import CoinGeckoConnector

__all__ = ["CoinGeckoConnector"]
