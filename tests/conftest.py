"""Suite-wide set-up and the fixtures tests in several directories use.

Plain helpers (no fixtures) stay in the support modules next to this file
(``connector_support``, ``redis_server``, ``real_sessions``), imported by name.
"""
import shutil
import signal
import tempfile
import threading
import time

import pytest

from redis_server import REDIS_SERVER, RedisServer


@pytest.fixture(autouse=True, scope="session")
def _ctrl_c_raises_keyboard_interrupt():
    """Tests of Ctrl-C handling need SIGINT to raise KeyboardInterrupt here and
    in the interpreters they start.  A shell starting pytest in the background
    (``make test &``) sets SIGINT to ignored, and an ignored signal stays
    ignored across ``exec``: Python then installs no handler at all."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield


@pytest.fixture
def no_thread_leaks():
    """Fail a test that leaves a connector thread running.

    Autouse for every test under tests/connectors/ (its conftest.py); other
    modules that run connectors ask for it with
    ``pytestmark = pytest.mark.usefixtures("no_thread_leaks")``.
    """
    yield
    names = ("-connector", "-snapshots")
    end = time.monotonic() + 1.0
    while time.monotonic() < end:
        left = [t.name for t in threading.enumerate() if t.is_alive() and t.name.endswith(names)]
        if not left:
            return
        time.sleep(0.01)
    raise AssertionError(f"threads left running: {left}")


# -- a real redis-server per session for the tick bus tests (tests/redis_server.py) ---------------
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
