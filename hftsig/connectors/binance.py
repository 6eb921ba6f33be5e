"""Binance spot market data: combined streams and the documented local order book.

Streams come over one combined-stream connection
(``/stream?streams=btcusdt@bookTicker/btcusdt@trade/btcusdt@depth@100ms``),
so a reconnect resubscribes by construction.  Diff-depth events are synced
with REST snapshots exactly as Binance documents it:

1. buffer the diff events of a symbol, noting the first ``U``;
2. ``GET /api/v3/depth?symbol=...&limit=...`` (on a helper thread; the
   websocket thread keeps reading and buffering while it is in flight);
3. if the snapshot's ``lastUpdateId`` is below the first buffered ``U``,
   fetch again;
4. drop buffered events with ``u <= lastUpdateId``, apply the rest in order;
5. afterwards ignore events with ``u <= local``, restart (count a gap, emit
   ``STATUS_RESYNC``) if ``U > local + 1``, otherwise apply and set
   ``local = u``.

``local`` moves only once an event was applied whole: an event (or snapshot)
the book rejects changes nothing, is counted as ``malformed`` and
``book_rejected``, and restarts the sync from a new snapshot.

Server pings are answered by websocket-client echoing the payload; the
connection is renewed before Binance's 24 h limit and at once on
``{"e": "serverShutdown"}``.  REST 429/418 honour ``Retry-After``.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from hftsig.connectors.base import BookFeed, MalformedFrame, SnapshotWorker, _preview
from hftsig.connectors.rest import RestClient
from hftsig.connectors.websocket import WebSocketConnector
from hftsig.market.book import OrderBook
from hftsig.market.normalize import BinanceNormalizer
from hftsig.market.symbols import from_canonical
from hftsig.market.ticks import STATUS_RESYNC

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    import numpy as np
    import numpy.typing as npt

    from hftsig.connectors.base import Backoff

__all__ = ["BinanceConnector"]


class _DepthState:
    """Local-book sync state of one symbol (touched by the websocket thread only)."""

    __slots__ = ("synced", "local", "buffer", "generation", "requested", "retry_at", "failures")

    def __init__(self):
        self.synced = False
        self.local = -1
        self.buffer = []  # (U, u, ticks) of events waiting for a snapshot
        self.generation = 0
        self.requested = False
        self.retry_at = 0.0
        self.failures = 0

    def restart(self):
        self.synced = False
        self.local = -1
        self.buffer = []
        self.generation += 1
        self.requested = False


class BinanceConnector(BookFeed, WebSocketConnector):
    """Binance spot connector.

    Parameters
    ----------
    symbols : sequence of str
        Canonical symbols (``"BTC-USDT"``).
    channels : sequence of str
        Any of ``"bookTicker"``, ``"trade"``, ``"aggTrade"``, ``"depth"``.
    ws_url, rest_url : str or None
        Base URLs (defaults: live Binance); ``ws://``/``http://`` loopback
        URLs point the connector at a simulator.
    on_tick : callable or None
        Called with each message's tick array on the connector thread.
    depth_limit : int
        Levels of the REST depth snapshot (5, 10, 20, 50, 100, 500, 1000 or
        5000; weight grows with it).
    depth_speed : str
        ``"100ms"`` or ``"1000ms"`` diff-depth stream.
    backoff, stale_after, connect_timeout, max_connection_age, rest_timeout
        See :class:`hftsig.connectors.websocket.WebSocketConnector`.
    max_message_size, max_frame_size
        Size limits, see :class:`hftsig.connectors.websocket.WebSocketConnector`.

    Examples
    --------
    >>> c = BinanceConnector(["BTC-USDT", "ETH-BTC"], channels=["bookTicker", "depth"])
    >>> c._ws_endpoint()
    'wss://stream.binance.com:9443/stream?streams=btcusdt@bookTicker/btcusdt@depth@100ms/ethbtc@bookTicker/ethbtc@depth@100ms'
    """

    exchange = "binance"
    valid_channels = ("bookTicker", "trade", "aggTrade", "depth")
    default_channels = ("bookTicker", "trade", "depth")
    default_ws_url = "wss://stream.binance.com:9443"
    default_rest_url = "https://api.binance.com"
    #: Binance pings every 20 s; a minute without any frame is a dead feed
    stale_after = 60.0
    #: Binance ends connections at 24 h: renew a little earlier
    max_connection_age = 23.5 * 3600
    max_streams = 1024
    depth_limits = (5, 10, 20, 50, 100, 500, 1000, 5000)
    #: diff events kept per symbol while waiting for a snapshot
    max_buffered_events = 10_000

    def __init__(self, symbols: str | Iterable[str], *, channels: str | Iterable[str] | None = None,
                 ws_url: str | None = None, rest_url: str | None = None,
                 on_tick: Callable[[npt.NDArray[np.void]], Any] | None = None,
                 depth_limit: int = 1000, depth_speed: str = "100ms",
                 backoff: Backoff | None = None, stale_after: float | None = None,
                 connect_timeout: float = 5.0, max_connection_age: float | None = None,
                 rest_timeout: float = 5.0, max_message_size: int | None = None,
                 max_frame_size: int | None = None) -> None:
        super().__init__(symbols, channels=channels, ws_url=ws_url, rest_url=rest_url,
                         on_tick=on_tick, backoff=backoff, stale_after=stale_after,
                         connect_timeout=connect_timeout, max_connection_age=max_connection_age,
                         max_message_size=max_message_size, max_frame_size=max_frame_size)
        if depth_limit not in self.depth_limits:
            raise ValueError(f"depth_limit must be one of {self.depth_limits}, got {depth_limit!r}")
        if depth_speed not in ("100ms", "1000ms"):
            raise ValueError(f"depth_speed must be '100ms' or '1000ms', got {depth_speed!r}")
        self.depth_limit = int(depth_limit)
        self.depth_speed = depth_speed
        self._venue = {s: from_canonical("binance", s) for s in self.symbols}
        n_streams = len(self.symbols) * len(self.channels)
        if n_streams > self.max_streams:
            raise ValueError(f"{n_streams} streams exceed Binance's {self.max_streams} per connection")
        self._normalizer = BinanceNormalizer()
        self._books = {s: OrderBook(self.exchange, s) for s in self.symbols}
        self._depth = {s: _DepthState() for s in self.symbols}
        self.rest = RestClient(self.rest_url, self, timeout=rest_timeout)
        self._snapshots = SnapshotWorker(self, self._fetch_snapshot)

    # -- public -----------------------------------------------------------
    def synced(self, symbol: str) -> bool:
        """True while ``symbol``'s local book is in sync with the stream."""
        return self._depth[self._book_symbol(symbol)].synced

    # -- machinery hooks ------------------------------------------------------
    def start(self) -> BinanceConnector:
        super().start()
        if "depth" in self.channels:
            self._snapshots.start()
        return self

    def _threads(self):
        return [t for t in (self._thread, self._snapshots.thread) if t is not None]

    def _interrupt(self):
        super()._interrupt()
        self._snapshots.wake()
        self.rest.close()

    def _stream_names(self):
        names = []
        for s in self.symbols:
            v = self._venue[s].lower()
            for ch in self.channels:
                if ch != "depth":
                    names.append(f"{v}@{ch}")
                else:  # the 1000 ms diff stream is plain "@depth"
                    names.append(f"{v}@depth@100ms" if self.depth_speed == "100ms" else f"{v}@depth")
        return names

    def _ws_endpoint(self):
        return f"{self.ws_url}/stream?streams={'/'.join(self._stream_names())}"

    def _on_open(self):
        for s in self.symbols:
            self._depth[s].restart()

    def _on_close(self):
        # without a connection the books stop being in sync
        for s in self.symbols:
            self._depth[s].restart()

    def _on_message(self, raw, ts_recv):
        norm = self._normalizer
        ticks = norm.parse(raw, ts_recv)
        kind = norm.last_type
        self._count_type(kind)
        if kind == "data":
            channel = norm.last_channel
            if channel == "depthUpdate":
                # an event without level changes still moves the update ids
                self._on_depth(ticks, norm.last_symbol, norm.last_seq_first, norm.last_seq)
            elif len(ticks):
                if channel != "bookTicker":  # bookTicker carries no event time
                    self._note_latency(ticks)
                self._emit(ticks)
        elif kind == "shutdown":
            self.request_reconnect("serverShutdown")
        elif kind == "error":
            self._count("exchange_errors")
            self._log_once(("error", _preview(raw)), "exchange error: %r", _preview(raw))
        self._drain_snapshots()

    def _on_idle(self):
        self._drain_snapshots()
        now = time.monotonic()
        for s, st in self._depth.items():
            if not st.synced and st.buffer and not st.requested and now >= st.retry_at:
                self._request_snapshot(s, st)

    # -- local book ---------------------------------------------------------
    def _fetch_snapshot(self, symbol):
        resp = self.rest.get("/api/v3/depth",
                             {"symbol": self._venue[symbol], "limit": self.depth_limit})
        return resp.content, time.time_ns()

    def _request_snapshot(self, symbol, st):
        st.requested = True
        self._snapshots.request(symbol, st.generation)

    def _on_depth(self, ticks, symbol, first, last):
        if symbol not in self._depth:
            raise MalformedFrame(f"depth event for unsubscribed symbol {symbol!r}")
        if first < 0 or last < first:
            raise MalformedFrame(f"depth event with update ids U={first}, u={last}")
        st = self._depth[symbol]
        if not st.synced:
            st.buffer.append((first, last, ticks))
            if len(st.buffer) > self.max_buffered_events:
                # a snapshot that never comes must not eat memory; the
                # first-U check below makes the next snapshot cover the hole
                del st.buffer[0]
                self._count("buffer_overflows")
            if not st.requested and time.monotonic() >= st.retry_at:
                self._request_snapshot(symbol, st)
            return
        if last <= st.local:
            self._count("old_events")
            return
        if first > st.local + 1:
            self._gap(symbol, st, expected=st.local + 1, got=first)
            st.buffer.append((first, last, ticks))
            self._request_snapshot(symbol, st)
            return
        if self._apply(symbol, st, ticks):
            st.local = last

    def _apply(self, symbol, st, ticks):
        """Apply one diff event; False when the book rejected it (and the sync restarted)."""
        if not self._apply_book(symbol, ticks):
            # the book missed this event: start over from a new snapshot
            self._count("resyncs")
            st.restart()
            self._books[symbol].clear()
            self._emit_status(STATUS_RESYNC, symbol)
            return False
        self._note_latency(ticks)
        self._emit(ticks)
        self._note_crossed(symbol)
        return True

    def _gap(self, symbol, st, expected, got):
        self._count("gaps")
        self._count("resyncs")
        self._log_once(("gap", symbol), "%s depth gap: expected U <= %d, got %d; resyncing",
                       symbol, expected, got)
        st.restart()
        self._books[symbol].clear()  # empty rather than wrong until the new snapshot
        self._emit_status(STATUS_RESYNC, symbol)

    def _drain_snapshots(self):
        for symbol, gen, result in self._snapshots.results():
            st = self._depth[symbol]
            if gen != st.generation or st.synced:
                continue  # superseded by a later restart
            st.requested = False
            if isinstance(result, Exception):
                st.failures += 1
                st.retry_at = time.monotonic() + self.backoff.delay(st.failures - 1)
                self._count("snapshot_failures")
                self._log_once(("snapshot", type(result)), "%s depth snapshot failed: %s",
                               symbol, result)
                continue
            body, ts_recv = result
            try:
                snap = self._normalizer.parse(body, ts_recv, symbol=self._venue[symbol])
                snap_id = int(self._normalizer.last_seq)
                if snap_id < 0:
                    raise MalformedFrame("depth snapshot without lastUpdateId")
            except ValueError as exc:  # MalformedMessage is a ValueError
                self._count("malformed")
                st.failures += 1
                st.retry_at = time.monotonic() + self.backoff.delay(st.failures - 1)
                self._log_once(("snapshot-malformed",), "%s: %s", symbol, exc)
                continue
            if not st.buffer or snap_id < st.buffer[0][0]:
                # the snapshot predates the first buffered event: ask again
                self._count("snapshot_refetches")
                self._request_snapshot(symbol, st)
                continue
            self._books[symbol].clear()
            if not self._apply_book(symbol, snap):  # counted; the book stays empty
                st.failures += 1
                st.retry_at = time.monotonic() + self.backoff.delay(st.failures - 1)
                continue
            st.failures = 0
            self._emit(snap)
            self._note_crossed(symbol)
            self._count("snapshots")
            st.local = snap_id
            st.synced = True
            pending, st.buffer = st.buffer, []
            for first, last, ticks in pending:
                if last <= st.local:
                    continue  # already in the snapshot
                if first > st.local + 1:
                    self._gap(symbol, st, expected=st.local + 1, got=first)
                    st.buffer.append((first, last, ticks))
                    self._request_snapshot(symbol, st)
                    break
                if not self._apply(symbol, st, ticks):
                    break
                st.local = last
