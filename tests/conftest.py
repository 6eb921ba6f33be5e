"""Suite-wide set-up."""
import signal

import pytest


@pytest.fixture(autouse=True, scope="session")
def _ctrl_c_raises_keyboard_interrupt():
    """Tests of Ctrl-C handling need SIGINT to raise KeyboardInterrupt here and
    in the interpreters they start.  A shell starting pytest in the background
    (``make test &``) sets SIGINT to ignored, and an ignored signal stays
    ignored across ``exec``: Python then installs no handler at all."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    yield


# a real redis-server per session for the tick bus tests (tests/redis_server.py)
from redis_server import redis_server, redis_url  # noqa: E402,F401
