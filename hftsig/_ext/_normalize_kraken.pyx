"""Kraken WebSocket v2 messages -> Tick records (public API: :mod:`hftsig.market.normalize`).

``book``, ``ticker`` and ``trade`` data, ``heartbeat``, ``status``, the
method acknowledgements and ``instrument`` (the pairs' precisions, which the
book checksum needs).  Kraken sends ``channel`` and ``type`` before ``data``,
so the data items are parsed in place in one pass; any key order is still
understood.
"""
cimport cython
from cpython.bytes cimport PyBytes_FromStringAndSize
from libc.stdint cimport int8_t, int64_t, uint8_t, uint32_t
from libc.string cimport memcpy

import json

from hftsig.market import symbols as _symbols
from hftsig._ext.json_scan import MalformedMessage

from hftsig._ext.tick cimport (
    Tick, EX_KRAKEN, KIND_QUOTE, KIND_TRADE, KIND_BOOK_DELTA, KIND_BOOK_SNAPSHOT, FLAG_LAST,
    FLAG_SNAPSHOT_BEGIN)
from hftsig._ext.json_scan cimport (
    Ctx, Val, It, Keys, CH_LBRACE, CH_LBRACKET, J_NONE, J_STR, J_OBJ, J_ARR, J_TRUE, J_FALSE,
    MAX_KEYS, STEP_END, STEP_ERROR, fail, raise_recorded, make_keys, expect_end, skip_ws,
    scan_value, obj_open, obj_key, item_done, arr_at, arr_elem, set_span, collect, key_id,
    str_eq, read_num, read_int, read_time)
from hftsig._ext._normalizer_base cimport (
    NormalizerBase, SYM_LEN, T_HEARTBEAT, T_STATUS, T_UNKNOWN, T_SUBSCRIBED, T_UNSUBSCRIBED,
    T_ERROR)

# top level (the order fixes the indices below)
cdef Keys KR
make_keys(&KR, ("channel", "type", "data", "method", "success", "result", "error", "symbol"))
cdef enum:
    KR_channel, KR_type, KR_data, KR_method, KR_success, KR_result, KR_error, KR_symbol

# a data item (book, ticker or trade) and a method's result
cdef Keys KRI
make_keys(&KRI, ("symbol", "bids", "asks", "checksum", "timestamp", "bid", "bid_qty", "ask",
                 "ask_qty", "side", "price", "qty", "trade_id", "channel"))
cdef enum:
    KRI_symbol, KRI_bids, KRI_asks, KRI_checksum, KRI_timestamp, KRI_bid, KRI_bid_qty
    KRI_ask, KRI_ask_qty, KRI_side, KRI_price, KRI_qty, KRI_trade_id, KRI_channel

# a book level
cdef Keys KRL
make_keys(&KRL, ("price", "qty"))
cdef enum:
    KRL_price, KRL_qty

# the data channels (what the items of "data" are)
cdef enum:
    DATA_NONE = 0
    DATA_BOOK = 1
    DATA_TICKER = 2
    DATA_TRADE = 3

cdef int64_t MAX_CHECKSUM = 4294967295   # a CRC32
cdef int MAX_PRECISION = 18              # decimals of a pair's price or qty

cdef str S_BOOK = "book"
cdef str S_TICKER = "ticker"
cdef str S_TRADE = "trade"
cdef str S_HEARTBEAT = "heartbeat"
cdef str S_STATUS = "status"
cdef str S_INSTRUMENT = "instrument"


@cython.final
cdef class KrakenNormalizer(NormalizerBase):
    """Parser of Kraken WebSocket v2 messages into tick records.

    Parameters
    ----------
    symbols : dict, optional
        Extra ``{exchange symbol: canonical}`` pairs, looked up before the
        default tables.
    chunk_size : int
        Records per preallocated output chunk.

    Attributes
    ----------
    precisions : dict
        ``{symbol: (price_precision, qty_precision)}`` learnt from
        ``instrument`` messages, for the book checksum.

    Notes
    -----
    ``book`` -> ``KIND_BOOK_SNAPSHOT``/``KIND_BOOK_DELTA`` per level (the
    message's ``checksum`` on the last record of each symbol), ``ticker`` ->
    ``KIND_QUOTE``, ``trade`` -> ``KIND_TRADE`` (see :mod:`hftsig.market.normalize`
    and :class:`hftsig.market.normalize.Normalizer` for the attributes).

    Examples
    --------
    >>> n = KrakenNormalizer()
    >>> t = n.parse('{"channel":"trade","type":"update","data":[{"symbol":"MATIC/USD",'
    ...             '"side":"sell","price":0.5117,"qty":40.0,"ord_type":"market",'
    ...             '"trade_id":4665906,"timestamp":"2023-09-25T07:49:37.708706Z"}]}', 0)
    >>> t["symbol"][0], int(t["side"][0]), float(t["price"][0]), n.last_seq
    (np.bytes_(b'MATIC-USD'), -1, 0.5117, 4665906)
    """
    cdef dict _precisions

    def __init__(self, *, symbols=None, chunk_size=4096):
        self._setup("kraken", EX_KRAKEN, symbols, chunk_size)
        self._precisions = {}

    @property
    def precisions(self):
        """``{symbol: (price_precision, qty_precision)}`` from ``instrument`` messages."""
        return self._precisions

    @precisions.setter
    def precisions(self, dict value):
        self._precisions = value

    cdef int _parse_frame(self, Ctx* c, int64_t tr, object symbol) except -1:
        return self._kraken(c, tr)

    cdef int _data_kind(self, Ctx* c, Val* f, int* snapshot) except -1:
        """DATA_BOOK, DATA_TICKER, DATA_TRADE or DATA_NONE from the channel/type seen so far."""
        if f[KR_type].kind != J_STR:
            return DATA_NONE
        if str_eq(c, &f[KR_type], "snapshot", 8):
            snapshot[0] = 1
        elif str_eq(c, &f[KR_type], "update", 6):
            snapshot[0] = 0
        else:
            return DATA_NONE
        if str_eq(c, &f[KR_channel], "book", 4):
            return DATA_BOOK
        if str_eq(c, &f[KR_channel], "ticker", 6):
            return DATA_TICKER
        if str_eq(c, &f[KR_channel], "trade", 5):
            return DATA_TRADE
        return DATA_NONE

    cdef int _kraken(self, Ctx* c, int64_t tr) except -1:
        """Any Kraken message; data items in place when channel and type come first::

            {"channel":"book","type":"update","data":[{"symbol":"MATIC/USD",
             "bids":[{"price":0.5657,"qty":1098.3947558}],"asks":[],
             "checksum":2114181697,"timestamp":"2023-10-06T17:35:55.440295Z"}]}
        """
        cdef Val f[MAX_KEYS]
        cdef Val k, v
        cdef It it
        cdef Py_ssize_t i = skip_ws(c, 0), end, vs
        cdef int r, kid, kind = DATA_NONE, j, snapshot = 0
        cdef bint data_done = False
        if i >= c.n or c.p[i] != CH_LBRACE:
            return self._validate_any(c)
        for j in range(KR.n):
            f[j].kind = J_NONE
        if obj_open(c, &it, i, 0) < 0:
            raise_recorded(c)
        while True:
            r = obj_key(c, &it, &k)
            if r == STEP_END:
                break
            if r == STEP_ERROR:
                raise_recorded(c)
            kid = key_id(c, &k, &KR)
            if kid >= 0 and f[kid].kind != J_NONE:
                # a field given twice: which one the venue meant is unknowable
                fail(c, k.s, "duplicate key")
                raise_recorded(c)
            vs = skip_ws(c, it.i)
            if kid == KR_data and not data_done and vs < c.n and c.p[vs] == CH_LBRACKET:
                kind = self._data_kind(c, f, &snapshot)
                if kind != DATA_NONE:
                    # channel and type came first (as Kraken sends them): one pass
                    end = self._data(c, vs, kind, snapshot, tr, it.depth)
                    data_done = True
                    set_span(&f[kid], vs, end, J_ARR)
                    item_done(&it, end)
                    continue
            end = scan_value(c, it.i, &v, it.depth)
            if end < 0:
                raise_recorded(c)
            if kid >= 0:
                f[kid] = v
            item_done(&it, end)
        expect_end(c, it.i)
        if f[KR_method].kind == J_STR or f[KR_error].kind or f[KR_channel].kind != J_STR:
            self._pos = self._start  # not a data message after all
            return self._control(c, f)
        kind = self._data_kind(c, f, &snapshot)
        if str_eq(c, &f[KR_channel], "book", 4):
            self._lchan = S_BOOK
        elif str_eq(c, &f[KR_channel], "ticker", 6):
            self._lchan = S_TICKER
        elif str_eq(c, &f[KR_channel], "trade", 5):
            self._lchan = S_TRADE
        elif str_eq(c, &f[KR_channel], "heartbeat", 9):
            # {"channel":"heartbeat"}
            self._ltype = T_HEARTBEAT
            self._lchan = S_HEARTBEAT
            return 0
        elif str_eq(c, &f[KR_channel], "status", 6):
            self._ltype = T_STATUS
            self._lchan = S_STATUS
            return 0
        elif str_eq(c, &f[KR_channel], "instrument", 10):
            self._lchan = S_INSTRUMENT
            self._instrument(c)
            return 0
        else:
            self._ltype = T_UNKNOWN
            self._lchan = self._text(c, &f[KR_channel])
            return 0
        if kind == DATA_NONE:
            fail(c, f[KR_type].s if f[KR_type].kind else 0, "type must be snapshot or update")
            raise_recorded(c)
        if f[KR_data].kind != J_ARR:
            fail(c, f[KR_data].s if f[KR_data].kind else 0, "data must be an array")
            raise_recorded(c)
        if not data_done:
            self._data(c, f[KR_data].s, kind, snapshot, tr, 1)
        if kind != DATA_BOOK:  # book entries end with FLAG_LAST and their checksum already
            self._mark_runs(self._start)
        return 0

    cdef int _control(self, Ctx* c, Val* f) except -1:
        """A method's acknowledgement or an error::

            {"method":"subscribe","result":{"channel":"ticker","snapshot":true,
             "symbol":"ALGO/USD"},"success":true,"time_in":"2023-09-25T09:04:31.742599Z",
             "time_out":"2023-09-25T09:04:31.742648Z"}
        """
        cdef Val g[MAX_KEYS]
        if f[KR_method].kind == J_STR:
            ok = f[KR_success].kind == J_TRUE
            if str_eq(c, &f[KR_method], "subscribe", 9):
                self._ltype = T_SUBSCRIBED if ok else T_ERROR
            elif str_eq(c, &f[KR_method], "unsubscribe", 11):
                self._ltype = T_UNSUBSCRIBED if ok else T_ERROR
            elif str_eq(c, &f[KR_method], "pong", 4):
                self._ltype = T_HEARTBEAT
            elif f[KR_success].kind == J_FALSE:
                self._ltype = T_ERROR
            else:
                self._ltype = T_UNKNOWN
            if f[KR_error].kind == J_STR:
                self.last_error = self._text(c, &f[KR_error])
                self._ltype = T_ERROR
            if f[KR_result].kind == J_OBJ:
                if collect(c, f[KR_result].s, 1, &KRI, g) < 0:
                    raise_recorded(c)
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

    cdef int _try_last_symbol(self, Ctx* c, Val* v) except -1:
        """last_symbol from an acknowledgement, left unset if v is not a known symbol."""
        cdef char sym[SYM_LEN]
        try:
            self._sym(c, v, sym)
        except MalformedMessage:
            c.err = NULL
            return 0
        memcpy(self._lsym, sym, SYM_LEN)
        return 0

    cdef Py_ssize_t _data(self, Ctx* c, Py_ssize_t pos, int kind, int snapshot, int64_t tr,
                          int depth) except -1:
        """The items of the ``data`` array at pos, each an object of channel ``kind``."""
        cdef It ia
        cdef int r
        cdef Py_ssize_t end
        arr_at(&ia, pos, depth)
        while True:
            r = arr_elem(c, &ia)
            if r == STEP_END:
                return ia.i
            if r == STEP_ERROR:
                raise_recorded(c)
            if c.p[ia.i] != CH_LBRACE:
                fail(c, ia.i, "data item must be an object")
                raise_recorded(c)
            end = self._item(c, ia.i, kind, snapshot, tr, ia.depth)
            item_done(&ia, end)

    cdef Py_ssize_t _item(self, Ctx* c, Py_ssize_t pos, int kind, int snapshot, int64_t tr,
                          int depth) except -1:
        """One data item at pos (a book's levels parsed in place); return its end."""
        cdef Val g[MAX_KEYS]
        cdef Val k, v
        cdef It it
        cdef int r, kid, j
        cdef Py_ssize_t end, vs, first = self._pos - self._start
        for j in range(KRI.n):
            g[j].kind = J_NONE
        if obj_open(c, &it, pos, depth) < 0:
            raise_recorded(c)
        while True:
            r = obj_key(c, &it, &k)
            if r == STEP_END:
                break
            if r == STEP_ERROR:
                raise_recorded(c)
            kid = key_id(c, &k, &KRI)
            if kid >= 0 and g[kid].kind != J_NONE:
                # a field given twice: which one the venue meant is unknowable
                fail(c, k.s, "duplicate key")
                raise_recorded(c)
            if kind == DATA_BOOK and (kid == KRI_bids or kid == KRI_asks):
                vs = skip_ws(c, it.i)
                if vs >= c.n or c.p[vs] != CH_LBRACKET:
                    fail(c, vs, "bids/asks must be arrays")
                    raise_recorded(c)
                end = self._levels_at(c, vs, 1 if kid == KRI_bids else -1, it.depth)
                set_span(&g[kid], vs, end, J_ARR)
            else:
                end = scan_value(c, it.i, &v, it.depth)
                if end < 0:
                    raise_recorded(c)
                if kid >= 0:
                    g[kid] = v
            item_done(&it, end)
        if kind == DATA_BOOK:
            self._book(c, g, tr, snapshot, first)
        elif kind == DATA_TICKER:
            self._ticker(c, g, tr)
        else:
            self._trade(c, g, tr)
        return it.i

    cdef Py_ssize_t _levels_at(self, Ctx* c, Py_ssize_t pos, int8_t side,
                               int depth) except -1:
        """One record per level of the array at pos: ``[{"price":0.5666,"qty":4831.75}]``."""
        cdef It ia
        cdef Val h[2]
        cdef int r
        cdef Py_ssize_t end
        cdef Tick* t
        arr_at(&ia, pos, depth)
        while True:
            r = arr_elem(c, &ia)
            if r == STEP_END:
                return ia.i
            if r == STEP_ERROR:
                raise_recorded(c)
            end = collect(c, ia.i, ia.depth, &KRL, h)
            if end < 0:
                raise_recorded(c)
            if not h[KRL_price].kind or not h[KRL_qty].kind:
                fail(c, ia.i, "book level must be {price, qty}")
                raise_recorded(c)
            t = self._rec()
            t.side = side
            read_num(c, &h[KRL_price], &t.price)
            read_num(c, &h[KRL_qty], &t.size)
            item_done(&ia, end)

    cdef int _book(self, Ctx* c, Val* g, int64_t tr, int snapshot,
                   Py_ssize_t first) except -1:
        """Fill in the levels [first, pos) of one book item (already emitted)::

            {"symbol":"MATIC/USD","bids":[{"price":0.5666,"qty":4831.75496356}],
             "asks":[{"price":0.5668,"qty":4410.79769741}],"checksum":2439117997}
        """
        cdef char sym[SYM_LEN]
        cdef int64_t ts = tr, cks
        cdef Py_ssize_t j
        cdef Tick* t
        cdef uint8_t kind = KIND_BOOK_SNAPSHOT if snapshot else KIND_BOOK_DELTA
        if not g[KRI_symbol].kind:
            fail(c, 0, "book item lacks a symbol")
            raise_recorded(c)
        self._sym(c, &g[KRI_symbol], sym)
        if g[KRI_timestamp].kind:
            read_time(c, &g[KRI_timestamp], &ts)
        if g[KRI_checksum].kind:
            read_int(c, &g[KRI_checksum], &cks)
            if cks < 0 or cks > MAX_CHECKSUM:
                fail(c, g[KRI_checksum].s, "checksum out of range")
                raise_recorded(c)
            self._lcks = <uint32_t>cks
            self._has_cks = 1
        for j in range(self._start + first, self._pos):
            t = &self._buf[j]
            t.kind = kind
            t.ts_event = ts
            t.ts_recv = tr
            memcpy(t.symbol, sym, SYM_LEN)
        if self._pos > self._start + first:
            if snapshot:
                self._buf[self._start + first].flags |= FLAG_SNAPSHOT_BEGIN
            self._buf[self._pos - 1].flags |= FLAG_LAST
            if g[KRI_checksum].kind:
                self._buf[self._pos - 1].checksum = self._lcks
        memcpy(self._lsym, sym, SYM_LEN)
        return 0

    cdef int _ticker(self, Ctx* c, Val* g, int64_t tr) except -1:
        """One KIND_QUOTE (sizes optional)::

            {"symbol":"ALGO/USD","bid":0.10025,"bid_qty":740.0,"ask":0.10036,
             "ask_qty":1361.44813783,"last":0.10035,"timestamp":"2023-09-25T09:04:31.742648Z"}
        """
        cdef Tick* t
        if not (g[KRI_symbol].kind and g[KRI_bid].kind and g[KRI_ask].kind):
            fail(c, 0, "ticker item lacks symbol/bid/ask")
            raise_recorded(c)
        t = self._rec()
        t.kind = KIND_QUOTE
        t.ts_recv = tr
        t.ts_event = tr
        if g[KRI_timestamp].kind:
            read_time(c, &g[KRI_timestamp], &t.ts_event)
        self._sym(c, &g[KRI_symbol], t.symbol)
        read_num(c, &g[KRI_bid], &t.bid_px)
        read_num(c, &g[KRI_ask], &t.ask_px)
        if g[KRI_bid_qty].kind:
            read_num(c, &g[KRI_bid_qty], &t.bid_sz)
        if g[KRI_ask_qty].kind:
            read_num(c, &g[KRI_ask_qty], &t.ask_sz)
        memcpy(self._lsym, t.symbol, SYM_LEN)
        return 0

    cdef int _trade(self, Ctx* c, Val* g, int64_t tr) except -1:
        """One KIND_TRADE (``side`` is the taker's, ``seq`` the ``trade_id``)::

            {"symbol":"MATIC/USD","side":"sell","price":0.5117,"qty":40.0,"ord_type":"market",
             "trade_id":4665906,"timestamp":"2023-09-25T07:49:37.708706Z"}
        """
        cdef Tick* t
        if not (g[KRI_symbol].kind and g[KRI_price].kind and g[KRI_qty].kind
                and g[KRI_side].kind and g[KRI_timestamp].kind):
            fail(c, 0, "trade item lacks symbol/side/price/qty/timestamp")
            raise_recorded(c)
        t = self._rec()
        t.kind = KIND_TRADE
        t.ts_recv = tr
        read_time(c, &g[KRI_timestamp], &t.ts_event)
        self._sym(c, &g[KRI_symbol], t.symbol)
        read_num(c, &g[KRI_price], &t.price)
        read_num(c, &g[KRI_qty], &t.size)
        # Kraken's side is the taker's
        if str_eq(c, &g[KRI_side], "buy", 3):
            t.side = 1
        elif str_eq(c, &g[KRI_side], "sell", 4):
            t.side = -1
        else:
            fail(c, g[KRI_side].s, "side must be buy or sell")
            raise_recorded(c)
        if g[KRI_trade_id].kind:
            read_int(c, &g[KRI_trade_id], &t.seq)
            t.seq_first = t.seq
            self._lseq = t.seq
            self._lseq_first = t.seq
        memcpy(self._lsym, t.symbol, SYM_LEN)
        return 0

    cdef int _instrument(self, Ctx* c) except -1:
        """Precisions of the pairs of an ``instrument`` message into :attr:`precisions`::

            {"channel":"instrument","type":"snapshot","data":{"assets":[],"pairs":[
             {"symbol":"BTC/USD","base":"BTC","quote":"USD","price_precision":1,
              "qty_precision":8,"status":"online"}]}}

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
        self._precisions.update(found)
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


def _short_int(str text):
    """int of a JSON integer of up to 20 characters; longer ones stay text."""
    return int(text) if len(text) <= 20 else text


cdef inline bint _precision_ok(object x):
    """A Kraken price/qty precision: a number of decimals, 0..18 (never a bool or float)."""
    return type(x) is int and 0 <= x <= MAX_PRECISION
