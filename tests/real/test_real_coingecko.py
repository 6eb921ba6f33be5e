"""hftsig against CoinGecko ``/simple/price`` responses (``tests/data/real/README.md``).

The expected price is ``float`` of the raw number's text and the event time
``last_updated_at``, both read here from the body with ``json``.
"""
from __future__ import annotations

import json
from decimal import Decimal

from hftsig.market.normalize import Normalizer
from hftsig.market.ticks import KIND_PRICE
from real_sessions import coingecko_frames

COINS = {"bitcoin": "BTC", "ethereum": "ETH"}


def test_prices_and_update_times_are_the_raw_values():
    norm = Normalizer("coingecko")
    n = 0
    for frame in coingecko_frames():
        body = json.loads(frame.data, parse_float=Decimal)
        want = [(f"{COINS[coin]}-{vs.upper()}", float(value), fields["last_updated_at"] * 10**9)
                for coin, fields in body.items()
                for vs, value in fields.items() if "_" not in vs]
        ticks = norm.parse(frame.data, 5)
        assert (ticks["kind"] == KIND_PRICE).all()
        got = [(bytes(t["symbol"]).decode(), float(t["price"]), int(t["ts_event"])) for t in ticks]
        assert got == want
        assert (ticks["ts_recv"] == 5).all()
        n += len(ticks)
    assert n == 1


def test_response_shape_the_simulator_is_held_to():
    for frame in coingecko_frames():
        body = json.loads(frame.data)
        for coin, fields in body.items():
            assert coin in COINS
            assert type(fields["last_updated_at"]) is int
            assert all(type(v) in (int, float) for v in fields.values())
