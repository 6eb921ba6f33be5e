# cython: language_level=3
"""L2 order book kernels (public API: :mod:`hftsig.market.book`).

Each side is a price-sorted pair of float64 arrays (bids descending, asks
ascending); a level is found by binary search and inserted/removed with
memmove, which beats trees for the few hundred levels an exchange sends.
A message of many levels (a REST snapshot) is sorted and merged into the side
instead: one memmove per level would make a snapshot sent in the worst order
quadratic in its size.

:meth:`BookCore.apply` checks every record of the batch before it changes
anything, and reserves the memory the batch can need first: a rejected batch
(or one that runs out of memory) leaves the book exactly as it was.
"""
from libc.stdint cimport int64_t, uint32_t, uint8_t, int8_t
from libc.stdlib cimport malloc, realloc, free, qsort
from libc.string cimport memmove, memcmp, memcpy
from libc.stdio cimport snprintf
from libc.math cimport isnan, isfinite, fabs, NAN
cimport numpy as cnp
import numpy as np

from hftsig.market import ticks as _ticks

cnp.import_array()

from hftsig._ext.tick cimport (
    Tick, check_tick_layout, KIND_BOOK_DELTA, KIND_BOOK_SNAPSHOT, FLAG_LAST, FLAG_SNAPSHOT_BEGIN)

check_tick_layout(_ticks)  # byte for byte TICK_DTYPE, same codes

cdef uint32_t CRC_TABLE[256]

# A message with at least this many records of one book is sorted and merged
# into the sides (O(n log n)) instead of set level by level (O(n) memmove each).
# (batches up to _SMALL records keep their record index on the stack)
cdef enum:
    _BULK_MIN = 64
    _SMALL = 64

# cross_state codes: best bid below best ask (or a side empty), equal, above
cdef enum:
    _OK = 0
    _LOCKED = 1
    _CROSSED = 2
BOOK_OK = _OK
BOOK_LOCKED = _LOCKED
BOOK_CROSSED = _CROSSED


cdef struct _Upd:
    double key  # price for asks, -price for bids: ascending key is best first
    double px
    double sz
    Py_ssize_t order  # position in the message: the later record wins


cdef void _sort_upd(_Upd* u, Py_ssize_t m) noexcept nogil:
    """Sort updates by (key, order).  Exchanges send a side best first (keys
    ascending) and some worst first: both orders are recognised in one pass."""
    cdef Py_ssize_t i
    cdef _Upd tmp
    cdef bint up = True, down = True
    for i in range(1, m):
        if u[i].key <= u[i - 1].key:
            up = False
        if u[i].key >= u[i - 1].key:
            down = False
        if not (up or down):
            break
    if up:
        return
    if down:  # distinct keys: reversing gives (key, order) order
        for i in range(m // 2):
            tmp = u[i]
            u[i] = u[m - 1 - i]
            u[m - 1 - i] = tmp
        return
    qsort(u, m, sizeof(_Upd), _cmp_upd)


cdef int _cmp_upd(const void* a, const void* b) noexcept nogil:
    cdef const _Upd* x = <const _Upd*>a
    cdef const _Upd* y = <const _Upd*>b
    if x.key < y.key:
        return -1
    if x.key > y.key:
        return 1
    return (x.order > y.order) - (x.order < y.order)


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
        return self.reserve(self.cap * 2)

    cdef int reserve(self, Py_ssize_t need) noexcept nogil:
        """Make room for ``need`` levels; -1 when memory runs out (nothing lost)."""
        if need <= self.cap:
            return 0
        cdef Py_ssize_t cap = self.cap
        while cap < need:
            cap *= 2
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

    cdef void merge(self, _Upd* u, Py_ssize_t m, double* tpx, double* tsz) noexcept nogil:
        """Apply ``m`` updates sorted by (key, order) in one pass: as ``set`` one
        by one in message order would (the last record of a price wins, size 0
        removes).  ``tpx``/``tsz`` hold ``n + m`` levels; the side must have
        room for them (``reserve``)."""
        cdef Py_ssize_t i = 0, j = 0, k = 0, n = self.n
        cdef double key, sign = -1.0 if self.desc else 1.0
        while i < n or j < m:
            if j < m:
                # the last update of a run of one price is the one that counts
                while j + 1 < m and u[j + 1].key == u[j].key:
                    j += 1
            if j >= m:
                tpx[k] = self.px[i]
                tsz[k] = self.sz[i]
                k += 1
                i += 1
                continue
            if i < n:
                key = sign * self.px[i]
                if key < u[j].key:
                    tpx[k] = self.px[i]
                    tsz[k] = self.sz[i]
                    k += 1
                    i += 1
                    continue
                if key == u[j].key:
                    i += 1  # replaced (or removed) by the update
            if u[j].sz != 0.0:
                tpx[k] = u[j].px
                tsz[k] = u[j].sz
                k += 1
            j += 1
        memcpy(self.px, tpx, k * sizeof(double))
        memcpy(self.sz, tsz, k * sizeof(double))
        self.n = k

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
    """State of one L2 book; :class:`hftsig.market.book.OrderBook` wraps it."""
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
    #: BOOK_OK, BOOK_LOCKED or BOOK_CROSSED after the last change
    cdef readonly int cross_state

    def __init__(self, int exchange, bytes symbol, Py_ssize_t depth):
        if len(symbol) > 16:
            raise ValueError("symbol longer than 16 bytes")
        if depth < 0:
            raise ValueError(f"depth must be >= 0 (0: unlimited), got {depth}")
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
        self.cross_state = _OK

    def clear(self):
        self.bids.n = 0
        self.asks.n = 0
        self.cross_state = _OK

    cdef void truncate(self) noexcept nogil:
        if self.depth > 0:
            if self.bids.n > self.depth:
                self.bids.n = self.depth
            if self.asks.n > self.depth:
                self.asks.n = self.depth

    cdef void _update_cross(self) noexcept nogil:
        cdef double b, a
        if self.bids.n == 0 or self.asks.n == 0:
            self.cross_state = _OK
            return
        b = self.bids.px[0]
        a = self.asks.px[0]
        self.cross_state = _CROSSED if b > a else (_LOCKED if b == a else _OK)

    cdef inline bint _mine(self, Tick* r) noexcept nogil:
        return (r.exchange == self.exch and memcmp(r.symbol, self.sym, 16) == 0
                and (r.kind == KIND_BOOK_DELTA or r.kind == KIND_BOOK_SNAPSHOT))

    cdef Py_ssize_t _check(self, Tick* t, Py_ssize_t n, Py_ssize_t* idx, Py_ssize_t* m,
                           Py_ssize_t* nb, Py_ssize_t* na) noexcept nogil:
        """Index this book's records into ``idx`` (``m`` of them, ``nb`` bids and
        ``na`` asks); return the index of the first invalid one, or -1."""
        cdef Py_ssize_t i, k = 0
        cdef Tick* r
        for i in range(n):
            r = &t[i]
            if not self._mine(r):
                continue
            # a level has a positive price and a size >= 0 (0 removes it);
            # NaN fails every comparison
            if not (isfinite(r.price) and r.price > 0.0 and isfinite(r.size) and r.size >= 0.0) \
                    or (r.side != 1 and r.side != -1):
                return i
            idx[k] = i
            k += 1
            if r.side == 1:
                nb[0] += 1
            else:
                na[0] += 1
        m[0] = k
        return -1

    cdef void _apply_checked(self, Tick* t, Py_ssize_t* idx, Py_ssize_t m, _Upd* upd,
                             double* tpx, double* tsz) noexcept nogil:
        """Apply this book's records ``t[idx[0..m)]``, checked and with room reserved.

        Each message (records up to one with ``FLAG_LAST``, or the batch's end)
        is applied whole, then cut to the depth (Kraken sends no deletes for
        levels that fall out)."""
        cdef Py_ssize_t s = 0, e, b, k, nu_b, nu_a
        cdef Tick* r
        while s < m:
            e = s
            while e < m - 1 and not (t[idx[e]].flags & FLAG_LAST):
                e += 1
            # a snapshot clears the book: records before its first one do not count
            b = s
            for k in range(s, e + 1):
                if t[idx[k]].flags & FLAG_SNAPSHOT_BEGIN:
                    b = k
            if t[idx[b]].flags & FLAG_SNAPSHOT_BEGIN:
                self.bids.n = 0
                self.asks.n = 0
            if e - b + 1 < _BULK_MIN or upd == NULL:
                for k in range(b, e + 1):
                    r = &t[idx[k]]
                    # cannot fail: apply() reserved room for every record
                    if r.side == 1:
                        self.bids.set(r.price, r.size)
                    else:
                        self.asks.set(r.price, r.size)
            else:
                nu_b = 0
                nu_a = 0
                for k in range(b, e + 1):  # bids fill upd from the front, asks from the back
                    r = &t[idx[k]]
                    if r.side == 1:
                        upd[nu_b].key = -r.price
                        upd[nu_b].px = r.price
                        upd[nu_b].sz = r.size
                        upd[nu_b].order = k
                        nu_b += 1
                    else:
                        nu_a += 1
                        upd[m - nu_a].key = r.price
                        upd[m - nu_a].px = r.price
                        upd[m - nu_a].sz = r.size
                        upd[m - nu_a].order = k
                if nu_b:
                    _sort_upd(upd, nu_b)
                    self.bids.merge(upd, nu_b, tpx, tsz)
                if nu_a:
                    # asks were filled from the back: they sit in reverse message order
                    _sort_upd(upd + m - nu_a, nu_a)
                    self.asks.merge(upd + m - nu_a, nu_a, tpx, tsz)
            r = &t[idx[e]]
            self.ts_event = r.ts_event
            self.last_seq = r.seq
            self.truncate()
            self.updates += 1
            if (r.flags & FLAG_LAST) and r.checksum:
                self.cks = r.checksum
                self.have_cks = True
            s = e + 1
        self._update_cross()

    def apply(self, cnp.ndarray ticks):
        """Apply the book records of ``ticks`` that belong to this book; return their count.

        Every record is checked first: one invalid record (non-finite or
        non-positive price, non-finite or negative size, side other than
        +1/-1) rejects the whole batch with ``ValueError`` and the book is
        left exactly as it was.
        """
        cdef Tick* t = <Tick*>cnp.PyArray_DATA(ticks)
        cdef Py_ssize_t n = ticks.shape[0], m = 0, nb = 0, na = 0, bad, i, big
        cdef Py_ssize_t small[_SMALL]
        cdef Py_ssize_t* idx = small
        cdef _Upd* upd = NULL
        cdef double* tpx = NULL
        cdef double* tsz = NULL
        cdef bint nogil_ = n >= 1024  # REST snapshots; a live message is cheaper with the GIL
        if n > _SMALL:
            idx = <Py_ssize_t*>malloc(n * sizeof(Py_ssize_t))
            if idx == NULL:
                raise MemoryError("no memory to index the batch")
        try:
            if nogil_:
                with nogil:
                    bad = self._check(t, n, idx, &m, &nb, &na)
            else:
                bad = self._check(t, n, idx, &m, &nb, &na)
            if bad >= 0:
                raise ValueError(
                    f"ticks[{bad}] is not a valid book level (side={t[bad].side}, "
                    f"price={t[bad].price}, size={t[bad].size}): a level needs side +1/-1, a "
                    f"finite price > 0 and a finite size >= 0; the batch was rejected whole "
                    f"and the book left unchanged")
            if m == 0:
                return 0
            # all memory first: running out later would leave half a message applied
            if self.bids.reserve(self.bids.n + nb) < 0 or self.asks.reserve(self.asks.n + na) < 0:
                raise MemoryError("order book side could not grow")
            if m >= _BULK_MIN:
                big = max(self.bids.n + nb, self.asks.n + na)
                upd = <_Upd*>malloc(m * sizeof(_Upd))
                tpx = <double*>malloc(big * sizeof(double))
                tsz = <double*>malloc(big * sizeof(double))
                if upd == NULL or tpx == NULL or tsz == NULL:
                    raise MemoryError("no memory to merge the batch into the book")
            self.have_cks = False
            if nogil_:
                with nogil:
                    self._apply_checked(t, idx, m, upd, tpx, tsz)
            else:
                self._apply_checked(t, idx, m, upd, tpx, tsz)
            if self.have_cks:
                self.last_checksum = self.cks
            return m
        finally:
            if idx != small:
                free(idx)
            free(upd)
            free(tpx)
            free(tsz)

    def set_level(self, int side, double price, double size):
        if not (isfinite(price) and price > 0 and isfinite(size) and size >= 0):
            raise ValueError(f"price must be finite and > 0 and size finite and >= 0, "
                             f"got {price}, {size}")
        if (self.bids if side == 1 else self.asks).set(price, size) < 0:
            raise MemoryError("order book side could not grow")
        self._update_cross()

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
