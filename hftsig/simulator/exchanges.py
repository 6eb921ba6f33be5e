"""All four exchange simulators over one market model, on loopback.

:class:`SimulatedExchanges` starts one background thread with an asyncio loop
running the websocket servers (Binance, Kraken v2, Coinbase Advanced Trade)
and the model clock, plus one ``ThreadingHTTPServer`` thread each for the
Binance REST API and CoinGecko.  Every port is an ephemeral port on 127.0.0.1
unless ``host`` and ``ports`` say otherwise (``hftsig simulate --host/--port``,
for clients in other processes or containers).

URLs handed to connectors (:meth:`SimulatedExchanges.connector_kwargs`):

- binance: ``ws_url`` ``ws://127.0.0.1:P`` (base; append
  ``/stream?streams=...`` or ``/ws/<name>``), ``rest_url``
  ``http://127.0.0.1:Q`` (base; append ``/api/v3/depth``...);
- kraken: ``ws_url`` ``ws://127.0.0.1:P/v2`` (full), ``rest_url`` ``None``;
- coinbase: ``ws_url`` ``ws://127.0.0.1:P`` (full), ``rest_url`` ``None``;
- coingecko: ``ws_url`` ``None``, ``rest_url`` ``http://127.0.0.1:Q/api/v3``
  (base including ``/api/v3``).
"""
from __future__ import annotations

import asyncio
import collections
import http.server
import math
import threading
import time
import urllib.parse
from typing import TYPE_CHECKING

import numpy as np

from hftsig import venues as registry
from hftsig.interrupts import join_thread
from hftsig.simulator.market import DEFAULT_SYMBOLS, MarketModel

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

__all__ = ["SimulatedExchanges", "EXCHANGES", "FAULTS", "PORT_NAMES", "consecutive_ports"]

#: the venues of the registry with a simulator (:func:`hftsig.venues.names`), at import
EXCHANGES = registry.names(simulator=True)


def _port_names(names):
    return tuple(port for name in names
                 for port in ((name, f"{name}_rest") if registry.get(name).transports
                              == ("ws_url", "rest_url") else (name,)))


#: the servers' names in ``SimulatedExchanges(ports=...)``, in the order of
#: :func:`consecutive_ports`: each venue's, then ``<venue>_rest`` for a venue
#: that speaks both websocket and REST
PORT_NAMES = _port_names(EXCHANGES)


def consecutive_ports(first: int) -> dict[str, int]:
    """``{server: port}`` from ``first`` on, in :data:`PORT_NAMES` order.

    The same server always gets the same offset whichever exchanges run, so
    a client's configuration does not depend on the simulator's.

    >>> consecutive_ports(9001)["coinbase"]
    9004
    """
    first = int(first)
    if not 1 <= first <= 65535 - (len(PORT_NAMES) - 1):
        raise ValueError(f"first port must be 1..{65535 - len(PORT_NAMES) + 1}, got {first}")
    return {name: first + i for i, name in enumerate(PORT_NAMES)}
#: faults each exchange accepts in :meth:`SimulatedExchanges.inject`
#: venue -> the faults :meth:`SimulatedExchanges.inject` can make there (each
#: simulator class's ``FAULTS``), for every registered venue with a simulator
FAULTS = registry.VenueTable(lambda v: None if v.simulator is None else v.simulator_class().FAULTS)


def _rest_port_name(venue):
    # a venue speaking websocket and REST has a second server, "<venue>_rest"
    return f"{venue.name}_rest" if "ws_url" in venue.transports else venue.name


_TIMER_SLACK_S = 0.0015  # below this the driver sleeps off the loop, precisely (see _drive)


class _RestServer:
    """A ThreadingHTTPServer in front of one exchange's REST handler, with faults."""

    def __init__(self, handler, name, host="127.0.0.1", port=0):
        self.handler = handler
        self.name = name
        self.lock = threading.Lock()
        self.faults = collections.deque()  # pending (status, retry_after) or ("malformed",)
        self.stalled_until = 0.0
        self.requests = collections.Counter()  # path -> count
        self.responses = collections.Counter()  # status -> count
        rest = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"
            server_version = "hftsig-simulator"
            sys_version = ""

            def log_message(self, *args):
                pass

            def do_GET(self):
                rest._serve(self)

        self.httpd = http.server.ThreadingHTTPServer((host, port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self._launched = False
        self._serving = threading.Event()
        self.thread = threading.Thread(target=self._serve_forever, name=f"hftsig-sim-{name}-http",
                                       daemon=True)

    def _serve_forever(self):
        self._serving.set()
        self.httpd.serve_forever(poll_interval=0.05)

    def start(self):
        self._launched = True
        self.thread.start()

    def stop(self):
        """Stop serving and close the port; also after a start() that a Ctrl-C cut
        short (its thread may not be serving yet: closing the socket under it
        would fail it)."""
        serving = self._launched and self._serving.wait(1.0)  # the thread runs: join() takes it
        if serving:
            self.httpd.shutdown()  # waits for serve_forever to begin, if it has not yet, and end
        self.httpd.server_close()
        if serving:
            self.thread.join(timeout=1.0)

    def _serve(self, req):
        u = urllib.parse.urlsplit(req.path)
        headers = {k.lower(): v for k, v in req.headers.items()}
        with self.lock:
            self.requests[u.path] += 1
            fault = self.faults.popleft() if self.faults else None
            stall = self.stalled_until - time.monotonic()
        if stall > 0:
            time.sleep(min(stall, 5.0))
        malformed = False
        if fault is None:
            try:
                status, hdrs, body = self.handler.handle_rest(u.path, u.query, headers)
            except Exception as exc:  # never let a handler bug kill the request thread silently
                status, hdrs, body = 500, {}, '{"error":"%s"}' % type(exc).__name__
        elif fault[0] == "malformed":
            status, hdrs, body = self.handler.handle_rest(u.path, u.query, headers)
            body = body[: max(1, len(body) // 2)]
            malformed = True
        else:
            status, hdrs, body = self.handler.rest_error(fault[0], fault[1])
        data = body.encode()
        with self.lock:
            self.responses[status] += 1
            if malformed:
                self.responses["malformed"] += 1
        try:
            req.send_response(status)
            req.send_header("Content-Type", "application/json;charset=UTF-8" if data[:1] in (b"{", b"[") else "text/html")
            for k, v in hdrs.items():
                req.send_header(k, v)
            req.send_header("Content-Length", str(len(data)))
            req.end_headers()
            req.wfile.write(data)
        except OSError:
            pass

    def info(self):
        with self.lock:
            return {"requests": dict(self.requests), "responses": dict(self.responses), "pending_faults": len(self.faults)}


class SimulatedExchanges:
    """Binance, Kraken, Coinbase and CoinGecko simulators on 127.0.0.1.

    Parameters
    ----------
    symbols : sequence of str
        Canonical ``BASE-QUOTE`` symbols listed on every simulated venue.
    exchanges : sequence of str, optional
        Which servers to start: any venue of the registry with a simulator
        (:func:`hftsig.venues.names`; default: all of them).  Each is built by
        its simulator class's ``from_settings(model, settings)``; its
        ``WS_PATH``/``REST_PATH`` complete the URLs and ``FAULTS`` lists what
        :meth:`inject` may do there.
    seed : int
        Seed of the market model (same seed, same books and trades step by step).
    rate : float
        Model steps per second (book updates per second per symbol and venue).
    depth : int
        Book levels per side.
    api_key : str or None
        CoinGecko API key the server demands (None: keyless access).
    key_type : {"demo", "pro"}
        Which CoinGecko host the simulator plays.
    ping_interval : float or None
        Binance websocket ping frame interval in seconds (20 live).
    heartbeat_interval : float
        Kraken and Coinbase heartbeat period in seconds.
    subscribe_timeout : float or None
        Coinbase closes connections without a subscription after this long.
    host : str, default "127.0.0.1"
        Address every server listens on (``"0.0.0.0"``: all interfaces, for
        clients in other containers).
    ports : dict or None
        Fixed ports by server: ``"binance"`` (websocket), ``"binance_rest"``,
        ``"kraken"``, ``"coinbase"``, ``"coingecko"``; a server left out takes
        an ephemeral port.  See :func:`consecutive_ports`.
    coingecko_refresh_s : float
        How often CoinGecko prices (and ``last_updated_at``) refresh.
    max_queue : int
        Frames queued per connection before the server cuts a slow client
        off (close code 1008), as exchanges do.
    stagger : int
        Release each model step's events in this many slices spread over the
        step interval (1: all at once).  Real venues do not publish every book
        in one burst; a burst of every book of a step makes a client's latency
        the time to process the whole burst.  Each slice requotes its own books
        when it goes out (:meth:`MarketModel.begin_step` /
        :meth:`~MarketModel.build_units`; same market as unstaggered) and its
        events are stamped (``ts_ns``, the frames' event time) then.  A
        simulator running behind its rate releases at once.  The event loop's
        timers only wake on whole milliseconds, so the driver sleeps the last
        1.5 ms before each slice off the loop (``time.sleep``), precisely.
    **model_kwargs
        Passed to :class:`~hftsig.simulator.market.MarketModel` (``trade_rate``,
        ``volatility_bps``, ``spread_bps``, ``noise_bps``, ...).

    Examples
    --------
    >>> import json, websocket
    >>> with SimulatedExchanges(["BTC-USDT"], exchanges=("binance",), seed=1) as sim:
    ...     ws = websocket.create_connection(sim.connector_kwargs("binance")["ws_url"]
    ...                                      + "/ws/btcusdt@bookTicker", timeout=2)
    ...     msg = json.loads(ws.recv()); ws.close()
    >>> sorted(msg)
    ['A', 'B', 'a', 'b', 's', 'u']
    """

    def __init__(
        self,
        symbols: Iterable[str] = DEFAULT_SYMBOLS,
        exchanges: Iterable[str] | None = None,
        *,
        seed: int = 0,
        rate: float = 20.0,
        depth: int = 20,
        api_key: str | None = None,
        key_type: str = "demo",
        ping_interval: float | None = 20.0,
        heartbeat_interval: float = 1.0,
        subscribe_timeout: float | None = 5.0,
        coingecko_refresh_s: float = 1.0,
        max_queue: int = 200_000,
        stagger: int = 1,
        host: str = "127.0.0.1",
        ports: Mapping[str, int] | None = None,
        **model_kwargs: Any,
    ) -> None:
        # the registry as it is now: a venue registered after import runs too
        known = registry.names(simulator=True)
        exchanges = known if exchanges is None else tuple(exchanges)
        port_names = _port_names(known)
        ports = dict(ports or {})
        for name, port in ports.items():
            if name not in port_names:
                raise ValueError(f"ports: unknown server {name!r}; expected some of {port_names}")
            if not isinstance(port, int) or not 0 <= port <= 65535:
                raise ValueError(f"ports: {name} must be a port number 0..65535, got {port!r}")
        self.host = str(host)
        self.ports = ports
        for e in exchanges:
            if e not in known:
                raise ValueError(f"exchanges: unknown exchange {e!r}; expected some of {known}")
        if key_type not in ("demo", "pro"):
            raise ValueError(f"key_type must be 'demo' or 'pro', got {key_type!r}")
        stagger = int(stagger)
        if stagger < 1:
            raise ValueError(f"stagger must be >= 1, got {stagger}")
        self.stagger = stagger
        self._pending = collections.deque()  # (release time, book units) of the open step
        # how late each release (a step, or a slice of one) went out against its
        # due time, in seconds: see schedule_stats()
        self._late = collections.deque(maxlen=100_000)  # ~3 MB at most
        self.exchanges = exchanges
        venues = (tuple(e for e in exchanges if registry.get(e).order_book)
                  or registry.names(order_book=True, simulator=True)[:1])
        self.model = MarketModel(symbols, venues, seed=seed, rate=rate, depth=depth, **model_kwargs)
        self.symbols = self.model.symbols
        self.api_key = api_key
        self.key_type = key_type
        self._cfg = dict(ping_interval=ping_interval, heartbeat_interval=heartbeat_interval,
                         subscribe_timeout=subscribe_timeout, coingecko_refresh_s=coingecko_refresh_s,
                         max_queue=int(max_queue))
        self.faults = []
        self.servers = {}
        self.rest = {}
        self._loop = None
        self._thread = None
        self._running = False
        self._started = False
        self._driver_error = None
        self._paused = False

    # ---------------------------------------------------------- lifecycle
    def start(self) -> SimulatedExchanges:
        """Start every server; returns self once all ports listen."""
        if self._started:
            raise RuntimeError("SimulatedExchanges already started")
        self._started = True
        try:
            self._start_servers()
        except BaseException:  # Ctrl-C while the servers come up: take them down again
            self.stop()
            raise
        return self

    def _start_servers(self):
        settings = dict(self._cfg, api_key=self.api_key, key_type=self.key_type)
        for name in self.exchanges:
            venue = registry.get(name)
            server = venue.simulator_class().from_settings(self.model, settings)
            if "ws_url" in venue.transports:
                self.servers[name] = server
            if "rest_url" in venue.transports:
                self.rest[name] = _RestServer(server, name, self.host,
                                              self.ports.get(_rest_port_name(venue), 0))
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="hftsig-sim-loop", daemon=True)
        self._running = True
        self._thread.start()
        if not ready.wait(5.0) or self._driver_error is not None:
            raise RuntimeError(f"simulators failed to start: {self._driver_error!r}")
        for r in self.rest.values():
            r.start()

    def _run(self, ready):
        # the loop is made here, not by start(): a Ctrl-C in the main thread
        # cannot land inside its constructor and leave a half-built loop behind
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)

        async def main():
            try:
                for name, s in self.servers.items():
                    await s.start(self.host, self.ports.get(name, 0))
            except Exception as exc:
                self._driver_error = exc
                ready.set()
                return
            self.model.t0_ns = time.time_ns()
            ready.set()
            await self._drive()
            for s in self.servers.values():
                await s.stop()

        try:
            loop.run_until_complete(main())
        finally:
            pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for t in pending:
                t.cancel()
            if pending:
                loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
            loop.close()

    async def _drive(self):
        m = self.model
        servers = list(self.servers.values())
        start = time.monotonic()
        steps0 = m.steps
        pending = self._pending
        while self._running:
            now = time.monotonic()
            if self._paused:
                # Frozen market: nothing moves, heartbeats and timers keep going;
                # on resume the clock restarts from here, without a catch-up burst.
                self._release_pending()
                start, steps0 = now, m.steps
                for s in servers:
                    s.tick(now)
                await asyncio.sleep(0.01)
                continue
            while pending and pending[0][0] <= now:
                self._release_units(*pending.popleft())
            due = steps0 + int((now - start) * m.rate)
            # Catch up at most a few steps at once so a loaded machine slows the
            # model instead of flooding the clients.
            n = min(due - m.steps, 5)
            if n > 0:
                self._release_pending(ahead=False)  # a step's events go out before the next step's
            for _ in range(n):
                if self.stagger > 1 and n == 1:
                    # keeping up: spread this step over its interval, each slice
                    # requoting its own books when it goes out (one step's
                    # requotes at once would stall the loop for a millisecond)
                    units = m.begin_step()
                    k = min(self.stagger, len(units))
                    t_step = start + (m.steps - steps0) / m.rate
                    for i in range(k):
                        pending.append((t_step + i / (k * m.rate), units[i::k]))
                    self._release_units(*pending.popleft())
                else:
                    self._late.append(time.monotonic() - (start + (m.steps - steps0 + 1) / m.rate))
                    self._release(m.step(time.time_ns()))
            for s in servers:
                s.tick(now)
            next_step = start + (m.steps - steps0 + 1) / m.rate
            if pending:
                next_step = min(next_step, pending[0][0])
            wait = min(next_step - time.monotonic(), 0.02)
            if wait < _TIMER_SLACK_S:
                # The loop's timers wake on whole milliseconds (epoll): a sleep
                # for a slice due in 0.7 ms returns after 1 ms, and slices went
                # out two at a time.  Let the senders write what was released,
                # then sleep the rest precisely, off the loop (at most 1.5 ms;
                # polling instead would keep a core busy, which on a 2-vCPU VM
                # slows the other one).  The next step's first slice too: when
                # only it was left to wait for, it went out up to 1 ms late.
                await asyncio.sleep(0)
                wait = next_step - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
            else:
                await asyncio.sleep(wait - _TIMER_SLACK_S)
        self._release_pending()

    def _release(self, events):
        """Hand events to every server (on the loop); their frames are written
        once all are queued (WsExchangeServer.write_held)."""
        servers = self.servers.values()
        for s in servers:
            s.holding = True
        try:
            for s in servers:
                s.on_events(events)
        finally:
            for s in servers:
                s.write_held()

    def _release_units(self, due, units):
        """Build a slice of the open step (stamped now) and hand it out; ``due``
        is when it was meant to go out (None: ahead of time, not recorded)."""
        if due is not None:
            self._late.append(time.monotonic() - due)
        events = self.model.build_units(units, time.time_ns())
        if events:
            self._release(events)

    def _release_pending(self, ahead=True):
        """Release the open step's remaining slices: ``ahead`` of their time (a
        pause, the end) or because the next step is due."""
        while self._pending:
            due, units = self._pending.popleft()
            self._release_units(None if ahead else due, units)

    def stop(self, timeout: float = 1.0) -> None:
        """Close every connection and port; returns within about ``timeout`` seconds."""
        self._running = False
        for r in self.rest.values():
            r.stop()
        if self._thread is not None:
            join_thread(self._thread, timeout)  # also after a start() a Ctrl-C cut short
        self._thread = None

    def pause(self) -> None:
        """Freeze the market model (no book changes or trades; heartbeats go on).

        Returns once the model has stopped: no step runs after it.  Pending
        Binance diff events and Coinbase trade batches still go out within
        their batching interval (a connection's ``batched`` counter in
        :meth:`connections` says how many are held), so once a client has
        received every frame sent its book equals :meth:`book` exactly.
        """
        self._paused = True
        if self._thread is not None and self._thread.is_alive():
            async def observed():
                # The driver checks the flag before each batch of steps; a batch
                # that began before it was set has ended once this runs, except
                # for staggered events not yet released: release them now.
                self._release_pending()

            asyncio.run_coroutine_threadsafe(observed(), self._loop).result(timeout=5.0)

    def resume(self) -> None:
        """Restart the market model after :meth:`pause`."""
        self._paused = False

    def __enter__(self) -> SimulatedExchanges:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self):
        return f"SimulatedExchanges(exchanges={self.exchanges!r}, symbols={list(self.symbols)!r}, urls={self.urls()!r})"

    # --------------------------------------------------------------- URLs
    def connector_kwargs(self, exchange: str) -> dict[str, str | None]:
        """``{"ws_url": ..., "rest_url": ...}`` for the connector of ``exchange``
        (see the module docstring for each URL's shape)."""
        if exchange not in self.exchanges:
            raise ValueError(f"exchange {exchange!r} is not simulated here; running: {self.exchanges}")
        if not self._started:
            raise RuntimeError("start the simulators first")
        # a server on every interface is reached here through loopback
        h = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        h = f"[{h}]" if ":" in h else h
        ws, rest = self.servers.get(exchange), self.rest.get(exchange)
        return {"ws_url": None if ws is None else f"ws://{h}:{ws.port}{ws.WS_PATH}",
                "rest_url": None if rest is None else
                f"http://{h}:{rest.port}{rest.handler.REST_PATH}"}

    def urls(self) -> dict[str, dict[str, str | None]]:
        """``{exchange: connector_kwargs(exchange)}`` for every running exchange."""
        if not self._started:
            return {}
        return {e: self.connector_kwargs(e) for e in self.exchanges}

    # -------------------------------------------------------------- truth
    def book(self, exchange: str, symbol: str, depth: int | None = None) -> dict[str, Any]:
        """The venue's book now (see :meth:`MarketModel.book`)."""
        return self.model.book(exchange, symbol, depth)

    def top(self, exchange: str, symbol: str) -> tuple[float, float, float, float]:
        """``(bid, bid_qty, ask, ask_qty)`` on ``exchange`` now."""
        return self.model.top(exchange, symbol)

    def nbbo(self, symbol: str) -> dict[str, Any]:
        """Best bid/offer across the simulated venues (see :meth:`MarketModel.nbbo`)."""
        return self.model.nbbo(symbol)

    def mid(self, symbol: str) -> float:
        return self.model.mid(symbol)

    def inject_mispricing(self, exchange: str, symbol: str, bps: float,
                          duration_s: float) -> dict[str, Any]:
        """Shift ``exchange``'s quotes of ``symbol`` by ``bps`` for ``duration_s``
        seconds; returns the record also kept in :attr:`mispricings`."""
        return self.model.inject_mispricing(exchange, symbol, bps, duration_s)

    @property
    def mispricings(self) -> list[dict[str, Any]]:
        return self.model.mispricings

    # ------------------------------------------------------------- faults
    def inject(self, exchange: str, fault: str, **kw: Any) -> dict[str, Any]:
        """Inject ``fault`` into ``exchange``'s simulator now.

        Faults (keyword arguments in brackets):

        - ``"disconnect"`` (``abrupt=False``, ``code``): close every
          connection (abruptly: drop the TCP connection without a close frame).
        - ``"malformed"`` (``count=1``, ``payload``): send a truncated JSON frame.
        - ``"gap"`` (``count=1``): Binance drops the next diff depth event of
          each connection (``U`` jumps past ``u + 1``); Kraken drops the next
          book update (the next checksum no longer matches the client's book);
          Coinbase drops the next ``l2_data`` frame, using up its
          ``sequence_num`` (``drop=False`` only skips a number).
        - ``"bad_checksum"`` (``count=1``): Kraken's next book update carries a
          wrong checksum (its levels are right).
        - ``"http_429"`` (``count=1``, ``retry_after=1``): the next REST
          requests get 429 (Binance with ``Retry-After``; CoinGecko without).
          ``"http_418"`` likewise (Binance IP ban); ``"http_500"`` (``count``);
          ``"http_malformed"`` (``count``): truncated REST bodies.
        - ``"stall"`` (``seconds=2``, ``heartbeats=True``, ``drop=False``):
          stop sending data, connections stay open; heartbeats (Binance: its
          websocket pings) continue unless ``heartbeats=False``; held data is
          sent when the stall ends unless ``drop=True``; ``seconds=0`` ends a
          stall.  Returns once the frame being written is out, so the ``sent``
          counters then stay put.  For REST exchanges: responses are delayed.
        - ``"shutdown"`` (``close_after=0.3``): Binance ``serverShutdown``
          event, then the connections close.

        Returns the log record (also appended to :attr:`faults`): time in ns,
        exchange, fault, arguments and what was affected.
        """
        if exchange not in self.exchanges:
            raise ValueError(f"exchange {exchange!r} is not simulated here; running: {self.exchanges}")
        if fault not in FAULTS[exchange]:
            raise ValueError(f"fault {fault!r} not supported for {exchange}; choose from {FAULTS[exchange]}")
        if not self._started or self._thread is None:
            raise RuntimeError("start the simulators first")
        t_ns = time.time_ns()
        if fault.startswith("http_"):
            rest = self.rest[exchange]
            count = int(kw.get("count", 1))
            with rest.lock:
                for _ in range(count):
                    if fault == "http_malformed":
                        rest.faults.append(("malformed", None))
                    else:
                        rest.faults.append((int(fault[5:]), kw.get("retry_after", 1)))
            detail = {"count": count}
        elif exchange not in self.servers:  # a REST-only venue: a stall delays responses
            rest = self.rest[exchange]
            seconds = float(kw.get("seconds", 2.0))
            with rest.lock:
                rest.stalled_until = time.monotonic() + seconds
            detail = {"seconds": seconds}
        else:
            fut = asyncio.run_coroutine_threadsafe(self.servers[exchange].inject(fault, **kw), self._loop)
            detail = fut.result(timeout=2.0)
        rec = {"time_ns": t_ns, "exchange": exchange, "fault": fault, "kwargs": dict(kw), **detail}
        self.faults.append(rec)
        return rec

    # ------------------------------------------------------------ counters
    def connections(self, exchange: str, open_only: bool = False) -> list[dict[str, Any]]:
        """Per-connection counters of ``exchange``: frames sent by type
        (``sent``), records inside them (``items``: book levels, trades),
        frames dropped by gap faults, client requests, last sequence numbers
        (Binance ``u`` / trade id per stream, Coinbase ``sequence_num``, Kraken
        checksum per symbol), subscriptions, open/close times; websocket
        ``pings`` sent, ``pending`` faults, frames ``queued`` (data held by a
        stall included), ``busy`` (a frame is being written: it is counted once
        written) and events ``batched`` for Binance diff depth / Coinbase trades
        and not yet queued.  A client holding as many frames as ``sent`` sums
        to, read while not ``busy``, has every frame sent to it."""
        srv = self.servers.get(exchange)
        if srv is None:
            raise ValueError(f"{exchange!r} has no websocket simulator running")

        async def collect():
            return [c.info() for c in (srv.conns if open_only else srv.history)]

        if self._thread is not None and self._thread.is_alive():
            # Read the counters on the loop thread: a consistent snapshot, no race.
            return asyncio.run_coroutine_threadsafe(collect(), self._loop).result(timeout=2.0)
        return [c.info() for c in (srv.conns if open_only else srv.history)]

    def sent(self, exchange: str) -> dict[str, int]:
        """Frames sent to all connections of ``exchange`` so far, by type."""
        total = collections.Counter()
        for c in self.connections(exchange):
            total.update(c["sent"])
        return dict(total)

    def rest_stats(self, exchange: str) -> dict[str, Any]:
        """REST requests by path and responses by status (``"malformed"`` counted too)."""
        return self.rest[exchange].info()

    def stats(self) -> dict[str, dict[str, Any]]:
        """Summary per exchange: open connections, frames sent by type, REST counters."""
        out = {}
        for e in self.exchanges:
            d = {}
            if e in self.servers:
                d["connections"] = len(self.servers[e].conns)
                d["sent"] = self.sent(e)
            if e in self.rest:
                d["rest"] = self.rest_stats(e)
            out[e] = d
        return out

    def schedule_stats(self, reset: bool = False) -> dict[str, float]:
        """How punctually the driver released the model's steps (or their
        ``stagger`` slices): the last 100,000 releases since the start or the
        last ``reset``.

        Returns a dict: ``releases`` (count), and ``late_p50_us``,
        ``late_p99_us``, ``late_max_us``: how long after its due time each
        release started, in microseconds (nan before the first).  A release
        that goes out late arrives late at every client, whatever the client
        does: a latency measurement on the clients should be read next to it.
        ``reset=True`` starts a new count after reading this one.
        """
        late = self._late
        if reset:
            # swapped, not cleared: the loop thread appends to whichever it sees
            self._late = collections.deque(maxlen=late.maxlen)
        late = np.array(list(late), dtype=float) * 1e6  # list(): one atomic copy
        if len(late) == 0:
            return {"releases": 0, "late_p50_us": math.nan, "late_p99_us": math.nan,
                    "late_max_us": math.nan}
        p50, p99 = np.percentile(late, [50, 99])
        return {"releases": len(late), "late_p50_us": float(p50), "late_p99_us": float(p99),
                "late_max_us": float(late.max())}

    def wait_for_connections(self, exchange: str, n: int = 1, timeout: float = 2.0) -> bool:
        """Block until ``exchange`` has at least ``n`` open connections; returns success."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.servers[exchange].conns) >= n:
                return True
            time.sleep(0.01)
        return False
