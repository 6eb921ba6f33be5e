"""CoinGecko REST bodies -> Tick records (public API: :mod:`hftsig.market.normalize`).

``/simple/price`` bodies (one ``KIND_PRICE`` per coin and vs-currency) and
the error bodies the API answers with instead.
"""
cimport cython
from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from libc.stdint cimport int64_t
from libc.string cimport memchr, memcmp, memcpy

from hftsig.market import symbols as _symbols

from hftsig._ext.tick cimport Tick, EX_COINGECKO, KIND_PRICE, FLAG_LAST
from hftsig._ext.json_scan cimport (
    Ctx, Val, It, Keys, CH_LBRACE, CH_UNDERSCORE, J_STR, J_NUM, J_OBJ, MAX_KEYS, STEP_END,
    STEP_ERROR, fail, raise_recorded, make_keys, expect_end, skip_ws, scan_value, obj_open,
    obj_key, item_done, collect, str_eq, read_num, read_int)
from hftsig._ext._normalizer_base cimport NormalizerBase, SYM_LEN, T_DATA, T_UNKNOWN, T_ERROR

# {"status": {...}} of an error body
cdef Keys CGS
make_keys(&CGS, ("error_code", "error_message"))
cdef enum:
    CGS_error_code, CGS_error_message

# the last last_updated_at (seconds) whose ns fit int64: 2262-04-11
cdef int64_t MAX_UPDATED_AT = 9223372036

cdef str S_SIMPLE_PRICE = "simple_price"


@cython.final
cdef class CoinGeckoNormalizer(NormalizerBase):
    """Parser of CoinGecko ``/simple/price`` bodies into tick records.

    Parameters
    ----------
    symbols : dict, optional
        Extra ``{exchange symbol: canonical}`` pairs, looked up before the
        default tables.
    chunk_size : int
        Records per preallocated output chunk.

    Notes
    -----
    One ``KIND_PRICE`` per (coin, vs-currency) in body order (``bitcoin``/
    ``usd`` -> ``BTC-USD``), ``ts_event`` = ``last_updated_at``; coins
    without a ticker mapping are skipped (see :mod:`hftsig.market.normalize` and
    :class:`hftsig.market.normalize.Normalizer` for the attributes).

    Examples
    --------
    >>> n = CoinGeckoNormalizer()
    >>> t = n.parse(b'{"bitcoin":{"usd":67187.3358936566,"usd_24h_vol":31260929299.5248,'
    ...             b'"last_updated_at":1711356300}}', ts_recv=0)
    >>> t["symbol"][0], float(t["price"][0]), int(t["ts_event"][0])
    (np.bytes_(b'BTC-USD'), 67187.3358936566, 1711356300000000000)
    """
    # (coin, vs-currency) -> canonical symbol (SYM_LEN bytes), None without a mapping
    cdef dict _cg_cache

    def __init__(self, *, symbols=None, chunk_size=4096):
        self._setup("coingecko", EX_COINGECKO, symbols, chunk_size)
        self._cg_cache = {}

    cdef int _parse_frame(self, Ctx* c, int64_t tr, object symbol) except -1:
        return self._simple_price(c, tr)

    cdef int _simple_price(self, Ctx* c, int64_t tr) except -1:
        """``/simple/price``: {coin: {vs: price, ..., last_updated_at: s}, ...}::

            {"bitcoin":{"usd":67187.3358936566,"usd_market_cap":1317802988326.25,
             "usd_24h_vol":31260929299.5248,"last_updated_at":1711356300}}
        """
        cdef It it, ic
        cdef Val k, kv, v
        cdef int r
        cdef Py_ssize_t i = skip_ws(c, 0), end, vs, first, j
        cdef int64_t upd = 0
        cdef bint has_upd
        cdef Tick* t
        cdef double px
        if i >= c.n or c.p[i] != CH_LBRACE:
            return self._validate_any(c)
        self._lchan = S_SIMPLE_PRICE
        if obj_open(c, &it, i, 0) < 0:
            raise_recorded(c)
        while True:
            r = obj_key(c, &it, &k)
            if r == STEP_END:
                break
            if r == STEP_ERROR:
                raise_recorded(c)
            vs = skip_ws(c, it.i)
            if vs >= c.n or c.p[vs] != CH_LBRACE or str_eq(c, &k, "status", 6) \
                    or str_eq(c, &k, "error", 5):
                # an error body ({"status": {...}} / {"error": ...}) or another shape
                end = scan_value(c, it.i, &v, it.depth)
                if end < 0:
                    raise_recorded(c)
                self._other(c, &k, &v)
                item_done(&it, end)
                continue
            coin = self._text(c, &k).encode("utf-8") if k.esc else \
                PyBytes_FromStringAndSize(<const char*>c.p + k.s, k.e - k.s)
            first = self._pos - self._start
            has_upd = False
            obj_open(c, &ic, vs, it.depth)
            while True:
                r = obj_key(c, &ic, &kv)
                if r == STEP_END:
                    break
                if r == STEP_ERROR:
                    raise_recorded(c)
                end = scan_value(c, ic.i, &v, ic.depth)
                if end < 0:
                    raise_recorded(c)
                item_done(&ic, end)
                if str_eq(c, &kv, "last_updated_at", 15):
                    # seconds whose ns fit int64 (up to 2262-04-11)
                    if v.kind != J_NUM or has_upd:
                        fail(c, v.s, "last_updated_at must be epoch seconds, given once")
                        raise_recorded(c)
                    read_int(c, &v, &upd)
                    if upd < 0 or upd > MAX_UPDATED_AT:
                        fail(c, v.s, "last_updated_at: time out of range")
                        raise_recorded(c)
                    has_upd = True
                    continue
                # vs-currency keys have no underscore; usd_24h_vol & co. do
                if kv.esc:
                    vsname = self._text(c, &kv).encode("utf-8")
                    if b"_" in vsname:
                        continue
                elif memchr(c.p + kv.s, CH_UNDERSCORE, kv.e - kv.s) != NULL:
                    continue
                else:
                    vsname = None
                if v.kind != J_NUM:  # null included: a price that is not there is an error
                    fail(c, v.s, "price is not a number")
                    raise_recorded(c)
                read_num(c, &v, &px)
                if vsname is None:
                    vsname = PyBytes_FromStringAndSize(<const char*>c.p + kv.s, kv.e - kv.s)
                can = self._symbol(coin, vsname)
                if can is None:
                    continue  # a coin without a ticker mapping cannot be named
                for j in range(self._start, self._pos):
                    if memcmp(self._buf[j].symbol, PyBytes_AS_STRING(can), SYM_LEN) == 0:
                        fail(c, kv.s, "price given twice")
                        raise_recorded(c)
                t = self._rec()
                t.kind = KIND_PRICE
                t.ts_recv = tr
                t.price = px
                t.flags = FLAG_LAST
                memcpy(t.symbol, PyBytes_AS_STRING(can), SYM_LEN)
                memcpy(self._lsym, t.symbol, SYM_LEN)
            for j in range(self._start + first, self._pos):
                self._buf[j].ts_event = upd * 1000000000 if has_upd else tr
            item_done(&it, ic.i)
        expect_end(c, it.i)
        if self._ltype == T_UNKNOWN and self._pos > self._start:
            # prices were read beside a member of another shape: the body is
            # data (the other member is skipped), as every record says
            self._ltype = T_DATA
        return 0

    cdef int _other(self, Ctx* c, Val* k, Val* v) except -1:
        """A top-level member that is not a coin: an error or another shape::

            {"status":{"error_code":429,"error_message":"You've exceeded the Rate Limit."}}
        """
        cdef Val g[MAX_KEYS]
        if str_eq(c, k, "error", 5):
            self._ltype = T_ERROR
            self.last_error = self._text(c, v) if v.kind == J_STR else \
                PyBytes_FromStringAndSize(<const char*>c.p + v.s, v.e - v.s).decode("utf-8")
        elif str_eq(c, k, "status", 6) and v.kind == J_OBJ:
            if collect(c, v.s, 1, &CGS, g) < 0:
                raise_recorded(c)
            if g[CGS_error_code].kind or g[CGS_error_message].kind:
                self._ltype = T_ERROR
                self.last_error = self._text(
                    c, &g[CGS_error_message] if g[CGS_error_message].kind
                    else &g[CGS_error_code])
        elif self._ltype == T_DATA:
            self._ltype = T_UNKNOWN
        return 0

    cdef object _symbol(self, bytes coin, bytes vs):
        """Canonical symbol (SYM_LEN bytes) of a coin id and vs-currency, None if unmapped."""
        key = (coin, vs)
        hit = self._cg_cache.get(key, 0)
        if hit != 0:
            return hit
        try:
            canon = _symbols.to_canonical("coingecko", (coin.decode("utf-8"), vs.decode("utf-8")))
            out = canon.encode("ascii").ljust(SYM_LEN, b"\0")
        except (ValueError, UnicodeDecodeError):
            out = None
        if len(self._cg_cache) > 4096:
            self._cg_cache.clear()
        self._cg_cache[key] = out
        return out
