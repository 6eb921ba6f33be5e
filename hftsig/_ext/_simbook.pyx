# cython: language_level=3
"""Book requote kernels of the simulated market (public user:
:class:`hftsig.simulator.market.MarketModel`).

A book side is a dict ``{ticks: lots}`` in book order (best first): the top
level at the quote, then the levels of a fixed price grid.  Each model step
redraws sizes from the step's uniform (``size_u``) and normal (``size_z``)
draws of that book (lists of floats, ``2 * depth`` each: bids then asks); these kernels do exactly the arithmetic of the Python
requote they replace (same operations in the same order, so the same sizes
bit for bit) and append the ``(side, ticks, lots)`` changes.
"""
cimport cython
from libc.math cimport ceil, exp, floor, rint


cdef extern from "Python.h":
    void PyObject_GC_UnTrack(void* op)


cdef inline tuple _untracked(tuple t):
    # A tuple of ints can never be part of a reference cycle; CPython's own
    # collector untracks such tuples lazily.  Untracking them at birth keeps
    # the thousands of level tuples a step makes from triggering collections.
    PyObject_GC_UnTrack(<void*>t)
    return t


def levels(dict side):
    """``list(side.items())``: the ``(ticks, lots)`` levels of a book side, in book order."""
    cdef list out = []
    cdef object p, q
    for p, q in side.items():
        out.append(_untracked((p, q)))
    return out


cdef inline long long _size(double mean_lots, double z, Py_ssize_t k, int depth, bint top) noexcept:
    # int(mean_lots * exp(0.5 * z) * (1 + 0.3 * k / depth)), at least 1; the
    # top level has no depth factor.  Only products and a quotient: no fused
    # multiply-add can change the rounding.
    cdef double x
    if top:
        x = mean_lots * exp(0.5 * z)
    else:
        x = mean_lots * exp(0.5 * z) * (1 + 0.3 * k / depth)
    cdef long long q = <long long>x
    return q if q > 1 else 1


def requote_fast(dict book, int side, long long top, double mean_lots, list size_u, list size_z,
                 Py_ssize_t off, double keep, int depth, dict grid, list prices, list changes):
    """Requote one side whose grid has not moved; returns the new side dict.

    ``grid`` (``{ticks: lots}`` of the levels below the top, updated in place)
    and ``prices`` (its keys in book order) describe the grid; only the top
    and the levels whose size churns (``size_u >= keep``) can change.
    """
    cdef long long old_top, old_q, top_q, q, p
    cdef Py_ssize_t k, n = len(prices)
    cdef object key
    if off < 0 or off + depth > len(size_u) or off + depth > len(size_z):
        raise ValueError("size_u/size_z: need 2 * depth draws")
    for key in book:
        break
    else:
        raise ValueError("book: empty side")
    old_top = key
    old_q = book[key]
    if top == old_top and <double>size_u[off] < keep:
        top_q = old_q
    else:
        top_q = _size(mean_lots, <double>size_z[off], 0, depth, True)
    if top != old_top:
        changes.append(_untracked((side, old_top, 0)))
    if top != old_top or top_q != old_q:
        changes.append(_untracked((side, top, top_q)))
    if n > depth - 1:
        n = depth - 1
    for k in range(1, n + 1):
        if <double>size_u[off + k] >= keep:
            q = _size(mean_lots, <double>size_z[off + k], k, depth, False)
            key = prices[k - 1]
            if q != <long long>grid[key]:
                grid[key] = q
                changes.append(_untracked((side, key, q)))
    new = {top: top_q}
    new.update(grid)
    return new


def requote_full(dict book, int side, long long top, long long grid_start, long long gap, double mean_lots,
                 list size_u, list size_z, Py_ssize_t off, double keep, int depth, bint initial, list changes):
    """Requote one side on a (possibly new) grid; returns ``(new side dict, grid dict)``.

    The levels are the top at ``top`` then ``depth - 1`` grid levels from
    ``grid_start`` away from the spread every ``gap`` ticks (bids above zero
    only); a level keeps its size unless it is new or churns.  Levels gone
    from the side go out first with size 0 (best first), then new and resized
    levels in book order.
    """
    cdef long long step = -gap if side == 1 else gap
    cdef long long p, q
    cdef Py_ssize_t i, k
    cdef list prices = []
    cdef dict new = {}
    cdef object old, key
    if off < 0 or off + depth > len(size_u) or off + depth > len(size_z):
        raise ValueError("size_u/size_z: need 2 * depth draws")
    if side != 1 or top > 0:
        prices.append(top)
    for i in range(depth - 1):
        p = grid_start + step * i
        if side != 1 or p > 0:
            prices.append(p)
    for k in range(len(prices)):
        key = prices[k]
        old = book.get(key)
        if old is not None and not initial and <double>size_u[off + k] < keep:
            new[key] = old
        else:
            new[key] = _size(mean_lots, <double>size_z[off + k], k, depth, False)
    removed = [p for p in book if p not in new]
    if removed:
        removed.sort(reverse=side == 1)
        for key in removed:
            changes.append(_untracked((side, key, 0)))
    for key, q in new.items():
        old = book.get(key)
        if old is None or <long long>old != q:
            changes.append(_untracked((side, key, q)))
    levels = {}
    first = True
    for key, old in new.items():
        if first:
            first = False
            continue
        levels[key] = old
    return new, levels


@cython.cdivision(False)
def quote(double log_base, double log_quote, double bps, double spread_bps, double level_gap_bps, double tick,
          double lot):
    """The quote of one book: ``(best_bid, best_ask, gap, mean_lots, bid_grid, ask_grid)``.

    ``log_base``/``log_quote`` are the log USD prices of the pair's assets,
    ``bps`` the venue's noise plus any injected shift; prices in ticks.
    Python's float arithmetic of ``MarketModel._rebuild``, operation for
    operation: each product that an addition uses goes through a volatile
    so that the compiler cannot fuse them into one (differently rounded)
    multiply-add, and the grid divisions floor as Python's ``//``.
    """
    cdef volatile double shift, half
    cdef double mid, base_usd, mean_lots
    cdef long long best_bid, best_ask, gap, bid_grid, ask_grid
    shift = bps * 1e-4
    mid = exp(log_base - log_quote) * (1.0 + shift)
    half = mid * spread_bps * 0.5e-4
    best_bid = <long long>floor((mid - half) / tick)
    best_ask = <long long>ceil((mid + half) / tick)
    if best_ask <= best_bid:
        best_ask = best_bid + 1
    gap = <long long>rint(mid * level_gap_bps * 1e-4 / tick)  # round(): half to even
    if gap < 1:
        gap = 1
    base_usd = exp(log_base)
    mean_lots = 5000.0 / base_usd / lot
    if mean_lots < 1.0:
        mean_lots = 1.0
    bid_grid = ((best_bid - 1) // gap) * gap
    ask_grid = -((-(best_ask + 1)) // gap) * gap
    return best_bid, best_ask, gap, mean_lots, bid_grid, ask_grid
