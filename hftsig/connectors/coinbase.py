"""Coinbase Advanced Trade market data: ticker, level2, market_trades, heartbeats.

One subscribe message per channel is sent right after connecting (Coinbase
closes connections that do not subscribe within 5 s), always including
``heartbeats`` so that quiet products keep the connection (and the
watchdog) alive.  Every message carries a per-connection ``sequence_num``;
a jump means messages were lost: the gap is counted, ``STATUS_RESYNC`` is
emitted for every book, and ``level2`` is unsubscribed and subscribed again
for fresh snapshots, with level2 updates dropped until they arrive.  A
repeated or older ``sequence_num`` is dropped as a duplicate.  The sequence
moves past a message only once it was handled: a frame that does not parse
leaves it behind (the next frame shows the gap and resyncs), and a level2
message the book rejects (it changes nothing) resyncs at once.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

import numpy as np

from hftsig import venues
from hftsig._ext._tickscan import message_parts
from hftsig.connectors.base import BookFeed, MalformedFrame, _preview
from hftsig.connectors.websocket import WebSocketConnector
from hftsig.market.book import OrderBook
from hftsig.market.normalize import CoinbaseNormalizer
from hftsig.market.symbols import from_canonical
from hftsig.market.ticks import FLAG_LAST, KIND_BOOK_SNAPSHOT, KIND_TRADE, STATUS_RESYNC

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    import numpy.typing as npt

    from hftsig.connectors.base import Backoff

__all__ = ["CoinbaseConnector"]


class CoinbaseConnector(BookFeed, WebSocketConnector):
    """Coinbase Advanced Trade connector (public channels, no authentication).

    Parameters
    ----------
    symbols : sequence of str
        Canonical symbols (``"BTC-USD"``).
    channels : sequence of str
        Any of ``"ticker"``, ``"level2"``, ``"market_trades"``
        (``heartbeats`` is always subscribed).
    ws_url : str or None
        Defaults to ``wss://advanced-trade-ws.coinbase.com``.
    on_tick : callable or None
        Called with each message's tick array on the connector thread.
    backoff, stale_after, connect_timeout, max_connection_age
        See :class:`hftsig.connectors.websocket.WebSocketConnector`.
    max_message_size, max_frame_size
        Size limits, see :class:`hftsig.connectors.websocket.WebSocketConnector`.

    Examples
    --------
    >>> c = CoinbaseConnector(["BTC-USD"], channels=["level2"])
    >>> [json.loads(m)["channel"] for m in c._subscribe_messages()]
    ['heartbeats', 'level2']
    """

    exchange = "coinbase"
    valid_channels = ("ticker", "level2", "market_trades")
    default_channels = ("ticker", "level2", "market_trades")
    default_ws_url = "wss://advanced-trade-ws.coinbase.com"
    #: heartbeats arrive every second
    stale_after = 15.0
    #: market_trades sends the trades of each 250 ms in one message (declared
    #: in the registry, :attr:`hftsig.venues.Venue.batched_kinds`)
    batched_kinds = dict(venues.get("coinbase").batched_kinds)

    def __init__(self, symbols: str | Iterable[str], *, channels: str | Iterable[str] | None = None,
                 ws_url: str | None = None, rest_url: str | None = None,
                 on_tick: Callable[[npt.NDArray[np.void]], Any] | None = None,
                 backoff: Backoff | None = None, stale_after: float | None = None,
                 connect_timeout: float = 5.0, max_connection_age: float | None = None,
                 max_message_size: int | None = None, max_frame_size: int | None = None) -> None:
        super().__init__(symbols, channels=channels, ws_url=ws_url, rest_url=rest_url,
                         on_tick=on_tick, backoff=backoff, stale_after=stale_after,
                         connect_timeout=connect_timeout, max_connection_age=max_connection_age,
                         max_message_size=max_message_size, max_frame_size=max_frame_size)
        self._venue = {s: from_canonical("coinbase", s) for s in self.symbols}
        self._canon_b = {s.encode(): s for s in self.symbols}
        self._normalizer = CoinbaseNormalizer()
        self._books = {s: OrderBook(self.exchange, s) for s in self.symbols}
        self._awaiting = set(self.symbols)
        self._last_seq = -1
        self._last_trade = {}  # symbol bytes -> highest trade id emitted (kept across reconnects)

    def _message(self, kind, channel, products=True):
        msg = {"type": kind}
        if products:
            msg["product_ids"] = [self._venue[s] for s in self.symbols]
        msg["channel"] = channel
        return json.dumps(msg)

    def _subscribe_messages(self):
        out = [self._message("subscribe", "heartbeats", products=False)]
        out += [self._message("subscribe", ch) for ch in self.channels]
        return out

    def _on_open(self):
        self._last_seq = -1
        self._awaiting = set(self.symbols)
        self._normalizer = CoinbaseNormalizer()

    def _on_message(self, raw, ts_recv):
        norm = self._normalizer
        ticks = norm.parse(raw, ts_recv)
        kind = norm.last_type
        self._count_type(kind)
        if kind == "error":
            self._count("exchange_errors")
            self._log_once(("error", _preview(raw)), "exchange error: %r", _preview(raw))
            return
        seq = int(norm.last_seq)
        if seq >= 0:  # counts frames on this connection from 0
            if seq <= self._last_seq:
                self._count("old_events")
                return
            if seq > self._last_seq + 1:
                self._resync(seq)
        self._dispatch(norm, kind, ticks)
        if seq >= 0:
            # (after the message: one that raised here is not counted as seen,
            # so the next frame shows the hole; a rejected book message has
            # already resynced in _on_book)
            self._last_seq = seq

    def _dispatch(self, norm, kind, ticks):
        if kind != "data" or not len(ticks):
            return
        if norm.last_channel == "l2_data":
            self._on_book(ticks)
        elif norm.last_channel != "market_trades":
            self._note_latency(ticks)
            self._emit(ticks)
        else:
            ticks = self._drop_replayed_trades(ticks)
            if len(ticks):
                self._note_latency(ticks)
                self._emit(ticks)

    def _drop_replayed_trades(self, ticks):
        """market_trades opens every subscription with a snapshot of recent
        trades: after a reconnect those were already emitted. Keep trades
        whose id is above the last one emitted for their product."""
        trade = ticks["kind"] == KIND_TRADE
        if not trade.any():
            return ticks
        keep = np.ones(len(ticks), dtype=bool)
        for sym in np.unique(ticks["symbol"][trade]):
            mine = trade & (ticks["symbol"] == sym)
            ids = ticks["seq"][mine]
            last = self._last_trade.get(bytes(sym), -1)
            if last >= 0:
                keep[mine] = ids > last
            if len(ids) and ids.max() >= 0:
                self._last_trade[bytes(sym)] = max(last, int(ids.max()))
        dropped = int((~keep).sum())
        if dropped:
            self._count("replayed_trades_dropped", dropped)
            ticks = ticks[keep]
            if len(ticks):
                ticks["flags"][-1] |= FLAG_LAST
        return ticks

    def _resync(self, seq):
        self._count("gaps")
        self._log_once(("gap",), "sequence_num jumped to %d; resubscribing level2", seq)
        self._resubscribe_level2()

    def _resubscribe_level2(self):
        if "level2" not in self.channels:
            return
        self._count("resyncs")
        for s in self.symbols:
            self._emit_status(STATUS_RESYNC, s)
        self._awaiting = set(self.symbols)
        for book in self._books.values():
            book.clear()  # empty rather than wrong until the new snapshots
        self.send(self._message("unsubscribe", "level2"))
        self.send(self._message("subscribe", "level2"))

    def _on_book(self, ticks):
        # one l2_data message may carry several products: split by symbol
        for start, stop, sym, kind, _ in message_parts(ticks):
            symbol = self._canon_b.get(sym)
            if symbol is None:
                raise MalformedFrame(f"level2 for unsubscribed product {sym!r}")
            if kind == KIND_BOOK_SNAPSHOT:
                self._awaiting.discard(symbol)
            elif symbol in self._awaiting:
                self._count("dropped_while_resyncing")
                continue
            part = ticks if stop - start == len(ticks) else ticks[start:stop]
            if not self._apply_book(symbol, part):
                # this update is lost to the book: fresh snapshots replace it
                self._resubscribe_level2()
                return
            self._note_latency(part)
            self._emit(part)
            self._note_crossed(symbol)
