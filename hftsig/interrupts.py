"""How the command line's long-running commands stop: SIGTERM as Ctrl-C, and
waits that any signal cuts short.

``docker stop`` sends SIGTERM; a process without a handler for it dies at once
(or, as a container's PID 1, ignores it until the SIGKILL ten seconds later),
so the feeds never stop cleanly and a recorder never closes its files.  And
Python runs signal handlers on the main thread only, when that thread next runs
Python code: a signal the kernel hands to another thread (a connector, a
simulator's event loop, numpy's OpenBLAS worker) leaves a main thread in
``time.sleep`` asleep until its sleep ends.  And a Ctrl-C can cut
``Thread.start`` short after the thread was launched, while ``start`` waits for
it to come up: ``join`` then refuses a thread that is running anyway.
"""
from __future__ import annotations

import os
import select
import signal
import socket
import threading
import time

__all__ = ["SignalNap", "join_thread", "terminate_as_interrupt"]


def _raise_interrupt(signum, frame):
    raise KeyboardInterrupt


class terminate_as_interrupt:
    """Context manager: SIGTERM raises KeyboardInterrupt in the main thread, so
    a command stops as cleanly on ``docker stop`` as on Ctrl-C.  The previous
    handler comes back on exit; outside the main thread it does nothing."""

    def __enter__(self):
        self._previous = None
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        return self

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


class SignalNap:
    """Context manager giving sleeps that a signal cuts short, whichever thread
    the kernel delivers it to.

    In the main thread a nap waits on the signal wakeup fd
    (``signal.set_wakeup_fd``), which the interpreter writes on every signal,
    so the handler runs at once (a benchmark's SIGUSR1 mark was once answered
    only when the simulator exited, half a minute late).  Outside the main
    thread a nap is ``time.sleep``.  The previous wakeup fd comes back on exit.

    Examples
    --------
    >>> with SignalNap() as nap:
    ...     nap(0.01)
    """

    def __init__(self):
        self._r = self._w = self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._r, self._w = socket.socketpair()
            self._r.setblocking(False)
            self._w.setblocking(False)
            # A Ctrl-C landing inside __enter__ skips __exit__: without this the
            # interpreter would keep writing signals to sockets about to close.
            try:
                self._previous = signal.set_wakeup_fd(self._w.fileno(), warn_on_full_buffer=False)
            except BaseException:
                self.__exit__()
                raise
        return self

    def __call__(self, seconds):
        """Sleep up to ``seconds``; a signal's handler runs (and may raise) at once."""
        if self._r is None:
            time.sleep(max(0.0, seconds))
            return
        self._drain()  # signals whose handlers ran before this nap
        if select.select([self._r], [], [], max(0.0, seconds))[0]:
            self._raise_lost_interrupt(self._drain())

    def _drain(self):
        try:
            return self._r.recv(4096)
        except BlockingIOError:
            return b""

    @staticmethod
    def _raise_lost_interrupt(signums):
        """Raise the KeyboardInterrupt of a Ctrl-C (or SIGTERM as Ctrl-C) whose
        handler's exception was swallowed.

        The interpreter writes a signal's number to the wakeup fd after marking
        it pending, and runs the pending handler at the end of the call that
        reads the fd at the latest, so by now its exception has been raised
        here, unless the handler ran inside a garbage collector's weakref
        callback, where exceptions are printed and dropped ("Exception ignored
        in: WeakSet._remove ... KeyboardInterrupt"): the Ctrl-C was lost.
        """
        raising = {
            signal.SIGINT: signal.default_int_handler,
            signal.SIGTERM: _raise_interrupt,
        }
        for signum in set(signums):
            handler = raising.get(signum)
            if handler is not None and signal.getsignal(signum) is handler:
                raise KeyboardInterrupt

    def __exit__(self, *exc):
        if self._r is not None:
            previous = self._previous
            # An fd number cannot be handed out while in use, so a previous fd
            # equal to one of ours was closed before we opened them.
            if previous in (self._r.fileno(), self._w.fileno()):
                previous = -1
            signal.set_wakeup_fd(_still_open(previous))
            self._r.close()
            self._w.close()
            self._r = self._w = self._previous = None


def _still_open(fd):
    """``fd`` if it is still an open file descriptor, else -1 (no wakeup fd).

    The fd found on entry may have been closed since by its owner (a nap or an
    event loop cut short by a signal never restored its predecessor); handing
    a closed fd back to ``signal.set_wakeup_fd`` raises ``OSError(EBADF)``.
    """
    if fd is None or fd < 0:
        return -1
    try:
        os.fstat(fd)
    except OSError:
        return -1
    return fd


def join_thread(thread, timeout=None):
    """``thread.join(timeout)`` that also takes a thread whose ``start()`` a
    signal cut short.

    ``Thread.start`` launches the thread, then waits for it to come up; a
    KeyboardInterrupt in that wait leaves a thread that runs (and must be
    stopped and joined like any other) but that ``join`` refuses ("cannot join
    thread before it is started") until it is up, a moment later.  This waits
    for that moment within ``timeout``; a thread that was never launched is
    given up on at the deadline.  Returns True when the thread has ended.

    Examples
    --------
    >>> t = threading.Thread(target=lambda: None)
    >>> t.start()
    >>> join_thread(t, 1.0)
    True
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        try:
            thread.join(left)
            return not thread.is_alive()
        except RuntimeError:
            if thread is threading.current_thread():
                raise
            if left is not None and left <= 0.0:
                return False
            time.sleep(0.002)
