"""Tests of hftsig.arbitrage.live: the ``hftsig arb`` command and the demo plugin."""
import io
import re

import numpy as np

from hftsig.arbitrage.cycles import quotes_from_model


def test_run_arb_model_source_reports_injections_above_fees_only():
    from hftsig.arbitrage.live import run_arb

    out = io.StringIO()
    assert run_arb(3.0, source="model", inject_every=0.4, seed=3, stream=out) == 0
    text = out.getvalue()
    assert "# injected" in text
    m = re.search(r"injected mispricings: (\d+) above fees\+spreads, (\d+) detected; "
                  r"(\d+) below fees, (\d+) reported", text)
    assert m, text[-2000:]
    n_above, hit_above, n_below, hit_below = map(int, m.groups())
    assert n_above + n_below >= 3
    assert hit_above == n_above
    assert hit_below == 0


def test_cli_arb(capsys):
    from hftsig.app.cli import main

    assert main(["arb", "--seconds", "1", "--source", "model", "--inject-every", "0",
                 "--fees", "binance=10,kraken=20,coinbase=30"]) == 0
    out = capsys.readouterr().out
    assert "taker fees bps binance 10, kraken 20, coinbase 30" in out
    assert "arbitrage:" in out


def test_demo_plugin_through_a_real_aggregator():
    from hftsig.app.liveview import LiveView
    from hftsig.arbitrage.live import demo_plugin
    from hftsig.market.aggregator import Aggregator
    from hftsig.market.recorder import ReplayConnector
    from hftsig.simulator.market import MarketModel

    model = MarketModel(["BTC-USDT", "ETH-USDT", "ETH-BTC"], seed=2, rate=10)
    batches = []
    for step in range(12):
        if step == 4:
            model.inject_mispricing("kraken", "ETH-USDT", 120.0, duration_s=0.4)
        model.step()
        batches.append(quotes_from_model(model))
    ticks = np.concatenate(batches)
    agg = Aggregator([ReplayConnector(ticks)], clock="data")
    view = LiveView(agg, stream=io.StringIO())
    summary = demo_plugin(agg, view, sim=None)
    with agg:
        assert agg.wait_finished(10)
    frame = view.render()
    assert "ETH-USDT@kraken" in frame
    text = summary()
    assert "opportunity reports" in text


def test_book_feeds_through_aggregator_tops():
    """Venues sending only book records: the detector reads tops from the aggregator."""
    from hftsig.arbitrage.cycles import CycleArbitrage
    from hftsig.market.aggregator import Aggregator
    from hftsig.market.recorder import ReplayConnector
    from hftsig.market.ticks import (
        FLAG_LAST,
        FLAG_SNAPSHOT_BEGIN,
        KIND_BOOK_SNAPSHOT,
        empty_ticks,
        exchange_code,
    )

    msgs = []
    for i, (venue, bid, ask) in enumerate([("kraken", 101.0, 101.2), ("coinbase", 99.8, 100.0)]):
        t = empty_ticks(2)
        t["kind"] = KIND_BOOK_SNAPSHOT
        t["exchange"] = exchange_code(venue)
        t["symbol"] = b"BTC-USD"
        t["side"] = [1, -1]
        t["price"] = [bid, ask]
        t["size"] = [0.5, 0.3]
        t["flags"] = [FLAG_SNAPSHOT_BEGIN, FLAG_LAST]
        t["ts_event"] = t["ts_recv"] = 10**18 + i * 10**6
        msgs.append(t)
    agg = Aggregator([ReplayConnector(np.concatenate(msgs))], clock="data")
    det = CycleArbitrage(fees={"kraken": 26.0, "coinbase": 40.0}, tops=agg.top,
                              book_quotes=True)
    agg.on_tick(det.update)
    with agg:
        assert agg.wait_finished(10)
    ev = det.events_[-1]
    assert ev.kind == "spatial" and ev.venues == ("coinbase", "kraken")
    net = (101.0 / 100.0) * (1 - 26e-4) * (1 - 40e-4)
    assert abs(ev.net_edge_bps - (net - 1) * 1e4) < 1e-9


def test_run_arb_end_to_end_on_the_simulators():
    """Simulators on loopback -> connectors -> Aggregator -> detector, with injections."""
    from hftsig import connectors
    from hftsig.arbitrage.live import run_arb

    assert hasattr(connectors, "KrakenConnector")
    out = io.StringIO()
    assert run_arb(6.0, source="sim", inject_every=1.0, seed=5, stream=out) == 0
    text = out.getvalue()
    assert "(sim)" in text and "using the in-process" not in text
    m = re.search(r"arbitrage: ([\d,]+) ticks", text)
    assert m and int(m.group(1).replace(",", "")) > 1000
    m = re.search(r"injected mispricings: (\d+) above fees\+spreads, (\d+) detected; "
                  r"(\d+) below fees, (\d+) reported", text)
    assert m, text[-2000:]
    n_above, hit_above, n_below, hit_below = map(int, m.groups())
    assert n_above + n_below >= 3
    assert hit_above == n_above
    assert hit_below == 0


def test_stalled_venue_never_makes_an_opportunity_end_to_end():
    """Kraken stalls (connection open, no data): its quotes age out of every opportunity."""
    import time

    from hftsig.arbitrage.cycles import CycleArbitrage
    from hftsig.connectors import make_connectors
    from hftsig.market.aggregator import Aggregator
    from hftsig.simulator import SimulatedExchanges

    venues = ("binance", "kraken", "coinbase")
    symbols = ["BTC-USDT", "ETH-USDT", "ETH-BTC"]
    fees = {"binance": 1.0, "kraken": 1.0, "coinbase": 1.0}
    det = CycleArbitrage(fees=fees, max_quote_age_ms=300, max_events=10**6)
    with SimulatedExchanges(symbols=symbols, exchanges=venues, seed=4) as sim:
        agg = Aggregator(make_connectors(venues, symbols, {v: sim.connector_kwargs(v) for v in venues}),
                         drain_size=0)
        det.tops, det.book_quotes = agg.top, True
        agg.on_tick(det.update, kinds=("quote", "book_delta", "book_snapshot", "status"))
        with agg:
            # every venue quoting every symbol (a loaded machine takes longer), then settle
            deadline = time.monotonic() + 20.0
            while time.monotonic() < deadline and not all(
                    agg.top(v, s) is not None for v in venues for s in symbols):
                time.sleep(0.02)
            time.sleep(0.5)
            sim.inject_mispricing("kraken", "ETH-USDT", 40.0, duration_s=0.6)
            time.sleep(1.0)
            n_before = det.n_opportunities_
            stall = sim.inject("kraken", "stall", seconds=2.5, drop=True)
            stall_ns = time.time_ns()
            time.sleep(0.1)
            # kraken's quotes freeze at fair prices; a shift elsewhere pairs only with fresh venues
            sim.inject_mispricing("coinbase", "ETH-USDT", 40.0, duration_s=1.5)
            time.sleep(2.0)
    events = list(det.events_)
    assert n_before > 0 and any("kraken" in ev.venues for ev in events[:n_before])
    assert stall is not None
    late = [ev for ev in events[n_before:] if ev.ts > stall_ns + 400_000_000]
    assert late  # coinbase against binance still found
    for ev in events:
        assert max(ev.quote_ages_ms) <= 300
    for ev in late:
        assert "kraken" not in ev.venues


def test_one_second_mispricing_on_the_simulators_is_one_episode_per_cycle():
    """Simulators on loopback -> connectors -> Aggregator -> detector: a 1 s shift of one
    market is one episode for each cycle through it, closed once the shift is over."""
    import time

    from hftsig.arbitrage.cycles import CycleArbitrage
    from hftsig.connectors import make_connectors
    from hftsig.market.aggregator import Aggregator
    from hftsig.simulator import SimulatedExchanges

    venues = ("binance", "kraken", "coinbase")
    symbols = ["BTC-USDT", "ETH-USDT", "ETH-BTC"]
    det = CycleArbitrage(fees={"default": 5.0}, max_quote_age_ms=2000, report="all",
                              max_events=10**6)
    opened = []
    det.on_opportunity = opened.append
    with SimulatedExchanges(symbols=symbols, exchanges=venues, seed=4) as sim:
        agg = Aggregator(make_connectors(venues, symbols,
                                         {v: sim.connector_kwargs(v) for v in venues}),
                         drain_size=0)
        det.tops, det.book_quotes = agg.top, True
        agg.on_tick(det.update, kinds=("quote", "book_delta", "book_snapshot", "status"))
        with agg:
            deadline = time.monotonic() + 20.0  # a loaded machine takes longer to connect
            while time.monotonic() < deadline and not all(
                    agg.top(v, s) is not None for v in venues for s in symbols):
                time.sleep(0.02)
            time.sleep(0.5)
            rec = sim.inject_mispricing("kraken", "ETH-USDT", 150.0, duration_s=1.0)
            # until every feed has carried ticks stamped well after the shift ended
            deadline = time.monotonic() + 20.0
            while time.monotonic() < deadline and det.core_.last_ts < rec["end_ns"] + 1e9:
                time.sleep(0.05)
            time.sleep(0.5)
        det.close_episodes()
    t0, t1 = rec["start_ns"] - 500_000_000, rec["end_ns"] + 1_000_000_000
    eps = [ep for ep in det.episodes_
           if ("kraken", "ETH-USDT") in set(zip(ep.venues, ep.symbols))
           and ep.start_ts <= t1 and ep.end_ts >= t0]
    reports = [ev for ev in det.events_ if ev.episode_id in {ep.id for ep in eps}]
    keys = [(ep.cycle, ep.venues, ep.sides) for ep in eps]
    # the two spatial pairs at least, and many reports folded into few episodes
    assert sum(ep.kind == "spatial" for ep in eps) >= 2, keys
    assert len(set(keys)) == len(keys), keys  # exactly one episode per cycle
    assert len(reports) > 2 * len(eps)
    for ep in eps:
        assert ep.close_reason == "edge", ep  # the shift ended, not the run
        assert 0.5 <= ep.duration_s <= 2.5, ep
        assert ep.end_ts >= rec["start_ns"] + 500_000_000
        assert ep.peak_edge_bps >= ep.mean_edge_bps > 100.0, ep
        assert ep.notional > 0
    # on_opportunity heard each episode once, with its first report
    assert [ev.episode_id for ev in opened] == sorted({ev.episode_id for ev in opened})
    assert {ep.id for ep in eps} <= {ev.episode_id for ev in opened}
    assert det.open_episodes() == []


def test_cli_arb_uses_the_default_fee_table_and_prints_episodes(capsys):
    from hftsig.app.cli import main
    from hftsig.arbitrage.cycles import DEFAULT_TAKER_FEES_BPS

    assert main(["arb", "--seconds", "3", "--source", "model", "--inject-every", "0.4",
                 "--seed", "3"]) == 0
    out = capsys.readouterr().out
    venues = ("binance", "kraken", "coinbase")
    assert ("taker fees bps " + ", ".join(f"{v} {DEFAULT_TAKER_FEES_BPS[v]:g}" for v in venues)
            in out)
    m = re.search(r"([\d,]+) opportunity reports in ([\d,]+) episodes", out)
    assert m, out[-2000:]
    n_reports, n_episodes = (int(g.replace(",", "")) for g in m.groups())
    m = re.search(r"injected mispricings: (\d+) above fees\+spreads, (\d+) detected", out)
    assert m and int(m.group(1)) >= 1 and m.group(1) == m.group(2), out[-2000:]
    assert 0 < n_episodes < n_reports
    assert len(re.findall(r"episode \d+ \w+ .* opened", out)) == n_episodes
    assert len(re.findall(r"episode \d+ \w+ .* closed \(", out)) == n_episodes


def test_summary_leaves_out_injections_the_run_could_not_see():
    """A mispricing injected after the last tick the detector saw is not counted as missed."""
    import random

    from hftsig.arbitrage.cycles import CycleArbitrage
    from hftsig.arbitrage.live import ArbWatch, _fees_for
    from hftsig.simulator.market import MarketModel

    venues = ["binance", "kraken", "coinbase"]
    symbols = ["BTC-USDT", "ETH-USDT", "ETH-BTC"]
    model = MarketModel(symbols, venues, seed=2, rate=10)
    det = CycleArbitrage(max_quote_age_ms=2000)
    lines = []
    watch = ArbWatch(det, lines.append)
    rng = random.Random(1)
    fees = _fees_for(venues, None)

    def inject():
        rec = watch.inject(model, rng, venues, symbols, fees, model.spread_bps,
                           model.noise_bps, duration_s=0.3)
        rec["_t0"] = model.t0_ns + int(rec["start"] * 1e9)
        rec["_t1"] = rec["_end"] = model.t0_ns + int(rec["end"] * 1e9)
        return rec

    for step in range(20):
        if step == 5:
            inject()
        model.step()
        det.update(quotes_from_model(model))
    inject()  # the run stops here: no tick ever carried it
    det.close_episodes()
    text = "\n".join(watch.summary())
    m = re.search(r"injected mispricings: (\d+) above fees\+spreads, (\d+) detected; "
                  r"(\d+) below fees, (\d+) reported; 1 still under way at the end, not counted",
                  text)
    assert m, text
    n_above, hit_above, n_below, hit_below = map(int, m.groups())
    assert n_above + n_below == 1 and hit_above == n_above and hit_below == 0
