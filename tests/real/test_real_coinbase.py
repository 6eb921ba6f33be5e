"""hftsig against a recorded real Coinbase Advanced Trade session.

One connection subscribed to ``level2``, ``market_trades`` and ``heartbeats``
on BTC-USD and ETH-USD (FastMM's production recording, cut as described in
``tests/data/real/README.md``).  The reference is built here from the raw
JSON: Decimal books per product, ``float(text)`` for every number, and the
side of each live trade judged against the reference book at its arrival.
"""
from __future__ import annotations

import json
from decimal import Decimal

from hftsig.market.book import OrderBook
from hftsig.market.normalize import Normalizer
from hftsig.market.ticks import (
    FLAG_LAST,
    FLAG_SNAPSHOT_BEGIN,
    KIND_BOOK_DELTA,
    KIND_BOOK_SNAPSHOT,
    KIND_TRADE,
)
from real_sessions import coinbase_lines, rfc3339_ns


def messages():
    return [json.loads(frame) for _, frame in coinbase_lines()]


class ReferenceBooks:
    """Decimal books per product from ``l2_data`` (``new_quantity`` absolute, "0" removes)."""

    def __init__(self):
        self.books = {}

    def apply(self, event):
        if event["type"] == "snapshot":
            self.books[event["product_id"]] = {"bid": {}, "offer": {}}
        book = self.books[event["product_id"]]
        for u in event["updates"]:
            price, qty = Decimal(u["price_level"]), Decimal(u["new_quantity"])
            if qty == 0:
                book[u["side"]].pop(price, None)
            else:
                book[u["side"]][price] = qty

    def side(self, product, side):
        levels = self.books[product]["bid" if side == "bid" else "offer"]
        return [(float(p), float(q)) for p, q in sorted(levels.items(), reverse=(side == "bid"))]

    def touch(self, product):
        book = self.books[product]
        return max(book["bid"]), min(book["offer"])


def live_trades():
    """``(message index, trade, aggressor side by the reference book at arrival)`` for the
    trades of ``update`` events (a subscription's ``snapshot`` lists past trades)."""
    ref = ReferenceBooks()
    out = []
    for i, msg in enumerate(messages()):
        for ev in msg["events"]:
            if msg["channel"] == "l2_data":
                ref.apply(ev)
            elif msg["channel"] == "market_trades" and ev["type"] == "update":
                for t in ev["trades"]:
                    bid, ask = ref.touch(t["product_id"])
                    price = Decimal(t["price"])
                    side = 1 if price >= ask else -1 if price <= bid else 0
                    out.append((i, t, side))
    return out


def test_one_connection_numbered_without_a_gap():
    msgs = messages()
    assert [m["sequence_num"] for m in msgs] == list(range(31))
    norm = Normalizer("coinbase")
    for m, (_, frame) in zip(msgs, coinbase_lines()):
        norm.parse(frame, 1)
        assert norm.last_seq == m["sequence_num"]
        assert norm.last_channel == m["channel"]
    assert {m["channel"] for m in msgs} == {"l2_data", "market_trades", "subscriptions", "heartbeats"}


def test_books_equal_the_reference_after_every_l2_message():
    norm = Normalizer("coinbase")
    books = {p: OrderBook("coinbase", p) for p in ("BTC-USD", "ETH-USD")}
    ref = ReferenceBooks()
    n_l2 = 0
    for m, (_, frame) in zip(messages(), coinbase_lines()):
        ticks = norm.parse(frame, 1)
        if m["channel"] != "l2_data":
            continue
        n_l2 += 1
        (ev,) = m["events"]
        snapshot = ev["type"] == "snapshot"
        want = [(1 if u["side"] == "bid" else -1, float(u["price_level"]), float(u["new_quantity"]),
                 rfc3339_ns(u["event_time"])) for u in ev["updates"]]
        got = [(int(t["side"]), float(t["price"]), float(t["size"]), int(t["ts_event"])) for t in ticks]
        assert got == want
        assert (ticks["kind"] == (KIND_BOOK_SNAPSHOT if snapshot else KIND_BOOK_DELTA)).all()
        assert (ticks["seq"] == m["sequence_num"]).all()
        assert bool(ticks["flags"][0] & FLAG_SNAPSHOT_BEGIN) == snapshot
        assert ticks["flags"][-1] & FLAG_LAST
        books[ev["product_id"]].apply(ticks)
        ref.apply(ev)
        for side in ("bid", "ask"):
            got_levels = [(float(p), float(q)) for p, q in books[ev["product_id"]].levels(side)]
            assert got_levels == ref.side(ev["product_id"], side), (m["sequence_num"], side)
    assert n_l2 == 24


def test_recorded_trade_side_is_the_maker_s():
    """What the venue sends (the recording wins over the docs' wording): the live trade
    printed at the best offer, an aggressive buy, says SELL."""
    trades = live_trades()
    assert len(trades) == 1
    _, t, aggressor = trades[0]
    assert (t["product_id"], t["price"], aggressor) == ("BTC-USD", "83277.26", 1)
    assert t["side"] == "SELL"


def test_trade_ticks_carry_the_aggressor_side():
    norm = Normalizer("coinbase")
    lines = coinbase_lines()
    for i, t, aggressor in live_trades():
        ticks = norm.parse(lines[i][1], 1)
        (tick,) = ticks[ticks["kind"] == KIND_TRADE]
        assert (float(tick["price"]), float(tick["size"])) == (float(t["price"]), float(t["size"]))
        assert int(tick["seq"]) == int(t["trade_id"])
        assert int(tick["ts_event"]) == rfc3339_ns(t["time"])
        assert int(tick["side"]) == aggressor


def test_trade_snapshot_records_are_the_raw_trades():
    norm = Normalizer("coinbase")
    for m, (_, frame) in zip(messages(), coinbase_lines()):
        ticks = norm.parse(frame, 1)
        if m["channel"] != "market_trades" or m["events"][0]["type"] != "snapshot":
            continue
        trades = m["events"][0]["trades"]
        assert len(ticks) == len(trades) == 10
        for tick, t in zip(ticks, trades):
            assert bytes(tick["symbol"]).decode() == t["product_id"]
            assert (float(tick["price"]), float(tick["size"])) == (float(t["price"]), float(t["size"]))
            assert int(tick["seq"]) == int(t["trade_id"]) and int(tick["ts_event"]) == rfc3339_ns(t["time"])


def test_flag_last_only_on_the_last_trade_of_a_message():
    norm = Normalizer("coinbase")
    n = 0
    for m, (_, frame) in zip(messages(), coinbase_lines()):
        ticks = norm.parse(frame, 1)
        if m["channel"] == "market_trades":
            flags = [bool(f & FLAG_LAST) for f in ticks["flags"]]
            assert flags == [False] * (len(flags) - 1) + [True]
            n += 1
    assert n == 3


def test_heartbeats_and_subscriptions_make_no_ticks():
    norm = Normalizer("coinbase")
    kinds = {}
    for m, (_, frame) in zip(messages(), coinbase_lines()):
        ticks = norm.parse(frame, 1)
        if m["channel"] in ("heartbeats", "subscriptions"):
            assert len(ticks) == 0
            kinds.setdefault(m["channel"], norm.last_type)
    assert kinds == {"subscriptions": "subscribed", "heartbeats": "heartbeat"}
