"""Record tick batches to Parquet, read them back, replay them through an Aggregator.

.. rubric:: Files and durability

:class:`Recorder` writes *segments*.  Every ``flush_interval`` seconds the
ticks buffered since the last flush become one small, complete Parquet file,
a *part* ``<prefix>-<segment>.part<k>.parquet`` (written to a temporary name,
fsynced, then renamed, so a part on disk is always whole).  When a segment
reaches ``rotate_bytes`` or ``rotate_seconds`` its parts are compacted into
one file ``<prefix>-<segment>.parquet`` (again written whole, then renamed),
after which the parts are deleted.  A reader that finds both the segment file
and some of its parts (the writer died between the rename and the deletions)
reads the segment file only.  Files are never modified once renamed into place,
so a process killed with SIGKILL leaves readable data and loses at most the
ticks buffered since the last flush.  A new Recorder on the same directory
continues with the next segment number, never overwriting (one recorder at a
time per directory and prefix).

Columns are the :data:`~hftsig.market.ticks.TICK_DTYPE` fields with the same types
(the symbol as a UTF-8 string); floats, NaNs included, round-trip bit for bit.

Examples
--------
>>> import tempfile, numpy as np
>>> from hftsig.market.ticks import empty_ticks
>>> t = empty_ticks(3); t["seq"] = [1, 2, 3]; t["symbol"] = b"ETH-USD"
>>> with tempfile.TemporaryDirectory() as d:
...     with Recorder(d, flush_interval=0.05) as rec:
...         rec.write(t)
...     back = read_ticks(d)
>>> back["seq"].tolist(), back["symbol"][0]
([1, 2, 3], np.bytes_(b'ETH-USD'))
"""
from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hftsig.market.ticks import (
    FLAG_LAST,
    KIND_STATUS,
    STATUS_DISCONNECTED,
    STATUS_STALE,
    TICK_DTYPE,
    concat_ticks,
    exchange_name,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

    from hftsig.market.aggregator import Aggregator

__all__ = ["Recorder", "read_ticks", "recording_book_depths", "closing_status_mask", "recording_marks",
           "replay", "ReplayConnector", "tick_files"]

log = logging.getLogger(__name__)

_NUMERIC_FIELDS = [f for f in TICK_DTYPE.names if f != "symbol"]
_NAME_RE = re.compile(r"^(?P<prefix>.+)-(?P<seg>\d{6})(?:\.part(?P<part>\d{6}))?\.parquet$")


_DEPTHS_KEY = b"hftsig.book_depths"
_MARKS_KEY = b"hftsig.marks"


def _mark_order(value):
    """Sort key of a mark: a Redis stream id ``"<ms>-<seq>"`` compares as two integers."""
    ms, _, seq = str(value).partition("-")
    try:
        return (0, int(ms), int(seq or 0), "")
    except ValueError:
        return (1, 0, 0, str(value))


def _merge_marks(into, marks):
    for k, v in marks.items():
        if k not in into or _mark_order(v) > _mark_order(into[k]):
            into[k] = v
    return into


def recording_marks(path: str | os.PathLike) -> dict[str, Any]:
    """Marks stored with a recording's ticks: ``{key: newest value}`` (may be empty).

    :meth:`Recorder.write` takes a ``mark`` (``{key: value}``, e.g. a Redis
    stream id per stream) that is written into the metadata of the file
    holding those ticks, so after a crash the newest mark of the durable
    files says how far the recording got (:mod:`hftsig.distributed.bus` drops entries it
    already holds by it).  Values that look like stream ids ``"<ms>-<seq>"``
    compare numerically.
    """
    import pyarrow.parquet as pq

    out = {}
    try:
        files = tick_files(path)
    except FileNotFoundError:
        return out
    for f in files:
        meta = pq.read_schema(f).metadata or {}
        if _MARKS_KEY in meta:
            _merge_marks(out, json.loads(meta[_MARKS_KEY]))
    return out


def _schema(book_depths=None, marks=None):
    import pyarrow as pa

    types = {"<i8": pa.int64(), "u1": pa.uint8(), "i1": pa.int8(), "<u4": pa.uint32(),
             "<f8": pa.float64(), "|u1": pa.uint8(), "|i1": pa.int8()}
    fields = []
    for name in TICK_DTYPE.names:
        dt = TICK_DTYPE.fields[name][0]
        if name == "symbol":
            fields.append(pa.field(name, pa.string()))
        else:
            fields.append(pa.field(name, types[dt.str]))
    meta = {b"hftsig": b"TICK_DTYPE v1"}
    if book_depths:
        meta[_DEPTHS_KEY] = json.dumps(book_depths, sort_keys=True).encode()
    if marks:
        meta[_MARKS_KEY] = json.dumps(marks, sort_keys=True).encode()
    return pa.schema(fields, metadata=meta)


def _check_depths(book_depths):
    """``{exchange name: levels}`` or None, validated."""
    if book_depths is None:
        return None
    if not isinstance(book_depths, dict):
        raise TypeError(f"book_depths must be a dict of exchange -> levels, got "
                        f"{type(book_depths).__name__}")
    out = {}
    for ex, d in book_depths.items():
        if not isinstance(ex, str) or isinstance(d, bool) or int(d) != d or int(d) < 1:
            raise ValueError(f"book_depths: expected exchange name -> levels >= 1, got "
                             f"{ex!r}: {d!r}")
        out[ex] = int(d)
    return out


def recording_book_depths(path: str | os.PathLike) -> dict[str, int]:
    """Book depths a recording was made with: ``{exchange: levels}`` (may be empty).

    A feed whose books are cut at a subscribed depth (Kraken) leaves levels
    pushed beyond it undeleted; replaying it needs the same cut, so
    :class:`Recorder` stores its ``book_depths`` in every file's metadata and
    :class:`ReplayConnector` reads them back.
    """
    import pyarrow.parquet as pq

    out = {}
    for f in tick_files(path):
        meta = pq.read_schema(f).metadata or {}
        if _DEPTHS_KEY in meta:
            for ex, d in json.loads(meta[_DEPTHS_KEY]).items():
                out[ex] = max(int(d), out.get(ex, 0))
    return out


def _to_table(ticks, book_depths=None, marks=None):
    import pyarrow as pa

    cols = [pa.array(np.ascontiguousarray(ticks[f])) for f in _NUMERIC_FIELDS]
    sym = pa.array(ticks["symbol"].astype(object), type=pa.binary()).cast(pa.string())
    arrays = []
    it = iter(cols)
    for name in TICK_DTYPE.names:
        arrays.append(sym if name == "symbol" else next(it))
    return pa.Table.from_arrays(arrays, schema=_schema(book_depths, marks))


def _from_table(table):
    out = np.empty(table.num_rows, dtype=TICK_DTYPE)
    for name in TICK_DTYPE.names:
        col = table.column(name)
        if name == "symbol":
            out[name] = np.array(col.cast("binary").to_pylist(), dtype="S16") if len(
                out) else out[name]
        else:
            out[name] = col.to_numpy()
    return out


def _fsync_dir(path):
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _write_whole(table, final, fsync):
    """Write ``table`` to ``final`` so that ``final`` only ever exists complete."""
    import pyarrow.parquet as pq

    tmp = final.with_name(final.name + ".tmp")
    with open(tmp, "wb") as fh:
        pq.write_table(table, fh, compression="zstd")
        fh.flush()
        if fsync:
            os.fsync(fh.fileno())
    os.replace(tmp, final)
    if fsync:
        _fsync_dir(final.parent)
    return final.stat().st_size


def _resolve(path_or_dir):
    """(directory, prefix) of a recording named by a directory or a ``*.parquet`` path."""
    p = Path(path_or_dir)
    if p.suffix == ".parquet" and not p.is_dir():
        return p.parent, p.stem
    return p, "ticks"


def tick_files(path: str | os.PathLike) -> list[Path]:
    """The Parquet files holding a recording, in order, skipping superseded parts.

    ``path`` is a directory written by :class:`Recorder`, the ``*.parquet``
    path given to it, or a single Parquet file.
    """
    p = Path(path)
    if p.is_file():
        return [p]
    directory, prefix = _resolve(p)
    if not directory.is_dir():
        raise FileNotFoundError(f"path: no recording at {str(path)!r}")
    segs, parts = {}, {}
    for f in directory.iterdir():
        m = _NAME_RE.match(f.name)
        if not m or (p.suffix == ".parquet" and m["prefix"] != prefix):
            continue
        key = (m["prefix"], int(m["seg"]))
        if m["part"] is None:
            segs[key] = f
        else:
            parts.setdefault(key, []).append((int(m["part"]), f))
    out = []
    for key in sorted(set(segs) | set(parts)):
        if key in segs:
            out.append(segs[key])
        else:
            out.extend(f for _, f in sorted(parts[key]))
    return out


def read_ticks(path: str | os.PathLike) -> np.ndarray:
    """Read a recording back as one TICK_DTYPE array, in recorded order.

    Parameters
    ----------
    path : str or Path
        A directory written by :class:`Recorder`, the ``*.parquet`` path given to
        it, or one Parquet file with the tick columns.
    """
    import pyarrow.parquet as pq

    parts = []
    for f in tick_files(path):
        table = pq.read_table(f)
        missing = [n for n in TICK_DTYPE.names if n not in table.column_names]
        if missing:
            raise ValueError(f"path: {f} is not a tick file (missing columns {missing})")
        parts.append(_from_table(table))
    if not parts:
        return np.empty(0, dtype=TICK_DTYPE)
    return concat_ticks(parts).copy()


class Recorder:
    """Append tick batches to rotated Parquet files, durable at every flush.

    Parameters
    ----------
    path_or_dir : str or Path
        A directory (files ``ticks-<segment>.parquet``) or a ``name.parquet``
        path (files ``name-<segment>.parquet`` beside it).  Created if missing.
    rotate_bytes : int, default 64 MiB
        Compact the current segment into one file once its parts reach this size.
    rotate_seconds : float, default 3600
        ... or once the segment is this old.
    flush_interval : float, default 1.0
        Seconds between flushes; at most this much data is lost on SIGKILL.
    fsync : bool, default True
        fsync files and the directory (needed against power loss, not SIGKILL).
    book_depths : dict or None
        ``{exchange: levels}`` of feeds whose books are cut at a subscribed
        depth (a Kraken connector's ``book_depth``), kept in the files'
        metadata so that :func:`replay` rebuilds the same books.

    Use :meth:`write` (thread-safe, cheap: it only buffers) directly or as an
    aggregator callback, ``agg.on_tick(recorder.write)``.  A background thread
    flushes; :meth:`close` flushes the rest and compacts the last segment.

    Attributes
    ----------
    rows_written : int
        Ticks durably on disk.
    files_written : int
        Part and segment files written.
    on_flush : callable or None
        Called as ``on_flush(rows_written)`` after each flush that wrote data.
    """

    def __init__(self, path_or_dir: str | os.PathLike, *, rotate_bytes: int = 64 << 20,
                 rotate_seconds: float = 3600.0, flush_interval: float = 1.0, fsync: bool = True,
                 book_depths: Mapping[str, int] | None = None) -> None:
        book_depths = _check_depths(book_depths)
        rotate_bytes = int(rotate_bytes)
        if rotate_bytes < 1:
            raise ValueError(f"rotate_bytes must be >= 1, got {rotate_bytes}")
        rotate_seconds = float(rotate_seconds)
        if not rotate_seconds > 0:
            raise ValueError(f"rotate_seconds must be > 0, got {rotate_seconds}")
        flush_interval = float(flush_interval)
        if not flush_interval > 0:
            raise ValueError(f"flush_interval must be > 0, got {flush_interval}")
        self.path_or_dir = path_or_dir
        self.rotate_bytes = rotate_bytes
        self.rotate_seconds = rotate_seconds
        self.flush_interval = flush_interval
        self.fsync = fsync
        self.book_depths = book_depths
        self.on_flush = None
        self.rows_written = 0
        self.files_written = 0

        self._dir, self._prefix = _resolve(path_or_dir)
        self._dir.mkdir(parents=True, exist_ok=True)
        last = -1
        for f in self._dir.iterdir():
            m = _NAME_RE.match(f.name)
            if m and m["prefix"] == self._prefix:
                last = max(last, int(m["seg"]))
        self._seg = last + 1
        self._parts = []  # files of the current segment
        self._seg_bytes = 0
        self._seg_t0 = None
        self._buf = []
        self._marks = {}  # newest mark per key among the buffered writes
        self._buf_lock = threading.Lock()
        self._io_lock = threading.Lock()
        self._stop = threading.Event()
        self._closed = False
        self._error = None
        self._thread = threading.Thread(target=self._loop, name="hftsig-recorder", daemon=True)
        self._thread.start()

    def __repr__(self):
        return (f"Recorder({str(self.path_or_dir)!r}, rotate_bytes={self.rotate_bytes}, "
                f"rotate_seconds={self.rotate_seconds}, flush_interval={self.flush_interval})")

    def write(self, ticks: np.ndarray, mark: Mapping[str, Any] | None = None) -> None:
        """Buffer a TICK_DTYPE array for the next flush.

        ``mark`` (``{key: value}``, JSON-serialisable) is stored with these
        ticks in the file the next flush writes; :func:`recording_marks`
        reads the newest ones back.
        """
        if self._closed:
            raise RuntimeError("Recorder is closed")
        if self._error is not None:
            raise RuntimeError(f"Recorder failed: {self._error!r}")
        ticks = np.asarray(ticks)
        if ticks.dtype != TICK_DTYPE:
            raise TypeError(f"ticks must have TICK_DTYPE, got {ticks.dtype}")
        if mark is not None and not isinstance(mark, dict):
            raise TypeError(f"mark must be a dict or None, got {type(mark).__name__}")
        if ticks.size == 0:  # nothing to write: a mark goes with ticks only
            return
        # a copy: aggregator callbacks may not keep the array they were given
        with self._buf_lock:
            self._buf.append(ticks.reshape(-1).copy())
            if mark:
                _merge_marks(self._marks, mark)

    __call__ = write

    def _loop(self):
        while not self._stop.wait(self.flush_interval):
            try:
                self.flush()
            except Exception as exc:  # keep the error for write() to raise
                self._error = exc
                log.exception("recorder flush failed")
                return

    def flush(self) -> None:
        """Write everything buffered as one part file now; rotate if due."""
        with self._buf_lock:
            buf, self._buf = self._buf, []
            marks, self._marks = self._marks, {}
        with self._io_lock:
            if self._parts and time.monotonic() - self._seg_t0 >= self.rotate_seconds:
                self._compact()  # a segment spans at most rotate_seconds
            if buf:
                ticks = concat_ticks(buf)
                if self._seg_t0 is None:
                    self._seg_t0 = time.monotonic()
                part = len(self._parts)
                name = self._dir / f"{self._prefix}-{self._seg:06d}.part{part:06d}.parquet"
                self._seg_bytes += _write_whole(_to_table(ticks, self.book_depths, marks), name,
                                                self.fsync)
                self._parts.append(name)
                self.files_written += 1
                self.rows_written += len(ticks)
            if self._parts and (self._seg_bytes >= self.rotate_bytes
                                or time.monotonic() - self._seg_t0 >= self.rotate_seconds):
                self._compact()
        if buf and self.on_flush is not None:
            self.on_flush(self.rows_written)

    def _compact(self):
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables = [pq.read_table(f) for f in self._parts]
        final = self._dir / f"{self._prefix}-{self._seg:06d}.parquet"
        table = pa.concat_tables(tables)  # keeps the first part's metadata only
        marks = {}
        for t in tables:
            meta = t.schema.metadata or {}
            if _MARKS_KEY in meta:
                _merge_marks(marks, json.loads(meta[_MARKS_KEY]))
        if marks:
            meta = dict(table.schema.metadata or {})
            meta[_MARKS_KEY] = json.dumps(marks, sort_keys=True).encode()
            table = table.replace_schema_metadata(meta)
        _write_whole(table, final, self.fsync)
        self.files_written += 1
        for f in self._parts:
            f.unlink()
        if self.fsync:
            _fsync_dir(self._dir)
        self._seg += 1
        self._parts = []
        self._seg_bytes = 0
        self._seg_t0 = None

    def close(self) -> None:
        """Flush, compact the last segment and stop the flush thread."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._thread.join()
        self.flush()
        with self._io_lock:
            if self._parts:
                self._compact()

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class ReplayConnector:
    """A connector that sends recorded (or synthetic) ticks, keeping the connector contract.

    Parameters
    ----------
    ticks : TICK_DTYPE array, or a path readable by :func:`read_ticks`
    speed : float or None, default None
        None sends as fast as the consumer takes them; ``1.0`` keeps the recorded
        ``ts_recv`` spacing, ``2.0`` twice as fast.
    batch_size : int, default 1000
        Records sent per ``on_tick`` call when the ticks carry no message
        boundaries (no ``FLAG_LAST``); otherwise one call per recorded message.
    on_tick : callable, optional
    book_depths : dict or None
        ``{exchange: levels}`` at which the aggregator cuts those exchanges'
        books (see :class:`Recorder`); default: what the recording stored.

    The ticks are sent unchanged (timestamps included), in order, from one
    thread, so a replay is deterministic.  ``exchange`` is ``"replay"``;
    ``symbols`` lists the canonical symbols present.  :meth:`wait` returns True
    once everything was sent.
    """

    exchange = "replay"

    def __init__(self, ticks: np.ndarray | str | os.PathLike, *, speed: float | None = None,
                 batch_size: int = 1000, on_tick: Callable[[np.ndarray], Any] | None = None,
                 book_depths: Mapping[str, int] | None = None) -> None:
        book_depths = _check_depths(book_depths)
        if isinstance(ticks, (str, os.PathLike)):
            if book_depths is None:
                book_depths = recording_book_depths(ticks)
            ticks = read_ticks(ticks)
        ticks = np.asarray(ticks)
        if ticks.dtype != TICK_DTYPE:
            raise TypeError(f"ticks must have TICK_DTYPE, got {ticks.dtype}")
        if speed is not None:
            speed = float(speed)
            if not speed > 0:
                raise ValueError(f"speed must be > 0 or None, got {speed}")
        batch_size = int(batch_size)
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.ticks = ticks.reshape(-1)
        self.speed = speed
        self.batch_size = batch_size
        self.on_tick = on_tick
        self.book_depths = book_depths or {}
        self.symbols = sorted({s.decode() for s in np.unique(self.ticks["symbol"]).tolist()})
        self._done = threading.Event()
        self._stop = threading.Event()
        self._thread = None
        self._sent_messages = 0
        self._sent_ticks = 0
        self._last_latency = 0
        self._parts = None  # exchange code -> _VenueReplay, after by_venue()
        self._parts_started = 0

    def by_venue(self) -> list[_VenueReplay]:
        """One connector per exchange of the recording, all fed by this one's thread.

        Each keeps the connector contract (``exchange`` is the venue's name, its
        ``stats()`` count its own messages), so an aggregator shows one row per
        venue; the ticks still go out in recorded order, from one thread, once
        every part was started.  Call before :meth:`start`.
        """
        if self._thread is not None:
            raise RuntimeError("by_venue() must come before start()")
        if self._parts is None:
            codes = np.unique(self.ticks["exchange"]).tolist()
            self._parts = {c: _VenueReplay(self, c) for c in codes}
        return list(self._parts.values())

    def _bounds(self):
        """End index of each batch: one per recorded message, else ``batch_size`` records."""
        n = len(self.ticks)
        if n == 0:
            return np.empty(0, dtype=np.int64)
        ends = np.flatnonzero(self.ticks["flags"] & FLAG_LAST) + 1
        if len(ends) == 0:
            ends = np.arange(self.batch_size, n + self.batch_size, self.batch_size)
            ends[-1] = n
        elif ends[-1] != n:  # trailing records without FLAG_LAST
            ends = np.append(ends, n)
        if self._parts:
            # every batch goes to one venue's part: cut where the exchange changes too
            ex = self.ticks["exchange"]
            ends = np.union1d(ends, np.flatnonzero(ex[1:] != ex[:-1]) + 1)
        return ends

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("ReplayConnector already started")
        self._thread = threading.Thread(target=self._run, name="hftsig-replay", daemon=True)
        self._thread.start()

    def _run(self):
        try:
            t = self.ticks
            ends = self._bounds()
            start = 0
            t0_wall = time.monotonic()
            t0_data = int(t["ts_recv"][0]) if len(t) else 0
            for end in ends.tolist():
                if self._stop.is_set():
                    return
                batch = t[start:end].copy()
                if self.speed is not None:
                    due = t0_wall + (int(batch["ts_recv"][0]) - t0_data) / 1e9 / self.speed
                    delay = due - time.monotonic()
                    if delay > 0 and self._stop.wait(delay):
                        return
                if self._parts is not None:
                    part = self._parts[int(batch["exchange"][0])]
                    part._sent(batch)
                    cb = part.on_tick
                else:
                    cb = self.on_tick
                if cb is not None:
                    cb(batch)
                self._sent_messages += 1
                self._sent_ticks += end - start
                self._last_latency = int(batch["ts_recv"][-1] - batch["ts_event"][-1])
                start = end
        finally:
            self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until everything was sent (or the connector stopped); False on timeout."""
        return self._done.wait(timeout)

    def stop(self, timeout: float = 1.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def stats(self) -> dict[str, Any]:
        return {
            "messages": self._sent_messages,
            "ticks": self._sent_ticks,
            "reconnects": 0,
            "gaps": 0,
            "checksum_failures": 0,
            "malformed": 0,
            "last_latency_ns": self._last_latency,
            "connected": self._thread is not None and not self._done.is_set(),
            "finished": self._done.is_set(),
        }


class _VenueReplay:
    """One venue's share of a :class:`ReplayConnector` (see its ``by_venue``)."""

    def __init__(self, parent, code):
        self._parent = parent
        self.code = int(code)
        self.exchange = exchange_name(code)
        mine = parent.ticks[parent.ticks["exchange"] == code]
        self.symbols = sorted({s.decode() for s in np.unique(mine["symbol"]).tolist()} - {""})
        depth = parent.book_depths.get(self.exchange)
        self.book_depths = {self.exchange: depth} if depth is not None else {}
        self.on_tick = None
        self._started = False
        self._messages = 0
        self._ticks = 0
        self._last_latency = 0

    def _sent(self, batch):
        self._messages += 1
        self._ticks += len(batch)
        self._last_latency = int(batch["ts_recv"][-1] - batch["ts_event"][-1])

    def start(self):
        if self._started:
            raise RuntimeError(f"{self.exchange} replay already started")
        self._started = True
        p = self._parent
        p._parts_started += 1
        if p._parts_started == len(p._parts):  # every venue's on_tick is in place
            p.start()

    def wait(self, timeout=None):
        return self._parent.wait(timeout)

    def stop(self, timeout=1.0):
        self._parent.stop(timeout)

    def stats(self):
        done = self._parent._done.is_set()
        return {"messages": self._messages, "ticks": self._ticks, "reconnects": 0, "gaps": 0,
                "checksum_failures": 0, "malformed": 0, "last_latency_ns": self._last_latency,
                "connected": self._parent._thread is not None and not done, "finished": done}

    def __repr__(self):
        return f"<{self.exchange} part of a replay of {len(self._parent.ticks):,} ticks>"


#: Connectors stop in parallel, each within about a second (Aggregator.stop);
#: a disconnect this close to a recording's last record is the recording stopping.
CLOSING_GRACE_NS = 2_000_000_000


def closing_status_mask(ticks: np.ndarray, grace_ns: int = CLOSING_GRACE_NS) -> np.ndarray:
    """Mask of the status records written because the recording stopped.

    A recorder that stops stops its feeds first, so each feed's last record is
    its disconnect (or stale) status.  Replayed, they would leave every venue
    down, and the final state (NBBO, tops) would say nothing about the market
    as it last was.  The feeds stop in parallel, so these statuses interleave
    with the other feeds' last ticks; what marks one is being its venue's last
    record and arriving within ``grace_ns`` of the recording's last record.
    A feed that went down earlier while the others went on is not closing.

    Parameters
    ----------
    ticks : ndarray of TICK_DTYPE
        A recording in receive order (as :func:`read_ticks` returns it).
    grace_ns : int, default 2 s
        How close to the last record (``ts_recv``) a closing status arrives.

    Returns
    -------
    ndarray of bool
        True for the closing statuses (at most one per venue).

    Examples
    --------
    >>> from hftsig.market.ticks import empty_ticks, KIND_QUOTE, KIND_STATUS, STATUS_DISCONNECTED
    >>> t = empty_ticks(4); t["exchange"] = [1, 2, 1, 2]; t["ts_recv"] = [0, 1, 2, 3]
    >>> t["kind"] = [KIND_QUOTE, KIND_QUOTE, KIND_STATUS, KIND_QUOTE]
    >>> t["side"] = STATUS_DISCONNECTED
    >>> closing_status_mask(t).tolist()
    [False, False, True, False]
    """
    ticks = np.asarray(ticks).reshape(-1)
    mask = np.zeros(len(ticks), dtype=bool)
    if len(ticks) == 0:
        return mask
    cutoff = int(ticks["ts_recv"].max()) - int(grace_ns)
    venues, last_rev = np.unique(ticks["exchange"][::-1], return_index=True)
    last = len(ticks) - 1 - last_rev  # each venue's last record
    tail = ticks[last]
    closing = ((tail["kind"] == KIND_STATUS)
               & np.isin(tail["side"], (STATUS_DISCONNECTED, STATUS_STALE))
               & (tail["ts_recv"] >= cutoff))
    mask[last[closing]] = True
    return mask


def replay(path: str | os.PathLike, speed: float | None = None, *, by_venue: bool = True,
           closing_statuses: bool = False, book_depths: Mapping[str, int] | None = None,
           **aggregator_kwargs: Any) -> Aggregator:
    """An :class:`~hftsig.market.aggregator.Aggregator` (not started) replaying a recording.

    ``path`` is anything :func:`read_ticks` accepts (or a TICK_DTYPE array);
    ``speed`` as in :class:`ReplayConnector`.  Quote ages are measured against
    the data's own clock (``clock="data"``) unless given.  Register callbacks,
    then ``with agg: agg.wait_finished()``.

    Parameters
    ----------
    by_venue : bool, default True
        One connector per recorded exchange (:meth:`ReplayConnector.by_venue`):
        ``stats()`` has a row per venue.  False: one connector named ``replay``.
    closing_statuses : bool, default False
        Also replay the disconnect statuses written when the recording stopped
        (see :func:`closing_status_mask`); left out, the final state is the market's last.
    book_depths : dict or None
        As in :class:`ReplayConnector` (default: what the recording stored).
    """
    from hftsig.market.aggregator import Aggregator

    aggregator_kwargs.setdefault("clock", "data")
    depths = _check_depths(book_depths)
    if isinstance(path, (str, os.PathLike)):
        if depths is None:
            depths = recording_book_depths(path)
        path = read_ticks(path)
    ticks = np.asarray(path)
    if ticks.dtype == TICK_DTYPE and not closing_statuses:
        ticks = ticks.reshape(-1)
        ticks = ticks[~closing_status_mask(ticks)]
    conn = ReplayConnector(ticks, speed=speed, book_depths=depths)
    return Aggregator(conn.by_venue() if by_venue and len(ticks) else [conn],
                      **aggregator_kwargs)
