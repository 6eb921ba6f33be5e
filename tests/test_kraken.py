"""KrakenConnector (WebSocket v2) against the loopback Kraken simulator."""
from __future__ import annotations

import time

import numpy as np
import pytest

from connector_support import Collector, books_converge, wait_for, no_thread_leaks  # noqa: F401 (autouse fixture)
from connectors import KrakenConnector
from connectors.base import Backoff
from hftsig.simulator import SimulatedExchanges
from hftsig.ticks import (
    KIND_BOOK_SNAPSHOT,
    KIND_QUOTE,
    KIND_TRADE,
    STATUS_CONNECTED,
    STATUS_DISCONNECTED,
    STATUS_RESYNC,
    STATUS_STALE,
)

SYMBOLS = ["BTC-USD", "ETH-USD"]
DEPTH = 10


@pytest.fixture
def sim():
    with SimulatedExchanges(SYMBOLS, exchanges=("kraken",), seed=11, rate=20.0, depth=20,
                            trade_rate=10.0, heartbeat_interval=0.1) as s:
        yield s


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
    sim.inject("kraken", "stall", seconds=1.0, heartbeats=True)
    time.sleep(0.05)  # a frame being written when the stall began is counted after it

    def items():
        total = {}
        for conn in sim.connections("kraken"):
            for k, v in conn["items"].items():
                total[k] = total.get(k, 0) + v
        return total

    first = items()
    wait_for(lambda: len(out.data(KIND_TRADE)) >= first.get("trade", 0)
             and len(out.data(KIND_QUOTE)) >= first.get("ticker", 0), timeout=0.8)
    return items()


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
        assert wait_for(lambda: c.stats()["stale"] >= 1, timeout=2.0)
        assert wait_for(lambda: c.stats()["reconnects"] >= 1 and ready(c), timeout=3.0)
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
