"""Tests of hftsig.arbitrage.cycles: exact edges on hand-built quote streams, validity rules,
cross-venue cycles, Bellman-Ford against brute force, and the detector against an
independent brute-force evaluation on random streams."""
import itertools
import math

import numpy as np
import pytest

from hftsig.arbitrage.cycles import (
    DEFAULT_TAKER_FEES_BPS,
    CycleArbitrage,
    Episode,
    Opportunity,
    bounded_negative_cycles,
    quote_ticks,
)
from hftsig.market.ticks import (
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
    arb = CycleArbitrage(fees={"binance": 7.5}, max_quote_age_ms=100)
    evs = arb.update(tri())
    assert len(evs) == 1
    ev = evs[0]
    assert isinstance(ev, Opportunity)
    assert ev.kind == "triangle"
    assert ev.cycle == ("USDT", "ETH", "BTC", "USDT")
    assert ev.venues == ("binance",) * 3
    assert [(leg.symbol, leg.side, leg.price, leg.size) for leg in ev.legs] == [
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
    a = CycleArbitrage(fees={"binance": 7.5}).update(tri())[0]
    b = CycleArbitrage(fees={"binance": 0.00075}, fee_unit="fraction").update(tri())[0]
    assert a.net_edge_bps == pytest.approx(b.net_edge_bps, rel=1e-12)


def test_fees_kill_the_edge():
    # gross edge is 39.96 bps; three legs at 13.4 bps each cost ~40.1 bps
    assert CycleArbitrage(fees=13.4).update(tri()) == []
    assert len(CycleArbitrage(fees=13.2).update(tri())) == 1


def test_other_direction_and_size_limit():
    # ETH-BTC ask low: USDT -> BTC -> ETH -> USDT is the profitable way round
    arb = CycleArbitrage(fees=0.0)
    evs = arb.update(tri(eth_btc=(0.0990, 2.0, 0.0991, 2.0)))
    assert len(evs) == 1
    ev = evs[0]
    assert ev.cycle == ("USDT", "BTC", "ETH", "USDT")
    assert [(leg.symbol, leg.side) for leg in ev.legs] == [
        ("BTC-USDT", "buy"), ("ETH-BTC", "buy"), ("ETH-USDT", "sell")]
    gross = (1 / 100.1) * (1 / 0.0991) * 10.0
    assert ev.net_edge_bps == pytest.approx((gross - 1) * 1e4, rel=1e-12)
    # limits in USDT: BTC ask 1 -> 100.1; ETH-BTC ask 2 ETH = 0.1982 BTC -> 0.1982*100.1;
    # ETH bid 5 ETH -> 5*0.0991*100.1
    assert ev.notional == pytest.approx(0.1982 * 100.1, rel=1e-12)


def test_min_edge_threshold_is_strict():
    gross_bps = ((1 / 10.01) * 0.1005 * 100.0 - 1) * 1e4
    assert CycleArbitrage(fees=0.0, min_edge_bps=gross_bps + 1e-6).update(tri()) == []
    assert len(CycleArbitrage(fees=0.0, min_edge_bps=gross_bps - 1e-6).update(tri())) == 1


def test_stale_quotes_never_make_an_opportunity():
    arb = CycleArbitrage(fees=0.0, max_quote_age_ms=50)
    rows = tri(ts=0)
    arb.update(rows[:2])  # BTC-USDT and ETH-USDT at t=0
    late = rows[2:].copy()
    late["ts_event"] = 51 * MS
    assert arb.update(late) == []
    late["ts_event"] = 50 * MS  # exactly max age: still fresh
    arb2 = CycleArbitrage(fees=0.0, max_quote_age_ms=50)
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
    arb = CycleArbitrage(fees=0.0)
    assert arb.update(tri(eth_btc=bad)) == []
    # the same detector sees the opportunity once the book is sane again
    assert len(arb.update(tri(ts=1)[2:])) == 1


def test_invalid_leg_other_than_trigger_rejected():
    arb = CycleArbitrage(fees=0.0)
    rows = tri()
    rows[0]["ask_px"] = np.nan  # BTC-USDT one-sided, not the updated market
    assert arb.update(rows) == []


def test_spatial_cross_exchange_exact():
    fees = {"kraken": 26.0, "coinbase": 40.0}
    arb = CycleArbitrage(fees=fees)
    evs = arb.update(quote_ticks([
        ("kraken", "BTC-USD", 101.0, 0.5, 101.2, 0.5, 0),
        ("coinbase", "BTC-USD", 99.8, 2.0, 100.0, 0.3, 1 * MS),
    ]))
    assert len(evs) == 1
    ev = evs[0]
    assert ev.kind == "spatial"
    assert ev.cycle == ("USD", "BTC", "USD")
    assert ev.venues == ("coinbase", "kraken")
    assert [(leg.side, leg.price) for leg in ev.legs] == [("buy", 100.0), ("sell", 101.0)]
    net = (101.0 / 100.0) * (1 - 26e-4) * (1 - 40e-4)
    assert ev.net_edge_bps == pytest.approx((net - 1) * 1e4, rel=1e-12)
    assert ev.gross_edge_bps == pytest.approx(100.0, rel=1e-12)
    # 0.3 BTC offered on coinbase: 30 USD
    assert ev.notional == pytest.approx(30.0)
    assert ev.quote_ages_ms == (0.0, 1.0)
    assert CycleArbitrage(fees=fees, spatial=False).update(quote_ticks([
        ("kraken", "BTC-USD", 101.0, 0.5, 101.2, 0.5, 0),
        ("coinbase", "BTC-USD", 99.8, 2.0, 100.0, 0.3, 0)])) == []


def test_cross_venue_triangle():
    rows = quote_ticks([
        ("binance", "BTC-USDT", 100.0, 1.0, 100.1, 1.0, 0),
        ("kraken", "ETH-USDT", 10.0, 5.0, 10.01, 5.0, 0),
        ("coinbase", "ETH-BTC", 0.1005, 5.0, 0.1006, 5.0, 0),
    ])
    fees = {"binance": 1.0, "kraken": 2.0, "coinbase": 3.0}
    assert CycleArbitrage(fees=fees, cross_venue=False).update(rows) == []
    evs = CycleArbitrage(fees=fees, cross_venue=True).update(rows)
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
    all_ = CycleArbitrage(fees=0.0).update(rows)
    assert sorted(ev.venues for ev in all_) == [
        ("binance", "binance", "binance"), ("binance", "binance", "kraken")]
    best = CycleArbitrage(fees={"binance": 0.0, "kraken": 1.0}, report="best").update(rows)
    assert len(best) == 1 and best[0].venues == ("binance",) * 3


def test_status_disconnect_invalidates_venue():
    arb = CycleArbitrage(fees=0.0)
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
    assert CycleArbitrage(fees=0.0, venues=["coinbase", "binance"]).update(rows) == []
    trade = rows.copy()
    trade["kind"] = KIND_TRADE
    arb = CycleArbitrage(fees=0.0)
    assert arb.update(trade) == []
    assert arb.n_ticks_ == 2
    weird = quote_ticks([("kraken", "BTCUSD", 1.0, 1.0, 2.0, 1.0, 0)])
    assert arb.update(weird) == []


def test_single_records_batches_callbacks_and_ring_buffer():
    seen = []
    arb = CycleArbitrage(fees=0.0, on_opportunity=seen.append, max_events=2,
                              notify="updates")
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
    batch = CycleArbitrage(fees=0.0).update(np.concatenate([tri(), tri(1), tri(2)]))
    assert [e.net_edge_bps for e in batch] == [e.net_edge_bps for e in out]


def test_bad_input():
    with pytest.raises(TypeError, match="ticks"):
        CycleArbitrage().update(np.zeros(3))
    with pytest.raises(ValueError, match="fees"):
        CycleArbitrage(fees=-1).update(tri())
    with pytest.raises(ValueError, match="fee_unit"):
        CycleArbitrage(fee_unit="percent").update(tri())
    with pytest.raises(ValueError, match="report"):
        CycleArbitrage(report="some").update(tri())
    with pytest.raises(ValueError, match="max_quote_age_ms"):
        CycleArbitrage(max_quote_age_ms=-1).update(tri())
    with pytest.raises(ValueError, match="max_len"):
        CycleArbitrage().find_cycles(max_len=1)
    with pytest.raises(ValueError, match="rates"):
        bounded_negative_cycles(np.zeros((2, 3)), 3)
    with pytest.raises(ValueError, match="rows"):
        quote_ticks([("binance", "BTC-USDT", 1.0)])


def order_book(venue, symbol, bids, asks):
    """A real hftsig.market.book.OrderBook holding the given levels (one snapshot message)."""
    from hftsig.market.book import OrderBook
    from hftsig.market.ticks import (
        FLAG_LAST,
        FLAG_SNAPSHOT_BEGIN,
        KIND_BOOK_SNAPSHOT,
        exchange_code,
    )

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
    arb = CycleArbitrage(fees=0.0, notional=80.0, books=lambda v, s: books.get((v, s)))
    ev = arb.update(rows)[0]
    # buy 80 USD of BTC: 0.3 @100 (30 USD) then 50 USD @100.5; sell it at 101 then 100.8
    btc = 0.3 + 50.0 / 100.5
    usd = 0.5 * 101.0 + (btc - 0.5) * 100.8
    assert ev.notional == pytest.approx(80.0)
    assert ev.vwap_edge_bps == pytest.approx((usd / 80.0 - 1) * 1e4, rel=1e-10)
    # without books the top of book caps the trade at 30 USD
    ev2 = CycleArbitrage(fees=0.0, notional=80.0).update(rows)[0]
    assert ev2.notional == pytest.approx(30.0, rel=1e-9)
    assert ev2.vwap_edge_bps == pytest.approx(100.0, rel=1e-6)
    # a notional so large that the VWAP edge turns negative is not reported
    assert CycleArbitrage(fees=0.0, notional=140.0, books=lambda v, s: books.get((v, s)),
                               min_edge_bps=60.0).update(rows) == []


def test_book_quotes_from_books():
    from hftsig.market.ticks import FLAG_LAST, KIND_BOOK_DELTA, exchange_code

    books = {
        ("coinbase", "BTC-USD"): order_book("coinbase", "BTC-USD", [[99.8, 2.0]], [[100.0, 0.3]]),
        ("kraken", "BTC-USD"): order_book("kraken", "BTC-USD", [[101.0, 0.5]], [[101.2, 0.5]]),
    }
    t = empty_ticks(2)
    t["kind"] = KIND_BOOK_DELTA
    t["flags"] = FLAG_LAST
    t["symbol"] = b"BTC-USD"
    t["exchange"] = [exchange_code("kraken"), exchange_code("coinbase")]
    arb = CycleArbitrage(fees=0.0, books=lambda v, s: books.get((v, s)), book_quotes=True)
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
    arb = CycleArbitrage(fees=0.0)
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
    value = {"USD": 1.0, "BTC": 100.0, "ETH": 10.0, "SOL": 2.0, "XRP": 0.5}
    pairs = [("BTC", "USD"), ("ETH", "USD"), ("ETH", "BTC"), ("SOL", "USD"), ("SOL", "ETH"),
             ("XRP", "USD"), ("XRP", "BTC"), ("SOL", "BTC")]
    venues = ["binance", "kraken", "coinbase"]
    fees = {"binance": 5.0, "kraken": 8.0, "coinbase": 12.0}
    max_age_ms = 30
    arb = CycleArbitrage(fees=fees, max_quote_age_ms=max_age_ms, cross_venue=cross_venue)
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
            keys = frozenset((leg.venue, leg.symbol) for leg in ev.legs)
            # direction: the asset the updated market's leg starts from
            i = [(leg.venue, leg.symbol) for leg in ev.legs].index((v, f"{b}-{q}"))
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
    from hftsig.arbitrage.cycles import quotes_from_model

    model = _sim_model()
    arb = CycleArbitrage(fees=SIM_FEES, max_quote_age_ms=500)
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
            assert any((venue, symbol) in {(leg.venue, leg.symbol) for leg in ev.legs}
                       for ev in found), (venue, symbol, bps)
            assert all(ev.net_edge_bps > 0 for ev in found)
        else:
            assert found == [], (venue, symbol, bps, found[:1])
    # the books never make an opportunity on their own
    assert hits_outside == []


def test_simulator_stale_and_one_sided_venues_rejected():
    from hftsig.arbitrage.cycles import quotes_from_model

    def run(withhold, one_sided):
        model = _sim_model(seed=5)
        arb = CycleArbitrage(fees=SIM_FEES, max_quote_age_ms=300)

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

    from hftsig.market.ticks import exchange_code

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
        assert ("kraken", "BTC-USDT") not in {(leg.venue, leg.symbol) for leg in ev.legs}


# ---------------------------------------------------------------- episodes
def eth_btc(bid, ts, venue="binance"):
    """One ETH-BTC quote: bid 0.1005 gives the tri() triangle +39.96 bps (no fees)."""
    return quote_ticks([(venue, "ETH-BTC", bid, 5.0, bid + 0.0001, 5.0, ts)])


def test_one_episode_per_persistent_cycle_open_update_close():
    arb = CycleArbitrage(fees=0.0, max_quote_age_ms=10_000)
    heard = []
    arb.on_episode(heard.append, states=("opened", "updated", "closed"))
    evs = arb.update(tri(ts=0))
    assert len(evs) == 1 and evs[0].episode_id == 1
    assert [ep.state for ep in heard] == ["opened"]
    assert [ep.id for ep in arb.open_episodes()] == [1] and len(arb.episodes_) == 0
    # the same edge again: still one episode, not an update
    arb.update(eth_btc(0.1005, 100 * MS))
    assert len(heard) == 1 and arb.n_opportunities_ == 2
    # a smaller edge for 400 ms, then a larger one for 200 ms, then gone
    arb.update(eth_btc(0.1003, 200 * MS))
    arb.update(eth_btc(0.1007, 600 * MS))
    assert arb.update(eth_btc(0.0999, 800 * MS)) == []
    assert [ep.state for ep in heard] == ["opened", "updated", "updated", "closed"]
    assert arb.open_episodes() == [] and arb.n_episodes_ == 1
    (ep,) = arb.episodes_
    assert isinstance(ep, Episode) and ep.closed and ep.close_reason == "edge"
    assert ep.kind == "triangle" and ep.cycle == ("USDT", "ETH", "BTC", "USDT")
    assert ep.venues == ("binance",) * 3 and ep.sides == ("buy", "sell", "sell")
    assert ep.symbols == ("ETH-USDT", "ETH-BTC", "BTC-USDT")
    assert (ep.start_ts, ep.last_ts, ep.end_ts) == (0, 600 * MS, 800 * MS)
    assert ep.duration_s == pytest.approx(0.8)
    assert ep.n_updates == 3
    edge = {bid: ((1 / 10.01) * bid * 100.0 - 1) * 1e4 for bid in (0.1003, 0.1005, 0.1007)}
    assert ep.first_edge_bps == pytest.approx(edge[0.1005])
    assert ep.peak_edge_bps == pytest.approx(edge[0.1007]) and ep.peak.ts == 600 * MS
    mean = (edge[0.1005] * 200 + edge[0.1003] * 400 + edge[0.1007] * 200) / 800
    assert ep.mean_edge_bps == pytest.approx(mean, rel=1e-12)
    assert ep.peak_edge_bps >= ep.mean_edge_bps
    # at the peak ETH-BTC still sells 5 ETH and the 5 ETH ask limits the trade
    assert ep.notional == pytest.approx(50.05) and ep.notional_usd == pytest.approx(50.05)
    assert "closed (edge)" in str(ep) and "episode 1 triangle" in str(ep)


def test_episode_reopens_after_a_gap_and_each_report_names_its_episode():
    arb = CycleArbitrage(fees=0.0, max_quote_age_ms=10_000, report="all")
    first = arb.update(tri(ts=0))
    arb.update(eth_btc(0.0999, 100 * MS))  # gone
    again = arb.update(eth_btc(0.1005, 300 * MS))
    assert [ev.episode_id for ev in first] == [1] and [ev.episode_id for ev in again] == [2]
    assert [ep.id for ep in arb.episodes_] == [1]
    (ep2,) = arb.open_episodes()
    assert ep2.id == 2 and ep2.start_ts == 300 * MS and not ep2.closed
    assert arb.episodes_[0].end_ts == 100 * MS


def test_stale_quotes_close_an_episode_when_they_age_out():
    arb = CycleArbitrage(fees=0.0, max_quote_age_ms=500)
    arb.update(tri(ts=0))
    # another market ticks on: the triangle's quotes passed 500 ms at t = 500 ms
    arb.update(quote_ticks([("kraken", "SOL-USDT", 10.0, 1.0, 10.1, 1.0, 900 * MS)]))
    (ep,) = arb.episodes_
    assert ep.close_reason == "quotes" and ep.end_ts == 500 * MS


def test_disconnect_closes_the_venue_episodes():
    arb = CycleArbitrage(fees=0.0)
    arb.update(tri(ts=0, venue="kraken"))
    st = empty_ticks(1)
    st["kind"], st["exchange"], st["side"] = KIND_STATUS, EXCHANGE_KRAKEN, STATUS_DISCONNECTED
    st["ts_event"] = 50 * MS
    arb.update(st)
    (ep,) = arb.episodes_
    assert ep.close_reason == "quotes" and ep.end_ts == 50 * MS


def test_stop_closes_open_episodes_and_on_opportunity_hears_each_episode_once():
    seen = []
    arb = CycleArbitrage(fees=0.0, max_quote_age_ms=10_000, on_opportunity=seen.append)
    evs = []
    for ts in range(0, 1000 * MS, 100 * MS):  # ten reports, edge moving, one episode
        evs += arb.update(eth_btc(0.1005 + (ts // (100 * MS)) * 1e-5, ts) if ts else tri(ts))
    assert len(evs) == 10 and seen == evs[:1]
    assert len(arb.open_episodes()) == 1 and len(arb.episodes_) == 0
    closed = arb.close_episodes(now=1200 * MS)
    assert [ep.close_reason for ep in closed] == ["stopped"] and closed[0].end_ts == 1200 * MS
    assert arb.open_episodes() == [] and list(arb.episodes_) == closed
    assert closed[0].n_updates == 10 and closed[0].duration_s == pytest.approx(1.2)
    assert arb.close_episodes() == []


def test_report_best_keeps_tracking_a_cycle_that_is_not_the_best():
    """With report="best" an open episode is re-evaluated on the current quotes."""
    arb = CycleArbitrage(fees=0.0, max_quote_age_ms=10_000, report="best")
    arb.update(quote_ticks([("kraken", "BTC-USD", 101.0, 1.0, 101.2, 1.0, 0),
                            ("coinbase", "BTC-USD", 99.8, 1.0, 100.0, 1.0, 0)]))
    assert [ep.venues for ep in arb.open_episodes()] == [("coinbase", "kraken")]
    # binance quotes even lower: the best cycle is now binance->kraken, coinbase->kraken holds
    arb.update(quote_ticks([("binance", "BTC-USD", 99.0, 1.0, 99.5, 1.0, 10 * MS)]))
    assert sorted(ep.venues for ep in arb.open_episodes()) == [
        ("binance", "kraken"), ("coinbase", "kraken")]
    arb.update(quote_ticks([("kraken", "BTC-USD", 99.6, 1.0, 99.7, 1.0, 20 * MS)]))
    assert [ep.venues for ep in arb.open_episodes()] == [("binance", "kraken")]
    assert [(ep.venues, ep.end_ts) for ep in arb.episodes_] == [(("coinbase", "kraken"), 20 * MS)]


def test_episode_api_bad_input():
    arb = CycleArbitrage()
    with pytest.raises(TypeError, match="callback"):
        arb.on_episode(42)
    with pytest.raises(ValueError, match="states"):
        arb.on_episode(print, states=("finished",))
    with pytest.raises(ValueError, match="notify"):
        CycleArbitrage(notify="sometimes").update(tri())


def test_default_fee_table_is_the_one_used_everywhere():
    import json
    import pathlib

    import hftsig.arbitrage.live as live

    arb = CycleArbitrage()
    assert {v: arb._fee_bps(v) for v in DEFAULT_TAKER_FEES_BPS} == DEFAULT_TAKER_FEES_BPS
    assert live._fees_for(list(DEFAULT_TAKER_FEES_BPS), None) == DEFAULT_TAKER_FEES_BPS
    root = pathlib.Path(__file__).resolve().parents[2]
    nb = json.loads((root / "notebooks" / "triangular_arbitrage.ipynb").read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    assert "DEFAULT_TAKER_FEES_BPS" in code
    guides = [root / "README.md", *sorted((root / "docs").glob("**/*.md"))]
    texts = {p.name: p.read_text() for p in guides if p.exists()}
    assert any("DEFAULT_TAKER_FEES_BPS" in t for t in texts.values())
    # nobody carries a fee table of their own: fees={"kraken": 26...}, --fees kraken=40
    import re

    table = re.compile(r"fees[^\n]{0,40}?(kraken|coinbase)[\"']?\s*[:=]\s*\d", re.I)
    texts["notebook"] = code
    texts["arbitrage_live.py"] = pathlib.Path(live.__file__).read_text()
    texts["demo.py"] = (root / "hftsig" / "app" / "demo.py").read_text()
    for name, text in texts.items():
        assert not table.search(text), (name, table.search(text))
    # the old tables, as they were in the notebook and the README, are caught
    assert table.search('FEES = {"binance": 10.0, "kraken": 16.0, "coinbase": 25.0}')
    assert table.search('fees={"binance": 10, "kraken": 26, "coinbase": 60}')


def test_episodes_from_one_batch_equal_episodes_from_tick_by_tick_updates():
    """A whole recording in one update() call splits episodes at the exact ticks."""
    seq = [tri(ts=0), eth_btc(0.1003, 100 * MS), eth_btc(0.0999, 150 * MS),
           quote_ticks([("binance", "SOL-USDT", 10.0, 1.0, 10.1, 1.0, 200 * MS)]),
           eth_btc(0.1006, 300 * MS), eth_btc(0.1005, 320 * MS), eth_btc(0.1, 400 * MS),
           eth_btc(0.1007, 500 * MS)]
    one = CycleArbitrage(fees=0.0, max_quote_age_ms=10_000, report="all")
    one.update(np.concatenate(seq))
    each = CycleArbitrage(fees=0.0, max_quote_age_ms=10_000, report="all")
    for t in seq:
        each.update(t)
    for arb in (one, each):
        arb.close_episodes(now=600 * MS)
    spans = [(ep.start_ts, ep.end_ts, ep.close_reason, ep.n_updates) for ep in one.episodes_]
    assert spans == [(0, 150 * MS, "edge", 2), (300 * MS, 400 * MS, "edge", 2),
                     (500 * MS, 600 * MS, "stopped", 1)]
    assert spans == [(ep.start_ts, ep.end_ts, ep.close_reason, ep.n_updates)
                     for ep in each.episodes_]
    assert [ev.episode_id for ev in one.events_] == [1, 1, 2, 2, 3]
