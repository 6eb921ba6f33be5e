"""Helpers shared by the connector tests: a thread-safe tick sink and a bounded wait."""
from __future__ import annotations

import threading
import time

import numpy as np

from hftsig.market.ticks import KIND_STATUS, empty_ticks


class Collector:
    """Thread-safe ``on_tick`` sink keeping every batch it is given."""

    def __init__(self):
        self.batches = []
        self.lock = threading.Lock()

    def __call__(self, ticks):
        with self.lock:
            self.batches.append(ticks.copy())

    def all(self):
        with self.lock:
            return np.concatenate(self.batches) if self.batches else empty_ticks(0)

    def data(self, kind=None):
        t = self.all()
        t = t[t["kind"] != KIND_STATUS]
        return t if kind is None else t[t["kind"] == kind]

    def statuses(self, symbol=None):
        t = self.all()
        t = t[t["kind"] == KIND_STATUS]
        if symbol is not None:
            t = t[t["symbol"] == symbol.encode()]
        return list(t["side"])


def wait_for(cond, timeout=15.0):
    """Poll ``cond`` until true or ``timeout`` seconds pass; returns its last value.

    The default is generous: a condition that holds is seen as soon as it holds,
    so only a loaded machine (CI) ever waits long.
    """
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return bool(cond())


def book_side(book, side, n=1000):
    """``[(price, size), ...]`` best first from an :class:`hftsig.market.book.OrderBook` side (+1 bid, -1 ask)."""
    lv = np.asarray(book.levels(side, n), dtype=np.float64).reshape(-1, 2)
    return [(float(p), float(q)) for p, q in lv]


def books_converge(connector, sim, exchange, symbol, depth=None, timeout=15.0):
    """Wait until the connector's book of ``symbol`` equals the simulator's, level for level.

    The simulator keeps stepping, so the two are compared repeatedly; equality
    happens in the quiet moments between model steps once the connector is in
    sync, and never if it is not.  Returns the last (ours, truth) pair on failure.
    """
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        truth = sim.book(exchange, symbol, depth)
        book = connector.book(symbol)
        ours = (book_side(book, 1, depth or 1000), book_side(book, -1, depth or 1000))
        if ours == (list(map(tuple, truth["bids"])), list(map(tuple, truth["asks"]))):
            return True
        last = (ours, truth)
        time.sleep(0.005)
    return last


def delta_chains_intact(ticks, symbol):
    """Binance-style check: within every sync epoch (a BOOK_SNAPSHOT starts one),
    each applied diff event starts at most one past the previous event's end and
    ends after it, and the first one covers ``lastUpdateId + 1``."""
    from hftsig.market.ticks import FLAG_LAST, KIND_BOOK_DELTA, KIND_BOOK_SNAPSHOT

    t = ticks[(ticks["symbol"] == symbol.encode()) & ((ticks["flags"] & FLAG_LAST) != 0)]
    prev = None
    events = 0
    for rec in t:
        if rec["kind"] == KIND_BOOK_SNAPSHOT:
            prev = int(rec["seq"])
        elif rec["kind"] == KIND_BOOK_DELTA:
            if prev is None or not (rec["seq_first"] <= prev + 1 <= rec["seq"]):
                return False
            prev = int(rec["seq"])
            events += 1
    return events > 0
