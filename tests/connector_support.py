"""Helpers shared by the connector tests: a thread-safe tick sink and a bounded wait."""
from __future__ import annotations

import threading
import time

import numpy as np

from hftsig.ticks import KIND_STATUS, empty_ticks


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


def wait_for(cond, timeout=3.0):
    """Poll ``cond`` until true or ``timeout`` seconds pass; returns its last value."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return bool(cond())
