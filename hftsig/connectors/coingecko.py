"""CoinGecko reference prices: ``/simple/price`` polled into ``KIND_PRICE`` ticks.

Demo and Pro plans differ in base URL and header:

===== ======================================== =====================
plan  base URL                                 header
===== ======================================== =====================
demo  ``https://api.coingecko.com/api/v3``     ``x-cg-demo-api-key``
pro   ``https://pro-api.coingecko.com/api/v3`` ``x-cg-pro-api-key``
===== ======================================== =====================

The key comes from ``api_key`` or ``HFTSIG_COINGECKO_API_KEY`` (plan from
``HFTSIG_COINGECKO_API_PLAN``), see :mod:`hftsig.connectors.credentials`; without a
key the public API is used with no header.  429 (with or without
``Retry-After``) and 5xx back off (:class:`hftsig.connectors.rest.RestClient`).
A price is emitted once per new ``last_updated_at``; a price whose
``last_updated_at`` is older than ``stale_after`` seconds is flagged once
with a ``STATUS_STALE`` tick for its symbol (counted as ``stale_prices``).
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from hftsig import venues
from hftsig.connectors.credentials import Secret, load_credentials
from hftsig.connectors.rest import RestPollingConnector
from hftsig.market.normalize import CoinGeckoNormalizer
from hftsig.market.symbols import coingecko_query
from hftsig.market.ticks import KIND_PRICE, STATUS_STALE

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    import numpy.typing as npt

    from hftsig.connectors.base import Backoff

__all__ = ["CoinGeckoConnector"]

_PLANS = {
    "demo": ("https://api.coingecko.com/api/v3", "x-cg-demo-api-key"),
    "pro": ("https://pro-api.coingecko.com/api/v3", "x-cg-pro-api-key"),
}


class CoinGeckoConnector(RestPollingConnector):
    """CoinGecko ``/simple/price`` poller.

    Parameters
    ----------
    symbols : sequence of str
        Canonical symbols whose base is a known coin (``"BTC-USD"`` ->
        ``bitcoin`` in ``usd``; see :mod:`hftsig.market.symbols`).
    rest_url : str or None
        Base URL up to ``/api/v3``; ``None`` picks the plan's.
    api_key : str, Secret or None
        ``None`` reads ``HFTSIG_COINGECKO_API_KEY`` (or the credentials file).
    plan : {"demo", "pro"} or None
        ``None`` reads ``HFTSIG_COINGECKO_API_PLAN`` (default ``"demo"``).
    interval : float
        Seconds between polls (demo allows about 100 calls/min).
    stale_after : float
        Age in seconds of ``last_updated_at`` that makes a price stale.
    on_tick, backoff, timeout
        See :class:`hftsig.connectors.rest.RestPollingConnector`.

    Examples
    --------
    >>> c = CoinGeckoConnector(["BTC-USD", "ETH-USD"], api_key="CG-doctestkey", plan="pro")
    >>> c.rest_url, c.params["ids"], c.params["vs_currencies"]
    ('https://pro-api.coingecko.com/api/v3', 'bitcoin,ethereum', 'usd')
    >>> "doctestkey" in repr(c) + repr(c.rest)
    False
    """

    exchange = "coingecko"
    valid_channels = ("price",)
    default_channels = ("price",)
    interval = 15.0

    @property
    def batched_kinds(self):
        """Prices are polled every :attr:`interval` seconds (see :class:`Connector`).

        The registry declares what is polled
        (:attr:`hftsig.venues.Venue.batched_kinds`, period ``None``: the
        connector's interval).
        """
        return {kind: self.interval if period is None else period
                for kind, period in venues.get(self.exchange).batched_kinds.items()}

    def __init__(self, symbols: str | Iterable[str], *, channels: str | Iterable[str] | None = None,
                 rest_url: str | None = None, api_key: str | Secret | None = None,
                 plan: str | None = None,
                 on_tick: Callable[[npt.NDArray[np.void]], Any] | None = None,
                 backoff: Backoff | None = None, interval: float | None = None,
                 stale_after: float = 600.0, timeout: float = 10.0) -> None:
        creds = load_credentials("coingecko")
        if plan is None:
            plan = creds.plan
        if plan not in _PLANS:
            # not echoed: a key passed in the wrong argument would show
            raise ValueError("plan must be 'demo' or 'pro' (the value given is neither; "
                             "not shown in case it is a key)")
        self.plan = plan
        key = Secret(api_key) if api_key is not None else creds.api_key
        base, header = _PLANS[plan]
        headers = {header: key} if key is not None else {}
        if not stale_after > 0:
            raise ValueError(f"stale_after must be > 0 seconds, got {stale_after!r}")
        self.stale_after = float(stale_after)
        super().__init__(symbols, channels=channels, rest_url=rest_url or base, on_tick=on_tick,
                         backoff=backoff, interval=interval, timeout=timeout, headers=headers)
        ids, vs = coingecko_query(self.symbols)
        self.params = {"ids": ids, "vs_currencies": vs, "include_last_updated_at": "true"}
        self._normalizer = CoinGeckoNormalizer()
        self._wanted = {s.encode() for s in self.symbols}
        self._last_seen = {}  # symbol -> (last_updated_at ns, price)
        self._stale = set()

    def __repr__(self):
        return (f"CoinGeckoConnector(symbols={list(self.symbols)!r}, plan={self.plan!r}, "
                f"rest_url={self.rest_url!r})")

    def _poll(self):
        resp = self.rest.get("/simple/price", self.params)
        ts_recv = time.time_ns()
        self._count("messages")
        ticks = self._normalizer.parse(resp.content, ts_recv)
        self._count_type(self._normalizer.last_type)
        self._set_connected(True)
        if not len(ticks):
            return
        ticks = ticks[(ticks["kind"] == KIND_PRICE) & _isin(ticks["symbol"], self._wanted)]
        fresh = []
        for i in range(len(ticks)):
            sym = bytes(ticks["symbol"][i])
            key = (int(ticks["ts_event"][i]), float(ticks["price"][i]))
            age = (ts_recv - key[0]) / 1e9
            if age > self.stale_after:
                if sym not in self._stale:
                    self._stale.add(sym)
                    self._count("stale_prices")
                    self._log_once(("stale", sym), "%s price is %.0f s old", sym.decode(), age)
                    self._emit_status(STATUS_STALE, sym.decode())
            else:
                self._stale.discard(sym)
            if self._last_seen.get(sym) == key:
                continue  # the same observation polled again
            self._last_seen[sym] = key
            fresh.append(i)
        if fresh:
            out = ticks[fresh]
            self._note_latency(out)
            self._emit(out)


def _isin(symbols, wanted):
    return np.fromiter((bytes(s) in wanted for s in symbols), dtype=bool, count=len(symbols))
