"""Connector dispatch overhead: frames/s through a connector's message path.

``python -m benchmarks.connectors`` feeds documented sample frames (from
``tests/data/samples``) straight into each connector's frame handler, the
code its thread runs per websocket frame (normalize, classify, count, book
upkeep, ``on_tick``), with no network, and prints the median of 5 runs.
The normalizer alone is measured by ``python -m benchmarks.normalize``.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

from hftsig.connectors import BinanceConnector, CoinbaseConnector, KrakenConnector

SAMPLES = Path(__file__).resolve().parent.parent / "tests" / "data" / "samples"


def _cases():
    s = SAMPLES
    book_ticker = (s / "binance" / "bookTicker.json").read_bytes().strip()
    trade = (s / "binance" / "trade.json").read_bytes().strip()
    return [
        ("binance bookTicker (combined stream)", BinanceConnector(["BNB-USDT"], channels=["bookTicker"]),
         b'{"stream":"bnbusdt@bookTicker","data":' + book_ticker + b"}"),
        ("binance trade (combined stream)", BinanceConnector(["BNB-BTC"], channels=["trade"]),
         b'{"stream":"bnbbtc@trade","data":' + trade + b"}"),
        ("kraken trade", KrakenConnector(["MATIC-USD"], channels=["trade"]),
         (s / "kraken" / "trade_update.json").read_bytes().strip()),
        ("coinbase ticker", CoinbaseConnector(["ETH-USD"], channels=["ticker"]),
         (s / "coinbase" / "ticker.json").read_bytes().strip()),
    ]


def _frames(name, frame, n):
    """Coinbase drops repeated sequence numbers as duplicates: number the frames."""
    if not name.startswith("coinbase"):
        return [frame] * n
    head, sep, tail = frame.partition(b'"sequence_num":')
    tail = tail[len(tail) - len(tail.lstrip(b"0123456789")):]
    return [head + sep + str(i).encode() + tail for i in range(n)]


def main(n=100_000, repeats=5):
    print(f"{'message':40s} {'frames/s':>12s}")
    for name, conn, frame in _cases():
        conn.on_tick = lambda ticks: None
        handle = conn._on_message
        frames = _frames(name, frame, n)
        rates = []
        for _ in range(repeats):
            conn._on_open()  # fresh connection state: sequence numbers start over
            t0 = time.perf_counter()
            for f in frames:
                handle(f, 1)
            rates.append(n / (time.perf_counter() - t0))
        stats = conn.stats()
        assert stats["malformed"] == 0 and stats.get("old_events", 0) == 0, stats
        print(f"{name:40s} {statistics.median(rates):>12,.0f}")


if __name__ == "__main__":
    main()
