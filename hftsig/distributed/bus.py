"""A tick bus on Redis Streams: publish an aggregator's ticks, consume them elsewhere.

Publishers (:class:`Publisher`) append binary :data:`~hftsig.market.ticks.TICK_DTYPE`
records, many per stream entry, to a Redis stream per publishing process (or
per venue); consumers anywhere get them back through the same tick API
(:meth:`hftsig.market.aggregator.Aggregator.from_bus`), through consumer groups or as
plain readers, and the recorder writes them to Parquet acknowledging only
what is durable (:func:`record_from_bus`).

Wire format
-----------
Each stream entry has the fields

``v``
    format version, ``b"1"`` (:data:`FORMAT_VERSION`); an entry of another
    version is counted as malformed and skipped;
``k``
    ``b"t"``: ticks; ``b"s"``: a book snapshot (``KIND_BOOK_SNAPSHOT``
    records of every book the publisher holds, for consumers that join in the
    middle); ``b"b"``: a publisher (re)started: what follows begins with the
    venues' own snapshots;
``d``
    the records, ``n * 104`` bytes in the :data:`~hftsig.market.ticks.TICK_DTYPE`
    layout (little-endian), whole exchange messages only (entries end on the
    aggregator's chunk boundaries).

Entry ids are set by the publisher (``<ms>-<seq>``, increasing), so a batch
re-sent after a lost connection is refused by the server rather than stored
twice.  Streams are trimmed by time (``XADD ... MINID ~``): entries older
than ``retention`` seconds go, memory stays bounded.  Beside each stream the
publisher keeps ``<stream>:meta`` (a hash: version, book depths, host, pid)
and the set ``hftsig:streams`` names every stream ever announced.

Examples
--------
Publish a simulated session, and read it back in another process::

    $ hftsig run --simulate --no-view --publish redis://localhost:6379/0

    from hftsig import Aggregator
    agg = Aggregator.from_bus("redis://localhost:6379/0", since="-5min")
    with agg:
        ...  # agg.nbbo("BTC-USDT"), agg.ticks(), agg.on_tick(...) as live

In one process, ``Publisher(url).attach(aggregator)`` before
``aggregator.start()`` publishes everything that aggregator sees.

Without the Redis client (``pip install 'hftsig[bus]'``) importing this module
works; using it raises an ImportError saying what to install.
"""
from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
import time
from collections import deque
from typing import TYPE_CHECKING

import numpy as np

from hftsig.market.ticks import EXCHANGES, TICK_DTYPE, exchange_name

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    import redis

    from hftsig.market.aggregator import Aggregator

__all__ = ["FORMAT_VERSION", "DEFAULT_STREAM", "Publisher", "BusConnector", "BusRecorder",
           "bus_connectors", "connection_errors", "discover_streams", "record_from_bus",
           "parse_since", "connect"]

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
DEFAULT_STREAM = "hftsig:ticks"
STREAMS_KEY = "hftsig:streams"  # set of every stream a publisher announced
_REC = TICK_DTYPE.itemsize  # 104 bytes
_V = b"1"
_KIND_TICKS, _KIND_SNAPSHOT, _KIND_BEGIN = b"t", b"s", b"b"
_MAX_KIND = 6  # highest KIND_* code: a record above it is foreign


def _exchange_table():
    """code -> known, over the codes of :data:`hftsig.market.ticks.EXCHANGES` now."""
    table = np.zeros(256, dtype=bool)
    table[list(EXCHANGES)] = True
    return table


# the codes known at import; a venue registered later (hftsig.venues.register)
# is looked up again when a batch carries a code this table lacks
_EXCHANGE_CODES = _exchange_table()


def _redis():
    try:
        import redis
    except ImportError:
        raise ImportError("hftsig.distributed.bus needs the Redis client, the 'bus' extra: "
                          "pip install 'hftsig[bus]'") from None
    return redis


def connect(url: str) -> redis.Redis:
    """A Redis client for ``url`` (``redis://host:port/db``, ``rediss://``, ``unix://path``).

    Raises ValueError naming ``url`` when it is not a Redis URL, ImportError
    when the ``bus`` extra is not installed.
    """
    if not isinstance(url, str) or not re.match(r"^(redis|rediss|unix)://", url):
        raise ValueError(f"url must be a redis://, rediss:// or unix:// URL, got {url!r}")
    redis = _redis()
    return redis.Redis.from_url(url)


def connection_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that mean Redis cannot be reached (for callers that report them)."""
    redis = _redis()
    return (redis.ConnectionError, redis.TimeoutError, ConnectionError, OSError)


def _id_tuple(entry_id):
    if isinstance(entry_id, bytes):
        entry_id = entry_id.decode()
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _id_str(entry_id):
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


_SINCE_RE = re.compile(r"^-(\d+(?:\.\d*)?)\s*(ms|s|sec|min|m|h|d)?$")
_UNIT_S = {None: 1.0, "s": 1.0, "sec": 1.0, "ms": 1e-3, "min": 60.0, "m": 60.0, "h": 3600.0,
           "d": 86400.0}


def parse_since(since: str | float, now_ms: int) -> str:
    """Start position of a reader: a stream id to read *after*, or ``"$"``.

    ``since`` is ``"$"``/``"now"`` (new entries only), ``"0"``/``"first"``
    (everything retained), ``"-5min"``/``"-30s"``/``"-2h"`` (that long before
    ``now_ms``, the server's clock), a number of seconds back (``300``), or a
    stream id ``"<ms>-<seq>"``.  ValueError (naming ``since``) otherwise.
    """
    if isinstance(since, (int, float)) and not isinstance(since, bool):
        if not since >= 0:
            raise ValueError(f"since: seconds back must be >= 0, got {since}")
        return f"{max(int(now_ms - since * 1000), 0)}-0"
    if not isinstance(since, str):
        raise ValueError(f"since must be a string or seconds back, got {since!r}")
    s = since.strip().lower()
    if s in ("$", "now"):
        return "$"
    if s in ("0", "first", "0-0"):
        return "0-0"
    m = _SINCE_RE.match(s)
    if m:
        return f"{max(int(now_ms - float(m[1]) * _UNIT_S[m[2]] * 1000), 0)}-0"
    if re.match(r"^\d+-\d+$", s):
        return s
    raise ValueError(f"since must be '$', '0', '-5min'-like, seconds back or a stream id "
                     f"'<ms>-<seq>', got {since!r}")


def _server_ms(client):
    sec, usec = client.time()
    return int(sec) * 1000 + int(usec) // 1000


def discover_streams(client: redis.Redis, prefix: str = DEFAULT_STREAM) -> list[str]:
    """Names of the tick streams announced under ``prefix`` that exist now, sorted."""
    names = sorted(_id_str(n) for n in client.smembers(STREAMS_KEY))
    out = [n for n in names if (n == prefix or n.startswith(prefix + ":"))
           and client.type(n) in (b"stream", "stream")]
    return out


# -- publishing ---------------------------------------------------------------------------
class _Outbox:
    """Bounded FIFO of byte strings of records (capacity in ticks), dropping the oldest."""

    def __init__(self, capacity):
        self.capacity = capacity
        self._items = deque()
        self._n = 0
        self._cond = threading.Condition()
        self.dropped = 0
        self.dropped_batches = 0
        self.high_water = 0
        self.busy = False  # items taken and not yet sent (set under the lock, with the take)
        self.inflight = 0  # ticks of those items

    def __len__(self):
        return self._n

    def put(self, kind, data):
        n = len(data) // _REC
        with self._cond:
            if kind == _KIND_SNAPSHOT:
                # only the newest snapshot is worth sending; it does not count
                # against the capacity (it replaces, never accumulates)
                self._items = deque(i for i in self._items if i[0] != _KIND_SNAPSHOT)
                self._items.append((kind, data))
                self._cond.notify()
                return
            while self._n + n > self.capacity and self._n > 0:
                k, old = self._items.popleft()
                if k == _KIND_TICKS:
                    self._n -= len(old) // _REC
                    self.dropped += len(old) // _REC
                    self.dropped_batches += 1
            self._items.append((kind, data))
            self._n += n
            if self._n > self.high_water:
                self.high_water = self._n
            self._cond.notify()

    def take(self, timeout):
        with self._cond:
            if not self._items:
                self._cond.wait(timeout)
            items = list(self._items)
            self._items.clear()
            self._n = 0
            self.busy = bool(items)
            self.inflight = sum(len(d) // _REC for k, d in items if k == _KIND_TICKS)
            return items

    def done(self):
        """The items taken last were sent (or given up)."""
        with self._cond:
            self.busy = False
            self.inflight = 0

    def counts(self):
        """(queued, in flight, dropped, dropped batches, high water), read together."""
        with self._cond:
            return self._n, self.inflight, self.dropped, self.dropped_batches, self.high_water


class Publisher:
    """Publish tick batches to Redis streams from a background thread.

    Parameters
    ----------
    url : str
        ``redis://host:6379/0`` (see :func:`connect`).
    stream : str, default ``"hftsig:ticks"``
        Stream name.  One publisher per stream: give each publishing process
        its own (``hftsig:ticks:host1``), or use ``per_venue``.
    per_venue : bool, default False
        One stream per venue, ``<stream>:<exchange>`` (``hftsig:ticks:kraken``).
    retention : float, default 600
        Seconds of ticks a stream keeps; older entries are trimmed as new ones
        are added (``MINID ~``, whole radix-tree nodes: a little more may stay).
    entry_records : int, default 512
        Records gathered into one entry before it is sent (entries end on
        chunk boundaries, so one may hold more); one record per entry costs
        Redis 50-100 times more per tick.
    queue_size : int, default 1_000_000
        Ticks waiting to be sent, at most; beyond, the oldest are dropped and
        counted (``stats()["dropped"]``): a slow or absent server never
        stalls the feed.
    snapshot_interval : float or None, default 1.0
        Seconds between book snapshot entries (with :meth:`attach`); None: none.

    Use :meth:`attach` to publish an aggregator's ticks (and its book
    snapshots), or call :meth:`publish` with batches.  :meth:`close` sends
    what is queued (up to its timeout) and stops.
    """

    def __init__(self, url: str, *, stream: str = DEFAULT_STREAM, per_venue: bool = False,
                 retention: float = 600.0, entry_records: int = 512,
                 queue_size: int = 1_000_000, snapshot_interval: float | None = 1.0) -> None:
        if not isinstance(stream, str) or not stream:
            raise ValueError(f"stream must be a non-empty string, got {stream!r}")
        retention = float(retention)
        if not retention > 0:
            raise ValueError(f"retention must be > 0 seconds, got {retention}")
        entry_records = int(entry_records)
        if entry_records < 1:
            raise ValueError(f"entry_records must be >= 1, got {entry_records}")
        queue_size = int(queue_size)
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if snapshot_interval is not None:
            snapshot_interval = float(snapshot_interval)
            if not snapshot_interval > 0:
                raise ValueError(f"snapshot_interval must be > 0 or None, got "
                                 f"{snapshot_interval}")
        self.client = connect(url)
        self.url = url
        self.stream = stream
        self.per_venue = bool(per_venue)
        self.retention = retention
        self.entry_records = entry_records
        self.snapshot_interval = snapshot_interval
        self.book_depths = {}
        self._outbox = _Outbox(queue_size)
        self._agg = self.aggregator = None
        self._next_snapshot = 0.0
        self._last_ms = 0
        self._seq = 0
        self._begun = set()  # streams announced on the current connection
        self._announced = set()  # streams that got this publisher's begin entry
        self._stop = threading.Event()
        self._thread = None
        self.ticks_sent = 0
        self.entries_sent = 0
        self.snapshots_sent = 0
        self.send_errors = 0
        self.reconnects = 0
        self.last_id = None

    def __repr__(self):
        return f"Publisher(stream={self.stream!r}, per_venue={self.per_venue})"

    # -- feeding -------------------------------------------------------------------------
    def attach(self, aggregator: Aggregator) -> Publisher:
        """Publish every chunk of ``aggregator`` (and its book snapshots); returns ``self``.

        ``aggregator`` may also be a list of connectors: they get an
        :class:`~hftsig.market.aggregator.Aggregator` of their own (no drain buffer),
        :attr:`aggregator`, to start and stop.  Register before the
        aggregator starts to publish from the first tick.  The callback only
        copies the chunk's bytes into the outbox.
        """
        from hftsig.market.aggregator import Aggregator

        if not isinstance(aggregator, Aggregator):
            aggregator = Aggregator(aggregator, drain_size=0)
        self._agg = self.aggregator = aggregator
        for c in aggregator.connectors:
            d = getattr(c, "book_depth", None)
            if d is not None:
                self.book_depths[str(c.exchange)] = int(d)
        aggregator.on_tick(self._on_chunk)
        return self

    def _on_chunk(self, chunk):
        self._outbox.put(_KIND_TICKS, chunk.tobytes())
        if self.snapshot_interval is not None:
            now = time.monotonic()
            if now >= self._next_snapshot:
                # taken on the draining thread right after this chunk's state
                # update, queued after the chunk: the snapshot holds exactly the
                # ticks sent before it
                self._next_snapshot = now + self.snapshot_interval
                snap = self._agg.book_snapshot_ticks()
                if len(snap):
                    self._outbox.put(_KIND_SNAPSHOT, snap.tobytes())

    def publish(self, ticks: np.ndarray) -> None:
        """Queue a TICK_DTYPE batch (whole messages) for sending; never blocks."""
        ticks = np.asarray(ticks)
        if ticks.dtype != TICK_DTYPE:
            raise TypeError(f"ticks must have TICK_DTYPE, got {ticks.dtype}")
        if ticks.size:
            self._outbox.put(_KIND_TICKS, np.ascontiguousarray(ticks.reshape(-1)).tobytes())

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> Publisher:
        """Start the sending thread; returns ``self``."""
        if self._thread is not None:
            raise RuntimeError("Publisher already started")
        self._thread = threading.Thread(target=self._run, name="hftsig-bus-publisher",
                                        daemon=True)
        self._thread.start()
        return self

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until everything queued so far was sent; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while len(self._outbox._items) or self._outbox.busy:
            if deadline is not None and time.monotonic() > deadline:
                return False
            if self._thread is None or not self._thread.is_alive():
                return False
            time.sleep(0.005)
        return True

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued (up to ``timeout`` seconds), then stop the thread."""
        if self._thread is None:
            return
        self.flush(timeout)
        self._stop.set()
        with self._outbox._cond:
            self._outbox._cond.notify_all()
        self._thread.join(timeout)
        try:
            self.client.close()
        except Exception:  # closing a dead connection
            pass

    def __enter__(self) -> Publisher:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stats(self) -> dict[str, Any]:
        """Counters: ticks/entries/snapshots sent, dropped (outbox overflow), errors.

        ``queued`` ticks wait in the outbox, ``sending`` ticks were taken by the
        sending thread and are not sent yet (it retries them while Redis is away).
        """
        queued, inflight, dropped, dropped_batches, high_water = self._outbox.counts()
        return {
            "ticks": self.ticks_sent,
            "entries": self.entries_sent,
            "snapshots": self.snapshots_sent,
            "dropped": dropped,
            "dropped_batches": dropped_batches,
            "queued": queued,
            "sending": inflight,
            "queue_high_water": high_water,
            "send_errors": self.send_errors,
            "reconnects": self.reconnects,
            "last_id": self.last_id,
        }

    # -- sending -------------------------------------------------------------------------
    def _stream_of(self, code):
        return f"{self.stream}:{exchange_name(code)}" if self.per_venue else self.stream

    def _next_id(self):
        """An entry id above every id this publisher (or an earlier one) used."""
        ms = int(time.time() * 1000)
        if ms > self._last_ms:
            self._last_ms, self._seq = ms, 0
        else:
            self._seq += 1
        return f"{self._last_ms}-{self._seq}"

    def _entries(self, items):
        """(stream, kind, payload, id) of the entries for the taken outbox items, in order.

        Ids are given here, once: a batch re-sent after a connection error keeps
        them, so the server refuses the entries it already has."""
        out = []
        pend = {}  # stream -> [byte strings] of ticks not yet sent

        def emit(stream):
            parts = pend.pop(stream, None)
            if parts:
                out.append((stream, _KIND_TICKS, b"".join(parts), self._next_id()))

        limit = self.entry_records * _REC
        for kind, data in items:
            if self.per_venue:
                arr = np.frombuffer(data, dtype=TICK_DTYPE)
                codes = arr["exchange"]
                split = [(int(c), arr[codes == c].tobytes()) for c in np.unique(codes).tolist()]
            else:
                split = [(None, data)]
            for code, part in split:
                stream = self.stream if code is None else self._stream_of(code)
                if kind == _KIND_SNAPSHOT:
                    emit(stream)  # the snapshot stands after the ticks it includes
                    out.append((stream, kind, part, self._next_id()))
                    continue
                parts = pend.setdefault(stream, [])
                parts.append(part)
                if sum(len(p) for p in parts) >= limit:
                    emit(stream)
        for stream in list(pend):
            emit(stream)
        return out

    def _begin(self, stream, first):
        """Announce ``stream`` (meta hash, name set); when ``first``, add the begin entry.

        The begin entry tells consumers that the venues' own book snapshots
        follow (the connectors just started); a mere reconnect to Redis adds none.
        """
        client = self.client
        meta = {"v": FORMAT_VERSION, "book_depths": json.dumps(self.book_depths),
                "host": socket.gethostname(), "pid": os.getpid(),
                "retention": self.retention, "started_ns": time.time_ns()}
        pipe = client.pipeline(transaction=False)
        pipe.hset(f"{stream}:meta", mapping=meta)
        pipe.sadd(STREAMS_KEY, stream)
        if first:
            pipe.xadd(stream, {"v": _V, "k": _KIND_BEGIN, "d": b""}, id=self._begin_id(stream))
        pipe.execute()
        self._begun.add(stream)
        self._announced.add(stream)

    def _begin_id(self, stream):
        """An id above the stream's top (an earlier publisher's entries) and our own."""
        client = self.client
        top = client.xinfo_stream(stream)["last-generated-id"] if client.exists(stream) else None
        if top is not None:
            ms, seq = _id_tuple(top)
            if (ms, seq) >= (self._last_ms, self._seq):
                self._last_ms, self._seq = ms, seq
        return self._next_id()

    def _send(self, entries):
        minid = f"{max(int(time.time() * 1000 - self.retention * 1000), 0)}"
        fresh = [s for s in dict.fromkeys(e[0] for e in entries) if s not in self._begun]
        first = [s for s in fresh if s not in self._announced]
        for stream in fresh:
            self._begin(stream, first=stream in first)
        if first:
            # a begin entry took an id above those given (nothing of these entries
            # was sent yet: a stream's first send): give them again.  On a reconnect
            # (no begin entry) they keep theirs, so the server refuses a resent
            # entry it already holds instead of storing it twice.
            entries[:] = [(s, k, d, self._next_id()) for s, k, d, _ in entries]
        pipe = self.client.pipeline(transaction=False)
        for stream, kind, payload, eid in entries:
            pipe.xadd(stream, {"v": _V, "k": kind, "d": payload}, id=eid, minid=minid,
                      approximate=True)
        results = pipe.execute(raise_on_error=False)
        redis = _redis()
        for (stream, kind, payload, eid), res in zip(entries, results):
            if isinstance(res, redis.ResponseError):
                # "equal or smaller than the target stream top item": not ours to
                # resend (a server that lost its tail, or a second publisher)
                self.send_errors += 1
                if self.send_errors == 1:
                    log.warning("bus: XADD to %s refused: %s (counted; logged once)", stream, res)
                continue
            if isinstance(res, Exception):
                raise res
            self.last_id = _id_str(res)
            self.entries_sent += 1
            if kind == _KIND_TICKS:
                self.ticks_sent += len(payload) // _REC
            else:
                self.snapshots_sent += 1

    def _run(self):
        errors = connection_errors()
        backoff = 0.05
        while True:
            items = self._outbox.take(0.05)
            if not items:
                if self._stop.is_set():
                    return
                continue
            try:
                entries = self._entries(items)
                while True:
                    try:
                        self._send(entries)
                        backoff = 0.05
                        break
                    except errors as exc:
                        # the server is away: keep the entries (same ids: a resend of
                        # one that arrived is refused) and retry; the outbox goes on
                        # filling and drops its oldest when full
                        self.reconnects += 1
                        if self.reconnects == 1 or self.reconnects % 100 == 0:
                            log.warning("bus: publishing failed (%s); retrying", exc)
                        self._begun.clear()
                        if self._stop.wait(backoff):
                            return
                        backoff = min(backoff * 2, 1.0)
            except Exception:  # a bug must not stop publishing silently
                log.exception("bus: publisher failed on a batch; it is dropped")
            finally:
                self._outbox.done()


# -- consuming ----------------------------------------------------------------------------
def _decode(fields):
    """(kind, ticks) of a stream entry, or None when it is malformed or foreign."""
    if not isinstance(fields, dict):
        return None
    if fields.get(b"v") != _V:
        return None
    kind = fields.get(b"k")
    data = fields.get(b"d")
    if kind == _KIND_BEGIN:
        return kind, None
    if kind not in (_KIND_TICKS, _KIND_SNAPSHOT) or not isinstance(data, bytes):
        return None
    if not data or len(data) % _REC:
        return None
    ticks = np.frombuffer(data, dtype=TICK_DTYPE)
    k = ticks["kind"]
    if (k == 0).any() or (k > _MAX_KIND).any():
        return None
    if not _EXCHANGE_CODES[ticks["exchange"]].all() and \
            not _exchange_table()[ticks["exchange"]].all():
        return None
    return kind, ticks


class _Reader:
    """Reads one or more streams, through a consumer group or not, decoding entries.

    :meth:`read` returns ``[(stream, id, kind, ticks)]`` of good entries;
    malformed ones are counted (``malformed``), logged once, and in a group
    acknowledged at once (they would stay pending forever).  In a group the
    consumer's own pending entries (delivered before a restart, never
    acknowledged) come first, then new ones.  Entries at or below the last id
    handed out per stream are skipped: a reconnect or a server that lost its
    tail re-delivers nothing twice.
    """

    def __init__(self, url, streams, group=None, consumer=None, since=None):
        self.url = url
        self.client = connect(url)
        self.streams = list(streams)
        self.group = group
        self.consumer = consumer or f"{socket.gethostname()}-{os.getpid()}"
        self.since = since
        self.malformed = 0
        self.reconnects = 0
        self._backoff = 0.05  # seconds before the next reconnect (read_or_reconnect)
        self.entries = 0
        self.last = {}  # stream -> id tuple of the last entry handed out
        self._pos = {}  # group-less: stream -> id to read after
        self._pending = {}  # group: stream -> id after which own pending entries are read
        self._ready = False

    def _setup(self):
        client = self.client
        if self.group is not None:
            redis = _redis()
            for s in self.streams:
                start = "0-0" if self.since is None else parse_since(self.since,
                                                                     _server_ms(client))
                try:
                    client.xgroup_create(s, self.group, id=start, mkstream=True)
                except redis.ResponseError as exc:
                    if "BUSYGROUP" not in str(exc):
                        raise
            self._pending = {s: "0-0" for s in self.streams}
        elif not self._pos:
            now = _server_ms(client)
            for s in self.streams:
                since = self.since if self.since is not None else "$"
                if since == "snapshot":
                    self._pos[s] = self._snapshot_start(s)
                else:
                    pos = parse_since(since, now)
                    if pos == "$":  # fixed now: a reconnect must not skip what came meanwhile
                        info = client.xinfo_stream(s) if client.exists(s) else None
                        pos = _id_str(info["last-generated-id"]) if info else "0-0"
                    self._pos[s] = pos
        self._ready = True

    def _snapshot_start(self, stream):
        """Id just before the newest snapshot entry still retained (or the stream's end)."""
        client = self.client
        top = "+"
        while True:  # newest first, in pages
            page = client.xrevrange(stream, max=top, min="-", count=200)
            if not page:
                break
            for eid, fields in page:
                if fields.get(b"k") == _KIND_SNAPSHOT:
                    ms, seq = _id_tuple(eid)
                    return f"{ms}-{seq - 1}" if seq else f"{ms - 1}-18446744073709551615"
            ms, seq = _id_tuple(page[-1][0])
            if seq:
                top = f"{ms}-{seq - 1}"
            elif ms:
                top = f"{ms - 1}-18446744073709551615"
            else:
                break
        info = client.xinfo_stream(stream) if client.exists(stream) else None
        return _id_str(info["last-generated-id"]) if info else "0-0"

    def _reconnect(self, exc):
        self.reconnects += 1
        if self.reconnects == 1 or self.reconnects % 100 == 0:
            log.warning("bus: reading %s failed (%s); reconnecting", self.streams, exc)
        try:
            self.client.close()
        except Exception:  # already broken
            pass
        self.client = connect(self.url)
        self._ready = False

    def read_or_reconnect(self, count, stop, block_ms=100):
        """:meth:`read`, or ``None`` after a lost connection.

        Then it first waits the backoff (doubling from 50 ms to 2 s while the
        server stays away; cut short by the ``stop`` event) and reconnects
        unless stopped: the reading loops of the consumers call it again.
        """
        errors = connection_errors()
        try:
            entries = self.read(count, block_ms=block_ms)
        except errors as exc:
            if not stop.wait(self._backoff):
                try:
                    self._reconnect(exc)
                except errors:
                    pass
            self._backoff = min(self._backoff * 2, 2.0)
            return None
        self._backoff = 0.05
        return entries

    def read(self, count=100, block_ms=100):
        """Good entries, at most ``count`` per stream, waiting up to ``block_ms``.

        Connection errors propagate (the caller backs off and calls again; the
        reader reconnects and, in a group, re-reads its pending entries)."""
        if not self._ready:
            self._setup()
        client = self.client
        if self.group is None:
            reply = client.xread(dict(self._pos), count=count, block=block_ms)
        else:
            reply = None
            if self._pending:
                # this consumer's entries delivered before and never acknowledged
                reply = client.xreadgroup(self.group, self.consumer, dict(self._pending),
                                          count=count)
                got = {_id_str(s) for s, msgs in reply or () if msgs}
                for s in list(self._pending):
                    if s not in got:
                        del self._pending[s]
                if not got:
                    reply = None
            if reply is None and not self._pending:
                reply = client.xreadgroup(self.group, self.consumer,
                                          {s: ">" for s in self.streams}, count=count,
                                          block=block_ms)
        out = []
        bad = {}
        for stream, msgs in reply or ():
            stream = _id_str(stream)
            last = self.last.get(stream, (-1, -1))
            for eid, fields in msgs:
                eid = _id_str(eid)
                if self.group is None:
                    self._pos[stream] = eid
                elif stream in self._pending:
                    self._pending[stream] = eid
                if fields is None:  # pending entry trimmed away since: nothing to deliver
                    bad.setdefault(stream, []).append(eid)
                    continue
                t = _id_tuple(eid)
                if t <= last:  # delivered before (a reconnect re-read it)
                    if self.group is not None:
                        bad.setdefault(stream, []).append(eid)
                    continue
                dec = _decode(fields)
                last = t
                if dec is None:
                    self.malformed += 1
                    if self.malformed == 1:
                        log.warning("bus: malformed or foreign entry %s on %s skipped "
                                    "(counted; logged once)", eid, stream)
                    if self.group is not None:
                        bad.setdefault(stream, []).append(eid)
                    continue
                self.entries += 1
                out.append((stream, eid, dec[0], dec[1]))
            self.last[stream] = last
        for stream, ids in bad.items():
            client.xack(stream, self.group, *ids)
        return out

    def ack(self, stream, ids):
        if self.group is not None and ids:
            self.client.xack(stream, self.group, *ids)

    def close(self):
        try:
            self.client.close()
        except Exception:  # a dead connection
            pass


class BusConnector:
    """A connector (see :mod:`connectors`) whose ticks come from one tick stream.

    Parameters
    ----------
    url : str
        Redis URL (see :func:`connect`).
    stream : str
        Stream name (see :class:`Publisher`).
    group : str or None
        Consumer group: each entry goes to one consumer of the group, and is
        acknowledged once handed to ``on_tick``; a restarted consumer (same
        ``consumer`` name) first gets the entries it had not acknowledged.
        None: a plain reader (every reader sees everything).
    consumer : str or None
        Consumer name within the group; default ``<host>-<pid>`` (give a
        fixed name to resume after a restart).
    since : str, float or None
        Where to start (see :func:`parse_since`): for a new group, where it
        starts (default ``"0"``: everything retained); for a reader, default
        ``"snapshot"``: from the newest book snapshot (books right away).
    snapshots : bool, default True
        Hand the publisher's book snapshot entries on while this consumer has
        no books yet (it joined mid-stream): up to the first snapshot, or not
        at all when it started where a publisher began.  False: never (only
        the published ticks, e.g. to record them).
    count : int, default 64
        Entries read per request.

    The tick batches handed to ``on_tick`` are whole stream entries (several
    per call), so whole exchange messages.  ``stats()`` counts entries,
    ticks, malformed entries, snapshots used and reconnects.
    """

    def __init__(self, url: str, stream: str, *, group: str | None = None,
                 consumer: str | None = None, since: str | float | None = None,
                 snapshots: bool = True, count: int = 64,
                 on_tick: Callable[[np.ndarray], Any] | None = None) -> None:
        if not isinstance(stream, str) or not stream:
            raise ValueError(f"stream must be a non-empty string, got {stream!r}")
        if group is not None and (not isinstance(group, str) or not group):
            raise ValueError(f"group must be a non-empty string or None, got {group!r}")
        count = int(count)
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        if since is None and group is None:
            since = "snapshot"
        if since == "snapshot" and group is not None:
            raise ValueError("since='snapshot' is for readers without a group; a group "
                             "starts at a stream position ('0', '-5min', '$'...)")
        if since not in (None, "snapshot"):
            parse_since(since, 0)  # a bad value fails here, naming it
        self.url = url
        self.stream = stream
        self.exchange = stream
        self.group = group
        self.since = since
        self.snapshots = bool(snapshots)
        self.count = count
        self.on_tick = on_tick
        self._reader = _Reader(url, [stream], group, consumer, since)
        self.consumer = self._reader.consumer
        meta = self._reader.client.hgetall(f"{stream}:meta")
        try:
            self.book_depths = json.loads(meta.get(b"book_depths", b"{}"))
        except ValueError:
            self.book_depths = {}
        self.symbols = []
        self._need_snapshot = True
        self._stop = threading.Event()
        self._thread = None
        self.ticks = 0
        self.snapshots_used = 0
        self.deliver_errors = 0
        self.connected = None

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("BusConnector already started")
        self._thread = threading.Thread(target=self._run, name=f"hftsig-bus-{self.stream}",
                                        daemon=True)
        self._thread.start()

    def _run(self):
        reader = self._reader
        while not self._stop.is_set():
            try:
                entries = reader.read_or_reconnect(self.count, self._stop)
                self.connected = entries is not None
                if entries is None:
                    continue
            except Exception:  # a bug must not stop the feed silently
                log.exception("bus: reading %s failed; retrying", self.stream)
                if self._stop.wait(1.0):
                    break
                continue
            if entries:
                try:
                    self._deliver(entries)
                except Exception:  # not acknowledged: a restarted consumer gets them again
                    self.deliver_errors += 1
                    if self.deliver_errors == 1:
                        log.exception("bus: on_tick failed on entries of %s (counted; logged "
                                      "once)", self.stream)
        reader.close()

    def _deliver(self, entries):
        parts, ids = [], []
        for _, eid, kind, ticks in entries:
            ids.append(eid)
            if kind == _KIND_BEGIN:
                # what follows starts with the venues' own snapshots
                self._need_snapshot = False
                continue
            if kind == _KIND_SNAPSHOT:
                if not (self.snapshots and self._need_snapshot):
                    continue
                self._need_snapshot = False
                self.snapshots_used += 1
            parts.append(ticks)
        if parts:
            batch = parts[0] if len(parts) == 1 else np.concatenate(parts)
            self.ticks += len(batch)
            cb = self.on_tick
            if cb is not None:
                cb(batch)
        try:
            self._reader.ack(self.stream, ids)
        except connection_errors():
            pass  # not acknowledged: a restarted consumer gets them again

    def stop(self, timeout: float = 1.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def stats(self) -> dict[str, Any]:
        r = self._reader
        last = r.last.get(self.stream)
        return {
            "stream": self.stream,
            "group": self.group,
            "entries": r.entries,
            "ticks": self.ticks,
            "malformed": r.malformed,
            "snapshots_used": self.snapshots_used,
            "deliver_errors": self.deliver_errors,
            "reconnects": r.reconnects,
            "last_id": None if last is None else f"{last[0]}-{last[1]}",
            "connected": self.connected,
        }


def _streams(client, streams):
    if streams is None:
        found = discover_streams(client)
        if not found:
            raise ValueError(f"streams: no tick stream announced under {DEFAULT_STREAM!r} "
                             "yet; start a publisher or name the streams")
        return found
    if isinstance(streams, str):
        streams = [streams]
    streams = list(streams)
    if not streams or not all(isinstance(s, str) and s for s in streams):
        raise ValueError(f"streams must be stream names, got {streams!r}")
    return streams


def bus_connectors(url: str, *, streams: str | Iterable[str] | None = None,
                   group: str | None = None, consumer: str | None = None,
                   since: str | float | None = None,
                   snapshots: bool = True) -> list[BusConnector]:
    """One :class:`BusConnector` per stream (default: every announced tick stream)."""
    client = connect(url)
    try:
        names = _streams(client, streams)
    finally:
        client.close()
    return [BusConnector(url, s, group=group, consumer=consumer, since=since,
                         snapshots=snapshots) for s in names]


# -- recording ----------------------------------------------------------------------------
class BusRecorder:
    """Record tick streams to Parquet through a consumer group: nothing lost, nothing twice.

    An entry is acknowledged only once the flush holding its ticks is durable
    (fsynced and renamed into place), so a recorder killed at any moment gets
    again, after a restart with the same ``consumer`` name, every entry not
    yet on disk; the stream id of the newest durable entry per stream is kept
    in the files' metadata (:func:`hftsig.market.recorder.recording_marks`), and
    re-delivered entries at or below it (durable, not yet acknowledged when
    the process died) are dropped.  Book snapshot entries are not recorded:
    the recording holds exactly the published ticks.

    Parameters
    ----------
    url, path : str
    streams : list of str or None
        Default: every announced tick stream.
    group : str, default "recorder"
    consumer : str, default "recorder"
        Fixed, so that a restarted recorder resumes its own pending entries.
    since : str or None
        Where a new group starts (default: everything retained).
    **recorder_kwargs
        Passed to :class:`hftsig.market.recorder.Recorder` (``flush_interval``...).
    """

    def __init__(self, url: str, path: str | os.PathLike, *,
                 streams: str | Iterable[str] | None = None, group: str = "recorder",
                 consumer: str = "recorder", since: str | float | None = None,
                 **recorder_kwargs: Any) -> None:
        from hftsig.market.recorder import Recorder, recording_marks

        client = connect(url)
        try:
            names = _streams(client, streams)
            depths = {}
            for s in names:
                raw = client.hget(f"{s}:meta", "book_depths")
                if raw:
                    try:
                        depths.update(json.loads(raw))
                    except ValueError:
                        pass
        finally:
            client.close()
        if depths and "book_depths" not in recorder_kwargs:
            recorder_kwargs["book_depths"] = depths
        self.streams = names
        self.path = path
        self._marks = {k: _id_tuple(v) for k, v in recording_marks(path).items()
                       if re.match(r"^\d+-\d+$", str(v))}
        self._reader = _Reader(url, names, group, consumer, since)
        self._acker = connect(url)  # used by the recorder's flush thread
        self.group = group
        self.recorder = Recorder(path, **recorder_kwargs)
        self.recorder.on_flush = self._on_flush
        self._unacked = deque()  # (rows written once durable, stream, id)
        self._rows = self.recorder.rows_written
        self._ack_lock = threading.Lock()
        self.duplicates = 0
        self.acked = 0
        self.stop_event = threading.Event()

    def _on_flush(self, rows_written):
        with self._ack_lock:
            done = {}
            while self._unacked and self._unacked[0][0] <= rows_written:
                _, stream, eid = self._unacked.popleft()
                done.setdefault(stream, []).append(eid)
        for stream, ids in done.items():
            try:
                self._acker.xack(stream, self.group, *ids)
                self.acked += len(ids)
            except connection_errors():
                # durable but not acknowledged: re-delivered later, then dropped
                # by its stream id
                pass

    def run(self, seconds: float | None = None,
            progress: Callable[[BusRecorder], Any] | None = None) -> None:
        """Record until ``seconds`` pass or :attr:`stop_event` is set; then close."""
        end = None if seconds is None else time.monotonic() + seconds
        reader = self._reader
        try:
            while not self.stop_event.is_set() and (end is None or time.monotonic() < end):
                entries = reader.read_or_reconnect(64, self.stop_event)
                if entries is None:
                    continue
                skip = {}
                for stream, eid, kind, ticks in entries:
                    mark = self._marks.get(stream)
                    if kind != _KIND_TICKS or (mark is not None and _id_tuple(eid) <= mark):
                        if kind == _KIND_TICKS:
                            self.duplicates += 1
                        skip.setdefault(stream, []).append(eid)
                        continue
                    with self._ack_lock:
                        self._rows += len(ticks)
                        self._unacked.append((self._rows, stream, eid))
                    self.recorder.write(ticks, mark={stream: eid})
                for stream, ids in skip.items():
                    try:
                        reader.ack(stream, ids)
                    except connection_errors():
                        pass
                if progress is not None:
                    progress(self)
        finally:
            self.close()

    def close(self) -> None:
        """Flush and compact (acknowledging what became durable), then disconnect; idempotent."""
        self.recorder.close()
        self._reader.close()
        try:
            self._acker.close()
        except Exception:  # a dead connection
            pass

    def stats(self) -> dict[str, Any]:
        return {"streams": self.streams, "entries": self._reader.entries,
                "malformed": self._reader.malformed, "duplicates": self.duplicates,
                "acked": self.acked, "rows_written": self.recorder.rows_written,
                "reconnects": self._reader.reconnects}


def record_from_bus(url: str, path: str | os.PathLike, *, seconds: float | None = None,
                    **kwargs: Any) -> dict[str, Any]:
    """Record tick streams into ``path`` (see :class:`BusRecorder`); returns its stats."""
    rec = BusRecorder(url, path, **kwargs)
    rec.run(seconds)
    return rec.stats()
