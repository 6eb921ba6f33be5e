"""Tests of hftsig.market.symbols: canonical names both ways for every exchange."""
import json

import pytest

from hftsig.market import symbols as S


@pytest.mark.parametrize("exchange,raw,canon", [
    ("binance", "BTCUSDT", "BTC-USDT"), ("binance", "ETHBTC", "ETH-BTC"),
    ("binance", "BNBFDUSD", "BNB-FDUSD"), ("binance", "WIFUSDC", "WIF-USDC"),
    ("kraken", "BTC/USD", "BTC-USD"), ("kraken", "XBT/EUR", "BTC-EUR"), ("kraken", "XDG/USD", "DOGE-USD"),
    ("kraken", "MATIC/GBP", "MATIC-GBP"), ("coinbase", "BTC-USD", "BTC-USD"),
    ("coingecko", ("bitcoin", "usd"), "BTC-USD"), ("coingecko", ("ethereum", "EUR"), "ETH-EUR"),
])
def test_to_canonical(exchange, raw, canon):
    assert S.to_canonical(exchange, raw) == canon


@pytest.mark.parametrize("exchange,canon,raw", [
    ("binance", "BTC-USDT", "BTCUSDT"), ("kraken", "BTC-USD", "BTC/USD"),
    ("coinbase", "ETH-USD", "ETH-USD"), ("coingecko", "SOL-USD", ("solana", "usd")),
])
def test_round_trip(exchange, canon, raw):
    assert S.from_canonical(exchange, canon) == raw
    assert S.to_canonical(exchange, raw) == canon


@pytest.mark.parametrize("exchange,raw", [
    ("binance", "QQQ"), ("binance", "USDT"), ("kraken", "BTCUSD"), ("coinbase", "btc_usd"),
    ("coingecko", ("no-such-coin", "usd")), ("coingecko", "bitcoin"),
])
def test_unknown_symbols_raise(exchange, raw):
    with pytest.raises(ValueError, match="unknown|coingecko symbol"):
        S.to_canonical(exchange, raw)


def test_bad_exchange_and_canonical():
    with pytest.raises(ValueError, match="exchange"):
        S.to_canonical("ftx", "BTC-USD")
    for bad in ("BTCUSD", "BTC-", "-USD", "BTC-USD-X", "A" * 12 + "-" + "B" * 5):
        with pytest.raises(ValueError, match="BASE-QUOTE"):
            S.canonical(bad)
    assert S.canonical("btc-usdt") == "BTC-USDT"
    with pytest.raises(ValueError, match="coingecko coin id"):
        S.from_canonical("coingecko", "ZZZ-USD")


def test_exchange_info_table():
    body = json.dumps({"timezone": "UTC", "symbols": [
        {"symbol": "ETHBTC", "status": "TRADING", "baseAsset": "ETH", "quoteAsset": "BTC"},
        {"symbol": "1000SATSUSDT", "baseAsset": "1000SATS", "quoteAsset": "USDT"},
        {"symbol": "XYZABC", "baseAsset": "XYZ", "quoteAsset": "ABC"}]})
    table = S.parse_binance_exchange_info(body)
    assert table == {"ETHBTC": "ETH-BTC", "1000SATSUSDT": "1000SATS-USDT", "XYZABC": "XYZ-ABC"}
    S.register("binance", table)
    assert S.to_canonical("binance", "XYZABC") == "XYZ-ABC"
    assert S.from_canonical("binance", "XYZ-ABC") == "XYZABC"
    with pytest.raises(ValueError, match="symbols"):
        S.parse_binance_exchange_info(b"{}")
    with pytest.raises(ValueError, match="not JSON"):
        S.parse_binance_exchange_info(b"{")


def test_coingecko_query_and_register():
    assert S.coingecko_query(["BTC-USD", "ETH-EUR"]) == ("bitcoin,ethereum", "eur,usd")
    S.register("coingecko", {"dogwifcoin": "WIF"})
    assert S.to_canonical("coingecko", ("dogwifcoin", "usd")) == "WIF-USD"
