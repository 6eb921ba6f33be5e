"""Book-carrying connectors against hostile book messages, through the loopback simulators.

A book message the local book rejects (a level at price 0 here: the book wants a
finite price > 0) changes nothing and resyncs the book (a parser that refuses
the frame first leaves nothing to resync: the tests accept either, never a
book that took part of the message); a book whose best bid
reaches its best ask is reported with STATUS_CROSSED and, once normal again,
STATUS_UNCROSSED; the aggregator's NBBO leaves a crossed venue out.
"""
from __future__ import annotations

import json

import numpy as np

from connector_support import (
    Collector,
    book_side,
    books_converge,
    wait_for,
)
from hftsig.connectors import BinanceConnector, CoinbaseConnector, KrakenConnector
from hftsig.connectors.base import Backoff
from hftsig.market.ticks import (
    FLAG_LAST,
    KIND_BOOK_SNAPSHOT,
    KIND_QUOTE,
    STATUS_CROSSED,
    STATUS_RESYNC,
    STATUS_UNCROSSED,
    empty_ticks,
    exchange_code,
)
from hftsig.simulator import SimulatedExchanges

FAST = dict(initial=0.02, maximum=0.1, seed=0)
SPURIOUS = 1.25  # far below every simulated price: only a bad message can put it there
HIGH = 10.0**7  # far above every simulated price


def _sim(exchange, symbols):
    kw = {"ping_interval": 0.2} if exchange == "binance" else {"heartbeat_interval": 0.1}
    return SimulatedExchanges(symbols, exchanges=(exchange,), seed=3, rate=20.0, depth=20,
                              trade_rate=5.0, **kw)


def _coinbase_l2(sim, product, levels):
    """An l2_data update the simulator numbers in its own sequence_num when it sends it."""
    ups = ",".join('{"side":"%s","event_time":"2023-02-09T20:32:50.9Z","price_level":"%s",'
                   '"new_quantity":"%s"}' % lv for lv in levels)
    events = '[{"type":"update","product_id":"%s","updates":[%s]}]' % (product, ups)
    return sim.servers["coinbase"]._envelope("l2_data", events)


def _never_emitted(out, price):
    return not (out.data()["price"] == price).any()


def test_coinbase_rejected_level2_message_resyncs_and_leaves_no_trace():
    symbols = ["BTC-USD", "ETH-USD"]
    with _sim("coinbase", symbols) as sim:
        out = Collector()
        c = CoinbaseConnector(symbols, channels=["level2"], on_tick=out, backoff=Backoff(**FAST),
                              **sim.connector_kwargs("coinbase"))
        c.start()
        try:
            assert wait_for(lambda: all(c.synced(s) for s in symbols))
            # a good level, then one the book refuses: the whole message must go
            sim.inject("coinbase", "malformed", payload=_coinbase_l2(
                sim, "BTC-USD", [("bid", SPURIOUS, "5"), ("bid", "0", "1")]))
            assert wait_for(lambda: c.stats()["malformed"] == 1 and c.stats()["resyncs"] == 1)
            assert wait_for(lambda: all(c.synced(s) for s in symbols))
            for s in symbols:
                assert books_converge(c, sim, "coinbase", s) is True
            st = c.stats()
        finally:
            assert c.stop() is True
    assert st["reconnects"] == 0
    assert (SPURIOUS, 5.0) not in book_side(c.book("BTC-USD"), 1)
    assert _never_emitted(out, SPURIOUS)  # a rejected message reaches no consumer
    assert STATUS_RESYNC in out.statuses("BTC-USD")
    assert sim.connections("coinbase")[0]["received"]["unsubscribe"] == 1


def test_kraken_rejected_book_message_resubscribes_that_pair():
    symbols = ["BTC-USD", "ETH-USD"]
    with _sim("kraken", symbols) as sim:
        out = Collector()
        c = KrakenConnector(symbols, channels=["book"], depth=10, on_tick=out,
                            backoff=Backoff(**FAST), **sim.connector_kwargs("kraken"))
        c.start()
        try:
            assert wait_for(lambda: all(c.synced(s) for s in symbols))
            # a good level above every bid (so inside the checksummed top 10), then
            # one the book refuses
            bad = json.dumps({"channel": "book", "type": "update", "data": [{
                "symbol": "BTC/USD",
                "bids": [{"price": HIGH, "qty": 5}, {"price": 0, "qty": 1}],
                "asks": [], "checksum": 1, "timestamp": "2023-10-06T17:35:55.440295Z"}]})
            sim.inject("kraken", "malformed", payload=bad)
            assert wait_for(lambda: c.stats()["malformed"] == 1)
            assert wait_for(lambda: all(c.synced(s) for s in symbols))
            for s in symbols:
                assert books_converge(c, sim, "kraken", s, depth=10) is True
            st = c.stats()
        finally:
            assert c.stop() is True
    # nothing of it reached the book: no checksum failed afterwards
    assert st["checksum_failures"] == 0 and st["reconnects"] == 0
    assert _never_emitted(out, HIGH)
    if st["book_rejected"]:  # the book refused it: that pair alone was resubscribed
        assert st["resyncs"] == 1
        assert STATUS_RESYNC in out.statuses("BTC-USD")
        assert STATUS_RESYNC not in out.statuses("ETH-USD")
    else:  # the parser refused it already: nothing changed, nothing to resync
        assert st["resyncs"] == 0


def test_binance_rejected_diff_event_restarts_the_sync():
    symbols = ["BTC-USDT", "ETH-USDT"]
    with _sim("binance", symbols) as sim:
        out = Collector()
        c = BinanceConnector(symbols, channels=["depth"], depth_limit=100, on_tick=out,
                             backoff=Backoff(**FAST), **sim.connector_kwargs("binance"))
        c.start()
        try:
            assert wait_for(lambda: all(c.synced(s) for s in symbols))
            # U..u covers any local id: the event is applied, not skipped as old
            bad = json.dumps({"stream": "btcusdt@depth@100ms", "data": {
                "e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": 1, "u": 10**15,
                "b": [[str(SPURIOUS), "5"], ["0", "1"]], "a": []}})
            sim.inject("binance", "malformed", payload=bad)
            assert wait_for(lambda: c.stats()["malformed"] == 1)
            assert wait_for(lambda: all(c.synced(s) for s in symbols))
            for s in symbols:
                assert books_converge(c, sim, "binance", s) is True
            st = c.stats()
        finally:
            assert c.stop() is True
    assert st["reconnects"] == 0 and st["gaps"] == 0
    assert _never_emitted(out, SPURIOUS)
    snaps = out.data(KIND_BOOK_SNAPSHOT)
    n_snaps = len(np.unique(snaps["seq"][snaps["symbol"] == b"BTC-USDT"]))
    if st["book_rejected"]:  # the book refused it: synced afresh from a new snapshot
        assert st["resyncs"] == 1 and n_snaps == 2
        assert STATUS_RESYNC in out.statuses("BTC-USDT")
    else:  # the parser refused it already: nothing changed, nothing to resync
        assert st["resyncs"] == 0 and n_snaps == 1


def test_crossed_book_is_reported_then_uncrossed():
    symbols = ["BTC-USD"]
    with _sim("coinbase", symbols) as sim:
        out = Collector()
        c = CoinbaseConnector(symbols, channels=["level2"], on_tick=out, backoff=Backoff(**FAST),
                              **sim.connector_kwargs("coinbase"))
        c.start()
        try:
            assert wait_for(lambda: c.synced("BTC-USD"))
            assert not c.book("BTC-USD").crossed
            # an offer far below the best bid: valid levels, a crossed book
            sim.inject("coinbase", "malformed",
                       payload=_coinbase_l2(sim, "BTC-USD", [("offer", SPURIOUS, "1")]))
            assert wait_for(lambda: STATUS_CROSSED in out.statuses("BTC-USD"))
            assert c.book("BTC-USD").status == "crossed"
            sim.inject("coinbase", "malformed",
                       payload=_coinbase_l2(sim, "BTC-USD", [("offer", SPURIOUS, "0")]))
            assert wait_for(lambda: STATUS_UNCROSSED in out.statuses("BTC-USD"))
            assert books_converge(c, sim, "coinbase", "BTC-USD") is True
            st = c.stats()
        finally:
            assert c.stop() is True
    statuses = [s for s in out.statuses("BTC-USD") if s in (STATUS_CROSSED, STATUS_UNCROSSED)]
    assert statuses == [STATUS_CROSSED, STATUS_UNCROSSED]
    assert st["crossed_books"] == 1 and st["malformed"] == 0 and st["resyncs"] == 0
    assert not c.book("BTC-USD").crossed


def test_nbbo_and_arbitrage_leave_a_crossed_venue_out():
    """Kraken's book is crossed (bid 101 over ask 99, lost messages); Coinbase quotes
    100/100.2.  Taken at face value that is a 'best bid' of 101 above every ask and
    a free cross-venue trade; neither the NBBO nor the detector may take it."""
    from hftsig.arbitrage.cycles import CycleArbitrage
    from hftsig.market.aggregator import Aggregator
    from hftsig.market.recorder import ReplayConnector

    t = empty_ticks(3)
    t["symbol"] = b"BTC-USD"
    t["ts_event"] = t["ts_recv"] = [1, 1, 2]
    t["exchange"] = [exchange_code("kraken")] * 2 + [exchange_code("coinbase")]
    t["kind"][:2] = KIND_BOOK_SNAPSHOT
    t["side"][:2] = [1, -1]
    t["price"][:2] = [101.0, 99.0]
    t["size"][:2] = 1.0
    t["flags"][0] = 2  # FLAG_SNAPSHOT_BEGIN
    t["flags"][1] = FLAG_LAST
    t["kind"][2] = KIND_QUOTE
    t["bid_px"][2], t["bid_sz"][2], t["ask_px"][2], t["ask_sz"][2] = 100.0, 1.0, 100.2, 1.0
    t["flags"][2] = FLAG_LAST
    with Aggregator([ReplayConnector(t)], clock="data") as agg:
        assert agg.wait_finished(timeout=5)
        nb = agg.nbbo("BTC-USD")
        kraken_top = agg.top("kraken", "BTC-USD")
        arb = CycleArbitrage(fees=0.0, max_quote_age_ms=1e3, tops=agg.top, book_quotes=True)
        events = arb.update(t)
    assert (kraken_top.bid_px, kraken_top.ask_px) == (101.0, 99.0)  # the data is kept
    assert (nb.bid_px, nb.bid_venue, nb.ask_px, nb.ask_venue) == (100.0, "coinbase", 100.2,
                                                                  "coinbase")
    assert events == []
