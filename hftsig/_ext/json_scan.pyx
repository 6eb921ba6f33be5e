"""The JSON scanner's out-of-line parts (the inline hot path is json_scan.pxd).

What only runs on an error, at import, or for a string written with escapes
lives here once instead of in every venue module: :class:`MalformedMessage`
and the functions that raise it, key tables, the decoding of escaped strings.
``validate_json`` and ``parse_decimal`` expose the scanner to the tests.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.stdint cimport uint32_t


class MalformedMessage(ValueError):
    """A frame that is not valid JSON or lacks what its message type needs.

    Connectors count these and carry on; nothing of the frame is emitted and
    the Normalizer's state (``precisions``) is as before it.
    """


cdef int raise_at(Ctx* c, Py_ssize_t i, const char* msg) except -1:
    """MalformedMessage for msg at byte i (recorded in c too)."""
    fail(c, i, msg)
    raise MalformedMessage(f"{msg.decode()} at byte {i}")


cdef int raise_recorded(Ctx* c) except -1:
    """MalformedMessage for the error the scan recorded in c."""
    if c.err == NULL:
        c.err = "malformed message"
    raise MalformedMessage(f"{c.err.decode()} at byte {c.errpos}")


# the key names' bytes, which the Keys tables point into, live as long as the module
_KEY_NAMES = []


cdef void make_keys(Keys* ks, tuple names) except *:
    """Fill ks with names (index j is names[j]), chained by first byte for key_find."""
    cdef int j, ch
    if len(names) > MAX_KEYS:
        raise ValueError(f"a key table holds at most {MAX_KEYS} names, got {len(names)}")
    ks.n = len(names)
    for j in range(256):
        ks.first[j] = -1
    for j in range(ks.n - 1, -1, -1):
        b = names[j].encode()
        _KEY_NAMES.append(b)
        ks.name[j] = PyBytes_AS_STRING(b)
        ks.len[j] = len(b)
        ch = b[0]
        ks.next[j] = ks.first[ch]
        ks.first[ch] = j


cdef int key_id_esc(Ctx* c, Val* k, Keys* ks) noexcept:
    """key_id of a key written with escapes."""
    cdef unsigned char buf[ESC_CAP]
    cdef Py_ssize_t n = unescape(c.p, k.s, k.e, buf, ESC_CAP)
    if n < 0:
        return -1
    return key_find(buf, n, ks)


cdef bint str_eq_esc(Ctx* c, Val* v, const char* lit, Py_ssize_t L) noexcept:
    """str_eq for a string with escapes ("tr\u0061de" is "trade")."""
    cdef unsigned char buf[ESC_CAP]
    cdef Py_ssize_t n = unescape(c.p, v.s, v.e, buf, ESC_CAP)
    return n == L and same_bytes(buf, lit, L)


cdef inline uint32_t hex4(const unsigned char* q) noexcept:
    """The four hex digits at q (already validated by scan_string)."""
    cdef uint32_t u = 0
    cdef int k
    cdef unsigned char ch
    for k in range(4):
        ch = q[k]
        if ch <= CH_9:
            u = u * 16 + (ch - CH_0)
        elif ch <= CH_UPPER_F:
            u = u * 16 + (ch - CH_UPPER_A + 10)
        else:
            u = u * 16 + (ch - CH_LOWER_A + 10)
    return u


cdef Py_ssize_t unescape(const unsigned char* p, Py_ssize_t s, Py_ssize_t e,
                         unsigned char* out, Py_ssize_t cap) noexcept:
    """UTF-8 of the JSON string body p[s:e] with its escapes decoded into out.

    The scanner has already checked the escape syntax.  Returns the length,
    or -1 when it needs more than ``cap`` bytes or holds a lone surrogate
    (no field the normalizers read can be either).
    """
    cdef Py_ssize_t i = s, n = 0
    cdef unsigned char ch
    cdef uint32_t u, lo
    cdef int k
    while i < e:
        ch = p[i]
        if ch != CH_BACKSLASH:
            if n >= cap:
                return -1
            out[n] = ch
            n += 1
            i += 1
            continue
        ch = p[i + 1]
        i += 2
        if ch == CH_LOWER_U:  # \uXXXX
            u = hex4(p + i)
            i += 4
            if 0xD800 <= u <= 0xDBFF:
                if i + 6 > e or p[i] != CH_BACKSLASH or p[i + 1] != CH_LOWER_U:
                    return -1
                lo = hex4(p + i + 2)
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
        if ch == CH_LOWER_B:
            ch = CH_BACKSPACE
        elif ch == CH_LOWER_F:
            ch = CH_FORMFEED
        elif ch == CH_LOWER_N:
            ch = CH_LF
        elif ch == CH_LOWER_R:
            ch = CH_CR
        elif ch == CH_LOWER_T:
            ch = CH_TAB
        out[n] = ch  # '"', '\\' and '/' stand for themselves
        n += 1
    return n


cdef int unescaped(Ctx* c, Val* v, Ctx* tmp, Val* tv, unsigned char* buf) except -1:
    """Point tmp/tv at the decoded text of the escaped string v (buf holds ESC_CAP bytes)."""
    cdef Py_ssize_t L = unescape(c.p, v.s, v.e, buf, ESC_CAP)
    # filled in before the check too: the compiler cannot tell that raise_at never returns 0
    tmp.p = buf
    tmp.n = L if L > 0 else 0
    tmp.err = NULL
    tmp.errpos = 0
    tmp.ss = -1
    tv.s = 0
    tv.e = tmp.n
    tv.kind = J_STR
    tv.esc = 0
    if L < 0:
        return raise_at(c, v.s, "escaped string too long or invalid")
    return 0


cdef int read_num_esc(Ctx* c, Val* v, double* out) except -1:
    """read_num of a quoted number written with escapes (kept out of the hot path)."""
    cdef Ctx tmp
    cdef Val tv
    cdef unsigned char buf[ESC_CAP]
    unescaped(c, v, &tmp, &tv, buf)
    return read_num(&tmp, &tv, out)


cdef int read_int_esc(Ctx* c, Val* v, int64_t* out) except -1:
    """read_int of a quoted integer written with escapes."""
    cdef Ctx tmp
    cdef Val tv
    cdef unsigned char buf[ESC_CAP]
    unescaped(c, v, &tmp, &tv, buf)
    return read_int(&tmp, &tv, out)


cdef int read_time_esc(Ctx* c, Val* v, int64_t* out) except -1:
    """read_time of a time written with escapes."""
    cdef Ctx tmp
    cdef Val tv
    cdef unsigned char buf[ESC_CAP]
    if v.kind != J_STR:
        return raise_at(c, v.s, "expected an RFC3339 time")
    unescaped(c, v, &tmp, &tv, buf)
    return read_time_plain(&tmp, &tv, out)


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
    cdef Py_ssize_t i = scan_value(&c, 0, &v, 0)
    if i < 0:
        return False
    return skip_ws(&c, i) == c.n


def parse_decimal(text):
    """float64 of a decimal string via the normalizers' number parser (tests).

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
    if c.n and c.p[0] == CH_MINUS:  # the grammar's sign, which prices and sizes refuse
        v.s = 1
        read_num(&c, &v, &out)
        return -out
    read_num(&c, &v, &out)
    return out
