"""The exchange registry: every venue hftsig speaks to, each declared once.

A :class:`Venue` names everything the package needs to know about one
exchange: its name and the numeric code a tick carries in its ``exchange``
byte, how to connect (a connector class and its default URLs), how to read
its messages (a normalizer factory), how its symbols are spelled, its
simulator, its default taker fee, the environment variables holding its
credentials, and which of its records arrive in timed batches or polls.
Every list of exchanges in the package (the tick codes, the command line's
``--exchanges``, :func:`hftsig.connectors.make_connectors`, the default fee
table, the doctor, the demo, the arbitrage venues) is derived from this
registry, so adding a venue means new modules plus one :func:`register`
call (see ``docs/adding_an_exchange.md``).

The heavy parts (connector, normalizer, symbol rules, simulator) are given
as ``"module:attribute"`` strings resolved on first use, so this module
imports nothing from the rest of the package: it sits at the bottom of the
dependency graph and everything else may import it.

Examples
--------
>>> from hftsig import venues
>>> venues.names()
('binance', 'kraken', 'coinbase', 'coingecko')
>>> venues.get("kraken").code, venues.get("kraken").display_name
(2, 'Kraken')
>>> venues.by_code(4).name
'coingecko'
>>> [v.name for v in venues.all_venues() if v.order_book]
['binance', 'kraken', 'coinbase']
>>> toy = venues.Venue("toyx", 200, "Toy X", connector="mypkg.toyx:ToyXConnector",
...                    normalizer="mypkg.toyx:ToyXNormalizer", symbols="mypkg.toyx:SYMBOLS")
>>> with venues.registered(toy):
...     venues.names()[-1], venues.by_code(200).display_name
('toyx', 'Toy X')
>>> "toyx" in venues.names()
False
"""
from __future__ import annotations

import importlib
import threading
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Optional, Union

__all__ = [
    "Venue",
    "register",
    "unregister",
    "registered",
    "get",
    "names",
    "by_code",
    "all_venues",
    "resolve",
    "VenueTable",
    "UnknownVenue",
    "RESERVED_CODES",
]

#: codes no venue may take: 0 is a blank tick, 5 the in-process market
#: model's pseudo-exchange ``"simulated"`` (:data:`hftsig.market.ticks.EXCHANGE_SIMULATED`)
RESERVED_CODES = MappingProxyType({0: "blank tick", 5: "simulated"})

_Ref = Union[str, Callable[..., Any], None]


def resolve(ref):
    """Turn a ``"package.module:attribute"`` reference into the object it names.

    Anything that is not a string is returned as it is (a class or a
    factory given directly).

    >>> resolve("collections:OrderedDict").__name__
    'OrderedDict'
    >>> resolve(len) is len
    True
    """
    if not isinstance(ref, str):
        return ref
    module, sep, attr = ref.partition(":")
    if not sep or not module or not attr:
        raise ValueError(f"reference must look like 'package.module:attribute', got {ref!r}")
    obj = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def _check_ref(name, value, required):
    if value is None:
        if required:
            raise TypeError(f"Venue.{name} is required")
        return
    if isinstance(value, str):
        module, sep, attr = value.partition(":")
        if not (sep and module and attr):
            raise ValueError(f"Venue.{name} must look like 'package.module:attribute', "
                             f"got {value!r}")
    elif not callable(value):
        raise TypeError(f"Venue.{name} must be a 'module:attribute' string or a callable, "
                        f"got {type(value).__name__}")


@dataclass(frozen=True)
class Venue:
    """One exchange, as the rest of the package sees it.

    Parameters
    ----------
    name : str
        Lower-case identifier (``"binance"``): the ``exchange`` attribute of
        its connector, the name in ``--exchanges`` and in statistics.
    code : int
        The tick's ``exchange`` byte, 1..255, unique (codes 1..4 are the
        built-in venues, fixed by the Cython kernels; see
        :data:`RESERVED_CODES`).
    display_name : str
        The name people write (``"CoinGecko"``).
    connector : str or callable
        ``"module:Class"`` of the connector: ``Class(symbols, **kwargs)``
        with ``ws_url``/``rest_url`` keyword arguments (see
        :mod:`hftsig.connectors.base`).
    normalizer : str or callable
        Factory of the venue's normalizer: called with keyword arguments
        (``chunk_size``...), it returns an object whose
        ``parse(message, ts_recv=None, symbol=None)`` gives a tick batch.
    symbols : str or object
        The venue's symbol rules: an object with ``to_canonical(native)``,
        ``from_canonical(canonical)`` and ``register(native, canonical)``
        (see :class:`hftsig.market.symbols.SymbolRules`).
    simulator : str or None
        ``"module:Class"`` of its loopback simulator, if it has one.
    taker_fee_bps : float or None
        Default taker fee in basis points (the arbitrage default fee table);
        ``None`` for a venue one cannot trade on.
    credentials : tuple of str
        Environment variables that may hold its API credentials.
    batched_kinds : mapping
        Kinds of record sent in timed batches or polled rather than as they
        happen: kind name -> seconds between batches (``None``: the
        connector's own polling interval).  Their latency is kept apart in
        the aggregator's statistics.
    order_book : bool
        Whether it quotes bids and asks (an order-book venue one can trade
        on) rather than reference prices only; arbitrage uses these.
    transports : tuple of str
        The endpoint keyword arguments its connector takes, among
        ``"ws_url"`` and ``"rest_url"`` (each defaults to the live exchange
        in the connector class; tests and ``--simulate`` point them at
        loopback, ``--ws-url``/``--rest-url`` elsewhere).
    example_symbols : tuple of str
        Canonical symbols the venue is known to list (doctor's checks).
    """

    name: str
    code: int
    display_name: str
    connector: _Ref = None
    normalizer: _Ref = None
    symbols: Any = None
    simulator: Optional[str] = None
    taker_fee_bps: Optional[float] = None
    credentials: tuple = ()
    batched_kinds: Mapping = field(default_factory=dict)
    order_book: bool = True
    transports: tuple = ("ws_url",)
    example_symbols: tuple = ()

    def __post_init__(self):
        if not isinstance(self.name, str):
            raise TypeError(f"Venue.name must be a str, got {type(self.name).__name__}")
        if not self.name or self.name != self.name.lower() or not self.name.isidentifier():
            raise ValueError(f"Venue.name must be a lower-case identifier, got {self.name!r}")
        if isinstance(self.code, bool) or not isinstance(self.code, int):
            raise TypeError(f"Venue.code must be an int, got {type(self.code).__name__}")
        if not 1 <= self.code <= 255:
            raise ValueError(f"Venue.code must be in 1..255 (one byte of the tick), got {self.code}")
        if not isinstance(self.display_name, str) or not self.display_name:
            raise TypeError(f"Venue.display_name must be a non-empty str, got {self.display_name!r}")
        _check_ref("connector", self.connector, True)
        _check_ref("normalizer", self.normalizer, True)
        if self.symbols is None:
            raise TypeError("Venue.symbols is required (the venue's symbol rules)")
        _check_ref("simulator", self.simulator, False)
        if self.taker_fee_bps is not None:
            fee = self.taker_fee_bps
            if isinstance(fee, bool) or not isinstance(fee, (int, float)) or not 0 <= fee < 10_000:
                raise ValueError(f"Venue.taker_fee_bps must be a number of bps in [0, 10000), "
                                 f"got {fee!r}")
            object.__setattr__(self, "taker_fee_bps", float(fee))
        for attr in ("credentials", "example_symbols"):
            value = getattr(self, attr)
            if isinstance(value, str) or not all(isinstance(v, str) for v in value):
                raise TypeError(f"Venue.{attr} must be a tuple of str, got {value!r}")
            object.__setattr__(self, attr, tuple(value))
        if not isinstance(self.batched_kinds, Mapping):
            raise TypeError(f"Venue.batched_kinds must be a mapping kind -> seconds, "
                            f"got {type(self.batched_kinds).__name__}")
        for kind, period in self.batched_kinds.items():
            if period is not None and not (isinstance(period, (int, float)) and period > 0):
                raise ValueError(f"Venue.batched_kinds[{kind!r}] must be seconds > 0 or None, "
                                 f"got {period!r}")
        object.__setattr__(self, "batched_kinds", MappingProxyType(dict(self.batched_kinds)))
        if isinstance(self.transports, str) or not self.transports or \
                not set(self.transports) <= {"ws_url", "rest_url"}:
            raise ValueError(f"Venue.transports must be some of ('ws_url', 'rest_url'), "
                             f"got {self.transports!r}")
        object.__setattr__(self, "transports", tuple(self.transports))
        if not isinstance(self.order_book, bool):
            raise TypeError(f"Venue.order_book must be a bool, got {type(self.order_book).__name__}")

    def __hash__(self):
        return hash((self.name, self.code))

    # -- the lazily resolved parts -------------------------------------
    def connector_class(self):
        """The connector class (imported on first use)."""
        return resolve(self.connector)

    def make_normalizer(self, **kwargs):
        """A new normalizer of this venue's messages (``kwargs``: ``chunk_size``...)."""
        return resolve(self.normalizer)(**kwargs)

    def symbol_rules(self):
        """The venue's symbol rules (see :class:`hftsig.market.symbols.SymbolRules`)."""
        return resolve(self.symbols)

    def simulator_class(self):
        """The simulator class, or ``None`` when the venue has none."""
        return None if self.simulator is None else resolve(self.simulator)


_lock = threading.RLock()
_by_name: dict = {}
_by_code: dict = {}


def register(venue):
    """Add ``venue`` to the registry (after those already there).

    Raises
    ------
    TypeError
        If ``venue`` is not a :class:`Venue`.
    ValueError
        If its name or code is taken (or reserved, :data:`RESERVED_CODES`).
    """
    if not isinstance(venue, Venue):
        raise TypeError(f"venue must be a Venue, got {type(venue).__name__}")
    with _lock:
        if venue.name in _by_name:
            raise ValueError(f"venue name {venue.name!r} is already registered")
        if venue.code in RESERVED_CODES:
            raise ValueError(f"venue code {venue.code} is reserved "
                             f"({RESERVED_CODES[venue.code]}); pick another in 1..255")
        if venue.code in _by_code:
            raise ValueError(f"venue code {venue.code} is already taken by "
                             f"{_by_code[venue.code].name!r}")
        _by_name[venue.name] = venue
        _by_code[venue.code] = venue
    return venue


def unregister(name):
    """Remove the venue called ``name`` and return it (``KeyError`` if unknown)."""
    with _lock:
        venue = get(name)
        del _by_name[venue.name]
        del _by_code[venue.code]
    return venue


@contextmanager
def registered(venue):
    """Register ``venue`` for the duration of a ``with`` block (tests, notebooks)."""
    register(venue)
    try:
        yield venue
    finally:
        with _lock:
            if _by_name.get(venue.name) is venue:
                unregister(venue.name)


class UnknownVenue(KeyError, ValueError):
    """A venue name or code the registry does not know.

    Both a ``KeyError`` (a lookup miss) and a ``ValueError`` (bad input
    from a user, as the command line reports it).
    """

    def __str__(self):
        return str(self.args[0]) if self.args else ""


def get(name):
    """The :class:`Venue` called ``name`` (case-insensitive).

    Raises
    ------
    KeyError
        (also a ``ValueError``) naming the known venues.
    """
    key = name.lower() if isinstance(name, str) else name
    try:
        return _by_name[key]
    except (KeyError, TypeError):
        raise UnknownVenue(f"unknown exchange {name!r}; known: {', '.join(_by_name)}") from None


def by_code(code):
    """The :class:`Venue` whose tick code is ``code`` (``KeyError``, also a ``ValueError``)."""
    try:
        return _by_code[int(code)]
    except (KeyError, TypeError, ValueError):
        raise UnknownVenue(f"no venue has code {code!r}; known: "
                           f"{', '.join(f'{c} {v.name}' for c, v in _by_code.items())}") from None


def all_venues():
    """Every registered venue, in registration order (a tuple)."""
    with _lock:
        return tuple(_by_name.values())


def names(*, order_book=None, simulator=None):
    """Names of the registered venues, in registration order.

    ``order_book=True`` keeps the order-book venues (``False`` the others);
    ``simulator=True`` those with a simulator.

    >>> names(order_book=False)
    ('coingecko',)
    """
    return tuple(v.name for v in all_venues()
                 if (order_book is None or v.order_book == order_book)
                 and (simulator is None or (v.simulator is not None) == simulator))


class VenueTable(Mapping):
    """A read-only, live ``{venue name: value}`` view of the registry.

    ``value(venue)`` gives each venue's entry; venues for which it returns
    ``None`` are left out.  ``key(venue)`` gives its key (default: the
    name).  ``extra`` adds fixed entries after the venues'.  It follows
    :func:`register`/:func:`unregister` as they happen.

    >>> fees = VenueTable(lambda v: v.taker_fee_bps)
    >>> dict(fees)
    {'binance': 10.0, 'kraken': 40.0, 'coinbase': 120.0}
    >>> dict(VenueTable(lambda v: v.name, key=lambda v: v.code))
    {1: 'binance', 2: 'kraken', 3: 'coinbase', 4: 'coingecko'}
    """

    def __init__(self, value, extra=None, *, key=None):
        self._value = value
        self._key = key
        self._extra = dict(extra or {})

    def _items(self):
        out = {}
        for v in all_venues():
            x = self._value(v)
            if x is not None:
                out[v.name if self._key is None else self._key(v)] = x
        for k, x in self._extra.items():
            out.setdefault(k, x)
        return out

    def __getitem__(self, key):
        return self._items()[key]

    def __iter__(self):
        return iter(self._items())

    def __len__(self):
        return len(self._items())

    def __repr__(self):
        return repr(self._items())


# -- the built-in venues ---------------------------------------------------
# Codes 1..4 are compiled into the Cython kernels (hftsig/_ext/tick.pxd,
# checked at import by check_tick_layout): they must not change.

register(Venue(
    "binance", 1, "Binance",
    connector="hftsig.connectors.binance:BinanceConnector",
    normalizer="hftsig.market.normalize:BinanceNormalizer",
    symbols="hftsig.market.symbols:BINANCE_SYMBOLS",
    simulator="hftsig.simulator.binance:BinanceServer",
    taker_fee_bps=10.0,
    credentials=("HFTSIG_BINANCE_API_KEY", "HFTSIG_BINANCE_API_SECRET"),
    transports=("ws_url", "rest_url"),
    example_symbols=("BTC-USDT", "ETH-USDT"),
))
register(Venue(
    "kraken", 2, "Kraken",
    connector="hftsig.connectors.kraken:KrakenConnector",
    normalizer="hftsig.market.normalize:KrakenNormalizer",
    symbols="hftsig.market.symbols:KRAKEN_SYMBOLS",
    simulator="hftsig.simulator.kraken:KrakenServer",
    taker_fee_bps=40.0,
    credentials=("HFTSIG_KRAKEN_API_KEY", "HFTSIG_KRAKEN_API_SECRET"),
    example_symbols=("BTC-USD", "ETH-USD"),
))
register(Venue(
    "coinbase", 3, "Coinbase",
    connector="hftsig.connectors.coinbase:CoinbaseConnector",
    normalizer="hftsig.market.normalize:CoinbaseNormalizer",
    symbols="hftsig.market.symbols:COINBASE_SYMBOLS",
    simulator="hftsig.simulator.coinbase:CoinbaseServer",
    taker_fee_bps=120.0,
    credentials=("HFTSIG_COINBASE_API_KEY", "HFTSIG_COINBASE_API_SECRET"),
    # market_trades sends the trades of each 250 ms in one message
    batched_kinds={"trade": 0.25},
    example_symbols=("BTC-USD", "ETH-USD"),
))
register(Venue(
    "coingecko", 4, "CoinGecko",
    connector="hftsig.connectors.coingecko:CoinGeckoConnector",
    normalizer="hftsig.market.normalize:CoinGeckoNormalizer",
    symbols="hftsig.market.symbols:COINGECKO_SYMBOLS",
    simulator="hftsig.simulator.coingecko:CoinGeckoServer",
    credentials=("HFTSIG_COINGECKO_API_KEY", "HFTSIG_COINGECKO_API_PLAN"),
    # prices are polled, every `interval` seconds of the connector
    batched_kinds={"price": None},
    order_book=False,
    transports=("rest_url",),
    example_symbols=("BTC-USD", "ETH-USD"),
))
