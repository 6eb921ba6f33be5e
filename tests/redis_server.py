"""A real ``redis-server`` for tests: started on a unix socket, stopped by pid.

tests/conftest.py starts one per test session (fixtures ``redis_server`` and
``redis_url``: persistence off); tests use :class:`RedisServer` directly for
servers with other settings (AOF on, for the crash test).  Tests that need one skip, saying why, when
``redis-server`` is not installed (``.ci/run`` installs Debian's).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time

import pytest

REDIS_SERVER = shutil.which("redis-server")


class RedisServer:
    """One ``redis-server`` process listening on a unix socket in ``directory``.

    Parameters
    ----------
    directory : str
        Holds the socket, the log and (with ``aof``) the append-only file.
    aof : bool
        Persistence through the append-only file, fsynced every second
        (``appendfsync everysec``); otherwise none at all.
    """

    def __init__(self, directory, *, aof=False):
        if REDIS_SERVER is None:
            pytest.skip("redis-server is not installed (apt-get install redis-server; "
                        ".ci/run installs it)")
        self.directory = str(directory)
        self.socket = os.path.join(self.directory, "redis.sock")
        self.aof = aof
        self.proc = None

    @property
    def url(self):
        return f"unix://{self.socket}"

    def start(self, timeout=30.0):
        args = [REDIS_SERVER, "--port", "0", "--unixsocket", self.socket,
                "--unixsocketperm", "700", "--dir", self.directory, "--save", "",
                "--logfile", os.path.join(self.directory, "redis.log"), "--daemonize", "no"]
        if self.aof:
            args += ["--appendonly", "yes", "--appendfsync", "everysec"]
        else:
            args += ["--appendonly", "no"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=30.0):
        """Wait until the server answers PING (and has loaded its data)."""
        import redis

        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}; see "
                                   f"{self.directory}/redis.log")
            try:
                c = redis.Redis(unix_socket_path=self.socket)
                try:
                    if c.ping():
                        return
                finally:
                    c.close()
            except (redis.ConnectionError, redis.BusyLoadingError, OSError):
                pass
            if time.monotonic() > deadline:
                raise TimeoutError(f"redis-server did not answer PING within {timeout} s")
            time.sleep(0.02)

    def kill(self):
        """SIGKILL, as a crash: nothing is flushed beyond what the fsync policy did."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
