"""Credentials come from the environment/file and never show up in repr, logs or errors."""
from __future__ import annotations

import logging
import pickle

import pytest

from hftsig.connectors.credentials import Credentials, Secret, load_credentials, redact

KEY = "CG-k3yV4lueThatMustNeverLeak"
SECRET = "s3cr3tS1gningK3yNeverPrinted=="


def test_secret_hides_itself():
    s = Secret(KEY)
    for text in (repr(s), str(s), f"{s}", f"{s!r}", "%s" % s, repr([s]), repr({"k": s})):
        assert KEY not in text
    assert s.reveal() == KEY
    assert s == Secret(KEY)
    with pytest.raises(TypeError, match="pickled"):
        pickle.dumps(s)
    with pytest.raises(ValueError, match="empty"):
        Secret("  ")
    with pytest.raises(TypeError, match="str"):
        Secret(123)


def test_load_from_environment_and_file(tmp_path):
    f = tmp_path / "creds.env"
    f.write_text("# keys\nHFTSIG_BINANCE_API_KEY=filekey123456\n"
                 f"export HFTSIG_BINANCE_API_SECRET='{SECRET}'\nHFTSIG_COINGECKO_API_PLAN=pro\n")
    env = {"HFTSIG_CREDENTIALS_FILE": str(f), "HFTSIG_COINGECKO_API_KEY": KEY,
           "HFTSIG_BINANCE_API_KEY": "envkey7654321"}
    b = load_credentials("binance", env)
    assert b.api_key.reveal() == "envkey7654321"  # environment wins over the file
    assert b.api_secret.reveal() == SECRET
    cg = load_credentials("coingecko", env)
    assert cg.plan == "pro" and cg.api_key.reveal() == KEY
    assert not load_credentials("kraken", {})
    for c in (b, cg):
        assert KEY not in repr(c) and SECRET not in repr(c) and "envkey7654321" not in repr(c)
    with pytest.raises(ValueError, match="API_PLAN"):
        load_credentials("coingecko", {"HFTSIG_COINGECKO_API_PLAN": "gold"})
    with pytest.raises(ValueError, match="exchange"):
        load_credentials("ftx", {})
    bad = tmp_path / "bad.env"
    bad.write_text(f"just-a-key-{KEY}\n")
    with pytest.raises(ValueError, match="line 1") as ei:
        load_credentials("binance", {"HFTSIG_CREDENTIALS_FILE": str(bad)})
    assert KEY not in str(ei.value)


def test_redact_scrubs_known_values_and_keylike_fields():
    Secret(KEY)
    assert KEY not in redact(f"headers={{'x-cg-demo-api-key': '{KEY}'}}")
    assert redact("GET https://h/api?x_cg_pro_api_key=unknownvalue123&ids=btc") == \
        "GET https://h/api?x_cg_pro_api_key=***&ids=btc"
    assert redact("X-MBX-APIKEY: abcdefunknown") == "X-MBX-APIKEY: ***"
    assert redact("price=101.5 size=2") == "price=101.5 size=2"


def test_no_key_in_logs_or_exceptions(caplog):
    """Log records and connector errors that carry a key come out redacted."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from connector_support import wait_for
    from hftsig.connectors.base import Backoff
    from hftsig.connectors.coingecko import CoinGeckoConnector
    from hftsig.connectors.rest import HTTPStatusError

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            # echo the key back in the error body, as some APIs do
            body = f"invalid key {self.headers.get('x-cg-demo-api-key')}".encode()
            self.send_response(401)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    th = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    th.start()
    caplog.set_level(logging.DEBUG)
    try:
        url = f"http://127.0.0.1:{srv.server_address[1]}/api/v3"
        cg = CoinGeckoConnector(["BTC-USD"], rest_url=url, api_key=KEY, plan="demo",
                                backoff=Backoff(initial=0.01, maximum=0.01))
        assert KEY not in repr(cg) and KEY not in repr(cg.rest) and KEY not in str(vars(cg))
        with pytest.raises(HTTPStatusError) as ei:
            cg.rest.get(f"/simple/price?x_cg_demo_api_key={KEY}")
        assert "401" in str(ei.value)
        assert KEY not in str(ei.value) and KEY not in repr(ei.value)
        # a record carrying the key in its arguments and a traceback
        logging.getLogger("connectors").warning("using key %s in %r", KEY, {"key": KEY},
                                                exc_info=(type(ei.value), ei.value,
                                                          ei.value.__traceback__))
        cg._log_once(("t",), "request headers %s", {"x-cg-demo-api-key": KEY})
        cg.start()
        # the poller logs the failed poll (with the echoed key in the body)
        assert wait_for(lambda: cg.stats()["http_errors"] >= 1)
        assert cg.stop() is True
    finally:
        srv.shutdown()
        srv.server_close()
        th.join(2)
    assert cg.stats()["http_errors"] >= 1
    text = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert "invalid key" in text  # the body was logged ...
    assert KEY not in text  # ... with the key scrubbed
    assert isinstance(Credentials("coingecko", KEY).api_key, Secret)


def test_an_invalid_plan_is_not_echoed():
    # a key pasted into the plan variable (or argument) must not show in the error
    with pytest.raises(ValueError, match="HFTSIG_COINGECKO_API_PLAN must be 'demo' or 'pro'") as ei:
        load_credentials("coingecko", {"HFTSIG_COINGECKO_API_PLAN": KEY})
    assert KEY.lower() not in str(ei.value).lower()
    from hftsig.connectors import CoinGeckoConnector

    with pytest.raises(ValueError, match="plan must be 'demo' or 'pro'") as ei:
        CoinGeckoConnector(["BTC-USD"], plan=KEY)
    assert KEY not in str(ei.value)
