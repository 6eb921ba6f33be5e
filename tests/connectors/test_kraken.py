"""KrakenConnector (WebSocket v2) against the loopback Kraken simulator."""
from __future__ import annotations

import contextlib
import json
import threading
from pathlib import Path

import numpy as np
import pytest
from websockets.sync.server import serve

from connector_support import Collector, books_converge, wait_for
from hftsig.connectors import KrakenConnector
from hftsig.connectors.base import Backoff
from hftsig.market.ticks import (
    KIND_BOOK_SNAPSHOT,
    KIND_QUOTE,
    KIND_TRADE,
    STATUS_CONNECTED,
    STATUS_DISCONNECTED,
    STATUS_RESYNC,
    STATUS_STALE,
)
from hftsig.simulator import SimulatedExchanges

SYMBOLS = ["BTC-USD", "ETH-USD"]
DEPTH = 10


@pytest.fixture
def sim():
    with SimulatedExchanges(SYMBOLS, exchanges=("kraken",), seed=11, rate=20.0, depth=20,
                            trade_rate=10.0, heartbeat_interval=0.1) as s:
        yield s


GUIDE_BOOK = (Path(__file__).parents[1] / "data" / "samples" / "kraken"
              / "book_checksum_guide_snapshot.json").read_text().strip()


@contextlib.contextmanager
def scripted_kraken(respond):
    """A real websocket server on loopback calling ``respond(conn, request)`` for each
    request a client sends; yields ``(ws_url, requests received)``."""
    received = []
    done = threading.Event()

    def handler(conn):
        while not done.is_set():
            try:
                req = json.loads(conn.recv(timeout=0.1))
            except TimeoutError:
                continue
            except Exception:
                return
            received.append(req)
            respond(conn, req)

    server = serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None)
    th = threading.Thread(target=server.serve_forever)
    th.start()
    try:
        yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}/v2", received
    finally:
        done.set()
        server.shutdown()
        th.join(2)


def make(sim, out, **kw):
    kw.setdefault("backoff", Backoff(initial=0.02, maximum=0.1, seed=0))
    return KrakenConnector(SYMBOLS, on_tick=out, depth=DEPTH, **sim.connector_kwargs("kraken"), **kw)


def ready(c):
    return all(c.synced(s) for s in SYMBOLS)


def converge_all(c, sim):
    for s in SYMBOLS:
        assert books_converge(c, sim, "kraken", s, depth=DEPTH) is True


def frozen_items(sim, out):
    """Stall data, let the wire drain, return the server's record counts by frame type."""
    # inject() returns once the frame being written is out: from then on the
    # data counters stay put for the rest of the test
    sim.inject("kraken", "stall", seconds=60.0, heartbeats=True)

    def items():
        total = {}
        for conn in sim.connections("kraken"):
            for k, v in conn["items"].items():
                total[k] = total.get(k, 0) + v
        return total

    first = items()
    wait_for(lambda: len(out.data(KIND_TRADE)) >= first.get("trade", 0)
             and len(out.data(KIND_QUOTE)) >= first.get("ticker", 0))
    return first


def test_books_checksummed_and_equal_to_simulator(sim):
    out = Collector()
    c = make(sim, out)
    c.start()
    try:
        assert wait_for(lambda: ready(c))
        converge_all(c, sim)
        assert wait_for(lambda: len(out.data(KIND_TRADE)) >= 5)
        items = frozen_items(sim, out)
        n_trades, n_quotes = len(out.data(KIND_TRADE)), len(out.data(KIND_QUOTE))
        st = c.stats()
    finally:
        assert c.stop() is True
    # precisions came from the instrument channel, as the simulator lists them
    for s in SYMBOLS:
        spec = sim.model.spec("kraken", s)
        assert c.precisions()[s] == (spec.price_decimals, spec.qty_decimals)
    assert st["checksum_failures"] == 0 and st["resyncs"] == 0 and st["malformed"] == 0
    assert n_trades == items["trade"]
    assert n_quotes == items["ticker"]
    t = out.data(KIND_TRADE)
    for s in SYMBOLS:
        ids = t["seq"][t["symbol"] == s.encode()]
        assert len(ids) and (np.diff(ids) == 1).all()
    assert out.statuses()[0] == STATUS_CONNECTED


@pytest.mark.parametrize("fault", ["bad_checksum", "gap"])
def test_checksum_mismatch_resubscribes_only_that_pair(sim, fault):
    out = Collector()
    c = make(sim, out, channels=["book"])
    c.start()
    try:
        assert wait_for(lambda: ready(c))
        sim.inject("kraken", fault)  # every subscribed pair's next update
        assert wait_for(lambda: c.stats()["checksum_failures"] >= 1)
        assert wait_for(lambda: ready(c))
        converge_all(c, sim)
        st = c.stats()
    finally:
        assert c.stop() is True
    assert st["reconnects"] == 0
    assert st["resyncs"] == st["checksum_failures"]
    conn = sim.connections("kraken")[0]
    # the first subscribe covered both pairs; each resync unsubscribes and
    # subscribes the one failing pair
    assert conn["received"]["unsubscribe"] == st["checksum_failures"]
    resynced = [s for s in SYMBOLS if STATUS_RESYNC in out.statuses(s)]
    assert len(resynced) == st["checksum_failures"]
    snaps = out.data(KIND_BOOK_SNAPSHOT)
    for s in resynced:
        assert len(np.unique(snaps["ts_recv"][snaps["symbol"] == s.encode()])) == 2


def test_disconnect_reconnects_and_recovers_books(sim):
    out = Collector()
    c = make(sim, out)
    c.start()
    try:
        assert wait_for(lambda: ready(c))
        sim.inject("kraken", "disconnect", abrupt=True)
        assert wait_for(lambda: c.stats()["reconnects"] == 1 and ready(c))
        converge_all(c, sim)
    finally:
        assert c.stop() is True
    assert out.statuses()[:3] == [STATUS_CONNECTED, STATUS_DISCONNECTED, STATUS_CONNECTED]
    t = out.data(KIND_TRADE)
    for s in SYMBOLS:
        ids = t["seq"][t["symbol"] == s.encode()]
        assert len(ids) == len(np.unique(ids))  # trade snapshot off: no replays


def test_malformed_frame_counted_nothing_lost(sim):
    out = Collector()
    c = make(sim, out)
    c.start()
    try:
        assert wait_for(lambda: ready(c) and len(out.data(KIND_TRADE)) >= 3)
        sim.inject("kraken", "malformed", count=2)
        assert wait_for(lambda: c.stats()["malformed"] == 2)
        items = frozen_items(sim, out)
        n_trades = len(out.data(KIND_TRADE))
        sim.inject("kraken", "stall", seconds=0)  # end the stall: held data flows again
        converge_all(c, sim)  # after the stall: the model moved on meanwhile
        st = c.stats()
    finally:
        assert c.stop() is True
    assert st["reconnects"] == 0 and st["checksum_failures"] == 0
    assert n_trades == items["trade"]


def test_stall_with_heartbeats_keeps_connection_silence_restarts(sim):
    out = Collector()
    c = make(sim, out, stale_after=0.5)
    c.start()
    try:
        assert wait_for(lambda: ready(c))
        sim.inject("kraken", "stall", seconds=1.2, heartbeats=True)
        assert not wait_for(lambda: c.stats()["stale"] > 0, timeout=1.4)
        assert c.stats()["types"]["heartbeat"] >= 5  # what kept the watchdog quiet
        sim.inject("kraken", "stall", seconds=0.9, heartbeats=False)
        assert wait_for(lambda: c.stats()["stale"] >= 1)
        assert wait_for(lambda: c.stats()["reconnects"] >= 1 and ready(c))
        converge_all(c, sim)
    finally:
        assert c.stop() is True
    assert STATUS_STALE in out.statuses()


def test_arguments_are_validated():
    with pytest.raises(ValueError, match="depth"):
        KrakenConnector(["BTC-USD"], depth=15)
    with pytest.raises(ValueError, match="precisions"):
        KrakenConnector(["BTC-USD"], precisions={"ETH-USD": (2, 8)})
    with pytest.raises(ValueError, match="channels"):
        KrakenConnector(["BTC-USD"], channels=["ohlc"])


def test_docs_checksum_sample_and_multi_pair_message():
    """A scripted real server: the instrument snapshot gives BTC/USD precisions
    (1, 8); the book snapshot from Kraken's checksum guide verifies (checksum
    3310070434); a message with two book entries is checked entry by entry and
    only the pair whose checksum fails is resubscribed."""
    instrument = json.dumps({"channel": "instrument", "type": "snapshot", "data": {
        "assets": [], "pairs": [
            {"symbol": "BTC/USD", "base": "BTC", "quote": "USD", "price_precision": 1,
             "qty_precision": 8},
            {"symbol": "ETH/USD", "base": "ETH", "quote": "USD", "price_precision": 2,
             "qty_precision": 8}]}})
    eth_snapshot = {"symbol": "ETH/USD", "bids": [{"price": 3000.5, "qty": 1.0}],
                    "asks": [{"price": 3001.25, "qty": 2.0}]}
    from hftsig.simulator.kraken import kraken_checksum  # the simulator's own implementation
    eth_ck = kraken_checksum([(300050, 100000000)], [(300125, 200000000)], 2, 8)

    def respond(conn, req):
        p = req.get("params", {})
        if p.get("channel") == "instrument":
            conn.send(instrument)
        elif p.get("channel") == "book" and req["method"] == "subscribe":
            if len(p["symbol"]) == 2:  # first subscription: the guide book, then ETH
                conn.send(GUIDE_BOOK)
                conn.send(json.dumps({"channel": "book", "type": "snapshot",
                                      "data": [dict(eth_snapshot, checksum=eth_ck)]}))
                # one message, two entries: BTC's checksum is wrong, ETH's right
                conn.send(json.dumps({"channel": "book", "type": "update", "data": [
                    {"symbol": "BTC/USD", "bids": [], "asks": [{"price": "45285.2", "qty": "0.0"}],
                     "checksum": 1},
                    {"symbol": "ETH/USD", "bids": [{"price": 3000.5, "qty": 0.5}], "asks": [],
                     "checksum": kraken_checksum([(300050, 50000000)], [(300125, 200000000)], 2, 8)},
                ]}))
            else:  # the resubscription of the failing pair alone
                conn.send(GUIDE_BOOK)

    out = Collector()
    with scripted_kraken(respond) as (ws_url, received):
        c = KrakenConnector(["BTC-USD", "ETH-USD"], channels=["book"], on_tick=out, ws_url=ws_url,
                            backoff=Backoff(initial=0.02, maximum=0.1, seed=0))
        try:
            c.start()
            assert wait_for(lambda: c.stats()["checksum_failures"] == 1 and ready(c))
            st = c.stats()
        finally:
            stopped = c.stop()
    assert stopped is True
    assert c.precisions() == {"BTC-USD": (1, 8), "ETH-USD": (2, 8)}
    assert st["checksum_failures"] == 1 and st["resyncs"] == 1
    assert c.book("BTC-USD").best_bid() == (45283.5, 0.1)  # the guide's book, again
    assert c.book("ETH-USD").best_bid() == (3000.5, 0.5)  # its update applied
    unsub = [r for r in received if r["method"] == "unsubscribe"]
    assert [r["params"]["symbol"] for r in unsub] == [["BTC/USD"]]
    assert out.statuses("BTC-USD") == [STATUS_RESYNC] and out.statuses("ETH-USD") == []


def test_instrument_snapshot_with_unmappable_pairs_still_gives_precisions():
    """A real instrument snapshot lists pairs without a canonical name (the
    staking asset ETH2.S/ETH) and may carry a precision that is no number of
    decimals: those entries are skipped, the subscribed pair's precisions are
    taken, and its book is subscribed and checksummed."""
    instrument = json.dumps({"channel": "instrument", "type": "snapshot", "data": {
        "assets": [], "pairs": [
            {"symbol": "ETH2.S/ETH", "base": "ETH2.S", "quote": "ETH", "price_precision": 4,
             "qty_precision": 8},
            {"symbol": "BTC/USD", "base": "BTC", "quote": "USD", "price_precision": 1,
             "qty_precision": 8},
            {"symbol": "ETH/USD", "base": "ETH", "quote": "USD", "price_precision": 1e400,
             "qty_precision": 8}]}}).replace("Infinity", "1e400")

    def respond(conn, req):
        p = req.get("params", {})
        if p.get("channel") == "instrument":
            conn.send(instrument)
        elif p.get("channel") == "book" and req["method"] == "subscribe":
            conn.send(GUIDE_BOOK)

    with scripted_kraken(respond) as (ws_url, _):
        c = KrakenConnector(["BTC-USD"], channels=["book"], on_tick=Collector(), ws_url=ws_url,
                            backoff=Backoff(initial=0.02, maximum=0.1, seed=0))
        try:
            c.start()
            assert wait_for(lambda: c.synced("BTC-USD"))
            st = c.stats()
        finally:
            stopped = c.stop()
    assert stopped is True
    assert c.precisions() == {"BTC-USD": (1, 8)}
    assert st["checksum_failures"] == 0 and c.book("BTC-USD").best_bid() == (45283.5, 0.1)
    assert st["instruments_skipped"] >= 2  # ETH2.S/ETH and the 1e400 precision, per snapshot
