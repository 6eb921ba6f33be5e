"""The hftsig command line: --help everywhere, replay, run/record on the simulators, live view."""
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hftsig.aggregator import Aggregator
from hftsig.cli import build_parser, main
from hftsig.liveview import LiveView, render_summary
from hftsig.recorder import Recorder, ReplayConnector, read_ticks
from hftsig.ticks import FLAG_LAST, KIND_QUOTE, empty_ticks, exchange_code

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["demo", "simulate", "run", "record", "replay", "notebook", "arb"]


def hftsig(*args, timeout=120):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "hftsig", *args], env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_every_command_is_registered():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS)


@pytest.mark.parametrize("cmd", [[]] + [[c] for c in COMMANDS])
def test_help_everywhere(cmd, capsys):
    with pytest.raises(SystemExit) as exc:
        main(cmd + ["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: hftsig")


def quotes(n=400):
    rng = np.random.default_rng(0)
    t = empty_ticks(n)
    t["kind"] = KIND_QUOTE
    t["flags"] = FLAG_LAST
    t["exchange"] = [exchange_code(e) for e in rng.choice(["kraken", "coinbase"], n)]
    t["symbol"] = b"ETH-BTC"
    t["bid_px"] = 0.05 + rng.random(n) * 1e-3
    t["ask_px"] = t["bid_px"] + 1e-5
    t["bid_sz"] = t["ask_sz"] = 1.0
    t["ts_recv"] = 10**18 + np.arange(n) * 10**6
    t["ts_event"] = t["ts_recv"] - 5000
    return t


def test_replay_command_prints_summary_and_nbbo(tmp_path):
    t = quotes()
    with Recorder(tmp_path / "rec") as rec:
        rec.write(t)
    r = hftsig("replay", str(tmp_path / "rec"))
    assert r.returncode == 0, r.stderr
    assert f"replayed {len(t)} ticks" in r.stdout
    last = {}
    for row in t:
        last[int(row["exchange"])] = row
    best_bid = max(v["bid_px"] for v in last.values())
    assert f"NBBO ETH-BTC: bid {best_bid}" in r.stdout
    assert "replay" in r.stdout and "TICKS" in r.stdout


def test_replay_command_on_a_missing_recording(tmp_path):
    r = hftsig("replay", str(tmp_path / "nothing"))
    assert r.returncode == 2 and "no recording" in r.stderr


def test_bad_endpoint_option_is_a_clear_error(tmp_path):
    r = hftsig("run", "--simulate", "--ws-url", "nasdaq=ws://x", "--seconds", "1")
    assert r.returncode != 0 and "EXCHANGE=URL" in r.stderr


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _agg_with_quotes():
    agg = Aggregator([ReplayConnector(quotes(50))], clock="data")
    agg.start()
    assert agg.wait_finished(10)
    agg.stop()
    return agg


def test_live_view_redraws_in_place_on_a_terminal_and_plain_elsewhere():
    agg = _agg_with_quotes()
    term = _Terminal()
    view = LiveView(agg, stream=term)
    view.draw()
    view.draw()
    out = term.getvalue()
    n_lines = view.render().count("\n") + 1
    assert f"\x1b[{n_lines}F" in out  # cursor back up over the previous frame
    assert "\x1b[K" in out and "ETH-BTC" in out
    plain = io.StringIO()
    view = LiveView(agg, stream=plain)
    view.draw()
    view.draw()
    assert "\x1b" not in plain.getvalue()
    assert plain.getvalue().count("NBBO") == 2
    s = render_summary(agg, 1.0)
    assert "replay" in s and "50" in s


def test_live_view_signals_are_thread_safe_and_bounded():
    import threading

    agg = _agg_with_quotes()
    view = LiveView(agg, stream=io.StringIO(), max_signals=3)
    th = [threading.Thread(target=lambda k=k: [view.add_signal(f"sig {k}-{i}") for i in range(50)])
          for k in range(4)]
    for x in th:
        x.start()
    for x in th:
        x.join()
    frame = view.render()
    assert "SIGNALS (200 so far)" in frame
    assert frame.count(" sig ") == 3
