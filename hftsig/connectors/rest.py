"""The REST client: a ``requests`` session with back-off, and the REST-polling connector.

:class:`RestClient` wraps one ``requests.Session``: timeouts, retries (429 and
418 honour ``Retry-After``, 5xx and connection errors back off), errors that
never show a key, credential headers dropped on a redirect to another origin,
and a ``close()`` that cuts a request in flight.  The websocket connectors use
it for book snapshots; :class:`RestPollingConnector` polls a REST endpoint on
the connector thread (CoinGecko).
"""
from __future__ import annotations

import socket
import threading
import time
import weakref
from typing import TYPE_CHECKING

import requests

from hftsig.connectors.base import BaseConnector, MalformedFrame, _check_url, _preview
from hftsig.connectors.credentials import redact

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from typing import Any

    import numpy as np
    import numpy.typing as npt

    from hftsig.connectors.base import Backoff
    from hftsig.connectors.credentials import Secret

__all__ = ["RestClient", "RestPollingConnector", "HTTPStatusError"]


class HTTPStatusError(RuntimeError):
    """A REST call failed for good (non-retryable status, or retries exhausted)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(redact(message))
        self.status = status


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
    owner : BaseConnector
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

    def __init__(self, base_url: str, owner: BaseConnector, *,
                 headers: Mapping[str, str | Secret] | None = None, timeout: float = 5.0,
                 max_retries: int = 5, max_retry_after: float = 60.0) -> None:
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

    def close(self) -> None:
        """Close the session and cut any request in flight (it fails at once)."""
        self._sockets.abort_all()
        self.session.close()

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> requests.Response:
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

    def get_json(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """:meth:`get` and decode JSON; undecodable bodies raise :class:`MalformedFrame`."""
        resp = self.get(path, params)
        try:
            return resp.json()
        except ValueError as exc:
            raise MalformedFrame(f"GET {redact(self.base_url + path)}: body is not JSON "
                                 f"({_preview(resp.content)!r})") from exc


class RestPollingConnector(BaseConnector):
    """Polls a REST endpoint every ``interval`` seconds on its own thread.

    Subclasses implement :meth:`_poll` (one round; return nothing) using
    :attr:`rest` (a :class:`RestClient`).  A failed round is counted and the
    next one waits an extra backoff delay; malformed bodies are counted as
    ``malformed``.
    """

    default_rest_url = ""
    #: seconds between polls
    interval = 10.0

    def __init__(self, symbols: str | Iterable[str], *, channels: str | Iterable[str] | None = None,
                 rest_url: str | None = None,
                 on_tick: Callable[[npt.NDArray[np.void]], Any] | None = None,
                 backoff: Backoff | None = None, interval: float | None = None,
                 timeout: float = 5.0,
                 headers: Mapping[str, str | Secret] | None = None) -> None:
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
