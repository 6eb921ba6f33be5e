"""The websocket frame reader against a raw-socket server on loopback sending hostile frames.

The server does the HTTP upgrade by hand and then writes whatever bytes a
scenario wants: headers claiming 2**62 bytes, endless fragments, masked frames,
close frames with a broken reason.  Each connection gets the next scenario
script; the last one repeats.  The client is a small real connector.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import re
import socket
import threading
import time

import pytest

from connector_support import Collector, wait_for
from hftsig.connectors.base import Backoff, MalformedFrame
from hftsig.connectors.websocket import DEFAULT_MAX_MESSAGE_SIZE, WebSocketConnector
from hftsig.market.connector_protocol import Connector
from hftsig.market.ticks import KIND_PRICE, empty_ticks

FAST = dict(initial=0.02, maximum=0.1, jitter=0.5, seed=1)
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


class Toy(WebSocketConnector):
    """Frames are ``{"seq": n}``; each becomes one price tick."""

    exchange = "simulated"
    valid_channels = ("prices",)
    default_channels = ("prices",)
    default_ws_url = "ws://127.0.0.1:9"

    def _on_message(self, raw, ts_recv):
        try:
            seq = int(json.loads(raw)["seq"])
        except (ValueError, KeyError, TypeError) as exc:
            raise MalformedFrame(f"bad toy frame: {exc!r}") from None
        t = empty_ticks(1)
        t["ts_event"] = t["ts_recv"] = ts_recv
        t["exchange"] = self._exchange_code
        t["kind"] = KIND_PRICE
        t["symbol"] = self.symbols[0].encode()
        t["price"] = 1.0
        t["seq"] = seq
        self._emit(t)


def test_the_toy_keeps_the_connector_protocol():
    assert isinstance(Toy(["BTC-USD"]), Connector)

def frame(payload, opcode=0x1, fin=True, mask=None, length=None):
    """One websocket frame; ``length`` overrides the header's length field."""
    if isinstance(payload, str):
        payload = payload.encode()
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | opcode])
    m = 0x80 if mask is not None else 0
    if n < 126:
        head += bytes([m | n])
    elif n < 1 << 16:
        head += bytes([m | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([m | 127]) + n.to_bytes(8, "big")
    if mask is not None:
        head += mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return head + payload


def good(seq):
    return frame(json.dumps({"seq": seq}))


@contextlib.contextmanager
def raw_ws_server(*scripts):
    """Accept connections; after the upgrade the k-th runs ``scripts[min(k, last)]``."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(8)
    lsock.settimeout(0.05)
    state = {"connections": 0, "stop": threading.Event(), "sent": {}, "closed_by_peer": {}}
    threads = []

    def handle(conn, k):
        try:
            req = b""
            while b"\r\n\r\n" not in req:
                data = conn.recv(4096)
                if not data:
                    return
                req += data
            key = re.search(rb"(?i)sec-websocket-key: *(\S+)", req).group(1)
            accept = base64.b64encode(hashlib.sha1(key + _GUID).digest())
            conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept + b"\r\n\r\n")
            scripts[min(k, len(scripts) - 1)](conn, k, state)
        except OSError:
            state["closed_by_peer"][k] = True
        finally:
            conn.close()

    def serve():
        while not state["stop"].is_set():
            try:
                conn, _ = lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            k = state["connections"]
            state["connections"] += 1
            th = threading.Thread(target=handle, args=(conn, k), daemon=True)
            threads.append(th)
            th.start()

    main = threading.Thread(target=serve, daemon=True)
    main.start()
    try:
        yield f"ws://127.0.0.1:{lsock.getsockname()[1]}", state
    finally:
        state["stop"].set()
        main.join(2)
        lsock.close()
        for th in threads:
            th.join(2)


def then_good(conn, k, state):
    """A well-behaved connection: three good frames, then quiet."""
    for i in range(3):
        conn.sendall(good(100 * k + i))
    state["stop"].wait(5)


def run(url, until, **kw):
    out = Collector()
    c = Toy(["BTC-USD"], ws_url=url, on_tick=out, backoff=Backoff(**FAST), **kw)
    c.start()
    try:
        assert wait_for(lambda: until(c, out))
        assert c.running
        return c.stats(), out
    finally:
        assert c.stop() is True


def test_a_header_claiming_2_62_bytes_is_refused_before_reading_the_payload():
    """The client must close at the header, not read (and keep) a steady payload."""
    def huge(conn, k, state):
        conn.sendall(good(0))
        conn.sendall(frame(b"", length=1 << 62)[:10])
        chunk = b"x" * (1 << 20)
        sent = 0
        try:
            while sent < (64 << 20) and not state["stop"].is_set():
                conn.sendall(chunk)  # blocks once the client stops reading
                sent += len(chunk)
        finally:
            state["sent"][k] = sent

    with raw_ws_server(huge, then_good) as (url, state):
        st, out = run(url, lambda c, out: 102 in out.data()["seq"])
        assert wait_for(lambda: 0 in state["sent"])
    assert st["oversized"] == 1 and st["protocol_errors"] == 1 and st["reconnects"] == 1
    # what the kernel's socket buffers hold, not the 64 MiB a reading client takes in
    assert state["sent"][0] < (24 << 20), state["sent"][0]
    assert out.data()["seq"].tolist() == [0, 100, 101, 102]


def test_oversized_single_frame_and_fragmented_message_close_and_reconnect():
    def big_frame(conn, k, state):
        conn.sendall(frame(b"y" * 5000))  # above max_frame_size=4096
        state["stop"].wait(5)

    def many_fragments(conn, k, state):
        # 3,000-byte fragments: each below max_frame_size, their sum above 8 KiB
        conn.sendall(frame(b"[" + b" " * 2999, fin=False))
        for _ in range(10):
            conn.sendall(frame(b" " * 3000, opcode=0x0, fin=False))
        state["stop"].wait(5)

    with raw_ws_server(big_frame, many_fragments, then_good) as (url, state):
        st, out = run(url, lambda c, out: 202 in out.data()["seq"],
                      max_frame_size=4096, max_message_size=8192)
    assert st["oversized"] == 2 and st["reconnects"] == 2 and st["messages"] == 3
    assert out.data()["seq"].tolist() == [200, 201, 202]


def test_fragments_are_joined_in_linear_time_and_the_loop_runs_meanwhile():
    """20 MB in 20,000 fragments (minutes of quadratic copying before) arrives whole;
    a connection-age renewal due while the fragments flow happens without waiting
    for the message to end."""
    n, size = 20_000, 1000
    body = json.dumps({"seq": 7, "pad": "p" * (n * size - 30)}).encode()

    def fragmented(conn, k, state):
        parts = [body[i:i + size] for i in range(0, len(body), size)]
        out = [frame(parts[0], fin=False)]
        out += [frame(p, opcode=0x0, fin=False) for p in parts[1:-1]]
        out.append(frame(parts[-1], opcode=0x0, fin=True))
        conn.sendall(b"".join(out))
        state["stop"].wait(5)

    def endless(conn, k, state):
        conn.sendall(frame(b'{"seq": 9', fin=False))
        while not state["stop"].is_set():
            conn.sendall(frame(b" " * 100, opcode=0x0, fin=False))
            time.sleep(0.001)

    with raw_ws_server(fragmented) as (url, state):
        st, out = run(url, lambda c, out: 7 in out.data()["seq"],
                      max_message_size=DEFAULT_MAX_MESSAGE_SIZE * 2)
    assert st["protocol_errors"] == 0 and st["reconnects"] == 0
    with raw_ws_server(endless) as (url, state):
        st, out = run(url, lambda c, out: c.stats().get("age_reconnects", 0) >= 1,
                      max_connection_age=0.3, stale_after=0.2)
    assert st["stale"] == 0  # fragments arriving are liveness


@pytest.mark.parametrize("bad", [
    frame(json.dumps({"seq": 1}), mask=b"\x01\x02\x03\x04"),  # a server must not mask
    frame(b"\x03\xe8\xff\xfe", opcode=0x8),  # close, code 1000, reason not UTF-8
    frame(b"\x03\xe8", opcode=0x8, fin=False),  # a fragmented control frame
    frame(b"\x00\x01", opcode=0x8),  # close code 1 does not exist
    frame(b"p" * 126, opcode=0x9, length=126),  # a ping longer than 125 bytes
    bytes([0xC1, 0x02]) + b"{}",  # RSV1 without a negotiated extension
    frame(b"x", opcode=0x3),  # reserved opcode
    frame(b" more", opcode=0x0),  # continuation without a message
    frame(b"[", fin=False) + frame(b"{}"),  # a new message inside a fragmented one
], ids=["masked", "close-reason-not-utf8", "fragmented-close", "close-code-1", "long-ping",
        "rsv1", "opcode-3", "lone-continuation", "message-inside-message"])
def test_protocol_violations_are_counted_and_reconnected(bad):
    def hostile(conn, k, state):
        conn.sendall(good(0) + bad)
        state["stop"].wait(5)

    with raw_ws_server(hostile, then_good) as (url, state):
        st, out = run(url, lambda c, out: 102 in out.data()["seq"])
    assert st["protocol_errors"] == 1 and st["reconnects"] == 1 and st["oversized"] == 0
    assert out.data()["seq"].tolist() == [0, 100, 101, 102]  # nothing of the bad frame


def test_size_limits_are_validated():
    with pytest.raises(ValueError, match="max_message_size"):
        Toy(["BTC-USD"], max_message_size=0)
    with pytest.raises(ValueError, match="max_frame_size"):
        Toy(["BTC-USD"], max_frame_size=1.5)
    assert Toy(["BTC-USD"]).max_message_size == DEFAULT_MAX_MESSAGE_SIZE == 16 << 20
