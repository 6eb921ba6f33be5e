"""The connector contract: what :class:`~hftsig.market.aggregator.Aggregator` accepts.

A connector is anything with these six members; nothing needs to inherit
from a hftsig class.  The live exchange connectors
(:mod:`hftsig.connectors`), :class:`~hftsig.market.recorder.ReplayConnector`
and :class:`~hftsig.distributed.bus.BusConnector` keep it, and so can a
connector of your own:

>>> from hftsig.market.connector_protocol import Connector, missing_members
>>> class Silent:
...     exchange = "simulated"
...     symbols = ("BTC-USDT",)
...     on_tick = None
...     def start(self):
...         return self
...     def stop(self, timeout=1.0):
...         return True
...     def stats(self):
...         return {"messages": 0, "ticks": 0, "connected": False}
>>> isinstance(Silent(), Connector)
True
>>> missing_members(object())
('exchange', 'symbols', 'on_tick', 'start', 'stop', 'stats')

The protocol lives with the market data, below the connectors, so that the
aggregator (and anything else taking connectors) needs no import of
:mod:`hftsig.connectors`; it is re-exported as ``hftsig.connectors.Connector``.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any

    import numpy as np
    import numpy.typing as npt

__all__ = ["Connector", "CONNECTOR_MEMBERS", "missing_members"]


@runtime_checkable
class Connector(Protocol):
    """A source of tick arrays that an aggregator can start, stop and read counters from.

    Attributes
    ----------
    exchange : str
        Name of the source: an exchange (``"binance"``...), ``"replay"``, a
        bus stream.  The aggregator names its per-connector stats after it.
    symbols : sequence of str
        Canonical ``BASE-QUOTE`` symbols the connector delivers (may be
        empty when not known in advance, e.g. a bus stream).
    on_tick : callable or None
        Called with one :data:`hftsig.market.ticks.TICK_DTYPE` array per
        message, on the connector's own thread.  The aggregator sets it
        before :meth:`start`; the connector must not write to an array
        after handing it over.

    Notes
    -----
    ``isinstance(obj, Connector)`` checks that every member is present (not
    their signatures); :func:`missing_members` names the ones that are not.
    Optional members the aggregator also uses when present:
    ``batched_kinds`` (kind name -> seconds between batches), ``book_depth``
    / ``book_depths`` (levels the venue's books keep) and ``wait(timeout)``
    (a finite source, such as a replay: True once everything was sent).
    """

    exchange: str
    symbols: Sequence[str]
    on_tick: Callable[[npt.NDArray[np.void]], Any] | None

    def start(self) -> Any:
        """Start delivering ticks (non-blocking: the work runs on the connector's thread)."""
        ...

    def stop(self, timeout: float = 1.0) -> Any:
        """Stop and join the connector's thread(s) within ``timeout`` seconds."""
        ...

    def stats(self) -> dict[str, Any]:
        """Counters as a plain dict (``messages``, ``ticks``, ``connected``, ...)."""
        ...


#: The members of :class:`Connector`, in the order the aggregator checks them.
CONNECTOR_MEMBERS = ("exchange", "symbols", "on_tick", "start", "stop", "stats")


def missing_members(obj: object) -> tuple[str, ...]:
    """The members of :class:`Connector` that ``obj`` lacks (empty when it keeps the contract).

    Parameters
    ----------
    obj : object
        A would-be connector.

    Returns
    -------
    tuple of str
        Missing attribute names, in :data:`CONNECTOR_MEMBERS` order; a method
        present but not callable counts as missing.
    """
    out = []
    for name in CONNECTOR_MEMBERS:
        if not hasattr(obj, name):
            out.append(name)
        elif name in ("start", "stop", "stats") and not callable(getattr(obj, name)):
            out.append(name)
    return tuple(out)
