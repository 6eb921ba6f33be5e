"""Tests of hftsig.arbitrage: exact edges on hand-built quote streams, validity rules,
cross-venue cycles, Bellman-Ford against brute force, and the detector against an
independent brute-force evaluation on random streams."""
import itertools
import math

import numpy as np
import pytest

from hftsig.arbitrage import (
    Opportunity,
    TriangularArbitrage,
    bounded_negative_cycles,
    quote_ticks,
)
from hftsig.ticks import (
    EXCHANGE_KRAKEN,
    KIND_STATUS,
    KIND_TRADE,
    STATUS_DISCONNECTED,
    empty_ticks,
)

MS = 1_000_000


def tri(ts=0, venue="binance", eth_btc=(0.1005, 5.0, 0.1006, 5.0)):
    return quote_ticks([
        (venue, "BTC-USDT", 100.0, 1.0, 100.1, 1.0, ts),
        (venue, "ETH-USDT", 10.0, 5.0, 10.01, 5.0, ts),
        (venue, "ETH-BTC", *eth_btc, ts),
    ])


def test_triangle_exact_edge_with_fees():
    arb = TriangularArbitrage(fees={"binance": 7.5}, max_quote_age_ms=100)
    evs = arb.update(tri())
    assert len(evs) == 1
    ev = evs[0]
    assert isinstance(ev, Opportunity)
    assert ev.kind == "triangle"
    assert ev.cycle == ("USDT", "ETH", "BTC", "USDT")
    assert ev.venues == ("binance",) * 3
    assert [(l.symbol, l.side, l.price, l.size) for l in ev.legs] == [
        ("ETH-USDT", "buy", 10.01, 5.0), ("ETH-BTC", "sell", 0.1005, 5.0),
        ("BTC-USDT", "sell", 100.0, 1.0)]
    gross = (1 / 10.01) * 0.1005 * 100.0
    net = gross * (1 - 7.5e-4) ** 3
    assert ev.gross_edge_bps == pytest.approx((gross - 1) * 1e4, rel=1e-12)
    assert ev.net_edge_bps == pytest.approx((net - 1) * 1e4, rel=1e-12)
    # 5 ETH at the ask limit the first leg: 50.05 USDT; BTC leg (sell 1 BTC) is looser
    assert ev.notional == pytest.approx(50.05)
    assert ev.notional_usd == pytest.approx(50.05)
    assert ev.quote_ages_ms == (0.0, 0.0, 0.0)
    assert ev.trigger == ("binance", "ETH-BTC")
    assert "USDT>ETH>BTC>USDT" in str(ev)


def test_fee_unit_fraction_equals_bps():
    a = TriangularArbitrage(fees={"binance": 7.5}).update(tri())[0]
    b = TriangularArbitrage(fees={"binance": 0.00075}, fee_unit="fraction").update(tri())[0]
    assert a.net_edge_bps == pytest.approx(b.net_edge_bps, rel=1e-12)


def test_fees_kill_the_edge():
    # gross edge is 39.96 bps; three legs at 13.4 bps each cost ~40.1 bps
    assert TriangularArbitrage(fees=13.4).update(tri()) == []
    assert len(TriangularArbitrage(fees=13.2).update(tri())) == 1


def test_other_direction_and_size_limit():
    # ETH-BTC ask low: USDT -> BTC -> ETH -> USDT is the profitable way round
    arb = TriangularArbitrage(fees=0.0)
    evs = arb.update(tri(eth_btc=(0.0990, 2.0, 0.0991, 2.0)))
    assert len(evs) == 1
    ev = evs[0]
    assert ev.cycle == ("USDT", "BTC", "ETH", "USDT")
    assert [(l.symbol, l.side) for l in ev.legs] == [
        ("BTC-USDT", "buy"), ("ETH-BTC", "buy"), ("ETH-USDT", "sell")]
    gross = (1 / 100.1) * (1 / 0.0991) * 10.0
    assert ev.net_edge_bps == pytest.approx((gross - 1) * 1e4, rel=1e-12)
    # limits in USDT: BTC ask 1 -> 100.1; ETH-BTC ask 2 ETH = 0.1982 BTC -> 0.1982*100.1;
    # ETH bid 5 ETH -> 5*0.0991*100.1
    assert ev.notional == pytest.approx(0.1982 * 100.1, rel=1e-12)


def test_min_edge_threshold_is_strict():
    gross_bps = ((1 / 10.01) * 0.1005 * 100.0 - 1) * 1e4
    assert TriangularArbitrage(fees=0.0, min_edge_bps=gross_bps + 1e-6).update(tri()) == []
    assert len(TriangularArbitrage(fees=0.0, min_edge_bps=gross_bps - 1e-6).update(tri())) == 1


def test_stale_quotes_never_make_an_opportunity():
    arb = TriangularArbitrage(fees=0.0, max_quote_age_ms=50)
    rows = tri(ts=0)
    arb.update(rows[:2])  # BTC-USDT and ETH-USDT at t=0
    late = rows[2:].copy()
    late["ts_event"] = 51 * MS
    assert arb.update(late) == []
    late["ts_event"] = 50 * MS  # exactly max age: still fresh
    arb2 = TriangularArbitrage(fees=0.0, max_quote_age_ms=50)
    arb2.update(rows[:2])
    evs = arb2.update(late)
    assert len(evs) == 1
    assert evs[0].quote_ages_ms == (50.0, 0.0, 50.0)
    # refreshing a stale leg brings it back
    fresh = rows[:1].copy()
    fresh["ts_event"] = 60 * MS
    arb.update(late)
    assert arb.update(fresh) == []  # ETH-USDT still at t=0: stale at 60 ms
    fresh2 = rows[1:2].copy()
    fresh2["ts_event"] = 61 * MS
    assert len(arb.update(fresh2)) == 1


@pytest.mark.parametrize("bad", [
    (0.1005, 5.0, np.nan, np.nan),  # one-sided (no ask)
    (np.nan, np.nan, 0.1006, 5.0),  # one-sided (no bid)
    (0.1005, 0.0, 0.1006, 5.0),  # empty bid size
    (0.1010, 5.0, 0.1006, 5.0),  # crossed
    (0.1006, 5.0, 0.1006, 5.0),  # locked
    (-0.1005, 5.0, 0.1006, 5.0),  # nonsense price
])
def test_one_sided_and_crossed_books_rejected(bad):
    arb = TriangularArbitrage(fees=0.0)
    assert arb.update(tri(eth_btc=bad)) == []
    # the same detector sees the opportunity once the book is sane again
    assert len(arb.update(tri(ts=1)[2:])) == 1


def test_invalid_leg_other_than_trigger_rejected():
    arb = TriangularArbitrage(fees=0.0)
    rows = tri()
    rows[0]["ask_px"] = np.nan  # BTC-USDT one-sided, not the updated market
    assert arb.update(rows) == []


def test_spatial_cross_exchange_exact():
    fees = {"kraken": 26.0, "coinbase": 40.0}
    arb = TriangularArbitrage(fees=fees)
    evs = arb.update(quote_ticks([
        ("kraken", "BTC-USD", 101.0, 0.5, 101.2, 0.5, 0),
        ("coinbase", "BTC-USD", 99.8, 2.0, 100.0, 0.3, 1 * MS),
    ]))
    assert len(evs) == 1
    ev = evs[0]
    assert ev.kind == "spatial"
    assert ev.cycle == ("USD", "BTC", "USD")
    assert ev.venues == ("coinbase", "kraken")
    assert [(l.side, l.price) for l in ev.legs] == [("buy", 100.0), ("sell", 101.0)]
    net = (101.0 / 100.0) * (1 - 26e-4) * (1 - 40e-4)
    assert ev.net_edge_bps == pytest.approx((net - 1) * 1e4, rel=1e-12)
    assert ev.gross_edge_bps == pytest.approx(100.0, rel=1e-12)
    # 0.3 BTC offered on coinbase: 30 USD
    assert ev.notional == pytest.approx(30.0)
    assert ev.quote_ages_ms == (0.0, 1.0)
    assert TriangularArbitrage(fees=fees, spatial=False).update(quote_ticks([
        ("kraken", "BTC-USD", 101.0, 0.5, 101.2, 0.5, 0),
        ("coinbase", "BTC-USD", 99.8, 2.0, 100.0, 0.3, 0)])) == []


def test_cross_venue_triangle():
    rows = quote_ticks([
        ("binance", "BTC-USDT", 100.0, 1.0, 100.1, 1.0, 0),
        ("kraken", "ETH-USDT", 10.0, 5.0, 10.01, 5.0, 0),
        ("coinbase", "ETH-BTC", 0.1005, 5.0, 0.1006, 5.0, 0),
    ])
    fees = {"binance": 1.0, "kraken": 2.0, "coinbase": 3.0}
    assert TriangularArbitrage(fees=fees, cross_venue=False).update(rows) == []
    evs = TriangularArbitrage(fees=fees, cross_venue=True).update(rows)
    assert len(evs) == 1
    ev = evs[0]
    assert ev.venues == ("kraken", "coinbase", "binance")
    net = (1 / 10.01) * 0.1005 * 100.0 * (1 - 2e-4) * (1 - 3e-4) * (1 - 1e-4)
    assert ev.net_edge_bps == pytest.approx((net - 1) * 1e4, rel=1e-12)


def test_report_best_and_all():
    rows = quote_ticks([
        ("binance", "BTC-USDT", 100.0, 1.0, 100.1, 1.0, 0),
        ("kraken", "BTC-USDT", 100.0, 1.0, 100.1, 1.0, 0),
        ("binance", "ETH-USDT", 10.0, 5.0, 10.01, 5.0, 0),
        ("binance", "ETH-BTC", 0.1005, 5.0, 0.1006, 5.0, 0),
    ])
    all_ = TriangularArbitrage(fees=0.0).update(rows)
    assert sorted(ev.venues for ev in all_) == [
        ("binance", "binance", "binance"), ("binance", "binance", "kraken")]
    best = TriangularArbitrage(fees={"binance": 0.0, "kraken": 1.0}, report="best").update(rows)
    assert len(best) == 1 and best[0].venues == ("binance",) * 3


def test_status_disconnect_invalidates_venue():
    arb = TriangularArbitrage(fees=0.0)
    rows = quote_ticks([
        ("kraken", "BTC-USD", 101.0, 0.5, 101.2, 0.5, 0),
        ("coinbase", "BTC-USD", 99.8, 2.0, 100.0, 0.3, 0),
    ])
    arb.update(rows[:1])
    status = empty_ticks(1)
    status["kind"] = KIND_STATUS
    status["exchange"] = EXCHANGE_KRAKEN
    status["side"] = STATUS_DISCONNECTED
    arb.update(status)
    assert arb.update(rows[1:]) == []
    arb.update(rows[:1])  # kraken quotes again
    assert len(arb.update(rows[1:])) == 1


def test_venue_filter_and_other_kinds_ignored():
    rows = quote_ticks([
        ("kraken", "BTC-USD", 101.0, 0.5, 101.2, 0.5, 0),
        ("coinbase", "BTC-USD", 99.8, 2.0, 100.0, 0.3, 0),
    ])
    assert TriangularArbitrage(fees=0.0, venues=["coinbase", "binance"]).update(rows) == []
    trade = rows.copy()
    trade["kind"] = KIND_TRADE
    arb = TriangularArbitrage(fees=0.0)
    assert arb.update(trade) == []
    assert arb.n_ticks_ == 2
    weird = quote_ticks([("kraken", "BTCUSD", 1.0, 1.0, 2.0, 1.0, 0)])
    assert arb.update(weird) == []


def test_single_records_batches_callbacks_and_ring_buffer():
    seen = []
    arb = TriangularArbitrage(fees=0.0, on_opportunity=seen.append, max_events=2)
    rows = tri()
    out = []
    for r in rows:  # numpy.void records, one at a time, through __call__
        out += arb(r)
    for ts in (1, 2):
        out += arb.update(tri(ts=ts))
    # found once the triangle closes, then again on every update of one of its legs
    assert len(out) == 7 and seen == out
    assert list(arb.events_) == out[-2:]
    assert arb.n_opportunities_ == 7
    batch = TriangularArbitrage(fees=0.0).update(np.concatenate([tri(), tri(1), tri(2)]))
    assert [e.net_edge_bps for e in batch] == [e.net_edge_bps for e in out]


def test_bad_input():
    with pytest.raises(TypeError, match="ticks"):
        TriangularArbitrage().update(np.zeros(3))
    with pytest.raises(ValueError, match="fees"):
        TriangularArbitrage(fees=-1).update(tri())
    with pytest.raises(ValueError, match="fee_unit"):
        TriangularArbitrage(fee_unit="percent").update(tri())
    with pytest.raises(ValueError, match="report"):
        TriangularArbitrage(report="some").update(tri())
    with pytest.raises(ValueError, match="max_quote_age_ms"):
        TriangularArbitrage(max_quote_age_ms=-1).update(tri())
    with pytest.raises(ValueError, match="max_len"):
        TriangularArbitrage().find_cycles(max_len=1)
    with pytest.raises(ValueError, match="rates"):
        bounded_negative_cycles(np.zeros((2, 3)), 3)
    with pytest.raises(ValueError, match="rows"):
        quote_ticks([("binance", "BTC-USDT", 1.0)])


def order_book(venue, symbol, bids, asks):
    """A real hftsig.book.OrderBook holding the given levels (one snapshot message)."""
    from hftsig.book import OrderBook
    from hftsig.ticks import FLAG_LAST, FLAG_SNAPSHOT_BEGIN, KIND_BOOK_SNAPSHOT, exchange_code

    levels = [(1, p, q) for p, q in bids] + [(-1, p, q) for p, q in asks]
    t = empty_ticks(len(levels))
    t["kind"] = KIND_BOOK_SNAPSHOT
    t["exchange"] = exchange_code(venue)
    t["symbol"] = symbol.encode()
    t["side"] = [x[0] for x in levels]
    t["price"] = [x[1] for x in levels]
    t["size"] = [x[2] for x in levels]
    t["flags"][0] |= FLAG_SNAPSHOT_BEGIN
    t["flags"][-1] |= FLAG_LAST
    book = OrderBook(venue, symbol)
    assert book.apply(t) == len(levels)
    return book


def test_notional_vwap_through_books():
    books = {
        ("coinbase", "BTC-USD"): order_book("coinbase", "BTC-USD", [[99.8, 2.0]],
                                            [[100.0, 0.3], [100.5, 1.0]]),
        ("kraken", "BTC-USD"): order_book("kraken", "BTC-USD", [[101.0, 0.5], [100.8, 5.0]],
                                          [[101.2, 0.5]]),
    }
    rows = quote_ticks([
        ("kraken", "BTC-USD", 101.0, 0.5, 101.2, 0.5, 0),
        ("coinbase", "BTC-USD", 99.8, 2.0, 100.0, 0.3, 0),
    ])
    arb = TriangularArbitrage(fees=0.0, notional=80.0, books=lambda v, s: books.get((v, s)))
    ev = arb.update(rows)[0]
    # buy 80 USD of BTC: 0.3 @100 (30 USD) then 50 USD @100.5; sell it at 101 then 100.8
    btc = 0.3 + 50.0 / 100.5
    usd = 0.5 * 101.0 + (btc - 0.5) * 100.8
    assert ev.notional == pytest.approx(80.0)
    assert ev.vwap_edge_bps == pytest.approx((usd / 80.0 - 1) * 1e4, rel=1e-10)
    # without books the top of book caps the trade at 30 USD
    ev2 = TriangularArbitrage(fees=0.0, notional=80.0).update(rows)[0]
    assert ev2.notional == pytest.approx(30.0, rel=1e-9)
    assert ev2.vwap_edge_bps == pytest.approx(100.0, rel=1e-6)
    # a notional so large that the VWAP edge turns negative is not reported
    assert TriangularArbitrage(fees=0.0, notional=140.0, books=lambda v, s: books.get((v, s)),
                               min_edge_bps=60.0).update(rows) == []


def test_book_quotes_from_books():
    from hftsig.ticks import FLAG_LAST, KIND_BOOK_DELTA, exchange_code

    books = {
        ("coinbase", "BTC-USD"): order_book("coinbase", "BTC-USD", [[99.8, 2.0]], [[100.0, 0.3]]),
        ("kraken", "BTC-USD"): order_book("kraken", "BTC-USD", [[101.0, 0.5]], [[101.2, 0.5]]),
    }
    t = empty_ticks(2)
    t["kind"] = KIND_BOOK_DELTA
    t["flags"] = FLAG_LAST
    t["symbol"] = b"BTC-USD"
    t["exchange"] = [exchange_code("kraken"), exchange_code("coinbase")]
    arb = TriangularArbitrage(fees=0.0, books=lambda v, s: books.get((v, s)), book_quotes=True)
    evs = arb.update(t)
    assert len(evs) == 1 and evs[0].net_edge_bps == pytest.approx(100.0)


# ------------------------------------------------------------- Bellman-Ford

def brute_force_cycles(rates, max_len, thr_bps=0.0):
    n = len(rates)
    out = {}
    for k in range(2, max_len + 1):
        for perm in itertools.permutations(range(n), k):
            if perm[0] != min(perm):
                continue
            p = 1.0
            for j in range(k):
                r = rates[perm[j], perm[(j + 1) % k]]
                if r <= 0:
                    p = 0.0
                    break
                p *= r
            if p > 1 + thr_bps * 1e-4 and math.log(p) > math.log1p(thr_bps * 1e-4) + 1e-12:
                out[perm] = p
    return out


@pytest.mark.parametrize("seed", range(30))
def test_bellman_ford_agrees_with_brute_force(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(3, 7))
    value = np.exp(rng.normal(size=n))
    # consistent rates value_i/value_j with spreads and noise, some edges missing
    rates = (value[:, None] / value[None, :]) * np.exp(rng.normal(-0.002, 0.004, size=(n, n)))
    rates[rng.random((n, n)) < 0.3] = 0.0
    np.fill_diagonal(rates, 0.0)
    for max_len in (2, 3, 4, 5):
        bf = dict(bounded_negative_cycles(rates, max_len))
        brute = brute_force_cycles(rates, max_len)
        # same answer to "is there a profitable cycle of at most max_len legs"
        assert bool(bf) == bool(brute)
        # every reported cycle is a real simple profitable cycle with the right product
        for cyc, p in bf.items():
            assert cyc in brute
            assert p == pytest.approx(brute[cyc], rel=1e-9)
        if max_len <= 3 and brute:
            assert max(bf.values()) == pytest.approx(max(brute.values()), rel=1e-9)
            # for <= 3 legs the best cycle through every node is found
            for node in range(n):
                through = [p for c, p in brute.items() if node in c]
                if through:
                    got = [p for c, p in bf.items() if node in c]
                    assert max(got) == pytest.approx(max(through), rel=1e-9)


def test_find_cycles_four_legs():
    # a 4-cycle USD->A->B->C->USD is profitable, no 2- or 3-leg cycle is
    rows = quote_ticks([
        ("binance", "A-USD", 1.0, 10, 1.001, 10, 0),
        ("binance", "A-B", 1.0, 10, 1.001, 10, 0),
        ("binance", "B-C", 1.0, 10, 1.001, 10, 0),
        ("binance", "C-USD", 1.006, 10, 1.007, 10, 0),
    ])
    arb = TriangularArbitrage(fees=0.0)
    assert arb.update(rows) == []
    assert arb.find_cycles(max_len=3) == []
    evs = arb.find_cycles(max_len=4)
    assert len(evs) == 1
    ev = evs[0]
    assert ev.kind == "cycle" and ev.cycle == ("USD", "A", "B", "C", "USD")
    net = 1 / 1.001 * 1.0 * 1.0 * 1.006
    assert ev.net_edge_bps == pytest.approx((net - 1) * 1e4, rel=1e-9)
    # staleness applies to find_cycles too
    assert arb.find_cycles(max_len=4, now=arb.max_quote_age_ms * MS + 1) == []


# ------------------------------------------------ random streams, brute force

def brute_force_update(quotes, fees, updated, now, max_age_ns, cross_venue, thr):
    """Independent evaluation of every 2/3-leg cycle through the updated market."""
    def ok(key):
        q = quotes.get(key)
        if q is None:
            return False
        b, bs, a, as_, ts = q
        return b > 0 and a > b and bs > 0 and as_ > 0 and now - ts <= max_age_ns

    def edges_between(x, y):
        out = []
        for (v, s), q in quotes.items():
            base, quote = s.split("-")
            if (base, quote) == (x, y):
                out.append(((v, s), q[0] * (1 - fees[v] * 1e-4), q[0], q[1], False))
            elif (base, quote) == (y, x):
                out.append(((v, s), (1 - fees[v] * 1e-4) / q[2], 1 / q[2], q[3] * q[2], True))
        return [e for e in out if ok(e[0])]

    v0, s0 = updated
    if not ok(updated):
        return set()
    b0, q0 = s0.split("-")
    assets = {a for (_, s) in quotes for a in s.split("-")}
    found = set()
    for x, y in ((b0, q0), (q0, b0)):
        first = [e for e in edges_between(x, y) if e[0] == updated]
        for e1 in first:
            for e2 in edges_between(y, x):
                if e2[0][0] != v0 and e1[1] * e2[1] > thr:
                    found.add(frozenset([e1[0], e2[0]]) | {("dir", x)})
            for z in assets - {x, y}:
                for e2 in edges_between(y, z):
                    for e3 in edges_between(z, x):
                        if not cross_venue and not (e2[0][0] == v0 == e3[0][0]):
                            continue
                        if e1[1] * e2[1] * e3[1] > thr:
                            found.add(frozenset([e1[0], e2[0], e3[0]]) | {("dir", x)})
    return found


@pytest.mark.parametrize("cross_venue", [False, True])
def test_random_stream_matches_brute_force(cross_venue):
    rng = np.random.default_rng(7)
    assets = ["USD", "BTC", "ETH", "SOL", "XRP"]
    value = {"USD": 1.0, "BTC": 100.0, "ETH": 10.0, "SOL": 2.0, "XRP": 0.5}
    pairs = [("BTC", "USD"), ("ETH", "USD"), ("ETH", "BTC"), ("SOL", "USD"), ("SOL", "ETH"),
             ("XRP", "USD"), ("XRP", "BTC"), ("SOL", "BTC")]
    venues = ["binance", "kraken", "coinbase"]
    fees = {"binance": 5.0, "kraken": 8.0, "coinbase": 12.0}
    max_age_ms = 30
    arb = TriangularArbitrage(fees=fees, max_quote_age_ms=max_age_ms, cross_venue=cross_venue)
    quotes = {}
    n_hits = 0
    for step in range(1500):
        now = step * MS
        b, q = pairs[rng.integers(len(pairs))]
        v = venues[rng.integers(3)]
        mid = value[b] / value[q] * math.exp(rng.normal(0, 0.003))
        half = mid * rng.uniform(0, 0.002)
        bid, ask = mid - half, mid + half
        if rng.random() < 0.03:
            ask = np.nan
        if rng.random() < 0.03:
            bid, ask = ask, bid
        row = (v, f"{b}-{q}", bid, rng.uniform(0.1, 3), ask, rng.uniform(0.1, 3), now)
        quotes[(v, f"{b}-{q}")] = (bid, row[3], ask, row[5], now)
        evs = arb.update(quote_ticks([row]))
        got = set()
        for ev in evs:
            keys = frozenset((l.venue, l.symbol) for l in ev.legs)
            # direction: the asset the updated market's leg starts from
            i = [(l.venue, l.symbol) for l in ev.legs].index((v, f"{b}-{q}"))
            leg = ev.legs[i]
            base, quote = leg.symbol.split("-")
            got.add(keys | {("dir", base if leg.side == "sell" else quote)})
        expect = brute_force_update(quotes, fees, (v, f"{b}-{q}"), now, max_age_ms * MS,
                                    cross_venue, 1.0)
        assert got == expect, step
        n_hits += len(got)
    assert n_hits > 20  # the stream does exercise the detector


# ------------------------------------------------ the simulator's market model

SIM_SYMBOLS = ("BTC-USDT", "ETH-USDT", "ETH-BTC", "SOL-USDT", "SOL-BTC", "SOL-ETH")
SIM_FEES = {"binance": 10.0, "kraken": 16.0, "coinbase": 25.0}


def _sim_model(seed=3):
    from hftsig.simulator.market import MarketModel

    return MarketModel(SIM_SYMBOLS, seed=seed, rate=10)


def _thresholds(model, venue):
    """(shift surely profitable after fees and spreads, shift below the fees alone)."""
    others = [w for w in model.venues if w != venue]
    half = {v: model.spread_bps[v] / 2 for v in model.venues}
    above = (SIM_FEES[venue] + half[venue] + min(SIM_FEES[w] + half[w] for w in others)
             + 2 * model.noise_bps + 3.0)
    below = SIM_FEES[venue] + min(SIM_FEES[w] for w in others)
    return above, below


def test_simulator_mispricings_above_fees_reported_below_not():
    from hftsig.arbitrage import quotes_from_model

    model = _sim_model()
    arb = TriangularArbitrage(fees=SIM_FEES, max_quote_age_ms=500)
    rng = np.random.default_rng(11)
    cases = []
    for k in range(18):
        venue = model.venues[k % 3]
        symbol = SIM_SYMBOLS[(k * 5) % len(SIM_SYMBOLS)]
        above, below = _thresholds(model, venue)
        sign = 1.0 if k % 2 else -1.0
        big = k % 3 != 1
        bps = sign * (above + rng.uniform(0, 20) if big else below - rng.uniform(2, 10))
        cases.append((venue, symbol, bps, big))
    hits_outside = []
    for venue, symbol, bps, big in cases:
        for _ in range(5):  # quiet steps between mispricings
            model.step()
            hits_outside += arb.update(quotes_from_model(model))
        rec = model.inject_mispricing(venue, symbol, bps, duration_s=0.5)
        found = []
        while model.t < rec["end"] + 1e-9:
            model.step()
            found += arb.update(quotes_from_model(model))
        if big:
            assert any((venue, symbol) in {(l.venue, l.symbol) for l in ev.legs}
                       for ev in found), (venue, symbol, bps)
            assert all(ev.net_edge_bps > 0 for ev in found)
        else:
            assert found == [], (venue, symbol, bps, found[:1])
    # the books never make an opportunity on their own
    assert hits_outside == []


def test_simulator_stale_and_one_sided_venues_rejected():
    from hftsig.arbitrage import quotes_from_model

    def run(withhold, one_sided):
        model = _sim_model(seed=5)
        arb = TriangularArbitrage(fees=SIM_FEES, max_quote_age_ms=300)

        def feed(first=False):
            q = quotes_from_model(model, ts=int(round(model.t * 1e9)))
            if not first:  # withheld venues quoted once, at the first step only
                q = q[~np.isin(q["exchange"], [exchange_code(v) for v in withhold])]
            if one_sided:
                m = (q["exchange"] == exchange_code("kraken")) & (q["symbol"] == b"BTC-USDT")
                q["ask_px"][m] = np.nan
            return arb.update(q)

        model.step()
        feed(first=True)
        above, _ = _thresholds(model, "binance")
        model.inject_mispricing("binance", "BTC-USDT", above + 10, duration_s=1.0)
        found = []
        for _ in range(10):
            model.step()
            found += feed()
        return found

    from hftsig.ticks import exchange_code

    last_other = 100 * MS  # the withheld venues' quotes are from the first step (t = 0.1 s)
    base = run((), False)
    assert any(ev.kind == "spatial" and "kraken" in ev.venues and ev.ts > last_other + 300 * MS
               for ev in base)
    stale = run(("kraken", "coinbase"), False)
    assert any(set(ev.venues) != {"binance"} for ev in stale)  # while still fresh
    for ev in stale:
        assert max(ev.quote_ages_ms) <= 300
        if ev.ts > last_other + 300 * MS:
            assert set(ev.venues) == {"binance"}
    one = run((), True)
    assert one  # coinbase still pairs with binance
    for ev in one:
        assert ("kraken", "BTC-USDT") not in {(l.venue, l.symbol) for l in ev.legs}
