"""The simulated market model: determinism, consistency, no free arbitrage, events."""
import math

import pytest

from hftsig.simulator.market import BookUpdate, MarketModel, Trade, format_fixed

SYMS = ["BTC-USDT", "ETH-USDT", "ETH-BTC", "SOL-USDT", "SOL-BTC", "SOL-ETH", "BTC-USD", "USDT-USD"]


def _summary(events):
    out = []
    for e in events:
        if isinstance(e, BookUpdate):
            out.append(("b", e.venue, e.symbol, tuple(e.changes), e.first_id, e.last_id))
        else:
            out.append(("t", e.venue, e.symbol, e.trade_id, e.price_ticks, e.qty_lots, e.side))
    return out


def test_same_seed_same_market_different_seed_differs():
    a = MarketModel(SYMS, seed=7, rate=20)
    b = MarketModel(SYMS, seed=7, rate=20)
    c = MarketModel(SYMS, seed=8, rate=20)
    ea, eb, ec = a.advance(2.0), b.advance(2.0), c.advance(2.0)
    assert _summary(ea) == _summary(eb)
    assert _summary(ea) != _summary(ec)
    for v in a.venues:
        for s in SYMS:
            assert a.book(v, s)["bids"] == b.book(v, s)["bids"]
            assert a.book(v, s)["asks"] == b.book(v, s)["asks"]


def test_mids_are_consistent_across_triangles():
    m = MarketModel(SYMS, seed=3)
    m.advance(3.0)
    assert m.mid("ETH-USDT") == pytest.approx(m.mid("ETH-BTC") * m.mid("BTC-USDT"), rel=1e-12)
    assert m.mid("SOL-ETH") == pytest.approx(m.mid("SOL-BTC") / m.mid("ETH-BTC"), rel=1e-12)
    # USDT trades within a few bps of USD
    assert abs(m.mid("USDT-USD") - 1.0) < 1e-3
    assert m.mid("BTC-USD") == pytest.approx(m.mid("BTC-USDT") * m.mid("USDT-USD"), rel=1e-12)


def _edge_bps(rates):
    return 1e4 * (sum(math.log(r) for r in rates))


def test_books_never_offer_arbitrage_without_injection():
    m = MarketModel(SYMS, seed=11, rate=20)
    worst = -1e9
    for _ in range(60):
        m.step()
        tops = {(v, s): m.top(v, s) for v in m.venues for s in SYMS}
        for s in SYMS:
            for va in m.venues:
                for vb in m.venues:
                    # sell on va at its bid, buy on vb at its ask
                    worst = max(worst, _edge_bps([tops[va, s][0] / tops[vb, s][2]]))
        for va in m.venues:
            for vb in m.venues:
                for vc in m.venues:
                    # USDT -> BTC (buy BTC-USDT) -> ETH (buy ETH-BTC) -> USDT (sell ETH-USDT), and reverse
                    fwd = [1 / tops[va, "BTC-USDT"][2], 1 / tops[vb, "ETH-BTC"][2], tops[vc, "ETH-USDT"][0]]
                    rev = [1 / tops[vc, "ETH-USDT"][2], tops[vb, "ETH-BTC"][0], tops[va, "BTC-USDT"][0]]
                    worst = max(worst, _edge_bps(fwd), _edge_bps(rev))
    assert worst < 0


def test_book_updates_replay_to_the_final_book():
    m = MarketModel(["ETH-BTC", "BTC-USDT"], seed=5, rate=50, depth=10)
    start = {}
    for v in m.venues:
        for s in m.symbols:
            bids, asks, uid = m.book_ticks(v, s)
            start[v, s] = ({p: q for p, q in bids}, {p: q for p, q in asks}, uid)
    events = m.advance(2.0)
    assert any(isinstance(e, Trade) for e in events)
    for e in events:
        if not isinstance(e, BookUpdate):
            continue
        bids, asks, uid = start[e.venue, e.symbol]
        assert e.first_id == uid + 1 and e.last_id == uid + len(e.changes)
        for side, p, q in e.changes:
            book = bids if side == 1 else asks
            if q == 0:
                assert p in book
                del book[p]
            else:
                book[p] = q
        start[e.venue, e.symbol] = (bids, asks, e.last_id)
    for v in m.venues:
        for s in m.symbols:
            bids, asks, uid = m.book_ticks(v, s)
            assert dict(bids) == start[v, s][0] and dict(asks) == start[v, s][1]
            assert uid == start[v, s][2]
            assert len(bids) == len(asks) == 10
            assert [p for p, _ in bids] == sorted((p for p, _ in bids), reverse=True)
            assert bids[0][0] < asks[0][0]


def test_trades_happen_at_the_touch():
    m = MarketModel(["BTC-USDT"], seed=2, rate=20, trade_rate=40)
    seen = 0
    for _ in range(40):
        for e in m.step():
            if isinstance(e, Trade):
                bids, asks, _ = m.book_ticks(e.venue, e.symbol)
                assert e.price_ticks == (asks[0][0] if e.side == 1 else bids[0][0])
                assert e.qty_lots >= 1
                seen += 1
    assert seen > 20


def test_mispricing_shifts_quotes_for_its_duration():
    m = MarketModel(["BTC-USDT", "ETH-USDT"], seed=4, rate=20, volatility_bps=0.0)
    rec = m.inject_mispricing("kraken", "BTC-USDT", 25.0, 0.5)
    assert rec["exchange"] == "kraken" and rec["bps"] == 25.0 and rec["end"] - rec["start"] == pytest.approx(0.5)
    assert m.mispricings == [rec]
    m.step()
    bid, _, ask, _ = m.top("kraken", "BTC-USDT")
    shifted = (bid + ask) / 2 / m.mid("BTC-USDT") - 1
    assert shifted * 1e4 == pytest.approx(25.0, abs=1.5)
    # other venues and symbols unaffected
    bid, _, ask, _ = m.top("binance", "BTC-USDT")
    assert abs((bid + ask) / 2 / m.mid("BTC-USDT") - 1) * 1e4 < 1.0
    m.advance(0.6)
    bid, _, ask, _ = m.top("kraken", "BTC-USDT")
    assert abs((bid + ask) / 2 / m.mid("BTC-USDT") - 1) * 1e4 < 1.5


def test_nbbo_and_specs():
    m = MarketModel(["BTC-USDT"], seed=0)
    n = m.nbbo("BTC-USDT")
    assert n["bid"] == max(m.top(v, "BTC-USDT")[0] for v in m.venues)
    assert n["ask"] == min(m.top(v, "BTC-USDT")[2] for v in m.venues)
    assert m.top(n["bid_venue"], "BTC-USDT")[0] == n["bid"]
    assert m.spec("kraken", "BTC-USDT").price_decimals == 1
    assert m.spec("binance", "BTC-USDT").price_decimals == 2


def test_format_fixed():
    assert format_fixed(123456, 2) == "1234.56"
    assert format_fixed(1, 8) == "0.00000001"
    assert format_fixed(0, 3) == "0.000"


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"symbols": []}, "symbols"),
        ({"symbols": ["BTCUSDT"]}, "BASE-QUOTE"),
        ({"symbols": ["FOO-USD"]}, "FOO"),
        ({"symbols": ["BTC-USD"], "venues": ["ftx"]}, "venues"),
        ({"symbols": ["BTC-USD"], "rate": 0}, "rate"),
        ({"symbols": ["BTC-USD"], "depth": 0}, "depth"),
        ({"symbols": ["BTC-USD"], "noise_bps": 5.0}, "noise_bps"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MarketModel(**kwargs)


def test_fast_requote_equals_the_full_requote():
    fast = MarketModel(SYMS, seed=9, rate=20, size_churn=0.2)
    full = MarketModel(SYMS, seed=9, rate=20, size_churn=0.2)
    full._force_full = True
    assert _summary(fast.advance(3.0)) == _summary(full.advance(3.0))
    for v in fast.venues:
        for s in SYMS:
            assert fast.book_ticks(v, s) == full.book_ticks(v, s)


# ---------------------------------------------------------------- requote kernels
# The Python requote the Cython kernels (hftsig/_ext/_simbook.pyx) replaced,
# kept here as the reference: the kernels must give the same sizes bit for bit
# and the same changes in the same order, so a seed still means the same market.

def _py_size(mean_lots, z, k, depth):
    q = int(mean_lots * math.exp(0.5 * z) * (1 + 0.3 * k / depth))
    return q if q > 1 else 1


def _py_requote_full(book, side, top, grid, gap, mean_lots, size_u, size_z, off, keep, depth, initial, changes):
    step = -gap if side == 1 else gap
    prices = [top] + list(range(grid, grid + step * (depth - 1), step))
    if side == 1:
        prices = [p for p in prices if p > 0]
    new = {}
    for k, p in enumerate(prices):
        old = book.get(p)
        if old is not None and not initial and size_u[off + k] < keep:
            new[p] = old
        else:
            new[p] = _py_size(mean_lots, size_z[off + k], k, depth)
    removed = book.keys() - new.keys()
    if removed:
        changes.extend((side, p, 0) for p in sorted(removed, reverse=side == 1))
    changes.extend((side, p, q) for p, q in new.items() if book.get(p) != q)
    items = iter(new.items())
    next(items)
    return new, dict(items)


def _py_requote_fast(book, side, top, mean_lots, size_u, size_z, off, keep, depth, grid, prices, changes):
    old_top, old_q = next(iter(book.items()))
    if top == old_top and size_u[off] < keep:
        top_q = old_q
    else:
        q = int(mean_lots * math.exp(0.5 * size_z[off]))
        top_q = q if q > 1 else 1
    if top != old_top:
        changes.append((side, old_top, 0))
    if top != old_top or top_q != old_q:
        changes.append((side, top, top_q))
    for k in [k for k, x in enumerate(size_u[off + 1:off + 1 + len(prices)], 1) if x >= keep]:
        q = _py_size(mean_lots, size_z[off + k], k, depth)
        p = prices[k - 1]
        if q != grid[p]:
            grid[p] = q
            changes.append((side, p, q))
    new = {top: top_q}
    new.update(grid)
    return new


def _requote_case(data):
    from hypothesis import strategies as st

    depth = data.draw(st.integers(2, 25), label="depth")
    side = data.draw(st.sampled_from([1, -1]), label="side")
    gap = data.draw(st.integers(1, 50), label="gap")
    top = data.draw(st.integers(4, 10**9), label="top")  # the top stays positive after a move
    mean_lots = data.draw(st.floats(1.0, 1e9), label="mean_lots")
    keep = data.draw(st.floats(0.0, 1.0), label="keep")
    draws = st.lists(st.floats(0.0, 1.0, exclude_max=True), min_size=2 * depth, max_size=2 * depth)
    size_u = data.draw(draws, label="size_u")
    size_z = data.draw(st.lists(st.floats(-6.0, 6.0), min_size=2 * depth, max_size=2 * depth), label="size_z")
    off = 0 if side == 1 else depth
    return depth, side, gap, top, mean_lots, keep, size_u, size_z, off


def test_requote_kernels_equal_the_python_requote():
    from hftsig._ext._simbook import requote_fast, requote_full
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=300, deadline=None)
    @given(st.data())
    def check(data):
        depth, side, gap, top, mean_lots, keep, size_u, size_z, off = _requote_case(data)
        start = top - gap if side == 1 else top + gap
        book0 = {}
        ref0, grid0 = _py_requote_full({}, side, top, start, gap, mean_lots, size_u, size_z, off, keep, depth, True, [])
        got0, kgrid0 = requote_full({}, side, top, start, gap, mean_lots, size_u, size_z, off, keep, depth, True, [])
        assert list(got0.items()) == list(ref0.items()) and list(kgrid0.items()) == list(grid0.items())
        book0 = ref0
        # A second requote, on the same grid (fast) and on a shifted one (full).
        size_u2 = data.draw(st.permutations(size_u), label="size_u2")
        top2 = top + data.draw(st.integers(-3, 3), label="move")
        ref_ch, got_ch = [], []
        ref_grid = dict(grid0)
        ref = _py_requote_fast(dict(book0), side, top2, mean_lots, size_u2, size_z, off, keep, depth,
                               ref_grid, list(grid0), ref_ch)
        k_grid = dict(grid0)
        got = requote_fast(dict(book0), side, top2, mean_lots, size_u2, size_z, off, keep, depth,
                           k_grid, list(grid0), got_ch)
        assert list(got.items()) == list(ref.items())
        assert got_ch == ref_ch and list(k_grid.items()) == list(ref_grid.items())
        shift = data.draw(st.integers(-2 * gap, 2 * gap), label="shift")
        ref_ch, got_ch = [], []
        ref, ref_levels = _py_requote_full(book0, side, top2, start + shift, gap, mean_lots, size_u2, size_z, off,
                                           keep, depth, False, ref_ch)
        got, got_levels = requote_full(book0, side, top2, start + shift, gap, mean_lots, size_u2, size_z, off,
                                       keep, depth, False, got_ch)
        assert list(got.items()) == list(ref.items()) and got_ch == ref_ch
        assert list(got_levels.items()) == list(ref_levels.items())

    check()


def test_requote_kernels_reject_short_draws():
    from hftsig._ext._simbook import requote_fast, requote_full

    with pytest.raises(ValueError, match="size_u"):  # the asks' draws (offset 5) are missing
        requote_full({}, -1, 100, 101, 1, 10.0, [0.5] * 5, [0.0] * 5, 5, 0.5, 5, True, [])
    with pytest.raises(ValueError, match="size_u"):
        requote_full({}, 1, 100, 99, 1, 10.0, [0.5] * 10, [0.0] * 4, 0, 0.5, 5, True, [])
    with pytest.raises(ValueError, match="book"):
        requote_fast({}, 1, 100, 10.0, [0.5] * 10, [0.0] * 10, 0, 0.5, 5, {}, [], [])


def test_a_seed_still_gives_the_pinned_market():
    # Sizes and ids of the first steps of one seed, recorded with the Python
    # requote before the kernels replaced it: the stream of a seed is unchanged.
    import hashlib

    m = MarketModel(["BTC-USDT", "ETH-BTC"], seed=5, rate=100, size_churn=0.7)
    digest = hashlib.sha256(repr(_summary(m.advance(0.5))).encode()).hexdigest()
    assert digest == PINNED_SEED5


PINNED_SEED5 = "dbf46e6296005b5f940556e9756e6961d9510238a15c85e125d6681d7a8c1824"  # 360 events


def _py_quote(log_base, log_quote, bps, spread_bps, level_gap_bps, tick, lot):
    # MarketModel._venue_mid and the head of _rebuild before the kernel
    mid = math.exp(log_base - log_quote) * (1.0 + bps * 1e-4)
    half = mid * spread_bps * 0.5e-4
    best_bid = math.floor((mid - half) / tick)
    best_ask = math.ceil((mid + half) / tick)
    if best_ask <= best_bid:
        best_ask = best_bid + 1
    gap = max(1, int(round(mid * level_gap_bps * 1e-4 / tick)))
    mean_lots = max(1.0, 5000.0 / math.exp(log_base) / lot)
    return best_bid, best_ask, gap, mean_lots, ((best_bid - 1) // gap) * gap, -((-(best_ask + 1)) // gap) * gap


def test_quote_kernel_equals_the_python_arithmetic():
    from hftsig._ext._simbook import quote
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=1000, deadline=None)
    @given(st.floats(-5.0, 12.0), st.floats(-5.0, 12.0), st.floats(-50.0, 50.0), st.floats(0.0, 20.0),
           st.floats(0.0, 5.0), st.sampled_from([10.0**-k for k in range(11)]),
           st.sampled_from([10.0**-k for k in range(9)]))
    def check(log_base, log_quote, bps, spread, gap_bps, tick, lot):
        if math.exp(log_base - log_quote) / tick > 1e15:
            return  # beyond the integer tick range of a book
        assert quote(log_base, log_quote, bps, spread, gap_bps, tick, lot) == \
            _py_quote(log_base, log_quote, bps, spread, gap_bps, tick, lot)

    check()


def test_a_step_built_in_slices_is_the_same_market():
    # begin_step + build_units in any split and order == step(): the simulator
    # builds each staggered slice when it goes out.
    whole = MarketModel(SYMS, seed=9, rate=50, size_churn=0.5)
    sliced = MarketModel(SYMS, seed=9, rate=50, size_churn=0.5)
    for i in range(40):
        expected = whole.step(123)
        units = sliced.begin_step()
        assert units == list(range(len(sliced.venues) * len(SYMS)))
        assert sliced.open_units() == units
        got = []
        for part in (units[i % 3::3] for i in (2, 0, 1)):
            got += sliced.build_units(part[::-1], 123)
        assert sliced.open_units() == []
        assert sorted(_summary(got)) == sorted(_summary(expected))
    for v in whole.venues:
        for s in SYMS:
            assert whole.book(v, s) == sliced.book(v, s)
    assert whole.nbbo("ETH-BTC") == sliced.nbbo("ETH-BTC")


def test_an_open_step_must_be_built_before_the_next():
    m = MarketModel(SYMS, seed=1, rate=50)
    units = m.begin_step()
    m.build_units(units[:5])
    with pytest.raises(RuntimeError, match="not built yet"):
        m.begin_step()
    with pytest.raises(RuntimeError, match="not built yet"):
        m.step()
    with pytest.raises(ValueError, match="not open"):
        m.build_units(units[:1])  # built already
    m.build_units(units[5:])
    assert m.open_units() == []
    m.step()
