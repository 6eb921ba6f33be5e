"""The simulated market's kernels (hftsig/_ext/_simbook.pyx) against the Python they replaced.

The Python requote and quote arithmetic are kept here as the reference: the
kernels must give the same sizes bit for bit and the same changes in the same
order, so a seed still means the same market (test_market_model.py pins one).
"""
import math

import pytest


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
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from hftsig._ext._simbook import requote_fast, requote_full

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
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from hftsig._ext._simbook import quote

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
