"""A real ``redis-server`` for tests: started on a unix socket, stopped by pid.

Imported by tests/conftest.py (fixture ``redis_url``: one server per test
session, persistence off) and used directly for servers with other settings
(AOF on, for the crash test).  Tests that need one skip, saying why, when
``redis-server`` is not installed (``.ci/run`` installs Debian's).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
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


@pytest.fixture(scope="session")
def redis_server():
    """A redis-server for the whole session (persistence off)."""
    pytest.importorskip("redis", reason="the Redis client is the 'bus' extra: "
                        "pip install 'hftsig[bus]'")
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server; "
                    ".ci/run installs it)")
    # a short path: unix socket paths are limited to ~107 bytes
    directory = tempfile.mkdtemp(prefix="hftsig-redis-")
    server = RedisServer(directory).start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture
def redis_url(redis_server):
    """URL of the session's server (db 0), emptied for each test."""
    import redis

    c = redis.Redis(unix_socket_path=redis_server.socket)
    c.flushdb()  # db 0 only: module fixtures may keep data in other dbs
    c.close()
    return redis_server.url
