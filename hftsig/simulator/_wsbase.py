"""Shared machinery of the websocket exchange simulators.

Each simulator is a :class:`WsExchangeServer` subclass: a ``websockets``
server on 127.0.0.1 whose connections each own an outgoing queue drained by a
sender task.  Data frames wait in the queue while a feed is stalled;
control frames (heartbeats, acks, websocket pings) go first and may keep
flowing during a stall.  Data frames waiting together (up to 64) leave in one
socket write, each still its own websocket text frame, byte for byte what
``ws.send(text)`` writes.  Per-connection counters record every frame sent by
type, which is what tests compare with what a client received.
"""
from __future__ import annotations

import asyncio
import collections
import itertools
import time

from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State

from hftsig._ext._simformat import rfc3339 as _rfc3339
from hftsig._ext._simformat import ws_text_frames

_conn_ids = itertools.count(1)
_PING = "ping"  # frame type of websocket ping frames in a connection's control queue


def rfc3339_us(ns):
    """RFC 3339 UTC with microseconds, Kraken style: ``2023-09-25T07:49:37.708706Z``."""
    try:
        return _rfc3339(ns, 6)
    except (ValueError, OverflowError):  # a year outside 1000..9999
        s, rem = divmod(int(ns), 1_000_000_000)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{rem // 1000:06d}Z"


def rfc3339_ns(ns):
    """RFC 3339 UTC with nanoseconds, Coinbase style: ``2023-02-09T20:32:50.714964855Z``."""
    try:
        return _rfc3339(ns, 9)
    except (ValueError, OverflowError):
        s, rem = divmod(int(ns), 1_000_000_000)
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + f".{rem:09d}Z"


def _can_batch(ws):
    # websockets' asyncio connection (13+) exposes the transport and the send
    # context (state checks, flow control) every ws.send() uses; without them
    # each frame goes through ws.send().
    return hasattr(ws, "send_context") and hasattr(ws, "transport")


def utc_now_ns():
    return time.time_ns()


class Connection:
    """One client connection: its queue, subscriptions and counters."""

    def __init__(self, server, ws, max_queue):
        self.id = next(_conn_ids)
        self.server = server
        self.ws = ws
        self.path = ws.request.path if ws.request is not None else ""
        self.opened_ns = time.time_ns()
        self.closed_ns = None
        self.data = collections.deque()
        self.ctrl = collections.deque()
        self.wake = asyncio.Event()
        self.max_queue = max_queue
        self.sent = collections.Counter()  # frames by type
        self.items = collections.Counter()  # records inside frames (levels, trades)
        self.dropped = collections.Counter()  # frames dropped on purpose (gap faults)
        self.received = collections.Counter()  # client requests by method
        self.last_seq = {}
        self.subs = {}  # what the client subscribed to (reported by info())
        self.state = {}  # protocol state of the connection (sequence numbers, options)
        self.pending = collections.Counter()  # pending per-connection faults
        self.last_send = time.monotonic()
        self.pings = 0  # websocket ping frames sent (not in ``sent``: they carry no message)
        self.busy = False  # a frame is being written
        self.closed = False
        self.overflowed = False

    def enqueue(self, mtype, payload, items=0, ctrl=False):
        """Queue one frame; ``payload`` is a str or a callable(conn) -> str."""
        if self.closed:
            return
        if ctrl:
            self.ctrl.append((mtype, payload, items))
        else:
            if len(self.data) >= self.max_queue:
                # A client this slow would be cut off by the exchange too.
                self.overflowed = True
                self.closed = True
                asyncio.ensure_future(self.ws.close(1008, "slow consumer"))
                return
            self.data.append((mtype, payload, items))
            if self.server.holding:
                return  # written when the release ends: WsExchangeServer.write_held()
        self.wake.set()

    def info(self):
        return {
            "id": self.id,
            "path": self.path,
            "opened_ns": self.opened_ns,
            "closed_ns": self.closed_ns,
            "sent": dict(self.sent),
            "items": dict(self.items),
            "dropped": dict(self.dropped),
            "received": dict(self.received),
            "pings": self.pings,
            "pending": {k: v for k, v in self.pending.items() if v},
            "busy": self.busy,  # a frame is being written: it is counted once written
            "last_seq": dict(self.last_seq),
            "subscriptions": {k: sorted(v) if isinstance(v, (set, list)) else v for k, v in self.subs.items()},
            "queued": len(self.data) + len(self.ctrl),
            # market events the server holds for a batched stream (Binance diff
            # depth, Coinbase trades), not yet queued for any connection
            "batched": self.server.batched(),
            "overflowed": self.overflowed,
        }


class WsExchangeServer:
    """Base class: a websocket server speaking one exchange's protocol.

    Subclasses implement :meth:`on_open`, :meth:`on_message`,
    :meth:`on_events` (market events of a model step) and optionally
    :meth:`on_timer`, :meth:`heartbeat` and :meth:`inject`.
    """

    name = "?"
    #: websocket ping frames every this many seconds, sent by the simulator
    #: clock (not the websockets keepalive) so that a stall without heartbeats
    #: silences them too; None: no pings
    ping_interval = None

    def __init__(self, model, *, max_queue=200_000, heartbeat_interval=1.0, close_timeout=0.2):
        self.model = model
        self.max_queue = max_queue
        self.heartbeat_interval = heartbeat_interval
        self.close_timeout = close_timeout
        self.conns = []  # open connections, in connection order
        self.history = []  # every connection ever (open or closed)
        self.port = None
        self._server = None
        self.stalled_until = 0.0
        self.stall_heartbeats = True
        self.stall_drop = False
        self._last_heartbeat = time.monotonic()
        self._last_ping = time.monotonic()
        self.holding = False  # data frames queued now wait for write_held()

    # ----------------------------------------------------------- lifecycle
    async def start(self, host="127.0.0.1", port=0):
        self._server = await serve(
            self._handler,
            host,
            port,
            ping_interval=None,  # pings come from tick(), see ping_interval
            ping_timeout=None,
            close_timeout=self.close_timeout,
            process_request=self._process_request,
            max_size=2**20,
            compression=None,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self):
        if self._server is None:
            return
        self._server.close(close_connections=True)
        try:
            await asyncio.wait_for(self._server.wait_closed(), timeout=0.5)
        except (asyncio.TimeoutError, TimeoutError):
            for c in list(self.conns):
                c.ws.transport.abort()
        self._server = None

    def _process_request(self, ws, request):
        ok = self.accept_path(request.path)
        if ok is not True:
            return ws.respond(ok[0], ok[1])
        return None

    def accept_path(self, path):
        """``True`` or ``(status, body)`` to refuse the handshake."""
        return True

    async def _handler(self, ws):
        conn = Connection(self, ws, self.max_queue)
        self.conns.append(conn)
        self.history.append(conn)
        sender = asyncio.ensure_future(self._sender(conn))
        try:
            await self.on_open(conn)
            async for msg in ws:
                try:
                    await self.on_message(conn, msg)
                except Exception as exc:  # a bad request never kills the server
                    conn.received["invalid"] += 1
                    await self.on_bad_request(conn, msg, exc)
        except ConnectionClosed:
            pass
        finally:
            conn.closed = True
            conn.closed_ns = time.time_ns()
            if conn in self.conns:
                self.conns.remove(conn)
            sender.cancel()
            self.on_close(conn)

    async def _sender(self, conn):
        ws = conn.ws
        # Data frames queued together go out in one socket write (one frame
        # each, as before): at thousands of frames per second one write per
        # frame was the simulator's largest single cost.
        batched = _can_batch(ws)
        try:
            while not conn.closed:
                await conn.wake.wait()
                conn.wake.clear()
                while conn.ctrl or conn.data:
                    if conn.ctrl:
                        mtype, payload, items = conn.ctrl.popleft()
                    else:
                        wait = self.stalled_until - time.monotonic()
                        if wait > 0 and not self.stall_drop:
                            await asyncio.sleep(min(wait, 0.05))
                            continue
                        if wait > 0:
                            mtype, payload, items = conn.data.popleft()
                            conn.dropped[mtype] += 1
                            continue
                        if batched:
                            await self._send_batch(conn)
                            continue
                        mtype, payload, items = conn.data.popleft()
                    if callable(payload):
                        payload = payload(conn)
                        if payload is None:
                            continue
                    conn.busy = True
                    try:
                        if mtype == _PING:
                            # the pong waiter is not awaited: a client owes no pong here
                            await ws.ping()
                            conn.pings += 1
                            continue
                        await ws.send(payload)
                    finally:
                        conn.busy = False
                    conn.sent[mtype] += 1
                    if items:
                        conn.items[mtype] += items
                    conn.last_send = time.monotonic()
        except (ConnectionClosed, asyncio.CancelledError):
            pass

    async def _send_batch(self, conn, limit=64):
        """Send up to ``limit`` queued data frames in one socket write."""
        ws = conn.ws
        batch = self._take_batch(conn, limit)
        if not batch:
            return
        conn.busy = True
        try:
            # send_context checks the connection state, and on leaving it
            # flushes and waits for the write buffer to drain (flow control),
            # exactly as around one ws.send().
            # The frames are written as websockets writes a text frame without
            # compression (the server never compresses), all in one write.
            async with ws.send_context():
                ws.transport.write(ws_text_frames([payload for _, payload, _ in batch]))
        finally:
            conn.busy = False
        self._count_batch(conn, batch)

    @staticmethod
    def _take_batch(conn, limit=64):
        """Up to ``limit`` queued data frames, their payloads made (stamped) now."""
        data = conn.data
        batch = []
        while data and len(batch) < limit:
            mtype, payload, items = data.popleft()
            if callable(payload):
                payload = payload(conn)
                if payload is None:
                    continue
            batch.append((mtype, payload, items))
        return batch

    def _write_batch(self, conn, batch):
        """Write ``batch`` now (write_held checked that the connection can take it)."""
        if batch:
            conn.ws.transport.write(ws_text_frames([payload for _, payload, _ in batch]))
            self._count_batch(conn, batch)

    @staticmethod
    def _count_batch(conn, batch):
        sent, counted = conn.sent, conn.items
        for mtype, _, items in batch:
            sent[mtype] += 1
            if items:
                counted[mtype] += items
        conn.last_send = time.monotonic()

    def write_held(self):
        """Write the data frames queued while ``holding``, at once where a
        connection can take them.

        The driver queues a release of model updates with ``holding`` set, then
        calls this: a connection with nothing in flight (no frame being written,
        no control frame waiting, an empty write buffer, no stall) gets its
        frames in one socket write right here, instead of waking its sender
        task for it (an event, a task switch and an async context per
        connection and release: about a sixth of the simulator's time at a
        thousand releases a second), and before the servers' timers run (a
        Binance depth flush takes ~0.3 ms).  Any other connection's sender is
        woken and sends them as usual, with its flow control.
        """
        self.holding = False
        stalled = self.stalled()
        for conn in self.conns:
            if not conn.data:
                continue
            ws = conn.ws
            if (stalled or conn.busy or conn.ctrl or conn.closed or not _can_batch(ws)
                    or ws.protocol.state is not State.OPEN or ws.transport.is_closing()
                    or ws.transport.get_write_buffer_size()):
                conn.wake.set()
                continue
            self._write_batch(conn, self._take_batch(conn, limit=len(conn.data)))

    # ------------------------------------------------------------ fan-out
    def broadcast(self, conns, mtype, payload, items=0):
        for c in conns:
            c.enqueue(mtype, payload, items)

    def stalled(self):
        return time.monotonic() < self.stalled_until

    def heartbeats_paused(self):
        return self.stalled() and not self.stall_heartbeats

    def tick(self, now):
        """Called by the simulator clock every few ms on the loop."""
        if now - self._last_heartbeat >= self.heartbeat_interval:
            self._last_heartbeat = now
            if not self.heartbeats_paused():
                for c in list(self.conns):
                    self.heartbeat(c, now)
        if self.ping_interval and now - self._last_ping >= self.ping_interval:
            self._last_ping = now
            if not self.heartbeats_paused():
                for c in list(self.conns):
                    c.enqueue(_PING, None, ctrl=True)
        self.on_timer(now)

    # ------------------------------------------------------------- faults
    async def inject(self, fault, **kw):
        """Apply a fault; returns a dict describing what was done."""
        conns = list(self.conns)
        if fault == "disconnect":
            abrupt = bool(kw.get("abrupt", False))
            for c in conns:
                if abrupt:
                    c.ws.transport.abort()
                else:
                    asyncio.ensure_future(c.ws.close(kw.get("code", 1001), kw.get("reason", "going away")))
            return {"connections": len(conns), "abrupt": abrupt}
        if fault == "malformed":
            payload = kw.get("payload") or self.malformed_payload()
            count = int(kw.get("count", 1))
            for c in conns:
                for _ in range(count):
                    c.enqueue("malformed", payload)
            return {"connections": len(conns), "payload": payload, "count": count}
        if fault == "stall":
            seconds = float(kw.get("seconds", 2.0))
            self.stalled_until = time.monotonic() + seconds
            self.stall_heartbeats = bool(kw.get("heartbeats", True))
            self.stall_drop = bool(kw.get("drop", False))
            # Return once the frame being written and the control frames already
            # queued are out: what the counters then say was sent is all a client
            # gets until the stall ends (besides heartbeats, unless paused, and
            # replies to its own requests).
            deadline = time.monotonic() + 1.0
            while any(c.busy or c.ctrl for c in conns) and time.monotonic() < deadline:
                await asyncio.sleep(0.002)
            return {"connections": len(conns), "seconds": seconds, "heartbeats": self.stall_heartbeats,
                    "drop": self.stall_drop}
        return await self.inject_protocol(fault, conns, **kw)

    async def inject_protocol(self, fault, conns, **kw):
        raise ValueError(f"fault {fault!r} is not supported by the {self.name} simulator")

    def malformed_payload(self):
        return '{"garbage": [1, 2'

    # ------------------------------------------------------- to override
    async def on_open(self, conn):
        pass

    async def on_message(self, conn, msg):
        pass

    async def on_bad_request(self, conn, msg, exc):
        pass

    def on_close(self, conn):
        pass

    def on_events(self, events):
        pass

    def on_timer(self, now):
        pass

    def heartbeat(self, conn, now):
        pass

    def batched(self):
        """Market events held for batched streams, not yet queued (0: none)."""
        return 0
