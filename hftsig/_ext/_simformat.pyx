# cython: language_level=3
"""Text kernels of the exchange simulators (public users: :mod:`hftsig.simulator`).

The simulators write every price and size as integer ticks/lots scaled by a
power of ten; at thousands of book updates per second the per-number Python
formatting (``divmod``, ``%``, ``rstrip``, ``join``) was most of their CPU.
These kernels write whole level lists of one protocol into one C buffer and
return one ``str``; each is checked against the Python formatting it replaces
in ``tests/simulator/test_simformat.py``.

Number styles (``mode``):

- ``FIXED``: exactly ``decimals`` decimals (``format_fixed``);
- ``TRIM1``: trailing zeros trimmed, one decimal kept (Kraken JSON numbers);
- ``TRIM0``: trailing zeros and a bare ``.`` trimmed (Coinbase strings);
- ``EIGHT``: eight decimals when ``decimals <= 8`` (Binance strings).
"""
from libc.stdlib cimport malloc, free
from libc.string cimport memcpy
from cpython.unicode cimport PyUnicode_DecodeASCII
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.tuple cimport PyTuple_GET_SIZE
from cpython.bytes cimport PyBytes_AS_STRING


cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object s, Py_ssize_t* size) except NULL
import zlib

cdef enum:
    FIXED = 0
    TRIM1 = 1
    TRIM0 = 2
    EIGHT = 3
    MAXNUM = 48  # longest number text: sign, 19 digits, '.', 18 decimals, padding

cdef unsigned long long POW10[19]
POW10[0] = 1
cdef int _k
for _k in range(1, 19):
    POW10[_k] = POW10[_k - 1] * 10

MODES = {"fixed": FIXED, "trim1": TRIM1, "trim0": TRIM0, "eight": EIGHT}


cdef inline Py_ssize_t _uint(char* out, unsigned long long v) noexcept:
    cdef char tmp[24]
    cdef Py_ssize_t n = 0, i
    while True:
        tmp[n] = <char>(48 + v % 10)
        n += 1
        v //= 10
        if v == 0:
            break
    for i in range(n):
        out[i] = tmp[n - 1 - i]
    return n


cdef inline Py_ssize_t _num(char* out, long long n, int decimals, int mode) noexcept:
    """Write ``n * 10**-decimals`` in ``mode``; ``decimals`` is in 0..18."""
    cdef Py_ssize_t w = 0, i, end
    cdef unsigned long long a, ip, fp, scale
    cdef int d, pad
    if mode == EIGHT and decimals <= 8:
        # format_fixed(n * 10**(8 - decimals), 8): the same digits, zeros appended
        pad = 8 - decimals
        w = _num(out, n, decimals, FIXED)
        if decimals == 0:
            out[w] = 46  # '.'
            w += 1
        for i in range(pad):
            out[w + i] = 48
        return w + pad
    if n < 0:
        out[0] = 45  # '-'
        w = 1
        a = <unsigned long long>(-(n + 1)) + 1
    else:
        a = <unsigned long long>n
    if decimals == 0:
        return w + _uint(out + w, a)
    scale = POW10[decimals]
    ip = a // scale
    fp = a % scale
    w += _uint(out + w, ip)
    out[w] = 46
    w += 1
    end = w + decimals
    i = end - 1
    while i >= w:
        out[i] = <char>(48 + fp % 10)
        fp //= 10
        i -= 1
    if mode == TRIM1 or mode == TRIM0:
        while end > w and out[end - 1] == 48:
            end -= 1
        if end == w:
            if mode == TRIM1:
                end += 1  # "12." -> "12.0": out[w] is already '0'
            else:
                end -= 1  # "12." -> "12"
    return end


cdef inline int _check(int decimals) except -1:
    if decimals < 0 or decimals > 18:
        raise ValueError(f"decimals must be in 0..18, got {decimals}")
    return 0


cdef inline int _need(tuple t, Py_ssize_t n) except -1:
    # the kernels index tuples unchecked (boundscheck is off): check the size once
    if PyTuple_GET_SIZE(t) != n:
        raise TypeError(f"expected {'(ticks, lots)' if n == 2 else '(side, ticks, lots)'} tuples, got {t!r}")
    return 0


cdef inline Py_ssize_t _lit(char* out, const char* s, Py_ssize_t n) noexcept:
    memcpy(out, s, n)
    return n


cdef class _Buf:
    """A malloc'd char buffer sized up front for the text it will hold."""
    cdef char* p
    cdef Py_ssize_t n

    def __cinit__(self, Py_ssize_t size):
        self.p = <char*>malloc(size if size > 0 else 1)
        if self.p == NULL:
            raise MemoryError()
        self.n = 0

    def __dealloc__(self):
        free(self.p)

    cdef str text(self):
        return PyUnicode_DecodeASCII(self.p, self.n, NULL)


def format_number(long long n, int decimals, mode="fixed"):
    """``n * 10**-decimals`` as text in one of the styles (see the module docstring).

    >>> format_number(4528520, 2), format_number(4528520, 2, "trim1"), format_number(4528500, 2, "trim0")
    ('45285.20', '45285.2', '45285')
    >>> format_number(5, 2, "eight"), format_number(-7, 1), format_number(3, 0, "trim1")
    ('0.05000000', '-0.7', '3')
    """
    cdef char buf[MAXNUM]
    cdef int m
    if mode not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}, got {mode!r}")
    m = MODES[mode]
    _check(decimals)
    return PyUnicode_DecodeASCII(buf, _num(buf, n, decimals, m), NULL)


cdef str _levels(levels, int price_decimals, int qty_decimals, int mode,
                 const char* head, Py_ssize_t n_head, const char* mid, Py_ssize_t n_mid,
                 const char* tail, Py_ssize_t n_tail):
    """``head P mid Q tail`` per ``(ticks, lots)`` level, comma-separated."""
    cdef list lv = levels if type(levels) is list else list(levels)
    cdef Py_ssize_t n = len(lv)
    cdef _Buf b = _Buf(n * (2 * MAXNUM + 24))
    cdef char* o = b.p
    cdef Py_ssize_t w = 0
    cdef tuple t
    _check(price_decimals)
    _check(qty_decimals)
    for t in lv:
        _need(t, 2)
        if w:
            o[w] = 44
            w += 1
        w += _lit(o + w, head, n_head)
        w += _num(o + w, t[0], price_decimals, mode)
        w += _lit(o + w, mid, n_mid)
        w += _num(o + w, t[1], qty_decimals, mode)
        w += _lit(o + w, tail, n_tail)
    b.n = w
    return b.text()


def kraken_levels(levels, int price_decimals, int qty_decimals):
    """``{"price":P,"qty":Q},...`` of ``(ticks, lots)`` levels, as Kraken v2 JSON numbers.

    >>> kraken_levels([(452835, 10000000), (452830, 0)], 1, 8)
    '{"price":45283.5,"qty":0.1},{"price":45283.0,"qty":0.0}'
    """
    return _levels(levels, price_decimals, qty_decimals, TRIM1,
                   b'{"price":', 9, b',"qty":', 7, b'}', 1)


def kraken_side_update(list old, list full, Py_ssize_t depth, int price_decimals, int qty_decimals):
    """Kraken v2 update levels of one book side, as ``(json, count)``.

    ``old`` is what the client holds (the side cut to its ``depth``), ``full``
    the venue's whole side now, best first.  Levels of ``old`` gone from the
    whole book go out with qty 0 (in ``old``'s order); then every level of
    ``full[:depth]`` that is new or has a new size.  Levels that only fell
    below ``depth`` are not deleted: Kraken leaves that to the client.

    >>> kraken_side_update([(5, 1), (4, 2)], [(6, 1), (5, 1), (3, 7)], 2, 0, 0)
    ('{"price":4,"qty":0},{"price":6,"qty":1}', 2)
    """
    cdef Py_ssize_t n_old = len(old), n_full = len(full), n_new = min(depth, n_full)
    cdef Py_ssize_t i, j, count = 0
    cdef long long* op = <long long*>malloc((2 * n_old + 2 * n_full + 1) * sizeof(long long))
    cdef long long* oq
    cdef long long* fp
    cdef long long* fq
    cdef long long p, q
    cdef bint found
    cdef tuple t
    cdef _Buf b
    cdef char* o
    cdef Py_ssize_t w = 0
    if op == NULL:
        raise MemoryError()
    oq = op + n_old
    fp = oq + n_old
    fq = fp + n_full
    try:
        _check(price_decimals)
        _check(qty_decimals)
        for i in range(n_old):
            t = old[i]
            _need(t, 2)
            op[i] = t[0]
            oq[i] = t[1]
        for i in range(n_full):
            t = full[i]
            _need(t, 2)
            fp[i] = t[0]
            fq[i] = t[1]
        b = _Buf((n_old + n_new) * (2 * MAXNUM + 24))
        o = b.p
        for i in range(n_old):
            p = op[i]
            found = False
            for j in range(n_full):
                if fp[j] == p:
                    found = True
                    break
            if not found:
                if count:
                    o[w] = 44
                    w += 1
                w += _lit(o + w, b'{"price":', 9)
                w += _num(o + w, p, price_decimals, TRIM1)
                w += _lit(o + w, b',"qty":', 7)
                w += _num(o + w, 0, qty_decimals, TRIM1)
                o[w] = 125
                w += 1
                count += 1
        for j in range(n_new):
            p = fp[j]
            q = fq[j]
            found = False
            for i in range(n_old):
                if op[i] == p:
                    found = oq[i] == q
                    break
            if not found:
                if count:
                    o[w] = 44
                    w += 1
                w += _lit(o + w, b'{"price":', 9)
                w += _num(o + w, p, price_decimals, TRIM1)
                w += _lit(o + w, b',"qty":', 7)
                w += _num(o + w, q, qty_decimals, TRIM1)
                o[w] = 125
                w += 1
                count += 1
        b.n = w
        return b.text(), count
    finally:
        free(op)


def kraken_checksum(bids, asks):
    """CRC32 of the top 10 asks then top 10 bids, each price and qty as the
    decimal digits of its integer ticks/lots (Kraken v2, see
    :func:`hftsig.simulator.kraken.kraken_checksum`).

    >>> import zlib
    >>> kraken_checksum([(452835, 10000000)], [(452852, 150000000)]) == \\
    ...     zlib.crc32(b"452852" + b"150000000" + b"452835" + b"10000000")
    True
    """
    cdef char buf[20 * 2 * 24]
    cdef Py_ssize_t w = 0, i, n
    cdef long long v
    cdef tuple t
    cdef object side
    for side in (asks, bids):
        n = min(len(side), 10)
        for i in range(n):
            t = side[i]
            _need(t, 2)
            for v in (t[0], t[1]):
                if v < 0:
                    buf[w] = 45
                    w += 1
                    w += _uint(buf + w, <unsigned long long>(-(v + 1)) + 1)
                else:
                    w += _uint(buf + w, <unsigned long long>v)
    return zlib.crc32(PyBytes_FromStringAndSize(buf, w)) & 0xFFFFFFFF


def coinbase_updates(changes, int price_decimals, int qty_decimals, str event_time):
    """Coinbase ``l2_data`` update objects of ``(side, ticks, lots)`` changes.

    >>> coinbase_updates([(1, 452835, 10000000), (-1, 452852, 0)], 1, 8, "T")
    '{"side":"bid","event_time":"T","price_level":"45283.5","new_quantity":"0.1"},{"side":"offer","event_time":"T","price_level":"45285.2","new_quantity":"0"}'
    """
    cdef list ch = changes if type(changes) is list else list(changes)
    cdef bytes et = event_time.encode("ascii")
    cdef const char* etp = et
    cdef Py_ssize_t n_et = len(et)
    cdef Py_ssize_t n = len(ch)
    cdef _Buf b = _Buf(n * (2 * MAXNUM + 80 + n_et))
    cdef char* o = b.p
    cdef Py_ssize_t w = 0
    cdef tuple t
    _check(price_decimals)
    _check(qty_decimals)
    for t in ch:
        _need(t, 3)
        if w:
            o[w] = 44
            w += 1
        if <long long>t[0] > 0:
            w += _lit(o + w, b'{"side":"bid","event_time":"', 28)
        else:
            w += _lit(o + w, b'{"side":"offer","event_time":"', 30)
        w += _lit(o + w, etp, n_et)
        w += _lit(o + w, b'","price_level":"', 17)
        w += _num(o + w, t[1], price_decimals, TRIM0)
        w += _lit(o + w, b'","new_quantity":"', 18)
        w += _num(o + w, t[2], qty_decimals, TRIM0)
        w += _lit(o + w, b'"}', 2)
    b.n = w
    return b.text()


def binance_levels(levels, int price_decimals, int qty_decimals):
    """``["P","Q"],...`` of ``(ticks, lots)`` levels with Binance's 8 decimals.

    >>> binance_levels([(452835, 10000000)], 2, 8)
    '["4528.35000000","0.10000000"]'
    """
    return _levels(levels, price_decimals, qty_decimals, EIGHT,
                   b'["', 2, b'","', 3, b'"]', 2)


cdef inline Py_ssize_t _digits(char* out, long long v, int width) noexcept:
    cdef int i
    for i in range(width - 1, -1, -1):
        out[i] = <char>(48 + v % 10)
        v //= 10
    return width


def rfc3339(long long ns, int digits=9):
    """RFC 3339 UTC time of epoch ``ns`` with ``digits`` (6 or 9) fraction digits.

    >>> rfc3339(1675974770714964855), rfc3339(1695628177708706123, 6)
    ('2023-02-09T20:32:50.714964855Z', '2023-09-25T07:49:37.708706Z')
    """
    cdef long long s, rem, days, sod, z, era, doe, yoe, y, doy, mp, d, m
    cdef char buf[40]
    cdef Py_ssize_t w
    if digits != 6 and digits != 9:
        raise ValueError(f"digits must be 6 or 9, got {digits}")
    s = ns // 1000000000
    rem = ns % 1000000000
    if rem < 0:  # floor division, as Python's divmod
        rem += 1000000000
        s -= 1
    days = s // 86400
    sod = s % 86400
    if sod < 0:
        sod += 86400
        days -= 1
    # days since 1970-01-01 -> proleptic Gregorian date (H. Hinnant's civil_from_days)
    z = days + 719468
    era = (z if z >= 0 else z - 146096) // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    y = yoe + era * 400
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + 3 if mp < 10 else mp - 9
    if m <= 2:
        y += 1
    if y < 1000 or y > 9999:
        raise ValueError(f"ns: year {y} is outside 1000..9999")
    w = _digits(buf, y, 4)
    buf[w] = 45
    w += 1 + _digits(buf + w + 1, m, 2)
    buf[w] = 45
    w += 1 + _digits(buf + w + 1, d, 2)
    buf[w] = 84  # 'T'
    w += 1 + _digits(buf + w + 1, sod // 3600, 2)
    buf[w] = 58
    w += 1 + _digits(buf + w + 1, (sod // 60) % 60, 2)
    buf[w] = 58
    w += 1 + _digits(buf + w + 1, sod % 60, 2)
    buf[w] = 46
    w += 1
    if digits == 6:
        w += _digits(buf + w, rem // 1000, 6)
    else:
        w += _digits(buf + w, rem, 9)
    buf[w] = 90  # 'Z'
    return PyUnicode_DecodeASCII(buf, w + 1, NULL)


def accumulate(dict acc, list batches):
    """``acc[level_key(side, ticks)] = lots`` for every ``(side, ticks, lots)``
    change of every list in ``batches``, in order (Binance diff-depth
    batching: the last size of a level within the batch wins).

    >>> acc = {}
    >>> accumulate(acc, [[(1, 5, 2), (-1, 6, 1)], [(1, 5, 0)]])
    >>> acc == {level_key(1, 5): 0, level_key(-1, 6): 1}
    True
    """
    cdef list changes
    cdef tuple t
    cdef long long p
    for changes in batches:
        for t in changes:
            _need(t, 3)
            p = t[1]
            acc[(p << 1) | (1 if <long long>t[0] == 1 else 0)] = t[2]


def level_key(int side, long long ticks):
    """One int for a book level: ``2 * ticks + 1`` for a bid, ``2 * ticks`` for an ask."""
    return (ticks << 1) | (1 if side == 1 else 0)


def ws_text_frames(list payloads):
    """Unmasked, unfragmented websocket text frames (RFC 6455 5.2: ``0x81``,
    the 7, 16 or 64-bit payload length, the UTF-8 payload) of ``payloads``,
    back to back in one ``bytes``: what a server writes for one
    ``send(text)`` per payload without compression.

    >>> ws_text_frames(["hi", "x" * 200])[:6]
    b'\\x81\\x02hi\\x81~'
    """
    cdef Py_ssize_t n = len(payloads), i, total = 0, size, w = 0
    cdef const char** data = <const char**>malloc((n + 1) * sizeof(char*))
    cdef Py_ssize_t* sizes = <Py_ssize_t*>malloc((n + 1) * sizeof(Py_ssize_t))
    cdef bytes out
    cdef char* o
    cdef int k
    if data == NULL or sizes == NULL:
        free(data)
        free(sizes)
        raise MemoryError()
    try:
        for i in range(n):
            # str: its UTF-8 (cached in the str; ASCII text is not copied)
            data[i] = PyUnicode_AsUTF8AndSize(payloads[i], &size)
            sizes[i] = size
            total += size + (2 if size < 126 else 4 if size < 65536 else 10)
        out = PyBytes_FromStringAndSize(NULL, total)
        o = PyBytes_AS_STRING(out)
        for i in range(n):
            size = sizes[i]
            o[w] = <char>0x81
            if size < 126:
                o[w + 1] = <char>size
                w += 2
            elif size < 65536:
                o[w + 1] = 126
                o[w + 2] = <char>(size >> 8)
                o[w + 3] = <char>(size & 0xFF)
                w += 4
            else:
                o[w + 1] = 127
                for k in range(8):
                    o[w + 2 + k] = <char>((size >> (8 * (7 - k))) & 0xFF)
                w += 10
            memcpy(o + w, data[i], size)
            w += size
        return out
    finally:
        free(data)
        free(sizes)
