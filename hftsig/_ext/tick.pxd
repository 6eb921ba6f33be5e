# The C view of one TICK_DTYPE record (hftsig/market/ticks.py), shared by every kernel
# that reads or writes tick arrays. Natural alignment leaves no padding: 104 bytes,
# the same as TICK_DTYPE.itemsize; each kernel checks that at import.
from libc.stdint cimport int8_t, int64_t, uint8_t, uint32_t

cdef struct Tick:
    int64_t ts_event
    int64_t ts_recv
    uint8_t exchange
    uint8_t kind
    int8_t side
    uint8_t flags
    uint32_t checksum
    char symbol[16]
    double bid_px
    double bid_sz
    double ask_px
    double ask_sz
    double price
    double size
    int64_t seq
    int64_t seq_first


# The codes of hftsig/market/ticks.py as C constants (compared with it at import by
# check_tick_layout).
cdef enum:
    EX_BINANCE = 1
    EX_KRAKEN = 2
    EX_COINBASE = 3
    EX_COINGECKO = 4
    KIND_QUOTE = 1
    KIND_TRADE = 2
    KIND_BOOK_DELTA = 3
    KIND_BOOK_SNAPSHOT = 4
    KIND_PRICE = 5
    KIND_STATUS = 6
    FLAG_LAST = 1
    FLAG_SNAPSHOT_BEGIN = 2
    STATUS_CONNECTED = 1
    STATUS_DISCONNECTED = 2
    STATUS_RESYNC = 3
    STATUS_STALE = 4


cdef inline int check_tick_layout(object ticks) except -1:
    """ImportError unless Tick is TICK_DTYPE byte for byte and the codes above are
    those of ``ticks`` (the hftsig.market.ticks module); every kernel calls it at import."""
    cdef Tick t
    cdef char* b = <char*>&t
    got = {
        "ts_event": <char*>&t.ts_event - b, "ts_recv": <char*>&t.ts_recv - b,
        "exchange": <char*>&t.exchange - b, "kind": <char*>&t.kind - b,
        "side": <char*>&t.side - b, "flags": <char*>&t.flags - b,
        "checksum": <char*>&t.checksum - b, "symbol": <char*>&t.symbol[0] - b,
        "bid_px": <char*>&t.bid_px - b, "bid_sz": <char*>&t.bid_sz - b,
        "ask_px": <char*>&t.ask_px - b, "ask_sz": <char*>&t.ask_sz - b,
        "price": <char*>&t.price - b, "size": <char*>&t.size - b,
        "seq": <char*>&t.seq - b, "seq_first": <char*>&t.seq_first - b,
    }
    want = {name: ticks.TICK_DTYPE.fields[name][1] for name in ticks.TICK_DTYPE.names}
    if got != want or sizeof(Tick) != ticks.TICK_DTYPE.itemsize:
        raise ImportError(f"Tick struct does not match TICK_DTYPE: {got} != {want}")
    codes = {
        "EXCHANGE_BINANCE": EX_BINANCE, "EXCHANGE_KRAKEN": EX_KRAKEN,
        "EXCHANGE_COINBASE": EX_COINBASE, "EXCHANGE_COINGECKO": EX_COINGECKO,
        "KIND_QUOTE": KIND_QUOTE, "KIND_TRADE": KIND_TRADE, "KIND_BOOK_DELTA": KIND_BOOK_DELTA,
        "KIND_BOOK_SNAPSHOT": KIND_BOOK_SNAPSHOT, "KIND_PRICE": KIND_PRICE,
        "KIND_STATUS": KIND_STATUS, "FLAG_LAST": FLAG_LAST,
        "FLAG_SNAPSHOT_BEGIN": FLAG_SNAPSHOT_BEGIN, "STATUS_CONNECTED": STATUS_CONNECTED,
        "STATUS_DISCONNECTED": STATUS_DISCONNECTED, "STATUS_RESYNC": STATUS_RESYNC,
        "STATUS_STALE": STATUS_STALE,
    }
    wrong = {k: (v, getattr(ticks, k)) for k, v in codes.items() if getattr(ticks, k) != v}
    if wrong:
        raise ImportError(f"kernel codes differ from hftsig.market.ticks (kernel, ticks): {wrong}")
    return 0
