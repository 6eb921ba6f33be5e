# cython: language_level=3
"""Hot path of :mod:`hftsig.arbitrage`: quote state, cycle index, per-tick evaluation.

The Python layer (``hftsig/arbitrage.py``) owns the meaning of markets and
cycles (it parses symbols, decides which cycles exist and turns hits into
events); this module only stores flat arrays and runs the per-tick loop
without the GIL.

Edges: market ``m`` (``BASE-QUOTE`` on one venue) gives two directed edges,
``2*m`` = sell base at the bid (base -> quote, capacity ``bid_sz`` base) and
``2*m + 1`` = buy base at the ask (quote -> base, capacity ``ask_sz * ask``
quote).  A cycle is up to three edges whose assets chain back to the start.
"""
cimport cython
from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.math cimport INFINITY
from libc.string cimport memcpy

import numpy as np

cdef extern from *:
    """
    #pragma pack(push, 1)
    typedef struct {
        int64_t ts_event; int64_t ts_recv;
        uint8_t exchange; uint8_t kind; int8_t side; uint8_t flags;
        uint32_t checksum; char symbol[16];
        double bid_px; double bid_sz; double ask_px; double ask_sz;
        double price; double size; int64_t seq; int64_t seq_first;
    } hftsig_tick_t;
    #pragma pack(pop)
    """
    ctypedef struct hftsig_tick_t:
        int64_t ts_event
        int64_t ts_recv
        uint8_t exchange
        uint8_t kind
        int8_t side
        uint8_t flags
        uint32_t checksum
        char symbol[16]
        double bid_px
        double bid_sz
        double ask_px
        double ask_sz
        double price
        double size
        int64_t seq
        int64_t seq_first

cdef enum:
    KIND_QUOTE = 1
    KIND_STATUS = 6
    STATUS_DISCONNECTED = 2
    STATUS_RESYNC = 3
    STATUS_STALE = 4
    MAX_LEGS = 3

TICK_ITEMSIZE = sizeof(hftsig_tick_t)

#: returned in ``stop_reason``
cdef enum:
    _STOP_DONE = 0
    _STOP_UNKNOWN_MARKET = 1
    _STOP_OUTPUT_FULL = 2
STOP_DONE = _STOP_DONE
STOP_UNKNOWN_MARKET = _STOP_UNKNOWN_MARKET
STOP_OUTPUT_FULL = _STOP_OUTPUT_FULL


cdef inline uint64_t _mix(uint64_t a, uint64_t b, uint64_t c) noexcept nogil:
    cdef uint64_t h = a * <uint64_t>0x9E3779B97F4A7C15ULL
    h ^= (b + <uint64_t>0x632BE59BD9B4E019ULL) * <uint64_t>0xC2B2AE3D27D4EB4FULL
    h ^= (c + 1) * <uint64_t>0x165667B19E3779F9ULL
    h ^= h >> 31
    h *= <uint64_t>0xBF58476D1CE4E5B9ULL
    h ^= h >> 29
    return h


cdef class ArbCore:
    """Flat state of the detector; grown by Python, read by the tick loop."""

    # market table (key hash: symbol bytes 0..7, 8..15, exchange code)
    cdef public object hk0_, hk1_, hk2_, hval_
    cdef uint64_t[::1] hk0, hk1, hk2
    cdef int32_t[::1] hval
    cdef public Py_ssize_t hcap, hcount

    cdef public object a_fee_, a_bid_, a_bsz_, a_ask_, a_asz_, a_ts_, a_venue_, a_head_, a_deg_
    cdef double[::1] fee, bid, bsz, ask, asz
    cdef int64_t[::1] ts
    cdef int32_t[::1] venue, head, deg
    cdef public Py_ssize_t n_markets, mcap

    cdef public object c_len_, c_edges_, e_cycle_, e_next_
    cdef int8_t[::1] c_len
    cdef int32_t[::1] c_edges, e_cycle, e_next
    cdef public Py_ssize_t n_cycles, ccap, n_entries, ecap

    # output of one process() call
    cdef public object o_tick_, o_cycle_, o_gross_, o_net_, o_size_, o_legs_
    cdef int64_t[::1] o_tick
    cdef int32_t[::1] o_cycle
    cdef double[::1] o_gross, o_net, o_size, o_legs
    cdef public Py_ssize_t ocap

    cdef public int64_t max_age_ns
    cdef public double threshold
    cdef public bint best_only
    cdef public int64_t last_ts

    def __init__(self, int64_t max_age_ns, double threshold, bint best_only, Py_ssize_t ocap=4096):
        self.max_age_ns = max_age_ns
        self.threshold = threshold
        self.best_only = best_only
        self.last_ts = 0
        self.n_markets = 0
        self.n_cycles = 0
        self.n_entries = 0
        self.hcount = 0
        self._alloc_hash(1024)
        self._alloc_markets(256)
        self._alloc_cycles(1024)
        self._alloc_entries(4096)
        self._alloc_out(ocap)

    # ------------------------------------------------------------------ storage
    def _alloc_hash(self, Py_ssize_t cap):
        self.hk0_ = np.zeros(cap, np.uint64)
        self.hk1_ = np.zeros(cap, np.uint64)
        self.hk2_ = np.zeros(cap, np.uint64)
        self.hval_ = np.full(cap, -1, np.int32)
        self.hk0 = self.hk0_
        self.hk1 = self.hk1_
        self.hk2 = self.hk2_
        self.hval = self.hval_
        self.hcap = cap
        self.hcount = 0

    def _alloc_markets(self, Py_ssize_t cap):
        def grow(old, fill, dtype):
            new = np.full(cap, fill, dtype)
            if old is not None:
                new[: len(old)] = old
            return new
        first = self.a_fee_ is None
        self.a_fee_ = grow(None if first else self.a_fee_, 1.0, np.float64)
        self.a_bid_ = grow(None if first else self.a_bid_, np.nan, np.float64)
        self.a_bsz_ = grow(None if first else self.a_bsz_, np.nan, np.float64)
        self.a_ask_ = grow(None if first else self.a_ask_, np.nan, np.float64)
        self.a_asz_ = grow(None if first else self.a_asz_, np.nan, np.float64)
        self.a_ts_ = grow(None if first else self.a_ts_, 0, np.int64)
        self.a_venue_ = grow(None if first else self.a_venue_, 0, np.int32)
        self.a_head_ = grow(None if first else self.a_head_, -1, np.int32)
        self.a_deg_ = grow(None if first else self.a_deg_, 0, np.int32)
        self.fee = self.a_fee_
        self.bid = self.a_bid_
        self.bsz = self.a_bsz_
        self.ask = self.a_ask_
        self.asz = self.a_asz_
        self.ts = self.a_ts_
        self.venue = self.a_venue_
        self.head = self.a_head_
        self.deg = self.a_deg_
        self.mcap = cap

    def _alloc_cycles(self, Py_ssize_t cap):
        new_len = np.zeros(cap, np.int8)
        new_edges = np.full(cap * MAX_LEGS, -1, np.int32)
        if self.c_len_ is not None:
            new_len[: len(self.c_len_)] = self.c_len_
            new_edges[: len(self.c_edges_)] = self.c_edges_
        self.c_len_ = new_len
        self.c_edges_ = new_edges
        self.c_len = self.c_len_
        self.c_edges = self.c_edges_
        self.ccap = cap

    def _alloc_entries(self, Py_ssize_t cap):
        new_c = np.full(cap, -1, np.int32)
        new_n = np.full(cap, -1, np.int32)
        if self.e_cycle_ is not None:
            new_c[: len(self.e_cycle_)] = self.e_cycle_
            new_n[: len(self.e_next_)] = self.e_next_
        self.e_cycle_ = new_c
        self.e_next_ = new_n
        self.e_cycle = self.e_cycle_
        self.e_next = self.e_next_
        self.ecap = cap

    def _alloc_out(self, Py_ssize_t cap):
        self.o_tick_ = np.zeros(cap, np.int64)
        self.o_cycle_ = np.zeros(cap, np.int32)
        self.o_gross_ = np.zeros(cap, np.float64)
        self.o_net_ = np.zeros(cap, np.float64)
        self.o_size_ = np.zeros(cap, np.float64)
        # per hit and leg: price, top size (base units), quote ts (ns, as float)
        self.o_legs_ = np.zeros(cap * MAX_LEGS * 3, np.float64)
        self.o_tick = self.o_tick_
        self.o_cycle = self.o_cycle_
        self.o_gross = self.o_gross_
        self.o_net = self.o_net_
        self.o_size = self.o_size_
        self.o_legs = self.o_legs_
        self.ocap = cap

    # ------------------------------------------------------------------ markets
    cdef inline Py_ssize_t _slot(self, uint64_t k0, uint64_t k1, uint64_t k2) noexcept nogil:
        cdef uint64_t mask = <uint64_t>(self.hcap - 1)
        cdef Py_ssize_t i = <Py_ssize_t>(_mix(k0, k1, k2) & mask)
        while self.hval[i] != -1:
            if self.hk0[i] == k0 and self.hk1[i] == k1 and self.hk2[i] == k2:
                return i
            i = <Py_ssize_t>((<uint64_t>i + 1) & mask)
        return i

    def map_insert(self, int exchange, bytes symbol, int32_t value):
        """Map (exchange code, 16-byte symbol) to a market id (-2: ignored)."""
        cdef char buf[16]
        cdef uint64_t k0, k1
        cdef Py_ssize_t i
        padded = symbol[:16].ljust(16, b"\0")
        memcpy(buf, <char*>padded, 16)
        memcpy(&k0, buf, 8)
        memcpy(&k1, buf + 8, 8)
        if 2 * (self.hcount + 1) > self.hcap:
            old = (self.hk0_, self.hk1_, self.hk2_, self.hval_)
            self._alloc_hash(self.hcap * 2)
            for j in range(len(old[3])):
                if old[3][j] != -1:
                    i = self._slot(old[0][j], old[1][j], old[2][j])
                    self.hk0[i] = old[0][j]
                    self.hk1[i] = old[1][j]
                    self.hk2[i] = old[2][j]
                    self.hval[i] = old[3][j]
                    self.hcount += 1
        i = self._slot(k0, k1, <uint64_t>exchange)
        if self.hval[i] == -1:
            self.hcount += 1
        self.hk0[i] = k0
        self.hk1[i] = k1
        self.hk2[i] = <uint64_t>exchange
        self.hval[i] = value

    def add_market(self, int venue, double fee_mult):
        """Append a market; returns its id."""
        cdef Py_ssize_t m = self.n_markets
        if m >= self.mcap:
            self._alloc_markets(self.mcap * 2)
        self.fee[m] = fee_mult
        self.venue[m] = venue
        self.n_markets = m + 1
        return m

    def add_cycle(self, edges):
        """Append a cycle (sequence of 2 or 3 edge ids) and index it under its markets."""
        cdef Py_ssize_t c = self.n_cycles, j, k
        cdef int32_t m
        n = len(edges)
        if n < 2 or n > MAX_LEGS:
            raise ValueError(f"a cycle has 2 to {MAX_LEGS} legs, got {n}")
        if c >= self.ccap:
            self._alloc_cycles(self.ccap * 2)
        self.c_len[c] = <int8_t>n
        seen = set()
        for j in range(n):
            self.c_edges[c * MAX_LEGS + j] = <int32_t>edges[j]
            m = <int32_t>(edges[j] >> 1)
            if m in seen:
                continue
            seen.add(m)
            k = self.n_entries
            if k >= self.ecap:
                self._alloc_entries(self.ecap * 2)
            self.e_cycle[k] = <int32_t>c
            self.e_next[k] = self.head[m]
            self.head[m] = <int32_t>k
            self.deg[m] += 1
            self.n_entries = k + 1
            if self.deg[m] * 2 + 2 > self.ocap:
                self._alloc_out(self.ocap * 2)
        self.n_cycles = c + 1
        return c

    def set_quote(self, Py_ssize_t m, double bid, double bsz, double ask, double asz, int64_t ts):
        """Set the top of book of market ``m`` (used by book-driven updates and tests)."""
        self.bid[m] = bid
        self.bsz[m] = bsz
        self.ask[m] = ask
        self.asz[m] = asz
        self.ts[m] = ts

    def max_degree(self):
        return int(np.max(self.a_deg_[: self.n_markets])) if self.n_markets else 0

    # ------------------------------------------------------------------ hot loop
    cdef inline bint _valid(self, int32_t m, int64_t now) noexcept nogil:
        cdef double b = self.bid[m], a = self.ask[m]
        # NaN compares false, so one-sided or empty quotes fail here too
        if not (b > 0.0 and a > b and self.bsz[m] > 0.0 and self.asz[m] > 0.0):
            return False
        return now - self.ts[m] <= self.max_age_ns

    cdef inline bint _eval(self, Py_ssize_t c, int64_t now, double* gross_out,
                           double* net_out, double* size_out) noexcept nogil:
        cdef int n = self.c_len[c], j
        cdef int32_t e, m
        cdef double gross = 1.0, cum = 1.0, cap = INFINITY, r, capf, lim
        for j in range(n):
            e = self.c_edges[c * MAX_LEGS + j]
            m = e >> 1
            if not self._valid(m, now):
                return False
            if e & 1:
                r = 1.0 / self.ask[m]
                capf = self.asz[m] * self.ask[m]
            else:
                r = self.bid[m]
                capf = self.bsz[m]
            lim = capf / cum
            if lim < cap:
                cap = lim
            gross *= r
            cum *= r * self.fee[m]
        gross_out[0] = gross
        net_out[0] = cum
        size_out[0] = cap
        return True

    cdef inline void _emit(self, Py_ssize_t k, Py_ssize_t i, Py_ssize_t c, double gross,
                           double net, double size) noexcept nogil:
        cdef int j, n = self.c_len[c]
        cdef int32_t e, m
        cdef Py_ssize_t base = k * MAX_LEGS * 3
        self.o_tick[k] = i
        self.o_cycle[k] = <int32_t>c
        self.o_gross[k] = gross
        self.o_net[k] = net
        self.o_size[k] = size
        for j in range(n):
            e = self.c_edges[c * MAX_LEGS + j]
            m = e >> 1
            if e & 1:
                self.o_legs[base + 3 * j] = self.ask[m]
                self.o_legs[base + 3 * j + 1] = self.asz[m]
            else:
                self.o_legs[base + 3 * j] = self.bid[m]
                self.o_legs[base + 3 * j + 1] = self.bsz[m]
            self.o_legs[base + 3 * j + 2] = <double>self.ts[m]

    @cython.boundscheck(False)
    @cython.wraparound(False)
    def process(self, const uint8_t[::1] raw, Py_ssize_t start, Py_ssize_t n):
        """Run ticks ``start..n-1`` of a TICK_DTYPE byte buffer.

        Returns ``(stop, n_hits, reason)``: the index of the first tick not
        processed, the number of hits written to the output arrays, and why
        it stopped (``STOP_DONE``, ``STOP_UNKNOWN_MARKET`` at tick ``stop``,
        ``STOP_OUTPUT_FULL``).
        """
        cdef const hftsig_tick_t* tp
        cdef const hftsig_tick_t* t
        cdef Py_ssize_t i = start, k = 0, slot, c, ent, best_c
        cdef int32_t m, mm
        cdef uint64_t k0, k1, mask
        cdef int64_t now
        cdef double gross, net, size, best_net, best_gross, best_size
        cdef double thr = self.threshold
        cdef int reason = 0
        cdef bint best_only = self.best_only
        if n <= start:
            return start, 0, STOP_DONE
        if raw.shape[0] < n * sizeof(hftsig_tick_t):
            raise ValueError("raw buffer shorter than n ticks")
        tp = <const hftsig_tick_t*>&raw[0]
        mask = <uint64_t>(self.hcap - 1)
        with nogil:
            while i < n:
                t = tp + i
                if t.kind == KIND_STATUS:
                    if (t.side == STATUS_DISCONNECTED or t.side == STATUS_RESYNC
                            or t.side == STATUS_STALE):
                        # a broken connection makes every quote of that venue unusable
                        for mm in range(self.n_markets):
                            if self.venue[mm] == t.exchange:
                                self.ts[mm] = -9223372036854775807
                    i += 1
                    continue
                if t.kind != KIND_QUOTE:
                    i += 1
                    continue
                memcpy(&k0, t.symbol, 8)
                memcpy(&k1, t.symbol + 8, 8)
                slot = self._slot(k0, k1, <uint64_t>t.exchange)
                m = self.hval[slot]
                if m == -1:
                    reason = _STOP_UNKNOWN_MARKET
                    break
                if m < 0:
                    i += 1
                    continue
                if self.ocap - k < self.deg[m] + 1:
                    reason = _STOP_OUTPUT_FULL
                    break
                now = t.ts_event
                if now > self.last_ts:
                    self.last_ts = now
                self.bid[m] = t.bid_px
                self.bsz[m] = t.bid_sz
                self.ask[m] = t.ask_px
                self.asz[m] = t.ask_sz
                self.ts[m] = now
                if self._valid(m, now):
                    best_c = -1
                    best_net = thr
                    best_gross = 0.0
                    best_size = 0.0
                    ent = self.head[m]
                    while ent != -1:
                        c = self.e_cycle[ent]
                        ent = self.e_next[ent]
                        if self._eval(c, now, &gross, &net, &size) and net > thr:
                            if best_only:
                                if net > best_net:
                                    best_net = net
                                    best_gross = gross
                                    best_size = size
                                    best_c = c
                            else:
                                self._emit(k, i, c, gross, net, size)
                                k += 1
                    if best_only and best_c >= 0:
                        self._emit(k, i, best_c, best_gross, best_net, best_size)
                        k += 1
                i += 1
        return i, k, reason

    def evaluate(self, Py_ssize_t c, int64_t now):
        """Evaluate cycle ``c`` at time ``now``: ``(gross, net, size)`` or None."""
        cdef double gross, net, size
        if c < 0 or c >= self.n_cycles:
            raise IndexError(c)
        if self._eval(c, now, &gross, &net, &size):
            return gross, net, size
        return None

    def valid_mask(self, int64_t now):
        """Boolean array: which markets have a usable, fresh quote at ``now``."""
        out = np.zeros(self.n_markets, dtype=bool)
        cdef Py_ssize_t m
        for m in range(self.n_markets):
            out[m] = self._valid(<int32_t>m, now)
        return out
