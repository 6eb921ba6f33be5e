"""Binance spot market-data simulator: websocket streams and REST.

Websocket (``ws_url`` is the base ``ws://127.0.0.1:PORT``, as
``wss://stream.binance.com:9443`` is live):

- raw streams ``/ws/<name>`` (several as ``/ws/<a>/<b>``), combined streams
  ``/stream?streams=<a>/<b>`` wrapping each payload as
  ``{"stream": <name>, "data": <payload>}``; live ``SUBSCRIBE`` /
  ``UNSUBSCRIBE`` / ``LIST_SUBSCRIPTIONS`` requests on either path;
  ``timeUnit=MICROSECOND`` switches event times to microseconds.
- streams ``<symbol>@bookTicker`` (no event time; ``u`` is the book update
  id), ``@trade``, ``@aggTrade`` (``m`` true when the buyer is the maker),
  diff depth ``@depth`` (1000 ms) and ``@depth@100ms`` (``U``/``u`` first and
  final update id, consistent with the REST snapshot's ``lastUpdateId``),
  partial depth ``@depth5|10|20[@100ms]``.
- websocket ping frames every ``ping_interval`` seconds (20 s live), sent by
  the simulator clock, so a stall with ``heartbeats=False`` silences them;
  ``{"e":"serverShutdown","E":...}`` on demand (combined streams:
  ``{"stream":"!serverShutdown","data":{...}}``), then the connection closes.

REST (``rest_url`` is ``http://127.0.0.1:PORT``): ``GET /api/v3/depth``,
``/api/v3/exchangeInfo``, ``/api/v3/ticker/bookTicker``, ``/api/v3/ping``,
``/api/v3/time``; errors as Binance sends them (``{"code":-1121,"msg":...}``,
429 with ``Retry-After``).

Numbers are strings with 8 decimals, as Binance prints them.
"""
from __future__ import annotations

import asyncio
import json
import math
import time
import urllib.parse

from hftsig._ext._simformat import accumulate, binance_levels, format_number
from hftsig.simulator._wsbase import WsExchangeServer
from hftsig.simulator.market import BookUpdate

__all__ = ["BinanceServer", "binance_symbol"]


def binance_symbol(symbol):
    """``"BTC-USDT"`` -> ``"BTCUSDT"``."""
    return symbol.replace("-", "")


def _s8(n, decimals):
    # Binance prints every price and quantity with 8 decimals.
    return format_number(n, decimals, "eight")


class BinanceServer(WsExchangeServer):
    name = "binance"
    #: what SimulatedExchanges.inject may do to this venue
    FAULTS = ("disconnect", "malformed", "gap", "stall", "shutdown", "http_429", "http_418",
              "http_500", "http_malformed")
    WS_PATH = ""
    REST_PATH = ""

    @classmethod
    def from_settings(cls, model, settings):
        """The server SimulatedExchanges runs, from its ``settings`` (a dict)."""
        return cls(model, ping_interval=settings["ping_interval"],
                   heartbeat_interval=settings["heartbeat_interval"],
                   max_queue=settings["max_queue"])

    def __init__(self, model, *, ping_interval=20.0, **kw):
        super().__init__(model, **kw)
        self.ping_interval = ping_interval
        self.venue = "binance"
        self.by_stream_symbol = {binance_symbol(s).lower(): s for s in model.symbols}
        self.by_exchange_symbol = {binance_symbol(s): s for s in model.symbols}
        self._acc = {100: {}, 1000: {}}  # interval -> symbol -> [U, u, {level_key(side, price): qty}]
        self._segment = {}  # symbol -> [U, u, [changes, ...]] not yet folded into _acc
        self._last_flush = {100: time.monotonic(), 1000: time.monotonic()}
        self._symbol_order = list(model.symbols)
        # interval -> [next symbol index, monotonic time of the last slot]
        self._slot = {100: [0, time.monotonic()], 1000: [0, time.monotonic()]}
        self._last_top = {}

    # ------------------------------------------------------------ streams
    def accept_path(self, path):
        u = urllib.parse.urlsplit(path)
        if u.path == "/stream" or u.path == "/ws" or u.path.startswith("/ws/"):
            return True
        return (404, "Not Found\n")

    async def on_open(self, conn):
        u = urllib.parse.urlsplit(conn.path)
        q = urllib.parse.parse_qs(u.query)
        conn.state["combined"] = u.path == "/stream"
        conn.state["us"] = q.get("timeUnit", [""])[0].upper() in ("MICROSECOND", "MICROSECONDS")
        streams = set()
        if u.path == "/stream":
            for part in q.get("streams", [""])[0].split("/"):
                if part:
                    streams.add(part)
        elif u.path.startswith("/ws/"):
            for part in u.path[4:].split("/"):
                if part:
                    streams.add(part)
        conn.subs["streams"] = streams

    async def on_message(self, conn, msg):
        req = json.loads(msg)
        if not isinstance(req, dict) or "method" not in req:
            raise ValueError("not a request")
        method = req["method"]
        conn.received[method] += 1
        rid = req.get("id")
        streams = conn.subs["streams"]
        if method == "SUBSCRIBE":
            params = req.get("params") or []
            if not isinstance(params, list) or not all(isinstance(p, str) for p in params):
                raise ValueError("params")
            streams.update(params)
            result = "null"
        elif method == "UNSUBSCRIBE":
            for p in req.get("params") or []:
                streams.discard(p)
            result = "null"
        elif method == "LIST_SUBSCRIPTIONS":
            result = json.dumps(sorted(streams), separators=(",", ":"))
        else:
            raise ValueError("unknown method")
        conn.enqueue("result", '{"result":%s,"id":%s}' % (result, json.dumps(rid)), ctrl=True)

    async def on_bad_request(self, conn, msg, exc):
        rid = None
        try:
            rid = json.loads(msg).get("id")
        except Exception:
            pass
        body = {"error": {"code": 2, "msg": "Invalid request: request ID must be an unsigned integer" if rid is None else "Invalid request"}}
        if rid is not None:
            body["id"] = rid
        conn.enqueue("error", json.dumps(body, separators=(",", ":")), ctrl=True)

    def _subscribers(self, stream):
        return [c for c in self.conns if stream in c.subs.get("streams", ())]

    def _send_stream(self, stream, payload, mtype, items=0, *, seq=None):
        combined = None
        for c in self.conns:
            if stream not in c.subs.get("streams", ()):
                continue
            if mtype == "depthUpdate" and c.pending["gap"] > 0:
                c.pending["gap"] -= 1
                c.dropped[mtype] += 1
                continue
            if c.state.get("us") and mtype in ("trade", "aggTrade", "depthUpdate"):
                p = payload(True)
            else:
                p = payload(False)
            if c.state["combined"]:
                if combined is None or c.state.get("us"):
                    combined = '{"stream":"%s","data":%s}' % (stream, p)
                c.enqueue(mtype, combined, items)
                if c.state.get("us"):
                    combined = None
            else:
                c.enqueue(mtype, p, items)
            if seq is not None:
                c.last_seq[stream] = seq

    def on_events(self, events):
        m = self.model
        seg = self._segment
        for ev in events:
            if ev.venue != self.venue:
                continue
            sym = ev.symbol
            xs = binance_symbol(sym)
            low = xs.lower()
            spec = m.specs[self.venue, sym]
            if isinstance(ev, BookUpdate):
                # Diff-depth changes are folded into the 100 ms and 1000 ms
                # batches only when one is due (_fold): once, not per event.
                sg = seg.get(sym)
                if sg is None:
                    seg[sym] = [ev.first_id, ev.last_id, [ev.changes]]
                else:
                    sg[1] = ev.last_id
                    sg[2].append(ev.changes)
                bid, ask, uid = m.top_ticks(self.venue, sym)
                top = (bid, ask)
                if self._last_top.get(sym) != top:
                    self._last_top[sym] = top
                    body = '{"u":%d,"s":"%s","b":"%s","B":"%s","a":"%s","A":"%s"}' % (
                        uid, xs,
                        _s8(bid[0], spec.price_decimals), _s8(bid[1], spec.qty_decimals),
                        _s8(ask[0], spec.price_decimals), _s8(ask[1], spec.qty_decimals),
                    )
                    self._send_stream(low + "@bookTicker", lambda us, b=body: b, "bookTicker", 1, seq=uid)
            else:
                ts = ev.ts_ns
                p = _s8(ev.price_ticks, spec.price_decimals)
                q = _s8(ev.qty_lots, spec.qty_decimals)
                maker = "true" if ev.side < 0 else "false"
                tid = ev.trade_id

                def trade(us, ts=ts, p=p, q=q, maker=maker, tid=tid):
                    t = ts // 1000 if us else ts // 1_000_000
                    return '{"e":"trade","E":%d,"s":"%s","t":%d,"p":"%s","q":"%s","T":%d,"m":%s,"M":true}' % (
                        t, xs, tid, p, q, t, maker)

                def agg(us, ts=ts, p=p, q=q, maker=maker, tid=tid):
                    t = ts // 1000 if us else ts // 1_000_000
                    return '{"e":"aggTrade","E":%d,"s":"%s","a":%d,"p":"%s","q":"%s","f":%d,"l":%d,"T":%d,"m":%s,"M":true}' % (
                        t, xs, tid, p, q, tid, tid, t, maker)

                self._send_stream(low + "@trade", trade, "trade", 1, seq=tid)
                self._send_stream(low + "@aggTrade", agg, "aggTrade", 1, seq=tid)

    def _fold(self, only=None):
        """Fold the pending book changes (of every symbol, or of ``only``) into
        every diff-depth batch.

        A symbol's flush folds just its own changes: each symbol's stream has
        its own phase, so folding every symbol at every flush did ten times the
        dictionary work, ~0.3 ms in one go every 10 ms at a 150 Hz model.
        """
        seg = self._segment
        if not seg:
            return
        if only is not None:
            one = seg.pop(only, None)
            items = [] if one is None else [(only, one)]
        else:
            items = list(seg.items())
            seg.clear()
        for sym, (first, last, batches) in items:
            folded = {}
            accumulate(folded, batches)
            for acc in self._acc.values():
                a = acc.get(sym)
                if a is None:
                    acc[sym] = [first, last, dict(folded)]
                else:
                    a[1] = last
                    a[2].update(folded)

    def batched(self):
        self._fold()
        subscribed = {st for c in self.conns for st in c.subs.get("streams", ())}
        return sum(len(a[2]) for interval, suffix in ((100, "@100ms"), (1000, ""))
                   for sym, a in self._acc[interval].items()
                   if binance_symbol(sym).lower() + "@depth" + suffix in subscribed)

    def on_timer(self, now):
        for interval, suffix in ((100, "@100ms"), (1000, "")):
            # Each symbol's diff-depth stream has its own phase within the
            # interval, as on the exchange: the symbols' updates do not all go
            # out in one burst every 100 ms.
            slot = self._slot[interval]
            n = len(self._symbol_order)
            while (now - slot[1]) * 1000.0 >= interval / n - 1e-6:
                slot[1] += interval / n / 1000.0
                i = slot[0]
                slot[0] = (i + 1) % n
                self._flush_depth(interval, suffix, self._symbol_order[i])
                if (now - slot[1]) * 1000.0 > interval:  # far behind (a stall): catch up at once
                    slot[1] = now
                    self._flush_depth(interval, suffix)
            if (now - self._last_flush[interval]) * 1000.0 < interval - 1:
                continue
            self._last_flush[interval] = now
            self._flush_partial(interval)

    def _flush_depth(self, interval, suffix, only=None):
        """Send the accumulated diff-depth events of every symbol (or of ``only``)."""
        self._fold(only)
        acc = self._acc[interval]
        if not acc or (only is not None and only not in acc):
            return
        now_ns = time.time_ns()
        m = self.model
        for sym, (first, last, ch) in ([(only, acc[only])] if only is not None else list(acc.items())):
            spec = m.specs[self.venue, sym]
            xs = binance_symbol(sym)
            stream = xs.lower() + "@depth" + suffix
            bids = sorted(((k >> 1, q) for k, q in ch.items() if k & 1), reverse=True)
            asks = sorted((k >> 1, q) for k, q in ch.items() if not k & 1)
            b = binance_levels(bids, spec.price_decimals, spec.qty_decimals)
            a = binance_levels(asks, spec.price_decimals, spec.qty_decimals)

            def body(us, b=b, a=a, first=first, last=last):
                t = now_ns // 1000 if us else now_ns // 1_000_000
                return '{"e":"depthUpdate","E":%d,"s":"%s","U":%d,"u":%d,"b":[%s],"a":[%s]}' % (t, xs, first, last, b, a)

            self._send_stream(stream, body, "depthUpdate", len(bids) + len(asks), seq=last)
            del acc[sym]

    def _flush_partial(self, interval):
        m = self.model
        wanted = {s for c in self.conns for s in c.subs.get("streams", ()) if "@depth" in s}
        for stream in wanted:
            parts = stream.split("@")
            if parts[1] not in ("depth5", "depth10", "depth20"):
                continue
            speed = 1000 if len(parts) == 2 else 100 if parts[2:] == ["100ms"] else None
            if speed != interval:
                continue
            sym = self.by_stream_symbol.get(parts[0])
            if sym is None:
                continue
            n = int(parts[1][5:])
            spec = m.specs[self.venue, sym]
            bids, asks, uid = m.book_ticks(self.venue, sym)
            b = binance_levels(bids[:n], spec.price_decimals, spec.qty_decimals)
            a = binance_levels(asks[:n], spec.price_decimals, spec.qty_decimals)
            body = '{"lastUpdateId":%d,"bids":[%s],"asks":[%s]}' % (uid, b, a)
            self._send_stream(stream, lambda us, body=body: body, "depthPartial", min(n, len(bids)) + min(n, len(asks)), seq=uid)

    # ------------------------------------------------------------- faults
    def malformed_payload(self):
        return '{"stream":"btcusdt@trade","data":{"e":"trade","E":17'

    async def inject_protocol(self, fault, conns, **kw):
        if fault == "gap":
            count = int(kw.get("count", 1))
            for c in conns:
                c.pending["gap"] += count
            return {"connections": len(conns), "count": count}
        if fault == "shutdown":
            close_after = float(kw.get("close_after", 0.3))
            body = '{"e":"serverShutdown","E":%d}' % (time.time_ns() // 1_000_000)
            for c in conns:
                # Combined streams wrap it like any event, under the stream name "!serverShutdown".
                msg = '{"stream":"!serverShutdown","data":%s}' % body if c.state.get("combined") else body
                c.enqueue("serverShutdown", msg, ctrl=True)

            async def _close(cs=conns):
                await asyncio.sleep(close_after)
                for c in cs:
                    await c.ws.close(1001, "server shutdown")

            asyncio.ensure_future(_close())
            return {"connections": len(conns), "close_after": close_after}
        raise ValueError(f"fault {fault!r} is not supported by the binance simulator")

    # --------------------------------------------------------------- REST
    def exchange_info(self, symbols=None):
        m = self.model
        syms = []
        for s in m.symbols:
            xs = binance_symbol(s)
            if symbols is not None and xs not in symbols:
                continue
            spec = m.specs[self.venue, s]
            syms.append({
                "symbol": xs,
                "status": "TRADING",
                "baseAsset": spec.base,
                "baseAssetPrecision": 8,
                "quoteAsset": spec.quote,
                "quotePrecision": 8,
                "quoteAssetPrecision": 8,
                "baseCommissionPrecision": 8,
                "quoteCommissionPrecision": 8,
                "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"],
                "icebergAllowed": True,
                "ocoAllowed": True,
                "otoAllowed": True,
                "quoteOrderQtyMarketAllowed": True,
                "allowTrailingStop": True,
                "cancelReplaceAllowed": True,
                "amendAllowed": True,
                "isSpotTradingAllowed": True,
                "isMarginTradingAllowed": False,
                "filters": [
                    {"filterType": "PRICE_FILTER", "minPrice": _s8(1, spec.price_decimals),
                     "maxPrice": "1000000.00000000", "tickSize": _s8(1, spec.price_decimals)},
                    {"filterType": "LOT_SIZE", "minQty": _s8(1, spec.qty_decimals),
                     "maxQty": "9000.00000000", "stepSize": _s8(1, spec.qty_decimals)},
                    {"filterType": "NOTIONAL", "minNotional": "5.00000000", "applyMinToMarket": True,
                     "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
                ],
                "permissions": [],
                "permissionSets": [["SPOT"]],
                "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
                "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
            })
        return {
            "timezone": "UTC",
            "serverTime": time.time_ns() // 1_000_000,
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
                {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": 100},
                {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 61000},
            ],
            "exchangeFilters": [],
            "symbols": syms,
        }

    def depth_snapshot(self, symbol, limit):
        """Body of ``GET /api/v3/depth`` for the canonical ``symbol``."""
        m = self.model
        spec = m.specs[self.venue, symbol]
        bids, asks, uid = m.book_ticks(self.venue, symbol)
        b = binance_levels(bids[:limit], spec.price_decimals, spec.qty_decimals)
        a = binance_levels(asks[:limit], spec.price_decimals, spec.qty_decimals)
        return '{"lastUpdateId":%d,"bids":[%s],"asks":[%s]}' % (uid, b, a)

    def book_ticker(self, symbol):
        m = self.model
        spec = m.specs[self.venue, symbol]
        bids, asks, _ = m.book_ticks(self.venue, symbol)
        return {
            "symbol": binance_symbol(symbol),
            "bidPrice": _s8(bids[0][0], spec.price_decimals),
            "bidQty": _s8(bids[0][1], spec.qty_decimals),
            "askPrice": _s8(asks[0][0], spec.price_decimals),
            "askQty": _s8(asks[0][1], spec.qty_decimals),
        }

    def handle_rest(self, path, query, headers):
        """Return ``(status, headers, body)`` for one REST request."""
        q = {k: v[-1] for k, v in urllib.parse.parse_qs(query).items()}
        weight_hdr = {"X-MBX-USED-WEIGHT-1M": "1"}
        if path == "/api/v3/ping":
            return 200, weight_hdr, "{}"
        if path == "/api/v3/time":
            return 200, weight_hdr, '{"serverTime":%d}' % (time.time_ns() // 1_000_000)
        if path == "/api/v3/exchangeInfo":
            wanted = None
            if "symbol" in q:
                wanted = {q["symbol"]}
            elif "symbols" in q:
                try:
                    wanted = set(json.loads(q["symbols"]))
                except ValueError:
                    return 400, {}, '{"code":-1100,"msg":"Illegal characters found in parameter \'symbols\'; legal range is \'^\\\\[(\\"[A-Z0-9-_.]{1,20}\\"(,\\"[A-Z0-9-_.]{1,20}\\"){0,}){0,1}\\\\]$\'."}'
            if wanted is not None and not wanted <= set(self.by_exchange_symbol):
                return 400, {}, '{"code":-1121,"msg":"Invalid symbol."}'
            return 200, {"X-MBX-USED-WEIGHT-1M": "20"}, json.dumps(self.exchange_info(wanted), separators=(",", ":"))
        if path == "/api/v3/depth":
            if "symbol" not in q:
                return 400, {}, '{"code":-1102,"msg":"Mandatory parameter \'symbol\' was not sent, was empty/null, or malformed."}'
            sym = self.by_exchange_symbol.get(q["symbol"])
            if sym is None:
                return 400, {}, '{"code":-1121,"msg":"Invalid symbol."}'
            try:
                limit = int(q.get("limit", 100))
            except ValueError:
                return 400, {}, '{"code":-1100,"msg":"Illegal characters found in parameter \'limit\'; legal range is \'^[0-9]{1,20}$\'."}'
            if limit < 1:
                return 400, {}, '{"code":-1102,"msg":"Mandatory parameter \'limit\' was not sent, was empty/null, or malformed."}'
            limit = min(limit, 5000)
            weight = 5 if limit <= 100 else 25 if limit <= 500 else 50 if limit <= 1000 else 250
            return 200, {"X-MBX-USED-WEIGHT-1M": str(weight)}, self.depth_snapshot(sym, limit)
        if path == "/api/v3/ticker/bookTicker":
            if "symbol" in q:
                sym = self.by_exchange_symbol.get(q["symbol"])
                if sym is None:
                    return 400, {}, '{"code":-1121,"msg":"Invalid symbol."}'
                return 200, weight_hdr, json.dumps(self.book_ticker(sym), separators=(",", ":"))
            return 200, weight_hdr, json.dumps([self.book_ticker(s) for s in self.model.symbols], separators=(",", ":"))
        return 404, {}, "<html><body><h2>404 Not found</h2></body></html>"

    def rest_error(self, status, retry_after=None):
        # Binance sends Retry-After in whole seconds: a fraction rounds up, never to "0"
        retry = str(math.ceil(retry_after if retry_after is not None else 1))
        if status == 429:
            hdr = {"Retry-After": retry}
            return 429, hdr, '{"code":-1003,"msg":"Too much request weight used; current limit is 6000 request weight per 1 MINUTE. Please use WebSocket Streams for live updates to avoid polling the API."}'
        if status == 418:
            hdr = {"Retry-After": retry}
            return 418, hdr, '{"code":-1003,"msg":"Way too much request weight used; IP banned until %d. Please use WebSocket Streams for live updates to avoid bans."}' % (time.time_ns() // 1_000_000 + 1000)
        return status, {}, '{"code":-1001,"msg":"Internal error; unable to process your request. Please try again."}'
