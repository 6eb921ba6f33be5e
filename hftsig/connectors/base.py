"""The connector base: thread, reconnect schedule, stats and status ticks.

Every exchange connector is a small declarative class on top of
:class:`~hftsig.connectors.websocket.WebSocketConnector` (one websocket
connection, :mod:`hftsig.connectors.websocket`) or
:class:`~hftsig.connectors.rest.RestPollingConnector` (REST polling,
:mod:`hftsig.connectors.rest`): endpoints, channels and limits are class
attributes, and a few hooks say what to send on connect and what to do with
each parsed message.  Both build on :class:`BaseConnector`, which owns the
thread, the reconnect :class:`Backoff`, stats, error accounting and status
ticks; :class:`BookFeed` adds the local books of the book-carrying feeds and
:class:`SnapshotWorker` fetches their REST snapshots off the websocket thread.

The connector contract (what the aggregator relies on, written down as the
:class:`hftsig.market.connector_protocol.Connector` protocol):

``exchange``
    exchange name (``"binance"``...).
``symbols``
    tuple of canonical ``BASE-QUOTE`` symbols.
``start()``
    non-blocking; starts the connector's thread.
``stop(timeout=1.0)``
    stops and joins the thread(s) within ``timeout`` seconds; returns True
    when they ended.
``on_tick``
    callable taking one :data:`hftsig.market.ticks.TICK_DTYPE` array per message,
    called on the connector thread; may be set after construction, before
    :meth:`start`.
``stats()``
    dict with at least ``messages``, ``ticks``, ``reconnects``, ``gaps``,
    ``checksum_failures``, ``malformed``, ``last_latency_ns``,
    ``connected``.

Connection events reach ``on_tick`` as ``KIND_STATUS`` ticks whose ``side``
is ``STATUS_CONNECTED``, ``STATUS_DISCONNECTED``, ``STATUS_RESYNC`` or
``STATUS_STALE``; the book-carrying connectors add ``STATUS_CROSSED`` and
``STATUS_UNCROSSED`` (with the symbol) when a local book's best bid reaches
its best ask and when it no longer does.
"""
from __future__ import annotations

import importlib
import logging
import queue
import random
import re
import threading
import time
from typing import TYPE_CHECKING

from hftsig.connectors.credentials import redact
from hftsig.interrupts import join_thread
from hftsig.market.ticks import (
    FLAG_LAST,
    KIND_STATUS,
    STATUS_CONNECTED,
    STATUS_CROSSED,
    STATUS_DISCONNECTED,
    STATUS_RESYNC,
    STATUS_STALE,
    STATUS_UNCROSSED,
    concat_ticks,
    empty_ticks,
    exchange_code,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Iterable
    from typing import Any

    import numpy as np
    import numpy.typing as npt

    from hftsig.market.book import OrderBook

__all__ = [
    "Backoff",
    "BaseConnector",
    "MalformedFrame",
]

# Names that lived here before the websocket and REST machinery got modules of
# their own: ``from hftsig.connectors.base import WebSocketConnector`` keeps
# working.  They are looked up on first use: those modules import this one, so
# importing them here would be a cycle.
_MOVED = {
    "WebSocketConnector": "hftsig.connectors.websocket",
    "FrameTooLarge": "hftsig.connectors.websocket",
    "DEFAULT_MAX_MESSAGE_SIZE": "hftsig.connectors.websocket",
    "RestClient": "hftsig.connectors.rest",
    "RestPollingConnector": "hftsig.connectors.rest",
    "HTTPStatusError": "hftsig.connectors.rest",
}


def __getattr__(name):
    """A name moved to :mod:`hftsig.connectors.websocket` or :mod:`hftsig.connectors.rest`."""
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


logger = logging.getLogger("connectors")

_get_ident = threading.get_ident
# Frames read together are handed to on_tick as one array (one queue put and
# one pass of the consumers for the burst instead of one per frame), up to this
# many ticks or arrays: bounds the wait of a burst's first frame.
_HOLD_MAX_TICKS = 1000
_HOLD_MAX_ARRAYS = 8

_SYMBOL_RE = re.compile(r"^[A-Z0-9]{1,12}-[A-Z0-9]{1,12}$")


class MalformedFrame(ValueError):
    """A frame the connector itself could not make sense of (bad JSON, missing fields)."""


class Backoff:
    """Capped exponential backoff with jitter.

    The ``attempt``-th delay (0-based) is ``min(maximum, initial * factor**attempt)``
    scaled by a random factor in ``[1 - jitter, 1]`` so that many clients
    dropped at once do not reconnect in lockstep.

    Parameters
    ----------
    initial : float
        First delay in seconds (> 0).
    maximum : float
        Cap in seconds (>= initial).
    factor : float
        Growth per attempt (>= 1).
    jitter : float
        Fraction of the delay that is randomised, in ``[0, 1]``.
    seed : int or None
        Seed of the jitter generator (tests).

    Examples
    --------
    >>> b = Backoff(initial=0.1, maximum=1.0, jitter=0.0)
    >>> [b.delay(i) for i in range(5)]
    [0.1, 0.2, 0.4, 0.8, 1.0]
    """

    def __init__(self, initial: float = 0.5, maximum: float = 30.0, factor: float = 2.0,
                 jitter: float = 0.5, seed: int | None = None) -> None:
        if not initial > 0:
            raise ValueError(f"initial must be > 0, got {initial!r}")
        if not maximum >= initial:
            raise ValueError(f"maximum must be >= initial, got {maximum!r} < {initial!r}")
        if not factor >= 1:
            raise ValueError(f"factor must be >= 1, got {factor!r}")
        if not 0 <= jitter <= 1:
            raise ValueError(f"jitter must be in [0, 1], got {jitter!r}")
        self.initial = float(initial)
        self.maximum = float(maximum)
        self.factor = float(factor)
        self.jitter = float(jitter)
        self._rng = random.Random(seed)

    def delay(self, attempt: int) -> float:
        """Delay in seconds before retry number ``attempt`` (0-based)."""
        attempt = max(0, int(attempt))
        # cap the exponent so huge attempt counts never overflow
        base = min(self.maximum, self.initial * self.factor ** min(attempt, 64))
        return base * (1.0 - self.jitter * self._rng.random())

    def __repr__(self):
        return (f"Backoff(initial={self.initial}, maximum={self.maximum}, "
                f"factor={self.factor}, jitter={self.jitter})")


def _validate_symbols(symbols):
    if isinstance(symbols, (str, bytes)):
        symbols = [symbols]
    try:
        symbols = list(symbols)
    except TypeError:
        raise TypeError(f"symbols must be a sequence of 'BASE-QUOTE' strings, got {symbols!r}") from None
    if not symbols:
        raise ValueError("symbols must name at least one 'BASE-QUOTE' symbol")
    out = []
    for s in symbols:
        if isinstance(s, bytes):
            s = s.decode("ascii", "replace")
        if not isinstance(s, str):
            raise TypeError(f"symbols must be strings, got {s!r}")
        s = s.strip().upper()
        if len(s) > 16 or not _SYMBOL_RE.match(s):
            raise ValueError(f"symbols must be canonical 'BASE-QUOTE' (e.g. 'BTC-USDT'), got {s!r}")
        if s not in out:
            out.append(s)
    return tuple(out)


class BaseConnector:
    """Thread, stats, status ticks and error accounting shared by every connector.

    Subclasses set the class attributes and implement :meth:`_run`.

    Parameters
    ----------
    symbols : sequence of str
        Canonical ``BASE-QUOTE`` symbols.
    channels : sequence of str or None
        Subset of :attr:`valid_channels`; ``None`` means :attr:`default_channels`.
    on_tick : callable or None
        Called with one tick array per message on the connector thread.
    backoff : Backoff or None
        Reconnect / retry schedule; ``None`` uses ``Backoff()``.
    """

    #: exchange name, one of :data:`hftsig.market.ticks.EXCHANGES`
    exchange = ""
    #: kinds of record the venue sends in timed batches (or that are polled)
    #: rather than as they happen: kind name -> seconds between batches.  Their
    #: exchange-to-receive latency includes that wait, so the aggregator keeps
    #: it apart from the feed's latency (``stats()[name]["batched_latency_us"]``).
    batched_kinds: dict = {}
    #: channels this exchange offers through the connector
    valid_channels: tuple = ()
    #: channels used when the caller names none
    default_channels: tuple = ()

    def __init__(self, symbols: str | Iterable[str], *, channels: str | Iterable[str] | None = None,
                 on_tick: Callable[[npt.NDArray[np.void]], Any] | None = None,
                 backoff: Backoff | None = None) -> None:
        self.symbols = _validate_symbols(symbols)
        if channels is None:
            channels = self.default_channels
        if isinstance(channels, str):
            channels = (channels,)
        channels = tuple(channels)
        bad = [c for c in channels if c not in self.valid_channels]
        if bad or not channels:
            raise ValueError(
                f"channels must be a non-empty subset of {self.valid_channels}, got {channels!r}")
        self.channels = channels
        if on_tick is not None and not callable(on_tick):
            raise TypeError(f"on_tick must be callable or None, got {on_tick!r}")
        self.on_tick = on_tick
        if backoff is None:
            backoff = Backoff()
        if not isinstance(backoff, Backoff):
            raise TypeError(f"backoff must be a Backoff, got {backoff!r}")
        self.backoff = backoff
        self._exchange_code = exchange_code(self.exchange)
        self._stop = threading.Event()
        self._thread = None
        # Counters are plain dicts written without a lock: each key has one
        # writing thread (the connector thread; REST counters the thread doing
        # REST), and stats() copies them with dict(), atomic under the GIL.
        self._stats = {}
        self._types = {}
        self._connected = False
        self._last_latency_ns = 0
        self._latency_src = None  # last tick batch with exchange event times
        self._held = None  # arrays held back while a burst of frames is worked through
        self._held_n = 0
        self._held_by = None  # the thread whose emits are held
        self._logged = set()

    # -- public contract -------------------------------------------------
    def start(self) -> BaseConnector:
        """Start the connector thread and return at once."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError(f"{self!r} is already running")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._thread_main, name=f"{self.exchange}-connector", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 1.0) -> bool:
        """Stop the connector; join its thread(s) within ``timeout`` seconds.

        Returns True when every thread has ended.
        """
        deadline = time.monotonic() + float(timeout)
        self._stop.set()
        self._interrupt()
        ok = True
        for t in self._threads():
            if t is threading.current_thread():
                continue
            # (join_thread: also a thread whose start() a Ctrl-C cut short)
            ok = join_thread(t, max(0.0, deadline - time.monotonic())) and ok
        return ok

    def stats(self) -> dict[str, Any]:
        """Counters since construction, as a plain dict.

        Keys: messages, ticks, reconnects, gaps, checksum_failures, malformed,
        resyncs, stale, errors, callback_errors, protocol_errors (the peer
        broke the websocket protocol: connection closed), oversized (of which
        a frame or message above the size limit), book_rejected (book messages
        the local book refused), crossed_books (times a book became crossed or
        locked), last_latency_ns, connected,
        types (a dict of message type -> count), plus REST counters
        (http_requests, http_429, http_5xx, http_errors) where used.
        """
        out = {k: 0 for k in ("messages", "ticks", "reconnects", "gaps",
                              "checksum_failures", "malformed", "resyncs",
                              "stale", "errors", "callback_errors", "http_requests",
                              "http_429", "http_418", "http_5xx", "http_errors",
                              "http_retries", "protocol_errors", "oversized",
                              "book_rejected", "crossed_books")}
        out.update(dict(self._stats))
        src = self._latency_src
        if src is not None and len(src):
            # computed here, not per message, to keep the hot path lean
            self._last_latency_ns = int(src["ts_recv"][-1] - src["ts_event"][-1])
        out["last_latency_ns"] = int(self._last_latency_ns)
        out["connected"] = bool(self._connected)
        out["types"] = dict(self._types)
        return out

    @property
    def running(self) -> bool:
        """True while the connector thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> BaseConnector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self):
        return f"{type(self).__name__}(symbols={list(self.symbols)!r}, channels={list(self.channels)!r})"

    # -- for subclasses --------------------------------------------------
    def _threads(self):
        return [t for t in (self._thread,) if t is not None]

    def _interrupt(self):
        """Wake the connector thread out of any blocking call (stop())."""

    def _run(self):
        raise NotImplementedError

    def _thread_main(self):
        try:
            self._run()
        except Exception:  # a bug must be visible, never silent
            logger.exception("%s connector thread failed", self.exchange)
            self._count("errors")
        finally:
            self._set_connected(False)

    def _count(self, key, n=1):
        d = self._stats
        d[key] = d.get(key, 0) + n

    def _count_type(self, key):
        d = self._types
        d[key] = d.get(key, 0) + 1

    def _set_connected(self, flag):
        self._connected = bool(flag)

    def _log_once(self, key, msg, *args, exc_info=False):
        """Warn the first time ``key`` happens, debug afterwards (counted elsewhere)."""
        # bounded: a flood of distinct problems must not grow memory forever
        first = key not in self._logged and len(self._logged) < 1000
        if first:
            self._logged.add(key)
        # the message may carry a URL or frame: never let a key through
        text = redact(msg % args if args else msg)
        logger.log(logging.WARNING if first else logging.DEBUG, "%s: %s", self.exchange, text,
                   exc_info=exc_info if first else False)

    def _emit(self, ticks):
        """Hand one tick array to ``on_tick``; a failing callback is counted, not fatal.

        While the connection thread works through frames that arrived together
        (see :meth:`hftsig.connectors.websocket.WebSocketConnector._run_connection`) the arrays are held and
        handed over as one, in order, once the read buffer is empty.
        """
        n = len(ticks)
        if n == 0:
            return
        d = self._stats
        d["ticks"] = d.get("ticks", 0) + n
        held = self._held
        if held is not None and _get_ident() == self._held_by:
            held.append(ticks)
            self._held_n += n
            if self._held_n < _HOLD_MAX_TICKS and len(held) < _HOLD_MAX_ARRAYS:
                return
            ticks = self._take_held()
        self._deliver(ticks)

    def _take_held(self):
        held = self._held
        self._held = []
        self._held_n = 0
        return concat_ticks(held)

    def _release_held(self):
        """Hand over the arrays held since the last buffer-empty point."""
        if self._held:
            self._deliver(self._take_held())

    def _deliver(self, ticks):
        cb = self.on_tick
        if cb is None:
            return
        try:
            cb(ticks)
        except Exception as exc:
            self._count("callback_errors")
            self._log_once(("callback", type(exc)), "on_tick raised %r", exc, exc_info=True)

    def _status_tick(self, code, symbol=""):
        t = empty_ticks(1)
        now = time.time_ns()
        t["ts_event"] = now
        t["ts_recv"] = now
        t["exchange"] = self._exchange_code
        t["kind"] = KIND_STATUS
        t["side"] = code
        t["flags"] = FLAG_LAST
        t["symbol"] = symbol.encode("ascii") if isinstance(symbol, str) else symbol
        return t

    def _emit_status(self, code, symbol=""):
        """Emit one KIND_STATUS tick (``symbol`` empty for connection-wide events)."""
        self._count_type({STATUS_CONNECTED: "status_connected",
                          STATUS_DISCONNECTED: "status_disconnected",
                          STATUS_RESYNC: "status_resync",
                          STATUS_STALE: "status_stale",
                          STATUS_CROSSED: "status_crossed",
                          STATUS_UNCROSSED: "status_uncrossed"}.get(code, "status"))
        self._emit(self._status_tick(code, symbol))

    def _note_latency(self, ticks):
        """Remember ``ticks`` for ``last_latency_ns`` (receive minus event time of
        its last record, computed by :meth:`stats`).

        Callers skip messages without an exchange event time (Binance
        ``bookTicker`` is stamped with the receive time): they say nothing
        about latency.
        """
        self._latency_src = ticks

    def _sleep(self, seconds):
        """Sleep unless stopped; True when stopped."""
        return self._stop.wait(max(0.0, seconds))


#: The former name of :class:`BaseConnector`, kept importable; the connector
#: contract itself is :class:`hftsig.connectors.Connector` (a protocol).
Connector = BaseConnector


class BookFeed:
    """Local L2 books of a book-carrying websocket feed (Binance, Kraken, Coinbase).

    The connector keeps ``self._books`` (symbol -> :class:`hftsig.market.book.OrderBook`,
    updated on the connector thread) and ``self._awaiting`` (symbols whose
    snapshot has not arrived since the last (re)subscription).

    Book messages go through :meth:`_apply_book`: the book checks a message
    whole, so a rejected one changes nothing; it is counted (``malformed`` and
    ``book_rejected``), logged once, and the venue's connector resyncs that
    book instead of going on from a book that missed a message.  After each
    applied message :meth:`_note_crossed` reports a book whose best bid
    reached its best ask (``STATUS_CROSSED``, counted as ``crossed_books``)
    and its return to normal (``STATUS_UNCROSSED``).
    """

    #: symbols whose book was last reported crossed (set per instance on first use)
    _crossed = None

    def _book_symbol(self, symbol):
        key = str(symbol).upper()
        if key not in self._books:
            raise ValueError(f"symbol {symbol!r} is not one of {self.symbols}")
        return key

    def book(self, symbol: str) -> OrderBook:
        """The local :class:`hftsig.market.book.OrderBook` of ``symbol`` (updated on the connector thread)."""
        return self._books[self._book_symbol(symbol)]

    def synced(self, symbol: str) -> bool:
        """True once ``symbol``'s book snapshot arrived and no resync is pending."""
        symbol = self._book_symbol(symbol)
        return self.stats()["connected"] and symbol not in self._awaiting

    def _apply_book(self, symbol, part):
        """Apply one message's book records to ``symbol``'s book; False when rejected.

        A rejected message left the book as it was; the caller resyncs the book
        (the message's changes are lost, so the book no longer follows the venue).
        """
        try:
            self._books[symbol].apply(part)
        except ValueError as exc:
            self._count("malformed")
            self._count("book_rejected")
            self._log_once(("book-rejected", symbol), "%s book message rejected, resyncing: %s",
                           symbol, exc)
            return False
        return True

    def _note_crossed(self, symbol):
        """Emit STATUS_CROSSED / STATUS_UNCROSSED when ``symbol``'s book enters or leaves
        the crossed-or-locked state (call after emitting the message's records)."""
        if self._crossed is None:
            self._crossed = set()
        crossed = self._books[symbol].crossed
        if crossed == (symbol in self._crossed):
            return
        if crossed:
            self._crossed.add(symbol)
            self._count("crossed_books")
            book = self._books[symbol]
            self._log_once(("crossed", symbol), "%s book is crossed or locked: best bid %r, "
                           "best ask %r", symbol, book.best_bid()[0], book.best_ask()[0])
            self._emit_status(STATUS_CROSSED, symbol)
        else:
            self._crossed.discard(symbol)
            self._emit_status(STATUS_UNCROSSED, symbol)


def _preview(data, n=200):
    if isinstance(data, (bytes, bytearray)):
        data = bytes(data[:n]).decode("utf-8", "replace")
    return str(data)[:n]


def _check_url(url, schemes, name):
    if not isinstance(url, str) or not url.startswith(schemes):
        raise ValueError(f"{name} must start with one of {schemes}, got {redact(str(url))!r}")
    return url.rstrip("/")


class SnapshotWorker:
    """One helper thread running REST snapshot fetches off the websocket thread.

    The websocket thread keeps reading (and buffering) while a snapshot is
    in flight; results come back through :meth:`results`, polled by the
    websocket thread, so book state is only ever touched by that thread.
    """

    def __init__(self, owner: BaseConnector, fetch: Callable[[Hashable], Any]) -> None:
        self.owner = owner
        self.fetch = fetch
        self._requests = queue.Queue()
        self._results = queue.Queue()
        self._pending = set()
        self._thread = None

    def start(self) -> None:
        # fresh queues: a stop() leaves a wake-up marker and stale requests behind
        self._requests = queue.Queue()
        self._results = queue.Queue()
        self._pending = set()
        self._thread = threading.Thread(target=self._main, name=f"{self.owner.exchange}-snapshots",
                                        daemon=True)
        self._thread.start()

    @property
    def thread(self) -> threading.Thread | None:
        return self._thread

    def request(self, key: Hashable, generation: int) -> None:
        """Ask for a snapshot of ``key``; duplicates while one is pending are ignored."""
        if (key, generation) in self._pending:
            return
        self._pending.add((key, generation))
        self._requests.put((key, generation))

    def results(self) -> list[tuple[Hashable, int, Any]]:
        """Finished fetches: list of (key, generation, result or exception)."""
        if not self._pending:
            return []
        out = []
        while True:
            try:
                item = self._results.get_nowait()
            except queue.Empty:
                return out
            self._pending.discard(item[:2])
            out.append(item)

    def wake(self) -> None:
        self._requests.put(None)

    def _main(self):
        stop = self.owner._stop
        while not stop.is_set():
            item = self._requests.get()
            if item is None or stop.is_set():
                break
            key, gen = item
            try:
                result = self.fetch(key)
            except InterruptedError:
                break
            except Exception as exc:  # handed to the websocket thread, which counts it
                result = exc
            self._results.put((key, gen, result))
