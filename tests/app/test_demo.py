"""The demo job: simulated feeds -> aggregator -> live view -> summary, with a plugin."""
import io

from hftsig.app.demo import DEMO_SYMBOLS, run_demo


def test_demo_runs_every_feed_and_plugins_report(capsys):
    seen = []

    def plugin(agg, view):
        def on_quotes(ticks):
            seen.append(len(ticks))
            if len(seen) == 1:
                view.add_signal("first quote batch seen")

        agg.on_tick(on_quotes, kinds=["quote", "book_delta", "book_snapshot"])
        return lambda: f"plugin saw {sum(seen)} book/quote ticks"

    out = io.StringIO()
    assert run_demo(seconds=2.5, stream=out, plugins=[plugin]) == 0
    text = out.getvalue()
    summary = text.split("hftsig summary", 1)[1]
    for feed in ("binance", "kraken", "coinbase", "coingecko"):
        line = next(x for x in summary.splitlines() if x.startswith(feed))
        assert int(line.split()[1].replace(",", "")) > 0, line
    assert "first quote batch seen" in text  # the signal reached the live view
    assert f"plugin saw {sum(seen)} book/quote ticks" in text and sum(seen) > 0
    for sym in DEMO_SYMBOLS:
        assert sym in text
    # Coinbase's trades come every 250 ms: their latency is shown apart, labelled
    assert "* coinbase: batched or polled by protocol (trades every 250 ms)" in summary


def test_no_mispricing_is_injected_too_late_to_be_seen():
    """The demo injects a 1 s mispricing every 3 s; a 3.3 s run ends before its
    first one could be over and seen, so none is injected (one used to be, in the
    run's last moments, and the summary counted it 'still under way')."""
    out = io.StringIO()
    assert run_demo(seconds=3.3, stream=out) == 0
    text = out.getvalue()
    assert "still under way" not in text
    assert "# injected" not in text and "injected mispricings" not in text


def test_ctrl_c_ends_the_demo_with_a_summary_not_a_failure():
    # Ctrl-C soon after the feeds start, before CoinGecko's first poll answered:
    # the summary of what arrived and exit code 0, not "no ticks from" and 1
    import signal
    import threading

    timers = []

    def interrupt_soon(agg, view, sim):
        sim.inject("coingecko", "stall", seconds=10)  # its first poll hangs: a silent feed

        def on_first(ticks):
            if not timers:
                # Ctrl-C as the kernel may hand it: to a thread other than the main one
                timers.append(threading.Timer(0.2, lambda: signal.pthread_kill(
                    threading.get_ident(), signal.SIGINT)))
                timers[0].start()

        agg.on_tick(on_first)

    out = io.StringIO()
    assert run_demo(seconds=30, stream=out, plugins=[interrupt_soon]) == 0
    text = out.getvalue()
    assert timers, "no tick arrived"
    summary = text.split("hftsig summary", 1)[1]
    assert "interrupted\n" in text
    assert "no ticks from" not in text
    assert "no ticks yet from: coingecko (interrupted after" in text, text[-1500:]
    for feed in ("binance", "kraken", "coinbase"):
        line = next(x for x in summary.splitlines() if x.startswith(feed))
        assert int(line.split()[1].replace(",", "")) > 0, line
