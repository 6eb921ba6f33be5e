"""Triangular and cross-exchange arbitrage on the tick stream.

:class:`CycleArbitrage` keeps the top of book of every ``(venue,
BASE-QUOTE)`` market it sees and, on each quote update, evaluates only the
cycles that go through the updated market, in both directions, with bid/ask
prices (never mids) and per-venue taker fees:

* **spatial** cycles: the same pair on two venues (buy on one, sell on the
  other);
* **triangles**: three pairs closing a loop of three assets, all on one venue
  or, with ``cross_venue=True``, with each leg on any venue.

The cycle index is built once per market, when its first tick arrives; the
per-tick loop runs in Cython (``hftsig/_ext/_arbitrage.pyx``) without the GIL.
Longer cycles are found on demand by :meth:`CycleArbitrage.find_cycles`
(length-bounded Bellman-Ford on ``-log`` rates).

.. rubric:: Quote validity

A market takes part in an opportunity only if its quote is two-sided (bid,
ask and both sizes positive and finite), not crossed or locked
(``bid < ask``) and fresh: ``now - ts_event <= max_quote_age_ms`` where
``now`` is the ``ts_event`` of the tick being processed.  A ``KIND_STATUS``
tick reporting a disconnect, resync or stale feed for a venue invalidates all
quotes of that venue until they are quoted again.

.. rubric:: Fees

``fees`` are taker fees, by default in basis points (``fee_unit="bps"``;
``fee_unit="fraction"`` takes ``0.001`` for 10 bps).  Either one number for
every venue or a dict ``{venue: fee}``; a venue missing from the dict takes
``fees["default"]`` when given, else :data:`DEFAULT_TAKER_FEES_BPS`, else the
highest fee of that table (the conservative choice).  That table is the one
default of the package (the detector, ``hftsig arb``, the demo and the notebook
all read it) and a placeholder: override it with your own fee tier.  Each leg
pays its venue's fee on what it receives: a cycle's net rate is the product of
``rate_i * (1 - fee_i)``.

Examples
--------
>>> from hftsig.arbitrage.cycles import CycleArbitrage, quote_ticks
>>> arb = CycleArbitrage(fees=0.0, max_quote_age_ms=1e3)
>>> ticks = quote_ticks([
...     ("binance", "BTC-USDT", 100.0, 1.0, 100.1, 1.0, 0),
...     ("binance", "ETH-USDT", 10.0, 5.0, 10.01, 5.0, 0),
...     ("binance", "ETH-BTC", 0.1005, 5.0, 0.1006, 5.0, 0),
... ])
>>> [ev.cycle for ev in arb.update(ticks)]
[('USDT', 'ETH', 'BTC', 'USDT')]
>>> ev = arb.events_[-1]
>>> [(leg.side, leg.symbol, leg.price) for leg in ev.legs]
[('buy', 'ETH-USDT', 10.01), ('sell', 'ETH-BTC', 0.1005), ('sell', 'BTC-USDT', 100.0)]
>>> round(ev.net_edge_bps, 2)  # 1/10.01 ETH per USDT, *0.1005 BTC per ETH, *100 USDT per BTC
39.96
>>> ev.notional  # the 5 ETH offered at 10.01 limit the trade
50.05

.. rubric:: Episodes

A profitable cycle usually stays profitable over many quote updates.  The
detector groups them: an :class:`Episode` opens with the first report of a
cycle (same markets, same directions), is updated while its edge changes and
closes when the cycle's net edge is no longer above ``min_edge_bps``, one of
its quotes goes stale or invalid, or :meth:`CycleArbitrage.close_episodes`
is called (the watcher stops).  ``on_opportunity`` is called once per episode
(with its first :class:`Opportunity`) unless ``notify="updates"``;
:meth:`CycleArbitrage.on_episode` registers callbacks for openings,
updates and closings; closed episodes are kept in ``episodes_``.

>>> later = quote_ticks([("binance", "ETH-BTC", 0.1003, 5.0, 0.1004, 5.0, 500_000_000)])
>>> arb.update(later)[0].net_edge_bps < ev.net_edge_bps  # still profitable, smaller edge
True
>>> gone = quote_ticks([("binance", "ETH-BTC", 0.0999, 5.0, 0.1, 5.0, 1_000_000_000)])
>>> arb.update(gone)
[]
>>> ep = arb.episodes_[-1]
>>> ep.cycle, ep.close_reason, ep.duration_s, ep.n_updates
(('USDT', 'ETH', 'BTC', 'USDT'), 'edge', 1.0, 2)
>>> round(ep.peak_edge_bps, 2), round(ep.mean_edge_bps, 2)  # time-weighted mean
(39.96, 29.97)
"""
from __future__ import annotations

import dataclasses
import math
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from hftsig import venues
from hftsig._ext._arbitrage import (
    STOP_UNKNOWN_MARKET,
    ArbCore,
)
from hftsig.market.ticks import (
    FLAG_LAST,
    KIND_BOOK_DELTA,
    KIND_BOOK_SNAPSHOT,
    KIND_QUOTE,
    TICK_DTYPE,
    empty_ticks,
    exchange_code,
    exchange_name,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from typing import Any

    import pandas as pd

    from hftsig.simulator.market import MarketModel

__all__ = [
    "DEFAULT_TAKER_FEES_BPS",
    "Episode",
    "Leg",
    "Opportunity",
    "CycleArbitrage",
    "TriangularArbitrage",
    "quote_ticks",
    "quotes_from_model",
]

#: Placeholder taker fees (basis points) per venue: the package's only default
#: fee table, used when ``fees`` names no fee for a venue and by ``hftsig arb``,
#: the demo and the notebook.  The numbers are the lowest-volume spot taker
#: tiers published by the venues (Kraken Pro 0.40 %, Coinbase Advanced 1.20 %);
#: schedules change and depend on your volume tier, so override them with yours
#: (``fees=`` or ``hftsig arb --fees``).  A read-only view of each registered
#: venue's :attr:`~hftsig.venues.Venue.taker_fee_bps`, plus the in-process
#: market model's ``"simulated"``; ``dict(DEFAULT_TAKER_FEES_BPS)`` to edit.
DEFAULT_TAKER_FEES_BPS = venues.VenueTable(lambda v: v.taker_fee_bps, extra={"simulated": 10.0})

_DEFAULT_START = ("USD", "USDT", "USDC", "EUR", "BTC", "ETH")
_INVALID_TS = -(1 << 62)  # hftsig/_ext/_arbitrage.pyx: a market without a usable quote


@dataclass(slots=True)
class Leg:
    """One trade of a cycle.

    Attributes
    ----------
    symbol : str
        Canonical ``BASE-QUOTE`` symbol.
    venue : str
        Exchange name.
    side : str
        ``"buy"`` (pay the ask, receive base) or ``"sell"`` (hit the bid).
    price : float
        Quoted price used (ask for buys, bid for sells), quote per base.
    size : float
        Quoted size at that price, in base units.
    fee_bps : float
        Taker fee of the venue.
    age_ms : float
        Age of the quote when the opportunity was seen.
    """

    symbol: str
    venue: str
    side: str
    price: float
    size: float
    fee_bps: float
    age_ms: float


@dataclass(slots=True)
class Opportunity:
    """An arbitrage cycle found profitable after fees.

    Attributes
    ----------
    ts : int
        ``ts_event`` (ns) of the tick that revealed it (for :meth:`find_cycles`,
        the evaluation time).
    kind : str
        ``"spatial"`` (same pair, two venues), ``"triangle"`` or ``"cycle"``
        (from :meth:`CycleArbitrage.find_cycles`).
    cycle : tuple of str
        Assets visited, the start repeated at the end (``("USDT", "BTC",
        "ETH", "USDT")``).  The start is the first of ``start_assets`` in the
        cycle.
    venues : tuple of str
        Venue of each leg.
    legs : tuple of Leg
    gross_edge_bps, net_edge_bps : float
        ``(product of rates - 1) * 1e4`` before and after taker fees, at the
        top of book.
    notional : float
        Executable amount of the start asset: the largest input that every
        leg's top-of-book size (or, with ``notional`` and ``books``, the book
        depth up to the requested notional) can fill.
    notional_usd : float or None
        ``notional`` valued in USD when a USD-like market of the start asset is
        known (``usd_assets`` count as 1 USD).
    quote_ages_ms : tuple of float
    trigger : tuple or None
        ``(venue, symbol)`` of the update that revealed it.
    vwap_edge_bps : float or None
        With a requested ``notional``: the net edge when trading
        ``notional`` through the books (VWAP) or top of book.
    episode_id : int or None
        :attr:`Episode.id` of the episode this report belongs to (None for
        :meth:`CycleArbitrage.find_cycles` results).
    """

    ts: int
    kind: str
    cycle: tuple
    venues: tuple
    legs: tuple
    gross_edge_bps: float
    net_edge_bps: float
    notional: float
    notional_usd: float | None
    quote_ages_ms: tuple
    trigger: tuple | None = None
    vwap_edge_bps: float | None = field(default=None)
    episode_id: int | None = field(default=None)

    @property
    def start(self) -> str:
        """Start (and end) asset of the cycle."""
        return self.cycle[0]

    def __str__(self):
        route = " -> ".join(
            f"{leg.side} {leg.symbol}@{leg.venue} {leg.price:.6g}" for leg in self.legs
        )
        usd = f" (${self.notional_usd:,.2f})" if self.notional_usd is not None else ""
        return (
            f"{self.kind:8s} {'>'.join(self.cycle)} net {self.net_edge_bps:+.2f} bps "
            f"gross {self.gross_edge_bps:+.2f} bps size {self.notional:.6g} {self.start}{usd} "
            f"| {route} | max age {max(self.quote_ages_ms):.0f} ms"
        )


@dataclass(slots=True)
class Episode:
    """One arbitrage opportunity over its life: the same cycle, legs and venues.

    Attributes
    ----------
    id : int
        Sequence number within the detector (``Opportunity.episode_id``).
    kind : str
        ``"spatial"`` or ``"triangle"``.
    cycle : tuple of str
        Assets visited, the start repeated at the end.
    venues : tuple of str
        Venue of each leg.
    sides : tuple of str
        ``"buy"``/``"sell"`` of each leg.
    symbols : tuple of str
        Market of each leg.
    start_ts : int
        ``ts_event`` (ns) of the report that opened it.
    last_ts : int
        ``ts_event`` (ns) of its latest profitable report.
    end_ts : int or None
        When it was seen to end (ns): the quote update that took the edge away,
        the moment a quote went stale, or the time given to
        :meth:`CycleArbitrage.close_episodes`; None while open.
    close_reason : str or None
        ``"edge"`` (net edge no longer above ``min_edge_bps``, at the requested
        ``notional`` when one is set), ``"quotes"`` (a leg's quote went stale,
        invalid or its venue disconnected), ``"stopped"``
        (:meth:`CycleArbitrage.close_episodes`); None while open.
    state : str
        Last transition: ``"opened"``, ``"updated"`` or ``"closed"``.
    n_updates : int
        Profitable reports with a changed edge, the opening one included.
    first_edge_bps, last_edge_bps, peak_edge_bps : float
        Net edge after fees at the top of book: at opening, latest, highest.
    mean_edge_bps : float
        Net edge averaged over time (each report holds until the next one, the
        last until ``end_ts``; the plain mean of the reports while no time has
        passed).
    notional, notional_usd : float, float or None
        Executable size at the peak (start asset, and USD when known).
    peak : Opportunity
        The report with the highest net edge.
    """

    id: int
    kind: str
    cycle: tuple
    venues: tuple
    sides: tuple
    symbols: tuple
    start_ts: int
    last_ts: int
    first_edge_bps: float
    last_edge_bps: float
    peak_edge_bps: float
    notional: float
    notional_usd: float | None
    peak: Opportunity
    n_updates: int = 1
    end_ts: int | None = None
    close_reason: str | None = None
    state: str = "opened"
    # time integral of the edge up to last_ts (bps * ns) and sum of the reported edges
    _area: float = field(default=0.0, repr=False)
    _edge_sum: float = field(default=0.0, repr=False)

    @classmethod
    def _open(cls, eid, ev):
        return cls(id=eid, kind=ev.kind, cycle=ev.cycle, venues=ev.venues,
                   sides=tuple(leg.side for leg in ev.legs),
                   symbols=tuple(leg.symbol for leg in ev.legs), start_ts=ev.ts,
                   last_ts=ev.ts, first_edge_bps=ev.net_edge_bps,
                   last_edge_bps=ev.net_edge_bps, peak_edge_bps=ev.net_edge_bps,
                   notional=ev.notional, notional_usd=ev.notional_usd, peak=ev,
                   _edge_sum=ev.net_edge_bps)

    def _observe(self, ev):
        """Take a new profitable report; False when its edge did not change."""
        if ev.net_edge_bps == self.last_edge_bps:
            return False
        ts = max(ev.ts, self.last_ts)
        self._area += self.last_edge_bps * (ts - self.last_ts)
        self.last_ts = ts
        self.last_edge_bps = ev.net_edge_bps
        self._edge_sum += ev.net_edge_bps
        self.n_updates += 1
        if ev.net_edge_bps > self.peak_edge_bps:
            self.peak_edge_bps = ev.net_edge_bps
            self.notional, self.notional_usd, self.peak = ev.notional, ev.notional_usd, ev
        self.state = "updated"
        return True

    def _close(self, end_ts, reason):
        end_ts = max(int(end_ts), self.last_ts)
        self._area += self.last_edge_bps * (end_ts - self.last_ts)
        self.end_ts = end_ts
        self.close_reason = reason
        self.state = "closed"

    @property
    def closed(self) -> bool:
        """Whether the episode has ended."""
        return self.end_ts is not None

    @property
    def duration_s(self) -> float:
        """Seconds from opening to ``end_ts`` (to ``last_ts`` while open)."""
        end = self.last_ts if self.end_ts is None else self.end_ts
        return (end - self.start_ts) / 1e9

    @property
    def mean_edge_bps(self) -> float:
        """Time-weighted mean net edge (bps) up to ``end_ts`` (``last_ts`` while open)."""
        end = self.last_ts if self.end_ts is None else self.end_ts
        if end > self.start_ts:
            return self._area / (end - self.start_ts)
        return self._edge_sum / self.n_updates

    def __str__(self):
        route = " -> ".join(f"{side} {sym}@{venue}" for side, sym, venue
                            in zip(self.sides, self.symbols, self.venues))
        usd = f" (${self.notional_usd:,.2f})" if self.notional_usd is not None else ""
        head = (f"episode {self.id} {self.kind} {'>'.join(self.cycle)} | {route} | "
                f"peak {self.peak_edge_bps:+.2f} bps")
        size = f"size {self.notional:.6g} {self.cycle[0]}{usd}"
        if self.state == "opened":
            return f"{head} opened, net {self.first_edge_bps:+.2f} bps, {size}"
        status = ("open" if self.end_ts is None
                  else f"closed ({self.close_reason})")
        return (f"{head} mean {self.mean_edge_bps:+.2f} bps over {self.duration_s:.3f} s, "
                f"{self.n_updates} updates, {size}, {status}")


def quote_ticks(rows: Iterable[tuple[str, str, float, float, float, float, int]]) -> np.ndarray:
    """Build a ``KIND_QUOTE`` tick batch from ``(venue, symbol, bid, bid_sz, ask, ask_sz, ts_ns)``.

    A convenience for tests, notebooks and examples.

    >>> t = quote_ticks([("kraken", "BTC-USD", 100.0, 1.0, 101.0, 2.0, 5)])
    >>> bytes(t["symbol"][0]), int(t["ts_event"][0])
    (b'BTC-USD', 5)
    """
    rows = list(rows)
    out = empty_ticks(len(rows))
    for i, row in enumerate(rows):
        if len(row) != 7:
            raise ValueError(
                "rows must be (venue, symbol, bid, bid_sz, ask, ask_sz, ts_ns), "
                f"got {row!r}"
            )
        venue, symbol, bid, bsz, ask, asz, ts = row
        out[i]["exchange"] = exchange_code(venue)
        out[i]["kind"] = KIND_QUOTE
        out[i]["flags"] = FLAG_LAST
        out[i]["symbol"] = symbol.encode("ascii")
        out[i]["bid_px"], out[i]["bid_sz"] = bid, bsz
        out[i]["ask_px"], out[i]["ask_sz"] = ask, asz
        out[i]["ts_event"] = out[i]["ts_recv"] = int(ts)
    return out


def quotes_from_model(model: MarketModel, venues: Sequence[str] | None = None,
                      symbols: Sequence[str] | None = None, ts: int | None = None) -> np.ndarray:
    """Quote ticks of the current top of book of a simulator market model.

    Bridges :class:`hftsig.simulator.market.MarketModel` (or
    ``SimulatedExchanges.model``) to the detector without the network, for
    tests, notebooks and ``hftsig arb --source model``.

    Parameters
    ----------
    model : MarketModel
    venues, symbols : sequence of str or None
        Which books to quote (default: all of the model's).
    ts : int or None
        ``ts_event`` in ns (default: the model's wall-clock start ``t0_ns`` plus
        its model time ``t``, as the simulators stamp their events).
    """
    venues = model.venues if venues is None else venues
    symbols = model.symbols if symbols is None else symbols
    now = model.t0_ns + int(round(model.t * 1e9)) if ts is None else int(ts)
    return quote_ticks(
        (v, s, *model.top(v, s), now) for v in venues for s in symbols
    )


def _parse_symbol(symbol):
    parts = symbol.split("-")
    if len(parts) != 2 or not parts[0] or not parts[1] or parts[0] == parts[1]:
        return None
    return parts[0], parts[1]


def _book_side_levels(book, side):
    """``(price, size)`` levels of one side of an order book, best first."""
    levels = book.levels(side, 1_000_000)
    arr = np.asarray(levels, dtype=np.float64).reshape(-1, 2)
    return arr


class CycleArbitrage:
    """Fee- and size-aware arbitrage detector over the quote stream.

    Parameters
    ----------
    fees : float, dict or None
        Taker fees per venue (see the module docstring); ``None`` uses
        :data:`DEFAULT_TAKER_FEES_BPS`.
    min_edge_bps : float, default 0
        Report a cycle only if its net edge (after fees) is strictly above
        this.
    max_quote_age_ms : float, default 1000
        Quotes older than this (``ts_event`` against the current tick's
        ``ts_event``) never make an opportunity.
    venues : iterable of str or None
        Venues to watch; ``None`` watches all.
    notional : float or None
        Requested trade size in USD.  When given, each opportunity is also
        evaluated at that size (VWAP through ``books`` when provided, else the
        top of book, which caps it) and is reported only if that edge is above
        ``min_edge_bps``; a cycle whose start asset has no fresh USD-like
        market to value it is then not reported.
    cross_venue : bool, default True
        Triangles may take each leg on a different venue.
    spatial : bool, default True
        Two-leg cycles: the same pair bought on one venue and sold on another.
    books : callable or None
        ``books(venue, symbol)`` returning an order book with
        ``levels(side, n)`` (``side`` ``"bid"``/``"ask"``, best first) and
        ``best_bid()``/``best_ask()`` (``(price, size)`` or ``None``), e.g.
        ``Aggregator.book``.  Used for VWAP at ``notional`` and, with
        ``book_quotes=True``, to turn book updates into top-of-book updates.
    tops : callable or None
        ``tops(venue, symbol)`` returning the current top of book as an object
        with ``bid_px, bid_sz, ask_px, ask_sz`` (or None), e.g.
        ``Aggregator.top``; preferred over ``books`` for ``book_quotes``.
    book_quotes : bool, default False
        Treat the last record of each book message as a quote update read from
        ``tops`` (or ``books``), for venues whose feed carries books but no
        quotes.
    report : {"all", "best"}
        Report every profitable cycle through the updated market, or only the
        best one per update (best by net edge at the top of book, before any
        ``notional`` check).
    on_opportunity : callable or None
        Called on the caller's thread with an :class:`Opportunity`: the one
        that opens each episode (``notify="episodes"``), or every report
        (``notify="updates"``).
    notify : {"episodes", "updates"}, default "episodes"
        What ``on_opportunity`` hears about (see above).  ``update()``'s
        return value and ``events_`` always hold every report.
    max_events : int, default 10000
        Length of the ``events_`` and ``episodes_`` ring buffers.
    fee_unit : {"bps", "fraction"}
    usd_assets : tuple of str
        Assets valued at 1 USD.
    start_assets : tuple of str or None
        Preferred start assets for reporting a cycle, first match wins.

    Attributes
    ----------
    events_ : collections.deque of Opportunity
        The most recent opportunities (every report).
    episodes_ : collections.deque of Episode
        The most recent closed episodes, in closing order.
    n_ticks_ : int
        Ticks seen.
    n_opportunities_ : int
        Opportunities reported.
    n_episodes_ : int
        Episodes opened.
    """

    def __init__(
        self,
        fees: float | Mapping[str, float] | None = None,
        min_edge_bps: float = 0.0,
        max_quote_age_ms: float = 1000.0,
        venues: Iterable[str] | None = None,
        notional: float | None = None,
        *,
        cross_venue: bool = True,
        spatial: bool = True,
        books: Callable[[str, str], Any] | None = None,
        tops: Callable[[str, str], Any] | None = None,
        book_quotes: bool = False,
        report: str = "all",
        on_opportunity: Callable[[Opportunity], Any] | None = None,
        notify: str = "episodes",
        max_events: int = 10000,
        fee_unit: str = "bps",
        usd_assets: tuple[str, ...] = ("USD", "USDT", "USDC"),
        start_assets: tuple[str, ...] | None = None,
    ) -> None:
        self.fees = fees
        self.min_edge_bps = min_edge_bps
        self.max_quote_age_ms = max_quote_age_ms
        self.venues = venues
        self.notional = notional
        self.cross_venue = cross_venue
        self.spatial = spatial
        self.books = books
        self.tops = tops
        self.book_quotes = book_quotes
        self.report = report
        self.on_opportunity = on_opportunity
        self.notify = notify
        self.max_events = max_events
        self.fee_unit = fee_unit
        self.usd_assets = usd_assets
        self.start_assets = start_assets

    # ------------------------------------------------------------------ setup
    def _fee_bps(self, venue):
        fees = self.fees
        if fees is None:
            bps = DEFAULT_TAKER_FEES_BPS.get(venue, max(DEFAULT_TAKER_FEES_BPS.values()))
        elif isinstance(fees, dict):
            if venue in fees:
                bps = fees[venue]
            elif "default" in fees:
                bps = fees["default"]
            else:
                return DEFAULT_TAKER_FEES_BPS.get(venue, max(DEFAULT_TAKER_FEES_BPS.values()))
        else:
            bps = fees
        bps = float(bps)
        if self.fee_unit == "fraction":
            bps *= 1e4
        return bps

    def _validate(self):
        if self.fee_unit not in ("bps", "fraction"):
            raise ValueError(f"fee_unit must be 'bps' or 'fraction', got {self.fee_unit!r}")
        if self.report not in ("all", "best"):
            raise ValueError(f"report must be 'all' or 'best', got {self.report!r}")
        if self.notify not in ("episodes", "updates"):
            raise ValueError(f"notify must be 'episodes' or 'updates', got {self.notify!r}")
        if self.fees is not None and not isinstance(self.fees, dict):
            if not isinstance(self.fees, (int, float)) or isinstance(self.fees, bool):
                raise TypeError(f"fees must be a number, a dict or None, got {type(self.fees)}")
        fee_values = (
            list(self.fees.values()) if isinstance(self.fees, dict)
            else [] if self.fees is None else [self.fees]
        )
        for v in fee_values:
            bps = float(v) * (1e4 if self.fee_unit == "fraction" else 1.0)
            if not (0.0 <= bps < 1e4):
                raise ValueError(f"fees must be in [0, 10000) bps, got {v!r} ({self.fee_unit})")
        age = float(self.max_quote_age_ms)
        if not age >= 0:
            raise ValueError(f"max_quote_age_ms must be >= 0, got {self.max_quote_age_ms!r}")
        if not math.isfinite(float(self.min_edge_bps)):
            raise ValueError(f"min_edge_bps must be finite, got {self.min_edge_bps!r}")
        if self.notional is not None and not float(self.notional) > 0:
            raise ValueError(f"notional must be > 0 or None, got {self.notional!r}")
        if int(self.max_events) < 1:
            raise ValueError(f"max_events must be >= 1, got {self.max_events!r}")
        if self.books is not None and not callable(self.books):
            raise TypeError("books must be a callable books(venue, symbol) or None")
        if self.tops is not None and not callable(self.tops):
            raise TypeError("tops must be a callable tops(venue, symbol) or None")
        if self.on_opportunity is not None and not callable(self.on_opportunity):
            raise TypeError("on_opportunity must be callable or None")

    def _ensure_state(self):
        if getattr(self, "core_", None) is not None:
            return
        self._validate()
        # capped at 2**61 ns (73 years) so that time arithmetic cannot overflow
        age_ns = min(float(self.max_quote_age_ms) * 1e6, float(2**61))
        self.core_ = ArbCore(
            int(age_ns), 1.0 + float(self.min_edge_bps) * 1e-4, self.report == "best"
        )
        self._venue_set = None if self.venues is None else {str(v).lower() for v in self.venues}
        self.assets_ = []
        self._asset_id = {}
        self._adj = {}
        # per market: (venue name, symbol, base id, quote id, fee bps)
        self.markets_ = []
        self._market_id = {}
        # per cycle: (edges, kind)
        self.cycles_ = []
        self._cycle_info = {}
        self._extra_cycles = []
        self._extra_ids = {}
        self.events_ = deque(maxlen=int(self.max_events))
        self.n_ticks_ = 0
        self.n_opportunities_ = 0
        self.episodes_ = deque(maxlen=int(self.max_events))
        self.n_episodes_ = 0
        self._open_eps = {}  # cycle id -> open Episode
        self._start_rank = {
            a: i for i, a in enumerate(self.start_assets or _DEFAULT_START)
        }
        self._usd = set(self.usd_assets)
        self._usd_ids = []

    def reset(self) -> None:
        """Forget all markets, quotes, events and episodes (open ones are dropped, not closed)."""
        with self._get_lock():
            self.core_ = None
            self._ensure_state()
        return self

    def _get_lock(self):
        try:
            return self._lock
        except AttributeError:
            self.__dict__.setdefault("_lock", threading.Lock())
            return self._lock

    def _asset(self, name):
        i = self._asset_id.get(name)
        if i is None:
            i = len(self.assets_)
            self.assets_.append(name)
            self._asset_id[name] = i
            self._adj[i] = {}
            if name in self._usd:
                self._usd_ids.append(i)
        return i

    def _edge_from(self, m, asset):
        """Edge of market ``m`` leaving ``asset``."""
        return 2 * m if self.markets_[m][2] == asset else 2 * m + 1

    def _register(self, exchange, symbol_bytes):
        venue = exchange_name(exchange)
        symbol = symbol_bytes.decode("ascii", "replace")
        parsed = _parse_symbol(symbol)
        if parsed is None or (self._venue_set is not None and venue not in self._venue_set):
            self.core_.map_insert(int(exchange), symbol_bytes, -2)
            return -2
        fee_bps = self._fee_bps(venue)
        b, q = self._asset(parsed[0]), self._asset(parsed[1])
        m = self.core_.add_market(int(exchange), 1.0 - fee_bps * 1e-4)
        self.markets_.append((venue, symbol, b, q, fee_bps))
        self._market_id[(venue, symbol)] = m
        adj = self._adj
        core = self.core_

        def add(edges, kind):
            core.add_cycle(edges)
            self.cycles_.append((tuple(edges), kind))

        if self.spatial:
            for mk in adj[b].get(q, ()):
                if self.markets_[mk][0] == venue:
                    continue
                add([self._edge_from(m, b), self._edge_from(mk, q)], "spatial")
                add([self._edge_from(m, q), self._edge_from(mk, b)], "spatial")
        common = set(adj[b]) & set(adj[q])
        for c in sorted(common):
            for m1 in adj[q][c]:  # Q - C
                for m2 in adj[c][b]:  # C - B
                    if not self.cross_venue and not (
                        self.markets_[m1][0] == venue and self.markets_[m2][0] == venue
                    ):
                        continue
                    add([2 * m if self.markets_[m][2] == b else 2 * m + 1,
                         self._edge_from(m1, q), self._edge_from(m2, c)], "triangle")
                    add([self._edge_from(m, q), self._edge_from(m2, b),
                         self._edge_from(m1, c)], "triangle")
        adj[b].setdefault(q, []).append(m)
        adj[q].setdefault(b, []).append(m)
        core.map_insert(int(exchange), symbol_bytes, m)
        return m

    # ------------------------------------------------------------------ input
    @staticmethod
    def _as_ticks(ticks):
        if (type(ticks) is np.ndarray and ticks.dtype is TICK_DTYPE and ticks.ndim == 1
                and ticks.flags.c_contiguous):
            return ticks
        arr = np.asarray(ticks)
        if arr.dtype != TICK_DTYPE:
            raise TypeError(f"ticks must be TICK_DTYPE records, got dtype {arr.dtype}")
        return np.ascontiguousarray(arr.reshape(-1))

    def _book_quotes(self, arr):
        """Replace the last record of each book message by a quote read from ``books``."""
        mask = np.isin(arr["kind"], (KIND_BOOK_DELTA, KIND_BOOK_SNAPSHOT)) & (
            (arr["flags"] & FLAG_LAST) != 0
        )
        if not mask.any():
            return arr
        arr = arr.copy()
        for i in np.flatnonzero(mask):
            venue = exchange_name(arr["exchange"][i])
            symbol = arr["symbol"][i].decode("ascii", "replace")
            if self.tops is not None:
                top = self.tops(venue, symbol)
                bb = ba = None
                if top is not None:
                    bb, ba = (top.bid_px, top.bid_sz), (top.ask_px, top.ask_sz)
            else:
                book = self.books(venue, symbol)
                bb = book.best_bid() if book is not None else None
                ba = book.best_ask() if book is not None else None
            arr["kind"][i] = KIND_QUOTE
            arr["bid_px"][i], arr["bid_sz"][i] = bb if bb is not None else (np.nan, np.nan)
            arr["ask_px"][i], arr["ask_sz"][i] = ba if ba is not None else (np.nan, np.nan)
        return arr

    def update(self, ticks: np.void | np.ndarray) -> list[Opportunity]:
        """Feed ticks (one record or a batch); return the new opportunities.

        Only ``KIND_QUOTE`` ticks (and ``KIND_STATUS`` disconnects, which
        invalidate a venue) change the state; other kinds are skipped, except
        book records with ``book_quotes=True``.

        Parameters
        ----------
        ticks : numpy.void or ndarray of TICK_DTYPE

        Returns
        -------
        list of Opportunity
        """
        arr = self._as_ticks(ticks)
        found = []
        hits = []
        opened, changes = [], []
        with self._get_lock():
            self._ensure_state()
            if self.book_quotes and (self.tops is not None or self.books is not None):
                arr = self._book_quotes(arr)
            n = len(arr)
            self.n_ticks_ += n
            if n == 0:
                return found
            core = self.core_
            ts_event = arr["ts_event"]
            start = 0
            while start < n:
                # While an episode is open the ticks go one at a time, so that it
                # closes on the tick that ends it; otherwise in bulk up to the
                # first tick that opens one.
                tracking = bool(self._open_eps)
                stop, k, reason = core.process(arr, start, start + 1 if tracking else n,
                                               not tracking)
                chunk = self._hits(arr, k) if k else []
                hits.extend(chunk)
                if chunk or (self._open_eps and stop > start):
                    # status ticks (a disconnect) move time on too, not only quotes
                    now = max(core.last_ts, int(ts_event[stop - 1])) if stop > start \
                        else core.last_ts
                    self._track_episodes(chunk, now, opened, changes)
                if reason == STOP_UNKNOWN_MARKET:
                    t = arr[stop]
                    self._register(int(t["exchange"]), bytes(t["symbol"]))
                start = stop
            found = [ev for _, ev in hits]
            self.events_.extend(found)
            self.n_opportunities_ += len(found)
        self._notify(found, opened, changes)
        return found

    __call__ = update

    # ---------------------------------------------------------------- episodes
    def on_episode(self, callback: Callable[[Episode], Any], *,
                   states: Iterable[str] = ("opened", "closed")) -> Callable[[Episode], Any]:
        """Call ``callback(episode)`` when an episode opens, changes or closes.

        Parameters
        ----------
        callback : callable
            Called on the thread feeding :meth:`update` with a copy of the
            :class:`Episode` as it is at that transition (its ``state``).
        states : iterable of {"opened", "updated", "closed"}
            Transitions to hear about; ``"updated"`` fires on every report
            whose net edge changed.

        Returns
        -------
        callback
            So that the method can decorate a function.
        """
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {type(callback).__name__}")
        states = frozenset(states)
        bad = states - {"opened", "updated", "closed"}
        if bad or not states:
            raise ValueError("states must name some of 'opened', 'updated', 'closed', "
                             f"got {sorted(bad) or 'none'}")
        with self._get_lock():
            self.__dict__.setdefault("_episode_callbacks", []).append((callback, states))
        return callback

    def open_episodes(self) -> list[Episode]:
        """Copies of the episodes still open, oldest first."""
        with self._get_lock():
            self._ensure_state()
            return [dataclasses.replace(ep) for ep in
                    sorted(self._open_eps.values(), key=lambda ep: ep.id)]

    def close_episodes(self, now: int | None = None) -> list[Episode]:
        """Close every open episode (``close_reason="stopped"``), e.g. when the feed stops.

        Parameters
        ----------
        now : int or None
            End time in ns; default the latest tick time seen.

        Returns
        -------
        list of Episode
            The episodes closed, also appended to ``episodes_``.
        """
        with self._get_lock():
            self._ensure_state()
            end = self.core_.last_ts if now is None else int(now)
            changes = []
            for c in sorted(self._open_eps, key=lambda c: self._open_eps[c].id):
                ep = self._open_eps.pop(c)
                ep._close(end, "stopped")
                self.episodes_.append(ep)
                changes.append(dataclasses.replace(ep))
        self._notify([], [], changes)
        return [dataclasses.replace(ep) for ep in changes]

    def _track_episodes(self, hits, now, opened, changes):
        """Fold reports into episodes, then re-check the open ones at ``now``.

        Appends the reports that opened an episode to ``opened`` and copies of
        the episodes at each transition, in order, to ``changes`` (only when
        someone listens: the copies would cost more than the rest).
        """
        listen = bool(self.__dict__.get("_episode_callbacks"))
        for c, ev in hits:
            ep = self._open_eps.get(c)
            if ep is None:
                self.n_episodes_ += 1
                ep = Episode._open(self.n_episodes_, ev)
                self._open_eps[c] = ep
                opened.append(ev)
                if listen:
                    changes.append(dataclasses.replace(ep))
            elif ep._observe(ev):
                if listen:
                    changes.append(dataclasses.replace(ep))
            ev.episode_id = ep.id
        # A cycle stays open only while it is still profitable on the current
        # quotes: reports come only from updated markets (and only the best one
        # with report="best"), so each open cycle not just reported is evaluated
        # here against the latest quote of every leg.
        reported = {c for c, _ in hits}
        for c in list(self._open_eps):
            if c in reported:
                continue
            ep = self._open_eps[c]
            ev, reason, end = self._evaluate_cycle(c, now)
            if ev is None:
                ep._close(end, reason)
                del self._open_eps[c]
                self.episodes_.append(ep)
                if listen:
                    changes.append(dataclasses.replace(ep))
            elif ep._observe(ev):
                if listen:
                    changes.append(dataclasses.replace(ep))

    def _evaluate_cycle(self, c, now):
        """``(Opportunity or None, close reason, end ts)`` of indexed cycle ``c`` at ``now``."""
        core = self.core_
        edges = self.cycles_[c][0]
        oldest = now - core.max_age_ns
        vts, ts_ = core.a_vts_, core.a_ts_
        snap = []
        gross = net = 1.0
        latest = None
        for e in edges:
            m = e >> 1
            v = int(vts[m])
            if v < oldest:
                # stale since its age passed the limit; invalid (crossed, one-sided,
                # disconnected) quotes are seen at the latest tick
                ok = v > _INVALID_TS
                return None, "quotes", (v + core.max_age_ns if ok else now)
            fm = 1.0 - self.markets_[m][4] * 1e-4
            if e & 1:
                price, size = float(core.a_ask_[m]), float(core.a_asz_[m])
                gross /= price
                net *= fm / price
            else:
                price, size = float(core.a_bid_[m]), float(core.a_bsz_[m])
                gross *= price
                net *= price * fm
            t = int(ts_[m])
            latest = t if latest is None or t > latest else latest
            snap += [price, size, t]
        if not net > core.threshold:
            return None, "edge", latest
        ev = self._event(c, snap, now, gross, net, None)
        return ev, (None if ev is not None else "edge"), latest

    def _notify(self, found, opened, changes):
        """Run the callbacks outside the lock, on the caller's thread."""
        cb = self.on_opportunity
        if cb is not None:
            if self.notify == "updates":
                for ev in found:
                    cb(ev)
            else:
                for ev in opened:
                    cb(ev)
        callbacks = self.__dict__.get("_episode_callbacks")
        if callbacks and changes:
            for ep in changes:
                for fn, states in callbacks:
                    if ep.state in states:
                        fn(ep)

    # ------------------------------------------------------------------ events
    def _hits(self, arr, k):
        core = self.core_
        o_tick = core.o_tick_[:k]
        cyc = core.o_cycle_[:k].tolist()
        gross = core.o_gross_[:k].tolist()
        net = core.o_net_[:k].tolist()
        legs = core.o_legs_[: k * 9].tolist()
        ts = arr["ts_event"][o_tick].tolist()
        exch = arr["exchange"][o_tick].tolist()
        sym = arr["symbol"][o_tick].tolist()
        out = []
        for j in range(k):
            snap = legs[9 * j: 9 * j + 9]
            trigger = (exchange_name(exch[j]), sym[j].decode("ascii", "replace"))
            ev = self._event(cyc[j], snap, ts[j], gross[j], net[j], trigger)
            if ev is not None:
                out.append((cyc[j], ev))
        return out

    def _info(self, c):
        """What never changes about a cycle: rotation, names, sides, fees."""
        info = self._cycle_info.get(c)
        if info is not None:
            return info
        edges, kind = self.cycles_[c] if c >= 0 else self._extra_cycles[-1 - c]
        n = len(edges)
        froms = []
        for e in edges:
            venue, symbol, b, q, fee = self.markets_[e >> 1]
            froms.append(q if e & 1 else b)
        rank = self._start_rank
        big = len(rank)
        r0 = min(range(n), key=lambda j: (rank.get(self.assets_[froms[j]], big), j))
        order = tuple((r0 + j) % n for j in range(n))
        static = []
        for j in order:
            e = edges[j]
            venue, symbol, b, q, fee = self.markets_[e >> 1]
            static.append((symbol, venue, bool(e & 1), fee, 1.0 - fee * 1e-4))
        cycle = tuple(self.assets_[froms[j]] for j in order) + (self.assets_[froms[r0]],)
        info = (kind, order, tuple(static), cycle, tuple(x[1] for x in static))
        self._cycle_info[c] = info
        return info

    def _event(self, c, snap, now, gross, net, trigger):
        """Build an Opportunity for cycle ``c`` from per-leg (price, size, ts) snapshots."""
        kind, order, static, cycle, venues = self._info(c)
        legs = []
        cum, cap = 1.0, math.inf
        for j, (symbol, venue, buy, fee, fm) in zip(order, static):
            price, size, ts = snap[3 * j], snap[3 * j + 1], snap[3 * j + 2]
            age = (now - ts) / 1e6
            legs.append(Leg(symbol, venue, "buy" if buy else "sell", price, size, fee,
                            age if age > 0.0 else 0.0))
            if buy:
                capf = size * price
                r = fm / price
            else:
                capf = size
                r = price * fm
            lim = capf / cum
            if lim < cap:
                cap = lim
            cum *= r
        start = cycle[0]
        usd = self._usd_price(start, now)
        vwap_edge = None
        notional = cap
        if self.notional is not None:
            if usd is None:
                return None
            target = float(self.notional) / usd
            notional, vwap_net = self._fill_cycle(legs, target)
            if vwap_net is None:
                return None
            vwap_edge = (vwap_net - 1.0) * 1e4
            if not vwap_edge > float(self.min_edge_bps):
                return None
        return Opportunity(
            ts=int(now),
            kind=kind,
            cycle=cycle,
            venues=venues,
            legs=tuple(legs),
            gross_edge_bps=(float(gross) - 1.0) * 1e4,
            net_edge_bps=(float(net) - 1.0) * 1e4,
            notional=float(notional),
            notional_usd=None if usd is None else float(notional) * usd,
            quote_ages_ms=tuple(leg.age_ms for leg in legs),
            trigger=trigger,
            vwap_edge_bps=vwap_edge,
        )

    def _cycle_event(self, edges, snap, now, gross, net):
        """Event for a cycle found by :meth:`find_cycles` (not in the index)."""
        key = tuple(edges)
        c = self._extra_ids.get(key)
        if c is None:  # negative ids: cycles outside the per-market index
            c = -1 - len(self._extra_cycles)
            self._extra_cycles.append((key, "cycle"))
            self._extra_ids[key] = c
        flat = [float(x) for leg in snap for x in leg]
        return self._event(c, flat, now, gross, net, None)

    def _usd_price(self, asset, now):
        """USD value of one unit of ``asset`` from a fresh USD-like market, or None."""
        if asset in self._usd:
            return 1.0
        aid = self._asset_id.get(asset)
        if aid is None:
            return None
        core = self.core_
        oldest = now - core.max_age_ns
        vts, bids, asks = core.a_vts_, core.a_bid_, core.a_ask_
        for usd in self._usd_ids:
            for m in self._adj[aid].get(usd, ()):
                if vts[m] < oldest:
                    continue
                mid = 0.5 * (float(bids[m]) + float(asks[m]))
                return mid if self.markets_[m][2] == aid else 1.0 / mid
        return None

    # ---------------------------------------------------------------- depth
    def _leg_fill(self, leg, amount):
        """Trade ``amount`` of the leg's input asset; return (filled input, output before fee)."""
        book = self.books(leg.venue, leg.symbol) if self.books is not None else None
        if book is not None:
            lv = _book_side_levels(book, "ask" if leg.side == "buy" else "bid")
        else:
            lv = np.array([[leg.price, leg.size]])
        lv = lv[(lv[:, 0] > 0) & (lv[:, 1] > 0)]
        if leg.side == "buy":  # spend quote, receive base
            cost = lv[:, 0] * lv[:, 1]
            cum = np.cumsum(cost)
            k = int(np.searchsorted(cum, amount))
            if k >= len(lv):
                return float(cum[-1]) if len(cum) else 0.0, float(lv[:, 1].sum())
            prev = cum[k - 1] if k else 0.0
            got = lv[:k, 1].sum() + (amount - prev) / lv[k, 0]
            return amount, float(got)
        cum = np.cumsum(lv[:, 1])  # sell base, receive quote
        k = int(np.searchsorted(cum, amount))
        if k >= len(lv):
            return float(cum[-1]) if len(cum) else 0.0, float((lv[:, 0] * lv[:, 1]).sum())
        prev = cum[k - 1] if k else 0.0
        got = (lv[:k, 0] * lv[:k, 1]).sum() + (amount - prev) * lv[k, 0]
        return amount, float(got)

    def _run_cycle(self, legs, x):
        """Push ``x`` of the start asset through the legs; (fully filled, output)."""
        a = x
        for leg in legs:
            filled, got = self._leg_fill(leg, a)
            if filled < a * (1 - 1e-12):
                return False, 0.0
            a = got * (1.0 - leg.fee_bps * 1e-4)
        return True, a

    def _fill_cycle(self, legs, target):
        """Largest fillable amount <= target and its net rate (None if nothing fills)."""
        ok, out = self._run_cycle(legs, target)
        if ok:
            return target, out / target
        lo, hi = 0.0, target
        for _ in range(50):
            mid = 0.5 * (lo + hi)
            if self._run_cycle(legs, mid)[0]:
                lo = mid
            else:
                hi = mid
        if lo <= 0:
            return 0.0, None
        ok, out = self._run_cycle(legs, lo)
        return lo, out / lo

    # ------------------------------------------------------------ inspection
    def quotes(self) -> pd.DataFrame:
        """DataFrame of the current quote of every market."""
        import pandas as pd

        with self._get_lock():
            self._ensure_state()
            core = self.core_
            n = len(self.markets_)
            return pd.DataFrame(
                {
                    "venue": [m[0] for m in self.markets_],
                    "symbol": [m[1] for m in self.markets_],
                    "bid": core.a_bid_[:n].copy(),
                    "bid_sz": core.a_bsz_[:n].copy(),
                    "ask": core.a_ask_[:n].copy(),
                    "ask_sz": core.a_asz_[:n].copy(),
                    "ts_event": core.a_ts_[:n].copy(),
                    "fee_bps": [m[4] for m in self.markets_],
                }
            )

    def rate_graph(self, now: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Best net rate between assets from the current valid quotes.

        Returns
        -------
        rates : ndarray (n_assets, n_assets)
            ``rates[i, j]``: units of asset ``j`` received per unit of ``i``
            after the taker fee, on the best venue (0 where no market).
        edges : ndarray of int (n_assets, n_assets)
            The edge id giving that rate (``-1`` where none); ``edge >> 1`` is
            the market, ``edge & 1`` is 1 for a buy.
        """
        with self._get_lock():
            self._ensure_state()
            return self._rate_graph(self.core_.last_ts if now is None else int(now))

    def _rate_graph(self, now):
        core = self.core_
        n = len(self.assets_)
        rates = np.zeros((n, n))
        edges = np.full((n, n), -1, dtype=np.int64)
        valid = core.valid_mask(now)
        for m, ok in enumerate(valid):
            if not ok:
                continue
            venue, symbol, b, q, fee = self.markets_[m]
            fm = 1.0 - fee * 1e-4
            sell = core.a_bid_[m] * fm
            buy = fm / core.a_ask_[m]
            if sell > rates[b, q]:
                rates[b, q], edges[b, q] = sell, 2 * m
            if buy > rates[q, b]:
                rates[q, b], edges[q, b] = buy, 2 * m + 1
        return rates, edges

    def find_cycles(self, max_len: int = 4, min_edge_bps: float | None = None,
                    now: int | None = None) -> list[Opportunity]:
        """Profitable cycles of up to ``max_len`` legs on the current quote graph.

        Length-bounded Bellman-Ford: from every asset, ``max_len`` min-plus
        relaxations of the ``-log`` net rates (best venue per directed pair)
        give the cheapest closed walk of each length; walks below the
        threshold are split into simple cycles and those still profitable are
        returned.  A profitable cycle of at most ``max_len`` legs exists if
        and only if this returns at least one; for ``max_len <= 3`` the best
        cycle through every asset is found exactly.

        Parameters
        ----------
        max_len : int, default 4
            Maximum number of legs (>= 2).
        min_edge_bps : float or None
            Net edge threshold; default the detector's ``min_edge_bps``.
        now : int or None
            Evaluation time in ns for staleness; default the latest tick time.

        Returns
        -------
        list of Opportunity
            ``kind="cycle"``, best first, each simple cycle once.
        """
        if int(max_len) != max_len or max_len < 2:
            raise ValueError(f"max_len must be an integer >= 2, got {max_len!r}")
        max_len = int(max_len)
        with self._get_lock():
            self._ensure_state()
            now = self.core_.last_ts if now is None else int(now)
            thr_bps = self.min_edge_bps if min_edge_bps is None else min_edge_bps
            rates, edges = self._rate_graph(now)
            cycles = bounded_negative_cycles(rates, max_len, float(thr_bps))
            out = []
            core = self.core_
            for cyc, net in cycles:
                es = [int(edges[cyc[j], cyc[(j + 1) % len(cyc)]]) for j in range(len(cyc))]
                gross = 1.0
                snap = []
                for e in es:
                    m = e >> 1
                    if e & 1:
                        price, size = core.a_ask_[m], core.a_asz_[m]
                        gross /= price
                    else:
                        price, size = core.a_bid_[m], core.a_bsz_[m]
                        gross *= price
                    snap.append((price, size, core.a_ts_[m]))
                ev = self._cycle_event(es, snap, now, gross, net)
                if ev is not None:
                    out.append(ev)
            out.sort(key=lambda ev: -ev.net_edge_bps)
            return out


#: the detector's name before 0.2 (it also finds 2-leg and n-leg cycles, hence
#: the new one); kept so that existing code and pickles keep working
TriangularArbitrage = CycleArbitrage


def bounded_negative_cycles(rates: np.ndarray, max_len: int,
                            min_edge_bps: float = 0.0) -> list[tuple[tuple[int, ...], float]]:
    """Simple cycles of at most ``max_len`` edges whose rate product beats the threshold.

    Parameters
    ----------
    rates : ndarray (n, n)
        Conversion rates (0 or negative: no edge; the diagonal is ignored).
    max_len : int
    min_edge_bps : float

    Returns
    -------
    list of (tuple of int, float)
        Each simple cycle (rotated to start at its smallest node) with its
        rate product, best first.

    Examples
    --------
    >>> r = np.array([[0, 2.0, 0], [0, 0, 1.0], [0.6, 0, 0]])
    >>> [(c, round(p, 3)) for c, p in bounded_negative_cycles(r, 3)]
    [((0, 1, 2), 1.2)]
    """
    rates = np.asarray(rates, dtype=np.float64, order="C")
    if rates.ndim != 2 or rates.shape[0] != rates.shape[1]:
        raise ValueError(f"rates must be a square matrix, got shape {rates.shape}")
    n = rates.shape[0]
    with np.errstate(divide="ignore"):
        w = np.where(rates > 0, -np.log(np.where(rates > 0, rates, 1.0)), np.inf)
    np.fill_diagonal(w, np.inf)
    thr = -math.log1p(float(min_edge_bps) * 1e-4)
    if n == 0:
        return []
    dist = np.full((n, n), np.inf)  # dist[s, v]: best walk s -> v of k edges
    dist[np.arange(n), np.arange(n)] = 0.0
    preds = []
    found = {}
    src = np.arange(n)
    for k in range(1, max_len + 1):
        cand = dist[:, :, None] + w[None, :, :]
        pred = np.argmin(cand, axis=1)
        dist = np.take_along_axis(cand, pred[:, None, :], axis=1)[:, 0, :]
        preds.append(pred)
        closed = dist[src, src].copy()
        # walks may not pass through their source again: close them here
        dist[src, src] = np.inf
        for s in np.flatnonzero(closed < thr):
            walk = [int(s)]
            v = int(s)
            for kk in range(k - 1, -1, -1):
                v = int(preds[kk][s, v])
                walk.append(v)
            walk.reverse()  # s ... s
            for cyc in _simple_cycles_of_walk(walk):
                logsum = sum(w[cyc[j], cyc[(j + 1) % len(cyc)]] for j in range(len(cyc)))
                if logsum < thr:
                    found[cyc] = math.exp(-logsum)
    return sorted(found.items(), key=lambda kv: -kv[1])


def _simple_cycles_of_walk(walk):
    """Split a closed walk (first node == last node) into simple cycles."""
    stack = []
    pos = {}
    out = []
    for v in walk:
        if v in pos:
            i = pos[v]
            cyc = stack[i:]
            for u in cyc:
                del pos[u]
            del stack[i:]
            if len(cyc) >= 2:
                j = cyc.index(min(cyc))
                out.append(tuple(cyc[j:] + cyc[:j]))
        pos[v] = len(stack)
        stack.append(v)
    return out
