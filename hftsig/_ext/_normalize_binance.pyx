"""Binance spot messages -> Tick records (public API: :mod:`hftsig.market.normalize`).

The raw ``/ws`` streams (``bookTicker``, ``trade``, ``aggTrade``,
``depthUpdate``), combined-stream wrappers ``{"stream": .., "data": ..}``,
depth snapshots (REST ``/api/v3/depth`` bodies and ``@depthN`` partial books)
and the control messages.  Binance sends the event type ``e`` before the book
levels, so a ``depthUpdate``'s levels are parsed in place in one pass; any key
order is still understood.
"""
cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport int8_t, int64_t
from libc.string cimport memcpy

from hftsig.market import symbols as _symbols

from hftsig._ext.tick cimport (
    Tick, EX_BINANCE, KIND_QUOTE, KIND_TRADE, KIND_BOOK_DELTA, KIND_BOOK_SNAPSHOT, FLAG_LAST,
    FLAG_SNAPSHOT_BEGIN)
from hftsig._ext.json_scan cimport (
    Ctx, Val, It, Keys, CH_LBRACE, CH_LBRACKET, J_NONE, J_STR, J_OBJ, J_ARR, J_TRUE, J_FALSE,
    J_NULL, MAX_KEYS, STEP_END, STEP_ERROR, STEP_ITEM, fail, raise_at, raise_recorded,
    make_keys, expect_end, skip_ws, scan_value, obj_open, obj_key, item_done, arr_at, arr_elem,
    arr_next, set_span, key_id, str_eq, read_num, read_int)
from hftsig._ext._normalizer_base cimport (
    NormalizerBase, SYM_LEN, T_SHUTDOWN, T_UNKNOWN, T_SUBSCRIBED, T_ERROR)

# the top-level keys of every Binance message (the order fixes the indices below)
cdef Keys BN
make_keys(&BN, ("e", "E", "s", "u", "U", "b", "B", "a", "A", "p", "q", "t", "T", "m",
                "bids", "asks", "lastUpdateId", "stream", "data", "result", "id", "error",
                "code", "msg"))
cdef enum:
    BN_e, BN_E, BN_s, BN_u, BN_U, BN_b, BN_B, BN_a, BN_A, BN_p, BN_q, BN_t, BN_T, BN_m
    BN_bids, BN_asks, BN_lastUpdateId, BN_stream, BN_data, BN_result, BN_id, BN_error
    BN_code, BN_msg

# BinanceNormalizer._time_unit
cdef enum:
    TIME_AUTO = 0    # microseconds when >= AUTO_US_FROM, milliseconds below
    TIME_MS = 1
    TIME_US = 2

# 1e14 ms is the year 5138, 1e14 us 1973: "auto" tells them apart by magnitude
cdef int64_t AUTO_US_FROM = 100000000000000
# the largest ms / us times whose ns fit int64
cdef int64_t MAX_MS = 9223372036854
cdef int64_t MAX_US = 9223372036854775

_TIME_UNITS = {"auto": TIME_AUTO, "ms": TIME_MS, "us": TIME_US}

cdef str S_BOOKTICKER = "bookTicker"
cdef str S_TRADE = "trade"
cdef str S_AGGTRADE = "aggTrade"
cdef str S_DEPTHUPDATE = "depthUpdate"
cdef str S_DEPTH = "depth"
cdef str S_SERVER_SHUTDOWN = "serverShutdown"


@cython.final
cdef class BinanceNormalizer(NormalizerBase):
    """Parser of Binance spot messages into tick records.

    Parameters
    ----------
    symbols : dict, optional
        Extra ``{exchange symbol: canonical}`` pairs (e.g. from
        :func:`hftsig.market.symbols.parse_binance_exchange_info`), looked up before
        the default tables.
    time_unit : {"auto", "ms", "us"}
        Timestamp unit of the streams (``timeUnit=MICROSECOND`` streams send
        µs); ``"auto"`` takes values >= 1e14 as µs.
    chunk_size : int
        Records per preallocated output chunk.

    Notes
    -----
    ``bookTicker`` -> one ``KIND_QUOTE``, ``trade``/``aggTrade`` -> one
    ``KIND_TRADE``, ``depthUpdate`` -> ``KIND_BOOK_DELTA`` per level, depth
    snapshots -> ``KIND_BOOK_SNAPSHOT`` per level (see :mod:`hftsig.market.normalize`
    and :class:`hftsig.market.normalize.Normalizer` for the attributes).

    Examples
    --------
    >>> n = BinanceNormalizer()
    >>> t = n.parse(b'{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000",'
    ...             b'"a":"25.36520000","A":"40.66000000"}', ts_recv=0)
    >>> t["symbol"][0], float(t["bid_px"][0]), n.last_seq
    (np.bytes_(b'BNB-USDT'), 25.3519, 400900217)
    """
    cdef int _time_unit

    def __init__(self, *, symbols=None, time_unit="auto", chunk_size=4096):
        if time_unit not in _TIME_UNITS:
            raise ValueError(f"time_unit must be 'auto', 'ms' or 'us', got {time_unit!r}")
        self._setup("binance", EX_BINANCE, symbols, chunk_size)
        self._time_unit = _TIME_UNITS[time_unit]

    @property
    def time_unit(self):
        """Timestamp unit of the streams: ``"auto"``, ``"ms"`` or ``"us"``."""
        return ("auto", "ms", "us")[self._time_unit]

    cdef int _parse_frame(self, Ctx* c, int64_t tr, object symbol) except -1:
        self._binance(c, 0, tr, symbol, 0)
        return 0

    cdef int _bn_time(self, Ctx* c, Val* v, int64_t* out) except -1:
        """ns since the epoch of a Binance ms/us time; malformed unless 0 <= ns < 2**63."""
        cdef int64_t t
        read_int(c, v, &t)
        if self._time_unit == TIME_US or (self._time_unit == TIME_AUTO and t >= AUTO_US_FROM):
            if t < 0 or t > MAX_US:
                return raise_at(c, v.s, "time out of range")
            out[0] = t * 1000
        else:
            if t < 0 or t > MAX_MS:
                return raise_at(c, v.s, "time out of range")
            out[0] = t * 1000000
        return 0

    cdef Py_ssize_t _binance(self, Ctx* c, Py_ssize_t i, int64_t tr, object hint,
                             int depth) except -1:
        """Parse the Binance object at i (one pass where key order allows); return its end.

        Any message, e.g. the combined-stream wrapper (depth 0) whose payload
        (depth 1) is parsed in place when ``stream`` comes first::

            {"stream":"bnbusdt@bookTicker","data":{"u":400900217,"s":"BNBUSDT",
             "b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}}
        """
        cdef Val f[MAX_KEYS]
        cdef Val k, v
        cdef It it
        cdef Py_ssize_t end, vs
        cdef int kid, r, j
        cdef bint inner = False, bdone = False, adone = False
        cdef Py_ssize_t first = self._pos - self._start
        i = skip_ws(c, i)
        if depth == 0 and (i >= c.n or c.p[i] != CH_LBRACE):
            self._validate_any(c)
            return c.n
        for j in range(BN.n):
            f[j].kind = J_NONE
        if obj_open(c, &it, i, depth) < 0:
            raise_recorded(c)
        while True:
            r = obj_key(c, &it, &k)
            if r == STEP_END:
                break
            if r == STEP_ERROR:
                raise_recorded(c)
            kid = key_id(c, &k, &BN)
            if kid >= 0 and f[kid].kind != J_NONE:
                # a field given twice: which one the venue meant is unknowable
                fail(c, k.s, "duplicate key")
                raise_recorded(c)
            vs = skip_ws(c, it.i)
            if kid == BN_data and depth == 0 and not inner and f[BN_stream].kind == J_STR \
                    and vs < c.n and c.p[vs] == CH_LBRACE:
                # combined-stream wrapper, "stream" seen first: parse the payload in place
                c.ss = f[BN_stream].s
                c.se = f[BN_stream].e
                end = self._binance(c, vs, tr, hint, 1)
                inner = True
                set_span(&f[kid], vs, end, J_OBJ)
            elif (kid == BN_b or kid == BN_a) and vs < c.n and c.p[vs] == CH_LBRACKET \
                    and str_eq(c, &f[BN_e], "depthUpdate", 11):
                end = self._levels_at(c, vs, 1 if kid == BN_b else -1, it.depth)
                if kid == BN_b:
                    bdone = True
                else:
                    adone = True
                set_span(&f[kid], vs, end, J_ARR)
            else:
                end = scan_value(c, it.i, &v, it.depth)
                if end < 0:
                    raise_recorded(c)
                if kid >= 0:
                    f[kid] = v
            item_done(&it, end)
        end = it.i
        if depth == 0:
            expect_end(c, end)
        if inner:
            return end
        if f[BN_e].kind == J_STR:
            if str_eq(c, &f[BN_e], "trade", 5) or str_eq(c, &f[BN_e], "aggTrade", 8):
                self._trade(c, f, tr)
            elif str_eq(c, &f[BN_e], "depthUpdate", 11):
                self._depth_update(c, f, tr, first, bdone, adone)
            elif str_eq(c, &f[BN_e], "bookTicker", 10):
                self._book_ticker(c, f, tr)
            elif str_eq(c, &f[BN_e], "serverShutdown", 14):
                self._ltype = T_SHUTDOWN
                self._lchan = S_SERVER_SHUTDOWN
            else:
                self._ltype = T_UNKNOWN
                self._lchan = self._text(c, &f[BN_e])
            return end
        if f[BN_s].kind and (f[BN_u].kind or f[BN_b].kind or f[BN_B].kind or f[BN_a].kind
                             or f[BN_A].kind):
            # a bookTicker (the only stream without "e"): every field is required
            self._book_ticker(c, f, tr)
        elif depth == 0 and f[BN_stream].kind == J_STR and f[BN_data].kind == J_OBJ:
            c.ss = f[BN_stream].s
            c.se = f[BN_stream].e
            self._binance(c, f[BN_data].s, tr, hint, 1)
        elif f[BN_lastUpdateId].kind and f[BN_bids].kind == J_ARR and f[BN_asks].kind == J_ARR:
            self._snapshot(c, f, tr, hint)
        elif f[BN_id].kind and f[BN_result].kind:
            # {"result":null,"id":1}
            self._ltype = T_SUBSCRIBED if f[BN_result].kind == J_NULL else T_UNKNOWN
        elif f[BN_error].kind or (f[BN_code].kind and f[BN_msg].kind):
            # {"code":-1121,"msg":"Invalid symbol."}
            self._ltype = T_ERROR
            self.last_error = PyBytes_FromStringAndSize(<const char*>c.p + i, end - i).decode(
                "utf-8", "replace")
        else:
            self._ltype = T_UNKNOWN
        return end

    cdef int _book_ticker(self, Ctx* c, Val* f, int64_t tr) except -1:
        """One KIND_QUOTE (``ts_event`` = receive time unless the frame has ``E``)::

            {"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000",
             "a":"25.36520000","A":"40.66000000"}
        """
        cdef Tick* t
        if not (f[BN_u].kind and f[BN_s].kind and f[BN_b].kind and f[BN_B].kind and f[BN_a].kind
                and f[BN_A].kind):
            fail(c, 0, "bookTicker lacks u/s/b/B/a/A")
            raise_recorded(c)
        self._lchan = S_BOOKTICKER
        t = self._rec()
        t.kind = KIND_QUOTE
        t.ts_recv = tr
        t.ts_event = tr
        if f[BN_E].kind:
            self._bn_time(c, &f[BN_E], &t.ts_event)
        self._sym(c, &f[BN_s], t.symbol)
        read_num(c, &f[BN_b], &t.bid_px)
        read_num(c, &f[BN_B], &t.bid_sz)
        read_num(c, &f[BN_a], &t.ask_px)
        read_num(c, &f[BN_A], &t.ask_sz)
        read_int(c, &f[BN_u], &t.seq)
        t.seq_first = t.seq
        t.flags = FLAG_LAST
        self._lseq = t.seq
        self._lseq_first = t.seq
        memcpy(self._lsym, t.symbol, SYM_LEN)
        return 0

    cdef int _trade(self, Ctx* c, Val* f, int64_t tr) except -1:
        """One KIND_TRADE of a ``trade`` (id ``t``) or ``aggTrade`` (id ``a``)::

            {"e":"trade","E":1672515782136,"s":"BNBBTC","t":12345,"p":"0.001","q":"100",
             "b":88,"a":50,"T":1672515782136,"m":true,"M":true}
        """
        cdef Tick* t
        cdef Val* idv
        cdef bint agg = str_eq(c, &f[BN_e], "aggTrade", 8)
        idv = &f[BN_a] if agg else &f[BN_t]
        if not (f[BN_s].kind and f[BN_p].kind and f[BN_q].kind and idv.kind
                and (f[BN_T].kind or f[BN_E].kind)):
            fail(c, 0, "trade lacks s/p/q/id/T")
            raise_recorded(c)
        if f[BN_m].kind != J_TRUE and f[BN_m].kind != J_FALSE:
            fail(c, f[BN_m].s, "trade field m must be true or false")
            raise_recorded(c)
        self._lchan = S_AGGTRADE if agg else S_TRADE
        t = self._rec()
        t.kind = KIND_TRADE
        t.ts_recv = tr
        self._bn_time(c, &f[BN_T] if f[BN_T].kind else &f[BN_E], &t.ts_event)
        self._sym(c, &f[BN_s], t.symbol)
        read_num(c, &f[BN_p], &t.price)
        read_num(c, &f[BN_q], &t.size)
        read_int(c, idv, &t.seq)
        t.seq_first = t.seq
        # m: the buyer was the maker, so the taker sold
        t.side = -1 if f[BN_m].kind == J_TRUE else 1
        t.flags = FLAG_LAST
        self._lseq = t.seq
        self._lseq_first = t.seq
        memcpy(self._lsym, t.symbol, SYM_LEN)
        return 0

    cdef Py_ssize_t _levels_at(self, Ctx* c, Py_ssize_t pos, int8_t side,
                               int depth) except -1:
        """One record per level of the array at pos (price/size/side only): ``[["0.0024","10"]]``.

        A level is ``[price, quantity]``; elements after the quantity are ignored.
        """
        cdef It ia, il
        cdef Val pv, qv, rest
        cdef int r
        cdef Tick* t
        arr_at(&ia, pos, depth)
        while True:
            r = arr_elem(c, &ia)
            if r == STEP_END:
                return ia.i
            if r == STEP_ERROR:
                raise_recorded(c)
            if c.p[ia.i] != CH_LBRACKET:
                fail(c, ia.i, "book level must be [price, quantity]")
                raise_recorded(c)
            arr_at(&il, ia.i, ia.depth)
            if arr_next(c, &il, &pv) != STEP_ITEM or arr_next(c, &il, &qv) != STEP_ITEM:
                fail(c, ia.i, "book level must be [price, quantity]")
                raise_recorded(c)
            while True:
                r = arr_next(c, &il, &rest)
                if r == STEP_END:
                    break
                if r == STEP_ERROR:
                    raise_recorded(c)
            t = self._rec()
            t.side = side
            read_num(c, &pv, &t.price)
            read_num(c, &qv, &t.size)
            item_done(&ia, il.i)

    cdef int _depth_update(self, Ctx* c, Val* f, int64_t tr, Py_ssize_t first, bint bdone,
                           bint adone) except -1:
        """KIND_BOOK_DELTA per level (levels parsed in place when ``e`` came first)::

            {"e":"depthUpdate","E":1672515782136,"s":"BNBBTC","U":157,"u":160,
             "b":[["0.0024","10"]],"a":[["0.0026","100"]]}
        """
        cdef int64_t x, u, U
        cdef char sym[SYM_LEN]
        cdef Py_ssize_t j
        cdef Tick* t
        if not (f[BN_s].kind and f[BN_E].kind and f[BN_u].kind and f[BN_U].kind
                and f[BN_b].kind == J_ARR and f[BN_a].kind == J_ARR):
            fail(c, 0, "depthUpdate lacks s/E/U/u/b/a")
            raise_recorded(c)
        self._lchan = S_DEPTHUPDATE
        self._bn_time(c, &f[BN_E], &x)
        read_int(c, &f[BN_u], &u)
        read_int(c, &f[BN_U], &U)
        self._sym(c, &f[BN_s], sym)
        if not bdone:
            self._levels_at(c, f[BN_b].s, 1, 1)
        if not adone:
            self._levels_at(c, f[BN_a].s, -1, 1)
        for j in range(self._start + first, self._pos):
            t = &self._buf[j]
            t.kind = KIND_BOOK_DELTA
            t.ts_event = x
            t.ts_recv = tr
            memcpy(t.symbol, sym, SYM_LEN)
            t.seq = u
            t.seq_first = U
        if self._pos > self._start + first:
            self._buf[self._pos - 1].flags |= FLAG_LAST
        self._lseq = u
        self._lseq_first = U
        memcpy(self._lsym, sym, SYM_LEN)
        return 0

    cdef int _snapshot(self, Ctx* c, Val* f, int64_t tr, object hint) except -1:
        """KIND_BOOK_SNAPSHOT per level of a REST depth body or an ``@depthN`` stream::

            {"lastUpdateId":1027024,"bids":[["4.00000000","431.00000000"]],
             "asks":[["4.00000200","12.00000000"]]}

        The body names no symbol: it comes from the combined stream's name
        (``bnbbtc@depth5``) or from ``parse(..., symbol=)``.
        """
        cdef int64_t u
        cdef char sym[SYM_LEN]
        cdef Py_ssize_t first = self._pos - self._start, j
        cdef Tick* t
        if c.ss >= 0:  # a combined stream name: "bnbbtc@depth5"
            hint = PyBytes_FromStringAndSize(<const char*>c.p + c.ss, c.se - c.ss)
            hint = hint.split(b"@")[0].decode("ascii", "replace").upper()
        elif hint is None:
            fail(c, 0, "depth snapshot carries no symbol: pass symbol=")
            raise_recorded(c)
        else:
            hint = str(hint)
            if "-" in hint:
                hint = _symbols.from_canonical("binance", hint)
        self._sym_text(hint, sym)
        read_int(c, &f[BN_lastUpdateId], &u)
        self._lchan = S_DEPTH
        self._levels_at(c, f[BN_bids].s, 1, 1)
        self._levels_at(c, f[BN_asks].s, -1, 1)
        for j in range(self._start + first, self._pos):
            t = &self._buf[j]
            t.kind = KIND_BOOK_SNAPSHOT
            t.ts_event = tr
            t.ts_recv = tr
            memcpy(t.symbol, sym, SYM_LEN)
            t.seq = u
            t.seq_first = u
        if self._pos > self._start + first:
            self._buf[self._start + first].flags |= FLAG_SNAPSHOT_BEGIN
            self._buf[self._pos - 1].flags |= FLAG_LAST
        self._lseq = u
        self._lseq_first = u
        memcpy(self._lsym, sym, SYM_LEN)
        return 0
