"""Canonical ``BASE-QUOTE`` symbols and each exchange's own spelling.

hftsig names every market ``BASE-QUOTE`` in upper case (``"BTC-USDT"``),
at most 16 ASCII bytes so it fits the tick record's ``symbol`` field.  The
exchanges spell the same market differently:

========== ============== ====================================================
exchange   spelling       notes
========== ============== ====================================================
binance    ``BTCUSDT``    no separator: split by a table, by an
                          ``exchangeInfo`` body (:func:`parse_binance_exchange_info`)
                          or by a known quote-asset suffix
kraken     ``BTC/USD``    WebSocket v2 names; legacy ``XBT``/``XDG`` map to
                          ``BTC``/``DOGE``
coinbase   ``BTC-USD``    already canonical
coingecko  ``bitcoin`` +  a coin id and a vs-currency (``usd``)
           ``usd``
========== ============== ====================================================

Unknown names raise :class:`ValueError` naming the exchange and symbol.

Examples
--------
>>> to_canonical("binance", "BTCUSDT")
'BTC-USDT'
>>> to_canonical("kraken", "XBT/USD")
'BTC-USD'
>>> from_canonical("binance", "ETH-BTC")
'ETHBTC'
>>> from_canonical("kraken", "BTC-USD")
'BTC/USD'
>>> from_canonical("coingecko", "BTC-USD")
('bitcoin', 'usd')
>>> to_canonical("coingecko", ("ethereum", "eur"))
'ETH-EUR'
"""
from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from typing import Any

__all__ = [
    "EXCHANGE_NAMES",
    "canonical",
    "to_canonical",
    "from_canonical",
    "register",
    "parse_binance_exchange_info",
    "coingecko_query",
    "COINGECKO_IDS",
]

EXCHANGE_NAMES = ("binance", "kraken", "coinbase", "coingecko")

_CANON_RE = re.compile(r"^[A-Z0-9]{1,12}-[A-Z0-9]{1,12}$")

# Quote assets Binance lists, longest first so that "FDUSD" wins over "USD".
_BINANCE_QUOTES = (
    "FDUSD", "USDT", "USDC", "TUSD", "BUSD", "USDP", "AEUR", "EURI",
    "BTC", "ETH", "BNB", "EUR", "GBP", "TRY", "BRL", "JPY", "AUD", "DAI",
    "XRP", "DOGE", "SOL", "PLN", "RON", "UAH", "ZAR", "ARS", "MXN", "COP",
    "IDR", "CZK", "JPY",
)
_COMMON_BASES = (
    "BTC", "ETH", "BNB", "SOL", "XRP", "ADA", "DOGE", "LTC", "DOT", "LINK",
    "AVAX", "TRX", "MATIC", "POL", "BCH", "XLM", "UNI", "ATOM", "ETC", "SHIB",
    "NEAR", "APT", "ARB", "SUI", "PEPE", "TON", "FIL", "ALGO", "AAVE", "USDC",
)
_COMMON_QUOTES = ("USDT", "USDC", "FDUSD", "BTC", "ETH", "BNB", "EUR", "TRY")

#: Kraken's legacy asset names -> the names everyone else uses
_KRAKEN_ALIASES = {"XBT": "BTC", "XDG": "DOGE"}

#: CoinGecko coin id -> asset ticker (extend with :func:`register`)
COINGECKO_IDS = {
    "bitcoin": "BTC", "ethereum": "ETH", "tether": "USDT", "usd-coin": "USDC",
    "binancecoin": "BNB", "solana": "SOL", "ripple": "XRP", "cardano": "ADA",
    "dogecoin": "DOGE", "litecoin": "LTC", "polkadot": "DOT", "chainlink": "LINK",
    "avalanche-2": "AVAX", "tron": "TRX", "matic-network": "MATIC",
    "polygon-ecosystem-token": "POL", "bitcoin-cash": "BCH", "stellar": "XLM",
    "uniswap": "UNI", "monero": "XMR", "cosmos": "ATOM", "ethereum-classic": "ETC",
    "shiba-inu": "SHIB", "dai": "DAI", "wrapped-bitcoin": "WBTC", "algorand": "ALGO",
    "near": "NEAR", "aptos": "APT", "arbitrum": "ARB", "the-open-network": "TON",
    "sui": "SUI", "pepe": "PEPE", "filecoin": "FIL", "aave": "AAVE",
    "first-digital-usd": "FDUSD",
}

# exchange -> {exchange symbol: canonical}; filled from tables and register()
_TO = {name: {} for name in EXCHANGE_NAMES}
# exchange -> {canonical: exchange symbol}
_FROM = {name: {} for name in EXCHANGE_NAMES}


def _check_exchange(exchange):
    name = str(exchange).lower()
    if name not in _TO:
        raise ValueError(f"exchange must be one of {list(EXCHANGE_NAMES)}, got {exchange!r}")
    return name


def canonical(symbol: str | bytes) -> str:
    """Validate and normalise a canonical symbol (``"btc-usdt"`` -> ``"BTC-USDT"``).

    Raises
    ------
    ValueError
        If ``symbol`` is not ``BASE-QUOTE`` of upper-case letters/digits
        within 16 bytes.
    """
    if isinstance(symbol, bytes):
        symbol = symbol.decode("ascii", "replace")
    if not isinstance(symbol, str):
        raise TypeError(f"symbol must be a str, got {type(symbol).__name__}")
    s = symbol.strip().upper()
    if len(s) > 16 or not _CANON_RE.match(s):
        raise ValueError(f"symbol must look like 'BASE-QUOTE' (e.g. 'BTC-USDT'), got {symbol!r}")
    return s


def register(exchange: str, mapping: Mapping[str, str]) -> None:
    """Add ``{exchange symbol: canonical}`` pairs to the tables (both ways).

    For CoinGecko the keys are coin ids and the values asset tickers
    (``{"pepe": "PEPE"}``).
    """
    name = _check_exchange(exchange)
    for raw, canon in dict(mapping).items():
        if name == "coingecko":
            COINGECKO_IDS[str(raw).lower()] = str(canon).upper()
            continue
        canon = canonical(canon)
        _TO[name][str(raw)] = canon
        _FROM[name].setdefault(canon, str(raw))


def _binance_split(raw):
    for q in _BINANCE_QUOTES:
        if raw.endswith(q) and len(raw) > len(q):
            return f"{raw[:-len(q)]}-{q}"
    return None


def to_canonical(exchange: str, symbol: str | bytes) -> str:
    """Exchange spelling -> canonical ``BASE-QUOTE``.

    ``symbol`` is a str (``"BTCUSDT"``, ``"BTC/USD"``, ``"BTC-USD"``) or,
    for CoinGecko, a ``(coin_id, vs_currency)`` pair.

    Raises
    ------
    ValueError
        For a name that cannot be mapped.
    """
    name = _check_exchange(exchange)
    if name == "coingecko":
        try:
            coin, vs = symbol
        except (TypeError, ValueError):
            raise ValueError(
                f"coingecko symbol must be a (coin_id, vs_currency) pair, got {symbol!r}"
            ) from None
        base = COINGECKO_IDS.get(str(coin).lower())
        if base is None:
            raise ValueError(f"unknown coingecko coin id {coin!r}; add it with register()")
        return canonical(f"{base}-{str(vs).upper()}")
    if isinstance(symbol, bytes):
        symbol = symbol.decode("ascii", "replace")
    if not isinstance(symbol, str):
        raise TypeError(f"symbol must be a str, got {type(symbol).__name__}")
    hit = _TO[name].get(symbol)
    if hit is not None:
        return hit
    try:
        if name == "binance":
            split = _binance_split(symbol.upper())
            if split is None:
                raise ValueError
            return canonical(split)
        if name == "kraken":
            base, quote = symbol.upper().split("/")
            base = _KRAKEN_ALIASES.get(base, base)
            quote = _KRAKEN_ALIASES.get(quote, quote)
            return canonical(f"{base}-{quote}")
        return canonical(symbol)  # coinbase
    except ValueError:
        raise ValueError(f"unknown {name} symbol {symbol!r}") from None


def from_canonical(exchange: str, symbol: str) -> str:
    """Canonical ``BASE-QUOTE`` -> the exchange's spelling.

    Binance gives ``"BTCUSDT"``, Kraken ``"BTC/USD"``, Coinbase ``"BTC-USD"``,
    CoinGecko a ``(coin_id, vs_currency)`` pair.
    """
    name = _check_exchange(exchange)
    canon = canonical(symbol)
    hit = _FROM[name].get(canon)
    if hit is not None:
        return hit
    base, quote = canon.split("-")
    if name == "binance":
        return base + quote
    if name == "kraken":
        return f"{base}/{quote}"
    if name == "coinbase":
        return canon
    for coin, ticker in COINGECKO_IDS.items():
        if ticker == base:
            return coin, quote.lower()
    raise ValueError(f"no coingecko coin id known for {base!r} (in {symbol!r}); add it with register()")


def coingecko_query(symbols: Iterable[str]) -> tuple[str, str]:
    """Canonical symbols -> ``(ids, vs_currencies)`` strings for ``/simple/price``.

    >>> coingecko_query(["BTC-USD", "ETH-USD", "ETH-EUR"])
    ('bitcoin,ethereum', 'eur,usd')
    """
    ids, vs = [], set()
    for s in symbols:
        coin, cur = from_canonical("coingecko", s)
        if coin not in ids:
            ids.append(coin)
        vs.add(cur)
    return ",".join(ids), ",".join(sorted(vs))


def parse_binance_exchange_info(body: bytes | str | Mapping[str, Any]) -> dict[str, str]:
    """Symbol table from a Binance ``GET /api/v3/exchangeInfo`` body.

    Parameters
    ----------
    body : bytes, str or dict
        The response body (``{"symbols": [{"symbol": "BTCUSDT",
        "baseAsset": "BTC", "quoteAsset": "USDT", ...}, ...]}``).

    Returns
    -------
    dict
        ``{"BTCUSDT": "BTC-USDT", ...}``; pass it to :func:`register` or to
        ``Normalizer(..., symbols=...)``.

    >>> parse_binance_exchange_info('{"symbols":[{"symbol":"ETHBTC","baseAsset":"ETH","quoteAsset":"BTC"}]}')
    {'ETHBTC': 'ETH-BTC'}
    """
    if isinstance(body, (bytes, bytearray, str)):
        try:
            body = json.loads(body)
        except ValueError as exc:
            raise ValueError(f"exchangeInfo body is not JSON: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("symbols"), list):
        raise ValueError("exchangeInfo body must be an object with a 'symbols' list")
    out = {}
    for entry in body["symbols"]:
        try:
            raw, base, quote = entry["symbol"], entry["baseAsset"], entry["quoteAsset"]
        except (KeyError, TypeError):
            raise ValueError(f"exchangeInfo symbol entry lacks symbol/baseAsset/quoteAsset: {entry!r}") from None
        try:
            out[str(raw)] = canonical(f"{base}-{quote}")
        except ValueError:
            continue  # names too long for the tick record are left out
    return out


def _fill_defaults():
    for b in _COMMON_BASES:
        for q in _COMMON_QUOTES:
            if b != q:
                _TO["binance"][b + q] = f"{b}-{q}"
                _FROM["binance"][f"{b}-{q}"] = b + q
    for legacy, modern in _KRAKEN_ALIASES.items():
        for q in ("USD", "EUR", "USDT", "USDC", "GBP"):
            _TO["kraken"][f"{legacy}/{q}"] = f"{modern}-{q}"


_fill_defaults()
