"""Watching arbitrage live: the ``hftsig arb`` command and the demo plugin.

Sources of quotes:

* ``sim`` (default): the loopback exchange simulators
  (:class:`~hftsig.simulator.SimulatedExchanges`) -> the connectors -> an
  :class:`~hftsig.market.aggregator.Aggregator` -> :class:`CycleArbitrage`;
* ``model``: the simulators' market model stepped in this process, no
  network (quick, deterministic, what the tests and notebooks use);
* ``live``: the real exchanges through the connectors.

With a simulated source, mispricings of random size are injected every
``inject_every`` seconds on a random venue and symbol, some above the fees and
spreads (they must be reported), some below the fees alone (they must not);
the summary says how many of each were seen.  An injection counts as seen when
an arbitrage episode with a leg on its venue and symbol overlaps it.  Fees come
from :data:`hftsig.arbitrage.cycles.DEFAULT_TAKER_FEES_BPS` unless given.
"""
from __future__ import annotations

import random
import sys
import threading
import time
from typing import TYPE_CHECKING

from hftsig import venues as registry
from hftsig.arbitrage.cycles import CycleArbitrage, quotes_from_model

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any, TextIO

    from hftsig.market.aggregator import Aggregator
    from hftsig.simulator.exchanges import SimulatedExchanges

__all__ = ["ArbWatch", "demo_plugin", "run_arb", "ARB_SYMBOLS"]

#: symbols watched by default: two triangles sharing BTC-USDT
ARB_SYMBOLS = ("BTC-USDT", "ETH-USDT", "ETH-BTC", "SOL-USDT", "SOL-BTC")


class ArbWatch:
    """A detector plus what a live display needs: episode lines, injections, summary.

    Parameters
    ----------
    detector : CycleArbitrage
    emit : callable
        Called with each line to show (thread-safe use is the caller's: the
        aggregator calls the detector on its worker thread).
    repeat_s : float
        With ``show="updates"``: the same cycle (assets, venues, direction) is
        shown again only after this long or when its net edge moved by more
        than 1 bp.
    show : {"episodes", "updates"}, default "episodes"
        One line when an episode opens and one when it closes (with its
        duration, peak and mean edge), or the individual reports.
    """

    def __init__(self, detector: CycleArbitrage, emit: Callable[[str], Any], repeat_s: float = 1.0,
                 show: str = "episodes") -> None:
        if show not in ("episodes", "updates"):
            raise ValueError(f"show must be 'episodes' or 'updates', got {show!r}")
        self.detector = detector
        self.emit = emit
        self.repeat_s = repeat_s
        self.show = show
        self.injected = []
        self.n_shown = 0
        self._last = {}
        self._lock = threading.Lock()
        if show == "updates":
            detector.notify = "updates"
            detector.on_opportunity = self._on_opportunity
        else:
            detector.on_episode(self._on_episode, states=("opened", "closed"))

    def _on_episode(self, ep):
        with self._lock:
            self.n_shown += 1
        self.emit(str(ep))

    def _on_opportunity(self, ev):
        key = (ev.cycle, ev.venues, tuple(leg.side for leg in ev.legs))
        now = time.monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last[0] < self.repeat_s and abs(
                    last[1] - ev.net_edge_bps) <= 1.0:
                return
            self._last[key] = (now, ev.net_edge_bps)
            self.n_shown += 1
        self.emit(str(ev))

    def inject(self, target: Any, rng: random.Random, venues: Sequence[str], symbols: Sequence[str],
               fees: Mapping[str, float], spreads: Mapping[str, float] | None = None,
               noise_bps: float = 0.0, duration_s: float = 1.0) -> dict[str, Any]:
        """Inject one random mispricing through ``target.inject_mispricing``.

        Half are clearly above fees and spreads (detectable), half below the
        fees alone (never profitable); the record is kept in ``injected``.
        """
        venue = rng.choice(list(venues))
        symbol = rng.choice(list(symbols))
        others = [v for v in venues if v != venue] or [venue]
        # the cheapest cycle through the shifted market: a spatial pair with the
        # cheapest other venue, or a triangle whose other two legs take the
        # cheapest fee (legs may sit on any venue)
        floor = fees[venue] + min(min(fees[v] for v in others), 2 * min(fees[v] for v in venues))
        spreads = spreads or {}
        above = (fees[venue] + spreads.get(venue, 0) / 2
                 + min(fees[v] + spreads.get(v, 0) / 2 for v in others) + 2 * noise_bps + 3.0)
        big = rng.random() < 0.5
        bps = above + rng.uniform(0, 30) if big else floor * rng.uniform(0.2, 0.9)
        bps *= rng.choice((-1.0, 1.0))
        rec = dict(target.inject_mispricing(venue, symbol, bps, duration_s))
        rec["above_fees"] = big
        rec["t_wall"] = time.time_ns()
        self.injected.append(rec)
        self.emit(f"# injected {bps:+.1f} bps on {venue} {symbol} for {duration_s:g} s "
                  f"({'above' if big else 'below'} fees)")
        return rec

    def summary(self) -> list[str]:
        """Lines describing what was seen and how injections were detected.

        Call the detector's ``close_episodes()`` first when the feed has
        stopped; episodes still open count as they are.
        """
        det = self.detector
        episodes = list(getattr(det, "episodes_", ())) + (
            det.open_episodes() if hasattr(det, "open_episodes") else [])
        kinds = {}
        for ep in episodes:
            kinds[ep.kind] = kinds.get(ep.kind, 0) + 1
        lines = [f"arbitrage: {getattr(det, 'n_ticks_', 0):,} ticks, "
                 f"{getattr(det, 'n_opportunities_', 0):,} opportunity reports in "
                 f"{len(episodes):,} episodes "
                 f"({', '.join(f'{k} {n}' for k, n in sorted(kinds.items())) or 'none'}), "
                 f"{self.n_shown} lines shown"]
        if episodes:
            longest = max(episodes, key=lambda ep: ep.duration_s)
            best = max(episodes, key=lambda ep: ep.peak_edge_bps)
            lines.append(f"longest episode {longest.duration_s:.3f} s; best peak "
                         f"{best.peak_edge_bps:+.2f} bps ({'>'.join(best.cycle)} on "
                         f"{', '.join(dict.fromkeys(best.venues))})")
        if self.injected:
            hit_above = hit_below = n_above = n_below = n_late = 0
            core = getattr(det, "core_", None)
            last_ts = getattr(core, "last_ts", None)
            for rec in self.injected:
                key = (rec["exchange"], rec["symbol"])
                seen = any(
                    key in set(zip(ep.venues, ep.symbols))
                    and ("_t0" not in rec or (
                        ep.start_ts <= rec["_t1"]
                        and (ep.last_ts if ep.end_ts is None else ep.end_ts) >= rec["_t0"]))
                    for ep in episodes)
                # one the feeds had not finished carrying when the run stopped
                # (injected in its last moments) could not be seen: not counted
                if not seen and last_ts is not None and "_end" in rec and last_ts < rec["_end"]:
                    n_late += 1
                    continue
                if rec["above_fees"]:
                    n_above += 1
                    hit_above += seen
                else:
                    n_below += 1
                    hit_below += seen
            lines.append(f"injected mispricings: {n_above} above fees+spreads, {hit_above} "
                         f"detected; {n_below} below fees, {hit_below} reported"
                         + (f"; {n_late} still under way at the end, not counted"
                            if n_late else ""))
        return lines


def parse_fees(text):
    if not text:
        return None
    out = {}
    for part in text.split(","):
        if "=" in part:
            k, v = part.split("=", 1)
            out[k.strip().lower()] = float(v)
        else:
            out["default"] = float(part)
    return out


def _fees_for(venues, fees):
    det = CycleArbitrage(fees=fees)
    return {v: det._fee_bps(v) for v in venues}


def demo_plugin(agg: Aggregator, view: Any, sim: SimulatedExchanges | None = None, *,
                inject_every: float = 3.0, seed: int = 0,
                until: float | None = None) -> Callable[[], str]:
    """Show arbitrage signals in the demo's live view.

    Registers a :class:`CycleArbitrage` as an aggregator callback (quotes,
    book records through ``agg.top`` and status events), shows each new
    opportunity as a signal line and, when ``sim`` is given, injects a
    mispricing every ``inject_every`` seconds.  Returns a callable giving the
    summary lines.  With ``until`` (a ``time.monotonic()`` time: the end of
    the run) no mispricing is injected too late to be over, and seen, by then.
    """
    det = CycleArbitrage(max_quote_age_ms=2000, report="best", tops=agg.top,
                              book_quotes=True, max_events=100_000)
    watch = ArbWatch(det, view.add_signal)
    agg.on_tick(det.update, kinds=("quote", "book_delta", "book_snapshot", "status"))
    stop = threading.Event()
    if sim is not None and inject_every:
        venues = [v for v in sim.exchanges if registry.get(v).order_book]
        fees = _fees_for(venues, None)
        rng = random.Random(seed)

        duration_s = min(1.0, 0.5 * inject_every)

        def loop():
            while not stop.wait(inject_every):
                # as run_arb: the feeds need about half a second to carry it
                if until is not None and until - time.monotonic() < duration_s + 0.5:
                    return
                rec = watch.inject(sim, rng, venues, sim.symbols, fees, sim.model.spread_bps,
                                   sim.model.noise_bps, duration_s=duration_s)
                rec["_t0"] = rec["start_ns"]
                rec["_t1"] = rec["end_ns"] + int(5e8)
                rec["_end"] = rec["end_ns"]

        threading.Thread(target=loop, name="hftsig-arb-inject", daemon=True).start()

    def summary():
        stop.set()
        det.close_episodes()
        return "\n".join(watch.summary())

    return summary


def run_arb(seconds: float = 20.0, *, source: str = "sim", symbols: Sequence[str] = ARB_SYMBOLS,
            fees: float | Mapping[str, float] | None = None, min_edge_bps: float = 0.0,
            max_quote_age_ms: float = 2000.0, notional: float | None = None,
            inject_every: float = 2.0, seed: int = 0, cross_venue: bool = True,
            report: str = "best", stream: TextIO | None = None,
            exchanges: Sequence[str] | None = None, show: str = "episodes",
            bus: Mapping[str, Any] | None = None) -> int:
    """Print arbitrage episodes (or reports) as they appear for ``seconds``; returns an exit code.

    ``exchanges=None`` watches the registry's order-book venues
    (:func:`hftsig.venues.names` with ``order_book=True``; with
    ``source="sim"`` those with a simulator).
    ``fees=None`` takes :data:`hftsig.arbitrage.cycles.DEFAULT_TAKER_FEES_BPS`;
    ``show`` is :class:`ArbWatch`'s (``"episodes"`` or ``"updates"``).  ``bus``
    (``{"url": ..., "streams": ..., "group": ..., "consumer": ...}``) takes the
    quotes from a tick bus (:meth:`~hftsig.market.aggregator.Aggregator.from_bus`)
    instead of ``source``; nothing is injected then.
    """
    if bus is not None:
        source = "bus"
    if exchanges is None:
        exchanges = registry.names(order_book=True, simulator=True if source in ("sim", "model")
                                   else None)
    out = sys.stdout if stream is None else stream
    print_lock = threading.Lock()

    def emit(line):
        with print_lock:
            print(f"{time.strftime('%H:%M:%S')} {line}", file=out, flush=True)

    if source == "sim" and bus is None:
        try:
            for name in exchanges:
                registry.get(name).connector_class()
        except (ImportError, AttributeError) as exc:
            emit(f"# connectors unavailable ({exc}); using the in-process market model")
            source = "model"
    det = CycleArbitrage(fees=fees, min_edge_bps=min_edge_bps,
                              max_quote_age_ms=max_quote_age_ms, notional=notional,
                              cross_venue=cross_venue, report=report, max_events=1_000_000)
    watch = ArbWatch(det, emit, show=show)
    rng = random.Random(seed)
    venues = list(exchanges)
    fee_table = _fees_for(venues, fees)
    emit(f"# watching {', '.join(symbols)} on {', '.join(venues)} ({source}); taker fees bps "
         + ", ".join(f"{v} {fee_table[v]:g}" for v in venues))
    t_end = time.monotonic() + float(seconds)
    if source == "model":
        from hftsig.simulator.market import MarketModel

        model = MarketModel(list(symbols), venues, seed=seed, rate=20.0)
        next_inject = time.monotonic() + (inject_every or float("inf"))
        try:
            while time.monotonic() < t_end:
                model.step()
                # no injection too close to the end: it could not be seen before the summary
                if (inject_every and time.monotonic() >= next_inject
                        and t_end - time.monotonic() > min(1.0, 0.5 * inject_every) + 0.5):
                    rec = watch.inject(model, rng, venues, symbols, fee_table,
                                       model.spread_bps, model.noise_bps,
                                       duration_s=min(1.0, 0.5 * inject_every))
                    rec["_t0"] = model.t0_ns + int(rec["start"] * 1e9)
                    rec["_t1"] = model.t0_ns + int(rec["end"] * 1e9) + int(1e8)
                    rec["_end"] = model.t0_ns + int(rec["end"] * 1e9)
                    next_inject += inject_every
                det.update(quotes_from_model(model))
                time.sleep(model.dt)
        except KeyboardInterrupt:
            pass
    else:
        from hftsig.connectors import make_connectors
        from hftsig.market.aggregator import Aggregator

        sim = None
        endpoints = {}
        if source == "sim":
            from hftsig.simulator import SimulatedExchanges

            sim = SimulatedExchanges(symbols=list(symbols), exchanges=tuple(venues), seed=seed)
            sim.start()
            endpoints = {ex: sim.connector_kwargs(ex) for ex in venues}
        elif source not in ("live", "bus"):
            raise ValueError(f"source must be 'sim', 'model' or 'live', got {source!r}")
        try:
            if bus is not None:
                from hftsig.distributed.bus import connection_errors

                try:
                    agg = Aggregator.from_bus(bus["url"], streams=bus.get("streams"),
                                              group=bus.get("group"),
                                              consumer=bus.get("consumer"), drain_size=0)
                except connection_errors() as exc:
                    print(f"hftsig arb: cannot reach the tick bus: {exc}", file=sys.stderr)
                    return 2
            else:
                agg = Aggregator(make_connectors(venues, symbols, endpoints), drain_size=0)
            det.tops = agg.top
            det.book_quotes = True
            agg.on_tick(det.update, kinds=("quote", "book_delta", "book_snapshot", "status"))
            agg.start()
            next_inject = time.monotonic() + (inject_every or float("inf"))
            try:
                while time.monotonic() < t_end:
                    time.sleep(min(0.05, max(0.0, t_end - time.monotonic())))
                    if (sim is not None and inject_every and time.monotonic() >= next_inject
                            and t_end - time.monotonic() > min(1.0, 0.5 * inject_every) + 0.5):
                        rec = watch.inject(sim, rng, venues, symbols, fee_table,
                                           sim.model.spread_bps, sim.model.noise_bps,
                                           duration_s=min(1.0, 0.5 * inject_every))
                        rec["_t0"] = rec["start_ns"]
                        rec["_t1"] = rec["end_ns"] + int(5e8)
                        rec["_end"] = rec["end_ns"]
                        next_inject += inject_every
            except KeyboardInterrupt:
                pass
            finally:
                agg.stop()
        finally:
            if sim is not None:
                sim.stop()
    det.close_episodes()
    for line in watch.summary():
        emit(line)
    return 0
