"""The lab's main job (``make demo`` / ``hftsig demo``).

Simulated Binance, Kraken, Coinbase and CoinGecko feeds on loopback → the four
connectors → one :class:`~hftsig.market.aggregator.Aggregator` → the live terminal view,
for a set time or until Ctrl-C, then a summary (ticks, rates, latency, gaps and
reconnects per feed).

Other parts plug into the demo through :data:`PLUGINS`: each plugin is a
callable ``plugin(agg, view)`` called after the aggregator is built and before
it starts (one with a ``sim`` parameter also gets the simulators, one with
``until`` the ``time.monotonic()`` at which the run is to end); it registers its own ``agg.on_tick`` callbacks and reports through
``view.add_signal(text)``.  It may return a callable giving extra summary lines
at the end.
"""
from __future__ import annotations

import sys
import time

from hftsig.interrupts import terminate_as_interrupt

__all__ = ["run_demo", "PLUGINS", "DEMO_SYMBOLS"]

#: symbols the demo simulates on every venue (a triangle plus a second quote)
DEMO_SYMBOLS = ("BTC-USDT", "ETH-USDT", "ETH-BTC", "SOL-USDT")

#: demo plugins: callables ``plugin(agg, view)``; see the module docstring
PLUGINS = []


def _default_plugins():
    """Plugins every demo runs: arbitrage signals (with injected mispricings)."""
    from hftsig.arbitrage.live import demo_plugin

    return [demo_plugin]


def _call_plugin(plugin, agg, view, sim, until):
    # a plugin declaring a ``sim`` parameter also gets the simulators (to inject
    # events), one declaring ``until`` the time.monotonic() at which the run ends
    import inspect

    try:
        params = inspect.signature(plugin).parameters
    except (TypeError, ValueError):
        params = {}
    extra = {k: v for k, v in (("sim", sim), ("until", until)) if k in params}
    return plugin(agg, view, **extra)


def run_demo(seconds=20, *, symbols=DEMO_SYMBOLS, seed=0, stream=None, plugins=None,
             refresh=0.5):
    """Run the demo for ``seconds`` (or until Ctrl-C) and print a summary.

    Returns the process exit code: 0 when every feed delivered ticks or the
    user stopped the demo (Ctrl-C: the summary of what arrived so far), 1 when a
    feed stayed silent for the whole run (the summary says which), 2 when the
    parts it needs are missing.
    """
    from hftsig.app.liveview import LiveView, ignore_interrupts, render_summary
    from hftsig.market.aggregator import Aggregator

    seconds = float(seconds)
    if not seconds > 0:
        raise ValueError(f"seconds must be > 0, got {seconds}")
    out = sys.stdout if stream is None else stream
    try:
        from hftsig.connectors import make_connectors
        from hftsig.simulator import SimulatedExchanges
    except ImportError as exc:
        print(f"hftsig demo: cannot run, a part is missing: {exc}", file=out)
        return 2
    plugins = _default_plugins() + PLUGINS if plugins is None else plugins
    # `docker stop` (SIGTERM) ends the demo as Ctrl-C does: feeds stopped, summary printed
    with terminate_as_interrupt(), SimulatedExchanges(symbols=list(symbols), seed=seed) as sim:
        exchanges = sim.exchanges  # every registered venue with a simulator
        conns = make_connectors(exchanges, symbols,
                                {ex: sim.connector_kwargs(ex) for ex in exchanges},
                                {"coingecko": {"interval": 1.0}})
        agg = Aggregator(conns, drain_size=0)
        view = LiveView(agg, stream=out, interval=refresh, symbols=list(symbols),
                        title="hftsig demo (simulated feeds)")
        until = time.monotonic() + seconds
        extra = [_call_plugin(p, agg, view, sim, until) for p in plugins]
        t0 = time.monotonic()
        agg.start()
        finished = False
        try:
            finished = view.run(seconds)
        finally:
            with ignore_interrupts():
                agg.stop()
                elapsed = time.monotonic() - t0
                sim.stop()
    with ignore_interrupts():
        print(("" if finished else "interrupted\n") + render_summary(agg, elapsed), file=out)
        for e in extra:
            if callable(e):
                print(e(), file=out)
    silent = [name for name, s in agg.stats().items() if s["ticks"] == 0]
    if silent and finished:
        print(f"no ticks from: {', '.join(silent)}", file=out)
        return 1
    if silent:  # stopped by the user, maybe before a slow feed (CoinGecko polls) spoke
        print(f"no ticks yet from: {', '.join(silent)} (interrupted after {elapsed:.1f} s)",
              file=out)
    return 0
