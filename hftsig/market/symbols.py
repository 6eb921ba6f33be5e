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

from hftsig import venues

__all__ = [
    "EXCHANGE_NAMES",
    "SymbolRules",
    "canonical",
    "to_canonical",
    "from_canonical",
    "register",
    "parse_binance_exchange_info",
    "coingecko_query",
    "COINGECKO_IDS",
]

#: names of the venues registered at import (:func:`hftsig.venues.names` is live)
EXCHANGE_NAMES = venues.names()

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

class SymbolRules:
    """How one venue spells symbols: a table of explicit pairs, then a rule.

    The table (filled by :meth:`register` and the built-in defaults) wins;
    a symbol it does not hold goes through the venue's rule.  This base
    class is the rule of venues that spell symbols canonically
    (``BTC-USD``, Coinbase); a venue with another spelling subclasses it
    and overrides :meth:`_rule_to` and :meth:`_rule_from`.  The registry
    names one instance per venue (:attr:`hftsig.venues.Venue.symbols`).

    Parameters
    ----------
    venue : str
        The venue's name, for error messages.
    """

    def __init__(self, venue):
        self.venue = venue
        self.to_table = {}  # exchange symbol -> canonical
        self.from_table = {}  # canonical -> exchange symbol

    def register(self, raw, canon):
        """Add one ``exchange symbol -> canonical`` pair (both ways)."""
        canon = canonical(canon)
        self.to_table[str(raw)] = canon
        self.from_table.setdefault(canon, str(raw))

    def to_canonical(self, symbol):
        """Exchange spelling -> canonical; ``ValueError`` if it cannot be mapped."""
        if isinstance(symbol, bytes):
            symbol = symbol.decode("ascii", "replace")
        if not isinstance(symbol, str):
            raise TypeError(f"symbol must be a str, got {type(symbol).__name__}")
        hit = self.to_table.get(symbol)
        if hit is not None:
            return hit
        try:
            return canonical(self._rule_to(symbol))
        except ValueError:
            raise ValueError(f"unknown {self.venue} symbol {symbol!r}") from None

    def from_canonical(self, symbol):
        """Canonical -> the exchange's spelling."""
        canon = canonical(symbol)
        hit = self.from_table.get(canon)
        if hit is not None:
            return hit
        base, quote = canon.split("-")
        return self._rule_from(base, quote)

    def _rule_to(self, symbol):
        return symbol

    def _rule_from(self, base, quote):
        return f"{base}-{quote}"


class _BinanceSymbols(SymbolRules):
    """``BTCUSDT``: base and quote glued, split at a known quote asset."""

    def _rule_to(self, symbol):
        split = _binance_split(symbol.upper())
        if split is None:
            raise ValueError(symbol)
        return split

    def _rule_from(self, base, quote):
        return base + quote


class _KrakenSymbols(SymbolRules):
    """``BTC/USD``; the legacy ``XBT``/``XDG`` are read as ``BTC``/``DOGE``."""

    def _rule_to(self, symbol):
        base, quote = symbol.upper().split("/")
        return f"{_KRAKEN_ALIASES.get(base, base)}-{_KRAKEN_ALIASES.get(quote, quote)}"

    def _rule_from(self, base, quote):
        return f"{base}/{quote}"


class _CoinGeckoSymbols(SymbolRules):
    """A ``(coin_id, vs_currency)`` pair; coin ids from :data:`COINGECKO_IDS`."""

    def register(self, raw, canon):
        """Add a ``coin id -> asset ticker`` pair (``"pepe", "PEPE"``)."""
        COINGECKO_IDS[str(raw).lower()] = str(canon).upper()

    def to_canonical(self, symbol):
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

    def from_canonical(self, symbol):
        base, quote = canonical(symbol).split("-")
        for coin, ticker in COINGECKO_IDS.items():
            if ticker == base:
                return coin, quote.lower()
        raise ValueError(f"no coingecko coin id known for {base!r} (in {symbol!r}); "
                         f"add it with register()")


#: the built-in venues' rules, named by their :class:`hftsig.venues.Venue`
BINANCE_SYMBOLS = _BinanceSymbols("binance")
KRAKEN_SYMBOLS = _KrakenSymbols("kraken")
COINBASE_SYMBOLS = SymbolRules("coinbase")
COINGECKO_SYMBOLS = _CoinGeckoSymbols("coingecko")


def _rules(exchange):
    try:
        return venues.get(exchange).symbol_rules()
    except KeyError:
        raise ValueError(f"exchange must be one of {list(venues.names())}, got {exchange!r}") from None


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
    rules = _rules(exchange)
    for raw, canon in dict(mapping).items():
        rules.register(raw, canon)


def _binance_split(raw):
    for q in _BINANCE_QUOTES:
        if raw.endswith(q) and len(raw) > len(q):
            return f"{raw[:-len(q)]}-{q}"
    return None


def to_canonical(exchange: str, symbol: str | bytes) -> str:
    """Exchange spelling -> canonical ``BASE-QUOTE``.

    ``symbol`` is a str (``"BTCUSDT"``, ``"BTC/USD"``, ``"BTC-USD"``) or,
    for CoinGecko, a ``(coin_id, vs_currency)`` pair.  The venue's
    :class:`SymbolRules` (from the registry, :mod:`hftsig.venues`) do it.

    Raises
    ------
    ValueError
        For a name that cannot be mapped.
    """
    return _rules(exchange).to_canonical(symbol)


def from_canonical(exchange: str, symbol: str) -> str:
    """Canonical ``BASE-QUOTE`` -> the exchange's spelling.

    Binance gives ``"BTCUSDT"``, Kraken ``"BTC/USD"``, Coinbase ``"BTC-USD"``,
    CoinGecko a ``(coin_id, vs_currency)`` pair.
    """
    return _rules(exchange).from_canonical(symbol)


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
                BINANCE_SYMBOLS.to_table[b + q] = f"{b}-{q}"
                BINANCE_SYMBOLS.from_table[f"{b}-{q}"] = b + q
    for legacy, modern in _KRAKEN_ALIASES.items():
        for q in ("USD", "EUR", "USDT", "USDC", "GBP"):
            KRAKEN_SYMBOLS.to_table[f"{legacy}/{q}"] = f"{modern}-{q}"


_fill_defaults()
