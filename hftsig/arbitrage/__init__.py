"""Arbitrage on the tick stream: the cycle detector
(:mod:`~hftsig.arbitrage.cycles`: spatial, triangular and n-leg cycles, fee-
and depth-aware) and its live runner (:mod:`~hftsig.arbitrage.live`:
``hftsig arb``, the demo's plug-in).
"""
from hftsig.arbitrage.cycles import (
    DEFAULT_TAKER_FEES_BPS,
    CycleArbitrage,
    Episode,
    Leg,
    Opportunity,
    TriangularArbitrage,
    bounded_negative_cycles,
    quote_ticks,
    quotes_from_model,
)

__all__ = ["CycleArbitrage", "TriangularArbitrage", "Opportunity", "Episode", "Leg",
           "DEFAULT_TAKER_FEES_BPS", "quote_ticks", "quotes_from_model",
           "bounded_negative_cycles"]
