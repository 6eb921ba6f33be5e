"""Coinbase Advanced Trade market-data simulator (``ws_url`` is the full
``ws://127.0.0.1:PORT``, as ``wss://advanced-trade-ws.coinbase.com`` is live).

- One ``{"type":"subscribe","product_ids":[...],"channel":...}`` per channel
  (``heartbeats``, ``ticker``, ``level2``, ``market_trades``), within
  ``subscribe_timeout`` seconds of connecting or the server closes the
  connection; ``unsubscribe`` likewise; an unknown channel or product gives
  ``{"type":"error","message":...}``.
- Every frame is an envelope ``{"channel", "timestamp", "sequence_num",
  "events"}`` (a recorded live session has no ``client_id``, which the docs'
  examples show); ``sequence_num`` counts frames on the connection from 0,
  across channels.
- ``subscriptions`` after each (un)subscribe; ``level2`` arrives on channel
  ``l2_data`` as a ``snapshot`` then ``update`` events with ``side``
  ``bid``/``offer``, ``price_level`` and absolute ``new_quantity`` (``"0"``
  removes); ``ticker`` snapshot on subscribe and an update per trade;
  ``market_trades`` snapshot then trades batched every 250 ms, ``side`` the
  *maker's* side (``BUY``/``SELL``) as the venue sends it: a buyer lifting
  the ask prints ``SELL``; ``heartbeats`` every second with a per
  connection ``heartbeat_counter`` (a JSON number on the live venue, a string
  in the docs' example).
- Numbers are strings without trailing zeros; timestamps RFC 3339 with ns.
"""
from __future__ import annotations

import asyncio
import json
import time

from hftsig._ext._simformat import coinbase_updates, format_number
from hftsig.simulator._wsbase import WsExchangeServer, rfc3339_ns
from hftsig.simulator.market import BookUpdate

__all__ = ["CoinbaseServer"]

CHANNELS = ("heartbeats", "ticker", "level2", "market_trades")


def _str(n, decimals):
    # decimal string at the pair's precision, trailing zeros and a bare "." trimmed
    return format_number(n, decimals, "trim0")


def _strf(x, decimals=8):
    s = f"{x:.{decimals}f}"
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s or "0"


_SEND_TIME = "@send-time@"  # replaced by the send time before a frame goes out


class CoinbaseServer(WsExchangeServer):
    name = "coinbase"
    ping_interval = None
    #: what SimulatedExchanges.inject may do to this venue
    FAULTS = ("disconnect", "malformed", "gap", "stall")
    WS_PATH = ""

    @classmethod
    def from_settings(cls, model, settings):
        """The server SimulatedExchanges runs, from its ``settings`` (a dict)."""
        return cls(model, subscribe_timeout=settings["subscribe_timeout"],
                   heartbeat_interval=settings["heartbeat_interval"],
                   max_queue=settings["max_queue"])

    def __init__(self, model, *, subscribe_timeout=5.0, **kw):
        super().__init__(model, **kw)
        self.venue = "coinbase"
        self.subscribe_timeout = subscribe_timeout
        self.products = set(model.symbols)
        self._recent_trades = {s: [] for s in model.symbols}
        self._trade_batch = {}
        self._last_batch = time.monotonic()
        self._t0 = time.monotonic()

    def accept_path(self, path):
        if path.split("?")[0] in ("", "/"):
            return True
        return (404, "Not Found\n")

    # ---------------------------------------------------------- envelope
    def _envelope(self, channel, events_json, stamp_events=False):
        """A payload callable that fills ``sequence_num`` and ``timestamp`` at
        send time; with ``stamp_events`` the events' ``event_time`` (written
        as :data:`_SEND_TIME`) is the send time too: the simulated venue
        publishes a book change when it sends it."""

        def build(conn, channel=channel, events_json=events_json):
            if conn.pending["gap"] > 0 and channel == "l2_data":
                # A lost frame: its sequence number is used up, its data never arrives.
                conn.pending["gap"] -= 1
                conn.state["seq"] += 1
                conn.dropped[channel] += 1
                return None
            if conn.pending["skip_seq"] > 0:
                conn.pending["skip_seq"] -= 1
                conn.state["seq"] += 1
            seq = conn.state["seq"]
            conn.state["seq"] = seq + 1
            conn.last_seq["sequence_num"] = seq
            ts = rfc3339_ns(time.time_ns())
            if stamp_events:
                events_json = events_json.replace(_SEND_TIME, ts)
            return '{"channel":"%s","timestamp":"%s","sequence_num":%d,"events":%s}' % (
                channel, ts, seq, events_json)

        return build

    async def on_open(self, conn):
        conn.subs.update(heartbeats=False, ticker=set(), level2=set(), market_trades=set())
        conn.state.update(seq=0, hb_counter=0, subscribed_once=False)
        if self.subscribe_timeout:
            async def _deadline():
                await asyncio.sleep(self.subscribe_timeout)
                if not conn.state["subscribed_once"] and not conn.closed:
                    await conn.ws.close(1008, "subscribe timeout")

            asyncio.ensure_future(_deadline())

    def _error(self, conn, message):
        conn.enqueue("error", json.dumps({"type": "error", "message": message}, separators=(",", ":")), ctrl=True)

    async def on_bad_request(self, conn, msg, exc):
        self._error(conn, "Failed to subscribe")

    async def on_message(self, conn, msg):
        req = json.loads(msg)
        if not isinstance(req, dict):
            raise ValueError("not an object")
        typ = req.get("type")
        conn.received[str(typ)] += 1
        if typ not in ("subscribe", "unsubscribe"):
            self._error(conn, "Failed to subscribe")
            return
        channel = req.get("channel")
        if channel not in CHANNELS:
            self._error(conn, "Failed to subscribe" if channel is None else f"channel {channel} is not supported")
            return
        products = req.get("product_ids") or []
        if not isinstance(products, list) or (channel != "heartbeats" and not products):
            self._error(conn, "Failed to subscribe")
            return
        bad = [p for p in products if p not in self.products]
        if bad:
            self._error(conn, f"Failed to subscribe: unknown product {bad[0]}")
            return
        conn.state["subscribed_once"] = True
        if channel == "heartbeats":
            conn.subs["heartbeats"] = typ == "subscribe"
            self._send_subscriptions(conn)
            return
        target = conn.subs[channel]
        if typ == "unsubscribe":
            for p in products:
                target.discard(p)
            self._send_subscriptions(conn)
            return
        new = [p for p in products if p not in target]
        target.update(products)
        self._send_subscriptions(conn)
        if channel == "level2":
            for p in new:
                self._send_l2_snapshot(conn, p)
        elif channel == "ticker":
            if new:
                tick = ",".join(self._ticker_obj(p) for p in new)
                conn.enqueue("ticker", self._envelope("ticker", '[{"type":"snapshot","tickers":[%s]}]' % tick), len(new))
        elif channel == "market_trades":
            trades = [t for p in new for t in self._recent_trades[p][-50:]]
            conn.enqueue("market_trades", self._envelope(
                "market_trades", '[{"type":"snapshot","trades":[%s]}]' % ",".join(self._trade_obj(t) for t in trades)),
                len(trades))

    def _send_subscriptions(self, conn):
        subs = {}
        for ch in ("level2", "ticker", "market_trades"):
            if conn.subs[ch]:
                subs[ch] = sorted(conn.subs[ch])
        if conn.subs["heartbeats"]:
            # Coinbase lists the heartbeats channel by its own name, not by products.
            subs["heartbeats"] = ["heartbeats"]
        events = json.dumps([{"subscriptions": subs}], separators=(",", ":"))
        conn.enqueue("subscriptions", self._envelope("subscriptions", events))

    # ------------------------------------------------------------ payloads
    def _l2_updates(self, changes, spec, event_time):
        return coinbase_updates(changes, spec.price_decimals, spec.qty_decimals, event_time)

    def _send_l2_snapshot(self, conn, product):
        m = self.model
        spec = m.specs[self.venue, product]
        bids, asks, _ = m.book_ticks(self.venue, product)
        # snapshot levels carry the engine's time in µs on the live venue (the
        # docs' example shows the epoch)
        et = rfc3339_ns(time.time_ns())[:26] + "Z"
        changes = [(1, p, q) for p, q in bids] + [(-1, p, q) for p, q in asks]
        events = '[{"type":"snapshot","product_id":"%s","updates":[%s]}]' % (product, self._l2_updates(changes, spec, et))
        conn.enqueue("l2_data", self._envelope("l2_data", events), len(changes))

    def _ticker_obj(self, product):
        m = self.model
        spec = m.specs[self.venue, product]
        bid, ask, _ = m.top_ticks(self.venue, product)
        st = m.stats(self.venue, product)
        pd, qd = spec.price_decimals, spec.qty_decimals
        return (
            '{"type":"ticker","product_id":"%s","price":"%s","volume_24_h":"%s","low_24_h":"%s","high_24_h":"%s",'
            '"low_52_w":"%s","high_52_w":"%s","price_percent_chg_24_h":"%s","best_bid":"%s","best_bid_quantity":"%s",'
            '"best_ask":"%s","best_ask_quantity":"%s"}'
            % (product, _strf(st["last"], pd), _strf(st["volume"], qd), _strf(st["low"], pd), _strf(st["high"], pd),
               _strf(st["low"] * 0.5, pd), _strf(st["high"] * 1.5, pd),
               _strf(100.0 * (st["last"] - st["open"]) / st["open"], 14),
               _str(bid[0], pd), _str(bid[1], qd), _str(ask[0], pd), _str(ask[1], qd))
        )

    def _trade_obj(self, t):
        spec = self.model.specs[self.venue, t.symbol]
        return '{"trade_id":"%d","product_id":"%s","price":"%s","size":"%s","side":"%s","time":"%s"}' % (
            t.trade_id, t.symbol, _str(t.price_ticks, spec.price_decimals), _str(t.qty_lots, spec.qty_decimals),
            # Coinbase names the maker's side; t.side is the taker's
            "SELL" if t.side > 0 else "BUY", rfc3339_ns(t.ts_ns))

    # ------------------------------------------------------------- events
    def on_events(self, events):
        m = self.model
        for ev in events:
            if ev.venue != self.venue:
                continue
            sym = ev.symbol
            if isinstance(ev, BookUpdate):
                subs = [c for c in self.conns if sym in c.subs["level2"]]
                if subs:
                    spec = m.specs[self.venue, sym]
                    body = '[{"type":"update","product_id":"%s","updates":[%s]}]' % (
                        sym, self._l2_updates(ev.changes, spec, _SEND_TIME))
                    env = self._envelope("l2_data", body, stamp_events=True)
                    for c in subs:
                        c.enqueue("l2_data", env, len(ev.changes))
            else:
                rec = self._recent_trades[sym]
                rec.append(ev)
                if len(rec) > 100:
                    del rec[:50]
                self._trade_batch.setdefault(sym, []).append(ev)
                subs = [c for c in self.conns if sym in c.subs["ticker"]]
                if subs:
                    env = self._envelope("ticker", '[{"type":"update","tickers":[%s]}]' % self._ticker_obj(sym))
                    for c in subs:
                        c.enqueue("ticker", env, 1)

    def batched(self):
        return sum(len(t) for t in self._trade_batch.values())

    def on_timer(self, now):
        if now - self._last_batch < 0.25:
            return
        self._last_batch = now
        batch, self._trade_batch = self._trade_batch, {}
        for sym, trades in batch.items():
            subs = [c for c in self.conns if sym in c.subs["market_trades"]]
            if not subs:
                continue
            body = '[{"type":"update","trades":[%s]}]' % ",".join(self._trade_obj(t) for t in reversed(trades))
            env = self._envelope("market_trades", body)
            for c in subs:
                c.enqueue("market_trades", env, len(trades))

    def heartbeat(self, conn, now):
        if not conn.subs.get("heartbeats"):
            return
        conn.state["hb_counter"] += 1
        ns = time.time_ns()
        s, rem = divmod(ns, 1_000_000_000)
        current = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(s)) + f".{rem:09d} +0000 UTC m=+{now - self._t0:.9f}"
        events = '[{"current_time":"%s","heartbeat_counter":%d}]' % (current, conn.state["hb_counter"])
        conn.enqueue("heartbeats", self._envelope("heartbeats", events), ctrl=True)

    # ------------------------------------------------------------- faults
    def malformed_payload(self):
        return '{"channel":"l2_data","timestamp":"2023-02-09T20:32:50.714964855Z","sequence_num":'

    async def inject_protocol(self, fault, conns, **kw):
        if fault == "gap":
            count = int(kw.get("count", 1))
            key = "gap" if kw.get("drop", True) else "skip_seq"
            for c in conns:
                c.pending[key] += count
            return {"connections": len(conns), "count": count, "drop": key == "gap"}
        raise ValueError(f"fault {fault!r} is not supported by the coinbase simulator")

