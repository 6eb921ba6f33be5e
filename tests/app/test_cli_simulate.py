"""``hftsig simulate``: the command line that serves the loopback simulators.

Its output, the process state it leaves behind (garbage collector, signal
wake-up fd), and how it stops: on a signal, also one the kernel hands to a
thread that is not the main one.
"""
import re
import socket
import threading
import time

import pytest


def test_simulate_command_prints_urls_and_rates(capsys):
    import gc

    from hftsig.app.cli import main

    thresholds = gc.get_threshold()
    assert main(["simulate", "--seconds", "0.4", "--interval", "0.2", "--symbols", "BTC-USDT,ETH-USDT",
                 "--exchanges", "binance,kraken", "--size-churn", "0.5"]) == 0
    out = capsys.readouterr().out
    assert "binance" in out and "ws://127.0.0.1:" in out and "/v2" in out
    assert "book updates/s=" in out and "simulators stopped" in out
    assert re.search(r"schedule: \d+ releases, late p50 \d+ us p99 \d+ us max \d+ us", out)
    assert "coinbase" not in out
    # it tunes the collector while it streams, and leaves it as it was
    assert gc.get_threshold() == thresholds and gc.get_freeze_count() == 0


def test_simulate_command_leaves_the_signal_wakeup_fd_as_it_was():
    import signal

    from hftsig.app.cli import main

    r, w = socket.socketpair()
    w.setblocking(False)
    previous = signal.set_wakeup_fd(w.fileno())
    try:
        assert main(["simulate", "--seconds", "0.2", "--interval", "0.1", "--symbols", "BTC-USDT",
                     "--exchanges", "kraken"]) == 0
        assert signal.set_wakeup_fd(previous) == w.fileno()
    finally:
        signal.set_wakeup_fd(previous)
        r.close()
        w.close()


class _Lines:
    """A text sink for run_simulate's output, read line by line from another thread."""

    def __init__(self):
        import queue

        self.lines = queue.Queue()
        self._part = ""

    def write(self, text):
        self._part += text
        while "\n" in self._part:
            line, self._part = self._part.split("\n", 1)
            self.lines.put(line)

    def flush(self):
        pass

    def wait_for(self, prefix, timeout):
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            if line.startswith(prefix):
                return line


def test_simulate_answers_a_signal_the_kernel_gives_another_thread():
    """Python runs signal handlers on the main thread only.  A signal the kernel
    hands to another thread (a busy simulator thread, a native library's worker)
    used to wait until the main thread's ``time.sleep`` ended: a benchmark's
    SIGUSR1 mark was answered half a minute late.  Here each SIGUSR1 goes to a
    thread that is not the main one, and must be answered at once."""
    import signal

    from hftsig.app.cli import build_parser
    from hftsig.simulator.cli import run_simulate

    if not hasattr(signal, "pthread_kill") or not hasattr(signal, "SIGUSR1"):
        pytest.skip("needs pthread_kill and SIGUSR1")
    out = _Lines()
    args = build_parser().parse_args(["simulate", "--seconds", "30", "--interval", "3600",
                                      "--symbols", "BTC-USDT", "--exchanges", "kraken"])
    delays, errors = [], []

    def poke():
        try:
            out.wait_for("messages/s sent", 20)
            for _ in range(5):
                t0 = time.monotonic()
                signal.pthread_kill(threading.get_ident(), signal.SIGUSR1)  # this thread only
                out.wait_for("schedule: ", 10)
                delays.append(time.monotonic() - t0)
        except Exception as exc:  # reported below, on the test's thread
            errors.append(exc)
        finally:
            # `docker stop`: SIGTERM ends it as cleanly as Ctrl-C
            signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)

    t0 = time.monotonic()
    helper = threading.Thread(target=poke)
    helper.start()
    assert run_simulate(args, out) == 0
    helper.join(10)
    assert not errors and len(delays) == 5
    assert max(delays) < 2.0, delays
    assert time.monotonic() - t0 < 20  # stopped by the SIGTERM, not by --seconds
    assert out.wait_for("simulators stopped", 5)


@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_simulate_command_stops_on_signals(sig):
    import os
    import signal
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = dict(os.environ, PYTHONPATH=root)
    proc = subprocess.Popen([sys.executable, "-m", "hftsig", "simulate", "--exchanges", "kraken,coingecko",
                             "--symbols", "BTC-USD"], stdout=subprocess.PIPE, text=True, env=env)
    try:
        lines = [proc.stdout.readline() for _ in range(3)]
        assert any(line.split()[:1] == ["kraken"] for line in lines)
        proc.send_signal(getattr(signal, sig))
        out, _ = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0 and "simulators stopped" in out
