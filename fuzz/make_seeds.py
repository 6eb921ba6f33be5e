"""Write the seed corpus ``fuzz/corpus/`` from the test data and the simulators.

``python -m fuzz.make_seeds`` (idempotent: files are named by content):

* every message of ``tests/data/samples/<venue>/`` and, where present,
  ``tests/data/real/`` (recorded sessions: one message per line in ``.jsonl``
  files, or one per file) goes to ``normalize_<venue>``;
* a few seconds of frames from each simulator on loopback, as the connectors
  receive them (snapshots, updates, trades, heartbeats, injected malformed
  frames), go there too;
* the structured targets (books, frames, signatures, numbers, instrument
  messages, tick scans) get a handful of byte strings that their
  :class:`fuzz.draw.Draw` reads as typical cases.
"""
from __future__ import annotations

import glob
import hashlib
import os
import random
import sys
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = os.path.join(ROOT, "fuzz", "corpus")
VENUES = ("binance", "kraken", "coinbase", "coingecko")
FRAMES_PER_VENUE = 40  # simulator frames kept per venue: variety, not volume


def _write(target, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    path = os.path.join(d, "seed-" + hashlib.sha1(data).hexdigest()[:16])
    if not os.path.exists(path):
        with open(path, "wb") as fh:
            fh.write(data)
        return 1
    return 0


def _test_data():
    n = 0
    for venue in VENUES:
        for root in ("samples", "real"):
            for path in sorted(glob.glob(os.path.join(ROOT, "tests", "data", root, venue, "**", "*"),
                                         recursive=True)):
                if not os.path.isfile(path):
                    continue
                with open(path, "rb") as fh:
                    body = fh.read()
                if path.endswith(".jsonl"):
                    lines = [ln for ln in body.splitlines() if ln.strip()]
                    for ln in lines[:FRAMES_PER_VENUE]:
                        n += _write(f"normalize_{venue}", ln.strip())
                elif path.endswith(".json"):
                    n += _write(f"normalize_{venue}", body.strip())
    return n


def _simulator_frames(seconds=3.0):
    """Frames each connector receives from the simulators, malformed ones included."""
    from hftsig.connectors import BinanceConnector, CoinbaseConnector, KrakenConnector
    from hftsig.simulator import SimulatedExchanges
    frames = {v: [] for v in VENUES}
    lock = threading.Lock()

    def recorder(venue, conn):
        handle = conn._on_message

        def on_message(raw, ts_recv):
            with lock:
                if len(frames[venue]) < 4 * FRAMES_PER_VENUE:
                    frames[venue].append(bytes(raw) if not isinstance(raw, str) else raw.encode())
            return handle(raw, ts_recv)
        conn._on_message = on_message
        return conn

    with SimulatedExchanges(seed=7) as sim:
        conns = [recorder("binance", BinanceConnector(["BTC-USDT", "ETH-USDT"],
                                                      **sim.connector_kwargs("binance"))),
                 recorder("kraken", KrakenConnector(["BTC-USD", "ETH-USD"],
                                                    **sim.connector_kwargs("kraken"))),
                 recorder("coinbase", CoinbaseConnector(["BTC-USD", "ETH-USD"],
                                                        **sim.connector_kwargs("coinbase")))]
        for c in conns:
            c.start()
        time.sleep(seconds / 2)
        for venue in ("binance", "kraken", "coinbase"):
            sim.inject(venue, "malformed")
        time.sleep(seconds / 2)
        for c in conns:
            c.stop()
        import requests
        url = sim.connector_kwargs("coingecko")["rest_url"]
        body = requests.get(f"{url}/simple/price", params={
            "ids": "bitcoin,ethereum", "vs_currencies": "usd,eur",
            "include_last_updated_at": "true"}, timeout=5).content
        frames["coingecko"].append(body)
    n = 0
    rng = random.Random(0)
    for venue, got in frames.items():
        # the first frames (snapshots, acknowledgements) and a sample of the rest
        keep = got[:FRAMES_PER_VENUE // 2]
        rest = got[FRAMES_PER_VENUE // 2:]
        keep += rng.sample(rest, min(len(rest), FRAMES_PER_VENUE // 2))
        for data in keep:
            n += _write(f"normalize_{venue}", data)
    return n


def _passes(target, data, timeout=20.0):
    """True when ``data`` keeps the contract (run in a child: it may crash or hang)."""
    from fuzz.targets import TARGETS
    pid = os.fork()
    if pid == 0:  # the child
        try:
            TARGETS[target](data)
        except BaseException:
            os._exit(1)
        os._exit(0)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) == 0
        time.sleep(0.01)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return False


def _structured():
    """Byte strings for the targets that build their input with Draw.

    Only those that keep the contract today become seeds: the corpus must
    replay clean (findings belong in ``fuzz/regressions``).
    """
    rng = random.Random(16)
    n = 0
    numbers = [b"0", b"1", b"25.35190000", b"0.00000001", b"1e-7", b"67187.3358936566",
               b"18446744073709551615", b"1.7976931348623157e308", b"123456789012345678901",
               b"-0", b"0.1e1", b"5e-324", b"2.2250738585072014e-308"]
    for s in numbers:
        n += _write("normalize_numbers", s)
    for _ in range(24):
        for target in ("kraken_instrument", "tickscan", "book", "websocket_frames", "signature"):
            size = {"tickscan": 1200, "book": 200}.get(target, 120)
            data = bytes(rng.randrange(256) for _ in range(rng.randrange(8, size)))
            if _passes(target, data):
                n += _write(target, data)
    return n


def main():
    sys.path.insert(0, ROOT)
    n = _test_data()
    n += _simulator_frames()
    n += _structured()
    print(f"{n} new seed files under {os.path.relpath(CORPUS, ROOT)}")


if __name__ == "__main__":
    main()
