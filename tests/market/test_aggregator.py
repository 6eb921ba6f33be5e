"""Aggregator: queue, overflow, consumers, state and stats.

The first part drives the aggregator with ReplayConnector (a real connector
object sending synthetic tick arrays from its own thread); the end-to-end part
at the bottom runs the four connectors against the loopback simulators.
"""
import logging
import threading
import time

import numpy as np
import pytest

from hftsig.market.aggregator import Aggregator, TickArray
from hftsig.market.recorder import ReplayConnector
from hftsig.market.ticks import (
    FLAG_LAST,
    KIND_PRICE,
    KIND_QUOTE,
    KIND_STATUS,
    KIND_TRADE,
    STATUS_CONNECTED,
    STATUS_DISCONNECTED,
    TICK_DTYPE,
    empty_ticks,
    exchange_code,
    exchange_name,
)

EXCHANGES = ["binance", "kraken", "coinbase"]
SYMBOLS = ["BTC-USD", "ETH-USD", "SOL-USD"]
T0 = 1_700_000_000_000_000_000


def synthetic_quotes(n, seed=0, exchanges=EXCHANGES, symbols=SYMBOLS, step_ns=1000):
    """n one-record quote messages with random prices, seq = 0..n-1."""
    rng = np.random.default_rng(seed)
    t = empty_ticks(n)
    t["kind"] = KIND_QUOTE
    t["flags"] = FLAG_LAST
    t["exchange"] = [exchange_code(exchanges[i]) for i in rng.integers(0, len(exchanges), n)]
    t["symbol"] = [symbols[i].encode() for i in rng.integers(0, len(symbols), n)]
    mid = 100.0 + rng.standard_normal(n)
    spread = rng.uniform(0.01, 0.5, n)
    t["bid_px"] = np.round(mid - spread / 2, 2)
    t["ask_px"] = np.round(mid + spread / 2, 2)
    t["bid_sz"] = rng.uniform(0.1, 5, n)
    t["ask_sz"] = rng.uniform(0.1, 5, n)
    t["ts_recv"] = T0 + np.arange(n, dtype=np.int64) * step_ns
    t["ts_event"] = t["ts_recv"] - rng.integers(0, 2_000_000, n)
    t["seq"] = np.arange(n)
    return t


def expected_nbbo(t, symbol):
    """Brute force: latest quote per exchange, then best bid / best ask."""
    last = {}
    for r in t:
        if r["kind"] == KIND_QUOTE and r["symbol"] == symbol.encode():
            last[int(r["exchange"])] = r
    bid = max(last.values(), key=lambda r: (r["bid_px"], -r["ts_recv"]))
    ask = min(last.values(), key=lambda r: (r["ask_px"], r["ts_recv"]))
    return bid, ask


def assert_same_ticks(a, b):
    """Field-by-field equality, NaN equal to NaN (structured == treats NaN as unequal)."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype == TICK_DTYPE and a.shape == b.shape
    for f in TICK_DTYPE.names:
        np.testing.assert_array_equal(a[f], b[f], err_msg=f)


def run_replay(ticks, **kw):
    agg = Aggregator([ReplayConnector(ticks)], clock="data", **kw)
    return agg


def test_validation():
    c = ReplayConnector(empty_ticks(0))
    with pytest.raises(ValueError, match="connectors"):
        Aggregator([])
    with pytest.raises(TypeError, match="connectors"):
        Aggregator([object()])
    with pytest.raises(ValueError, match="queue_size"):
        Aggregator([c], queue_size=0)
    with pytest.raises(ValueError, match="overflow"):
        Aggregator([c], overflow="drop_newest")
    with pytest.raises(ValueError, match="dispatch"):
        Aggregator([c], dispatch="thread")
    with pytest.raises(ValueError, match="dispatch='connector' needs overflow='block'"):
        Aggregator([c], overflow="drop_oldest", dispatch="connector")
    assert Aggregator([c]).dispatch == "worker"
    assert Aggregator([c], dispatch="connector").dispatch == "connector"
    with pytest.raises(ValueError, match="stale_after"):
        Aggregator([c], stale_after=0)
    with pytest.raises(ValueError, match="clock"):
        Aggregator([c], clock="exchange")
    agg = Aggregator([c])
    with pytest.raises(TypeError, match="callback"):
        agg.on_tick(42)
    with pytest.raises(ValueError, match="kind"):
        agg.on_tick(print, kinds=["quotes"])
    with pytest.raises(ValueError, match="timeout"):
        agg.ticks(timeout=-1)
    with pytest.raises(TypeError, match="TICK_DTYPE"):
        ReplayConnector(np.zeros(3))


def test_every_consumer_sees_every_tick_in_order():
    t = synthetic_quotes(3000, seed=1)
    agg = run_replay(t)
    got_cb = []
    agg.on_tick(lambda a: got_cb.append(a["seq"].copy()))
    it_single = agg.ticks(timeout=5)
    it_batch = agg.ticks(timeout=5, batches=True)
    single, batched = [], []

    def consume():
        single.extend(int(r["seq"]) for r in it_single)

    th = threading.Thread(target=consume)
    th.start()
    with agg:
        assert agg.wait_finished(timeout=20)
        for b in it_batch:
            batched.append(b["seq"].copy())
            if sum(map(len, batched)) == len(t):
                break
    th.join(10)
    seq = np.arange(len(t))
    np.testing.assert_array_equal(np.concatenate(got_cb), seq)
    np.testing.assert_array_equal(np.array(single), seq)
    np.testing.assert_array_equal(np.concatenate(batched), seq)
    d = agg.drain()
    assert isinstance(d, TickArray) and d.dtype == TICK_DTYPE
    assert_same_ticks(d.view(np.ndarray), t)
    assert len(agg.drain()) == 0  # drained
    df = d.to_pandas()
    assert len(df) == len(t) and set(df["exchange"]) == set(EXCHANGES)
    s = agg.stats()["replay"]
    assert s["ticks"] == len(t) and s["messages"] == len(t) and s["dropped"] == 0


def test_filters():
    t = synthetic_quotes(600, seed=2)
    trades = empty_ticks(50)
    trades["kind"] = KIND_TRADE
    trades["flags"] = FLAG_LAST
    trades["symbol"] = b"BTC-USD"
    trades["exchange"] = exchange_code("kraken")
    trades["price"] = 100.0
    trades["size"] = 1.0
    allt = np.concatenate([t, trades])
    allt["ts_recv"] = T0 + np.arange(len(allt))
    agg = run_replay(allt)
    got = {"trade": [], "eth": [], "kraken_sol_quote": []}
    agg.on_tick(lambda a: got["trade"].append(a.copy()), kinds="trade")
    agg.on_tick(lambda a: got["eth"].append(a.copy()), symbols=["eth-usd"])
    agg.on_tick(lambda a: got["kraken_sol_quote"].append(a.copy()), kinds=[KIND_QUOTE],
                symbols="SOL-USD", exchanges=["kraken"])
    with agg:
        assert agg.wait_finished(timeout=20)
    tr = np.concatenate(got["trade"])
    assert len(tr) == 50 and (tr["kind"] == KIND_TRADE).all()
    eth = np.concatenate(got["eth"])
    assert_same_ticks(eth, allt[allt["symbol"] == b"ETH-USD"])
    ks = np.concatenate(got["kraken_sol_quote"])
    want = allt[(allt["symbol"] == b"SOL-USD") & (allt["exchange"] == exchange_code("kraken"))
                & (allt["kind"] == KIND_QUOTE)]
    assert_same_ticks(ks, want)
    q = agg.quotes()
    row = q[(q["exchange"] == "kraken") & (q["symbol"] == "BTC-USD")].iloc[0]
    assert row["trade_px"] == 100.0 and row["trade_sz"] == 1.0


def test_callback_errors_are_counted_logged_once_and_do_not_stop_the_worker(caplog):
    t = synthetic_quotes(500, seed=3)
    agg = run_replay(t)
    seen = []

    def bad(a):
        raise RuntimeError("boom")

    agg.on_tick(bad)
    agg.on_tick(lambda a: seen.append(len(a)))
    with caplog.at_level(logging.ERROR, logger="hftsig.market.aggregator"):
        with agg:
            assert agg.wait_finished(timeout=20)
    st = agg.aggregator_stats()
    assert sum(seen) == len(t)
    bad_stats = [c for c in st["callbacks"] if "bad" in c["callback"]][0]
    assert bad_stats["errors"] == bad_stats["calls"] >= 1
    assert st["callback_errors"] == bad_stats["errors"]
    assert sum("boom" in r.getMessage() or (r.exc_info and "boom" in str(r.exc_info[1]))
               for r in caplog.records) == 1


def test_top_quotes_and_nbbo_match_brute_force():
    t = synthetic_quotes(2000, seed=4)
    agg = run_replay(t, stale_after=3600)
    with agg:
        assert agg.wait_finished(timeout=20)
    for sym in SYMBOLS:
        bid, ask = expected_nbbo(t, sym)
        nb = agg.nbbo(sym)
        assert nb.bid_px == bid["bid_px"] and nb.bid_sz == bid["bid_sz"]
        assert nb.bid_venue == {1: "binance", 2: "kraken", 3: "coinbase"}[int(bid["exchange"])]
        assert nb.ask_px == ask["ask_px"] and nb.ask_sz == ask["ask_sz"]
        assert nb.ask_venue == {1: "binance", 2: "kraken", 3: "coinbase"}[int(ask["exchange"])]
        assert nb.venues == 3
        for ex in EXCHANGES:
            last = t[(t["symbol"] == sym.encode()) & (t["exchange"] == exchange_code(ex))][-1]
            top = agg.top(ex, sym)
            assert (top.bid_px, top.ask_px, top.ts_recv) == (
                last["bid_px"], last["ask_px"], last["ts_recv"])
            assert top.source == "quote"
    q = agg.quotes()
    assert len(q) == len(EXCHANGES) * len(SYMBOLS)
    assert agg.top("binance", "DOGE-USD") is None
    assert np.isnan(agg.nbbo("DOGE-USD").bid_px) and agg.nbbo("DOGE-USD").bid_venue is None
    assert agg.symbols() == sorted(SYMBOLS)


def _quote(ex, sym, bid, ask, ts):
    t = empty_ticks(1)
    t["kind"] = KIND_QUOTE
    t["flags"] = FLAG_LAST
    t["exchange"] = exchange_code(ex)
    t["symbol"] = sym.encode()
    t["bid_px"], t["ask_px"], t["bid_sz"], t["ask_sz"] = bid, ask, 1.0, 2.0
    t["ts_event"] = t["ts_recv"] = ts
    return t


def test_nbbo_ignores_stale_and_disconnected_venues():
    s = 1_000_000_000
    status = empty_ticks(1)
    status["kind"] = KIND_STATUS
    status["side"] = STATUS_DISCONNECTED
    status["flags"] = FLAG_LAST
    status["exchange"] = exchange_code("coinbase")
    status["ts_event"] = status["ts_recv"] = T0 + 11 * s
    t = np.concatenate([
        _quote("binance", "BTC-USD", 105.0, 106.0, T0),  # best, but 12 s old at the end
        _quote("kraken", "BTC-USD", 100.0, 102.0, T0 + 10 * s),
        _quote("coinbase", "BTC-USD", 101.0, 101.5, T0 + 10 * s),  # then disconnected
        status,
        _quote("kraken", "ETH-USD", 10.0, 11.0, T0 + 12 * s),  # moves the data clock
    ])
    agg = run_replay(t, stale_after=5)
    with agg:
        assert agg.wait_finished(timeout=10)
    nb = agg.nbbo("BTC-USD")
    assert (nb.bid_px, nb.bid_venue, nb.ask_px, nb.ask_venue) == (100.0, "kraken", 102.0,
                                                                  "kraken")
    nb = agg.nbbo("BTC-USD", max_age=20)  # binance counts again; coinbase is still down
    assert (nb.bid_px, nb.bid_venue, nb.ask_px, nb.ask_venue) == (105.0, "binance", 102.0,
                                                                  "kraken")
    st = agg.stats()["replay"]
    assert st["status"]["disconnected"] == 1


def test_reconnect_makes_venue_count_again():
    s = 1_000_000_000
    ev = []
    for code, ts in ((STATUS_DISCONNECTED, T0 + s), (STATUS_CONNECTED, T0 + 2 * s)):
        e = empty_ticks(1)
        e["kind"] = KIND_STATUS
        e["side"] = code
        e["flags"] = FLAG_LAST
        e["exchange"] = exchange_code("coinbase")
        e["ts_event"] = e["ts_recv"] = ts
        ev.append(e)
    t = np.concatenate([_quote("coinbase", "BTC-USD", 101.0, 101.5, T0), ev[0],
                        _quote("coinbase", "BTC-USD", 101.2, 101.4, T0 + 3 * s)])
    agg = run_replay(t)
    with agg:
        assert agg.wait_finished(timeout=10)
    assert agg.nbbo("BTC-USD").bid_px == 101.2
    agg2 = run_replay(np.concatenate([t[:2], ev[1]]))
    with agg2:
        assert agg2.wait_finished(timeout=10)
    # connected again but no fresh quote since: the old quote counts (it is 2 s old)
    assert agg2.nbbo("BTC-USD").bid_px == 101.0


def test_reference_prices_never_make_an_nbbo():
    p = empty_ticks(1)
    p["kind"] = KIND_PRICE
    p["flags"] = FLAG_LAST
    p["exchange"] = exchange_code("coingecko")
    p["symbol"] = b"BTC-USD"
    p["price"] = 99.0
    p["ts_event"] = p["ts_recv"] = T0
    agg = run_replay(p)
    with agg:
        assert agg.wait_finished(timeout=10)
    nb = agg.nbbo("BTC-USD")
    assert nb.bid_venue is None and nb.venues == 0
    q = agg.quotes()
    assert q.iloc[0]["price"] == 99.0 and q.iloc[0]["exchange"] == "coingecko"
    assert agg.top("coingecko", "BTC-USD") is None


def _slow(delay):
    got = []

    def cb(a):
        got.append(a["seq"].copy())
        time.sleep(delay)

    return got, cb


def test_slow_consumer_drop_oldest_drops_and_counts():
    n = 4000
    t = synthetic_quotes(n, seed=5)
    agg = Aggregator([ReplayConnector(t)], queue_size=64, overflow="drop_oldest", clock="data")
    got, cb = _slow(0.002)
    agg.on_tick(cb)
    with agg:
        assert agg.wait_finished(timeout=60)
    seq = np.concatenate(got)
    st = agg.stats()["replay"]
    assert st["dropped"] > 0 and st["dropped_batches"] == st["dropped"]  # one tick per message
    assert len(seq) + st["dropped"] == n  # never silent
    assert (np.diff(seq) > 0).all()  # what arrives is in order, without duplicates
    assert st["ticks"] == len(seq)


def test_slow_consumer_block_loses_nothing():
    # Two feeds: while one connector thread runs the slow consumer (it drains
    # the queue itself in block mode), the other fills the queue and waits.
    n = 1500
    t1 = synthetic_quotes(n, seed=6)
    t2 = synthetic_quotes(n, seed=7)
    t2["seq"] += n
    agg = Aggregator([ReplayConnector(t1), ReplayConnector(t2)], queue_size=32, overflow="block",
                     clock="data")
    got, cb = _slow(0.001)
    agg.on_tick(cb)
    with agg:
        assert agg.wait_finished(timeout=60)
    seq = np.concatenate(got)
    np.testing.assert_array_equal(seq[seq < n], np.arange(n))  # each feed in order, complete
    np.testing.assert_array_equal(seq[seq >= n], np.arange(n, 2 * n))
    st = agg.stats()
    assert st["replay"]["dropped"] == 0 and st["replay#2"]["dropped"] == 0
    assert st["replay"]["blocked"] + st["replay#2"]["blocked"] > 0
    assert agg.aggregator_stats()["queue_high_water"] <= 32


@pytest.mark.parametrize("dispatch", ["connector", "worker"])
def test_block_mode_consumers_run_one_chunk_at_a_time(dispatch):
    # In block mode connector threads drain the queue themselves when nobody
    # else does: consumers must still never run concurrently, and every feed's
    # ticks arrive complete and in order.
    feeds = []
    for i in range(4):
        t = synthetic_quotes(3000, seed=20 + i)
        t["seq"] += i * 10_000
        feeds.append(t)
    agg = Aggregator([ReplayConnector(t) for t in feeds], queue_size=256, overflow="block",
                     dispatch=dispatch, clock="data")
    inside, overlaps, got, threads = [0], [0], [], set()

    def cb(a):
        inside[0] += 1
        if inside[0] > 1:
            overlaps[0] += 1
        threads.add(threading.current_thread().name)
        got.append(a["seq"].copy())
        time.sleep(0)  # let other threads try to get in
        inside[0] -= 1

    agg.on_tick(cb)
    with agg:
        assert agg.wait_finished(timeout=60)
        assert agg.flush(timeout=5)
    assert overlaps[0] == 0
    seq = np.concatenate(got)
    for i in range(4):
        mine = seq[(seq >= i * 10_000) & (seq < (i + 1) * 10_000)]
        np.testing.assert_array_equal(mine, np.arange(3000) + i * 10_000)
    assert agg.aggregator_stats()["ticks"] == 12_000
    if dispatch == "worker":
        assert threads == {"hftsig-aggregator"}
    else:
        assert "hftsig-aggregator" not in threads  # each feed's own thread ran the consumers


def test_slow_iterator_drop_oldest_counts_its_drops():
    n = 3000
    t = synthetic_quotes(n, seed=7)
    agg = Aggregator([ReplayConnector(t)], queue_size=50, overflow="drop_oldest", clock="data")
    it = agg.ticks(timeout=2)
    with agg:
        assert agg.wait_finished(timeout=30)
    seqs = [int(r["seq"]) for r in it]  # stopped: ends once drained, without the 2 s wait
    assert it.dropped > 0
    assert len(seqs) + it.dropped + agg.stats()["replay"]["dropped"] == n
    assert (np.diff(seqs) > 0).all()


def test_two_connectors_counted_separately_and_iterator_ends_on_stop():
    a = synthetic_quotes(700, seed=8, exchanges=["binance"])
    b = synthetic_quotes(300, seed=9, exchanges=["kraken"])
    agg = Aggregator([ReplayConnector(a), ReplayConnector(b)], clock="data")
    assert agg.names == ["replay", "replay#2"]
    it = agg.ticks()  # no timeout: ends when the aggregator stops
    with agg:
        assert agg.wait_finished(timeout=20)
    n = sum(1 for _ in it)
    assert n == 1000
    st = agg.stats()
    assert st["replay"]["ticks"] == 700 and st["replay#2"]["ticks"] == 300
    assert st["replay"]["connector"]["ticks"] == 700


def test_latency_percentiles_from_timestamps():
    t = synthetic_quotes(1000, seed=10)
    lat = np.arange(1000, dtype=np.int64) * 1000  # 0..999 µs
    t["ts_event"] = t["ts_recv"] - lat
    agg = run_replay(t)
    with agg:
        assert agg.wait_finished(timeout=20)
    s = agg.stats()["replay"]["latency_us"]
    assert s["p50"] == pytest.approx(np.percentile(lat, 50) / 1e3)
    assert s["p99"] == pytest.approx(np.percentile(lat, 99) / 1e3)


def test_drain_is_bounded_and_counts_what_it_discards():
    t = synthetic_quotes(1000, seed=11)
    agg = run_replay(t, drain_size=100)
    with agg:
        assert agg.wait_finished(timeout=20)
    d = agg.drain()
    np.testing.assert_array_equal(d["seq"], np.arange(900, 1000))
    assert agg.aggregator_stats()["drain_dropped"] == 900


def test_on_tick_rejects_foreign_arrays():
    c = ReplayConnector(empty_ticks(0))
    agg = Aggregator([c])
    with agg:
        with pytest.raises(TypeError, match="TICK_DTYPE"):
            c.on_tick(np.zeros(2))


# -- books ----------------------------------------------------------------------------------
def book_messages(n_msgs, exchange="kraken", symbol="ETH-BTC", seed=0, snapshot_every=None):
    """A snapshot then random delta messages (1-5 levels each), as one tick array."""
    from hftsig.market.ticks import FLAG_SNAPSHOT_BEGIN, KIND_BOOK_DELTA, KIND_BOOK_SNAPSHOT

    rng = np.random.default_rng(seed)
    msgs = []

    def snapshot():
        t = empty_ticks(20)
        t["kind"] = KIND_BOOK_SNAPSHOT
        t["side"] = [1] * 10 + [-1] * 10
        t["price"] = np.r_[100 - np.arange(1, 11) * 0.5, 100 + np.arange(1, 11) * 0.5]
        t["size"] = rng.uniform(0.1, 3, 20).round(3)
        t["flags"][0] = FLAG_SNAPSHOT_BEGIN
        t["flags"][-1] |= FLAG_LAST
        return t

    msgs.append(snapshot())
    for i in range(n_msgs):
        if snapshot_every and i and i % snapshot_every == 0:
            msgs.append(snapshot())
            continue
        k = int(rng.integers(1, 6))
        t = empty_ticks(k)
        t["kind"] = KIND_BOOK_DELTA
        side = rng.choice([1, -1], k)
        t["side"] = side
        # bids below 100, asks above: the book never crosses
        t["price"] = np.where(side == 1, 100 - rng.integers(1, 25, k) * 0.5,
                              100 + rng.integers(1, 25, k) * 0.5)
        t["size"] = np.where(rng.random(k) < 0.3, 0.0, rng.uniform(0.1, 3, k).round(3))
        t["flags"][-1] = FLAG_LAST
        msgs.append(t)
    out = np.concatenate(msgs)
    out["exchange"] = exchange_code(exchange)
    out["symbol"] = symbol.encode()
    out["ts_recv"] = T0 + np.arange(len(out)) * 1000
    out["ts_event"] = out["ts_recv"]
    out["seq"] = np.arange(len(out))
    return out


def reference_book(t, exchange, symbol):
    from hftsig.market.book import OrderBook

    b = OrderBook(exchange, symbol)
    b.apply(t)
    return b


def test_books_and_book_tops_match_a_reference_book():
    a = book_messages(400, "kraken", "ETH-BTC", seed=1)
    b = book_messages(300, "coinbase", "ETH-BTC", seed=2)
    # interleave whole messages of the two venues (never split a message)
    ca = np.flatnonzero(a["flags"] & FLAG_LAST)[200] + 1
    cb = np.flatnonzero(b["flags"] & FLAG_LAST)[150] + 1
    t = np.concatenate([a[:ca], b[:cb], a[ca:], b[cb:]])
    t["ts_recv"] = T0 + np.arange(len(t)) * 1000
    agg = run_replay(t, stale_after=3600)
    with agg:
        assert agg.wait_finished(timeout=20)
    for ex, src in (("kraken", a), ("coinbase", b)):
        ref = reference_book(src, ex, "ETH-BTC")
        book = agg.book(ex, "ETH-BTC")
        for side in ("bid", "ask"):
            np.testing.assert_array_equal(book.levels(side), ref.levels(side))
        top = agg.top(ex, "ETH-BTC")
        assert top.source == "book"
        assert (top.bid_px, top.bid_sz) == ref.best_bid()
        assert (top.ask_px, top.ask_sz) == ref.best_ask()
    # the copy handed out is independent of the aggregator's book
    book.set_level("bid", 99.99, 1.0)
    assert agg.book("coinbase", "ETH-BTC").best_bid() != (99.99, 1.0)
    nb = agg.nbbo("ETH-BTC")
    tops = {ex: reference_book(s, ex, "ETH-BTC") for ex, s in (("kraken", a), ("coinbase", b))}
    assert nb.bid_px == max(x.best_bid()[0] for x in tops.values())
    assert nb.ask_px == min(x.best_ask()[0] for x in tops.values())
    assert agg.book("binance", "ETH-BTC") is None


def test_dropped_book_records_invalidate_the_book_until_a_snapshot():
    body = book_messages(2000, "kraken", "ETH-BTC", seed=3)
    final = book_messages(5, "kraken", "ETH-BTC", seed=4)  # a snapshot and 5 deltas
    assert len(final) < 40  # fits in the queue: drop_oldest drops older ticks first
    t = np.concatenate([body, final])
    t["seq"] = np.arange(len(t))
    t["ts_recv"] = T0 + np.arange(len(t)) * 1000
    rc = ReplayConnector(t, speed=0.02)  # paced: the body is not all sent during one callback
    agg = Aggregator([rc], queue_size=40, overflow="drop_oldest", clock="data", stale_after=3600)
    seen_invalid = []

    def slow(a):
        if a["seq"][-1] < len(body):
            # hold the consumer until 20 more messages (~60 ticks: more than the 40-tick queue
            # holds) were sent, whatever the machine's speed: drops all along the body
            target = rc.stats()["messages"] + 20
            deadline = time.monotonic() + 1.0
            while (rc.stats()["messages"] < target and not rc.wait(0)
                   and time.monotonic() < deadline):
                time.sleep(0.0005)
            if agg.book("kraken", "ETH-BTC") is None:
                seen_invalid.append(agg.top("kraken", "ETH-BTC"))

    agg.on_tick(slow)
    with agg:
        assert agg.wait_finished(timeout=60)
    st = agg.stats()["replay"]
    assert st["dropped"] > 0 and st["books_invalidated"] > 0
    assert seen_invalid and all(top is None for top in seen_invalid)
    ref = reference_book(final, "kraken", "ETH-BTC")
    book = agg.book("kraken", "ETH-BTC")
    for side in ("bid", "ask"):
        np.testing.assert_array_equal(book.levels(side), ref.levels(side))


# -- end to end: the four loopback simulators -> the four connectors -> aggregator ----------
E2E_SYMBOLS = ["BTC-USDT", "ETH-USDT", "ETH-BTC"]
VENUES = ["binance", "kraken", "coinbase"]


def _wait_until(cond, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(step)
    return cond()


@pytest.fixture(scope="module")
def live_sim():
    from hftsig.simulator import SimulatedExchanges

    with SimulatedExchanges(E2E_SYMBOLS, seed=11, rate=40, coingecko_refresh_s=0.2) as sim:
        yield sim


def _loopback_aggregator(sim, **kw):
    from hftsig.connectors import make_connectors

    conns = make_connectors(["binance", "kraken", "coinbase", "coingecko"], E2E_SYMBOLS,
                            {ex: sim.connector_kwargs(ex) for ex in
                             ("binance", "kraken", "coinbase", "coingecko")})
    return Aggregator(conns, **kw)


def _all_quoted(agg):
    return all(agg.top(ex, s) is not None for ex in VENUES for s in E2E_SYMBOLS)


def test_e2e_every_exchange_delivers_and_nbbo_matches_the_simulator(live_sim):
    sim = live_sim
    agg = _loopback_aggregator(sim, stale_after=60)
    kinds = set()
    agg.on_tick(lambda a: kinds.update(zip(a["exchange"].tolist(), a["kind"].tolist())))
    with agg:
        assert _wait_until(lambda: _all_quoted(agg) and all(
            s["ticks"] > 0 for s in agg.stats().values()), 20), agg.stats()
        assert _wait_until(lambda: agg.quotes()["price"].notna().any(), 10), agg.stats()["coingecko"]
        rate = sim.model.rate
        sim.model.rate = 1e-9  # freeze the market: the truth stops moving
        try:
            truth_tops = {(ex, s): sim.top(ex, s) for ex in VENUES for s in E2E_SYMBOLS}

            def caught_up():
                tops = {k: agg.top(*k) for k in truth_tops}
                return all((t.bid_px, t.bid_sz, t.ask_px, t.ask_sz) == truth_tops[k]
                           for k, t in tops.items())

            # the last messages may still be in flight on a loaded machine
            assert _wait_until(caught_up, 20), {
                k: ((t.bid_px, t.bid_sz, t.ask_px, t.ask_sz), truth_tops[k], agg.stats()[k[0]])
                for k, t in ((k, agg.top(*k)) for k in truth_tops)
                if (t.bid_px, t.bid_sz, t.ask_px, t.ask_sz) != truth_tops[k]}
            for sym in E2E_SYMBOLS:
                truth = sim.nbbo(sym)
                nb = agg.nbbo(sym)
                assert (nb.bid_px, nb.ask_px) == (truth["bid"], truth["ask"]), sym
                tops = {ex: sim.top(ex, sym) for ex in VENUES}
                assert nb.bid_venue in [ex for ex, t in tops.items() if t[0] == truth["bid"]]
                assert nb.ask_venue in [ex for ex, t in tops.items() if t[2] == truth["ask"]]
                assert nb.bid_sz == tops[nb.bid_venue][1] and nb.ask_sz == tops[nb.ask_venue][3]
                assert nb.venues == 3
                for ex in VENUES:
                    top = agg.top(ex, sym)
                    assert (top.bid_px, top.bid_sz, top.ask_px, top.ask_sz) == tops[ex], (ex, sym)
        finally:
            sim.model.rate = rate
    st = agg.stats()
    assert set(st) == {"binance", "kraken", "coinbase", "coingecko"}
    for name, s in st.items():
        assert s["ticks"] > 0 and s["dropped"] == 0, name
        assert s["connector"]["ticks"] == s["ticks"], name  # nothing lost in between
    q = agg.quotes()
    gecko = q[q["exchange"] == "coingecko"]
    assert len(gecko) and gecko["price"].notna().all()
    assert {exchange_code(ex) for ex in VENUES} <= {e for e, k in kinds if k == KIND_QUOTE
                                                     or k in (3, 4)}


def _e2e_slow(sim, overflow):
    agg = _loopback_aggregator(sim, queue_size=8, overflow=overflow)
    got = []

    def slow(a):
        got.append(len(a))
        time.sleep(0.02)

    agg.on_tick(slow)
    with agg:
        assert _wait_until(lambda: sum(got) > 300, 30)
    st = agg.stats()
    emitted = sum(s["connector"]["ticks"] for s in st.values())
    dropped = sum(s["dropped"] for s in st.values())
    rejected = sum(s["rejected_after_stop"] for s in st.values())
    return sum(got), emitted, dropped, rejected, st


def test_e2e_slow_consumer_drop_oldest_drops_and_counts(live_sim):
    got, emitted, dropped, rejected, st = _e2e_slow(live_sim, "drop_oldest")
    assert dropped > 0
    assert got + dropped + rejected == emitted  # every tick accounted for


def test_e2e_slow_consumer_block_loses_nothing(live_sim):
    got, emitted, dropped, rejected, st = _e2e_slow(live_sim, "block")
    assert dropped == 0
    assert sum(s["blocked"] for s in st.values()) > 0
    assert got + rejected == emitted


def test_e2e_disconnect_and_gap_are_seen_and_recovered(live_sim):
    sim = live_sim
    agg = _loopback_aggregator(sim, stale_after=60)
    statuses = []
    agg.on_tick(lambda a: statuses.extend(zip(a["exchange"].tolist(), a["side"].tolist())),
                kinds="status")
    with agg:
        assert _wait_until(lambda: _all_quoted(agg), 20)
        sim.inject("kraken", "disconnect")
        sim.inject("coinbase", "gap")
        kr, cb = exchange_code("kraken"), exchange_code("coinbase")
        assert _wait_until(lambda: (kr, STATUS_DISCONNECTED) in statuses
                           and statuses.count((kr, STATUS_CONNECTED)) >= 2, 20), statuses
        assert _wait_until(lambda: agg.stats()["coinbase"]["gaps"] >= 1, 20)
        # after recovery both venues quote again and count in the NBBO
        t_fault = time.time_ns()
        assert _wait_until(lambda: all(agg.top(ex, s).ts_recv > t_fault
                                       for ex in ("kraken", "coinbase") for s in E2E_SYMBOLS), 20)
        assert all(agg.nbbo(s).venues == 3 for s in E2E_SYMBOLS)
    st = agg.stats()
    assert st["kraken"]["reconnects"] >= 1 and st["kraken"]["status"]["disconnected"] >= 1
    assert st["coinbase"]["gaps"] >= 1 and cb in {e for e, _ in statuses}


def test_state_from_mixed_chunks_matches_brute_force():
    """Quotes with shuffled ts_recv, trades and book messages from two connectors, in
    whatever chunks the worker takes them: tops, trades, books and the filtered
    callback stream all match a brute-force expectation."""
    rng = np.random.default_rng(12)
    a = synthetic_quotes(1500, seed=13, symbols=["BTC-USD", "ETH-USD"])
    b = synthetic_quotes(1500, seed=14, symbols=["BTC-USD", "ETH-USD"])
    ts = T0 + rng.permutation(3000).astype(np.int64) * 1000  # distinct, not monotonic
    a["ts_recv"], b["ts_recv"] = ts[:1500], ts[1500:]
    trades = empty_ticks(200)
    trades["kind"] = KIND_TRADE
    trades["flags"] = FLAG_LAST
    trades["exchange"] = exchange_code("binance")
    trades["symbol"] = b"BTC-USD"
    trades["price"] = np.arange(200.0)
    trades["size"] = 1.0
    trades["ts_recv"] = trades["ts_event"] = T0
    books = book_messages(300, "kraken", "ETH-BTC", seed=15)
    a = np.concatenate([a[:700], trades, books, a[700:]])
    agg = Aggregator([ReplayConnector(a), ReplayConnector(b)], clock="data", stale_after=1e9)
    got = []
    agg.on_tick(lambda t: got.append(t.copy()), kinds=["trade", "book_delta"],
                exchanges=["binance", "kraken"])
    with agg:
        assert agg.wait_finished(timeout=30)
    both = np.concatenate([a, b])
    for sym in ("BTC-USD", "ETH-USD"):
        for ex in EXCHANGES:
            sel = both[(both["kind"] == KIND_QUOTE) & (both["symbol"] == sym.encode())
                       & (both["exchange"] == exchange_code(ex))]
            want = sel[np.argmax(sel["ts_recv"])]
            top = agg.top(ex, sym)
            assert (top.bid_px, top.ask_px, top.ts_recv) == (want["bid_px"], want["ask_px"],
                                                             want["ts_recv"]), (ex, sym)
    q = agg.quotes()
    row = q[(q["exchange"] == "binance") & (q["symbol"] == "BTC-USD")].iloc[0]
    assert row["trade_px"] == 199.0
    ref = reference_book(books, "kraken", "ETH-BTC")
    book = agg.book("kraken", "ETH-BTC")
    for side in ("bid", "ask"):
        np.testing.assert_array_equal(book.levels(side), ref.levels(side))
    sub = np.concatenate(got)
    want = a[(a["kind"] == KIND_TRADE) | (a["kind"] == 3)]
    assert_same_ticks(sub, want[np.isin(want["exchange"], [1, 2])])
    st = agg.stats()
    assert st["replay"]["ticks"] == len(a) and st["replay#2"]["ticks"] == len(b)


def test_an_abandoned_iterator_never_stalls_a_blocking_aggregator():
    t = synthetic_quotes(3000, seed=16)
    agg = Aggregator([ReplayConnector(t)], queue_size=16, overflow="block", clock="data")
    got = []
    agg.on_tick(lambda a: got.append(len(a)))
    with agg:
        for i, _ in enumerate(agg.ticks(timeout=5)):  # break, drop the iterator
            if i == 10:
                break
        it = agg.ticks(timeout=5)
        next(it)
        it.close()
        assert agg.wait_finished(timeout=30)  # nobody reads the iterators any more
        assert agg.aggregator_stats()["iterators"] == 0
    assert sum(got) == len(t)
    with pytest.raises(StopIteration):
        next(it)


def test_a_subscription_closed_while_its_writer_waits_takes_nothing_more():
    # the race behind a flaky run of the test above: the worker, blocked on a
    # full iterator buffer, must not append its chunk once the iterator closed
    from hftsig.market.aggregator import _Subscription
    from hftsig.market.ticks import empty_ticks

    sub = _Subscription(4, block=True)
    sub.push(empty_ticks(4), lambda: False)
    writer = threading.Thread(target=sub.push, args=(empty_ticks(2), lambda: False))
    writer.start()
    time.sleep(0.1)  # let it block on the full buffer (a close before that is fine too)
    assert writer.is_alive()
    with sub.cond:
        sub.closed = True
        sub.items.clear()
        sub.n = 0
        sub.cond.notify_all()
    writer.join(5)
    assert not writer.is_alive()
    assert not sub.items and sub.n == 0


def test_e2e_books_stay_uncrossed_and_equal_the_simulator_after_mispricings():
    # Kraken sends no delete for a level pushed beyond the subscribed depth, so a
    # book of its feed kept deeper than that depth holds stale levels; once an
    # injected mispricing moves the whole book and ends, those levels cross it.
    from hftsig.connectors import make_connectors
    from hftsig.simulator import SimulatedExchanges

    symbols = ["ETH-BTC", "BTC-USDT"]
    with SimulatedExchanges(symbols, seed=5, rate=40) as sim:
        conns = make_connectors(VENUES, symbols, {ex: sim.connector_kwargs(ex) for ex in VENUES})
        agg = Aggregator(conns, stale_after=60, drain_size=0)
        crossed, checked = [], [0]

        def check(a):
            for ex, sym in set(zip(a["exchange"].tolist(), a["symbol"].tolist())):
                book = agg.book(ex, sym)
                if book is None:
                    continue
                checked[0] += 1
                bid, ask = book.best_bid()[0], book.best_ask()[0]
                if not bid < ask:
                    crossed.append((ex, sym, bid, ask))

        agg.on_tick(check, kinds=["book_delta", "book_snapshot"])
        with agg:
            assert _wait_until(lambda: all(agg.book(ex, s) is not None
                                           for ex in VENUES for s in symbols), 20)
            for bps in (50.0, -50.0):
                for ex in VENUES:
                    for s in symbols:
                        sim.inject_mispricing(ex, s, bps, 1.0)
                time.sleep(1.5)  # the mispricing ends before the next one starts
            sim.pause()
            try:
                # the Kraken feed covers its subscribed depth; the others the whole book
                depth = {"binance": None, "kraken": conns[1].depth, "coinbase": None}
                truth = {(ex, s): sim.book(ex, s, depth[ex]) for ex in VENUES for s in symbols}

                def levels(ex, s):
                    book = agg.book(ex, s)
                    return ([tuple(x) for x in book.levels("bid").tolist()],
                            [tuple(x) for x in book.levels("ask").tolist()])

                def caught_up():
                    return all(levels(*k) == (t["bids"], t["asks"]) for k, t in truth.items())

                _wait_until(caught_up, 10)
                assert checked[0] > 0
                assert crossed == [], crossed[:5]
                for k, t in truth.items():
                    assert levels(*k) == (t["bids"], t["asks"]), k
            finally:
                sim.resume()
        assert [c.stats()["checksum_failures"] for c in conns] == [0, 0, 0]



def test_ticks_read_their_symbol_as_str():
    """The iterator's ticks and drain()'s batches read their symbols as str; the
    structured field stays bytes (what the C passes and Parquet use)."""
    t = synthetic_quotes(30)
    agg = Aggregator([ReplayConnector(t)], clock="data", drain_size=100)
    one = agg.ticks(timeout=5)
    batches = agg.ticks(timeout=5, batches=True)
    with agg:
        assert agg.wait_finished(10)
        got = [next(one) for _ in range(len(t))]
        chunks = list(batches)
    want = [s.decode() for s in t["symbol"]]
    assert [tick.symbol for tick in got] == want
    assert all(type(tick.symbol) is str for tick in got)
    assert got[0]["symbol"] == t["symbol"][0] and isinstance(got[0]["symbol"], bytes)
    assert got[0].price is not None and got[0]["seq"] == 0  # other fields as before
    assert [tick.exchange_name for tick in got] == [exchange_name(c) for c in t["exchange"]]
    assert {tick.kind_name for tick in got} == {"quote"}
    assert sum(len(c) for c in chunks) == len(t)
    assert isinstance(chunks[0], TickArray)
    assert np.concatenate([c.symbols for c in chunks]).tolist() == want
    drained = agg.drain()
    assert drained.symbols.tolist() == want and drained.dtype == TICK_DTYPE
    assert drained[3].symbol == want[3] and drained["symbol"][3] == t["symbol"][3]
    assert drained.to_pandas()["symbol"].tolist() == want


def test_batched_channels_latency_is_kept_apart():
    """A connector's batched kinds (Coinbase sends trades every 250 ms) keep their
    latency out of the feed's: the wait for the batch is not slowness."""
    t = empty_ticks(40)
    t["flags"] = FLAG_LAST
    t["exchange"] = exchange_code("coinbase")
    t["symbol"] = b"BTC-USD"
    t["ts_recv"] = T0 + np.arange(40) * 1_000_000
    t["kind"][::2] = KIND_QUOTE
    t["bid_px"][::2], t["ask_px"][::2], t["bid_sz"][::2], t["ask_sz"][::2] = 99.0, 101.0, 1, 1
    t["ts_event"][::2] = t["ts_recv"][::2] - 1_000  # quotes: 1 us
    t["kind"][1::2] = KIND_TRADE
    t["price"][1::2], t["size"][1::2] = 100.0, 0.5
    t["ts_event"][1::2] = t["ts_recv"][1::2] - 200_000_000  # batched trades: 200 ms
    conn = ReplayConnector(t)
    conn.batched_kinds = {"trade": 0.25}
    with Aggregator([conn], clock="data") as agg:
        assert agg.wait_finished(10)
    s = agg.stats()["replay"]
    assert s["latency_us"]["p99"] == pytest.approx(1.0)
    assert s["batched_latency_us"]["p50"] == pytest.approx(200_000.0)
    assert s["batched_kinds"] == {"trade": 0.25}
    from hftsig.app.liveview import LiveView, batched_notes, render_summary

    note = "* replay: batched or polled by protocol (trades every 250 ms); their latency " \
           "p50/p99 200/200 ms is that wait, kept out of LAT"
    assert batched_notes(agg) == [note]
    assert note in render_summary(agg, 1.0)
    assert note in LiveView(agg, stream=__import__("io").StringIO()).render()
    # without the declaration every message counts, as before
    with Aggregator([ReplayConnector(t)], clock="data") as agg:
        assert agg.wait_finished(10)
    assert agg.stats()["replay"]["latency_us"]["p99"] > 100_000
    assert batched_notes(agg) == []
