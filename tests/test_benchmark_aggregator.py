"""The aggregator benchmark's own instruments (``benchmarks/aggregator.py``):
the simulator process's window marks, host steal, host stalls, GC pauses.
Correctness only: no timing targets."""
import gc
import os
import signal
import socket
import sys
import time
from types import SimpleNamespace

import numpy as np
import pytest

aggbench = pytest.importorskip("benchmarks.aggregator")

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


def test_gc_pauses_counts_full_and_young_collections_in_its_window():
    gc.collect()
    with aggbench._GcPauses() as pauses:
        gc.collect(0)
        gc.collect(2)
        gc.collect(2)
    gc.collect(2)  # after the window: not counted
    assert pauses.full == 2 and pauses.young >= 1
    assert pauses.full_max_ms > 0
    assert pauses not in gc.callbacks


@linux
def test_steal_seconds_reads_every_cpu_and_only_grows():
    a = aggbench._steal_seconds()
    b = aggbench._steal_seconds()
    assert set(a) == set(b) and set(a) >= set(os.sched_getaffinity(0))
    assert all(b[c] >= a[c] >= 0 for c in a)


@linux
def test_host_stalls_reports_each_cpu_it_was_given():
    cpu = min(os.sched_getaffinity(0))
    out = aggbench.host_stalls([cpu], seconds=0.3)
    assert list(out) == [cpu]
    v = out[cpu]
    assert v["per_s"] >= 0 and 0 <= v["lost_share"] < 1 and v["max_ms"] >= 0
    assert (v["per_s"] == 0) == (v["max_ms"] == 0)


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="needs SIGSTOP/SIGCONT")
def test_simulator_process_marks_windows_and_gives_up_on_a_silent_simulator():
    with aggbench._SimulatorProcess(["BTC-USDT"], rate=50, seconds=30, size_churn=0.5,
                                    stagger=2) as sim:
        assert set(sim.endpoints) == set(aggbench.EXCHANGES)
        time.sleep(0.3)
        first = sim.mark()
        assert first is not None and first["releases"] > 0
        t0 = time.monotonic()
        time.sleep(0.2)
        second = sim.mark()  # releases since the first mark only: 100 a second
        elapsed = time.monotonic() - t0
        assert second is not None and 0 < second["releases"] <= 100 * elapsed + 20
        assert second["late_p50_us"] <= second["late_p99_us"] <= second["late_max_us"]
        sim.proc.send_signal(signal.SIGSTOP)  # a simulator that cannot answer
        try:
            t0 = time.monotonic()
            assert sim.mark(timeout=0.5) is None
            assert time.monotonic() - t0 < 2.0
        finally:
            sim.proc.send_signal(signal.SIGCONT)


def test_offline_replay_delivers_exactly_the_ticks_the_live_run_delivered():
    pytest.importorskip("hftsig.market.normalize", reason="needs the Cython normalizer built in place")
    from hftsig import connectors  # noqa: F401
    from hftsig.connectors import make_connectors
    from hftsig.market.aggregator import Aggregator
    from hftsig.market.ticks import KIND_STATUS
    from hftsig.simulator import SimulatedExchanges

    symbols = ["BTC-USDT", "ETH-USDT"]
    exchanges = list(aggbench._REPLAYED)
    live = {"n": 0}

    def count(ticks):
        live["n"] += int((ticks["kind"] != KIND_STATUS).sum())

    with SimulatedExchanges(symbols, exchanges=exchanges, seed=5, rate=100, size_churn=0.5,
                            stagger=2) as sim:
        endpoints = {ex: sim.connector_kwargs(ex) for ex in exchanges}
        conns = make_connectors(exchanges, symbols, endpoints, {})
        captures = [aggbench._FrameCapture(c) for c in conns]
        stamps = {c.exchange: aggbench._ReadStamps(c) for c in conns}
        times = aggbench._TickTimes()
        agg = Aggregator(conns, overflow="block", dispatch="connector")
        agg.on_tick(count)
        agg.on_tick(times, kinds=["quote", "book_delta"])
        with agg:
            time.sleep(1.5)
    assert all(len(cap.frames) > 20 for cap in captures)
    out = aggbench.replay_offline(captures, symbols, endpoints)
    assert out["errors"] == 0
    assert out["frames"] == sum(len(cap.frames) for cap in captures)
    assert out["ticks"] == live["n"] > 0
    assert out["us_per_frame"] > 0 and out["us_per_tick"] > 0
    # the stamping socket under websocket-client: every frame arrived through it
    for st in stamps.values():
        kern, done = st.arrays()
        assert len(done) > 20 and (kern <= done).all() and (np.diff(done) >= 0).all()
    parts = aggbench.latency_parts(times, stamps)
    assert parts is not None and parts["ticks"] == len(times.arrays()[0]) > 0
    assert set(parts["reads"]) == set(exchanges)
    assert all(v >= 0 for v in parts["all"].values())
    assert parts["tail"]["total"] >= parts["all"]["total"] > 0


@linux
def test_stamping_socket_records_the_kernel_receive_time_of_each_read():
    server = socket.create_server(("127.0.0.1", 0))
    a = socket.create_connection(server.getsockname())
    b, _ = server.accept()
    server.close()
    reads = []
    try:
        wrapped = aggbench._StampingSocket(b, reads)
        wrapped.settimeout(2.0)  # everything but recv goes to the socket
        assert wrapped.fileno() == b.fileno() and wrapped.gettimeout() == 2.0
        # Linux switches receive stamping on a moment after the first socket asks
        # (a deferred host-wide switch): until then reads are kept, unstamped
        deadline = time.monotonic() + 5.0
        while not reads or reads[-1][0] < 0:
            assert time.monotonic() < deadline, f"no kernel stamp in {len(reads)} reads"
            a.sendall(b"w")
            assert wrapped.recv(100) == b"w"
            assert reads[-1][1] > 0
            if reads[-1][0] < 0:
                time.sleep(0.01)
        reads.clear()
        before = time.time_ns()
        a.sendall(b"hello")
        time.sleep(0.05)
        assert wrapped.recv(100) == b"hello"
        after = time.time_ns()
        assert len(reads) == 1
        kernel, done = reads[0]
        # the data sat 50 ms in the socket before the read
        assert before <= kernel <= done <= after and done - kernel >= 40_000_000, \
            (kernel - before, done - kernel, after - done)
        a.close()
        assert wrapped.recv(100) == b""  # end of stream, as a socket says it
    finally:
        a.close()
        b.close()


def test_latency_parts_splits_each_tick_at_the_read_that_completed_its_frame():
    us = 1000  # the stamps are ns
    st = aggbench._ReadStamps(SimpleNamespace(exchange="kraken", _connect=lambda: None))
    st.reads += [(1000 * us, 1100 * us), (2000 * us, 2500 * us)]
    times = aggbench._TickTimes()
    kraken = aggbench.exchange_code("kraken")
    for ev, rc, cb in ((900, 1150, 1200), (1050, 2600, 2700)):
        t = aggbench.empty_ticks(1)
        t["ts_event"], t["ts_recv"], t["exchange"] = ev * us, rc * us, kraken
        times.chunks.append((t["ts_event"].copy(), t["ts_recv"].copy(),
                             np.array([cb * us]), t["exchange"].copy()))
    out = aggbench.latency_parts(times, {"kraken": st}, tail=0.5)
    assert out["ticks"] == 2
    # tick 2: its frame was not in the read at 1100, so it reached the socket
    # after 1100 (>= 50 after its send at 1050); the read at 2500 returned 500
    # after its newest bytes; 900 of the wire time could be either side
    assert out["tail"] == pytest.approx({"send_socket": 50, "socket_read": 500, "either": 900,
                                         "read_frame": 100, "frame_callback": 100,
                                         "total": 1650})
    # tick 1 (the first read: no earlier read to bound the sender): 0, 100, 100, 50, 50, 300
    assert out["all"] == pytest.approx({"send_socket": 25, "socket_read": 300, "either": 500,
                                        "read_frame": 75, "frame_callback": 75, "total": 975})
    assert out["reads"]["kraken"][0] == pytest.approx(300)
    assert aggbench.latency_parts(aggbench._TickTimes(), {"kraken": st}) is None


def test_latency_parts_gives_an_unstamped_read_to_neither_side():
    us = 1000
    st = aggbench._ReadStamps(SimpleNamespace(exchange="kraken", _connect=lambda: None))
    st.reads += [(1000 * us, 1100 * us), (-1, 2500 * us)]  # the second read has no stamp
    times = aggbench._TickTimes()
    t = aggbench.empty_ticks(1)
    t["ts_event"], t["ts_recv"] = 2000 * us, 2600 * us
    t["exchange"] = aggbench.exchange_code("kraken")
    times.chunks.append((t["ts_event"].copy(), t["ts_recv"].copy(), np.array([2700 * us]),
                         t["exchange"].copy()))
    out = aggbench.latency_parts(times, {"kraken": st})
    # sent after the previous read returned: no bound for the sender; no stamp: none
    # for the receiver; all 500 us of the wire are "either"
    assert out["all"] == pytest.approx({"send_socket": 0, "socket_read": 0, "either": 500,
                                        "read_frame": 100, "frame_callback": 100,
                                        "total": 700})
    assert out["reads"]["kraken"] == pytest.approx((100, 100))  # the stamped read only
