"""Tests of hftsig.market.normalize: documentation samples, numbers, times, bad input."""
import datetime as dt
import json
import pathlib
import random

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hftsig
from hftsig._ext.json_scan import parse_decimal, validate_json
from hftsig.market import ticks as T
from hftsig.market.normalize import MalformedMessage, Normalizer, normalize

DATA = pathlib.Path(__file__).parents[1] / "data" / "samples"
TR = 1_700_000_000_123_456_789  # receive time used throughout


def sample(exchange, name):
    return (DATA / exchange / f"{name}.json").read_bytes().strip()


def ns(text):
    """RFC3339 -> ns via the stdlib (microsecond resolution) plus the extra digits."""
    base, _, frac = text.rstrip("Z").partition(".")
    t = dt.datetime.fromisoformat(base).replace(tzinfo=dt.timezone.utc)
    return int(t.timestamp()) * 10**9 + int((frac + "000000000")[:9] or 0)


# ---------------------------------------------------------------------------
# Binance
# ---------------------------------------------------------------------------

def test_binance_book_ticker_sample():
    n = Normalizer("binance")
    t = n.parse(sample("binance", "bookTicker"), TR)
    assert t.dtype == T.TICK_DTYPE and len(t) == 1
    r = t[0]
    assert r["kind"] == T.KIND_QUOTE and r["exchange"] == T.EXCHANGE_BINANCE
    assert r["symbol"] == b"BNB-USDT"
    assert (r["bid_px"], r["bid_sz"], r["ask_px"], r["ask_sz"]) == (25.3519, 31.21, 25.3652, 40.66)
    assert r["ts_event"] == TR and r["ts_recv"] == TR  # bookTicker has no event time
    assert r["seq"] == r["seq_first"] == 400900217
    assert r["flags"] == T.FLAG_LAST and np.isnan(r["price"])
    assert (n.last_type, n.last_channel, n.last_seq, n.last_symbol) == (
        "data", "bookTicker", 400900217, "BNB-USDT")


@pytest.mark.parametrize("name,seq", [("trade", 12345), ("aggTrade", 12345)])
def test_binance_trades_sample(name, seq):
    n = Normalizer("binance")
    t = n.parse(sample("binance", name), TR)
    assert len(t) == 1
    r = t[0]
    assert r["kind"] == T.KIND_TRADE and r["symbol"] == b"BNB-BTC"
    assert r["price"] == 0.001 and r["size"] == 100.0
    assert r["side"] == T.SIDE_SELL  # m: true -> the buyer made, the taker sold
    assert r["ts_event"] == 1672515782136 * 10**6 and r["ts_recv"] == TR
    assert r["seq"] == seq and n.last_channel == name


def test_binance_trade_buyer_taker():
    msg = sample("binance", "trade").replace(b'"m":true', b'"m":false')
    assert normalize("binance", msg, TR)["side"][0] == T.SIDE_BUY


def test_binance_depth_update_sample():
    n = Normalizer("binance")
    t = n.parse(sample("binance", "depthUpdate"), TR)
    assert list(t["kind"]) == [T.KIND_BOOK_DELTA] * 2
    assert list(t["side"]) == [T.SIDE_BID, T.SIDE_ASK]
    assert list(t["price"]) == [0.0024, 0.0026] and list(t["size"]) == [10.0, 100.0]
    assert list(t["flags"]) == [0, T.FLAG_LAST]
    assert set(t["seq"]) == {160} and set(t["seq_first"]) == {157}
    assert (n.last_seq, n.last_seq_first) == (160, 157)
    assert set(t["ts_event"]) == {1672515782136 * 10**6}


def test_binance_microsecond_time_unit():
    msg = sample("binance", "trade").replace(b"1672515782136", b"1672515782136123")
    assert normalize("binance", msg, TR)["ts_event"][0] == 1672515782136123000
    n = Normalizer("binance", time_unit="ms")
    assert n.parse(sample("binance", "trade"), TR)["ts_event"][0] == 1672515782136000000


def test_binance_partial_depth_via_combined_stream():
    msg = b'{"stream":"bnbbtc@depth5","data":' + sample("binance", "partialDepth") + b"}"
    n = Normalizer("binance")
    t = n.parse(msg, TR)
    assert list(t["kind"]) == [T.KIND_BOOK_SNAPSHOT] * 2
    assert list(t["flags"]) == [T.FLAG_SNAPSHOT_BEGIN, T.FLAG_LAST]
    assert set(t["symbol"]) == {b"BNB-BTC"} and set(t["seq"]) == {160}


def test_binance_rest_depth_needs_symbol():
    body = sample("binance", "restDepth")
    with pytest.raises(MalformedMessage, match="symbol"):
        normalize("binance", body, TR)
    for sym in ("BNBBTC", "BNB-BTC"):
        t = normalize("binance", body, TR, symbol=sym)
        assert list(t["price"]) == [4.0, 4.000002] and list(t["size"]) == [431.0, 12.0]
        assert set(t["seq"]) == {1027024} and set(t["symbol"]) == {b"BNB-BTC"}


def test_binance_combined_wrapper_of_book_ticker():
    msg = b'{"stream":"bnbusdt@bookTicker","data":' + sample("binance", "bookTicker") + b"}"
    a = normalize("binance", msg, TR)
    b = normalize("binance", sample("binance", "bookTicker"), TR)
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("name,kind", [
    ("serverShutdown", "shutdown"), ("serverShutdownCombined", "shutdown"),
    ("subscribeResponse", "subscribed"), ("errorInvalidJson", "error"), ("miniTicker", "unknown")])
def test_binance_control_messages(name, kind):
    n = Normalizer("binance")
    assert len(n.parse(sample("binance", name), TR)) == 0
    assert n.last_type == kind


# ---------------------------------------------------------------------------
# Kraken
# ---------------------------------------------------------------------------

def test_kraken_book_snapshot_sample():
    n = Normalizer("kraken")
    t = n.parse(sample("kraken", "book_snapshot"), TR)
    assert list(t["kind"]) == [T.KIND_BOOK_SNAPSHOT] * 4
    assert list(t["side"]) == [1, 1, -1, -1]
    assert list(t["price"]) == [0.5666, 0.5665, 0.5668, 0.5669]
    assert list(t["size"]) == [4831.75496356, 6658.22734739, 4410.79769741, 4655.40412487]
    assert list(t["flags"]) == [T.FLAG_SNAPSHOT_BEGIN, 0, 0, T.FLAG_LAST]
    assert list(t["checksum"]) == [0, 0, 0, 2439117997]
    assert set(t["symbol"]) == {b"MATIC-USD"} and set(t["ts_event"]) == {TR}
    assert (n.last_checksum, n.last_channel, n.last_symbol) == (2439117997, "book", "MATIC-USD")


def test_kraken_book_update_sample():
    n = Normalizer("kraken")
    t = n.parse(sample("kraken", "book_update"), TR)
    assert len(t) == 1 and t[0]["kind"] == T.KIND_BOOK_DELTA
    assert (t[0]["side"], t[0]["price"], t[0]["size"]) == (1, 0.5657, 1098.3947558)
    assert t[0]["flags"] == T.FLAG_LAST and t[0]["checksum"] == 2114181697
    assert t[0]["ts_event"] == ns("2023-10-06T17:35:55.440295Z")


def test_kraken_string_prices_of_checksum_guide():
    t = normalize("kraken", sample("kraken", "book_checksum_guide_snapshot"), TR)
    assert len(t) == 20 and t["checksum"][-1] == 3310070434
    assert t["price"][0] == 45283.5 and t["size"][0] == 0.1 and t["price"][10] == 45285.2


def test_kraken_trades_sample():
    t = normalize("kraken", sample("kraken", "trade_snapshot"), TR)
    assert list(t["seq"]) == [4665846, 4665847] and list(t["side"]) == [1, 1]
    assert list(t["size"]) == [6423.46326, 1136.19677815]
    assert list(t["flags"]) == [0, T.FLAG_LAST]  # one message of one pair: one FLAG_LAST
    assert t["ts_event"][1] == ns("2023-09-25T07:49:36.925603Z")
    u = normalize("kraken", sample("kraken", "trade_update"), TR)
    assert (u["side"][0], u["price"][0], u["size"][0]) == (T.SIDE_SELL, 0.5117, 40.0)


def test_kraken_ticker_sample():
    t = normalize("kraken", sample("kraken", "ticker_snapshot"), TR)
    r = t[0]
    assert r["kind"] == T.KIND_QUOTE and r["symbol"] == b"ALGO-USD"
    assert (r["bid_px"], r["bid_sz"], r["ask_px"], r["ask_sz"]) == (0.10025, 740.0, 0.10036, 1361.44813783)
    assert r["ts_event"] == ns("2023-09-25T09:04:31.742648Z")


def test_kraken_control_messages():
    n = Normalizer("kraken")
    assert len(n.parse(sample("kraken", "subscribe_ack"), TR)) == 0
    assert (n.last_type, n.last_channel, n.last_symbol) == ("subscribed", "ticker", "ALGO-USD")
    n.parse(sample("kraken", "heartbeat"), TR)
    assert n.last_type == "heartbeat"
    n.parse('{"channel":"status","type":"update","data":[{"version":"2.0.0","system":"online",'
            '"api_version":"v2","connection_id":12393906104898154338}]}', TR)
    assert n.last_type == "status"
    n.parse('{"error":"Currency pair not supported","method":"subscribe","success":false,'
            '"symbol":"BTC/XYZ","time_in":"2023-09-25T09:04:31.742599Z",'
            '"time_out":"2023-09-25T09:04:31.742648Z"}', TR)
    assert n.last_type == "error" and n.last_error == "Currency pair not supported"
    n.parse('{"method":"unsubscribe","result":{"channel":"book","symbol":"BTC/USD","depth":10},'
            '"success":true}', TR)
    assert (n.last_type, n.last_channel, n.last_symbol) == ("unsubscribed", "book", "BTC-USD")
    n.parse('{"method":"pong","req_id":3,"time_in":"2023-09-25T09:04:31.742599Z"}', TR)
    assert n.last_type == "heartbeat"


def test_kraken_instrument_precisions():
    n = Normalizer("kraken")
    msg = {"channel": "instrument", "type": "snapshot", "data": {"assets": [], "pairs": [
        {"symbol": "BTC/USD", "base": "BTC", "quote": "USD", "price_precision": 1,
         "qty_precision": 8, "price_increment": 0.1, "qty_increment": 1e-8}]}}
    assert len(n.parse(json.dumps(msg), TR)) == 0
    assert n.precisions == {"BTC-USD": (1, 8)} and n.last_channel == "instrument"


def test_kraken_xbt_alias():
    t = normalize("kraken", sample("kraken", "trade_update").replace(b"MATIC/USD", b"XBT/USD"), TR)
    assert t["symbol"][0] == b"BTC-USD"


# ---------------------------------------------------------------------------
# Coinbase
# ---------------------------------------------------------------------------

def test_coinbase_l2_snapshot_sample():
    n = Normalizer("coinbase")
    t = n.parse(sample("coinbase", "l2_data_snapshot"), TR)
    assert list(t["kind"]) == [T.KIND_BOOK_SNAPSHOT] * 2 and list(t["side"]) == [1, 1]
    assert list(t["price"]) == [21921.73, 21921.3] and list(t["size"]) == [0.06317902, 0.02]
    assert list(t["flags"]) == [T.FLAG_SNAPSHOT_BEGIN, T.FLAG_LAST]
    # the levels carry the zero time: the envelope's time stands in
    assert set(t["ts_event"]) == {ns("2023-02-09T20:32:50.714964855Z")}
    assert (n.last_seq, n.last_channel, n.last_symbol) == (0, "l2_data", "BTC-USD")


def test_coinbase_l2_update_offer_side():
    msg = (b'{"channel":"l2_data","timestamp":"2023-02-09T20:32:50.714964855Z","sequence_num":42,'
           b'"events":[{"type":"update","product_id":"ETH-USD","updates":[{"side":"offer",'
           b'"event_time":"2023-02-09T20:32:50.7Z","price_level":"1600.5","new_quantity":"0"}]}]}')
    t = normalize("coinbase", msg, TR)
    assert (t["kind"][0], t["side"][0], t["size"][0], t["seq"][0]) == (T.KIND_BOOK_DELTA, -1, 0.0, 42)
    assert t["ts_event"][0] == ns("2023-02-09T20:32:50.700Z")


def test_coinbase_ticker_sample():
    t = normalize("coinbase", sample("coinbase", "ticker"), TR)
    r = t[0]
    assert r["kind"] == T.KIND_QUOTE and r["symbol"] == b"BTC-USD"
    assert (r["bid_px"], r["bid_sz"], r["ask_px"], r["ask_sz"]) == (21931.98, 8000.21, 21933.98, 8038.07770938)
    assert r["ts_event"] == ns("2023-02-09T20:30:37.167359596Z")


def test_coinbase_market_trades_sample():
    t = normalize("coinbase", sample("coinbase", "market_trades"), TR)
    r = t[0]
    # "side": "BUY" is the maker's side: the aggressor sold
    assert (r["kind"], r["side"], r["price"], r["size"], r["seq"]) == (T.KIND_TRADE, -1, 1260.01, 0.3, 0)
    assert r["symbol"] == b"ETH-USD" and r["ts_event"] == ns("2019-08-14T20:42:27.265Z")


@pytest.mark.parametrize("name,kind", [("heartbeats", "heartbeat"), ("subscriptions", "subscribed")])
def test_coinbase_control_samples(name, kind):
    n = Normalizer("coinbase")
    assert len(n.parse(sample("coinbase", name), TR)) == 0
    assert n.last_type == kind and n.last_seq == 0
    n.parse('{"type":"error","message":"failure to subscribe"}', TR)
    assert n.last_type == "error" and n.last_error == "failure to subscribe"


# ---------------------------------------------------------------------------
# CoinGecko
# ---------------------------------------------------------------------------

def test_coingecko_sample():
    n = Normalizer("coingecko")
    t = n.parse(sample("coingecko", "simple_price"), TR)
    assert len(t) == 1  # usd_market_cap & co. are not vs-currencies
    r = t[0]
    assert (r["kind"], r["symbol"], r["price"]) == (T.KIND_PRICE, b"BTC-USD", 67187.3358936566)
    assert r["ts_event"] == 1711356300 * 10**9 and np.isnan(r["size"])


def test_coingecko_error_body():
    n = Normalizer("coingecko")
    n.parse('{"status":{"error_code":429,"error_message":"You\'ve exceeded the Rate Limit."}}', TR)
    assert n.last_type == "error" and "Rate Limit" in n.last_error


# ---------------------------------------------------------------------------
# numbers, times, module behaviour
# ---------------------------------------------------------------------------

def test_decimal_parser_equals_float():
    rng = random.Random(7)
    texts = ["67432.15000000", "0.00000001", "25.35190000", "1e-05", "-0.5", "0", "0.0",
             "123456789012345678901234567890", "0.1000000000000000055511151231257827",
             "9007199254740993", "1.7976931348623157e308", "4.9e-324", "2.2250738585072011e-308"]
    for _ in range(20000):
        ip = str(rng.randrange(0, 10 ** rng.randrange(1, 9)))
        fp = "".join(rng.choice("0123456789") for _ in range(rng.randrange(0, 12)))
        texts.append(ip + ("." + fp if fp else ""))
        texts.append(repr(rng.uniform(0, 1e6)))
    for s in texts:
        assert parse_decimal(s) == float(s), s


@pytest.mark.parametrize("bad", ["", "-", "1.", ".5", "1e", "abc", "1.2.3", "1e99999", "inf", "nan", " 1"])
def test_decimal_parser_rejects(bad):
    with pytest.raises(ValueError):
        parse_decimal(bad)


@pytest.mark.parametrize("text", ["2023-09-25T07:48:36.925533Z", "2024-02-29T23:59:59Z",
                                  "1970-01-01T00:00:00Z", "2023-02-09T20:32:50.714964855Z"])
def test_rfc3339_times(text):
    msg = sample("kraken", "trade_update").replace(b"2023-09-25T07:49:37.708706Z", text.encode())
    assert normalize("kraken", msg, TR)["ts_event"][0] == ns(text)


def test_rfc3339_offset():
    msg = sample("kraken", "trade_update").replace(b"2023-09-25T07:49:37.708706Z",
                                                   b"2023-09-25T09:49:37.5+02:00")
    assert normalize("kraken", msg, TR)["ts_event"][0] == ns("2023-09-25T07:49:37.5Z")


@pytest.mark.parametrize("text", ["2023-02-30T00:00:00Z", "2023-09-25T25:00:00Z", "2023-09-25",
                                  "2023-09-25T07:48:36.Z", "2023-09-25T07:48:36", "yesterday"])
def test_rfc3339_rejects(text):
    msg = sample("kraken", "trade_update").replace(b"2023-09-25T07:49:37.708706Z", text.encode())
    with pytest.raises(MalformedMessage):
        normalize("kraken", msg, TR)


def test_module_is_callable_and_str_bytes_agree():
    a = hftsig.normalize("binance", sample("binance", "bookTicker").decode(), TR)
    b = hftsig.market.normalize.normalize("binance", bytearray(sample("binance", "bookTicker")), TR)
    assert a.tobytes() == b.tobytes()


def test_batches_stay_valid_across_chunks():
    n = Normalizer("kraken", chunk_size=8)
    msg = sample("kraken", "book_checksum_guide_snapshot")
    batches = [n.parse(msg, TR + k) for k in range(5)]
    for k, b in enumerate(batches):
        assert len(b) == 20 and set(b["ts_recv"]) == {TR + k}
        assert list(b["price"][:2]) == [45283.5, 45283.4]


def test_error_emits_nothing_and_next_parse_is_clean():
    n = Normalizer("binance")
    good = sample("binance", "depthUpdate")
    bad = good.replace(b'"100"', b'"1x0"')
    with pytest.raises(MalformedMessage):
        n.parse(bad, TR)
    t = n.parse(good, TR)
    assert len(t) == 2 and t["size"][1] == 100.0


def test_unknown_symbol_is_malformed():
    with pytest.raises(MalformedMessage, match="unknown binance symbol"):
        normalize("binance", sample("binance", "bookTicker").replace(b"BNBUSDT", b"QQQ"), TR)


def test_custom_symbol_map():
    n = Normalizer("binance", symbols={"QQQZZ": "QQQ-ZZ"})
    msg = sample("binance", "bookTicker").replace(b"BNBUSDT", b"QQQZZ")
    assert n.parse(msg, TR)["symbol"][0] == b"QQQ-ZZ"


def test_bad_arguments():
    with pytest.raises(ValueError, match="exchange"):
        Normalizer("bitfinex")
    with pytest.raises(ValueError, match="time_unit"):
        Normalizer("binance", time_unit="s")
    with pytest.raises(TypeError, match="message"):
        Normalizer("binance").parse(12345, TR)


MALFORMED = [b"", b"   ", b"{", b"}", b"[1,2", b'{"u":1,}', b'{"a" 1}', b"nul", b"\xff\xfe",
             b'{"e":"trade"}', b'{"x":"\\q"}', b'{"x":"\x01"}', b'{} {}', b'{"x":1}x',
             b'{"e":"depthUpdate","E":1,"s":"BNBBTC","U":1,"u":2,"b":[["1"]],"a":[]}',
             b'{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD","bids":[{"price":1}],"asks":[]}]}',
             b'{"channel":"book","type":"update","data":{}}',
             b'{"u":1,"s":"BNBUSDT","b":"1","B":"1","a":"1","A":true}']


@pytest.mark.parametrize("exchange", ["binance", "kraken", "coinbase", "coingecko"])
@pytest.mark.parametrize("msg", MALFORMED)
def test_malformed(exchange, msg):
    n = Normalizer(exchange)
    try:
        out = n.parse(msg, TR)
    except MalformedMessage:
        return
    # some shapes are valid JSON for another exchange's parser: then no ticks
    assert validate_json(msg) and len(out) == 0


def _all_samples():
    return [(p.parent.name, p.read_bytes().strip()) for p in sorted(DATA.glob("*/*.json"))]


@pytest.mark.parametrize("exchange,msg", _all_samples())
def test_every_truncation_is_malformed(exchange, msg):
    n = Normalizer(exchange)
    sym = "BNBBTC" if b"lastUpdateId" in msg else None  # depth bodies name no symbol
    n.parse(msg, TR, sym)
    for k in range(len(msg)):
        with pytest.raises(MalformedMessage):
            n.parse(msg[:k], TR, sym)


def test_scanner_agrees_with_stdlib_json():
    rng = random.Random(3)
    corpus = [m for _, m in _all_samples()]
    for _ in range(3000):
        m = bytearray(rng.choice(corpus))
        for _ in range(rng.randrange(1, 4)):
            m[rng.randrange(len(m))] = rng.randrange(256)
        m = bytes(m)
        try:
            json.loads(m)
            ok = True
        except (ValueError, RecursionError):
            ok = False
        assert validate_json(m) == ok, m


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["binance", "kraken", "coinbase", "coingecko"]), st.binary(max_size=300))
def test_fuzz_arbitrary_bytes(exchange, data):
    try:
        out = Normalizer(exchange).parse(data, TR)
    except MalformedMessage:
        return
    assert out.dtype == T.TICK_DTYPE


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_mutated_frames(data):
    exchange, msg = data.draw(st.sampled_from(_all_samples()))
    m = bytearray(msg)
    for _ in range(data.draw(st.integers(1, 4))):
        op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
        pos = data.draw(st.integers(0, len(m) - 1)) if m else 0
        if op == "flip" and m:
            m[pos] = data.draw(st.integers(0, 255))
        elif op == "insert":
            m[pos:pos] = data.draw(st.binary(min_size=1, max_size=4))
        elif m:
            del m[pos]
    try:
        out = Normalizer(exchange).parse(bytes(m), TR)
    except MalformedMessage:
        return
    assert out.dtype == T.TICK_DTYPE
    assert np.isfinite(out["ts_event"]).all()
    # whatever parses is valid JSON
    assert validate_json(bytes(m))


def _reorder(obj, rng):
    """Same JSON with every object's keys shuffled (and numbers/strings kept as text)."""
    if isinstance(obj, dict):
        items = list(obj.items())
        rng.shuffle(items)
        return {k: _reorder(v, rng) for k, v in items}
    if isinstance(obj, list):
        return [_reorder(v, rng) for v in obj]
    return obj


@pytest.mark.parametrize("exchange,msg", _all_samples())
def test_key_order_does_not_matter(exchange, msg):
    """One-pass parsing (keys in the exchanges' order) and the fallback agree."""
    sym = "BNBBTC" if b"lastUpdateId" in msg else None
    want = Normalizer(exchange).parse(msg, TR, sym)
    rng = random.Random(1)
    n = Normalizer(exchange)
    for _ in range(12):
        shuffled = json.dumps(_reorder(json.loads(msg, parse_float=lambda s: float(s)), rng))
        got = n.parse(shuffled, TR, sym)
        # the same records; within a symbol group the order of bids/asks may differ
        def key(t):
            return sorted(t.tobytes()[k * 104:(k + 1) * 104] for k in range(len(t)))

        clean, ref = got.copy(), want.copy()
        for t in (clean, ref):
            t["flags"] = 0
            t["checksum"] = 0
        assert key(clean) == key(ref)
        # flags and the checksum sit on the first/last record, whichever that is now
        assert sorted(got["flags"]) == sorted(want["flags"])
        assert sorted(got["checksum"]) == sorted(want["checksum"])
        if len(got):
            assert got["flags"][-1] & T.FLAG_LAST and got["checksum"][-1] == want["checksum"][-1]


@pytest.mark.parametrize("exchange", ["binance", "kraken", "coinbase", "coingecko"])
def test_deep_nesting_is_refused_not_crashing(exchange):
    n = Normalizer(exchange)
    for msg in (b"[" * 100000, b'{"a":' * 50000, b"[" * 60 + b"]" * 60):
        try:
            out = n.parse(msg, TR)
        except MalformedMessage as exc:
            assert "deep" in str(exc) or "end" in str(exc) or "unterminated" in str(exc)
        else:
            assert len(out) == 0 and n.last_type == "unknown"


def test_large_rest_snapshot_grows_the_buffer():
    levels = 5000
    bids = ",".join(f'["{100 - k * 0.01:.2f}","{k + 1}.5"]' for k in range(levels))
    asks = ",".join(f'["{100.01 + k * 0.01:.2f}","{k + 2}"]' for k in range(levels))
    body = f'{{"lastUpdateId":77,"bids":[{bids}],"asks":[{asks}]}}'
    n = Normalizer("binance", chunk_size=64)
    small = n.parse(sample("binance", "bookTicker"), TR)
    t = n.parse(body, TR, symbol="BTCUSDT")
    assert len(t) == 2 * levels and t["flags"][0] == T.FLAG_SNAPSHOT_BEGIN and t["flags"][-1] == T.FLAG_LAST
    assert t["price"][levels - 1] == float(f"{100 - (levels - 1) * 0.01:.2f}") and t["size"][-1] == levels + 1
    assert small["bid_px"][0] == 25.3519  # the earlier batch is untouched


# ---------------------------------------------------------------------------
# the contract: records or MalformedMessage; JSON's number grammar; no state change
# ---------------------------------------------------------------------------

def _check_contract(out):
    """What every accepted frame gives: known kinds, a symbol, finite values >= 0."""
    assert out.dtype == T.TICK_DTYPE
    for r in out:
        assert r["kind"] in (T.KIND_QUOTE, T.KIND_TRADE, T.KIND_BOOK_DELTA, T.KIND_BOOK_SNAPSHOT,
                             T.KIND_PRICE)
        assert r["symbol"] != b""
        if r["kind"] == T.KIND_QUOTE:
            assert np.isfinite([r["bid_px"], r["ask_px"]]).all() and min(r["bid_px"], r["ask_px"]) >= 0
            for sz in (r["bid_sz"], r["ask_sz"]):  # optional on Kraken/Coinbase tickers
                assert np.isnan(sz) or (np.isfinite(sz) and sz >= 0)
        else:
            assert np.isfinite(r["price"]) and r["price"] >= 0
            if r["kind"] != T.KIND_PRICE:
                assert np.isfinite(r["size"]) and r["size"] >= 0


def test_coinbase_trade_side_is_the_makers():
    """market_trades ``side`` names the maker (SELL at the ask): ticks carry the aggressor."""
    msg = (b'{"channel":"market_trades","timestamp":"2023-02-09T20:19:35.39625135Z","sequence_num":3,'
           b'"events":[{"type":"update","trades":['
           b'{"trade_id":"7","product_id":"BTC-USD","price":"100.5","size":"1","side":"SELL","time":"2023-02-09T20:19:35Z"},'
           b'{"trade_id":"8","product_id":"BTC-USD","price":"100.1","size":"2","side":"BUY","time":"2023-02-09T20:19:35Z"}]}]}')
    t = normalize("coinbase", msg, TR)
    assert list(t["side"]) == [T.SIDE_BUY, T.SIDE_SELL]


def test_flag_last_once_per_message_and_symbol():
    trade = ('{"trade_id":"%d","product_id":"%s","price":"1","size":"1","side":"BUY",'
             '"time":"2023-02-09T20:19:35Z"}')
    trades = [trade % (k, "BTC-USD") for k in range(3)] + [trade % (9, "ETH-USD")]
    msg = ('{"channel":"market_trades","timestamp":"2023-02-09T20:19:35Z","sequence_num":1,'
           '"events":[{"type":"snapshot","trades":[%s]}]}' % ",".join(trades))
    assert list(normalize("coinbase", msg, TR)["flags"]) == [0, 0, T.FLAG_LAST, T.FLAG_LAST]
    ticker = ('{"channel":"ticker","timestamp":"2023-02-09T20:19:35Z","sequence_num":1,"events":['
              '{"type":"update","tickers":[{"type":"ticker","product_id":"BTC-USD","price":"1",'
              '"best_bid":"1","best_bid_quantity":"1","best_ask":"2","best_ask_quantity":"1"}]},'
              '{"type":"update","tickers":[{"type":"ticker","product_id":"BTC-USD","price":"1",'
              '"best_bid":"1","best_bid_quantity":"1","best_ask":"2","best_ask_quantity":"1"}]}]}')
    assert list(normalize("coinbase", ticker, TR)["flags"]) == [0, T.FLAG_LAST]
    l2 = ('{"channel":"l2_data","timestamp":"2023-02-09T20:32:50Z","sequence_num":4,"events":['
          '{"type":"update","product_id":"BTC-USD","updates":[{"side":"bid","event_time":'
          '"2023-02-09T20:32:50Z","price_level":"1","new_quantity":"1"}]},'
          '{"type":"update","product_id":"BTC-USD","updates":[{"side":"offer","event_time":'
          '"2023-02-09T20:32:50Z","price_level":"2","new_quantity":"1"}]}]}')
    assert list(normalize("coinbase", l2, TR)["flags"]) == [0, T.FLAG_LAST]
    kr = json.loads(sample("kraken", "ticker_snapshot"))
    kr["data"] = kr["data"] * 2
    assert list(normalize("kraken", json.dumps(kr), TR)["flags"]) == [0, T.FLAG_LAST]


@pytest.mark.parametrize("bad", ["01.5", "00", "-0", "-1", "-0.5", "+1", "1.", ".5", "1e", "0x10",
                                 " 1", "1 ", "NaN", "Infinity", "1e400"])
def test_prices_follow_json_number_grammar(bad):
    """Quoted numbers (Binance) and JSON numbers (Kraken) obey RFC 8259; no minus sign."""
    frame = sample("binance", "bookTicker").replace(b'"25.35190000"', json.dumps(bad).encode())
    with pytest.raises(MalformedMessage):
        normalize("binance", frame, TR)
    kr = sample("kraken", "trade_update").replace(b'"qty":40.0', b'"qty":"%s"' % bad.encode())
    with pytest.raises(MalformedMessage):
        normalize("kraken", kr, TR)


@pytest.mark.parametrize("exchange,good,bad", [
    ("kraken", b'"qty":40.0', b'"qty":-5'),
    ("binance", b'"q":"100"', b'"q":"-1"'),
    ("binance", b'"p":"0.001"', b'"p":-0.001'),
])
def test_negative_price_or_size_is_malformed(exchange, good, bad):
    frame = sample(exchange, "trade_update" if exchange == "kraken" else "trade")
    assert good in frame
    with pytest.raises(MalformedMessage, match="negative"):
        normalize(exchange, frame.replace(good, bad), TR)


def test_coinbase_negative_quantity_is_malformed():
    msg = (b'{"channel":"l2_data","timestamp":"2023-02-09T20:32:50.714964855Z","sequence_num":42,'
           b'"events":[{"type":"update","product_id":"ETH-USD","updates":[{"side":"offer",'
           b'"event_time":"2023-02-09T20:32:50.7Z","price_level":"1600.5","new_quantity":"-1"}]}]}')
    with pytest.raises(MalformedMessage, match="negative"):
        normalize("coinbase", msg, TR)


@pytest.mark.parametrize("text", ["18446744073709551616", "1.8446744073709551616",
                                  "92233720368547758080", "36893488147419103232",
                                  "0.000018446744073709551616", "18446744073709551616e-5"])
def test_mantissa_wrapping_numbers(text):
    """20+ digits whose 64-bit accumulator wraps to 0 (or near it) still parse right."""
    assert parse_decimal(text) == float(text)
    frame = sample("kraken", "trade_update").replace(b'"qty":40.0', b'"qty":' + text.encode())
    assert normalize("kraken", frame, TR)["size"][0] == float(text)


@settings(max_examples=500, deadline=None)
@given(st.text("0123456789", min_size=1, max_size=40), st.text("0123456789", max_size=40),
       st.integers(-30, 30))
def test_long_digit_strings_are_correctly_rounded(ip, fp, exp):
    """Correctly rounded, i.e. equal to float(text), not merely within an ulp."""
    ip = ip.lstrip("0") or "0"
    text = ip + ("." + fp if fp else "") + (f"e{exp}" if exp else "")
    assert parse_decimal(text) == float(text)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 10**4), st.integers(0, 3), st.integers(0, 25), st.integers(0, 4))
def test_digit_strings_that_wrap_the_accumulator(k, zeros, point, lead):
    """Multiples of 2**64 (times 10**zeros) wrap a 64-bit accumulator to exactly 0."""
    digits = str(k * 2**64) + "0" * zeros
    point = min(point, len(digits) - 1)
    for text in (digits, digits[:len(digits) - point] + "." + digits[len(digits) - point:] if point else digits,
                 "0." + "0" * lead + digits):
        assert parse_decimal(text) == float(text), text


def test_binance_book_ticker_missing_field_is_malformed():
    frame = json.loads(sample("binance", "bookTicker"))
    for key in ("u", "A", "b"):
        partial = {k: v for k, v in frame.items() if k != key}
        with pytest.raises(MalformedMessage, match="bookTicker"):
            normalize("binance", json.dumps(partial), TR)


@pytest.mark.parametrize("price", [b"null", b'"67187.3"', b"true", b"{}"])
def test_coingecko_price_that_is_not_a_number_is_malformed(price):
    n = Normalizer("coingecko")
    with pytest.raises(MalformedMessage):
        n.parse(sample("coingecko", "simple_price").replace(b"67187.3358936566", price), TR)


def test_json_escapes_in_fields_are_decoded():
    bt = sample("binance", "bookTicker")
    plain = normalize("binance", bt, TR).copy()
    esc = normalize("binance", bt.replace(b'"BNBUSDT"', b'"BNB\\u0055SDT"').replace(
        b'"25.35190000"', b'"25.3519\\u0030"'), TR)
    assert esc.tobytes() == plain.tobytes()
    assert normalize("binance", b'{"u":1,"s":"NKN\\u0055SDT","b":"1","B":"1","a":"2","A":"1"}',
                     TR)["symbol"][0] == b"NKN-USDT"
    tr = sample("binance", "trade")
    got = normalize("binance", tr.replace(b'"e":"trade"', b'"\\u0065":"tr\\u0061de"'), TR)
    assert got.tobytes() == normalize("binance", tr, TR).tobytes()
    kr = sample("kraken", "trade_update")
    got = normalize("kraken", kr.replace(b'"sell"', b'"s\\u0065ll"').replace(b"MATIC/USD", b"MATIC\\/USD"), TR)
    assert got.tobytes() == normalize("kraken", kr, TR).tobytes()
    cg = sample("coingecko", "simple_price").replace(b'"bitcoin"', b'"bit\\u0063oin"')
    assert normalize("coingecko", cg, TR)["symbol"][0] == b"BTC-USD"


@pytest.mark.parametrize("exchange,msg", [
    ("binance", b'{"e":"depthUpdate","E":1,"s":"BNBBTC","U":1,"u":2,"b":[["1","1"]],"a":[],'
                b'"e":"trade","t":1,"p":"1","q":"1","T":1,"m":true}'),
    ("binance", b'{"u":1,"s":"BNBUSDT","b":"1","B":"1","a":"2","A":"1","s":"BTCUSDT"}'),
    ("kraken", b'{"channel":"book","type":"snapshot","data":[{"symbol":"BTC/USD",'
               b'"bids":[{"price":1,"qty":1}],"asks":[],"checksum":1}],"channel":"heartbeat"}'),
    ("kraken", b'{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy",'
               b'"price":1,"qty":1,"qty":2,"trade_id":1,"timestamp":"2023-09-25T07:49:37Z"}]}'),
    ("coinbase", b'{"channel":"l2_data","timestamp":"2023-02-09T20:32:50Z","sequence_num":4,"events":'
                 b'[{"type":"update","product_id":"BTC-USD","updates":[{"side":"bid","price_level":"1",'
                 b'"new_quantity":"1"}]}],"channel":"heartbeats"}'),
    ("coinbase", b'{"channel":"l2_data","timestamp":"2023-02-09T20:32:50Z","sequence_num":4,"events":'
                 b'[{"type":"update","product_id":"BTC-USD","updates":[{"side":"bid","side":"offer",'
                 b'"price_level":"1","new_quantity":"1"}]}]}'),
    ("coingecko", b'{"bitcoin":{"usd":1,"usd":2}}'),
    ("coingecko", b'{"bitcoin":{"usd":1,"last_updated_at":1,"last_updated_at":2}}'),
])
def test_duplicate_keys_are_malformed(exchange, msg):
    assert validate_json(msg)
    n = Normalizer(exchange)
    with pytest.raises(MalformedMessage, match="duplicate|twice|once"):
        n.parse(msg, TR)


@pytest.mark.parametrize("exchange,msg", [
    ("coingecko", b'{"bitcoin":{"usd":1,"last_updated_at":9999999999}}'),
    ("binance", sample("binance", "trade").replace(b'"T":1672515782136', b'"T":9300000000000')),
    ("binance", sample("binance", "trade").replace(b'"T":1672515782136', b'"T":-1')),
    ("binance", sample("binance", "depthUpdate").replace(b'"E":', b'"E":9', 1)),
])
def test_times_past_int64_ns_are_malformed(exchange, msg):
    with pytest.raises(MalformedMessage, match="time"):
        normalize(exchange, msg, TR)


def test_times_at_the_int64_limit_are_kept():
    cg = normalize("coingecko", b'{"bitcoin":{"usd":1,"last_updated_at":9223372036}}', TR)
    assert cg["ts_event"][0] == 9223372036 * 10**9
    tr = sample("binance", "trade").replace(b'"T":1672515782136', b'"T":9223372036854')
    assert normalize("binance", tr, TR)["ts_event"][0] == 9223372036854 * 10**6


def test_parse_argument_errors():
    n = Normalizer("binance")
    with pytest.raises(TypeError, match="message"):
        n.parse(None, TR)
    for bad in (2**63, -1, 10**30):
        with pytest.raises(ValueError, match="ts_recv") as info:
            n.parse(sample("binance", "bookTicker"), bad)
        assert not isinstance(info.value, MalformedMessage)
    assert n.parse(sample("binance", "bookTicker"), 2**63 - 1)["ts_recv"][0] == 2**63 - 1


def test_normalize_results_stay_valid_and_independent():
    """normalize() hands out views of never-reused chunks: earlier results survive later calls."""
    frame = sample("binance", "bookTicker")
    first = normalize("binance", frame, 1)
    later = [normalize("binance", frame.replace(b"400900217", str(k).encode()), 2) for k in range(2000)]
    assert first["seq"][0] == 400900217 and first["ts_recv"][0] == 1
    assert [int(t["seq"][0]) for t in later] == list(range(2000))
    later[0]["seq"] = 5  # writable, and writing one touches no other
    assert later[1]["seq"][0] == 1 and first["seq"][0] == 400900217


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_contract(data):
    """Mutated frames give records that keep the contract, or MalformedMessage, and a
    rejected frame leaves the Normalizer as it was (the next good frame parses the same)."""
    exchange, msg = data.draw(st.sampled_from(_all_samples()))
    sym = "BNBBTC" if b"lastUpdateId" in msg else None
    m = bytearray(msg)
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(m) - 1))
        m[pos:pos + data.draw(st.integers(0, 2))] = data.draw(
            st.sampled_from([b"-", b"0", b"1e", b"\\u0030", b"9" * 20, b",", b'"', b"e", b"null"]))
    n = Normalizer(exchange)
    want = n.parse(msg, TR, sym).copy()
    before = dict(n.precisions)
    try:
        _check_contract(n.parse(bytes(m), TR, sym))
    except MalformedMessage:
        assert n.precisions == before
    assert n.parse(msg, TR, sym).tobytes() == want.tobytes()


def _instrument(*pairs):
    return json.dumps({"channel": "instrument", "type": "snapshot",
                       "data": {"assets": [], "pairs": list(pairs)}})


def _pair(symbol, pp=1, qp=8):
    return {"symbol": symbol, "base": symbol.split("/")[0], "quote": symbol.split("/")[-1],
            "price_precision": pp, "qty_precision": qp, "price_increment": 0.1}


def test_kraken_instrument_skips_and_counts_unmappable_pairs():
    """A real snapshot lists staking/tokenized assets without a canonical name:
    those are skipped and counted, every other pair keeps its precisions."""
    n = Normalizer("kraken")
    out = n.parse(_instrument(_pair("BTC/USD"), _pair("ETH2.S/ETH", 4, 8), {"symbol": 5},
                              _pair("ETH/USD", 2, 8)), TR)
    assert len(out) == 0 and n.last_type == "data" and n.last_channel == "instrument"
    assert n.precisions == {"BTC-USD": (1, 8), "ETH-USD": (2, 8)}
    assert (n.last_skipped, n.skipped) == (2, 2)
    n.parse(sample("kraken", "heartbeat"), TR)
    assert (n.last_skipped, n.skipped) == (0, 2)


def test_kraken_instrument_rejected_whole_changes_nothing():
    n = Normalizer("kraken")
    n.parse(_instrument(_pair("BTC/USD")), TR)
    bad = _instrument(_pair("BTC/USD", 3, 3), _pair("ETH/USD"))[:-2] + "}"  # not JSON
    with pytest.raises(MalformedMessage):
        n.parse(bad, TR)
    no_pairs = json.dumps({"channel": "instrument", "type": "snapshot", "data": {"pairs": {}}})
    with pytest.raises(MalformedMessage):
        n.parse(no_pairs, TR)
    assert n.precisions == {"BTC-USD": (1, 8)} and n.skipped == 0


@pytest.mark.parametrize("bad", ["1e400", "5" * 5000, "-3", str(10**30), "2.9", "true", "19",
                                 '"2"', "null", "1.0"])
def test_kraken_instrument_bad_precision_keeps_the_previous(bad):
    n = Normalizer("kraken")
    n.parse(_instrument(_pair("BTC/USD", 1, 8), _pair("ETH/USD", 2, 8)), TR)
    msg = _instrument(_pair("BTC/USD", 7, 7), _pair("ETH/USD", 0, 18)).replace(
        '"price_precision": 7', '"price_precision": ' + bad)
    assert '"price_precision": ' + bad in msg
    n.parse(msg, TR)  # neither OverflowError nor a plain ValueError
    assert n.precisions == {"BTC-USD": (1, 8), "ETH-USD": (0, 18)} and n.last_skipped == 1


# ---------------------------------------------------------------------------
# one class per venue (hftsig.market.normalize.NORMALIZERS)
# ---------------------------------------------------------------------------

def test_normalizers_cover_every_exchange_of_the_tick_codes():
    """Every exchange code but the simulator's pseudo-venue has a normalizer whose records
    carry that code."""
    from hftsig.market.normalize import EXCHANGES, NORMALIZERS
    assert set(NORMALIZERS) == set(T.EXCHANGES.values()) - {"simulated"}
    assert EXCHANGES == tuple(NORMALIZERS)
    for exchange, msg in _all_samples():
        sym = "BNBBTC" if b"lastUpdateId" in msg else None
        out = NORMALIZERS[exchange]().parse(msg, TR, sym)
        assert all(T.EXCHANGES[code] == exchange for code in out["exchange"]), exchange


@pytest.mark.parametrize("exchange,msg", _all_samples())
def test_venue_class_parses_its_samples_as_the_factory(exchange, msg):
    """Normalizer(exchange) is the venue's class, and both parse a sample the same way."""
    from hftsig.market.normalize import NORMALIZERS
    made = Normalizer(exchange)
    venue = NORMALIZERS[exchange]()
    assert type(made) is NORMALIZERS[exchange] and made.exchange == venue.exchange == exchange
    assert isinstance(venue, Normalizer) and issubclass(NORMALIZERS[exchange], Normalizer)
    sym = "BNBBTC" if b"lastUpdateId" in msg else None
    a, b = made.parse(msg, TR, sym), venue.parse(msg, TR, sym)
    assert a.tobytes() == b.tobytes()
    assert (made.last_type, made.last_channel, made.last_seq, made.last_symbol) == \
        (venue.last_type, venue.last_channel, venue.last_seq, venue.last_symbol)


@pytest.mark.parametrize("msg", MALFORMED)
def test_venue_classes_reject_what_the_factory_rejects(msg):
    from hftsig.market.normalize import NORMALIZERS
    for exchange, cls in NORMALIZERS.items():
        outcomes = []
        for n in (Normalizer(exchange), cls()):
            try:
                outcomes.append(n.parse(msg, TR).tobytes())
            except MalformedMessage as exc:
                outcomes.append(str(exc))
        assert outcomes[0] == outcomes[1], (exchange, msg)


def test_venue_classes_reject_another_venues_frame():
    """A Binance frame is an unknown message to the other venues' classes: each parses
    its own venue's frames only."""
    from hftsig.market.normalize import (
        BinanceNormalizer,
        CoinbaseNormalizer,
        CoinGeckoNormalizer,
        KrakenNormalizer,
    )
    frame = sample("binance", "bookTicker")
    assert len(BinanceNormalizer().parse(frame, TR)) == 1
    for cls in (KrakenNormalizer, CoinbaseNormalizer, CoinGeckoNormalizer):
        n = cls()
        assert len(n.parse(frame, TR)) == 0 and n.last_type == "unknown"


def test_factory_and_venue_argument_errors_name_the_argument():
    from hftsig._ext._normalizer_base import NormalizerBase
    from hftsig.market.normalize import NORMALIZERS, BinanceNormalizer, KrakenNormalizer
    with pytest.raises(ValueError, match=r"exchange must be one of \['binance', 'coinbase', "
                                         r"'coingecko', 'kraken'\], got 'bitstamp'"):
        Normalizer("bitstamp")
    with pytest.raises(ValueError, match="time_unit"):
        Normalizer("kraken", time_unit="s")  # checked for every exchange, as before
    with pytest.raises(ValueError, match="time_unit"):
        BinanceNormalizer(time_unit="s")
    for cls in NORMALIZERS.values():
        with pytest.raises(ValueError, match="chunk_size"):
            cls(chunk_size=0)
    # a venue class takes only the arguments that mean something for it
    with pytest.raises(TypeError, match="time_unit"):
        KrakenNormalizer(time_unit="ms")
    with pytest.raises(TypeError, match="Normalizer"):
        NormalizerBase()
    assert Normalizer("BINANCE", time_unit="us").time_unit == "us"
    assert Normalizer("kraken", time_unit="ms").exchange == "kraken"


def test_precisions_belong_to_kraken_and_read_empty_elsewhere():
    n = Normalizer("kraken")
    n.parse(json.dumps({"channel": "instrument", "type": "snapshot", "data": {
        "assets": [], "pairs": [{"symbol": "BTC/USD", "price_precision": 1,
                                 "qty_precision": 8}]}}), TR)
    assert n.precisions == {"BTC-USD": (1, 8)}
    n.precisions = {}
    assert n.precisions == {}
    for exchange in ("binance", "coinbase", "coingecko"):
        assert Normalizer(exchange).precisions == {}


def test_coingecko_prices_beside_a_member_of_another_shape_are_data():
    # a fuzzer's input: records came out while last_type said "unknown"
    n = Normalizer("coingecko")
    body = (b'{"bitcoin":{"usd":60053.0,"eur":55604.63,"last_updated_at":1796397760},'
            b'"etd_at":1711}')
    t = n.parse(body, TR)
    assert len(t) == 2 and n.last_type == "data"
    assert len(n.parse(b'{"etd_at":1711}', TR)) == 0 and n.last_type == "unknown"
