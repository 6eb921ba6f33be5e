"""Aggregator throughput and latency: ``python -m benchmarks.aggregator``.

Two measurements, 4 exchanges x 10 symbols:

core
    Four feeder threads (one per exchange, keeping the connector contract) hand
    the aggregator single-record quote messages as fast as it takes them
    (``overflow="block"``), each stamped with ``ts_recv`` just before
    ``on_tick``.  Latency is consumer callback time minus ``ts_recv``: queue +
    state update + dispatch.  This is the aggregator's own ceiling.
loopback
    The four loopback simulators (``hftsig simulate`` in its own process) -> the
    four real connectors (websocket-client, Cython normalization) -> aggregator
    -> callback.  Defaults: ``--rate 150 --size-churn 1.0 --stagger 10`` offer
    about 108,000 ticks/s (every level of every book requoted 150 times a
    second, each step's updates released in 10 slices over the step).  With 2+
    CPUs the simulator is pinned to the last CPU and this process to the others
    (``--no-pin`` leaves placement to the OS): Linux wakes a receiving thread on
    the sender's CPU, and two busy processes sharing a core put millisecond
    scheduling delays into every percentile.

Latency method (loopback): the simulator stamps Kraken book updates
(``timestamp``, to the us) and Coinbase level2 events (``event_time``, to the
ns) when it writes the frame to the socket, and the normalized ticks carry the
stamp as ``ts_event``; the callback subtracts it from its own
``time.time_ns()`` (same host clock): send -> callback.  Quote and book records
only: Binance diff depth is batched per 100 ms and Coinbase trades per 250 ms
by protocol.  "receive -> callback" is callback time minus ``ts_recv`` (the
connector's clock when the frame was read): parse, normalize, book sync,
queue, state, dispatch.  "simulator late" is how long after its due time
each release of model updates (a step, or one of its ``--stagger`` slices)
went out, during the measuring window (the simulator's own report, asked for
with SIGUSR1 at both ends of the window; every other counter of the window is
read after the first answer).  Frames are stamped when written, so a late
release is not late by its stamp; but the simulator only falls behind when
its CPU stalled, and the catch-up burst that follows queues at the receiver.
"host steal" is the share of the window the hypervisor kept each side's
CPUs from running (``/proc/stat``): on a shared VM the host stalls a vCPU
for milliseconds at a time, and a tick that arrives during such a stall waits
for it whatever the code does, so a run with more than a few tenths of a
percent of steal has its p99 set by the host.  "receiver GCs" counts the
receiver's generation-2 collections in the window (they hold the GIL), the
longest, and the young collections a second.  Each run reports its own
percentiles; the summary row is the median of the runs.  After the runs, a
host check (:func:`host_stalls`) pins a process to each CPU that only naps
0.5 ms at a time, and counts the naps that end more than 1 ms late: the VM's
own stalls, with nothing of ours running.

``--size-churn`` sets the share of book levels whose size changes per model
step (the simulator's knob; 1.0 requotes every level): it raises ticks per
frame without changing any protocol shape.  Ticks are records after
normalization (book levels, trades, quotes, prices).

Where the time goes (one extra run): the connectors' ``_on_message`` (parse + normalize, book
sync and checksums, the queue put) and the aggregator's drain (state and
dispatch; with ``dispatch="connector"`` it runs on the connector thread that
finds nobody draining, inside the put, and is counted apart from it) are timed with
``perf_counter_ns`` around them, per delivered tick; both processes' CPU time
per tick comes from ``/proc``.  Stage times are wall time, so on a loaded
machine they include waiting for the GIL and for a core; the process CPU rows
do not.  The benchmark leaves ``sys.setswitchinterval`` alone unless
``--switch-interval`` is given (it then says so in the header).
"""
from __future__ import annotations

import argparse
import gc
import os
import platform
import queue
import re
import signal
import socket
import struct
import threading
import time

import numpy as np

from hftsig.market.aggregator import Aggregator
from hftsig.market.ticks import FLAG_LAST, KIND_QUOTE, empty_ticks, exchange_code

EXCHANGES = ("binance", "kraken", "coinbase", "coingecko")
SYMBOLS = ("BTC-USDT", "ETH-USDT", "ETH-BTC", "SOL-USDT", "BNB-USDT", "XRP-USDT", "ADA-USDT",
           "DOGE-USDT", "LTC-USDT", "LINK-USDT")


class _Feeder:
    """A connector sending pre-built one-record quote messages from its own thread."""

    def __init__(self, exchange, n, seed, rate=None):
        self.exchange = exchange
        self.rate = rate  # messages per second, None: as fast as the aggregator takes them
        self.symbols = list(SYMBOLS)
        self.on_tick = None
        rng = np.random.default_rng(seed)
        t = empty_ticks(n)
        t["kind"] = KIND_QUOTE
        t["flags"] = FLAG_LAST
        t["exchange"] = exchange_code(exchange)
        t["symbol"] = [SYMBOLS[i].encode() for i in rng.integers(0, len(SYMBOLS), n)]
        t["bid_px"] = 100 + rng.standard_normal(n)
        t["ask_px"] = t["bid_px"] + 0.01
        t["bid_sz"] = t["ask_sz"] = 1.0
        self._msgs = [t[i:i + 1].copy() for i in range(n)]
        self._thread = None
        self._stop = threading.Event()
        self.sent = 0
        self.done = threading.Event()

    def start(self):
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        tns = time.time_ns
        cb = self.on_tick
        msgs = self._msgs
        if self.rate is None:
            for m in msgs:
                now = tns()
                m["ts_event"] = now
                m["ts_recv"] = now
                cb(m)
            self.sent = len(msgs)
            self.done.set()
            return
        # paced: every millisecond, send what is due (bursts as a socket would deliver)
        t0 = time.monotonic()
        i = 0
        while i < len(msgs) and not self._stop.is_set():
            due = min(len(msgs), int((time.monotonic() - t0) * self.rate) + 1)
            while i < due:
                m = msgs[i]
                now = tns()
                m["ts_event"] = now
                m["ts_recv"] = now
                cb(m)
                i += 1
            self.sent = i
            time.sleep(0.001)
        self.done.set()

    def wait(self, timeout=None):
        return self.done.wait(timeout)

    def stop(self, timeout=1.0):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def stats(self):
        return {"messages": self.sent, "ticks": self.sent, "reconnects": 0, "gaps": 0,
                "checksum_failures": 0, "malformed": 0, "last_latency_ns": 0,
                "connected": True}


class _LatencySink:
    """Callback recording callback-time minus a timestamp field, per tick."""

    def __init__(self, field):
        self.field = field
        self.chunks = []
        self.n = 0
        self.busy_ns = 0

    def __call__(self, ticks):
        t0 = time.time_ns()
        self.chunks.append(t0 - ticks[self.field])
        self.n += len(ticks)
        self.busy_ns += time.time_ns() - t0

    def percentiles(self):
        if not self.chunks:
            return [float("nan")] * 3
        lat = np.concatenate(self.chunks)
        return list(np.percentile(lat, [50, 99, 99.9]) / 1e3)


def bench_core(n_per_exchange=60_000, repeats=3, rate=None, dispatch="connector"):
    rows = []
    for r in range(repeats):
        feeders = [_Feeder(ex, n_per_exchange, seed=i + 10 * r,
                           rate=None if rate is None else rate / len(EXCHANGES))
                   for i, ex in enumerate(EXCHANGES)]
        agg = Aggregator(feeders, queue_size=100_000, overflow="block", dispatch=dispatch,
                         drain_size=0)
        sink = _LatencySink("ts_recv")
        agg.on_tick(sink)
        t0 = time.perf_counter()
        with agg:
            assert agg.wait_finished(timeout=300)
            elapsed = time.perf_counter() - t0
        a = agg.aggregator_stats()
        total = sum(f.sent for f in feeders)
        assert sink.n == total, "ticks lost"
        p = sink.percentiles()
        rows.append({
            "ticks": total, "seconds": elapsed, "rate": total / elapsed,
            "p50_us": p[0], "p99_us": p[1], "p999_us": p[2],
            "worker_us_per_tick": a["worker_busy_s"] / total * 1e6,
            "callback_us_per_tick": sink.busy_ns / 1e3 / total,
            "ticks_per_chunk": total / a["chunks"],
        })
    return rows


def _simulator_frames(n=20_000):
    """Time the Normalizer on frames the simulators send (parse + normalize cost)."""
    try:
        from hftsig.market.normalize import Normalizer
    except ImportError:
        return None
    import websocket

    from hftsig.simulator import SimulatedExchanges

    out = {}
    with SimulatedExchanges(list(SYMBOLS[:2]), exchanges=("binance",), seed=1, rate=2000) as sim:
        url = sim.connector_kwargs("binance")["ws_url"] + "/ws/btcusdt@bookTicker"
        ws = websocket.create_connection(url, timeout=5)
        frames = [ws.recv() for _ in range(2000)]
        ws.close()
    norm = Normalizer("binance")
    frames = (frames * (n // len(frames) + 1))[:n]
    t0 = time.perf_counter_ns()
    for f in frames:
        norm.parse(f, 0)
    out["binance bookTicker"] = (time.perf_counter_ns() - t0) / len(frames) / 1e3
    return out


def _steal_seconds():
    """Per-CPU steal time in seconds, ``{cpu: s}`` (Linux /proc/stat; {} elsewhere).

    Steal is the time the hypervisor kept a virtual CPU from running while it had
    work: on a shared VM it stalls whatever ran there for milliseconds at a time,
    and no code in the guest can shorten that.
    """
    out = {}
    try:
        with open("/proc/stat") as f:
            for line in f:
                if not line.startswith("cpu"):
                    break
                parts = line.split()
                if parts[0] != "cpu" and len(parts) > 8:
                    out[int(parts[0][3:])] = int(parts[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return {}
    return out


_STALL_PROBE = """
import json, os, sys, time
os.sched_setaffinity(0, {int(sys.argv[1])})
seconds, nap = float(sys.argv[2]), 0.0005
late, n, end = [], 0, time.monotonic() + seconds
while time.monotonic() < end:
    t = time.monotonic()
    time.sleep(nap)
    over = time.monotonic() - t - nap
    n += 1
    if over > 0.001:
        late.append(over)
print(json.dumps({"wakeups": n, "late": len(late), "lost": sum(late), "max": max(late, default=0.0)}))
"""


def host_stalls(cpus, seconds=5.0):
    """How often the host stalls each CPU: a process pinned to each CPU in ``cpus``
    (all at once) naps 0.5 ms at a time for ``seconds`` and counts the naps that
    end more than 1 ms late.  Nothing else of this benchmark runs meanwhile, so
    what it sees is the VM's, not ours.  Returns ``{cpu: {"per_s", "lost_share",
    "max_ms"}}`` ({} where CPUs cannot be pinned)."""
    import json
    import subprocess
    import sys

    if not hasattr(os, "sched_setaffinity"):
        return {}
    procs = {c: subprocess.Popen([sys.executable, "-c", _STALL_PROBE, str(c), str(seconds)],
                                 stdout=subprocess.PIPE, text=True) for c in cpus}
    out = {}
    for c, p in procs.items():
        r = json.loads(p.communicate(timeout=seconds + 30)[0])
        out[c] = {"per_s": r["late"] / seconds, "lost_share": r["lost"] / seconds,
                  "max_ms": r["max"] * 1e3}
    return out


class _GcPauses:
    """Collections of this process during a window (``gc.callbacks``): count and
    longest pause of the full ones (generation 2); they hold the GIL throughout."""

    def __init__(self):
        self.full = 0
        self.full_max_ms = 0.0
        self.young = 0
        self._t0 = 0

    def __call__(self, phase, info):
        if phase == "start":
            self._t0 = time.perf_counter_ns()
            return
        if info["generation"] == 2:
            self.full += 1
            self.full_max_ms = max(self.full_max_ms, (time.perf_counter_ns() - self._t0) / 1e6)
        else:
            self.young += 1

    def __enter__(self):
        gc.callbacks.append(self)
        return self

    def __exit__(self, *exc):
        gc.callbacks.remove(self)


def _cpu_seconds(pid):
    """User + system CPU seconds of process ``pid`` (Linux /proc; None elsewhere)."""

    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


_REPLAYED = ("kraken", "coinbase")  # self-contained streams (snapshot then updates over the socket)


class _FrameCapture:
    """The raw frames a connector's ``_on_message`` gets, from its connection's
    start (snapshots first), up to ``limit``: for :func:`replay_offline`."""

    def __init__(self, conn, limit=40_000):
        self.exchange = conn.exchange
        self.frames = []
        inner = conn._on_message
        frames = self.frames

        def on_message(raw, ts_recv):
            if len(frames) < limit:
                frames.append((raw, ts_recv))
            return inner(raw, ts_recv)

        conn._on_message = on_message


def replay_offline(captures, symbols, endpoints):
    """Feed captured frames, in arrival order, through fresh connectors of the
    same exchanges and an aggregator (``dispatch="connector"``, the benchmark's
    two callbacks) on this one thread, with no socket and nothing waiting.

    What the receive path costs as code, against the receiver's CPU per tick
    live: the difference is reading the socket, waking a thread per frame,
    handing the GIL between connector threads and cold caches.  Returns
    ``{"frames", "ticks", "us_per_frame", "us_per_tick", "errors"}`` (errors:
    malformed frames, gaps, checksum failures, resyncs and handler errors of
    the replay, which must be 0 for the numbers to mean anything).
    """
    from hftsig.connectors import make_connectors

    names = [c.exchange for c in captures]
    conns = make_connectors(names, symbols, {n: endpoints[n] for n in names}, {})
    agg = Aggregator(conns, queue_size=100_000, overflow="block", dispatch="connector",
                     drain_size=0)
    # the aggregator's wiring of start(), without starting threads or connections
    agg._started = True
    agg._t_start = time.monotonic()
    for i, c in enumerate(conns):
        c.on_tick = agg._make_sink(i)
        c.send = lambda msg: None  # subscriptions go nowhere: the frames are already here
        c._on_open()
    sink_event = _LatencySink("ts_event")
    sink_recv = _LatencySink("ts_recv")
    agg.on_tick(sink_event, kinds=["quote", "book_delta"], exchanges=list(_REPLAYED))
    agg.on_tick(sink_recv)
    by_name = {c.exchange: c for c in conns}
    frames = sorted(((ts, by_name[cap.exchange], raw) for cap in captures
                     for raw, ts in cap.frames), key=lambda f: f[0])
    me = threading.get_ident()
    t0 = time.perf_counter()
    for ts, conn, raw in frames:
        conn._held_by = me  # as the connection thread does around each read
        conn._held = []
        conn._on_message(raw, ts)
        conn._release_held()
    elapsed = time.perf_counter() - t0
    errors = sum(c.stats().get(k, 0) for c in conns
                 for k in ("malformed", "gaps", "checksum_failures", "resyncs", "errors"))
    return {"frames": len(frames), "ticks": sink_recv.n,
            "us_per_frame": elapsed / max(len(frames), 1) * 1e6,
            "us_per_tick": elapsed / max(sink_recv.n, 1) * 1e6, "errors": errors}


# Linux's SO_TIMESTAMPNS (asm-generic; the socket module does not export it):
# the kernel stamps each arriving segment, recvmsg hands the stamp over
_SO_TIMESTAMPNS = 35


class _StampingSocket:
    """A connected socket whose ``recv`` also records when the kernel received
    the newest bytes it returns (``SO_TIMESTAMPNS``) and when the read returned.

    websocket-client only calls ``recv``, ``send``, ``fileno``, ``gettimeout``
    and the like on its socket: everything but ``recv`` goes to the socket.
    Linux turns receive stamping on for the whole host a moment after the first
    socket asks (a deferred switch), so the first reads may come without a
    stamp: they are kept, with -1 for the kernel's time.
    """

    def __init__(self, sock, reads):
        sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        self._sock = sock
        self._reads = reads

    def recv(self, bufsize, flags=0):
        data, ancillary, _, _ = self._sock.recvmsg(bufsize, 64, flags)
        now = time.time_ns()
        if data:
            kernel = -1
            for level, kind, payload in ancillary:
                if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS and len(payload) >= 16:
                    sec, nsec = struct.unpack("qq", payload[:16])
                    kernel = sec * 1_000_000_000 + nsec
            self._reads.append((kernel, now))
        return data

    def __getattr__(self, name):
        return getattr(self._sock, name)


class _ReadStamps:
    """Kernel receive stamps of one websocket connector's socket reads.

    Installed on a connector before it starts: each connection's plain TCP
    socket is wrapped in a :class:`_StampingSocket`.  ``reads`` holds
    ``(kernel ns or -1 if unstamped, read returned ns)`` per read, in order.
    The kernel's stamp of a read is that of the newest segment in it (Linux
    keeps the last one it copies), so "read returned - kernel" is the least
    the data waited in the socket for the connector thread (its wake-up and
    the GIL).
    """

    def __init__(self, conn):
        self.exchange = conn.exchange
        self.reads = []
        inner = conn._connect

        def connect():
            ws = inner()
            if ws is not None and type(ws.sock) is socket.socket:
                ws.sock = _StampingSocket(ws.sock, self.reads)
            return ws

        conn._connect = connect

    def arrays(self):
        """``(kernel_ns, read_ns)`` int64 arrays sorted by read time."""
        if not self.reads:
            z = np.zeros(0, np.int64)
            return z, z
        a = np.array(self.reads, dtype=np.int64)
        a = a[np.argsort(a[:, 1], kind="stable")]
        return a[:, 0], a[:, 1]


class _TickTimes:
    """Callback keeping, per tick, the send stamp (``ts_event``), the
    connector's frame time (``ts_recv``), the callback's clock and the exchange."""

    def __init__(self):
        self.chunks = []

    def __call__(self, ticks):
        now = time.time_ns()
        self.chunks.append((ticks["ts_event"].copy(), ticks["ts_recv"].copy(),
                            np.full(len(ticks), now, np.int64), ticks["exchange"].copy()))

    def clear(self):
        self.chunks.clear()

    def arrays(self):
        if not self.chunks:
            z = np.zeros(0, np.int64)
            return z, z, z, np.zeros(0, np.uint8)
        return tuple(np.concatenate([c[i] for c in self.chunks]) for i in range(4))


def latency_parts(times, stamps, tail=0.99):
    """Split each tick's send -> callback latency at its socket read.

    ``times``: a :class:`_TickTimes`; ``stamps``: exchange name ->
    :class:`_ReadStamps`.  A tick's read is the last read on its connection
    that returned before the connector stamped the frame (``ts_recv``): the
    one that completed the frame.  The wire part (send -> that read) is split
    by what the stamps prove: the frame's last bytes were not in the previous
    read, so they reached the socket after it returned ("send -> socket, at
    least": the simulator's write and loopback); the kernel stamped the
    read's newest bytes, so the read returned at least that long after the
    frame was in the socket ("socket -> read, at least": the connector
    thread's wake-up and the GIL); the rest could be either.  Then "read ->
    frame" (earlier frames of the same read worked through first) and "frame
    -> callback" (parse, book, queue, dispatch).  A read without a kernel
    stamp proves nothing about the receiver: its ticks' wire time past the
    sender's part counts as "either".

    Returns ``{"reads": {exchange: (p50, p99) us of socket -> read per read},
    "all": {part: median us}, "tail": {part: mean us over the slowest
    (1 - tail) of ticks}, "tail_us": the send -> callback quantile, "ticks"}``,
    None when nothing was stamped.
    """
    ev, rc, cb, ex = times.arrays()
    keys = ("send_socket", "socket_read", "either", "read_frame", "frame_callback", "total")
    parts = {k: [] for k in keys}
    reads = {}
    for name, st in stamps.items():
        kern, done = st.arrays()
        if not len(done):
            continue
        stamped = kern >= 0
        if stamped.any():
            reads[name] = tuple(np.percentile((done - kern)[stamped] / 1e3, [50, 99]))
        m = ex == exchange_code(name)
        i = np.searchsorted(done, rc[m], side="right") - 1
        ok = i >= 0
        i = i[ok]
        e, r, c = ev[m][ok], rc[m][ok], cb[m][ok]
        wire = done[i] - e
        prev = np.where(i > 0, done[np.maximum(i - 1, 0)], e)
        sender = np.clip(prev - e, 0, wire)
        receiver = np.where(kern[i] >= 0, np.clip(done[i] - kern[i], 0, wire - sender), 0)
        parts["send_socket"].append(sender / 1e3)
        parts["socket_read"].append(receiver / 1e3)
        parts["either"].append((wire - sender - receiver) / 1e3)
        parts["read_frame"].append((r - done[i]) / 1e3)
        parts["frame_callback"].append((c - r) / 1e3)
        parts["total"].append((c - e) / 1e3)
    if not parts["total"]:
        return None
    p = {k: np.concatenate(v) for k, v in parts.items()}
    if not len(p["total"]):
        return None
    cut = np.quantile(p["total"], tail)
    slow = p["total"] >= cut
    return {"reads": reads, "ticks": int(len(p["total"])), "tail_us": float(cut),
            "all": {k: float(np.median(v)) for k, v in p.items()},
            "tail": {k: float(v[slow].mean()) for k, v in p.items()}}


class _Timed:
    """Per-connector clocks around the receive path, installed on one connector.

    ``_on_message`` (everything after the websocket frame is read: parse,
    normalize, book sync, checksums), ``Normalizer.parse`` and the ``on_tick``
    hand-off (the aggregator's queue put, and the drain when it runs on this
    thread) are timed with ``perf_counter_ns``.  A connector holds the arrays of
    frames read together and hands them over after the last of them, outside
    ``_on_message``: hand-offs inside it are subtracted from it, the others
    are not in it.  The rest of the connector thread's time is the
    websocket-client read and waiting.  Costs two clock reads per call
    (~0.1 us), small against the frame costs measured.
    """

    def __init__(self, conn):
        self.conn = conn
        self.frames = self.on_message_ns = self.parse_ns = self.put_ns = 0
        self.nested_ns = 0  # put + drain time spent inside _on_message (the rest: held emits)
        self._inside = False
        self._norm = None
        inner = conn._on_message
        pc = time.perf_counter_ns
        timed = self

        class _Norm:
            def __init__(self, norm):
                self._n = norm

            def parse(self, *a, **k):
                t0 = pc()
                try:
                    return self._n.parse(*a, **k)
                finally:
                    timed.parse_ns += pc() - t0

            def __getattr__(self, name):
                return getattr(self._n, name)

        def on_message(raw, ts_recv):
            norm = getattr(conn, "_normalizer", None)
            if norm is not None and not isinstance(norm, _Norm):
                conn._normalizer = _Norm(norm)  # connectors make a new one per connection
            t0 = pc()
            timed._inside = True
            try:
                return inner(raw, ts_recv)
            finally:
                timed._inside = False
                timed.on_message_ns += pc() - t0
                timed.frames += 1

        conn._on_message = on_message

    def wrap_sink(self, agg):
        """Time the aggregator's queue put (call after the aggregator set ``on_tick``).

        With ``dispatch="connector"`` the put may drain the queue on this thread
        (state, callbacks): that part is the aggregator's drain time (its
        ``worker_busy_s``), left out of the put.
        """
        sink = self.conn.on_tick
        pc = time.perf_counter_ns

        def put(ticks):
            t0 = pc()
            b0 = agg._worker_busy_ns
            try:
                return sink(ticks)
            finally:
                dt = pc() - t0
                self.put_ns += dt - (agg._worker_busy_ns - b0)
                if self._inside:
                    self.nested_ns += dt

        self.conn.on_tick = put


class _SimulatorProcess:
    """``hftsig simulate`` in its own process (its own GIL); endpoints read from its output."""

    def __init__(self, symbols, rate, seconds, size_churn=0.05, stagger=1, cpus=None):
        import subprocess
        import sys

        import hftsig

        root = os.path.dirname(os.path.dirname(os.path.abspath(hftsig.__file__)))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(
            [root] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hftsig", "simulate", "--symbols", ",".join(symbols),
             "--rate", str(rate), "--seconds", str(seconds), "--interval", "3600",
             "--size-churn", str(size_churn), "--stagger", str(stagger)],
            stdout=subprocess.PIPE, text=True, env=env,
            preexec_fn=None if cpus is None else (lambda: os.sched_setaffinity(0, cpus)))
        self.endpoints = {}
        deadline = time.monotonic() + 60
        while len(self.endpoints) < len(EXCHANGES) and time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            parts = line.split()
            if parts and parts[0] in EXCHANGES:
                self.endpoints[parts[0]] = dict(p.split("=", 1) for p in parts[1:])
        if len(self.endpoints) < len(EXCHANGES):
            self.close()
            raise RuntimeError("hftsig simulate did not print its endpoints")
        # its later output (the schedule lines) is read on a thread, so that a
        # simulator that does not answer cannot hang the benchmark
        self._lines = queue.Queue()
        threading.Thread(target=self._read_lines, daemon=True).start()

    def _read_lines(self):
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put("")

    def connector_kwargs(self, exchange):
        return self.endpoints[exchange]

    def mark(self, timeout=5.0):
        """The simulator's release delays since the previous mark (or its start):
        a dict as ``SimulatedExchanges.schedule_stats()``, None if it did not answer
        within ``timeout`` seconds."""
        self.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + timeout
        while True:  # nothing but this line is due from it
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return None
            if not line:
                return None
            m = re.match(r"schedule: (\d+) releases(?:, late p50 (\d+) us p99 (\d+) us "
                         r"max (\d+) us)?", line)
            if m:
                return {"releases": int(m[1])} | {
                    k: float(v) if v is not None else float("nan")
                    for k, v in zip(("late_p50_us", "late_p99_us", "late_max_us"), m.groups()[1:])}

    def close(self):
        self.proc.terminate()
        self.proc.communicate(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def _pinning(pin):
    """(simulator CPUs, receiver CPUs) or None: with 2+ CPUs the simulator gets the
    last one and this process the others, so that neither process's threads wait
    for a core the other holds (Linux wakes a receiver on its sender's CPU)."""

    if not pin or not hasattr(os, "sched_getaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        return None
    return {cpus[-1]}, set(cpus[:-1])


def bench_loopback(seconds=10.0, rate=2000.0, separate_process=True, size_churn=0.05, stagger=1,
                   pin=True, stage_timing=True, dispatch="connector"):
    """Simulators -> connectors -> aggregator -> callback."""

    syms = list(SYMBOLS)
    pins = _pinning(pin and separate_process)
    before = os.sched_getaffinity(0) if pins else None
    if pins:
        os.sched_setaffinity(0, pins[1])  # threads started from here on inherit it
    try:
        return _bench_loopback(seconds, rate, separate_process, size_churn, stagger, pins, syms,
                               stage_timing, dispatch)
    finally:
        if pins:
            os.sched_setaffinity(0, before)


def _bench_loopback(seconds, rate, separate_process, size_churn, stagger, pins, syms,
                    stage_timing, dispatch):
    from hftsig import connectors  # noqa: F401
    from hftsig.connectors import make_connectors
    from hftsig.simulator import SimulatedExchanges

    if separate_process:
        simulator = _SimulatorProcess(syms, rate, seconds + 30, size_churn, stagger,
                                      None if pins is None else pins[0])
    else:
        simulator = SimulatedExchanges(syms, seed=3, rate=rate, size_churn=size_churn,
                                       stagger=stagger)
    with simulator as sim:
        conns = make_connectors(EXCHANGES, syms, {ex: sim.connector_kwargs(ex) for ex in EXCHANGES},
                                {"coingecko": {"interval": 1.0}})
        # stage clocks cost the receiver a few percent: the headline run goes without
        timers = {c.exchange: _Timed(c) for c in conns
                  if stage_timing and hasattr(c, "_on_message")}
        captures = [_FrameCapture(c) for c in conns if stage_timing and c.exchange in _REPLAYED]
        stamps = {c.exchange: _ReadStamps(c) for c in conns
                  if stage_timing and c.exchange in _REPLAYED}
        agg = Aggregator(conns, queue_size=100_000, overflow="block", dispatch=dispatch,
                         drain_size=0)
        sink_event = _LatencySink("ts_event")
        sink_recv = _LatencySink("ts_recv")
        agg.on_tick(sink_event, kinds=["quote", "book_delta"],
                    exchanges=["kraken", "coinbase"])
        agg.on_tick(sink_recv)
        tick_times = _TickTimes()
        if stamps:
            agg.on_tick(tick_times, kinds=["quote", "book_delta"], exchanges=list(stamps))
        with agg:
            for t in timers.values():
                t.wrap_sink(agg)  # the aggregator sets each connector's on_tick in start()
            time.sleep(2.0)  # connect, subscribe, snapshots
            sim_pid = simulator.proc.pid if separate_process else None
            if separate_process:  # the simulator's release delays from here on
                if simulator.mark() is None:
                    raise RuntimeError("the simulator did not answer SIGUSR1 (its schedule line)")
            else:
                sim.schedule_stats(reset=True)
            # every counter of the window is read after the mark: nothing between
            start = {n: s["ticks"] for n, s in agg.stats().items()}
            sink_recv.chunks.clear()
            sink_event.chunks.clear()
            sink_recv.busy_ns = sink_recv.n = 0
            tick_times.clear()
            a0 = agg.aggregator_stats()
            tm0 = {k: (t.frames, t.on_message_ns, t.parse_ns, t.put_ns, t.nested_ns)
                   for k, t in timers.items()}
            cpu0 = (_cpu_seconds(os.getpid()), sim_pid and _cpu_seconds(sim_pid))
            steal0 = _steal_seconds()
            t0 = time.perf_counter()
            with _GcPauses() as gcp:
                time.sleep(seconds)
            elapsed = time.perf_counter() - t0
            steal1 = _steal_seconds()
            cpu1 = (_cpu_seconds(os.getpid()), sim_pid and _cpu_seconds(sim_pid))
            schedule = simulator.mark() if separate_process else sim.schedule_stats()
            st = agg.stats()
            a = agg.aggregator_stats()
            tm1 = {k: (t.frames, t.on_message_ns, t.parse_ns, t.put_ns, t.nested_ns)
                   for k, t in timers.items()}
    per = {n: (s["ticks"] - start[n]) / elapsed for n, s in st.items()}
    parts = latency_parts(tick_times, stamps) if stamps else None
    replay = None
    if captures:
        replay = replay_offline(captures, syms, {ex: simulator.connector_kwargs(ex) for ex in _REPLAYED})
    total = sum(per.values()) * elapsed
    ticks = a["ticks"] - a0["ticks"]
    frames = sum(tm1[k][0] - tm0[k][0] for k in tm1)
    us = lambda i: sum(tm1[k][i] - tm0[k][i] for k in tm1) / 1e3 / max(total, 1)  # noqa: E731
    breakdown = {
        "frames": frames, "ticks_per_frame": total / max(frames, 1),
        "parse_normalize": us(2), "queue_put": us(3),
        "connector_other": us(1) - us(2) - us(4),  # book sync, checksums, counters
        "worker": (a["worker_busy_s"] - a0["worker_busy_s"]) * 1e6 / max(ticks, 1),
        "callbacks": (sink_recv.busy_ns + sink_event.busy_ns) / 1e3 / max(ticks, 1),
        "receiver_cpu": None if cpu0[0] is None else (cpu1[0] - cpu0[0]) * 1e6 / max(total, 1),
        "simulator_cpu": None if not cpu0[1] else (cpu1[1] - cpu0[1]) * 1e6 / max(total, 1),
        "receiver_cpu_share": None if cpu0[0] is None else (cpu1[0] - cpu0[0]) / elapsed,
        "simulator_cpu_share": None if not cpu0[1] else (cpu1[1] - cpu0[1]) / elapsed,
    }
    return {
        "pinned": None if pins is None else (sorted(pins[0]), sorted(pins[1])),
        "breakdown": breakdown, "replay": replay, "parts": parts,
        "rate": sum(per.values()), "per_exchange": per,
        "e2e_us": sink_event.percentiles(), "queue_us": sink_recv.percentiles(),
        "wire_us": {n: s["latency_us"] for n, s in st.items()},
        "worker_us_per_tick": a["worker_busy_s"] / max(a["ticks"], 1) * 1e6,
        "dropped": sum(s["dropped"] for s in st.values()),
        "schedule": schedule,
        "gc": {"full": gcp.full, "full_max_ms": gcp.full_max_ms, "young": gcp.young,
               "young_per_s": gcp.young / elapsed},
        # share of the window each side's CPUs were held off by the hypervisor
        "steal": None if not steal0 or pins is None else tuple(
            sum(steal1[c] - steal0[c] for c in cpus) / elapsed / len(cpus)
            for cpus in (pins[1], pins[0])),
    }


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m benchmarks.aggregator", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", choices=("core", "loopback", "both"), default="both")
    p.add_argument("--dispatch", choices=("connector", "worker", "both"), default="both",
                   help="Aggregator(dispatch=...): who drains the queue.  both: core rows for "
                        "each; loopback runs 'connector' (--repeats runs) plus one 'worker' run")
    p.add_argument("--ticks", type=int, default=60_000, help="core: messages per exchange")
    p.add_argument("--repeats", type=int, default=3, help="runs per measurement (medians)")
    p.add_argument("--core-rates", type=lambda t: [float(x) for x in t.split(",") if x],
                   default=[20_000.0, 50_000.0, 100_000.0],
                   help="core: offered total rates (ticks/s) for the latency rows")
    p.add_argument("--seconds", type=float, default=10.0, help="loopback: measuring time per run")
    p.add_argument("--rate", type=float, default=150.0,
                   help="loopback: simulator model steps per second (book updates per second "
                        "per symbol and venue; 150 with --size-churn 1 offers ~108k ticks/s)")
    p.add_argument("--size-churn", type=float, default=1.0,
                   help="loopback: share of book levels whose size changes each model step "
                        "(the simulator's --size-churn; 1.0 requotes every level: more ticks "
                        "per frame)")
    p.add_argument("--stagger", type=int, default=10,
                   help="loopback: the simulator releases each step's updates in this many "
                        "slices over the step interval (its --stagger)")
    p.add_argument("--no-pin", action="store_true",
                   help="loopback: leave CPU placement to the OS (default: simulator on the "
                        "last CPU, this process on the others)")
    p.add_argument("--same-process", action="store_true",
                   help="loopback: run the simulators in this process (they then share its GIL)")
    p.add_argument("--switch-interval", type=float, default=None,
                   help="sys.setswitchinterval for this run (seconds; Python's default 0.005)")
    args = p.parse_args(argv)
    if args.switch_interval is not None:
        import sys

        sys.setswitchinterval(args.switch_interval)

    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"# aggregator benchmark, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
          f"load average {load}, python {platform.python_version()}, "
          "4 exchanges x 10 symbols (shared machine: quote medians); GIL switch interval "
          f"{__import__('sys').getswitchinterval() * 1e3:g} ms"
          + (" (set by --switch-interval for this run)" if args.switch_interval is not None
             else " (Python's, untouched)"))
    if args.mode in ("core", "both"):
        print("\n## core: 4 feeder threads -> queue -> state -> callback (block, nothing lost)")
        print("one-record quote messages; latency = callback time - ts_recv stamped at send")
        print("| dispatch | offered ticks/s | achieved ticks/s | p50 us | p99 us | p99.9 us "
              "| drain us/tick | callback us/tick | ticks/chunk |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
        for dispatch, rate in [(d, r) for d in _dispatches(args) for r in (None, *args.core_rates)]:
            rows = bench_core(args.ticks, args.repeats, rate, dispatch)
            med = {k: float(np.median([r[k] for r in rows])) for k in rows[0]}
            offered = "max" if rate is None else f"{rate:,.0f}"
            print(f"| {dispatch} | {offered} | {med['rate']:,.0f} | {med['p50_us']:.1f} "
                  f"| {med['p99_us']:.1f} "
                  f"| {med['p999_us']:.1f} | {med['worker_us_per_tick']:.2f} | "
                  f"{med['callback_us_per_tick']:.2f} | {med['ticks_per_chunk']:.1f} |",
                  flush=True)
    if args.mode in ("loopback", "both"):
        _print_loopback(args)
    return 0


def _dispatches(args):
    return ("connector", "worker") if args.dispatch == "both" else (args.dispatch,)


def _print_loopback(args):
    runs = []
    head = _dispatches(args)[0]
    try:
        for _ in range(args.repeats):
            runs.append(bench_loopback(args.seconds, args.rate, not args.same_process,
                                       args.size_churn, args.stagger, pin=not args.no_pin,
                                       stage_timing=False, dispatch=head))
        other = None
        if args.dispatch == "both":
            other = bench_loopback(args.seconds, args.rate, not args.same_process,
                                   args.size_churn, args.stagger, pin=not args.no_pin,
                                   stage_timing=False, dispatch="worker")
        timed = bench_loopback(min(args.seconds, 8.0), args.rate, not args.same_process,
                               args.size_churn, args.stagger, pin=not args.no_pin,
                               stage_timing=True, dispatch=head)
    except ImportError as exc:
        print(f"\n## loopback: not run ({exc})")
        return
    stalls = host_stalls(sorted(os.sched_getaffinity(0))) if hasattr(os, "sched_getaffinity") else {}
    where = "in this process" if args.same_process else "in a separate process"
    r0 = runs[0]
    print(f"\n## loopback: simulators ({where}, --rate {args.rate:g}, --size-churn "
          f"{args.size_churn:g}, --stagger {args.stagger}) -> connectors -> aggregator -> callback")
    print("CPU pinning: " + ("none" if r0["pinned"] is None else
                             f"simulator on CPU {r0['pinned'][0]}, receiver on CPU "
                             f"{r0['pinned'][1]}"))
    print(f"{len(runs)} runs of {args.seconds:g} s with dispatch={head!r} without stage clocks"
          + (", then one with dispatch='worker'" if other is not None else "") + "; latency in us")
    print("| run | ticks/s | send -> callback p50 | p99 | p99.9 | receive -> callback p50 | p99 "
          "| receiver CPU us/tick (% core) | simulator CPU us/tick (% core) "
          "| simulator late p50 | p99 | host steal % receiver / simulator CPU "
          "| receiver GCs: full (longest ms) / young per s | dropped |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")

    def row(name, r):
        e, q, b = r["e2e_us"], r["queue_us"], r["breakdown"]
        cpu = lambda k: ("n/a" if b[k] is None else  # noqa: E731
                         f"{b[k]:.2f} ({b[k + '_share']:.0%})")
        sc = r.get("schedule") or {}
        late = " | ".join("n/a" if sc.get(k) is None else f"{sc[k]:.0f}"
                          for k in ("late_p50_us", "late_p99_us"))
        st = r.get("steal")
        steal = "n/a" if st is None else f"{100 * st[0]:.1f} / {100 * st[1]:.1f}"
        g = r.get("gc")
        gcs = "n/a" if g is None else (
            (f"{g['full']:g} ({g['full_max_ms']:.0f})" if g["full"] else "0")
            + f" / {g['young_per_s']:.0f}")
        print(f"| {name} | {r['rate']:,.0f} | {e[0]:.0f} | {e[1]:.0f} | {e[2]:.0f} | {q[0]:.0f} "
              f"| {q[1]:.0f} | {cpu('receiver_cpu')} | {cpu('simulator_cpu')} | {late} "
              f"| {steal} | {gcs} | {r['dropped']} |")

    for i, r in enumerate(runs):
        row(str(i + 1), r)
    if len(runs) > 1:
        med = {"rate": float(np.median([r["rate"] for r in runs])),
               "e2e_us": list(np.median([r["e2e_us"] for r in runs], axis=0)),
               "queue_us": list(np.median([r["queue_us"] for r in runs], axis=0)),
               "dropped": int(sum(r["dropped"] for r in runs)), "breakdown": {},
               "schedule": {k: (float(np.median([r["schedule"][k] for r in runs]))
                                if all(r.get("schedule") for r in runs) else None)
                            for k in ("late_p50_us", "late_p99_us")}}
        steals = [r["steal"] for r in runs]
        med["steal"] = None if None in steals else tuple(np.median(steals, axis=0))
        med["gc"] = {k: float(np.median([r["gc"][k] for r in runs]))
                     for k in ("full", "full_max_ms", "young_per_s")}
        for k in ("receiver_cpu", "simulator_cpu", "receiver_cpu_share", "simulator_cpu_share"):
            vals = [r["breakdown"][k] for r in runs]
            med["breakdown"][k] = None if None in vals else float(np.median(vals))
        row("median", med)
    if other is not None:
        row("dispatch='worker'", other)
    if stalls:
        print("host check after the runs (a process pinned to each CPU naps 0.5 ms at a time for 5 s, "
              "nothing else running): naps ending > 1 ms late: " + "; ".join(
                  f"CPU {c} {v['per_s']:.1f}/s, {100 * v['lost_share']:.1f}% of the time lost, "
                  f"longest {v['max_ms']:.1f} ms" for c, v in stalls.items()))
    print("per feed (run 1): " + ", ".join(f"{k} {v:,.0f} ticks/s"
                                           for k, v in r0["per_exchange"].items()))
    print("connector-side event -> receive per message (run 1, p50/p99 us; Binance depth is "
          "batched per 100 ms and Coinbase trades per 250 ms by protocol): " + ", ".join(
              f"{k} {v['p50']:.0f}/{v['p99']:.0f}" for k, v in r0["wire_us"].items()))
    b = timed["breakdown"]
    print(f"\nwhere the time goes (one more run with stage clocks, {b['frames']:,} frames, "
          f"{b['ticks_per_frame']:.1f} ticks/frame; us per delivered tick, stage times are wall "
          "time inside them, so they include waiting for the GIL):")
    print("| stage | us/tick |\n|---|---:|")
    print(f"| connector: Normalizer.parse (JSON parse + normalize, Cython) "
          f"| {b['parse_normalize']:.2f} |")
    print(f"| connector: book sync, checksums, counters | {b['connector_other']:.2f} |")
    print(f"| connector -> aggregator queue put | {b['queue_put']:.2f} |")
    print(f"| aggregator drain (queue take, stats, state, dispatch incl. callbacks; with "
          f"dispatch=\"connector\" on the connector thread) | {b['worker']:.2f} |")
    print(f"| of which benchmark callbacks | {b['callbacks']:.2f} |")
    if b["receiver_cpu"] is not None:
        print(f"| receiver process CPU, all threads (websocket reads included) "
              f"| {b['receiver_cpu']:.2f} |")
    if b["simulator_cpu"] is not None:
        print(f"| simulator process CPU (model step, JSON, websocket send) "
              f"| {b['simulator_cpu']:.2f} |")
    rp = timed.get("replay")
    if rp:
        print(f"| the same run's Kraken and Coinbase frames replayed offline through fresh "
              f"connectors + aggregator + these callbacks, one thread, no socket "
              f"({rp['frames']:,} frames, {rp['ticks']:,} ticks, {rp['us_per_frame']:.1f} us/frame"
              f"{'' if not rp['errors'] else ', ' + str(rp['errors']) + ' ERRORS: not comparable'}) "
              f"| {rp['us_per_tick']:.2f} |")
        print("(receiver CPU live minus the replay: reading the socket, a thread wake-up per "
              "frame, GIL hand-offs between connector threads, cold caches)")
    lp = timed.get("parts")
    if lp:
        names = {"send_socket": "send -> in the receiver's socket, at least (simulator write, "
                                "loopback)",
                 "socket_read": "in the socket -> read by the connector thread, at least "
                                "(wake-up, GIL)",
                 "either": "send -> read, not attributable to either side",
                 "read_frame": "read -> frame cut (earlier frames of the same read first)",
                 "frame_callback": "frame -> callback (parse, book, queue, dispatch)",
                 "total": "send -> callback"}
        print(f"\nsend -> callback split at the socket read (same run, Kraken and Coinbase book and "
              f"quote ticks, {lp['ticks']:,}; kernel receive stamps, SO_TIMESTAMPNS; us):")
        print(f"| part | median of the ticks | mean of the slowest 1% (send -> callback >= "
              f"{lp['tail_us']:.0f} us) |\n|---|---:|---:|")
        for k, label in names.items():
            print(f"| {label} | {lp['all'][k]:.0f} | {lp['tail'][k]:.0f} |")
        print("socket -> read per read, p50/p99 us: " + ", ".join(
            f"{k} {v[0]:.0f}/{v[1]:.0f}" for k, v in lp["reads"].items()))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    f = _simulator_frames()
    if f:
        for k, v in f.items():
            print(f"parse+normalize {k}: {v:.2f} us/message")


if __name__ == "__main__":
    raise SystemExit(main())
