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
    return parser


def _cmd_demo(args):
    from hftsig.demo import run_demo

    return run_demo(seconds=args.seconds)


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    return args.func(args) or 0


if __name__ == "__main__":
    sys.exit(main())
