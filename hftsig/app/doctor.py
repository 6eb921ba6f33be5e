"""``hftsig doctor``: a self-check of the market-data path against the venues.

For a few seconds the doctor records every frame each venue sends (through
the connectors themselves, so the endpoints, subscriptions, heartbeats and
REST snapshots are the ones a session uses), then judges the recording with
checks that know nothing of the connectors' own bookkeeping:

================ ==============================================================
check            passes when
================ ==============================================================
frames parse     every frame goes through :class:`hftsig.market.normalize.Normalizer`
book sync        Binance: after the REST depth snapshot every diff continues
                 the ``U``/``u`` chain (no gap) and the book never crosses
checksums        Kraken: every book message's CRC32 equals the checksum of the
                 book built from the messages (pair precisions from the
                 ``instrument`` channel)
sequence         Coinbase: ``sequence_num`` goes up by one on every frame
trade sides      a trade printed at or above the best ask of the book at its
                 arrival is a buy (the aggressor's side), at or below the best
                 bid a sell; fewer than half may disagree: books and trades
                 come on separate streams, so a trade can arrive after the book
                 moved past it (a few disagree), while reading the maker's
                 side as the aggressor's makes nearly all disagree
prices           CoinGecko: every price is positive and finite
clock offset     median of ``ts_recv - ts_event`` is within 2 s (CoinGecko: the
                 price age, within 600 s)
================ ==============================================================

The checks take a list of :class:`Frame` (payload, receive time, and for a
REST depth snapshot its symbol), so they run the same on a live capture
(:func:`capture`), on the loopback simulators (``--simulate``) and on the
recorded sessions in ``tests/data/real``.  A check with nothing to judge
(no trade outside the spread in the window) is ``SKIP`` and does not fail.

Examples
--------
>>> frames = [Frame(b'{"bitcoin":{"usd":67187.33,"last_updated_at":1711356300}}',
...                 ts_recv=1711356301_000_000_000, source="rest")]
>>> [(r.check, r.status) for r in check_frames("coingecko", frames)]
[('frames parse', 'PASS'), ('prices', 'PASS'), ('clock offset', 'PASS')]
"""
from __future__ import annotations

import dataclasses
import json
import math
import statistics
import sys
import threading
import time

import numpy as np

from hftsig import venues as registry
from hftsig._ext._tickscan import message_parts
from hftsig.market.book import OrderBook
from hftsig.market.normalize import Normalizer
from hftsig.market.ticks import KIND_BOOK_DELTA, KIND_PRICE, KIND_TRADE

__all__ = [
    "VENUES",
    "DEFAULT_SYMBOLS",
    "Frame",
    "CheckResult",
    "check_binance",
    "check_kraken",
    "check_coinbase",
    "check_coingecko",
    "check_frames",
    "capture",
    "run_doctor",
    "render_table",
]

PASS, FAIL, SKIP = "PASS", "FAIL", "SKIP"
#: largest |median(ts_recv - ts_event)| taken as a healthy clock, in ns
MAX_CLOCK_OFFSET_NS = 2_000_000_000
#: CoinGecko refreshes prices about once a minute; older than this is stale (the connector's default)
MAX_PRICE_AGE_NS = 600_000_000_000
#: share of judged trades disagreeing with the book that fails the check
MAX_SIDE_DISAGREEMENT = 0.5
#: Kraken book depth the doctor subscribes to (and the recorded sessions use)
KRAKEN_DEPTH = 10


@dataclasses.dataclass(frozen=True)
class Frame:
    """One recorded message.

    Attributes
    ----------
    data : bytes or str
        The websocket frame or REST body, as received.
    ts_recv : int or None
        Receive time in ns since the epoch; None when unknown (the clock
        offset check is then skipped).
    source : {"ws", "rest"}
        Where it came from.
    symbol : str or None
        For a Binance REST depth snapshot, the exchange symbol it was asked
        for (the body does not name it).
    """

    data: bytes | str
    ts_recv: int | None = None
    source: str = "ws"
    symbol: str | None = None


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """Outcome of one check on one venue: ``status`` is PASS, FAIL or SKIP."""

    venue: str
    check: str
    status: str
    detail: str

    @property
    def ok(self):
        """False only for a failed check (a skipped one had nothing to judge)."""
        return self.status != FAIL


# -- shared pieces ---------------------------------------------------------------------------
class _Parsed:
    """Every frame through one Normalizer, in order, with what it said about each."""

    def __init__(self, venue, frames):
        self.norm = Normalizer(venue)
        # (frame, ticks, last_type, last_channel, last_seq, last_seq_first, last_symbol)
        self.items = []
        self.malformed = []  # (index, error)
        for i, f in enumerate(frames):
            if not isinstance(f, Frame):
                raise TypeError(f"frames must hold Frame objects, got {type(f).__name__} at {i}")
            ts = f.ts_recv if f.ts_recv is not None else 0
            try:
                ticks = self.norm.parse(f.data, ts, f.symbol).copy()
            except ValueError as exc:  # MalformedMessage is a ValueError
                self.malformed.append((i, exc))
                continue
            n = self.norm
            self.items.append((f, ticks, n.last_type, n.last_channel, int(n.last_seq),
                               int(n.last_seq_first), n.last_symbol))

    def result(self, venue, n_frames):
        if n_frames == 0:
            return CheckResult(venue, "frames parse", FAIL, "no frames received")
        if self.malformed:
            i, exc = self.malformed[0]
            return CheckResult(venue, "frames parse", FAIL,
                               f"{len(self.malformed)} of {n_frames} malformed; first (#{i}): "
                               f"{_short(exc)}")
        return CheckResult(venue, "frames parse", PASS, f"{n_frames} frames, 0 malformed")


def _short(value, n=120):
    text = str(value)
    return text if len(text) <= n else text[: n - 3] + "..."


class _TradeJudge:
    """Trade side against the book at the trade's arrival."""

    def __init__(self):
        self.agree = 0
        self.disagree = 0
        self.inside = 0
        self.example = None

    def judge(self, book, price, side):
        bid = book.best_bid()[0]
        ask = book.best_ask()[0]
        if math.isnan(bid) or math.isnan(ask):
            return
        if price >= ask:
            expected = 1
        elif price <= bid:
            expected = -1
        else:
            self.inside += 1
            return
        if side == expected:
            self.agree += 1
        else:
            self.disagree += 1
            if self.example is None:
                self.example = (book.symbol, price, bid, ask, side)

    def result(self, venue):
        judged = self.agree + self.disagree
        if judged == 0:
            return CheckResult(venue, "trade sides", SKIP,
                               f"no trade outside the spread to judge ({self.inside} inside)")
        detail = (f"{self.agree} of {judged} trades outside the spread agree with the book"
                  f" ({self.inside} inside)")
        if self.disagree >= MAX_SIDE_DISAGREEMENT * judged:
            sym, px, bid, ask, side = self.example
            word = "buy" if side > 0 else "sell"
            return CheckResult(venue, "trade sides", FAIL,
                               f"{detail}; e.g. {sym} {word} at {px:.12g} with bid {bid:.12g} ask {ask:.12g}")
        return CheckResult(venue, "trade sides", PASS, detail)


def _clock_result(venue, offsets, limit_ns=MAX_CLOCK_OFFSET_NS, what="ts_recv - ts_event"):
    if not offsets:
        return CheckResult(venue, "clock offset", SKIP, "no receive/event time pairs")
    med = statistics.median(offsets)
    detail = f"median {what} {med / 1e6:+.1f} ms over {len(offsets)} ticks"
    if abs(med) > limit_ns:
        return CheckResult(venue, "clock offset", FAIL,
                           f"{detail} (limit {limit_ns / 1e9:g} s: is the system clock synced?)")
    return CheckResult(venue, "clock offset", PASS, detail)


def _event_offsets(frame, ticks, kinds=(KIND_TRADE, KIND_BOOK_DELTA)):
    """``ts_recv - ts_event`` of the ticks that carry an exchange event time."""
    if frame.ts_recv is None or not len(ticks):
        return []
    sel = np.isin(ticks["kind"], kinds) & (ticks["ts_event"] > 0) & (ticks["ts_event"] != ticks["ts_recv"])
    return [int(x) for x in (ticks["ts_recv"][sel] - ticks["ts_event"][sel])]


def _books(venue, depth=None):
    cache = {}

    def get(symbol):
        book = cache.get(symbol)
        if book is None:
            book = cache[symbol] = OrderBook(venue, symbol, depth=depth)
        return book

    return get


def _trade_ticks(ticks):
    return [(bytes(s).decode(), float(p), int(sd))
            for s, p, sd in zip(ticks["symbol"], ticks["price"], ticks["side"])]


# -- Binance -----------------------------------------------------------------------------------
def check_binance(frames):
    """Checks of a Binance session: parse, book sync (snapshot + diff chain), trade sides, clock.

    Parameters
    ----------
    frames : list of Frame
        Websocket frames (raw or combined-stream) and REST ``/api/v3/depth``
        bodies (``source="rest"``, ``symbol`` set) in arrival order.

    Returns
    -------
    list of CheckResult
    """
    frames = list(frames)
    parsed = _Parsed("binance", frames)
    book = _books("binance")
    state = {}  # symbol -> {"synced", "local", "buffer"}
    applied = gaps = crossed = stale_snapshots = 0
    judge = _TradeJudge()
    offsets = []

    def st(sym):
        return state.setdefault(sym, {"synced": False, "local": -1, "buffer": []})

    def apply_diff(sym, s, first, last, ticks):
        nonlocal applied, gaps, crossed
        if last <= s["local"]:
            return  # already in the book
        if first > s["local"] + 1:
            gaps += 1
            s["synced"], s["local"], s["buffer"] = False, -1, [(first, last, ticks)]
            return
        b = book(sym)
        b.apply(ticks)
        s["local"] = last
        applied += 1
        if b.best_bid()[0] >= b.best_ask()[0]:
            crossed += 1

    for f, ticks, kind, channel, seq, seq_first, last_symbol in parsed.items:
        if kind != "data":
            continue
        if f.source == "rest":
            if not len(ticks):
                continue
            sym = bytes(ticks["symbol"][0]).decode()
            s = st(sym)
            if s["synced"]:
                continue  # a second snapshot while in sync: nothing to learn
            if not s["buffer"] or seq < s["buffer"][0][0]:
                stale_snapshots += 1  # older than the first buffered diff: a connector fetches again
                continue
            book(sym).apply(ticks)
            s["synced"], s["local"] = True, seq
            pending, s["buffer"] = s["buffer"], []
            for first, last, dticks in pending:
                if s["synced"]:
                    apply_diff(sym, s, first, last, dticks)
                else:
                    s["buffer"].append((first, last, dticks))
            continue
        if channel == "depthUpdate":
            sym = last_symbol if not len(ticks) else bytes(ticks["symbol"][0]).decode()
            s = st(sym)
            if s["synced"]:
                apply_diff(sym, s, seq_first, seq, ticks)
            else:
                s["buffer"].append((seq_first, seq, ticks))
            offsets += _event_offsets(f, ticks)
            continue
        trades = ticks[ticks["kind"] == KIND_TRADE]
        for sym, price, side in _trade_ticks(trades):
            if st(sym)["synced"]:
                judge.judge(book(sym), price, side)
        offsets += _event_offsets(f, trades)

    out = [parsed.result("binance", len(frames))]
    synced = sorted(s for s, v in state.items() if v["synced"])
    detail = (f"{len(synced)} of {len(state)} symbols in sync, {applied} diffs applied, "
              f"{gaps} gaps, {crossed} crossed books")
    if stale_snapshots:
        detail += f", {stale_snapshots} snapshots older than the stream"
    if not state:
        out.append(CheckResult("binance", "book sync", FAIL, "no depth data received"))
    elif gaps or crossed or not synced:
        out.append(CheckResult("binance", "book sync", FAIL, detail))
    else:
        out.append(CheckResult("binance", "book sync", PASS, detail))
    out.append(judge.result("binance"))
    out.append(_clock_result("binance", offsets))
    return out


# -- Kraken --------------------------------------------------------------------------------------
def check_kraken(frames, depth=KRAKEN_DEPTH, precisions=None):
    """Checks of a Kraken WebSocket v2 session: parse, book checksums, trade sides, clock.

    Parameters
    ----------
    frames : list of Frame
        Websocket frames in arrival order; an ``instrument`` snapshot among
        them supplies the pair precisions.
    depth : int
        The subscribed book depth (the book is cut to it after each message).
    precisions : dict, optional
        ``{canonical symbol: (price_decimals, qty_decimals)}`` used where the
        frames bring none.

    Returns
    -------
    list of CheckResult
    """
    frames = list(frames)
    parsed = _Parsed("kraken", frames)
    known = dict(precisions or {})
    book = _books("kraken", depth)
    verified = mismatched = unknown = 0
    first_bad = None
    judge = _TradeJudge()
    offsets = []
    for f, ticks, kind, channel, _seq, _first, _sym in parsed.items:
        if kind != "data":
            continue
        if channel == "instrument":
            known.update(parsed.norm.precisions)
            continue
        if channel == "book" and len(ticks):
            for start, stop, sym, _k, checksum in message_parts(ticks):
                symbol = sym.decode()
                b = book(symbol)
                b.apply(ticks[start:stop])
                if symbol not in known:
                    unknown += 1
                    continue
                got = int(b.kraken_checksum(*known[symbol]))
                if got == int(checksum):
                    verified += 1
                else:
                    mismatched += 1
                    if first_bad is None:
                        first_bad = (symbol, got, int(checksum))
            offsets += _event_offsets(f, ticks)
        elif channel == "trade":
            for sym, price, side in _trade_ticks(ticks[ticks["kind"] == KIND_TRADE]):
                judge.judge(book(sym), price, side)
            offsets += _event_offsets(f, ticks)

    out = [parsed.result("kraken", len(frames))]
    total = verified + mismatched + unknown
    detail = f"{verified} of {total} book messages verified"
    if total == 0:
        out.append(CheckResult("kraken", "checksums", FAIL, "no book messages received"))
    elif mismatched:
        sym, got, want = first_bad
        out.append(CheckResult("kraken", "checksums", FAIL,
                               f"{detail}, {mismatched} mismatched (first: {sym} ours {got}, "
                               f"Kraken's {want})"))
    elif unknown:
        out.append(CheckResult("kraken", "checksums", FAIL,
                               f"{detail}; {unknown} without the pair's precisions (no usable "
                               "instrument snapshot)"))
    else:
        out.append(CheckResult("kraken", "checksums", PASS, detail))
    out.append(judge.result("kraken"))
    out.append(_clock_result("kraken", offsets))
    return out


# -- Coinbase ------------------------------------------------------------------------------------
def _update_trade_mask(data, n_trades):
    """Which of a market_trades frame's trades are live (``update`` events, not the
    ``snapshot`` of past trades a subscription opens with); None if it cannot tell."""
    try:
        msg = json.loads(data)
        mask = [ev.get("type") == "update" for ev in msg.get("events", [])
                for _ in ev.get("trades", [])]
    except (ValueError, AttributeError, TypeError):
        return None
    return mask if len(mask) == n_trades else None


def check_coinbase(frames):
    """Checks of a Coinbase Advanced Trade session: parse, sequence, trade sides, clock.

    Parameters
    ----------
    frames : list of Frame
        Websocket frames of one connection in arrival order.

    Returns
    -------
    list of CheckResult
    """
    frames = list(frames)
    parsed = _Parsed("coinbase", frames)
    book = _books("coinbase")
    judge = _TradeJudge()
    offsets = []
    prev = None
    gaps = []
    numbered = 0
    for f, ticks, kind, channel, seq, _first, _sym in parsed.items:
        if seq >= 0:
            numbered += 1
            if prev is not None and seq != prev + 1:
                gaps.append((prev, seq))
            prev = seq
        if kind != "data" or not len(ticks):
            continue
        if channel == "l2_data":
            for start, stop, sym, _k, _c in message_parts(ticks):
                book(sym.decode()).apply(ticks[start:stop])
            offsets += _event_offsets(f, ticks)
        elif channel == "market_trades":
            trades = ticks[ticks["kind"] == KIND_TRADE]
            mask = _update_trade_mask(f.data, len(trades))
            if mask is None:
                continue
            trades = trades[np.asarray(mask, dtype=bool)]
            for sym, price, side in _trade_ticks(trades):
                judge.judge(book(sym), price, side)
            offsets += _event_offsets(f, trades)

    out = [parsed.result("coinbase", len(frames))]
    if numbered == 0:
        out.append(CheckResult("coinbase", "sequence", FAIL, "no numbered frames received"))
    elif gaps:
        a, b = gaps[0]
        out.append(CheckResult("coinbase", "sequence", FAIL,
                               f"{len(gaps)} gaps in {numbered} frames (first: {a} -> {b})"))
    else:
        out.append(CheckResult("coinbase", "sequence", PASS,
                               f"{numbered} frames numbered without a gap"))
    out.append(judge.result("coinbase"))
    out.append(_clock_result("coinbase", offsets))
    return out


# -- CoinGecko -------------------------------------------------------------------------------------
def check_coingecko(frames):
    """Checks of CoinGecko ``/simple/price`` bodies: parse, prices, price age.

    Parameters
    ----------
    frames : list of Frame
        Response bodies in arrival order.

    Returns
    -------
    list of CheckResult
    """
    frames = list(frames)
    parsed = _Parsed("coingecko", frames)
    n = bad = 0
    ages = []
    for f, ticks, kind, _channel, _seq, _first, _sym in parsed.items:
        prices = ticks[ticks["kind"] == KIND_PRICE]
        n += len(prices)
        bad += int((~(np.isfinite(prices["price"]) & (prices["price"] > 0))).sum())
        if f.ts_recv is not None:
            sel = prices["ts_event"] != prices["ts_recv"]  # without last_updated_at: receive time
            ages += [int(x) for x in (prices["ts_recv"][sel] - prices["ts_event"][sel])]
    out = [parsed.result("coingecko", len(frames))]
    if n == 0:
        out.append(CheckResult("coingecko", "prices", FAIL, "no prices received"))
    elif bad:
        out.append(CheckResult("coingecko", "prices", FAIL, f"{bad} of {n} prices not positive"))
    else:
        out.append(CheckResult("coingecko", "prices", PASS, f"{n} prices, all positive"))
    out.append(_clock_result("coingecko", ages, MAX_PRICE_AGE_NS, "price age"))
    return out


_CHECKS = {"binance": check_binance, "kraken": check_kraken, "coinbase": check_coinbase,
           "coingecko": check_coingecko}
#: venues of the registry (:mod:`hftsig.venues`) the doctor has checks for
VENUES = tuple(name for name in registry.names() if name in _CHECKS)
#: symbols the doctor watches on each venue (each venue's ``example_symbols``)
DEFAULT_SYMBOLS = {name: registry.get(name).example_symbols for name in VENUES}


def check_frames(venue, frames, **kwargs):
    """Run the checks of ``venue`` on recorded ``frames`` (see the ``check_*`` functions)."""
    if venue not in _CHECKS:
        raise ValueError(f"venue must be one of {VENUES}, got {venue!r}")
    return _CHECKS[venue](frames, **kwargs)


# -- capture -------------------------------------------------------------------------------------
def _recording_connector(venue, symbols, frames, endpoints, seconds):
    """The venue's connector, with every frame it receives (and REST body it fetches)
    appended to ``frames``: the doctor sees exactly what a session sees."""
    from hftsig import connectors

    lock = threading.Lock()

    def keep(frame):
        with lock:
            frames.append(frame)

    kw = {k: v for k, v in (endpoints or {}).items() if v is not None}
    if venue == "binance":
        class Recording(connectors.BinanceConnector):
            def _on_message(self, raw, ts_recv):
                keep(Frame(raw, ts_recv))
                super()._on_message(raw, ts_recv)

            def _fetch_snapshot(self, symbol):
                body, ts_recv = super()._fetch_snapshot(symbol)
                keep(Frame(body, ts_recv, "rest", self._venue[symbol]))
                return body, ts_recv

        return Recording(symbols, channels=("trade", "depth"), depth_limit=100, **kw)
    if venue == "kraken":
        class Recording(connectors.KrakenConnector):
            def _on_message(self, raw, ts_recv):
                keep(Frame(raw, ts_recv))
                super()._on_message(raw, ts_recv)

        return Recording(symbols, channels=("book", "trade"), depth=KRAKEN_DEPTH, **kw)
    if venue == "coinbase":
        class Recording(connectors.CoinbaseConnector):
            def _on_message(self, raw, ts_recv):
                keep(Frame(raw, ts_recv))
                super()._on_message(raw, ts_recv)

        return Recording(symbols, channels=("level2", "market_trades"), **kw)

    class Recording(connectors.CoinGeckoConnector):
        def _poll(self):
            resp = self.rest.get("/simple/price", self.params)
            keep(Frame(resp.content, time.time_ns(), "rest"))

    # a few polls in the window, well inside the demo plan's 100 calls a minute
    return Recording(symbols, interval=max(1.0, min(15.0, seconds / 3.0)), **kw)


def capture(venue, seconds, *, symbols=None, endpoints=None):
    """Record ``venue`` for ``seconds`` through its connector; returns the frames.

    Parameters
    ----------
    venue : str
        One of :data:`VENUES`.
    seconds : float
        How long to listen (positive).
    symbols : sequence of str, optional
        Canonical symbols (default :data:`DEFAULT_SYMBOLS`).
    endpoints : dict, optional
        ``{"ws_url": ..., "rest_url": ...}`` (default: the live venue).

    Returns
    -------
    list of Frame
    """
    if venue not in VENUES:
        raise ValueError(f"venue must be one of {VENUES}, got {venue!r}")
    seconds = float(seconds)
    if not seconds > 0:
        raise ValueError(f"seconds must be positive, got {seconds!r}")
    frames = []
    conn = _recording_connector(venue, list(symbols or DEFAULT_SYMBOLS[venue]), frames, endpoints,
                                seconds)
    conn.start()
    try:
        time.sleep(seconds)
    finally:
        conn.stop()
    return list(frames)


# -- the command ----------------------------------------------------------------------------------
def render_table(results):
    """The pass/fail table of ``results`` as text."""
    rows = [("venue", "check", "result", "detail")]
    rows += [(r.venue, r.check, r.status, r.detail) for r in results]
    w = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{a:<{w[0]}}  {b:<{w[1]}}  {c:<{w[2]}}  {d}".rstrip() for a, b, c, d in rows)


def run_doctor(venues=VENUES, seconds=5.0, simulate=False, out=None):
    """Capture each venue for ``seconds`` (in parallel), check, print the table.

    Parameters
    ----------
    venues : sequence of str
        Any of :data:`VENUES`.
    seconds : float
        Listening time per venue.
    simulate : bool
        Check the loopback simulators instead of the live venues.
    out : file, optional
        Where the table goes (default stdout).

    Returns
    -------
    int
        0 if no check failed, 1 otherwise.
    """
    venues = [str(v).lower() for v in venues]
    unknown = [v for v in venues if v not in VENUES]
    if unknown or not venues:
        raise ValueError(f"venues must be some of {','.join(VENUES)}, got {','.join(venues) or 'none'}")
    seconds = float(seconds)
    if not (seconds > 0 and math.isfinite(seconds)):
        raise ValueError(f"seconds must be a positive number, got {seconds!r}")
    out = sys.stdout if out is None else out
    sim = None
    endpoints = {}
    if simulate:
        from hftsig.simulator import SimulatedExchanges

        symbols = sorted({s for v in venues for s in DEFAULT_SYMBOLS[v]})
        sim = SimulatedExchanges(symbols, exchanges=tuple(venues), seed=0, trade_rate=5.0)
        sim.start()
        endpoints = {v: sim.connector_kwargs(v) for v in venues}
    try:
        captured = {}

        def work(v):
            captured[v] = capture(v, seconds, endpoints=endpoints.get(v))

        threads = [threading.Thread(target=work, args=(v,), name=f"hftsig-doctor-{v}", daemon=True)
                   for v in venues]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        if sim is not None:
            sim.stop()
    results = []
    for v in venues:
        results += check_frames(v, captured.get(v, []))
    where = "loopback simulators" if simulate else "live venues"
    print(f"hftsig doctor: {', '.join(venues)} for {seconds:g} s each ({where})", file=out)
    print(render_table(results), file=out)
    failed = [r for r in results if not r.ok]
    print(f"hftsig doctor: {len(failed)} of {len(results)} checks failed" if failed
          else f"hftsig doctor: no check failed ({len(results)} checks)", file=out)
    return 1 if failed else 0
