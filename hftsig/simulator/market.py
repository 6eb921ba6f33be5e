"""The simulated market: the truth every exchange simulator speaks about.

One :class:`MarketModel` holds a USD price per asset (correlated geometric
random walks), derives every pair's mid from them (so ``BTC-USDT``,
``ETH-USDT`` and ``ETH-BTC`` agree up to tiny venue noise), and keeps one L2
book per (venue, symbol) with prices and sizes as integers of the pair's tick
and lot on that venue.  Each :meth:`MarketModel.step` advances the clock by
``1 / rate`` seconds and returns the events it produced (book level changes
with update ids, trades), in a deterministic order for a given seed.

The books never form an arbitrage on their own: each venue's quote noise is
bounded by ``noise_bps`` which must be smaller than half of every venue's
spread, so a cycle of bid/ask crossings always loses the spreads.  Only
:meth:`MarketModel.inject_mispricing` creates opportunities, of a known size
and duration, and logs them in :attr:`MarketModel.mispricings`.

Examples
--------
>>> from hftsig.simulator.market import MarketModel
>>> m = MarketModel(["BTC-USDT", "ETH-USDT", "ETH-BTC"], seed=1, rate=10)
>>> events = m.advance(1.0)
>>> round(m.t, 6)
1.0
>>> bid, bid_qty, ask, ask_qty = m.top("binance", "ETH-BTC")
>>> bid < m.mid("ETH-BTC") < ask
True
>>> MarketModel(["BTC-USDT"], seed=1).book("kraken", "BTC-USDT") == \\
...     MarketModel(["BTC-USDT"], seed=1).book("kraken", "BTC-USDT")
True
"""
from __future__ import annotations

import math
import threading
import time
import zlib
from collections import namedtuple

import numpy as np

from hftsig import venues as registry
from hftsig._ext._simbook import levels, quote, requote_fast, requote_full

__all__ = [
    "MarketModel",
    "SymbolSpec",
    "BookUpdate",
    "Trade",
    "DEFAULT_SYMBOLS",
    "SIMULATED_ASSETS",
    "VENUES",
    "format_fixed",
]

#: venues with order books that the model simulates (those of the registry,
#: :func:`hftsig.venues.names`; CoinGecko is a reference-price source only)
VENUES = registry.names(order_book=True, simulator=True)

DEFAULT_SYMBOLS = (
    "BTC-USDT",
    "ETH-USDT",
    "ETH-BTC",
    "SOL-USDT",
    "SOL-BTC",
    "SOL-ETH",
    "BTC-USD",
    "ETH-USD",
    "SOL-USD",
    "USDT-USD",
)

# Starting USD prices (late-2020s order of magnitude; any positive value works).
_START_USD = {
    "BTC": 60000.0,
    "ETH": 3000.0,
    "SOL": 150.0,
    "BNB": 600.0,
    "XRP": 0.55,
    "ADA": 0.45,
    "DOGE": 0.12,
    "LTC": 80.0,
    "DOT": 6.5,
    "LINK": 15.0,
    "AVAX": 30.0,
    "USD": 1.0,
    "USDT": 1.0001,
    "USDC": 1.0,
    "EUR": 1.08,
    "GBP": 1.27,
}
#: assets the model has a start price for: a simulated symbol is a pair of them
SIMULATED_ASSETS = tuple(_START_USD)
# Stable and fiat assets barely move; the quote of everything is USD itself.
_LOW_VOL = {"USD": 0.0, "USDT": 0.02, "USDC": 0.02, "EUR": 0.3, "GBP": 0.3}

#: default full spread per venue, in basis points of the mid
DEFAULT_SPREAD_BPS = {"binance": 1.0, "kraken": 2.0, "coinbase": 1.5}
# Binance and Coinbase quote one more decimal than Kraken (BTCUSDT 0.01 vs BTC/USD 0.1).
_EXTRA_PRICE_DECIMALS = {"binance": 1, "kraken": 0, "coinbase": 1}

SymbolSpec = namedtuple(
    "SymbolSpec", "symbol base quote price_decimals qty_decimals tick lot"
)
SymbolSpec.__doc__ = """Trading rules of one symbol on one venue.

``tick = 10**-price_decimals`` and ``lot = 10**-qty_decimals``; book prices
and sizes are integer multiples of them (Kraken's ``price_precision`` /
``qty_precision``, Binance's ``PRICE_FILTER.tickSize`` / ``LOT_SIZE.stepSize``).
"""

BookUpdate = namedtuple(
    "BookUpdate", "venue symbol changes first_id last_id ts_ns"
)
BookUpdate.__doc__ = """Level changes of one book in one step.

``changes`` is a list of ``(side, price_ticks, qty_lots)`` with side ``+1`` bid,
``-1`` ask and ``qty_lots == 0`` removing the level; the changes carry the
update ids ``first_id .. last_id`` (one id per change, Binance ``U``/``u``).
"""

Trade = namedtuple(
    "Trade", "venue symbol trade_id price_ticks qty_lots side ts_ns"
)
Trade.__doc__ = """One trade; ``side`` is the taker side (+1 buy, -1 sell)."""


_POW10 = [10**k for k in range(19)]
_FIXED = [None] + ["%%d.%%0%dd" % k for k in range(1, 19)]


def format_fixed(n, decimals):
    """Format the integer ``n`` scaled by ``10**-decimals`` with exactly that many decimals.

    >>> format_fixed(4528520, 2), format_fixed(5, 8), format_fixed(-7, 1), format_fixed(3, 0)
    ('45285.20', '0.00000005', '-0.7', '3')
    """
    if decimals == 0:
        return str(n)
    if n < 0:
        return "-" + _FIXED[decimals] % divmod(-n, _POW10[decimals])
    return _FIXED[decimals] % divmod(n, _POW10[decimals])


def _clamp(x, lo, hi):
    return max(lo, min(hi, x))


class _Book:
    """One venue's book of one symbol: integer ticks -> integer lots."""

    __slots__ = ("bids", "asks", "update_id", "trade_id", "stats", "ts_ns", "grid")

    def __init__(self, update_id, trade_id):
        self.bids = {}
        self.asks = {}
        # side -> (grid start, gap, {grid price: lots}, [grid prices]) of the levels below the top
        self.grid = {1: None, -1: None}
        self.update_id = update_id
        self.trade_id = trade_id
        self.stats = None
        self.ts_ns = 0

    # Books are rebuilt best level first, so insertion order is book order.
    def sorted_bids(self):
        return levels(self.bids)

    def sorted_asks(self):
        return levels(self.asks)


class MarketModel:
    """Deterministic market of correlated assets quoted on several venues.

    Parameters
    ----------
    symbols : sequence of str
        Canonical ``BASE-QUOTE`` symbols; every asset needs a start price
        (built in for common coins and fiat, or given in ``prices``).
    venues : sequence of str
        Venues keeping books (default Binance, Kraken, Coinbase).
    seed : int
        Seed of the random generator; the same seed gives the same books and
        trades step for step.
    rate : float
        Steps per second: each step may change every book (book updates per
        second per symbol and venue).
    depth : int
        Levels per side of every book.
    trade_rate : float or None
        Poisson trade arrivals per second per symbol and venue (default
        ``rate / 4``).
    volatility_bps : float
        Standard deviation of a crypto asset's log return over one second, in
        basis points (stable coins and fiat move far less).
    correlation : float
        Correlation of crypto asset returns (one common factor).
    spread_bps : dict or float or None
        Full spread per venue in bps (default :data:`DEFAULT_SPREAD_BPS`).
    noise_bps : float
        Bound of each venue's quote noise around the true mid, in bps; must
        be below half of the smallest spread (checked).
    level_gap_bps : float
        Distance between book levels in bps (at least one tick).
    size_churn : float
        Probability that a level keeps its price but gets a new size in a
        step (1.0: every level changes every step, the heaviest stream).
    prices : dict or None
        Start USD prices overriding the built-in ones, e.g. ``{"XYZ": 2.0}``.

    Attributes
    ----------
    t : float
        Model time in seconds since the start.
    mispricings : list of dict
        Every injected mispricing (venue, symbol, bps, start/end model time,
        start/end wall time in ns).
    lock : threading.RLock
        Held by every mutating or reading method; servers reading the model
        from other threads rely on it.
    """

    def __init__(
        self,
        symbols=DEFAULT_SYMBOLS,
        venues=VENUES,
        *,
        seed=0,
        rate=20.0,
        depth=20,
        trade_rate=None,
        volatility_bps=2.0,
        correlation=0.7,
        spread_bps=None,
        noise_bps=0.2,
        level_gap_bps=0.5,
        size_churn=0.05,
        prices=None,
    ):
        symbols = [str(s).upper() for s in symbols]
        if not symbols:
            raise ValueError("symbols must not be empty")
        for s in symbols:
            if s.count("-") != 1 or s.startswith("-") or s.endswith("-"):
                raise ValueError(f"symbols: {s!r} is not in canonical BASE-QUOTE form")
        if len(set(symbols)) != len(symbols):
            raise ValueError("symbols: duplicates")
        venues = tuple(venues)
        for v in venues:
            if v not in VENUES:
                raise ValueError(f"venues: unknown venue {v!r}; expected some of {VENUES}")
        if not 0.0 <= size_churn <= 1.0:
            raise ValueError(f"size_churn must be in [0, 1], got {size_churn!r}")
        if not rate > 0:
            raise ValueError(f"rate must be positive, got {rate!r}")
        depth = int(depth)
        if depth < 1:
            raise ValueError(f"depth must be >= 1, got {depth!r}")
        start = dict(_START_USD)
        start.update(prices or {})
        assets = []
        for s in symbols:
            for a in s.split("-"):
                if a not in start:
                    raise ValueError(f"symbols: no start price for asset {a!r}; pass prices={{{a!r}: ...}}")
                if a not in assets:
                    assets.append(a)
        if isinstance(spread_bps, (int, float)):
            spread = {v: float(spread_bps) for v in venues}
        else:
            spread = dict(DEFAULT_SPREAD_BPS)
            spread.update(spread_bps or {})
        min_half = min(spread[v] for v in venues) / 2.0
        if not 0 <= noise_bps < min_half:
            raise ValueError(
                f"noise_bps must be in [0, {min_half}) (half the smallest spread), got {noise_bps!r}"
            )

        self.symbols = tuple(symbols)
        self.venues = venues
        self.assets = tuple(assets)
        self.seed = seed
        self.rate = float(rate)
        self.dt = 1.0 / self.rate
        self.depth = depth
        self.trade_rate = self.rate / 4.0 if trade_rate is None else float(trade_rate)
        self.correlation = float(correlation)
        self.spread_bps = spread
        self.noise_bps = float(noise_bps)
        self.level_gap_bps = float(level_gap_bps)
        self.size_churn = float(size_churn)
        self.lock = threading.RLock()
        self.t = 0.0
        self.steps = 0
        self.t0_ns = time.time_ns()
        self.mispricings = []
        self.n_book_updates = 0
        self.n_trades = 0

        self._rng = np.random.Generator(np.random.PCG64(seed))
        self._log_usd = np.log(np.array([start[a] for a in assets]))
        self._log_usd0 = self._log_usd.copy()
        self._vol = np.array(
            [(_LOW_VOL.get(a, volatility_bps)) * 1e-4 for a in assets]
        )
        self._asset_index = {a: i for i, a in enumerate(assets)}
        self._pairs = [(self._asset_index[s.split("-")[0]], self._asset_index[s.split("-")[1]]) for s in symbols]
        self._noise = np.zeros((len(venues), len(symbols)))
        self._shift = {}  # (venue, symbol) -> list of active mispricing records
        self.specs = {}
        self._books = {}
        for vi, v in enumerate(venues):
            for si, s in enumerate(symbols):
                base, quote = s.split("-")
                mid = start[base] / start[quote]
                d0 = int(_clamp(round(-math.log10(mid * 3e-6)), 0, 8))
                pd = min(d0 + _EXTRA_PRICE_DECIMALS[v], 10)
                qd = int(_clamp(round(math.log10(start[base])) + 4, 0, 8))
                self.specs[v, s] = SymbolSpec(s, base, quote, pd, qd, 10.0 ** -pd, 10.0 ** -qd)
                # Distinct, deterministic id ranges per book so ids never look alike.
                b = _Book(update_id=1_000_000 * (vi + 1) + 10_000 * si, trade_id=100_000 * (vi + 1) + 1_000 * si)
                b.stats = {"open": mid, "high": mid, "low": mid, "volume": 0.0, "notional": 0.0, "last": mid}
                self._books[v, s] = b
        with self.lock:
            for v in venues:
                for s in symbols:
                    self._rebuild(v, s, initial=True)

    # ------------------------------------------------------------------ truth
    def spec(self, venue, symbol):
        """The :class:`SymbolSpec` of ``symbol`` on ``venue``."""
        try:
            return self.specs[venue, symbol]
        except KeyError:
            raise KeyError(f"unknown venue/symbol {venue!r}/{symbol!r}") from None

    def usd_price(self, asset):
        """True USD price of ``asset`` now."""
        with self.lock:
            return float(math.exp(self._log_usd[self._asset_index[asset]]))

    def mid(self, symbol):
        """True mid of ``symbol`` (no venue noise, no mispricing)."""
        base, quote = symbol.split("-")
        with self.lock:
            i, j = self._asset_index[base], self._asset_index[quote]
            return float(math.exp(self._log_usd[i] - self._log_usd[j]))

    def book(self, venue, symbol, depth=None):
        """The venue's book now.

        Returns
        -------
        dict
            ``{"bids": [(price, qty), ...] best first, "asks": [...],
            "update_id": int, "ts_ns": int}`` with float prices and sizes.
        """
        spec = self.spec(venue, symbol)
        with self.lock:
            b = self._books[venue, symbol]
            bids = b.sorted_bids()[:depth]
            asks = b.sorted_asks()[:depth]
            uid, ts = b.update_id, b.ts_ns
        pt, lt = spec.tick, spec.lot
        return {
            "bids": [(round(p * pt, spec.price_decimals), round(q * lt, spec.qty_decimals)) for p, q in bids],
            "asks": [(round(p * pt, spec.price_decimals), round(q * lt, spec.qty_decimals)) for p, q in asks],
            "update_id": uid,
            "ts_ns": ts,
        }

    def book_ticks(self, venue, symbol):
        """``(bids, asks, update_id)`` with integer (ticks, lots) levels, best first."""
        with self.lock:
            b = self._books[venue, symbol]
            return b.sorted_bids(), b.sorted_asks(), b.update_id

    def top_ticks(self, venue, symbol):
        """``((bid ticks, lots), (ask ticks, lots), update_id)`` of the venue's book now."""
        with self.lock:
            b = self._books[venue, symbol]
            for bid in b.bids.items():
                break
            for ask in b.asks.items():
                break
            return bid, ask, b.update_id

    def top(self, venue, symbol):
        """``(bid, bid_qty, ask, ask_qty)`` of the venue's book now."""
        spec = self.spec(venue, symbol)
        with self.lock:
            b = self._books[venue, symbol]
            bp, bq = next(iter(b.bids.items()))
            ap, aq = next(iter(b.asks.items()))
        return (
            round(bp * spec.tick, spec.price_decimals),
            round(bq * spec.lot, spec.qty_decimals),
            round(ap * spec.tick, spec.price_decimals),
            round(aq * spec.lot, spec.qty_decimals),
        )

    def nbbo(self, symbol):
        """Best bid and offer across venues now.

        Returns
        -------
        dict
            ``bid``, ``bid_qty``, ``bid_venue``, ``ask``, ``ask_qty``, ``ask_venue``.
        """
        best = None
        with self.lock:
            for v in self.venues:
                bid, bq, ask, aq = self.top(v, symbol)
                if best is None:
                    best = {"bid": bid, "bid_qty": bq, "bid_venue": v, "ask": ask, "ask_qty": aq, "ask_venue": v}
                    continue
                if bid > best["bid"]:
                    best.update(bid=bid, bid_qty=bq, bid_venue=v)
                if ask < best["ask"]:
                    best.update(ask=ask, ask_qty=aq, ask_venue=v)
        return best

    def stats(self, venue, symbol):
        """24-hour-style statistics of the venue's symbol since the start
        (open, high, low, last, volume, vwap)."""
        with self.lock:
            st = dict(self._books[venue, symbol].stats)
        st["vwap"] = st["notional"] / st["volume"] if st["volume"] > 0 else st["open"]
        return st

    # ------------------------------------------------------------- mispricing
    def inject_mispricing(self, venue, symbol, bps, duration_s, now_ns=None):
        """Shift ``venue``'s quotes of ``symbol`` by ``bps`` basis points for
        ``duration_s`` seconds of model time, starting now.

        The books move at the next step (within ``1 / rate`` seconds), so the
        servers send the change like any other book update.

        The record appended to :attr:`mispricings` (and returned) carries the
        venue, symbol, shift, start/end model time and start/end wall time in
        ns (wall end = wall start + duration).
        """
        self.spec(venue, symbol)
        if not duration_s > 0:
            raise ValueError(f"duration_s must be positive, got {duration_s!r}")
        bps = float(bps)
        now_ns = time.time_ns() if now_ns is None else int(now_ns)
        with self.lock:
            rec = {
                "exchange": venue,
                "symbol": symbol,
                "bps": bps,
                "start": self.t,
                "end": self.t + float(duration_s),
                "start_ns": now_ns,
                "end_ns": now_ns + int(duration_s * 1e9),
            }
            self.mispricings.append(rec)
            self._shift.setdefault((venue, symbol), []).append(rec)
        return rec

    def _shift_bps(self, venue, symbol):
        recs = self._shift.get((venue, symbol))
        if not recs:
            return 0.0
        live = [r for r in recs if r["start"] <= self.t < r["end"]]
        if len(live) != len(recs):
            self._shift[venue, symbol] = live
        return sum(r["bps"] for r in live)

    # ------------------------------------------------------------------- clock
    def step(self, now_ns=None):
        """Advance the clock by ``1 / rate`` and return the events of that step.

        Parameters
        ----------
        now_ns : int or None
            Wall-clock stamp of the events (default: ``t0_ns + t``); the
            content of the events does not depend on it.

        Returns
        -------
        list of :class:`BookUpdate` and :class:`Trade`
        """
        with self.lock:
            return self.build_units(self.begin_step(), now_ns)

    def begin_step(self):
        """Advance the clock and draw a step's randomness; return its book units.

        A step in two halves, for a simulator that releases a step's events in
        slices: this half moves the prices (cheap), :meth:`build_units` requotes
        the books of the given units and makes their trades (the costly part),
        so each slice pays only for its own books.  ``step()`` is
        ``build_units(begin_step())``; any split of the units, built in any
        order before the next ``begin_step``, gives the same market.

        Returns
        -------
        list of int
            One unit per (venue, symbol) book, in book order.
        """
        with self.lock:
            if self._open_units:
                raise RuntimeError(f"{len(self._open_units)} book units of step {self.steps} "
                                   "are not built yet (build_units)")
            rng = self._rng
            dt = self.dt
            self.steps += 1
            self.t = self.steps * dt
            n_assets = len(self.assets)
            z_common = rng.standard_normal()
            z = rng.standard_normal(n_assets)
            rho = self.correlation
            shock = math.sqrt(rho) * z_common + math.sqrt(1.0 - rho) * z
            self._log_usd += self._vol * math.sqrt(dt) * shock
            # Stable coins and fiat revert to where they started (a basis, not a trend).
            stable = self._vol < 5e-5
            self._log_usd[stable] += 0.2 * dt * (self._log_usd0[stable] - self._log_usd[stable])
            # Venue noise: bounded AR(1) in bps.
            nz = rng.standard_normal(self._noise.shape)
            self._noise = np.clip(0.9 * self._noise + 0.3 * self.noise_bps * nz, -self.noise_bps, self.noise_bps)
            n_v, n_s = len(self.venues), len(self.symbols)
            # one row per book unit (venue-major, as the units)
            size_u = rng.random((n_v * n_s, 2 * self.depth))
            size_z = rng.standard_normal((n_v * n_s, 2 * self.depth))
            n_trades = rng.poisson(self.trade_rate * dt, (n_v, n_s)).ravel()
            # Two uniforms per trade (side, size), drawn now in book order: the
            # same stream as drawing them trade by trade, whatever order the
            # units are built in later.
            trade_u = rng.random(2 * int(n_trades.sum()))
            ends = np.cumsum(2 * n_trades).tolist()
            # made Python lists unit by unit in build_units: a slice pays for its own
            self._draws = (size_u, size_z, trade_u, [0] + ends)
            # Python floats of the same doubles: the arithmetic below is unchanged, only cheaper.
            self._step_state = (self._log_usd.tolist(), self._noise.tolist())
            self._open_units = set(range(n_v * n_s))
            return list(range(n_v * n_s))

    def build_units(self, units, now_ns=None):
        """Requote the books of ``units`` (from :meth:`begin_step`) and make their
        trades; return their events, stamped ``now_ns`` (default ``t0_ns + t``)."""
        with self.lock:
            if now_ns is None:
                now_ns = self.t0_ns + int(self.t * 1e9)
            open_units = self._open_units
            n_s = len(self.symbols)
            events = []
            for u in units:
                if u not in open_units:
                    raise ValueError(f"book unit {u!r} is not open in step {self.steps}")
                open_units.discard(u)
                vi, si = divmod(u, n_s)
                v, s = self.venues[vi], self.symbols[si]
                all_u, all_z, all_trade, ends = self._draws
                size_u, size_z = all_u[u].tolist(), all_z[u].tolist()
                trade_u = all_trade[ends[u]:ends[u + 1]].tolist()
                ev = self._rebuild(v, s, now_ns=now_ns, vi=vi, si=si, size_u=size_u, size_z=size_z)
                if ev is not None:
                    events.append(ev)
                    self.n_book_updates += 1
                for k in range(0, len(trade_u), 2):
                    events.append(self._trade(v, s, now_ns, trade_u[k], trade_u[k + 1]))
                    self.n_trades += 1
            if not open_units:
                self._step_state = self._draws = None
            return events

    def open_units(self):
        """Book units of the current step not built yet (empty between steps)."""
        with self.lock:
            return sorted(self._open_units)

    def advance(self, seconds, now_ns=None):
        """Step until ``seconds`` more of model time have passed; return all events."""
        events = []
        target = self.steps + int(round(float(seconds) * self.rate))
        while self.steps < target:
            events.extend(self.step(now_ns))
        return events

    # ----------------------------------------------------------------- internals
    _step_state = None  # (log USD prices, venue noise) as lists while a step is open
    _draws = None  # (size uniforms, size normals, trade uniforms, trade offsets) of the open step
    _open_units = frozenset()  # book units of the open step not built yet

    def _prices(self, vi):
        """(log USD prices, venue ``vi``'s noise in bps): a step's lists while it runs."""
        st = self._step_state
        if st is None:
            return self._log_usd, self._noise[vi]
        return st[0], st[1][vi]

    def _venue_mid(self, v, s, vi=None, si=None):
        if vi is None:
            vi, si = self.venues.index(v), self.symbols.index(s)
        i, j = self._pairs[si]
        log_usd, noise = self._prices(vi)
        log_mid = log_usd[i] - log_usd[j]
        bps = noise[si] + self._shift_bps(v, s)
        return math.exp(log_mid) * (1.0 + bps * 1e-4)

    def _rebuild(self, v, s, *, now_ns=None, initial=False, vi=None, si=None, size_u=None, size_z=None):
        """Requote one book around its venue mid; return the BookUpdate (or None)."""
        spec = self.specs[v, s]
        b = self._books[v, s]
        if vi is None:
            vi, si = self.venues.index(v), self.symbols.index(s)
        i, j = self._pairs[si]
        log_usd, noise = self._prices(vi)
        # mid, spread, grid and mean size as _venue_mid and the Python of old did them
        best_bid, best_ask, gap, mean_lots, bid_grid, ask_grid = quote(
            log_usd[i], log_usd[j], noise[si] + self._shift_bps(v, s), self.spread_bps[v], self.level_gap_bps,
            spec.tick, spec.lot)
        depth = self.depth
        if size_u is None:
            # Initial build and out-of-step requotes draw from their own stream
            # so the step stream (and determinism) is unaffected.
            g = np.random.Generator(np.random.PCG64([self.seed, zlib.crc32(f"{v}/{s}".encode()), self.steps, len(self.mispricings)]))
            size_u = g.random(2 * depth).tolist()
            size_z = g.standard_normal(2 * depth).tolist()
        changes = []
        # The top level sits at the quote; deeper levels sit on a fixed price
        # grid (bid_grid, ask_grid every gap ticks), so a small move of the mid
        # changes a few levels, not all.
        keep = 1.0 - self.size_churn
        if initial or self._force_full or bid_grid - gap * (depth - 2) <= 0:
            fast = False
        else:
            gb, ga = b.grid[1], b.grid[-1]
            fast = gb is not None and ga is not None and gb[0] == bid_grid and gb[1] == gap \
                and ga[0] == ask_grid and ga[1] == gap
        if fast:
            # Same grid as before: only the top level and the levels whose size
            # churns can change; the result equals the full requote below.
            gb, ga = b.grid[1], b.grid[-1]
            b.bids = requote_fast(b.bids, 1, best_bid, mean_lots, size_u, size_z, 0, keep, depth, gb[2], gb[3], changes)
            b.asks = requote_fast(b.asks, -1, best_ask, mean_lots, size_u, size_z, depth, keep, depth, ga[2], ga[3],
                                  changes)
        else:
            # Levels are inserted best first, so each dict iterates in book order.
            b.bids, levels = requote_full(b.bids, 1, best_bid, bid_grid, gap, mean_lots, size_u, size_z, 0, keep,
                                          depth, initial, changes)
            b.grid[1] = (bid_grid, gap, levels, list(levels))
            b.asks, levels = requote_full(b.asks, -1, best_ask, ask_grid, gap, mean_lots, size_u, size_z, depth, keep,
                                          depth, initial, changes)
            b.grid[-1] = (ask_grid, gap, levels, list(levels))
        if initial:
            return None
        if not changes:
            return None
        first = b.update_id + 1
        b.update_id += len(changes)
        b.ts_ns = now_ns if now_ns is not None else self.t0_ns + int(self.t * 1e9)
        return BookUpdate(v, s, changes, first, b.update_id, b.ts_ns)

    _force_full = False  # tests set it to compare the fast requote with the full one

    def _trade(self, v, s, now_ns, u_side, u_size):
        spec = self.specs[v, s]
        b = self._books[v, s]
        side = 1 if u_side < 0.5 else -1
        p, top_q = next(iter((b.asks if side == 1 else b.bids).items()))
        q = max(1, int(top_q * u_size * 0.5))
        b.trade_id += 1
        st = b.stats
        px = p * spec.tick
        qty = q * spec.lot
        st["last"] = px
        st["high"] = max(st["high"], px)
        st["low"] = min(st["low"], px)
        st["volume"] += qty
        st["notional"] += px * qty
        return Trade(v, s, b.trade_id, p, q, side, now_ns)
