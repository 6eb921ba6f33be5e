"""Arbitrage benchmark: incremental detector against a full recomputation per update.

Run from the repository root::

    python -m benchmarks.arbitrage            # 200,000 updates, 5 repeats
    python -m benchmarks.arbitrage --quick    # 50,000 updates, 3 repeats

The market: 50 currencies, 300 pairs, each listed on three venues (900
markets) with taker fees of 10, 20 and 30 bps.  Quotes are consistent (every
mid is the ratio of fixed currency values, 2 bps half spread) except that 1%
of updates quote a market shifted by 5..150 bps; the next update restores
that market, so at most one market is mispriced at a time.

hftsig evaluates, on each update, the 2- and 3-leg cycles through the updated
market (cross-venue triangles and same-pair spatial cycles).  The baseline
updates a networkx DiGraph (best net rate per directed currency pair, weight
``-log rate``) and runs ``networkx.negative_edge_cycle`` on the whole graph
after every update.  With one mispriced market at a time and every pair on
every venue, the cheapest profitable cycle is always the two-leg one through
that market, so both must flag exactly the same updates; the benchmark checks
that on the baseline's updates before timing.

Times are medians of repeated runs (hftsig: mean microseconds per update over
the whole stream; baseline: per call), wall clock on a machine that may be
shared: quote them with the machine line.
"""
import argparse
import datetime
import math
import statistics
import time

import numpy as np

from benchmarks.machine import describe
from hftsig.arbitrage.cycles import CycleArbitrage
from hftsig.market.ticks import FLAG_LAST, KIND_QUOTE, empty_ticks, exchange_code, exchange_name

VENUES = ("binance", "kraken", "coinbase")
FEES = {"binance": 10.0, "kraken": 20.0, "coinbase": 30.0}
HALF_SPREAD = 2e-4
N_CURRENCIES = 50
N_PAIRS = 300


def make_market(seed):
    """Currencies, their USD values and 300 pairs (every currency against USD, BTC, ETH)."""
    rng = np.random.default_rng(seed)
    names = ["USD", "BTC", "ETH"] + [f"C{i:02d}" for i in range(3, N_CURRENCIES)]
    value = np.exp(rng.normal(0.0, 2.0, N_CURRENCIES))
    value[0] = 1.0
    pairs = set()
    for hub in range(3):
        for c in range(N_CURRENCIES):
            if c > hub:
                pairs.add((c, hub))
    while len(pairs) < N_PAIRS:
        a, b = rng.choice(N_CURRENCIES, 2, replace=False)
        if (a, b) not in pairs and (b, a) not in pairs:
            pairs.add((int(a), int(b)))
    pairs = sorted(pairs)
    return names, value, pairs


def make_stream(n_updates, seed, mispricing_rate=0.01):
    """Warm-up ticks (every market once) and the timed stream of quote updates."""
    names, value, pairs = make_market(seed)
    rng = np.random.default_rng(seed + 1)
    markets = [(v, b, q) for (b, q) in pairs for v in range(len(VENUES))]
    n_m = len(markets)
    m_venue = np.array([exchange_code(VENUES[v]) for v, _, _ in markets], np.uint8)
    m_symbol = np.array([f"{names[b]}-{names[q]}".encode() for _, b, q in markets], "S16")
    m_mid = np.array([value[b] / value[q] for _, b, q in markets])

    which = np.concatenate([np.arange(n_m), rng.integers(0, n_m, n_updates)])
    shift = np.zeros(len(which))
    i = n_m
    draws = rng.random(len(which))
    while i < len(which) - 1:
        if draws[i] < mispricing_rate:
            shift[i] = rng.uniform(5e-4, 150e-4) * rng.choice((-1.0, 1.0))
            which[i + 1] = which[i]  # the next update restores the market
            i += 2
        else:
            i += 1
    ticks = empty_ticks(len(which))
    ticks["kind"] = KIND_QUOTE
    ticks["flags"] = FLAG_LAST
    ticks["exchange"] = m_venue[which]
    ticks["symbol"] = m_symbol[which]
    mid = m_mid[which] * (1.0 + shift)
    ticks["bid_px"] = mid * (1 - HALF_SPREAD)
    ticks["ask_px"] = mid * (1 + HALF_SPREAD)
    ticks["bid_sz"] = rng.uniform(0.5, 5.0, len(which))
    ticks["ask_sz"] = rng.uniform(0.5, 5.0, len(which))
    ticks["ts_event"] = np.arange(len(which), dtype=np.int64) * 1000  # 1 us apart
    ticks["ts_recv"] = ticks["ts_event"]
    return ticks[:n_m], ticks[n_m:], shift[n_m:]


def detector(report):
    return CycleArbitrage(fees=FEES, max_quote_age_ms=1e9, cross_venue=True,
                               spatial=True, report=report, max_events=100)


def flagged(arb, stream):
    """Indices (into stream) of updates that produced an opportunity."""
    ts0 = int(stream["ts_event"][0])
    return {(ev.ts - ts0) // 1000 for ev in arb.update(stream)}


class NetworkxBaseline:
    """Full negative-cycle search on the -log rate graph after every update."""

    def __init__(self):
        import networkx as nx

        self.nx = nx
        self.graph = nx.DiGraph()
        self.quotes = {}  # (venue, symbol) -> (bid, ask)

    def _refresh(self, base, quote):
        best_sell = best_buy = 0.0
        for v in VENUES:
            q = self.quotes.get((v, f"{base}-{quote}"))
            if q is None:
                continue
            bid, ask = q
            if not (bid > 0 and ask > bid):
                continue
            fm = 1 - FEES[v] * 1e-4
            best_sell = max(best_sell, bid * fm)
            best_buy = max(best_buy, fm / ask)
        for a, b, r in ((base, quote, best_sell), (quote, base, best_buy)):
            if r > 0:
                self.graph.add_edge(a, b, w=-math.log(r))
            elif self.graph.has_edge(a, b):
                self.graph.remove_edge(a, b)

    def update(self, tick):
        venue = exchange_name(tick["exchange"])
        symbol = tick["symbol"].decode()
        self.quotes[(venue, symbol)] = (float(tick["bid_px"]), float(tick["ask_px"]))
        base, quote = symbol.split("-")
        self._refresh(base, quote)
        return self.nx.negative_edge_cycle(self.graph, weight="w")


def run(n_updates, n_baseline, repeats, seed):
    warm, stream, shift = make_stream(n_updates, seed)
    print(f"# arbitrage benchmark, {datetime.date.today().isoformat()}, {describe()}")
    print(f"# {N_CURRENCIES} currencies, {N_PAIRS} pairs x {len(VENUES)} venues "
          f"= {len(warm)} markets; {n_updates} updates, {int((shift != 0).sum())} mispriced")

    # --- agreement on the baseline's prefix
    arb = detector("all")
    arb.update(warm)
    n_cycles = len(arb.cycles_)
    prefix = stream[:n_baseline]
    ours = flagged(arb, prefix)
    base = NetworkxBaseline()
    for t in warm:  # load the warm-up quotes without timing a search per tick
        base.quotes[(exchange_name(t["exchange"]), t["symbol"].decode())] = (
            float(t["bid_px"]), float(t["ask_px"]))
    for _, symbol in list(base.quotes):
        base._refresh(*symbol.split("-"))
    assert not base.nx.negative_edge_cycle(base.graph, weight="w"), "warm-up not consistent"
    times = []
    theirs = set()
    for i, t in enumerate(prefix):
        t0 = time.perf_counter()
        hit = base.update(t)
        times.append(time.perf_counter() - t0)
        if hit:
            theirs.add(i)
    if ours != theirs:
        raise SystemExit(f"disagreement: hftsig only {sorted(ours - theirs)[:10]}, "
                         f"networkx only {sorted(theirs - ours)[:10]}")
    base_us = statistics.median(times) * 1e6
    print(f"# {n_cycles} indexed cycles; agreement on {n_baseline} updates: "
          f"{len(ours)} flagged by both, 0 disagreements")

    rows = []
    for report in ("best", "all"):
        per = []
        n_events = 0
        for _ in range(repeats):
            arb = detector(report)
            arb.update(warm)
            t0 = time.perf_counter()
            arb.update(stream)
            per.append((time.perf_counter() - t0) / len(stream) * 1e6)
            n_events = arb.n_opportunities_
        rows.append((f"hftsig update(batch), report={report!r}", statistics.median(per),
                     n_events))
    # one record per call, as an Aggregator on_tick callback would
    per = []
    k = min(len(stream), 20000)
    for _ in range(repeats):
        arb = detector("best")
        arb.update(warm)
        recs = [stream[i:i + 1] for i in range(k)]
        t0 = time.perf_counter()
        for r in recs:
            arb.update(r)
        per.append((time.perf_counter() - t0) / k * 1e6)
    rows.append(("hftsig update(one tick) per call", statistics.median(per), None))
    rows.append(("networkx negative_edge_cycle per update", base_us, None))

    print()
    print(f"| {'method':45s} | {'us/update (median)':>18s} | {'updates/s':>12s} | "
          f"{'vs networkx':>11s} |")
    print(f"|{'-' * 47}|{'-' * 20}|{'-' * 14}|{'-' * 13}|")
    for name, us, _ in rows:
        print(f"| {name:45s} | {us:18.3f} | {1e6 / us:12,.0f} | {base_us / us:10,.0f}x |")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--updates", type=int, default=200_000)
    parser.add_argument("--baseline-updates", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="50,000 updates, 3 repeats")
    args = parser.parse_args(argv)
    if args.quick:
        args.updates, args.repeats, args.baseline_updates = 50_000, 3, 1_000
    run(args.updates, min(args.baseline_updates, args.updates), args.repeats, args.seed)


if __name__ == "__main__":
    main()
