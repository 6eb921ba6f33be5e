"""Kraken WebSocket v2 market data: ticker, book with CRC32 checksums, trade.

On connect the connector subscribes to the ``instrument`` channel (unless
``precisions`` were given) to learn each pair's ``price_precision`` and
``qty_precision`` (an instrument entry that maps to no canonical symbol,
such as ``ETH2.S/ETH``, or whose precisions are no decimal counts, is skipped
and counted in ``stats()["instruments_skipped"]``; the other pairs count),
then to ``book`` (with snapshot), ``ticker`` and
``trade`` (without snapshot, so a reconnect does not replay old trades).
After every book message the local book is truncated to the subscribed
depth (Kraken sends no deletes for levels that fall out) and its checksum,
formatted with the pair's precisions, is compared with Kraken's; on a
mismatch that pair alone is unsubscribed and subscribed again for a fresh
snapshot (``checksum_failures`` and ``resyncs`` counted, ``STATUS_RESYNC``
emitted), and its updates are dropped until the snapshot arrives.  A book
message the local book rejects (it changes nothing) resyncs that pair the
same way.
``heartbeat`` (about once a second) and ``status`` frames keep the watchdog
quiet; an application ``ping`` is sent when the line is idle.
"""
from __future__ import annotations

import json
from typing import TYPE_CHECKING

from hftsig._ext._tickscan import message_parts
from hftsig.connectors.base import BookFeed, MalformedFrame, _preview
from hftsig.connectors.websocket import WebSocketConnector
from hftsig.market.book import OrderBook
from hftsig.market.normalize import KrakenNormalizer
from hftsig.market.symbols import from_canonical
from hftsig.market.ticks import KIND_BOOK_SNAPSHOT, STATUS_RESYNC

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any

    import numpy as np
    import numpy.typing as npt

    from hftsig.connectors.base import Backoff

__all__ = ["KrakenConnector"]


class KrakenConnector(BookFeed, WebSocketConnector):
    """Kraken WebSocket v2 connector.

    Parameters
    ----------
    symbols : sequence of str
        Canonical symbols (``"BTC-USD"``; Kraken v2 spells it ``BTC/USD``).
    channels : sequence of str
        Any of ``"ticker"``, ``"book"``, ``"trade"``.
    ws_url : str or None
        Defaults to ``wss://ws.kraken.com/v2``.
    on_tick : callable or None
        Called with each message's tick array on the connector thread.
    depth : int
        Book depth: 10, 25, 100, 500 or 1000.
    precisions : dict or None
        ``{symbol: (price_decimals, qty_decimals)}``; ``None`` learns them
        from the ``instrument`` channel.
    backoff, stale_after, connect_timeout, max_connection_age
        See :class:`hftsig.connectors.websocket.WebSocketConnector`.
    max_message_size, max_frame_size
        Size limits, see :class:`hftsig.connectors.websocket.WebSocketConnector`.

    Examples
    --------
    >>> c = KrakenConnector(["BTC-USD"], channels=["book"], depth=10, precisions={"BTC-USD": (1, 8)})
    >>> [json.loads(m)["params"]["channel"] for m in c._subscribe_messages()]
    ['book']
    """

    exchange = "kraken"
    valid_channels = ("ticker", "book", "trade")
    default_channels = ("ticker", "book", "trade")
    default_ws_url = "wss://ws.kraken.com/v2"
    #: Kraken sends a heartbeat about once a second once subscribed
    stale_after = 15.0
    app_ping_interval = 5.0
    depths = (10, 25, 100, 500, 1000)

    def __init__(self, symbols: str | Iterable[str], *, channels: str | Iterable[str] | None = None,
                 ws_url: str | None = None, rest_url: str | None = None,
                 on_tick: Callable[[npt.NDArray[np.void]], Any] | None = None,
                 depth: int = 10, precisions: Mapping[str, tuple[int, int]] | None = None,
                 backoff: Backoff | None = None, stale_after: float | None = None,
                 connect_timeout: float = 5.0, max_connection_age: float | None = None,
                 max_message_size: int | None = None, max_frame_size: int | None = None) -> None:
        super().__init__(symbols, channels=channels, ws_url=ws_url, rest_url=rest_url,
                         on_tick=on_tick, backoff=backoff, stale_after=stale_after,
                         connect_timeout=connect_timeout, max_connection_age=max_connection_age,
                         max_message_size=max_message_size, max_frame_size=max_frame_size)
        if depth not in self.depths:
            raise ValueError(f"depth must be one of {self.depths}, got {depth!r}")
        self.depth = int(depth)
        #: levels per side a consumer's book of this feed must be cut to (the aggregator reads it)
        self.book_depth = self.depth
        self._venue = {s: from_canonical("kraken", s) for s in self.symbols}
        self._canon = {v: s for s, v in self._venue.items()}
        self._canon_b = {s.encode(): s for s in self.symbols}
        self._fixed_precisions = {}
        if precisions is not None:
            for s, (pd, qd) in dict(precisions).items():
                s = s.upper()
                if s not in self._venue:
                    raise ValueError(f"precisions names {s!r}, not one of {self.symbols}")
                if not (0 <= int(pd) <= 18 and 0 <= int(qd) <= 18):
                    raise ValueError(f"precisions of {s} must be decimals in [0, 18], got {(pd, qd)!r}")
                self._fixed_precisions[s] = (int(pd), int(qd))
        self._precisions = dict(self._fixed_precisions)
        self._normalizer = KrakenNormalizer()
        # the book cuts itself to the subscribed depth: Kraken sends no deletes
        # for levels pushed out of it
        self._books = {s: OrderBook(self.exchange, s, depth=self.depth) for s in self.symbols}
        self._awaiting = set(self.symbols)  # book snapshot not yet received
        self._req_id = 0
        self._book_subscribed = False

    # -- public -----------------------------------------------------------
    def precisions(self) -> dict[str, tuple[int, int]]:
        """``{symbol: (price_decimals, qty_decimals)}`` known so far."""
        return dict(self._precisions)

    # -- messages -------------------------------------------------------------
    def _next_id(self):
        self._req_id += 1
        return self._req_id

    def _request(self, method, channel, symbols=None, **params):
        p = {"channel": channel}
        if symbols is not None:
            p["symbol"] = [self._venue[s] for s in symbols]
        p.update(params)
        return json.dumps({"method": method, "params": p, "req_id": self._next_id()})

    def _book_request(self, method, symbols):
        extra = {"depth": self.depth}
        if method == "subscribe":
            extra["snapshot"] = True
        return self._request(method, "book", symbols, **extra)

    def _subscribe_messages(self):
        out = []
        need_instrument = "book" in self.channels and any(
            s not in self._precisions for s in self.symbols)
        if need_instrument:
            out.append(self._request("subscribe", "instrument", snapshot=True))
        if "book" in self.channels and not need_instrument:
            out.append(self._book_request("subscribe", self.symbols))
            self._book_subscribed = True
        if "ticker" in self.channels:
            out.append(self._request("subscribe", "ticker", self.symbols))
        if "trade" in self.channels:
            out.append(self._request("subscribe", "trade", self.symbols, snapshot=False))
        return out

    def _app_ping(self):
        return json.dumps({"method": "ping", "req_id": self._next_id()})

    def _on_open(self):
        self._awaiting = set(self.symbols)
        self._book_subscribed = False
        self._precisions = dict(self._fixed_precisions)
        self._normalizer = KrakenNormalizer()

    # -- dispatch ---------------------------------------------------------------
    def _on_message(self, raw, ts_recv):
        norm = self._normalizer
        ticks = norm.parse(raw, ts_recv)
        kind = norm.last_type
        self._count_type(kind)
        if kind == "error":
            self._count("exchange_errors")
            self._log_once(("error", norm.last_error), "exchange error: %r", _preview(raw))
            return
        if kind != "data":
            return
        if norm.last_channel == "instrument":
            if norm.last_skipped:
                # pairs without a canonical name (staking, tokenized assets) or
                # with unusable precisions: the rest of the snapshot still counts
                self._count("instruments_skipped", norm.last_skipped)
            self._on_instrument(norm.precisions)
            return
        if not len(ticks):
            return
        if norm.last_channel == "book":
            self._on_book(ticks)
        else:
            self._note_latency(ticks)
            self._emit(ticks)

    def _on_instrument(self, precisions):
        self._count_type("instrument")
        for s in self.symbols:
            if s not in self._fixed_precisions and s in precisions:
                self._precisions[s] = tuple(precisions[s])
        if ("book" in self.channels and not self._book_subscribed
                and all(s in self._precisions for s in self.symbols)):
            self.send(self._book_request("subscribe", self.symbols))
            self._book_subscribed = True

    # -- book -------------------------------------------------------------------
    def _on_book(self, ticks):
        # one Kraken book message may carry several entries (pairs); the
        # normalizer ends each with FLAG_LAST and its checksum: check each one
        for start, stop, sym, kind, checksum in message_parts(ticks):
            symbol = self._canon_b.get(sym)
            if symbol is None:
                raise MalformedFrame(f"book message for unsubscribed pair {sym!r}")
            self._on_book_part(symbol, ticks if stop - start == len(ticks) else ticks[start:stop],
                               kind == KIND_BOOK_SNAPSHOT, checksum)

    def _on_book_part(self, symbol, part, snapshot, expected):
        if snapshot:
            self._awaiting.discard(symbol)
        elif symbol in self._awaiting:
            self._count("dropped_while_resyncing")
            return
        book = self._books[symbol]
        if not self._apply_book(symbol, part):
            self._resubscribe_book(symbol)  # the book missed this message
            return
        pd, qd = self._precisions[symbol]
        got = int(book.kraken_checksum(pd, qd))
        if got != expected:
            self._count("checksum_failures")
            self._log_once(("checksum", symbol), "%s book checksum %d != Kraken's %d; "
                           "resubscribing %s", symbol, got, expected, self._venue[symbol])
            self._resubscribe_book(symbol)
            return
        self._note_latency(part)
        self._emit(part)
        self._note_crossed(symbol)

    def _resubscribe_book(self, symbol):
        """Drop ``symbol``'s book and ask Kraken for a fresh snapshot of that pair only."""
        self._count("resyncs")
        self._awaiting.add(symbol)
        self._books[symbol].clear()  # empty rather than wrong until the new snapshot
        self._emit_status(STATUS_RESYNC, symbol)
        self.send(self._book_request("unsubscribe", [symbol]))
        self.send(self._book_request("subscribe", [symbol]))
