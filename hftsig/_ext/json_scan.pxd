# The validating single-pass JSON scanner shared by the venue normalizers
# (hftsig/_ext/_normalize_*.pyx).  Everything on the hot path is `cdef inline`
# here, so each venue module compiles its own copy of the scanner into its
# parser (no call crosses an extension module boundary); what only runs on an
# error or for escaped strings is implemented once in json_scan.pyx.
#
# A scan works on a Ctx (the frame's bytes and the first error seen): functions
# returning a position return -1 after recording an error with fail(), which
# the caller turns into MalformedMessage with raise_recorded().  A Val is the
# span of one value; an It walks the members of an object or the elements of
# an array in place.
from libc.stdint cimport int64_t, uint64_t, uint32_t
from libc.string cimport memcmp, memcpy
from posix.time cimport clock_gettime, timespec, CLOCK_REALTIME
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.math cimport isfinite


cdef extern from "json_scan_tables.h":
    const unsigned char JSON_PLAIN[256]
    const double JSON_POW10[23]
    const int64_t JSON_POW10I[10]


# the bytes the grammars below look at
cdef enum:
    CH_TAB = 9            # \t
    CH_LF = 10            # \n
    CH_CR = 13            # \r
    CH_SPACE = 32
    CH_QUOTE = 34         # "
    CH_PLUS = 43          # +
    CH_COMMA = 44         # ,
    CH_MINUS = 45         # -
    CH_DOT = 46           # .
    CH_SLASH = 47         # /
    CH_0 = 48
    CH_9 = 57
    CH_COLON = 58         # :
    CH_UPPER_A = 65
    CH_UPPER_E = 69
    CH_UPPER_F = 70
    CH_UPPER_T = 84       # RFC3339 date/time separator
    CH_UPPER_Z = 90       # RFC3339 UTC
    CH_LBRACKET = 91      # [
    CH_BACKSLASH = 92
    CH_RBRACKET = 93      # ]
    CH_UNDERSCORE = 95
    CH_LOWER_A = 97
    CH_LOWER_B = 98       # \b
    CH_LOWER_E = 101
    CH_LOWER_F = 102      # \f, false
    CH_LOWER_N = 110      # \n, null
    CH_LOWER_R = 114      # \r
    CH_LOWER_T = 116      # \t, true, RFC3339 separator
    CH_LOWER_U = 117      # \uXXXX
    CH_LOWER_Z = 122      # RFC3339 UTC
    CH_LBRACE = 123       # {
    CH_RBRACE = 125       # }
    # the control bytes that the escapes \b \f \n \r \t stand for
    CH_BACKSPACE = 8
    CH_FORMFEED = 12

# kinds of JSON values (Val.kind); J_NONE marks a key that was not seen
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
    MAX_DEPTH = 64   # deeper nesting is malformed (no venue nests beyond 4)
    MAX_KEYS = 24    # keys of one key table
    ESC_CAP = 64     # longest escaped field decoded in place (symbols, types, numbers, times)

# It.state
cdef enum:
    IT_FIRST = 0     # before the first member/element
    IT_AFTER = 1     # after a member/element
    IT_CLOSED = 2    # past the closing brace/bracket

# results of the iterator steps obj_next, obj_key, arr_next, arr_elem
cdef enum:
    STEP_ERROR = -1  # malformed: the error is recorded in the Ctx
    STEP_END = 0     # the container closed
    STEP_ITEM = 1    # one more member/element


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
    int state         # IT_FIRST, IT_AFTER or IT_CLOSED
    int depth

cdef struct Keys:
    int n
    const char* name[MAX_KEYS]
    Py_ssize_t len[MAX_KEYS]
    int first[256]          # first name starting with a byte, -1 if none
    int next[MAX_KEYS]      # next name with the same first byte, -1 at the end


# -- implemented in json_scan.pyx (errors, key tables, escaped strings) -------
cdef int raise_at(Ctx* c, Py_ssize_t i, const char* msg) except -1
cdef int raise_recorded(Ctx* c) except -1
cdef void make_keys(Keys* ks, tuple names) except *
cdef int key_id_esc(Ctx* c, Val* k, Keys* ks) noexcept
cdef bint str_eq_esc(Ctx* c, Val* v, const char* lit, Py_ssize_t L) noexcept
cdef Py_ssize_t unescape(const unsigned char* p, Py_ssize_t s, Py_ssize_t e,
                         unsigned char* out, Py_ssize_t cap) noexcept
cdef int unescaped(Ctx* c, Val* v, Ctx* tmp, Val* tv, unsigned char* buf) except -1
cdef int read_num_esc(Ctx* c, Val* v, double* out) except -1
cdef int read_int_esc(Ctx* c, Val* v, int64_t* out) except -1
cdef int read_time_esc(Ctx* c, Val* v, int64_t* out) except -1


# -- errors and whitespace ----------------------------------------------------
cdef inline Py_ssize_t fail(Ctx* c, Py_ssize_t i, const char* msg) noexcept:
    """Record the first error of a scan; -1 for the caller to return."""
    if c.err == NULL:
        c.err = msg
        c.errpos = i
    return -1


cdef inline Py_ssize_t skip_ws(Ctx* c, Py_ssize_t i) noexcept:
    cdef unsigned char ch
    while i < c.n:
        ch = c.p[i]
        if ch == CH_SPACE or ch == CH_LF or ch == CH_CR or ch == CH_TAB:
            i += 1
        else:
            break
    return i


cdef inline int expect_end(Ctx* c, Py_ssize_t i) except -1:
    """Check that only whitespace follows a top-level value ending at i (-1: failed)."""
    if i < 0:
        raise_recorded(c)
    i = skip_ws(c, i)
    if i != c.n:
        fail(c, i, "data after the message")
        raise_recorded(c)
    return 0


cdef inline bint is_digit(unsigned char ch) noexcept:
    return CH_0 <= ch <= CH_9


cdef inline bint is_hex(unsigned char ch) noexcept:
    return (CH_0 <= ch <= CH_9) or (CH_UPPER_A <= ch <= CH_UPPER_F) \
        or (CH_LOWER_A <= ch <= CH_LOWER_F)


# -- strings ------------------------------------------------------------------
cdef inline Py_ssize_t utf8_len(Ctx* c, Py_ssize_t i) noexcept:
    """Length of the valid UTF-8 sequence at i (a byte >= 0x80), -1 if invalid."""
    cdef unsigned char b0 = c.p[i], b1
    cdef int need, j
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


cdef inline uint64_t load8(const unsigned char* q) noexcept nogil:
    cdef uint64_t x
    memcpy(&x, q, 8)
    return x


cdef inline uint64_t special8(uint64_t x) noexcept nogil:
    """Nonzero when one of 8 bytes may be '"', a backslash, a control byte or >= 0x80.

    Word-at-a-time test (zero-byte trick); a hit only sends the scan to the
    byte loop, so false alarms cost time, never correctness.
    """
    cdef uint64_t ones = 0x0101010101010101ULL, high = 0x8080808080808080ULL
    cdef uint64_t q = x ^ 0x2222222222222222ULL      # '"' in every byte
    cdef uint64_t b = x ^ 0x5C5C5C5C5C5C5C5CULL      # backslash in every byte
    return (((q - ones) & ~q) | ((b - ones) & ~b) | (x - 0x2020202020202020ULL) | x) & high


cdef inline Py_ssize_t scan_string(Ctx* c, Py_ssize_t i, Val* v) noexcept:
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
        while i + 8 <= n and not special8(load8(p + i)):
            i += 8
        while i < n and JSON_PLAIN[p[i]]:
            i += 1
        if i >= n:
            return fail(c, i, "unterminated string")
        ch = c.p[i]
        if ch == CH_QUOTE:
            v.e = i
            return i + 1
        if ch == CH_BACKSLASH:
            v.esc = 1
            i += 1
            if i >= c.n:
                return fail(c, i, "unterminated escape")
            ch = c.p[i]
            if ch == CH_LOWER_U:
                if i + 4 >= c.n:
                    return fail(c, i, "truncated \\u escape")
                for k in range(1, 5):
                    if not is_hex(c.p[i + k]):
                        return fail(c, i, "bad \\u escape")
                i += 5
            elif ch == CH_QUOTE or ch == CH_BACKSLASH or ch == CH_SLASH or ch == CH_LOWER_B \
                    or ch == CH_LOWER_F or ch == CH_LOWER_N or ch == CH_LOWER_R \
                    or ch == CH_LOWER_T:
                i += 1
            else:
                return fail(c, i, "bad escape")
        elif ch < CH_SPACE:
            return fail(c, i, "control character in string")
        elif ch < 0x80:
            i += 1
        else:
            k = utf8_len(c, i)
            if k < 0:
                return fail(c, i, "invalid UTF-8")
            i += k


# -- values -------------------------------------------------------------------
cdef inline Py_ssize_t scan_number(Ctx* c, Py_ssize_t i, Val* v) noexcept:
    v.s = i
    v.kind = J_NUM
    v.esc = 0
    if i < c.n and c.p[i] == CH_MINUS:
        i += 1
    if i >= c.n:
        return fail(c, i, "truncated number")
    if c.p[i] == CH_0:
        i += 1
    elif is_digit(c.p[i]):
        while i < c.n and is_digit(c.p[i]):
            i += 1
    else:
        return fail(c, i, "bad number")
    if i < c.n and c.p[i] == CH_DOT:
        i += 1
        if i >= c.n or not is_digit(c.p[i]):
            return fail(c, i, "bad fraction")
        while i < c.n and is_digit(c.p[i]):
            i += 1
    if i < c.n and (c.p[i] == CH_LOWER_E or c.p[i] == CH_UPPER_E):
        i += 1
        if i < c.n and (c.p[i] == CH_PLUS or c.p[i] == CH_MINUS):
            i += 1
        if i >= c.n or not is_digit(c.p[i]):
            return fail(c, i, "bad exponent")
        while i < c.n and is_digit(c.p[i]):
            i += 1
    v.e = i
    return i


cdef inline Py_ssize_t scan_literal(Ctx* c, Py_ssize_t i, const char* lit, Py_ssize_t L,
                                    int kind, Val* v) noexcept:
    if i + L > c.n or memcmp(c.p + i, lit, L) != 0:
        return fail(c, i, "bad literal")
    v.s = i
    v.e = i + L
    v.kind = kind
    v.esc = 0
    return i + L


cdef inline Py_ssize_t skip_object(Ctx* c, Py_ssize_t i, int depth) noexcept:
    cdef Val k, v
    if depth > MAX_DEPTH:
        return fail(c, i, "nested too deep")
    i = skip_ws(c, i + 1)
    if i < c.n and c.p[i] == CH_RBRACE:
        return i + 1
    while True:
        if i >= c.n or c.p[i] != CH_QUOTE:
            return fail(c, i, "expected a key")
        i = scan_string(c, i, &k)
        if i < 0:
            return -1
        i = skip_ws(c, i)
        if i >= c.n or c.p[i] != CH_COLON:
            return fail(c, i, "expected ':'")
        i = scan_value(c, i + 1, &v, depth)
        if i < 0:
            return -1
        i = skip_ws(c, i)
        if i >= c.n:
            return fail(c, i, "unterminated object")
        if c.p[i] == CH_COMMA:
            i = skip_ws(c, i + 1)
        elif c.p[i] == CH_RBRACE:
            return i + 1
        else:
            return fail(c, i, "expected ',' or '}'")


cdef inline Py_ssize_t skip_array(Ctx* c, Py_ssize_t i, int depth) noexcept:
    cdef Val v
    if depth > MAX_DEPTH:
        return fail(c, i, "nested too deep")
    i = skip_ws(c, i + 1)
    if i < c.n and c.p[i] == CH_RBRACKET:
        return i + 1
    while True:
        i = scan_value(c, i, &v, depth)
        if i < 0:
            return -1
        i = skip_ws(c, i)
        if i >= c.n:
            return fail(c, i, "unterminated array")
        if c.p[i] == CH_COMMA:
            i += 1
        elif c.p[i] == CH_RBRACKET:
            return i + 1
        else:
            return fail(c, i, "expected ',' or ']'")


cdef inline Py_ssize_t scan_value(Ctx* c, Py_ssize_t i, Val* v, int depth) noexcept:
    """Scan (and validate) the value at i into v; return the index after it."""
    cdef unsigned char ch
    i = skip_ws(c, i)
    if i >= c.n:
        return fail(c, i, "unexpected end of message")
    ch = c.p[i]
    if ch == CH_QUOTE:
        return scan_string(c, i, v)
    if ch == CH_LBRACE:
        v.s = i
        v.kind = J_OBJ
        v.esc = 0
        i = skip_object(c, i, depth + 1)
        v.e = i
        return i
    if ch == CH_LBRACKET:
        v.s = i
        v.kind = J_ARR
        v.esc = 0
        i = skip_array(c, i, depth + 1)
        v.e = i
        return i
    if ch == CH_MINUS or is_digit(ch):
        return scan_number(c, i, v)
    if ch == CH_LOWER_T:
        return scan_literal(c, i, b"true", 4, J_TRUE, v)
    if ch == CH_LOWER_F:
        return scan_literal(c, i, b"false", 5, J_FALSE, v)
    if ch == CH_LOWER_N:
        return scan_literal(c, i, b"null", 4, J_NULL, v)
    return fail(c, i, "unexpected character")


# -- walking objects and arrays in place ----------------------------------------
cdef inline int obj_open(Ctx* c, It* it, Py_ssize_t i, int depth) noexcept:
    """Start iterating the object at i (after whitespace): 0, or -1 if none is there."""
    i = skip_ws(c, i)
    it.i = i + 1
    it.state = IT_FIRST
    it.depth = depth + 1
    if i >= c.n or c.p[i] != CH_LBRACE:
        it.state = IT_CLOSED  # nothing to iterate (set all the same: the compiler checks)
        fail(c, i, "expected an object")
        return -1
    return 0


cdef inline int obj_key(Ctx* c, It* it, Val* k) noexcept:
    """Next key of an object: STEP_ITEM with it.i at its value, STEP_END, STEP_ERROR.

    The caller consumes the value and calls item_done with its end.
    """
    cdef Py_ssize_t i = skip_ws(c, it.i)
    if it.state == IT_CLOSED:
        return STEP_END
    if i >= c.n:
        fail(c, i, "unterminated object")
        return STEP_ERROR
    if it.state == IT_AFTER:
        if c.p[i] == CH_COMMA:
            i = skip_ws(c, i + 1)
            if i >= c.n or c.p[i] != CH_QUOTE:
                fail(c, i, "expected a key")
                return STEP_ERROR
        elif c.p[i] == CH_RBRACE:
            it.i = i + 1
            it.state = IT_CLOSED
            return STEP_END
        else:
            fail(c, i, "expected ',' or '}'")
            return STEP_ERROR
    else:
        if c.p[i] == CH_RBRACE:
            it.i = i + 1
            it.state = IT_CLOSED
            return STEP_END
        if c.p[i] != CH_QUOTE:
            fail(c, i, "expected a key")
            return STEP_ERROR
    i = scan_string(c, i, k)
    if i < 0:
        return STEP_ERROR
    i = skip_ws(c, i)
    if i >= c.n or c.p[i] != CH_COLON:
        fail(c, i, "expected ':'")
        return STEP_ERROR
    it.i = i + 1
    return STEP_ITEM


cdef inline int obj_next(Ctx* c, It* it, Val* k, Val* v) noexcept:
    """Next member of an object, key and value scanned: STEP_ITEM, STEP_END, STEP_ERROR."""
    cdef int r = obj_key(c, it, k)
    cdef Py_ssize_t i
    if r != STEP_ITEM:
        return r
    i = scan_value(c, it.i, v, it.depth)
    if i < 0:
        return STEP_ERROR
    it.i = i
    it.state = IT_AFTER
    return STEP_ITEM


cdef inline void item_done(It* it, Py_ssize_t end) noexcept:
    """The caller consumed the current value/element, which ends at end."""
    it.i = end
    it.state = IT_AFTER


cdef inline void arr_at(It* it, Py_ssize_t pos, int depth) noexcept:
    """Iterate the array whose '[' is at pos."""
    it.i = pos + 1
    it.state = IT_FIRST
    it.depth = depth + 1


cdef inline int arr_elem(Ctx* c, It* it) noexcept:
    """Next element of an array: STEP_ITEM with it.i at it, STEP_END, STEP_ERROR.

    The caller consumes the element and calls item_done with its end.
    """
    cdef Py_ssize_t i = skip_ws(c, it.i)
    if it.state == IT_CLOSED:
        return STEP_END
    if it.depth > MAX_DEPTH:
        fail(c, i, "nested too deep")
        return STEP_ERROR
    if i >= c.n:
        fail(c, i, "unterminated array")
        return STEP_ERROR
    if it.state == IT_AFTER:
        if c.p[i] == CH_COMMA:
            i = skip_ws(c, i + 1)
        elif c.p[i] == CH_RBRACKET:
            it.i = i + 1
            it.state = IT_CLOSED
            return STEP_END
        else:
            fail(c, i, "expected ',' or ']'")
            return STEP_ERROR
    elif c.p[i] == CH_RBRACKET:
        it.i = i + 1
        it.state = IT_CLOSED
        return STEP_END
    if i >= c.n:
        fail(c, i, "unterminated array")
        return STEP_ERROR
    it.i = i
    return STEP_ITEM


cdef inline int arr_next(Ctx* c, It* it, Val* v) noexcept:
    """Next element of an array, scanned into v: STEP_ITEM, STEP_END, STEP_ERROR."""
    cdef Py_ssize_t i = skip_ws(c, it.i)
    if it.state == IT_CLOSED:
        return STEP_END
    if i >= c.n:
        fail(c, i, "unterminated array")
        return STEP_ERROR
    if it.state == IT_AFTER:
        if c.p[i] == CH_COMMA:
            i += 1
        elif c.p[i] == CH_RBRACKET:
            it.i = i + 1
            it.state = IT_CLOSED
            return STEP_END
        else:
            fail(c, i, "expected ',' or ']'")
            return STEP_ERROR
    elif c.p[i] == CH_RBRACKET:
        it.i = i + 1
        it.state = IT_CLOSED
        return STEP_END
    i = scan_value(c, i, v, it.depth)
    if i < 0:
        return STEP_ERROR
    it.i = i
    it.state = IT_AFTER
    return STEP_ITEM


cdef inline void set_span(Val* v, Py_ssize_t s, Py_ssize_t e, int kind) noexcept:
    """v is the (already validated) value at s..e."""
    v.s = s
    v.e = e
    v.kind = kind
    v.esc = 0


# -- keys and string comparison --------------------------------------------------
cdef inline bint same_bytes(const unsigned char* a, const char* b, Py_ssize_t L) noexcept:
    """a[:L] == b[:L] for the short keys of exchange messages (a libc call costs more)."""
    cdef Py_ssize_t m
    for m in range(L):
        if a[m] != <unsigned char>b[m]:
            return False
    return True


cdef inline int key_find(const unsigned char* q, Py_ssize_t L, Keys* ks) noexcept:
    cdef int j
    if L == 0:
        return -1
    j = ks.first[q[0]]
    while j >= 0:
        if ks.len[j] == L and same_bytes(q, ks.name[j], L):
            return j
        j = ks.next[j]
    return -1


cdef inline int key_id(Ctx* c, Val* k, Keys* ks) noexcept:
    """Index of key k in ks, -1 if not one of them (escapes decoded: "\u0065" is "e")."""
    if k.esc:
        return key_id_esc(c, k, ks)
    return key_find(c.p + k.s, k.e - k.s, ks)


cdef inline Py_ssize_t collect(Ctx* c, Py_ssize_t i, int depth, Keys* ks, Val* out) noexcept:
    """Scan the object at i; out[j] gets the value of key ks.name[j] (J_NONE if absent)."""
    cdef It it
    cdef Val k, v
    cdef int r, j
    for j in range(ks.n):
        out[j].kind = J_NONE
    if obj_open(c, &it, i, depth) < 0:
        return -1
    while True:
        r = obj_next(c, &it, &k, &v)
        if r == STEP_END:
            return it.i
        if r == STEP_ERROR:
            return -1
        j = key_id(c, &k, ks)
        if j >= 0:
            if out[j].kind != J_NONE:
                return fail(c, k.s, "duplicate key")
            out[j] = v


cdef inline bint str_eq(Ctx* c, Val* v, const char* lit, Py_ssize_t L) noexcept:
    """v is the string lit (of length L, given so that no call needs strlen)."""
    if v.kind != J_STR:
        return False
    if v.esc:
        return str_eq_esc(c, v, lit, L)
    return v.e - v.s == L and same_bytes(c.p + v.s, lit, L)


# -- numbers and times ------------------------------------------------------------
cdef inline int read_num(Ctx* c, Val* v, double* out) except -1:
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
        return raise_at(c, v.s, "expected a number")
    if v.esc:
        return read_num_esc(c, v, out)
    if i < e and p[i] == CH_MINUS:
        return raise_at(c, v.s, "negative price or size")
    start = first = i
    # digits accumulate into m, which wraps past 19 significant digits: those
    # (counted below, only for long texts) take the slow path
    while i < e and is_digit(p[i]):
        m = m * 10 + (p[i] - CH_0)
        i += 1
    if i == start or (p[start] == CH_0 and i - start > 1):
        return raise_at(c, v.s, "expected a number")  # no digits, or a leading zero
    nd = i - start
    if i < e and p[i] == CH_DOT:
        i += 1
        start = i
        while i < e and is_digit(p[i]):
            m = m * 10 + (p[i] - CH_0)
            i += 1
        if i == start:
            return raise_at(c, v.s, "expected a number")
        dexp = <int>(start - i)
        nd += i - start
    if nd > 19:
        # leading zeros ("0.000...") are not significant
        while first < i and (p[first] == CH_0 or p[first] == CH_DOT):
            nd -= p[first] == CH_0
            first += 1
        big = nd > 19
    if i < e and (p[i] == CH_LOWER_E or p[i] == CH_UPPER_E):
        i += 1
        esgn = 1
        if i < e and (p[i] == CH_PLUS or p[i] == CH_MINUS):
            if p[i] == CH_MINUS:
                esgn = -1
            i += 1
        start = i
        x = 0
        while i < e and is_digit(p[i]):
            if x < 100000:
                x = x * 10 + (p[i] - CH_0)
            i += 1
        if i == start:
            return raise_at(c, v.s, "expected a number")
        dexp += esgn * x
        big = big or x >= 100000
    if i != e:
        return raise_at(c, v.s, "expected a number")
    if m == 0 and not big:
        out[0] = 0.0
        return 0
    if not big and m <= 9007199254740992ULL and -22 <= dexp <= 22:
        # both operands exact: one IEEE operation rounds correctly (Clinger)
        if dexp >= 0:
            r = <double>m * JSON_POW10[dexp]
        else:
            r = <double>m / JSON_POW10[-dexp]
    else:
        # correctly rounded; the text already matched the grammar above
        r = float(PyBytes_FromStringAndSize(<const char*>p + v.s, v.e - v.s))
    if not isfinite(r):
        return raise_at(c, v.s, "number out of range")
    out[0] = r
    return 0


cdef inline int read_int(Ctx* c, Val* v, int64_t* out) except -1:
    """int64 of a JSON integer or a quoted one (JSON's grammar: no leading zero)."""
    cdef Py_ssize_t i = v.s, e = v.e
    cdef uint64_t m = 0
    cdef int neg = 0
    if v.kind != J_STR and v.kind != J_NUM:
        return raise_at(c, v.s, "expected an integer")
    if v.esc:
        return read_int_esc(c, v, out)
    if i < e and c.p[i] == CH_MINUS:
        neg = 1
        i += 1
    if i >= e or e - i > 19 or (c.p[i] == CH_0 and e - i > 1):
        return raise_at(c, v.s, "expected an integer")
    while i < e:
        if not is_digit(c.p[i]):
            return raise_at(c, v.s, "expected an integer")
        m = m * 10 + (c.p[i] - CH_0)
        i += 1
    if m > 9223372036854775807ULL:
        return raise_at(c, v.s, "integer out of range")
    out[0] = -<int64_t>m if neg else <int64_t>m
    return 0


cdef inline bint read_int_quiet(Ctx* c, Val* v, int64_t* out) noexcept:
    """Like read_int but returns False instead of failing (ids that may not be numeric)."""
    cdef Py_ssize_t i = v.s, e = v.e
    cdef uint64_t m = 0
    if (v.kind != J_STR and v.kind != J_NUM) or v.esc or e - i < 1 or e - i > 18:
        return False
    while i < e:
        if not is_digit(c.p[i]):
            return False
        m = m * 10 + (c.p[i] - CH_0)
        i += 1
    out[0] = <int64_t>m
    return True


cdef inline int two_digits(const unsigned char* q, int* out) noexcept:
    if not (is_digit(q[0]) and is_digit(q[1])):
        return -1
    out[0] = (q[0] - CH_0) * 10 + (q[1] - CH_0)
    return 0


cdef inline int64_t days_from_civil(int64_t y, int64_t m, int64_t d) noexcept:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    cdef int64_t era = (y if y >= 0 else y - 399) // 400
    cdef int64_t yoe = y - era * 400
    cdef int64_t mp = m - 3 if m > 2 else m + 9
    cdef int64_t doy = (153 * mp + 2) // 5 + d - 1
    cdef int64_t doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146097 + doe - 719468


cdef inline int month_days(int y, int m) noexcept:
    if m == 2:
        return 29 if (y % 4 == 0 and (y % 100 != 0 or y % 400 == 0)) else 28
    if m == 4 or m == 6 or m == 9 or m == 11:
        return 30
    return 31


cdef inline int read_time_plain(Ctx* c, Val* v, int64_t* out) except -1:
    """read_time of a value without escapes."""
    cdef const unsigned char* q = c.p + v.s
    cdef Py_ssize_t L = v.e - v.s, k
    cdef int y, mo, d, h, mi, s, a, b, oh, om, sign
    cdef int64_t frac = 0
    cdef int nfrac = 0
    if v.kind != J_STR or v.esc or L < 20:
        return raise_at(c, v.s, "expected an RFC3339 time")
    # YYYY-MM-DDTHH:MM:SS (the separator may also be 't' or a space)
    if two_digits(q, &a) or two_digits(q + 2, &b) or q[4] != CH_MINUS \
            or two_digits(q + 5, &mo) or q[7] != CH_MINUS or two_digits(q + 8, &d) \
            or not (q[10] == CH_UPPER_T or q[10] == CH_LOWER_T or q[10] == CH_SPACE) \
            or two_digits(q + 11, &h) or q[13] != CH_COLON or two_digits(q + 14, &mi) \
            or q[16] != CH_COLON or two_digits(q + 17, &s):
        return raise_at(c, v.s, "expected an RFC3339 time")
    y = a * 100 + b
    if y < 1900 or y > 2200 or mo < 1 or mo > 12 or d < 1 or d > month_days(y, mo) or h > 23 \
            or mi > 59 or s > 60:
        return raise_at(c, v.s, "RFC3339 time out of range")
    k = 19
    if k < L and q[k] == CH_DOT:
        k += 1
        if k >= L or not is_digit(q[k]):
            return raise_at(c, v.s, "expected an RFC3339 time")
        while k < L and is_digit(q[k]):
            if nfrac < 9:
                frac = frac * 10 + (q[k] - CH_0)
                nfrac += 1
            k += 1
        frac *= JSON_POW10I[9 - nfrac]
    sign = 0
    oh = 0
    om = 0
    if k < L and (q[k] == CH_UPPER_Z or q[k] == CH_LOWER_Z):
        k += 1
    elif k + 6 == L and (q[k] == CH_PLUS or q[k] == CH_MINUS) and q[k + 3] == CH_COLON \
            and not two_digits(q + k + 1, &oh) and not two_digits(q + k + 4, &om) \
            and oh < 24 and om < 60:
        sign = 1 if q[k] == CH_PLUS else -1
        k += 6
    else:
        return raise_at(c, v.s, "expected an RFC3339 time zone")
    if k != L:
        return raise_at(c, v.s, "expected an RFC3339 time")
    out[0] = ((days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + s
               - sign * (oh * 3600 + om * 60)) * 1000000000 + frac)
    return 0


cdef inline int read_time(Ctx* c, Val* v, int64_t* out) except -1:
    """RFC3339 text (``2023-09-25T07:48:36.925533Z``) -> int64 ns since the epoch."""
    if v.esc:
        return read_time_esc(c, v, out)
    return read_time_plain(c, v, out)


cdef inline int64_t now_ns() noexcept:
    cdef timespec ts
    clock_gettime(CLOCK_REALTIME, &ts)
    return <int64_t>ts.tv_sec * 1000000000 + ts.tv_nsec
