"""The Redis Streams tick bus (hftsig.distributed.bus) against a real redis-server.

The servers come from tests/redis_server.py (a unix socket, persistence off,
or AOF on for the crash test); the publishers are the simulators + connectors
in another process (``hftsig run --simulate --publish``).  Every wait is for a
condition with a generous deadline, never a fixed sleep or a timing assert.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("redis", reason="the Redis client is the 'bus' extra: "
                    "pip install 'hftsig[bus]'")

from hftsig.distributed.bus import (
    BusConnector,
    BusRecorder,
    Publisher,
    connect,
    discover_streams,
    parse_since,
)
from hftsig.market.aggregator import Aggregator
from hftsig.market.recorder import ReplayConnector, read_ticks, recording_marks, replay
from hftsig.market.ticks import (
    FLAG_LAST,
    FLAG_SNAPSHOT_BEGIN,
    KIND_BOOK_DELTA,
    KIND_BOOK_SNAPSHOT,
    KIND_QUOTE,
    TICK_DTYPE,
    empty_ticks,
)
from redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
SYMBOLS = "BTC-USDT,ETH-USDT,ETH-BTC"
STREAM = "hftsig:ticks"


def wait_until(cond, timeout=60.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def hftsig_cmd(*args):
    return [sys.executable, "-m", "hftsig", *args]


def env():
    return dict(os.environ, PYTHONPATH=str(ROOT))


def stream_top(url, stream=STREAM):
    c = connect(url)
    try:
        return c.xinfo_stream(stream)["last-generated-id"].decode()
    finally:
        c.close()


def caught_up(aggregator, url):
    """Every bus connector of ``aggregator`` has handed out its stream's newest entry."""
    return all(c.stats()["last_id"] == stream_top(url, c.stream) for c in aggregator.connectors)


def quote_ticks(n, start_seq=0, ts0=1_700_000_000_000_000_000):
    """``n`` quote ticks with sequence numbers ``start_seq``... (one message each)."""
    t = empty_ticks(n)
    t["kind"] = KIND_QUOTE
    t["flags"] = FLAG_LAST
    t["exchange"] = 2
    t["symbol"] = b"BTC-USD"
    t["seq"] = t["seq_first"] = np.arange(start_seq, start_seq + n)
    t["ts_event"] = t["ts_recv"] = ts0 + np.arange(start_seq, start_seq + n)
    t["bid_px"] = 100.0 + (np.arange(n) % 7)
    t["ask_px"] = t["bid_px"] + 0.5
    t["bid_sz"] = t["ask_sz"] = 1.0
    return t


def book_ticks():
    """A Kraken book snapshot then two deltas, as three messages."""
    t = empty_ticks(6)
    t["exchange"] = 2
    t["symbol"] = b"ETH-USD"
    t["kind"] = [KIND_BOOK_SNAPSHOT] * 4 + [KIND_BOOK_DELTA] * 2
    t["side"] = [1, 1, -1, -1, 1, -1]
    t["price"] = [99.0, 98.0, 101.0, 102.0, 99.5, 101.0]
    t["size"] = [1.0, 2.0, 1.5, 3.0, 0.7, 0.0]
    t["flags"] = [FLAG_SNAPSHOT_BEGIN, 0, 0, FLAG_LAST, FLAG_LAST, FLAG_LAST]
    t["ts_event"] = t["ts_recv"] = np.arange(6) + 1_700_000_000_000_000_000
    return t


def books_equal(a, b):
    assert a is not None and b is not None
    for side in ("bid", "ask"):
        np.testing.assert_array_equal(a.levels(side), b.levels(side))


# -- arguments and the optional extra -----------------------------------------------------
def test_missing_client_names_the_extra():
    code = ("import sys; sys.modules['redis'] = None\n"
            "from hftsig.distributed.bus import connect\n"
            "try:\n    connect('redis://localhost:6379/0')\n"
            "except ImportError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], env=env(), capture_output=True,
                         text=True, check=True).stdout
    assert "pip install 'hftsig[bus]'" in out


def test_bad_arguments_name_the_argument(redis_url):
    with pytest.raises(ValueError, match="url"):
        connect("http://localhost:6379")
    with pytest.raises(ValueError, match="retention"):
        Publisher(redis_url, retention=0)
    with pytest.raises(ValueError, match="stream"):
        Publisher(redis_url, stream="")
    with pytest.raises(ValueError, match="entry_records"):
        Publisher(redis_url, entry_records=0)
    with pytest.raises(ValueError, match="since"):
        BusConnector(redis_url, STREAM, since="yesterday")
    with pytest.raises(TypeError, match="TICK_DTYPE"):
        Publisher(redis_url).publish(np.zeros(3))
    with pytest.raises(ValueError, match="streams"):
        Aggregator.from_bus(redis_url)  # nothing announced yet


def test_bus_connector_keeps_the_connector_protocol(redis_url):
    from hftsig.market.connector_protocol import Connector, missing_members
    conn = BusConnector(redis_url, STREAM, group="g", consumer="c")
    assert isinstance(conn, Connector)
    assert missing_members(conn) == ()
    conn.stop()

def test_parse_since():
    now = 1_700_000_000_000
    assert parse_since("-5min", now) == f"{now - 300_000}-0"
    assert parse_since("-30s", now) == f"{now - 30_000}-0"
    assert parse_since("-2h", now) == f"{now - 7_200_000}-0"
    assert parse_since(10, now) == f"{now - 10_000}-0"
    assert parse_since("$", now) == "$" and parse_since("now", now) == "$"
    assert parse_since("0", now) == "0-0" and parse_since("first", now) == "0-0"
    assert parse_since("1700-3", now) == "1700-3"
    with pytest.raises(ValueError, match="since"):
        parse_since("-5 fortnights", now)


# -- publish and consume in one process ---------------------------------------------------
def test_group_and_reader_get_every_tick_in_order(redis_url):
    sent = quote_ticks(5000)
    with Publisher(redis_url, entry_records=100) as pub:
        for i in range(0, len(sent), 37):  # batches that do not line up with entries
            pub.publish(sent[i:i + 37])
        assert pub.flush(30)
    st = pub.stats()
    assert st["ticks"] == 5000 and st["dropped"] == 0 and st["entries"] >= 5000 // 137
    assert discover_streams(connect(redis_url)) == [STREAM]
    for kwargs in ({"group": "g"}, {"since": "0"}):
        agg = Aggregator.from_bus(redis_url, **kwargs)
        with agg:
            wait_until(lambda: caught_up(agg, redis_url), what="the consumer")
            assert agg.flush(30)
        got = agg.drain()
        assert got.tobytes() == sent.tobytes()
        s = agg.stats()[STREAM]["connector"]
        assert s["ticks"] == 5000 and s["malformed"] == 0
        assert agg.top("kraken", "BTC-USD").bid_px == sent["bid_px"][-1]
    c = connect(redis_url)
    assert c.xinfo_groups(STREAM)[0]["pending"] == 0  # all acknowledged


def test_per_venue_streams_and_restarted_publisher_continue_ids(redis_url):
    a = quote_ticks(300)
    b = quote_ticks(200, start_seq=300)
    b["exchange"] = 3
    both = np.concatenate([a, b])
    for _ in range(2):  # the second publisher's ids continue above the first's
        with Publisher(redis_url, per_venue=True) as pub:
            pub.publish(both)
            assert pub.flush(30)
    c = connect(redis_url)
    assert discover_streams(c) == [f"{STREAM}:coinbase", f"{STREAM}:kraken"]
    agg = Aggregator.from_bus(redis_url, since="0")
    with agg:
        wait_until(lambda: caught_up(agg, redis_url), what="the consumers")
        assert agg.flush(30)
    st = agg.stats()
    assert st[f"{STREAM}:kraken"]["ticks"] == 600 and st[f"{STREAM}:coinbase"]["ticks"] == 400
    assert st[f"{STREAM}:kraken"]["connector"]["malformed"] == 0


def test_restarted_group_consumer_gets_exactly_what_it_had_not_acknowledged(redis_url):
    from hftsig.distributed.bus import _Reader

    sent = quote_ticks(1000)
    with Publisher(redis_url, entry_records=100) as pub:
        for i in range(0, 1000, 100):
            pub.publish(sent[i:i + 100])
            assert pub.flush(30)  # one entry per batch
    def read_some(reader, count):
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            got = reader.read(count=count, block_ms=50)
            if got:
                return got
        raise AssertionError("nothing to read")

    first = _Reader(redis_url, [STREAM], group="g", consumer="c")
    got1 = read_some(first, 4)  # the begin entry and three tick entries
    assert [e[2] for e in got1] == [b"b", b"t", b"t", b"t"]
    first.ack(STREAM, [got1[1][1]])  # acknowledges one, then "dies"
    first.close()
    again = _Reader(redis_url, [STREAM], group="g", consumer="c")
    pending = read_some(again, 100)
    assert [e[1] for e in pending] == [got1[0][1], got1[2][1], got1[3][1]]
    rest = []
    while True:
        batch = again.read(count=100, block_ms=10)
        if not batch:
            break
        rest += batch
    ticks = [e for e in [got1[1]] + pending + rest if e[2] == b"t"]
    ids = [e[1] for e in ticks]
    assert len(ids) == len(set(ids)) == 10
    assert np.concatenate([e[3] for e in sorted(ticks, key=lambda e: tuple(map(int, e[1].split("-"))))]).tobytes() == \
        sent.tobytes()


def test_a_failing_callback_leaves_its_entries_pending(redis_url):
    with Publisher(redis_url) as pub:
        pub.publish(quote_ticks(50))
        assert pub.flush(30)

    def boom(batch):
        raise RuntimeError("consumer bug")

    conn = BusConnector(redis_url, STREAM, group="g", consumer="c", on_tick=boom)
    conn.start()
    try:
        wait_until(lambda: conn.stats()["deliver_errors"] == 1, what="the failure")
    finally:
        conn.stop()
    c = connect(redis_url)
    assert c.xinfo_groups(STREAM)[0]["pending"] == 2  # the begin entry and the ticks
    got = []
    conn = BusConnector(redis_url, STREAM, group="g", consumer="c", on_tick=got.append)
    conn.start()
    try:
        wait_until(lambda: c.xinfo_groups(STREAM)[0]["pending"] == 0, what="the redelivery")
    finally:
        conn.stop()
    assert np.concatenate(got).tobytes() == quote_ticks(50).tobytes()


def test_a_resend_after_a_lost_reply_is_refused_not_stored_twice(redis_url):
    """The sending thread resends a pipeline whose connection broke; entries that had
    reached the server keep their ids and are refused."""
    pub = Publisher(redis_url)  # not started: its sending step is driven here
    sent = quote_ticks(10)
    entries = pub._entries([(b"t", sent.tobytes())])
    pub._send(entries)
    pub._begun.clear()  # what a connection error does before the retry
    pub._send(entries)
    c = connect(redis_url)
    kinds = [f[b"k"] for _, f in c.xrange(STREAM)]
    assert kinds == [b"b", b"t"]  # one begin entry, the ticks once
    st = pub.stats()
    assert (st["ticks"], st["entries"], st["send_errors"]) == (10, 1, 1)


def test_malformed_and_foreign_entries_are_counted_and_skipped(redis_url):
    good = quote_ticks(400)
    c = connect(redis_url)
    with Publisher(redis_url, entry_records=100) as pub:
        pub.publish(good[:200])
        assert pub.flush(30)
        bad_kind = good[:3].copy()
        bad_kind["kind"] = 9
        bad_exchange = good[:3].copy()
        bad_exchange["exchange"] = 200
        foreign = [
            {"exchange": "BINANCE", "symbol": "BTC-USDT", "price": "1"},  # cryptofeed-like
            {"v": "2", "k": "t", "d": good[:2].tobytes()},  # a newer format
            {"v": "1", "k": "t", "d": good[:2].tobytes()[:-1]},  # cut short
            {"v": "1", "k": "t", "d": b""},
            {"v": "1", "k": "x", "d": good[:2].tobytes()},
            {"v": "1", "k": "t", "d": bad_kind.tobytes()},
            {"v": "1", "k": "t", "d": bad_exchange.tobytes()},
        ]
        for fields in foreign:
            c.xadd(STREAM, fields)  # '*' ids: above the publisher's so far
        time.sleep(0.002)  # the publisher's next id (wall-clock ms) above the foreign ones
        pub.publish(good[200:])
        assert pub.flush(30)
    assert pub.stats()["send_errors"] == 0
    for kwargs in ({"group": "g"}, {"since": "0"}):
        agg = Aggregator.from_bus(redis_url, **kwargs)
        with agg:
            wait_until(lambda: caught_up(agg, redis_url), what="the consumer")
            assert agg.flush(30)
        assert agg.drain().tobytes() == good.tobytes()
        assert agg.stats()[STREAM]["connector"]["malformed"] == len(foreign)
        assert agg.aggregator_stats()["state_errors"] == 0
    assert c.xinfo_groups(STREAM)[0]["pending"] == 0  # the bad ones acknowledged too


def test_late_reader_rebuilds_books_from_the_snapshot_entry(redis_url):
    ticks = book_ticks()
    src = Aggregator([ReplayConnector(ticks)], clock="data")
    pub = Publisher(redis_url, snapshot_interval=1e-6).attach(src)
    with pub:
        with src:
            assert src.wait_finished(30)
        assert pub.flush(30)
    assert pub.stats()["snapshots"] >= 1
    # more deltas after the snapshot
    more = book_ticks()[4:].copy()
    more["price"], more["size"] = [98.0, 103.0], [0.0, 4.0]
    with Publisher(redis_url) as pub2:
        pub2.publish(more)
        assert pub2.flush(30)
    src2 = Aggregator([ReplayConnector(np.concatenate([ticks, more]))], clock="data")
    with src2:
        assert src2.wait_finished(30)
    # a reader joining now starts at the newest snapshot: books at once
    late = Aggregator.from_bus(redis_url)
    with late:
        wait_until(lambda: caught_up(late, redis_url), what="the late reader")
        assert late.flush(30)
    books_equal(late.book("kraken", "ETH-USD"), src2.book("kraken", "ETH-USD"))
    assert late.stats()[STREAM]["connector"]["snapshots_used"] == 1
    # a reader from the start needs no snapshot entry: the venue's own snapshot is there
    full = Aggregator.from_bus(redis_url, since="-1h", snapshots=False)
    with full:
        wait_until(lambda: caught_up(full, redis_url), what="the reader")
        assert full.flush(30)
    books_equal(full.book("kraken", "ETH-USD"), src2.book("kraken", "ETH-USD"))
    assert full.stats()[STREAM]["connector"]["snapshots_used"] == 0
    # one starting after the venue's snapshot, without snapshot entries, builds no book
    # from deltas alone
    c = connect(redis_url)
    first_ticks = next(eid for eid, f in c.xrange(STREAM) if f[b"k"] == b"t").decode()
    blind = Aggregator.from_bus(redis_url, since=first_ticks, snapshots=False)
    with blind:
        wait_until(lambda: caught_up(blind, redis_url), what="the reader")
        assert blind.flush(30)
    assert blind.stats()[STREAM]["ticks"] > 0
    assert blind.book("kraken", "ETH-USD") is None


def test_publisher_never_stalls_the_feed_and_counts_drops():
    """No server at all: publishing returns at once, the outbox drops its oldest."""
    pub = Publisher("redis://127.0.0.1:1/0", queue_size=1000).start()
    try:
        t0 = time.monotonic()
        for i in range(50):
            pub.publish(quote_ticks(100, start_seq=100 * i))
        assert time.monotonic() - t0 < 30  # generous: it must not wait for the server
        st = pub.stats()
        assert st["ticks"] == 0 and st["queued"] <= 1000
        assert st["dropped"] + st["queued"] + st["sending"] == 5000
        assert st["dropped"] >= 5000 - 1000 - st["sending"]
    finally:
        pub._stop.set()
        pub.close(timeout=0.5)


# -- across processes: the simulators publish, other processes consume ---------------------
@pytest.fixture(scope="module")
def published(redis_server, tmp_path_factory):
    """One ``hftsig run --simulate --publish`` session (also recorded by the publisher),
    consumed meanwhile by a consumer group in this process; on the server's db 1."""
    url = redis_server.url + "?db=1"
    c = connect(url)
    c.flushdb()
    rec_path = tmp_path_factory.mktemp("published") / "pub"
    consumer = Aggregator.from_bus(url, streams=STREAM, group="live", consumer="c1")
    with consumer:
        proc = subprocess.run(
            hftsig_cmd("run", "--simulate", "--no-view", "--seconds", "3", "--symbols", SYMBOLS,
                       "--exchanges", "binance,kraken,coinbase", "--publish", url,
                       "--record", str(rec_path), "--flush-interval", "0.2"),
            env=env(), capture_output=True, text=True, timeout=180)
        assert proc.returncode == 0, proc.stderr
        wait_until(lambda: caught_up(consumer, url), what="the group consumer")
        assert consumer.flush(30)
    return url, rec_path, consumer, proc.stdout


def test_end_to_end_consumer_group_state_equals_in_process(published):
    url, rec_path, consumer, out = published
    assert "published" in out and "(dropped 0, unsent 0)" in out
    sent = read_ticks(rec_path)
    assert len(sent) > 100
    got = consumer.drain()
    assert got.tobytes() == sent.tobytes()  # every tick, once, in order
    ref = replay(sent, closing_statuses=True)  # an in-process aggregator fed the same ticks
    with ref:
        assert ref.wait_finished(60)
    assert consumer.symbols() == ref.symbols()
    keys = sorted(ref._books)
    assert keys, "the session had books"
    for ex, sym in keys:
        books_equal(consumer.book(ex, sym), ref.book(ex, sym))
        assert consumer.top(ex, sym) == ref.top(ex, sym)
    for sym in ref.symbols():
        # (empty at the end of a session: the venues' last status is "disconnected")
        np.testing.assert_equal(tuple(consumer.nbbo(sym, max_age=1e9)),
                                tuple(ref.nbbo(sym, max_age=1e9)))
    qa, qb = consumer.quotes().drop(columns="age_ms"), ref.quotes().drop(columns="age_ms")
    assert qa.equals(qb)
    s = consumer.stats()[STREAM]
    assert s["ticks"] == len(sent) and s["connector"]["malformed"] == 0
    assert s["connector"]["snapshots_used"] == 0  # it saw the session begin


def test_late_joiners_of_the_session(published):
    url, rec_path, _, _ = published
    ref = replay(rec_path)
    with ref:
        assert ref.wait_finished(60)
    for kwargs in ({}, {"since": "-1h"}, {"group": "late", "since": "-1h"}):
        agg = Aggregator.from_bus(url, **kwargs)
        with agg:
            wait_until(lambda: caught_up(agg, url), what="the late joiner")
            assert agg.flush(30)
        for ex, sym in sorted(ref._books):
            books_equal(agg.book(ex, sym), ref.book(ex, sym))
        used = agg.stats()[STREAM]["connector"]["snapshots_used"]
        assert used == (1 if not kwargs else 0), kwargs  # from the start: the begin entry


def test_arb_from_the_bus(published):
    url = published[0]
    r = subprocess.run(hftsig_cmd("arb", "--from", url, "--seconds", "1"), env=env(),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "(bus)" in r.stdout and "arbitrage:" in r.stdout


def test_recorder_killed_and_restarted_loses_and_duplicates_nothing(redis_url, tmp_path):
    pub_path, rec_path = tmp_path / "pub", tmp_path / "rec"
    record = hftsig_cmd("record", str(rec_path), "--from", redis_url, "--streams", STREAM,
                        "--flush-interval", "0.2")
    rec = subprocess.Popen(record, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    pub = subprocess.Popen(
        hftsig_cmd("run", "--simulate", "--no-view", "--seconds", "4", "--symbols", SYMBOLS,
                   "--exchanges", "binance,kraken,coinbase", "--publish", redis_url,
                   "--record", str(pub_path), "--flush-interval", "0.2"),
        env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: rec_path.is_dir() and any(rec_path.glob("*.parquet")), 120,
                   "the recorder's first durable part")
        rec.send_signal(signal.SIGKILL)  # mid-stream: whatever was buffered is not on disk
        rec.wait(30)
        first = recording_marks(rec_path)
        assert first  # it had recorded something durable
        rec = subprocess.Popen(record, env=env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
        pub_out, pub_err = pub.communicate(timeout=180)
        assert pub.returncode == 0, pub_err
        c = connect(redis_url)

        def drained():
            g = c.xinfo_groups(STREAM)[0]
            return g["pending"] == 0 and g["last-delivered-id"] == c.xinfo_stream(STREAM)[
                "last-generated-id"]

        wait_until(drained, 120, "the restarted recorder to acknowledge everything")
        rec.send_signal(signal.SIGTERM)
        out, err = rec.communicate(timeout=60)
        assert rec.returncode == 0, err
    finally:
        for p in (rec, pub):
            if p.poll() is None:
                p.kill()
                p.wait()
    sent, got = read_ticks(pub_path), read_ticks(rec_path)
    assert len(sent) > 0
    assert got.tobytes() == sent.tobytes()  # nothing lost, nothing twice, same order


def test_durable_entries_delivered_again_are_dropped_by_stream_id(redis_url, tmp_path):
    """Acknowledgements lost after a durable flush: the entries come again and are
    dropped by the stream ids kept in the recording."""
    sent = quote_ticks(3000)
    with Publisher(redis_url, entry_records=200) as pub:
        pub.publish(sent)
        assert pub.flush(30)
    r1 = BusRecorder(redis_url, tmp_path / "r", flush_interval=0.05)
    t = threading.Thread(target=r1.run)
    t.start()
    c = connect(redis_url)

    def drained():
        g = c.xinfo_groups(STREAM)
        return g and g[0]["pending"] == 0 and g[0]["last-delivered-id"] == c.xinfo_stream(
            STREAM)["last-generated-id"]

    wait_until(drained, what="the first recorder")
    r1.stop_event.set()
    t.join(30)
    # as if no acknowledgement had reached the server: the group hands everything out again
    c.xgroup_setid(STREAM, "recorder", "0")
    r2 = BusRecorder(redis_url, tmp_path / "r", flush_interval=0.05)
    t = threading.Thread(target=r2.run)
    t.start()
    wait_until(lambda: r2.stats()["duplicates"] == r1.stats()["entries"] - 1,
               what="the duplicates")  # every tick entry; the begin entry is no tick entry
    r2.stop_event.set()
    t.join(30)
    assert read_ticks(tmp_path / "r").tobytes() == sent.tobytes()
    assert r2.stats()["rows_written"] == 0


# -- the server: crash with AOF, retention ------------------------------------------------
def test_server_kill9_with_aof_loses_at_most_the_fsync_interval(tmp_path):
    """appendfsync everysec: Redis promises to lose at most ~1 s of writes (2 s when
    the disk lags).  Publisher and group consumer both outlive the crash."""
    server = RedisServer(tmp_path, aof=True).start()
    url = server.url
    got = []
    conn = BusConnector(url, STREAM, group="g", consumer="c", on_tick=lambda b: got.append(
        b.copy()))
    pub = Publisher(url, entry_records=50).start()
    stop = threading.Event()
    published = []

    def feed():
        seq = 0
        while not stop.is_set():
            b = quote_ticks(50, start_seq=seq, ts0=time.time_ns())
            published.append(b)
            pub.publish(b)
            seq += 50
            time.sleep(0.005)

    feeder = threading.Thread(target=feed)
    try:
        conn.start()
        feeder.start()
        wait_until(lambda: len(got) > 20, what="ticks before the crash")
        server.kill()
        wait_until(lambda: pub.stats()["reconnects"] > 0, what="the publisher to notice")
        server.start()
        n_after = len(published)
        wait_until(lambda: len(published) > n_after + 40, what="publishing after the restart")
        stop.set()
        feeder.join(30)
        assert pub.flush(60)
        wait_until(lambda: conn.stats()["last_id"] == stream_top(url), what="the consumer")
    finally:
        stop.set()
        conn.stop()
        pub.close(timeout=5)
        server.stop()
    sent = np.concatenate(published)
    recv = np.concatenate(got)
    seq = recv["seq"]
    assert (np.diff(seq) > 0).all(), "no duplicates, order kept"
    assert np.isin(seq, sent["seq"]).all()
    lost = sent[~np.isin(sent["seq"], seq)]
    if len(lost):
        span_s = (lost["ts_recv"].max() - lost["ts_recv"].min()) / 1e9
        assert span_s <= 2.0, f"lost {len(lost)} ticks over {span_s:.2f} s"
    # everything published from the restart on arrived
    assert np.isin(np.concatenate(published[n_after:])["seq"], seq).all()
    assert conn.stats()["reconnects"] >= 1


def test_retention_keeps_the_stream_bounded(redis_url):
    retention = 1.0
    c = connect(redis_url)
    c.config_set("stream-node-max-entries", 20)  # trimming works by whole nodes
    with Publisher(redis_url, retention=retention, entry_records=20) as pub:
        xlens = []
        t = quote_ticks(20)

        published_ms = 0
        first_ms = None
        while published_ms < 5 * retention * 1000:  # five retention windows of data
            for _ in range(20):
                pub.publish(t)
            assert pub.flush(30)
            ms = int(pub.last_id.split("-")[0])
            first_ms = ms if first_ms is None else first_ms
            published_ms = ms - first_ms
            xlens.append(c.xlen(STREAM))
            time.sleep(0.01)
        entries = pub.stats()["entries"]
        # what is left: the retention window plus at most one node of older entries
        last_ms = int(pub.last_id.split("-")[0])
        window = len(c.xrange(STREAM, min=f"{last_ms - int(retention * 1000)}-0"))
        assert c.xlen(STREAM) <= window + 20
        assert max(xlens) < entries  # trimmed while running
        old = c.xrange(STREAM, max=f"{last_ms - int(retention * 1000) - 1}-0")
        assert len(old) <= 20
        assert c.memory_usage(STREAM) < (window + 40) * 20 * TICK_DTYPE.itemsize * 2 + 65536


# -- command line ---------------------------------------------------------------------------
def test_cli_parses_the_bus_options():
    from hftsig.app.cli import build_parser

    p = build_parser()
    a = p.parse_args(["run", "--publish", "redis://h:6379/0", "--per-venue", "--retention", "60"])
    assert (a.publish, a.per_venue, a.retention, a.stream) == (
        "redis://h:6379/0", True, 60.0, STREAM)
    a = p.parse_args(["record", "/tmp/x", "--from", "redis://h:6379/0", "--streams", "a,b"])
    assert (a.from_url, a.streams, a.group) == ("redis://h:6379/0", ["a", "b"], "recorder")
    a = p.parse_args(["arb", "--from", "redis://h:6379/0"])
    assert a.from_url == "redis://h:6379/0" and a.group is None


def test_cli_says_when_the_bus_cannot_be_reached(tmp_path):
    import socket

    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        url = f"redis://127.0.0.1:{s.getsockname()[1]}/0"
    for args in (("record", str(tmp_path / "r"), "--from", url, "--seconds", "1"),
                 ("arb", "--from", url, "--seconds", "1")):
        r = subprocess.run(hftsig_cmd(*args), env=env(), capture_output=True, text=True,
                           timeout=120)
        assert r.returncode == 2, r.stderr
        assert f"hftsig {args[0]}: cannot reach the tick bus" in r.stderr
        assert "Traceback" not in r.stderr
    r = subprocess.run(hftsig_cmd("run", "--publish", "http://h:1", "--seconds", "1"),
                       env=env(), capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "url must be a redis://" in r.stderr
