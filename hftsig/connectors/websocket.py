"""The websocket machinery: one connection per connector thread, frames checked as they arrive.

:class:`WebSocketConnector` runs one websocket connection on the connector
thread (websocket-client for the handshake and sending): connect, subscribe,
read, answer pings, watch for silence, reconnect with backoff.
:class:`_BufferedWebSocket` is its frame reader: the socket is read 64 KiB at
a time, a burst of frames costs one system call, and the peer is held to RFC
6455 (masking, reserved bits, control frames, size limits, close codes)
before a byte of payload is kept.  Exchange connectors subclass
:class:`WebSocketConnector` and fill in its hooks.
"""
from __future__ import annotations

import socket
import threading
import time
from typing import TYPE_CHECKING

import websocket

from hftsig.connectors.base import BaseConnector, _check_url, _preview
from hftsig.market.ticks import STATUS_CONNECTED, STATUS_DISCONNECTED, STATUS_STALE

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    import numpy as np
    import numpy.typing as npt

    from hftsig.connectors.base import Backoff

__all__ = ["WebSocketConnector", "FrameTooLarge", "DEFAULT_MAX_MESSAGE_SIZE"]

_get_ident = threading.get_ident

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


class WebSocketConnector(BaseConnector):
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
        See :class:`~hftsig.connectors.base.BaseConnector`.
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

    def __init__(self, symbols: str | Iterable[str], *, channels: str | Iterable[str] | None = None,
                 ws_url: str | None = None, rest_url: str | None = None,
                 on_tick: Callable[[npt.NDArray[np.void]], Any] | None = None,
                 backoff: Backoff | None = None, stale_after: float | None = None,
                 connect_timeout: float = 5.0, max_connection_age: float | None = None,
                 max_message_size: int | None = None, max_frame_size: int | None = None) -> None:
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
    def send(self, message: str | bytes) -> None:
        """Send a text message on the current connection (connector thread or not)."""
        ws = self._ws
        if ws is None or not ws.connected:
            raise ConnectionError(f"{self.exchange}: not connected")
        ws.send(message)

    def request_reconnect(self, reason: str) -> None:
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
