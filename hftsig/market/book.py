"""L2 order books built from tick records.

:class:`OrderBook` keeps the bids and asks of one (exchange, symbol) pair,
fed by the ``KIND_BOOK_SNAPSHOT``/``KIND_BOOK_DELTA`` records the
normalizer (:mod:`hftsig.market.normalize`) makes.  The sorted price arrays live in
a Cython kernel (``hftsig/_ext/_book.pyx``).

.. rubric:: Rules applied by :meth:`OrderBook.apply`

* a record with ``FLAG_SNAPSHOT_BEGIN`` clears both sides first;
* ``size`` is the new absolute size of the level; 0 removes it (removing a
  level the book does not hold is not an error: Binance documents it);
* with ``depth`` set, each side is cut to ``depth`` levels after each whole
  message (the record with ``FLAG_LAST``), as Kraken requires: it sends no
  deletes for levels that fall out of the subscribed depth;
* records of other exchanges/symbols and of other kinds are skipped, so a
  mixed batch can be passed as is;
* the batch is checked whole before anything changes: one record with a
  non-finite or non-positive price, a non-finite or negative size or a side
  other than +1/-1 rejects it with ``ValueError`` and the book stays exactly
  as it was (levels, depth cut, ``updates``, ``last_seq``, checksum);
* a message of many levels (a REST snapshot) is sorted and merged in
  O(n log n), whatever order its levels come in.

A book whose best bid is at or above its best ask is *crossed* (above) or
*locked* (equal): no venue's matching engine leaves such a book, so it means
lost or bad messages.  :attr:`OrderBook.crossed` and :attr:`OrderBook.status`
say so; the book-carrying connectors emit a ``STATUS_CROSSED`` /
``STATUS_UNCROSSED`` tick when a book enters or leaves that state, and the
aggregator's NBBO and the arbitrage detector leave such quotes out.

Examples
--------
>>> from hftsig.market.normalize import normalize
>>> from hftsig.market.book import OrderBook
>>> book = OrderBook("binance", "BNB-BTC")
>>> snap = b'{"lastUpdateId":160,"bids":[["0.0024","10"],["0.0023","5"]],"asks":[["0.0026","100"]]}'
>>> book.apply(normalize("binance", snap, ts_recv=0, symbol="BNBBTC"))
3
>>> book.best_bid(), book.best_ask()
((0.0024, 10.0), (0.0026, 100.0))
>>> round(book.vwap("bid", 12.0), 8)   # selling 12 into the bids
0.00238333
"""
from __future__ import annotations

import math
import operator
import sys

import numpy as np

from hftsig._ext._book import BOOK_CROSSED, BOOK_LOCKED, BookCore
from hftsig.market import ticks as _ticks
from hftsig.market.symbols import canonical

__all__ = ["OrderBook"]

_SIDES = {"bid": 1, "bids": 1, "buy": 1, 1: 1, "ask": -1, "asks": -1, "sell": -1, "offer": -1, -1: -1}


def _int_arg(name, value, lo, hi=sys.maxsize, what="an integer"):
    """``value`` as an int in ``[lo, hi]`` (an integral float is accepted), or a
    ``ValueError`` naming ``name``: never ``OverflowError`` for huge or infinite values."""
    if not isinstance(value, bool):
        try:
            v = operator.index(value)
        except TypeError:
            v = int(value) if isinstance(value, float) and value.is_integer() else None
        if v is not None and lo <= v <= hi:
            return v
    raise ValueError(f"{name} must be {what} in [{lo}, {hi}], got {value!r}")


def _side(side):
    try:
        return _SIDES[side.lower() if isinstance(side, str) else int(side)]
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"side must be 'bid'/'ask' (or +1/-1), got {side!r}") from None


class OrderBook:
    """L2 book of one symbol on one exchange.

    Parameters
    ----------
    exchange : str
        ``"binance"``, ``"kraken"``, ``"coinbase"`` (or ``"simulated"``).
    symbol : str
        Canonical ``BASE-QUOTE`` symbol.
    depth : int, optional
        Keep at most this many levels per side (the subscribed depth);
        unlimited when None.

    Attributes
    ----------
    updates : int
        Messages applied (records with ``FLAG_LAST``).
    last_checksum : int or None
        Exchange checksum carried by the last applied message (Kraken).
    last_seq : int
        ``seq`` of the last applied record.
    ts_event : int
        ``ts_event`` of the last applied record (ns).
    """

    def __init__(self, exchange: str, symbol: str, depth: int | None = None) -> None:
        self.exchange = str(exchange).lower()
        self.symbol = canonical(symbol)
        if depth is not None:
            depth = _int_arg("depth", depth, 1, what="a positive integer (or None)")
        self.depth = depth
        self._core = BookCore(_ticks.exchange_code(self.exchange), self.symbol.encode("ascii"),
                              0 if depth is None else depth)

    def __repr__(self):
        return (f"OrderBook({self.exchange!r}, {self.symbol!r}, depth={self.depth}, "
                f"bids={self._core.count(1)}, asks={self._core.count(-1)})")

    @property
    def updates(self) -> int:
        return self._core.updates

    @property
    def last_checksum(self) -> int:
        return self._core.last_checksum

    @property
    def last_seq(self) -> int:
        return self._core.last_seq

    @property
    def ts_event(self) -> int:
        return self._core.ts_event

    @property
    def crossed(self) -> bool:
        """True when the best bid is at or above the best ask (crossed or locked)."""
        return self._core.cross_state != 0

    @property
    def status(self) -> str:
        """``"crossed"`` (best bid above best ask), ``"locked"`` (equal),
        ``"one_sided"``, ``"empty"`` or ``"ok"``."""
        state = self._core.cross_state
        if state == BOOK_CROSSED:
            return "crossed"
        if state == BOOK_LOCKED:
            return "locked"
        nb, na = self._core.count(1), self._core.count(-1)
        if nb == 0 and na == 0:
            return "empty"
        return "ok" if nb and na else "one_sided"

    def apply(self, ticks: np.ndarray) -> int:
        """Apply the book records of a tick batch; return how many were used.

        Raises
        ------
        TypeError
            If ``ticks`` is not a ``TICK_DTYPE`` array.
        ValueError
            For a book record with a non-finite or non-positive price, a
            non-finite or negative size or a side other than +1/-1; the whole
            batch is rejected and the book left unchanged.
        """
        ticks = np.asarray(ticks)
        if ticks.dtype != _ticks.TICK_DTYPE:
            raise TypeError(f"ticks must have TICK_DTYPE, got {ticks.dtype}")
        ticks = np.ascontiguousarray(ticks.reshape(-1))
        return self._core.apply(ticks)

    def clear(self) -> None:
        """Remove every level (e.g. on a disconnect)."""
        self._core.clear()

    def set_level(self, side: str | int, price: float, size: float) -> None:
        """Set one level by hand (size 0 removes it); no depth truncation.

        ``price`` must be finite and > 0, ``size`` finite and >= 0 (ValueError).
        """
        self._core.set_level(_side(side), float(price), float(size))

    def best_bid(self) -> tuple[float, float]:
        """``(price, size)`` of the best bid; ``(nan, nan)`` when there is none."""
        return self._core.best(1)

    def best_ask(self) -> tuple[float, float]:
        """``(price, size)`` of the best ask; ``(nan, nan)`` when there is none."""
        return self._core.best(-1)

    def mid(self) -> float:
        """Mid price, nan when a side is empty."""
        return 0.5 * (self._core.best(1)[0] + self._core.best(-1)[0])

    def levels(self, side: str | int, n: int | None = None) -> np.ndarray:
        """Top ``n`` levels of a side (all when None) as a ``(k, 2)`` array of price, size.

        Bids come best (highest) first, asks best (lowest) first.
        """
        if n is not None:
            n = _int_arg("n", n, 0, what="a non-negative integer (or None)")
        return self._core.levels(_side(side), -1 if n is None else n)

    def fill(self, side: str | int, size: float) -> tuple[float, float]:
        """``(vwap, filled)`` of taking up to ``size`` from a side of the book.

        ``side="ask"`` walks the asks (a buy), ``"bid"`` the bids (a sell).
        ``filled`` < ``size`` when the book is too thin; ``vwap`` is then
        the price of what was available (nan if nothing was).
        """
        size = float(size)
        if not (size > 0 and math.isfinite(size)):
            raise ValueError(f"size must be a positive finite number, got {size!r}")
        notional, got = self._core.fill(_side(side), size)
        return (notional / got if got > 0 else math.nan), got

    def vwap(self, side: str | int, size: float) -> float:
        """Volume-weighted price of taking ``size`` from a side (depth-limited).

        Returns nan when the book holds less than ``size`` on that side; use
        :meth:`fill` to get the partial price and the quantity available.
        """
        vwap, got = self.fill(side, size)
        return vwap if got >= float(size) * (1 - 1e-12) else math.nan

    def kraken_checksum(self, price_decimals: int, qty_decimals: int) -> int:
        """Kraken WebSocket v2 book checksum of the current book (unsigned CRC32).

        The top 10 asks (ascending) then the top 10 bids (descending); for
        each level the price then the quantity, each written with the pair's
        precision (``price_decimals``/``qty_decimals`` from the ``instrument``
        channel, e.g. 1 and 8 for BTC/USD), the ``.`` removed and leading
        zeros stripped, all concatenated and CRC32'd.  Writing the float
        with its precision recovers the exchange's decimal text exactly
        (Python's shortest ``repr`` would drop trailing zeros and break it).
        """
        pdec = _int_arg("price_decimals", price_decimals, 0, 18)
        qdec = _int_arg("qty_decimals", qty_decimals, 0, 18)
        return self._core.kraken_checksum(pdec, qdec)
