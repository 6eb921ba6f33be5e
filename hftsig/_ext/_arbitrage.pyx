# cython: language_level=3
"""Hot path of :mod:`hftsig.arbitrage.cycles`: quote state, cycle index, per-tick evaluation.

The Python layer (``hftsig/arbitrage/cycles.py``) owns the meaning of markets and
cycles (it parses symbols, decides which cycles exist and turns hits into
events); this module only stores flat arrays and runs the per-tick loop
without the GIL.

Edges: market ``m`` (``BASE-QUOTE`` on one venue) gives two directed edges,
``2*m`` = sell base at the bid (base -> quote, capacity ``bid_sz`` base) and
``2*m + 1`` = buy base at the ask (quote -> base, capacity ``ask_sz * ask``
quote).  A cycle is up to three edges whose assets chain back to the start.

Each quote update stores the two edges' net rates (fee included) and a
"valid since" time (a far-past time when the quote is one-sided or crossed),
so that evaluating a cycle is three loads, a freshness compare and three
multiplies.  Every market keeps its own contiguous list of the cycles through
it, edges inline, so the loop over them walks memory in order.
"""
cimport cython
from libc.stdint cimport int8_t, int32_t, int64_t, uint8_t, uint32_t, uint64_t
from libc.math cimport INFINITY
from libc.string cimport memcpy
from libc.stdlib cimport malloc, realloc, free
cimport numpy as cnp

import numpy as np

cnp.import_array()

from hftsig.market import ticks as _ticks
from hftsig._ext.tick cimport Tick as hftsig_tick_t
from hftsig._ext.tick cimport (
    check_tick_layout, KIND_QUOTE, KIND_STATUS, STATUS_DISCONNECTED, STATUS_RESYNC, STATUS_STALE)

check_tick_layout(_ticks)  # byte for byte TICK_DTYPE, same codes

cdef enum:
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



cdef int64_t INVALID_TS = -(<int64_t>1 << 62)


cdef class ArbCore:
    """Flat state of the detector; grown by Python, read by the tick loop."""

    # market table (key hash: symbol bytes 0..7, 8..15, exchange code)
    cdef public object hk0_, hk1_, hk2_, hval_
    cdef uint64_t[::1] hk0, hk1, hk2
    cdef int32_t[::1] hval
    cdef public Py_ssize_t hcap, hcount

    cdef public object a_fee_, a_bid_, a_bsz_, a_ask_, a_asz_, a_ts_, a_vts_, a_venue_
    cdef public object a_rate_, a_deg_
    cdef public Py_ssize_t n_markets, mcap
    # per market: malloc'd list of entries (cycle, e0, e1, e2)
    cdef int32_t** lists
    cdef int32_t* lcap

    cdef public object c_len_, c_edges_
    cdef public Py_ssize_t n_cycles, ccap

    # output of one process() call
    cdef public object o_tick_, o_cycle_, o_gross_, o_net_, o_size_, o_legs_
    cdef public Py_ssize_t ocap

    cdef public int64_t max_age_ns
    cdef public double threshold
    cdef public bint best_only
    cdef public int64_t last_ts

    def __cinit__(self, *args, **kwargs):
        self.lists = NULL
        self.lcap = NULL

    def __dealloc__(self):
        cdef Py_ssize_t m
        if self.lists != NULL:
            for m in range(self.mcap):
                free(self.lists[m])
            free(self.lists)
        free(self.lcap)

    def __init__(self, int64_t max_age_ns, double threshold, bint best_only, Py_ssize_t ocap=4096):
        self.max_age_ns = max_age_ns
        self.threshold = threshold
        self.best_only = best_only
        self.last_ts = INVALID_TS
        self.n_markets = 0
        self.n_cycles = 0
        self.mcap = 0
        self.hcount = 0
        self._alloc_hash(1024)
        self._alloc_markets(256)
        self._alloc_cycles(1024)
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
        cdef Py_ssize_t old = self.mcap, m

        def grow(name, fill, dtype, width=1):
            new = np.full(cap * width, fill, dtype)
            prev = getattr(self, name)
            if prev is not None:
                new[: len(prev)] = prev
            setattr(self, name, new)

        grow("a_fee_", 1.0, np.float64)
        grow("a_bid_", np.nan, np.float64)
        grow("a_bsz_", np.nan, np.float64)
        grow("a_ask_", np.nan, np.float64)
        grow("a_asz_", np.nan, np.float64)
        grow("a_ts_", INVALID_TS, np.int64)
        grow("a_vts_", INVALID_TS, np.int64)
        grow("a_venue_", 0, np.int32)
        grow("a_deg_", 0, np.int32)
        grow("a_rate_", 0.0, np.float64, 2)
        lists = <int32_t**>realloc(self.lists, cap * sizeof(int32_t*))
        lcap = <int32_t*>realloc(self.lcap, cap * sizeof(int32_t))
        if lists == NULL or lcap == NULL:
            raise MemoryError()
        self.lists = lists
        self.lcap = lcap
        for m in range(old, cap):
            self.lists[m] = NULL
            self.lcap[m] = 0
        self.mcap = cap

    def _alloc_cycles(self, Py_ssize_t cap):
        new_len = np.zeros(cap, np.int8)
        new_edges = np.full(cap * MAX_LEGS, -1, np.int32)
        if self.c_len_ is not None:
            new_len[: len(self.c_len_)] = self.c_len_
            new_edges[: len(self.c_edges_)] = self.c_edges_
        self.c_len_ = new_len
        self.c_edges_ = new_edges
        self.ccap = cap

    def _alloc_out(self, Py_ssize_t cap):
        self.o_tick_ = np.zeros(cap, np.int64)
        self.o_cycle_ = np.zeros(cap, np.int32)
        self.o_gross_ = np.zeros(cap, np.float64)
        self.o_net_ = np.zeros(cap, np.float64)
        self.o_size_ = np.zeros(cap, np.float64)
        # per hit and leg: price, top size (base units), quote ts (ns, as float)
        self.o_legs_ = np.zeros(cap * MAX_LEGS * 3, np.float64)
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
        self.a_fee_[m] = fee_mult
        self.a_venue_[m] = venue
        self.n_markets = m + 1
        return m

    def add_cycle(self, edges):
        """Append a cycle (2 or 3 edge ids) and list it under each of its markets."""
        cdef Py_ssize_t c = self.n_cycles, j, d
        cdef int32_t m, newcap
        cdef int32_t* lst
        cdef int32_t[MAX_LEGS] e
        n = len(edges)
        if n < 2 or n > MAX_LEGS:
            raise ValueError(f"a cycle has 2 to {MAX_LEGS} legs, got {n}")
        if c >= self.ccap:
            self._alloc_cycles(self.ccap * 2)
        self.c_len_[c] = n
        for j in range(MAX_LEGS):
            e[j] = <int32_t>edges[j] if j < n else -1
            self.c_edges_[c * MAX_LEGS + j] = e[j]
        seen = set()
        for j in range(n):
            m = e[j] >> 1
            if m in seen:
                continue
            seen.add(m)
            d = self.a_deg_[m]
            if (d + 1) * 4 > self.lcap[m]:
                newcap = max(16, 2 * self.lcap[m])
                lst = <int32_t*>realloc(self.lists[m], newcap * sizeof(int32_t))
                if lst == NULL:
                    raise MemoryError()
                self.lists[m] = lst
                self.lcap[m] = newcap
            lst = self.lists[m] + 4 * d
            lst[0] = <int32_t>c
            lst[1] = e[0]
            lst[2] = e[1]
            lst[3] = e[2]
            self.a_deg_[m] = d + 1
            if 2 * (d + 2) > self.ocap:
                self._alloc_out(self.ocap * 2)
        self.n_cycles = c + 1
        return c

    def max_degree(self):
        return int(np.max(self.a_deg_[: self.n_markets])) if self.n_markets else 0

    # ------------------------------------------------------------------ hot loop
    def process(self, cnp.ndarray ticks, Py_ssize_t start, Py_ssize_t n,
                bint stop_on_hit=False):
        """Run ticks ``start..n-1`` of a C-contiguous TICK_DTYPE array.

        Returns ``(stop, n_hits, reason)``: the index of the first tick not
        processed, the number of hits written to the output arrays, and why
        it stopped (``STOP_DONE``, ``STOP_UNKNOWN_MARKET`` at tick ``stop``,
        ``STOP_OUTPUT_FULL``).  With ``stop_on_hit`` it also returns
        (``STOP_DONE``, ``stop < n``) after the first tick that made a hit, so
        that the caller can follow the hit's cycle tick by tick from there.
        """
        if ticks.dtype.itemsize != sizeof(hftsig_tick_t) or not ticks.flags.c_contiguous:
            raise ValueError("ticks must be a C-contiguous TICK_DTYPE array")
        if n > ticks.shape[0] or start < 0:
            raise ValueError("tick range out of bounds")
        if n <= start:
            return start, 0, _STOP_DONE
        cdef const hftsig_tick_t* tp = <const hftsig_tick_t*>cnp.PyArray_DATA(ticks)
        cdef const hftsig_tick_t* t
        cdef Py_ssize_t i = start, k = 0, slot, best_j, j, deg, jl, nl
        cdef int32_t m, mm, c, e, em
        cdef int32_t* lst
        cdef int32_t* ent
        cdef uint64_t k0, k1
        cdef int64_t now, oldest, max_age = self.max_age_ns
        cdef double net, best_net, thr = self.threshold, b, a, fm, r, capf, cum, cap, gross
        cdef int reason = 0
        cdef bint best_only = self.best_only
        cdef double* fee = <double*>cnp.PyArray_DATA(self.a_fee_)
        cdef double* bid = <double*>cnp.PyArray_DATA(self.a_bid_)
        cdef double* bsz = <double*>cnp.PyArray_DATA(self.a_bsz_)
        cdef double* ask = <double*>cnp.PyArray_DATA(self.a_ask_)
        cdef double* asz = <double*>cnp.PyArray_DATA(self.a_asz_)
        cdef double* rate = <double*>cnp.PyArray_DATA(self.a_rate_)
        cdef int64_t* ts = <int64_t*>cnp.PyArray_DATA(self.a_ts_)
        cdef int64_t* vts = <int64_t*>cnp.PyArray_DATA(self.a_vts_)
        cdef int32_t* venue = <int32_t*>cnp.PyArray_DATA(self.a_venue_)
        cdef int32_t* degs = <int32_t*>cnp.PyArray_DATA(self.a_deg_)
        cdef int64_t* o_tick = <int64_t*>cnp.PyArray_DATA(self.o_tick_)
        cdef int32_t* o_cycle = <int32_t*>cnp.PyArray_DATA(self.o_cycle_)
        cdef double* o_gross = <double*>cnp.PyArray_DATA(self.o_gross_)
        cdef double* o_net = <double*>cnp.PyArray_DATA(self.o_net_)
        cdef double* o_size = <double*>cnp.PyArray_DATA(self.o_size_)
        cdef double* o_legs = <double*>cnp.PyArray_DATA(self.o_legs_)
        cdef Py_ssize_t ocap = self.ocap, n_markets = self.n_markets
        with nogil:
            while i < n:
                t = tp + i
                if t.kind == KIND_STATUS:
                    if (t.side == STATUS_DISCONNECTED or t.side == STATUS_RESYNC
                            or t.side == STATUS_STALE):
                        # a broken connection makes every quote of that venue unusable
                        for mm in range(n_markets):
                            if venue[mm] == t.exchange:
                                vts[mm] = INVALID_TS
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
                deg = degs[m]
                if ocap - k < deg + 1:
                    reason = _STOP_OUTPUT_FULL
                    break
                now = t.ts_event
                if now > self.last_ts:
                    self.last_ts = now
                b = t.bid_px
                a = t.ask_px
                bid[m] = b
                bsz[m] = t.bid_sz
                ask[m] = a
                asz[m] = t.ask_sz
                ts[m] = now
                i += 1
                # NaN compares false: one-sided, empty, crossed or locked quotes are invalid
                if not (b > 0.0 and a > b and t.bid_sz > 0.0 and t.ask_sz > 0.0):
                    vts[m] = INVALID_TS
                    continue
                vts[m] = now
                fm = fee[m]
                rate[2 * m] = b * fm
                rate[2 * m + 1] = fm / a
                oldest = now - max_age
                lst = self.lists[m]
                best_j = -1
                best_net = thr
                for j in range(deg):
                    ent = lst + 4 * j
                    e = ent[1]
                    em = ent[2]
                    if vts[e >> 1] < oldest or vts[em >> 1] < oldest:
                        continue
                    net = rate[e] * rate[em]
                    e = ent[3]
                    if e >= 0:
                        if vts[e >> 1] < oldest:
                            continue
                        net = net * rate[e]
                    if net > thr:
                        if best_only:
                            if net > best_net:
                                best_net = net
                                best_j = j
                        else:
                            self._emit(k, i - 1, ent, net, bid, bsz, ask, asz, fee, ts,
                                       o_tick, o_cycle, o_gross, o_net, o_size, o_legs)
                            k += 1
                if best_only and best_j >= 0:
                    self._emit(k, i - 1, lst + 4 * best_j, best_net, bid, bsz, ask, asz, fee,
                               ts, o_tick, o_cycle, o_gross, o_net, o_size, o_legs)
                    k += 1
                if stop_on_hit and k > 0:
                    break
        return i, k, reason

    cdef inline void _emit(self, Py_ssize_t k, Py_ssize_t i, int32_t* ent, double net,
                           double* bid, double* bsz, double* ask, double* asz, double* fee,
                           int64_t* ts, int64_t* o_tick, int32_t* o_cycle, double* o_gross,
                           double* o_net, double* o_size, double* o_legs) noexcept nogil:
        """Record a hit with the leg prices, sizes and times as they are now."""
        cdef int j
        cdef int32_t e, m
        cdef double gross = 1.0, cum = 1.0, cap = INFINITY, r, capf, lim
        cdef Py_ssize_t base = k * MAX_LEGS * 3
        for j in range(MAX_LEGS):
            e = ent[1 + j]
            if e < 0:
                break
            m = e >> 1
            if e & 1:
                r = 1.0 / ask[m]
                capf = asz[m] * ask[m]
                o_legs[base + 3 * j] = ask[m]
                o_legs[base + 3 * j + 1] = asz[m]
            else:
                r = bid[m]
                capf = bsz[m]
                o_legs[base + 3 * j] = bid[m]
                o_legs[base + 3 * j + 1] = bsz[m]
            o_legs[base + 3 * j + 2] = <double>ts[m]
            lim = capf / cum
            if lim < cap:
                cap = lim
            gross *= r
            cum *= r * fee[m]
        o_tick[k] = i
        o_cycle[k] = ent[0]
        o_gross[k] = gross
        o_net[k] = net
        o_size[k] = cap

    def valid_mask(self, int64_t now):
        """Boolean array: which markets have a usable quote no older than max_age at ``now``."""
        n = self.n_markets
        vts = self.a_vts_[:n]
        return (vts > INVALID_TS) & (now - vts <= self.max_age_ns)
