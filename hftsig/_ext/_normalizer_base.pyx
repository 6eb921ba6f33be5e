"""Exchange messages -> Tick records: what every venue's normalizer shares.

Public API: :mod:`hftsig.market.normalize`.  One venue module per exchange
(``_normalize_binance`` ...) subclasses :class:`NormalizerBase` and parses a
frame with the inline JSON scanner of ``json_scan.pxd``; this module holds the
rest: the output chunk, symbol resolution, the description of the last message
and :meth:`NormalizerBase.parse`.

Records are written into a preallocated chunk of ``TICK_DTYPE`` and handed
out as views of it; a chunk is never written twice, so a returned batch stays
valid for as long as the caller keeps it.
"""
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE, PyBytes_FromStringAndSize, PyBytes_Check
from cpython.unicode cimport PyUnicode_Check
from cpython.ref cimport Py_INCREF
from libc.stdint cimport uint8_t
from libc.string cimport memcmp, memcpy, memset
from libc.math cimport NAN
cimport numpy as cnp

import json
import numpy as np

from hftsig.market import ticks as _ticks
from hftsig.market import symbols as _symbols
from hftsig._ext.json_scan import MalformedMessage

from hftsig._ext.tick cimport check_tick_layout
from hftsig._ext.json_scan cimport (
    J_STR, ESC_CAP, fail, raise_at, raise_recorded, expect_end, scan_value, skip_ws, unescaped,
    now_ns)

cnp.import_array()
check_tick_layout(_ticks)  # byte for byte TICK_DTYPE, same codes

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object, Py_ssize_t*) except NULL
    long long PyLong_AsLongLongAndOverflow(object, int*) except? -1

cdef extern from "numpy/arrayobject.h":
    object PyArray_NewFromDescr(void* subtype, void* descr, int nd, cnp.npy_intp* dims,
                                cnp.npy_intp* strides, void* data, int flags, void* obj)

_TYPE_NAMES = (None, "data", "heartbeat", "subscribed", "unsubscribed", "status", "error",
               "shutdown", "unknown")

cdef object _NDARRAY = np.ndarray


cdef class NormalizerBase:
    """Parser of one exchange's messages into tick records (the shared part).

    Not instantiated itself: :class:`hftsig.market.normalize.Normalizer` makes the
    venue's class (``BinanceNormalizer``...), each a subclass of this one.
    See :class:`hftsig.market.normalize.Normalizer` for the attributes.
    """

    def __init__(self, *args, **kwargs):
        raise TypeError("NormalizerBase is the venues' shared base: use "
                        "hftsig.market.normalize.Normalizer(exchange) or a venue's class")

    cdef int _setup(self, str exchange, int code, object symbols, object chunk_size) except -1:
        """State of a fresh normalizer of ``exchange`` (tick code ``code``)."""
        chunk_size = int(chunk_size)
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        self.exchange = exchange
        self._chunk_size = chunk_size
        self._descr = _ticks.TICK_DTYPE
        self._symbols = {}
        if symbols is not None:
            for raw, canon in dict(symbols).items():
                self._symbols[str(raw)] = _symbols.canonical(canon)
        self._symcache = {}
        self._cn = 0
        self._cnext = 0
        memset(&self._tmpl, 0, sizeof(Tick))
        self._tmpl.exchange = <uint8_t>code
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
        self.skipped = 0
        self._reset_last()
        return 0

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
        return PyBytes_FromStringAndSize(self._lsym, _strlen_sym(self._lsym)).decode("ascii")

    @property
    def precisions(self):
        """``{symbol: (price_precision, qty_precision)}`` the venue announced.

        Only Kraken announces them (its book checksum needs them, see
        ``KrakenNormalizer.precisions``); other venues have none: a new empty dict.
        """
        return {}

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

    cdef object _finish(self):
        cdef cnp.npy_intp n = self._pos - self._start
        if n == 0:
            return self._empty
        out = PyArray_NewFromDescr(<void*>_NDARRAY, <void*>self._descr, 1, &n, NULL,
                                   <void*>&self._buf[self._start], cnp.NPY_ARRAY_CARRAY, NULL)
        # PyArray_NewFromDescr stole a reference to the descriptor
        Py_INCREF(self._descr)
        cnp.set_array_base(out, self._chunk)
        self._start = self._pos
        return out

    # -- symbols ---------------------------------------------------------------
    cdef int _sym_miss(self, Ctx* c, Val* v, char* out) except -1:
        """_sym of a symbol not among the last SYM_CACHE ones (or escaped, or bad)."""
        cdef Py_ssize_t L = v.e - v.s
        cdef int k
        cdef const unsigned char* q = c.p + v.s
        if v.kind == J_STR and v.esc:
            return self._sym_esc(c, v, out)
        if v.kind != J_STR or L < 1 or L > SYM_RAW_MAX:
            return raise_at(c, v.s, "bad symbol")
        for k in range(self._cn):
            if self._crawlen[k] == L and memcmp(self._craw[k], q, L) == 0:
                memcpy(out, self._ccan[k], SYM_LEN)
                return 0
        raw = PyBytes_FromStringAndSize(<const char*>q, L)
        can = self._resolve(raw)
        k = self._cnext
        self._cnext = (k + 1) % SYM_CACHE
        if self._cn < SYM_CACHE:
            self._cn += 1
        memcpy(self._craw[k], q, L)
        self._crawlen[k] = <int>L
        memcpy(self._ccan[k], PyBytes_AS_STRING(can), SYM_LEN)
        memcpy(out, self._ccan[k], SYM_LEN)
        return 0

    cdef int _sym_esc(self, Ctx* c, Val* v, char* out) except -1:
        """_sym of a symbol written with escapes: "NKN\\u0055SDT" is NKNUSDT."""
        cdef Ctx tmp
        cdef Val tv
        cdef unsigned char buf[ESC_CAP]
        unescaped(c, v, &tmp, &tv, buf)
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
        out = canon.encode("ascii").ljust(SYM_LEN, b"\0")
        if len(self._symcache) > 4096:
            self._symcache.clear()
        self._symcache[raw] = out
        return out

    cdef int _sym_text(self, str text, char* out) except -1:
        can = self._resolve(text.encode("utf-8"))
        memcpy(out, PyBytes_AS_STRING(can), SYM_LEN)
        return 0

    cdef str _text(self, Ctx* c, Val* v):
        """The Python text of v (a string decoded, any other value as written)."""
        if v.kind != J_STR:
            return PyBytes_FromStringAndSize(<const char*>c.p + v.s, v.e - v.s).decode("utf-8")
        raw = PyBytes_FromStringAndSize(<const char*>c.p + v.s - 1, v.e - v.s + 2)
        return json.loads(raw) if v.esc else raw[1:len(raw) - 1].decode("utf-8")

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
            For malformed input (see :mod:`hftsig.market.normalize`: JSON's number
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
            tr = now_ns()
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
            self._parse_frame(&c, tr, symbol)
        except BaseException:
            self._pos = self._start
            raise
        return self._finish()

    cdef int _parse_frame(self, Ctx* c, int64_t tr, object symbol) except -1:
        """Parse the frame in c (receive time tr, ``parse``'s symbol): the venue's part."""
        raise NotImplementedError("a venue normalizer implements _parse_frame")

    cdef int _validate_any(self, Ctx* c) except -1:
        """Validate a top-level value that is not an object (-> unknown)."""
        cdef Val v
        if skip_ws(c, 0) >= c.n:
            fail(c, 0, "empty message")
            raise_recorded(c)
        expect_end(c, scan_value(c, 0, &v, 0))
        self._ltype = T_UNKNOWN
        return 0


cdef inline Py_ssize_t _strlen_sym(const char* s) noexcept:
    cdef Py_ssize_t k = 0
    while k < SYM_LEN and s[k] != 0:
        k += 1
    return k
