"""hftsig against recorded real Kraken WebSocket v2 data.

A BTC/USD ``book`` snapshot and the first 100 of the 509 updates that followed
it, every one with Kraken's CRC32 (python-kraken-sdk's fixture), and entries of
a real ``instrument`` snapshot, ``ETH2.S/ETH`` among them (quoted from
kraken-data-recorder's test data in ``real_sessions.KRAKEN_INSTRUMENT_EXCERPT``);
sources in ``tests/data/real/README.md``.  The reference here is independent of
hftsig: Decimal books from the raw JSON, Kraken's checksum written out from its
guide with the pair's precisions from the raw instrument data, ``zlib.crc32``.
"""
from __future__ import annotations

import json
import re
import zlib
from decimal import Decimal

from hftsig.market.book import OrderBook
from hftsig.market.normalize import Normalizer
from hftsig.market.ticks import FLAG_LAST, FLAG_SNAPSHOT_BEGIN, KIND_BOOK_DELTA, KIND_BOOK_SNAPSHOT
from real_sessions import KRAKEN_INSTRUMENT_EXCERPT, kraken_book_frames, kraken_book_messages

DEPTH = 10  # the session subscribed to depth 10: its snapshot has 10 levels a side


def instrument_pairs():
    return {p["symbol"]: p for p in json.loads(KRAKEN_INSTRUMENT_EXCERPT)["data"]["pairs"]}


def btc_usd_precisions():
    p = instrument_pairs()["BTC/USD"]
    return p["price_precision"], p["qty_precision"]


class ReferenceBook:
    """Decimal book cut to the subscribed depth after every message (Kraken sends no
    deletes for levels that fall out of it)."""

    def __init__(self):
        self.bids, self.asks = {}, {}

    def apply(self, entry, snapshot):
        if snapshot:
            self.bids, self.asks = {}, {}
        for side, book in (("bids", self.bids), ("asks", self.asks)):
            for level in entry[side]:
                if level["qty"] == 0:
                    book.pop(level["price"], None)
                else:
                    book[level["price"]] = level["qty"]
        for book, reverse in ((self.bids, True), (self.asks, False)):
            for price in sorted(book, reverse=reverse)[DEPTH:]:
                del book[price]

    def side(self, name):
        book = self.bids if name == "bid" else self.asks
        return sorted(book.items(), reverse=(name == "bid"))

    def checksum(self, price_precision, qty_precision):
        """CRC32 of the top 10 asks ascending then top 10 bids descending, each price and
        quantity written with the pair's precision, '.' removed, leading zeros stripped."""
        def text(value, places):
            return f"{value.quantize(Decimal(1).scaleb(-places)):f}".replace(".", "").lstrip("0")

        parts = [text(p, price_precision) + text(q, qty_precision)
                 for p, q in self.side("ask")[:10] + self.side("bid")[:10]]
        return zlib.crc32("".join(parts).encode())


def test_reference_checksum_is_kraken_s_on_every_message():
    """The reference is right before it judges hftsig: all 101 checksums match."""
    pp, qp = btc_usd_precisions()
    assert (pp, qp) == (1, 8)
    ref = ReferenceBook()
    messages = kraken_book_messages()
    assert len(messages) == 101 and messages[0]["type"] == "snapshot"
    assert all(m["type"] == "update" for m in messages[1:])
    for msg in messages:
        (entry,) = msg["data"]
        ref.apply(entry, msg["type"] == "snapshot")
        assert ref.checksum(pp, qp) == entry["checksum"]


def test_hftsig_book_and_checksum_after_every_message():
    pp, qp = btc_usd_precisions()
    norm = Normalizer("kraken")
    book = OrderBook("kraken", "BTC-USD", depth=DEPTH)
    ref = ReferenceBook()
    for msg, frame in zip(kraken_book_messages(), kraken_book_frames()):
        (entry,) = msg["data"]
        snapshot = msg["type"] == "snapshot"
        ticks = norm.parse(frame.data, 1)
        assert norm.last_checksum == entry["checksum"]
        assert (ticks["kind"] == (KIND_BOOK_SNAPSHOT if snapshot else KIND_BOOK_DELTA)).all()
        assert bool(ticks["flags"][0] & FLAG_SNAPSHOT_BEGIN) == snapshot
        assert ticks["flags"][-1] & FLAG_LAST and int(ticks["checksum"][-1]) == entry["checksum"]
        want = ([(1, lv["price"], lv["qty"]) for lv in entry["bids"]]
                + [(-1, lv["price"], lv["qty"]) for lv in entry["asks"]])
        got = [(int(t["side"]), float(t["price"]), float(t["size"])) for t in ticks]
        assert got == [(s, float(p), float(q)) for s, p, q in want]
        book.apply(ticks)
        ref.apply(entry, snapshot)
        for side in ("bid", "ask"):
            assert [(float(p), float(q)) for p, q in book.levels(side)] == [
                (float(p), float(q)) for p, q in ref.side(side)]
        assert int(book.kraken_checksum(pp, qp)) == entry["checksum"]


def test_instrument_snapshot_is_what_the_docs_describe():
    """The quoted entries: one pair not a plain BASE/QUOTE, numbers as JSON numbers (not
    strings) written as Kraken wrote them (trailing zeros, no fraction when whole)."""
    text = KRAKEN_INSTRUMENT_EXCERPT
    doc = json.loads(text)
    assert (doc["channel"], doc["type"]) == ("instrument", "snapshot")
    pairs = doc["data"]["pairs"]
    odd = [p["symbol"] for p in pairs if not re.fullmatch(r"[A-Z0-9]+/[A-Z0-9]+", p["symbol"])]
    assert odd == ["ETH2.S/ETH"]
    # marginable pairs carry the margin fields, spot-only ones do not
    margin = {"margin_initial", "position_limit_long", "position_limit_short"}
    for p in pairs:
        assert (margin <= set(p)) == p["marginable"] and (margin & set(p) == set()) != p["marginable"]
    for p in pairs:
        assert isinstance(p["price_precision"], int) and isinstance(p["qty_precision"], int)
        for key in ("tick_size", "price_increment", "qty_increment", "qty_min", "cost_min"):
            assert type(p[key]) in (int, float), (p["symbol"], key)  # a number, 1 when whole
    assert '"collateral_value":1.00,' in text and '"tick_size":1,' in text  # Kraken's number text


def test_instrument_snapshot_gives_every_mappable_pair_its_precisions():
    pairs = instrument_pairs()
    norm = Normalizer("kraken")
    ticks = norm.parse(KRAKEN_INSTRUMENT_EXCERPT, 1)
    assert len(ticks) == 0 and norm.last_channel == "instrument"
    want = {sym.replace("/", "-"): (p["price_precision"], p["qty_precision"])
            for sym, p in pairs.items() if sym != "ETH2.S/ETH"}
    assert dict(norm.precisions) == want
