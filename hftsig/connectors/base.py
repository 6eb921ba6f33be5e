"""Shared connection machinery: websocket and REST-polling connector bases.

Every exchange connector is a small declarative class on top of
:class:`WebSocketConnector` or :class:`RestPollingConnector`: endpoints,
channels and limits are class attributes, and a few hooks say what to send
on connect and what to do with each parsed message.  The machinery here owns
the thread, the socket, reconnects, the watchdog, stats and status ticks.

The connector contract (what the aggregator relies on):

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

import logging
import queue
import random
import re
import socket
import threading
import time
import weakref

import requests
import websocket

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

__all__ = [
    "Backoff",
    "Connector",
    "WebSocketConnector",
    "RestClient",
    "RestPollingConnector",
    "HTTPStatusError",
    "MalformedFrame",
    "FrameTooLarge",
    "DEFAULT_MAX_MESSAGE_SIZE",
]

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


class HTTPStatusError(RuntimeError):
    """A REST call failed for good (non-retryable status, or retries exhausted)."""

    def __init__(self, message, status=None):
        super().__init__(redact(message))
        self.status = status


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

    def __init__(self, initial=0.5, maximum=30.0, factor=2.0, jitter=0.5, seed=None):
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

    def delay(self, attempt):
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


class Connector:
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

    def __init__(self, symbols, *, channels=None, on_tick=None, backoff=None):
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
    def start(self):
        """Start the connector thread and return at once."""
        if self._thread is not None and self._thread.is_alive():
            raise RuntimeError(f"{self!r} is already running")
        self._stop.clear()
        self._thread = threading.Thread(
            target=self._thread_main, name=f"{self.exchange}-connector", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout=1.0):
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

    def stats(self):
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
    def running(self):
        """True while the connector thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
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
        (see :meth:`WebSocketConnector._run_connection`) the arrays are held and
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

    def book(self, symbol):
        """The local :class:`hftsig.market.book.OrderBook` of ``symbol`` (updated on the connector thread)."""
        return self._books[self._book_symbol(symbol)]

    def synced(self, symbol):
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


#: Default cap on one websocket frame and on one (reassembled) message, in bytes.
#: The largest messages the venues send are full-book snapshots: a Coinbase
#: level2 snapshot of a busy product (tens of thousands of levels at ~110 bytes:
#: a few MB) and Kraken's instrument snapshot (hundreds of pairs: a few hundred
#: KB).  16 MiB leaves several times that, and bounds what a broken or hostile
#: peer can make a connection hold (a header may claim 2**63 bytes).
DEFAULT_MAX_MESSAGE_SIZE = 16 << 20

_OP_CONT, _OP_TEXT, _OP_BINARY = 0x0, 0x1, 0x2
_OP_CLOSE, _OP_PING, _OP_PONG = 0x8, 0x9, 0xA
_OPCODES = frozenset((_OP_CONT, _OP_TEXT, _OP_BINARY, _OP_CLOSE, _OP_PING, _OP_PONG))
# close codes a peer may send (RFC 6455 7.4; 1004-1006 and 1015 are never on the wire)
_CLOSE_CODES = frozenset((1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013,
                          1014))


class FrameTooLarge(websocket.WebSocketProtocolException):
    """A websocket frame or message above the connection's size limit (close code 1009)."""


class _BufferedWebSocket(websocket.WebSocket):
    """websocket-client's WebSocket with its own, checked, frame reader.

    websocket-client reads a frame's header, its length and its payload with a
    ``recv`` each, so every frame costs three system calls (each dropping and
    retaking the GIL); a feed sends thousands of frames a second, in bursts.
    Here the socket is read 64 KiB at a time and a burst of frames costs one
    call.  The reader also holds the peer to the protocol before it reads a
    payload: no masked frames (a server must not mask, RFC 6455 5.1), no
    reserved bits, control frames short and whole, a frame and a message no
    longer than ``max_frame_size``/``max_message_size`` (a header claiming 2**62
    bytes is refused before a byte of payload is read), close frames with a
    valid code and a UTF-8 reason.  A breach raises
    ``websocket.WebSocketProtocolException`` (:class:`FrameTooLarge` for sizes).

    Fragments are collected in a list and joined once (linear in the message),
    the running total checked as each fragment's header arrives.
    :meth:`recv_data` returns after each socket read that did not complete a
    message, with ``(None, None)``, so that the caller's loop (watchdog, stop,
    reconnect requests) runs during a long message too; a read timeout or a
    closed socket surface as websocket-client's exceptions, with nothing lost.
    """

    _CHUNK = 1 << 16

    def __init__(self, *args, max_frame_size=DEFAULT_MAX_MESSAGE_SIZE,
                 max_message_size=DEFAULT_MAX_MESSAGE_SIZE, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_frame_size = int(max_frame_size)
        self.max_message_size = int(max_message_size)
        self._rbuf = b""
        self._rpos = 0
        self._hbuf = bytearray()  # header bytes of the next frame, until complete
        self._frame = None  # (fin, opcode, length) of the frame whose payload is read
        self._parts = []  # that payload so far
        self._got = 0
        self._msg_opcode = None  # opcode of the fragmented message in progress
        self._msg_parts = []
        self._msg_size = 0

    def recv_data(self, control_frame=False):
        """``(opcode, payload)`` of the next message, as websocket-client's; or
        ``(None, None)`` after a socket read that did not complete one.

        A whole unfragmented text or binary frame already in the buffer is cut
        out at once (the common case: a server's data frames are unmasked and
        unfragmented); anything else goes through :meth:`_next_frame`.
        """
        # (the fast path does not validate UTF-8: only for connections that skip it)
        if self._frame is None and not self._hbuf and self._msg_opcode is None \
                and self.frame_buffer.skip_utf8_validation:
            buf, pos = self._rbuf, self._rpos
            if pos >= len(buf):
                self._fill()  # may time out: nothing lost
                buf, pos = self._rbuf, 0
            avail = len(buf) - pos
            if avail >= 2 and buf[pos] in (0x81, 0x82):  # FIN, no RSV, text/binary
                b1 = buf[pos + 1]  # b1 >= 128 (masked) goes the checked way
                if b1 < 126:
                    hdr, ln = 2, b1
                elif b1 == 126 and avail >= 4:
                    hdr, ln = 4, int.from_bytes(buf[pos + 2:pos + 4], "big")
                else:  # 64-bit lengths (>= 64 KiB, never whole in one read) and the rest
                    hdr = ln = 0
                if hdr and hdr + ln <= avail and ln <= self.max_frame_size \
                        and ln <= self.max_message_size:
                    end = pos + hdr + ln
                    self._rpos = end
                    return buf[pos] & 0x0F, buf[pos + hdr:end]
        while True:
            frame = self._next_frame()
            if frame is None:
                return None, None
            fin, opcode, payload = frame
            if opcode == _OP_TEXT or opcode == _OP_BINARY:
                if fin:
                    return opcode, self._checked_text(opcode, payload)
                self._msg_opcode = opcode
                self._msg_parts = [payload]
                self._msg_size = len(payload)
                return None, None
            if opcode == _OP_CONT:
                self._msg_parts.append(payload)
                self._msg_size += len(payload)
                if not fin:
                    return None, None
                opcode, data = self._msg_opcode, b"".join(self._msg_parts)
                self._msg_opcode = None
                self._msg_parts = []
                self._msg_size = 0
                return opcode, self._checked_text(opcode, data)
            if opcode == _OP_CLOSE:
                self._check_close(payload)
                self.send_close()
                return opcode, payload
            if opcode == _OP_PING:
                self.pong(payload)
            if control_frame:
                return opcode, payload

    def buffered(self):
        """True when bytes read from the socket are waiting to be parsed."""
        return self._rpos < len(self._rbuf)

    # -- frame reader ------------------------------------------------------------
    def _fill(self):
        """One socket read into the (empty) buffer; a timeout raises with nothing lost."""
        self._rbuf = websocket.WebSocket._recv(self, self._CHUNK)
        self._rpos = 0

    def _take(self, n):
        buf, pos = self._rbuf, self._rpos
        end = pos + n
        self._rpos = end if end < len(buf) else len(buf)
        return buf[pos:end]

    def _next_frame(self):
        """``(fin, opcode, payload)`` of the next frame, or None after one socket read
        that did not complete it (what was read is kept for the next call)."""
        read = False
        if self._frame is None:
            hb = self._hbuf
            while True:
                need = self._header_size(hb)
                if len(hb) >= need:
                    break
                if self._rpos >= len(self._rbuf):
                    if read:
                        return None
                    self._fill()
                    read = True
                hb += self._take(need - len(hb))
            self._frame = self._check_header(hb)
            self._hbuf = bytearray()
            self._parts = []
            self._got = 0
        fin, opcode, length = self._frame
        parts = self._parts
        while self._got < length:
            if self._rpos >= len(self._rbuf):
                if read:
                    return None
                self._fill()
                read = True
            chunk = self._take(length - self._got)
            parts.append(chunk)
            self._got += len(chunk)
        self._frame = None
        self._parts = []
        return fin, opcode, parts[0] if len(parts) == 1 else b"".join(parts)

    def _header_size(self, hb):
        """Bytes in the header that starts ``hb``; checks its first two bytes once there."""
        if len(hb) < 2:
            return 2
        b0, b1 = hb[0], hb[1]
        if b0 & 0x70:
            raise websocket.WebSocketProtocolException(
                "frame with reserved bits set (no extension was negotiated)")
        opcode = b0 & 0x0F
        if opcode not in _OPCODES:
            raise websocket.WebSocketProtocolException(f"frame with unknown opcode {opcode:#x}")
        if b1 & 0x80:
            raise websocket.WebSocketProtocolException(
                "masked frame from the server (RFC 6455 5.1: a server must not mask)")
        ln = b1 & 0x7F
        if opcode >= _OP_CLOSE and (not b0 & 0x80 or ln > 125):
            raise websocket.WebSocketProtocolException(
                "control frame fragmented or longer than 125 bytes")
        return 2 if ln < 126 else (4 if ln == 126 else 10)

    def _check_header(self, hb):
        b0, b1 = hb[0], hb[1] & 0x7F
        opcode = b0 & 0x0F
        length = b1 if b1 < 126 else int.from_bytes(hb[2:], "big")
        if length >> 63:
            raise websocket.WebSocketProtocolException("frame length with the top bit set")
        if opcode < _OP_CLOSE:
            if opcode == _OP_CONT:
                if self._msg_opcode is None:
                    raise websocket.WebSocketProtocolException(
                        "continuation frame outside a fragmented message")
                total = self._msg_size + length
            else:
                if self._msg_opcode is not None:
                    raise websocket.WebSocketProtocolException(
                        "new message inside a fragmented message")
                total = length
            if length > self.max_frame_size:
                raise FrameTooLarge(f"frame of {length} bytes is above max_frame_size="
                                    f"{self.max_frame_size}")
            if total > self.max_message_size:
                raise FrameTooLarge(f"message of at least {total} bytes is above "
                                    f"max_message_size={self.max_message_size}")
        return bool(b0 & 0x80), opcode, length

    def _checked_text(self, opcode, data):
        if opcode == _OP_TEXT and not self.frame_buffer.skip_utf8_validation:
            try:
                data.decode("utf-8")
            except UnicodeDecodeError:
                raise websocket.WebSocketPayloadException("text message is not UTF-8") from None
        return data

    @staticmethod
    def _check_close(payload):
        if not payload:
            return
        if len(payload) == 1:
            raise websocket.WebSocketProtocolException("close frame with a 1-byte body")
        code = int.from_bytes(payload[:2], "big")
        if code not in _CLOSE_CODES and not 3000 <= code <= 4999:
            raise websocket.WebSocketProtocolException(f"close frame with invalid code {code}")
        try:
            payload[2:].decode("utf-8")
        except UnicodeDecodeError:
            raise websocket.WebSocketProtocolException(
                "close frame whose reason is not UTF-8") from None

    def _recv(self, bufsize):
        # websocket-client's own readers (recv(), recv_frame()) share the buffer
        buf, pos = self._rbuf, self._rpos
        if pos >= len(buf):
            buf = super()._recv(max(bufsize, self._CHUNK))
            pos = 0
            if len(buf) <= bufsize:  # all of it is wanted: no copy
                self._rbuf, self._rpos = b"", 0
                return buf
            self._rbuf = buf
        end = pos + bufsize
        self._rpos = end
        return buf[pos:end]


class WebSocketConnector(Connector):
    """One websocket connection on its own thread (websocket-client).

    The thread connects, sends :meth:`_subscribe_messages`, then reads frames
    with a short socket timeout so it notices :meth:`stop` and the watchdog.
    Pings are answered by websocket-client with the ping's payload; every
    frame (data, heartbeat, ping, pong) counts as liveness for the watchdog,
    which reconnects only after ``stale_after`` seconds of real silence.
    A dropped connection is retried after :attr:`backoff` delays; the
    backoff resets once a connection has delivered a message.

    Parameters
    ----------
    symbols, channels, on_tick, backoff
        See :class:`Connector`.
    ws_url : str or None
        Websocket base URL; ``None`` uses :attr:`default_ws_url`.
    rest_url : str or None
        REST base URL where the exchange needs one; ``None`` uses
        :attr:`default_rest_url`.
    stale_after : float or None
        Seconds of silence before the watchdog reconnects; ``None`` uses
        the class default.
    connect_timeout : float
        Seconds for the TCP connect and websocket handshake.
    max_connection_age : float or None
        Reconnect proactively after this many seconds (Binance ends
        connections at 24 h); ``None`` uses the class default.
    max_message_size, max_frame_size : int or None
        Largest message (fragments reassembled) and largest single frame
        accepted, in bytes; ``None`` uses the class default
        (:data:`DEFAULT_MAX_MESSAGE_SIZE`, 16 MiB).  A larger one, a masked
        frame or another breach of the protocol closes the connection
        (counted as ``protocol_errors``, sizes also as ``oversized``) and the
        connector reconnects.

    Notes
    -----
    An exchange class sets the class attributes (``exchange``,
    ``valid_channels``, ``default_channels``, ``default_ws_url``,
    ``stale_after``, ``app_ping_interval``, ``max_connection_age``) and
    fills in the hooks, all called on the connector thread:
    ``_ws_endpoint()`` (URL with stream names), ``_on_open()`` (reset
    per-connection state), ``_subscribe_messages()`` (sent on every
    connect, so reconnects resubscribe), ``_on_message(raw, ts_recv)``
    (raise ``ValueError`` for a malformed frame: it is counted and logged
    once), ``_app_ping()``, ``_on_idle()`` and ``_on_close()``.
    """

    default_ws_url = ""
    default_rest_url = ""
    #: seconds of silence that count as a stalled feed
    stale_after = 30.0
    #: send an application-level ping after this many idle seconds (None: never)
    app_ping_interval = None
    #: reconnect before the exchange ends the connection (seconds, None: never)
    max_connection_age = None
    #: socket read timeout: how often the thread looks at stop and the watchdog
    poll_interval = 0.1
    #: largest message and frame accepted (bytes)
    max_message_size = DEFAULT_MAX_MESSAGE_SIZE
    max_frame_size = DEFAULT_MAX_MESSAGE_SIZE

    def __init__(self, symbols, *, channels=None, ws_url=None, rest_url=None, on_tick=None,
                 backoff=None, stale_after=None, connect_timeout=5.0, max_connection_age=None,
                 max_message_size=None, max_frame_size=None):
        super().__init__(symbols, channels=channels, on_tick=on_tick, backoff=backoff)
        for name, value in (("max_message_size", max_message_size),
                            ("max_frame_size", max_frame_size)):
            if value is not None:
                if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                    raise ValueError(f"{name} must be a positive number of bytes, got {value!r}")
                setattr(self, name, value)
        self.ws_url = _check_url(ws_url or self.default_ws_url, ("ws://", "wss://"), "ws_url")
        rest = rest_url or self.default_rest_url
        self.rest_url = _check_url(rest, ("http://", "https://"), "rest_url") if rest else ""
        if stale_after is not None:
            if not stale_after > 0:
                raise ValueError(f"stale_after must be > 0 seconds, got {stale_after!r}")
            self.stale_after = float(stale_after)
        if max_connection_age is not None:
            if not max_connection_age > 0:
                raise ValueError(f"max_connection_age must be > 0, got {max_connection_age!r}")
            self.max_connection_age = float(max_connection_age)
        if not connect_timeout > 0:
            raise ValueError(f"connect_timeout must be > 0, got {connect_timeout!r}")
        self.connect_timeout = float(connect_timeout)
        self._ws = None
        self._ws_lock = threading.Lock()
        self._reconnect_reason = None
        self._planned = False
        self._connections = 0

    # -- hooks -----------------------------------------------------------
    def _ws_endpoint(self):
        """Full URL to connect to (e.g. with a combined-stream query)."""
        return self.ws_url

    def _on_open(self):
        """Reset per-connection state; called before subscribing."""

    def _subscribe_messages(self):
        """Messages (str) sent right after connecting."""
        return []

    def _on_message(self, raw, ts_recv):
        """Handle one text/binary frame. Raise ValueError for malformed frames."""
        raise NotImplementedError

    def _app_ping(self):
        """Application-level ping message (str) or None."""
        return None

    def _on_idle(self):
        """Called on every read timeout (between frames) on the connector thread."""

    # -- helpers for subclasses --------------------------------------------
    def send(self, message):
        """Send a text message on the current connection (connector thread or not)."""
        ws = self._ws
        if ws is None or not ws.connected:
            raise ConnectionError(f"{self.exchange}: not connected")
        ws.send(message)

    def request_reconnect(self, reason):
        """Drop the connection and reconnect (from the connector thread)."""
        self._reconnect_reason = reason

    # -- machinery ---------------------------------------------------------
    def _interrupt(self):
        with self._ws_lock:
            ws = self._ws
        if ws is not None:
            sock = ws.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def _run(self):
        attempt = 0
        while not self._stop.is_set():
            self._planned = False
            delivered = self._run_connection()
            if self._stop.is_set():
                break
            if self._planned and delivered:  # serverShutdown, connection age: at once
                attempt = 0
                continue
            if delivered:
                attempt = 0
            delay = self.backoff.delay(attempt)
            attempt += 1
            if self._sleep(delay):
                break

    def _connect(self):
        ws = _BufferedWebSocket(enable_multithread=True, skip_utf8_validation=True,
                                max_frame_size=self.max_frame_size,
                                max_message_size=self.max_message_size)
        with self._ws_lock:
            self._ws = ws
        url = self._ws_endpoint()
        try:
            ws.connect(url, timeout=self.connect_timeout, suppress_origin=True)
        except Exception as exc:
            self._count("connect_failures")
            self._log_once(("connect", type(exc)), "connect to %s failed: %r", url, exc)
            self._close_ws(ws)
            return None
        ws.settimeout(self.poll_interval)
        return ws

    def _close_ws(self, ws):
        with self._ws_lock:
            if self._ws is ws:
                self._ws = None
        try:
            ws.shutdown()
        except Exception:
            pass

    def _run_connection(self):
        """Connect, subscribe, read until the connection ends. True if a frame arrived."""
        ws = self._connect()
        if ws is None or self._stop.is_set():
            if ws is not None:
                self._close_ws(ws)
            return False
        self._connections += 1
        if self._connections > 1:
            self._count("reconnects")
        self._reconnect_reason = None
        delivered = False
        opened = time.monotonic()
        last_alive = opened
        last_sent = opened
        try:
            self._on_open()
            for msg in self._subscribe_messages():
                ws.send(msg)
            self._set_connected(True)
            self._emit_status(STATUS_CONNECTED)
            # Frames that arrived together are worked through before their ticks
            # are handed over, as one array: each hand-over costs the consumers a
            # pass; a burst pays it once (_emit).  Nothing is held across a read
            # that could wait.
            self._held_by = _get_ident()
            self._held = []
            while not self._stop.is_set():
                if self._reconnect_reason is not None:
                    self._log_once(("reconnect", self._reconnect_reason),
                                   "reconnecting: %s", self._reconnect_reason)
                    self._planned = True
                    break
                now = time.monotonic()
                if now - last_alive > self.stale_after:
                    self._count("stale")
                    self._log_once(("stale",), "no frame for %.1f s, reconnecting",
                                   now - last_alive)
                    self._emit_status(STATUS_STALE)
                    break
                if self.max_connection_age is not None and now - opened > self.max_connection_age:
                    self._count("age_reconnects")
                    self._planned = True
                    break
                ping = self.app_ping_interval
                if ping is not None and now - max(last_alive, last_sent) > ping:
                    msg = self._app_ping()
                    if msg is not None:
                        ws.send(msg)
                        last_sent = now
                if self._held and not ws.buffered():
                    self._release_held()
                try:
                    opcode, data = ws.recv_data(control_frame=True)
                except websocket.WebSocketTimeoutException:
                    self._on_idle()
                    continue
                ts_recv = time.time_ns()
                last_alive = time.monotonic()
                if opcode is None:  # part of a message arrived: alive, checks run again
                    continue
                if opcode == websocket.ABNF.OPCODE_CLOSE:
                    break
                if opcode == websocket.ABNF.OPCODE_PING:
                    self._count_type("ping")
                    continue
                if opcode == websocket.ABNF.OPCODE_PONG:
                    self._count_type("pong")
                    continue
                delivered = True
                self._count("messages")
                try:
                    self._on_message(data, ts_recv)
                except ValueError as exc:  # MalformedMessage / MalformedFrame / JSON errors
                    self._count("malformed")
                    self._count_type("malformed")
                    self._log_once(("malformed", type(exc).__name__),
                                   "malformed frame (%s: %s): %r", type(exc).__name__, exc,
                                   _preview(data))
                except (websocket.WebSocketException, OSError):
                    raise
                except Exception as exc:
                    self._count("errors")
                    self._log_once(("handler", type(exc)), "handler failed on %r: %r",
                                   _preview(data), exc, exc_info=True)
        except (websocket.WebSocketProtocolException, websocket.WebSocketPayloadException) as exc:
            # the peer broke the protocol (or a size limit): this connection is done
            self._count("protocol_errors")
            too_big = isinstance(exc, FrameTooLarge)
            if too_big:
                self._count("oversized")
            self._log_once(("protocol", str(exc)[:40]), "protocol error, reconnecting: %s", exc)
            try:
                ws.send_close(websocket.STATUS_MESSAGE_TOO_BIG if too_big
                              else websocket.STATUS_PROTOCOL_ERROR)
            except Exception:  # best effort: the socket may be gone already
                pass
        except (websocket.WebSocketException, OSError) as exc:
            if not self._stop.is_set():
                self._log_once(("dropped", type(exc)), "connection dropped: %r", exc)
        finally:
            try:
                self._release_held()
            finally:
                self._held = None
            self._close_ws(ws)
            was = self.stats()["connected"]
            self._set_connected(False)
            if was:
                self._emit_status(STATUS_DISCONNECTED)
            self._on_close()
        return delivered

    def _on_close(self):
        """Called after each connection ends (connector thread)."""


def _preview(data, n=200):
    if isinstance(data, (bytes, bytearray)):
        data = bytes(data[:n]).decode("utf-8", "replace")
    return str(data)[:n]


def _check_url(url, schemes, name):
    if not isinstance(url, str) or not url.startswith(schemes):
        raise ValueError(f"{name} must start with one of {schemes}, got {redact(str(url))!r}")
    return url.rstrip("/")


def _retry_after(resp):
    """Seconds from a Retry-After header (delta-seconds only), or None."""
    value = resp.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class _SocketRegistry:
    """Sockets of the session's live HTTP connections, so stop() can cut a hung request."""

    def __init__(self):
        self._conns = weakref.WeakSet()
        self._lock = threading.Lock()

    def add(self, conn):
        with self._lock:
            self._conns.add(conn)

    def abort_all(self):
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            sock = getattr(conn, "sock", None)
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def _tracking_adapter(registry):
    """An HTTPAdapter whose connections register their sockets in ``registry``."""
    from requests.adapters import HTTPAdapter
    from urllib3.connection import HTTPConnection, HTTPSConnection
    from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

    class Conn(HTTPConnection):
        def connect(self):
            super().connect()
            registry.add(self)

    class SConn(HTTPSConnection):
        def connect(self):
            super().connect()
            registry.add(self)

    class Pool(HTTPConnectionPool):
        ConnectionCls = Conn

    class SPool(HTTPSConnectionPool):
        ConnectionCls = SConn

    class Adapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            super().init_poolmanager(*args, **kwargs)
            self.poolmanager.pool_classes_by_scheme = {"http": Pool, "https": SPool}

    return Adapter()


class _CredentialSession(requests.Session):
    """A session that drops credential headers on a redirect to another origin.

    requests strips only ``Authorization`` when a redirect leaves the host; an
    API key travelling in its own header (``x-cg-demo-api-key``...) would be
    sent to whatever host the redirect names.  The same rule as requests'
    (:meth:`requests.Session.should_strip_auth`: another host, port or scheme,
    except http -> https on the default ports) now covers those headers too.
    """

    def __init__(self, secret_headers=()):
        super().__init__()
        self.secret_headers = tuple(secret_headers)

    def rebuild_auth(self, prepared_request, response):
        if self.secret_headers and self.should_strip_auth(response.request.url,
                                                          prepared_request.url):
            for name in self.secret_headers:
                prepared_request.headers.pop(name, None)
        super().rebuild_auth(prepared_request, response)


class RestClient:
    """A ``requests.Session`` with timeouts, retries and redacted errors.

    429 and 418 (Binance ban) honour ``Retry-After`` when present and back
    off by ``backoff`` otherwise; 5xx and connection errors back off too.
    Every outcome is counted in the owning connector's stats:
    ``http_requests``, ``http_429``, ``http_418``, ``http_5xx``,
    ``http_errors``, ``http_retries``.

    Parameters
    ----------
    base_url : str
        ``http(s)://host[:port][/prefix]``.
    owner : Connector
        Receives counters and provides stop/backoff.
    headers : dict or None
        Extra headers (values may be :class:`~hftsig.connectors.credentials.Secret`).
        Headers holding a ``Secret`` are credentials: a redirect to another
        host, port or scheme is followed without them.
    timeout : float
        Per-request timeout in seconds.
    max_retries : int
        Retries after the first attempt before :class:`HTTPStatusError`.
    max_retry_after : float
        Cap on a server-given ``Retry-After`` (seconds).
    """

    def __init__(self, base_url, owner, *, headers=None, timeout=5.0, max_retries=5,
                 max_retry_after=60.0):
        self.base_url = _check_url(base_url, ("http://", "https://"), "rest_url")
        self.owner = owner
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.max_retry_after = float(max_retry_after)
        self._headers = dict(headers or {})
        self._sockets = _SocketRegistry()
        self.session = _CredentialSession(
            k for k, v in self._headers.items() if hasattr(v, "reveal"))
        adapter = _tracking_adapter(self._sockets)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)

    def __repr__(self):
        return f"RestClient({redact(self.base_url)!r}, headers={sorted(self._headers)!r})"

    def close(self):
        """Close the session and cut any request in flight (it fails at once)."""
        self._sockets.abort_all()
        self.session.close()

    def get(self, path, params=None):
        """GET ``base_url + path``; returns the ``requests.Response`` of a 2xx answer.

        Raises :class:`HTTPStatusError` for 4xx other than 429/418, or when
        retries are exhausted, and ``InterruptedError`` when the owner stops.
        """
        owner = self.owner
        url = self.base_url + path
        # Secrets are revealed only here, into the outgoing request.
        headers = {k: (v.reveal() if hasattr(v, "reveal") else v) for k, v in self._headers.items()}
        attempt = 0
        while True:
            if owner._stop.is_set():
                raise InterruptedError("connector stopped")
            owner._count("http_requests")
            wait = None
            try:
                resp = self.session.get(url, params=params, headers=headers, timeout=self.timeout)
            except requests.RequestException as exc:
                if owner._stop.is_set():  # stop() cut the request
                    raise InterruptedError("connector stopped") from None
                owner._count("http_errors")
                owner._log_once(("http-exc", type(exc)), "GET %s failed: %s", url, exc)
                status = None
            else:
                status = resp.status_code
                if 200 <= status < 300:
                    return resp
                if status in (429, 418):
                    owner._count(f"http_{status}")
                    wait = _retry_after(resp)
                    if wait is not None:
                        wait = min(wait, self.max_retry_after)
                elif status >= 500:
                    owner._count("http_5xx")
                else:
                    owner._count("http_errors")
                    raise HTTPStatusError(
                        f"GET {url} -> HTTP {status}: {resp.text[:200]}", status=status)
                owner._log_once(("http", status), "GET %s -> HTTP %s (Retry-After %s)",
                                url, status, resp.headers.get("Retry-After"))
            if attempt >= self.max_retries:
                raise HTTPStatusError(f"GET {url} failed after {attempt + 1} attempts "
                                      f"(last status {status})", status=status)
            if wait is None:
                wait = owner.backoff.delay(attempt)
            owner._count("http_retries")
            attempt += 1
            if owner._sleep(wait):
                raise InterruptedError("connector stopped")

    def get_json(self, path, params=None):
        """:meth:`get` and decode JSON; undecodable bodies raise :class:`MalformedFrame`."""
        resp = self.get(path, params)
        try:
            return resp.json()
        except ValueError as exc:
            raise MalformedFrame(f"GET {redact(self.base_url + path)}: body is not JSON "
                                 f"({_preview(resp.content)!r})") from exc


class RestPollingConnector(Connector):
    """Polls a REST endpoint every ``interval`` seconds on its own thread.

    Subclasses implement :meth:`_poll` (one round; return nothing) using
    :attr:`rest` (a :class:`RestClient`).  A failed round is counted and the
    next one waits an extra backoff delay; malformed bodies are counted as
    ``malformed``.
    """

    default_rest_url = ""
    #: seconds between polls
    interval = 10.0

    def __init__(self, symbols, *, channels=None, rest_url=None, on_tick=None, backoff=None,
                 interval=None, timeout=5.0, headers=None):
        super().__init__(symbols, channels=channels, on_tick=on_tick, backoff=backoff)
        if interval is not None:
            if not interval > 0:
                raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
            self.interval = float(interval)
        self.rest_url = _check_url(rest_url or self.default_rest_url, ("http://", "https://"),
                                   "rest_url")
        self.rest = RestClient(self.rest_url, self, headers=headers, timeout=timeout)

    def _poll(self):
        raise NotImplementedError

    def _interrupt(self):
        self.rest.close()

    def _run(self):
        failures = 0
        while not self._stop.is_set():
            started = time.monotonic()
            try:
                self._poll()
            except InterruptedError:
                break
            except HTTPStatusError as exc:
                failures += 1
                self._set_connected(False)
                self._log_once(("poll", exc.status), "poll failed: %s", exc)
            except ValueError as exc:
                failures += 1
                self._count("malformed")
                self._log_once(("malformed", type(exc).__name__), "malformed body: %s", exc)
            else:
                failures = 0
            extra = self.backoff.delay(failures - 1) if failures else 0.0
            if self._sleep(self.interval - (time.monotonic() - started) + extra):
                break
        self.rest.close()


class SnapshotWorker:
    """One helper thread running REST snapshot fetches off the websocket thread.

    The websocket thread keeps reading (and buffering) while a snapshot is
    in flight; results come back through :meth:`results`, polled by the
    websocket thread, so book state is only ever touched by that thread.
    """

    def __init__(self, owner, fetch):
        self.owner = owner
        self.fetch = fetch
        self._requests = queue.Queue()
        self._results = queue.Queue()
        self._pending = set()
        self._thread = None

    def start(self):
        # fresh queues: a stop() leaves a wake-up marker and stale requests behind
        self._requests = queue.Queue()
        self._results = queue.Queue()
        self._pending = set()
        self._thread = threading.Thread(target=self._main, name=f"{self.owner.exchange}-snapshots",
                                        daemon=True)
        self._thread.start()

    @property
    def thread(self):
        return self._thread

    def request(self, key, generation):
        """Ask for a snapshot of ``key``; duplicates while one is pending are ignored."""
        if (key, generation) in self._pending:
            return
        self._pending.add((key, generation))
        self._requests.put((key, generation))

    def results(self):
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

    def wake(self):
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
