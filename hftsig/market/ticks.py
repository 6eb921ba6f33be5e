"""The one tick record type shared by every exchange.

A batch of ticks is a numpy structured array of :data:`TICK_DTYPE`; one
element of it is a tick.  Every field is fixed-width so that batches can be
filled from Cython, queued, concatenated and written to Parquet without any
per-tick Python objects.

.. rubric:: Fields

ts_event : int64
    Exchange event time, nanoseconds since the Unix epoch (the receive time
    when the exchange sends none, e.g. Binance ``bookTicker``).
ts_recv : int64
    Local receive time, nanoseconds since the Unix epoch.
exchange : uint8
    One of the ``EXCHANGE_*`` codes (see :data:`EXCHANGES`).
kind : uint8
    One of the ``KIND_*`` codes (see :data:`KINDS`).
side : int8
    Quotes: 0.  Trades: the *aggressor's* (taker's) side on every venue,
    ``+1`` buy, ``-1`` sell, 0 unknown (Binance ``m`` and Coinbase
    ``market_trades`` ``side`` name the maker and are flipped; Kraken's
    ``side`` is the taker's).
    Book records: ``+1`` bid, ``-1`` ask.  Status records: a ``STATUS_*`` code.
flags : uint8
    Bit set of ``FLAG_*``: ``FLAG_LAST`` marks the last record produced from
    one exchange message, per symbol: a message covering several symbols
    ends each symbol's run of records with it (a Kraken book message of two
    pairs: two, each with its checksum); the other records of the message
    have it clear (a book message becomes several records, a trade message
    several trades; consumers that check books apply a whole message before
    looking).
symbol : S16
    Canonical ``BASE-QUOTE`` symbol, ASCII upper case (``b"BTC-USDT"``): bytes
    in the array, for speed; ``tick.symbol`` of a :class:`Tick` and
    :func:`symbols` of a batch give ``str``.
bid_px, bid_sz, ask_px, ask_sz : float64
    Top of book for ``KIND_QUOTE`` records; NaN otherwise.
price, size : float64
    Trade price/size, book level price/new absolute size (0 removes the
    level), reference price for ``KIND_PRICE`` (size NaN); NaN for quotes.
    Every price and size read from an exchange is finite and >= 0 (the
    normalizer rejects the message otherwise); a field a kind does not use
    is NaN.
seq : int64
    Exchange sequence number of the message (Binance final update id ``u``,
    Coinbase ``sequence_num``, trade id for trades); -1 when there is none.
seq_first : int64
    First sequence number covered by the message (Binance ``U``); equal to
    ``seq`` where the exchange has a single number, -1 when none.
checksum : uint32
    Exchange book checksum carried by the message (Kraken CRC32), on the
    ``FLAG_LAST`` record of a book message; 0 otherwise.

Examples
--------
>>> import numpy as np
>>> from hftsig.market.ticks import empty_ticks, KIND_TRADE
>>> t = empty_ticks(2)
>>> t.dtype.itemsize
104
>>> bool(np.isnan(t["price"]).all())
True
>>> t["symbol"] = b"BTC-USDT"
>>> symbols(t).tolist()
['BTC-USDT', 'BTC-USDT']
>>> tick = as_records(t)[0]
>>> tick.symbol, tick.exchange_name, tick["symbol"]
('BTC-USDT', 'unknown(0)', np.bytes_(b'BTC-USDT'))
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hftsig import venues

if TYPE_CHECKING:
    from collections.abc import Sequence

    import pandas as pd

__all__ = [
    "TICK_DTYPE",
    "EXCHANGES",
    "KINDS",
    "empty_ticks",
    "concat_ticks",
    "to_pandas",
    "exchange_code",
    "exchange_name",
    "kind_code",
    "kind_name",
    "Tick",
    "TICK_RECORD_DTYPE",
    "as_records",
    "symbols",
]

# the built-in venues' codes, from the registry (the Cython kernels compare
# them with theirs at import: hftsig/_ext/tick.pxd check_tick_layout)
EXCHANGE_BINANCE = venues.get("binance").code
EXCHANGE_KRAKEN = venues.get("kraken").code
EXCHANGE_COINBASE = venues.get("coinbase").code
EXCHANGE_COINGECKO = venues.get("coingecko").code
#: the in-process market model's pseudo-exchange (a code the registry reserves)
EXCHANGE_SIMULATED = 5
#: exchange code -> name: every registered venue, live, then ``"simulated"``
EXCHANGES = venues.VenueTable(
    lambda v: v.name, {EXCHANGE_SIMULATED: venues.RESERVED_CODES[EXCHANGE_SIMULATED]},
    key=lambda v: v.code)

KIND_QUOTE = 1  # top of book (best bid/ask with sizes)
KIND_TRADE = 2
KIND_BOOK_DELTA = 3  # one changed level, absolute new size
KIND_BOOK_SNAPSHOT = 4  # one level of a full snapshot
KIND_PRICE = 5  # reference price without a book (CoinGecko)
KIND_STATUS = 6  # connection event: side holds a STATUS_* code

#: kind code -> name
KINDS = {
    KIND_QUOTE: "quote",
    KIND_TRADE: "trade",
    KIND_BOOK_DELTA: "book_delta",
    KIND_BOOK_SNAPSHOT: "book_snapshot",
    KIND_PRICE: "price",
    KIND_STATUS: "status",
}
_KIND_CODES = {v: k for k, v in KINDS.items()}

SIDE_BUY = SIDE_BID = 1
SIDE_SELL = SIDE_ASK = -1

STATUS_CONNECTED = 1
STATUS_DISCONNECTED = 2
STATUS_RESYNC = 3  # a gap or checksum failure; the book was reset
STATUS_STALE = 4  # the watchdog saw no message for too long
STATUS_CROSSED = 5  # the symbol's book now has best bid >= best ask (crossed or locked)
STATUS_UNCROSSED = 6  # the symbol's book, crossed before, is no longer

#: status code -> name
STATUSES = {
    STATUS_CONNECTED: "connected",
    STATUS_DISCONNECTED: "disconnected",
    STATUS_RESYNC: "resync",
    STATUS_STALE: "stale",
    STATUS_CROSSED: "crossed",
    STATUS_UNCROSSED: "uncrossed",
}

FLAG_LAST = 1  # last record made from one exchange message (per symbol)
FLAG_SNAPSHOT_BEGIN = 2  # first record of a book snapshot: clear the side(s) first

TICK_DTYPE = np.dtype(
    [
        ("ts_event", "<i8"),
        ("ts_recv", "<i8"),
        ("exchange", "u1"),
        ("kind", "u1"),
        ("side", "i1"),
        ("flags", "u1"),
        ("checksum", "<u4"),
        ("symbol", "S16"),
        ("bid_px", "<f8"),
        ("bid_sz", "<f8"),
        ("ask_px", "<f8"),
        ("ask_sz", "<f8"),
        ("price", "<f8"),
        ("size", "<f8"),
        ("seq", "<i8"),
        ("seq_first", "<i8"),
    ]
)


class Tick(np.record):
    """One tick record, as :meth:`hftsig.market.aggregator.Aggregator.ticks` yields them.

    A structured record of :data:`TICK_DTYPE` (``tick["price"]``,
    ``tick.price``) whose ``symbol`` attribute is a ``str`` (decoded when read;
    ``tick["symbol"]`` stays the field's bytes), with ``exchange_name`` and
    ``kind_name`` beside the ``exchange`` and ``kind`` codes.
    """

    __slots__ = ()

    @property
    def symbol(self) -> str:
        """The canonical symbol as ``str`` (``"BTC-USDT"``)."""
        return self["symbol"].decode("ascii", "replace")

    @property
    def exchange_name(self) -> str:
        """The exchange's name (``"binance"``...)."""
        return exchange_name(self["exchange"])

    @property
    def kind_name(self) -> str:
        """The kind's name (``"quote"``, ``"trade"``...)."""
        return kind_name(self["kind"])


#: :data:`TICK_DTYPE` whose elements are :class:`Tick` records (equal to
#: TICK_DTYPE: the same layout, read through ``Tick``)
TICK_RECORD_DTYPE = np.dtype((Tick, TICK_DTYPE))


def as_records(ticks: np.ndarray) -> np.ndarray:
    """A view of a tick batch whose elements are :class:`Tick` (no copy)."""
    ticks = np.asarray(ticks)
    if ticks.dtype != TICK_DTYPE:
        raise TypeError(f"ticks must have TICK_DTYPE, got {ticks.dtype}")
    return ticks.view(TICK_RECORD_DTYPE)


def symbols(ticks: np.ndarray) -> np.ndarray:
    """The ``symbol`` field of a tick batch as ``str`` (a numpy ``<U16`` array).

    The batch keeps its bytes field (fixed width, what the C passes and
    Parquet read); this decodes a copy, when a reader wants text.
    """
    ticks = np.asarray(ticks)
    if ticks.dtype != TICK_DTYPE:
        raise TypeError(f"ticks must have TICK_DTYPE, got {ticks.dtype}")
    return ticks["symbol"].astype("U16")


def empty_ticks(n: int) -> np.ndarray:
    """Return ``n`` blank ticks: NaN prices, ``-1`` sequences, zeros elsewhere."""
    n = int(n)
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    out = np.zeros(n, dtype=TICK_DTYPE)
    for f in ("bid_px", "bid_sz", "ask_px", "ask_sz", "price", "size"):
        out[f] = np.nan
    out["seq"] = -1
    out["seq_first"] = -1
    return out


def exchange_code(name: str) -> int:
    """Exchange name (``"binance"``...) -> code; ``ValueError`` for unknown names."""
    key = str(name).lower()
    if key == "simulated":
        return EXCHANGE_SIMULATED
    try:
        return venues.get(key).code
    except KeyError:
        raise ValueError(
            f"exchange must be one of {sorted(venues.names() + ('simulated',))}, got {name!r}"
        ) from None


def exchange_name(code: int) -> str:
    """Exchange code -> name."""
    code = int(code)
    if code == EXCHANGE_SIMULATED:
        return "simulated"
    try:
        return venues.by_code(code).name
    except KeyError:
        return f"unknown({code})"


def kind_code(name: str) -> int:
    """Kind name (``"quote"``...) -> code; ``ValueError`` for unknown names."""
    try:
        return _KIND_CODES[str(name).lower()]
    except KeyError:
        raise ValueError(f"kind must be one of {sorted(_KIND_CODES)}, got {name!r}") from None


def kind_name(code: int) -> str:
    """Kind code -> name."""
    return KINDS.get(int(code), f"unknown({int(code)})")


def to_pandas(ticks: np.ndarray) -> pd.DataFrame:
    """Turn a tick batch into a DataFrame with readable columns.

    Timestamps become ``datetime64[ns, UTC]``, exchange and kind become
    categorical names, the symbol a ``str``.

    >>> df = to_pandas(empty_ticks(1))
    >>> list(df.columns[:4])
    ['ts_event', 'ts_recv', 'exchange', 'kind']
    """
    import pandas as pd

    ticks = np.asarray(ticks)
    if ticks.dtype != TICK_DTYPE:
        raise TypeError(f"ticks must have TICK_DTYPE, got {ticks.dtype}")
    ticks = ticks.reshape(-1)
    df = pd.DataFrame(
        {
            "ts_event": pd.to_datetime(ticks["ts_event"], unit="ns", utc=True),
            "ts_recv": pd.to_datetime(ticks["ts_recv"], unit="ns", utc=True),
            "exchange": pd.Categorical([exchange_name(c) for c in ticks["exchange"]]),
            "kind": pd.Categorical([kind_name(c) for c in ticks["kind"]]),
            "symbol": [s.decode("ascii", "replace") for s in ticks["symbol"]],
        }
    )
    for f in ("side", "flags", "bid_px", "bid_sz", "ask_px", "ask_sz", "price", "size", "seq",
              "seq_first", "checksum"):
        df[f] = ticks[f]
    return df


def concat_ticks(arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Concatenate TICK_DTYPE arrays, fast; the result may be read-only (copy to write).

    ``np.concatenate`` promotes structured dtypes field by field for every input
    (tens of microseconds per array in numpy 2); joining the raw bytes does
    not.
    """
    if len(arrays) == 1:
        return arrays[0]
    return np.frombuffer(b"".join([a.tobytes() for a in arrays]), dtype=TICK_DTYPE)
