"""The shared connection machinery against real loopback servers.

The websocket side runs a real ``websockets`` server on 127.0.0.1, the REST
side a real ``http.server``; nothing in websocket-client or requests is
patched.  A tiny test connector speaks a toy protocol: the client sends
``{"op": "subscribe"}``, the server answers with ``{"seq": n, "px": p}``
frames.
"""
from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from websockets.sync.server import serve

from connector_support import Collector, wait_for
from hftsig.connectors.base import Backoff, MalformedFrame
from hftsig.connectors.rest import HTTPStatusError, RestClient, RestPollingConnector
from hftsig.connectors.websocket import WebSocketConnector
from hftsig.market.connector_protocol import Connector, missing_members
from hftsig.market.ticks import (
    KIND_PRICE,
    STATUS_CONNECTED,
    STATUS_DISCONNECTED,
    STATUS_STALE,
    empty_ticks,
)

FAST = dict(initial=0.02, maximum=0.1, jitter=0.5, seed=1)


class ToyConnector(WebSocketConnector):
    exchange = "simulated"
    valid_channels = ("prices",)
    default_channels = ("prices",)
    default_ws_url = "ws://127.0.0.1:9"

    def _subscribe_messages(self):
        return [json.dumps({"op": "subscribe", "symbols": list(self.symbols)})]

    def _on_message(self, raw, ts_recv):
        try:
            msg = json.loads(raw)
            seq = int(msg["seq"])
            px = float(msg["px"])
        except (ValueError, KeyError, TypeError) as exc:
            raise MalformedFrame(f"bad toy frame: {exc!r}") from None
        t = empty_ticks(1)
        t["ts_event"] = t["ts_recv"] = ts_recv
        t["exchange"] = self._exchange_code
        t["kind"] = KIND_PRICE
        t["symbol"] = self.symbols[0].encode()
        t["price"] = px
        t["seq"] = seq
        self._count_type("data")
        self._emit(t)


class PingingToy(ToyConnector):
    app_ping_interval = 0.05

    def _app_ping(self):
        return json.dumps({"op": "ping"})


@contextlib.contextmanager
def ws_server(handler):
    """A real websockets server on an ephemeral loopback port, running ``handler(conn, state)``."""
    state = {"connections": 0, "subscribes": [], "stop": threading.Event(), "pongs": 0,
             "app_pings": 0}

    def wrapped(conn):
        state["connections"] += 1
        try:
            handler(conn, state)
        except Exception:
            pass

    server = serve(wrapped, "127.0.0.1", 0, compression=None, ping_interval=None)
    port = server.socket.getsockname()[1]
    th = threading.Thread(target=server.serve_forever, daemon=True)
    th.start()
    try:
        yield f"ws://127.0.0.1:{port}", state
    finally:
        state["stop"].set()
        server.shutdown()
        th.join(2)


def _recv_subscribe(conn, state):
    msg = json.loads(conn.recv(timeout=2))
    assert msg["op"] == "subscribe"
    state["subscribes"].append(msg)


def numbered(n_per_connection, drop=True):
    """Handler: global sequence continues across connections; drop after a batch."""

    def handler(conn, state):
        _recv_subscribe(conn, state)
        start = state.setdefault("next", 0)
        for i in range(start, start + n_per_connection):
            conn.send(json.dumps({"seq": i, "px": 100.0 + i}))
        state["next"] = start + n_per_connection
        if drop and state["connections"] < 3:
            time.sleep(0.05)
            conn.socket.shutdown(socket.SHUT_RDWR)  # abrupt: no close frame
            return
        state["stop"].wait(5)

    return handler


def test_receives_and_counts():
    out = Collector()
    with ws_server(numbered(20, drop=False)) as (url, state):
        c = ToyConnector(["BTC-USD"], ws_url=url, on_tick=out, backoff=Backoff(**FAST))
        c.start()
        try:
            assert wait_for(lambda: len(out.data()) == 20)
            s = c.stats()
            assert s["connected"] is True
            assert s["messages"] == 20
            assert s["ticks"] == 21  # 20 prices + 1 STATUS_CONNECTED
            assert s["types"]["data"] == 20
        finally:
            assert c.stop() is True
    assert not c.running
    assert list(out.data()["seq"]) == list(range(20))
    assert out.statuses()[0] == STATUS_CONNECTED
    assert state["subscribes"][0]["symbols"] == ["BTC-USD"]


def test_reconnects_and_resubscribes_after_drop():
    out = Collector()
    with ws_server(numbered(5)) as (url, state):
        c = ToyConnector(["ETH-USD"], ws_url=url, on_tick=out, backoff=Backoff(**FAST))
        c.start()
        try:
            assert wait_for(lambda: len(out.data()) == 15)
            assert wait_for(lambda: c.stats()["connected"])
        finally:
            assert c.stop() is True
    s = c.stats()
    assert s["reconnects"] == 2
    assert len(state["subscribes"]) == 3  # every connection subscribed again
    assert list(out.data()["seq"]) == list(range(15))  # nothing lost, nothing doubled
    st = out.statuses()
    assert st[:5] == [STATUS_CONNECTED, STATUS_DISCONNECTED, STATUS_CONNECTED,
                      STATUS_DISCONNECTED, STATUS_CONNECTED]
    assert st[-1] == STATUS_DISCONNECTED  # from stop()
    assert s["connected"] is False


def test_connect_failures_back_off_then_connect():
    # reserve a port, start nothing on it: connections are refused
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    c = ToyConnector(["BTC-USD"], ws_url=f"ws://127.0.0.1:{port}",
                     backoff=Backoff(initial=0.01, maximum=0.05, seed=0))
    c.start()
    try:
        assert wait_for(lambda: c.stats().get("connect_failures", 0) >= 3)
        assert c.stats()["connected"] is False
    finally:
        assert c.stop() is True


def test_backoff_schedule_caps_and_jitters():
    b = Backoff(initial=0.5, maximum=4.0, factor=2.0, jitter=0.25, seed=3)
    for attempt, base in enumerate([0.5, 1, 2, 4, 4, 4]):
        d = b.delay(attempt)
        assert base * 0.75 <= d <= base
    assert b.delay(10**6) <= 4.0
    delays = {round(b.delay(3), 9) for _ in range(20)}
    assert len(delays) > 1  # jittered
    with pytest.raises(ValueError, match="maximum"):
        Backoff(initial=2, maximum=1)
    with pytest.raises(ValueError, match="jitter"):
        Backoff(jitter=2)


def test_watchdog_restarts_silent_feed():
    def handler(conn, state):
        _recv_subscribe(conn, state)
        conn.send(json.dumps({"seq": state["connections"], "px": 1.0}))
        state["stop"].wait(5)  # then silence, connection left open

    out = Collector()
    with ws_server(handler) as (url, state):
        c = ToyConnector(["BTC-USD"], ws_url=url, on_tick=out, backoff=Backoff(**FAST),
                         stale_after=0.3)
        c.start()
        try:
            assert wait_for(lambda: c.stats()["reconnects"] >= 1)
        finally:
            assert c.stop() is True
    assert c.stats()["stale"] >= 1
    assert STATUS_STALE in out.statuses()


def test_pings_count_as_liveness_and_pong_echoes_payload():
    def handler(conn, state):
        _recv_subscribe(conn, state)
        end = time.monotonic() + 20.0
        while time.monotonic() < end and not state["stop"].is_set():
            payload = f"p{state['pongs']}".encode()
            waiter = conn.ping(payload)  # websockets matches the pong payload
            if waiter.wait(1):
                state["pongs"] += 1
            time.sleep(0.05)
        state["stop"].wait(5)

    with ws_server(handler) as (url, state):
        c = ToyConnector(["BTC-USD"], ws_url=url, backoff=Backoff(**FAST), stale_after=0.3)
        c.start()
        try:
            t0 = time.monotonic()
            # at least three stale periods with only pings on the wire, and pings
            # enough to count (a loaded machine sends them slower)
            assert wait_for(lambda: state["pongs"] >= 5 and c.stats()["types"].get("ping", 0) >= 5)
            time.sleep(max(0.0, 0.9 - (time.monotonic() - t0)))
            s = c.stats()
        finally:
            assert c.stop() is True
    assert s["stale"] == 0
    assert s["reconnects"] == 0
    assert state["pongs"] >= 5
    assert s["types"]["ping"] >= 5


def test_app_level_ping_when_idle():
    def handler(conn, state):
        _recv_subscribe(conn, state)
        while not state["stop"].is_set():
            try:
                msg = json.loads(conn.recv(timeout=0.5))
            except TimeoutError:
                continue
            if msg.get("op") == "ping":
                state["app_pings"] += 1
                conn.send(json.dumps({"seq": -1, "px": 0.0}))

    with ws_server(handler) as (url, state):
        c = PingingToy(["BTC-USD"], ws_url=url, backoff=Backoff(**FAST), stale_after=5)
        c.start()
        try:
            assert wait_for(lambda: state["app_pings"] >= 3)
        finally:
            assert c.stop() is True


def test_stop_joins_within_a_second_while_blocked_and_while_backing_off():
    with ws_server(numbered(1, drop=False)) as (url, state):
        c = ToyConnector(["BTC-USD"], ws_url=url, backoff=Backoff(**FAST))
        c.poll_interval = 30.0  # a read that would block for long: stop must interrupt it
        c.start()
        assert wait_for(lambda: c.stats()["messages"] == 1)
        t0 = time.monotonic()
        assert c.stop(timeout=1.0) is True
        assert time.monotonic() - t0 < 1.0
    c2 = ToyConnector(["BTC-USD"], ws_url="ws://127.0.0.1:9",
                      backoff=Backoff(initial=60, maximum=60, jitter=0))
    c2.start()
    assert wait_for(lambda: c2.stats().get("connect_failures", 0) >= 1)
    t0 = time.monotonic()
    assert c2.stop(timeout=1.0) is True
    assert time.monotonic() - t0 < 1.0


def test_malformed_frames_counted_logged_once_thread_survives(caplog):
    def handler(conn, state):
        _recv_subscribe(conn, state)
        for i in range(10):
            conn.send(json.dumps({"seq": i, "px": 1.0 + i}))
            if i % 3 == 0:
                conn.send("{not json")
            if i % 4 == 0:
                conn.send(b"\x00\xff\x10binary garbage")
        state["stop"].wait(5)

    out = Collector()
    caplog.set_level(logging.DEBUG, logger="connectors")
    with ws_server(handler) as (url, state):
        c = ToyConnector(["BTC-USD"], ws_url=url, on_tick=out, backoff=Backoff(**FAST))
        c.start()
        try:
            assert wait_for(lambda: c.stats()["messages"] == 10 + 4 + 3)
        finally:
            assert c.stop() is True
    s = c.stats()
    assert s["malformed"] == 7
    assert s["reconnects"] == 0
    assert list(out.data()["seq"]) == list(range(10))
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "malformed" in r.getMessage()]
    assert len(warnings) == 1
    assert "not json" in warnings[0].getMessage()  # logged with the frame as context


def test_callback_errors_do_not_kill_the_thread():
    calls = []

    def bad(ticks):
        calls.append(len(ticks))
        raise RuntimeError("consumer bug")

    with ws_server(numbered(5, drop=False)) as (url, state):
        c = ToyConnector(["BTC-USD"], ws_url=url, on_tick=bad, backoff=Backoff(**FAST))
        c.start()
        try:
            assert wait_for(lambda: c.stats()["messages"] == 5)
        finally:
            assert c.stop() is True
    # frames read together may reach on_tick as one array: every call that
    # raised is counted, and every tick (5 prices + STATUS_CONNECTED) was offered
    assert c.stats()["callback_errors"] == len(calls) >= 1
    assert sum(calls) >= 6


def test_contract_validation():
    with pytest.raises(ValueError, match="symbols"):
        ToyConnector(["btcusd"])
    with pytest.raises(ValueError, match="symbols"):
        ToyConnector([])
    with pytest.raises(ValueError, match="channels"):
        ToyConnector(["BTC-USD"], channels=["nope"])
    with pytest.raises(ValueError, match="ws_url"):
        ToyConnector(["BTC-USD"], ws_url="http://x")
    with pytest.raises(TypeError, match="on_tick"):
        ToyConnector(["BTC-USD"], on_tick=3)
    c = ToyConnector(["btc-usd", "BTC-USD"])
    assert c.symbols == ("BTC-USD",)
    assert c.exchange == "simulated"
    s = c.stats()
    for key in ("messages", "ticks", "reconnects", "gaps", "checksum_failures", "malformed",
                "last_latency_ns", "connected"):
        assert key in s


# ---------------------------------------------------------------- REST


@contextlib.contextmanager
def http_server(responses):
    """Real HTTP server answering GETs from a script: list of (status, headers, body)."""
    log = []
    release = threading.Event()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            log.append((self.path, dict(self.headers)))
            status, headers, body = responses.pop(0) if len(responses) > 1 else responses[0]
            if status == "hang":  # a server that never answers in time
                release.wait(float(headers))
                return
            data = body.encode() if isinstance(body, str) else body
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.daemon_threads = True
    th = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    th.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}", log
    finally:
        release.set()
        srv.shutdown()
        srv.server_close()
        th.join(2)


class ToyPoller(RestPollingConnector):
    exchange = "simulated"
    valid_channels = ("price",)
    default_channels = ("price",)
    default_rest_url = "http://127.0.0.1:9"
    interval = 0.02

    def _poll(self):
        body = self.rest.get_json("/price", {"s": self.symbols[0]})
        t = empty_ticks(1)
        t["kind"] = KIND_PRICE
        t["price"] = body["px"]
        t["seq"] = body["n"]
        self._count("messages")
        self._emit(t)


def test_toy_connectors_keep_the_connector_protocol():
    for conn in (ToyConnector(["BTC-USD"]), PingingToy(["BTC-USD"]), SlowFirstToy(["BTC-USD"]),
                 ToyPoller(["BTC-USD"])):
        assert isinstance(conn, Connector), type(conn).__name__
        assert missing_members(conn) == ()


def test_names_moved_out_of_base_still_import_from_base():
    from hftsig.connectors import base, rest, websocket
    from hftsig.connectors.base import (
        DEFAULT_MAX_MESSAGE_SIZE,
        BaseConnector,
        FrameTooLarge,
    )
    from hftsig.connectors.base import Connector as OldConnector
    from hftsig.connectors.base import HTTPStatusError as OldHTTPStatusError
    from hftsig.connectors.base import RestClient as OldRestClient
    from hftsig.connectors.base import RestPollingConnector as OldRestPollingConnector
    from hftsig.connectors.base import WebSocketConnector as OldWebSocketConnector
    assert OldWebSocketConnector is WebSocketConnector is websocket.WebSocketConnector
    assert OldRestClient is RestClient and OldRestPollingConnector is RestPollingConnector
    assert OldHTTPStatusError is HTTPStatusError is rest.HTTPStatusError
    assert FrameTooLarge is websocket.FrameTooLarge
    assert DEFAULT_MAX_MESSAGE_SIZE == websocket.DEFAULT_MAX_MESSAGE_SIZE == 16 << 20
    # the base class's old name is the base class, not the protocol
    assert OldConnector is BaseConnector and issubclass(WebSocketConnector, BaseConnector)
    assert not hasattr(base, "no_such_name")

def test_rest_client_retries_429_with_and_without_retry_after_and_5xx():
    script = [(429, {"Retry-After": "0"}, "slow down"), (429, {}, "again"),
              (500, {}, "oops"), (503, {}, "busy"), (200, {}, '{"ok": 1}')]
    with http_server(script) as (url, log):
        owner = ToyPoller(["BTC-USD"], rest_url=url, backoff=Backoff(initial=0.01, maximum=0.02))
        rc = RestClient(url, owner, timeout=2)
        assert rc.get_json("/x") == {"ok": 1}
        rc.close()
    s = owner.stats()
    assert s["http_429"] == 2
    assert s["http_5xx"] == 2
    assert s["http_requests"] == 5
    assert s["http_retries"] == 4
    assert len(log) == 5


def test_rest_client_gives_up_and_raises_clear_errors():
    with http_server([(404, {}, "no such path")]) as (url, log):
        owner = ToyPoller(["BTC-USD"], rest_url=url, backoff=Backoff(initial=0.01, maximum=0.02))
        rc = RestClient(url, owner, timeout=2, max_retries=2)
        with pytest.raises(HTTPStatusError, match="404") as ei:
            rc.get("/missing")
        assert ei.value.status == 404
    with http_server([(500, {}, "down")]) as (url, log):
        rc = RestClient(url, owner, timeout=2, max_retries=2)
        with pytest.raises(HTTPStatusError, match="3 attempts"):
            rc.get("/x")
        assert len(log) == 3
    with http_server([(200, {}, "<html>")]) as (url, log):
        rc = RestClient(url, owner, timeout=2)
        with pytest.raises(MalformedFrame, match="not JSON"):
            rc.get_json("/x")


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_credential_headers_never_follow_a_redirect_to_another_origin(host):
    """A real server pair: the first answers 302 to the second (another port, or
    another host name), which records the headers it gets.  requests itself
    strips only Authorization; the API key header must not arrive either.  A
    redirect within the same origin keeps it (the key is needed there)."""
    from hftsig.connectors.credentials import Secret

    key = "CG-redirectkey0123456789"
    with http_server([(200, {}, '{"where": "elsewhere"}')]) as (other, other_log):
        other = other.replace("127.0.0.1", host)
        script = [(302, {"Location": f"{other}/api/v3/simple/price"}, ""),
                  (302, {"Location": "/api/v3/moved"}, ""), (200, {}, '{"where": "home"}')]
        with http_server(script) as (url, log):
            owner = ToyPoller(["BTC-USD"], rest_url=url)
            rc = RestClient(url, owner, timeout=2,
                            headers={"x-cg-demo-api-key": Secret(key), "Accept": "json"})
            assert rc.get_json("/simple/price") == {"where": "elsewhere"}
            assert rc.get_json("/simple/price") == {"where": "home"}  # same-origin redirect
            rc.close()
    (path, got), = other_log
    assert path == "/api/v3/simple/price"
    assert all(key not in v for v in got.values())
    assert "x-cg-demo-api-key" not in {k.lower() for k in got}
    assert got.get("Accept") == "json"  # the rest of the request went on
    assert [h.get("x-cg-demo-api-key") for _, h in log] == [key, key, key]
    assert log[2][0] == "/api/v3/moved"


def test_rest_retry_after_honoured():
    with http_server([(429, {"Retry-After": "0.3"}, ""), (200, {}, "{}")]) as (url, log):
        owner = ToyPoller(["BTC-USD"], rest_url=url, backoff=Backoff(initial=0.01, maximum=0.01))
        rc = RestClient(url, owner, timeout=2)
        t0 = time.monotonic()
        rc.get("/x")
        # the wait follows the server's Retry-After, not the 10 ms backoff
        assert time.monotonic() - t0 >= 0.3


def test_poller_survives_errors_and_stops_fast():
    script = [(200, {}, '{"px": 1.5, "n": 1}'), (500, {}, ""), (200, {}, "garbage"),
              (200, {}, '{"px": 2.5, "n": 2}')]
    out = Collector()
    with http_server(script) as (url, log):
        p = ToyPoller(["BTC-USD"], rest_url=url, on_tick=out,
                      backoff=Backoff(initial=0.01, maximum=0.02))
        p.start()
        try:
            assert wait_for(lambda: len(out.data()) >= 3)
        finally:
            t0 = time.monotonic()
            assert p.stop() is True
            assert time.monotonic() - t0 < 1.0
    s = p.stats()
    assert s["http_5xx"] == 1
    assert s["malformed"] == 1
    seqs = list(out.data()["seq"])
    assert seqs[:2] == [1, 2] and set(seqs[2:]) == {2}
    assert log[0][0] == "/price?s=BTC-USD"


def test_stop_cuts_a_hung_request():
    with http_server([("hang", "3", "")]) as (url, log):
        p = ToyPoller(["BTC-USD"], rest_url=url, timeout=10.0)
        p.start()
        assert wait_for(lambda: p.stats().get("http_requests", 0) == 1)
        time.sleep(0.1)
        t0 = time.monotonic()
        assert p.stop() is True
        assert time.monotonic() - t0 < 1.0
    assert p.stats().get("http_errors", 0) == 0  # an interrupted request is not an error


@pytest.mark.parametrize("exchange", ["binance", "kraken", "coinbase"])
def test_garbage_over_the_wire_is_counted_never_fatal(exchange):
    """Every truncation of the documented sample frames and random bytes, sent by a
    real server, end up counted as malformed; the thread lives on and the
    good frame that follows is delivered."""
    import random
    from pathlib import Path

    from hftsig.connectors import BinanceConnector, CoinbaseConnector, KrakenConnector
    from hftsig.market.ticks import KIND_TRADE

    samples = sorted((Path(__file__).parents[1] / "data" / "samples" / exchange).glob("*.json"))
    frames = [p.read_bytes().strip() for p in samples]
    rng = random.Random(42)
    truncated = [f[:cut] for f in frames for cut in sorted({1, len(f) // 2, len(f) - 1,
                                                              rng.randrange(1, len(f))})]
    noise = [bytes(rng.randrange(256) for _ in range(rng.randrange(1, 80))) for _ in range(30)]
    good = {"binance": "trade.json", "kraken": "trade_update.json",
            "coinbase": "market_trades.json"}[exchange]
    good = (Path(__file__).parents[1] / "data" / "samples" / exchange / good).read_text().strip()

    def handler(conn, state):
        for f in truncated + noise:
            conn.send(f)  # bytes go out as binary frames, as a broken proxy might
        conn.send(good)
        state["stop"].wait(5)

    cls = {"binance": BinanceConnector, "kraken": KrakenConnector,
           "coinbase": CoinbaseConnector}[exchange]
    out = Collector()
    with ws_server(handler) as (url, state):
        kw = {"channels": ["trade"]} if exchange == "binance" else {}
        c = cls(["BTC-USD"] if exchange != "binance" else ["BTC-USDT"], ws_url=url, on_tick=out,
                backoff=Backoff(**FAST), **kw)
        c.start()
        try:
            assert wait_for(lambda: len(out.data(KIND_TRADE)) == 1)
            assert c.running
            st = c.stats()
        finally:
            assert c.stop() is True
    assert st["messages"] == len(truncated) + len(noise) + 1
    assert st["malformed"] >= len(truncated)  # no prefix of a JSON object is JSON
    assert st["errors"] == 0 and st["reconnects"] == 0


def _mutations():
    """Hypothesis strategy: documented frames of every exchange, cut, spliced or
    with bytes overwritten, mixed with arbitrary bytes and text."""
    from pathlib import Path

    from hypothesis import strategies as st

    base = Path(__file__).parents[1] / "data" / "samples"
    samples = [p.read_bytes().strip() for p in sorted(base.glob("*/*.json"))]

    @st.composite
    def mutated(draw):
        frame = bytearray(draw(st.sampled_from(samples)))
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(frame) - 1))
            frame[i] = draw(st.integers(0, 255))
        return bytes(frame)

    return st.one_of(mutated(), st.binary(max_size=200), st.text(max_size=200))


@pytest.mark.parametrize("exchange", ["binance", "kraken", "coinbase"])
def test_fuzzed_frames_never_kill_the_thread(exchange):
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    from hftsig.connectors import BinanceConnector, CoinbaseConnector, KrakenConnector

    cls = {"binance": BinanceConnector, "kraken": KrakenConnector,
           "coinbase": CoinbaseConnector}[exchange]
    symbol = "BTC-USDT" if exchange == "binance" else "BTC-USD"
    # no depth channel: nothing here may ever reach for Binance's live REST host
    kw = {"channels": ["bookTicker", "trade"]} if exchange == "binance" else {}
    runs = []

    @settings(max_examples=8, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(frames=st.lists(_mutations(), min_size=1, max_size=25))
    def check(frames):
        def handler(conn, state):
            for f in frames:
                conn.send(f)
            conn.send('{"end": true}')
            state["stop"].wait(5)

        with ws_server(handler) as (url, state):
            c = cls([symbol], ws_url=url, backoff=Backoff(**FAST), **kw)
            c.start()
            runs.append(len(frames))
            try:
                # every frame arrives and is handled: counted, never a crash
                assert wait_for(lambda: c.stats()["messages"] == len(frames) + 1)
                assert c.running
                st_ = c.stats()
            finally:
                assert c.stop() is True
        assert st_["errors"] == 0 and st_["reconnects"] == 0

    check()
    assert len(runs) >= 8


def test_buffered_reader_keeps_every_frame_shape_in_order():
    """The connector's buffered frame reader cuts whole data frames itself and hands the
    rest to websocket-client: small, 16-bit and 64-bit lengths, a message split
    across reads, fragments, binary frames and pings, in one stream, in order."""
    pad = lambda k, n: json.dumps({"seq": k, "px": 1.0, "pad": "x" * n})  # noqa: E731

    def handler(conn, state):
        _recv_subscribe(conn, state)
        k = 0
        for n in (10, 300, 70_000, 5, 200_000, 0):
            conn.send(pad(k, n))
            k += 1
        text = pad(k, 50)
        conn.send([text[:7], text[7:20], text[20:]])  # one message in three fragments
        k += 1
        conn.ping(b"hello")
        conn.send(pad(k, 20).encode())  # a binary frame
        k += 1
        for _ in range(300):  # a burst: many frames per socket read
            conn.send(pad(k, k % 200))
            k += 1
        time.sleep(0.3)  # a read timeout between frames
        conn.send(pad(k, 3))
        state["sent"] = k + 1
        state["stop"].wait(5)

    with ws_server(handler) as (url, state):
        got = Collector()
        c = ToyConnector(["BTC-USD"], ws_url=url, on_tick=got, backoff=Backoff(**FAST))
        c.poll_interval = 0.05  # the pause above outlasts a read timeout
        c.start()
        try:
            assert wait_for(lambda: "sent" in state
                            and len(got.data(KIND_PRICE)) >= state["sent"], 10)
        finally:
            c.stop()
    seqs = got.data(KIND_PRICE)["seq"].tolist()
    assert seqs == list(range(state["sent"]))
    st = c.stats()
    assert st["malformed"] == 0 and st["reconnects"] == 0


class SlowFirstToy(ToyConnector):
    """Takes 0.3 s over its first frame, so that the frames behind it pile up in the socket."""

    def _on_message(self, raw, ts_recv):
        if not getattr(self, "_slept", False):
            self._slept = True
            time.sleep(0.3)
        super()._on_message(raw, ts_recv)


def test_frames_read_together_are_handed_over_together_and_a_lone_frame_at_once():
    """A burst already in the socket reaches on_tick in few arrays (at most 8 frames
    each), complete and in order; a frame arriving alone is not held back."""
    def handler(conn, state):
        _recv_subscribe(conn, state)
        for k in range(201):  # frame 0 keeps the client busy while 1..200 queue up
            conn.send(json.dumps({"seq": k, "px": 100.0 + k}))
        time.sleep(0.5)
        state["lone_sent"] = time.monotonic()
        conn.send(json.dumps({"seq": 201, "px": 1.0}))
        state["stop"].wait(5)

    got = Collector()
    arrived = {}

    def sink(ticks):
        got(ticks)
        if 201 in ticks["seq"]:
            arrived["lone"] = (time.monotonic(), len(ticks))

    with ws_server(handler) as (url, state):
        c = SlowFirstToy(["BTC-USD"], ws_url=url, on_tick=sink, backoff=Backoff(**FAST))
        c.start()
        try:
            assert wait_for(lambda: "lone" in arrived, 10)
        finally:
            c.stop()
    data = [b[b["kind"] == KIND_PRICE] for b in got.batches]
    data = [b for b in data if len(b)]
    assert np.concatenate(data)["seq"].tolist() == list(range(202))
    burst = [b for b in data if b["seq"][-1] <= 200]
    assert max(len(b) for b in burst) <= 8  # bounded: the first frame of a burst waits little
    assert len(burst) <= 201 // 8 + 10  # most of the burst went in full arrays
    t_lone, n_lone = arrived["lone"]
    # not held for a next frame that never comes (that would time out above)
    assert n_lone == 1 and t_lone - state["lone_sent"] < 1.0
