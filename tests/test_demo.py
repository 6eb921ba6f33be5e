"""The demo job: simulated feeds -> aggregator -> live view -> summary, with a plugin."""
import io

from hftsig.demo import DEMO_SYMBOLS, run_demo


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
