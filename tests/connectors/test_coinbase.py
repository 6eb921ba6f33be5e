"""CoinbaseConnector (Advanced Trade) against the loopback Coinbase simulator."""
from __future__ import annotations

import json
from decimal import Decimal

import numpy as np
import pytest
import websocket

from connector_support import Collector, books_converge, wait_for
from hftsig.connectors import CoinbaseConnector
from hftsig.connectors.base import Backoff
from hftsig.market.normalize import Normalizer
from hftsig.market.ticks import (
    KIND_BOOK_SNAPSHOT,
    KIND_TRADE,
    STATUS_CONNECTED,
    STATUS_DISCONNECTED,
    STATUS_RESYNC,
    STATUS_STALE,
)
from hftsig.simulator import SimulatedExchanges

SYMBOLS = ["BTC-USD", "ETH-USD"]


@pytest.fixture
def sim():
    with SimulatedExchanges(SYMBOLS, exchanges=("coinbase",), seed=5, rate=20.0, depth=20,
                            trade_rate=10.0, heartbeat_interval=0.1) as s:
        yield s


def make(sim, out, **kw):
    kw.setdefault("backoff", Backoff(initial=0.02, maximum=0.1, seed=0))
    return CoinbaseConnector(SYMBOLS, on_tick=out, **sim.connector_kwargs("coinbase"), **kw)


def ready(c):
    return all(c.synced(s) for s in SYMBOLS)


def converge_all(c, sim):
    for s in SYMBOLS:
        assert books_converge(c, sim, "coinbase", s) is True


def frozen_items(sim, out):
    """Stall data, let the wire drain, return the server's record counts by frame type."""
    # inject() returns once the frame being written is out: from then on the
    # data counters stay put for the rest of the test
    sim.inject("coinbase", "stall", seconds=60.0, heartbeats=True)

    def items():
        total = {}
        for conn in sim.connections("coinbase"):
            for k, v in conn["items"].items():
                total[k] = total.get(k, 0) + v
        return total

    first = items()
    wait_for(lambda: len(out.data(KIND_TRADE)) >= first.get("market_trades", 0))
    return first


def test_channels_books_and_sequence(sim):
    out = Collector()
    c = make(sim, out)
    c.start()
    try:
        assert wait_for(lambda: ready(c))
        converge_all(c, sim)
        assert wait_for(lambda: len(out.data(KIND_TRADE)) >= 5)
        items = frozen_items(sim, out)
        n_trades = len(out.data(KIND_TRADE))

        def data_frames():  # heartbeats keep flowing during the stall: leave them out
            sent = sim.connections("coinbase")[0]["sent"]
            st = c.stats()
            return (st["messages"] - st["types"].get("heartbeat", 0),
                    sum(sent.values()) - sent.get("heartbeats", 0))

        # sequence_num intact: every frame the server sent was counted once
        assert wait_for(lambda: data_frames()[0] == data_frames()[1]), data_frames()
        st = c.stats()
    finally:
        assert c.stop() is True
    conn = sim.connections("coinbase")[0]
    # one subscribe per channel, heartbeats included
    assert conn["received"]["subscribe"] == 4
    assert st["gaps"] == 0 and st["malformed"] == 0 and st["reconnects"] == 0
    assert n_trades == items["market_trades"]
    assert out.statuses()[0] == STATUS_CONNECTED


@pytest.mark.parametrize("drop", [True, False])
def test_sequence_gap_resubscribes_level2(sim, drop):
    out = Collector()
    c = make(sim, out, channels=["level2"])
    c.start()
    try:
        assert wait_for(lambda: ready(c))
        sim.inject("coinbase", "gap", drop=drop)
        assert wait_for(lambda: c.stats()["gaps"] == 1)
        assert wait_for(lambda: ready(c))
        converge_all(c, sim)
        st = c.stats()
    finally:
        assert c.stop() is True
    assert st["resyncs"] == 1 and st["reconnects"] == 0
    conn = sim.connections("coinbase")[0]
    assert conn["received"]["unsubscribe"] == 1
    for s in SYMBOLS:
        assert STATUS_RESYNC in out.statuses(s)
    snaps = out.data(KIND_BOOK_SNAPSHOT)
    for s in SYMBOLS:
        assert len(np.unique(snaps["ts_recv"][snaps["symbol"] == s.encode()])) == 2


def test_disconnect_and_malformed(sim):
    out = Collector()
    c = make(sim, out)
    c.start()
    try:
        assert wait_for(lambda: ready(c) and all(
            (out.data(KIND_TRADE)["symbol"] == s.encode()).any() for s in SYMBOLS))
        sim.inject("coinbase", "malformed", count=2)
        assert wait_for(lambda: c.stats()["malformed"] == 2)
        assert c.stats()["gaps"] == 0  # a malformed frame is not a sequence gap
        sim.inject("coinbase", "disconnect", abrupt=True)
        assert wait_for(lambda: c.stats()["reconnects"] == 1 and ready(c))
        converge_all(c, sim)
        # the new subscription's market_trades snapshot repeats recent trades
        assert wait_for(lambda: c.stats().get("replayed_trades_dropped", 0) > 0)
        st = c.stats()
    finally:
        assert c.stop() is True
    assert st["gaps"] == 0  # sequence_num restarts per connection
    assert out.statuses()[:3] == [STATUS_CONNECTED, STATUS_DISCONNECTED, STATUS_CONNECTED]
    t = out.data(KIND_TRADE)
    for s in SYMBOLS:
        ids = t["seq"][t["symbol"] == s.encode()]
        assert len(ids) > 0 and len(np.unique(ids)) == len(ids)  # none twice


def test_stall_with_heartbeats_keeps_connection_silence_restarts(sim):
    out = Collector()
    c = make(sim, out, stale_after=0.5)
    c.start()
    try:
        assert wait_for(lambda: ready(c))
        sim.inject("coinbase", "stall", seconds=1.2, heartbeats=True)
        assert not wait_for(lambda: c.stats()["stale"] > 0, timeout=1.4)
        assert c.stats()["types"]["heartbeat"] >= 5  # what kept the watchdog quiet
        sim.inject("coinbase", "stall", seconds=0.9, heartbeats=False)
        assert wait_for(lambda: c.stats()["stale"] >= 1)
        assert wait_for(lambda: c.stats()["reconnects"] >= 1 and ready(c))
        converge_all(c, sim)
    finally:
        assert c.stop() is True
    assert STATUS_STALE in out.statuses()


def test_market_trades_side_is_the_makers_and_ticks_carry_the_aggressors(sim):
    """Coinbase prints a buyer lifting the ask as ``"side": "SELL"`` (the maker's
    side, as in recorded sessions); the simulator must send it so and the
    normalizer must turn it into the aggressor's side."""
    ws = websocket.create_connection(sim.connector_kwargs("coinbase")["ws_url"], timeout=10)
    try:
        for ch in ("level2", "market_trades"):
            ws.send(json.dumps({"type": "subscribe", "product_ids": ["BTC-USD"], "channel": ch}))
        norm = Normalizer("coinbase")
        bids, asks = {}, {}
        agree = classified = 0
        for _ in range(20000):
            if classified >= 20:
                break
            frame = ws.recv()
            msg = json.loads(frame)
            ticks = norm.parse(frame, 0)
            if msg.get("channel") == "l2_data":
                for ev in msg["events"]:
                    if ev["type"] == "snapshot":
                        bids.clear()
                        asks.clear()
                    for u in ev["updates"]:
                        book = bids if u["side"] == "bid" else asks
                        if Decimal(u["new_quantity"]) == 0:
                            book.pop(Decimal(u["price_level"]), None)
                        else:
                            book[Decimal(u["price_level"])] = Decimal(u["new_quantity"])
            elif msg.get("channel") == "market_trades":
                wire = [t for ev in msg["events"] for t in ev["trades"]]
                # the tick's side is the opposite of the wire's, trade by trade
                assert list(ticks["side"]) == [1 if t["side"] == "SELL" else -1 for t in wire]
                if msg["events"][0]["type"] == "snapshot" or not (bids and asks):
                    continue  # trades from before the book we hold
                for t in wire:
                    p = Decimal(t["price"])
                    if p >= min(asks):
                        classified += 1
                        agree += t["side"] == "SELL"
                    elif p <= max(bids):
                        classified += 1
                        agree += t["side"] == "BUY"
        # the batch of trades leaves up to 250 ms of book changes before it: a
        # few may be judged against a book that moved, never most of them
        assert classified >= 20 and agree >= 0.8 * classified, (agree, classified)
    finally:
        ws.close()
