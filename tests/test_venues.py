"""The exchange registry (hftsig.venues), and a toy venue registered at run time end to end.

The toy venue "toyx" is what docs/adding_an_exchange.md walks through: its
symbol rules, normalizer and connector are written here as a new venue's
modules would be, registered with one ``Venue`` entry, and its messages go
from a real websocket server on loopback through ``make_connectors`` and the
connector machinery, the normalizer and the aggregator (quotes, book, NBBO,
stats).  The registration is undone at the end of each test.
"""
import ast
import contextlib
import json
import pathlib
import threading

import numpy as np
import pytest
import requests
from websockets.sync.server import serve

from connector_support import book_side, wait_for
from hftsig import venues
from hftsig.connectors import make_connectors
from hftsig.connectors.base import MalformedFrame
from hftsig.connectors.websocket import WebSocketConnector
from hftsig.market.aggregator import Aggregator
from hftsig.market.normalize import normalize
from hftsig.market.symbols import SymbolRules, from_canonical, to_canonical
from hftsig.market.ticks import (
    EXCHANGES,
    FLAG_LAST,
    FLAG_SNAPSHOT_BEGIN,
    KIND_BOOK_DELTA,
    KIND_BOOK_SNAPSHOT,
    KIND_QUOTE,
    KIND_TRADE,
    SIDE_BUY,
    SIDE_SELL,
    as_records,
    empty_ticks,
    exchange_code,
    exchange_name,
)
from hftsig.simulator import SimulatedExchanges
from hftsig.simulator.coingecko import CoinGeckoServer

# every connector thread the toy venue starts is gone when its test ends
pytestmark = pytest.mark.usefixtures("no_thread_leaks")

BUILT_IN = ("binance", "kraken", "coinbase", "coingecko")
REPO = pathlib.Path(__file__).resolve().parents[1]


# -- the toy venue's modules --------------------------------------------------------------------
# Toy X spells symbols "TOY_USD" and sends JSON messages:
#   {"t": "q", "s": "TOY_USD", "b": 1.5, "B": 2, "a": 1.6, "A": 3, "ts": <ns>}   quote
#   {"t": "x", "s": "TOY_USD", "p": 1.55, "q": 0.5, "side": "buy", "ts": <ns>}   trade
#   {"t": "book", "s": "TOY_USD", "snapshot": true, "bids": [[p, q]...], "asks": [...], "ts": ...}
#   {"t": "hb"}                                                                 heartbeat

class ToyXSymbols(SymbolRules):
    """``TOY_USD`` <-> ``TOY-USD``."""

    def _rule_to(self, symbol):
        base, quote = symbol.split("_")
        return f"{base}-{quote}"

    def _rule_from(self, base, quote):
        return f"{base}_{quote}"


TOYX_SYMBOLS = ToyXSymbols("toyx")


class ToyXNormalizer:
    """Toy X messages -> ticks; ``last_type`` says what the last message was."""

    def __init__(self, chunk_size=None):
        self.last_type = None
        self._code = venues.get("toyx").code

    def parse(self, message, ts_recv=None, symbol=None):
        try:
            msg = json.loads(message)
            kind = msg["t"]
        except (ValueError, KeyError, TypeError) as exc:
            raise ValueError(f"malformed toyx message: {exc!r}") from None
        self.last_type = kind
        if kind == "hb":
            return empty_ticks(0)
        canon = to_canonical("toyx", msg["s"]).encode()
        if kind == "q":
            t = empty_ticks(1)
            t["kind"] = KIND_QUOTE
            t["bid_px"], t["bid_sz"], t["ask_px"], t["ask_sz"] = msg["b"], msg["B"], msg["a"], msg["A"]
        elif kind == "x":
            t = empty_ticks(1)
            t["kind"] = KIND_TRADE
            t["price"], t["size"] = msg["p"], msg["q"]
            t["side"] = SIDE_BUY if msg["side"] == "buy" else SIDE_SELL
        elif kind == "book":
            levels = [(SIDE_BUY, p, q) for p, q in msg["bids"]] + \
                     [(SIDE_SELL, p, q) for p, q in msg["asks"]]
            t = empty_ticks(len(levels))
            t["kind"] = KIND_BOOK_SNAPSHOT if msg.get("snapshot") else KIND_BOOK_DELTA
            for i, (side, p, q) in enumerate(levels):
                t[i]["side"], t[i]["price"], t[i]["size"] = side, p, q
            if msg.get("snapshot"):
                t[0]["flags"] |= FLAG_SNAPSHOT_BEGIN
            t[-1]["flags"] |= FLAG_LAST
        else:
            self.last_type = "unknown"
            return empty_ticks(0)
        t["exchange"] = self._code
        t["symbol"] = canon
        t["ts_event"] = msg["ts"]
        t["ts_recv"] = msg["ts"] if ts_recv is None else ts_recv
        return t


class ToyXConnector(WebSocketConnector):
    """Toy X over the shared websocket machinery: subscribe, then emit what parses."""

    exchange = "toyx"
    valid_channels = ("quotes",)
    default_channels = ("quotes",)
    default_ws_url = "wss://toyx.invalid/ws"

    def __init__(self, symbols, **kwargs):
        super().__init__(symbols, **kwargs)
        self._normalizer = venues.get("toyx").make_normalizer()

    def _subscribe_messages(self):
        return [json.dumps({"op": "subscribe",
                            "symbols": [from_canonical("toyx", s) for s in self.symbols]})]

    def _on_message(self, raw, ts_recv):
        try:
            ticks = self._normalizer.parse(raw, ts_recv)
        except (ValueError, KeyError, TypeError) as exc:
            raise MalformedFrame(str(exc)) from None
        self._count_type(self._normalizer.last_type)
        if len(ticks):
            self._note_latency(ticks)
            self._emit(ticks)


def toyx_venue(**overrides):
    """The toy venue's one registry entry (references by "module:attr", as a real one)."""
    fields = dict(
        connector=f"{__name__}:ToyXConnector",
        normalizer=f"{__name__}:ToyXNormalizer",
        symbols=f"{__name__}:TOYX_SYMBOLS",
        taker_fee_bps=15.0,
        batched_kinds={"trade": 0.5},
        credentials=("HFTSIG_TOYX_API_KEY",),
        example_symbols=("TOY-USD",),
    )
    fields.update(overrides)
    return venues.Venue("toyx", 200, "Toy X", **fields)


@contextlib.contextmanager
def toyx_server(frames):
    """A real websocket server on loopback: after a subscribe, it sends ``frames`` and idles."""
    subscribed = []
    done = threading.Event()

    def handler(ws):
        msg = json.loads(ws.recv())
        subscribed.append(msg)
        for f in frames:
            ws.send(f)
        done.wait(30)

    server = serve(handler, "127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}", subscribed
    finally:
        done.set()
        server.shutdown()
        thread.join(5)


TS = 1_700_000_000_000_000_000
FRAMES = [
    json.dumps({"t": "hb"}),
    json.dumps({"t": "book", "s": "TOY_USD", "snapshot": True, "ts": TS,
                "bids": [[1.5, 2.0], [1.4, 5.0]], "asks": [[1.6, 3.0], [1.7, 1.0]]}),
    json.dumps({"t": "book", "s": "TOY_USD", "ts": TS + 1, "bids": [[1.4, 0.0]], "asks": []}),
    json.dumps({"t": "q", "s": "TOY_USD", "b": 1.5, "B": 2.0, "a": 1.6, "A": 3.0, "ts": TS + 2}),
    "{not json",
    json.dumps({"t": "x", "s": "TOY_USD", "p": 1.6, "q": 0.5, "side": "buy", "ts": TS + 3}),
]


# -- the toy venue end to end -------------------------------------------------------------------
def test_toy_venue_registered_at_run_time_goes_through_normalize_and_aggregator():
    with venues.registered(toyx_venue()) as toy:
        # every derived list sees it
        assert venues.names()[-1] == "toyx" and venues.by_code(200) is toy
        assert exchange_code("toyx") == 200 and exchange_name(200) == "toyx"
        assert EXCHANGES[200] == "toyx"
        from hftsig.arbitrage.cycles import DEFAULT_TAKER_FEES_BPS
        from hftsig.connectors.credentials import load_credentials

        assert DEFAULT_TAKER_FEES_BPS["toyx"] == 15.0
        assert load_credentials("toyx", {"HFTSIG_TOYX_API_KEY": "toyx-secret-1"}).api_key.reveal() \
            == "toyx-secret-1"
        # symbol rules
        assert to_canonical("toyx", "TOY_USD") == "TOY-USD"
        assert from_canonical("toyx", "toy-usd") == "TOY_USD"
        # normalize() finds the venue's normalizer in the registry
        t = normalize("toyx", FRAMES[3], ts_recv=TS + 10)
        assert t[0]["exchange"] == 200 and float(t[0]["ask_px"]) == 1.6
        assert t.view(np.recarray).symbol.tolist() == [b"TOY-USD"]

        with toyx_server(FRAMES) as (url, subscribed):
            conns = make_connectors(["toyx"], ["TOY-USD"], {"toyx": {"ws_url": url, "rest_url": None}})
            assert type(conns[0]) is ToyXConnector and conns[0].ws_url == url
            agg = Aggregator(conns)
            agg.start()
            try:
                assert wait_for(lambda: agg.stats()["toyx"]["ticks"] >= 8 and
                                agg.top("toyx", "TOY-USD") is not None)
                agg.flush(10)
                stats = agg.stats()["toyx"]
                top = agg.top("toyx", "TOY-USD")
                book = agg.book("toyx", "TOY-USD")
                nbbo = agg.nbbo("TOY-USD", max_age=1e12)
                trades = [r for r in agg.drain() if r["kind"] == KIND_TRADE]
            finally:
                agg.stop()
        assert subscribed == [{"op": "subscribe", "symbols": ["TOY_USD"]}]
        assert (top.exchange, top.bid_px, top.ask_px) == ("toyx", 1.5, 1.6)
        assert book_side(book, 1) == [(1.5, 2.0)] and book_side(book, -1) == [(1.6, 3.0), (1.7, 1.0)]
        assert (nbbo.bid_venue, nbbo.bid_px, nbbo.ask_venue, nbbo.ask_px) == ("toyx", 1.5, "toyx", 1.6)
        assert len(trades) == 1 and trades[0]["side"] == SIDE_BUY
        assert as_records(np.asarray(trades))[0].exchange_name == "toyx"
        # 4 snapshot levels, 1 delta, 1 quote, 1 trade, and the connected status
        assert stats["exchange"] == "toyx" and stats["ticks"] == 8
        assert stats["batched_kinds"] == {"trade": 0.5}  # from the registry entry
        assert stats["connector"]["malformed"] == 1  # the bad frame counted, the rest flowed
    # the registration is undone
    assert venues.names() == BUILT_IN
    with pytest.raises(ValueError, match="toyx"):
        exchange_code("toyx")
    with pytest.raises(ValueError, match="unknown exchange 'toyx'"):
        make_connectors(["toyx"], ["TOY-USD"])
    assert exchange_name(200) == "unknown(200)"


def test_the_toy_venue_connector_keeps_the_connector_protocol():
    from hftsig.market.connector_protocol import Connector
    with venues.registered(toyx_venue()):
        assert isinstance(ToyXConnector(["TOY-USD"]), Connector)


class ToyPriceServer(CoinGeckoServer):
    """A REST-only toy venue's simulator: CoinGecko's price API under another name."""

    name = "toyp"
    REST_PATH = "/toy/v1"
    FAULTS = ("http_500", "stall")


def test_simulated_exchanges_start_a_venue_registered_at_run_time():
    toy = venues.Venue("toyp", 201, "Toy P", connector="hftsig.connectors.coingecko:CoinGeckoConnector",
                       normalizer="hftsig.market.normalize:CoinGeckoNormalizer",
                       symbols="hftsig.market.symbols:COINGECKO_SYMBOLS",
                       simulator=f"{__name__}:ToyPriceServer", transports=("rest_url",),
                       order_book=False)
    with venues.registered(toy):
        with SimulatedExchanges(["BTC-USDT"], exchanges=("toyp", "kraken"), seed=3) as sim:
            urls = sim.urls()
            assert urls["toyp"]["ws_url"] is None
            assert urls["toyp"]["rest_url"].endswith("/toy/v1")
            assert urls["kraken"]["ws_url"].endswith("/v2") and urls["kraken"]["rest_url"] is None
            body = requests.get(urls["toyp"]["rest_url"] + "/simple/price",
                                params={"ids": "bitcoin", "vs_currencies": "usd"}, timeout=5)
            assert body.status_code == 200 and body.json()["bitcoin"]["usd"] > 0
            sim.inject("toyp", "http_500")
            assert requests.get(urls["toyp"]["rest_url"] + "/ping", timeout=5).status_code == 500
            with pytest.raises(ValueError, match="fault 'gap' not supported for toyp"):
                sim.inject("toyp", "gap")
    # gone from the registry, gone from the simulators
    with pytest.raises(ValueError, match="exchanges: unknown exchange 'toyp'"):
        SimulatedExchanges(["BTC-USDT"], exchanges=("toyp",))


def test_toy_venue_in_the_command_line_checks():
    from hftsig.app import cli

    with pytest.raises(ValueError, match="unknown exchange 'toyx'"):
        cli.check_exchanges(["toyx"], venues.names())
    argv = ["run", "--exchanges", "toyx", "--ws-url", "toyx=ws://127.0.0.1:9/ws"]
    with pytest.raises(ValueError, match="--ws-url: expected EXCHANGE=URL with EXCHANGE one of "
                                         "binance,kraken,coinbase,coingecko"):
        cli._url_overrides(cli.build_parser().parse_args(argv))
    with venues.registered(toyx_venue()):
        cli.check_exchanges(["toyx"], venues.names())
        args = cli.build_parser().parse_args(argv)
        assert args.exchanges == ["toyx"]
        assert cli._url_overrides(args)["toyx"] == {"ws_url": "ws://127.0.0.1:9/ws"}


def test_the_bus_accepts_a_venue_registered_after_import():
    from hftsig.distributed import bus

    t = empty_ticks(1)
    t["exchange"], t["kind"], t["symbol"] = 200, KIND_QUOTE, b"TOY-USD"
    entry = {b"v": bus._V, b"k": bus._KIND_TICKS, b"d": t.tobytes()}
    assert bus._decode(entry) is None  # code 200 is foreign
    with venues.registered(toyx_venue()):
        kind, ticks = bus._decode(entry)
        assert kind == bus._KIND_TICKS and ticks["exchange"].tolist() == [200]
    assert bus._decode(entry) is None


# -- the registry API ---------------------------------------------------------------------------
def test_built_in_venues_keep_their_codes_and_order():
    assert venues.names() == BUILT_IN
    assert [v.code for v in venues.all_venues()] == [1, 2, 3, 4]
    assert [venues.by_code(c).name for c in (1, 2, 3, 4)] == list(BUILT_IN)
    assert venues.names(order_book=True) == ("binance", "kraken", "coinbase")
    assert venues.names(order_book=False) == ("coingecko",)
    assert venues.get("CoinBase").display_name == "Coinbase"


def test_built_in_venues_resolve_their_parts():
    from hftsig.connectors import BinanceConnector, CoinGeckoConnector
    from hftsig.simulator.kraken import KrakenServer

    assert venues.get("binance").connector_class() is BinanceConnector
    assert venues.get("coingecko").connector_class() is CoinGeckoConnector
    assert venues.get("kraken").simulator_class() is KrakenServer
    n = venues.get("kraken").make_normalizer()
    assert len(n.parse('{"channel":"heartbeat"}', 0)) == 0 and n.last_type == "heartbeat"
    assert venues.get("binance").symbol_rules().to_canonical("ETHBTC") == "ETH-BTC"


def test_register_refuses_taken_or_reserved_names_and_codes():
    with pytest.raises(ValueError, match="name 'kraken' is already registered"):
        venues.register(venues.Venue("kraken", 201, "K2", connector="a:b", normalizer="a:b",
                                     symbols="a:b"))
    with pytest.raises(ValueError, match="code 2 is already taken by 'kraken'"):
        venues.register(venues.Venue("toyx", 2, "Toy X", connector="a:b", normalizer="a:b",
                                     symbols="a:b"))
    with pytest.raises(ValueError, match="code 5 is reserved"):
        venues.register(venues.Venue("toyx", 5, "Toy X", connector="a:b", normalizer="a:b",
                                     symbols="a:b"))
    with pytest.raises(TypeError, match="venue must be a Venue, got dict"):
        venues.register({"name": "toyx"})
    assert venues.names() == BUILT_IN


@pytest.mark.parametrize("field, value, error, match", [
    ("code", 0, ValueError, "Venue.code must be in 1..255"),
    ("code", 256, ValueError, "Venue.code must be in 1..255"),
    ("code", True, TypeError, "Venue.code must be an int"),
    ("code", "200", TypeError, "Venue.code must be an int"),
    ("name", "Toy X", ValueError, "Venue.name must be a lower-case identifier"),
    ("name", 7, TypeError, "Venue.name must be a str"),
    ("connector", "no_colon", ValueError, "Venue.connector must look like 'package.module:attribute'"),
    ("normalizer", 3, TypeError, "Venue.normalizer must be a 'module:attribute' string or a callable"),
    ("connector", None, TypeError, "Venue.connector is required"),
    ("symbols", None, TypeError, "Venue.symbols is required"),
    ("taker_fee_bps", -1.0, ValueError, "Venue.taker_fee_bps must be a number of bps"),
    ("credentials", "HFTSIG_TOYX_API_KEY", TypeError, "Venue.credentials must be a tuple of str"),
    ("batched_kinds", {"trade": 0}, ValueError, r"Venue.batched_kinds\['trade'\] must be seconds"),
    ("transports", ("ftp_url",), ValueError, "Venue.transports must be some of"),
    ("order_book", "yes", TypeError, "Venue.order_book must be a bool"),
])
def test_venue_validates_each_field_by_name(field, value, error, match):
    fields = dict(name="toyx", code=200, display_name="Toy X", connector="a:b",
                  normalizer="a:b", symbols="a:b")
    fields[field] = value
    with pytest.raises(error, match=match):
        venues.Venue(**fields)


def test_get_and_by_code_name_the_known_venues():
    with pytest.raises(KeyError, match="unknown exchange 'toyx'; known: binance, kraken, coinbase, coingecko"):
        venues.get("toyx")
    with pytest.raises(ValueError, match="unknown exchange"):  # the command line catches ValueError
        venues.get("toyx")
    with pytest.raises(KeyError, match="no venue has code 200"):
        venues.by_code(200)


def test_unregister_and_registered_undo_the_registration():
    toy = venues.register(toyx_venue())
    try:
        assert venues.names()[-1] == "toyx"
    finally:
        assert venues.unregister("toyx") is toy
    assert venues.names() == BUILT_IN
    with pytest.raises(RuntimeError, match="boom"):
        with venues.registered(toyx_venue()):
            raise RuntimeError("boom")
    assert venues.names() == BUILT_IN
    with pytest.raises(KeyError):
        venues.unregister("toyx")


def test_venue_table_is_a_live_view():
    table = venues.VenueTable(lambda v: v.taker_fee_bps)
    assert "toyx" not in table and "coingecko" not in table  # no fee: left out
    with venues.registered(toyx_venue()):
        assert table["toyx"] == 15.0 and list(table)[-1] == "toyx"
    assert "toyx" not in table


# -- no list of venues outside the registry -----------------------------------------------------
# Per-venue modules and the registry itself may name venues; anywhere else a tuple,
# list or set literal naming two or more venues is a second list that a new venue
# would have to be added to.
_ALLOWED = {
    "hftsig/venues.py",
    *(f"hftsig/{pkg}/{name}.py" for pkg in ("connectors", "simulator") for name in BUILT_IN),
}


def _venue_lists(path):
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            named = {e.value for e in node.elts if isinstance(e, ast.Constant) and e.value in BUILT_IN}
            if len(named) >= 2:
                yield node.lineno, sorted(named)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            # "binance,kraken,coinbase": a list in a string (a command-line default)
            parts = set(node.value.split(","))
            if len(parts & set(BUILT_IN)) >= 2 and parts <= set(BUILT_IN):
                yield node.lineno, sorted(parts)


def test_no_hard_coded_venue_list_outside_the_registry():
    found = []
    for path in sorted((REPO / "hftsig").rglob("*.py")):
        rel = path.relative_to(REPO).as_posix()
        if rel in _ALLOWED:
            continue
        found += [f"{rel}:{line}: {names}" for line, names in _venue_lists(path)]
    assert not found, "venue lists to derive from hftsig.venues:\n" + "\n".join(found)


def test_the_venue_list_scan_finds_a_list(tmp_path):
    p = tmp_path / "m.py"
    p.write_text('X = ("binance", "kraken")\nY = ["coinbase"]\nZ = "binance,coingecko"\n')
    assert list(_venue_lists(p)) == [(1, ["binance", "kraken"]), (3, ["binance", "coingecko"])]
