"""The hftsig command line: --help everywhere, replay, run/record on the simulators, live view."""
import io
import re
import signal
import threading
import time

import numpy as np
import pytest

from hftsig.app.cli import build_parser, main
from hftsig.app.liveview import LiveView, render_summary
from hftsig.market.aggregator import Aggregator
from hftsig.market.recorder import (
    Recorder,
    ReplayConnector,
    closing_status_mask,
    read_ticks,
    recording_book_depths,
)
from hftsig.market.ticks import FLAG_LAST, KIND_QUOTE, empty_ticks, exchange_code, exchange_name

COMMANDS = ["demo", "simulate", "run", "record", "replay", "notebook", "arb", "doctor"]
SIM_EXCHANGES = "binance,kraken,coinbase,coingecko"


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


def test_replay_command_prints_summary_and_nbbo(tmp_path, capsys):
    t = quotes()
    with Recorder(tmp_path / "rec") as rec:
        rec.write(t)
    assert main(["replay", str(tmp_path / "rec")]) == 0
    r = capsys.readouterr()
    assert f"replayed {len(t)} ticks" in r.out
    last = {}
    for row in t:
        last[int(row["exchange"])] = row
    best_bid = max(v["bid_px"] for v in last.values())
    assert f"NBBO ETH-BTC: bid {best_bid}" in r.out
    # a row per recorded venue, with its own count
    for ex in ("kraken", "coinbase"):
        assert _summary_ticks(r.out, ex) == int((t["exchange"] == exchange_code(ex)).sum())


def _usage_error(argv, capsys):
    """The one stderr line of a usage error (exit code 2)."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and "usage:" not in err, err
    return err


def test_replay_command_on_a_missing_recording(tmp_path, capsys):
    err = _usage_error(["replay", str(tmp_path / "nothing")], capsys)
    assert err.startswith("hftsig replay: error: no recording at")


def test_bad_endpoint_option_is_a_clear_error(tmp_path, capsys):
    err = _usage_error(["run", "--simulate", "--ws-url", "nasdaq=ws://x", "--seconds", "1"],
                       capsys)
    assert err.startswith("hftsig run: error: argument --ws-url: expected EXCHANGE=URL")


class _Terminal(io.StringIO):
    def isatty(self):
        return True


def _agg_with_quotes():
    agg = Aggregator([ReplayConnector(quotes(50))], clock="data")
    agg.start()
    assert agg.wait_finished(10)
    agg.stop()
    return agg


_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def test_live_view_redraws_in_place_on_a_terminal_and_plain_elsewhere(monkeypatch):
    """On a terminal each frame goes back over the previous one and stays within
    the terminal: a line wider than it would wrap (and a frame taller would scroll),
    and the way back up would then miss rows, leaving stale copies above."""
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("LINES", "30")
    agg = _agg_with_quotes()
    term = _Terminal()
    view = LiveView(agg, stream=term)
    for i in range(40):
        view.add_signal(f"signal {i} " + "x" * 300)
    view.draw()
    first = term.getvalue()
    view.draw()
    second = term.getvalue()[len(first):]
    view.close()
    first_rows = _ESCAPE.sub("", first).rstrip("\n").split("\n")
    assert "ETH-BTC" in first and "signal 39" in first
    assert len(first_rows) <= 30 and max(len(r) for r in first_rows) <= 100
    # the second frame starts by going up over every row of the first
    assert second.count("\x1b[1A") == len(first_rows) - 1 and "\x1b[2K" in second
    plain = io.StringIO()
    view = LiveView(agg, stream=plain)
    view.draw()
    view.draw()
    assert "\x1b" not in plain.getvalue()
    assert plain.getvalue().count("NBBO") == 2
    s = render_summary(agg, 1.0)
    assert "replay" in s and "50" in s


@pytest.mark.skipif(not hasattr(signal, "pthread_kill"), reason="needs signal.pthread_kill")
@pytest.mark.parametrize("with_stop", [False, True])
def test_ctrl_c_handed_to_another_thread_ends_the_live_view_at_once(with_stop):
    # the kernel may hand Ctrl-C to any thread (a connector's); Python runs the
    # handler on the main thread, which must not sleep out a 5 s plain-text frame
    view = LiveView(_agg_with_quotes(), stream=io.StringIO(), plain_interval=5.0)
    stop = threading.Event() if with_stop else None
    t = threading.Timer(0.2, lambda: signal.pthread_kill(threading.get_ident(), signal.SIGINT))
    t.start()
    t0 = time.monotonic()
    ended_by_itself = view.run(seconds=30, stop=stop)
    waited = time.monotonic() - t0
    t.join()
    assert ended_by_itself is False
    assert 0.15 < waited < 2.0, waited


def test_live_view_with_a_stop_event_ends_when_it_is_set():
    view = LiveView(_agg_with_quotes(), stream=io.StringIO(), plain_interval=5.0)
    done = threading.Event()
    t = threading.Timer(0.2, done.set)
    t.start()
    t0 = time.monotonic()
    assert view.run(stop=done) is True
    assert time.monotonic() - t0 < 2.0
    t.join()
    assert view.stream.getvalue().count("NBBO") == 2  # the first frame and the last


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


def _summary_ticks(out, feed):
    assert "hftsig summary" in out, out
    for line in out.split("hftsig summary", 1)[1].splitlines():
        parts = line.split()
        if parts and parts[0] == feed and len(parts) > 2 and parts[1].replace(",", "").isdigit():
            return int(parts[1].replace(",", ""))
    raise AssertionError(f"no summary line for {feed}:\n{out}")


def test_record_on_the_simulators_then_replay(tmp_path, capsys):
    rec = tmp_path / "sim"
    assert main(["record", str(rec), "--simulate", "--exchanges", SIM_EXCHANGES,
                 "--symbols", "ETH-BTC,BTC-USDT", "--seconds", "2",
                 "--flush-interval", "0.2"]) == 0
    out = capsys.readouterr().out
    for feed in SIM_EXCHANGES.split(","):
        assert _summary_ticks(out, feed) > 0
    ticks = read_ticks(rec)
    assert f"recorded {len(ticks):,} ticks" in out
    if "kraken" in SIM_EXCHANGES:  # the Kraken connector's subscribed depth rides along
        assert recording_book_depths(rec) == {"kraken": 10}
    assert set(ticks["exchange"].tolist()) == {exchange_code(e) for e in SIM_EXCHANGES.split(",")}
    assert main(["replay", str(rec)]) == 0
    out = capsys.readouterr().out
    # the feeds' disconnects written when the recording stopped are left out of the
    # replay: the final NBBO is the market's last, with its venues
    closing = closing_status_mask(ticks)
    assert 0 < closing.sum() <= len(SIM_EXCHANGES.split(","))
    kept = len(ticks) - int(closing.sum())
    assert f"replayed {kept:,} ticks" in out
    feeds = {exchange_name(c) for c in np.unique(ticks["exchange"])}
    assert sum(_summary_ticks(out, feed) for feed in feeds) == kept
    for sym in ("ETH-BTC", "BTC-USDT"):
        assert f"NBBO {sym}: bid " in out and f"NBBO {sym}: no venue up" not in out


@pytest.mark.skipif(not hasattr(__import__("signal"), "pthread_kill"), reason="needs pthread_kill")
def test_record_without_an_end_stops_cleanly_on_sigterm_sent_to_another_thread(tmp_path, capsys):
    """`docker stop` sends SIGTERM; the kernel may hand it to any thread.  The
    recording ends as on Ctrl-C: feeds stopped, files closed, summary printed."""
    import signal

    rec = tmp_path / "stopped"
    killer = threading.Timer(3.0, lambda: signal.pthread_kill(threading.get_ident(), signal.SIGTERM))
    before = signal.getsignal(signal.SIGTERM)
    killer.start()
    t0 = time.monotonic()
    try:
        assert main(["record", str(rec), "--simulate", "--exchanges", "kraken,coinbase",
                     "--symbols", "BTC-USDT", "--flush-interval", "0.2"]) == 0
    finally:
        killer.cancel()
    assert time.monotonic() - t0 < 15  # not the 5 s progress sleep, nor forever
    assert signal.getsignal(signal.SIGTERM) is before
    out = capsys.readouterr().out
    assert "hftsig summary" in out
    ticks = read_ticks(rec)
    assert len(ticks) > 0 and f"recorded {len(ticks):,} ticks" in out
    assert not _threads_left("hftsig")


_CTRL_C_SCRIPT = """
import signal, sys, threading, time
from hftsig.app.cli import main
# imported up front, so that the interrupts land in the session's start, not in a
# first import: one inside asyncio's leaves its submodules behind and breaks the
# next import in this process, one inside numpy.random's first import was lost (the
# handler ran in abc.register under numpy.random._generator; the run went on)
import hftsig.connectors, hftsig.market.aggregator, hftsig.app.liveview, hftsig.simulator  # noqa: F401
import numpy.ma, numpy.random  # noqa: F401

main_id = threading.get_ident()
for delay in (0.0, 0.002, 0.005, 0.01, 0.02, 0.05, 0.5):
    go = threading.Event()

    def ctrl_c():
        go.wait()
        time.sleep(delay)
        signal.pthread_kill(main_id, signal.SIGINT)

    sender = threading.Thread(target=ctrl_c)
    sender.start()
    go.set()
    rc = main(["run", "--simulate", "--exchanges", "kraken,coinbase", "--symbols", "BTC-USDT",
               "--seconds", "20", "--no-view"])
    sender.join()
    print("RESULT", delay, rc, flush=True)
    print("RESULT", delay, rc, file=sys.stderr, flush=True)
"""


def test_an_interrupt_while_the_session_starts_is_a_line_not_a_traceback():
    """Ctrl-C a few ms after `hftsig run --simulate` starts (simulators and feeds
    starting): the command stops what it started and says so (130) instead of letting
    a KeyboardInterrupt escape; half a second in, the session is up and the run ends
    with its summary (0).  In a fresh interpreter: in this test process earlier tests
    have warmed everything a session starts, and a start takes a few ms."""
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _CTRL_C_SCRIPT], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    results = [line.split()[1:] for line in proc.stdout.splitlines() if line.startswith("RESULT")]
    rcs = {float(d): int(rc) for d, rc in results}
    assert list(rcs) == [0.0, 0.002, 0.005, 0.01, 0.02, 0.05, 0.5] and set(rcs.values()) <= {0, 130}
    assert rcs[0.5] == 0 and 130 in rcs.values(), rcs
    # each interrupted start said so on stderr, right before its result line
    err = proc.stderr.splitlines()
    for i, line in enumerate(err):
        if line.startswith("RESULT") and line.endswith(" 130"):
            # ("hftsig: interrupted" when it came before the arguments were read)
            assert err[i - 1] in ("hftsig run: interrupted", "hftsig: interrupted")
    assert proc.stdout.count("hftsig summary") == list(rcs.values()).count(0)


def test_run_simulate_shows_the_live_view_as_plain_text_when_piped(capsys):
    assert main(["run", "--simulate", "--exchanges", SIM_EXCHANGES, "--symbols", "ETH-BTC",
                 "--seconds", "2.5"]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out  # not a terminal: no escape codes
    assert "NBBO" in out and "hftsig summary" in out
    for feed in SIM_EXCHANGES.split(","):
        assert _summary_ticks(out, feed) > 0
    assert not [t for t in threading.enumerate() if t.name.startswith("hftsig")]


def _threads_left(prefix, timeout=10.0):
    """Threads named ``prefix...`` still alive after waiting up to ``timeout`` for them to
    end (the simulator loop thread ends within its stop timeout, longer on a loaded machine)."""
    deadline = time.monotonic() + timeout
    while True:
        left = [t for t in threading.enumerate() if t.name.startswith(prefix)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.02)


def test_bad_symbol_is_a_clear_error_and_leaves_no_thread(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--simulate", "--symbols", "NOPE", "--seconds", "1"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "hftsig run: error" in err and "'NOPE'" in err
    assert not _threads_left("hftsig-sim")


def test_run_with_connector_dispatch_and_its_clear_error(capsys):
    """--dispatch connector: the connector threads run state and consumers (every feed
    still arrives, the summary says whose time it was); with --overflow drop_oldest it
    is refused with the aggregator's reason, and the simulator it had started stops."""
    assert main(["run", "--simulate", "--exchanges", SIM_EXCHANGES, "--symbols", "ETH-BTC",
                 "--seconds", "2.5", "--no-view", "--dispatch", "connector"]) == 0
    out = capsys.readouterr().out
    for feed in SIM_EXCHANGES.split(","):
        assert _summary_ticks(out, feed) > 0
    assert "drain busy" in out and "worker busy" not in out
    with pytest.raises(SystemExit) as exc:
        main(["run", "--simulate", "--symbols", "ETH-BTC", "--seconds", "1",
              "--dispatch", "connector", "--overflow", "drop_oldest"])
    assert exc.value.code == 2
    assert "dispatch='connector' needs overflow='block'" in capsys.readouterr().err
    assert not _threads_left("hftsig")


@pytest.mark.parametrize("argv", [
    [cmd, *extra, "--seconds", bad]
    for cmd, extra in (("simulate", []), ("run", ["--simulate"]), ("record", ["rec"]),
                       ("arb", []), ("demo", []), ("doctor", ["--simulate"]))
    for bad in ("-5", "0", "nan", "soon")
])
def test_durations_must_be_positive(argv, capsys):
    err = _usage_error(argv, capsys)
    assert err.startswith(f"hftsig {argv[0]}: error: argument --seconds: expected a number "
                          f"of seconds > 0, got '{argv[-1]}'")


@pytest.mark.parametrize("argv, says", [
    (["run", "--simulate", "--symbols", "FOO"], "unknown symbol 'FOO' (known: BTC-USDT, "),
    (["record", "rec", "--simulate", "--symbols", "BTC-XYZ"], "unknown symbol 'BTC-XYZ' (known: "),
    (["simulate", "--symbols", "FOO"], "unknown symbol 'FOO' (known: BTC-USDT, "),
    (["arb", "--symbols", "ETH-USDT,FOO"], "unknown symbol 'FOO' (known: BTC-USDT, "),
    (["run", "--symbols", "FOO"], "unknown symbol 'FOO' (symbols are BASE-QUOTE"),
    (["run", "--simulate", "--exchanges", "nasdaq"], "unknown exchange 'nasdaq' (known: binance"),
    (["simulate", "--exchanges", "kraken,nasdaq"], "unknown exchange 'nasdaq' (known: binance"),
    (["arb", "--exchanges", "coingecko"], "unknown exchange 'coingecko' (known: binance, kraken, "
     "coinbase)"),
    (["doctor", "--venues", "nasdaq"], "unknown exchange 'nasdaq'"),
    (["arb", "--fees", "binance=cheap"], "argument --fees: expected bps"),
    (["simulate", "--port", "70000"], "argument --port: expected a port 1..65531"),
    (["frobnicate"], "argument COMMAND: invalid choice: 'frobnicate'"),
])
def test_usage_errors_are_one_line_in_command_line_terms(argv, says, capsys):
    err = _usage_error(argv + (["--seconds", "1"] if argv[0] != "frobnicate" else []), capsys)
    prog = "hftsig" if argv[0] == "frobnicate" else f"hftsig {argv[0]}"
    assert err.startswith(f"{prog}: error: {says}"), err
    assert "pass prices=" not in err and "Error(" not in err


def test_an_empty_recording_is_an_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    err = _usage_error(["replay", str(tmp_path / "empty")], capsys)
    assert err.startswith("hftsig replay: error: the recording at ") and "holds no ticks" in err
    with Recorder(tmp_path / "nothing-written"):
        pass
    err = _usage_error(["replay", str(tmp_path / "nothing-written")], capsys)
    assert "holds no ticks" in err


def test_a_usage_error_from_the_installed_command_is_one_line_and_exit_2():
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "hftsig", "run", "--simulate", "--symbols",
                           "FOO", "--seconds", "1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.startswith("hftsig run: error: unknown symbol 'FOO' (known: ")
    assert proc.stderr.count("\n") == 1 and proc.stdout == ""


def _free_port_run(n):
    """The first of ``n`` consecutive free ports on 127.0.0.1 (held open while probing)."""
    import socket

    for _ in range(50):
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            first = probe.getsockname()[1]
        if first + n > 65535:
            continue
        held = []
        try:
            for p in range(first, first + n):
                s = socket.socket()
                held.append(s)
                s.bind(("127.0.0.1", p))
            return first
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise AssertionError("no run of free ports")


def test_simulate_on_fixed_ports_serves_another_process(capsys):
    """`hftsig simulate --port N` in one process, `hftsig run --ws-url/--rest-url` at
    the printed URLs in another: the ports are N.. in the documented order."""
    import subprocess
    import sys

    first = _free_port_run(5)
    sim = subprocess.Popen([sys.executable, "-m", "hftsig", "simulate", "--port", str(first),
                            "--symbols", "BTC-USDT", "--interval", "60"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        urls = {}
        for line in sim.stdout:
            if line.startswith("messages/s"):
                break
            parts = line.split()
            if parts and parts[0] in ("binance", "kraken", "coinbase", "coingecko"):
                urls[parts[0]] = dict(p.split("=", 1) for p in parts[1:])
        assert urls == {
            "binance": {"ws_url": f"ws://127.0.0.1:{first}",
                        "rest_url": f"http://127.0.0.1:{first + 1}"},
            "kraken": {"ws_url": f"ws://127.0.0.1:{first + 2}/v2"},
            "coinbase": {"ws_url": f"ws://127.0.0.1:{first + 3}"},
            "coingecko": {"rest_url": f"http://127.0.0.1:{first + 4}/api/v3"},
        }, urls
        argv = ["run", "--exchanges", "binance,kraken,coinbase", "--symbols", "BTC-USDT",
                "--seconds", "2", "--no-view"]
        for ex, kw in urls.items():
            for key, url in kw.items():
                argv += [f"--{key.replace('_', '-')}", f"{ex}={url}"]
        assert main(argv) == 0
        out = capsys.readouterr().out
        for feed in ("binance", "kraken", "coinbase"):
            assert _summary_ticks(out, feed) > 0
    finally:
        sim.send_signal(signal.SIGINT)
        rest, err = sim.communicate(timeout=30)
    assert "simulators stopped" in rest and "Traceback" not in err


def test_simulate_says_so_when_its_port_is_taken(capsys):
    import socket

    from hftsig.simulator.cli import run_simulate

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        args = build_parser().parse_args(["simulate", "--exchanges", "coinbase", "--port",
                                          str(port - 3), "--seconds", "1"])
        assert run_simulate(args) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"hftsig simulate: error: cannot listen on 127.0.0.1 ports {port - 3}.")
    assert err.count("\n") == 1


def test_a_reader_closing_the_pipe_ends_the_command_quietly():
    """`hftsig simulate | head -1`: the next line finds the pipe closed; the command
    stops its simulators and ends with 141 (128 + SIGPIPE), no traceback."""
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-m", "hftsig", "simulate", "--exchanges", "kraken",
                             "--symbols", "BTC-USDT", "--interval", "0.1", "--seconds", "60"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout.readline().startswith(b"hftsig simulate:")
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141
    assert "Traceback" not in err and "Exception ignored" not in err, err
