"""One tick stream from many connectors: a bounded queue, books, quotes, NBBO, stats.

:class:`Aggregator` takes any objects keeping the connector contract
(:class:`~hftsig.market.connector_protocol.Connector`: ``exchange``,
``symbols``, ``on_tick``, ``start()``, ``stop(timeout)``, ``stats()``),
points every connector's ``on_tick`` at one bounded queue of tick
batches and drains it on one thread at a time: a worker thread
(``dispatch="worker"``, the default), or with ``dispatch="connector"`` (and
``overflow="block"``) the connector thread whose batch finds nobody draining
(no hand-over to another thread per message: lower latency).  A
connector hands over the array it passes to ``on_tick`` and must not write to
it afterwards (views of a larger buffer are copied).  For each group of batches
taken off the queue (a *chunk*, ticks in arrival order) the drainer

1. updates state: an :class:`hftsig.market.book.OrderBook` per (exchange, symbol) from
   book records, the latest quote per (exchange, symbol) from ``KIND_QUOTE``
   records and from book tops, the latest reference price (``KIND_PRICE``) and
   trade, connection status from ``KIND_STATUS`` records, and statistics;
2. dispatches the chunk to callbacks registered with :meth:`Aggregator.on_tick`
   (filtered by kind, symbol and exchange), to every open
   :meth:`Aggregator.ticks` iterator, and to the :meth:`Aggregator.drain`
   buffer.  Each consumer sees every tick; none takes ticks from another.

The arrays handed to consumers are read-only and shared between them: copy
an array to change or keep it.  State read from another thread (:meth:`~Aggregator.top`,
:meth:`~Aggregator.nbbo`, :meth:`~Aggregator.quotes`, :meth:`~Aggregator.book`)
is consistent at chunk boundaries, which are always message boundaries.

.. rubric:: Overflow

The queue holds at most ``queue_size`` *ticks* (not batches).  A batch is never
split, so one batch larger than the whole queue is accepted once the queue is
empty.  With ``overflow="block"`` the connector thread calling ``on_tick`` waits
for room (back-pressure: nothing is lost, the connector falls behind and the
exchange or simulator buffers).  With ``overflow="drop_oldest"`` the oldest
queued batches are dropped to make room; dropped ticks are counted per
connector (``stats()[name]["dropped"]``) and logged once per connector.  A
dropped batch holding book records leaves that book unknown: it is cleared and
reported invalid (``stats()[name]["books_invalidated"]``) until the next
snapshot (``FLAG_SNAPSHOT_BEGIN``) arrives.

Examples
--------
A :class:`~hftsig.market.recorder.ReplayConnector` keeps the connector contract, so
recorded or synthetic ticks go through the same API as live ones:

>>> import numpy as np
>>> from hftsig.market.ticks import empty_ticks, KIND_QUOTE, FLAG_LAST, exchange_code
>>> from hftsig.market.recorder import ReplayConnector
>>> t = empty_ticks(2)
>>> t["kind"] = KIND_QUOTE; t["flags"] = FLAG_LAST; t["symbol"] = b"BTC-USD"
>>> t["exchange"] = [exchange_code("kraken"), exchange_code("coinbase")]
>>> t["ts_event"] = t["ts_recv"] = [1, 2]
>>> t["bid_px"] = [100.0, 101.0]; t["ask_px"] = [102.0, 101.5]
>>> t["bid_sz"] = t["ask_sz"] = 1.0
>>> with Aggregator([ReplayConnector(t)], clock="data") as agg:
...     agg.wait_finished(timeout=5)
...     best = agg.nbbo("BTC-USD")
True
>>> best.bid_px, best.bid_venue, best.ask_px, best.ask_venue
(101.0, 'coinbase', 101.5, 'coinbase')
>>> len(agg.drain())
2
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from hftsig import venues
from hftsig._ext._tickscan import batch_latency as _batch_latency
from hftsig._ext._tickscan import scan_chunk as _scan_chunk
from hftsig._ext._tickscan import select as _select
from hftsig.interrupts import join_thread
from hftsig.market.connector_protocol import CONNECTOR_MEMBERS, missing_members
from hftsig.market.ticks import (
    FLAG_LAST,
    FLAG_SNAPSHOT_BEGIN,
    KIND_BOOK_DELTA,
    KIND_BOOK_SNAPSHOT,
    KIND_PRICE,
    KIND_STATUS,
    KIND_TRADE,
    KINDS,
    STATUS_CONNECTED,
    STATUS_CROSSED,
    STATUS_DISCONNECTED,
    STATUS_RESYNC,
    STATUS_STALE,
    STATUS_UNCROSSED,
    TICK_DTYPE,
    TICK_RECORD_DTYPE,
    concat_ticks,
    exchange_code,
    exchange_name,
    kind_code,
    to_pandas,
)
from hftsig.market.ticks import symbols as _tick_symbols

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any

    import pandas as pd

    from hftsig.market.book import OrderBook
    from hftsig.market.connector_protocol import Connector
    from hftsig.market.ticks import Tick

__all__ = ["Aggregator", "TickArray", "Top", "NBBO", "concat_ticks"]

log = logging.getLogger(__name__)

_OVERFLOW_MODES = ("block", "drop_oldest")
_SimpleQueue = queue.SimpleQueue
_frombuffer = np.frombuffer
_sched_yield = getattr(os, "sched_yield", None)
_perf_ns = time.perf_counter_ns
_HANDOFF_NS = 200_000  # a woken worker kept off the GIL this long gets the core
_Empty = queue.Empty
_LAT_RING = 8192  # latency samples (one per message) kept per connector for percentiles

SOURCE_QUOTE = 1  # top of book from a KIND_QUOTE record
SOURCE_BOOK = 2  # top of book read from the aggregator's own OrderBook
_SOURCE_NAMES = {0: "", SOURCE_QUOTE: "quote", SOURCE_BOOK: "book"}

# One row per (exchange, symbol) ever seen: the latest quote, price and trade.
_STATE_DTYPE = np.dtype(
    [
        ("exchange", "u1"),
        ("symbol", "S16"),
        ("source", "u1"),
        ("bid_px", "<f8"),
        ("bid_sz", "<f8"),
        ("ask_px", "<f8"),
        ("ask_sz", "<f8"),
        ("quote_ts_event", "<i8"),
        ("quote_ts_recv", "<i8"),
        ("price", "<f8"),
        ("price_ts_event", "<i8"),
        ("price_ts_recv", "<i8"),
        ("trade_px", "<f8"),
        ("trade_sz", "<f8"),
        ("trade_ts_recv", "<i8"),
    ]
)


class TickArray(np.ndarray):
    """A TICK_DTYPE structured array with :meth:`to_pandas` and :attr:`symbols`.

    Its elements are :class:`hftsig.market.ticks.Tick` records (``ticks[0].symbol``
    is a ``str``); ``ticks["symbol"]`` keeps the field's bytes.
    """

    def to_pandas(self) -> pd.DataFrame:
        """Return the ticks as a DataFrame (see :func:`hftsig.market.ticks.to_pandas`)."""
        return to_pandas(self.view(np.ndarray))

    @property
    def symbols(self) -> np.ndarray:
        """The symbols as ``str`` (see :func:`hftsig.market.ticks.symbols`)."""
        return _tick_symbols(self.view(np.ndarray))


def _tick_array(ticks):
    """``ticks`` (TICK_DTYPE) seen as a :class:`TickArray` of Tick records, no copy."""
    return ticks.view(dtype=TICK_RECORD_DTYPE, type=TickArray)


class Top(NamedTuple):
    """Latest top of book of one (exchange, symbol)."""

    exchange: str
    symbol: str
    bid_px: float
    bid_sz: float
    ask_px: float
    ask_sz: float
    ts_event: int
    ts_recv: int
    source: str  # "quote" (a KIND_QUOTE record) or "book" (the aggregator's book)


class NBBO(NamedTuple):
    """Best bid and offer of one symbol across exchanges (NaN/None where no venue)."""

    symbol: str
    bid_px: float
    bid_sz: float
    bid_venue: str | None
    ask_px: float
    ask_sz: float
    ask_venue: str | None
    ts_recv: int  # newest quote time among the venues considered
    venues: int  # how many venues had a fresh two-sided or one-sided quote


def _as_symbol(symbol):
    if isinstance(symbol, bytes):
        return symbol.upper()
    if isinstance(symbol, str):
        return symbol.upper().encode("ascii")
    raise TypeError(f"symbol must be str or bytes, got {type(symbol).__name__}")


def _batched_kinds(connector):
    """The connector's ``batched_kinds``; when it declares none, its venue's in the
    registry (a period of ``None`` there: the connector's polling ``interval``)."""
    own = getattr(connector, "batched_kinds", None)
    if own:
        return own
    try:
        declared = venues.get(str(connector.exchange)).batched_kinds
    except KeyError:  # not a registered venue (a bus or replay source)
        return None
    interval = getattr(connector, "interval", None)
    return {kind: interval if period is None else period for kind, period in declared.items()
            if period is not None or interval is not None}


def _as_exchange(exchange):
    if isinstance(exchange, (int, np.integer)):
        return int(exchange)
    return exchange_code(exchange)


_QUEUED = 1  # put(): the batch is queued
_CLAIMED = 2  # put(): queued, and the caller now drains the queue (Aggregator._drain_queue)


class _Queue:
    """Bounded queue of (source, batch) counting ticks, with per-source overflow counts.

    One thread at a time *drains* it (holds the drain role, :attr:`busy`): the
    worker, or with ``put(..., claim=True)`` the putting connector thread when
    nobody else is draining.  The drainer takes batches until the queue is
    empty and gives the role up under the same lock that puts append under, so
    no batch is left behind.

    The worker sleeps on a C-level ``SimpleQueue`` token rather than a
    ``threading.Condition``: a Condition's wait and notify run in Python, a few
    microseconds on both sides of every message.
    """

    def __init__(self, capacity, overflow, n_sources):
        self.capacity = capacity
        self.drop_oldest = overflow == "drop_oldest"
        self._items = deque()
        self._n = 0
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        self._putters_waiting = 0
        self._wake = _SimpleQueue()  # one token per wake-up of a sleeping getter
        self._closed = False
        self._getter_waiting = False
        self._woken_ns = 0  # when a put woke the sleeping worker (perf_counter_ns); 0: it ran
        self.busy = False  # a thread holds the drain role (items taken, maybe not processed yet)
        self.dropped = [0] * n_sources  # ticks dropped, by the source that sent them
        self.dropped_batches = [0] * n_sources
        self.blocked = [0] * n_sources  # puts that had to wait for room
        self.rejected = [0] * n_sources  # ticks offered after close
        self.dirty_books = {}  # (exchange, symbol) whose book records were dropped -> source
        self.high_water = 0

    def __len__(self):
        return self._n

    def put(self, source, batch, claim=False):
        """Queue ``batch``; 0 when closed, ``_QUEUED``, or ``_CLAIMED`` when ``claim``
        was asked and nobody was draining: the caller must then drain (:meth:`take`)."""
        n = len(batch)
        with self._lock:
            if self._closed:
                self.rejected[source] += n
                return 0
            if self._n + n > self.capacity and self._n > 0:
                if self.drop_oldest:
                    while self._n + n > self.capacity and self._items:
                        src, old = self._items.popleft()
                        self._n -= len(old)
                        self.dropped[src] += len(old)
                        self.dropped_batches[src] += 1
                        k = old["kind"]
                        bk = (k == KIND_BOOK_DELTA) | (k == KIND_BOOK_SNAPSHOT)
                        if bk.any():
                            ob = old[bk]
                            for key in zip(ob["exchange"].tolist(), ob["symbol"].tolist()):
                                self.dirty_books[key] = src
                else:
                    self.blocked[source] += 1
                    self._putters_waiting += 1
                    try:
                        while self._n + n > self.capacity and self._n > 0 and not self._closed:
                            self._not_full.wait(0.05)
                    finally:
                        self._putters_waiting -= 1
                    if self._closed:
                        self.rejected[source] += n
                        return 0
            self._items.append((source, batch))
            self._n += n
            if self._n > self.high_water:
                self.high_water = self._n
            if self.busy:
                return _QUEUED  # the drainer takes it before giving the role up
            if claim:
                self.busy = True
                return _CLAIMED  # the caller drains: no wake-up needed
            woke = self._getter_waiting
            self._getter_waiting = False
            now = _perf_ns()
            if woke:
                self._woken_ns = now
            starved = (not woke and self._woken_ns
                       and now - self._woken_ns > _HANDOFF_NS)
        if woke:
            self._wake.put(None)
        elif starved and _sched_yield is not None:
            # The worker was woken but has not run since: this thread (or another
            # connector's) keeps the GIL through a burst of buffered frames, and a
            # waiting thread only forces a switch after sys.getswitchinterval()
            # (5 ms).  Hand the core over now.
            _sched_yield()
        return _QUEUED

    def get_all(self, timeout):
        """Worker: wait up to ``timeout`` for batches, claim the drain role and take
        them all; ``([], None)`` when there are none or another thread drains."""
        with self._lock:
            wait = self._getter_waiting = not self._items
        if wait:  # a put from here on leaves a token: the get returns at once
            try:
                self._wake.get(timeout=timeout)
            except _Empty:
                pass
        with self._lock:
            self._getter_waiting = False
            if not self._items or self.busy:
                return [], None
            self.busy = True  # before _n drops to 0: see Aggregator.flush
            return self._take_locked()

    def take(self):
        """Drainer: take every queued batch, or give the drain role up when empty."""
        with self._lock:
            if not self._items:
                self.busy = False
                return [], None
            return self._take_locked()

    def release(self):
        """Give the drain role up with batches maybe left: the worker takes them."""
        with self._lock:
            self.busy = False
            wake = bool(self._items) and self._getter_waiting
            self._getter_waiting = False
        if wake:
            self._wake.put(None)

    def _take_locked(self):
        self._woken_ns = 0
        items = list(self._items)
        self._items.clear()
        self._n = 0
        dirty = None
        if self.dirty_books:
            dirty, self.dirty_books = self.dirty_books, {}
        if self._putters_waiting:
            self._not_full.notify_all()
        return items, dirty

    def close(self):
        with self._lock:
            self._closed = True
            self._not_full.notify_all()
        self._wake.put(None)


class _Subscription:
    """Buffer of chunks for one :meth:`Aggregator.ticks` iterator."""

    def __init__(self, capacity, block):
        self.capacity = capacity
        self.block = block
        self.items = deque()
        self.n = 0
        self.cond = threading.Condition()
        self.closed = False  # iterator gone: stop feeding
        self.ended = False  # aggregator stopped: nothing more will come
        self.dropped = 0

    def push(self, chunk, stopping):
        n = len(chunk)
        with self.cond:
            if self.closed:
                return
            if self.n + n > self.capacity and self.n > 0:
                if self.block and not stopping():
                    while (self.n + n > self.capacity and self.n > 0 and not self.closed
                           and not stopping()):
                        self.cond.wait(0.05)
                    if self.closed:  # closed while we waited: its reader is gone
                        return
                while self.n + n > self.capacity and self.items:
                    old = self.items.popleft()
                    self.n -= len(old)
                    self.dropped += len(old)
            self.items.append(chunk)
            self.n += n
            self.cond.notify_all()

    def end(self):
        with self.cond:
            self.ended = True
            self.cond.notify_all()


class _TickIterator:
    """Iterator returned by :meth:`Aggregator.ticks`; see there."""

    def __init__(self, agg, sub, timeout, batches):
        self._agg = agg
        self._sub = sub
        self._timeout = timeout
        self._batches = batches
        self._current = None
        self._pos = 0

    def __iter__(self):
        return self

    def __next__(self):
        if not self._batches and self._current is not None and self._pos < len(self._current):
            rec = self._current[self._pos]
            self._pos += 1
            return rec
        sub = self._sub
        with sub.cond:
            deadline = None if self._timeout is None else time.monotonic() + self._timeout
            while not sub.items:
                if sub.ended or sub.closed:
                    self.close()
                    raise StopIteration
                if deadline is None:
                    sub.cond.wait(0.5)
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise StopIteration
                    sub.cond.wait(left)
            chunk = sub.items.popleft()
            sub.n -= len(chunk)
            sub.cond.notify_all()
        chunk = _tick_array(chunk)
        if self._batches:
            return chunk
        self._current = chunk
        self._pos = 1
        return chunk[0]

    @property
    def dropped(self):
        """Ticks this iterator lost because it fell behind (``drop_oldest`` only)."""
        return self._sub.dropped

    def close(self):
        """Stop receiving ticks (also done when the iterator is garbage collected)."""
        self._current = None
        sub = self._sub
        with sub.cond:
            sub.closed = True
            sub.items.clear()
            sub.n = 0
            sub.cond.notify_all()
        self._agg._unsubscribe(sub)

    def __del__(self):
        try:
            self.close()
        except Exception:  # interpreter shutdown
            pass


class _Callback:
    __slots__ = ("func", "kinds", "symbols", "exchanges", "calls", "errors", "logged", "name",
                 "_ktab", "_etab")

    def __init__(self, func, kinds, symbols, exchanges):
        self.func = func
        self.kinds = kinds
        self.symbols = symbols
        self.exchanges = exchanges
        self.calls = 0
        self.errors = 0
        self.logged = False
        self.name = getattr(func, "__qualname__", None) or repr(func)
        self._ktab = _code_table(kinds)
        self._etab = _code_table(exchanges)

    def select(self, chunk):
        """The ticks of ``chunk`` passing the filters: the chunk itself, a copy, or None."""
        if self.kinds is None and self.symbols is None and self.exchanges is None:
            return chunk
        keep, n = _select(chunk, self._ktab, self._etab, self.symbols)
        if n == 0:
            return None
        if n == len(chunk):
            return chunk
        return chunk[keep]


def _code_table(codes):
    """256-byte lookup table of wanted uint8 codes (b"" when there is no filter)."""
    if codes is None:
        return b""
    tab = bytearray(256)
    for c in codes:
        if 0 <= c < 256:
            tab[c] = 1
    return bytes(tab)


class _ConnStats:
    """Worker-side counters for one connector."""

    def __init__(self, name, exchange, batched=None):
        self.name = name
        self.exchange = exchange
        # kind code -> seconds between the batches the venue sends them in
        self.batched = {kind_code(k): float(v) for k, v in (batched or {}).items()}
        self.batches = 0
        self.ticks = 0
        self.lat = deque(maxlen=_LAT_RING)  # ts_recv - ts_event, ns
        self.lat_batched = deque(maxlen=_LAT_RING)  # the same, messages of batched kinds
        self.qlat = deque(maxlen=_LAT_RING)  # dispatch - ts_recv, ns
        self.status = {"connected": 0, "disconnected": 0, "resync": 0, "stale": 0,
                       "crossed": 0, "uncrossed": 0}
        self.connected = None
        self.books_invalidated = 0
        self.rate_t = time.monotonic()
        self.rate_ticks = 0
        self.rate_batches = 0
        self.rate = 0.0
        self.msg_rate = 0.0

    @staticmethod
    def _pct(ring):
        v = np.array(list(ring), dtype=np.float64)
        if len(v) == 0:
            return {"p50": float("nan"), "p99": float("nan"), "p999": float("nan")}
        p = np.percentile(v, [50, 99, 99.9]) / 1e3
        return {"p50": float(p[0]), "p99": float(p[1]), "p999": float(p[2])}


class Aggregator:
    """Merge connectors into one tick stream with books, quotes, NBBO and stats.

    Parameters
    ----------
    connectors : sequence of Connector
        Objects keeping the connector contract
        (:class:`~hftsig.market.connector_protocol.Connector`): each
        has ``exchange``, ``symbols``, a settable ``on_tick``, ``start()``,
        ``stop(timeout)`` and ``stats()``.  The aggregator sets their
        ``on_tick``; a connector must not be shared between aggregators.
    queue_size : int, default 100_000
        Capacity of the input queue in ticks (see Overflow in the module doc).
        Also the capacity of each :meth:`ticks` iterator's buffer.
    overflow : {"block", "drop_oldest"}, default "block"
        What a full queue does: make the connector wait, or drop the oldest
        queued batches and count them.
    dispatch : {"worker", "connector"}, default "worker"
        Which thread drains the queue (state updates, callbacks, iterators).
        ``"worker"``: a dedicated thread; when many small messages arrive from
        busy threads it takes them in large chunks (236,000 one-record
        messages/s on the core benchmark, against 59,000).  ``"connector"``:
        the connector thread whose batch finds nobody draining does it at
        once, with no hand-over to another thread (receive -> callback about
        a third lower on the loopback benchmark); a slow consumer then holds
        up that connector, so it needs ``overflow="block"``.
    stale_after : float, default 5.0
        Seconds after which a quote no longer counts for :meth:`nbbo`.
    drain_size : int, default 250_000
        Most ticks kept for :meth:`drain`; older ticks not yet drained are
        discarded and counted (``aggregator_stats()["drain_dropped"]``).
    clock : {"wall", "data"}, default "wall"
        Time that quote ages are measured against: the wall clock, or the
        newest ``ts_recv`` seen (for replays of recorded data).
    book_depth : int or None, default None
        Levels kept per book side, passed on to :class:`hftsig.market.book.OrderBook`
        where it supports a depth; None keeps every level.  A connector with a
        ``book_depth`` attribute (Kraken: its subscribed depth, since Kraken
        sends no deletes for levels pushed beyond it) caps the books of its
        exchange at that depth too; the smaller of the two applies.

    Attributes
    ----------
    names : list of str
        Connector names used as keys of :meth:`stats` (the exchange name,
        suffixed ``#2``... when several connectors share one).
    """

    def __init__(self, connectors: Iterable[Connector], *, queue_size: int = 100_000,
                 overflow: str = "block", dispatch: str = "worker", stale_after: float = 5.0,
                 drain_size: int = 250_000, clock: str = "wall", book_depth: int | None = None,
                 require_book_snapshot: bool = False) -> None:
        connectors = list(connectors)
        if not connectors:
            raise ValueError("connectors must hold at least one connector")
        for c in connectors:
            missing = missing_members(c)
            if missing:
                raise TypeError(
                    f"connectors: {c!r} lacks {missing[0]!r}; it does not keep the connector "
                    f"contract (hftsig.connectors.Connector: {', '.join(CONNECTOR_MEMBERS)})")
        queue_size = int(queue_size)
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        if overflow not in _OVERFLOW_MODES:
            raise ValueError(f"overflow must be one of {_OVERFLOW_MODES}, got {overflow!r}")
        if dispatch not in ("worker", "connector"):
            raise ValueError(f"dispatch must be 'worker' or 'connector', got {dispatch!r}")
        if dispatch == "connector" and overflow != "block":
            raise ValueError("dispatch='connector' needs overflow='block': with drop_oldest the "
                             "connectors must never wait for a consumer (use dispatch='worker')")
        if clock not in ("wall", "data"):
            raise ValueError(f"clock must be 'wall' or 'data', got {clock!r}")
        stale_after = float(stale_after)
        if not stale_after > 0:
            raise ValueError(f"stale_after must be > 0 seconds, got {stale_after}")
        drain_size = int(drain_size)
        if drain_size < 0:
            raise ValueError(f"drain_size must be >= 0, got {drain_size}")
        self.connectors = connectors
        self.queue_size = queue_size
        self.overflow = overflow
        self.dispatch = dispatch
        self.stale_after = stale_after
        self.drain_size = drain_size
        self.clock = clock
        self.book_depth = book_depth
        self.require_book_snapshot = bool(require_book_snapshot)
        # exchange code -> levels its books keep: a feed that leaves levels
        # pushed beyond its depth undeleted needs its books cut at that depth
        self._book_depths = {}
        for c in connectors:
            depths = dict(getattr(c, "book_depths", None) or {})  # a replay: several venues
            d = getattr(c, "book_depth", None)
            if d is not None:
                depths[c.exchange] = d
            for ex, d in depths.items():
                code = _as_exchange(ex)
                self._book_depths[code] = max(int(d), self._book_depths.get(code, 0))

        names, seen = [], {}
        for c in connectors:
            base = str(c.exchange)
            seen[base] = seen.get(base, 0) + 1
            names.append(base if seen[base] == 1 else f"{base}#{seen[base]}")
        self.names = names
        self._queue = _Queue(queue_size, overflow, len(connectors))
        self._cstats = [_ConnStats(n, str(c.exchange), _batched_kinds(c))
                        for n, c in zip(names, connectors)]

        self._lock = threading.Lock()  # guards the state below
        # (exchange code, symbol bytes) -> list laid out as _STATE_DTYPE (see _R_*)
        self._rows = {}
        self._by_symbol = {}  # symbol bytes -> [row lists]
        self._books = {}  # (exchange code, symbol bytes) -> OrderBook
        self._book_invalid = set()  # keys waiting for a snapshot after a drop
        self._down_since = {}  # exchange code -> ts_recv of its last disconnect/stale
        self._data_now = 0  # newest ts_recv seen

        self._callbacks = []  # list of _Callback, replaced (not mutated) on change
        self._subs = []
        self._drain = deque()
        self._drain_n = 0
        self._drain_dropped = 0
        self._chunks = 0
        self._ticks = 0
        self._state_errors = 0
        self._worker_busy_ns = 0
        self._rates_ns = 0
        self._stopping = False
        self._worker = None
        self._started = False
        self._t_start = None

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> Aggregator:
        """Start the worker thread, then every connector.  Returns ``self``."""
        if self._started:
            raise RuntimeError("Aggregator already started")
        self._started = True
        self._t_start = time.monotonic()
        for i, c in enumerate(self.connectors):
            c.on_tick = self._make_sink(i)
        self._worker = threading.Thread(target=self._run, name="hftsig-aggregator", daemon=True)
        self._worker.start()
        for c in self.connectors:
            c.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        """Stop every connector, process what is queued, stop the worker, end iterators."""
        if not self._started or self._worker is None:
            return
        def stop_one(c):
            try:
                c.stop(timeout=1.0)
            except Exception:  # a broken connector must not keep the others running
                log.exception("stopping connector %r failed", c)

        # in parallel: each connector may take up to its one-second join
        stoppers = [threading.Thread(target=stop_one, args=(c,), daemon=True)
                    for c in self.connectors]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join(timeout)
        self._stopping = True
        self._queue.close()
        join_thread(self._worker, timeout)  # also after a start() a Ctrl-C cut short
        for sub in list(self._subs):
            sub.end()

    def __enter__(self) -> Aggregator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @classmethod
    def from_bus(cls, url: str, *, streams: str | Iterable[str] | None = None,
                 group: str | None = None, consumer: str | None = None,
                 since: str | float | None = None, snapshots: bool = True,
                 **kwargs: Any) -> Aggregator:
        """An aggregator (not started) fed from a Redis Streams tick bus.

        One :class:`hftsig.distributed.bus.BusConnector` per stream; the rest of the API
        (iterator, callbacks, books, NBBO, stats) is the same as live.  Books
        are built only from snapshots (``require_book_snapshot=True``): a
        consumer joining mid-stream gets them from the publisher's periodic
        book snapshots.  Needs the ``bus`` extra (``pip install 'hftsig[bus]'``).

        Parameters
        ----------
        url : str
            ``redis://host:6379/0`` or ``unix:///path/redis.sock``.
        streams : str or list of str, optional
            Stream names; default: every stream the publishers announced
            under ``hftsig:ticks`` (see :func:`hftsig.distributed.bus.discover_streams`).
        group, consumer, since, snapshots
            As in :class:`hftsig.distributed.bus.BusConnector`: with ``group`` a consumer
            group (a restarted consumer gets what it had not acknowledged);
            without, a plain reader starting at ``since`` (``"-5min"``...).
        **kwargs
            Passed on to :class:`Aggregator`.
        """
        from hftsig.distributed.bus import bus_connectors

        conns = bus_connectors(url, streams=streams, group=group, consumer=consumer,
                               since=since, snapshots=snapshots)
        kwargs.setdefault("require_book_snapshot", True)
        return cls(conns, **kwargs)

    def book_snapshot_ticks(self) -> np.ndarray:
        """Every known book as ``KIND_BOOK_SNAPSHOT`` records, one snapshot per book.

        The first record of each book has ``FLAG_SNAPSHOT_BEGIN`` and its last
        ``FLAG_LAST``; times are those of the book's top in :meth:`top` when the
        book gave it, else the newest ``ts_recv`` seen.  Applying them to an
        empty aggregator rebuilds the same books (what :mod:`hftsig.distributed.bus`
        publishes for late joiners).  Call it from a callback (the draining
        thread) for books consistent with the ticks delivered so far.

        Examples
        --------
        >>> from hftsig.market.ticks import empty_ticks, KIND_BOOK_SNAPSHOT, FLAG_LAST
        >>> from hftsig.market.recorder import ReplayConnector
        >>> t = empty_ticks(2); t["exchange"] = 2; t["symbol"] = b"BTC-USD"
        >>> t["kind"] = KIND_BOOK_SNAPSHOT; t["side"] = [1, -1]
        >>> t["price"] = [100.0, 101.0]; t["size"] = 1.0
        >>> t["flags"] = [FLAG_SNAPSHOT_BEGIN, FLAG_LAST]; t["ts_recv"] = t["ts_event"] = 5
        >>> with Aggregator([ReplayConnector(t)], clock="data") as agg:
        ...     agg.wait_finished(timeout=5)
        ...     snap = agg.book_snapshot_ticks()
        True
        >>> snap["price"].tolist(), snap["side"].tolist(), snap["flags"].tolist()
        ([100.0, 101.0], [1, -1], [2, 1])
        """
        parts = []
        with self._lock:  # the levels are read under the lock: a consistent state
            items = [(k, b.levels("bid"), b.levels("ask")) for k, b in self._books.items()
                     if k not in self._book_invalid]
            rows = {k: (r[_R_SRC], r[_R_QTE], r[_R_QTR]) for k, r in self._rows.items()}
            now = self._data_now
        for key, bids, asks in items:
            n = len(bids) + len(asks)
            if n == 0:
                continue
            t = np.zeros(n, dtype=TICK_DTYPE)
            for f in ("bid_px", "bid_sz", "ask_px", "ask_sz"):
                t[f] = np.nan
            t["seq"] = t["seq_first"] = -1
            src, te, tr = rows.get(key, (0, now, now))
            if src != SOURCE_BOOK:
                te = tr = now
            t["ts_event"], t["ts_recv"] = te, tr
            t["exchange"], t["symbol"], t["kind"] = key[0], key[1], KIND_BOOK_SNAPSHOT
            t["side"][:len(bids)] = 1
            t["side"][len(bids):] = -1
            t["price"] = np.concatenate([bids[:, 0], asks[:, 0]])
            t["size"] = np.concatenate([bids[:, 1], asks[:, 1]])
            t["flags"][0] |= FLAG_SNAPSHOT_BEGIN
            t["flags"][-1] |= FLAG_LAST
            parts.append(t)
        if not parts:
            return np.empty(0, dtype=TICK_DTYPE)
        return np.concatenate(parts)

    def _make_sink(self, index):
        put = self._queue.put
        # dispatch="connector": the connector thread that finds nobody draining
        # drains the queue itself (state, callbacks, iterators) instead of
        # waking the worker.  Each hand-over between threads waits for the GIL
        # and a core; the frame's own thread is already running.  Consumers
        # still run one chunk at a time in arrival order; a slow one holds up
        # connectors, as the full queue would (so: block mode only).
        claim = self.dispatch == "connector"
        drain = self._drain_queue

        def on_tick(batch):
            try:
                dt = batch.dtype
                if dt is not TICK_DTYPE and dt != TICK_DTYPE:
                    raise AttributeError
            except AttributeError:
                raise TypeError(
                    f"on_tick expects a TICK_DTYPE array, got {type(batch).__name__}") from None
            if batch.ndim != 1:
                batch = batch.reshape(-1)
            if not batch.size:
                return
            if not batch.flags.owndata or not batch.flags.c_contiguous:
                # the connector may reuse its buffer; the worker's C passes want it
                # contiguous.  Copied as raw bytes: a structured copy goes field by
                # field (~6 us for a frame's records, against 0.5 us); consumers get
                # read-only arrays anyway.
                if batch.flags.c_contiguous:
                    batch = _frombuffer(batch.tobytes(), TICK_DTYPE)
                else:
                    batch = batch.copy()
            if put(index, batch, claim) == _CLAIMED:
                drain()

        return on_tick

    def wait_finished(self, timeout: float | None = None) -> bool:
        """Wait until every finite connector (e.g. a replay) has sent everything and the
        aggregator has processed it.  Returns False on timeout.

        A connector is finite when it has a ``wait(timeout)`` method returning True
        once it has nothing more to send.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        for c in self.connectors:
            if hasattr(c, "wait"):
                left = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not c.wait(left):
                    return False
        return self.flush(None if deadline is None else max(0.0, deadline - time.monotonic()))

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until the queue is empty and the worker idle; False on timeout."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            # in this order: a drainer is busy before the length drops to 0
            if len(self._queue) == 0 and not self._queue.busy:
                return True
            if deadline is not None and time.monotonic() > deadline:
                return False
            if self._worker is None or not self._worker.is_alive():
                return len(self._queue) == 0
            time.sleep(0.002)

    # -- consumers -----------------------------------------------------------------------
    def on_tick(self, callback: Callable[[TickArray], Any], *,
                kinds: str | Iterable[str] | None = None,
                symbols: str | Iterable[str] | None = None,
                exchanges: str | Iterable[str] | None = None) -> _Callback:
        """Call ``callback(ticks)`` for every chunk of ticks.

        Callbacks run on the draining thread (a connector thread with
        ``dispatch="connector"``, else the worker), one chunk at a time, never
        two at once.

        ``ticks`` is a TICK_DTYPE array of consecutive ticks (whole messages, in
        arrival order) that pass the filters; the aggregator's state already
        includes them.  The callback must be quick (it delays every consumer and,
        with ``overflow="block"``, the connectors) and must not keep the array
        beyond the call without copying it.  Its ``symbol`` field holds bytes;
        :func:`hftsig.market.ticks.symbols` decodes them to ``str``.  An exception is counted, logged
        once per callback with its traceback, and never stops the worker.

        Parameters
        ----------
        callback : callable
        kinds : iterable of str or int, optional
            Kind names (``"quote"``, ``"trade"``...) or ``KIND_*`` codes.
        symbols : iterable of str, optional
            Canonical symbols (``"BTC-USDT"``).
        exchanges : iterable of str or int, optional

        Returns
        -------
        handle : object
            Pass it to :meth:`remove_callback`.
        """
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        if isinstance(kinds, (str, int)):
            kinds = [kinds]
        if isinstance(symbols, (str, bytes)):
            symbols = [symbols]
        if isinstance(exchanges, (str, int)):
            exchanges = [exchanges]
        k = None if kinds is None else frozenset(
            kind_code(x) if isinstance(x, str) else int(x) for x in kinds)
        s = None if symbols is None else frozenset(_as_symbol(x) for x in symbols)
        e = None if exchanges is None else frozenset(_as_exchange(x) for x in exchanges)
        cb = _Callback(callback, k, s, e)
        with self._lock:
            self._callbacks = self._callbacks + [cb]
        return cb

    def remove_callback(self, handle: _Callback) -> None:
        """Stop calling a callback registered with :meth:`on_tick`."""
        with self._lock:
            self._callbacks = [c for c in self._callbacks if c is not handle]

    def ticks(self, timeout: float | None = None, *,
              batches: bool = False) -> Iterator[Tick | TickArray]:
        """Iterate over every tick from now on.

        Yields single tick records (:class:`hftsig.market.ticks.Tick`: ``tick["price"]``
        or ``tick.price``; ``tick.symbol`` is a ``str``) or, with ``batches=True``,
        :class:`TickArray` batches (the chunks the worker processed; their
        ``symbols`` attribute decodes the symbols) — much cheaper at high rates.  The iterator has its own buffer
        of ``queue_size`` ticks, registered when :meth:`ticks` is called, so it
        takes nothing from callbacks or other iterators.  When it falls behind, the
        worker waits for it (``overflow="block"``) or its oldest buffered ticks are
        dropped and counted in its ``dropped`` attribute (``"drop_oldest"``).

        Iteration ends when no tick arrives within ``timeout`` seconds (None:
        wait until the aggregator stops, after everything buffered was yielded).
        Breaking out of the loop and dropping the iterator, or ``close()``,
        unsubscribes it.
        """
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be >= 0 or None, got {timeout}")
        sub = _Subscription(self.queue_size, self.overflow == "block")
        with self._lock:
            self._subs = self._subs + [sub]
        if self._stopping:
            sub.end()
        return _TickIterator(self, sub, timeout, batches)

    def _unsubscribe(self, sub):
        with self._lock:
            self._subs = [s for s in self._subs if s is not sub]

    def drain(self) -> TickArray:
        """Return every tick processed since the last call, as a :class:`TickArray`.

        At most ``drain_size`` ticks are kept between calls; when more arrive, the
        oldest are discarded and counted in ``aggregator_stats()["drain_dropped"]``.
        The result has a ``to_pandas()`` method.
        """
        with self._lock:
            parts = list(self._drain)
            self._drain.clear()
            self._drain_n = 0
        if not parts:
            return _tick_array(np.empty(0, dtype=TICK_DTYPE))
        return _tick_array(concat_ticks(parts).copy())

    # -- state ---------------------------------------------------------------------------
    def _now(self):
        return time.time_ns() if self.clock == "wall" else self._data_now

    def book(self, exchange: str | int, symbol: str) -> OrderBook | None:
        """A copy of the aggregator's order book of (exchange, symbol), or None.

        The copy is an :class:`hftsig.market.book.OrderBook` the caller may read freely
        while the aggregator goes on updating its own.  None when no book records
        arrived, or when the book is invalid after a drop (waiting for a snapshot).
        """
        key = (_as_exchange(exchange), _as_symbol(symbol))
        with self._lock:
            if key in self._book_invalid:
                return None
            b = self._books.get(key)
            if b is None:
                return None
            return _copy_book(b)

    def top(self, exchange: str | int, symbol: str) -> Top | None:
        """Latest top of book of (exchange, symbol) as a :class:`Top`, or None."""
        key = (_as_exchange(exchange), _as_symbol(symbol))
        with self._lock:
            r = self._rows.get(key)
            if r is None or r[_R_SRC] == 0:
                return None
            r = list(r)
        return Top(exchange_name(key[0]), key[1].decode(), r[_R_BID], r[_R_BSZ], r[_R_ASK],
                   r[_R_ASZ], r[_R_QTE], r[_R_QTR], _SOURCE_NAMES[r[_R_SRC]])

    def nbbo(self, symbol: str, *, max_age: float | None = None) -> NBBO:
        """Best bid and offer of ``symbol`` across exchanges, as an :class:`NBBO`.

        Quotes older than ``max_age`` seconds (default ``stale_after``), quotes
        of venues whose latest event is a disconnect or stale-feed status, and a
        venue's quote whose own bid is at or above its own ask (a crossed or
        locked book: lost or bad messages, not a price anyone can trade) are left
        out.  Ties go to the venue whose quote is oldest (it was there first).
        Reference prices (``KIND_PRICE``) have no bid/ask and never count.
        """
        sym = _as_symbol(symbol)
        max_age = self.stale_after if max_age is None else float(max_age)
        with self._lock:
            sel = _state_array(self._by_symbol.get(sym, ()))
            down = dict(self._down_since)
            now = self._now()
        sel = sel[sel["source"] != 0]
        if len(sel):
            fresh = (now - sel["quote_ts_recv"]) <= max_age * 1e9
            for i, ex in enumerate(sel["exchange"].tolist()):
                if ex in down and down[ex] >= sel["quote_ts_recv"][i]:
                    fresh[i] = False
            sel = sel[fresh]
            sel = sel[~(sel["bid_px"] >= sel["ask_px"])]  # NaN compares false: one-sided stays
        bid = sel[np.isfinite(sel["bid_px"])]
        ask = sel[np.isfinite(sel["ask_px"])]
        nan = float("nan")
        bid_px = bid_sz = ask_px = ask_sz = nan
        bid_venue = ask_venue = None
        if len(bid):
            order = np.lexsort((bid["quote_ts_recv"], -bid["bid_px"]))
            b = bid[order[0]]
            bid_px, bid_sz, bid_venue = float(b["bid_px"]), float(b["bid_sz"]), exchange_name(
                b["exchange"])
        if len(ask):
            order = np.lexsort((ask["quote_ts_recv"], ask["ask_px"]))
            a = ask[order[0]]
            ask_px, ask_sz, ask_venue = float(a["ask_px"]), float(a["ask_sz"]), exchange_name(
                a["exchange"])
        ts = int(sel["quote_ts_recv"].max()) if len(sel) else 0
        return NBBO(sym.decode(), bid_px, bid_sz, bid_venue, ask_px, ask_sz, ask_venue, ts,
                    len(sel))

    def symbols(self) -> list[str]:
        """Sorted canonical symbols seen so far."""
        with self._lock:
            syms = list(self._by_symbol)
        return sorted(s.decode() for s in syms)

    def quotes(self) -> pd.DataFrame:
        """DataFrame of the latest state of every (exchange, symbol) seen.

        Columns: exchange, symbol, bid_px, bid_sz, ask_px, ask_sz, source (of the
        quote: "quote" or "book"), quote_ts_recv, age_ms (of the quote), price
        and price_ts_recv (latest reference price), trade_px, trade_sz.
        """
        import pandas as pd

        with self._lock:
            st = _state_array(self._rows.values())
            now = self._now()
        df = pd.DataFrame({
            "exchange": [exchange_name(c) for c in st["exchange"]],
            "symbol": [s.decode() for s in st["symbol"]],
            "bid_px": st["bid_px"], "bid_sz": st["bid_sz"],
            "ask_px": st["ask_px"], "ask_sz": st["ask_sz"],
            "source": [_SOURCE_NAMES[int(s)] for s in st["source"]],
            "quote_ts_recv": pd.to_datetime(st["quote_ts_recv"], unit="ns", utc=True),
            "age_ms": np.where(st["source"] != 0, (now - st["quote_ts_recv"]) / 1e6, np.nan),
            "price": st["price"],
            "price_ts_recv": pd.to_datetime(st["price_ts_recv"], unit="ns", utc=True),
            "trade_px": st["trade_px"], "trade_sz": st["trade_sz"],
        })
        return df.sort_values(["symbol", "exchange"], kind="stable").reset_index(drop=True)

    def stats(self) -> dict[str, dict[str, Any]]:
        """Per-connector statistics, keyed by connector name (see :attr:`names`).

        Each value holds: ``exchange``; ``messages`` and ``ticks`` received;
        ``rate`` and ``msg_rate`` (ticks and messages per second over the last
        second or so) and ``mean_rate`` since start; ``latency_us`` (p50, p99,
        p999 of ``ts_recv - ts_event`` over the last 8192 messages, taken at
        each message's last record, status ticks excluded; the records of one
        message share their times); ``batched_latency_us`` (the same for the
        messages of kinds the connector declares batched or polled in its
        ``batched_kinds``, e.g. Coinbase's trades, sent every 250 ms: kept out
        of ``latency_us``, where the wait for the batch would read as
        slowness) and ``batched_kinds`` (kind name -> seconds between batches);
        ``queue_latency_us`` (p50/p99/p999 from
        ``ts_recv`` to the worker dispatching the message; NaN with
        ``clock="data"``); ``reconnects`` and ``gaps`` (the
        connector's own counts when its stats have them, else counted from
        status ticks); ``status`` (status tick counts); ``connected``;
        ``dropped``/``dropped_batches`` (queue overflow), ``blocked`` (puts that
        waited for room), ``books_invalidated``; and ``connector``: the
        connector's own ``stats()``.
        """
        out = {}
        elapsed = max(time.monotonic() - (self._t_start or time.monotonic()), 1e-9)
        q = self._queue
        for i, (c, cs) in enumerate(zip(self.connectors, self._cstats)):
            try:
                own = dict(c.stats()) if hasattr(c, "stats") else {}
            except Exception as exc:  # report, don't fail the whole call
                own = {"error": repr(exc)}
            d = {
                "exchange": cs.exchange,
                "messages": cs.batches,
                "ticks": cs.ticks,
                "rate": cs.rate,
                "msg_rate": cs.msg_rate,
                "mean_rate": cs.ticks / elapsed,
                "latency_us": cs._pct(cs.lat),
                "batched_latency_us": cs._pct(cs.lat_batched),
                "batched_kinds": {KINDS[k]: v for k, v in cs.batched.items()},
                "queue_latency_us": cs._pct(cs.qlat),
                "reconnects": own.get("reconnects", max(cs.status["connected"] - 1, 0)),
                "gaps": own.get("gaps", cs.status["resync"]),
                "status": dict(cs.status),
                "connected": own.get("connected", cs.connected),
                "dropped": q.dropped[i],
                "dropped_batches": q.dropped_batches[i],
                "blocked": q.blocked[i],
                "rejected_after_stop": q.rejected[i],
                "books_invalidated": cs.books_invalidated,
                "connector": own,
            }
            out[self.names[i]] = d
        return out

    def aggregator_stats(self) -> dict[str, Any]:
        """The aggregator's own counters: queue, chunks, callbacks, iterators, drain."""
        with self._lock:
            cbs = [{"callback": c.name, "calls": c.calls, "errors": c.errors}
                   for c in self._callbacks]
            subs = len(self._subs)
            drain_n = self._drain_n
        return {
            "queue_len": len(self._queue),
            "queue_size": self.queue_size,
            "queue_high_water": self._queue.high_water,
            "overflow": self.overflow,
            "chunks": self._chunks,
            "ticks": self._ticks,
            "worker_busy_s": self._worker_busy_ns / 1e9,
            "callbacks": cbs,
            "callback_errors": sum(c["errors"] for c in cbs),
            "state_errors": self._state_errors,
            "iterators": subs,
            "drain_buffered": drain_n,
            "drain_dropped": self._drain_dropped,
        }

    # -- worker --------------------------------------------------------------------------
    def _run(self):
        q = self._queue
        while True:
            items, dirty = q.get_all(0.1)
            if not items:
                if self._stopping and not q.busy:
                    break
                self._tick_rates()
                continue
            self._drain_queue(items, dirty)

    def _drain_queue(self, items=None, dirty=None):
        """Process batches until the queue is empty, holding the drain role."""
        q = self._queue
        try:
            if items is None:
                items, dirty = q.take()
            while items:
                t0 = time.perf_counter_ns()
                try:
                    self._process(items, dirty)
                except Exception:  # a bug here must not silently stop the stream
                    log.exception("aggregator failed on a chunk; continuing")
                t1 = time.perf_counter_ns()
                self._worker_busy_ns += t1 - t0
                if t1 - self._rates_ns >= 250_000_000:
                    self._rates_ns = t1
                    self._tick_rates()
                items, dirty = q.take()
        except BaseException:
            q.release()  # e.g. a KeyboardInterrupt in a callback: the worker goes on
            raise

    def _tick_rates(self):
        now = time.monotonic()
        for cs in self._cstats:
            dt = now - cs.rate_t
            if dt >= 1.0:
                cs.rate = (cs.ticks - cs.rate_ticks) / dt
                cs.msg_rate = (cs.batches - cs.rate_batches) / dt
                cs.rate_t, cs.rate_ticks, cs.rate_batches = now, cs.ticks, cs.batches

    def _process(self, items, dirty):
        chunk = items[0][1] if len(items) == 1 else concat_ticks([b for _, b in items])
        chunk.setflags(write=False)  # shared by every consumer
        n = len(chunk)
        self._chunks += 1
        self._ticks += n
        now_ns = time.time_ns()
        wall = self.clock == "wall"  # a replay's ts_recv is in the past: no queue latency
        cstats = self._cstats
        newest = 0
        # per-tick work runs in C (hftsig/_ext/_tickscan.pyx); Python sees each
        # batch and each (exchange, symbol) once
        for s_, b in items:
            cs = cstats[s_]
            cs.batches += 1
            cs.ticks += len(b)
            wire, queue, nw = _batch_latency(b if len(items) > 1 else chunk, now_ns)
            if wire is not None:
                if cs.batched and b["kind"][-1] in cs.batched:
                    cs.lat_batched.append(wire)
                else:
                    cs.lat.append(wire)
            if wall:
                cs.qlat.append(queue)
            if nw > newest:
                newest = nw
        if newest > self._data_now:
            self._data_now = newest

        with self._lock:
            if dirty:
                self._invalidate_books(dirty)
            try:
                self._update_state_chunk(chunk, items)
            except Exception:  # counted and logged once; consumers still get the ticks
                self._state_errors += 1
                if self._state_errors == 1:
                    log.exception("aggregator state update failed (counted in "
                                  "aggregator_stats()['state_errors']; logged once)")
            callbacks = self._callbacks
            subs = self._subs
            if self.drain_size:
                self._drain.append(chunk)
                self._drain_n += n
                while self._drain_n > self.drain_size:
                    excess = self._drain_n - self.drain_size
                    old = self._drain[0]
                    if len(old) <= excess:
                        self._drain.popleft()
                        cut = len(old)
                    else:
                        self._drain[0] = old[excess:]
                        cut = excess
                    self._drain_n -= cut
                    self._drain_dropped += cut

        for cb in callbacks:
            part = cb.select(chunk)
            if part is None:
                continue
            cb.calls += 1
            try:
                cb.func(part)
            except Exception:
                cb.errors += 1
                if not cb.logged:
                    cb.logged = True
                    log.exception("on_tick callback %s raised (counted; logged once)", cb.name)
        if subs:
            stopping = lambda: self._stopping  # noqa: E731
            for sub in subs:
                sub.push(chunk, stopping)

    def _row(self, key):
        row = self._rows.get(key)
        if row is None:
            nan = float("nan")
            row = [key[0], key[1], 0, nan, nan, nan, nan, 0, 0, nan, 0, 0, nan, nan, 0]
            self._rows[key] = row
            self._by_symbol.setdefault(key[1], []).append(row)
        return row

    def _update_others(self, rows, srcs):
        """Trades, reference prices and status records (tuples of TICK_DTYPE fields)."""
        get = self._rows.get
        for r, src in zip(rows, srcs):
            kind = r[3]
            if kind == KIND_TRADE:
                key = (r[2], r[7])
                row = get(key) or self._row(key)
                row[_R_TPX], row[_R_TSZ], row[_R_TTR] = r[12], r[13], r[1]
            elif kind == KIND_PRICE:
                key = (r[2], r[7])
                row = get(key) or self._row(key)
                row[_R_PX], row[_R_PXE], row[_R_PXR] = r[12], r[0], r[1]
            elif kind == KIND_STATUS:
                self._update_status(r, src)

    def _update_state_chunk(self, chunk, items):
        """Apply a chunk to the state as record-by-record updates would, with one
        Python step per (exchange, symbol) instead of per tick: a C pass sorts the
        chunk out first.  Quotes, then trades/prices/status, then books: a venue's
        quote and book tops compete by ``ts_recv``, not by position."""
        books, quotes, others = _scan_chunk(chunk)
        get = self._rows.get
        down = self._down_since
        for ex, sy, bp, bz, ap, az, te, tr in quotes:
            key = (ex, sy)
            row = get(key) or self._row(key)
            if tr >= row[_R_QTR] or row[_R_SRC] == 0:
                row[2:9] = (SOURCE_QUOTE, bp, bz, ap, az, te, tr)
            if down and ex in down and down[ex] < tr:
                del down[ex]
        if others:
            rows = chunk[np.array(others)].tolist()
            if len(items) == 1:
                srcs = [items[0][0]] * len(others)
            else:  # which batch (connector) each record came from
                ends = np.cumsum([len(b) for _, b in items])
                where = np.searchsorted(ends, others, side="right").tolist()
                srcs = [items[j][0] for j in where]
            self._update_others(rows, srcs)
        invalid = self._book_invalid
        for ex, sy, last, te, tr in books:
            key = (ex, sy)
            recs = chunk
            if key in invalid or (self.require_book_snapshot and key not in self._books):
                mine = chunk[(chunk["exchange"] == ex) & (chunk["symbol"] == sy)
                             & ((chunk["kind"] == KIND_BOOK_DELTA)
                                | (chunk["kind"] == KIND_BOOK_SNAPSHOT))]
                starts = np.flatnonzero(mine["flags"] & FLAG_SNAPSHOT_BEGIN)
                if len(starts) == 0:
                    continue  # still unknown: wait for a snapshot
                recs = mine[starts[0]:]
                invalid.discard(key)
            book = self._books.get(key)
            if book is None:
                book = self._books[key] = self._new_book(key)
            # the chunk is a contiguous TICK_DTYPE array (checked on the way in):
            # straight to the Cython book, past OrderBook.apply's checks
            core = book._core
            core.apply(recs)  # applies only this key's book records, in order
            row = get(key) or self._row(key)
            if tr >= row[_R_QTR] or row[_R_SRC] != SOURCE_QUOTE:
                bp, bz, ap, az = core.top()
                row[2:9] = (SOURCE_BOOK, bp, bz, ap, az, te, tr)
            if down and ex in down and down[ex] < tr:
                del down[ex]

    def _new_book(self, key):
        depth = self._book_depths.get(key[0])
        if depth is None or (self.book_depth is not None and self.book_depth < depth):
            depth = self.book_depth
        return _new_book(key, depth)

    def _invalidate_books(self, dirty):
        for key, src in dirty.items():
            if key in self._books:
                self._books[key] = self._new_book(key)
            self._book_invalid.add(key)
            row = self._rows.get(key)
            if row is not None and row[_R_SRC] == SOURCE_BOOK:
                row[_R_SRC] = 0
            self._cstats[src].books_invalidated += 1

    def _update_status(self, r, src):
        code = r[4]
        name = _STATUS_NAMES.get(code)
        if name is None:
            return
        cs = self._cstats[src]
        cs.status[name] += 1
        ex = r[2]
        if code == STATUS_CONNECTED:
            cs.connected = True
            self._down_since.pop(ex, None)
        elif code in (STATUS_DISCONNECTED, STATUS_STALE):
            cs.connected = code != STATUS_DISCONNECTED and cs.connected
            self._down_since[ex] = r[1]


_R_SRC, _R_BID, _R_BSZ, _R_ASK, _R_ASZ, _R_QTE, _R_QTR = 2, 3, 4, 5, 6, 7, 8
_R_PX, _R_PXE, _R_PXR, _R_TPX, _R_TSZ, _R_TTR = 9, 10, 11, 12, 13, 14
_STATUS_NAMES = {STATUS_CONNECTED: "connected", STATUS_DISCONNECTED: "disconnected",
                 STATUS_RESYNC: "resync", STATUS_STALE: "stale",
                 STATUS_CROSSED: "crossed", STATUS_UNCROSSED: "uncrossed"}


def _state_array(rows):
    """State rows (lists) -> a structured array of _STATE_DTYPE."""
    return np.array([tuple(r) for r in rows], dtype=_STATE_DTYPE)


def _new_book(key, depth):
    from hftsig.market.book import OrderBook

    return OrderBook(exchange_name(key[0]), key[1].decode("ascii"), depth)


def _copy_book(book):
    """An independent OrderBook with the same levels."""
    from hftsig.market.book import OrderBook

    out = OrderBook(book.exchange, book.symbol, book.depth)
    for side in ("bid", "ask"):
        for px, sz in book.levels(side).tolist():
            out.set_level(side, px, sz)
    return out
