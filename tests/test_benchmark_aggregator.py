"""The aggregator benchmark's own instruments (``benchmarks/aggregator.py``):
the simulator process's window marks, host steal, host stalls, GC pauses.
Correctness only: no timing targets."""
import gc
import os
import signal
import sys
import time

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
    pytest.importorskip("hftsig.normalize", reason="needs the Cython normalizer built in place")
    import connectors  # noqa: F401

    from hftsig.aggregator import Aggregator
    from hftsig.cli import make_connectors
    from hftsig.simulator import SimulatedExchanges
    from hftsig.ticks import KIND_STATUS

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
        agg = Aggregator(conns, overflow="block", dispatch="connector")
        agg.on_tick(count)
        with agg:
            time.sleep(1.5)
    assert all(len(cap.frames) > 20 for cap in captures)
    out = aggbench.replay_offline(captures, symbols, endpoints)
    assert out["errors"] == 0
    assert out["frames"] == sum(len(cap.frames) for cap in captures)
    assert out["ticks"] == live["n"] > 0
    assert out["us_per_frame"] > 0 and out["us_per_tick"] > 0
