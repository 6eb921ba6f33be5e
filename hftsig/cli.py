"""The ``hftsig`` command line."""
from __future__ import annotations

import argparse
import sys


def build_parser():
    parser = argparse.ArgumentParser(
        prog="hftsig",
        description="hftsig: high-frequency crypto market lab (connectors, aggregator, "
        "arbitrage, path signatures, optimal stopping).",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    demo = sub.add_parser("demo", help="run the lab's main job and print a summary")
    demo.add_argument("--seconds", type=float, default=20.0, help="how long to run (default 20)")
    demo.set_defaults(func=_cmd_demo)
    _add_simulate(sub)
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
    sim.add_argument("--interval", type=float, default=1.0, help="seconds between rate reports (default 1)")
    sim.set_defaults(func=_cmd_simulate)


def _cmd_simulate(args):
    from hftsig.simulator.cli import run_simulate

    return run_simulate(args)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
