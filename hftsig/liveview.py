"""Live terminal view of an Aggregator: tops of book, NBBO, feed rates, signal lines.

On a terminal the frame is redrawn in place with ANSI cursor codes; anywhere
else (a pipe, a log file, CI) plain text frames are printed one after another,
less often, with no escape codes.

Other parts add lines under "signals" through :meth:`LiveView.add_signal`
(thread-safe, e.g. from an aggregator callback); the newest ``max_signals``
are shown.

Examples
--------
>>> import io
>>> from hftsig.aggregator import Aggregator
>>> from hftsig.recorder import ReplayConnector
>>> from hftsig.ticks import empty_ticks, KIND_QUOTE, FLAG_LAST
>>> t = empty_ticks(1); t["kind"] = KIND_QUOTE; t["flags"] = FLAG_LAST
>>> t["exchange"] = 1; t["symbol"] = b"BTC-USDT"; t["ts_event"] = t["ts_recv"] = 5
>>> t["bid_px"], t["ask_px"], t["bid_sz"], t["ask_sz"] = 100.0, 100.5, 1.0, 2.0
>>> agg = Aggregator([ReplayConnector(t)], clock="data")
>>> with agg:
...     agg.wait_finished(5)
True
>>> view = LiveView(agg, stream=io.StringIO())
>>> view.add_signal("example signal")
>>> frame = view.render()
>>> "binance" in frame and "100.5" in frame and "example signal" in frame
True
"""
from __future__ import annotations

import math
import sys
import threading
import time
from collections import deque

from hftsig.interrupts import SignalNap

__all__ = ["LiveView", "render_summary", "ignore_interrupts"]

_CLEAR_EOL = "\x1b[K"
_CLEAR_EOS = "\x1b[J"
_STOP_POLL_S = 0.05  # how often a run with a ``stop`` event looks at it


def _fmt_px(x):
    if x is None or not math.isfinite(x):
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.2f}"
    if abs(x) >= 1:
        return f"{x:.4f}"
    return f"{x:.8f}"


def _fmt_sz(x):
    if x is None or not math.isfinite(x):
        return "-"
    return f"{x:.4g}"


def _fmt_us(x):
    return "-" if not math.isfinite(x) else (f"{x:.0f}" if x >= 10 else f"{x:.1f}")


def _table(headers, rows):
    widths = [len(h) for h in headers]
    for r in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, r)]
    line = lambda cells: "  ".join(  # noqa: E731
        c.rjust(w) if i > 1 else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return [line(headers)] + [line(r) for r in rows]


def _feed_rows(agg):
    rows = []
    for name, s in agg.stats().items():
        lat = s["latency_us"]
        qlat = s["queue_latency_us"]
        conn = s["connected"]
        rows.append([
            name, f"{s['ticks']:,}", f"{s['rate']:,.0f}", f"{s['msg_rate']:,.0f}",
            f"{_fmt_us(lat['p50'])}/{_fmt_us(lat['p99'])}",
            f"{_fmt_us(qlat['p50'])}/{_fmt_us(qlat['p99'])}",
            str(s["reconnects"]), str(s["gaps"]), f"{s['dropped']:,}",
            {True: "yes", False: "no", None: "?"}.get(conn, str(conn)),
        ])
    return _table(["FEED", "TICKS", "TICKS/s", "MSG/s", "LAT p50/p99 us",
                   "QUEUE p50/p99 us", "RECONN", "GAPS", "DROPPED", "UP"], rows)


def render_summary(agg, elapsed):
    """The end-of-run summary: ticks, rates, latency, gaps, reconnects, drops per feed."""
    lines = [f"hftsig summary after {elapsed:.1f} s"]
    rows = []
    for name, s in agg.stats().items():
        lat = s["latency_us"]
        rows.append([
            name, f"{s['ticks']:,}", f"{s['messages']:,}",
            f"{s['ticks'] / max(elapsed, 1e-9):,.0f}",
            f"{_fmt_us(lat['p50'])}/{_fmt_us(lat['p99'])}",
            f"{_fmt_us(s['queue_latency_us']['p50'])}/{_fmt_us(s['queue_latency_us']['p99'])}",
            str(s["reconnects"]), str(s["gaps"]), f"{s['dropped']:,}",
        ])
    lines += _table(["FEED", "TICKS", "MESSAGES", "TICKS/s", "LAT p50/p99 us",
                     "QUEUE p50/p99 us", "RECONNECTS", "GAPS", "DROPPED"], rows)
    a = agg.aggregator_stats()
    # with dispatch="connector" the connector threads drain: the same clock, their time
    who = "drain" if agg.dispatch == "connector" else "worker"
    lines.append(f"aggregator: {a['ticks']:,} ticks in {a['chunks']:,} chunks, {who} busy "
                 f"{a['worker_busy_s']:.2f} s, queue high water {a['queue_high_water']:,}"
                 f"/{a['queue_size']:,}, callback errors {a['callback_errors']}")
    return "\n".join(lines)


class ignore_interrupts:
    """Context manager ignoring Ctrl-C (SIGINT) and SIGTERM while a shutdown runs.

    The first Ctrl-C (or ``docker stop``'s SIGTERM) ends the live view; a second
    one arriving while the feeds stop would cut the shutdown and the summary
    off.  Only the main thread can change signal handlers; elsewhere this does
    nothing.
    """

    def __enter__(self):
        import signal

        self._old = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, signal.SIG_IGN)
        return self

    def __exit__(self, *exc):
        import signal

        for sig, old in self._old.items():
            signal.signal(sig, old)


class LiveView:
    """Render an aggregator's state to a terminal, refreshed in place.

    Parameters
    ----------
    agg : Aggregator
    interval : float, default 0.5
        Seconds between redraws on a terminal.
    plain_interval : float, default 5.0
        Seconds between frames when the stream is not a terminal.
    stream : file, default sys.stdout
    symbols : list of str, optional
        Symbols to show (default: every symbol seen).
    max_signals : int, default 8
    title : str, default "hftsig live"
    """

    def __init__(self, agg, *, interval=0.5, plain_interval=5.0, stream=None, symbols=None,
                 max_signals=8, title="hftsig live"):
        if not interval > 0 or not plain_interval > 0:
            raise ValueError("interval and plain_interval must be > 0 seconds")
        self.agg = agg
        self.interval = float(interval)
        self.plain_interval = float(plain_interval)
        self.stream = sys.stdout if stream is None else stream
        self.symbols = symbols
        self.title = title
        self._signals = deque(maxlen=int(max_signals))
        self._signal_count = 0
        self._sig_lock = threading.Lock()
        self._prev_lines = 0
        self._t0 = time.monotonic()
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())

    def add_signal(self, text):
        """Show ``text`` (one line) in the signals section; thread-safe."""
        stamp = time.strftime("%H:%M:%S")
        with self._sig_lock:
            self._signals.append(f"{stamp} {text}")
            self._signal_count += 1

    def render(self):
        """The current frame as text (no escape codes)."""
        agg = self.agg
        q = agg.quotes()
        syms = self.symbols or sorted(set(q["symbol"]))
        up = time.monotonic() - self._t0
        lines = [f"{self.title}  {time.strftime('%H:%M:%S', time.gmtime())} UTC  "
                 f"up {up:.1f} s", ""]
        rows = []
        for r in q.itertuples(index=False):
            if r.symbol not in syms:
                continue
            if r.source:
                age = f"{r.age_ms:,.0f}" if math.isfinite(r.age_ms) else "-"
                rows.append([r.exchange, r.symbol, _fmt_px(r.bid_px), _fmt_sz(r.bid_sz),
                             _fmt_px(r.ask_px), _fmt_sz(r.ask_sz), _fmt_px(r.trade_px), age,
                             r.source])
            elif math.isfinite(r.price):
                rows.append([r.exchange, r.symbol, "-", "-", "-", "-", _fmt_px(r.price), "-",
                             "ref"])
        lines += _table(["EXCHANGE", "SYMBOL", "BID", "BID SZ", "ASK", "ASK SZ", "LAST",
                         "AGE ms", "FROM"], rows)
        lines.append("")
        rows = []
        for s in syms:
            nb = agg.nbbo(s)
            if nb.bid_venue is None and nb.ask_venue is None:
                rows.append([s, "-", "-", "-", "-", "-", "0"])
                continue
            spread = "-"
            if nb.bid_venue and nb.ask_venue:
                mid = (nb.bid_px + nb.ask_px) / 2
                spread = f"{(nb.ask_px - nb.bid_px) / mid * 1e4:.2f}"
            rows.append([s, _fmt_px(nb.bid_px), nb.bid_venue or "-", _fmt_px(nb.ask_px),
                         nb.ask_venue or "-", spread, str(nb.venues)])
        lines += _table(["NBBO", "BID", "BID VENUE", "ASK", "ASK VENUE", "SPREAD bps",
                         "VENUES"], rows)
        lines.append("")
        lines += _feed_rows(agg)
        with self._sig_lock:
            sig = list(self._signals)
            count = self._signal_count
        lines.append("")
        lines.append(f"SIGNALS ({count} so far)")
        lines += sig if sig else ["(none)"]
        return "\n".join(lines)

    def draw(self):
        """Write one frame: in place on a terminal, appended otherwise."""
        frame = self.render()
        out = self.stream
        if self.tty:
            lines = frame.split("\n")
            buf = []
            if self._prev_lines:
                buf.append(f"\x1b[{self._prev_lines}F")  # up to the first line of the last frame
            buf.append("\n".join(line + _CLEAR_EOL for line in lines))
            buf.append("\n" + _CLEAR_EOS)
            out.write("".join(buf))
            self._prev_lines = len(lines)
        else:
            out.write(frame + "\n\n")
        out.flush()

    def run(self, seconds=None, stop=None):
        """Redraw until ``seconds`` pass, ``stop`` (a threading.Event) is set or Ctrl-C.

        Returns True when it ended by itself, False on Ctrl-C (KeyboardInterrupt
        is caught so the caller can print a summary).
        """
        end = None if seconds is None else time.monotonic() + float(seconds)
        step = self.interval if self.tty else self.plain_interval
        try:
            # naps a signal cuts short: Ctrl-C handed by the kernel to a connector
            # thread would otherwise wait out the main thread's sleep (5 s when plain)
            with SignalNap() as nap:
                while True:
                    self.draw()
                    now = time.monotonic()
                    if end is not None and now >= end:
                        return True
                    wake = now + (step if end is None else min(step, end - now))
                    if stop is None:
                        nap(wake - now)
                        continue
                    while not stop.is_set() and time.monotonic() < wake:
                        nap(min(_STOP_POLL_S, wake - time.monotonic()))
                    if stop.is_set():
                        self.draw()
                        return True
        except KeyboardInterrupt:
            return False
