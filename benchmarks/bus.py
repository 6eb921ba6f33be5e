"""Tick bus throughput and latency: ``python -m benchmarks.bus``.

A ``redis-server`` of its own (Debian's, persistence off, TCP on 127.0.0.1; or
``--url``) between a publishing process and this process consuming:

throughput
    The publisher (another process) sends ``--ticks`` quote ticks, 100-record
    batches (aggregator chunks), as fast as it can through
    :class:`hftsig.distributed.bus.Publisher`; this process reads them through a consumer
    group (:class:`hftsig.distributed.bus.BusConnector`, acknowledging every read) into a
    callback.  Ticks/s = ticks / (last tick in the callback - first publish).
    The "+ aggregator" row feeds :meth:`Aggregator.from_bus` instead (state,
    books, dispatch included).
latency
    The publisher offers ``--rate`` ticks/s (100-record batches at an even
    pace), each batch stamped (``ts_recv``) just before ``publish()``; the
    callback here subtracts it from its own ``time.time_ns()`` (same host
    clock): send -> callback, through the outbox, the sending thread, Redis and
    the consumer group read.  Warm-up batches are left out.

cryptofeed (where it is installed, in this interpreter or the one given with
``--cryptofeed-python``): the same two measurements through its Redis Streams
backend (``TradeStream``: one JSON-ish entry per update, from an asyncio
writer), read back through a consumer group and decoded into floats.  It is
offered the same rate; when it cannot carry it the achieved rate is shown.

Each measurement runs ``--runs`` times; the table shows medians.  The machine
is shared: its load average is printed with the table.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

from benchmarks.machine import describe

STREAM = "bench:ticks"

# -- the publishing side (run in a child process) ------------------------------------------


def _quotes(n, ts=0):
    from hftsig.market.ticks import FLAG_LAST, KIND_QUOTE, empty_ticks

    t = empty_ticks(n)
    t["kind"] = KIND_QUOTE
    t["flags"] = FLAG_LAST
    t["exchange"] = 1 + np.arange(n) % 3
    t["symbol"] = np.array([b"BTC-USDT", b"ETH-USDT", b"ETH-BTC", b"SOL-USDT"])[np.arange(n) % 4]
    t["bid_px"] = 100.0 + np.arange(n) % 13
    t["ask_px"] = t["bid_px"] + 0.5
    t["bid_sz"] = t["ask_sz"] = 1.0
    t["seq"] = t["seq_first"] = np.arange(n)
    t["ts_event"] = t["ts_recv"] = ts
    return t


def _publish_child(url, ticks, rate, batch):
    """Publish ``ticks`` in ``batch``-record batches, paced at ``rate`` ticks/s (0: flat out)."""
    from hftsig.distributed.bus import Publisher

    base = _quotes(batch)
    seq0 = base["seq"].copy()
    pub = Publisher(url, stream=STREAM, retention=3600, queue_size=10_000_000).start()
    n_batches = ticks // batch
    cpu0 = time.process_time()  # this process's CPU, both threads, publishing only
    t0 = time.perf_counter()
    for i in range(n_batches):
        if rate:
            left = t0 + i * batch / rate - time.perf_counter()
            if left > 0:
                time.sleep(left)
        # publish() copies the bytes at once: one array, rewritten in place, stands
        # for the aggregator's chunks (which cost the publisher nothing to make)
        base["seq"] = seq0 + i * batch
        base["ts_recv"] = time.time_ns()
        pub.publish(base)
    pub.flush(600)
    st = pub.stats()
    st["cpu_s"] = time.process_time() - cpu0
    pub.close()
    print(json.dumps(st), flush=True)


_CRYPTOFEED_CHILD = r"""
import asyncio, json, sys, time
from decimal import Decimal
from cryptofeed.backends.redis import TradeStream
from cryptofeed.types import Trade

host, port, ticks, rate = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])

async def main():
    cb = TradeStream(host=host, port=port, key="cf")
    cb.start(asyncio.get_running_loop())
    t0 = time.perf_counter()
    batch = 100
    for i in range(0, ticks, batch):
        if rate:
            left = t0 + i / rate - time.perf_counter()
            if left > 0:
                await asyncio.sleep(left)
        now = time.time()
        for j in range(batch):
            tr = Trade("BINANCE", "BTC-USDT", "buy", Decimal("0.5"), Decimal("100.5"), now,
                       id=str(i + j))
            await cb(tr, now)
        await asyncio.sleep(0)
    while cb.queue.qsize():
        await asyncio.sleep(0.01)
    await cb.stop()
    await asyncio.sleep(0.2)
    print(json.dumps({"ticks": ticks}), flush=True)

asyncio.run(main())
"""


# -- this process: server, consumers, table -------------------------------------------------
def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Server:
    def __init__(self):
        exe = shutil.which("redis-server")
        if exe is None:
            raise SystemExit("benchmarks.bus: redis-server is not installed "
                             "(apt-get install redis-server), or pass --url")
        self.dir = tempfile.mkdtemp(prefix="hftsig-bench-redis-")
        self.port = _free_port()
        self.proc = subprocess.Popen(
            [exe, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--logfile", os.path.join(self.dir, "log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        import redis

        deadline = time.monotonic() + 30
        while True:
            try:
                if redis.Redis(port=self.port).ping():
                    break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)
        shutil.rmtree(self.dir, ignore_errors=True)


def _child(args):
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, PYTHONPATH=os.getcwd()))


def _proc_cpu(pid):
    """CPU seconds (user + system) a process used so far, from /proc; None elsewhere."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as fh:
            f = fh.read().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return None


def _hftsig_run(url, ticks, rate, via_aggregator=False, warmup=0.2, server_pid=None):
    """One hftsig run: (ticks/s, latency samples in us, publisher stats) as seen by the
    consumer; the publisher stats also get the CPU microseconds per tick each side used."""
    from hftsig.distributed.bus import BusConnector, connect
    from hftsig.market.aggregator import Aggregator

    c = connect(url)
    c.delete(STREAM)
    c.close()
    lat = []
    state = {"n": 0, "t_last": 0, "t_first": None}
    done = threading.Event()

    def on_tick(b):
        now = time.time_ns()
        if state["t_first"] is None:  # when the first batch was published
            state["t_first"] = int(b["ts_recv"][0])
        state["n"] += len(b)
        state["t_last"] = now
        lat.append((now - int(b["ts_recv"][-1])) / 1e3)
        if state["n"] >= ticks:
            done.set()

    if via_aggregator:
        agg = Aggregator.from_bus(url, streams=STREAM, group="bench", consumer="c",
                                  drain_size=0, queue_size=1_000_000)
        agg.on_tick(on_tick)
        runner = agg
    else:
        runner = BusConnector(url, STREAM, group="bench", consumer="c", count=128,
                              on_tick=on_tick)
    runner.start()
    cpu0 = (time.process_time(), _proc_cpu(server_pid))
    p = _child([sys.executable, "-m", "benchmarks.bus", "--child", url, str(ticks), str(rate)])
    ok = done.wait(600)
    out, err = p.communicate(600)
    runner.stop()
    cpu1 = (time.process_time(), _proc_cpu(server_pid))
    if not ok:
        raise RuntimeError(f"the consumer got {state['n']} of {ticks} ticks: {err[-2000:]}")
    pub = json.loads(out.strip().splitlines()[-1])
    pub["cpu_us_per_tick"] = {
        "publisher": pub["cpu_s"] / ticks * 1e6,
        "redis": None if cpu0[1] is None else (cpu1[1] - cpu0[1]) / ticks * 1e6,
        "consumer": (cpu1[0] - cpu0[0]) / ticks * 1e6}
    rate_got = ticks / ((state["t_last"] - state["t_first"]) / 1e9)
    skip = int(len(lat) * warmup)
    return rate_got, lat[skip:], pub


def _cryptofeed_run(python, url_port, ticks, rate, warmup=0.2):
    """One cryptofeed run: its TradeStream backend -> a consumer group here."""
    import redis

    r = redis.Redis(port=url_port)
    key = "cf-BINANCE-BTC-USDT"
    r.delete(key)
    r.xgroup_create(key, "bench", id="0", mkstream=True)
    p = _child([python, "-c", _CRYPTOFEED_CHILD, "127.0.0.1", str(url_port), str(ticks),
                str(rate)])
    n = 0
    lat = []
    t_first = None
    t_last = 0
    deadline = time.monotonic() + 600
    while n < ticks and time.monotonic() < deadline:
        reply = r.xreadgroup("bench", "c", {key: ">"}, count=1000, block=100)
        now = time.time_ns()
        for _, msgs in reply or ():
            ids = []
            for eid, f in msgs:
                ids.append(eid)
                # what a consumer does with a cryptofeed entry: fields back to numbers
                float(f[b"price"]), float(f[b"amount"])
                ts = float(f[b"receipt_timestamp"])
                if t_first is None:  # when the first update was handed to the backend
                    t_first = ts * 1e9
                n += 1
            lat.append((now - ts * 1e9) / 1e3)
            t_last = now
            r.xack(key, "bench", *ids)
        if p.poll() is not None and not reply and n < ticks:
            break
    out, err = p.communicate(600)
    if n < ticks:
        raise RuntimeError(f"cryptofeed: got {n} of {ticks}: {err[-2000:]}")
    skip = int(len(lat) * warmup)
    return ticks / ((t_last - t_first) / 1e9), lat[skip:], r.xlen(key)


def _find_cryptofeed(python):
    if python is None:
        try:
            import cryptofeed  # noqa: F401
            import redis.asyncio  # noqa: F401
            return sys.executable, None
        except ImportError as exc:
            return None, f"cryptofeed is not installed here ({exc}); pip install " \
                         "'hftsig[bench]' or pass --cryptofeed-python"
    r = subprocess.run([python, "-c", "import cryptofeed, redis.asyncio; print("
                        "cryptofeed.__file__)"], capture_output=True, text=True)
    if r.returncode:
        return None, f"{python} cannot import cryptofeed and redis: {r.stderr.strip()[-300:]}"
    return python, None


def _pct(v, q):
    return float(np.percentile(np.asarray(v), q)) if len(v) else float("nan")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.bus", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default=None, help="an existing Redis (default: start one)")
    p.add_argument("--ticks", type=int, default=2_000_000, help="ticks per throughput run")
    p.add_argument("--rate", type=float, default=100_000.0, help="offered rate, latency runs")
    p.add_argument("--seconds", type=float, default=5.0, help="length of a latency run")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--cryptofeed-python", default=None,
                   help="an interpreter with cryptofeed and redis installed (e.g. a venv)")
    p.add_argument("--cryptofeed-ticks", type=int, default=200_000)
    p.add_argument("--child", nargs=3, metavar=("URL", "TICKS", "RATE"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.child:
        _publish_child(a.child[0], int(a.child[1]), float(a.child[2]), 100)
        return 0
    server = None if a.url else _Server()
    url = a.url or server.url
    port = int(url.rsplit(":", 1)[1].split("/")[0])
    rows = []
    try:
        lat_ticks = int(a.rate * a.seconds)
        spid = None if server is None else server.proc.pid
        thr, thr_agg, l50, l99, lmax, cpu, cpu_agg = [], [], [], [], [], [], []
        for _ in range(a.runs):
            r, _, pub = _hftsig_run(url, a.ticks, 0, server_pid=spid)
            thr.append(r)
            cpu.append(pub["cpu_us_per_tick"])
            r, _, pub_agg = _hftsig_run(url, a.ticks, 0, via_aggregator=True, server_pid=spid)
            thr_agg.append(r)
            cpu_agg.append(pub_agg["cpu_us_per_tick"])
            _, lat, _ = _hftsig_run(url, lat_ticks, a.rate)
            l50.append(_pct(lat, 50))
            l99.append(_pct(lat, 99))
            lmax.append(_pct(lat, 100))
        rows.append(("hftsig.distributed.bus (binary, 512/entry)", statistics.median(thr),
                     statistics.median(thr_agg), statistics.median(l50),
                     statistics.median(l99), f"entries {pub['entries']:,}"))
        python, why = _find_cryptofeed(a.cryptofeed_python)
        if python is None:
            rows.append(("cryptofeed TradeStream", None, None, None, None, why))
        else:
            cthr, c50, c99, achieved = [], [], [], []
            for _ in range(a.runs):
                r, _, _ = _cryptofeed_run(python, port, a.cryptofeed_ticks, 0)
                cthr.append(r)
                n = int(min(a.rate * a.seconds, a.cryptofeed_ticks))
                r, lat, _ = _cryptofeed_run(python, port, n, a.rate)
                achieved.append(r)
                c50.append(_pct(lat, 50))
                c99.append(_pct(lat, 99))
            rows.append(("cryptofeed 2.x TradeStream (1 entry/update)", statistics.median(cthr),
                         None, statistics.median(c50), statistics.median(c99),
                         f"at {a.rate:,.0f}/s offered it carried "
                         f"{statistics.median(achieved):,.0f}/s"))
    finally:
        if server is not None:
            server.stop()
    print(f"tick bus, {time.strftime('%Y-%m-%d')}, {describe()}")
    print(f"Redis {_redis_version(url) if a.url else _server_version()}, medians of {a.runs} "
          f"runs; latency at {a.rate:,.0f} ticks/s offered, 100-tick batches")
    hdr = (f"{'':44s} {'ticks/s':>11s} {'+aggregator':>12s} {'p50 ms':>8s} {'p99 ms':>8s}  "
           "note")
    print(hdr)
    print("-" * len(hdr))
    for name, t, ta, p50, p99, note in rows:
        def f(x, fmt):
            return f"{x:{fmt}}" if x is not None else "-"
        print(f"{name:44s} {f(t, '11,.0f')} {f(ta, '12,.0f')} "
              f"{f(p50 / 1e3 if p50 is not None else None, '8.3f')} "
              f"{f(p99 / 1e3 if p99 is not None else None, '8.3f')}  {note}")
    if cpu:
        # CPU time per tick does not depend on how many other programs share the cores:
        # 1e6 / (sum of the three) is what the machine would carry with all its cores free
        for label, runs in (("bus", cpu), ("bus + aggregator", cpu_agg)):
            med = {k: statistics.median(c[k] for c in runs) if runs[0][k] is not None else None
                   for k in ("publisher", "redis", "consumer")}
            parts = ", ".join(f"{k} {v:.3f}" for k, v in med.items() if v is not None)
            total = sum(v for v in med.values() if v is not None)
            print(f"CPU us per tick, throughput runs, {label}: {parts}; total {total:.3f} "
                  f"(= {1e6 / total:,.0f} ticks per CPU-second)")
    return 0


def _server_version():
    out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
    return out.split("v=")[1].split()[0] if "v=" in out else "?"


def _redis_version(url):
    from hftsig.distributed.bus import connect

    return connect(url).info("server").get("redis_version", "?")


if __name__ == "__main__":
    sys.exit(main())
