"""Tests of hftsig.market.book: book rules, VWAP and Kraken's CRC32 checksum."""
import json
import math
import pathlib
import random
import zlib
from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hftsig.market import ticks as T
from hftsig.market.book import OrderBook
from hftsig.market.normalize import Normalizer, normalize

DATA = pathlib.Path(__file__).parents[1] / "data" / "samples"
GUIDE = (DATA / "kraken" / "book_checksum_guide_snapshot.json").read_bytes()


def kraken_reference_checksum(asks, bids):
    """Kraken's algorithm on decimal strings, as the guide states it."""
    def tok(s):
        return s.replace(".", "").lstrip("0")
    text = "".join(tok(p) + tok(q) for p, q in asks[:10]) + "".join(tok(p) + tok(q) for p, q in bids[:10])
    return zlib.crc32(text.encode())


def test_kraken_checksum_of_the_guide_example():
    book = OrderBook("kraken", "BTC-USD", depth=10)
    assert book.apply(normalize("kraken", GUIDE, 0)) == 20
    assert book.kraken_checksum(1, 8) == 3310070434
    assert book.last_checksum == 3310070434
    # the guide's own strings give the same value through the reference code
    d = json.loads(GUIDE)["data"][0]
    asks = [(x["price"], x["qty"]) for x in d["asks"]]
    bids = [(x["price"], x["qty"]) for x in d["bids"]]
    assert kraken_reference_checksum(asks, bids) == 3310070434


def test_float_repr_would_get_the_checksum_wrong():
    """The trap: str(float) drops trailing zeros ("0.1" for "0.10000000")."""
    book = OrderBook("kraken", "BTC-USD")
    book.apply(normalize("kraken", GUIDE, 0))
    asks = [(str(p), str(q)) for p, q in book.levels("ask", 10)]
    bids = [(str(p), str(q)) for p, q in book.levels("bid", 10)]
    assert kraken_reference_checksum(asks, bids) != 3310070434
    assert book.kraken_checksum(1, 8) == 3310070434


def _kraken_msg(kind, bids, asks, checksum=None):
    item = {"symbol": "BTC/USD", "bids": [{"price": p, "qty": q} for p, q in bids],
            "asks": [{"price": p, "qty": q} for p, q in asks]}
    if checksum is not None:
        item["checksum"] = checksum
    return json.dumps({"channel": "book", "type": kind, "data": [item]})


def test_kraken_updates_track_reference_checksum():
    """Random updates on the guide book: our checksum equals the decimal-string reference."""
    rng = random.Random(11)
    depth = 10
    d = json.loads(GUIDE)["data"][0]
    ref = {"bids": {Decimal(x["price"]): x["qty"] for x in d["bids"]},
           "asks": {Decimal(x["price"]): x["qty"] for x in d["asks"]}}
    book = OrderBook("kraken", "BTC-USD", depth=depth)
    n = Normalizer("kraken")
    book.apply(n.parse(GUIDE, 0))
    for step in range(300):
        bids, asks = [], []
        for _ in range(rng.randrange(1, 4)):
            side = rng.choice(["bids", "asks"])
            base = Decimal("45284.3") + (Decimal(rng.randrange(1, 200)) / 10) * (1 if side == "asks" else -1)
            price = f"{base:.1f}"
            qty = ("0.00000000" if rng.random() < 0.3 and ref[side]
                   else f"{Decimal(rng.randrange(1, 10**9)) / 10**8:.8f}")
            if qty.startswith("0.00000000") and ref[side]:
                price = f"{rng.choice(sorted(ref[side])):.1f}"
            (bids if side == "bids" else asks).append((price, qty))
            if Decimal(qty) == 0:
                ref[side].pop(Decimal(price), None)
            else:
                ref[side][Decimal(price)] = qty
        # truncate the reference after the whole message, as Kraken does
        ref["bids"] = dict(sorted(ref["bids"].items(), reverse=True)[:depth])
        ref["asks"] = dict(sorted(ref["asks"].items())[:depth])
        want = kraken_reference_checksum(
            [(f"{p:.1f}", q) for p, q in sorted(ref["asks"].items())],
            [(f"{p:.1f}", q) for p, q in sorted(ref["bids"].items(), reverse=True)])
        # Kraken sends numbers as JSON numbers: float() of the text
        msg = _kraken_msg("update", [(float(p), float(q)) for p, q in bids],
                          [(float(p), float(q)) for p, q in asks], want)
        book.apply(n.parse(msg, step))
        assert book.kraken_checksum(1, 8) == n.last_checksum == want, step


def test_snapshot_replaces_and_deltas_set_and_remove():
    book = OrderBook("coinbase", "BTC-USD")
    n = Normalizer("coinbase")
    snap = (DATA / "coinbase" / "l2_data_snapshot.json").read_bytes()
    book.set_level("ask", 30000.0, 1.0)
    book.apply(n.parse(snap, 0))
    assert book.best_ask() == (math.nan, math.nan) or np.isnan(book.best_ask()[0])
    assert book.levels("bid").tolist() == [[21921.73, 0.06317902], [21921.3, 0.02]]

    def upd(side, price, qty, seq):
        return json.dumps({"channel": "l2_data", "timestamp": "2023-02-09T20:32:50.714964855Z",
                           "sequence_num": seq, "events": [{
                               "type": "update", "product_id": "BTC-USD",
                               "updates": [{"side": side, "event_time": "2023-02-09T20:32:50.9Z",
                                            "price_level": price, "new_quantity": qty}]}]})
    book.apply(n.parse(upd("offer", "21922.5", "1.5", 1), 0))
    book.apply(n.parse(upd("bid", "21921.73", "0", 2), 0))
    book.apply(n.parse(upd("bid", "21000", "0", 3), 0))  # absent level: ignored
    book.apply(n.parse(upd("bid", "21921.3", "0.5", 4), 0))
    assert book.best_bid() == (21921.3, 0.5) and book.best_ask() == (21922.5, 1.5)
    assert book.updates == 5 and book.last_seq == 4
    book.apply(n.parse(snap, 0))
    assert book.levels("ask", 5).shape == (0, 2) and book.best_bid() == (21921.73, 0.06317902)


def test_depth_truncation_happens_after_the_whole_message():
    book = OrderBook("kraken", "BTC-USD", depth=3)
    book.apply(normalize("kraken", _kraken_msg("snapshot", [(100, 1), (99, 1), (98, 1)], [(101, 1)]), 0))
    # insert above (pushes 98 out), then delete 100: 98 must survive, Kraken sends no re-add
    book.apply(normalize("kraken", _kraken_msg("update", [(100.5, 2), (100, 0)], []), 0))
    assert book.levels("bid").tolist() == [[100.5, 2.0], [99.0, 1.0], [98.0, 1.0]]
    book.apply(normalize("kraken", _kraken_msg("update", [(99.5, 1)], []), 0))
    assert book.levels("bid")[:, 0].tolist() == [100.5, 99.5, 99.0]


def test_other_symbols_and_kinds_are_skipped():
    book = OrderBook("binance", "BNB-BTC")
    n = Normalizer("binance")
    mixed = np.concatenate([
        n.parse((DATA / "binance" / "bookTicker.json").read_bytes(), 0),
        n.parse((DATA / "binance" / "depthUpdate.json").read_bytes(), 0),
        normalize("kraken", GUIDE, 0)])
    assert book.apply(mixed) == 2
    assert book.best_bid() == (0.0024, 10.0) and book.best_ask() == (0.0026, 100.0)


def test_random_updates_match_a_dict_book():
    rng = np.random.default_rng(5)
    book = OrderBook("binance", "BTC-USDT")
    ref = {1: {}, -1: {}}
    n = Normalizer("binance")
    for k in range(400):
        b = [[f"{rng.integers(900, 1000) / 10:.1f}", f"{rng.choice([0, rng.integers(1, 50)])}"] for _ in range(3)]
        a = [[f"{rng.integers(1001, 1100) / 10:.1f}", f"{rng.choice([0, rng.integers(1, 50)])}"] for _ in range(3)]
        msg = json.dumps({"e": "depthUpdate", "E": 1, "s": "BTCUSDT", "U": k, "u": k, "b": b, "a": a})
        book.apply(n.parse(msg, 0))
        for side, lv in ((1, b), (-1, a)):
            for p, q in lv:
                if float(q) == 0:
                    ref[side].pop(float(p), None)
                else:
                    ref[side][float(p)] = float(q)
    assert book.levels("bid").tolist() == [[p, q] for p, q in sorted(ref[1].items(), reverse=True)]
    assert book.levels("ask").tolist() == [[p, q] for p, q in sorted(ref[-1].items())]


def test_core_top_is_both_best_levels_in_one_call():
    """BookCore.top() (the aggregator's top of book after each update) equals
    (*best_bid(), *best_ask()), nan for an empty side."""
    book = OrderBook("binance", "BTC-USDT")
    assert all(math.isnan(x) for x in book._core.top())
    book.set_level("bid", 99.5, 2.0)
    top = book._core.top()
    assert top[:2] == (99.5, 2.0) and all(math.isnan(x) for x in top[2:])
    book.set_level("ask", 100.5, 3.0)
    book.set_level("bid", 99.7, 1.0)
    assert book._core.top() == (99.7, 1.0, 100.5, 3.0) == (*book.best_bid(), *book.best_ask())
    book.set_level("bid", 99.7, 0.0)
    book.set_level("bid", 99.5, 0.0)
    top = book._core.top()
    assert all(math.isnan(x) for x in top[:2]) and top[2:] == (100.5, 3.0)


def test_vwap_and_fill():
    book = OrderBook("binance", "BTC-USDT")
    for p, q in ((101.0, 1.0), (102.0, 2.0), (104.0, 1.0)):
        book.set_level("ask", p, q)
    book.set_level("bid", 100.0, 3.0)
    assert book.vwap("ask", 1.0) == 101.0
    assert book.vwap("ask", 3.0) == pytest.approx((101 + 2 * 102) / 3)
    assert book.vwap("ask", 4.0) == pytest.approx((101 + 204 + 104) / 4)
    assert math.isnan(book.vwap("ask", 4.5))  # too thin: nan
    assert book.fill("ask", 4.5) == (pytest.approx(409 / 4), 4.0)
    assert book.vwap("bid", 2.0) == 100.0
    assert book.mid() == 100.5
    empty = OrderBook("binance", "BTC-USDT")
    assert math.isnan(empty.vwap("bid", 1.0)) and math.isnan(empty.fill("bid", 1.0)[0])


def test_bad_arguments():
    book = OrderBook("kraken", "BTC-USD")
    with pytest.raises(ValueError, match="side"):
        book.levels("middle")
    with pytest.raises(ValueError, match="size"):
        book.vwap("bid", -1)
    with pytest.raises(ValueError, match="depth"):
        OrderBook("kraken", "BTC-USD", depth=0)
    with pytest.raises(ValueError, match="exchange"):
        OrderBook("ftx", "BTC-USD")
    with pytest.raises(ValueError, match="BASE-QUOTE"):
        OrderBook("kraken", "BTCUSD")
    with pytest.raises(TypeError, match="TICK_DTYPE"):
        book.apply(np.zeros(3))
    with pytest.raises(ValueError, match="price_decimals"):
        book.kraken_checksum(-1, 8)
    bad = T.empty_ticks(1)
    bad["exchange"], bad["kind"], bad["symbol"], bad["side"] = T.EXCHANGE_KRAKEN, T.KIND_BOOK_DELTA, b"BTC-USD", 1
    with pytest.raises(ValueError, match="valid book level"):
        book.apply(bad)  # NaN price


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([1, -1]), st.integers(1, 40), st.sampled_from([0.0, 0.5, 1.0, 2.5]),
                          st.booleans(), st.booleans()), max_size=60),
       st.one_of(st.none(), st.integers(1, 8)))
def test_book_invariants_under_random_records(recs, depth):
    """Sides stay sorted, hold no empty levels and respect the depth after every message."""
    book = OrderBook("coinbase", "BTC-USD", depth=depth)
    t = T.empty_ticks(len(recs))
    t["exchange"], t["symbol"] = T.EXCHANGE_COINBASE, b"BTC-USD"
    for k, (side, px, sz, begin, last) in enumerate(recs):
        t[k]["kind"] = T.KIND_BOOK_SNAPSHOT if begin else T.KIND_BOOK_DELTA
        t[k]["side"], t[k]["price"], t[k]["size"] = side, float(px), sz
        t[k]["flags"] = (T.FLAG_SNAPSHOT_BEGIN if begin else 0) | (T.FLAG_LAST if last else 0)
    assert book.apply(t) == len(recs)
    bids, asks = book.levels("bid"), book.levels("ask")
    assert (np.diff(bids[:, 0]) < 0).all() and (np.diff(asks[:, 0]) > 0).all()
    assert (bids[:, 1] > 0).all() and (asks[:, 1] > 0).all()
    if depth is not None:
        assert len(bids) <= depth and len(asks) <= depth


def test_kraken_checksum_of_the_book_channel_example_snapshot_and_update():
    """Kraken's book channel docs: snapshot (JSON numbers) then update, MATIC/USD precisions 4/8."""
    n = Normalizer("kraken")
    book = OrderBook("kraken", "MATIC-USD", depth=10)
    book.apply(n.parse((DATA / "kraken" / "book_snapshot_full.json").read_bytes(), 0))
    assert book.kraken_checksum(4, 8) == n.last_checksum == 2439117997
    # 18097.1547 on the wire must be written 18097.15470000: str(float) would give 18097.1547
    assert book.levels("bid")[6].tolist() == [0.566, 18097.1547]
    book.apply(n.parse((DATA / "kraken" / "book_update.json").read_bytes(), 0))
    assert book.kraken_checksum(4, 8) == n.last_checksum == 2114181697
    assert book.best_bid() == (0.5666, 4831.75496356) and book.levels("bid")[9].tolist() == [0.5657, 1098.3947558]


def test_big_batches_apply_the_same_with_the_gil_released():
    rng = np.random.default_rng(2)
    n = 5000
    t = T.empty_ticks(n)
    t["exchange"], t["symbol"], t["kind"] = T.EXCHANGE_BINANCE, b"BTC-USDT", T.KIND_BOOK_DELTA
    t["side"] = rng.choice([1, -1], n)
    t["price"] = np.where(t["side"] == 1, 100 - rng.integers(1, 300, n) / 100, 100 + rng.integers(1, 300, n) / 100)
    t["size"] = rng.choice([0.0, 1.0, 2.0], n)
    t["flags"][-1] = T.FLAG_LAST
    big, small = OrderBook("binance", "BTC-USDT"), OrderBook("binance", "BTC-USDT")
    assert big.apply(t) == n  # one batch: without the GIL
    for k in range(0, n, 10):  # small batches: with it
        small.apply(t[k:k + 10])
    assert big.levels("bid").tolist() == small.levels("bid").tolist()
    assert big.levels("ask").tolist() == small.levels("ask").tolist()


@pytest.mark.parametrize("pdec,qdec", [(0, 0), (1, 8), (2, 3), (5, 8), (8, 12)])
def test_kraken_checksum_equals_the_printf_text_for_any_double(pdec, qdec):
    # The checksum writes the digits of round(v * 10**decimals); it must equal
    # the C-printf text ("%.*f", correctly rounded, ties to even) for exchange
    # values, for doubles with more decimals than the precision, for rounding
    # ties (0.125 at 2 decimals) and for values past exact doubles.
    rng = random.Random(pdec * 100 + qdec)
    for trial in range(200):
        bids, asks = [], []
        mid = 10 ** rng.uniform(-3, 6)
        for i in range(10):
            for side, sign in ((bids, -1), (asks, 1)):
                px = mid * (1 + sign * 1e-4 * (i + 1))
                qty = 10 ** rng.uniform(-4, 4)
                kind = rng.random()
                if kind < 0.4:  # exchange-like: exactly pdec/qdec decimals
                    px, qty = round(px, pdec), round(qty, qdec)
                elif kind < 0.5:  # exact binary ties: k + 1/2 units of the last place
                    px = (math.floor(px * 10**pdec) + 0.5) / 10**pdec
                    qty = (math.floor(qty * 2**4) + 0.5) / 2**4
                elif kind < 0.55:  # beyond 2**53 units of the last place
                    px = 1e16 / 10**pdec * (1 + rng.random())
                if px <= 0 or qty <= 0:
                    continue
                side.append((px, qty))
        bids = sorted(set(bids), reverse=True)
        asks = sorted(set(asks))
        bids = list({p: (p, q) for p, q in bids}.values())
        asks = list({p: (p, q) for p, q in asks}.values())
        book = OrderBook("kraken", "BTC-USD", depth=10)
        book.apply(normalize("kraken", _kraken_msg("snapshot", bids, asks), 0))
        b, a = book.levels("bid", 10), book.levels("ask", 10)
        want = kraken_reference_checksum(
            [(f"{p:.{pdec}f}", f"{q:.{qdec}f}") for p, q in a],
            [(f"{p:.{pdec}f}", f"{q:.{qdec}f}") for p, q in b])
        assert book.kraken_checksum(pdec, qdec) == want, trial


def _levels_msg(exchange, symbol, recs, snapshot=False, checksum=0):
    """One message of book records: ``recs`` is a list of (side, price, size)."""
    t = T.empty_ticks(len(recs))
    t["exchange"], t["symbol"] = T.exchange_code(exchange), symbol.encode()
    t["kind"] = T.KIND_BOOK_SNAPSHOT if snapshot else T.KIND_BOOK_DELTA
    for k, (side, px, sz) in enumerate(recs):
        t[k]["side"], t[k]["price"], t[k]["size"] = side, px, sz
    t["seq"] = 7
    if snapshot:
        t["flags"][0] |= T.FLAG_SNAPSHOT_BEGIN
    t["flags"][-1] |= T.FLAG_LAST
    t["checksum"][-1] = checksum
    return t


def _state(book):
    return (book.levels("bid").tolist(), book.levels("ask").tolist(), book.updates,
            book.last_seq, book.last_checksum, book.ts_event)


@pytest.mark.parametrize("bad", [(1, 99.0, -1.0), (-1, 101.0, math.nan), (1, math.inf, 1.0),
                                 (-1, -101.0, 1.0), (1, 0.0, 1.0), (0, 99.0, 1.0)])
def test_a_bad_record_rejects_the_whole_message_and_changes_nothing(bad):
    # depth 3: the good records before the bad one would insert a level above
    # the others and push one out; none of it may happen, the cut included
    book = OrderBook("kraken", "BTC-USD", depth=3)
    book.apply(_levels_msg("kraken", "BTC-USD", [(1, 100.0, 1.0), (1, 99.0, 1.0), (1, 98.0, 1.0),
                                                 (-1, 101.0, 1.0)], snapshot=True, checksum=11))
    before = _state(book)
    msg = _levels_msg("kraken", "BTC-USD",
                      [(1, 100.5, 2.0), (-1, 100.8, 1.0), (1, 100.0, 0.0), bad],
                      checksum=22)
    msg["seq"] = 8
    with pytest.raises(ValueError, match=r"ticks\[3\] is not a valid book level") as err:
        book.apply(msg)
    assert _state(book) == before
    assert "left unchanged" in str(err.value)
    # a big message (the merge path) is checked whole too
    big = _levels_msg("kraken", "BTC-USD", [(1, 90.0 - k / 10, 1.0) for k in range(200)] + [bad],
                      snapshot=True)
    with pytest.raises(ValueError, match=r"ticks\[200\]"):
        book.apply(big)
    assert _state(book) == before
    with pytest.raises(ValueError, match="price"):
        book.set_level("bid", -1.0, 1.0)


def _dict_book(recs_by_message):
    """Reference: apply messages record by record to dicts, cut to nothing."""
    ref = {1: {}, -1: {}}
    for msg in recs_by_message:
        for side, px, sz, begin in msg:
            if begin:
                ref = {1: {}, -1: {}}
            if sz == 0:
                ref[side].pop(px, None)
            else:
                ref[side][px] = sz
    return ([[p, q] for p, q in sorted(ref[1].items(), reverse=True)],
            [[p, q] for p, q in sorted(ref[-1].items())])


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.tuples(st.sampled_from([1, -1]), st.integers(1, 120),
                                   st.sampled_from([0.0, 0.5, 1.0, 2.5]),
                                   st.integers(0, 30).map(lambda k: k == 0)),
                         min_size=1, max_size=300), min_size=1, max_size=4),
       st.sampled_from(["as drawn", "reversed", "ascending", "descending"]))
def test_big_messages_merge_as_records_applied_one_by_one(messages, order):
    """Messages of 64+ records take the sort-and-merge path: the same book as a
    dict applied record by record (last record of a price wins, 0 removes,
    a snapshot start clears both sides), in any order of levels."""
    if order == "reversed":
        messages = [msg[::-1] for msg in messages]
    elif order != "as drawn":  # sorted by price (stable: duplicates keep their order)
        messages = [sorted(msg, key=lambda r: r[1] if order == "ascending" else -r[1])
                    for msg in messages]
    book = OrderBook("coinbase", "BTC-USD")
    for msg in messages:
        t = T.empty_ticks(len(msg))
        t["exchange"], t["symbol"], t["kind"] = T.EXCHANGE_COINBASE, b"BTC-USD", T.KIND_BOOK_DELTA
        for k, (side, px, sz, begin) in enumerate(msg):
            t[k]["side"], t[k]["price"], t[k]["size"] = side, float(px), sz
            t[k]["flags"] = T.FLAG_SNAPSHOT_BEGIN if begin else 0
        t["flags"][-1] |= T.FLAG_LAST
        assert book.apply(t) == len(msg)
    bids, asks = _dict_book([[(s, float(p), q, b) for s, p, q, b in m] for m in messages])
    assert book.levels("bid").tolist() == bids
    assert book.levels("ask").tolist() == asks
    assert book.updates == len(messages)


def test_a_snapshot_in_the_worst_order_applies_as_fast_as_in_exchange_order():
    """Levels sent worst first (every insert at the front of its side) used to cost
    a memmove of the whole side each: quadratic (a 2 x 50k-level snapshot took
    1.7 s against 3 ms in exchange order).  Compared with itself in exchange
    order, with a margin no loaded machine reaches."""
    import time

    def snapshot(n, worst):
        k = np.arange(1, n + 1)
        bids, asks = 50_000 - k * 0.01, 50_000 + k * 0.01
        if worst:
            bids, asks = bids[::-1], asks[::-1]
        return _levels_msg("binance", "BTC-USDT", [(1, p, 1.0) for p in bids]
                           + [(-1, p, 1.0) for p in asks], snapshot=True)

    def best_time(t):
        out = []
        for _ in range(3):
            book = OrderBook("binance", "BTC-USDT")
            t0 = time.perf_counter()
            book.apply(t)
            out.append(time.perf_counter() - t0)
        return min(out), book

    n = 50_000
    fast, b1 = best_time(snapshot(n, worst=False))
    slow, b2 = best_time(snapshot(n, worst=True))
    k = np.arange(1, n + 1)
    for book in (b1, b2):  # best first whichever order the levels came in
        assert book.levels("bid").tolist() == [[p, 1.0] for p in 50_000 - k * 0.01]
        assert book.levels("ask").tolist() == [[p, 1.0] for p in 50_000 + k * 0.01]
    assert slow < 10 * fast + 0.05, (slow, fast)


def test_crossed_and_locked_books_are_flagged():
    book = OrderBook("binance", "BTC-USDT")
    assert book.status == "empty" and not book.crossed
    book.apply(_levels_msg("binance", "BTC-USDT", [(1, 100.0, 1.0)]))
    assert book.status == "one_sided" and not book.crossed
    book.apply(_levels_msg("binance", "BTC-USDT", [(1, 101.0, 1.0), (-1, 100.5, 2.0)],
                           snapshot=True))
    assert book.crossed and book.status == "crossed"
    book.apply(_levels_msg("binance", "BTC-USDT", [(1, 101.0, 0.0), (1, 100.5, 1.0)]))
    assert book.crossed and book.status == "locked"
    book.apply(_levels_msg("binance", "BTC-USDT", [(1, 100.5, 0.0), (1, 100.0, 1.0)]))
    assert not book.crossed and book.status == "ok"
    book.set_level("bid", 100.7, 1.0)
    assert book.status == "crossed"
    book.clear()
    assert book.status == "empty" and not book.crossed


def test_huge_and_non_finite_arguments_are_value_errors_naming_the_argument():
    book = OrderBook("kraken", "BTC-USD")
    for bad in (2**63, 2**64, math.inf, math.nan, 1.5, True):
        with pytest.raises(ValueError, match="depth"):
            OrderBook("kraken", "BTC-USD", depth=bad)
        with pytest.raises(ValueError, match="^n must"):
            book.levels("bid", n=bad)
    for bad in (math.inf, -math.inf, math.nan, 2**63, 19):
        with pytest.raises(ValueError, match="price_decimals"):
            book.kraken_checksum(bad, 8)
        with pytest.raises(ValueError, match="qty_decimals"):
            book.kraken_checksum(1, bad)
    # what stays accepted: integral floats and numpy integers
    assert OrderBook("kraken", "BTC-USD", depth=10.0).depth == 10
    assert book.levels("bid", np.int64(3)).shape == (0, 2)
    assert book.levels("bid", 2**63 - 1).shape == (0, 2)
