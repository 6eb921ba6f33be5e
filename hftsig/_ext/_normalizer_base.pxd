# The part of every venue normalizer that is not about one venue: the output
# chunk of Tick records, symbol resolution, the description of the last
# message and the parse() entry point.  A venue module (_normalize_<venue>.pyx)
# subclasses NormalizerBase and implements _parse_frame.
from libc.stdint cimport int64_t, uint32_t
from libc.string cimport memcmp, memcpy
from hftsig._ext.tick cimport Tick, FLAG_LAST
from hftsig._ext.json_scan cimport Ctx, Val, J_STR

# message types (last_type)
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

cdef enum:
    SYM_CACHE = 8        # raw -> canonical symbols remembered without a dict lookup
    SYM_RAW_MAX = 31     # longest raw venue symbol
    SYM_LEN = 16         # bytes of Tick.symbol (canonical, NUL padded)


cdef class NormalizerBase:
    cdef readonly str exchange
    cdef Py_ssize_t _chunk_size
    cdef object _chunk
    cdef object _descr
    cdef Tick* _buf
    cdef Py_ssize_t _cap, _pos, _start
    cdef Tick _tmpl
    cdef dict _symcache
    cdef dict _symbols
    cdef char _craw[SYM_CACHE][SYM_RAW_MAX + 1]
    cdef int _crawlen[SYM_CACHE]
    cdef char _ccan[SYM_CACHE][SYM_LEN]
    cdef int _cn, _cnext
    cdef object _empty
    # description of the last message
    cdef int _ltype
    cdef object _lchan
    cdef int64_t _lseq, _lseq_first
    cdef uint32_t _lcks
    cdef int _has_cks
    cdef char _lsym[SYM_LEN]
    cdef public object last_error
    cdef readonly Py_ssize_t last_skipped
    cdef readonly Py_ssize_t skipped

    cdef int _setup(self, str exchange, int code, object symbols, object chunk_size) except -1
    cdef int _grow(self) except -1
    cdef object _finish(self)
    cdef int _sym_miss(self, Ctx* c, Val* v, char* out) except -1
    cdef int _sym_esc(self, Ctx* c, Val* v, char* out) except -1
    cdef bytes _resolve(self, bytes raw)
    cdef int _sym_text(self, str text, char* out) except -1
    cdef int _validate_any(self, Ctx* c) except -1
    cdef str _text(self, Ctx* c, Val* v)
    cdef int _parse_frame(self, Ctx* c, int64_t tr, object symbol) except -1

    # What runs once per message or per record is inline (a cdef class's other
    # methods are called through its vtable, also from the venue modules).

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

    # the next record of the chunk, a copy of the template
    cdef inline Tick* _rec(self) except NULL:
        cdef Tick* t
        if self._pos >= self._cap:
            self._grow()
        t = &self._buf[self._pos]
        t[0] = self._tmpl
        self._pos += 1
        return t

    cdef inline void _mark_runs(self, Py_ssize_t a) noexcept:
        """FLAG_LAST on the last record of each run of one symbol in records [a, pos)."""
        cdef Py_ssize_t j
        for j in range(a, self._pos):
            if j + 1 == self._pos or memcmp(self._buf[j].symbol, self._buf[j + 1].symbol,
                                            SYM_LEN):
                self._buf[j].flags |= FLAG_LAST

    # the canonical symbol (SYM_LEN bytes, NUL padded) of the venue's symbol v
    # into out: one of the last SYM_CACHE raw symbols here, the rest in _sym_miss
    cdef inline int _sym(self, Ctx* c, Val* v, char* out) except -1:
        cdef Py_ssize_t L = v.e - v.s
        cdef int k
        cdef const unsigned char* q = c.p + v.s
        if v.kind == J_STR and not v.esc and 1 <= L <= SYM_RAW_MAX:
            for k in range(self._cn):
                if self._crawlen[k] == L and memcmp(self._craw[k], q, L) == 0:
                    memcpy(out, self._ccan[k], SYM_LEN)
                    return 0
        return self._sym_miss(c, v, out)
