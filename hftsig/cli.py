"""The ``hftsig`` command line."""
from __future__ import annotations

import argparse
import os
import sys
import time

from hftsig.interrupts import SignalNap, terminate_as_interrupt

EXCHANGES = ("binance", "kraken", "coinbase", "coingecko")
DEFAULT_SYMBOLS = ("BTC-USDT", "ETH-USDT", "ETH-BTC")
_CONNECTOR_CLASSES = {
    "binance": "BinanceConnector",
    "kraken": "KrakenConnector",
    "coinbase": "CoinbaseConnector",
    "coingecko": "CoinGeckoConnector",
}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="hftsig",
        description="hftsig: high-frequency crypto market lab (connectors, aggregator, "
        "arbitrage, path signatures, optimal stopping).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    demo = sub.add_parser("demo", help="run the lab's main job and print a summary",
                          description="Simulated Binance, Kraken, Coinbase and CoinGecko feeds "
                          "-> aggregator -> live view, then a summary.")
    demo.add_argument("--seconds", type=float, default=20.0, help="how long to run (default 20)")
    demo.set_defaults(func=_cmd_demo)
    _add_simulate(sub)
    _add_run_parser(sub)
    _add_record_parser(sub)
    _add_replay_parser(sub)
    _add_notebook_parser(sub)
    _add_arb_parser(sub)
    _add_doctor_parser(sub)
    return parser


def _cmd_demo(args):
    from hftsig.demo import run_demo

    return run_demo(seconds=args.seconds)


def _add_simulate(sub):
    sim = sub.add_parser(
        "simulate",
        help="run the loopback exchange simulators (Binance, Kraken, Coinbase, CoinGecko)",
        description="Start the exchange simulators on 127.0.0.1, print their URLs and "
        "message rates; runs until Ctrl-C or --seconds.",
    )
    sim.add_argument("--seconds", type=float, default=None, help="stop after this long (default: until Ctrl-C)")
    sim.add_argument("--symbols", default=None, help="comma-separated BASE-QUOTE symbols (default: built-in set)")
    sim.add_argument("--exchanges", default="binance,kraken,coinbase,coingecko", help="comma-separated exchanges")
    sim.add_argument("--seed", type=int, default=0, help="market model seed (default 0)")
    sim.add_argument("--rate", type=float, default=20.0, help="book updates per second per symbol (default 20)")
    sim.add_argument("--depth", type=int, default=20, help="book levels per side (default 20)")
    sim.add_argument("--size-churn", type=float, default=0.05,
                     help="share of levels resized per update, 0..1 (default 0.05; 1 = heaviest stream)")
    sim.add_argument("--stagger", type=int, default=1,
                     help="release each model step's updates in this many slices over the step "
                          "interval instead of one burst (default 1)")
    sim.add_argument("--interval", type=float, default=1.0, help="seconds between rate reports (default 1)")
    sim.set_defaults(func=_cmd_simulate)


def _cmd_simulate(args):
    from hftsig.simulator.cli import run_simulate

    return run_simulate(args)


# -- run / record / replay ------------------------------------------------------------------
def _csv(text):
    return [x.strip() for x in text.split(",") if x.strip()]


def _env_list(name, default):
    value = os.environ.get(name)
    return _csv(value) if value else list(default)


def _add_source_args(p):
    g = p.add_argument_group("market data source")
    g.add_argument("--exchanges", type=_csv, default=_env_list("HFTSIG_EXCHANGES", EXCHANGES),
                   help="comma-separated exchanges (default: $HFTSIG_EXCHANGES or "
                   f"{','.join(EXCHANGES)})")
    g.add_argument("--symbols", type=_csv,
                   default=_env_list("HFTSIG_SYMBOLS", DEFAULT_SYMBOLS),
                   help="comma-separated canonical symbols BASE-QUOTE (default: "
                   f"$HFTSIG_SYMBOLS or {','.join(DEFAULT_SYMBOLS)})")
    g.add_argument("--simulate", action="store_true",
                   default=os.environ.get("HFTSIG_SIMULATE", "") not in ("", "0"),
                   help="start the embedded loopback simulators and connect to them "
                   "instead of the live exchanges (default: $HFTSIG_SIMULATE)")
    g.add_argument("--seed", type=int, default=0, help="simulator seed (with --simulate)")
    g.add_argument("--ws-url", action="append", default=[], metavar="EXCHANGE=URL",
                   help="websocket endpoint of one exchange (repeatable; also "
                   "$HFTSIG_<EXCHANGE>_WS_URL), e.g. binance=ws://simulator:9001")
    g.add_argument("--rest-url", action="append", default=[], metavar="EXCHANGE=URL",
                   help="REST endpoint of one exchange (repeatable; also "
                   "$HFTSIG_<EXCHANGE>_REST_URL)")
    g.add_argument("--coingecko-interval", type=float, default=None,
                   help="seconds between CoinGecko polls (default: the connector's, 15; "
                   "1 with --simulate)")
    g.add_argument("--seconds", type=float, default=None,
                   help="stop after this many seconds (default: run until Ctrl-C)")
    a = p.add_argument_group("aggregator")
    a.add_argument("--queue-size", type=int, default=100_000, help="input queue size in ticks")
    a.add_argument("--overflow", choices=("block", "drop_oldest"), default="block",
                   help="what a full queue does (default block)")
    a.add_argument("--dispatch", choices=("worker", "connector"), default="worker",
                   help="who runs state updates and consumers: the aggregator's worker thread "
                   "(default), or the connector thread whose ticks find nobody draining (lower "
                   "latency; needs --overflow block)")
    a.add_argument("--stale-after", type=float, default=5.0,
                   help="seconds after which a quote leaves the NBBO (default 5)")


def _add_view_args(p, default_view):
    g = p.add_argument_group("display")
    g.add_argument("--view", dest="view", action="store_true", default=default_view,
                   help="show the live view" + (" (default)" if default_view else ""))
    g.add_argument("--no-view", dest="view", action="store_false",
                   help="no live view; print a summary at the end")
    g.add_argument("--refresh", type=float, default=0.5,
                   help="seconds between redraws on a terminal (default 0.5)")


def _add_recorder_args(p):
    g = p.add_argument_group("recording")
    g.add_argument("--rotate-mb", type=float, default=64.0,
                   help="compact a segment once it reaches this many MB (default 64)")
    g.add_argument("--rotate-seconds", type=float, default=3600.0,
                   help="... or once it is this old (default 3600)")
    g.add_argument("--flush-interval", type=float,
                   default=float(os.environ.get("HFTSIG_FLUSH_INTERVAL", 1.0)),
                   help="seconds between durable flushes: the most a crash loses (default: "
                   "$HFTSIG_FLUSH_INTERVAL or 1)")


def _add_run_parser(sub):
    p = sub.add_parser(
        "run", help="aggregate live (or --simulate) feeds with a live view",
        description="Connect to the exchanges (or, with --simulate, to the embedded loopback "
        "simulators), aggregate their ticks and show tops of book, NBBO and feed rates. "
        "Ends after --seconds or on Ctrl-C with a summary.")
    _add_source_args(p)
    _add_view_args(p, default_view=True)
    p.add_argument("--record", metavar="PATH", default=None,
                   help="also record every tick to Parquet under PATH")
    _add_recorder_args(p)
    p.set_defaults(func=_cmd_run)


def _add_record_parser(sub):
    p = sub.add_parser(
        "record", help="record live (or --simulate) ticks to Parquet",
        description="Record every tick of the chosen feeds to append-only Parquet files under "
        "PATH (a directory, or name.parquet). A crash loses at most the last flush interval. "
        "Prints progress lines; --view shows the live view instead.")
    p.add_argument("path", metavar="PATH", help="directory or name.parquet to record into")
    _add_source_args(p)
    _add_view_args(p, default_view=False)
    _add_recorder_args(p)
    p.set_defaults(func=_cmd_record)


def _add_replay_parser(sub):
    p = sub.add_parser(
        "replay", help="replay a recording through the aggregator",
        description="Feed recorded ticks back through the aggregator (same API as live), then "
        "print the summary and the final NBBO.")
    p.add_argument("path", metavar="PATH", help="recording directory, name.parquet or file")
    p.add_argument("--speed", type=float, default=None,
                   help="1.0 = recorded pace, 10 = ten times faster (default: as fast as "
                   "possible)")
    _add_view_args(p, default_view=False)
    p.set_defaults(func=_cmd_replay)


def _url_overrides(args):
    urls = {}
    for opt, key in ((args.ws_url, "ws_url"), (args.rest_url, "rest_url")):
        for item in opt:
            ex, sep, url = item.partition("=")
            if not sep or ex.strip().lower() not in EXCHANGES or not url:
                raise SystemExit(f"hftsig: --{key.replace('_', '-')} wants EXCHANGE=URL with "
                                 f"EXCHANGE one of {','.join(EXCHANGES)}, got {item!r}")
            urls.setdefault(ex.strip().lower(), {})[key] = url
    for ex in EXCHANGES:
        for key in ("ws_url", "rest_url"):
            env = os.environ.get(f"HFTSIG_{ex.upper()}_{key.upper()}")
            if env:
                urls.setdefault(ex, {}).setdefault(key, env)
    return urls


def make_connectors(exchanges, symbols, endpoints=None, options=None):
    """One connector per exchange name, for ``symbols``, with optional endpoint kwargs.

    ``endpoints`` maps exchange -> ``{"ws_url": ..., "rest_url": ...}`` (from the
    simulators or the command line; None values are left out, so a REST-only
    connector gets no ``ws_url``); missing ones default to the live exchange.
    ``options`` maps exchange -> extra constructor keyword arguments.
    """
    import connectors

    out = []
    for ex in exchanges:
        ex = ex.lower()
        if ex not in _CONNECTOR_CLASSES:
            raise ValueError(f"exchanges: unknown exchange {ex!r}; one of {EXCHANGES}")
        cls = getattr(connectors, _CONNECTOR_CLASSES[ex])
        kw = {k: v for k, v in (endpoints or {}).get(ex, {}).items() if v is not None}
        kw.update((options or {}).get(ex, {}))
        out.append(cls(list(symbols), **kw))
    return out


class _Session:
    """Simulators (optional) + connectors + aggregator, as one context manager."""

    def __init__(self, args):
        self.args = args
        self.sim = None
        self.agg = None

    def __enter__(self):
        from hftsig.aggregator import Aggregator

        a = self.args
        for ex in a.exchanges:
            if ex.lower() not in EXCHANGES:
                raise SystemExit(f"hftsig: unknown exchange {ex!r}; one of {','.join(EXCHANGES)}")
        endpoints = _url_overrides(a)
        if a.simulate:
            from hftsig.simulator import SimulatedExchanges

            self.sim = SimulatedExchanges(symbols=list(a.symbols), seed=a.seed)
            self.sim.__enter__()
            for ex in a.exchanges:
                endpoints[ex] = {**self.sim.connector_kwargs(ex), **endpoints.get(ex, {})}
        gecko = a.coingecko_interval
        if gecko is None and a.simulate:
            gecko = 1.0
        options = {"coingecko": {"interval": gecko}} if gecko is not None else {}
        try:
            conns = make_connectors(a.exchanges, a.symbols, endpoints, options)
            self.agg = Aggregator(conns, queue_size=a.queue_size, overflow=a.overflow,
                                  dispatch=a.dispatch, stale_after=a.stale_after, drain_size=0)
        except BaseException:
            if self.sim is not None:
                self.sim.stop()
            raise
        return self

    def __exit__(self, *exc):
        try:
            if self.agg is not None:
                self.agg.stop()
        finally:
            if self.sim is not None:
                self.sim.__exit__(*exc)


def _recorder(path, args, connectors=()):
    from hftsig.recorder import Recorder

    depths = {str(c.exchange): int(c.book_depth) for c in connectors
              if getattr(c, "book_depth", None) is not None}
    return Recorder(path, rotate_bytes=int(args.rotate_mb * (1 << 20)),
                    rotate_seconds=args.rotate_seconds, flush_interval=args.flush_interval,
                    book_depths=depths or None)


def _wait(seconds):
    """Sleep ``seconds`` (forever if None); False on Ctrl-C (or SIGTERM)."""
    end = None if seconds is None else time.monotonic() + seconds
    try:
        with SignalNap() as nap:
            while end is None or time.monotonic() < end:
                nap(3600.0 if end is None else end - time.monotonic())
        return True
    except KeyboardInterrupt:
        return False


def _run_session(args, record_path):
    from hftsig.liveview import LiveView, ignore_interrupts, render_summary

    # `docker stop` (SIGTERM) ends a session as Ctrl-C does: feeds stopped, recorder closed
    with terminate_as_interrupt(), _Session(args) as s:
        agg = s.agg
        rec = None
        if record_path:
            rec = _recorder(record_path, args, agg.connectors)
            agg.on_tick(rec.write)
        t0 = time.monotonic()
        agg.start()
        try:
            if args.view:
                LiveView(agg, interval=args.refresh).run(args.seconds)
            elif record_path:
                _progress(agg, rec, args.seconds)
            else:
                _wait(args.seconds)
        finally:
            with ignore_interrupts():
                agg.stop()
                if rec is not None:
                    rec.close()
        with ignore_interrupts():
            print(render_summary(agg, time.monotonic() - t0))
            if rec is not None:
                print(f"recorded {rec.rows_written:,} ticks to {record_path}")
    return 0


def _progress(agg, rec, seconds):
    end = None if seconds is None else time.monotonic() + seconds
    try:
        with SignalNap() as nap:
            while end is None or time.monotonic() < end:
                nap(min(5.0, max(0.0, end - time.monotonic())) if end else 5.0)
                total = sum(s["ticks"] for s in agg.stats().values())
                print(f"{time.strftime('%H:%M:%S')} ticks {total:,} durable {rec.rows_written:,}",
                      flush=True)
    except KeyboardInterrupt:
        pass


def _cmd_run(args):
    return _run_session(args, args.record)


def _cmd_record(args):
    return _run_session(args, args.path)


def _cmd_replay(args):
    from hftsig.liveview import LiveView, render_summary
    from hftsig.recorder import read_ticks, replay

    try:
        ticks = read_ticks(args.path)
    except (FileNotFoundError, ValueError) as exc:
        print(f"hftsig replay: {exc}", file=sys.stderr)
        return 2
    agg = replay(ticks, speed=args.speed, drain_size=0)
    t0 = time.monotonic()
    with agg:
        if args.view:
            import threading

            done = threading.Event()
            threading.Thread(target=lambda: (agg.wait_finished(), done.set()),
                             daemon=True).start()
            LiveView(agg, interval=args.refresh).run(stop=done)
        else:
            agg.wait_finished()
    elapsed = time.monotonic() - t0
    print(render_summary(agg, elapsed))
    print(f"replayed {len(ticks):,} ticks from {args.path}")
    for sym in agg.symbols():
        nb = agg.nbbo(sym)
        if nb.bid_venue or nb.ask_venue:
            print(f"NBBO {sym}: bid {nb.bid_px} ({nb.bid_venue}) ask {nb.ask_px} "
                  f"({nb.ask_venue})")
        elif sym:
            print(f"NBBO {sym}: no venue up (stale quotes, or the feeds "
                  "disconnected at the end of the recording)")
    return 0


def _add_notebook_parser(sub):
    p = sub.add_parser(
        "notebook", help="start JupyterLab on the notebooks folder",
        description="Start JupyterLab (the 'notebooks' extra) serving the notebooks folder; "
        "the notebooks reach the simulators or live exchanges through hftsig.")
    p.add_argument("--dir", default=os.environ.get("HFTSIG_NOTEBOOK_DIR", "notebooks"),
                   help="folder to serve (default: $HFTSIG_NOTEBOOK_DIR or notebooks)")
    p.add_argument("--ip", default=os.environ.get("HFTSIG_NOTEBOOK_IP", "127.0.0.1"),
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 in a container)")
    p.add_argument("--port", type=int, default=int(os.environ.get("HFTSIG_NOTEBOOK_PORT", 8888)),
                   help="port (default 8888)")
    p.add_argument("--print-command", action="store_true",
                   help="print the jupyter command line instead of running it")
    p.set_defaults(func=_cmd_notebook)


def _cmd_notebook(args):
    import shlex
    import shutil

    cmd = ["jupyter", "lab", f"--notebook-dir={args.dir}", f"--ip={args.ip}",
           f"--port={args.port}", "--no-browser"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # JupyterLab refuses to start as root without it (containers, CI, root shells)
        cmd.append("--allow-root")
    if args.print_command:
        print(shlex.join(cmd))
        return 0
    # the jupyter of hftsig's own environment first: `.venv/bin/hftsig notebook` (or
    # `python -m hftsig`) runs without that environment on PATH
    jupyter = (shutil.which("jupyter", path=os.path.dirname(sys.executable))
               or shutil.which("jupyter"))
    if jupyter is None:
        print("hftsig notebook: jupyter is not installed; pip install 'hftsig[notebooks]'",
              file=sys.stderr)
        return 2
    sys.stdout.flush()
    os.execv(jupyter, cmd)


def _add_arb_parser(sub):
    p = sub.add_parser(
        "arb",
        help="print triangular and cross-exchange arbitrage opportunities (episodes) live",
        description="Watch quotes (simulated by default, with injected mispricings) and "
        "print fee- and size-aware arbitrage opportunities as they appear.",
    )
    p.add_argument("--seconds", type=float, default=20.0, help="how long to run (default 20)")
    p.add_argument("--source", choices=("sim", "model", "live"), default="sim",
                   help="sim: loopback simulators + connectors + aggregator (default); "
                   "model: the simulators' market model in-process; live: real exchanges")
    p.add_argument("--symbols", default=None,
                   help="comma-separated BASE-QUOTE symbols (default BTC-USDT,ETH-USDT,"
                   "ETH-BTC,SOL-USDT,SOL-BTC)")
    p.add_argument("--exchanges", default="binance,kraken,coinbase",
                   help="comma-separated venues (default binance,kraken,coinbase)")
    p.add_argument("--fees", default=None,
                   help="taker fees in bps, e.g. 'binance=10,kraken=40' or one number for all "
                   "(default: hftsig.arbitrage.DEFAULT_TAKER_FEES_BPS)")
    p.add_argument("--min-edge-bps", type=float, default=0.0,
                   help="report only net edges above this (default 0)")
    p.add_argument("--max-age-ms", type=float, default=2000.0,
                   help="quotes older than this never count (default 2000)")
    p.add_argument("--notional", type=float, default=None,
                   help="also evaluate each opportunity for this USD size")
    p.add_argument("--inject-every", type=float, default=2.0,
                   help="seconds between injected mispricings in simulation (0: none)")
    p.add_argument("--same-venue", action="store_true",
                   help="triangles on one venue only (spatial pairs still across venues)")
    p.add_argument("--report", choices=("best", "all"), default="best",
                   help="per update: the best cycle (default) or every profitable one")
    p.add_argument("--show", choices=("episodes", "updates"), default="episodes",
                   help="print each opportunity episode when it opens and closes (default), "
                   "or every update")
    p.add_argument("--seed", type=int, default=0, help="simulation seed (default 0)")
    p.set_defaults(func=_cmd_arb)


def _cmd_arb(args):
    from hftsig.arbitrage_live import ARB_SYMBOLS, _parse_fees, run_arb

    symbols = tuple(_csv(args.symbols)) if args.symbols else ARB_SYMBOLS
    return run_arb(args.seconds, source=args.source, symbols=symbols,
                   fees=_parse_fees(args.fees), min_edge_bps=args.min_edge_bps,
                   max_quote_age_ms=args.max_age_ms, notional=args.notional,
                   inject_every=args.inject_every, seed=args.seed,
                   cross_venue=not args.same_venue, report=args.report, show=args.show,
                   exchanges=tuple(_csv(args.exchanges)))


def _add_doctor_parser(sub):
    from hftsig.doctor import VENUES

    p = sub.add_parser(
        "doctor", help="check the live feeds (or --simulate) and print a pass/fail table",
        description="Listen to each venue for a few seconds through the connectors and check "
        "what arrives: frames parse, Binance book sync, Kraken checksums, Coinbase sequence, "
        "trade sides against the book, clock offset. Exit code 0 if no check failed, 1 "
        "otherwise.")
    p.add_argument("--seconds", type=float, default=5.0, help="listening time per venue (default 5)")
    p.add_argument("--venues", type=_csv, default=list(VENUES),
                   help=f"comma-separated venues (default {','.join(VENUES)})")
    p.add_argument("--simulate", action="store_true",
                   help="check the embedded loopback simulators instead of the live venues")
    p.set_defaults(func=_cmd_doctor)


def _cmd_doctor(args):
    from hftsig.doctor import run_doctor

    return run_doctor(args.venues, seconds=args.seconds, simulate=args.simulate)


def main(argv=None):
    command = None
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        command = args.command
        try:
            return args.func(args) or 0
        except ValueError as exc:  # bad symbols, exchanges, paths: a message, not a traceback
            parser.exit(2, f"hftsig {command}: error: {exc}\n")
    except KeyboardInterrupt:
        # Ctrl-C (or SIGTERM where a command takes it as Ctrl-C) before the
        # command could end on its own terms, e.g. while the feeds start: what
        # was started is stopped on the way out; a line, not a traceback
        print(f"hftsig{' ' + command if command else ''}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
