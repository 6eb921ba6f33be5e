"""hftsig against a recorded real Binance session (cryptofeed's sample data).

One symbol (SXPBTC) of a combined-stream connection: its diff depth,
bookTicker, aggTrade and kline frames of the first 12 seconds, and the REST
depth snapshot fetched after its stream started, cut to the best 50 levels a
side (``tests/data/real/README.md``).  The expected values come from the raw
JSON in this file: Decimal books synced as Binance documents it, and
``float(text)`` for every number, never from hftsig's own code.

The cut snapshot is the start of both books compared (hftsig's and the
reference), so they must agree on every level.  Against the venue's book the cut
is exact at the top: a level beyond it that a diff touches is set to the diff's
quantity as on the venue, and the best prices never come near the cut (checked
below, and against the bookTicker frames where their update ids meet the diffs').
"""
from __future__ import annotations

import json
from decimal import Decimal

import pytest

from hftsig.market.book import OrderBook
from hftsig.market.normalize import Normalizer
from hftsig.market.ticks import (
    FLAG_LAST,
    FLAG_SNAPSHOT_BEGIN,
    KIND_BOOK_DELTA,
    KIND_BOOK_SNAPSHOT,
    KIND_QUOTE,
    KIND_TRADE,
)
from real_sessions import (
    BINANCE_REST_LEVELS_KEPT,
    binance_rest_frames,
    binance_session,
    binance_ws_frames,
)

SYMBOLS = {"SXPBTC": "SXP-BTC"}


def raw(frame):
    """The frame's JSON, combined-stream wrapper removed."""
    msg = json.loads(frame.data)
    return msg.get("data", msg)


class ReferenceBook:
    """Decimal book of one symbol: price text -> quantity, synced by the documented rules."""

    def __init__(self, snapshot):
        self.last = snapshot["lastUpdateId"]
        self.sides = {"b": {}, "a": {}}
        for key, side in (("bids", "b"), ("asks", "a")):
            for p, q in snapshot[key]:
                self.sides[side][Decimal(p)] = Decimal(q)

    def apply(self, event):
        for side in ("b", "a"):
            for p, q in event[side]:
                if Decimal(q) == 0:
                    self.sides[side].pop(Decimal(p), None)
                else:
                    self.sides[side][Decimal(p)] = Decimal(q)
        self.last = event["u"]

    def levels(self, side):
        book = self.sides[side]
        prices = sorted(book, reverse=(side == "b"))
        return [(float(p), float(book[p])) for p in prices]


def hftsig_levels(book, side):
    return [(float(p), float(q)) for p, q in book.levels(side)]


def synced_events():
    """Per symbol: the REST snapshot and the diff events that continue it, checked
    against Binance's rules (drop u <= lastUpdateId; the first kept event has
    U <= lastUpdateId + 1 <= u; then each U is the previous u + 1)."""
    snapshots = {f.symbol: f for f in binance_rest_frames()}
    out = {}
    for venue_symbol, snap_frame in snapshots.items():
        snap = json.loads(snap_frame.data)
        events = [raw(f) for f in binance_ws_frames()
                  if raw(f).get("e") == "depthUpdate" and raw(f)["s"] == venue_symbol]
        kept = [e for e in events if e["u"] > snap["lastUpdateId"]]
        assert kept, venue_symbol
        assert kept[0]["U"] <= snap["lastUpdateId"] + 1 <= kept[0]["u"], venue_symbol
        for a, b in zip(kept, kept[1:]):
            assert b["U"] == a["u"] + 1, (venue_symbol, a["u"], b["U"])
        out[venue_symbol] = (snap_frame, snap, kept)
    return out


def test_recording_is_one_session_with_a_snapshot_per_symbol():
    ws = binance_ws_frames()
    rest = binance_rest_frames()
    assert len(ws) == 61 and len(rest) == 1
    assert {f.symbol for f in rest} == set(SYMBOLS)
    first_diff = {}
    for f in ws:
        m = raw(f)
        if m.get("e") == "depthUpdate":
            first_diff.setdefault(m["s"], f.ts_recv)
    # each snapshot was fetched after its symbol's diff stream had started, as documented
    for f in rest:
        assert f.ts_recv > first_diff[f.symbol]


def test_snapshot_and_diff_chain_give_the_reference_book_after_every_diff():
    chains = synced_events()
    # 44 diffs recorded, the first 7 before the snapshot (u <= lastUpdateId: dropped)
    assert sum(len(kept) for _, _, kept in chains.values()) == 37
    norm = Normalizer("binance")
    for venue_symbol, (snap_frame, snap, kept) in chains.items():
        symbol = SYMBOLS[venue_symbol]
        ref = ReferenceBook(snap)
        book = OrderBook("binance", symbol)
        ticks = norm.parse(snap_frame.data, snap_frame.ts_recv, venue_symbol)
        assert norm.last_seq == snap["lastUpdateId"]
        assert (ticks["kind"] == KIND_BOOK_SNAPSHOT).all()
        assert ticks["flags"][0] & FLAG_SNAPSHOT_BEGIN
        assert len(ticks) == len(snap["bids"]) + len(snap["asks"]) == 2 * BINANCE_REST_LEVELS_KEPT
        # the deepest kept level a side: the book is exact from the top down to it
        last_bid, last_ask = Decimal(snap["bids"][-1][0]), Decimal(snap["asks"][-1][0])
        book.apply(ticks)
        assert hftsig_levels(book, "bid") == ref.levels("b")
        assert hftsig_levels(book, "ask") == ref.levels("a")
        for event in kept:
            frame = json.dumps({"stream": venue_symbol.lower() + "@depth@100ms", "data": event})
            ticks = norm.parse(frame, 1)
            assert (norm.last_seq_first, norm.last_seq) == (event["U"], event["u"])
            book.apply(ticks)
            ref.apply(event)
            assert hftsig_levels(book, "bid") == ref.levels("b"), (venue_symbol, event["u"])
            assert hftsig_levels(book, "ask") == ref.levels("a"), (venue_symbol, event["u"])
            assert book.best_bid()[0] < book.best_ask()[0]
            # the best ten levels a side never reach the cut
            assert min(sorted(ref.sides["b"], reverse=True)[:10]) > last_bid
            assert max(sorted(ref.sides["a"])[:10]) < last_ask


def test_every_depth_level_record_is_the_raw_level():
    norm = Normalizer("binance")
    n_levels = 0
    for f in binance_ws_frames():
        m = raw(f)
        if m.get("e") != "depthUpdate":
            continue
        ticks = norm.parse(f.data, f.ts_recv)
        want = [(1, p, q) for p, q in m["b"]] + [(-1, p, q) for p, q in m["a"]]
        assert len(ticks) == len(want)
        assert (ticks["kind"] == KIND_BOOK_DELTA).all()
        assert [bytes(s) for s in ticks["symbol"]] == [SYMBOLS[m["s"]].encode()] * len(want)
        for t, (side, p, q) in zip(ticks, want):
            assert (int(t["side"]), float(t["price"]), float(t["size"])) == (side, float(p), float(q))
            assert int(t["seq_first"]) == m["U"] and int(t["seq"]) == m["u"]
            assert int(t["ts_event"]) == m["E"] * 1_000_000
            assert int(t["ts_recv"]) == f.ts_recv
        n_levels += len(want)
    assert n_levels == 71


def test_book_tickers_and_trades_are_the_raw_values():
    norm = Normalizer("binance")
    seen = {"bookTicker": 0, "aggTrade": 0}
    for f in binance_ws_frames():
        stream = json.loads(f.data)["stream"]
        m = raw(f)
        ticks = norm.parse(f.data, f.ts_recv)
        if stream.endswith("@bookTicker"):
            seen["bookTicker"] += 1
            (t,) = ticks
            assert int(t["kind"]) == KIND_QUOTE and int(t["seq"]) == m["u"]
            assert (float(t["bid_px"]), float(t["bid_sz"]), float(t["ask_px"]), float(t["ask_sz"])) == (
                float(m["b"]), float(m["B"]), float(m["a"]), float(m["A"]))
            # bookTicker has no event time: the receive time stands in
            assert int(t["ts_event"]) == f.ts_recv
        elif stream.endswith("@aggTrade"):
            seen["aggTrade"] += 1
            (t,) = ticks
            assert int(t["kind"]) == KIND_TRADE and int(t["seq"]) == m["a"]
            assert (float(t["price"]), float(t["size"])) == (float(m["p"]), float(m["q"]))
            assert int(t["side"]) == (-1 if m["m"] else 1)  # m: the buyer was the maker
            assert int(t["ts_event"]) == m["T"] * 1_000_000
            assert t["flags"] & FLAG_LAST
        elif "@kline" in stream:
            assert len(ticks) == 0  # not a message hftsig makes ticks of
    assert seen == {"bookTicker": 12, "aggTrade": 3}


def test_aggressor_side_agrees_with_the_book_at_arrival():
    """Binance's ``m`` is documented, not ambiguous: a trade at/above the best ask of
    the reference book at its arrival has ``m`` false (buyer took), and hftsig says buy."""
    chains = synced_events()
    refs = {}
    judged = 0
    norm = Normalizer("binance")
    pending = {s: list(kept) for s, (_, _, kept) in chains.items()}
    snap_at = {s: f.ts_recv for s, (f, _, _) in chains.items()}
    for f in binance_session():
        if f.source == "rest":
            refs[f.symbol] = ReferenceBook(json.loads(f.data))
            continue
        m = raw(f)
        if m.get("e") == "depthUpdate" and m["s"] in refs:
            if pending[m["s"]] and pending[m["s"]][0]["u"] == m["u"]:
                refs[m["s"]].apply(pending[m["s"]].pop(0))
        elif m.get("e") == "aggTrade" and m["s"] in refs and f.ts_recv > snap_at[m["s"]]:
            ref = refs[m["s"]]
            bid, ask = max(ref.sides["b"]), min(ref.sides["a"])
            price = Decimal(m["p"])
            expected = 1 if price >= ask else -1 if price <= bid else 0
            assert expected != 0
            assert expected == (-1 if m["m"] else 1)
            (t,) = norm.parse(f.data, f.ts_recv)
            assert int(t["side"]) == expected
            judged += 1
    assert judged == 3


def test_book_ticker_is_the_top_of_the_synced_book_where_update_ids_meet():
    """Where a bookTicker's ``u`` is the snapshot's ``lastUpdateId`` or a diff's ``u``, both
    describe the book after the same update: the best bid and ask of the reference book
    (and of hftsig's) are the bookTicker's, so the cut snapshot is exact at the top."""
    ((venue_symbol, (snap_frame, snap, kept)),) = synced_events().items()
    ref = ReferenceBook(snap)
    norm = Normalizer("binance")
    book = OrderBook("binance", SYMBOLS[venue_symbol])
    book.apply(norm.parse(snap_frame.data, snap_frame.ts_recv, venue_symbol))
    tops = {snap["lastUpdateId"]: (ref.levels("b")[0], ref.levels("a")[0],
                                   book.best_bid(), book.best_ask())}
    for event in kept:
        frame = json.dumps({"stream": venue_symbol.lower() + "@depth@100ms", "data": event})
        book.apply(norm.parse(frame, 1))
        ref.apply(event)
        tops[event["u"]] = (ref.levels("b")[0], ref.levels("a")[0], book.best_bid(), book.best_ask())
    met = 0
    for f in binance_ws_frames():
        m = raw(f)
        if json.loads(f.data)["stream"].endswith("@bookTicker") and m["u"] in tops:
            ref_bid, ref_ask, bid, ask = tops[m["u"]]
            want_bid, want_ask = (float(m["b"]), float(m["B"])), (float(m["a"]), float(m["A"]))
            assert (ref_bid, ref_ask) == (want_bid, want_ask), m["u"]
            assert (tuple(map(float, bid)), tuple(map(float, ask))) == (want_bid, want_ask), m["u"]
            met += 1
    assert met == 6


@pytest.mark.parametrize("venue_symbol", sorted(SYMBOLS))
def test_rest_snapshot_numbers_keep_binance_text_format(venue_symbol):
    """The venue's number format the simulator is held to: every price and quantity a
    string with exactly eight decimals."""
    (f,) = [f for f in binance_rest_frames() if f.symbol == venue_symbol]
    snap = json.loads(f.data)
    assert set(snap) == {"lastUpdateId", "bids", "asks"}
    for p, q in snap["bids"] + snap["asks"]:
        for text in (p, q):
            whole, _, frac = text.partition(".")
            assert whole.isdigit() and len(frac) == 8 and frac.isdigit(), text
