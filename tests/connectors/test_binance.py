"""BinanceConnector against the loopback Binance simulator (websocket + REST)."""
from __future__ import annotations

import time

import numpy as np
import pytest

from connector_support import Collector, books_converge, delta_chains_intact, wait_for
from hftsig.connectors import BinanceConnector
from hftsig.connectors.base import Backoff
from hftsig.market.ticks import (
    KIND_BOOK_DELTA,
    KIND_BOOK_SNAPSHOT,
    KIND_QUOTE,
    KIND_TRADE,
    STATUS_CONNECTED,
    STATUS_DISCONNECTED,
    STATUS_RESYNC,
    STATUS_STALE,
)
from hftsig.simulator import SimulatedExchanges

SYMBOLS = ["BTC-USDT", "ETH-USDT"]
FAST = Backoff(initial=0.02, maximum=0.1, seed=0)


@pytest.fixture
def sim():
    with SimulatedExchanges(SYMBOLS, exchanges=("binance",), seed=7, rate=20.0, depth=20,
                            trade_rate=10.0, ping_interval=0.2) as s:
        yield s


def make(sim, out, **kw):
    kw.setdefault("backoff", FAST)
    return BinanceConnector(SYMBOLS, on_tick=out, depth_limit=100, **sim.connector_kwargs("binance"),
                            **kw)


def frozen_counts(sim, c, out, trade_key="trade"):
    """Stall the simulator's data, let the wire drain, and return the frames it sent by type."""
    # inject() returns once the frame being written is out: from then on the
    # counters stay put (pings are not counted) for the rest of the test
    sim.inject("binance", "stall", seconds=60.0, heartbeats=True)
    sent = sim.sent("binance")
    wait_for(lambda: len(out.data(KIND_TRADE)) >= sent.get(trade_key, 0)
             and len(out.data(KIND_QUOTE)) >= sent.get("bookTicker", 0)
             and c.stats()["messages"] >= sum(sent.values()))
    return sent


def synced_with_diffs(c, out):
    """All books synced and diff events applied on top of the snapshots."""
    return all(c.synced(s) for s in SYMBOLS) and all(
        (out.data(KIND_BOOK_DELTA)["symbol"] == s.encode()).any() for s in SYMBOLS)


def trades_contiguous(out, symbol):
    t = out.data(KIND_TRADE)
    ids = t["seq"][t["symbol"] == symbol.encode()]
    return len(ids) > 0 and bool((np.diff(ids) == 1).all())


def test_streams_and_local_books_match_simulator(sim):
    out = Collector()
    c = make(sim, out)
    assert c.exchange == "binance" and c.symbols == tuple(SYMBOLS)
    c.start()
    try:
        assert wait_for(lambda: synced_with_diffs(c, out))
        for s in SYMBOLS:
            assert books_converge(c, sim, "binance", s) is True
        assert wait_for(lambda: len(out.data(KIND_TRADE)) >= 5)
        sent = frozen_counts(sim, c, out)
        # count in = count out, nothing lost or doubled
        assert len(out.data(KIND_TRADE)) == sent["trade"]
        assert len(out.data(KIND_QUOTE)) == sent["bookTicker"]
        s = c.stats()
    finally:
        assert c.stop() is True
    assert s["connected"] and s["reconnects"] == 0 and s["gaps"] == 0 and s["malformed"] == 0
    assert s["messages"] == sum(sent.values())  # every frame counted once
    assert s["types"]["ping"] >= 1  # server pings answered
    assert s["last_latency_ns"] >= 0
    for sym in SYMBOLS:
        assert trades_contiguous(out, sym)
        assert delta_chains_intact(out.all(), sym)
    assert out.statuses()[0] == STATUS_CONNECTED
    assert len(out.data(KIND_BOOK_SNAPSHOT)) > 0


def test_depth_gap_resyncs_that_symbol(sim):
    out = Collector()
    c = make(sim, out, channels=["depth"])
    c.start()
    try:
        assert wait_for(lambda: synced_with_diffs(c, out))
        sim.inject("binance", "gap")
        assert wait_for(lambda: c.stats()["gaps"] >= 1)
        assert wait_for(lambda: all(c.synced(s) for s in SYMBOLS))
        for s in SYMBOLS:
            assert books_converge(c, sim, "binance", s) is True
        st = c.stats()
    finally:
        assert c.stop() is True
    assert st["resyncs"] == st["gaps"] >= 1
    assert st["reconnects"] == 0
    resynced = [s for s in SYMBOLS if STATUS_RESYNC in out.statuses(s)]
    assert resynced
    for s in SYMBOLS:
        assert delta_chains_intact(out.all(), s)
    # two snapshots for a resynced symbol: the first sync and the resync
    snaps = out.data(KIND_BOOK_SNAPSHOT)
    sym = resynced[0].encode()
    assert len(np.unique(snaps["seq"][snaps["symbol"] == sym])) == 2


@pytest.mark.parametrize("abrupt", [True, False])
def test_disconnect_reconnects_and_books_recover(sim, abrupt):
    out = Collector()
    c = make(sim, out)
    c.start()
    try:
        assert wait_for(lambda: synced_with_diffs(c, out))
        sim.inject("binance", "disconnect", abrupt=abrupt)
        assert wait_for(lambda: c.stats()["reconnects"] == 1)
        assert wait_for(lambda: all(c.synced(s) for s in SYMBOLS))
        for s in SYMBOLS:
            assert books_converge(c, sim, "binance", s) is True
    finally:
        assert c.stop() is True
    st = out.statuses()
    assert st[:3] == [STATUS_CONNECTED, STATUS_DISCONNECTED, STATUS_CONNECTED]
    for s in SYMBOLS:
        assert delta_chains_intact(out.all(), s)
        t = out.data(KIND_TRADE)
        ids = t["seq"][t["symbol"] == s.encode()]
        assert len(ids) == len(np.unique(ids))  # no trade twice across the reconnect


def test_malformed_frames_are_counted_and_nothing_good_is_lost(sim):
    out = Collector()
    c = make(sim, out, channels=["trade", "bookTicker"])
    c.start()
    try:
        assert wait_for(lambda: len(out.data(KIND_TRADE)) >= 3)
        sim.inject("binance", "malformed", count=3)
        assert wait_for(lambda: c.stats()["malformed"] == 3)
        sent = frozen_counts(sim, c, out)
        st = c.stats()
    finally:
        assert c.stop() is True
    assert sent["malformed"] == 3
    assert st["reconnects"] == 0
    assert len(out.data(KIND_TRADE)) == sent["trade"]
    assert len(out.data(KIND_QUOTE)) == sent["bookTicker"]
    for s in SYMBOLS:
        assert trades_contiguous(out, s)


@pytest.mark.parametrize("fault", ["http_429", "http_418", "http_500", "http_malformed"])
def test_rest_errors_back_off_then_sync(sim, fault):
    sim.inject("binance", fault, count=2, retry_after=0)
    out = Collector()
    c = make(sim, out, channels=["depth"])
    c.start()
    try:
        assert wait_for(lambda: all(c.synced(s) for s in SYMBOLS))
        for s in SYMBOLS:
            assert books_converge(c, sim, "binance", s) is True
        st = c.stats()
    finally:
        assert c.stop() is True
    # error statuses are retried inside the REST client; a truncated 200 body is
    # counted as malformed and the snapshot fetched again
    expected = {"http_429": {"http_429": 2, "http_retries": 2},
                "http_418": {"http_418": 2, "http_retries": 2},
                "http_500": {"http_5xx": 2, "http_retries": 2},
                "http_malformed": {"malformed": 2, "http_retries": 0}}[fault]
    assert {k: st[k] for k in expected} == expected
    assert st["http_requests"] == sim.rest_stats("binance")["requests"]["/api/v3/depth"]


def test_stalled_data_with_pings_flowing_is_not_restarted(sim):
    c = make(sim, None, channels=["trade", "depth"], stale_after=0.5)
    c.start()
    try:
        assert wait_for(lambda: all(c.synced(s) for s in SYMBOLS))
        sim.inject("binance", "stall", seconds=1.2)  # data held, pings every 0.2 s
        assert not wait_for(lambda: c.stats()["stale"] > 0, timeout=1.4)
        st = c.stats()
    finally:
        assert c.stop() is True
    assert st["reconnects"] == 0
    assert st["types"]["ping"] >= 3


def test_silent_feed_is_restarted_by_the_watchdog(sim):
    # pings every 0.2 s keep a stalled feed alive (test above); a stall without
    # heartbeats silences them too, and the watchdog restarts the connection
    out = Collector()
    c = make(sim, out, channels=["trade", "depth"], stale_after=0.5)
    c.start()
    try:
        assert wait_for(lambda: all(c.synced(s) for s in SYMBOLS))
        assert wait_for(lambda: c.stats()["types"].get("ping", 0) >= 1)
        sim.inject("binance", "stall", seconds=0.9, heartbeats=False)
        assert wait_for(lambda: c.stats()["stale"] >= 1)
        # the stall is server-wide: a new connection may also fall silent once
        assert wait_for(lambda: c.stats()["reconnects"] >= 1
                        and all(c.synced(s) for s in SYMBOLS))
        n = len(out.data(KIND_BOOK_DELTA))
        assert wait_for(lambda: len(out.data(KIND_BOOK_DELTA)) > n)  # diffs flow again
        for s in SYMBOLS:
            assert books_converge(c, sim, "binance", s) is True
    finally:
        assert c.stop() is True
    assert STATUS_STALE in out.statuses()
    for s in SYMBOLS:
        assert delta_chains_intact(out.all(), s)


def test_server_shutdown_event_reconnects_at_once(sim):
    out = Collector()
    c = make(sim, out, channels=["trade"])
    c.start()
    try:
        assert wait_for(lambda: c.stats()["connected"])
        sim.inject("binance", "shutdown", close_after=30.0)
        # the client leaves on the event itself, well before the server closes
        assert wait_for(lambda: c.stats()["reconnects"] == 1, timeout=10.0)
        assert c.stats()["types"]["shutdown"] == 1
    finally:
        assert c.stop() is True


def test_max_connection_age_renews_connection(sim):
    c = make(sim, None, channels=["trade"], max_connection_age=0.3)
    c.start()
    try:
        assert wait_for(lambda: c.stats()["reconnects"] >= 1)
    finally:
        assert c.stop() is True
    assert c.stats()["age_reconnects"] >= 1


def test_arguments_are_validated():
    with pytest.raises(ValueError, match="depth_limit"):
        BinanceConnector(["BTC-USDT"], depth_limit=7)
    with pytest.raises(ValueError, match="channels"):
        BinanceConnector(["BTC-USDT"], channels=["kline"])
    with pytest.raises(ValueError, match="rest_url"):
        BinanceConnector(["BTC-USDT"], rest_url="ftp://x")
    with pytest.raises(ValueError, match="symbol"):
        BinanceConnector(["BTCUSDT"])
    with pytest.raises(ValueError, match="not one of"):
        BinanceConnector(["BTC-USDT"]).book("ETH-USDT")
    with pytest.raises(ValueError, match="not one of"):
        BinanceConnector(["BTC-USDT"]).synced("ETH-USDT")
    with pytest.raises(ValueError, match="depth_speed"):
        BinanceConnector(["BTC-USDT"], depth_speed="250ms")
    slow = BinanceConnector(["BTC-USDT"], channels=["depth"], depth_speed="1000ms")
    assert slow._ws_endpoint().endswith("/stream?streams=btcusdt@depth")


def test_restart_after_stop(sim):
    out = Collector()
    c = make(sim, out, channels=["depth"])
    for _ in range(2):
        c.start()
        try:
            assert wait_for(lambda: all(c.synced(s) for s in SYMBOLS))
            for s in SYMBOLS:
                assert books_converge(c, sim, "binance", s) is True
        finally:
            assert c.stop() is True
        assert not any(c.synced(s) for s in SYMBOLS)
    assert c.stats()["connected"] is False
    assert len(np.unique(out.data(KIND_BOOK_SNAPSHOT)["ts_recv"])) >= 4  # two per run


def test_local_book_procedure_step_by_step():
    """The documented procedure on a scripted real server pair (websocket + HTTP):
    a snapshot older than the first buffered ``U`` is fetched again, buffered
    events covered by the snapshot are dropped, a ``U`` jump restarts the sync."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from websockets.sync.server import serve

    snaps = [
        {"lastUpdateId": 90, "bids": [["10.0", "1"]], "asks": [["11.0", "1"]]},  # too old
        {"lastUpdateId": 105, "bids": [["10.0", "2"], ["9.0", "1"]], "asks": [["11.0", "3"]]},
        {"lastUpdateId": 115, "bids": [["20.0", "1"]], "asks": [["21.0", "1"]]},
    ]
    served = []
    done = threading.Event()

    class Rest(BaseHTTPRequestHandler):
        def do_GET(self):
            body = json.dumps(snaps[min(len(served), 2)]).encode()
            served.append(self.path)
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    def event(first, last, b=(), a=()):
        return json.dumps({"stream": "btcusdt@depth@100ms", "data": {
            "e": "depthUpdate", "E": 1700000000000, "s": "BTCUSDT", "U": first, "u": last,
            "b": [list(x) for x in b], "a": [list(x) for x in a]}})

    def until(cond):
        end = time.monotonic() + 3
        while not cond() and time.monotonic() < end and not done.is_set():
            time.sleep(0.01)

    def ws_handler(conn):
        conn.send(event(100, 102, b=[("10.0", "5")]))  # inside the snapshot: dropped
        conn.send(event(103, 106, b=[("9.5", "1")]))  # straddles lastUpdateId 105: applied
        conn.send(event(107, 108, a=[("11.0", "0"), ("12.0", "4")]))
        until(lambda: len(served) >= 2)
        time.sleep(0.1)
        conn.send(event(111, 112, b=[("1.0", "1")]))  # U jumps past 109: restart
        until(lambda: len(served) >= 3)
        time.sleep(0.1)
        conn.send(event(116, 117))  # no level changes, yet the ids move on
        conn.send(event(118, 119, b=[("20.0", "0"), ("19.5", "2")]))
        done.wait(5)

    http = ThreadingHTTPServer(("127.0.0.1", 0), Rest)
    http.daemon_threads = True
    ws = serve(ws_handler, "127.0.0.1", 0, compression=None, ping_interval=None)
    threads = [threading.Thread(target=http.serve_forever, kwargs={"poll_interval": 0.05}),
               threading.Thread(target=ws.serve_forever)]
    for t in threads:
        t.start()
    out = Collector()
    c = BinanceConnector(["BTC-USDT"], channels=["depth"], on_tick=out, depth_limit=100,
                         ws_url=f"ws://127.0.0.1:{ws.socket.getsockname()[1]}",
                         rest_url=f"http://127.0.0.1:{http.server_address[1]}", backoff=FAST)
    try:
        c.start()
        book = c.book("BTC-USDT")
        assert wait_for(lambda: book.levels("bid").tolist() == [[19.5, 2.0]]
                        and c.stats()["snapshots"] == 2)
        st = c.stats()
    finally:
        stopped = c.stop()
        done.set()
        ws.shutdown()
        http.shutdown()
        http.server_close()
        for t in threads:
            t.join(2)
    assert stopped is True
    assert book.levels("ask").tolist() == [[21.0, 1.0]]
    assert st["snapshot_refetches"] == 1 and st["gaps"] == 1 and st["resyncs"] == 1
    assert served[0] == "/api/v3/depth?symbol=BTCUSDT&limit=100" and len(served) == 3
    deltas = out.data(KIND_BOOK_DELTA)
    applied = sorted({(int(f), int(u)) for f, u in zip(deltas["seq_first"], deltas["seq"])})
    assert applied == [(103, 106), (107, 108), (118, 119)]
    snap_ids = sorted(set(out.data(KIND_BOOK_SNAPSHOT)["seq"].tolist()))
    assert snap_ids == [105, 115]
    assert out.statuses("BTC-USDT") == [STATUS_RESYNC]


def test_agg_trades(sim):
    out = Collector()
    c = make(sim, out, channels=["aggTrade"])
    c.start()
    try:
        assert wait_for(lambda: len(out.data(KIND_TRADE)) >= 3)
        assert c._ws_endpoint().endswith("streams=btcusdt@aggTrade/ethusdt@aggTrade")
        sent = frozen_counts(sim, c, out, "aggTrade")
    finally:
        assert c.stop() is True
    assert len(out.data(KIND_TRADE)) == sent["aggTrade"]
    for s in SYMBOLS:
        assert trades_contiguous(out, s)
