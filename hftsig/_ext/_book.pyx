# cython: language_level=3
"""L2 order book kernels (public API: :mod:`hftsig.book`).

Each side is a price-sorted pair of float64 arrays (bids descending, asks
ascending); a level is found by binary search and inserted/removed with
memmove, which beats trees for the few hundred levels an exchange sends.
"""
from libc.stdint cimport int64_t, uint32_t, uint8_t, int8_t
from libc.stdlib cimport malloc, realloc, free
from libc.string cimport memmove, memcmp, memcpy
from libc.stdio cimport snprintf
from libc.math cimport isnan, isfinite, fabs, NAN
cimport numpy as cnp
import numpy as np

from hftsig import ticks as _ticks

cnp.import_array()

from hftsig._ext.tick cimport (
    Tick, check_tick_layout, KIND_BOOK_DELTA, KIND_BOOK_SNAPSHOT, FLAG_LAST, FLAG_SNAPSHOT_BEGIN)

check_tick_layout(_ticks)  # byte for byte TICK_DTYPE, same codes

cdef uint32_t CRC_TABLE[256]


cdef void _crc_init() noexcept:
    cdef uint32_t c
    cdef int n, k
    for n in range(256):
        c = <uint32_t>n
        for k in range(8):
            c = (0xEDB88320U ^ (c >> 1)) if (c & 1) else (c >> 1)
        CRC_TABLE[n] = c


_crc_init()


cdef inline uint32_t _crc(uint32_t crc, const char* s, Py_ssize_t n) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(n):
        crc = CRC_TABLE[(crc ^ <uint8_t>s[i]) & 0xFF] ^ (crc >> 8)
    return crc


cdef class _Side:
    """One side of a book: prices kept sorted (descending for bids)."""
    cdef double* px
    cdef double* sz
    cdef Py_ssize_t n, cap
    cdef bint desc

    def __cinit__(self, bint desc):
        self.desc = desc
        self.n = 0
        self.cap = 64
        self.px = <double*>malloc(self.cap * sizeof(double))
        self.sz = <double*>malloc(self.cap * sizeof(double))
        if self.px == NULL or self.sz == NULL:
            raise MemoryError()

    def __dealloc__(self):
        free(self.px)
        free(self.sz)

    cdef inline Py_ssize_t find(self, double p) noexcept nogil:
        """Index of the first level not better than p (insertion point)."""
        cdef Py_ssize_t lo = 0, hi = self.n, mid
        while lo < hi:
            mid = (lo + hi) >> 1
            if (self.px[mid] > p) if self.desc else (self.px[mid] < p):
                lo = mid + 1
            else:
                hi = mid
        return lo

    cdef int set(self, double p, double s) noexcept nogil:
        """Set a level (s == 0 removes it); -1 when memory runs out."""
        cdef Py_ssize_t i = self.find(p)
        if i < self.n and self.px[i] == p:
            if s == 0.0:
                memmove(self.px + i, self.px + i + 1, (self.n - i - 1) * sizeof(double))
                memmove(self.sz + i, self.sz + i + 1, (self.n - i - 1) * sizeof(double))
                self.n -= 1
            else:
                self.sz[i] = s
            return 0
        if s == 0.0:
            return 0  # removing a level we do not have is normal (Binance says so)
        if self.n == self.cap and self.grow() < 0:
            return -1
        memmove(self.px + i + 1, self.px + i, (self.n - i) * sizeof(double))
        memmove(self.sz + i + 1, self.sz + i, (self.n - i) * sizeof(double))
        self.px[i] = p
        self.sz[i] = s
        self.n += 1
        return 0

    cdef int grow(self) noexcept nogil:
        cdef Py_ssize_t cap = self.cap * 2
        cdef double* px = <double*>realloc(self.px, cap * sizeof(double))
        if px == NULL:
            return -1
        self.px = px
        cdef double* sz = <double*>realloc(self.sz, cap * sizeof(double))
        if sz == NULL:
            return -1
        self.sz = sz
        self.cap = cap
        return 0

    cdef object levels(self, Py_ssize_t k):
        if k < 0 or k > self.n:
            k = self.n
        out = np.empty((k, 2), dtype=np.float64)
        cdef double[:, ::1] o = out
        cdef Py_ssize_t i
        for i in range(k):
            o[i, 0] = self.px[i]
            o[i, 1] = self.sz[i]
        return out

    cdef double fill(self, double want, double* got) noexcept nogil:
        """Notional of taking ``want`` from this side; ``got`` = quantity available."""
        cdef double left = want, notional = 0.0, take
        cdef Py_ssize_t i = 0
        while left > 0.0 and i < self.n:
            take = self.sz[i] if self.sz[i] < left else left
            notional += take * self.px[i]
            left -= take
            i += 1
        got[0] = want - left
        return notional


cdef class BookCore:
    """State of one L2 book; :class:`hftsig.book.OrderBook` wraps it."""
    cdef readonly _Side bids, asks
    cdef readonly Py_ssize_t depth
    cdef uint8_t exch
    cdef char sym[16]
    cdef readonly Py_ssize_t updates
    cdef public object last_checksum
    cdef uint32_t cks
    cdef bint have_cks
    cdef public int64_t last_seq
    cdef public int64_t ts_event

    def __init__(self, int exchange, bytes symbol, Py_ssize_t depth):
        if len(symbol) > 16:
            raise ValueError("symbol longer than 16 bytes")
        self.bids = _Side(True)
        self.asks = _Side(False)
        self.depth = depth
        self.exch = <uint8_t>exchange
        memcpy(self.sym, b"\0" * 16, 16)
        memcpy(self.sym, <const char*>symbol, len(symbol))
        self.updates = 0
        self.last_checksum = None
        self.last_seq = -1
        self.ts_event = 0

    def clear(self):
        self.bids.n = 0
        self.asks.n = 0

    cdef void truncate(self) noexcept nogil:
        if self.depth > 0:
            if self.bids.n > self.depth:
                self.bids.n = self.depth
            if self.asks.n > self.depth:
                self.asks.n = self.depth

    cdef Py_ssize_t _apply(self, Tick* t, Py_ssize_t n, Py_ssize_t* used) noexcept nogil:
        """Apply records; return -1 when done, the index of a bad record, or -2 out of memory."""
        cdef Py_ssize_t i
        cdef Tick* r
        cdef bint pending = False
        cdef int rc
        for i in range(n):
            r = &t[i]
            if r.exchange != self.exch or memcmp(r.symbol, self.sym, 16) != 0:
                continue
            if r.kind != KIND_BOOK_DELTA and r.kind != KIND_BOOK_SNAPSHOT:
                continue
            if not (isfinite(r.price) and isfinite(r.size)) or r.size < 0 \
                    or (r.side != 1 and r.side != -1):
                return i
            if r.flags & FLAG_SNAPSHOT_BEGIN:
                self.bids.n = 0
                self.asks.n = 0
            if r.side == 1:
                rc = self.bids.set(r.price, r.size)
            else:
                rc = self.asks.set(r.price, r.size)
            if rc < 0:
                return -2
            used[0] += 1
            pending = True
            self.ts_event = r.ts_event
            self.last_seq = r.seq
            if r.flags & FLAG_LAST:
                # a message is applied whole before it is truncated (Kraken)
                self.truncate()
                self.updates += 1
                pending = False
                if r.checksum:
                    self.cks = r.checksum
                    self.have_cks = True
        if pending:
            self.truncate()
            self.updates += 1
        return -1

    def apply(self, cnp.ndarray ticks):
        """Apply the book records of ``ticks`` that belong to this book; return their count."""
        cdef Tick* t = <Tick*>cnp.PyArray_DATA(ticks)
        cdef Py_ssize_t n = ticks.shape[0], used = 0, rc
        self.have_cks = False
        if n >= 1024:
            # big batches (REST snapshots) run without the GIL; for the few
            # records of a live message handing it over would cost more
            with nogil:
                rc = self._apply(t, n, &used)
        else:
            rc = self._apply(t, n, &used)
        if self.have_cks:
            self.last_checksum = self.cks
        if rc == -2:
            raise MemoryError("order book side could not grow")
        if rc >= 0:
            raise ValueError(
                f"ticks[{rc}] is not a valid book level (side={t[rc].side}, price={t[rc].price}, "
                f"size={t[rc].size})")
        return used

    def set_level(self, int side, double price, double size):
        if not (isfinite(price) and isfinite(size)) or size < 0:
            raise ValueError(f"price and size must be finite and size >= 0, got {price}, {size}")
        if (self.bids if side == 1 else self.asks).set(price, size) < 0:
            raise MemoryError("order book side could not grow")

    def best(self, int side):
        cdef _Side s = self.bids if side == 1 else self.asks
        if s.n == 0:
            return (NAN, NAN)
        return (s.px[0], s.sz[0])

    def top(self):
        """``(bid price, bid size, ask price, ask size)``, nan for an empty side:
        both best levels in one call (the aggregator asks after every update)."""
        cdef _Side b = self.bids, a = self.asks
        return (b.px[0] if b.n else NAN, b.sz[0] if b.n else NAN,
                a.px[0] if a.n else NAN, a.sz[0] if a.n else NAN)

    def levels(self, int side, Py_ssize_t k):
        return (self.bids if side == 1 else self.asks).levels(k)

    def count(self, int side):
        return (self.bids if side == 1 else self.asks).n

    def fill(self, int side, double size):
        cdef double got
        cdef double notional = (self.bids if side == 1 else self.asks).fill(size, &got)
        return notional, got

    def kraken_checksum(self, int price_decimals, int qty_decimals):
        """CRC32 of the top 10 asks (ascending) then top 10 bids (descending)."""
        if not (0 <= price_decimals <= 18 and 0 <= qty_decimals <= 18):
            raise ValueError("price_decimals and qty_decimals must be in [0, 18]")
        cdef uint32_t crc
        cdef _Side a = self.asks, b = self.bids
        # 20 levels: cheaper to keep the GIL than to hand it over
        crc = _kraken_crc(a.px, a.sz, a.n, b.px, b.sz, b.n, price_decimals, qty_decimals)
        return crc


cdef double _POW10[19]
_POW10[0] = 1.0
for _i in range(1, 19):
    _POW10[_i] = _POW10[_i - 1] * 10.0  # exact: every 10**k up to 10**22 is a double


cdef uint32_t _kraken_crc(double* apx, double* asz, Py_ssize_t an, double* bpx, double* bsz,
                          Py_ssize_t bn, int pdec, int qdec) noexcept nogil:
    cdef char buf[80]
    cdef char clean[80]
    cdef uint32_t crc = 0xFFFFFFFFU
    cdef int side, k, m, j, lead, idx
    cdef Py_ssize_t i, n
    cdef double* px
    cdef double* sz
    cdef double v, scaled
    cdef int64_t r
    for side in range(2):
        px = apx if side == 0 else bpx
        sz = asz if side == 0 else bsz
        n = an if side == 0 else bn
        if n > 10:
            n = 10
        for i in range(n):
            for k in range(2):
                v = px[i] if k == 0 else sz[i]
                # The exchange's own decimal text is v rounded to the pair's
                # precision (repr/Decimal of the float would be wrong); with
                # the point and leading zeros gone it is the digits of the
                # integer round(v * 10**decimals).  Exchange values have at
                # most that many decimals, so the product sits within a few
                # ulps of an integer; anything near a rounding tie, negative
                # or too large for exact doubles takes the printf path.
                scaled = v * _POW10[pdec if k == 0 else qdec]
                if scaled >= 0.0 and scaled < 4.5e15:
                    r = <int64_t>(scaled + 0.5)
                    if fabs(scaled - <double>r) < 0.499:
                        j = 0
                        while r > 0:
                            buf[j] = 48 + <char>(r % 10)
                            r //= 10
                            j += 1
                        for idx in range(j):
                            clean[idx] = buf[j - 1 - idx]
                        crc = _crc(crc, clean, j)
                        continue
                m = snprintf(buf, 80, "%.*f", pdec if k == 0 else qdec, v)
                if m >= 80:
                    m = 79  # only absurd values (> 1e60) get here
                lead = 1
                j = 0
                for idx in range(m):
                    if buf[idx] == 46:  # '.'
                        continue
                    if lead and buf[idx] == 48:  # leading '0'
                        continue
                    lead = 0
                    clean[j] = buf[idx]
                    j += 1
                crc = _crc(crc, clean, j)
    return crc ^ 0xFFFFFFFFU
