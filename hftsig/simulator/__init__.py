"""Loopback exchange simulators: Binance (websocket + REST), Kraken WebSocket
v2, Coinbase Advanced Trade and CoinGecko REST over one deterministic market
model (:mod:`hftsig.simulator.market`).  :class:`SimulatedExchanges` starts
them all; :mod:`hftsig.simulator.exchanges` documents the URL handed to each
connector."""
from hftsig.simulator.exchanges import EXCHANGES, FAULTS, SimulatedExchanges
from hftsig.simulator.market import MarketModel

__all__ = ["SimulatedExchanges", "MarketModel", "EXCHANGES", "FAULTS"]
