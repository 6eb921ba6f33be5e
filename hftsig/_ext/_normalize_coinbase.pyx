"""Coinbase Advanced Trade messages -> Tick records (public API: :mod:`hftsig.market.normalize`).

``l2_data``, ``ticker``/``ticker_batch`` and ``market_trades`` events,
``heartbeats``, ``subscriptions``, ``status`` and errors.  Coinbase sends
``channel`` before ``events``, so the events are parsed in place in one pass;
the envelope's ``timestamp`` and ``sequence_num`` may follow them and are
filled in at the end.
"""
cimport cython
from libc.stdint cimport INT64_MIN, int64_t
from libc.string cimport memcpy

from hftsig._ext.tick cimport (
    Tick, EX_COINBASE, KIND_QUOTE, KIND_TRADE, KIND_BOOK_DELTA, KIND_BOOK_SNAPSHOT,
    FLAG_SNAPSHOT_BEGIN)
from hftsig._ext.json_scan cimport (
    Ctx, Val, It, Keys, CH_LBRACE, CH_LBRACKET, J_NONE, J_STR, J_ARR, MAX_KEYS, STEP_END,
    STEP_ERROR, fail, raise_recorded, make_keys, expect_end, skip_ws, scan_value, obj_open,
    obj_key, item_done, arr_at, arr_elem, set_span, collect, key_id, str_eq, read_num, read_int,
    read_int_quiet, read_time)
from hftsig._ext._normalizer_base cimport (
    NormalizerBase, SYM_LEN, T_HEARTBEAT, T_SUBSCRIBED, T_STATUS, T_UNKNOWN, T_ERROR)

# the envelope (the order fixes the indices below)
cdef Keys CB
make_keys(&CB, ("channel", "timestamp", "sequence_num", "events", "type", "message"))
cdef enum:
    CB_channel, CB_timestamp, CB_sequence_num, CB_events, CB_type, CB_message

# an event and the entries of its updates/tickers/trades
cdef Keys CBE
make_keys(&CBE, ("type", "product_id", "updates", "tickers", "trades", "side", "event_time",
                 "price_level", "new_quantity", "best_bid", "best_bid_quantity", "best_ask",
                 "best_ask_quantity", "price", "size", "trade_id", "time"))
cdef enum:
    CBE_type, CBE_product_id, CBE_updates, CBE_tickers, CBE_trades, CBE_side, CBE_event_time
    CBE_price_level, CBE_new_quantity, CBE_best_bid, CBE_best_bid_quantity, CBE_best_ask
    CBE_best_ask_quantity, CBE_price, CBE_size, CBE_trade_id, CBE_time

# the data channels (what the events hold)
cdef enum:
    FEED_NONE = 0
    FEED_L2 = 1        # l2_data: updates
    FEED_TICKER = 2    # ticker, ticker_batch: tickers
    FEED_TRADES = 3    # market_trades: trades

# ts_event of a record whose event carries no time: the envelope's, set at the end
cdef int64_t TS_UNSET = INT64_MIN

cdef str S_L2 = "l2_data"
cdef str S_MARKET_TRADES = "market_trades"
cdef str S_HEARTBEATS = "heartbeats"
cdef str S_SUBSCRIPTIONS = "subscriptions"
cdef str S_STATUS = "status"


@cython.final
cdef class CoinbaseNormalizer(NormalizerBase):
    """Parser of Coinbase Advanced Trade messages into tick records.

    Parameters
    ----------
    symbols : dict, optional
        Extra ``{exchange symbol: canonical}`` pairs, looked up before the
        default tables.
    chunk_size : int
        Records per preallocated output chunk.

    Notes
    -----
    ``l2_data`` -> book records (``seq`` = ``sequence_num``), ``ticker`` ->
    ``KIND_QUOTE``, ``market_trades`` -> ``KIND_TRADE`` with the aggressor's
    side (see :mod:`hftsig.market.normalize` and :class:`hftsig.market.normalize.Normalizer`
    for the attributes).

    Examples
    --------
    >>> n = CoinbaseNormalizer()
    >>> msg = ('{"channel":"l2_data","timestamp":"2023-02-09T20:32:50.714964855Z",'
    ...        '"sequence_num":7,"events":[{"type":"update","product_id":"BTC-USD",'
    ...        '"updates":[{"side":"offer","event_time":"2023-02-09T20:32:50.714964855Z",'
    ...        '"price_level":"21921.74","new_quantity":"0"}]}]}')
    >>> t = n.parse(msg, ts_recv=0)
    >>> int(t["side"][0]), float(t["price"][0]), float(t["size"][0]), n.last_seq
    (-1, 21921.74, 0.0, 7)
    """

    def __init__(self, *, symbols=None, chunk_size=4096):
        self._setup("coinbase", EX_COINBASE, symbols, chunk_size)

    cdef int _parse_frame(self, Ctx* c, int64_t tr, object symbol) except -1:
        return self._coinbase(c, tr)

    cdef int _feed(self, Ctx* c, Val* f) except -1:
        """FEED_L2, FEED_TICKER, FEED_TRADES or FEED_NONE of the channel seen so far."""
        if str_eq(c, &f[CB_channel], "l2_data", 7):
            return FEED_L2
        if str_eq(c, &f[CB_channel], "ticker", 6) or str_eq(c, &f[CB_channel], "ticker_batch", 12):
            return FEED_TICKER
        if str_eq(c, &f[CB_channel], "market_trades", 13):
            return FEED_TRADES
        return FEED_NONE

    cdef int _coinbase(self, Ctx* c, int64_t tr) except -1:
        """Any Coinbase message; its events in place when ``channel`` comes first::

            {"channel":"l2_data","client_id":"","timestamp":"2023-02-09T20:32:50.714964855Z",
             "sequence_num":0,"events":[{"type":"snapshot","product_id":"BTC-USD","updates":[
             {"side":"bid","event_time":"1970-01-01T00:00:00Z","price_level":"21921.73",
              "new_quantity":"0.06317902"}]}]}
        """
        cdef Val f[MAX_KEYS]
        cdef Val k, v
        cdef It it
        cdef Py_ssize_t i = skip_ws(c, 0), end, vs, first = self._pos - self._start, j
        cdef int r, kid, kind = FEED_NONE
        cdef int64_t ts = tr, seq = -1
        cdef bint events_done = False
        cdef Tick* t
        if i >= c.n or c.p[i] != CH_LBRACE:
            return self._validate_any(c)
        for j in range(CB.n):
            f[j].kind = J_NONE
        if obj_open(c, &it, i, 0) < 0:
            raise_recorded(c)
        while True:
            r = obj_key(c, &it, &k)
            if r == STEP_END:
                break
            if r == STEP_ERROR:
                raise_recorded(c)
            kid = key_id(c, &k, &CB)
            if kid >= 0 and f[kid].kind != J_NONE:
                # a field given twice: which one the venue meant is unknowable
                fail(c, k.s, "duplicate key")
                raise_recorded(c)
            vs = skip_ws(c, it.i)
            if kid == CB_events and not events_done and vs < c.n and c.p[vs] == CH_LBRACKET:
                kind = self._feed(c, f)
                if kind != FEED_NONE:
                    end = self._events(c, vs, kind, tr, it.depth)
                    events_done = True
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
        if str_eq(c, &f[CB_type], "error", 5):
            # {"type":"error","message":"Failed to subscribe"}
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
            read_int(c, &f[CB_sequence_num], &seq)
            self._lseq = seq
            self._lseq_first = seq
        if f[CB_timestamp].kind:
            read_time(c, &f[CB_timestamp], &ts)
        kind = self._feed(c, f)
        if kind == FEED_L2:
            self._lchan = S_L2
        elif kind == FEED_TICKER:
            self._lchan = self._text(c, &f[CB_channel])
        elif kind == FEED_TRADES:
            self._lchan = S_MARKET_TRADES
        elif str_eq(c, &f[CB_channel], "heartbeats", 10):
            self._ltype = T_HEARTBEAT
            self._lchan = S_HEARTBEATS
            return 0
        elif str_eq(c, &f[CB_channel], "subscriptions", 13):
            self._ltype = T_SUBSCRIBED
            self._lchan = S_SUBSCRIPTIONS
            return 0
        elif str_eq(c, &f[CB_channel], "status", 6):
            self._ltype = T_STATUS
            self._lchan = S_STATUS
            return 0
        else:
            self._ltype = T_UNKNOWN
            self._lchan = self._text(c, &f[CB_channel])
            return 0
        if f[CB_events].kind != J_ARR:
            fail(c, f[CB_events].s if f[CB_events].kind else 0, "events must be an array")
            raise_recorded(c)
        if not events_done:
            self._events(c, f[CB_events].s, kind, tr, 1)
        # envelope fields known only now: its time where the event has none, its sequence
        for j in range(self._start + first, self._pos):
            t = &self._buf[j]
            if t.ts_event == TS_UNSET:
                t.ts_event = ts
            if kind != FEED_TRADES:
                t.seq = seq
                t.seq_first = seq
        self._mark_runs(self._start + first)
        return 0

    cdef Py_ssize_t _events(self, Ctx* c, Py_ssize_t pos, int kind, int64_t tr,
                            int depth) except -1:
        """The events of the array at pos, each an object of channel ``kind``."""
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
                fail(c, ia.i, "event must be an object")
                raise_recorded(c)
            end = self._event(c, ia.i, kind, tr, ia.depth)
            item_done(&ia, end)

    cdef Py_ssize_t _event(self, Ctx* c, Py_ssize_t pos, int kind, int64_t tr,
                           int depth) except -1:
        """One event at pos, its list parsed in place; return its end::

            {"type":"snapshot","product_id":"BTC-USD","updates":[{"side":"bid",
             "event_time":"1970-01-01T00:00:00Z","price_level":"21921.73",
             "new_quantity":"0.06317902"}]}
        """
        cdef Val ev[MAX_KEYS]
        cdef Val k, v
        cdef It it
        cdef int r, kid, j, want
        cdef Py_ssize_t end, vs, first = self._pos - self._start
        cdef char sym[SYM_LEN]
        cdef Tick* t
        cdef bint snapshot
        want = CBE_updates if kind == FEED_L2 else (
            CBE_tickers if kind == FEED_TICKER else CBE_trades)
        for j in range(CBE.n):
            ev[j].kind = J_NONE
        if obj_open(c, &it, pos, depth) < 0:
            raise_recorded(c)
        while True:
            r = obj_key(c, &it, &k)
            if r == STEP_END:
                break
            if r == STEP_ERROR:
                raise_recorded(c)
            kid = key_id(c, &k, &CBE)
            if kid >= 0 and ev[kid].kind != J_NONE:
                # a field given twice: which one the venue meant is unknowable
                fail(c, k.s, "duplicate key")
                raise_recorded(c)
            if kid == want:
                vs = skip_ws(c, it.i)
                if vs >= c.n or c.p[vs] != CH_LBRACKET:
                    fail(c, vs, "updates/tickers/trades must be an array")
                    raise_recorded(c)
                end = self._list_at(c, vs, kind, tr, it.depth)
                set_span(&ev[kid], vs, end, J_ARR)
            else:
                end = scan_value(c, it.i, &v, it.depth)
                if end < 0:
                    raise_recorded(c)
                if kid >= 0:
                    ev[kid] = v
            item_done(&it, end)
        if ev[want].kind != J_ARR:
            fail(c, pos, "event lacks updates/tickers/trades")
            raise_recorded(c)
        if kind == FEED_L2:
            snapshot = str_eq(c, &ev[CBE_type], "snapshot", 8)
            if not snapshot and not str_eq(c, &ev[CBE_type], "update", 6):
                fail(c, ev[CBE_type].s, "l2_data event type must be snapshot or update")
                raise_recorded(c)
            if not ev[CBE_product_id].kind:
                fail(c, pos, "l2_data event lacks product_id")
                raise_recorded(c)
            self._sym(c, &ev[CBE_product_id], sym)
            for j in range(self._start + first, self._pos):
                t = &self._buf[j]
                t.kind = KIND_BOOK_SNAPSHOT if snapshot else KIND_BOOK_DELTA
                memcpy(t.symbol, sym, SYM_LEN)
            if snapshot and self._pos > self._start + first:
                self._buf[self._start + first].flags |= FLAG_SNAPSHOT_BEGIN
            memcpy(self._lsym, sym, SYM_LEN)
        return it.i

    cdef Py_ssize_t _list_at(self, Ctx* c, Py_ssize_t pos, int kind, int64_t tr,
                             int depth) except -1:
        """The entries of the updates/tickers/trades array at pos, one record each."""
        cdef It ia
        cdef Val h[MAX_KEYS]
        cdef int r
        cdef Py_ssize_t end
        arr_at(&ia, pos, depth)
        while True:
            r = arr_elem(c, &ia)
            if r == STEP_END:
                return ia.i
            if r == STEP_ERROR:
                raise_recorded(c)
            end = collect(c, ia.i, ia.depth, &CBE, h)
            if end < 0:
                raise_recorded(c)
            if kind == FEED_L2:
                self._update(c, h, tr, ia.i)
            elif kind == FEED_TICKER:
                self._ticker(c, h, tr, ia.i)
            else:
                self._trade(c, h, tr, ia.i)
            item_done(&ia, end)

    cdef int _update(self, Ctx* c, Val* h, int64_t tr, Py_ssize_t pos) except -1:
        """One book level of an l2_data event (kind and symbol filled in by _event)::

            {"side":"offer","event_time":"2023-02-09T20:32:50.714964855Z",
             "price_level":"21921.74","new_quantity":"0"}
        """
        cdef Tick* t
        cdef int64_t et
        if not (h[CBE_side].kind and h[CBE_price_level].kind and h[CBE_new_quantity].kind):
            fail(c, pos, "update must have side/price_level/new_quantity")
            raise_recorded(c)
        t = self._rec()
        if str_eq(c, &h[CBE_side], "bid", 3):
            t.side = 1
        elif str_eq(c, &h[CBE_side], "offer", 5) or str_eq(c, &h[CBE_side], "ask", 3):
            t.side = -1
        else:
            fail(c, h[CBE_side].s, "side must be bid or offer")
            raise_recorded(c)
        t.ts_recv = tr
        t.ts_event = TS_UNSET
        if h[CBE_event_time].kind:
            read_time(c, &h[CBE_event_time], &et)
            # snapshot levels carry the zero time: keep the envelope's
            if et > 0:
                t.ts_event = et
        read_num(c, &h[CBE_price_level], &t.price)
        read_num(c, &h[CBE_new_quantity], &t.size)
        return 0

    cdef int _ticker(self, Ctx* c, Val* h, int64_t tr, Py_ssize_t pos) except -1:
        """One KIND_QUOTE, none for a ticker_batch entry (which has no best bid/ask)::

            {"type":"ticker","product_id":"BTC-USD","price":"21932.98",
             "best_bid":"21931.98","best_bid_quantity":"8000.21","best_ask":"21933.98",
             "best_ask_quantity":"8038.07770938"}
        """
        cdef Tick* t
        if not h[CBE_product_id].kind:
            fail(c, pos, "ticker must have a product_id")
            raise_recorded(c)
        if not (h[CBE_best_bid].kind and h[CBE_best_ask].kind):
            return 0  # ticker_batch leaves out the book: no quote to make
        t = self._rec()
        t.kind = KIND_QUOTE
        t.ts_recv = tr
        t.ts_event = TS_UNSET
        self._sym(c, &h[CBE_product_id], t.symbol)
        read_num(c, &h[CBE_best_bid], &t.bid_px)
        read_num(c, &h[CBE_best_ask], &t.ask_px)
        if h[CBE_best_bid_quantity].kind:
            read_num(c, &h[CBE_best_bid_quantity], &t.bid_sz)
        if h[CBE_best_ask_quantity].kind:
            read_num(c, &h[CBE_best_ask_quantity], &t.ask_sz)
        memcpy(self._lsym, t.symbol, SYM_LEN)
        return 0

    cdef int _trade(self, Ctx* c, Val* h, int64_t tr, Py_ssize_t pos) except -1:
        """One KIND_TRADE with the aggressor's side (the venue gives the maker's)::

            {"trade_id":"000000000","product_id":"ETH-USD","price":"1260.01","size":"0.3",
             "side":"BUY","time":"2019-08-14T20:42:27.265Z"}
        """
        cdef Tick* t
        cdef int64_t tid
        if not (h[CBE_product_id].kind and h[CBE_price].kind and h[CBE_size].kind
                and h[CBE_side].kind and h[CBE_time].kind):
            fail(c, pos, "trade must have product_id/price/size/side/time")
            raise_recorded(c)
        t = self._rec()
        t.kind = KIND_TRADE
        t.ts_recv = tr
        read_time(c, &h[CBE_time], &t.ts_event)
        self._sym(c, &h[CBE_product_id], t.symbol)
        read_num(c, &h[CBE_price], &t.price)
        read_num(c, &h[CBE_size], &t.size)
        # "side" is the MAKER's side, as on Coinbase Exchange's match channel
        # (the Advanced Trade docs call it the trade's side; recorded sessions
        # print SELL at or above the best ask and BUY at or below the best bid):
        # the tick carries the aggressor's, the opposite one
        if str_eq(c, &h[CBE_side], "BUY", 3):
            t.side = -1
        elif str_eq(c, &h[CBE_side], "SELL", 4):
            t.side = 1
        else:
            fail(c, h[CBE_side].s, "side must be BUY or SELL")
            raise_recorded(c)
        if h[CBE_trade_id].kind and read_int_quiet(c, &h[CBE_trade_id], &tid):
            t.seq = tid
            t.seq_first = tid
        memcpy(self._lsym, t.symbol, SYM_LEN)
        return 0
