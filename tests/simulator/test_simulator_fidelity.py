"""The simulators held to the venues: every message type they send, against a real one.

The loopback simulators are subscribed to as a client of the live venue would
(the subscribe messages written out here from the venues' documentation),
every message type they send is captured, and each is compared with a
recorded real message of the same type (``tests/data/real``; where no
recording of a type exists, the venue's documented example in
``tests/data/samples``): the same keys at every level, the same JSON types
(string, number, boolean, null, nesting), the same number text format.  A
simulator that drifts from the venues fails here.
"""
from __future__ import annotations

import json
import re
import time
import urllib.request

import pytest
import websocket

from hftsig.simulator import SimulatedExchanges
from real_sessions import (
    BINANCE_REST,
    KRAKEN_INSTRUMENT_EXCERPT,
    REAL,
    binance_ws_frames,
    coinbase_lines,
    coingecko_frames,
    kraken_book_messages,
)

SAMPLES = REAL.parent / "samples"
SYMBOLS = ["BTC-USDT", "ETH-USDT", "BTC-USD", "ETH-USD"]
CAPTURE_TIMEOUT_S = 30.0  # generous: each capture ends as soon as every type was seen


# -- shapes ---------------------------------------------------------------------------------------
def shape(value):
    """Keys at every level and the JSON type of every value, as one comparable string.

    Lists are described by the set of their elements' shapes (an empty list by
    ``[]``, which matches any list).  JSON numbers are ``number`` whether
    written with a fraction or not: the venues write a whole number without
    one (Kraken's ``"tick_size": 1``).
    """
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{shape(v)}" for k, v in sorted(value.items())) + "}"
    if isinstance(value, list):
        return "[" + "|".join(sorted({shape(v) for v in value})) + "]"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "str"
    if value is None:
        return "null"
    raise TypeError(type(value))


def assert_same_shape(sim, real, path="$"):
    """``sim`` has exactly ``real``'s keys and value types, recursively (a clear message
    naming the first place they differ)."""
    if isinstance(real, dict):
        assert isinstance(sim, dict), f"{path}: simulator sends {shape(sim)}, venue an object"
        assert sorted(sim) == sorted(real), (
            f"{path}: simulator keys {sorted(sim)} != venue keys {sorted(real)}")
        for k in real:
            assert_same_shape(sim[k], real[k], f"{path}.{k}")
    elif isinstance(real, list):
        assert isinstance(sim, list), f"{path}: simulator sends {shape(sim)}, venue a list"
        if real and sim:
            real_shapes = {shape(v): v for v in real}
            for i, v in enumerate(sim):
                if shape(v) not in real_shapes:
                    # name the first difference against the closest venue element
                    assert_same_shape(v, next(iter(real_shapes.values())), f"{path}[{i}]")
    else:
        assert shape(sim) == shape(real), f"{path}: simulator sends {shape(sim)}, venue {shape(real)}"


def strings_at(value, keys):
    """Every string value under one of ``keys`` anywhere in ``value``."""
    out = []
    if isinstance(value, dict):
        for k, v in value.items():
            if k in keys and isinstance(v, str):
                out.append(v)
            out += strings_at(v, keys)
    elif isinstance(value, list):
        for v in value:
            out += strings_at(v, keys)
    return out


BINANCE_NUMBER = re.compile(r"\d+\.\d{8}")  # every price and quantity: eight decimals
COINBASE_NUMBER = re.compile(r"(0|[1-9]\d*)(\.\d*[1-9])?")  # shortest: no trailing zeros


# -- capture --------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def sim():
    with SimulatedExchanges(SYMBOLS, seed=5, rate=20.0, trade_rate=10.0, heartbeat_interval=0.2) as s:
        yield s


def capture(url, subscribe, key, wanted, at_least=20):
    """``{type: [messages]}`` from a websocket until every ``wanted`` type was seen and
    ``at_least`` messages came (so that each type is compared in its variants: empty
    sides, several levels, ...)."""
    ws = websocket.create_connection(url, timeout=5)
    try:
        for msg in subscribe:
            ws.send(json.dumps(msg))
        seen = {}
        n = 0
        deadline = time.monotonic() + CAPTURE_TIMEOUT_S
        while (not wanted <= set(seen) or n < at_least) and time.monotonic() < deadline:
            msg = json.loads(ws.recv())
            seen.setdefault(key(msg), []).append(msg)
            n += 1
        assert wanted <= set(seen), f"never sent: {sorted(wanted - set(seen))}"
        return seen
    finally:
        ws.close()


@pytest.fixture(scope="module")
def binance(sim):
    url = sim.connector_kwargs("binance")["ws_url"] + (
        "/stream?streams=btcusdt@bookTicker/btcusdt@trade/btcusdt@aggTrade/btcusdt@depth@100ms")

    def key(m):
        return m["stream"].split("@", 1)[1]

    seen = capture(url, [], key, {"bookTicker", "trade", "aggTrade", "depth@100ms"})
    rest = sim.connector_kwargs("binance")["rest_url"] + "/api/v3/depth?symbol=BTCUSDT&limit=100"
    seen["rest depth"] = [json.loads(urllib.request.urlopen(rest, timeout=5).read())]
    return seen


@pytest.fixture(scope="module")
def kraken(sim):
    def sub(channel, **params):
        return {"method": "subscribe", "params": {"channel": channel, **params}, "req_id": 1}

    subscribe = [sub("instrument", snapshot=True), sub("book", symbol=["BTC/USD"], depth=10),
                 sub("ticker", symbol=["BTC/USD"]), sub("trade", symbol=["BTC/USD"])]

    def key(m):
        if "method" in m:
            return m["method"], m.get("result", {}).get("channel")
        return m.get("channel"), m.get("type")

    wanted = {("status", "update"), ("subscribe", "ticker"), ("subscribe", "book"),
              ("instrument", "snapshot"),
              ("book", "snapshot"), ("book", "update"), ("ticker", "snapshot"),
              ("ticker", "update"), ("trade", "update")}
    url = sim.connector_kwargs("kraken")["ws_url"]
    seen = capture(url, subscribe, key, wanted)
    # heartbeats come when a subscribed connection has nothing else to send
    seen.update(capture(url, [sub("instrument", snapshot=True)], key, {("heartbeat", None)},
                        at_least=1))
    return seen


@pytest.fixture(scope="module")
def coinbase(sim):
    subscribe = [{"type": "subscribe", "channel": "heartbeats"}] + [
        {"type": "subscribe", "product_ids": ["BTC-USD"], "channel": ch}
        for ch in ("level2", "market_trades", "ticker")]

    def key(m):
        return m.get("channel"), tuple(e.get("type") for e in m.get("events", []))

    wanted = {("subscriptions", (None,)), ("heartbeats", (None,)), ("l2_data", ("snapshot",)),
              ("l2_data", ("update",)), ("market_trades", ("snapshot",)),
              ("market_trades", ("update",)), ("ticker", ("snapshot",)), ("ticker", ("update",))}
    url = sim.connector_kwargs("coinbase")["ws_url"]
    seen = capture(url, subscribe, key, wanted)
    # a simulator started a moment ago has printed no trade yet: its market_trades
    # snapshot is empty and shows no trade fields; the trades sent since are in the
    # next connection's snapshot
    if not any(e["trades"] for m in seen[("market_trades", ("snapshot",))] for e in m["events"]):
        seen[("market_trades", ("snapshot",))] = capture(
            url, subscribe, key, {("market_trades", ("snapshot",))}, at_least=1)[
            ("market_trades", ("snapshot",))]
    return seen


@pytest.fixture(scope="module")
def coingecko(sim):
    url = sim.connector_kwargs("coingecko")["rest_url"] + (
        "/simple/price?ids=bitcoin,ethereum&vs_currencies=usd&include_last_updated_at=true")
    return json.loads(urllib.request.urlopen(url, timeout=5).read())


# -- the venues' messages -----------------------------------------------------------------------
def binance_real():
    out = {}
    for f in binance_ws_frames():
        msg = json.loads(f.data)
        out.setdefault(msg["stream"].split("@", 1)[1], msg)
    line = BINANCE_REST.read_text().splitlines()[0]
    out["rest depth"] = json.loads(line.partition(" -> ")[2].partition(": ")[2])
    return out


def coinbase_real():
    out = {}
    for _, frame in coinbase_lines():
        m = json.loads(frame)
        out.setdefault((m["channel"], tuple(e.get("type") for e in m["events"])), m)
    return out


def sample(name):
    return json.loads((SAMPLES / name).read_text())


# -- Binance --------------------------------------------------------------------------------------
@pytest.mark.parametrize("stream", ["bookTicker", "aggTrade", "depth@100ms", "rest depth"])
def test_binance_message_matches_the_recording(binance, stream):
    for msg in binance[stream]:
        assert_same_shape(msg, binance_real()[stream])


def test_binance_trade_stream_matches_the_aggregate_trade_fields(binance):
    """No recording of the raw trade stream: its fields are the recorded aggTrade's, the
    trade id ``t`` standing for the aggregate's ``a``/``f``/``l``."""
    real = dict(binance_real()["aggTrade"]["data"], e="trade")
    for k in ("a", "f", "l"):
        del real[k]
    real["t"] = binance_real()["aggTrade"]["data"]["a"]
    for msg in binance["trade"]:
        assert_same_shape(msg, {"stream": "btcusdt@trade", "data": real})


def binance_numbers(msg):
    """Every price and quantity text of a Binance message (levels included)."""
    data = msg.get("data", msg)
    out = [data[k] for k in ("b", "B", "a", "A", "p", "q") if isinstance(data.get(k), str)]
    for k in ("b", "a", "bids", "asks"):
        if isinstance(data.get(k), list):
            out += [x for level in data[k] for x in level]
    return out


@pytest.mark.parametrize("stream", ["bookTicker", "trade", "aggTrade", "depth@100ms", "rest depth"])
def test_binance_numbers_are_strings_with_eight_decimals(binance, stream):
    texts = [t for msg in binance[stream] for t in binance_numbers(msg)]
    assert texts
    for text in texts:
        assert BINANCE_NUMBER.fullmatch(text), (stream, text)
    # the recording the rule comes from
    real = binance_numbers(binance_real()["aggTrade" if stream == "trade" else stream])
    assert real and all(BINANCE_NUMBER.fullmatch(t) for t in real)


# -- Kraken ---------------------------------------------------------------------------------------
def kraken_real():
    """Recorded where a recording exists (book; instrument entries quoted from one), else the
    documented example."""
    book = kraken_book_messages()
    return {
        ("book", "snapshot"): json.loads(json.dumps(book[0], default=float)),
        ("book", "update"): json.loads(json.dumps(book[1], default=float)),
        ("instrument", "snapshot"): json.loads(KRAKEN_INSTRUMENT_EXCERPT),
        ("ticker", "snapshot"): sample("kraken/ticker_snapshot.json"),
        ("ticker", "update"): dict(sample("kraken/ticker_snapshot.json"), type="update"),
        ("trade", "update"): sample("kraken/trade_update.json"),
        ("heartbeat", None): sample("kraken/heartbeat.json"),
    }


@pytest.mark.parametrize("kind", [("book", "snapshot"), ("book", "update"), ("ticker", "snapshot"),
                                  ("ticker", "update"), ("trade", "update"), ("heartbeat", None)],
                         ids=lambda k: "-".join(x for x in k if x))
def test_kraken_message_matches_the_venue(kraken, kind):
    for msg in kraken[kind]:
        assert_same_shape(msg, kraken_real()[kind])


def test_kraken_subscribe_acknowledgement_matches_the_docs(kraken):
    """No recording of an acknowledgement: the documented one (a ticker subscription
    without ``req_id``; a request with one gets it back, a book's names its depth)."""
    real = sample("kraken/subscribe_ack.json")
    (ticker,) = kraken[("subscribe", "ticker")]
    (book,) = kraken[("subscribe", "book")]
    assert ticker["req_id"] == book["req_id"] == 1
    assert_same_shape({k: v for k, v in ticker.items() if k != "req_id"}, real)
    assert_same_shape({k: v for k, v in book.items() if k != "req_id"},
                      dict(real, result=dict(real["result"], depth=10)))


def test_kraken_instrument_snapshot_matches_the_recording(kraken):
    real = kraken_real()[("instrument", "snapshot")]
    (sim_msg,) = kraken[("instrument", "snapshot")]
    # pairs and assets come in two shapes on the venue (marginable pairs carry margin
    # fields, some assets a margin rate): each simulated one must be one of them
    real_pairs = {shape(p) for p in real["data"]["pairs"]}
    real_assets = {shape(a) for a in real["data"]["assets"]}
    assert sorted(sim_msg) == sorted(real) and sorted(sim_msg["data"]) == sorted(real["data"])
    for p in sim_msg["data"]["pairs"]:
        assert shape(p) in real_pairs, p
    for a in sim_msg["data"]["assets"]:
        assert shape(a) in real_assets, a


def test_kraken_status_matches_the_docs(kraken):
    """Kraken's documented ``status`` frame on connect (no recording of it)."""
    (msg,) = kraken[("status", "update")]
    (data,) = msg["data"]
    assert sorted(msg) == ["channel", "data", "type"]
    assert sorted(data) == ["api_version", "connection_id", "system", "version"]
    assert type(data["connection_id"]) is int and data["system"] == "online"


@pytest.mark.parametrize("kind", [("book", "snapshot"), ("book", "update"), ("ticker", "update"),
                                  ("trade", "update")], ids=lambda k: "-".join(k))
def test_kraken_prices_are_json_numbers(kraken, kind):
    def numbers(value):
        if isinstance(value, dict):
            for k, v in value.items():
                if k in ("price", "qty", "bid", "ask", "bid_qty", "ask_qty", "last"):
                    yield k, v
                yield from numbers(v)
        elif isinstance(value, list):
            for v in value:
                yield from numbers(v)

    found = [kv for msg in kraken[kind] for kv in numbers(msg)]
    assert found
    for key, v in found:
        assert type(v) in (int, float), (key, v)
    for m in kraken_book_messages()[:2]:  # the recording: numbers, never strings
        assert all(not isinstance(v, str) for _, v in numbers(json.loads(json.dumps(m, default=float))))
    for msg in kraken[kind]:
        assert type(msg["data"][0].get("checksum", 0)) is int


# -- Coinbase -------------------------------------------------------------------------------------
COINBASE_KINDS = [("l2_data", ("snapshot",)), ("l2_data", ("update",)), ("market_trades", ("snapshot",)),
                  ("market_trades", ("update",)), ("subscriptions", (None,)), ("heartbeats", (None,))]


def without_client_id(msg):
    return {k: v for k, v in msg.items() if k != "client_id"}


@pytest.mark.parametrize("kind", COINBASE_KINDS[:-1], ids=lambda k: k[0] + "-" + str(k[1][0]))
def test_coinbase_message_matches_the_recording(coinbase, kind):
    real = coinbase_real()[kind]
    for msg in coinbase[kind]:
        msg = without_client_id(msg)
        if kind[0] == "subscriptions":
            # the acknowledgement lists what the connection subscribed to so far
            msg = dict(msg, events=[{"subscriptions": {}}])
            real = dict(real, events=[{"subscriptions": {}}])
        assert_same_shape(msg, real)


def test_coinbase_ticker_matches_the_docs(coinbase):
    """No recording of ``ticker``: the documented example."""
    real = without_client_id(sample("coinbase/ticker.json"))
    for kind in (("ticker", ("snapshot",)), ("ticker", ("update",))):
        for msg in coinbase[kind]:
            assert_same_shape(without_client_id(msg), dict(real, events=[
                dict(real["events"][0], type=kind[1][0])]))


@pytest.mark.parametrize("kind", [COINBASE_KINDS[1], COINBASE_KINDS[-1]],
                         ids=lambda k: k[0])
def test_coinbase_envelope_and_heartbeat_match_the_recording(coinbase, kind):
    for msg in coinbase[kind]:
        assert_same_shape(msg, coinbase_real()[kind])


@pytest.mark.parametrize("kind", COINBASE_KINDS[:4], ids=lambda k: k[0] + "-" + str(k[1][0]))
def test_coinbase_numbers_are_shortest_decimal_strings(coinbase, kind):
    keys = {"price_level", "new_quantity", "price", "size"}
    texts = strings_at(coinbase[kind], keys)  # every message of the kind
    assert texts
    for text in texts:
        assert COINBASE_NUMBER.fullmatch(text), (kind, text)
    real = strings_at(coinbase_real()[kind], keys)
    assert real and all(COINBASE_NUMBER.fullmatch(t) for t in real)


def test_coinbase_times_are_rfc3339_utc(coinbase):
    stamp = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z")
    for kind in COINBASE_KINDS[:4]:
        for msg in coinbase[kind] + [coinbase_real()[kind]]:
            times = strings_at(msg, {"timestamp", "event_time", "time"})
            assert times and all(stamp.fullmatch(t) for t in times), (kind, times[:3])


# -- CoinGecko ------------------------------------------------------------------------------------
def test_coingecko_simple_price_matches_the_docs(coingecko):
    (real,) = [json.loads(f.data) for f in coingecko_frames()]
    real_coin = {k: v for k, v in real["bitcoin"].items() if k in ("usd", "last_updated_at")}
    assert sorted(coingecko) == ["bitcoin", "ethereum"]
    for coin in coingecko.values():
        assert_same_shape(coin, real_coin)
        assert type(coin["last_updated_at"]) is int


def test_coinbase_trade_side_is_the_maker_s_as_recorded(sim):
    """As in the recording (``test_real_coinbase``): a trade at or above the best offer
    says SELL, at or below the best bid BUY.  The book and the trades come in separate
    frames, so a trade can arrive after the book moved past it: more than half, not all,
    must read as the maker's side (the taker's would make nearly all disagree)."""
    ws = websocket.create_connection(sim.connector_kwargs("coinbase")["ws_url"], timeout=5)
    books = {}
    maker = taker = 0
    try:
        for ch in ("level2", "market_trades"):
            ws.send(json.dumps({"type": "subscribe", "product_ids": ["BTC-USD"], "channel": ch}))
        deadline = time.monotonic() + CAPTURE_TIMEOUT_S
        while maker + taker < 20 and time.monotonic() < deadline:
            msg = json.loads(ws.recv())
            for ev in msg.get("events", []):
                if msg["channel"] == "l2_data":
                    if ev["type"] == "snapshot":
                        books[ev["product_id"]] = {"bid": {}, "offer": {}}
                    for u in ev["updates"]:
                        side = books[ev["product_id"]][u["side"]]
                        side[float(u["price_level"])] = float(u["new_quantity"])
                        if float(u["new_quantity"]) == 0:
                            del side[float(u["price_level"])]
                elif msg["channel"] == "market_trades" and ev["type"] == "update":
                    for t in ev["trades"]:
                        book = books.get(t["product_id"])
                        if not book or not book["bid"] or not book["offer"]:
                            continue
                        price = float(t["price"])
                        if price >= min(book["offer"]):
                            aggressor = "BUY"
                        elif price <= max(book["bid"]):
                            aggressor = "SELL"
                        else:
                            continue
                        if t["side"] == aggressor:
                            taker += 1
                        else:
                            maker += 1
    finally:
        ws.close()
    assert maker + taker >= 20
    assert maker > taker
