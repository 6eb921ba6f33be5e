"""``hftsig simulate``: run the exchange simulators in the foreground.

Output: a header line, then one line per exchange, ``<exchange> ws_url=<url>
rest_url=<url>`` (only the URLs it has; other programs parse these lines),
then a rate line every ``--interval`` seconds.  Ctrl-C or SIGTERM stops it
cleanly; it then prints how punctually the model's updates went out
(``schedule: N releases, late p50 .. us p99 .. us max .. us``, since the
previous such line) and ``simulators stopped``.  SIGUSR1 prints a
``schedule:`` line at once (a benchmark marks its measuring window so).
"""
from __future__ import annotations

import gc
import signal
import sys
import threading
import time

from hftsig.interrupts import SignalNap, terminate_as_interrupt
from hftsig.simulator.exchanges import SimulatedExchanges, consecutive_ports
from hftsig.simulator.market import DEFAULT_SYMBOLS


def _total_sent(sim):
    out = {}
    for e, d in sim.stats().items():
        n = sum(d.get("sent", {}).values())
        n += sum(v for k, v in d.get("rest", {}).get("responses", {}).items() if isinstance(k, int))
        out[e] = n
    return out


def run_simulate(args, out=None):
    """Start the simulators, print URLs, then per-exchange messages/s until
    ``args.seconds`` pass or Ctrl-C; returns 0."""
    out = sys.stdout if out is None else out
    symbols = [s.strip() for s in args.symbols.split(",")] if args.symbols else DEFAULT_SYMBOLS
    exchanges = [e.strip() for e in args.exchanges.split(",") if e.strip()]
    port = getattr(args, "port", None)
    sim = SimulatedExchanges(symbols, exchanges=exchanges, seed=args.seed, rate=args.rate, depth=args.depth,
                             size_churn=getattr(args, "size_churn", 0.05),
                             stagger=getattr(args, "stagger", 1),
                             host=getattr(args, "host", "127.0.0.1"),
                             ports=None if port is None else consecutive_ports(port))
    try:
        sim.start()
    except (OSError, RuntimeError) as exc:  # a port taken, an address not ours
        print(f"hftsig simulate: error: cannot listen on {sim.host}"
              f"{'' if port is None else f' ports {port}..{port + 4}'}: {exc}", file=sys.stderr)
        return 1
    # Usually a dedicated process: move the start-up objects (modules, books, servers)
    # out of the collector's view, so full collections do not walk them again
    # and again while the simulators stream, and collect the young generation
    # less often: the streams allocate thousands of short-lived containers per
    # model step (freed by reference counting), which at the default threshold
    # of 700 cost the process about a tenth of its CPU in needless collections.
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(20_000, *thresholds[1:])
    previous_usr1 = None
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGUSR1"):
        # a benchmark marks its measuring window with SIGUSR1
        previous_usr1 = signal.signal(signal.SIGUSR1, lambda signum, frame: _print_schedule(sim, out))
    try:
        with terminate_as_interrupt():  # `docker stop` sends SIGTERM: stop as cleanly as on Ctrl-C
            _stream(sim, args, out)
    except KeyboardInterrupt:
        pass
    finally:
        sim.stop()
        gc.set_threshold(*thresholds)  # as it was (run_simulate may run inside another program)
        gc.unfreeze()
        if previous_usr1 is not None:
            signal.signal(signal.SIGUSR1, previous_usr1)
    _print_schedule(sim, out)
    print("simulators stopped", file=out)
    return 0


def _stream(sim, args, out):
    """Print the URLs, then a rate line every ``args.interval`` seconds until
    ``args.seconds`` pass (forever if None)."""
    print(f"hftsig simulate: {len(sim.symbols)} symbols, seed {args.seed}, {args.rate:g} updates/s", file=out)
    if sim.host in ("", "0.0.0.0", "::"):
        print(f"  listening on every interface ({sim.host or '*'}); from another host or container "
              "use this machine's name in place of 127.0.0.1", file=out)
    for e, kw in sim.urls().items():
        urls = "  ".join(f"{k}={v}" for k, v in kw.items() if v)
        print(f"  {e:<10} {urls}", file=out)
    print("messages/s sent (websocket frames + REST responses); Ctrl-C stops", file=out, flush=True)
    start = time.monotonic()
    m = sim.model
    last_t, last = start, _total_sent(sim)
    last_model = (m.n_book_updates, m.n_trades)
    end = None if args.seconds is None else start + args.seconds
    next_line = start + args.interval
    with SignalNap() as nap:
        while True:
            now = time.monotonic()
            due = next_line if end is None else min(next_line, end)
            if now < due:
                nap(due - now)  # a signal (SIGUSR1, SIGTERM) wakes it: its handler runs now
                continue
            cur = _total_sent(sim)
            dt = max(now - last_t, 1e-9)
            rates = "  ".join(f"{e}={(cur[e] - last[e]) / dt:,.0f}" for e in cur)
            model = (m.n_book_updates, m.n_trades)
            print(f"[{now - start:6.1f}s] {rates}  | model: book updates/s="
                  f"{(model[0] - last_model[0]) / dt:,.0f} trades/s={(model[1] - last_model[1]) / dt:,.0f}",
                  file=out, flush=True)
            last_t, last, last_model = now, cur, model
            if end is not None and now >= end:
                return
            next_line = now + args.interval


def _print_schedule(sim, out):
    """One ``schedule:`` line for the releases since the previous one."""
    sched = sim.schedule_stats(reset=True)
    if sched["releases"]:
        print(f"schedule: {sched['releases']} releases, late p50 {sched['late_p50_us']:.0f} us"
              f" p99 {sched['late_p99_us']:.0f} us max {sched['late_max_us']:.0f} us",
              file=out, flush=True)
    else:
        print("schedule: 0 releases", file=out, flush=True)


