"""Readers of the recorded real sessions in ``tests/data/real`` (sources in its README).

Each reader returns :class:`hftsig.app.doctor.Frame` lists in arrival order, the
payloads as the recorder kept them.  Only the standard library is used to
read the files, so what the tests compare hftsig against does not come from
hftsig.
"""
from __future__ import annotations

import datetime
import json
import pathlib
import urllib.parse
from decimal import Decimal

from hftsig.app.doctor import Frame

REAL = pathlib.Path(__file__).parent / "data" / "real"

BINANCE_WS = REAL / "binance" / "cryptofeed_BINANCE.ws.1.0.sxpbtc"
BINANCE_REST = REAL / "binance" / "cryptofeed_BINANCE.http.0.0.sxpbtc"
BINANCE_REST_LEVELS_KEPT = 50  # the REST snapshot keeps its best 50 levels a side (README)
KRAKEN_BOOK = REAL / "kraken" / "python-kraken-sdk_orderbook-v2.first100.json"
COINBASE_SESSION = REAL / "coinbase" / "advanced_trade_session.jsonl"
COINGECKO_RESPONSES = REAL / "coingecko" / "simple_price_responses.jsonl"


def _seconds_to_ns(text):
    return int(Decimal(text) * 1_000_000_000)


def binance_ws_frames():
    """Frames of cryptofeed's combined-stream recording (``<epoch s>: <frame>`` lines)."""
    out = []
    for line in BINANCE_WS.read_text().splitlines():
        ts, sep, body = line.partition(": ")
        if sep and body.startswith("{") and ts.replace(".", "", 1).isdigit():
            out.append(Frame(body, _seconds_to_ns(ts), "ws"))
    return out


def binance_rest_frames():
    """REST depth snapshots of the same recording (``<url> -> <epoch s>: <body>`` lines)."""
    out = []
    for line in BINANCE_REST.read_text().splitlines():
        url, sep, rest = line.partition(" -> ")
        if not sep:
            continue
        ts, _, body = rest.partition(": ")
        symbol = urllib.parse.parse_qs(urllib.parse.urlsplit(url).query)["symbol"][0]
        out.append(Frame(body, _seconds_to_ns(ts), "rest", symbol))
    return out


def binance_session():
    """Websocket frames and REST snapshots merged by receive time, as they arrived."""
    return sorted(binance_ws_frames() + binance_rest_frames(), key=lambda f: f.ts_recv)


def compact_json(value):
    """Compact JSON of ``value`` with every number written as the file wrote it
    (numbers parsed as :class:`~decimal.Decimal`, so ``0.10000000`` stays so)."""
    if isinstance(value, dict):
        return "{" + ",".join(json.dumps(k) + ":" + compact_json(v) for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(compact_json(v) for v in value) + "]"
    if isinstance(value, Decimal):
        return str(value)
    return json.dumps(value)


def kraken_book_messages():
    """The Kraken v2 book snapshot and its first 100 updates, as parsed dicts (numbers Decimal)."""
    doc = json.loads(KRAKEN_BOOK.read_text(), parse_float=Decimal)
    return [doc["init"]] + doc["updates"]


def kraken_book_frames():
    """The same messages as compact frames (no receive times were recorded)."""
    return [Frame(compact_json(m)) for m in kraken_book_messages()]


# A Kraken v2 ``instrument`` snapshot with a handful of entries.  The envelope is the
# documented one (``channel``, ``type``, ``data`` with ``assets`` and ``pairs``:
# https://docs.kraken.com/exchange/api-reference/spot-websocket-v2/instrument).  Each entry is
# quoted field for field, in the recording's order and with its number text (``1.00``,
# ``0.025000``, ``1E-8``), from a real
# snapshot of 683 pairs and 296 assets: torquey66/kraken-data-recorder,
# test/data/instrument_snapshot.json at 68ad4291f4128a0311c59a28135c2f597163bd0c (CC BY-ND 4.0,
# so not copied here whole).  They are the shapes the venue sends: assets with and without
# ``margin_rate``, marginable pairs with ``margin_initial`` and position limits, spot-only pairs
# without, whole numbers without a fraction (BTC/JPY ``"tick_size": 1``), and ``ETH2.S/ETH``,
# the one pair of the 683 that is not a plain ``BASE/QUOTE``.  BTC/USD's precisions (price 1,
# qty 8) are the ones the book checksums of ``KRAKEN_BOOK`` need.
KRAKEN_INSTRUMENT_EXCERPT = (
    '{"channel":"instrument","type":"snapshot","data":{"assets":['
    '{"id":"USD","status":"enabled","precision":4,"precision_display":2,"borrowable":true,'
    '"collateral_value":1.00,"margin_rate":0.025000},'
    '{"id":"BTC","status":"enabled","precision":10,"precision_display":5,"borrowable":true,'
    '"collateral_value":1.00,"margin_rate":0.010000},'
    '{"id":"ETH","status":"enabled","precision":10,"precision_display":5,"borrowable":true,'
    '"collateral_value":1.00,"margin_rate":0.020000},'
    '{"id":"ETH2.S","status":"enabled","precision":10,"precision_display":5,"borrowable":false,'
    '"collateral_value":0.00}'
    '],"pairs":['
    '{"symbol":"BTC/USD","base":"BTC","quote":"USD","status":"online","qty_precision":8,'
    '"qty_increment":1E-8,"price_precision":1,"cost_precision":5,"marginable":true,'
    '"has_index":true,"cost_min":0.50,"margin_initial":0.20,"position_limit_long":300,'
    '"position_limit_short":240,"tick_size":0.1,"price_increment":0.1,"qty_min":0.00010000},'
    '{"symbol":"BTC/JPY","base":"BTC","quote":"JPY","status":"online","qty_precision":8,'
    '"qty_increment":1E-8,"price_precision":0,"cost_precision":3,"marginable":false,'
    '"has_index":true,"cost_min":50,"tick_size":1,"price_increment":1,"qty_min":0.00010000},'
    '{"symbol":"ETH/CHF","base":"ETH","quote":"CHF","status":"online","qty_precision":8,'
    '"qty_increment":1E-8,"price_precision":2,"cost_precision":5,"marginable":false,'
    '"has_index":true,"cost_min":0.50,"tick_size":0.01,"price_increment":0.01,'
    '"qty_min":0.00200000},'
    '{"symbol":"ETH/BTC","base":"ETH","quote":"BTC","status":"online","qty_precision":8,'
    '"qty_increment":1E-8,"price_precision":5,"cost_precision":10,"marginable":true,'
    '"has_index":true,"cost_min":0.00002,"margin_initial":0.20,"position_limit_long":1000,'
    '"position_limit_short":600,"tick_size":0.00001,"price_increment":0.00001,'
    '"qty_min":0.00200000},'
    '{"symbol":"ETH2.S/ETH","base":"ETH2.S","quote":"ETH","status":"online","qty_precision":8,'
    '"qty_increment":1E-8,"price_precision":4,"cost_precision":8,"marginable":false,'
    '"has_index":false,"cost_min":0.00020,"tick_size":0.0001,"price_increment":0.0001,'
    '"qty_min":0.00100000}'
    ']}}'
)


def kraken_instrument_frame():
    """The ``instrument`` snapshot excerpt (:data:`KRAKEN_INSTRUMENT_EXCERPT`) as a frame."""
    return Frame(KRAKEN_INSTRUMENT_EXCERPT)


def coinbase_lines():
    """``(recorder monotonic ns, frame text)`` per line of the Coinbase session."""
    out = []
    for line in COINBASE_SESSION.read_text().splitlines():
        mono, _, frame = line.partition("\t")
        out.append((int(mono), frame))
    return out


def rfc3339_ns(text):
    """ns since the epoch of an RFC 3339 UTC time with up to 9 fraction digits."""
    head, _, frac = text.rstrip("Z").partition(".")
    t = datetime.datetime.strptime(head, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=datetime.timezone.utc)
    return int(t.timestamp()) * 1_000_000_000 + int((frac + "000000000")[:9])


def coinbase_session():
    """The frames of the Coinbase session; the recorder's clock was a monotonic one,
    so the envelope ``timestamp`` (Coinbase's send time) stands in for the receive time."""
    return [Frame(frame, rfc3339_ns(json.loads(frame)["timestamp"])) for _, frame in coinbase_lines()]


def coingecko_frames():
    """The ``/simple/price`` bodies (one per line; no receive times)."""
    return [Frame(line, None, "rest") for line in COINGECKO_RESPONSES.read_text().splitlines() if line]
