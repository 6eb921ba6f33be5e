"""Kraken WebSocket v2 simulator (``ws_url`` is the full ``ws://127.0.0.1:PORT/v2``).

- ``status`` on connect; ``heartbeat`` about once a second without other
  traffic once anything is subscribed; ``{"method":"ping"}`` -> ``pong``.
- ``subscribe`` / ``unsubscribe`` with ``params.channel`` one of ``ticker``
  (``event_trigger`` ``trades`` default or ``bbo``), ``book`` (``depth`` 10,
  25, 100, 500, 1000), ``trade``, ``instrument``; one acknowledgement per
  symbol (``{"method":"subscribe","result":{...},"success":true,
  "time_in":...,"time_out":...,"req_id":...}``), errors with
  ``"success":false`` and an ``error`` text.
- ``book`` snapshot then updates; each carries the CRC32 ``checksum`` of the
  top 10 levels computed as Kraken documents (asks ascending then bids
  descending, price and qty formatted to the pair's ``price_precision`` /
  ``qty_precision``, ``.`` removed, leading zeros stripped).  Levels that fall
  below the subscribed depth are not deleted (the client truncates).
- Numbers are JSON numbers at the pair's precision; timestamps RFC 3339.
"""
from __future__ import annotations

import json
import time
import zlib  # noqa: F401  (the kraken_checksum doctest)

from hftsig._ext._simformat import format_number, kraken_levels, kraken_side_update
from hftsig._ext._simformat import kraken_checksum as _checksum
from hftsig.simulator._wsbase import WsExchangeServer, rfc3339_us
from hftsig.simulator.market import BookUpdate, format_fixed

__all__ = ["KrakenServer", "kraken_symbol", "kraken_checksum"]

BOOK_DEPTHS = (10, 25, 100, 500, 1000)


def kraken_symbol(symbol):
    """``"BTC-USD"`` -> ``"BTC/USD"`` (WebSocket v2 names; no ``XBT``)."""
    return symbol.replace("-", "/")


def _num(n, decimals):
    # JSON number at the pair's precision, trailing zeros trimmed (one decimal kept).
    return format_number(n, decimals, "trim1")


def kraken_checksum(bids, asks, price_decimals, qty_decimals):
    """Kraken v2 book checksum of integer ``(ticks, lots)`` levels.

    ``bids`` best (highest) first, ``asks`` best (lowest) first; only the top
    10 of each count.  Kraken writes each price and quantity with the pair's
    precision, removes the ``.`` and strips leading zeros: for a positive
    integer count of ticks (lots) that text is the integer's own decimal
    digits, so the precisions only fix the units the levels are counted in.

    >>> kraken_checksum([(452835, 10000000)], [(452852, 150000000)], 1, 8) == \\
    ...     zlib.crc32(b"452852" + b"150000000" + b"452835" + b"10000000")
    True
    """
    del price_decimals, qty_decimals  # the units are already those of the pair
    return _checksum(bids, asks)


def _stamped_at_send(head):
    """A payload callable: a book update's ``timestamp`` is the moment the
    server writes it (the simulated venue's publication time), so a client's
    receive time minus it is the delivery latency from the send on."""
    def build(conn, head=head):
        return head + ',"timestamp":"%s"}]}' % rfc3339_us(time.time_ns())

    return build


class KrakenServer(WsExchangeServer):
    name = "kraken"
    ping_interval = None
    #: what SimulatedExchanges.inject may do to this venue
    FAULTS = ("disconnect", "malformed", "gap", "bad_checksum", "stall")
    WS_PATH = "/v2"

    @classmethod
    def from_settings(cls, model, settings):
        """The server SimulatedExchanges runs, from its ``settings`` (a dict)."""
        return cls(model, heartbeat_interval=settings["heartbeat_interval"],
                   max_queue=settings["max_queue"])

    def __init__(self, model, **kw):
        super().__init__(model, **kw)
        self.venue = "kraken"
        self.by_pair = {kraken_symbol(s): s for s in model.symbols}
        self._views = {}  # (symbol, depth) -> (bids, asks) as lists of (ticks, lots)
        self._recent_trades = {s: [] for s in model.symbols}
        self._last_top = {}

    def accept_path(self, path):
        if path.split("?")[0] in ("/v2", "/v2/"):
            return True
        return (404, "Not Found\n")

    async def on_open(self, conn):
        conn.subs.update(ticker={}, book={}, trade=set(), instrument=False)
        msg = {
            "channel": "status",
            "type": "update",
            "data": [{"version": "2.0.10", "system": "online", "api_version": "v2", "connection_id": 10_000_000 + conn.id}],
        }
        conn.enqueue("status", json.dumps(msg, separators=(",", ":")), ctrl=True)

    # ---------------------------------------------------------- requests
    def _ack(self, conn, method, result, req_id, time_in, success=True, error=None, symbol=None):
        msg = {"method": method}
        if success:
            msg["result"] = result
        else:
            msg["error"] = error
        msg["success"] = success
        if symbol is not None and not success:
            msg["symbol"] = symbol
        msg["time_in"] = time_in
        msg["time_out"] = rfc3339_us(time.time_ns())
        if req_id is not None:
            msg["req_id"] = req_id
        conn.enqueue("subscribe" if success else "error", json.dumps(msg, separators=(",", ":")), ctrl=True)

    async def on_bad_request(self, conn, msg, exc):
        body = {"error": "Malformed request", "success": False,
                "time_in": rfc3339_us(time.time_ns()), "time_out": rfc3339_us(time.time_ns())}
        conn.enqueue("error", json.dumps(body, separators=(",", ":")), ctrl=True)

    async def on_message(self, conn, msg):
        time_in = rfc3339_us(time.time_ns())
        req = json.loads(msg)
        if not isinstance(req, dict) or not isinstance(req.get("method"), str):
            raise ValueError("not a request")
        method = req["method"]
        conn.received[method] += 1
        req_id = req.get("req_id")
        if method == "ping":
            body = {"method": "pong"}
            if req_id is not None:
                body["req_id"] = req_id
            body["time_in"] = time_in
            body["time_out"] = rfc3339_us(time.time_ns())
            conn.enqueue("pong", json.dumps(body, separators=(",", ":")), ctrl=True)
            return
        if method not in ("subscribe", "unsubscribe"):
            self._ack(conn, method, None, req_id, time_in, False, "Method not found")
            return
        params = req.get("params")
        if not isinstance(params, dict):
            self._ack(conn, method, None, req_id, time_in, False, "Invalid params")
            return
        channel = params.get("channel")
        if channel == "instrument":
            result = {"channel": "instrument", "snapshot": bool(params.get("snapshot", True))}
            if method == "subscribe":
                conn.subs["instrument"] = True
                self._ack(conn, method, result, req_id, time_in)
                if result["snapshot"]:
                    conn.enqueue("instrument", self._instrument_snapshot(), items=len(self.model.symbols))
            else:
                conn.subs["instrument"] = False
                self._ack(conn, method, {"channel": "instrument"}, req_id, time_in)
            return
        if channel not in ("ticker", "book", "trade"):
            self._ack(conn, method, None, req_id, time_in, False, f"Channel {channel} not found" if channel else "Missing channel")
            return
        symbols = params.get("symbol")
        if not isinstance(symbols, list) or not symbols:
            self._ack(conn, method, None, req_id, time_in, False, "Missing symbol")
            return
        depth = params.get("depth", 10)
        if channel == "book" and depth not in BOOK_DEPTHS:
            self._ack(conn, method, None, req_id, time_in, False, "Invalid depth")
            return
        trigger = params.get("event_trigger", "trades")
        if channel == "ticker" and trigger not in ("trades", "bbo"):
            self._ack(conn, method, None, req_id, time_in, False, "Invalid event_trigger")
            return
        snapshot = bool(params.get("snapshot", True))
        for pair in symbols:
            sym = self.by_pair.get(pair)
            if sym is None:
                self._ack(conn, method, None, req_id, time_in, False, f"Currency pair not supported {pair}", symbol=pair)
                continue
            if method == "unsubscribe":
                if channel == "trade":
                    conn.subs["trade"].discard(sym)
                else:
                    conn.subs[channel].pop(sym, None)
                res = {"channel": channel, "symbol": pair}
                if channel == "book":
                    res = {"channel": channel, "depth": depth, "symbol": pair}
                self._ack(conn, method, res, req_id, time_in)
                continue
            if channel == "book":
                conn.subs["book"][sym] = depth
                self._ack(conn, method, {"channel": "book", "depth": depth, "snapshot": snapshot, "symbol": pair}, req_id, time_in)
                if snapshot:
                    self._send_book_snapshot(conn, sym, depth)
            elif channel == "ticker":
                conn.subs["ticker"][sym] = trigger
                self._ack(conn, method, {"channel": "ticker", "snapshot": snapshot, "symbol": pair}, req_id, time_in)
                if snapshot:
                    conn.enqueue("ticker", self._ticker_msg(sym, "snapshot", time.time_ns()), items=1)
            else:
                conn.subs["trade"].add(sym)
                self._ack(conn, method, {"channel": "trade", "snapshot": snapshot, "symbol": pair}, req_id, time_in)
                if snapshot:
                    recent = self._recent_trades[sym][-50:]
                    conn.enqueue("trade", self._trade_msg(sym, recent, "snapshot"), items=len(recent))

    # ------------------------------------------------------------ payloads
    def _instrument_snapshot(self):
        m = self.model
        assets = []
        for a in m.assets:
            assets.append({"id": a, "status": "enabled", "precision": 10, "precision_display": 5,
                           "borrowable": False, "collateral_value": 0.0, "margin_rate": 0.0})
        pairs = []
        for s in m.symbols:
            spec = m.specs[self.venue, s]
            pairs.append(
                '{"symbol":"%s","base":"%s","quote":"%s","status":"online","qty_precision":%d,'
                '"qty_increment":%s,"price_precision":%d,"cost_precision":5,"marginable":false,'
                '"has_index":true,"cost_min":0.5,"tick_size":%s,"price_increment":%s,"qty_min":%s}'
                % (kraken_symbol(s), spec.base, spec.quote, spec.qty_decimals, format_fixed(1, spec.qty_decimals),
                   spec.price_decimals, format_fixed(1, spec.price_decimals), format_fixed(1, spec.price_decimals),
                   format_fixed(1, spec.qty_decimals))
            )
        return '{"channel":"instrument","type":"snapshot","data":{"assets":%s,"pairs":[%s]}}' % (
            json.dumps(assets, separators=(",", ":")), ",".join(pairs))

    def _levels(self, levels, spec):
        return kraken_levels(levels, spec.price_decimals, spec.qty_decimals)

    def _view(self, sym, depth):
        bids, asks, _ = self.model.book_ticks(self.venue, sym)
        return bids[:depth], asks[:depth]

    def _send_book_snapshot(self, conn, sym, depth):
        spec = self.model.specs[self.venue, sym]
        view = self._views.get((sym, depth))
        if view is None:
            view = self._views[sym, depth] = self._view(sym, depth)
        bids, asks = view
        ck = kraken_checksum(bids, asks, spec.price_decimals, spec.qty_decimals)
        # As documented, snapshots carry no timestamp (updates do).
        body = '{"channel":"book","type":"snapshot","data":[{"symbol":"%s","bids":[%s],"asks":[%s],"checksum":%d}]}' % (
            kraken_symbol(sym), self._levels(bids, spec), self._levels(asks, spec), ck)
        conn.enqueue("book", body, items=len(bids) + len(asks))
        conn.last_seq[sym] = ck

    def _ticker_msg(self, sym, kind, ts_ns):
        m = self.model
        spec = m.specs[self.venue, sym]
        bid, ask, _ = m.top_ticks(self.venue, sym)
        st = m.stats(self.venue, sym)
        pd, qd = spec.price_decimals, spec.qty_decimals
        last = round(st["last"] / spec.tick)
        change = st["last"] - st["open"]
        return (
            '{"channel":"ticker","type":"%s","data":[{"symbol":"%s","bid":%s,"bid_qty":%s,"ask":%s,"ask_qty":%s,'
            '"last":%s,"volume":%s,"vwap":%s,"low":%s,"high":%s,"change":%s,"change_pct":%.2f,"timestamp":"%s"}]}'
            % (kind, kraken_symbol(sym), _num(bid[0], pd), _num(bid[1], qd), _num(ask[0], pd),
               _num(ask[1], qd), _num(last, pd), _num(round(st["volume"] / spec.lot), qd),
               _num(round(st["vwap"] / spec.tick), pd), _num(round(st["low"] / spec.tick), pd),
               _num(round(st["high"] / spec.tick), pd), _num(round(change / spec.tick), pd),
               100.0 * change / st["open"], rfc3339_us(ts_ns))
        )

    def _trade_msg(self, sym, trades, kind):
        spec = self.model.specs[self.venue, sym]
        items = ",".join(
            '{"symbol":"%s","side":"%s","price":%s,"qty":%s,"ord_type":"%s","trade_id":%d,"timestamp":"%s"}'
            % (kraken_symbol(sym), "buy" if t.side > 0 else "sell", _num(t.price_ticks, spec.price_decimals),
               _num(t.qty_lots, spec.qty_decimals), "market" if t.trade_id % 3 else "limit", t.trade_id,
               rfc3339_us(t.ts_ns))
            for t in trades
        )
        return '{"channel":"trade","type":"%s","data":[%s]}' % (kind, items)

    # ------------------------------------------------------------- events
    def on_events(self, events):
        m = self.model
        for ev in events:
            if ev.venue != self.venue:
                continue
            sym = ev.symbol
            if isinstance(ev, BookUpdate):
                self._book_update(sym, ev.ts_ns)
                bid, ask, _ = m.top_ticks(self.venue, sym)
                top = (bid, ask)
                if self._last_top.get(sym) != top:
                    self._last_top[sym] = top
                    subs = [c for c in self.conns if c.subs["ticker"].get(sym) == "bbo"]
                    if subs:
                        self.broadcast(subs, "ticker", self._ticker_msg(sym, "update", ev.ts_ns), 1)
            else:
                rec = self._recent_trades[sym]
                rec.append(ev)
                if len(rec) > 100:
                    del rec[:50]
                subs = [c for c in self.conns if sym in c.subs["trade"]]
                if subs:
                    self.broadcast(subs, "trade", self._trade_msg(sym, [ev], "update"), 1)
                subs = [c for c in self.conns if c.subs["ticker"].get(sym) == "trades"]
                if subs:
                    self.broadcast(subs, "ticker", self._ticker_msg(sym, "update", ev.ts_ns), 1)

    def _book_update(self, sym, ts_ns):
        m = self.model
        spec = m.specs[self.venue, sym]
        depths = {}
        for c in self.conns:
            d = c.subs["book"].get(sym)
            if d is not None:
                depths.setdefault(d, []).append(c)
        # Views nobody watches go stale; a new subscriber gets a fresh snapshot.
        for key in [k for k in self._views if k[0] == sym and k[1] not in depths]:
            del self._views[key]
        if not depths:
            return
        bids_all, asks_all, _ = m.book_ticks(self.venue, sym)
        pd, qd = spec.price_decimals, spec.qty_decimals
        for depth, conns in depths.items():
            old = self._views.get((sym, depth))
            new_b, new_a = bids_all[:depth], asks_all[:depth]
            self._views[sym, depth] = (new_b, new_a)
            if old is None:
                continue
            bids_json, n_b = kraken_side_update(old[0], bids_all, depth, pd, qd)
            asks_json, n_a = kraken_side_update(old[1], asks_all, depth, pd, qd)
            if not n_b and not n_a:
                continue
            ck = _checksum(new_b, new_a)
            head = '{"channel":"book","type":"update","data":[{"symbol":"%s","bids":[%s],"asks":[%s],"checksum":' % (
                kraken_symbol(sym), bids_json, asks_json)
            good = _stamped_at_send(head + str(ck))
            n = n_b + n_a
            for c in conns:
                if c.pending["gap"] > 0:
                    c.pending["gap"] -= 1
                    c.dropped["book"] += 1
                    continue
                if c.pending["bad_checksum"] > 0:
                    c.pending["bad_checksum"] -= 1
                    c.enqueue("book", _stamped_at_send(head + str(ck ^ 0x5A5A5A5A)), n)
                    c.last_seq[sym] = ck ^ 0x5A5A5A5A
                    continue
                c.enqueue("book", good, n)
                c.last_seq[sym] = ck

    def heartbeat(self, conn, now):
        subscribed = conn.subs.get("book") or conn.subs.get("ticker") or conn.subs.get("trade") or conn.subs.get("instrument")
        if subscribed and now - conn.last_send >= self.heartbeat_interval * 0.9:
            conn.enqueue("heartbeat", '{"channel":"heartbeat"}', ctrl=True)

    # ------------------------------------------------------------- faults
    def malformed_payload(self):
        return '{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[{"price":6'

    async def inject_protocol(self, fault, conns, **kw):
        if fault in ("gap", "bad_checksum"):
            count = int(kw.get("count", 1))
            for c in conns:
                c.pending[fault] += count
            return {"connections": len(conns), "count": count}
        raise ValueError(f"fault {fault!r} is not supported by the kraken simulator")
