# cython: language_level=3
"""Exchange messages -> Tick records (public API: :mod:`hftsig.normalize`).

One validating single-pass JSON scanner over the raw frame bytes finds the
fields each message type needs by key; numbers are parsed from the quoted
decimal strings (or JSON numbers) straight into float64 with Clinger's exact
fast path and Python's correctly rounded parser as the fallback, so every
value equals ``float(text)``.  Records are written into a preallocated chunk
of ``TICK_DTYPE`` and handed out as views of it; a chunk is never written
twice, so a returned batch stays valid for as long as the caller keeps it.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize, PyBytes_Check
from cpython.unicode cimport PyUnicode_Check
from libc.stdint cimport INT64_MIN, int64_t, uint64_t, uint32_t, uint8_t, int8_t
from libc.string cimport memchr, memcmp, memcpy, memset, strlen
from libc.math cimport isfinite, NAN
from posix.time cimport clock_gettime, timespec, CLOCK_REALTIME
cimport numpy as cnp

import json
import numpy as np

from hftsig.market import ticks as _ticks
from hftsig.market import symbols as _symbols

cnp.import_array()

cdef int _k

from cpython.ref cimport Py_INCREF

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object, Py_ssize_t*) except NULL
    long long PyLong_AsLongLongAndOverflow(object, int*) except? -1

cdef extern from "numpy/arrayobject.h":
    object PyArray_NewFromDescr(void* subtype, void* descr, int nd, cnp.npy_intp* dims,
                                cnp.npy_intp* strides, void* data, int flags, void* obj)


class MalformedMessage(ValueError):
    """A frame that is not valid JSON or lacks what its message type needs.

    Connectors count these and carry on; nothing of the frame is emitted and
    the Normalizer's state (``precisions``) is as before it.
    """


from hftsig._ext.tick cimport (
    Tick, check_tick_layout, EX_BINANCE, EX_KRAKEN, EX_COINBASE, EX_COINGECKO, KIND_QUOTE,
    KIND_TRADE, KIND_BOOK_DELTA, KIND_BOOK_SNAPSHOT, KIND_PRICE, FLAG_LAST, FLAG_SNAPSHOT_BEGIN)

check_tick_layout(_ticks)  # byte for byte TICK_DTYPE, same codes

# message types (Normalizer.last_type)
cdef enum:
    T_NONE = 0
    T_DATA = 1
    T_HEARTBEAT = 2
    T_SUBSCRIBED = 3
    T_UNSUBSCRIBED = 4
    T_STATUS = 5
    T_ERROR = 6
    T_SHUTDOWN = 7
    T_UNKNOWN = 8

_TYPE_NAMES = (None, "data", "heartbeat", "subscribed", "unsubscribed", "status", "error",
               "shutdown", "unknown")

# ---------------------------------------------------------------------------
# JSON scanning
# ---------------------------------------------------------------------------

cdef enum:
    J_NONE = 0
    J_STR = 1
    J_NUM = 2
    J_OBJ = 3
    J_ARR = 4
    J_TRUE = 5
    J_FALSE = 6
    J_NULL = 7

cdef enum:
    MAX_DEPTH = 64
    MAX_KEYS = 24

cdef struct Ctx:
    const unsigned char* p
    Py_ssize_t n
    const char* err
    Py_ssize_t errpos
    Py_ssize_t ss, se      # Binance combined-stream name, ss = -1 if none

cdef struct Val:
    Py_ssize_t s      # strings: first byte inside the quotes; others: first byte
    Py_ssize_t e      # strings: the closing quote; others: one past the end
    int kind
    int esc           # string holds escapes

cdef struct It:
    Py_ssize_t i
    int state         # 0 first member, 1 after a member, 2 closed
    int depth

cdef struct Keys:
    int n
    const char* name[MAX_KEYS]
    Py_ssize_t len[MAX_KEYS]
    int first[256]          # first name starting with a byte, -1 if none
    int next[MAX_KEYS]      # next name with the same first byte, -1 at the end


cdef object _NDARRAY = np.ndarray


cdef int _raise_at(Ctx* c, Py_ssize_t i, const char* msg) except -1:
    _fail(c, i, msg)
    raise MalformedMessage(f"{msg.decode()} at byte {i}")


cdef inline Py_ssize_t _fail(Ctx* c, Py_ssize_t i, const char* msg) noexcept:
    if c.err == NULL:
        c.err = msg
        c.errpos = i
    return -1


cdef inline Py_ssize_t _ws(Ctx* c, Py_ssize_t i) noexcept:
    cdef unsigned char ch
    while i < c.n:
        ch = c.p[i]
        if ch == 32 or ch == 10 or ch == 13 or ch == 9:
            i += 1
        else:
            break
    return i


cdef inline bint _hex(unsigned char ch) noexcept:
    return (48 <= ch <= 57) or (65 <= ch <= 70) or (97 <= ch <= 102)


cdef Py_ssize_t _utf8(Ctx* c, Py_ssize_t i) noexcept:
    """Length of the valid UTF-8 sequence at i (a byte >= 0x80), -1 if invalid."""
    cdef unsigned char b0 = c.p[i], b1
    cdef int need
    cdef unsigned char lo = 0x80, hi = 0xBF
    if 0xC2 <= b0 <= 0xDF:
        need = 1
    elif 0xE0 <= b0 <= 0xEF:
        need = 2
        if b0 == 0xE0:
            lo = 0xA0
        elif b0 == 0xED:
            hi = 0x9F
    elif 0xF0 <= b0 <= 0xF4:
        need = 3
        if b0 == 0xF0:
            lo = 0x90
        elif b0 == 0xF4:
            hi = 0x8F
    else:
        return -1
    if i + need >= c.n:
        return -1
    b1 = c.p[i + 1]
    if b1 < lo or b1 > hi:
        return -1
    for j in range(2, need + 1):
        if c.p[i + j] < 0x80 or c.p[i + j] > 0xBF:
            return -1
    return need + 1


# bytes that need no attention inside a string: printable ASCII but '"' and '\\'
cdef unsigned char PLAIN[256]
for _k in range(256):
    PLAIN[_k] = 32 <= _k < 128 and _k != 34 and _k != 92


cdef inline uint64_t _load8(const unsigned char* q) noexcept nogil:
    cdef uint64_t x
    memcpy(&x, q, 8)
    return x


cdef inline uint64_t _special8(uint64_t x) noexcept nogil:
    """Nonzero when one of 8 bytes may be '"', a backslash, a control byte or >= 0x80.

    Word-at-a-time test (zero-byte trick); a hit only sends the scan to the
    byte loop, so false alarms cost time, never correctness.
    """
    cdef uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL
    cdef uint64_t q = x ^ 0x2222222222222222ULL
    cdef uint64_t b = x ^ 0x5C5C5C5C5C5C5C5CULL
    return (((q - ones) & ~q) | ((b - ones) & ~b) | (x - 0x2020202020202020ULL) | x) & high


cdef Py_ssize_t _string(Ctx* c, Py_ssize_t i, Val* v) noexcept:
    """Scan the string whose opening quote is at i; return the index after it."""
    cdef unsigned char ch
    cdef Py_ssize_t k
    cdef const unsigned char* p = c.p
    cdef Py_ssize_t n = c.n
    i += 1
    v.s = i
    v.kind = J_STR
    v.esc = 0
    while True:
        # locals: the compiler cannot keep c.p/c.n in registers across the stores to v
        while i + 8 <= n and not _special8(_load8(p + i)):
            i += 8
        while i < n and PLAIN[p[i]]:
            i += 1
        if i >= n:
            return _fail(c, i, "unterminated string")
        ch = c.p[i]
        if ch == 34:  # "
            v.e = i
            return i + 1
        if ch == 92:  # backslash
            v.esc = 1
            i += 1
            if i >= c.n:
                return _fail(c, i, "unterminated escape")
            ch = c.p[i]
            if ch == 117:  # u
                if i + 4 >= c.n:
                    return _fail(c, i, "truncated \\u escape")
                for k in range(1, 5):
                    if not _hex(c.p[i + k]):
                        return _fail(c, i, "bad \\u escape")
                i += 5
            elif ch == 34 or ch == 92 or ch == 47 or ch == 98 or ch == 102 or ch == 110 \
                    or ch == 114 or ch == 116:
                i += 1
            else:
                return _fail(c, i, "bad escape")
        elif ch < 32:
            return _fail(c, i, "control character in string")
        elif ch < 128:
            i += 1
        else:
            k = _utf8(c, i)
            if k < 0:
                return _fail(c, i, "invalid UTF-8")
            i += k


cdef inline bint _digit(unsigned char ch) noexcept:
    return 48 <= ch <= 57


cdef Py_ssize_t _number(Ctx* c, Py_ssize_t i, Val* v) noexcept:
    v.s = i
    v.kind = J_NUM
    v.esc = 0
    if i < c.n and c.p[i] == 45:
        i += 1
    if i >= c.n:
        return _fail(c, i, "truncated number")
    if c.p[i] == 48:
        i += 1
    elif _digit(c.p[i]):
        while i < c.n and _digit(c.p[i]):
            i += 1
    else:
        return _fail(c, i, "bad number")
    if i < c.n and c.p[i] == 46:
        i += 1
        if i >= c.n or not _digit(c.p[i]):
            return _fail(c, i, "bad fraction")
        while i < c.n and _digit(c.p[i]):
            i += 1
    if i < c.n and (c.p[i] == 101 or c.p[i] == 69):
        i += 1
        if i < c.n and (c.p[i] == 43 or c.p[i] == 45):
            i += 1
        if i >= c.n or not _digit(c.p[i]):
            return _fail(c, i, "bad exponent")
        while i < c.n and _digit(c.p[i]):
            i += 1
    v.e = i
    return i


cdef inline Py_ssize_t _literal(Ctx* c, Py_ssize_t i, const char* lit, Py_ssize_t L,
                                int kind, Val* v) noexcept:
    if i + L > c.n or memcmp(c.p + i, lit, L) != 0:
        return _fail(c, i, "bad literal")
    v.s = i
    v.e = i + L
    v.kind = kind
    v.esc = 0
    return i + L




cdef Py_ssize_t _skip_object(Ctx* c, Py_ssize_t i, int depth) noexcept:
    cdef Val k, v
    if depth > MAX_DEPTH:
        return _fail(c, i, "nested too deep")
    i = _ws(c, i + 1)
    if i < c.n and c.p[i] == 125:
        return i + 1
    while True:
        if i >= c.n or c.p[i] != 34:
            return _fail(c, i, "expected a key")
        i = _string(c, i, &k)
        if i < 0:
            return -1
        i = _ws(c, i)
        if i >= c.n or c.p[i] != 58:
            return _fail(c, i, "expected ':'")
        i = _value(c, i + 1, &v, depth)
        if i < 0:
            return -1
        i = _ws(c, i)
        if i >= c.n:
            return _fail(c, i, "unterminated object")
        if c.p[i] == 44:
            i = _ws(c, i + 1)
        elif c.p[i] == 125:
            return i + 1
        else:
            return _fail(c, i, "expected ',' or '}'")


cdef Py_ssize_t _skip_array(Ctx* c, Py_ssize_t i, int depth) noexcept:
    cdef Val v
    if depth > MAX_DEPTH:
        return _fail(c, i, "nested too deep")
    i = _ws(c, i + 1)
    if i < c.n and c.p[i] == 93:
        return i + 1
    while True:
        i = _value(c, i, &v, depth)
        if i < 0:
            return -1
        i = _ws(c, i)
        if i >= c.n:
            return _fail(c, i, "unterminated array")
        if c.p[i] == 44:
            i += 1
        elif c.p[i] == 93:
            return i + 1
        else:
            return _fail(c, i, "expected ',' or ']'")


cdef Py_ssize_t _value(Ctx* c, Py_ssize_t i, Val* v, int depth) noexcept:
    cdef unsigned char ch
    i = _ws(c, i)
    if i >= c.n:
        return _fail(c, i, "unexpected end of message")
    ch = c.p[i]
    if ch == 34:
        return _string(c, i, v)
    if ch == 123:
        v.s = i
        v.kind = J_OBJ
        v.esc = 0
        i = _skip_object(c, i, depth + 1)
        v.e = i
        return i
    if ch == 91:
        v.s = i
        v.kind = J_ARR
        v.esc = 0
        i = _skip_array(c, i, depth + 1)
        v.e = i
        return i
    if ch == 45 or _digit(ch):
        return _number(c, i, v)
    if ch == 116:
        return _literal(c, i, b"true", 4, J_TRUE, v)
    if ch == 102:
        return _literal(c, i, b"false", 5, J_FALSE, v)
    if ch == 110:
        return _literal(c, i, b"null", 4, J_NULL, v)
    return _fail(c, i, "unexpected character")


cdef inline int _obj_open(Ctx* c, It* it, Py_ssize_t i, int depth) noexcept:
    i = _ws(c, i)
    if i >= c.n or c.p[i] != 123:
        _fail(c, i, "expected an object")
        return -1
    it.i = i + 1
    it.state = 0
    it.depth = depth + 1
    return 0


cdef inline int _obj_next(Ctx* c, It* it, Val* k, Val* v) noexcept:
    """Next member of an object: 1 and key/value, 0 at its end, -1 on error."""
    cdef Py_ssize_t i = _ws(c, it.i)
    if it.state == 2:
        return 0
    if i >= c.n:
        _fail(c, i, "unterminated object")
        return -1
    if it.state == 1:
        if c.p[i] == 44:
            i = _ws(c, i + 1)
            if i >= c.n or c.p[i] != 34:
                _fail(c, i, "expected a key")
                return -1
        elif c.p[i] == 125:
            it.i = i + 1
            it.state = 2
            return 0
        else:
            _fail(c, i, "expected ',' or '}'")
            return -1
    else:
        if c.p[i] == 125:
            it.i = i + 1
            it.state = 2
            return 0
        if c.p[i] != 34:
            _fail(c, i, "expected a key")
            return -1
    i = _string(c, i, k)
    if i < 0:
        return -1
    i = _ws(c, i)
    if i >= c.n or c.p[i] != 58:
        _fail(c, i, "expected ':'")
        return -1
    i = _value(c, i + 1, v, it.depth)
    if i < 0:
        return -1
    it.i = i
    it.state = 1
    return 1


cdef inline int _arr_open(Ctx* c, It* it, Val* arr) noexcept:
    if arr.kind != J_ARR:
        _fail(c, arr.s, "expected an array")
        return -1
    it.i = arr.s + 1
    it.state = 0
    it.depth = 1
    return 0


cdef int _arr_next(Ctx* c, It* it, Val* v) noexcept:
    """Next element of an (already validated) array: 1, 0 at its end, -1."""
    cdef Py_ssize_t i = _ws(c, it.i)
    if it.state == 2:
        return 0
    if i >= c.n:
        _fail(c, i, "unterminated array")
        return -1
    if it.state == 1:
        if c.p[i] == 44:
            i += 1
        elif c.p[i] == 93:
            it.i = i + 1
            it.state = 2
            return 0
        else:
            _fail(c, i, "expected ',' or ']'")
            return -1
    elif c.p[i] == 93:
        it.i = i + 1
        it.state = 2
        return 0
    i = _value(c, i, v, it.depth)
    if i < 0:
        return -1
    it.i = i
    it.state = 1
    return 1


cdef Py_ssize_t _collect(Ctx* c, Py_ssize_t i, int depth, Keys* ks, Val* out) noexcept:
    """Scan the object at i; out[j] gets the value of key ks.name[j] (kind 0 if absent)."""
    cdef It it
    cdef Val k, v
    cdef int r, j
    for j in range(ks.n):
        out[j].kind = J_NONE
    if _obj_open(c, &it, i, depth) < 0:
        return -1
    while True:
        r = _obj_next(c, &it, &k, &v)
        if r == 0:
            return it.i
        if r < 0:
            return -1
        j = _key_id(c, &k, ks)
        if j >= 0:
            if out[j].kind != J_NONE:
                return _fail(c, k.s, "duplicate key")
            out[j] = v


cdef int _obj_key(Ctx* c, It* it, Val* k) noexcept:
    """Next key of an object: 1 with it.i at its value, 0 at the end, -1 on error.

    The caller consumes the value and calls _obj_done with its end.
    """
    cdef Py_ssize_t i = _ws(c, it.i)
    if it.state == 2:
        return 0
    if i >= c.n:
        _fail(c, i, "unterminated object")
        return -1
    if it.state == 1:
        if c.p[i] == 44:
            i = _ws(c, i + 1)
            if i >= c.n or c.p[i] != 34:
                _fail(c, i, "expected a key")
                return -1
        elif c.p[i] == 125:
            it.i = i + 1
            it.state = 2
            return 0
        else:
            _fail(c, i, "expected ',' or '}'")
            return -1
    else:
        if c.p[i] == 125:
            it.i = i + 1
            it.state = 2
            return 0
        if c.p[i] != 34:
            _fail(c, i, "expected a key")
            return -1
    i = _string(c, i, k)
    if i < 0:
        return -1
    i = _ws(c, i)
    if i >= c.n or c.p[i] != 58:
        _fail(c, i, "expected ':'")
        return -1
    it.i = i + 1
    return 1


cdef inline void _obj_done(It* it, Py_ssize_t end) noexcept:
    it.i = end
    it.state = 1


cdef inline void _arr_at(It* it, Py_ssize_t pos, int depth) noexcept:
    """Iterate the array whose '[' is at pos."""
    it.i = pos + 1
    it.state = 0
    it.depth = depth + 1


cdef inline int _arr_elem(Ctx* c, It* it) noexcept:
    """Next element of an array: 1 with it.i at it, 0 at the end, -1 on error.

    The caller consumes the element and calls _obj_done with its end.
    """
    cdef Py_ssize_t i = _ws(c, it.i)
    if it.state == 2:
        return 0
    if it.depth > MAX_DEPTH:
        _fail(c, i, "nested too deep")
        return -1
    if i >= c.n:
        _fail(c, i, "unterminated array")
        return -1
    if it.state == 1:
        if c.p[i] == 44:
            i = _ws(c, i + 1)
        elif c.p[i] == 93:
            it.i = i + 1
            it.state = 2
            return 0
        else:
            _fail(c, i, "expected ',' or ']'")
            return -1
    elif c.p[i] == 93:
        it.i = i + 1
        it.state = 2
        return 0
    if i >= c.n:
        _fail(c, i, "unterminated array")
        return -1
    it.i = i
    return 1


cdef inline bint _same(const unsigned char* a, const char* b, Py_ssize_t L) noexcept:
    """a[:L] == b[:L] for the short keys of exchange messages (a libc call costs more)."""
    cdef Py_ssize_t m
    for m in range(L):
        if a[m] != <unsigned char>b[m]:
            return False
    return True


cdef inline int _key_id(Ctx* c, Val* k, Keys* ks) noexcept:
    """Index of key k in ks, -1 if not one of them (escapes decoded: "\u0065" is "e")."""
    if k.esc:
        return _key_id_esc(c, k, ks)
    return _key_find(c.p + k.s, k.e - k.s, ks)


cdef inline int _key_find(const unsigned char* q, Py_ssize_t L, Keys* ks) noexcept:
    cdef int j
    if L == 0:
        return -1
    j = ks.first[q[0]]
    while j >= 0:
        if ks.len[j] == L and _same(q, ks.name[j], L):
            return j
        j = ks.next[j]
    return -1


cdef int _key_id_esc(Ctx* c, Val* k, Keys* ks) noexcept:
    cdef unsigned char buf[ESC_CAP]
    cdef Py_ssize_t n = _unescape(c.p, k.s, k.e, buf, ESC_CAP)
    if n < 0:
        return -1
    return _key_find(buf, n, ks)


cdef inline void _span(Val* v, Py_ssize_t s, Py_ssize_t e, int kind) noexcept:
    v.s = s
    v.e = e
    v.kind = kind
    v.esc = 0


cdef int64_t TS_UNSET = INT64_MIN


cdef inline bint _eq(Ctx* c, Val* v, const char* lit, Py_ssize_t L) noexcept:
    """v is the string lit (of length L, given so that no call needs strlen)."""
    if v.kind != J_STR:
        return False
    if v.esc:
        return _eq_esc(c, v, lit, L)
    return v.e - v.s == L and _same(c.p + v.s, lit, L)


cdef bint _eq_esc(Ctx* c, Val* v, const char* lit, Py_ssize_t L) noexcept:
    """_eq for a string with escapes ("tr\u0061de" is "trade")."""
    cdef unsigned char buf[ESC_CAP]
    cdef Py_ssize_t n = _unescape(c.p, v.s, v.e, buf, ESC_CAP)
    return n == L and _same(buf, lit, L)


# ---------------------------------------------------------------------------
# escaped strings
# ---------------------------------------------------------------------------

cdef Py_ssize_t _unescape(const unsigned char* p, Py_ssize_t s, Py_ssize_t e,
                          unsigned char* out, Py_ssize_t cap) noexcept:
    """UTF-8 of the JSON string body p[s:e] with its escapes decoded into out.

    The scanner has already checked the escape syntax.  Returns the length,
    or -1 when it needs more than ``cap`` bytes or holds a lone surrogate
    (no field this module reads can be either).
    """
    cdef Py_ssize_t i = s, n = 0
    cdef unsigned char ch
    cdef uint32_t u, lo
    cdef int k
    while i < e:
        ch = p[i]
        if ch != 92:
            if n >= cap:
                return -1
            out[n] = ch
            n += 1
            i += 1
            continue
        ch = p[i + 1]
        i += 2
        if ch == 117:  # \uXXXX
            u = _hex4(p + i)
            i += 4
            if 0xD800 <= u <= 0xDBFF:
                if i + 6 > e or p[i] != 92 or p[i + 1] != 117:
                    return -1
                lo = _hex4(p + i + 2)
                if not (0xDC00 <= lo <= 0xDFFF):
                    return -1
                i += 6
                u = 0x10000 + ((u - 0xD800) << 10) + (lo - 0xDC00)
            elif 0xDC00 <= u <= 0xDFFF:
                return -1
            if u < 0x80:
                k = 1
            elif u < 0x800:
                k = 2
            elif u < 0x10000:
                k = 3
            else:
                k = 4
            if n + k > cap:
                return -1
            if k == 1:
                out[n] = <unsigned char>u
            elif k == 2:
                out[n] = <unsigned char>(0xC0 | (u >> 6))
                out[n + 1] = <unsigned char>(0x80 | (u & 0x3F))
            elif k == 3:
                out[n] = <unsigned char>(0xE0 | (u >> 12))
                out[n + 1] = <unsigned char>(0x80 | ((u >> 6) & 0x3F))
                out[n + 2] = <unsigned char>(0x80 | (u & 0x3F))
            else:
                out[n] = <unsigned char>(0xF0 | (u >> 18))
                out[n + 1] = <unsigned char>(0x80 | ((u >> 12) & 0x3F))
                out[n + 2] = <unsigned char>(0x80 | ((u >> 6) & 0x3F))
                out[n + 3] = <unsigned char>(0x80 | (u & 0x3F))
            n += k
            continue
        if n >= cap:
            return -1
        if ch == 98:
            ch = 8
        elif ch == 102:
            ch = 12
        elif ch == 110:
            ch = 10
        elif ch == 114:
            ch = 13
        elif ch == 116:
            ch = 9
        out[n] = ch  # '"', '\\' and '/' stand for themselves
        n += 1
    return n


cdef inline uint32_t _hex4(const unsigned char* q) noexcept:
    cdef uint32_t u = 0
    cdef int k
    cdef unsigned char ch
    for k in range(4):
        ch = q[k]
        if ch <= 57:
            u = u * 16 + (ch - 48)
        elif ch <= 70:
            u = u * 16 + (ch - 55)
        else:
            u = u * 16 + (ch - 87)
    return u


cdef enum:
    ESC_CAP = 64   # longest escaped field decoded in place (symbols, types, numbers, times)


cdef int _unescaped(Ctx* c, Val* v, Ctx* tmp, Val* tv, unsigned char* buf) except -1:
    """Point tmp/tv at the decoded text of the escaped string v (buf holds ESC_CAP bytes)."""
    cdef Py_ssize_t L = _unescape(c.p, v.s, v.e, buf, ESC_CAP)
    if L < 0:
        return _raise_at(c, v.s, "escaped string too long or invalid")
    tmp.p = buf
    tmp.n = L
    tmp.err = NULL
    tmp.errpos = 0
    tmp.ss = -1
    tv.s = 0
    tv.e = L
    tv.kind = J_STR
    tv.esc = 0
    return 0


# ---------------------------------------------------------------------------
# numbers and times
# ---------------------------------------------------------------------------

cdef double POW10[23]
POW10[0] = 1.0
for _k in range(1, 23):
    POW10[_k] = POW10[_k - 1] * 10.0

cdef int64_t POW10I[10]
POW10I[0] = 1
for _k in range(1, 10):
    POW10I[_k] = POW10I[_k - 1] * 10


cdef int _num(Ctx* c, Val* v, double* out) except -1:
    """float64 of a price or size (a JSON number or a quoted one), correctly rounded.

    The text must match JSON's number grammar (RFC 8259) without the minus
    sign no price or size may have: ``(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?[0-9]+)?``;
    the value equals ``float(text)``, and one that is not finite is malformed.
    """
    cdef Py_ssize_t i = v.s, e = v.e, start, first
    cdef const unsigned char* p = c.p
    cdef uint64_t m = 0
    cdef int dexp = 0, big = 0, x, esgn
    cdef Py_ssize_t nd
    cdef double r
    if v.kind != J_STR and v.kind != J_NUM:
        return _raise_at(c, v.s, "expected a number")
    if v.esc:
        return _num_esc(c, v, out)
    if i < e and p[i] == 45:
        return _raise_at(c, v.s, "negative price or size")
    start = first = i
    # digits accumulate into m, which wraps past 19 significant digits: those
    # (counted below, only for long texts) take the slow path
    while i < e and _digit(p[i]):
        m = m * 10 + (p[i] - 48)
        i += 1
    if i == start or (p[start] == 48 and i - start > 1):
        return _raise_at(c, v.s, "expected a number")  # no digits, or a leading zero
    nd = i - start
    if i < e and p[i] == 46:
        i += 1
        start = i
        while i < e and _digit(p[i]):
            m = m * 10 + (p[i] - 48)
            i += 1
        if i == start:
            return _raise_at(c, v.s, "expected a number")
        dexp = <int>(start - i)
        nd += i - start
    if nd > 19:
        # leading zeros ("0.000...") are not significant
        while first < i and (p[first] == 48 or p[first] == 46):
            nd -= p[first] == 48
            first += 1
        big = nd > 19
    if i < e and (p[i] == 101 or p[i] == 69):
        i += 1
        esgn = 1
        if i < e and (p[i] == 43 or p[i] == 45):
            if p[i] == 45:
                esgn = -1
            i += 1
        start = i
        x = 0
        while i < e and _digit(p[i]):
            if x < 100000:
                x = x * 10 + (p[i] - 48)
            i += 1
        if i == start:
            return _raise_at(c, v.s, "expected a number")
        dexp += esgn * x
        big = big or x >= 100000
    if i != e:
        return _raise_at(c, v.s, "expected a number")
    if m == 0 and not big:
        out[0] = 0.0
        return 0
    if not big and m <= 9007199254740992ULL and -22 <= dexp <= 22:
        # both operands exact: one IEEE operation rounds correctly (Clinger)
        if dexp >= 0:
            r = <double>m * POW10[dexp]
        else:
            r = <double>m / POW10[-dexp]
    else:
        # correctly rounded; the text already matched the grammar above
        r = float(PyBytes_FromStringAndSize(<const char*>p + v.s, v.e - v.s))
    if not isfinite(r):
        return _raise_at(c, v.s, "number out of range")
    out[0] = r
    return 0


cdef int _num_esc(Ctx* c, Val* v, double* out) except -1:
    """_num of a quoted number written with escapes (kept out of the hot path)."""
    cdef Ctx tmp
    cdef Val tv
    cdef unsigned char buf[ESC_CAP]
    _unescaped(c, v, &tmp, &tv, buf)
    return _num(&tmp, &tv, out)


cdef int _int(Ctx* c, Val* v, int64_t* out) except -1:
    """int64 of a JSON integer or a quoted one (JSON's grammar: no leading zero)."""
    cdef Py_ssize_t i = v.s, e = v.e
    cdef uint64_t m = 0
    cdef int neg = 0
    if v.kind != J_STR and v.kind != J_NUM:
        return _raise_at(c, v.s, "expected an integer")
    if v.esc:
        return _int_esc(c, v, out)
    if i < e and c.p[i] == 45:
        neg = 1
        i += 1
    if i >= e or e - i > 19 or (c.p[i] == 48 and e - i > 1):
        return _raise_at(c, v.s, "expected an integer")
    while i < e:
        if not _digit(c.p[i]):
            return _raise_at(c, v.s, "expected an integer")
        m = m * 10 + (c.p[i] - 48)
        i += 1
    if m > 9223372036854775807ULL:
        return _raise_at(c, v.s, "integer out of range")
    out[0] = -<int64_t>m if neg else <int64_t>m
    return 0


cdef int _int_esc(Ctx* c, Val* v, int64_t* out) except -1:
    cdef Ctx tmp
    cdef Val tv
    cdef unsigned char buf[ESC_CAP]
    _unescaped(c, v, &tmp, &tv, buf)
    return _int(&tmp, &tv, out)


cdef int _time_esc(Ctx* c, Val* v, int64_t* out) except -1:
    cdef Ctx tmp
    cdef Val tv
    cdef unsigned char buf[ESC_CAP]
    if v.kind != J_STR:
        return _raise_at(c, v.s, "expected an RFC3339 time")
    _unescaped(c, v, &tmp, &tv, buf)
    return _time_plain(&tmp, &tv, out)


cdef inline int _d2(const unsigned char* q, int* out) noexcept:
    if not (_digit(q[0]) and _digit(q[1])):
        return -1
    out[0] = (q[0] - 48) * 10 + (q[1] - 48)
    return 0


cdef int64_t _days_from_civil(int64_t y, int64_t m, int64_t d) noexcept:
    y -= m <= 2
    cdef int64_t era = (y if y >= 0 else y - 399) // 400
    cdef int64_t yoe = y - era * 400
    cdef int64_t mp = m - 3 if m > 2 else m + 9
    cdef int64_t doy = (153 * mp + 2) // 5 + d - 1
    cdef int64_t doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


cdef int _mdays(int y, int m) noexcept:
    if m == 2:
        return 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28
    if m == 4 or m == 6 or m == 9 or m == 11:
        return 30
    return 31


cdef inline int _time(Ctx* c, Val* v, int64_t* out) except -1:
    """RFC3339 text (``2023-09-25T07:48:36.925533Z``) -> int64 ns since the epoch."""
    if v.esc:
        return _time_esc(c, v, out)
    return _time_plain(c, v, out)


cdef int _time_plain(Ctx* c, Val* v, int64_t* out) except -1:
    """_time of a value without escapes."""
    cdef const unsigned char* q = c.p + v.s
    cdef Py_ssize_t L = v.e - v.s, k
    cdef int y, mo, d, h, mi, s, a, b, oh, om, sign
    cdef int64_t frac = 0
    cdef int nfrac = 0
    if v.kind != J_STR or v.esc or L < 20:
        return _raise_at(c, v.s, "expected an RFC3339 time")
    if _d2(q, &a) or _d2(q + 2, &b) or q[4] != 45 or _d2(q + 5, &mo) or q[7] != 45 \
            or _d2(q + 8, &d) or not (q[10] == 84 or q[10] == 116 or q[10] == 32) \
            or _d2(q + 11, &h) or q[13] != 58 or _d2(q + 14, &mi) or q[16] != 58 \
            or _d2(q + 17, &s):
        return _raise_at(c, v.s, "expected an RFC3339 time")
    y = a * 100 + b
    if y < 1900 or y > 2200 or mo < 1 or mo > 12 or d < 1 or d > _mdays(y, mo) or h > 23 \
            or mi > 59 or s > 60:
        return _raise_at(c, v.s, "RFC3339 time out of range")
    k = 19
    if k < L and q[k] == 46:
        k += 1
        if k >= L or not _digit(q[k]):
            return _raise_at(c, v.s, "expected an RFC3339 time")
        while k < L and _digit(q[k]):
            if nfrac < 9:
                frac = frac * 10 + (q[k] - 48)
                nfrac += 1
            k += 1
        frac *= POW10I[9 - nfrac]
    sign = 0
    oh = 0
    om = 0
    if k < L and (q[k] == 90 or q[k] == 122):
        k += 1
    elif k + 6 == L and (q[k] == 43 or q[k] == 45) and q[k + 3] == 58 \
            and not _d2(q + k + 1, &oh) and not _d2(q + k + 4, &om) and oh < 24 and om < 60:
        sign = 1 if q[k] == 43 else -1
        k += 6
    else:
        return _raise_at(c, v.s, "expected an RFC3339 time zone")
    if k != L:
        return _raise_at(c, v.s, "expected an RFC3339 time")
    out[0] = ((_days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s
               - sign * (oh * 3600 + om * 60)) * 1000000000 + frac)
    return 0


cdef inline int64_t _now_ns() noexcept:
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec


# ---------------------------------------------------------------------------
# key sets
# ---------------------------------------------------------------------------

_KEEP = []


cdef void _keys(Keys* ks, tuple names):
    cdef int j, ch
    ks.n = len(names)
    assert ks.n <= MAX_KEYS
    for j in range(256):
        ks.first[j] = -1
    for j in range(ks.n - 1, -1, -1):
        b = names[j].encode()
        _KEEP.append(b)
        ks.name[j] = PyBytes_AS_STRING(b)
        ks.len[j] = len(b)
        ch = b[0]
        ks.next[j] = ks.first[ch]
        ks.first[ch] = j


# Binance top level (the order fixes the indices below)
cdef Keys BN
_keys(&BN, ("e", "E", "s", "u", "U", "b", "B", "a", "A", "p", "q", "t", "T", "m",
            "bids", "asks", "lastUpdateId", "stream", "data", "result", "id", "error", "code",
            "msg"))
cdef enum:
    BN_e, BN_E, BN_s, BN_u, BN_U, BN_b, BN_B, BN_a, BN_A, BN_p, BN_q, BN_t, BN_T, BN_m
    BN_bids, BN_asks, BN_lastUpdateId, BN_stream, BN_data, BN_result, BN_id, BN_error
    BN_code, BN_msg

cdef Keys KR
_keys(&KR, ("channel", "type", "data", "method", "success", "result", "error", "symbol"))
cdef enum:
    KR_channel, KR_type, KR_data, KR_method, KR_success, KR_result, KR_error, KR_symbol

cdef Keys KRI
_keys(&KRI, ("symbol", "bids", "asks", "checksum", "timestamp", "bid", "bid_qty", "ask",
             "ask_qty", "side", "price", "qty", "trade_id", "channel"))
cdef enum:
    KRI_symbol, KRI_bids, KRI_asks, KRI_checksum, KRI_timestamp, KRI_bid, KRI_bid_qty
    KRI_ask, KRI_ask_qty, KRI_side, KRI_price, KRI_qty, KRI_trade_id, KRI_channel

cdef Keys KRL
_keys(&KRL, ("price", "qty"))

cdef Keys CGS
_keys(&CGS, ("error_code", "error_message"))

cdef Keys CB
_keys(&CB, ("channel", "timestamp", "sequence_num", "events", "type", "message"))
cdef enum:
    CB_channel, CB_timestamp, CB_sequence_num, CB_events, CB_type, CB_message

cdef Keys CBE
_keys(&CBE, ("type", "product_id", "updates", "tickers", "trades", "side", "event_time",
             "price_level", "new_quantity", "best_bid", "best_bid_quantity", "best_ask",
             "best_ask_quantity", "price", "size", "trade_id", "time"))
cdef enum:
    CBE_type, CBE_product_id, CBE_updates, CBE_tickers, CBE_trades, CBE_side, CBE_event_time
    CBE_price_level, CBE_new_quantity, CBE_best_bid, CBE_best_bid_quantity, CBE_best_ask
    CBE_best_ask_quantity, CBE_price, CBE_size, CBE_trade_id, CBE_time


cdef str S_BOOKTICKER = "bookTicker"
cdef str S_TRADE = "trade"
cdef str S_AGGTRADE = "aggTrade"
cdef str S_DEPTHUPDATE = "depthUpdate"
cdef str S_DEPTH = "depth"
cdef str S_BOOK = "book"
cdef str S_TICKER = "ticker"
cdef str S_HEARTBEAT = "heartbeat"
cdef str S_STATUS = "status"
cdef str S_L2 = "l2_data"
cdef str S_MARKET_TRADES = "market_trades"
cdef str S_HEARTBEATS = "heartbeats"
cdef str S_SUBSCRIPTIONS = "subscriptions"
cdef str S_SIMPLE_PRICE = "simple_price"


cdef class Normalizer:
    """Parser of one exchange's messages into tick records.

    Turns one exchange's raw messages into ``TICK_DTYPE`` records; see
    :mod:`hftsig.normalize` for the messages understood.

    Parameters
    ----------
    exchange : {"binance", "kraken", "coinbase", "coingecko"}
    symbols : dict, optional
        Extra ``{exchange symbol: canonical}`` pairs (e.g. from
        :func:`hftsig.symbols.parse_binance_exchange_info`), looked up before
        the default tables.
    time_unit : {"auto", "ms", "us"}
        Binance timestamp unit; ``"auto"`` takes values >= 1e14 as µs.
    chunk_size : int
        Records per preallocated output chunk.

    Notes
    -----
    :meth:`parse` returns a view into the current chunk; chunks are never
    reused, so a batch stays valid while referenced (keeping one tick alive
    keeps its whole chunk, ``chunk_size * 104`` bytes, alive; ``.copy()``
    what you store for long).  A Normalizer keeps per-connection state and is
    not thread-safe: use one per connection.

    After each :meth:`parse` (also one that raised) the message is described
    by ``last_type``, ``last_channel``, ``last_seq``, ``last_seq_first``,
    ``last_checksum``, ``last_symbol``, ``last_error`` and ``last_skipped``
    (entries of an accepted message left out: Kraken ``instrument`` pairs
    without a canonical name or with bad precisions); ``skipped`` is their
    total since construction.

    Examples
    --------
    >>> n = Normalizer("coinbase")
    >>> msg = ('{"channel":"l2_data","timestamp":"2023-02-09T20:32:50.714964855Z",'
    ...        '"sequence_num":7,"events":[{"type":"update","product_id":"BTC-USD",'
    ...        '"updates":[{"side":"offer","event_time":"2023-02-09T20:32:50.714964855Z",'
    ...        '"price_level":"21921.74","new_quantity":"0"}]}]}')
    >>> t = n.parse(msg, ts_recv=0)
    >>> int(t["side"][0]), float(t["price"][0]), float(t["size"][0]), n.last_seq
    (-1, 21921.74, 0.0, 7)
    """
    cdef readonly str exchange
    cdef int _exch
    cdef int _time_unit          # 0 auto, 1 ms, 2 us (Binance)
    cdef Py_ssize_t _chunk_size
    cdef object _chunk
    cdef object _descr
    cdef Tick* _buf
    cdef Py_ssize_t _cap, _pos, _start
    cdef Tick _tmpl
    cdef dict _symcache
    cdef dict _cg_cache
    cdef dict _symbols
    cdef char _craw[8][32]
    cdef int _crawlen[8]
    cdef char _ccan[8][16]
    cdef int _cn, _cnext
    cdef object _empty
    # description of the last message
    cdef int _ltype
    cdef object _lchan
    cdef int64_t _lseq, _lseq_first
    cdef uint32_t _lcks
    cdef int _has_cks
    cdef char _lsym[16]
    cdef public object last_error
    cdef public dict precisions
    cdef readonly Py_ssize_t last_skipped
    cdef readonly Py_ssize_t skipped

    def __init__(self, exchange, *, symbols=None, time_unit="auto", chunk_size=4096):
        name = str(exchange).lower()
        codes = {"binance": EX_BINANCE, "kraken": EX_KRAKEN, "coinbase": EX_COINBASE,
                 "coingecko": EX_COINGECKO}
        if name not in codes:
            raise ValueError(f"exchange must be one of {sorted(codes)}, got {exchange!r}")
        if time_unit not in ("auto", "ms", "us"):
            raise ValueError(f"time_unit must be 'auto', 'ms' or 'us', got {time_unit!r}")
        chunk_size = int(chunk_size)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.exchange = name
        self._exch = codes[name]
        self._time_unit = {"auto": 0, "ms": 1, "us": 2}[time_unit]
        self._chunk_size = chunk_size
        self._descr = _ticks.TICK_DTYPE
        self._symbols = {}
        if symbols is not None:
            for raw, canon in dict(symbols).items():
                self._symbols[str(raw)] = _symbols.canonical(canon)
        self._symcache = {}
        self._cg_cache = {}
        self._cn = 0
        self._cnext = 0
        memset(&self._tmpl, 0, sizeof(Tick))
        self._tmpl.exchange = <uint8_t>self._exch
        self._tmpl.bid_px = NAN
        self._tmpl.bid_sz = NAN
        self._tmpl.ask_px = NAN
        self._tmpl.ask_sz = NAN
        self._tmpl.price = NAN
        self._tmpl.size = NAN
        self._tmpl.seq = -1
        self._tmpl.seq_first = -1
        self._empty = np.empty(0, dtype=_ticks.TICK_DTYPE)
        self._empty.flags.writeable = False
        self._chunk = None
        self._buf = NULL
        self._cap = 0
        self._pos = 0
        self._start = 0
        self.precisions = {}
        self.skipped = 0
        self._reset_last()

    # -- message description -------------------------------------------------
    @property
    def last_type(self):
        """Kind of the last message: ``"data"``, ``"heartbeat"``, ``"subscribed"``,
        ``"unsubscribed"``, ``"status"``, ``"error"``, ``"shutdown"`` or ``"unknown"``."""
        return _TYPE_NAMES[self._ltype]

    @property
    def last_channel(self):
        """Channel/event name of the last message (``"bookTicker"``, ``"book"``,
        ``"l2_data"``...), None if it has none."""
        return self._lchan

    @property
    def last_seq(self):
        """Sequence number of the last message (Binance ``u``, Coinbase
        ``sequence_num``, Binance snapshot ``lastUpdateId``), -1 if none."""
        return self._lseq

    @property
    def last_seq_first(self):
        """First sequence number covered (Binance ``U``), -1 if none."""
        return self._lseq_first

    @property
    def last_checksum(self):
        """Kraken book checksum of the last message (of its last symbol), None if none."""
        return self._lcks if self._has_cks else None

    @property
    def last_symbol(self):
        """Canonical symbol of the last message (its last symbol), None if none."""
        if self._lsym[0] == 0:
            return None
        return PyBytes_FromStringAndSize(self._lsym, strlen_16(self._lsym)).decode("ascii")

    cdef inline void _reset_last(self) noexcept:
        self._ltype = T_DATA
        self._lchan = None
        self._lseq = -1
        self._lseq_first = -1
        self._lcks = 0
        self._has_cks = 0
        self._lsym[0] = 0
        self.last_error = None
        self.last_skipped = 0

    # -- output buffer ---------------------------------------------------------
    cdef int _grow(self) except -1:
        cdef Py_ssize_t used = self._pos - self._start
        cdef Py_ssize_t cap = max(self._chunk_size, 2 * used + 64)
        arr = np.empty(cap, dtype=_ticks.TICK_DTYPE)
        cdef Tick* ptr = <Tick*>cnp.PyArray_DATA(arr)
        if used:
            memcpy(ptr, &self._buf[self._start], used * sizeof(Tick))
        self._chunk = arr
        self._buf = ptr
        self._cap = cap
        self._start = 0
        self._pos = used
        return 0

    cdef inline Tick* _rec(self) except NULL:
        if self._pos >= self._cap:
            self._grow()
        cdef Tick* t = &self._buf[self._pos]
        t[0] = self._tmpl
        self._pos += 1
        return t

    cdef object _finish(self):
        cdef cnp.npy_intp n = self._pos - self._start
        if n == 0:
            return self._empty
        out = PyArray_NewFromDescr(<void*>_NDARRAY, <void*>self._descr, 1, &n, NULL,
                                   <void*>&self._buf[self._start], cnp.NPY_ARRAY_CARRAY, NULL)
        # PyArray_NewFromDescr stole a reference to the descriptor
        _incref(self._descr)
        cnp.set_array_base(out, self._chunk)
        self._start = self._pos
        return out

    cdef void _mark_runs(self, Py_ssize_t a) noexcept:
        """FLAG_LAST on the last record of each run of one symbol in records [a, pos)."""
        cdef Py_ssize_t j
        for j in range(a, self._pos):
            if j + 1 == self._pos or memcmp(self._buf[j].symbol, self._buf[j + 1].symbol, 16):
                self._buf[j].flags |= FLAG_LAST

    # -- symbols ---------------------------------------------------------------
    cdef int _sym(self, Ctx* c, Val* v, char* out) except -1:
        cdef Py_ssize_t L = v.e - v.s
        cdef int k
        cdef const unsigned char* q = c.p + v.s
        if v.kind == J_STR and v.esc:
            return self._sym_esc(c, v, out)
        if v.kind != J_STR or L < 1 or L > 31:
            return _raise_at(c, v.s, "bad symbol")
        for k in range(self._cn):
            if self._crawlen[k] == L and memcmp(self._craw[k], q, L) == 0:
                memcpy(out, self._ccan[k], 16)
                return 0
        raw = PyBytes_FromStringAndSize(<const char*>q, L)
        can = self._resolve(raw)
        k = self._cnext
        self._cnext = (k + 1) % 8
        if self._cn < 8:
            self._cn += 1
        memcpy(self._craw[k], q, L)
        self._crawlen[k] = <int>L
        memcpy(self._ccan[k], PyBytes_AS_STRING(can), 16)
        memcpy(out, self._ccan[k], 16)
        return 0

    cdef int _sym_esc(self, Ctx* c, Val* v, char* out) except -1:
        """_sym of a symbol written with escapes: "NKN\\u0055SDT" is NKNUSDT."""
        cdef Ctx tmp
        cdef Val tv
        cdef unsigned char buf[ESC_CAP]
        _unescaped(c, v, &tmp, &tv, buf)
        return self._sym(&tmp, &tv, out)

    cdef bytes _resolve(self, bytes raw):
        hit = self._symcache.get(raw)
        if hit is not None:
            return hit
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise MalformedMessage(f"symbol {raw!r} is not ASCII") from None
        canon = self._symbols.get(text)
        if canon is None:
            try:
                canon = _symbols.to_canonical(self.exchange, text)
            except ValueError as exc:
                raise MalformedMessage(str(exc)) from None
        out = canon.encode("ascii").ljust(16, b"\0")
        if len(self._symcache) > 4096:
            self._symcache.clear()
        self._symcache[raw] = out
        return out

    cdef int _sym_text(self, str text, char* out) except -1:
        can = self._resolve(text.encode("utf-8"))
        memcpy(out, PyBytes_AS_STRING(can), 16)
        return 0

    # -- entry point -------------------------------------------------------------
    def parse(self, message, ts_recv=None, symbol=None):
        """Parse one frame or body.

        Parameters
        ----------
        message : bytes, str or bytes-like
            One websocket frame or REST body.
        ts_recv : int, optional
            Receive time in ns since the epoch; now when omitted.
        symbol : str, optional
            Market of a message that names none (a Binance REST depth
            snapshot), exchange or canonical spelling.

        Returns
        -------
        numpy.ndarray
            ``TICK_DTYPE`` records, possibly empty.

        Raises
        ------
        MalformedMessage
            For malformed input (see :mod:`hftsig.normalize`: JSON's number
            grammar, no negative price or size, no key read twice...);
            nothing is emitted and no state changes.
        TypeError
            ``message`` is None or not bytes-like/str.
        ValueError
            ``ts_recv`` is outside 0..2**63-1.
        """
        cdef Ctx c
        cdef int64_t tr
        cdef int overflow = 0
        cdef const unsigned char[::1] mv
        if message is None:
            raise TypeError("message must be bytes, str or a contiguous byte buffer, got None")
        if ts_recv is None:
            tr = _now_ns()
        else:
            tr = PyLong_AsLongLongAndOverflow(ts_recv, &overflow)
            if overflow or tr < 0:
                raise ValueError(
                    f"ts_recv must be ns since the epoch in 0..2**63-1, got {ts_recv!r}")
        if PyBytes_Check(message):
            c.p = <const unsigned char*>PyBytes_AS_STRING(message)
            c.n = PyBytes_GET_SIZE(message)
        elif PyUnicode_Check(message):
            try:
                c.p = <const unsigned char*>PyUnicode_AsUTF8AndSize(message, &c.n)
            except UnicodeEncodeError:
                raise MalformedMessage("message is not valid Unicode") from None
        else:
            try:
                mv = message
            except (TypeError, ValueError, BufferError):
                raise TypeError(
                    f"message must be bytes, str or a contiguous byte buffer, got "
                    f"{type(message).__name__}") from None
            c.n = mv.shape[0]
            if c.n == 0:
                c.p = <const unsigned char*>b""
            else:
                c.p = &mv[0]
        c.err = NULL
        c.errpos = 0
        c.ss = -1
        self._reset_last()
        self._pos = self._start
        try:
            if self._exch == EX_BINANCE:
                self._binance(&c, 0, tr, symbol, 0)
            elif self._exch == EX_KRAKEN:
                self._kraken(&c, tr)
            elif self._exch == EX_COINBASE:
                self._coinbase(&c, tr)
            else:
                self._coingecko(&c, tr)
        except BaseException:
            self._pos = self._start
            raise
        return self._finish()

    cdef int _bad(self, Ctx* c) except -1:
        """Raise for an error the scanner recorded."""
        if c.err == NULL:
            c.err = "malformed message"
        raise MalformedMessage(f"{c.err.decode()} at byte {c.errpos}")

    cdef int _whole(self, Ctx* c, Py_ssize_t i) except -1:
        """Check that only whitespace follows a top-level value ending at i."""
        if i < 0:
            self._bad(c)
        i = _ws(c, i)
        if i != c.n:
            _fail(c, i, "data after the message")
            self._bad(c)
        return 0

    cdef int _validate_any(self, Ctx* c) except -1:
        """Validate a top-level value that is not an object (-> unknown)."""
        cdef Val v
        if _ws(c, 0) >= c.n:
            _fail(c, 0, "empty message")
            self._bad(c)
        self._whole(c, _value(c, 0, &v, 0))
        self._ltype = T_UNKNOWN
        return 0

    cdef int _bn_time(self, Ctx* c, Val* v, int64_t* out) except -1:
        """ns since the epoch of a Binance ms/us time; malformed unless 0 <= ns < 2**63."""
        cdef int64_t t
        _int(c, v, &t)
        if self._time_unit == 2 or (self._time_unit == 0 and t >= 100000000000000):
            if t < 0 or t > 9223372036854775:
                return _raise_at(c, v.s, "time out of range")
            out[0] = t * 1000
        else:
            if t < 0 or t > 9223372036854:
                return _raise_at(c, v.s, "time out of range")
            out[0] = t * 1000000
        return 0

    # -- Binance -------------------------------------------------------------------
    cdef Py_ssize_t _binance(self, Ctx* c, Py_ssize_t i, int64_t tr, object hint,
                             int depth) except -1:
        """Parse the Binance object at i (one pass where key order allows); return its end."""
        cdef Val f[MAX_KEYS]
        cdef Val k, v
        cdef It it
        cdef Py_ssize_t end, vs
        cdef int kid, r, j
        cdef bint inner = False, bdone = False, adone = False
        cdef Py_ssize_t first = self._pos - self._start
        i = _ws(c, i)
        if depth == 0 and (i >= c.n or c.p[i] != 123):
            self._validate_any(c)
            return c.n
        for j in range(BN.n):
            f[j].kind = J_NONE
        if _obj_open(c, &it, i, depth) < 0:
            self._bad(c)
        while True:
            r = _obj_key(c, &it, &k)
            if r == 0:
                break
            if r < 0:
                self._bad(c)
            kid = _key_id(c, &k, &BN)
            if kid >= 0 and f[kid].kind != J_NONE:
                # a field given twice: which one the venue meant is unknowable
                _fail(c, k.s, "duplicate key")
                self._bad(c)
            vs = _ws(c, it.i)
            if kid == BN_data and depth == 0 and not inner and f[BN_stream].kind == J_STR \
                    and vs < c.n and c.p[vs] == 123:
                # combined-stream wrapper, "stream" seen first: parse the payload in place
                c.ss = f[BN_stream].s
                c.se = f[BN_stream].e
                end = self._binance(c, vs, tr, hint, 1)
                inner = True
                _span(&f[kid], vs, end, J_OBJ)
            elif (kid == BN_b or kid == BN_a) and vs < c.n and c.p[vs] == 91 \
                    and _eq(c, &f[BN_e], "depthUpdate", 11):
                end = self._bn_levels_at(c, vs, 1 if kid == BN_b else -1, it.depth)
                if kid == BN_b:
                    bdone = True
                else:
                    adone = True
                _span(&f[kid], vs, end, J_ARR)
            else:
                end = _value(c, it.i, &v, it.depth)
                if end < 0:
                    self._bad(c)
                if kid >= 0:
                    f[kid] = v
            _obj_done(&it, end)
        end = it.i
        if depth == 0:
            self._whole(c, end)
        if inner:
            return end
        if f[BN_e].kind == J_STR:
            if _eq(c, &f[BN_e], "trade", 5) or _eq(c, &f[BN_e], "aggTrade", 8):
                self._bn_trade(c, f, tr)
            elif _eq(c, &f[BN_e], "depthUpdate", 11):
                self._bn_depth(c, f, tr, first, bdone, adone)
            elif _eq(c, &f[BN_e], "bookTicker", 10):
                self._bn_quote(c, f, tr)
            elif _eq(c, &f[BN_e], "serverShutdown", 14):
                self._ltype = T_SHUTDOWN
                self._lchan = "serverShutdown"
            else:
                self._ltype = T_UNKNOWN
                self._lchan = self._text(c, &f[BN_e])
            return end
        if f[BN_s].kind and (f[BN_u].kind or f[BN_b].kind or f[BN_B].kind or f[BN_a].kind
                             or f[BN_A].kind):
            # a bookTicker (the only stream without "e"): every field is required
            self._bn_quote(c, f, tr)
        elif depth == 0 and f[BN_stream].kind == J_STR and f[BN_data].kind == J_OBJ:
            c.ss = f[BN_stream].s
            c.se = f[BN_stream].e
            self._binance(c, f[BN_data].s, tr, hint, 1)
        elif f[BN_lastUpdateId].kind and f[BN_bids].kind == J_ARR and f[BN_asks].kind == J_ARR:
            self._bn_snapshot(c, f, tr, hint)
        elif f[BN_id].kind and f[BN_result].kind:
            self._ltype = T_SUBSCRIBED if f[BN_result].kind == J_NULL else T_UNKNOWN
        elif f[BN_error].kind or (f[BN_code].kind and f[BN_msg].kind):
            self._ltype = T_ERROR
            self.last_error = PyBytes_FromStringAndSize(<const char*>c.p + i, end - i).decode(
                "utf-8", "replace")
        else:
            self._ltype = T_UNKNOWN
        return end

    cdef int _bn_quote(self, Ctx* c, Val* f, int64_t tr) except -1:
        cdef Tick* t
        if not (f[BN_u].kind and f[BN_s].kind and f[BN_b].kind and f[BN_B].kind and f[BN_a].kind
                and f[BN_A].kind):
            _fail(c, 0, "bookTicker lacks u/s/b/B/a/A")
            self._bad(c)
        self._lchan = S_BOOKTICKER
        t = self._rec()
        t.kind = KIND_QUOTE
        t.ts_recv = tr
        t.ts_event = tr
        if f[BN_E].kind:
            self._bn_time(c, &f[BN_E], &t.ts_event)
        self._sym(c, &f[BN_s], t.symbol)
        _num(c, &f[BN_b], &t.bid_px)
        _num(c, &f[BN_B], &t.bid_sz)
        _num(c, &f[BN_a], &t.ask_px)
        _num(c, &f[BN_A], &t.ask_sz)
        _int(c, &f[BN_u], &t.seq)
        t.seq_first = t.seq
        t.flags = FLAG_LAST
        self._lseq = t.seq
        self._lseq_first = t.seq
        memcpy(self._lsym, t.symbol, 16)
        return 0

    cdef int _bn_trade(self, Ctx* c, Val* f, int64_t tr) except -1:
        cdef Tick* t
        cdef Val* idv
        cdef bint agg = _eq(c, &f[BN_e], "aggTrade", 8)
        idv = &f[BN_a] if agg else &f[BN_t]
        if not (f[BN_s].kind and f[BN_p].kind and f[BN_q].kind and idv.kind
                and (f[BN_T].kind or f[BN_E].kind)):
            _fail(c, 0, "trade lacks s/p/q/id/T")
            self._bad(c)
        if f[BN_m].kind != J_TRUE and f[BN_m].kind != J_FALSE:
            _fail(c, f[BN_m].s, "trade field m must be true or false")
            self._bad(c)
        self._lchan = S_AGGTRADE if agg else S_TRADE
        t = self._rec()
        t.kind = KIND_TRADE
        t.ts_recv = tr
        self._bn_time(c, &f[BN_T] if f[BN_T].kind else &f[BN_E], &t.ts_event)
        self._sym(c, &f[BN_s], t.symbol)
        _num(c, &f[BN_p], &t.price)
        _num(c, &f[BN_q], &t.size)
        _int(c, idv, &t.seq)
        t.seq_first = t.seq
        # m: the buyer was the maker, so the taker sold
        t.side = -1 if f[BN_m].kind == J_TRUE else 1
        t.flags = FLAG_LAST
        self._lseq = t.seq
        self._lseq_first = t.seq
        memcpy(self._lsym, t.symbol, 16)
        return 0

    cdef Py_ssize_t _bn_levels_at(self, Ctx* c, Py_ssize_t pos, int8_t side,
                                  int depth) except -1:
        """Emit one record per [price, qty] of the array at pos (price/size/side only)."""
        cdef It ia, il
        cdef Val pv, qv, rest
        cdef int r
        cdef Tick* t
        _arr_at(&ia, pos, depth)
        while True:
            r = _arr_elem(c, &ia)
            if r == 0:
                return ia.i
            if r < 0:
                self._bad(c)
            if c.p[ia.i] != 91:
                _fail(c, ia.i, "book level must be [price, quantity]")
                self._bad(c)
            _arr_at(&il, ia.i, ia.depth)
            if _arr_next(c, &il, &pv) != 1 or _arr_next(c, &il, &qv) != 1:
                _fail(c, ia.i, "book level must be [price, quantity]")
                self._bad(c)
            while True:
                r = _arr_next(c, &il, &rest)
                if r == 0:
                    break
                if r < 0:
                    self._bad(c)
            t = self._rec()
            t.side = side
            _num(c, &pv, &t.price)
            _num(c, &qv, &t.size)
            _obj_done(&ia, il.i)

    cdef int _bn_depth(self, Ctx* c, Val* f, int64_t tr, Py_ssize_t first, bint bdone,
                       bint adone) except -1:
        cdef int64_t x, u, U
        cdef char sym[16]
        cdef Py_ssize_t j
        cdef Tick* t
        if not (f[BN_s].kind and f[BN_E].kind and f[BN_u].kind and f[BN_U].kind
                and f[BN_b].kind == J_ARR and f[BN_a].kind == J_ARR):
            _fail(c, 0, "depthUpdate lacks s/E/U/u/b/a")
            self._bad(c)
        self._lchan = S_DEPTHUPDATE
        self._bn_time(c, &f[BN_E], &x)
        _int(c, &f[BN_u], &u)
        _int(c, &f[BN_U], &U)
        self._sym(c, &f[BN_s], sym)
        if not bdone:
            self._bn_levels_at(c, f[BN_b].s, 1, 1)
        if not adone:
            self._bn_levels_at(c, f[BN_a].s, -1, 1)
        for j in range(self._start + first, self._pos):
            t = &self._buf[j]
            t.kind = KIND_BOOK_DELTA
            t.ts_event = x
            t.ts_recv = tr
            memcpy(t.symbol, sym, 16)
            t.seq = u
            t.seq_first = U
        if self._pos > self._start + first:
            self._buf[self._pos - 1].flags |= FLAG_LAST
        self._lseq = u
        self._lseq_first = U
        memcpy(self._lsym, sym, 16)
        return 0

    cdef int _bn_snapshot(self, Ctx* c, Val* f, int64_t tr, object hint) except -1:
        cdef int64_t u
        cdef char sym[16]
        cdef Py_ssize_t first = self._pos - self._start, j
        cdef Tick* t
        if c.ss >= 0:  # a combined stream name: "bnbbtc@depth5"
            hint = PyBytes_FromStringAndSize(<const char*>c.p + c.ss, c.se - c.ss)
            hint = hint.split(b"@")[0].decode("ascii", "replace").upper()
        elif hint is None:
            _fail(c, 0, "depth snapshot carries no symbol: pass symbol=")
            self._bad(c)
        else:
            hint = str(hint)
            if "-" in hint:
                hint = _symbols.from_canonical("binance", hint)
        self._sym_text(hint, sym)
        _int(c, &f[BN_lastUpdateId], &u)
        self._lchan = S_DEPTH
        self._bn_levels_at(c, f[BN_bids].s, 1, 1)
        self._bn_levels_at(c, f[BN_asks].s, -1, 1)
        for j in range(self._start + first, self._pos):
            t = &self._buf[j]
            t.kind = KIND_BOOK_SNAPSHOT
            t.ts_event = tr
            t.ts_recv = tr
            memcpy(t.symbol, sym, 16)
            t.seq = u
            t.seq_first = u
        if self._pos > self._start + first:
            self._buf[self._start + first].flags |= FLAG_SNAPSHOT_BEGIN
            self._buf[self._pos - 1].flags |= FLAG_LAST
        self._lseq = u
        self._lseq_first = u
        memcpy(self._lsym, sym, 16)
        return 0

    # -- Kraken WebSocket v2 -----------------------------------------------------------
    cdef int _kr_kind(self, Ctx* c, Val* f, int* snapshot) except -1:
        """1 book, 2 ticker, 3 trade (0 otherwise) from the channel/type seen so far."""
        if f[KR_type].kind != J_STR:
            return 0
        if _eq(c, &f[KR_type], "snapshot", 8):
            snapshot[0] = 1
        elif _eq(c, &f[KR_type], "update", 6):
            snapshot[0] = 0
        else:
            return 0
        if _eq(c, &f[KR_channel], "book", 4):
            return 1
        if _eq(c, &f[KR_channel], "ticker", 6):
            return 2
        if _eq(c, &f[KR_channel], "trade", 5):
            return 3
        return 0

    cdef int _kraken(self, Ctx* c, int64_t tr) except -1:
        cdef Val f[MAX_KEYS]
        cdef Val g[MAX_KEYS]
        cdef Val k, v
        cdef It it
        cdef Py_ssize_t i = _ws(c, 0), end, vs
        cdef int r, kid, kind = 0, j, snapshot = 0
        cdef bint data_done = False
        if i >= c.n or c.p[i] != 123:
            return self._validate_any(c)
        for j in range(KR.n):
            f[j].kind = J_NONE
        if _obj_open(c, &it, i, 0) < 0:
            self._bad(c)
        while True:
            r = _obj_key(c, &it, &k)
            if r == 0:
                break
            if r < 0:
                self._bad(c)
            kid = _key_id(c, &k, &KR)
            if kid >= 0 and f[kid].kind != J_NONE:
                # a field given twice: which one the venue meant is unknowable
                _fail(c, k.s, "duplicate key")
                self._bad(c)
            vs = _ws(c, it.i)
            if kid == KR_data and not data_done and vs < c.n and c.p[vs] == 91:
                kind = self._kr_kind(c, f, &snapshot)
                if kind:
                    # channel and type came first (as Kraken sends them): one pass
                    end = self._kr_data(c, vs, kind, snapshot, tr, it.depth)
                    data_done = True
                    _span(&f[kid], vs, end, J_ARR)
                    _obj_done(&it, end)
                    continue
            end = _value(c, it.i, &v, it.depth)
            if end < 0:
                self._bad(c)
            if kid >= 0:
                f[kid] = v
            _obj_done(&it, end)
        self._whole(c, it.i)
        if f[KR_method].kind == J_STR or f[KR_error].kind or f[KR_channel].kind != J_STR:
            self._pos = self._start  # not a data message after all
            return self._kraken_control(c, f)
        kind = self._kr_kind(c, f, &snapshot)
        if _eq(c, &f[KR_channel], "book", 4):
            self._lchan = S_BOOK
        elif _eq(c, &f[KR_channel], "ticker", 6):
            self._lchan = S_TICKER
        elif _eq(c, &f[KR_channel], "trade", 5):
            self._lchan = S_TRADE
        elif _eq(c, &f[KR_channel], "heartbeat", 9):
            self._ltype = T_HEARTBEAT
            self._lchan = S_HEARTBEAT
            return 0
        elif _eq(c, &f[KR_channel], "status", 6):
            self._ltype = T_STATUS
            self._lchan = S_STATUS
            return 0
        elif _eq(c, &f[KR_channel], "instrument", 10):
            self._lchan = "instrument"
            self._kraken_instrument(c)
            return 0
        else:
            self._ltype = T_UNKNOWN
            self._lchan = self._text(c, &f[KR_channel])
            return 0
        if not kind:
            _fail(c, f[KR_type].s if f[KR_type].kind else 0, "type must be snapshot or update")
            self._bad(c)
        if f[KR_data].kind != J_ARR:
            _fail(c, f[KR_data].s if f[KR_data].kind else 0, "data must be an array")
            self._bad(c)
        if not data_done:
            self._kr_data(c, f[KR_data].s, kind, snapshot, tr, 1)
        if kind != 1:  # book entries end with FLAG_LAST and their checksum already
            self._mark_runs(self._start)
        return 0

    cdef int _kraken_control(self, Ctx* c, Val* f) except -1:
        cdef Val g[MAX_KEYS]
        if f[KR_method].kind == J_STR:
            ok = f[KR_success].kind == J_TRUE
            if _eq(c, &f[KR_method], "subscribe", 9):
                self._ltype = T_SUBSCRIBED if ok else T_ERROR
            elif _eq(c, &f[KR_method], "unsubscribe", 11):
                self._ltype = T_UNSUBSCRIBED if ok else T_ERROR
            elif _eq(c, &f[KR_method], "pong", 4):
                self._ltype = T_HEARTBEAT
            elif f[KR_success].kind == J_FALSE:
                self._ltype = T_ERROR
            else:
                self._ltype = T_UNKNOWN
            if f[KR_error].kind == J_STR:
                self.last_error = self._text(c, &f[KR_error])
                self._ltype = T_ERROR
            if f[KR_result].kind == J_OBJ:
                if _collect(c, f[KR_result].s, 1, &KRI, g) < 0:
                    self._bad(c)
                if g[KRI_channel].kind == J_STR:
                    self._lchan = self._text(c, &g[KRI_channel])
                if g[KRI_symbol].kind == J_STR:
                    self._try_last_symbol(c, &g[KRI_symbol])
            elif f[KR_symbol].kind == J_STR:
                self._try_last_symbol(c, &f[KR_symbol])
            return 0
        if f[KR_error].kind:
            self._ltype = T_ERROR
            self.last_error = self._text(c, &f[KR_error]) if f[KR_error].kind == J_STR else None
            return 0
        self._ltype = T_UNKNOWN
        return 0

    cdef Py_ssize_t _kr_data(self, Ctx* c, Py_ssize_t pos, int kind, int snapshot, int64_t tr,
                             int depth) except -1:
        cdef It ia
        cdef int r
        cdef Py_ssize_t end
        _arr_at(&ia, pos, depth)
        while True:
            r = _arr_elem(c, &ia)
            if r == 0:
                return ia.i
            if r < 0:
                self._bad(c)
            if c.p[ia.i] != 123:
                _fail(c, ia.i, "data item must be an object")
                self._bad(c)
            end = self._kr_item(c, ia.i, kind, snapshot, tr, ia.depth)
            _obj_done(&ia, end)

    cdef Py_ssize_t _kr_item(self, Ctx* c, Py_ssize_t pos, int kind, int snapshot, int64_t tr,
                             int depth) except -1:
        cdef Val g[MAX_KEYS]
        cdef Val k, v
        cdef It it
        cdef int r, kid, j
        cdef Py_ssize_t end, vs, first = self._pos - self._start
        for j in range(KRI.n):
            g[j].kind = J_NONE
        if _obj_open(c, &it, pos, depth) < 0:
            self._bad(c)
        while True:
            r = _obj_key(c, &it, &k)
            if r == 0:
                break
            if r < 0:
                self._bad(c)
            kid = _key_id(c, &k, &KRI)
            if kid >= 0 and g[kid].kind != J_NONE:
                # a field given twice: which one the venue meant is unknowable
                _fail(c, k.s, "duplicate key")
                self._bad(c)
            if kind == 1 and (kid == KRI_bids or kid == KRI_asks):
                vs = _ws(c, it.i)
                if vs >= c.n or c.p[vs] != 91:
                    _fail(c, vs, "bids/asks must be arrays")
                    self._bad(c)
                end = self._kr_levels_at(c, vs, 1 if kid == KRI_bids else -1, it.depth)
                _span(&g[kid], vs, end, J_ARR)
            else:
                end = _value(c, it.i, &v, it.depth)
                if end < 0:
                    self._bad(c)
                if kid >= 0:
                    g[kid] = v
            _obj_done(&it, end)
        if kind == 1:
            self._kr_book(c, g, tr, snapshot, first)
        elif kind == 2:
            self._kr_ticker(c, g, tr)
        else:
            self._kr_trade(c, g, tr)
        return it.i

    cdef Py_ssize_t _kr_levels_at(self, Ctx* c, Py_ssize_t pos, int8_t side,
                                  int depth) except -1:
        cdef It ia
        cdef Val h[2]
        cdef int r
        cdef Py_ssize_t end
        cdef Tick* t
        _arr_at(&ia, pos, depth)
        while True:
            r = _arr_elem(c, &ia)
            if r == 0:
                return ia.i
            if r < 0:
                self._bad(c)
            end = _collect(c, ia.i, ia.depth, &KRL, h)
            if end < 0:
                self._bad(c)
            if not h[0].kind or not h[1].kind:
                _fail(c, ia.i, "book level must be {price, qty}")
                self._bad(c)
            t = self._rec()
            t.side = side
            _num(c, &h[0], &t.price)
            _num(c, &h[1], &t.size)
            _obj_done(&ia, end)

    cdef int _kr_book(self, Ctx* c, Val* g, int64_t tr, int snapshot,
                      Py_ssize_t first) except -1:
        cdef char sym[16]
        cdef int64_t ts = tr, cks
        cdef Py_ssize_t j
        cdef Tick* t
        cdef uint8_t kind = KIND_BOOK_SNAPSHOT if snapshot else KIND_BOOK_DELTA
        if not g[KRI_symbol].kind:
            _fail(c, 0, "book item lacks a symbol")
            self._bad(c)
        self._sym(c, &g[KRI_symbol], sym)
        if g[KRI_timestamp].kind:
            _time(c, &g[KRI_timestamp], &ts)
        if g[KRI_checksum].kind:
            _int(c, &g[KRI_checksum], &cks)
            if cks < 0 or cks > 4294967295:
                _fail(c, g[KRI_checksum].s, "checksum out of range")
                self._bad(c)
            self._lcks = <uint32_t>cks
            self._has_cks = 1
        for j in range(self._start + first, self._pos):
            t = &self._buf[j]
            t.kind = kind
            t.ts_event = ts
            t.ts_recv = tr
            memcpy(t.symbol, sym, 16)
        if self._pos > self._start + first:
            if snapshot:
                self._buf[self._start + first].flags |= FLAG_SNAPSHOT_BEGIN
            self._buf[self._pos - 1].flags |= FLAG_LAST
            if g[KRI_checksum].kind:
                self._buf[self._pos - 1].checksum = self._lcks
        memcpy(self._lsym, sym, 16)
        return 0

    cdef int _kr_ticker(self, Ctx* c, Val* g, int64_t tr) except -1:
        cdef Tick* t
        if not (g[KRI_symbol].kind and g[KRI_bid].kind and g[KRI_ask].kind):
            _fail(c, 0, "ticker item lacks symbol/bid/ask")
            self._bad(c)
        t = self._rec()
        t.kind = KIND_QUOTE
        t.ts_recv = tr
        t.ts_event = tr
        if g[KRI_timestamp].kind:
            _time(c, &g[KRI_timestamp], &t.ts_event)
        self._sym(c, &g[KRI_symbol], t.symbol)
        _num(c, &g[KRI_bid], &t.bid_px)
        _num(c, &g[KRI_ask], &t.ask_px)
        if g[KRI_bid_qty].kind:
            _num(c, &g[KRI_bid_qty], &t.bid_sz)
        if g[KRI_ask_qty].kind:
            _num(c, &g[KRI_ask_qty], &t.ask_sz)
        memcpy(self._lsym, t.symbol, 16)
        return 0

    cdef int _kr_trade(self, Ctx* c, Val* g, int64_t tr) except -1:
        cdef Tick* t
        if not (g[KRI_symbol].kind and g[KRI_price].kind and g[KRI_qty].kind
                and g[KRI_side].kind and g[KRI_timestamp].kind):
            _fail(c, 0, "trade item lacks symbol/side/price/qty/timestamp")
            self._bad(c)
        t = self._rec()
        t.kind = KIND_TRADE
        t.ts_recv = tr
        _time(c, &g[KRI_timestamp], &t.ts_event)
        self._sym(c, &g[KRI_symbol], t.symbol)
        _num(c, &g[KRI_price], &t.price)
        _num(c, &g[KRI_qty], &t.size)
        # Kraken's side is the taker's
        if _eq(c, &g[KRI_side], "buy", 3):
            t.side = 1
        elif _eq(c, &g[KRI_side], "sell", 4):
            t.side = -1
        else:
            _fail(c, g[KRI_side].s, "side must be buy or sell")
            self._bad(c)
        if g[KRI_trade_id].kind:
            _int(c, &g[KRI_trade_id], &t.seq)
            t.seq_first = t.seq
            self._lseq = t.seq
            self._lseq_first = t.seq
        memcpy(self._lsym, t.symbol, 16)
        return 0

    # -- Coinbase Advanced Trade ---------------------------------------------------------
    cdef int _cb_kind(self, Ctx* c, Val* f) except -1:
        """1 l2_data, 2 ticker/ticker_batch, 3 market_trades (0 otherwise)."""
        if _eq(c, &f[CB_channel], "l2_data", 7):
            return 1
        if _eq(c, &f[CB_channel], "ticker", 6) or _eq(c, &f[CB_channel], "ticker_batch", 12):
            return 2
        if _eq(c, &f[CB_channel], "market_trades", 13):
            return 3
        return 0

    cdef int _coinbase(self, Ctx* c, int64_t tr) except -1:
        cdef Val f[MAX_KEYS]
        cdef Val k, v
        cdef It it
        cdef Py_ssize_t i = _ws(c, 0), end, vs, first = self._pos - self._start, j
        cdef int r, kid, kind = 0
        cdef int64_t ts = tr, seq = -1
        cdef bint events_done = False
        cdef Tick* t
        if i >= c.n or c.p[i] != 123:
            return self._validate_any(c)
        for j in range(CB.n):
            f[j].kind = J_NONE
        if _obj_open(c, &it, i, 0) < 0:
            self._bad(c)
        while True:
            r = _obj_key(c, &it, &k)
            if r == 0:
                break
            if r < 0:
                self._bad(c)
            kid = _key_id(c, &k, &CB)
            if kid >= 0 and f[kid].kind != J_NONE:
                # a field given twice: which one the venue meant is unknowable
                _fail(c, k.s, "duplicate key")
                self._bad(c)
            vs = _ws(c, it.i)
            if kid == CB_events and not events_done and vs < c.n and c.p[vs] == 91:
                kind = self._cb_kind(c, f)
                if kind:
                    end = self._cb_events(c, vs, kind, tr, it.depth)
                    events_done = True
                    _span(&f[kid], vs, end, J_ARR)
                    _obj_done(&it, end)
                    continue
            end = _value(c, it.i, &v, it.depth)
            if end < 0:
                self._bad(c)
            if kid >= 0:
                f[kid] = v
            _obj_done(&it, end)
        self._whole(c, it.i)
        if _eq(c, &f[CB_type], "error", 5):
            self._pos = self._start + first
            self._ltype = T_ERROR
            if f[CB_message].kind == J_STR:
                self.last_error = self._text(c, &f[CB_message])
            return 0
        if f[CB_channel].kind != J_STR:
            self._pos = self._start + first
            self._ltype = T_UNKNOWN
            return 0
        if f[CB_sequence_num].kind:
            _int(c, &f[CB_sequence_num], &seq)
            self._lseq = seq
            self._lseq_first = seq
        if f[CB_timestamp].kind:
            _time(c, &f[CB_timestamp], &ts)
        kind = self._cb_kind(c, f)
        if kind == 1:
            self._lchan = S_L2
        elif kind == 2:
            self._lchan = self._text(c, &f[CB_channel])
        elif kind == 3:
            self._lchan = S_MARKET_TRADES
        elif _eq(c, &f[CB_channel], "heartbeats", 10):
            self._ltype = T_HEARTBEAT
            self._lchan = S_HEARTBEATS
            return 0
        elif _eq(c, &f[CB_channel], "subscriptions", 13):
            self._ltype = T_SUBSCRIBED
            self._lchan = S_SUBSCRIPTIONS
            return 0
        elif _eq(c, &f[CB_channel], "status", 6):
            self._ltype = T_STATUS
            self._lchan = S_STATUS
            return 0
        else:
            self._ltype = T_UNKNOWN
            self._lchan = self._text(c, &f[CB_channel])
            return 0
        if f[CB_events].kind != J_ARR:
            _fail(c, f[CB_events].s if f[CB_events].kind else 0, "events must be an array")
            self._bad(c)
        if not events_done:
            self._cb_events(c, f[CB_events].s, kind, tr, 1)
        # envelope fields known only now: its time where the event has none, its sequence
        for j in range(self._start + first, self._pos):
            t = &self._buf[j]
            if t.ts_event == TS_UNSET:
                t.ts_event = ts
            if kind != 3:
                t.seq = seq
                t.seq_first = seq
        self._mark_runs(self._start + first)
        return 0

    cdef Py_ssize_t _cb_events(self, Ctx* c, Py_ssize_t pos, int kind, int64_t tr,
                               int depth) except -1:
        cdef It ia
        cdef int r
        cdef Py_ssize_t end
        _arr_at(&ia, pos, depth)
        while True:
            r = _arr_elem(c, &ia)
            if r == 0:
                return ia.i
            if r < 0:
                self._bad(c)
            if c.p[ia.i] != 123:
                _fail(c, ia.i, "event must be an object")
                self._bad(c)
            end = self._cb_event(c, ia.i, kind, tr, ia.depth)
            _obj_done(&ia, end)

    cdef Py_ssize_t _cb_event(self, Ctx* c, Py_ssize_t pos, int kind, int64_t tr,
                              int depth) except -1:
        cdef Val ev[MAX_KEYS]
        cdef Val k, v
        cdef It it
        cdef int r, kid, j, want
        cdef Py_ssize_t end, vs, first = self._pos - self._start
        cdef char sym[16]
        cdef Tick* t
        cdef bint snapshot
        want = CBE_updates if kind == 1 else (CBE_tickers if kind == 2 else CBE_trades)
        for j in range(CBE.n):
            ev[j].kind = J_NONE
        if _obj_open(c, &it, pos, depth) < 0:
            self._bad(c)
        while True:
            r = _obj_key(c, &it, &k)
            if r == 0:
                break
            if r < 0:
                self._bad(c)
            kid = _key_id(c, &k, &CBE)
            if kid >= 0 and ev[kid].kind != J_NONE:
                # a field given twice: which one the venue meant is unknowable
                _fail(c, k.s, "duplicate key")
                self._bad(c)
            if kid == want:
                vs = _ws(c, it.i)
                if vs >= c.n or c.p[vs] != 91:
                    _fail(c, vs, "updates/tickers/trades must be an array")
                    self._bad(c)
                end = self._cb_list_at(c, vs, kind, tr, it.depth)
                _span(&ev[kid], vs, end, J_ARR)
            else:
                end = _value(c, it.i, &v, it.depth)
                if end < 0:
                    self._bad(c)
                if kid >= 0:
                    ev[kid] = v
            _obj_done(&it, end)
        if ev[want].kind != J_ARR:
            _fail(c, pos, "event lacks updates/tickers/trades")
            self._bad(c)
        if kind == 1:
            snapshot = _eq(c, &ev[CBE_type], "snapshot", 8)
            if not snapshot and not _eq(c, &ev[CBE_type], "update", 6):
                _fail(c, ev[CBE_type].s, "l2_data event type must be snapshot or update")
                self._bad(c)
            if not ev[CBE_product_id].kind:
                _fail(c, pos, "l2_data event lacks product_id")
                self._bad(c)
            self._sym(c, &ev[CBE_product_id], sym)
            for j in range(self._start + first, self._pos):
                t = &self._buf[j]
                t.kind = KIND_BOOK_SNAPSHOT if snapshot else KIND_BOOK_DELTA
                memcpy(t.symbol, sym, 16)
            if snapshot and self._pos > self._start + first:
                self._buf[self._start + first].flags |= FLAG_SNAPSHOT_BEGIN
            memcpy(self._lsym, sym, 16)
        return it.i

    cdef Py_ssize_t _cb_list_at(self, Ctx* c, Py_ssize_t pos, int kind, int64_t tr,
                                int depth) except -1:
        cdef It ia
        cdef Val h[MAX_KEYS]
        cdef int r
        cdef Py_ssize_t end
        _arr_at(&ia, pos, depth)
        while True:
            r = _arr_elem(c, &ia)
            if r == 0:
                return ia.i
            if r < 0:
                self._bad(c)
            end = _collect(c, ia.i, ia.depth, &CBE, h)
            if end < 0:
                self._bad(c)
            if kind == 1:
                self._cb_update(c, h, tr, ia.i)
            elif kind == 2:
                self._cb_ticker(c, h, tr, ia.i)
            else:
                self._cb_trade(c, h, tr, ia.i)
            _obj_done(&ia, end)

    cdef int _cb_update(self, Ctx* c, Val* h, int64_t tr, Py_ssize_t pos) except -1:
        cdef Tick* t
        cdef int64_t et
        if not (h[CBE_side].kind and h[CBE_price_level].kind and h[CBE_new_quantity].kind):
            _fail(c, pos, "update must have side/price_level/new_quantity")
            self._bad(c)
        t = self._rec()
        if _eq(c, &h[CBE_side], "bid", 3):
            t.side = 1
        elif _eq(c, &h[CBE_side], "offer", 5) or _eq(c, &h[CBE_side], "ask", 3):
            t.side = -1
        else:
            _fail(c, h[CBE_side].s, "side must be bid or offer")
            self._bad(c)
        t.ts_recv = tr
        t.ts_event = TS_UNSET
        if h[CBE_event_time].kind:
            _time(c, &h[CBE_event_time], &et)
            # snapshot levels carry the zero time: keep the envelope's
            if et > 0:
                t.ts_event = et
        _num(c, &h[CBE_price_level], &t.price)
        _num(c, &h[CBE_new_quantity], &t.size)
        return 0

    cdef int _cb_ticker(self, Ctx* c, Val* h, int64_t tr, Py_ssize_t pos) except -1:
        cdef Tick* t
        if not h[CBE_product_id].kind:
            _fail(c, pos, "ticker must have a product_id")
            self._bad(c)
        if not (h[CBE_best_bid].kind and h[CBE_best_ask].kind):
            return 0  # ticker_batch leaves out the book: no quote to make
        t = self._rec()
        t.kind = KIND_QUOTE
        t.ts_recv = tr
        t.ts_event = TS_UNSET
        self._sym(c, &h[CBE_product_id], t.symbol)
        _num(c, &h[CBE_best_bid], &t.bid_px)
        _num(c, &h[CBE_best_ask], &t.ask_px)
        if h[CBE_best_bid_quantity].kind:
            _num(c, &h[CBE_best_bid_quantity], &t.bid_sz)
        if h[CBE_best_ask_quantity].kind:
            _num(c, &h[CBE_best_ask_quantity], &t.ask_sz)
        memcpy(self._lsym, t.symbol, 16)
        return 0

    cdef int _cb_trade(self, Ctx* c, Val* h, int64_t tr, Py_ssize_t pos) except -1:
        cdef Tick* t
        cdef int64_t tid
        if not (h[CBE_product_id].kind and h[CBE_price].kind and h[CBE_size].kind
                and h[CBE_side].kind and h[CBE_time].kind):
            _fail(c, pos, "trade must have product_id/price/size/side/time")
            self._bad(c)
        t = self._rec()
        t.kind = KIND_TRADE
        t.ts_recv = tr
        _time(c, &h[CBE_time], &t.ts_event)
        self._sym(c, &h[CBE_product_id], t.symbol)
        _num(c, &h[CBE_price], &t.price)
        _num(c, &h[CBE_size], &t.size)
        # "side" is the MAKER's side, as on Coinbase Exchange's match channel
        # (the Advanced Trade docs call it the trade's side; recorded sessions
        # print SELL at or above the best ask and BUY at or below the best bid):
        # the tick carries the aggressor's, the opposite one
        if _eq(c, &h[CBE_side], "BUY", 3):
            t.side = -1
        elif _eq(c, &h[CBE_side], "SELL", 4):
            t.side = 1
        else:
            _fail(c, h[CBE_side].s, "side must be BUY or SELL")
            self._bad(c)
        if h[CBE_trade_id].kind and _int_quiet(c, &h[CBE_trade_id], &tid):
            t.seq = tid
            t.seq_first = tid
        memcpy(self._lsym, t.symbol, 16)
        return 0

    cdef str _text(self, Ctx* c, Val* v):
        if v.kind != J_STR:
            return PyBytes_FromStringAndSize(<const char*>c.p + v.s, v.e - v.s).decode("utf-8")
        raw = PyBytes_FromStringAndSize(<const char*>c.p + v.s - 1, v.e - v.s + 2)
        return json.loads(raw) if v.esc else raw[1:len(raw) - 1].decode("utf-8")

    cdef int _try_last_symbol(self, Ctx* c, Val* v) except -1:
        cdef char sym[16]
        try:
            self._sym(c, v, sym)
        except MalformedMessage:
            c.err = NULL
            return 0
        memcpy(self._lsym, sym, 16)
        return 0

    cdef int _kraken_instrument(self, Ctx* c) except -1:
        """Precisions of the pairs of an ``instrument`` message into :attr:`precisions`.

        A pair entry that cannot be used (a symbol without a canonical name,
        such as the staking asset ``ETH2.S/ETH``, or precisions that are not
        integers in 0..18) is skipped and counted in ``last_skipped``; the
        other pairs are taken.  Nothing is stored unless the whole message
        parses, and a skipped pair keeps the precisions it had.
        """
        # floats are never needed here (parse_float=str keeps 1e400 from
        # becoming inf) and long integers stay text (no int() of 5,000 digits)
        msg = json.loads(PyBytes_FromStringAndSize(<const char*>c.p, c.n),
                         parse_float=str, parse_int=_short_int)
        data = msg.get("data")
        pairs = data.get("pairs") if isinstance(data, dict) else None
        if not isinstance(pairs, list):
            raise MalformedMessage("instrument message lacks data.pairs")
        found = {}
        skipped = 0
        for pair in pairs:
            name = self._instrument_symbol(pair)
            pp = pair.get("price_precision") if name is not None else None
            qp = pair.get("qty_precision") if name is not None else None
            if name is None or not (_precision_ok(pp) and _precision_ok(qp)):
                skipped += 1
                continue
            found[name] = (pp, qp)
        self.precisions.update(found)
        self.last_skipped = skipped
        self.skipped += skipped
        return 0

    cdef object _instrument_symbol(self, object pair):
        """Canonical name of an instrument pair entry, None if it has none."""
        if not isinstance(pair, dict):
            return None
        raw = pair.get("symbol")
        if not isinstance(raw, str):
            return None
        canon = self._symbols.get(raw)
        if canon is not None:
            return canon
        try:
            return _symbols.to_canonical("kraken", raw)
        except ValueError:
            return None

    # -- CoinGecko REST ----------------------------------------------------------------
    cdef int _coingecko(self, Ctx* c, int64_t tr) except -1:
        """``/simple/price``: {coin: {vs: price, ..., last_updated_at: s}, ...}."""
        cdef It it, ic
        cdef Val k, kv, v
        cdef int r
        cdef Py_ssize_t i = _ws(c, 0), end, vs, first, j
        cdef int64_t upd
        cdef bint has_upd
        cdef Tick* t
        cdef double px
        if i >= c.n or c.p[i] != 123:
            return self._validate_any(c)
        self._lchan = S_SIMPLE_PRICE
        if _obj_open(c, &it, i, 0) < 0:
            self._bad(c)
        while True:
            r = _obj_key(c, &it, &k)
            if r == 0:
                break
            if r < 0:
                self._bad(c)
            vs = _ws(c, it.i)
            if vs >= c.n or c.p[vs] != 123 or _eq(c, &k, "status", 6) or _eq(c, &k, "error", 5):
                # an error body ({"status": {...}} / {"error": ...}) or another shape
                end = _value(c, it.i, &v, it.depth)
                if end < 0:
                    self._bad(c)
                self._cg_other(c, &k, &v)
                _obj_done(&it, end)
                continue
            coin = self._text(c, &k).encode("utf-8") if k.esc else \
                PyBytes_FromStringAndSize(<const char*>c.p + k.s, k.e - k.s)
            first = self._pos - self._start
            has_upd = False
            _obj_open(c, &ic, vs, it.depth)
            while True:
                r = _obj_key(c, &ic, &kv)
                if r == 0:
                    break
                if r < 0:
                    self._bad(c)
                end = _value(c, ic.i, &v, ic.depth)
                if end < 0:
                    self._bad(c)
                _obj_done(&ic, end)
                if _eq(c, &kv, "last_updated_at", 15):
                    # seconds whose ns fit int64 (up to 2262-04-11)
                    if v.kind != J_NUM or has_upd:
                        _fail(c, v.s, "last_updated_at must be epoch seconds, given once")
                        self._bad(c)
                    _int(c, &v, &upd)
                    if upd < 0 or upd > 9223372036:
                        _fail(c, v.s, "last_updated_at: time out of range")
                        self._bad(c)
                    has_upd = True
                    continue
                # vs-currency keys have no underscore; usd_24h_vol & co. do
                if kv.esc:
                    vsname = self._text(c, &kv).encode("utf-8")
                    if b"_" in vsname:
                        continue
                elif memchr(c.p + kv.s, 95, kv.e - kv.s) != NULL:
                    continue
                else:
                    vsname = None
                if v.kind != J_NUM:  # null included: a price that is not there is an error
                    _fail(c, v.s, "price is not a number")
                    self._bad(c)
                _num(c, &v, &px)
                if vsname is None:
                    vsname = PyBytes_FromStringAndSize(<const char*>c.p + kv.s, kv.e - kv.s)
                can = self._cg_symbol(coin, vsname)
                if can is None:
                    continue  # a coin without a ticker mapping cannot be named
                for j in range(self._start, self._pos):
                    if memcmp(self._buf[j].symbol, PyBytes_AS_STRING(can), 16) == 0:
                        _fail(c, kv.s, "price given twice")
                        self._bad(c)
                t = self._rec()
                t.kind = KIND_PRICE
                t.ts_recv = tr
                t.price = px
                t.flags = FLAG_LAST
                memcpy(t.symbol, PyBytes_AS_STRING(can), 16)
                memcpy(self._lsym, t.symbol, 16)
            for j in range(self._start + first, self._pos):
                self._buf[j].ts_event = upd * 1000000000 if has_upd else tr
            _obj_done(&it, ic.i)
        self._whole(c, it.i)
        return 0

    cdef int _cg_other(self, Ctx* c, Val* k, Val* v) except -1:
        cdef Val g[MAX_KEYS]
        if _eq(c, k, "error", 5):
            self._ltype = T_ERROR
            self.last_error = self._text(c, v) if v.kind == J_STR else \
                PyBytes_FromStringAndSize(<const char*>c.p + v.s, v.e - v.s).decode("utf-8")
        elif _eq(c, k, "status", 6) and v.kind == J_OBJ:
            if _collect(c, v.s, 1, &CGS, g) < 0:
                self._bad(c)
            if g[0].kind or g[1].kind:
                self._ltype = T_ERROR
                self.last_error = self._text(c, &g[1] if g[1].kind else &g[0])
        elif self._ltype == T_DATA:
            self._ltype = T_UNKNOWN
        return 0

    cdef object _cg_symbol(self, bytes coin, bytes vs):
        key = (coin, vs)
        hit = self._cg_cache.get(key, 0)
        if hit != 0:
            return hit
        try:
            canon = _symbols.to_canonical("coingecko", (coin.decode("utf-8"), vs.decode("utf-8")))
            out = canon.encode("ascii").ljust(16, b"\0")
        except (ValueError, UnicodeDecodeError):
            out = None
        if len(self._cg_cache) > 4096:
            self._cg_cache.clear()
        self._cg_cache[key] = out
        return out


def _short_int(str text):
    """int of a JSON integer of up to 20 characters; longer ones stay text."""
    return int(text) if len(text) <= 20 else text


cdef inline bint _precision_ok(object x):
    """A Kraken price/qty precision: a number of decimals, 0..18 (never a bool or float)."""
    return type(x) is int and 0 <= x <= 18


cdef bint _int_quiet(Ctx* c, Val* v, int64_t* out) noexcept:
    """Like _int but returns False instead of failing (ids that may not be numeric)."""
    cdef Py_ssize_t i = v.s, e = v.e
    cdef uint64_t m = 0
    if (v.kind != J_STR and v.kind != J_NUM) or v.esc or e - i < 1 or e - i > 18:
        return False
    while i < e:
        if not _digit(c.p[i]):
            return False
        m = m * 10 + (c.p[i] - 48)
        i += 1
    out[0] = <int64_t>m
    return True


cdef inline Py_ssize_t strlen_16(const char* s) noexcept:
    cdef Py_ssize_t k = 0
    while k < 16 and s[k] != 0:
        k += 1
    return k


cdef inline void _incref(object o) noexcept:
    Py_INCREF(o)


def validate_json(message):
    """True when ``message`` (bytes) is one valid JSON value; used by the tests
    to compare the scanner with the stdlib parser."""
    cdef Ctx c
    cdef Val v
    if not isinstance(message, bytes):
        raise TypeError("message must be bytes")
    c.p = <const unsigned char*>PyBytes_AS_STRING(message)
    c.n = PyBytes_GET_SIZE(message)
    c.err = NULL
    cdef Py_ssize_t i = _value(&c, 0, &v, 0)
    if i < 0:
        return False
    return _ws(&c, i) == c.n


def parse_decimal(text):
    """float64 of a decimal string via the normalizer's number parser (tests).

    JSON's number grammar, a leading minus allowed (prices and sizes refuse it).
    """
    cdef Ctx c
    cdef Val v
    cdef double out
    if isinstance(text, str):
        text = text.encode()
    c.p = <const unsigned char*>PyBytes_AS_STRING(text)
    c.n = PyBytes_GET_SIZE(text)
    c.err = NULL
    v.s = 0
    v.e = c.n
    v.kind = J_STR
    v.esc = 0
    if c.n and c.p[0] == 45:  # the grammar's sign, which prices and sizes refuse
        v.s = 1
        _num(&c, &v, &out)
        return -out
    _num(&c, &v, &out)
    return out
