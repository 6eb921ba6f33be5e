"""Fuzz targets: one function per entry point that reads untrusted input.

Each target takes the fuzzer's bytes, drives one entry point with them and
checks the contract (``docs/fuzzing.md``) as its oracle:

* a frame gives records or raises :class:`~hftsig.market.normalize.MalformedMessage`
  (a ``ValueError``), nothing else; never a record with NaN/inf, a negative
  price or size, a negative time or an empty symbol; a rejected frame
  changes no state;
* a book equals a plain Python model of its rules, or rejects a batch with
  ``ValueError`` and stays as it was;
* the websocket reader delivers what RFC 6455 says the bytes hold, or fails
  the connection with a ``WebSocketException``;
* a signature kernel gives the right answer (iisignature's, or its own on a
  prefix) or raises ``ValueError``/``TypeError``.

A broken contract raises :class:`Finding`; any other exception escaping a
target is a finding too (the engines treat both as crashes).  Targets are
deterministic functions of their input, so a saved input replays the finding.
"""
from __future__ import annotations

import math
import re
import socket
import zlib

import numpy as np

from fuzz.draw import Draw

TS_RECV = 1_700_000_000_000_000_000


class Finding(AssertionError):
    """A broken contract."""


def _require(cond, msg, *args):
    if not cond:
        raise Finding(msg % args if args else msg)


# ---------------------------------------------------------------------------
# normalizers
# ---------------------------------------------------------------------------

_EXCHANGE_CODES = {"binance": 1, "kraken": 2, "coinbase": 3, "coingecko": 4}
# prices (and sizes) of the records of each kind; quotes check all four
_PRICE_FIELDS = {1: ("bid_px", "ask_px"), 2: ("price",), 3: ("price",), 4: ("price",), 5: ("price",)}
_SIZE_FIELDS = {1: ("bid_sz", "ask_sz"), 2: ("size",), 3: ("size",), 4: ("size",), 5: ()}
_SYMBOL = re.compile(rb"^[A-Z0-9.]+-[A-Z0-9.]+$")

# Kraken book checksums need the pairs' precisions; a fresh normalizer of
# every Kraken input first learns them from this instrument message
KRAKEN_INSTRUMENT = (
    b'{"channel":"instrument","type":"snapshot","data":{"assets":[],"pairs":['
    b'{"symbol":"BTC/USD","price_precision":1,"qty_precision":8},'
    b'{"symbol":"MATIC/USD","price_precision":4,"qty_precision":8}]}}')

# one good frame per venue: after a rejected frame it must parse exactly as on
# a fresh normalizer (the rejection left nothing behind)
PROBES = {
    "binance": b'{"e":"depthUpdate","E":1672515782136,"s":"BNBBTC","U":157,"u":160,'
               b'"b":[["0.0024","10"]],"a":[["0.0026","100"]]}',
    "kraken": b'{"channel":"book","type":"update","data":[{"symbol":"MATIC/USD","bids":'
              b'[{"price":0.5657,"qty":1098.3947558}],"asks":[],"checksum":2114181697,'
              b'"timestamp":"2023-10-06T17:35:55.440295Z"}]}',
    "coinbase": b'{"channel":"l2_data","timestamp":"2023-02-09T20:32:50.714964855Z",'
                b'"sequence_num":7,"events":[{"type":"update","product_id":"BTC-USD",'
                b'"updates":[{"side":"offer","event_time":"2023-02-09T20:32:50.714964855Z",'
                b'"price_level":"21921.74","new_quantity":"0"}]}]}',
    "coingecko": b'{"bitcoin":{"usd":67187.3358936566,"last_updated_at":1711356300}}',
}
_BINANCE_SYMBOL = "BNBBTC"  # for a REST depth snapshot, which names no symbol


def _normalizer(venue):
    from hftsig.market.normalize import Normalizer
    n = Normalizer(venue)
    if venue == "kraken":
        n.parse(KRAKEN_INSTRUMENT, TS_RECV)
    return n


def _parse(n, message):
    """``(ticks, None)`` or ``(None, exception)``."""
    symbol = _BINANCE_SYMBOL if n.exchange == "binance" else None
    try:
        return n.parse(message, TS_RECV, symbol), None
    except Exception as exc:  # judged by the caller
        return None, exc


def _records_key(ticks):
    return None if ticks is None else ticks.tobytes()


def check_records(venue, ticks, n):
    """The record half of the contract for one accepted frame."""
    from hftsig.market.ticks import TICK_DTYPE
    _require(isinstance(ticks, np.ndarray) and ticks.dtype == TICK_DTYPE and ticks.ndim == 1,
             "parse returned %r", type(ticks))
    if len(ticks) == 0:
        return
    _require(n.last_type == "data", "%d records but last_type %r", len(ticks), n.last_type)
    _require(ticks["flags"][-1] & 1, "the last record lacks FLAG_LAST")
    for i, r in enumerate(ticks):
        kind = int(r["kind"])
        _require(int(r["exchange"]) == _EXCHANGE_CODES[venue], "record %d: exchange %d", i,
                 int(r["exchange"]))
        _require(kind in _PRICE_FIELDS, "record %d: kind %d", i, kind)
        _require(_SYMBOL.match(bytes(r["symbol"])) is not None, "record %d: symbol %r", i,
                 bytes(r["symbol"]))
        _require(int(r["ts_recv"]) == TS_RECV, "record %d: ts_recv %d", i, int(r["ts_recv"]))
        _require(int(r["ts_event"]) >= 0, "record %d: negative ts_event %d", i,
                 int(r["ts_event"]))
        for f in _PRICE_FIELDS[kind]:
            v = float(r[f])
            _require(math.isfinite(v) and v >= 0, "record %d (kind %d): %s = %r", i, kind, f, v)
        for f in _SIZE_FIELDS[kind]:
            v = float(r[f])
            if kind == 1 and v != v:
                continue  # a quote's size is NaN when the venue leaves it out (unknown)
            _require(math.isfinite(v) and v >= 0, "record %d (kind %d): %s = %r", i, kind, f, v)
        if kind in (3, 4):
            _require(int(r["side"]) in (1, -1), "record %d: book side %d", i, int(r["side"]))
        else:
            _require(int(r["side"]) in (-1, 0, 1), "record %d: side %d", i, int(r["side"]))


def check_frame(venue, data):
    """Parse one frame on a fresh normalizer and judge the outcome.

    Returns the ticks (None when the frame was rejected)."""
    from hftsig.market.normalize import MalformedMessage
    n = _normalizer(venue)
    state = dict(n.precisions)
    ticks, exc = _parse(n, data)
    # the same bytes in an exactly sized heap buffer (bytes objects carry a
    # terminating NUL): a read past the end shows under AddressSanitizer
    exact = np.frombuffer(data, dtype=np.uint8).copy() if data else np.empty(0, np.uint8)
    ticks2, exc2 = _parse(_normalizer(venue), exact)
    _require(type(exc) is type(exc2) and _records_key(ticks) == _records_key(ticks2),
             "bytes and buffer input disagree: %r / %r", exc, exc2)
    if exc is not None:
        if not isinstance(exc, MalformedMessage):
            raise Finding(f"{venue}: {type(exc).__name__} instead of MalformedMessage: {exc}") \
                from exc
        _require(n.precisions == state, "%s: rejected frame changed precisions: %r -> %r",
                 venue, state, n.precisions)
        probe, pexc = _parse(n, PROBES[venue])
        fresh, fexc = _parse(_normalizer(venue), PROBES[venue])
        _require(pexc is None and fexc is None and probe.tobytes() == fresh.tobytes(),
                 "%s: a good frame parses differently after a rejected one", venue)
        return None
    check_records(venue, ticks, n)
    return ticks


def _normalize_target(venue):
    def target(data):
        check_frame(venue, data)
    target.__name__ = f"normalize_{venue}"
    target.__doc__ = f"One {venue} frame (the fuzzer's bytes) through Normalizer.parse."
    return target


normalize_binance = _normalize_target("binance")
normalize_kraken = _normalize_target("kraken")
normalize_coinbase = _normalize_target("coinbase")
normalize_coingecko = _normalize_target("coingecko")


_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?\Z")
# numbers longer than this may be refused, shorter ones must parse exactly
_LONG_NUMBER = 100


def _number_frames(text):
    """``(venue, frame, field)``: ``text`` in a price and a size field of each venue."""
    q = text  # inside a JSON string
    yield ("binance", ('{"u":1,"s":"BTCUSDT","b":"%s","B":"1","a":"2","A":"1"}' % q), "bid_px")
    yield ("binance", ('{"u":1,"s":"BTCUSDT","b":"1","B":"%s","a":"2","A":"1"}' % q), "bid_sz")
    yield ("kraken", ('{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD",'
                      '"bid":%s,"bid_qty":1,"ask":2,"ask_qty":1}]}' % text), "bid_px")
    yield ("kraken", ('{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD",'
                      '"side":"buy","price":1,"qty":%s,"trade_id":1,'
                      '"timestamp":"2023-09-25T07:49:37.708706Z"}]}' % text), "size")
    yield ("coinbase", ('{"channel":"l2_data","timestamp":"2023-02-09T20:32:50.714964855Z",'
                        '"sequence_num":7,"events":[{"type":"update","product_id":"BTC-USD",'
                        '"updates":[{"side":"bid","event_time":"2023-02-09T20:32:50.714964855Z",'
                        '"price_level":"%s","new_quantity":"1"}]}]}' % q), "price")
    yield ("coingecko", '{"bitcoin":{"usd":%s}}' % text, "price")


def normalize_numbers(data):
    """A number's text in price and size fields: parsed exactly as ``float(text)``.

    A JSON number up to 100 characters long must give exactly
    ``float(text)`` when that is finite and not negative, and be refused
    (MalformedMessage) when it is negative or overflows.  Other text must be
    refused, or (leniency) give ``float(text)``.
    """
    text = bytes(b for b in data[:400] if 0x20 <= b < 0x7F and b not in b'"\\').decode("ascii")
    grammar = _JSON_NUMBER.match(text) is not None
    try:
        want = float(text)
    except ValueError:
        want = None
    for venue, frame, field in _number_frames(text):
        ticks = check_frame(venue, frame.encode("ascii"))
        if ticks is None:  # refused
            if grammar and want is not None and math.isfinite(want) and want >= 0 \
                    and not text.startswith("-") and len(text) <= _LONG_NUMBER:
                raise Finding(f"{venue}: {field} {text!r} refused; float() gives {want!r}")
            continue
        if len(ticks) == 0:
            _require(not grammar, "%s: %s %r gave no record", venue, field, text)
            continue
        got = float(ticks[field][0])
        _require(want is not None and got == want, "%s: %s %r parsed as %r, float() gives %r",
                 venue, field, text, got, want)


_PRECISION_VALUES = ("0", "1", "8", "18", "19", "-3", "2.9", "3.0", "true", "false", "null",
                     '"3"', '"x"', "1e400", "1e2", "[]", "{}", "10" * 15, "9" * 5000,
                     "-0", "4294967297", "9223372036854775808")


_JSON_INT = re.compile(r"-?(?:0|[1-9][0-9]*)\Z")


def _precision(text):
    """The precision a JSON value stands for: a JSON integer in [0, 18], else None."""
    text = text.strip(" \t\r\n")  # JSON whitespace around the value
    if _JSON_INT.match(text) is None or len(text) > 5:
        return None
    v = int(text)
    return v if 0 <= v <= 18 else None


def kraken_instrument(data):
    """Kraken ``instrument`` messages: precisions learnt whole and sane, or none.

    A refused message (MalformedMessage) leaves every precision as it was.  An
    accepted one holds only ints in [0, 18]: a pair whose two values are JSON
    integers in that range is learnt with them (the last such entry of a
    symbol); a pair with any other value (negative, too large, fractional,
    boolean, string, 1e400...) or without a canonical symbol is skipped and
    keeps what it had; pairs the message does not name are untouched.
    """
    from hftsig.market import symbols
    from hftsig.market.normalize import MalformedMessage
    d = Draw(data)
    pairs, entries = [], []
    for _ in range(1 + d.below(4)):
        sym = d.pick(("BTC/USD", "ETH/USD", "MATIC/USD", "ETH2.S/ETH", "", "BTC/USD"))
        vals = []
        for _ in range(2):
            if d.below(4) == 0:
                v = d.take(d.below(12)).decode("latin-1").replace('"', "").replace("\\", "")
                v = v or "0"
            else:
                v = d.pick(_PRECISION_VALUES)
            vals.append(v)
        pairs.append('{"symbol":"%s","price_precision":%s,"qty_precision":%s}' % (sym, *vals))
        entries.append((sym, vals))
    frame = ('{"channel":"instrument","type":"snapshot","data":{"assets":[],"pairs":[%s]}}'
             % ",".join(pairs)).encode("latin-1")
    n = _normalizer("kraken")
    before = dict(n.precisions)
    try:
        n.parse(frame, TS_RECV)
    except MalformedMessage:
        _require(n.precisions == before, "refused instrument message changed precisions: %r",
                 n.precisions)
        return
    except Exception as exc:
        raise Finding(f"{type(exc).__name__} instead of MalformedMessage: {exc}") from exc
    for name, (p, q) in n.precisions.items():
        for v in (p, q):
            _require(type(v) is int and 0 <= v <= 18, "precision %r of %s accepted", v, name)
    learnt, named = {}, set()
    for sym, (p, q) in entries:
        try:
            name = symbols.to_canonical("kraken", sym)
        except ValueError:
            continue
        named.add(name)
        if _precision(p) is not None and _precision(q) is not None:
            learnt[name] = (_precision(p), _precision(q))
    for name in set(n.precisions) | set(before):
        want = learnt.get(name, before.get(name))
        _require(n.precisions.get(name) == want, "%s: precisions %r after %s, want %r", name,
                 n.precisions.get(name), frame[:300], want)


# ---------------------------------------------------------------------------
# _tickscan
# ---------------------------------------------------------------------------

def _ticks_from(d, nmax=40):
    """Tick records: raw bytes, with key fields from small sets so keys repeat."""
    from hftsig.market.ticks import TICK_DTYPE
    n = d.below(nmax + 1)
    raw = d.take(n * TICK_DTYPE.itemsize).ljust(n * TICK_DTYPE.itemsize, b"\0")
    t = np.frombuffer(raw, dtype=TICK_DTYPE).copy()
    for i in range(n):
        mode = d.byte()
        if mode & 1:  # realistic key fields; otherwise the raw bytes stand
            t["exchange"][i] = d.below(6)
            t["kind"][i] = d.below(8)
            t["symbol"][i] = d.pick((b"BTC-USD", b"ETH-USD", b"", b"A" * 16))
            t["flags"][i] = d.below(4)
    return t


def _sym(b):
    """A symbol field as the kernels read it: up to its first NUL."""
    b = bytes(b)  # (numpy strips the trailing NULs only)
    return b.split(b"\0", 1)[0]


def _same_float(a, b):
    return a == b or (a != a and b != b)


def tickscan(data):
    """scan_chunk, batch_latency, select and message_parts against plain Python."""
    from hftsig._ext import _tickscan as ts
    d = Draw(data)
    t = _ticks_from(d)
    n = len(t)
    exch, kind, ts_recv, ts_event = t["exchange"], t["kind"], t["ts_recv"], t["ts_event"]
    syms = [_sym(s) for s in t["symbol"]]
    # keys compare all 16 bytes, also those after a NUL
    keys = [(int(exch[i]), bytes(t["symbol"][i]).ljust(16, b"\0")) for i in range(n)]

    books, quotes, others = ts.scan_chunk(t)
    want_books, want_q, want_o = {}, {}, []
    for i in range(n):
        k = int(kind[i])
        if k in (3, 4):
            want_books[keys[i]] = i
        elif k == 1:
            if keys[i] not in want_q or int(ts_recv[i]) >= int(ts_recv[want_q[keys[i]]]):
                want_q[keys[i]] = i
        else:
            want_o.append(i)
    _require(others == want_o, "scan_chunk others %r, want %r", others, want_o)
    _require([(b[0], b[1], b[2]) for b in books]
             == [(k[0], syms[i], i) for k, i in want_books.items()],
             "scan_chunk books %r, want %r", books, want_books)
    for b in books:
        i = b[2]
        _require(b[3] == int(ts_event[i]) and b[4] == int(ts_recv[i]), "scan_chunk book times")
    _require([(q[0], q[1]) for q in quotes] == [(k[0], syms[i]) for k, i in want_q.items()],
             "scan_chunk quote keys")
    for q, i in zip(quotes, want_q.values()):
        r = t[i]
        want = (float(r["bid_px"]), float(r["bid_sz"]), float(r["ask_px"]), float(r["ask_sz"]))
        _require(all(_same_float(a, b) for a, b in zip(q[2:6], want)), "scan_chunk quote values")

    now = int.from_bytes(d.take(8).ljust(8, b"\0"), "little", signed=True)
    wire, queue, newest = ts.batch_latency(t, now)
    want_newest = max([0] + [int(x) for x in ts_recv])
    _require(newest == want_newest, "batch_latency newest %r, want %r", newest, want_newest)
    last = [i for i in range(n) if int(kind[i]) != 6]
    want_wire = None if not last else _wrap64(int(ts_recv[last[-1]]) - int(ts_event[last[-1]]))
    _require(wire == want_wire, "batch_latency wire %r, want %r", wire, want_wire)
    want_queue = _wrap64(now - int(ts_recv[-1])) if n else 0
    _require(queue == want_queue, "batch_latency queue %r, want %r", queue, want_queue)

    kinds = bytes(d.below(2) for _ in range(256)) if d.flag() else b""
    exchs = bytes(d.below(2) for _ in range(256)) if d.flag() else b""
    symset = {b"BTC-USD", b""} if d.flag() else None
    mask, kept = ts.select(t, kinds, exchs, symset)
    want_mask = [(not kinds or kinds[int(kind[i])]) and (not exchs or exchs[int(exch[i])])
                 and (symset is None or syms[i] in symset) for i in range(n)]
    _require(list(mask) == [bool(x) for x in want_mask] and kept == sum(map(bool, want_mask)),
             "select mask differs")

    parts = ts.message_parts(t)
    want_parts, start = [], 0
    for i in range(n):
        if i + 1 == n or (int(t["flags"][i]) & 1) or keys[i] != keys[i + 1]:
            want_parts.append((start, i + 1, syms[start], int(kind[start]),
                               int(t["checksum"][i])))
            start = i + 1
    _require(parts == want_parts, "message_parts %r, want %r", parts, want_parts)


def _wrap64(v):
    """int64 arithmetic as C does it (the kernels' times are int64)."""
    return (v + (1 << 63)) % (1 << 64) - (1 << 63)


# ---------------------------------------------------------------------------
# order books
# ---------------------------------------------------------------------------

_BOOK_PRICES = (100.0, 100.5, 101.0, 99.5, 99.0, 0.0001, 1e9, 0.5, -1.0, 0.0, float("nan"),
                float("inf"), 100.25, 123456.789)
_BOOK_SIZES = (0.0, 1.0, 2.5, 0.00000001, 1e6, -1.0, -0.0, float("nan"), float("inf"), 3.0)


class BookModel:
    """The rules of :class:`hftsig.market.book.OrderBook` in plain Python.

    A level needs side +1/-1, a finite price > 0 and a finite size >= 0; a
    batch holding a record that breaks this (for this book) is refused whole.
    """

    def __init__(self, exchange_code, symbol, depth):
        self.key = (exchange_code, symbol)
        self.depth = depth
        self.sides = {1: {}, -1: {}}
        self.updates, self.last_seq, self.ts_event, self.last_checksum = 0, -1, 0, None

    def levels(self, side):
        items = sorted(self.sides[side].items(), reverse=(side == 1))
        return [(p, s) for p, s in items]

    def state(self):
        return (self.levels(1), self.levels(-1), self.updates, self.last_seq, self.ts_event,
                self.last_checksum)

    def _truncate(self):
        if self.depth:
            for side in (1, -1):
                for p, _ in self.levels(side)[self.depth:]:
                    del self.sides[side][p]

    def apply(self, recs):
        """Return the records used; raise ValueError (changing nothing) for a bad one."""
        mine = [r for r in recs if (r["exchange"], r["symbol"]) == self.key
                and r["kind"] in (3, 4)]
        for r in mine:
            if not (math.isfinite(r["price"]) and math.isfinite(r["size"])) or r["price"] <= 0 \
                    or r["size"] < 0 or r["side"] not in (1, -1):
                raise ValueError("bad level")
        pending = False
        for r in mine:
            if r["flags"] & 2:
                self.sides = {1: {}, -1: {}}
            side = self.sides[r["side"]]
            if r["size"] == 0:
                side.pop(r["price"], None)
            else:
                side[r["price"]] = r["size"]
            pending = True
            self.ts_event, self.last_seq = r["ts_event"], r["seq"]
            if r["flags"] & 1:
                self._truncate()
                self.updates += 1
                pending = False
                if r["checksum"]:
                    self.last_checksum = r["checksum"]
        if pending:
            self._truncate()
            self.updates += 1
        return len(mine)


def _book_state(book):
    lv = [[(float(p), float(s)) for p, s in book.levels(side)] for side in ("bid", "ask")]
    return (lv[0], lv[1], book.updates, book.last_seq, book.ts_event, book.last_checksum)


def _kraken_text(v, decimals):
    return f"{v:.{decimals}f}".replace(".", "").lstrip("0")


def book(data):
    """Random record batches: OrderBook equals BookModel, or refuses a batch whole."""
    from hftsig.market.book import OrderBook
    from hftsig.market.ticks import empty_ticks
    d = Draw(data)
    depth = d.pick((None, 1, 2, 3, 5, 10))
    ob = OrderBook("kraken", "BTC-USD", depth=depth)
    model = BookModel(2, b"BTC-USD", depth)
    seq = 0
    while d.left() > 0:
        recs = []
        for _ in range(d.below(9)):
            seq += 1
            bad = d.below(16) == 0
            recs.append({
                "exchange": 2 if d.below(8) else d.pick((1, 3)),
                "symbol": b"BTC-USD" if d.below(8) else b"ETH-USD",
                "kind": 3 if d.flag() else d.pick((4, 4, 1, 2)),
                "side": d.pick((1, -1)) if not bad else d.pick((0, 2, -2, 1, -1)),
                "price": d.pick(_BOOK_PRICES[:8] if not bad else _BOOK_PRICES),
                "size": d.pick(_BOOK_SIZES[:5] if not bad else _BOOK_SIZES),
                "flags": d.below(4),
                "seq": seq,
                "ts_event": seq * 1000,
                "checksum": d.pick((0, 0, 7, 12345)),
            })
        t = empty_ticks(len(recs))
        for i, r in enumerate(recs):
            for f, v in r.items():
                t[f][i] = v
        recs = [{**r, "symbol": _sym(t["symbol"][i])} for i, r in enumerate(recs)]
        before = _book_state(ob)
        try:
            used = ob.apply(t)
            got_exc = None
        except ValueError as exc:
            got_exc = exc
        except Exception as exc:
            raise Finding(f"OrderBook.apply raised {type(exc).__name__}: {exc}") from exc
        try:
            want = model.apply(recs)
        except ValueError:
            _require(got_exc is not None, "OrderBook.apply took a bad batch: %r", recs)
            _require(_book_state(ob) == before, "refused batch changed the book: %r -> %r",
                     before, _book_state(ob))
            continue
        _require(got_exc is None, "OrderBook.apply refused a good batch: %r", got_exc)
        _require(used == want, "apply returned %r, model %r", used, want)
        _require(_book_state(ob) == model.state(), "book %r, model %r", _book_state(ob),
                 model.state())
    pdec, qdec = d.below(11), d.below(11)
    want_text = "".join(_kraken_text(v, dec) for side in (-1, 1)
                        for p, s in model.levels(side)[:10] for v, dec in ((p, pdec), (s, qdec)))
    want_crc = zlib.crc32(want_text.encode("ascii"))
    _require(ob.kraken_checksum(pdec, qdec) == want_crc, "kraken_checksum differs from the "
             "decimal text %r", want_text)


# ---------------------------------------------------------------------------
# websocket frames
# ---------------------------------------------------------------------------

# A frame declaring more than this is refused at its header: no venue's
# message comes near it, and reading on would let a server fill the memory.
WS_HUGE = 1 << 31
_CLOSE_CODES_VALID = set(range(1000, 1004)) | set(range(1007, 1012)) | set(range(3000, 5000))
_CLOSE_CODES_EITHER = {1012, 1013, 1014}  # registered after RFC 6455


def ws_reference(stream):
    """What RFC 6455 makes of a server's bytes, for a client.

    Returns ``(messages, end, may_stop)``: ``messages`` the ``(opcode, payload)`` that
    ``recv_data(control_frame=True)`` must return in order (data messages
    reassembled, control frames as they come), ``end`` one of ``"close"``
    (a close frame was delivered last), ``"error"`` (the connection must
    fail, or the bytes ran out) or ``"refuse"`` (a frame declared more than
    :data:`WS_HUGE` bytes: fail at once, before its payload).  ``may_stop``
    holds the numbers of messages after which the reader may fail as well:
    at a frame it may take or refuse (a length not in its shortest encoding,
    which RFC 6455 5.2 forbids but readers commonly take; a close code
    registered after the RFC).
    """
    out, i, frag, n, may_stop = [], 0, None, len(stream), set()
    while True:
        if n - i < 2:
            return out, "error", may_stop
        b0, b1 = stream[i], stream[i + 1]
        fin, rsv, op, masked, ln = b0 >> 7, b0 & 0x70, b0 & 0x0F, b1 >> 7, b1 & 0x7F
        j = i + 2
        if ln == 126:
            if n - j < 2:
                return out, "error", may_stop
            ln, j = int.from_bytes(stream[j:j + 2], "big"), j + 2
            if ln < 126:
                may_stop.add(len(out))
        elif ln == 127:
            if n - j < 8:
                return out, "error", may_stop
            ln, j = int.from_bytes(stream[j:j + 8], "big"), j + 8
            if ln < 2**16:
                may_stop.add(len(out))
        if rsv or op not in (0, 1, 2, 8, 9, 10) or masked:
            return out, "error", may_stop
        if op >= 8 and (not fin or ln > 125):
            return out, "error", may_stop
        if op == 0 and frag is None or op in (1, 2) and frag is not None:
            return out, "error", may_stop
        if ln > WS_HUGE:
            return out, "refuse", may_stop
        if n - j < ln:
            return out, "error", may_stop
        payload = bytes(stream[j:j + ln])
        i = j + ln
        if op == 8:
            if ln == 0:
                return out + [(8, payload)], "close", may_stop
            if ln == 1:
                return out, "error", may_stop
            code = int.from_bytes(payload[:2], "big")
            try:
                payload[2:].decode("utf-8")
            except UnicodeDecodeError:
                return out, "error", may_stop
            if code in _CLOSE_CODES_EITHER:
                may_stop.add(len(out))
            elif code not in _CLOSE_CODES_VALID:
                return out, "error", may_stop
            return out + [(8, payload)], "close", may_stop
        if op in (9, 10):
            out.append((op, payload))
            continue
        if op in (1, 2):
            frag = (op, payload)
        else:
            frag = (frag[0], frag[1] + payload)
        if fin:
            out.append(frag)
            frag = None


def _ws_frames(d):
    """Frame bytes: mostly well formed, with bad bits, huge lengths and raw bytes mixed in."""
    parts = []
    for _ in range(1 + d.below(24)):
        if d.left() == 0:
            break
        mode = d.below(10)
        if mode == 9:
            parts.append(d.take(d.below(16)))
            continue
        fin = 0x80 if d.below(4) else 0
        rsv = (d.byte() & 0x70) if d.below(16) == 0 else 0
        op = d.pick((1, 2, 1, 2, 0, 0, 8, 9, 10)) if d.below(16) else d.below(16)
        mask = d.below(16) == 0
        if op == 8 and d.below(2):
            code = d.pick((1000, 1001, 1005, 1006, 1012, 2999, 3000, 4999, 5000, 0, 1015))
            payload = code.to_bytes(2, "big") + d.pick((b"", b"bye", b"\xff\xfe", b"\xc3\xa9",
                                                        b"\xed\xa0\x80", b"x" * 124))
        else:
            payload = d.take(d.pick((0, 1, 2, 5, 30, 125, 126, 200, 300)))
        ln = len(payload)
        if mode == 8:  # a length that is not the payload's
            ln = d.pick((2**16 - 1, 2**16, WS_HUGE + 1, 2**62, 2**63 + 5, 2**64 - 1, 7))
        enc = d.below(8)
        if ln < 126 and enc < 6:
            head = bytes([fin | rsv | op, (0x80 if mask else 0) | ln])
        elif ln < 2**16 and enc < 7:
            head = bytes([fin | rsv | op, (0x80 if mask else 0) | 126]) + ln.to_bytes(2, "big")
        else:
            head = bytes([fin | rsv | op, (0x80 if mask else 0) | 127]) + ln.to_bytes(8, "big")
        if mask:
            key = d.take(4).ljust(4, b"\0")
            payload = bytes(b ^ key[k % 4] for k, b in enumerate(payload))
            head += key
        parts.append(head + payload)
    return b"".join(parts)


def websocket_frames(data):
    """Server bytes on a socketpair into the connectors' websocket reader.

    The bytes are frames drawn from the input, or with a leading 0 byte the
    input's remaining bytes themselves.

    The reader must return exactly :func:`ws_reference`'s messages, then fail
    with a ``WebSocketException`` (or stop at the close frame); a frame
    declaring more than ``WS_HUGE`` bytes must be refused while the socket
    stays open and nothing more arrives.
    """
    import websocket

    from hftsig.connectors.websocket import _BufferedWebSocket
    # a leading 0 byte: the rest is the server's bytes as they are (raw mode,
    # also how a regression input spells out a stream); else frames are drawn
    stream = bytes(data[1:]) if data[:1] == b"\0" else _ws_frames(Draw(data))
    want, end, may_stop = ws_reference(stream)
    srv, cli = socket.socketpair()
    try:
        srv.sendall(stream)
        if end != "refuse":
            srv.shutdown(socket.SHUT_WR)  # the bytes end: the reader must not wait
        ws = _BufferedWebSocket(enable_multithread=True, skip_utf8_validation=True)
        ws.sock, ws.connected = cli, True
        cli.settimeout(2.0 if end == "refuse" else 30.0)
        got, err = [], None
        while len(got) <= len(want):
            try:
                opcode, payload = ws.recv_data(control_frame=True)
            except websocket.WebSocketTimeoutException as exc:
                err = exc
                break
            except (websocket.WebSocketException, ValueError) as exc:
                err = exc
                break
            except Exception as exc:
                raise Finding(f"reader raised {type(exc).__name__}: {exc}") from exc
            if opcode is None:  # a read that completed no message: the caller's loop runs
                continue
            got.append((opcode, bytes(payload)))
            if opcode == 8:
                break
    finally:
        srv.close()
        cli.close()
    if err is not None and len(got) in may_stop and got == want[:len(got)]:
        return  # it refused a frame RFC 6455 lets it refuse
    _require(got == want, "reader gave %r, RFC 6455 says %r (then %s)", got[:8], want[:8], end)
    if end == "refuse":
        _require(err is not None and not isinstance(err, (websocket.WebSocketTimeoutException,
                                                          websocket.WebSocketConnectionClosedException)),
                 "a frame declaring more than %d bytes was not refused at its header (%r)",
                 WS_HUGE, err)
    elif end == "error":
        _require(err is not None, "reader went on after %r", want[-3:])


# ---------------------------------------------------------------------------
# signature kernels
# ---------------------------------------------------------------------------

_INTS = (1, 2, 3, 4, 0, -1, 5, 60, 61, True, 2.0, "2", None, np.int64(3), np.uint8(2),
         2**31, 2**40, 2**61 + 1, 2**63, 2**64, -2**63)
_DTYPES = (np.float64, np.float64, np.float32, np.int64, np.int8, np.uint8, np.bool_,
           np.float16, np.complex128, object)
_VALUES = (0.0, 1.0, -1.0, 0.5, 2.0, -2.5, 1e-3, float("nan"), float("inf"))
_IISIG_PREP = {}


def _small_int(d, lo, hi):
    """Mostly a valid small int; sometimes anything from the menu."""
    if d.below(8):
        return lo + d.below(hi - lo + 1)
    return d.pick(_INTS)


def _array(d, shape):
    dtype = d.pick(_DTYPES)
    size = int(np.prod(shape)) if shape else 1
    bad = d.below(8) == 0
    vals = [d.pick(_VALUES if bad else _VALUES[:7]) for _ in range(size)]
    arr = np.array(vals, dtype=np.float64).reshape(shape)
    with np.errstate(invalid="ignore", over="ignore"):
        return arr.astype(dtype) if dtype is not object else arr.astype(object)


def _ok_int(v, lo):
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_)) and v >= lo


def _close(a, b, path, depth):
    """Equal up to rounding: level k of a path with coordinates up to m is O(m**k)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = (1.0 + float(np.abs(path).max(initial=0.0))) ** depth
    return a.shape == b.shape and np.allclose(a, b, rtol=1e-7, atol=1e-10 * scale)


def _iisig(path, depth):
    import iisignature
    return iisignature.sig(np.ascontiguousarray(path, dtype=np.float64), depth)


def _iilogsig(path, depth):
    import iisignature
    dim = path.shape[-1]
    if dim == 1:  # iisignature wants dim >= 2; the only Lyndon word is "0": the increment
        return path[..., -1, :] - path[..., 0, :]
    key = (dim, depth)
    if key not in _IISIG_PREP:
        _IISIG_PREP[key] = iisignature.prepare(dim, depth)
    return iisignature.logsig(np.ascontiguousarray(path, dtype=np.float64), _IISIG_PREP[key])


def _expect_refusal(call, what):
    try:
        call()
    except (ValueError, TypeError):
        return
    except Exception as exc:
        raise Finding(f"{what}: {type(exc).__name__} instead of ValueError/TypeError: {exc}") \
            from exc


def _run(call, what):
    """Result of ``call``, None if it refused with ValueError/TypeError."""
    try:
        return call()
    except (ValueError, TypeError):
        return None
    except Exception as exc:
        raise Finding(f"{what}: {type(exc).__name__} instead of ValueError/TypeError: {exc}") \
            from exc


#: the signature target's memory guard (see signature())
SIGNATURE_MAX_BYTES = 256 << 20


def signature(data):
    """sig/logsig/SignatureStream/siglength with random shapes, dtypes, depths and ints."""
    import hftsig

    # the library's memory guard (2 GiB by default) must sit below the fuzzer's
    # -rss_limit_mb (2 GiB, ASan's overhead on top): an allocation the guard
    # allows is then never reported as an out-of-memory finding
    with hftsig.config_context(max_output_bytes=SIGNATURE_MAX_BYTES):
        _signature(data)


def _signature(data):
    import hftsig
    from hftsig.signatures.logsignature import logsiglength, sig_to_logsig
    d = Draw(data)
    which = d.below(6)
    if which == 0:  # sizes
        dim, depth = _small_int(d, 1, 4), _small_int(d, 1, 6)
        fn = d.pick((hftsig.siglength, logsiglength))
        got = _run(lambda: fn(dim, depth), f"{fn.__name__}({dim!r}, {depth!r})")
        if got is not None and fn is hftsig.siglength:  # (a size may be refused)
            _require(_ok_int(dim, 1) and _ok_int(depth, 1), "siglength(%r, %r) = %r", dim,
                     depth, got)
            if dim <= 16 and depth <= 64:
                _require(got == sum(int(dim) ** k for k in range(1, int(depth) + 1)),
                         "siglength(%r, %r) = %r", dim, depth, got)
        return
    batch = d.pick((None, None, 1, 2, 3, 0))
    length, dim = d.below(6), d.below(4)
    shape = (length, dim) if batch is None else (batch, length, dim)
    path = _array(d, shape)
    depth = _small_int(d, 1, 4)
    valid_path = (path.dtype.kind in "fiub" and path.dtype != np.float16 and path.dtype != np.bool_
                  and length >= 1 and dim >= 1 and batch != 0
                  and np.isfinite(path.astype(np.float64)).all())
    valid = valid_path and _ok_int(depth, 1) and depth <= 6
    if which == 1:  # sig, plain / stream / at
        mode = d.below(3)
        n_jobs = d.pick((1, 1, 2, -1, 0, 2**31, -2**40, True))
        at = None
        if mode == 2:
            dt = d.pick((np.int64, np.int32, np.uint64, np.int8, np.float64))
            idx = [d.pick((0, 1, -1, 2, length, -length - 1, 2**64 - 1, 2**63, 255))
                   for _ in range(d.below(4))]
            # values wrap into the dtype as a C cast would (2**64 - 1 as uint64 stays)
            at = np.array([v % 2**64 for v in idx], dtype=np.uint64).astype(dt)
        got = _run(lambda: hftsig.sig(path, depth, stream=(mode == 1), at=at, n_jobs=n_jobs),
                   "sig")
        if not (valid and _ok_int(n_jobs, -(1 << 30)) and n_jobs != 0 and n_jobs <= 64):
            return
        p = path.astype(np.float64)
        if mode == 0:
            _require(got is not None and _close(got, _sig_ref(p, depth), p, depth), "sig differs")
        elif mode == 1:
            if length >= 2:
                want = np.stack([_sig_ref(p[..., :i + 1, :], depth) for i in range(1, length)],
                                axis=-2)
                _require(got is not None and _close(got, want, p, depth), "sig(stream=True) differs")
        else:
            values = [int(v) for v in np.asarray(at).reshape(-1)] if at is not None else []
            in_range = all(-length <= v < length for v in values)
            if not in_range or (np.asarray(at).dtype.kind not in "iu" and len(values)):
                _require(got is None, "sig(at=%r) for %d points gave a result", at, length)
                return
            rows = [_sig_ref(p[..., :(v % length) + 1, :], depth) for v in values]
            if rows:
                _require(got is not None and _close(got, np.stack(rows, axis=-2), p, depth),
                         "sig(at=%r) differs", at)
    elif which == 2:  # logsig
        basis = d.pick(("lyndon", "expanded", "x", 3))
        got = _run(lambda: hftsig.logsig(path, depth, basis=basis), "logsig")
        if valid and basis == "lyndon" and depth <= 4:
            p = path.astype(np.float64)
            _require(got is not None and _close(got, _iilogsig(p, depth), p, depth),
                     "logsig differs from iisignature")
    elif which == 3:  # sig_to_logsig with any ints
        dim2, depth2 = _small_int(d, 1, 3), _small_int(d, 1, 4)
        s = _array(d, (d.below(40),))
        _run(lambda: sig_to_logsig(s, dim2, depth2), f"sig_to_logsig(.., {dim2!r}, {depth2!r})")
    elif which == 4:  # SignatureStream against sig of the window
        dim2 = _small_int(d, 1, 3)
        window = d.pick((None, None, 1, 2, 3, 5, 0, 2**61 + 1, 2**40, 2**31, True))
        n_paths = d.pick((None, None, 1, 2, 0, 2**61, 2**40, 2.0))
        depth2 = _small_int(d, 1, 3)
        stream = _run(lambda: hftsig.SignatureStream(dim2, depth2, window=window,
                                                     n_paths=n_paths), "SignatureStream")
        if stream is None:
            return
        _require(_ok_int(dim2, 1) and _ok_int(depth2, 1), "SignatureStream(%r, %r) built",
                 dim2, depth2)
        # a terabyte of ring or signatures cannot be what the caller meant
        _require(max(window or 0, n_paths or 0) < 2**40, "SignatureStream(%r, %r, window=%r, "
                 "n_paths=%r) built", dim2, depth2, window, n_paths)
        npath = 1 if n_paths is None else int(n_paths)
        pts = []
        for _ in range(d.below(8)):
            x = np.array([d.pick(_VALUES[:7]) for _ in range(npath * dim2)]).reshape(
                (dim2,) if n_paths is None else (npath, dim2))
            _run(lambda: stream.push(x), "SignatureStream.push")
            pts.append(x)
        if pts:
            p = np.stack(pts, axis=-2)
            if window is not None:
                p = p[..., -int(window):, :]
            _require(_close(stream.signature, _sig_ref(p, depth2), p, depth2),
                     "SignatureStream differs")
    else:  # sigcombine / siginv with any ints
        dim2, depth2 = _small_int(d, 1, 3), _small_int(d, 1, 3)
        s = _array(d, (d.below(20),))
        fn = d.pick((lambda: hftsig.sigcombine(s, s, dim2, depth2),
                     lambda: hftsig.siginv(s, dim2, depth2)))
        _run(fn, f"sigcombine/siginv(.., {dim2!r}, {depth2!r})")


def _sig_ref(p, depth):
    """iisignature's signature, with the zero signature of a one-point path."""
    if p.shape[-2] < 2:
        import hftsig
        n = hftsig.siglength(p.shape[-1], depth)
        return np.zeros(p.shape[:-2] + (n,))
    return _iisig(p, depth)


TARGETS = {
    f.__name__: f for f in (
        normalize_binance, normalize_kraken, normalize_coinbase, normalize_coingecko,
        normalize_numbers, kraken_instrument, tickscan, book, websocket_frames, signature)
}
