"""CoinGeckoConnector against the loopback CoinGecko simulator (real HTTP)."""
from __future__ import annotations

import time

import pytest
import requests

from connector_support import Collector, wait_for
from hftsig.connectors import CoinGeckoConnector
from hftsig.connectors.base import Backoff
from hftsig.market.ticks import KIND_PRICE, STATUS_STALE
from hftsig.simulator import SimulatedExchanges

SYMBOLS = ["BTC-USD", "ETH-USD", "ETH-BTC"]
KEY = "CG-simulatorDemoKey123"


def sim_for(plan="demo", **kw):
    return SimulatedExchanges(["BTC-USD", "ETH-USD"], exchanges=("coingecko",), seed=3,
                              api_key=KEY, key_type=plan, **kw)


def make(sim, out, plan="demo", **kw):
    kw.setdefault("backoff", Backoff(initial=0.02, maximum=0.05, seed=0))
    kw.setdefault("interval", 0.05)
    return CoinGeckoConnector(SYMBOLS, rest_url=sim.connector_kwargs("coingecko")["rest_url"],
                              api_key=KEY, plan=plan, on_tick=out, **kw)


def truth(sim, plan="demo"):
    header = {"demo": "x-cg-demo-api-key", "pro": "x-cg-pro-api-key"}[plan]
    r = requests.get(sim.connector_kwargs("coingecko")["rest_url"] + "/simple/price",
                     params={"ids": "bitcoin,ethereum", "vs_currencies": "usd,btc",
                             "include_last_updated_at": "true"},
                     headers={header: KEY}, timeout=2)
    r.raise_for_status()
    return r.json()


@pytest.mark.parametrize("plan", ["demo", "pro"])
def test_prices_with_plan_header(plan):
    out = Collector()
    with sim_for(plan, coingecko_refresh_s=60.0) as sim:  # prices fixed for the test
        c = make(sim, out, plan=plan)
        c.start()
        try:
            assert wait_for(lambda: len(out.data(KIND_PRICE)) == len(SYMBOLS)
                            and c.stats()["messages"] >= 4)
            assert c.stats()["connected"] is True
        finally:
            assert c.stop() is True
        body = truth(sim, plan)
    st = c.stats()
    assert st["http_errors"] == 0
    t = out.data(KIND_PRICE)
    # polled several times, each unchanged observation emitted once
    assert sorted(t["symbol"].tolist()) == sorted(s.encode() for s in SYMBOLS)
    last = {bytes(r["symbol"]): r for r in t}
    assert last[b"BTC-USD"]["price"] == body["bitcoin"]["usd"]
    assert last[b"ETH-USD"]["price"] == body["ethereum"]["usd"]
    assert last[b"ETH-BTC"]["price"] == body["ethereum"]["btc"]
    assert last[b"BTC-USD"]["ts_event"] == body["bitcoin"]["last_updated_at"] * 1_000_000_000


def test_each_refresh_emitted_once():
    out = Collector()
    with sim_for(coingecko_refresh_s=0.15) as sim:
        c = make(sim, out, interval=0.04)
        c.start()
        try:
            assert wait_for(lambda: len(out.data(KIND_PRICE)) >= 4 * len(SYMBOLS))
        finally:
            assert c.stop() is True
    t = out.data(KIND_PRICE)
    for s in SYMBOLS:
        mine = t[t["symbol"] == s.encode()]
        obs = list(zip(mine["ts_event"].tolist(), mine["price"].tolist()))
        assert len(obs) >= 2 and len(set(obs)) == len(obs)
        assert (mine["ts_event"][1:] >= mine["ts_event"][:-1]).all()


def test_wrong_plan_for_host_is_an_error_not_a_retry_storm():
    with sim_for("pro") as sim:
        c = make(sim, None, plan="demo", interval=0.05)
        c.start()
        try:
            assert wait_for(lambda: c.stats()["http_errors"] >= 2)
        finally:
            assert c.stop() is True
        st = c.stats()
    assert st["ticks"] == 0
    assert st["http_retries"] == 0  # 401 is not retried within a poll


@pytest.mark.parametrize("fault,key", [("http_429", "http_429"), ("http_500", "http_5xx")])
def test_429_without_retry_after_and_5xx_back_off(fault, key):
    out = Collector()
    with sim_for(coingecko_refresh_s=0.2) as sim:
        sim.inject("coingecko", fault, count=3)
        c = make(sim, out)
        c.start()
        try:
            assert wait_for(lambda: len(out.data(KIND_PRICE)) >= len(SYMBOLS))
        finally:
            assert c.stop() is True
        rest = sim.rest_stats("coingecko")
    st = c.stats()
    assert st[key] == 3
    assert st["http_retries"] == 3
    # every request we counted reached the server, except one stop() may have cut
    assert 0 <= st["http_requests"] - sum(rest["requests"].values()) <= 1


def test_malformed_body_counted_then_recovers():
    out = Collector()
    with sim_for(coingecko_refresh_s=0.2) as sim:
        sim.inject("coingecko", "http_malformed", count=2)
        c = make(sim, out)
        c.start()
        try:
            assert wait_for(lambda: len(out.data(KIND_PRICE)) >= len(SYMBOLS))
        finally:
            assert c.stop() is True
    assert c.stats()["malformed"] == 2


def test_stale_prices_flagged_once_per_symbol():
    out = Collector()
    with sim_for(coingecko_refresh_s=60.0) as sim:
        c = make(sim, out, stale_after=0.5)
        c.start()
        try:
            assert wait_for(lambda: c.stats().get("stale_prices", 0) == len(SYMBOLS))
            n = c.stats()["messages"]
            assert wait_for(lambda: c.stats()["messages"] >= n + 3)
        finally:
            assert c.stop() is True
    assert c.stats()["stale_prices"] == len(SYMBOLS)  # flagged once, not per poll
    for s in SYMBOLS:
        assert out.statuses(s) == [STATUS_STALE]
    assert len(out.data(KIND_PRICE)) == len(SYMBOLS)  # the unchanged price is emitted once


def test_stalled_responses_do_not_block_stop():
    with sim_for() as sim:
        c = make(sim, None, timeout=5.0)
        c.start()
        assert wait_for(lambda: c.stats()["messages"] >= 1)
        n = sum(sim.rest_stats("coingecko")["requests"].values())
        sim.inject("coingecko", "stall", seconds=3.0)
        # a request is now hanging on the stalled server
        assert wait_for(lambda: sum(sim.rest_stats("coingecko")["requests"].values()) > n)
        t0 = time.monotonic()
        assert c.stop() is True
        assert time.monotonic() - t0 < 1.0


def test_arguments_are_validated(monkeypatch):
    with pytest.raises(ValueError, match="plan"):
        CoinGeckoConnector(["BTC-USD"], plan="gold")
    with pytest.raises(ValueError, match="coingecko"):
        CoinGeckoConnector(["ZZZ-USD"])
    monkeypatch.setenv("HFTSIG_COINGECKO_API_KEY", KEY)
    monkeypatch.setenv("HFTSIG_COINGECKO_API_PLAN", "pro")
    c = CoinGeckoConnector(["BTC-USD"])
    assert c.plan == "pro" and c.rest_url == "https://pro-api.coingecko.com/api/v3"
    assert KEY not in repr(c) and KEY not in repr(c.rest)
