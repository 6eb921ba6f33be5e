"""Recorder, read_ticks, replay: exact round trip, rotation, SIGKILL durability."""
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from hftsig.market.recorder import (
    Recorder,
    ReplayConnector,
    closing_status_mask,
    read_ticks,
    replay,
    tick_files,
)
from hftsig.market.ticks import (
    FLAG_LAST,
    KIND_BOOK_DELTA,
    KIND_QUOTE,
    KIND_STATUS,
    KIND_TRADE,
    STATUS_DISCONNECTED,
    TICK_DTYPE,
    empty_ticks,
    exchange_code,
    exchange_name,
)

ROOT = Path(__file__).resolve().parents[2]


def random_ticks(n, seed=0):
    """Ticks with every field random, NaNs and extreme values included."""
    rng = np.random.default_rng(seed)
    t = empty_ticks(n)
    t["ts_event"] = rng.integers(0, 2**62, n)
    t["ts_recv"] = np.sort(rng.integers(0, 2**62, n))
    t["exchange"] = rng.integers(0, 256, n)
    t["kind"] = rng.choice([KIND_QUOTE, KIND_TRADE, KIND_BOOK_DELTA], n)
    t["side"] = rng.integers(-128, 128, n)
    t["flags"] = rng.integers(0, 4, n)
    t["checksum"] = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
    t["symbol"] = [("S%d-USD" % i).encode() for i in rng.integers(0, 10**9, n)]
    t["symbol"][0] = b"ABCDEFGHIJ-KLMNO"  # all 16 bytes used
    for f in ("bid_px", "bid_sz", "ask_px", "ask_sz", "price", "size"):
        v = rng.standard_normal(n) * 10.0 ** rng.integers(-8, 8, n)
        v[rng.random(n) < 0.2] = np.nan
        t[f] = v
    t["price"][1] = np.inf
    t["price"][2] = -0.0
    t["seq"] = rng.integers(-1, 2**62, n)
    t["seq_first"] = rng.integers(-1, 2**62, n)
    return t


def assert_bit_equal(a, b):
    assert a.dtype == b.dtype == TICK_DTYPE and a.shape == b.shape
    assert a.tobytes() == b.tobytes()


def test_round_trip_is_exact(tmp_path):
    t = random_ticks(5000, seed=1)
    with Recorder(tmp_path, flush_interval=0.05) as rec:
        for i in range(0, len(t), 700):
            rec.write(t[i:i + 700])
    back = read_ticks(tmp_path)
    assert_bit_equal(back, t)
    # one compacted segment, no parts or temporary files left
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["ticks-000000.parquet"]
    assert rec.rows_written == len(t)


def test_rotation_by_size_and_reopen_appends(tmp_path):
    t = random_ticks(3000, seed=2)
    with Recorder(tmp_path / "feed.parquet", rotate_bytes=20_000, flush_interval=10) as rec:
        for i in range(0, 2000, 250):
            rec.write(t[i:i + 250])
            rec.flush()
    first = sorted(p.name for p in tmp_path.iterdir())
    assert len(first) > 2 and all(n.startswith("feed-") for n in first)
    assert not any(".part" in n for n in first)
    with Recorder(tmp_path / "feed.parquet", flush_interval=10) as rec:  # a new session
        rec.write(t[2000:])
    assert set(first) < {p.name for p in tmp_path.iterdir()}  # old files untouched
    assert_bit_equal(read_ticks(tmp_path / "feed.parquet"), t)
    assert_bit_equal(read_ticks(tmp_path), t)
    # one file on its own is a valid Parquet file with the tick columns
    f = tick_files(tmp_path)[0]
    assert pq.read_schema(f).names == list(TICK_DTYPE.names)


def test_rotation_by_time(tmp_path):
    t = random_ticks(40, seed=3)
    with Recorder(tmp_path, rotate_seconds=0.05, flush_interval=10) as rec:
        for i in range(4):
            rec.write(t[i * 10:(i + 1) * 10])
            rec.flush()
            time.sleep(0.06)
    assert len(list(tmp_path.iterdir())) == 4  # one segment per flush
    assert_bit_equal(read_ticks(tmp_path), t)


def test_reader_prefers_segment_over_leftover_parts(tmp_path):
    """The writer died after renaming the compacted segment but before deleting its parts."""
    t = random_ticks(300, seed=4)
    rec = Recorder(tmp_path, flush_interval=10)
    saved = tmp_path / "saved"
    saved.mkdir()
    for i in range(3):
        rec.write(t[i * 100:(i + 1) * 100])
        rec.flush()
    parts = sorted(tmp_path.glob("*.part*.parquet"))
    assert len(parts) == 3
    for p in parts:
        shutil.copy(p, saved / p.name)
    rec.close()
    for p in saved.iterdir():
        shutil.move(str(p), tmp_path / p.name)  # restore the parts: the crash state
    saved.rmdir()
    assert_bit_equal(read_ticks(tmp_path), t)
    # parts of an unfinished segment (no compacted file) are read in order
    (tmp_path / "ticks-000000.parquet").unlink()
    assert_bit_equal(read_ticks(tmp_path), t)


def test_recorder_errors(tmp_path):
    with pytest.raises(ValueError, match="flush_interval"):
        Recorder(tmp_path, flush_interval=0)
    with pytest.raises(ValueError, match="rotate_bytes"):
        Recorder(tmp_path, rotate_bytes=0)
    with Recorder(tmp_path) as rec:
        with pytest.raises(TypeError, match="TICK_DTYPE"):
            rec.write(np.zeros(3))
    with pytest.raises(RuntimeError, match="closed"):
        rec.write(empty_ticks(1))
    with pytest.raises(FileNotFoundError, match="path"):
        read_ticks(tmp_path / "nothing")
    bad = tmp_path / "other.parquet"
    import pyarrow as pa

    pq.write_table(pa.table({"x": [1]}), bad)
    with pytest.raises(ValueError, match="not a tick file"):
        read_ticks(bad)
    assert len(read_ticks(tmp_path)) == 0


CHILD = textwrap.dedent("""
    import sys, numpy as np
    from hftsig.market.recorder import Recorder
    from hftsig.market.ticks import empty_ticks
    out, batch = sys.argv[1], 200
    rec = Recorder(out, flush_interval=0.05, rotate_bytes=40_000)
    rec.on_flush = lambda n: print("durable", n, flush=True)
    import time
    i = 0
    while True:  # until killed
        t = empty_ticks(batch)
        t["seq"] = np.arange(i, i + batch)
        t["ts_recv"] = t["seq"] * 7
        t["price"] = t["seq"] * 0.5
        t["symbol"] = b"BTC-USDT"
        rec.write(t)
        i += batch
        time.sleep(0.002)
""")


@pytest.mark.parametrize("kill_after", [3, pytest.param(12, marks=pytest.mark.slow)])
def test_sigkill_leaves_readable_data(tmp_path, kill_after):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path)], stdout=subprocess.PIPE,
                            env=env, text=True)
    durable = 0
    try:
        deadline = time.monotonic() + 60
        flushes = 0
        while flushes < kill_after and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith("durable"):
                durable = int(line.split()[1])
                flushes += 1
        assert flushes == kill_after, "the recording child did not flush"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(10)
    assert proc.returncode == -signal.SIGKILL
    back = read_ticks(tmp_path)
    # everything reported durable is there, in order, exactly, with no duplicates
    assert len(back) >= durable > 0
    np.testing.assert_array_equal(back["seq"], np.arange(len(back)))
    np.testing.assert_array_equal(back["ts_recv"], back["seq"] * 7)
    np.testing.assert_array_equal(back["price"], back["seq"] * 0.5)
    assert (back["symbol"] == b"BTC-USDT").all()
    files = sorted(tmp_path.glob("*.parquet"))  # every file left is a complete Parquet file
    assert files and all(pq.read_metadata(f).num_rows > 0 for f in files)


def _messages(n, seed=5):
    rng = np.random.default_rng(seed)
    t = empty_ticks(n)
    t["kind"] = KIND_QUOTE
    t["exchange"] = rng.integers(1, 4, n)
    t["symbol"] = b"BTC-USD"
    t["bid_px"] = 100 + rng.standard_normal(n)
    t["ask_px"] = t["bid_px"] + 0.5
    t["bid_sz"] = t["ask_sz"] = 1.0
    t["ts_recv"] = 10**18 + np.arange(n) * 2_000_000  # 2 ms apart
    t["ts_event"] = t["ts_recv"] - 1000
    t["flags"] = np.where(rng.random(n) < 0.5, FLAG_LAST, 0)  # multi-record messages
    t["flags"][-1] = FLAG_LAST
    t["seq"] = np.arange(n)
    return t


def test_replay_through_the_aggregator_is_exact_and_deterministic(tmp_path):
    t = _messages(2000)
    with Recorder(tmp_path, flush_interval=0.05) as rec:
        rec.write(t)
    runs = []
    # one connector per venue sharing one thread, or one for all: the same ticks in order
    for by_venue in (True, False, True):
        agg = replay(tmp_path, by_venue=by_venue)
        got = []
        agg.on_tick(lambda a: got.append(a.copy()))
        with agg:
            assert agg.wait_finished(timeout=30)
        runs.append((np.concatenate(got), agg.nbbo("BTC-USD"), agg.quotes()))
        stats = agg.stats()
        if by_venue:
            assert sorted(stats) == ["binance", "coinbase", "kraken"]
            for name, s in stats.items():
                assert s["ticks"] == int((t["exchange"] == exchange_code(name)).sum())
                assert s["connector"]["ticks"] == s["ticks"]
            # a recorded message never mixes venues: cut where the exchange changes too
            cuts = np.union1d(np.flatnonzero(t["flags"] & FLAG_LAST) + 1,
                              np.flatnonzero(np.diff(t["exchange"])) + 1)
            assert sum(s["messages"] for s in stats.values()) == len(cuts)
        else:
            assert stats["replay"]["messages"] == int((t["flags"] & FLAG_LAST).sum())
    for ticks, _nbbo, _quotes in runs:
        assert_bit_equal(ticks, t)
    assert runs[0][1] == runs[1][1] == runs[2][1]
    assert runs[0][2].equals(runs[1][2]) and runs[0][2].equals(runs[2][2])


def _session(venues, n=60):
    """Quotes of ``venues`` in turn, then each feed's disconnect, as a recorder
    stopping its feeds writes them."""
    t = empty_ticks(n + len(venues))
    t["kind"][:n] = KIND_QUOTE
    t["flags"] = FLAG_LAST
    t["exchange"][:n] = [exchange_code(venues[i % len(venues)]) for i in range(n)]
    t["symbol"][:n] = b"ETH-USD"
    t["bid_px"][:n] = 100 + np.arange(n) * 0.01
    t["ask_px"][:n] = t["bid_px"][:n] + 0.5
    t["bid_sz"][:n] = t["ask_sz"][:n] = 1.0
    t["kind"][n:] = KIND_STATUS
    t["side"][n:] = STATUS_DISCONNECTED
    t["exchange"][n:] = [exchange_code(v) for v in venues]
    t["ts_recv"] = 10**18 + np.arange(len(t)) * 100_000_000  # 0.1 s apart
    t["ts_event"] = t["ts_recv"] - 1000
    return t


def test_the_end_of_a_recording_does_not_take_its_venues_down():
    venues = ["binance", "kraken", "coinbase"]
    t = _session(venues)
    assert np.flatnonzero(closing_status_mask(t)).tolist() == [60, 61, 62]
    with replay(t) as agg:
        assert agg.wait_finished(10)
    nb = agg.nbbo("ETH-USD")
    last = t[59]
    assert nb.bid_px == last["bid_px"] and nb.bid_venue == exchange_name(last["exchange"])
    assert nb.venues == 3
    assert agg.stats()["coinbase"]["ticks"] == 20
    # kept on request: the feeds are down at the end, as they were
    with replay(t, closing_statuses=True) as agg:
        assert agg.wait_finished(10)
    assert agg.nbbo("ETH-USD").venues == 0
    # a feed that went down while the others went on stays down
    binance = exchange_code("binance")
    later = t[30:60][t[30:60]["exchange"] != binance]
    mid = np.concatenate([t[:30], t[60:61], later, t[61:]])
    mid["ts_recv"] = 10**18 + np.arange(len(mid)) * 200_000_000  # down 4 s before the end
    assert mid[30]["exchange"] == binance and mid[30]["kind"] == KIND_STATUS
    assert np.flatnonzero(closing_status_mask(mid)).tolist() == [len(mid) - 2, len(mid) - 1]
    with replay(mid) as agg:
        assert agg.wait_finished(10)
    nb = agg.nbbo("ETH-USD")
    assert nb.venues == 2 and "binance" not in (nb.bid_venue, nb.ask_venue)


def test_closing_statuses_interleaved_with_the_other_feeds_last_ticks():
    """The feeds stop in parallel: one's disconnect can come before another's
    last quotes.  Every closing status is still left out of the replay."""
    venues = ["binance", "kraken", "coinbase"]
    t = _session(venues)
    # binance's disconnect, then kraken's and coinbase's last quotes, then their disconnects
    ts = t["ts_recv"].copy()
    order = np.r_[np.arange(58), 60, 58, 59, 61, 62]
    t = t[order]
    t["ts_recv"] = ts
    assert np.flatnonzero(closing_status_mask(t)).tolist() == [58, 61, 62]
    with replay(t) as agg:
        assert agg.wait_finished(10)
    assert agg.nbbo("ETH-USD").venues == 3
    assert agg.stats()["binance"]["ticks"] == 20


def test_replay_by_venue_starts_sending_once_every_part_started():
    t = _session(["kraken", "coinbase"], n=10)
    parts = ReplayConnector(t).by_venue()
    assert [p.exchange for p in parts] == ["kraken", "coinbase"]
    got = []
    for p in parts:
        p.on_tick = lambda a, name=p.exchange: got.append((name, a.copy()))
    parts[0].start()
    assert not parts[0].wait(0.2) and got == []  # coinbase's sink is not there yet
    parts[1].start()
    assert parts[1].wait(10)
    assert [name for name, _ in got] == [exchange_name(c) for c in t["exchange"]]
    assert_bit_equal(np.concatenate([a for _, a in got]), t)
    with pytest.raises(RuntimeError, match="already started"):
        parts[0].start()
    for p in parts:
        p.stop()


def test_replay_at_speed_keeps_timing():
    t = _messages(100)  # 198 ms of data
    c = ReplayConnector(t, speed=2.0)  # about 0.1 s
    got = []
    c.on_tick = lambda a: got.append(a)
    t0 = time.monotonic()
    c.start()
    assert c.wait(10)
    elapsed = time.monotonic() - t0
    c.stop()
    assert elapsed >= 0.099 - 0.002  # never early: it sleeps until each message is due
    assert_bit_equal(np.concatenate(got), t)


def test_replay_connector_batches_without_message_flags():
    t = empty_ticks(2500)
    t["seq"] = np.arange(2500)
    c = ReplayConnector(t, batch_size=1000)
    sizes = []
    c.on_tick = lambda a: sizes.append(len(a))
    c.start()
    assert c.wait(10)
    c.stop()
    assert sizes == [1000, 1000, 500]
    s = c.stats()
    assert s["ticks"] == 2500 and s["messages"] == 3 and s["finished"]


def test_book_depths_ride_in_the_files_and_replay_rebuilds_the_live_book(tmp_path):
    """Kraken sends no delete for a level pushed beyond the subscribed depth: a replay
    rebuilds the live book only when cut at that depth, which the recording carries."""
    from hftsig.connectors import KrakenConnector
    from hftsig.market.aggregator import Aggregator
    from hftsig.market.recorder import recording_book_depths
    from hftsig.simulator import SimulatedExchanges

    with pytest.raises(ValueError, match="book_depths"):
        Recorder(tmp_path / "bad", book_depths={"kraken": 0})
    with pytest.raises(TypeError, match="book_depths"):
        ReplayConnector(random_ticks(3), book_depths=[10])
    sym = "ETH-BTC"
    with SimulatedExchanges([sym], exchanges=("kraken",), seed=9, rate=40,
                            size_churn=0.5) as sim:
        conn = KrakenConnector([sym], **sim.connector_kwargs("kraken"))
        agg = Aggregator([conn], drain_size=0)
        rec = Recorder(tmp_path / "k", flush_interval=0.1, book_depths={"kraken": conn.book_depth})
        agg.on_tick(rec.write)
        with agg:
            deadline = time.monotonic() + 20
            while agg.book("kraken", sym) is None and time.monotonic() < deadline:
                time.sleep(0.05)
            for bps in (40.0, -40.0):  # move the whole book: levels fall out of scope
                sim.inject_mispricing("kraken", sym, bps, 0.5)
                time.sleep(0.8)
            sim.pause()
            truth = sim.book("kraken", sym, conn.book_depth)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                live = agg.book("kraken", sym)
                if [tuple(x) for x in live.levels("bid").tolist()] == truth["bids"]:
                    break
                time.sleep(0.05)
            live_bids = live.levels("bid").copy()
            live_asks = live.levels("ask").copy()
        rec.close()
    assert recording_book_depths(tmp_path / "k") == {"kraken": 10}
    assert [tuple(x) for x in live_bids.tolist()] == truth["bids"]
    agg = replay(tmp_path / "k")
    with agg:
        assert agg.wait_finished(timeout=30)
    np.testing.assert_array_equal(agg.book("kraken", sym).levels("bid"), live_bids)
    np.testing.assert_array_equal(agg.book("kraken", sym).levels("ask"), live_asks)
    # without the cut the replayed book keeps levels the feed pushed out of scope
    uncut = Aggregator([ReplayConnector(tmp_path / "k", book_depths={})], clock="data")
    with uncut:
        assert uncut.wait_finished(timeout=30)
    deep = uncut.book("kraken", sym)
    assert len(deep.levels("bid")) + len(deep.levels("ask")) > len(live_bids) + len(live_asks)
