"""The Connector protocol (hftsig.market.connector_protocol): who keeps it, what the
aggregator does with an object that does not.

The suite's toy connectors are checked next to their definitions
(tests/connectors/test_connection.py, test_ws_frames.py) and the bus connector
against a real redis-server (tests/distributed/test_bus.py).
"""
import subprocess
import sys

import pytest

import hftsig
from hftsig.market.aggregator import Aggregator
from hftsig.market.connector_protocol import CONNECTOR_MEMBERS, Connector, missing_members
from hftsig.market.recorder import ReplayConnector
from hftsig.market.ticks import FLAG_LAST, KIND_QUOTE, empty_ticks, exchange_code


class _Complete:
    """Every member of the contract, nothing else."""

    exchange = "simulated"
    symbols = ("BTC-USDT",)
    on_tick = None

    def start(self):
        return self

    def stop(self, timeout=1.0):
        return True

    def stats(self):
        return {"messages": 0, "ticks": 0, "connected": False}


def _without(name):
    """An instance of a class like _Complete lacking ``name``."""
    attrs = {k: v for k, v in vars(_Complete).items() if not k.startswith("__")}
    del attrs[name]
    return type(f"No_{name}", (), attrs)()


def _quotes(n=4):
    t = empty_ticks(n)
    t["kind"] = KIND_QUOTE
    t["flags"] = FLAG_LAST
    t["exchange"] = [exchange_code("binance"), exchange_code("kraken")] * (n // 2)
    t["symbol"] = b"BTC-USDT"
    t["bid_px"], t["ask_px"], t["bid_sz"], t["ask_sz"] = 99.0, 101.0, 1.0, 1.0
    return t


def test_the_members_are_the_protocols():
    assert isinstance(_Complete(), Connector)
    assert missing_members(_Complete()) == ()
    for name in CONNECTOR_MEMBERS:
        assert not isinstance(_without(name), Connector), name
        assert missing_members(_without(name)) == (name,)
    assert missing_members(object()) == CONNECTOR_MEMBERS


def test_a_method_that_is_not_callable_is_missing():
    c = _Complete()
    c.stats = {"messages": 0}
    assert missing_members(c) == ("stats",)


def test_every_venue_connector_keeps_the_contract():
    # constructing opens no connection: the classes are checked, not the network
    from hftsig.connectors import (
        BinanceConnector,
        CoinbaseConnector,
        CoinGeckoConnector,
        KrakenConnector,
    )
    for cls, symbol in ((BinanceConnector, "BTC-USDT"), (KrakenConnector, "BTC-USD"),
                        (CoinbaseConnector, "BTC-USD"), (CoinGeckoConnector, "BTC-USD")):
        conn = cls([symbol])
        assert isinstance(conn, Connector), cls
        assert missing_members(conn) == (), cls


def test_replay_connectors_keep_the_contract():
    replay = ReplayConnector(_quotes())
    assert isinstance(replay, Connector)
    parts = ReplayConnector(_quotes()).by_venue()
    assert [p.exchange for p in parts] == ["binance", "kraken"]
    assert all(isinstance(p, Connector) for p in parts)


def test_hftsig_connectors_reexports_the_protocol():
    from hftsig import connectors
    assert connectors.Connector is Connector
    assert "Connector" in connectors.__all__


@pytest.mark.parametrize("name", CONNECTOR_MEMBERS)
def test_aggregator_names_the_missing_member(name):
    with pytest.raises(TypeError, match=f"^connectors: .* lacks '{name}'; it does not keep the "
                                        "connector contract"):
        Aggregator([ReplayConnector(_quotes()), _without(name)])


def test_aggregator_runs_a_connector_that_only_keeps_the_contract():
    class Once(_Complete):
        def start(self):
            self.on_tick(_quotes(2))
            return self

    with Aggregator([Once()], clock="data") as agg:
        assert agg.flush(10)
        assert agg.stats()["simulated"]["ticks"] == 2


def test_market_data_does_not_import_the_connectors():
    # the protocol sits below the connectors: the aggregator needs no connector code
    code = ("import sys, hftsig.market.aggregator, hftsig.market.recorder\n"
            "bad = sorted(m for m in sys.modules if m.startswith('hftsig.connectors'))\n"
            "assert not bad, bad\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=str(hftsig.__path__[0] + "/.."), timeout=120)
    assert proc.returncode == 0, proc.stderr
