"""The exchange simulators, exercised with real clients (websocket-client, requests).

Their text kernels are tested in test_simformat.py, ``hftsig simulate`` in
tests/app/test_cli_simulate.py.
"""
import json
import math
import re
import socket
import threading
import time
import zlib
from datetime import datetime
from decimal import Decimal

import numpy as np
import pytest
import requests
import websocket

from hftsig.simulator import SimulatedExchanges

SYMS = ["BTC-USDT", "ETH-USDT", "ETH-BTC", "BTC-USD"]


@pytest.fixture
def sim():
    s = SimulatedExchanges(SYMS, seed=1, rate=40, depth=20, heartbeat_interval=0.25, trade_rate=20)
    s.start()
    yield s
    s.stop()


def recv_json(ws, timeout=2.0):
    ws.settimeout(timeout)
    return json.loads(ws.recv())


def recv_until(ws, pred, timeout=3.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ws.settimeout(max(0.01, deadline - time.monotonic()))
        msg = json.loads(ws.recv())
        if pred(msg):
            return msg
    raise AssertionError("expected message did not arrive")


def drain(ws, seconds):
    """Every frame (raw text) received within ``seconds``."""
    out = []
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return out
        ws.settimeout(left)
        try:
            out.append(ws.recv())
        except (websocket.WebSocketTimeoutException, websocket.WebSocketConnectionClosedException):
            return out


def read_until_seen(ws, preds, timeout=10.0, frames=None):
    """Receive (raw) frames until every predicate held for some parsed frame,
    or ``timeout`` passes; returns the frames.  Waits for what a check needs
    instead of hoping a fixed window holds it."""
    frames = [] if frames is None else frames
    left = [p for p in preds if not any(p(json.loads(f)) for f in frames)]
    deadline = time.monotonic() + timeout
    while left and time.monotonic() < deadline:
        ws.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            f = ws.recv()
        except (websocket.WebSocketTimeoutException, websocket.WebSocketConnectionClosedException):
            break
        frames.append(f)
        m = json.loads(f)
        left = [p for p in left if not p(m)]
    return frames


class CountingWebSocket(websocket.WebSocket):
    """A websocket-client connection counting the data frames it received."""

    frames = 0

    def recv(self):
        frame = super().recv()
        self.frames += 1
        return frame


def connect(url):
    return websocket.create_connection(url, timeout=2, class_=CountingWebSocket)


def catch_up(ws, sim, exchange, timeout=10.0, frozen=True):
    """Receive (raw) frames until ``ws`` (a :class:`CountingWebSocket`, the
    exchange's last connection) holds every frame the server counted as sent,
    with nothing queued or held for a batched stream (after ``sim.pause()``:
    everything that describes the frozen market).  ``frozen=False`` during a
    stall: held data stays queued, only what was sent counts.

    Synchronises on the simulator's counters instead of a fixed wait, so a
    loaded machine only makes it slower.  Returns the frames received here and
    the connection's counters at that moment, which count exactly the frames
    this client received (no frame was being written).
    """
    out = []
    deadline = time.monotonic() + timeout
    while True:
        info = sim.connections(exchange)[-1]
        if (ws.frames >= sum(info["sent"].values()) and not info["busy"]
                and (not frozen or not (info["queued"] or info["batched"]))):
            return out, info
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"got {ws.frames} frames, the server sent {info['sent']}")
        ws.settimeout(min(left, 0.2))
        try:
            out.append(ws.recv())
        except websocket.WebSocketTimeoutException:
            pass


# ---------------------------------------------------------------- Binance
def test_binance_combined_stream_shapes(sim):
    url = sim.connector_kwargs("binance")["ws_url"]
    streams = "btcusdt@bookTicker/btcusdt@depth@100ms/btcusdt@trade/btcusdt@aggTrade/btcusdt@depth5@100ms"
    ws = websocket.create_connection(url + "/stream?streams=" + streams, timeout=2)
    seen = {}
    deadline = time.monotonic() + 3
    while len(seen) < 5 and time.monotonic() < deadline:
        msg = recv_json(ws)
        assert set(msg) == {"stream", "data"}
        seen[msg["stream"]] = msg["data"]
    ws.close()
    bt = seen["btcusdt@bookTicker"]
    assert list(bt) == ["u", "s", "b", "B", "a", "A"]
    assert bt["s"] == "BTCUSDT" and isinstance(bt["u"], int)
    assert all(isinstance(bt[k], str) and len(bt[k].split(".")[1]) == 8 for k in "bBaA")
    assert float(bt["b"]) < float(bt["a"])
    d = seen["btcusdt@depth@100ms"]
    assert list(d) == ["e", "E", "s", "U", "u", "b", "a"] and d["e"] == "depthUpdate"
    assert d["U"] <= d["u"] and all(isinstance(p, str) and isinstance(q, str) for p, q in d["b"] + d["a"])
    t = seen["btcusdt@trade"]
    assert list(t) == ["e", "E", "s", "t", "p", "q", "T", "m", "M"] and t["e"] == "trade"
    assert isinstance(t["m"], bool) and isinstance(t["E"], int) and t["E"] > 1.6e12
    a = seen["btcusdt@aggTrade"]
    assert list(a) == ["e", "E", "s", "a", "p", "q", "f", "l", "T", "m", "M"]
    p5 = seen["btcusdt@depth5@100ms"]
    assert list(p5) == ["lastUpdateId", "bids", "asks"] and len(p5["bids"]) == len(p5["asks"]) == 5


def test_binance_counts_sent_equal_received(sim):
    url = sim.connector_kwargs("binance")["ws_url"]
    ws = connect(url + "/stream?streams=ethbtc@bookTicker/ethbtc@trade/ethbtc@depth@100ms")
    frames = drain(ws, 0.6)
    sim.pause()
    more, conn = catch_up(ws, sim, "binance")
    frames += more
    ws.close()
    got = {}
    for f in frames:
        d = json.loads(f)["data"]
        kind = d.get("e", "bookTicker")
        got[kind] = got.get(kind, 0) + 1
    assert conn["sent"] == got
    assert conn["last_seq"]["ethbtc@depth@100ms"] == max(
        json.loads(f)["data"].get("u", 0) for f in frames if "depth" in f)


def test_binance_raw_stream_and_live_subscribe(sim):
    url = sim.connector_kwargs("binance")["ws_url"]
    ws = websocket.create_connection(url + "/ws/ethusdt@bookTicker", timeout=2)
    msg = recv_json(ws)
    assert msg["s"] == "ETHUSDT" and "stream" not in msg
    ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["ethbtc@trade"], "id": 7}))
    assert recv_until(ws, lambda m: "id" in m) == {"result": None, "id": 7}
    ws.send(json.dumps({"method": "LIST_SUBSCRIPTIONS", "id": 8}))
    assert recv_until(ws, lambda m: "id" in m) == {"result": ["ethbtc@trade", "ethusdt@bookTicker"], "id": 8}
    assert recv_until(ws, lambda m: m.get("e") == "trade")["s"] == "ETHBTC"
    ws.close()
    with pytest.raises(websocket.WebSocketBadStatusException):
        websocket.create_connection(url + "/nope", timeout=2)


def _apply(book, levels):
    for p, q in levels:
        if Decimal(q) == 0:
            book.pop(Decimal(p), None)
        else:
            book[Decimal(p)] = Decimal(q)


def test_binance_rest_snapshot_and_diff_events_rebuild_the_book(sim):
    kw = sim.connector_kwargs("binance")
    ws = connect(kw["ws_url"] + "/stream?streams=btcusdt@depth@100ms")
    buffered = [recv_json(ws)["data"]]  # first event buffered before the snapshot, as documented
    snap = requests.get(kw["rest_url"] + "/api/v3/depth", params={"symbol": "BTCUSDT", "limit": 1000}, timeout=2).json()
    assert set(snap) == {"lastUpdateId", "bids", "asks"}
    assert snap["lastUpdateId"] >= buffered[0]["U"]
    bids, asks = {}, {}
    _apply(bids, snap["bids"])
    _apply(asks, snap["asks"])
    local = snap["lastUpdateId"]
    applied = 0
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        buffered.append(recv_json(ws)["data"])
    sim.pause()
    buffered.extend(json.loads(f)["data"] for f in catch_up(ws, sim, "binance")[0])
    for ev in buffered:
        if ev["u"] <= local:
            continue
        assert ev["U"] <= local + 1, "update ids must be contiguous"
        _apply(bids, ev["b"])
        _apply(asks, ev["a"])
        local = ev["u"]
        applied += 1
    ws.close()
    assert applied >= 5
    truth = sim.book("binance", "BTC-USDT")
    assert truth["update_id"] == local
    assert [(float(p), float(q)) for p, q in sorted(bids.items(), reverse=True)] == truth["bids"]
    assert [(float(p), float(q)) for p, q in sorted(asks.items())] == truth["asks"]


def test_binance_diff_streams_of_several_symbols_and_speeds_each_rebuild_their_book(sim):
    """Each symbol's diff-depth stream folds and flushes on its own phase (100 ms and
    1000 ms, two symbols, one connection): snapshot + contiguous diffs of every
    stream rebuild that symbol's book exactly."""
    kw = sim.connector_kwargs("binance")
    streams = ["btcusdt@depth@100ms", "ethusdt@depth@100ms", "btcusdt@depth", "ethbtc@depth"]
    ws = connect(kw["ws_url"] + "/stream?streams=" + "/".join(streams))
    events = {st: [] for st in streams}
    deadline = time.monotonic() + 2.5  # two 1000 ms flushes of every symbol
    while time.monotonic() < deadline or not all(events.values()):
        assert time.monotonic() < deadline + 5, {k: len(v) for k, v in events.items()}
        msg = recv_json(ws)
        events[msg["stream"]].append(msg["data"])
        if time.monotonic() < deadline and len(events[msg["stream"]]) == 1:
            # the snapshot after the stream's first event, as the guide says
            sym = msg["stream"].split("@")[0].upper()
            events[msg["stream"]].insert(0, requests.get(
                kw["rest_url"] + "/api/v3/depth", params={"symbol": sym, "limit": 1000},
                timeout=2).json())
    sim.pause()
    for f in catch_up(ws, sim, "binance")[0]:
        msg = json.loads(f)
        events[msg["stream"]].append(msg["data"])
    ws.close()
    names = {"btcusdt": "BTC-USDT", "ethusdt": "ETH-USDT", "ethbtc": "ETH-BTC"}
    for st, evs in events.items():
        snap, diffs = evs[0], evs[1:]
        bids, asks = {}, {}
        _apply(bids, snap["bids"])
        _apply(asks, snap["asks"])
        local, applied = snap["lastUpdateId"], 0
        assert diffs[0]["U"] <= local + 1, st
        for ev in diffs:
            if ev["u"] <= local:
                continue
            assert ev["U"] <= local + 1, f"{st}: update ids must be contiguous"
            _apply(bids, ev["b"])
            _apply(asks, ev["a"])
            local = ev["u"]
            applied += 1
        assert applied >= (1 if st.endswith("@depth") else 5), st
        truth = sim.book("binance", names[st.split("@")[0]])
        assert truth["update_id"] == local, st
        assert [(float(p), float(q)) for p, q in sorted(bids.items(), reverse=True)] == truth["bids"], st
        assert [(float(p), float(q)) for p, q in sorted(asks.items())] == truth["asks"], st


def test_binance_exchange_info_and_rest_errors(sim):
    rest = sim.connector_kwargs("binance")["rest_url"]
    info = requests.get(rest + "/api/v3/exchangeInfo", timeout=2).json()
    assert {s["symbol"] for s in info["symbols"]} == {"BTCUSDT", "ETHUSDT", "ETHBTC", "BTCUSD"}
    eb = next(s for s in info["symbols"] if s["symbol"] == "ETHBTC")
    assert (eb["baseAsset"], eb["quoteAsset"], eb["status"]) == ("ETH", "BTC", "TRADING")
    pf = next(f for f in eb["filters"] if f["filterType"] == "PRICE_FILTER")
    assert float(pf["tickSize"]) == sim.model.spec("binance", "ETH-BTC").tick
    r = requests.get(rest + "/api/v3/depth", params={"symbol": "NOPE"}, timeout=2)
    assert r.status_code == 400 and r.json() == {"code": -1121, "msg": "Invalid symbol."}
    rec = sim.inject("binance", "http_429", count=2, retry_after=3)
    assert rec["fault"] == "http_429" and rec["time_ns"] > 0 and sim.faults[-1] is rec
    for _ in range(2):
        r = requests.get(rest + "/api/v3/depth", params={"symbol": "BTCUSDT"}, timeout=2)
        assert r.status_code == 429 and r.headers["Retry-After"] == "3" and r.json()["code"] == -1003
    assert requests.get(rest + "/api/v3/depth", params={"symbol": "BTCUSDT"}, timeout=2).status_code == 200
    # Binance sends whole seconds: a fraction rounds up (never "0", which means "retry now")
    sim.inject("binance", "http_429", retry_after=0.5)
    sim.inject("binance", "http_418", retry_after=2.01)
    r = requests.get(rest + "/api/v3/depth", params={"symbol": "BTCUSDT"}, timeout=2)
    assert r.status_code == 429 and r.headers["Retry-After"] == "1"
    r = requests.get(rest + "/api/v3/depth", params={"symbol": "BTCUSDT"}, timeout=2)
    assert r.status_code == 418 and r.headers["Retry-After"] == "3"
    sim.inject("binance", "http_500")
    assert requests.get(rest + "/api/v3/depth", params={"symbol": "BTCUSDT"}, timeout=2).status_code == 500
    sim.inject("binance", "http_malformed")
    with pytest.raises(ValueError):
        requests.get(rest + "/api/v3/depth", params={"symbol": "BTCUSDT"}, timeout=2).json()
    assert sim.rest_stats("binance")["responses"][429] == 3


def test_binance_gap_fault_skips_update_ids(sim):
    url = sim.connector_kwargs("binance")["ws_url"]
    ws = websocket.create_connection(url + "/ws/btcusdt@depth@100ms", timeout=2)
    first = recv_json(ws)
    sim.inject("binance", "gap")
    prev = first
    jumped = False
    deadline = time.monotonic() + 10.0
    while not jumped and time.monotonic() < deadline:
        ev = recv_json(ws, timeout=max(0.01, deadline - time.monotonic()))
        if ev["U"] > prev["u"] + 1:
            jumped = True
        prev = ev
    ws.close()
    assert jumped
    conn = sim.connections("binance")[-1]
    assert conn["dropped"] == {"depthUpdate": 1}


def test_binance_server_shutdown_then_close(sim):
    url = sim.connector_kwargs("binance")["ws_url"]
    ws = websocket.create_connection(url + "/stream?streams=btcusdt@bookTicker", timeout=2)
    recv_json(ws)
    sim.inject("binance", "shutdown", close_after=0.2)
    msg = recv_until(ws, lambda m: m.get("stream") == "!serverShutdown")
    assert set(msg["data"]) == {"e", "E"} and msg["data"]["e"] == "serverShutdown"
    deadline = time.monotonic() + 2
    code = None
    while code is None and time.monotonic() < deadline:
        ws.settimeout(2)
        op, data = ws.recv_data(control_frame=True)
        if op == websocket.ABNF.OPCODE_CLOSE:
            code = int.from_bytes(data[:2], "big")
    ws.close()
    assert code == 1001


def test_binance_pings():
    with SimulatedExchanges(["BTC-USDT"], exchanges=("binance",), ping_interval=0.2) as sim:
        pings = []
        ws = websocket.WebSocket()
        ws.connect(sim.connector_kwargs("binance")["ws_url"] + "/ws/btcusdt@trade", timeout=2)
        deadline = time.monotonic() + 0.8
        while time.monotonic() < deadline:
            ws.settimeout(0.5)
            try:
                op, data = ws.recv_data(control_frame=True)
            except websocket.WebSocketTimeoutException:
                continue
            if op == websocket.ABNF.OPCODE_PING:
                pings.append(data)
                ws.pong(data)
        assert len(pings) >= 2
        # a stall without heartbeats silences the pings too (they come from the
        # simulator, not from a websocket keepalive it cannot pause)
        sim.inject("binance", "stall", seconds=10.0, heartbeats=False)
        sent = sim.connections("binance")[-1]["pings"]
        deadline = time.monotonic() + 10.0
        while len(pings) < sent and time.monotonic() < deadline:  # those already on the wire
            ws.settimeout(max(0.01, deadline - time.monotonic()))
            op, data = ws.recv_data(control_frame=True)
            if op == websocket.ABNF.OPCODE_PING:
                pings.append(data)
        assert len(pings) == sent
        silent = []  # any frame at all, control frames included
        deadline = time.monotonic() + 0.6
        while time.monotonic() < deadline:
            ws.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                silent.append(ws.recv_data(control_frame=True))
            except websocket.WebSocketTimeoutException:
                break
        ws.close()
        assert silent == [] and sim.connections("binance")[-1]["pings"] == sent


# ----------------------------------------------------------------- Kraken
def _kraken_ck(bids, asks, pp, qp):
    def f(x, d):
        return f"{x:.{d}f}".replace(".", "").lstrip("0")

    s = "".join(f(p, pp) + f(q, qp) for p, q in sorted(asks.items())[:10])
    s += "".join(f(p, pp) + f(q, qp) for p, q in sorted(bids.items(), reverse=True)[:10])
    return zlib.crc32(s.encode())


def _kraken_apply(book, levels, depth, reverse):
    for lv in levels:
        if lv["qty"] == 0:
            book.pop(lv["price"], None)
        else:
            book[lv["price"]] = lv["qty"]
    for p in sorted(book, reverse=reverse)[depth:]:
        del book[p]


def _kraken_connect(sim):
    ws = connect(sim.connector_kwargs("kraken")["ws_url"])
    status = recv_json(ws)
    assert status["channel"] == "status" and status["type"] == "update"
    assert status["data"][0]["system"] == "online" and status["data"][0]["api_version"] == "v2"
    ws.send(json.dumps({"method": "subscribe", "params": {"channel": "instrument"}, "req_id": 1}))
    recv_until(ws, lambda m: m.get("method") == "subscribe")
    inst = recv_until(ws, lambda m: m.get("channel") == "instrument")
    prec = {p["symbol"]: (p["price_precision"], p["qty_precision"]) for p in inst["data"]["pairs"]}
    return ws, prec


def test_kraken_book_checksums_and_truth(sim):
    ws, prec = _kraken_connect(sim)
    assert prec["BTC/USDT"] == (1, 8)
    ws.send(json.dumps({"method": "subscribe",
                        "params": {"channel": "book", "symbol": ["BTC/USDT"], "depth": 10},
                        "req_id": 5}))
    ack = recv_until(ws, lambda m: m.get("method") == "subscribe")
    assert ack["success"] is True and ack["req_id"] == 5
    assert ack["result"] == {"channel": "book", "depth": 10, "snapshot": True, "symbol": "BTC/USDT"}
    snap = recv_until(ws, lambda m: m.get("channel") == "book")
    assert snap["type"] == "snapshot"
    d = snap["data"][0]
    bids = {lv["price"]: lv["qty"] for lv in d["bids"]}
    asks = {lv["price"]: lv["qty"] for lv in d["asks"]}
    pp, qp = prec["BTC/USDT"]
    assert _kraken_ck(bids, asks, pp, qp) == d["checksum"]
    updates = 0
    deadline = time.monotonic() + 1.0
    while time.monotonic() < deadline:
        m = recv_json(ws)
        if m.get("channel") != "book":
            continue
        d = m["data"][0]
        assert m["type"] == "update" and isinstance(d["timestamp"], str) and d["timestamp"].endswith("Z")
        _kraken_apply(bids, d["bids"], 10, True)
        _kraken_apply(asks, d["asks"], 10, False)
        assert _kraken_ck(bids, asks, pp, qp) == d["checksum"]
        updates += 1
    sim.pause()
    for f in catch_up(ws, sim, "kraken")[0]:
        m = json.loads(f)
        if m.get("channel") == "book":
            _kraken_apply(bids, m["data"][0]["bids"], 10, True)
            _kraken_apply(asks, m["data"][0]["asks"], 10, False)
    ws.close()
    assert updates >= 10
    truth = sim.book("kraken", "BTC-USDT", depth=10)
    assert sorted(bids.items(), reverse=True) == truth["bids"]
    assert sorted(asks.items()) == truth["asks"]


def test_kraken_bad_checksum_and_gap_faults(sim):
    ws, prec = _kraken_connect(sim)
    pp, qp = prec["ETH/BTC"]
    ws.send(json.dumps({"method": "subscribe", "params": {"channel": "book", "symbol": ["ETH/BTC"], "depth": 25}}))
    snap = recv_until(ws, lambda m: m.get("channel") == "book")["data"][0]
    bids = {lv["price"]: lv["qty"] for lv in snap["bids"]}
    asks = {lv["price"]: lv["qty"] for lv in snap["asks"]}
    assert len(bids) == sim.model.depth  # the whole book when it is shallower than the subscription

    def next_update_ok():
        m = recv_until(ws, lambda m: m.get("channel") == "book")["data"][0]
        _kraken_apply(bids, m["bids"], 25, True)
        _kraken_apply(asks, m["asks"], 25, False)
        return _kraken_ck(bids, asks, pp, qp) == m["checksum"]

    def quiesce():
        # Freeze the market and take in every frame sent so far, so the fault
        # hits the very next book update.
        sim.pause()
        for f in catch_up(ws, sim, "kraken")[0]:
            m = json.loads(f)
            if m.get("channel") == "book":
                _kraken_apply(bids, m["data"][0]["bids"], 25, True)
                _kraken_apply(asks, m["data"][0]["asks"], 25, False)
                assert _kraken_ck(bids, asks, pp, qp) == m["data"][0]["checksum"]

    assert next_update_ok()
    quiesce()
    sim.inject("kraken", "bad_checksum")
    sim.resume()
    # Exactly one frame lies, and only its checksum: the levels stay right, so
    # the next ones match again.
    results = [next_update_ok() for _ in range(8)]
    assert results.count(False) == 1 and results[0] is False and results[-1] is True
    quiesce()
    sim.inject("kraken", "gap")
    sim.resume()
    assert not all(next_update_ok() for _ in range(8))
    ws.close()
    c = sim.connections("kraken")[-1]
    assert c["dropped"] == {"book": 1}


def test_kraken_ticker_trade_ping_heartbeat_and_errors(sim):
    ws, _ = _kraken_connect(sim)
    # subscribed to the quiet instrument channel only: heartbeats keep the line alive
    assert recv_until(ws, lambda m: m.get("channel") == "heartbeat", timeout=1.0) == {"channel": "heartbeat"}
    ws.send(json.dumps({"method": "subscribe", "params": {
        "channel": "ticker", "symbol": ["ETH/USDT"], "event_trigger": "bbo"}}))
    ws.send(json.dumps({"method": "subscribe", "params": {"channel": "trade", "symbol": ["ETH/USDT"]}}))
    ws.send(json.dumps({"method": "subscribe", "params": {"channel": "ticker", "symbol": ["DOGE/USD"]}, "req_id": 9}))
    ws.send(json.dumps({"method": "ping", "req_id": 42}))
    got = {}
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and not {"ticker_snapshot", "error", "pong", "trade"} <= set(got):
        m = recv_json(ws)
        key = m.get("channel") or m.get("method")
        if key == "subscribe" and not m["success"]:
            key = "error"
        if key == "ticker" and m["type"] == "snapshot":
            key = "ticker_snapshot"
        if key == "trade" and not m["data"]:
            continue  # an empty snapshot when nothing traded yet
        got.setdefault(key, m)
    ws.close()
    t = got["ticker_snapshot"]["data"][0]
    assert list(t) == ["symbol", "bid", "bid_qty", "ask", "ask_qty", "last", "volume", "vwap", "low", "high",
                       "change", "change_pct", "timestamp"]
    assert all(isinstance(t[k], (int, float)) for k in list(t)[1:-1])
    err = got["error"]
    assert err["error"] == "Currency pair not supported DOGE/USD" and err["req_id"] == 9 and err["symbol"] == "DOGE/USD"
    assert got["pong"]["req_id"] == 42 and set(got["pong"]) == {"method", "req_id", "time_in", "time_out"}
    ws2, _ = _kraken_connect(sim)
    ws2.send(json.dumps({"method": "subscribe", "params": {"channel": "book", "symbol": ["ETH/BTC"]}, "req_id": 1}))
    recv_until(ws2, lambda m: m.get("channel") == "book")
    ws2.send(json.dumps({"method": "unsubscribe", "params": {"channel": "book", "symbol": ["ETH/BTC"]}, "req_id": 2}))
    ack = recv_until(ws2, lambda m: m.get("method") == "unsubscribe")
    assert ack["success"] and ack["result"]["symbol"] == "ETH/BTC"
    # the ack jumps the queue: book frames queued before the unsubscribe still come
    catch_up(ws2, sim, "kraken")
    late = [json.loads(f) for f in drain(ws2, 0.3)]
    assert all(m.get("channel") in ("heartbeat", None) for m in late)
    ws2.close()
    tr = got["trade"]["data"][0]
    assert list(tr) == ["symbol", "side", "price", "qty", "ord_type", "trade_id", "timestamp"]
    assert tr["side"] in ("buy", "sell") and tr["symbol"] == "ETH/USDT"


# --------------------------------------------------------------- Coinbase
def _coinbase(sim, channels, products=("BTC-USD",)):
    ws = connect(sim.connector_kwargs("coinbase")["ws_url"])
    for ch in channels:
        ws.send(json.dumps({"type": "subscribe", "product_ids": list(products), "channel": ch}))
    return ws


def _l2_apply(bids, asks, updates):
    for u in updates:
        book = bids if u["side"] == "bid" else asks
        assert u["side"] in ("bid", "offer")
        if Decimal(u["new_quantity"]) == 0:
            book.pop(Decimal(u["price_level"]), None)
        else:
            book[Decimal(u["price_level"])] = Decimal(u["new_quantity"])


def test_coinbase_level2_sequence_and_truth(sim):
    ws = _coinbase(sim, ["heartbeats", "level2", "ticker", "market_trades"])
    frames = [json.loads(f) for f in drain(ws, 1.2)]
    sim.pause()
    more, c = catch_up(ws, sim, "coinbase")
    frames += [json.loads(f) for f in more]
    ws.close()
    seqs = [f["sequence_num"] for f in frames]
    assert seqs == list(range(len(frames)))
    for f in frames:
        assert list(f) == ["channel", "timestamp", "sequence_num", "events"]
    chans = {f["channel"] for f in frames}
    assert {"subscriptions", "heartbeats", "l2_data", "ticker", "market_trades"} <= chans
    assert frames[-1]["channel"] in chans
    subs = [f for f in frames if f["channel"] == "subscriptions"][-1]["events"][0]["subscriptions"]
    assert subs["level2"] == ["BTC-USD"] and subs["ticker"] == ["BTC-USD"]
    bids, asks = {}, {}
    l2 = [f for f in frames if f["channel"] == "l2_data"]
    assert l2[0]["events"][0]["type"] == "snapshot"
    for f in l2:
        for ev in f["events"]:
            assert ev["product_id"] == "BTC-USD"
            _l2_apply(bids, asks, ev["updates"])
    truth = sim.book("coinbase", "BTC-USD")
    assert [(float(p), float(q)) for p, q in sorted(bids.items(), reverse=True)] == truth["bids"]
    assert [(float(p), float(q)) for p, q in sorted(asks.items())] == truth["asks"]
    hb = [f for f in frames if f["channel"] == "heartbeats"]
    counters = [f["events"][0]["heartbeat_counter"] for f in hb]
    assert all(type(n) is int for n in counters)
    assert counters == list(range(counters[0], counters[0] + len(counters)))
    tk = [f for f in frames if f["channel"] == "ticker"][0]["events"][0]["tickers"][0]
    assert tk["type"] == "ticker" and tk["product_id"] == "BTC-USD"
    assert all(isinstance(tk[k], str) for k in ("price", "best_bid", "best_ask", "best_bid_quantity"))
    trades = [t for f in frames if f["channel"] == "market_trades" for e in f["events"] for t in e["trades"]]
    assert trades and set(trades[0]) == {"trade_id", "product_id", "price", "size", "side", "time"}
    assert {t["side"] for t in trades} <= {"BUY", "SELL"}
    # count in == count out (c: the counters when the client had every frame sent)
    got = {}
    for f in frames:
        got[f["channel"]] = got.get(f["channel"], 0) + 1
    assert c["sent"] == got
    assert c["last_seq"]["sequence_num"] == seqs[-1]


def test_coinbase_gap_fault_and_errors(sim):
    ws = _coinbase(sim, ["level2"], ["ETH-USDT"])
    last = recv_until(ws, lambda m: m.get("channel") == "l2_data")
    c = sim.inject("coinbase", "gap")
    assert c["connections"] == 1
    # read until the server dropped a frame and a later l2_data frame arrived
    frames = [last]
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline and not (
            sim.connections("coinbase")[-1]["dropped"] and frames[-1]["sequence_num"] > last["sequence_num"] + 1):
        frames.append(recv_json(ws, timeout=max(0.01, deadline - time.monotonic())))
    seqs = [f["sequence_num"] for f in frames]
    assert any(b - a == 2 for a, b in zip(seqs, seqs[1:]))
    ws.send(json.dumps({"type": "subscribe", "product_ids": ["NOPE-USD"], "channel": "level2"}))
    err = recv_until(ws, lambda m: m.get("type") == "error")
    assert set(err) == {"type", "message"}
    ws.send(json.dumps({"type": "subscribe", "product_ids": ["BTC-USD"], "channel": "candles_nope"}))
    assert recv_until(ws, lambda m: m.get("type") == "error")["message"]
    ws.close()


def test_coinbase_closes_without_subscription():
    with SimulatedExchanges(["BTC-USD"], exchanges=("coinbase",), subscribe_timeout=0.3) as sim:
        ws = websocket.create_connection(sim.connector_kwargs("coinbase")["ws_url"], timeout=2)
        t0 = time.monotonic()
        with pytest.raises(websocket.WebSocketConnectionClosedException):
            while time.monotonic() - t0 < 2:
                ws.recv()
        assert time.monotonic() - t0 < 1.5


# ---------------------------------------------------------------- CoinGecko
def test_coingecko_simple_price_and_keys():
    with SimulatedExchanges(["BTC-USDT", "ETH-BTC"], exchanges=("coingecko",), api_key="k-demo") as sim:
        base = sim.connector_kwargs("coingecko")["rest_url"]
        assert base.endswith("/api/v3")
        params = {"ids": "bitcoin,ethereum,nope", "vs_currencies": "usd,btc", "include_last_updated_at": "true"}
        r = requests.get(base + "/simple/price", params=params, headers={"x-cg-demo-api-key": "k-demo"}, timeout=2)
        assert r.status_code == 200
        body = r.json()
        assert set(body) == {"bitcoin", "ethereum"}
        assert set(body["bitcoin"]) == {"usd", "btc", "last_updated_at"}
        assert isinstance(body["bitcoin"]["last_updated_at"], int)
        assert abs(body["bitcoin"]["last_updated_at"] - time.time()) < 5
        assert body["bitcoin"]["usd"] == pytest.approx(sim.model.usd_price("BTC"), rel=1e-3)
        assert body["ethereum"]["btc"] == pytest.approx(sim.model.mid("ETH-BTC"), rel=1e-3)
        r = requests.get(base + "/simple/price", params=params, timeout=2)
        assert r.status_code == 401 and r.json()["status"]["error_code"] == 10002
        r = requests.get(base + "/simple/price", params=params, headers={"x-cg-pro-api-key": "k-demo"}, timeout=2)
        assert r.status_code == 401 and r.json()["status"]["error_code"] == 10010
        r = requests.get(base + "/simple/price", params=params, headers={"x-cg-demo-api-key": "wrong"}, timeout=2)
        assert r.status_code == 401
        ok = {"x-cg-demo-api-key": "k-demo"}
        sim.inject("coingecko", "http_429")
        r = requests.get(base + "/simple/price", params=params, headers=ok, timeout=2)
        assert r.status_code == 429 and "Retry-After" not in r.headers and r.json()["status"]["error_code"] == 429
        sim.inject("coingecko", "http_500")
        assert requests.get(base + "/simple/price", params=params, headers=ok, timeout=2).status_code == 500
        assert requests.get(base + "/ping", headers=ok, timeout=2).json() == {"gecko_says": "(V3) To the Moon!"}
        assert [f["fault"] for f in sim.faults] == ["http_429", "http_500"]


# ------------------------------------------------------- generic faults
@pytest.mark.parametrize("exchange", ["binance", "kraken", "coinbase"])
def test_disconnect_and_malformed(sim, exchange):
    ws = _open_data_stream(sim, exchange)
    sim.inject(exchange, "malformed")
    with pytest.raises(ValueError):
        deadline = time.monotonic() + 2
        while time.monotonic() < deadline:
            ws.settimeout(2)
            json.loads(ws.recv())
    sim.inject(exchange, "disconnect")
    t0 = time.monotonic()
    with pytest.raises(websocket.WebSocketConnectionClosedException):
        while time.monotonic() - t0 < 2:
            ws.settimeout(2)
            ws.recv()
    assert [f["fault"] for f in sim.faults] == ["malformed", "disconnect"]
    assert sim.faults[1]["connections"] == 1
    assert sim.connections(exchange)[-1]["sent"]["malformed"] == 1


def _open_data_stream(sim, exchange):
    url = sim.connector_kwargs(exchange)["ws_url"]
    if exchange == "binance":
        ws = connect(url + "/ws/btcusdt@bookTicker")
    elif exchange == "kraken":
        ws = connect(url)
        ws.send(json.dumps({"method": "subscribe", "params": {"channel": "book", "symbol": ["BTC/USDT"]}}))
    else:
        ws = _coinbase(sim, ["heartbeats", "level2"], ["BTC-USDT"])
    recv_json(ws)
    return ws


@pytest.mark.parametrize("exchange", ["binance", "kraken", "coinbase"])
def test_stall_holds_data_keeps_heartbeats(sim, exchange):
    ws = _open_data_stream(sim, exchange)
    drain(ws, 0.15)
    stall_end = time.monotonic() + 1.5  # the server's stall ends a little later
    sim.inject(exchange, "stall", seconds=1.5)
    catch_up(ws, sim, exchange, frozen=False)  # frames already on the wire when the stall began
    during = [json.loads(f) for f in drain(ws, stall_end - time.monotonic() - 0.05)]

    def is_data(m):
        return m.get("channel") not in ("heartbeat", "heartbeats")

    after = []
    deadline = time.monotonic() + 10.0
    while len([m for m in after if is_data(m)]) <= 3 and time.monotonic() < deadline:
        after.append(recv_json(ws, timeout=max(0.01, deadline - time.monotonic())))
    ws.close()
    assert [m for m in during if is_data(m)] == []
    if exchange != "binance":  # Binance has no application heartbeat (ping frames instead)
        assert len(during) >= 1
    assert len([m for m in after if is_data(m)]) > 3
    if exchange == "coinbase":
        seqs = [m["sequence_num"] for m in during + after]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def test_stall_without_heartbeats(sim):
    ws = _open_data_stream(sim, "kraken")
    drain(ws, 0.1)
    sim.inject("kraken", "stall", seconds=10.0, heartbeats=False)
    sent = sim.connections("kraken")[-1]["sent"]
    catch_up(ws, sim, "kraken", frozen=False)  # frames already on the wire when the stall began
    assert drain(ws, 0.5) == []
    ws.close()
    assert sim.connections("kraken")[-1]["sent"] == sent


def test_inject_validates():
    with SimulatedExchanges(["BTC-USD"], exchanges=("kraken",)) as sim:
        with pytest.raises(ValueError, match="shutdown"):
            sim.inject("kraken", "shutdown")
        with pytest.raises(ValueError, match="binance"):
            sim.inject("binance", "disconnect")
    with pytest.raises(ValueError, match="exchanges"):
        SimulatedExchanges(["BTC-USD"], exchanges=("ftx",))


# ------------------------------------------------- mispricing, determinism
def test_mispricing_shows_in_binance_quotes(sim):
    ws = websocket.create_connection(sim.connector_kwargs("binance")["ws_url"] + "/ws/ethbtc@bookTicker", timeout=2)
    recv_json(ws)
    rec = sim.inject_mispricing("binance", "ETH-BTC", 30.0, 5.0)
    assert sim.mispricings[-1] is rec and rec["end_ns"] - rec["start_ns"] == 5_000_000_000
    shifted = []
    deadline = time.monotonic() + 4.0  # within the mispricing, until the shift shows
    while time.monotonic() < deadline and not (shifted and max(shifted) > 25):
        m = recv_json(ws, timeout=max(0.01, deadline - time.monotonic()))
        mid = (float(m["b"]) + float(m["a"])) / 2
        shifted.append((mid / sim.mid("ETH-BTC") - 1) * 1e4)
    ws.close()
    assert shifted and max(shifted) > 25


def test_same_seed_same_stream():
    def run():
        with SimulatedExchanges(["ETH-BTC"], exchanges=("binance",), seed=42, rate=50) as sim:
            time.sleep(0.05)
            sim.pause()  # returns once no step runs any more
            return sim.book("binance", "ETH-BTC"), sim.model.steps

    (b1, n1), (b2, n2) = run(), run()
    # both froze at some step; replay the model to the later one and compare
    from hftsig.simulator.market import MarketModel

    m1 = MarketModel(["ETH-BTC"], ("binance",), seed=42, rate=50)
    m2 = MarketModel(["ETH-BTC"], ("binance",), seed=42, rate=50)
    for _ in range(n1):
        m1.step()
    for _ in range(n2):
        m2.step()
    assert m1.book("binance", "ETH-BTC")["bids"] == b1["bids"]
    assert m2.book("binance", "ETH-BTC")["asks"] == b2["asks"]


# --------------------------------------------------------------- shutdown
def test_clean_quick_shutdown():
    before = set(threading.enumerate())
    sim = SimulatedExchanges(SYMS, seed=0)
    sim.start()
    ports = [sim.servers[e].port for e in ("binance", "kraken", "coinbase")] + [r.port for r in sim.rest.values()]
    ws = websocket.create_connection(sim.connector_kwargs("kraken")["ws_url"], timeout=2)
    recv_json(ws)
    requests.get(sim.connector_kwargs("coingecko")["rest_url"] + "/ping", timeout=2)
    t0 = time.monotonic()
    sim.stop()
    assert time.monotonic() - t0 < 1.2
    deadline = time.monotonic() + 10.0  # threads told to end may take a moment to be gone
    while not set(threading.enumerate()) <= before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert set(threading.enumerate()) <= before
    for p in ports:
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", p), timeout=0.5)
    try:
        ws.settimeout(1)
        assert ws.recv() == ""  # the close frame
    except (websocket.WebSocketConnectionClosedException, ConnectionError):
        pass


# ------------------------------------------- frames through hftsig.market.normalize
def _normalizer():
    return pytest.importorskip("hftsig.market.normalize", reason="needs the Cython normalizer built in place")


def _book_equals_truth(book, truth):
    import numpy as np

    bids = book.levels("bid")
    asks = book.levels("ask")
    np.testing.assert_array_equal(bids, np.array(truth["bids"]).reshape(-1, 2))
    np.testing.assert_array_equal(asks, np.array(truth["asks"]).reshape(-1, 2))


def test_binance_frames_normalize_and_rebuild_the_book(sim):
    norm = _normalizer()
    from hftsig.market.book import OrderBook
    from hftsig.market.ticks import KIND_BOOK_DELTA, KIND_QUOTE, KIND_TRADE

    kw = sim.connector_kwargs("binance")
    ws = connect(kw["ws_url"] + "/stream?streams=ethbtc@bookTicker/ethbtc@trade/ethbtc@aggTrade/ethbtc@depth@100ms")
    frames = [ws.recv()]
    body = requests.get(kw["rest_url"] + "/api/v3/depth", params={"symbol": "ETHBTC", "limit": 100}, timeout=2).text
    frames += drain(ws, 0.8)
    sim.pause()
    frames += catch_up(ws, sim, "binance")[0]
    ws.close()
    n = norm.Normalizer("binance")
    book = OrderBook("binance", "ETH-BTC")
    snap = n.parse(body, 1, symbol="ETH-BTC")  # REST bodies name no symbol
    book.apply(snap)
    local = json.loads(body)["lastUpdateId"]
    kinds = set()
    for f in frames:
        msg = json.loads(f)["data"]
        t = n.parse(f, 2)
        assert n.last_type == "data" and len(t) >= 1
        assert (t["symbol"] == b"ETH-BTC").all()
        kinds.add(int(t["kind"][0]))
        if msg.get("e") == "depthUpdate":
            assert (t["kind"] == KIND_BOOK_DELTA).all() and int(t["seq"][-1]) == msg["u"]
            if msg["u"] > local:
                assert msg["U"] <= local + 1
                book.apply(t)
                local = msg["u"]
        elif msg.get("e") == "trade":
            assert int(t["side"][0]) == (-1 if msg["m"] else 1) and float(t["price"][0]) == float(msg["p"])
        elif "u" in msg:
            assert int(t["kind"][0]) == KIND_QUOTE and float(t["bid_px"][0]) == float(msg["b"])
            assert int(t["seq"][0]) == msg["u"]
    assert {KIND_QUOTE, KIND_TRADE, KIND_BOOK_DELTA} <= kinds
    _book_equals_truth(book, sim.book("binance", "ETH-BTC", depth=100))


def test_kraken_frames_normalize_and_checksums_hold(sim):
    norm = _normalizer()
    from hftsig.market.book import OrderBook

    ws = connect(sim.connector_kwargs("kraken")["ws_url"])
    ws.send(json.dumps({"method": "subscribe", "params": {"channel": "instrument"}}))
    for ch in ("book", "ticker", "trade"):
        ws.send(json.dumps({"method": "subscribe", "params": {"channel": ch, "symbol": ["BTC/USDT", "ETH/BTC"]}}))
    frames = drain(ws, 0.8)
    sim.pause()
    frames += catch_up(ws, sim, "kraken")[0]
    ws.close()
    n = norm.Normalizer("kraken")
    books = {s: OrderBook("kraken", s, depth=10) for s in ("BTC-USDT", "ETH-BTC")}
    types = set()
    checked = 0
    for f in frames:
        t = n.parse(f, 1)
        types.add(n.last_type)
        assert n.last_type != "unknown", f
        msg = json.loads(f)
        if msg.get("channel") == "book":
            sym = msg["data"][0]["symbol"].replace("/", "-")
            books[sym].apply(t)
            pp, qp = n.precisions[sym]
            assert books[sym].kraken_checksum(pp, qp) == msg["data"][0]["checksum"] == books[sym].last_checksum
            checked += 1
    assert {"status", "subscribed", "data"} <= types and checked > 10
    for s, b in books.items():
        _book_equals_truth(b, sim.book("kraken", s, depth=10))


def test_coinbase_frames_normalize_and_rebuild_the_book(sim):
    norm = _normalizer()
    from hftsig.market.book import OrderBook

    ws = _coinbase(sim, ["heartbeats", "level2", "ticker", "market_trades"], ["BTC-USD", "ETH-USDT"])
    frames = drain(ws, 0.8)
    sim.pause()
    frames += catch_up(ws, sim, "coinbase")[0]
    ws.close()
    n = norm.Normalizer("coinbase")
    books = {s: OrderBook("coinbase", s) for s in ("BTC-USD", "ETH-USDT")}
    types = set()
    for f in frames:
        t = n.parse(f, 1)
        msg = json.loads(f)
        types.add(n.last_type)
        assert n.last_type != "unknown", f
        assert n.last_seq == msg["sequence_num"]
        if msg["channel"] == "l2_data":
            for ev in msg["events"]:
                books[ev["product_id"]].apply(t[t["symbol"] == ev["product_id"].encode()])
    assert {"subscribed", "heartbeat", "data"} <= types
    for s, b in books.items():
        _book_equals_truth(b, sim.book("coinbase", s))


def test_coingecko_body_normalizes_to_prices():
    norm = _normalizer()
    from hftsig.market.ticks import KIND_PRICE

    with SimulatedExchanges(["BTC-USDT", "ETH-BTC"], exchanges=("coingecko",)) as sim:
        body = requests.get(sim.connector_kwargs("coingecko")["rest_url"] + "/simple/price",
                            params={"ids": "bitcoin,ethereum", "vs_currencies": "usd,btc",
                                    "include_last_updated_at": "true"}, timeout=2).text
    t = norm.normalize("coingecko", body, ts_recv=1)
    assert (t["kind"] == KIND_PRICE).all()
    got = {(s.decode(), round(float(p), 6)) for s, p in zip(t["symbol"], t["price"])}
    prices = json.loads(body)
    want = {("BTC-USD", round(prices["bitcoin"]["usd"], 6)),
            ("ETH-BTC", round(prices["ethereum"]["btc"], 6))}
    assert want <= got
    assert (t["ts_event"] == json.loads(body)["bitcoin"]["last_updated_at"] * 1_000_000_000).all()


def test_slow_consumer_is_cut_off():
    # A stall holds frames in the connection's queue; past max_queue the server
    # closes the connection with 1008 as exchanges drop clients that fall behind.
    with SimulatedExchanges(["BTC-USDT", "ETH-USDT"], exchanges=("kraken",), rate=50, max_queue=20) as sim:
        ws = websocket.create_connection(sim.connector_kwargs("kraken")["ws_url"], timeout=2)
        ws.send(json.dumps({"method": "subscribe", "params": {"channel": "book", "symbol": ["BTC/USDT", "ETH/USDT"]}}))
        recv_until(ws, lambda m: m.get("channel") == "book")
        sim.inject("kraken", "stall", seconds=3.0)
        deadline = time.monotonic() + 2.5
        while time.monotonic() < deadline:
            ws.settimeout(2.5)
            try:
                op, data = ws.recv_data(control_frame=True)
            except websocket.WebSocketConnectionClosedException:
                break
            if op == websocket.ABNF.OPCODE_CLOSE:
                assert int.from_bytes(data[:2], "big") == 1008
                break
        else:
            raise AssertionError("server kept a stuck client")
        ws.close()
        assert sim.connections("kraken")[-1]["overflowed"] is True


def test_kraken_checksum_matches_the_documented_example():
    # Kraken's v2 checksum guide: a BTC/USD book (price precision 1, qty 8), checksum 3310070434.
    from pathlib import Path

    from hftsig.simulator.kraken import kraken_checksum

    doc = json.loads((Path(__file__).parents[1] / "data/samples/kraken/book_checksum_guide_snapshot.json").read_text())
    d = doc["data"][0]

    def ticks(levels):
        return [(int(Decimal(lv["price"]) * 10), int(Decimal(lv["qty"]) * 10**8)) for lv in levels]

    assert kraken_checksum(ticks(d["bids"]), ticks(d["asks"]), 1, 8) == d["checksum"] == 3310070434


def test_coingecko_pro_key_query_key_and_stall():
    with SimulatedExchanges(["BTC-USD"], exchanges=("coingecko",), api_key="k-pro", key_type="pro") as sim:
        base = sim.connector_kwargs("coingecko")["rest_url"]
        params = {"ids": "bitcoin", "vs_currencies": "usd"}
        r = requests.get(base + "/simple/price", params=params, headers={"x-cg-demo-api-key": "k-pro"}, timeout=2)
        assert r.status_code == 401 and r.json()["status"]["error_code"] == 10011
        r = requests.get(base + "/simple/price", params=dict(params, x_cg_pro_api_key="k-pro"), timeout=2)
        assert r.status_code == 200 and set(r.json()["bitcoin"]) == {"usd"}
        sim.inject("coingecko", "stall", seconds=0.5)
        t0 = time.monotonic()
        r = requests.get(base + "/simple/price", params=params, headers={"x-cg-pro-api-key": "k-pro"}, timeout=3)
        assert r.status_code == 200 and time.monotonic() - t0 >= 0.4
    with pytest.raises(ValueError, match="key_type"):
        SimulatedExchanges(["BTC-USD"], exchanges=("coingecko",), key_type="free")


# ------------------------------------- shapes against the documentation samples
SAMPLES = __import__("pathlib").Path(__file__).parents[1] / "data" / "samples"


def _shape(x):
    """Keys and JSON types, recursively (first element of lists)."""
    if isinstance(x, dict):
        return {k: _shape(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_shape(x[0])] if x else []
    if isinstance(x, bool):
        return "bool"
    if isinstance(x, (int, float)):
        return "number"
    return "null" if x is None else "string"


def _same_shape(a, b):
    """Shapes equal, an empty list (no element to look at) matching any list."""
    if isinstance(a, list) and isinstance(b, list):
        return not a or not b or _same_shape(a[0], b[0])
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_shape(a[k], b[k]) for k in a)
    return a == b


def _sample(name):
    return json.loads((SAMPLES / name).read_text())


def _first(frames, pred, what="frame"):
    for f in frames:
        m = json.loads(f)
        if pred(m):
            return m
    raise AssertionError(f"no {what} among {len(frames)} frames")


def test_binance_shapes_match_the_docs(sim):
    kw = sim.connector_kwargs("binance")
    ws = websocket.create_connection(
        kw["ws_url"] + "/ws/btcusdt@bookTicker/btcusdt@aggTrade/btcusdt@trade/btcusdt@depth@100ms/btcusdt@depth5@100ms",
        timeout=2)
    ws.send(json.dumps({"method": "SUBSCRIBE", "params": ["ethusdt@trade"], "id": 1}))
    samples = [
        ("bookTicker.json", lambda m: "u" in m and "b" in m and "e" not in m),
        ("aggTrade.json", lambda m: m.get("e") == "aggTrade"),
        ("depthUpdate.json", lambda m: m.get("e") == "depthUpdate"),
        ("partialDepth.json", lambda m: "lastUpdateId" in m),
        ("subscribeResponse.json", lambda m: "result" in m),
        ("trade.json", lambda m: m.get("e") == "trade"),
    ]
    frames = read_until_seen(ws, [p for _, p in samples])
    sim.inject("binance", "shutdown", close_after=0.1)
    samples[-1] = ("serverShutdown.json", lambda m: m.get("e") == "serverShutdown")
    frames = read_until_seen(ws, [samples[-1][1]], frames=frames)
    ws.close()
    for sample, pred in samples:
        assert _same_shape(_shape(_first(frames, pred)), _shape(_sample("binance/" + sample))), sample
    # The 2023 docs' trade event still lists buyer/seller order ids "b"/"a",
    # which Binance has since removed from the trade stream; the rest matches.
    doc_trade = {k: v for k, v in _sample("binance/trade.json").items() if k not in ("b", "a")}
    assert _same_shape(_shape(_first(frames, lambda m: m.get("e") == "trade")), _shape(doc_trade))
    body = requests.get(kw["rest_url"] + "/api/v3/depth", params={"symbol": "BTCUSDT", "limit": 5}, timeout=2).json()
    assert _same_shape(_shape(body), _shape(_sample("binance/restDepth.json")))


def test_kraken_shapes_match_the_docs(sim):
    # let a trade happen first, so the trade snapshot is not empty
    deadline = time.monotonic() + 10.0
    while sim.model.stats("kraken", "BTC-USDT")["volume"] <= 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    ws = websocket.create_connection(sim.connector_kwargs("kraken")["ws_url"], timeout=2)
    for ch in ("book", "ticker", "trade"):
        ws.send(json.dumps({"method": "subscribe", "params": {"channel": ch, "symbol": ["BTC/USDT"]}}))
    samples = [
        ("book_snapshot.json", lambda m: m.get("channel") == "book" and m["type"] == "snapshot"),
        ("book_update.json", lambda m: m.get("channel") == "book" and m["type"] == "update"),
        ("ticker_snapshot.json", lambda m: m.get("channel") == "ticker" and m["type"] == "snapshot"),
        ("trade_snapshot.json", lambda m: m.get("channel") == "trade" and m["type"] == "snapshot" and m["data"]),
        ("trade_update.json", lambda m: m.get("channel") == "trade" and m["type"] == "update"),
        ("subscribe_ack.json", lambda m: m.get("method") == "subscribe" and m["result"]["channel"] == "ticker"),
    ]
    frames = read_until_seen(ws, [p for _, p in samples])
    ws.close()
    for sample, pred in samples:
        assert _same_shape(_shape(_first(frames, pred, sample)), _shape(_sample("kraken/" + sample))), sample


def test_coinbase_shapes_match_the_docs(sim):
    ws = _coinbase(sim, ["heartbeats", "level2", "ticker", "market_trades"], ["BTC-USD"])
    samples = [
        ("l2_data_snapshot.json", lambda m: m["channel"] == "l2_data" and m["events"][0]["type"] == "snapshot"),
        ("ticker.json", lambda m: m["channel"] == "ticker"),
        ("market_trades.json", lambda m: m["channel"] == "market_trades" and m["events"][0]["trades"]),
        ("heartbeats.json", lambda m: m["channel"] == "heartbeats"),
    ]
    frames = read_until_seen(ws, [p for _, p in samples] + [lambda m: m["channel"] == "subscriptions"])
    ws.close()
    for sample, pred in samples:
        doc = _sample("coinbase/" + sample)
        # Where the docs and the recorded live session (tests/data/real) disagree the
        # recording wins: no envelope client_id, heartbeat_counter a number.
        doc.pop("client_id", None)
        if sample == "heartbeats.json":
            doc["events"][0]["heartbeat_counter"] = int(doc["events"][0]["heartbeat_counter"])
        assert _same_shape(_shape(_first(frames, pred)), _shape(doc)), sample
    snap = _first(frames, lambda m: m["channel"] == "l2_data")["events"][0]["updates"][0]
    # the recorded live session's snapshot levels carry the engine time, in µs
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", snap["event_time"])
    # The subscriptions sample comes from Coinbase Prime (no client_id); the event matches.
    subs = _first(frames, lambda m: m["channel"] == "subscriptions")
    assert subs["events"][-1]["subscriptions"]["heartbeats"] == ["heartbeats"]
    doc = _sample("coinbase/subscriptions.json")
    assert _same_shape(_shape({k: v for k, v in subs.items() if k != "client_id"}), _shape(doc))


def test_coingecko_shape_matches_the_docs():
    with SimulatedExchanges(["BTC-USDT"], exchanges=("coingecko",)) as sim:
        body = requests.get(sim.connector_kwargs("coingecko")["rest_url"] + "/simple/price", params={
            "ids": "bitcoin", "vs_currencies": "usd", "include_market_cap": "true", "include_24hr_vol": "true",
            "include_24hr_change": "true", "include_last_updated_at": "true"}, timeout=2).json()
    assert _same_shape(_shape(body), _shape(_sample("coingecko/simple_price.json")))
    assert list(body["bitcoin"]) == list(_sample("coingecko/simple_price.json")["bitcoin"])


def test_stagger_spreads_each_step_over_its_interval_and_pause_flushes():
    """stagger=3: a step's book updates go out in 3 slices, each stamped when released
    (so one step shows up to 3 event times, tens of ms apart at 5 steps/s); pause()
    releases what a step still holds, so a client's book equals the truth."""
    products = ("BTC-USD", "ETH-USD", "SOL-USD")
    with pytest.raises(ValueError, match="stagger"):
        SimulatedExchanges(list(products), exchanges=("coinbase",), stagger=0)
    with SimulatedExchanges(list(products), exchanges=("coinbase",), seed=5, rate=5,
                            stagger=3, size_churn=1.0, trade_rate=0.0) as sim:
        ws = _coinbase(sim, ["level2"], products)
        frames = [json.loads(f) for f in drain(ws, 2.5)]
        steps0 = sim.model.steps
        frames += [json.loads(f) for f in drain(ws, 0.3)]
        sim.pause()
        more, _ = catch_up(ws, sim, "coinbase")
        frames += [json.loads(f) for f in more]
        ws.close()
        books = {p: ({}, {}) for p in products}
        times = []
        for f in frames:
            if f["channel"] != "l2_data":
                continue
            for ev in f["events"]:
                _l2_apply(*books[ev["product_id"]], ev["updates"])
                if ev["type"] == "update":
                    times.append(ev["updates"][0]["event_time"])
                    # stamped when written: the envelope's send time is the event time
                    assert {u["event_time"] for u in ev["updates"]} == {f["timestamp"]}
        for p in products:
            truth = sim.book("coinbase", p)
            bids, asks = books[p]
            assert [(float(a), float(b)) for a, b in sorted(bids.items(), reverse=True)] == truth["bids"]
            assert [(float(a), float(b)) for a, b in sorted(asks.items())] == truth["asks"]
    assert steps0 >= 5
    stamps = sorted({int(datetime.fromisoformat(t[:26] + "+00:00").timestamp() * 1e6)
                     for t in times})
    # 3 products of one venue land in different slices of a step: more distinct release
    # times than steps, some within a step interval (200 ms) of each other
    assert len(stamps) > 1.5 * steps0
    gaps = np.diff(stamps) / 1e3  # ms
    assert (gaps < 150).sum() >= steps0 // 2


@pytest.mark.parametrize("stagger", [1, 3])
def test_schedule_stats_count_every_release_and_its_delay(stagger):
    """schedule_stats(): one release per step (stagger=1) or per slice, each with how
    long after its due time it went out; slices flushed ahead of time (pause) are not
    releases on schedule and are left out."""
    products = ["BTC-USD", "ETH-USD", "SOL-USD"]
    with SimulatedExchanges(products, exchanges=("coinbase",), seed=2, rate=40,
                            stagger=stagger, trade_rate=0.0) as sim:
        assert sim.schedule_stats()["releases"] == 0
        assert math.isnan(sim.schedule_stats()["late_p99_us"])
        time.sleep(0.6)
        sim.pause()
        st = sim.schedule_stats()
        steps = sim.model.steps
        late = np.array(list(sim._late))
    assert steps >= 10
    if stagger == 1:
        assert st["releases"] == steps
    else:
        # a step on time goes out in 3 slices, a catch-up step (loaded machine) in one
        assert steps <= st["releases"] <= 3 * steps
        assert st["releases"] > steps
    assert (late >= 0).all()
    assert st["late_p50_us"] == pytest.approx(np.percentile(late, 50) * 1e6)
    assert 0 <= st["late_p50_us"] <= st["late_p99_us"] <= st["late_max_us"] == pytest.approx(late.max() * 1e6)


def test_write_held_writes_a_release_at_once_or_leaves_it_to_the_sender():
    """Frames queued while a server is ``holding`` wait; write_held() writes them in one
    go, in order, on the spot for an idle connection, and through the sender (control
    frames first) for a connection with a control frame waiting."""
    import asyncio

    with SimulatedExchanges(["BTC-USD"], exchanges=("kraken",), rate=1) as sim:
        sim.pause()  # no model frames in between
        ws = connect(sim.connector_kwargs("kraken")["ws_url"])
        assert sim.wait_for_connections("kraken", 1)
        server = sim.servers["kraken"]
        conn = server.conns[0]
        drain(ws, 0.3)  # the status frame

        def on_loop(fn):
            async def run():
                return fn()
            return asyncio.run_coroutine_threadsafe(run(), sim._loop).result(2)

        def release(ctrl_first):
            server.holding = True
            for i in range(3):
                conn.enqueue("probe", '{"probe":%d}' % i, 1)
            if ctrl_first:
                conn.enqueue("heartbeat", '{"channel":"heartbeat"}', ctrl=True)
            queued = len(conn.data)
            sent_before = conn.sent["probe"]
            server.write_held()
            return queued, conn.sent["probe"] - sent_before, server.holding

        queued, written, holding = on_loop(lambda: release(False))
        assert (queued, written, holding) == (3, 3, False)  # written before the loop moved on
        got = [json.loads(f) for f in drain(ws, 0.5)]
        assert got == [{"probe": 0}, {"probe": 1}, {"probe": 2}]

        queued, written, holding = on_loop(lambda: release(True))
        assert (queued, written, holding) == (3, 0, False)  # the sender's turn
        got = [json.loads(f) for f in drain(ws, 0.5)]
        assert got == [{"channel": "heartbeat"}, {"probe": 0}, {"probe": 1}, {"probe": 2}]
        assert conn.sent["probe"] == 6 and conn.items["probe"] == 6
        ws.close()


_START_INTERRUPT_SCRIPT = """
import signal, sys, threading, time
import numpy.random  # noqa: F401  (imported up front: a first import can swallow an interrupt)
from hftsig.simulator import SimulatedExchanges

main_id = threading.get_ident()
SimulatedExchanges(symbols=["BTC-USDT"], seed=0).start().stop()  # warm: later starts take ms
for rep in range(3):
    for delay in (0.0, 0.0005, 0.001, 0.002, 0.003, 0.005, 0.008):
        sender = threading.Thread(
            target=lambda: (time.sleep(delay), signal.pthread_kill(main_id, signal.SIGINT)))
        sim, started = None, False
        try:
            sim = SimulatedExchanges(symbols=["BTC-USDT"], seed=0)
            sender.start()
            sim.start()
            started = True
            time.sleep(0.3)  # the interrupt lands here when the start was quicker
        except KeyboardInterrupt:
            pass
        sender.join()
        if started:
            sim.stop()
            where = "after"
        else:
            where = "before" if sim is None or not sim._started else "inside"
        t0 = time.monotonic()
        while any(t.name == "hftsig-sim-loop" for t in threading.enumerate()) \\
                and time.monotonic() - t0 < 3.0:
            time.sleep(0.01)
        left = sum(t.name.startswith("hftsig-sim") for t in threading.enumerate())
        print("RESULT", delay, where, left, flush=True)
"""


def test_an_interrupt_while_the_simulators_start_leaves_nothing_running():
    """Ctrl-C while ``start()`` brings the servers up (a notebook's interrupt, the
    command line's Ctrl-C): the KeyboardInterrupt comes out, the loop thread and its
    servers are gone, and no half-built event loop is left for the garbage collector
    (it printed an AttributeError traceback from ``BaseEventLoop.__del__``)."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _START_INTERRUPT_SCRIPT], capture_output=True,
                          text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, \
        proc.stderr[-3000:]
    results = [line.split()[1:] for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    assert len(results) == 21
    assert all(left == "0" for _, _, left in results), results
    assert any(where == "inside" for _, where, _ in results), results  # the case under test ran
