"""Exchange messages -> :data:`~hftsig.market.ticks.TICK_DTYPE` records.

One websocket frame or REST body in, a (possibly empty) batch of ticks out,
with no connection at all: live connectors, recorded data and the tests go
through the same code.  The work is done by a Cython scanner over the raw
bytes (``hftsig/_ext/json_scan.pxd``, inlined into one module per venue,
``hftsig/_ext/_normalize_<venue>.pyx``): one pass validates the JSON and picks
the fields each message type needs by key (nested containers are parsed in
place when the exchange sends the type keys first, as they do; any key order
is still understood), numbers are parsed from their decimal text straight
to float64, equal to ``float(text)``, and records are written into a
preallocated chunk.  Python's ``json`` is only used for the rare Kraken
``instrument`` message.

.. rubric:: Supported messages

binance
    ``bookTicker`` -> one ``KIND_QUOTE`` (``ts_event`` = receive time, the
    stream has no event time; ``seq`` = ``u``); ``trade``/``aggTrade`` -> one
    ``KIND_TRADE`` (``ts_event`` = ``T``; ``m: true`` means the buyer was the
    maker so ``side`` = -1, taker sold; ``seq`` = trade id / aggregate id);
    ``depthUpdate`` -> one ``KIND_BOOK_DELTA`` per level (``seq_first`` = ``U``,
    ``seq`` = ``u``); a depth snapshot (REST ``/api/v3/depth`` body or a
    ``@depthN`` partial-book stream) -> ``KIND_BOOK_SNAPSHOT`` records;
    combined-stream wrappers ``{"stream": .., "data": ..}`` are unwrapped;
    ``serverShutdown`` -> ``last_type == "shutdown"``; ``{"result": null,
    "id": ..}`` -> ``"subscribed"``; ``{"code": .., "msg": ..}`` -> ``"error"``.
    Millisecond times, or microseconds (``timeUnit=MICROSECOND``; detected by
    magnitude with ``time_unit="auto"``).
kraken (WebSocket v2)
    ``book`` snapshot/update -> ``KIND_BOOK_SNAPSHOT``/``KIND_BOOK_DELTA``
    per level, the message's ``checksum`` on the last record of each symbol;
    ``ticker`` -> ``KIND_QUOTE``; ``trade`` -> ``KIND_TRADE`` (``side`` is the
    taker's, ``seq`` = ``trade_id``); ``heartbeat``, ``status``, ``pong``,
    subscribe/unsubscribe acknowledgements (``success`` false -> ``"error"``);
    ``instrument`` fills :attr:`Normalizer.precisions` with
    ``{symbol: (price_precision, qty_precision)}`` for the book checksum
    (a pair without a canonical name, such as ``ETH2.S/ETH``, or with
    precisions that are not integers in 0..18 is skipped and counted in
    ``Normalizer.last_skipped`` / ``Normalizer.skipped``; the others are
    taken).  Prices may be JSON numbers or strings.
coinbase (Advanced Trade)
    ``l2_data`` snapshot/update (``side`` ``bid``/``offer``) -> book records,
    ``seq`` = ``sequence_num``; ``ticker`` -> ``KIND_QUOTE`` (``ticker_batch``
    has no best bid/ask and makes no tick); ``market_trades`` ->
    ``KIND_TRADE`` (the venue's ``side`` is the *maker's*, as on Coinbase
    Exchange's ``match`` channel -- recorded sessions print ``SELL`` at the
    ask -- so ``BUY`` gives ``side`` = -1 and ``SELL`` +1, the aggressor's);
    ``heartbeats``, ``subscriptions``, ``status``, ``{"type": "error"}``.
    ``last_seq`` is the envelope's ``sequence_num`` for every message.
coingecko
    ``/simple/price`` body -> one ``KIND_PRICE`` per (coin, vs-currency)
    (``bitcoin``/``usd`` -> ``BTC-USD``) in body order, ``ts_event`` =
    ``last_updated_at`` (receive time without it); a price that is not a
    number (``null`` included) is malformed; keys with an underscore
    (``usd_24h_vol``...) are not prices; coin ids without a ticker mapping
    are skipped (see
    :func:`hftsig.market.symbols.register`); ``{"status": {"error_code": ..}}`` ->
    ``"error"``.

Every record of a message gets ``ts_recv``; the last record of each run of
one symbol's records in a message has ``FLAG_LAST`` (one message of one
symbol: its last record only -- 50 trades of a ``market_trades`` snapshot
carry one; a Kraken book entry ends with it and its checksum); the first
record of a book snapshot has ``FLAG_SNAPSHOT_BEGIN`` (clear the book, then
apply).  A trade's ``side`` is the aggressor's (taker's) on every venue.

.. rubric:: Contract

A frame gives records or raises :class:`MalformedMessage` (a
``ValueError``), nothing else; a rejected frame emits nothing and changes no
state (``precisions`` included).  No value read from a frame is NaN,
infinite or negative (fields a record's kind does not use, and the optional
sizes of a ticker that leaves them out, stay NaN; see :mod:`hftsig.market.ticks`).  ``parse(None)`` is a ``TypeError`` and a
``ts_recv`` outside 0..2**63-1 a ``ValueError``, both naming the argument.

Malformed input: not JSON, truncated, a known message type missing a
required field (a ``bookTicker`` without ``u`` or ``A`` too) or with a
non-numeric price, an unmappable symbol, a key the parser reads given twice
in one object (``{"e": "depthUpdate", ..., "e": "trade"}``: which one the
venue meant is unknowable), an event time whose nanoseconds do not fit
int64 (Binance ``"T": 9300000000000``, CoinGecko ``last_updated_at``
past 2262).  Valid JSON of an unknown shape gives ``last_type ==
"unknown"`` and no ticks.

Numbers, JSON numbers and quoted ones (Binance's ``"0.01"``) alike, follow
JSON's grammar (RFC 8259), ``-?(0|[1-9][0-9]*)(\\.[0-9]+)?([eE][+-]?[0-9]+)?``:
``"01.5"``, ``".5"``, ``"1."``, ``"+1"``, ``" 1"``, ``"NaN"`` and ``"inf"``
are malformed, and so is any minus sign on a price or size.  Values are
correctly rounded to float64 (equal to ``float(text)``, 20+ digit mantissas
included).  String fields the parser reads (symbols, event types, sides,
keys, numbers and times in strings) may use JSON escapes:
``"NKN\\u0055SDT"`` is ``NKNUSDT``.

Examples
--------
>>> from hftsig.market.normalize import normalize, Normalizer
>>> frame = b'{"u":400900217,"s":"BNBUSDT","b":"25.35190000","B":"31.21000000","a":"25.36520000","A":"40.66000000"}'
>>> t = normalize("binance", frame, ts_recv=1_700_000_000_000_000_000)
>>> t["symbol"][0], float(t["bid_px"][0]), float(t["ask_sz"][0]), int(t["seq"][0])
(np.bytes_(b'BNB-USDT'), 25.3519, 40.66, 400900217)
>>> n = Normalizer("kraken")
>>> len(n.parse('{"channel":"heartbeat"}', 0)), n.last_type
(0, 'heartbeat')
>>> type(n).__name__, isinstance(n, Normalizer), n is not Normalizer("kraken")
('KrakenNormalizer', True, True)
"""
from __future__ import annotations

import abc
import threading
from typing import TYPE_CHECKING

from hftsig import venues
from hftsig._ext._normalize_binance import BinanceNormalizer
from hftsig._ext._normalize_coinbase import CoinbaseNormalizer
from hftsig._ext._normalize_coingecko import CoinGeckoNormalizer
from hftsig._ext._normalize_kraken import KrakenNormalizer
from hftsig._ext._normalizer_base import NormalizerBase
from hftsig._ext.json_scan import MalformedMessage

if TYPE_CHECKING:
    import numpy as np

__all__ = ["normalize", "Normalizer", "MalformedMessage", "EXCHANGES", "NORMALIZERS",
           "BinanceNormalizer", "KrakenNormalizer", "CoinbaseNormalizer",
           "CoinGeckoNormalizer"]

#: exchange name -> its normalizer class
NORMALIZERS = {
    "binance": BinanceNormalizer,
    "kraken": KrakenNormalizer,
    "coinbase": CoinbaseNormalizer,
    "coingecko": CoinGeckoNormalizer,
}

#: exchanges registered at import (:func:`hftsig.venues.names` is live; each
#: venue's normalizer is its :attr:`~hftsig.venues.Venue.normalizer`)
EXCHANGES = venues.names()

_TIME_UNITS = ("auto", "ms", "us")


class Normalizer(abc.ABC):  # noqa: B024 (an ABC for register(): the Cython classes join it)
    """Parser of one exchange's messages into tick records.

    ``Normalizer(exchange)`` makes the exchange's own class
    (:data:`NORMALIZERS`: :class:`BinanceNormalizer`,
    :class:`KrakenNormalizer`, :class:`CoinbaseNormalizer`,
    :class:`CoinGeckoNormalizer`), and every one of them is a
    ``Normalizer`` (``isinstance`` and ``issubclass`` hold: this class is
    their abstract base, with the Cython classes registered).  See the
    module docstring for the messages understood.

    Parameters
    ----------
    exchange : {"binance", "kraken", "coinbase", "coingecko"}
        Case-insensitive.
    symbols : dict, optional
        Extra ``{exchange symbol: canonical}`` pairs (e.g. from
        :func:`hftsig.market.symbols.parse_binance_exchange_info`), looked up before
        the default tables.
    time_unit : {"auto", "ms", "us"}
        Binance timestamp unit; ``"auto"`` takes values >= 1e14 as µs.
        Checked for every exchange, used by Binance only.
    chunk_size : int
        Records per preallocated output chunk.

    Attributes
    ----------
    exchange : str
        The exchange's name.
    last_type, last_channel, last_seq, last_seq_first, last_checksum, last_symbol, last_error
        The last message (also one that raised): its kind (``"data"``,
        ``"heartbeat"``, ``"subscribed"``, ``"unsubscribed"``, ``"status"``,
        ``"error"``, ``"shutdown"`` or ``"unknown"``), channel, sequence
        numbers (-1 if none), Kraken book checksum, canonical symbol (its
        last one) and error text (None if none).
    last_skipped, skipped : int
        Entries of the last accepted message left out (Kraken
        ``instrument`` pairs without a canonical name or with bad
        precisions), and their total since construction.
    precisions : dict
        ``{symbol: (price_precision, qty_precision)}`` from Kraken
        ``instrument`` messages (an empty dict for other exchanges).

    Raises
    ------
    ValueError
        An unknown ``exchange`` or ``time_unit``, or ``chunk_size`` < 1.

    Notes
    -----
    ``parse(message, ts_recv=None, symbol=None)`` returns a view into the
    current chunk; chunks are never reused, so a batch stays valid while
    referenced (keeping one tick alive keeps its whole chunk, ``chunk_size *
    104`` bytes, alive; ``.copy()`` what you store for long).  A Normalizer
    keeps per-connection state and is not thread-safe: use one per
    connection.

    Examples
    --------
    >>> n = Normalizer("coinbase")
    >>> msg = ('{"channel":"l2_data","timestamp":"2023-02-09T20:32:50.714964855Z",'
    ...        '"sequence_num":7,"events":[{"type":"update","product_id":"BTC-USD",'
    ...        '"updates":[{"side":"offer","event_time":"2023-02-09T20:32:50.714964855Z",'
    ...        '"price_level":"21921.74","new_quantity":"0"}]}]}')
    >>> t = n.parse(msg, ts_recv=0)
    >>> int(t["side"][0]), float(t["price"][0]), float(t["size"][0]), n.last_seq
    (-1, 21921.74, 0.0, 7)
    >>> type(n) is CoinbaseNormalizer
    True
    """

    def __new__(cls, exchange, *, symbols=None, time_unit="auto", chunk_size=4096):
        name = str(exchange).lower()
        venue = NORMALIZERS.get(name)
        if venue is None:
            raise ValueError(f"exchange must be one of {sorted(NORMALIZERS)}, got {exchange!r}")
        if time_unit not in _TIME_UNITS:
            raise ValueError(f"time_unit must be 'auto', 'ms' or 'us', got {time_unit!r}")
        if venue is BinanceNormalizer:
            return venue(symbols=symbols, time_unit=time_unit, chunk_size=chunk_size)
        return venue(symbols=symbols, chunk_size=chunk_size)

    # the entry point every venue class inherits, documented here once
    parse = NormalizerBase.parse


# every venue class is a NormalizerBase: registering the base makes each a Normalizer
Normalizer.register(NormalizerBase)


def normalize(exchange: str, message: str | bytes, ts_recv: int | None = None,
              symbol: str | None = None) -> np.ndarray:
    """Ticks of one message without keeping a :class:`Normalizer`.

    See :class:`Normalizer` and the module docstring.  For a stream of
    messages create one :class:`Normalizer` and call ``parse``: it keeps
    per-connection state (Kraken precisions...).  The batch is a view of a
    small shared chunk of :data:`_CHUNK` records that is never written again
    (so keeping one result keeps at most that chunk alive, about 27 kB).
    """
    cache = _LOCAL.__dict__
    n = cache.get(exchange) if type(exchange) is str else None
    if n is None:
        key = str(exchange).lower()
        n = cache.get(key)
        if n is None:
            n = cache[key] = venues.get(key).make_normalizer(chunk_size=_CHUNK)
        if type(exchange) is str:
            cache[exchange] = n
    return n.parse(message, ts_recv, symbol)


# one Normalizer per thread and exchange: a Normalizer is not thread-safe.
# Results are views, not copies (copying a structured record costs ~4 us,
# ten times the parse), of chunks small enough that a kept result pins little.
_LOCAL = threading.local()
_CHUNK = 256
