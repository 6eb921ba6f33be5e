"""The ``hftsig`` command line."""
from __future__ import annotations

import argparse
import math
import os
import sys
import time
from typing import TYPE_CHECKING

from hftsig import venues
from hftsig.interrupts import SignalNap, terminate_as_interrupt

if TYPE_CHECKING:
    from collections.abc import Collection, Iterable, Sequence

#: venues registered at import (the parsers read :mod:`hftsig.venues` when built)
EXCHANGES = venues.names()
DEFAULT_SYMBOLS = ("BTC-USDT", "ETH-USDT", "ETH-BTC")


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr and exit code 2.

    argparse prints the whole usage block before the error; for a command with
    twenty options that buries the one line that says what was wrong.
    """

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number(kind, *, minimum, inclusive, what):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
        if not math.isfinite(value) or value < minimum or (value == minimum and not inclusive):
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value

    return parse


#: argparse types: a duration in seconds > 0, a count >= 1, a number >= 0
_seconds = _number(float, minimum=0.0, inclusive=False, what="a number of seconds > 0")
_positive = _number(float, minimum=0.0, inclusive=False, what="a number > 0")
_non_negative = _number(float, minimum=0.0, inclusive=True, what="a number >= 0")
_count = _number(int, minimum=1, inclusive=True, what="a whole number >= 1")


def _port(text):
    # the last of the simulate command's five consecutive ports must exist too
    value = _count(text)
    if value > 65531:
        raise argparse.ArgumentTypeError(f"expected a port 1..65531, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="hftsig",
        description="hftsig: high-frequency crypto market lab (connectors, aggregator, "
        "arbitrage, path signatures, optimal stopping).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    demo = sub.add_parser("demo", help="run the lab's main job and print a summary",
                          description="Simulated Binance, Kraken, Coinbase and CoinGecko feeds "
                          "-> aggregator -> live view, then a summary.")
    demo.add_argument("--seconds", type=_seconds, default=20.0, help="how long to run (default 20)")
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
    from hftsig.app.demo import run_demo

    return run_demo(seconds=args.seconds)


def _add_simulate(sub):
    simulated = venues.names(simulator=True)
    sim = sub.add_parser(
        "simulate",
        help="run the loopback exchange simulators "
        f"({', '.join(venues.get(v).display_name for v in simulated)})",
        description="Start the exchange simulators, print their URLs (one line per exchange: "
        "'<exchange> ws_url=... rest_url=...') and message rates; runs until Ctrl-C or "
        "--seconds. They listen on ephemeral ports of 127.0.0.1 unless --host/--port say "
        "otherwise: with --port N the servers take N (binance websocket), N+1 (binance REST), "
        "N+2 (kraken), N+3 (coinbase), N+4 (coingecko), whichever of them run. Example, "
        "for connectors in other containers: hftsig simulate --host 0.0.0.0 --port 9001; "
        "then hftsig run --ws-url binance=ws://simulator:9001 --rest-url "
        "binance=http://simulator:9002 ...",
    )
    sim.add_argument("--host", default="127.0.0.1",
                     help="address to listen on (default 127.0.0.1; 0.0.0.0 for other hosts "
                     "or containers)")
    sim.add_argument("--port", type=_port, default=None, metavar="N",
                     help="fixed ports from N on, in the order binance, binance REST, kraken, "
                     "coinbase, coingecko (default: ephemeral ports)")
    sim.add_argument("--seconds", type=_seconds, default=None, help="stop after this long (default: until Ctrl-C)")
    sim.add_argument("--symbols", default=None, help="comma-separated BASE-QUOTE symbols (default: built-in set)")
    sim.add_argument("--exchanges", default=",".join(simulated), help="comma-separated exchanges")
    sim.add_argument("--seed", type=int, default=0, help="market model seed (default 0)")
    sim.add_argument("--rate", type=_positive, default=20.0, help="book updates per second per symbol (default 20)")
    sim.add_argument("--depth", type=_count, default=20, help="book levels per side (default 20)")
    sim.add_argument("--size-churn", type=float, default=0.05,
                     help="share of levels resized per update, 0..1 (default 0.05; 1 = heaviest stream)")
    sim.add_argument("--stagger", type=_count, default=1,
                     help="release each model step's updates in this many slices over the step "
                          "interval instead of one burst (default 1)")
    sim.add_argument("--interval", type=_seconds, default=1.0, help="seconds between rate reports (default 1)")
    sim.set_defaults(func=_cmd_simulate)


def _cmd_simulate(args):
    from hftsig.simulator.cli import run_simulate
    from hftsig.simulator.exchanges import EXCHANGES as SIM_EXCHANGES

    check_exchanges(_csv(args.exchanges), SIM_EXCHANGES)
    if args.symbols is not None:
        check_symbols(_csv(args.symbols), simulated=True)
    return run_simulate(args)


# -- run / record / replay ------------------------------------------------------------------
def _csv(text):
    return [x.strip() for x in text.split(",") if x.strip()]


def _env_list(name, default):
    value = os.environ.get(name)
    return _csv(value) if value else list(default)


def _add_source_args(p):
    g = p.add_argument_group("market data source")
    g.add_argument("--exchanges", type=_csv,
                   default=_env_list("HFTSIG_EXCHANGES", venues.names()),
                   help="comma-separated exchanges (default: $HFTSIG_EXCHANGES or "
                   f"{','.join(venues.names())})")
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
    g.add_argument("--coingecko-interval", type=_seconds, default=None,
                   help="seconds between CoinGecko polls (default: the connector's, 15; "
                   "1 with --simulate)")
    g.add_argument("--seconds", type=_seconds, default=None,
                   help="stop after this many seconds (default: run until Ctrl-C)")
    a = p.add_argument_group("aggregator")
    a.add_argument("--queue-size", type=_count, default=100_000, help="input queue size in ticks")
    a.add_argument("--overflow", choices=("block", "drop_oldest"), default="block",
                   help="what a full queue does (default block)")
    a.add_argument("--dispatch", choices=("worker", "connector"), default="worker",
                   help="who runs state updates and consumers: the aggregator's worker thread "
                   "(default), or the connector thread whose ticks find nobody draining (lower "
                   "latency; needs --overflow block)")
    a.add_argument("--stale-after", type=_seconds, default=5.0,
                   help="seconds after which a quote leaves the NBBO (default 5)")


def _add_view_args(p, default_view):
    g = p.add_argument_group("display")
    g.add_argument("--view", dest="view", action="store_true", default=default_view,
                   help="show the live view" + (" (default)" if default_view else ""))
    g.add_argument("--no-view", dest="view", action="store_false",
                   help="no live view; print a summary at the end")
    g.add_argument("--refresh", type=_seconds, default=0.5,
                   help="seconds between redraws on a terminal (default 0.5)")


def _add_recorder_args(p):
    g = p.add_argument_group("recording")
    g.add_argument("--rotate-mb", type=_positive, default=64.0,
                   help="compact a segment once it reaches this many MB (default 64)")
    g.add_argument("--rotate-seconds", type=_seconds, default=3600.0,
                   help="... or once it is this old (default 3600)")
    g.add_argument("--flush-interval", type=_seconds,
                   default=os.environ.get("HFTSIG_FLUSH_INTERVAL", "1"),
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
    _add_publish_args(p)
    p.set_defaults(func=_cmd_run)


def _add_publish_args(p):
    g = p.add_argument_group("tick bus (Redis Streams; the 'bus' extra, docs/bus.md)")
    g.add_argument("--publish", metavar="URL", default=os.environ.get("HFTSIG_PUBLISH") or None,
                   help="also publish every tick to Redis, e.g. redis://localhost:6379/0 "
                   "(default: $HFTSIG_PUBLISH)")
    g.add_argument("--stream", default=os.environ.get("HFTSIG_STREAM", "hftsig:ticks"),
                   help="stream name, one per publishing process (default: $HFTSIG_STREAM or "
                   "hftsig:ticks)")
    g.add_argument("--per-venue", action="store_true",
                   help="one stream per venue, STREAM:<exchange>")
    g.add_argument("--retention", type=float, default=600.0,
                   help="seconds of ticks the stream keeps (default 600)")


def _add_consume_args(p, group):
    g = p.add_argument_group("tick bus (Redis Streams; the 'bus' extra, docs/bus.md)")
    g.add_argument("--from", dest="from_url", metavar="URL",
                   default=os.environ.get("HFTSIG_FROM") or None,
                   help="take the ticks from Redis streams (e.g. redis://redis:6379/0) "
                   "instead of connecting to the exchanges (default: $HFTSIG_FROM)")
    g.add_argument("--streams", type=_csv, default=None,
                   help="comma-separated stream names (default: every announced hftsig:ticks "
                   "stream)")
    g.add_argument("--group", default=group,
                   help=f"consumer group (default {group or 'none: a plain reader'})")
    g.add_argument("--consumer", default=None,
                   help="consumer name in the group; keep it fixed to resume after a restart")


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
    _add_consume_args(p, group="recorder")
    p.set_defaults(func=_cmd_record)


def _add_replay_parser(sub):
    p = sub.add_parser(
        "replay", help="replay a recording through the aggregator",
        description="Feed recorded ticks back through the aggregator (same API as live), then "
        "print the summary and the final NBBO.")
    p.add_argument("path", metavar="PATH", help="recording directory, name.parquet or file")
    p.add_argument("--speed", type=_positive, default=None,
                   help="1.0 = recorded pace, 10 = ten times faster (default: as fast as "
                   "possible)")
    _add_view_args(p, default_view=False)
    p.set_defaults(func=_cmd_replay)


def _url_overrides(args):
    urls = {}
    for opt, key in ((args.ws_url, "ws_url"), (args.rest_url, "rest_url")):
        for item in opt:
            ex, sep, url = item.partition("=")
            if not sep or ex.strip().lower() not in venues.names() or not url:
                raise ValueError(f"argument --{key.replace('_', '-')}: expected EXCHANGE=URL "
                                 f"with EXCHANGE one of {','.join(venues.names())}, got {item!r}")
            urls.setdefault(ex.strip().lower(), {})[key] = url
    for ex in venues.names():
        for key in ("ws_url", "rest_url"):
            env = os.environ.get(f"HFTSIG_{ex.upper()}_{key.upper()}")
            if env:
                urls.setdefault(ex, {}).setdefault(key, env)
    return urls


def check_exchanges(names: Iterable[str], known: Collection[str]) -> None:
    """Refuse an exchange name not in ``known``, in command-line terms (ValueError)."""
    for name in names:
        if name.strip().lower() not in known:
            raise ValueError(f"unknown exchange {name!r} (known: {', '.join(known)})")


def check_symbols(symbols: Iterable[str], *, simulated: bool) -> None:
    """Refuse a symbol the command cannot serve, in command-line terms (ValueError).

    Every symbol must be ``BASE-QUOTE``; a simulated one must also be made of
    assets the market model has a start price for.
    """
    from hftsig.market.symbols import canonical
    from hftsig.simulator.market import DEFAULT_SYMBOLS as SIM_SYMBOLS
    from hftsig.simulator.market import SIMULATED_ASSETS

    if not symbols:
        raise ValueError("no symbols given (e.g. --symbols BTC-USDT,ETH-USDT)")
    for sym in symbols:
        try:
            canon = canonical(sym)
        except ValueError:
            canon = None
        unknown_assets = [] if canon is None else [
            a for a in canon.split("-") if simulated and a not in SIMULATED_ASSETS]
        if simulated and (canon is None or unknown_assets):
            raise ValueError(f"unknown symbol {sym!r} (known: {', '.join(SIM_SYMBOLS)}; or any "
                             f"pair of {', '.join(SIMULATED_ASSETS)})")
        if canon is None:
            raise ValueError(f"unknown symbol {sym!r} (symbols are BASE-QUOTE, e.g. "
                             f"{', '.join(SIM_SYMBOLS[:3])})")


class _Session:
    """Simulators (optional) + connectors + aggregator, as one context manager."""

    def __init__(self, args):
        self.args = args
        self.sim = None
        self.agg = None

    def __enter__(self):
        from hftsig.market.aggregator import Aggregator

        a = self.args
        check_exchanges(a.exchanges, venues.names())
        check_symbols(a.symbols, simulated=a.simulate)
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
            from hftsig.connectors import make_connectors

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
    from hftsig.market.recorder import Recorder

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
    from hftsig.app.liveview import LiveView, ignore_interrupts, render_summary

    # `docker stop` (SIGTERM) ends a session as Ctrl-C does: feeds stopped, recorder closed
    with terminate_as_interrupt(), _Session(args) as s:
        agg = s.agg
        rec = None
        if record_path:
            rec = _recorder(record_path, args, agg.connectors)
            agg.on_tick(rec.write)
        pub = None
        if getattr(args, "publish", None):
            from hftsig.distributed.bus import Publisher

            pub = Publisher(args.publish, stream=args.stream, per_venue=args.per_venue,
                            retention=args.retention).attach(agg)
            pub.start()
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
                if pub is not None:
                    pub.close()
        with ignore_interrupts():
            print(render_summary(agg, time.monotonic() - t0))
            if rec is not None:
                print(f"recorded {rec.rows_written:,} ticks to {record_path}")
            if pub is not None:
                st = pub.stats()
                print(f"published {st['ticks']:,} ticks in {st['entries']:,} entries to "
                      f"{args.stream}{':<venue>' if args.per_venue else ''} (dropped "
                      f"{st['dropped']:,}, unsent {st['queued']:,})")
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
    if args.from_url:
        return _record_from_bus(args)
    return _run_session(args, args.path)


def _record_from_bus(args):
    from hftsig.app.liveview import ignore_interrupts
    from hftsig.distributed.bus import BusRecorder, connection_errors

    # `docker stop` (SIGTERM) ends it as Ctrl-C does: the last flush durable, then acknowledged
    with terminate_as_interrupt():
        try:
            rec = BusRecorder(args.from_url, args.path, streams=args.streams, group=args.group,
                              consumer=args.consumer or args.group,
                              rotate_bytes=int(args.rotate_mb * (1 << 20)),
                              rotate_seconds=args.rotate_seconds,
                              flush_interval=args.flush_interval)
        except connection_errors() as exc:
            print(f"hftsig record: cannot reach the tick bus: {exc}", file=sys.stderr)
            return 2
        print(f"recording {', '.join(rec.streams)} (group {args.group}) to {args.path}",
              flush=True)
        try:
            rec.run(args.seconds)
        except KeyboardInterrupt:
            pass
        finally:
            with ignore_interrupts():
                rec.close()
    st = rec.stats()
    print(f"recorded {st['rows_written']:,} ticks to {args.path} from {st['entries']:,} "
          f"entries ({st['duplicates']:,} duplicates dropped, {st['malformed']:,} malformed)")
    return 0


def _cmd_replay(args):
    from hftsig.app.liveview import LiveView, render_summary
    from hftsig.market.recorder import (
        closing_status_mask,
        read_ticks,
        recording_book_depths,
        replay,
    )

    try:
        ticks = read_ticks(args.path)
        depths = recording_book_depths(args.path)
    except (FileNotFoundError, ValueError) as exc:
        raise ValueError(str(exc).removeprefix("path: ")) from None
    if len(ticks) == 0:
        raise ValueError(f"the recording at {args.path!r} holds no ticks")
    closing = int(closing_status_mask(ticks).sum())
    agg = replay(ticks, speed=args.speed, drain_size=0, book_depths=depths)
    t0 = time.monotonic()
    with agg:
        if args.view:
            import threading

            done = threading.Event()
            threading.Thread(target=lambda: (agg.wait_finished(), done.set()),
                             daemon=True).start()
            LiveView(agg, interval=args.refresh, title=f"hftsig replay {args.path}").run(stop=done)
        else:
            agg.wait_finished()
    elapsed = time.monotonic() - t0
    print(render_summary(agg, elapsed))
    print(f"replayed {len(ticks) - closing:,} ticks from {args.path}"
          + (f" (and left out the {closing:,} disconnect statuses of its feeds stopping when "
             "the recording stopped)" if closing else ""))
    for line in _final_nbbo_lines(agg):
        print(line)
    return 0


def _final_nbbo_lines(agg):
    """Each symbol's NBBO and every venue's top of book, as the replay left them."""
    import math

    lines = []
    for sym in agg.symbols():
        if not sym:
            continue
        nb = agg.nbbo(sym)
        if nb.bid_venue or nb.ask_venue:
            lines.append(f"NBBO {sym}: bid {nb.bid_px} ({nb.bid_venue}) ask {nb.ask_px} "
                         f"({nb.ask_venue})")
        else:
            lines.append(f"NBBO {sym}: no venue up (quotes older than the stale limit, or "
                         "the feeds were down)")
        for venue in dict.fromkeys(s["exchange"] for s in agg.stats().values()):
            top = agg.top(venue, sym)
            if top is None or not (math.isfinite(top.bid_px) or math.isfinite(top.ask_px)):
                continue
            lines.append(f"  {top.exchange:<10} bid {top.bid_px} x {top.bid_sz:g}  ask "
                         f"{top.ask_px} x {top.ask_sz:g}")
    return lines


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
    p.add_argument("--seconds", type=_seconds, default=20.0, help="how long to run (default 20)")
    p.add_argument("--source", choices=("sim", "model", "live"), default="sim",
                   help="sim: loopback simulators + connectors + aggregator (default); "
                   "model: the simulators' market model in-process; live: real exchanges")
    p.add_argument("--symbols", default=None,
                   help="comma-separated BASE-QUOTE symbols (default BTC-USDT,ETH-USDT,"
                   "ETH-BTC,SOL-USDT,SOL-BTC)")
    arb_venues = ",".join(venues.names(order_book=True, simulator=True))
    p.add_argument("--exchanges", default=arb_venues,
                   help=f"comma-separated order-book venues (default {arb_venues})")
    p.add_argument("--fees", default=None,
                   help="taker fees in bps, e.g. 'binance=10,kraken=40' or one number for all "
                   "(default: hftsig.arbitrage.cycles.DEFAULT_TAKER_FEES_BPS)")
    p.add_argument("--min-edge-bps", type=float, default=0.0,
                   help="report only net edges above this (default 0)")
    p.add_argument("--max-age-ms", type=_positive, default=2000.0,
                   help="quotes older than this never count (default 2000)")
    p.add_argument("--notional", type=_positive, default=None,
                   help="also evaluate each opportunity for this USD size")
    p.add_argument("--inject-every", type=_non_negative, default=2.0,
                   help="seconds between injected mispricings in simulation (0: none)")
    p.add_argument("--same-venue", action="store_true",
                   help="triangles on one venue only (spatial pairs still across venues)")
    p.add_argument("--report", choices=("best", "all"), default="best",
                   help="per update: the best cycle (default) or every profitable one")
    p.add_argument("--show", choices=("episodes", "updates"), default="episodes",
                   help="print each opportunity episode when it opens and closes (default), "
                   "or every update")
    p.add_argument("--seed", type=int, default=0, help="simulation seed (default 0)")
    _add_consume_args(p, group=None)
    p.set_defaults(func=_cmd_arb)


def _cmd_arb(args):
    from hftsig.arbitrage.live import ARB_SYMBOLS, parse_fees, run_arb
    from hftsig.simulator.market import VENUES

    symbols = tuple(_csv(args.symbols)) if args.symbols else ARB_SYMBOLS
    check_symbols(symbols, simulated=args.source != "live")
    # live: any order-book venue; simulated sources: those the market model simulates
    check_exchanges(_csv(args.exchanges),
                    venues.names(order_book=True) if args.source == "live" else VENUES)
    try:
        fees = parse_fees(args.fees)
    except ValueError:
        raise ValueError(f"argument --fees: expected bps like 'binance=10,kraken=40' or one "
                         f"number, got {args.fees!r}") from None
    return run_arb(args.seconds, source=args.source, symbols=symbols,
                   fees=fees, min_edge_bps=args.min_edge_bps,
                   max_quote_age_ms=args.max_age_ms, notional=args.notional,
                   inject_every=args.inject_every, seed=args.seed,
                   cross_venue=not args.same_venue, report=args.report, show=args.show,
                   exchanges=tuple(_csv(args.exchanges)),
                   **({"bus": {"url": args.from_url, "streams": args.streams,
                               "group": args.group, "consumer": args.consumer}}
                      if args.from_url else {}))


def _add_doctor_parser(sub):
    from hftsig.app.doctor import VENUES

    p = sub.add_parser(
        "doctor", help="check the live feeds (or --simulate) and print a pass/fail table",
        description="Listen to each venue for a few seconds through the connectors and check "
        "what arrives: frames parse, Binance book sync, Kraken checksums, Coinbase sequence, "
        "trade sides against the book, clock offset. Exit code 0 if no check failed, 1 "
        "otherwise.")
    p.add_argument("--seconds", type=_seconds, default=5.0, help="listening time per venue (default 5)")
    p.add_argument("--venues", type=_csv, default=list(VENUES),
                   help=f"comma-separated venues (default {','.join(VENUES)})")
    p.add_argument("--simulate", action="store_true",
                   help="check the embedded loopback simulators instead of the live venues")
    p.set_defaults(func=_cmd_doctor)


def _cmd_doctor(args):
    from hftsig.app.doctor import VENUES, run_doctor

    check_exchanges(args.venues, VENUES)
    return run_doctor(args.venues, seconds=args.seconds, simulate=args.simulate)


def main(argv: Sequence[str] | None = None) -> int:
    command = None
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        command = args.command
        try:
            return args.func(args) or 0
        except ValueError as exc:  # bad symbols, exchanges, paths: a message, not a traceback
            parser.exit(2, f"hftsig {command}: error: {exc}\n")
    except BrokenPipeError:
        # the reader of our output went away (`hftsig ... | head`): what was started
        # has been stopped on the way out; end quietly, as a shell tool does.  Later
        # writes (the interpreter's final flush) go nowhere instead of raising again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return 141  # 128 + SIGPIPE, the shell's code for it
    except KeyboardInterrupt:
        # Ctrl-C (or SIGTERM where a command takes it as Ctrl-C) before the
        # command could end on its own terms, e.g. while the feeds start: what
        # was started is stopped on the way out; a line, not a traceback
        print(f"hftsig{' ' + command if command else ''}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())


def __getattr__(name):
    # make_connectors lived here before the exchange registry; loading it on
    # first use keeps `hftsig --help` from importing every connector
    if name == "make_connectors":
        from hftsig.connectors import make_connectors

        return make_connectors
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
