"""Messages per second, raw frame bytes -> tick records, per message type.

Three parsers see the same frames (same content; see the Kraken note):

* ``hftsig``: :class:`hftsig.market.normalize.Normalizer` ``.parse(frame, ts_recv)``,
  returning a ``TICK_DTYPE`` array;
* ``json+py``: ``json.loads`` plus straightforward Python that builds the
  same ``TICK_DTYPE`` records (the code below), the obvious way to write it;
* ``cryptofeed``: cryptofeed 2.4.1's own feed classes, their
  ``message_handler`` called directly with the frame (no network: the
  symbol tables and books are seeded first), driven without an event loop
  (``coro.send(None)``; the handlers never suspend) and with no-op
  callbacks, so only its parsing and object building are timed.

Kraken: cryptofeed 2.4.1 speaks Kraken's WebSocket **v1** (list-shaped
frames); it is fed the v1 frames carrying the same levels/trades/quotes as
the v2 frames hftsig parses.  Coinbase ``ticker`` is not a cryptofeed
channel (n/a).  Binance frames are combined-stream frames
(``{"stream":..,"data":..}``) because that is what cryptofeed's handler
expects; the raw ``/ws`` bookTicker frame is timed too (the 1M/s target).

Rates are medians over repetitions of CPU time of the benchmark thread
(``time.thread_time``), because wall time on a machine shared by several
jobs measures the other jobs; wall-clock medians are printed alongside.

Run: ``python -m benchmarks.normalize [--n 2000] [--reps 7] [--quick]``.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import statistics
import sys
import time

import numpy as np

from benchmarks.machine import describe
from hftsig.market import ticks as T
from hftsig.market.normalize import Normalizer

NAN = math.nan
TS = 1_700_000_000_000_000_000


# ---------------------------------------------------------------------------
# frames
# ---------------------------------------------------------------------------

def _walk(rng, n, start):
    return start * np.exp(np.cumsum(rng.normal(0, 2e-5, n)))


def make_frames(n, seed=0):
    """name -> dict(hftsig=[bytes], cryptofeed=[str] or None, exchange=str, setup=...)"""
    rng = np.random.default_rng(seed)
    mid = _walk(rng, n, 67000.0)
    out = {}

    def q(x, d):
        return f"{x:.{d}f}"

    # Binance ------------------------------------------------------------------
    bt = [json.dumps({"u": 400900217 + i, "s": "BTCUSDT", "b": q(mid[i] - 0.01, 8),
                      "B": q(rng.uniform(0.01, 5), 8), "a": q(mid[i] + 0.01, 8),
                      "A": q(rng.uniform(0.01, 5), 8)}, separators=(",", ":")) for i in range(n)]
    out["binance bookTicker (raw /ws)"] = dict(exchange="binance", hftsig=[s.encode() for s in bt],
                                               cryptofeed=None)
    comb = ['{"stream":"btcusdt@bookTicker","data":' + s + "}" for s in bt]
    out["binance bookTicker"] = dict(exchange="binance", hftsig=[s.encode() for s in comb],
                                     cryptofeed=comb)
    agg = ['{"stream":"btcusdt@aggTrade","data":' + json.dumps(
        {"e": "aggTrade", "E": 1672515782136 + i, "s": "BTCUSDT", "a": 12345 + i, "p": q(mid[i], 2),
         "q": q(rng.uniform(0.0001, 2), 5), "f": 100 + 2 * i, "l": 101 + 2 * i,
         "T": 1672515782135 + i, "m": bool(rng.random() < 0.5), "M": True},
        separators=(",", ":")) + "}" for i in range(n)]
    out["binance aggTrade"] = dict(exchange="binance", hftsig=[s.encode() for s in agg], cryptofeed=agg)
    dep = []
    for i in range(n):
        b = [[q(mid[i] - 0.01 * (k + 1) - rng.integers(0, 50) * 0.01, 2), q(rng.choice([0, rng.uniform(0, 3)]), 8)]
             for k in range(10)]
        a = [[q(mid[i] + 0.01 * (k + 1) + rng.integers(0, 50) * 0.01, 2), q(rng.choice([0, rng.uniform(0, 3)]), 8)]
             for k in range(10)]
        dep.append('{"stream":"btcusdt@depth@100ms","data":' + json.dumps(
            {"e": "depthUpdate", "E": 1672515782136 + i, "s": "BTCUSDT", "U": 1000 + 3 * i,
             "u": 1002 + 3 * i, "b": b, "a": a}, separators=(",", ":")) + "}")
    out["binance depthUpdate (20 levels)"] = dict(exchange="binance", hftsig=[s.encode() for s in dep],
                                                  cryptofeed=dep)

    # Kraken (v2 for hftsig, v1 of the same data for cryptofeed) ---------------------
    k2, k1 = [], []
    for i in range(n):
        p, qty = round(mid[i], 1), round(rng.uniform(0.0001, 2), 8)
        side = "buy" if rng.random() < 0.5 else "sell"
        t = 1695628116.925533 + i
        stamp = dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        k2.append(json.dumps({"channel": "trade", "type": "update", "data": [
            {"symbol": "BTC/USD", "side": side, "price": p, "qty": qty, "ord_type": "limit",
             "trade_id": 4665846 + i, "timestamp": stamp}]}, separators=(",", ":")))
        k1.append(json.dumps([337, [[q(p, 5), q(qty, 8), f"{t:.6f}", side[0], "l", ""]], "trade", "XBT/USD"],
                             separators=(",", ":")))
    out["kraken trade"] = dict(exchange="kraken", hftsig=[s.encode() for s in k2], cryptofeed=k1)
    k2, k1 = [], []
    for i in range(n):
        bid, ask = round(mid[i] - 0.05, 1), round(mid[i] + 0.05, 1)
        bq, aq = round(rng.uniform(0.01, 5), 8), round(rng.uniform(0.01, 5), 8)
        k2.append(json.dumps({"channel": "ticker", "type": "update", "data": [
            {"symbol": "BTC/USD", "bid": bid, "bid_qty": bq, "ask": ask, "ask_qty": aq, "last": bid,
             "volume": 997038.98383185, "vwap": 67012.5, "low": 66000.1, "high": 68000.2,
             "change": -12.5, "change_pct": -0.17}]}, separators=(",", ":")))
        k1.append(json.dumps([93, {"a": [q(ask, 5), 0, q(aq, 8)], "b": [q(bid, 5), 1, q(bq, 8)],
                                   "c": [q(bid, 5), "0.00100000"], "v": ["1.0", "997038.98383185"],
                                   "p": ["67012.5", "67012.5"], "t": [4966, 6717],
                                   "l": ["66000.1", "66000.1"], "h": ["68000.2", "68000.2"],
                                   "o": ["67000.0", "67000.0"]}, "ticker", "XBT/USD"],
                             separators=(",", ":")))
    out["kraken ticker"] = dict(exchange="kraken", hftsig=[s.encode() for s in k2], cryptofeed=k1)
    k2, k1 = [], []
    for i in range(n):
        t = 1695628116.925533 + i
        stamp = dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        bids = [(round(mid[i] - 0.1 * (k + 1), 1), round(rng.uniform(0.001, 3), 8)) for k in range(2)]
        asks = [(round(mid[i] + 0.1 * (k + 1), 1), round(rng.uniform(0.001, 3), 8)) for k in range(2)]
        k2.append(json.dumps({"channel": "book", "type": "update", "data": [
            {"symbol": "BTC/USD", "bids": [{"price": p, "qty": v} for p, v in bids],
             "asks": [{"price": p, "qty": v} for p, v in asks], "checksum": 3310070434,
             "timestamp": stamp}]}, separators=(",", ":")))
        k1.append(json.dumps([336, {"a": [[q(p, 1), q(v, 8), f"{t:.6f}"] for p, v in asks]},
                              {"b": [[q(p, 1), q(v, 8), f"{t:.6f}"] for p, v in bids], "c": "3310070434"},
                              "book-10", "XBT/USD"], separators=(",", ":")))
    out["kraken book update (4 levels)"] = dict(exchange="kraken", hftsig=[s.encode() for s in k2], cryptofeed=k1)

    # Coinbase ------------------------------------------------------------------
    cb_l2, cb_tr, cb_tk = [], [], []
    for i in range(n):
        t = 1675974770.714964 + i
        stamp = dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "855Z"
        ups = [{"side": "bid" if k % 2 == 0 else "offer", "event_time": stamp,
                "price_level": q(mid[i] + (0.01 * (k + 1) if k % 2 else -0.01 * (k + 1)), 2),
                "new_quantity": q(rng.choice([0, rng.uniform(0, 3)]), 8)} for k in range(4)]
        cb_l2.append(json.dumps({"channel": "l2_data", "client_id": "", "timestamp": stamp,
                                 "sequence_num": 10 + i, "events": [{"type": "update", "product_id": "BTC-USD",
                                                                     "updates": ups}]},
                                separators=(",", ":")))
        cb_tr.append(json.dumps({"channel": "market_trades", "client_id": "", "timestamp": stamp,
                                 "sequence_num": 10 + i, "events": [{"type": "update", "trades": [
                                     {"trade_id": str(90000000 + i), "product_id": "BTC-USD",
                                      "price": q(mid[i], 2), "size": q(rng.uniform(0.0001, 1), 8),
                                      "side": "BUY" if rng.random() < 0.5 else "SELL", "time": stamp}]}]},
                                separators=(",", ":")))
        cb_tk.append(json.dumps({"channel": "ticker", "client_id": "", "timestamp": stamp,
                                 "sequence_num": 10 + i, "events": [{"type": "update", "tickers": [
                                     {"type": "ticker", "product_id": "BTC-USD", "price": q(mid[i], 2),
                                      "volume_24_h": "16038.28770938", "low_24_h": "21835.29",
                                      "high_24_h": "23011.18", "low_52_w": "15460", "high_52_w": "48240",
                                      "price_percent_chg_24_h": "-4.15775596190603",
                                      "best_bid": q(mid[i] - 0.01, 2), "best_bid_quantity": q(rng.uniform(0, 5), 8),
                                      "best_ask": q(mid[i] + 0.01, 2), "best_ask_quantity": q(rng.uniform(0, 5), 8)}]}]},
                                separators=(",", ":")))
    out["coinbase l2_data update (4 levels)"] = dict(exchange="coinbase", hftsig=[s.encode() for s in cb_l2],
                                                     cryptofeed=cb_l2)
    out["coinbase market_trades"] = dict(exchange="coinbase", hftsig=[s.encode() for s in cb_tr], cryptofeed=cb_tr)
    out["coinbase ticker"] = dict(exchange="coinbase", hftsig=[s.encode() for s in cb_tk], cryptofeed=None)

    # CoinGecko ------------------------------------------------------------------
    cg = [json.dumps({"bitcoin": {"usd": round(mid[i], 4), "eur": round(mid[i] * 0.92, 4),
                                  "last_updated_at": 1711356300 + i},
                      "ethereum": {"usd": round(mid[i] / 20, 4), "eur": round(mid[i] / 21.7, 4),
                                   "last_updated_at": 1711356300 + i}}, separators=(",", ":"))
          for i in range(n)]
    out["coingecko simple/price (4 prices)"] = dict(exchange="coingecko", hftsig=[s.encode() for s in cg],
                                                    cryptofeed=None)
    return out


# ---------------------------------------------------------------------------
# peer 1: json.loads + plain Python building the same records
# ---------------------------------------------------------------------------

_CANON = {"BTCUSDT": b"BTC-USDT", "BTC/USD": b"BTC-USD", "BTC-USD": b"BTC-USD",
          "bitcoin": "BTC", "ethereum": "ETH"}


def _rfc3339(s):
    base, _, frac = s[:-1].partition(".")
    t = dt.datetime.fromisoformat(base).replace(tzinfo=dt.timezone.utc)
    return int(t.timestamp()) * 1_000_000_000 + int((frac + "000000000")[:9])


def py_binance(frame, ts):
    m = json.loads(frame)
    d = m["data"] if "stream" in m else m
    e = d.get("e")
    rows = []
    if e is None:
        rows.append((ts, ts, 1, 1, 0, 1, 0, _CANON[d["s"]], float(d["b"]), float(d["B"]), float(d["a"]),
                     float(d["A"]), NAN, NAN, d["u"], d["u"]))
    elif e == "aggTrade":
        rows.append((d["T"] * 1_000_000, ts, 1, 2, -1 if d["m"] else 1, 1, 0, _CANON[d["s"]], NAN, NAN, NAN, NAN,
                     float(d["p"]), float(d["q"]), d["a"], d["a"]))
    elif e == "depthUpdate":
        sym, te = _CANON[d["s"]], d["E"] * 1_000_000
        for key, side in (("b", 1), ("a", -1)):
            for p, q in d[key]:
                rows.append((te, ts, 1, 3, side, 0, 0, sym, NAN, NAN, NAN, NAN, float(p), float(q), d["u"], d["U"]))
        if rows:
            rows[-1] = rows[-1][:5] + (1,) + rows[-1][6:]
    return np.array(rows, dtype=T.TICK_DTYPE)


def py_kraken(frame, ts):
    m = json.loads(frame)
    ch = m.get("channel")
    rows = []
    for d in m.get("data", ()):
        sym = _CANON[d["symbol"]]
        if ch == "trade":
            rows.append((_rfc3339(d["timestamp"]), ts, 2, 2, 1 if d["side"] == "buy" else -1, 1, 0, sym,
                         NAN, NAN, NAN, NAN, float(d["price"]), float(d["qty"]), d["trade_id"], d["trade_id"]))
        elif ch == "ticker":
            te = _rfc3339(d["timestamp"]) if "timestamp" in d else ts
            rows.append((te, ts, 2, 1, 0, 1, 0, sym, float(d["bid"]), float(d["bid_qty"]), float(d["ask"]),
                         float(d["ask_qty"]), NAN, NAN, -1, -1))
        elif ch == "book":
            te = _rfc3339(d["timestamp"]) if "timestamp" in d else ts
            kind = 4 if m["type"] == "snapshot" else 3
            start = len(rows)
            for key, side in (("bids", 1), ("asks", -1)):
                for lv in d[key]:
                    rows.append((te, ts, 2, kind, side, 0, 0, sym, NAN, NAN, NAN, NAN, float(lv["price"]),
                                 float(lv["qty"]), -1, -1))
            if len(rows) > start:
                rows[-1] = rows[-1][:5] + (1, d.get("checksum", 0)) + rows[-1][7:]
    return np.array(rows, dtype=T.TICK_DTYPE)


def py_coinbase(frame, ts):
    m = json.loads(frame)
    ch, seq = m["channel"], m.get("sequence_num", -1)
    te = _rfc3339(m["timestamp"])
    rows = []
    for ev in m["events"]:
        if ch == "l2_data":
            sym = _CANON[ev["product_id"]]
            kind = 4 if ev["type"] == "snapshot" else 3
            for u in ev["updates"]:
                rows.append((_rfc3339(u["event_time"]), ts, 3, kind, 1 if u["side"] == "bid" else -1, 0, 0, sym,
                             NAN, NAN, NAN, NAN, float(u["price_level"]), float(u["new_quantity"]), seq, seq))
            if rows:
                rows[-1] = rows[-1][:5] + (1,) + rows[-1][6:]
        elif ch == "market_trades":
            for t in ev["trades"]:
                tid = int(t["trade_id"])
                # Coinbase's side is the maker's: the aggressor is the other side
                rows.append((_rfc3339(t["time"]), ts, 3, 2, -1 if t["side"] == "BUY" else 1, 1, 0,
                             _CANON[t["product_id"]], NAN, NAN, NAN, NAN, float(t["price"]), float(t["size"]),
                             tid, tid))
        elif ch == "ticker":
            for t in ev["tickers"]:
                rows.append((te, ts, 3, 1, 0, 1, 0, _CANON[t["product_id"]], float(t["best_bid"]),
                             float(t["best_bid_quantity"]), float(t["best_ask"]), float(t["best_ask_quantity"]),
                             NAN, NAN, seq, seq))
    return np.array(rows, dtype=T.TICK_DTYPE)


def py_coingecko(frame, ts):
    m = json.loads(frame)
    rows = []
    for coin, quotes in m.items():
        te = quotes["last_updated_at"] * 1_000_000_000
        for vs, price in quotes.items():
            if "_" not in vs:
                sym = f"{_CANON[coin]}-{vs.upper()}".encode()
                rows.append((te, ts, 4, 5, 0, 1, 0, sym, NAN, NAN, NAN, NAN, float(price), NAN, -1, -1))
    return np.array(rows, dtype=T.TICK_DTYPE)


PY = {"binance": py_binance, "kraken": py_kraken, "coinbase": py_coinbase, "coingecko": py_coingecko}


# ---------------------------------------------------------------------------
# peer 2: cryptofeed 2.4.1
# ---------------------------------------------------------------------------

def cryptofeed_handlers():
    """exchange -> (feed, reset) with symbol tables and books seeded offline."""
    import logging

    from cryptofeed.defines import L2_BOOK, TICKER, TRADES
    from cryptofeed.exchanges import Binance, Coinbase, Kraken
    from cryptofeed.symbols import Symbols
    from cryptofeed.types import OrderBook

    logging.getLogger("feedhandler").setLevel(logging.CRITICAL)
    info = {"tick_size": {}, "instrument_type": {}}
    Symbols.set(Binance.id, {"BTC-USDT": "BTCUSDT"}, info)
    Symbols.set(Kraken.id, {"BTC-USD": "XBT/USD"}, info)
    Symbols.set(Coinbase.id, {"BTC-USD": "BTC-USD"}, info)

    async def noop(obj, ts):
        return None

    cbs = {TRADES: noop, TICKER: noop, L2_BOOK: noop}
    feeds = {}
    b = Binance(symbols=["BTC-USDT"], channels=[TRADES, TICKER, L2_BOOK], callbacks=dict(cbs))

    def reset_binance():
        b._l2_book["BTC-USDT"] = OrderBook(b.id, "BTC-USDT", max_depth=0)
        b.last_update_id["BTC-USDT"] = 999

    feeds["binance"] = (b, reset_binance)
    k = Kraken(symbols=["BTC-USD"], channels=[TRADES, TICKER, L2_BOOK], callbacks=dict(cbs))
    snap = json.dumps([336, {"as": [["67001.0", "1.0", "1695628116.0"]],
                             "bs": [["66999.0", "1.0", "1695628116.0"]]}, "book-10", "XBT/USD"])

    def reset_kraken():
        _drive(k.message_handler(snap, None, 1.0))

    feeds["kraken"] = (k, reset_kraken)
    c = Coinbase(symbols=["BTC-USD"], channels=[TRADES, L2_BOOK], callbacks=dict(cbs))
    csnap = json.dumps({"channel": "l2_data", "client_id": "", "timestamp": "2023-02-09T20:32:50.714964855Z",
                        "sequence_num": 0, "events": [{"type": "snapshot", "product_id": "BTC-USD", "updates": [
                            {"side": "bid", "event_time": "1970-01-01T00:00:00Z", "price_level": "66999.0",
                             "new_quantity": "1.0"}]}]})

    def reset_coinbase():
        _drive(c.message_handler(csnap, None, 1.0))

    feeds["coinbase"] = (c, reset_coinbase)
    return feeds


def _drive(coro):
    try:
        coro.send(None)
    except StopIteration:
        return
    coro.close()
    raise RuntimeError("cryptofeed handler suspended: it would need an event loop")


# ---------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------

def time_runs(contenders, reps):
    """Run the contenders in interleaved rounds (so they share the machine's load).

    contenders: list of (fn, frames, reset or None).  Returns per contender the
    median (cpu-time rate, wall-time rate) in messages/s and the list of
    per-round cpu-time rates (for paired ratios).
    """
    cpu = [[] for _ in contenders]
    wall = [[] for _ in contenders]
    for _ in range(reps):
        for j, (fn, frames, reset) in enumerate(contenders):
            if reset is not None:
                reset()
            c0, w0 = time.thread_time(), time.perf_counter()
            fn(frames)
            c1, w1 = time.thread_time(), time.perf_counter()
            cpu[j].append(len(frames) / max(c1 - c0, 1e-9))
            wall[j].append(len(frames) / max(w1 - w0, 1e-9))
    return [((statistics.median(c), statistics.median(w)), c) for c, w in zip(cpu, wall)]


def paired_ratio(a, b):
    """Median over rounds of a[i] / b[i]."""
    return statistics.median(x / y for x, y in zip(a, b))


def check_agreement(frames):
    """hftsig and json+py give the same records for every frame (else the race is unfair)."""
    for name, spec in frames.items():
        n = Normalizer(spec["exchange"])
        py = PY[spec["exchange"]]
        for f in spec["hftsig"][:200]:
            a, b = n.parse(f, TS), py(f, TS)
            assert a.tobytes() == b.tobytes(), (name, f, a, b)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="distinct frames per message type")
    ap.add_argument("--reps", type=int, default=7, help="repetitions (median reported)")
    ap.add_argument("--quick", action="store_true", help="n=300, reps=3")
    args = ap.parse_args(argv)
    if args.quick:
        args.n, args.reps = 300, 3
    frames = make_frames(args.n)
    check_agreement(frames)
    try:
        import cryptofeed
        feeds = cryptofeed_handlers()
        cf_version = cryptofeed.__version__ if hasattr(cryptofeed, "__version__") else "2.4.1"
    except Exception as exc:  # cryptofeed is optional (bench extra)
        print(f"cryptofeed unavailable: {exc!r}", file=sys.stderr)
        feeds, cf_version = {}, None

    print(f"# hftsig normalize benchmark, {dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC")
    print(f"# {describe()}")
    print(f"# {args.n} distinct frames per type, {args.reps} interleaved rounds; medians of CPU-time "
          f"rates of the thread (wall-clock in brackets); ratios are medians of per-round "
          f"ratios; cryptofeed {cf_version}")
    head = ("| message type | hftsig msg/s | json+py msg/s | cryptofeed msg/s | "
            "hftsig / json+py | hftsig / cryptofeed |")
    print(head)
    print("|" + "---|" * 6)
    results = {}
    for name, spec in frames.items():
        norm = Normalizer(spec["exchange"])
        parse = norm.parse

        def run_h(fs, parse=parse):
            for f in fs:
                parse(f, TS)

        py = PY[spec["exchange"]]

        def run_p(fs, py=py):
            for f in fs:
                py(f, TS)

        contenders = [(run_h, spec["hftsig"], None), (run_p, spec["hftsig"], None)]
        if spec["cryptofeed"] is not None and spec["exchange"] in feeds:
            feed, reset = feeds[spec["exchange"]]
            handler = feed.message_handler

            def run_c(fs, handler=handler):
                for f in fs:
                    _drive(handler(f, None, 1.0))

            contenders.append((run_c, spec["cryptofeed"], reset))
        res = time_runs(contenders, args.reps)
        (h, hr), (p, pr) = res[0], res[1]
        c, cr = res[2] if len(res) > 2 else (None, None)
        results[name] = dict(hftsig=h, json_py=p, cryptofeed=c,
                             ratio_json_py=paired_ratio(hr, pr),
                             ratio_cryptofeed=None if c is None else paired_ratio(hr, cr))

        def fmt(r):
            return "n/a" if r is None else f"{r[0]:,.0f} ({r[1]:,.0f})"

        r = results[name]
        ratio_c = "n/a" if c is None else f"{r['ratio_cryptofeed']:.1f}x"
        print(f"| {name} | {fmt(h)} | {fmt(p)} | {fmt(c)} | {r['ratio_json_py']:.1f}x | {ratio_c} |",
              flush=True)
    return results


if __name__ == "__main__":
    main()
