"""Live terminal view of an Aggregator: tops of book, NBBO, feed rates, signal lines.

On a terminal the frame is redrawn in place by ``rich``'s live display (which
keeps it within the terminal's height and width, so a long signal line or a
short window never leaves stale copies of the frame above it); anywhere else
(a pipe, a log file, CI) plain text frames are printed one after another, less
often, with no escape codes.

Latency columns leave out what a venue sends in timed batches or what is
polled (a connector's ``batched_kinds``: Coinbase's trades, every 250 ms;
CoinGecko's prices): waiting for the batch is the protocol, not slowness.  A
note under the feed table gives their latency apart.

Other parts add lines under "signals" through :meth:`LiveView.add_signal`
(thread-safe, e.g. from an aggregator callback); the newest ``max_signals``
are shown.

Examples
--------
>>> import io
>>> from hftsig.market.aggregator import Aggregator
>>> from hftsig.market.recorder import ReplayConnector
>>> from hftsig.market.ticks import empty_ticks, KIND_QUOTE, FLAG_LAST
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

__all__ = ["LiveView", "render_summary", "ignore_interrupts", "batched_notes"]

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


_FEED_HEADERS = ["FEED", "TICKS", "TICKS/s", "MSG/s", "LAT p50/p99 us", "QUEUE p50/p99 us",
                 "RECONN", "GAPS", "DROPPED", "UP"]


def _feed_rows(agg):
    rows = []
    for name, s in agg.stats().items():
        lat = s["latency_us"]
        qlat = s["queue_latency_us"]
        conn = s["connected"]
        rows.append([
            name, f"{s['ticks']:,}", f"{s['rate']:,.0f}", f"{s['msg_rate']:,.0f}",
            f"{_fmt_us(lat['p50'])}/{_fmt_us(lat['p99'])}" + ("*" if _has_batched(s) else ""),
            f"{_fmt_us(qlat['p50'])}/{_fmt_us(qlat['p99'])}",
            str(s["reconnects"]), str(s["gaps"]), f"{s['dropped']:,}",
            {True: "yes", False: "no", None: "?"}.get(conn, str(conn)),
        ])
    return rows


def _has_batched(s):
    lat = s.get("batched_latency_us")
    return bool(s.get("batched_kinds")) and lat is not None and math.isfinite(lat["p50"])


def _fmt_period(seconds):
    return f"{seconds * 1e3:.0f} ms" if seconds < 1 else f"{seconds:g} s"


def batched_notes(agg):
    """One line per feed with batched or polled records: what and their latency apart."""
    notes = []
    for name, s in agg.stats().items():
        if not _has_batched(s):
            continue
        lat = s["batched_latency_us"]
        kinds = " and ".join(f"{k}s every {_fmt_period(v)}" for k, v in s["batched_kinds"].items())
        notes.append(f"* {name}: batched or polled by protocol ({kinds}); their latency p50/p99 "
                     f"{lat['p50'] / 1e3:,.0f}/{lat['p99'] / 1e3:,.0f} ms is that wait, kept out "
                     "of LAT")
    return notes


def render_summary(agg, elapsed):
    """The end-of-run summary: ticks, rates, latency, gaps, reconnects, drops per feed."""
    lines = [f"hftsig summary after {elapsed:.1f} s"]
    rows = []
    for name, s in agg.stats().items():
        lat = s["latency_us"]
        rows.append([
            name, f"{s['ticks']:,}", f"{s['messages']:,}",
            f"{s['ticks'] / max(elapsed, 1e-9):,.0f}",
            f"{_fmt_us(lat['p50'])}/{_fmt_us(lat['p99'])}" + ("*" if _has_batched(s) else ""),
            f"{_fmt_us(s['queue_latency_us']['p50'])}/{_fmt_us(s['queue_latency_us']['p99'])}",
            str(s["reconnects"]), str(s["gaps"]), f"{s['dropped']:,}",
        ])
    lines += _table(["FEED", "TICKS", "MESSAGES", "TICKS/s", "LAT p50/p99 us",
                     "QUEUE p50/p99 us", "RECONNECTS", "GAPS", "DROPPED"], rows)
    lines += batched_notes(agg)
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

    :meth:`run` redraws until a time, an event or Ctrl-C; :meth:`draw` draws
    one frame (on a terminal the display then stays live until :meth:`close`);
    :meth:`render` gives the frame as plain text.

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
        self._live = None  # rich's live display, on a terminal, from the first draw on
        self._t0 = time.monotonic()
        isatty = getattr(self.stream, "isatty", None)
        self.tty = bool(isatty and isatty())

    def add_signal(self, text):
        """Show ``text`` (one line) in the signals section; thread-safe."""
        stamp = time.strftime("%H:%M:%S")
        with self._sig_lock:
            self._signals.append(f"{stamp} {text}")
            self._signal_count += 1

    def _sections(self):
        """The frame's parts: title, tables (title, headers, rows), notes, signals."""
        agg = self.agg
        q = agg.quotes()
        syms = self.symbols or sorted(set(q["symbol"]))
        up = time.monotonic() - self._t0
        title = (f"{self.title}  {time.strftime('%H:%M:%S', time.gmtime())} UTC  "
                 f"up {up:.1f} s")
        quotes = []
        for r in q.itertuples(index=False):
            if r.symbol not in syms:
                continue
            if r.source:
                age = f"{r.age_ms:,.0f}" if math.isfinite(r.age_ms) else "-"
                quotes.append([r.exchange, r.symbol, _fmt_px(r.bid_px), _fmt_sz(r.bid_sz),
                               _fmt_px(r.ask_px), _fmt_sz(r.ask_sz), _fmt_px(r.trade_px), age,
                               r.source])
            elif math.isfinite(r.price):
                quotes.append([r.exchange, r.symbol, "-", "-", "-", "-", _fmt_px(r.price), "-",
                               "ref"])
        nbbo = []
        for s in syms:
            nb = agg.nbbo(s)
            if nb.bid_venue is None and nb.ask_venue is None:
                nbbo.append([s, "-", "-", "-", "-", "-", "0"])
                continue
            spread = "-"
            if nb.bid_venue and nb.ask_venue:
                mid = (nb.bid_px + nb.ask_px) / 2
                spread = f"{(nb.ask_px - nb.bid_px) / mid * 1e4:.2f}"
            nbbo.append([s, _fmt_px(nb.bid_px), nb.bid_venue or "-", _fmt_px(nb.ask_px),
                         nb.ask_venue or "-", spread, str(nb.venues)])
        tables = [
            (["EXCHANGE", "SYMBOL", "BID", "BID SZ", "ASK", "ASK SZ", "LAST", "AGE ms", "FROM"],
             quotes),
            (["NBBO", "BID", "BID VENUE", "ASK", "ASK VENUE", "SPREAD bps", "VENUES"], nbbo),
            (_FEED_HEADERS, _feed_rows(agg)),
        ]
        with self._sig_lock:
            sig = list(self._signals)
            count = self._signal_count
        return title, tables, batched_notes(agg), (count, sig)

    def render(self):
        """The current frame as text (no escape codes)."""
        title, tables, notes, (count, sig) = self._sections()
        lines = [title]
        for headers, rows in tables:
            lines.append("")
            lines += _table(headers, rows)
        lines += notes
        lines.append("")
        lines.append(f"SIGNALS ({count} so far)")
        lines += sig if sig else ["(none)"]
        return "\n".join(lines)

    def renderable(self):
        """The current frame as a ``rich`` renderable (what a terminal shows)."""
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        title, tables, notes, (count, sig) = self._sections()
        parts = [Text(title, style="bold")]
        for headers, rows in tables:
            table = Table(box=None, padding=(0, 2, 0, 0), pad_edge=False, collapse_padding=True,
                          header_style="bold")
            for i, h in enumerate(headers):
                # names on the left, numbers on the right, as in the plain frame
                table.add_column(h, justify="left" if i < 2 else "right", no_wrap=True)
            for r in rows:
                table.add_row(*r)
            parts += [Text(""), table]
        parts += [Text(n, style="dim", no_wrap=True, overflow="ellipsis") for n in notes]
        parts += [Text(""), Text(f"SIGNALS ({count} so far)", style="bold")]
        # one row per signal, cut at the terminal's width: a wrapped line would
        # make the frame taller than the rows it was given
        parts += [Text(x, no_wrap=True, overflow="ellipsis") for x in sig] or [Text("(none)")]
        return Group(*parts)

    def draw(self):
        """Write one frame: in place on a terminal (rich's live display), appended otherwise."""
        out = self.stream
        if not self.tty:
            out.write(self.render() + "\n\n")
            out.flush()
            return
        if self._live is None:
            from rich.console import Console
            from rich.live import Live

            console = Console(file=out, force_terminal=True)
            # stray prints to the real stdout/stderr go above the frame, not into it
            own = out is sys.stdout
            self._live = Live(console=console, auto_refresh=False, transient=False,
                              redirect_stdout=own, redirect_stderr=own,
                              vertical_overflow="ellipsis")
            self._live.start()
        self._live.update(self.renderable(), refresh=True)

    def close(self):
        """End the live display (the last frame stays on screen); plain output: nothing."""
        live, self._live = self._live, None
        if live is not None:
            live.stop()

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
        finally:
            self.close()
