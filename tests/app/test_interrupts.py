"""hftsig.interrupts: SIGTERM as Ctrl-C, naps any signal cuts short, joins a cut-short start
does not break."""
import signal
import socket
import threading
import time

import pytest

from hftsig.interrupts import SignalNap, join_thread, terminate_as_interrupt

needs_pthread_kill = pytest.mark.skipif(not hasattr(signal, "pthread_kill"),
                                        reason="needs signal.pthread_kill")


def _later(seconds, fn):
    t = threading.Timer(seconds, fn)
    t.start()
    return t


@needs_pthread_kill
def test_a_signal_delivered_to_another_thread_ends_the_main_threads_nap_at_once():
    seen = []
    previous = signal.signal(signal.SIGUSR1, lambda signum, frame: seen.append(signum))
    try:
        with SignalNap() as nap:
            # the Timer's thread sends the signal to itself: not to the main thread
            t = _later(0.2, lambda: signal.pthread_kill(threading.get_ident(), signal.SIGUSR1))
            t0 = time.monotonic()
            nap(30.0)
            waited = time.monotonic() - t0
            t.join()
        assert seen == [signal.SIGUSR1]
        assert 0.15 < waited < 5.0  # the signal, not the 30 s
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_a_nap_without_a_signal_lasts_its_time_and_the_wakeup_fd_comes_back():
    r, w = socket.socketpair()
    w.setblocking(False)
    previous = signal.set_wakeup_fd(w.fileno())
    try:
        with SignalNap() as nap:
            t0 = time.monotonic()
            nap(0.05)
            assert time.monotonic() - t0 >= 0.045
            nap(-1.0)  # nothing left to wait: returns
        assert signal.set_wakeup_fd(previous) == w.fileno()
    finally:
        signal.set_wakeup_fd(previous)
        r.close()
        w.close()


def test_outside_the_main_thread_a_nap_is_a_sleep_and_no_handler_changes():
    out = {}

    def work():
        before = signal.getsignal(signal.SIGTERM)
        with terminate_as_interrupt(), SignalNap() as nap:
            t0 = time.monotonic()
            nap(0.05)
            out["slept"] = time.monotonic() - t0
            out["handler"] = signal.getsignal(signal.SIGTERM)
        out["before"] = before

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert out["slept"] >= 0.045
    assert out["handler"] is out["before"]


@needs_pthread_kill
def test_sigterm_raises_keyboard_interrupt_inside_and_the_old_handler_comes_back():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        with terminate_as_interrupt(), SignalNap() as nap:
            t = _later(0.1, lambda: signal.pthread_kill(threading.get_ident(), signal.SIGTERM))
            try:
                nap(30.0)
            finally:
                t.join()
    assert signal.getsignal(signal.SIGTERM) is before


def test_join_thread_waits_for_a_thread_that_comes_up_late():
    # as after a Thread.start() a Ctrl-C cut short: join() refuses the thread
    # until it is up, join_thread waits for that within its timeout
    done = threading.Event()
    t = threading.Thread(target=done.set)
    launcher = _later(0.1, t.start)
    with pytest.raises(RuntimeError):
        t.join(0)  # what a plain stop() did
    t0 = time.monotonic()
    assert join_thread(t, 5.0) is True
    assert done.is_set() and 0.05 < time.monotonic() - t0 < 4.0
    launcher.join()


def test_join_thread_gives_up_on_a_thread_never_started_and_reports_a_live_one():
    t0 = time.monotonic()
    assert join_thread(threading.Thread(target=lambda: None), 0.1) is False
    assert 0.09 < time.monotonic() - t0 < 2.0
    release = threading.Event()
    busy = threading.Thread(target=release.wait)
    busy.start()
    assert join_thread(busy, 0.05) is False  # still running at the deadline
    release.set()
    assert join_thread(busy) is True
    with pytest.raises(RuntimeError):
        join_thread(threading.current_thread(), 0.1)


def test_a_wakeup_fd_closed_by_its_owner_is_not_restored():
    # an owner that set a wakeup fd and closed it without restoring its own
    # predecessor (a nap whose __enter__ a Ctrl-C cut short, a discarded loop)
    r, w = socket.socketpair()
    w.setblocking(False)
    previous = signal.set_wakeup_fd(w.fileno())
    r.close()
    w.close()
    try:
        with SignalNap() as nap:
            nap(0.0)
        assert signal.set_wakeup_fd(-1) == -1
    finally:
        signal.set_wakeup_fd(previous)


def test_a_ctrl_c_whose_exception_was_swallowed_is_raised_by_the_nap():
    # A handler that runs inside a GC weakref callback has its KeyboardInterrupt
    # printed and dropped; the signal's number still reaches the wakeup fd.  Writing
    # the number is what the interpreter does after the handler was marked to run.
    with SignalNap() as nap:
        t = _later(0.1, lambda: nap._w.send(bytes([signal.SIGINT])))
        t0 = time.monotonic()
        with pytest.raises(KeyboardInterrupt):
            nap(5.0)
        assert time.monotonic() - t0 < 2.0
        t.join()


def test_a_signal_handled_before_the_nap_does_not_end_it_and_other_signals_do_not_raise():
    with SignalNap() as nap:
        nap._w.send(bytes([signal.SIGINT]))  # its handler ran (and raised) before the nap
        t0 = time.monotonic()
        nap(0.05)
        assert time.monotonic() - t0 >= 0.045
        t = _later(0.05, lambda: nap._w.send(bytes([signal.SIGUSR1])))
        nap(5.0)  # woken, nothing raised: SIGUSR1's handler does not interrupt
        t.join()
