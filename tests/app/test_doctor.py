"""``hftsig doctor``: its checks on the recorded real sessions, on broken copies of them,
against the loopback simulators (with faults injected), and the command line.

No test reaches the internet: the live venues are only the command's default.
"""
from __future__ import annotations

import dataclasses
import io
import os
import pathlib
import re
import subprocess
import sys
import threading

import pytest

from hftsig.app.cli import main
from hftsig.app.doctor import (
    DEFAULT_SYMBOLS,
    CheckResult,
    Frame,
    _recording_connector,
    capture,
    check_binance,
    check_coinbase,
    check_coingecko,
    check_frames,
    check_kraken,
    render_table,
    run_doctor,
)
from hftsig.simulator import SimulatedExchanges
from real_sessions import (
    binance_session,
    coinbase_session,
    coingecko_frames,
    kraken_book_frames,
    kraken_instrument_frame,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]

# the doctor runs real connectors: none may be left running (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("no_thread_leaks")


def by_check(results):
    return {r.check: r for r in results}


def statuses(results):
    return {r.check: r.status for r in results}


# -- the recorded sessions pass -------------------------------------------------------------------
def test_binance_recording_passes_every_check():
    r = by_check(check_binance(binance_session()))
    assert statuses(r.values()) == {"frames parse": "PASS", "book sync": "PASS",
                                    "trade sides": "PASS", "clock offset": "PASS"}
    assert r["book sync"].detail.startswith("1 of 1 symbols in sync, 37 diffs applied, 0 gaps")
    assert r["trade sides"].detail.startswith("3 of 3 trades")


def test_kraken_recording_checksums_verify_with_the_pair_precisions():
    r = by_check(check_kraken(kraken_book_frames(), precisions={"BTC-USD": (1, 8)}))
    assert r["frames parse"].status == "PASS"
    assert (r["checksums"].status, r["checksums"].detail) == ("PASS", "101 of 101 book messages verified")
    # the recording has no receive times and no trades: nothing to judge, nothing failed
    assert r["trade sides"].status == r["clock offset"].status == "SKIP"


def test_kraken_recording_checksums_verify_with_precisions_from_the_instrument_snapshot():
    r = by_check(check_kraken([kraken_instrument_frame()] + kraken_book_frames()))
    assert r["frames parse"].status == "PASS"
    assert (r["checksums"].status, r["checksums"].detail) == ("PASS", "101 of 101 book messages verified")


def test_coinbase_recording_sequence_and_clock():
    r = by_check(check_coinbase(coinbase_session()))
    assert r["frames parse"].status == "PASS"
    assert (r["sequence"].status, r["sequence"].detail) == ("PASS", "31 frames numbered without a gap")
    assert r["clock offset"].status == "PASS"


def test_coinbase_recording_trade_sides_agree_with_the_book():
    r = by_check(check_coinbase(coinbase_session()))
    assert r["trade sides"].status == "PASS"


def test_coingecko_recording_passes():
    r = by_check(check_coingecko(coingecko_frames()))
    assert statuses(r.values()) == {"frames parse": "PASS", "prices": "PASS", "clock offset": "SKIP"}


# -- broken copies fail ----------------------------------------------------------------------------
def test_a_missing_binance_diff_breaks_the_book_sync():
    frames = binance_session()
    i = next(i for i, f in enumerate(frames)
             if f.source == "ws" and '"s":"SXPBTC"' in f.data and "depthUpdate" in f.data
             and f.ts_recv > min(g.ts_recv for g in frames if g.source == "rest") + 10**9)
    r = by_check(check_binance(frames[:i] + frames[i + 1:]))
    assert r["book sync"].status == "FAIL"
    assert ", 1 gaps," in r["book sync"].detail


def test_binance_trades_with_the_wrong_side_fail():
    def flip(text):  # the buyer-was-maker flag of every trade turned over
        swapped = {'"m":false': '"m":true', '"m":true': '"m":false'}
        return re.sub(r'"m":(?:false|true)', lambda m: swapped[m.group(0)], text)

    frames = [dataclasses.replace(f, data=flip(f.data)) if "aggTrade" in f.data else f
              for f in binance_session()]
    r = by_check(check_binance(frames))
    assert r["trade sides"].status == "FAIL"
    assert r["trade sides"].detail.startswith("0 of 3 trades")


def test_a_missing_kraken_update_fails_the_checksums():
    frames = kraken_book_frames()
    del frames[50]
    r = by_check(check_kraken(frames, precisions={"BTC-USD": (1, 8)}))
    assert r["checksums"].status == "FAIL"
    assert "mismatched" in r["checksums"].detail


def test_kraken_without_precisions_fails_rather_than_passing_unchecked():
    r = by_check(check_kraken(kraken_book_frames()))
    assert r["checksums"].status == "FAIL"
    assert "101 without the pair's precisions" in r["checksums"].detail


def test_a_lost_coinbase_frame_is_a_sequence_gap():
    frames = coinbase_session()
    del frames[12]
    r = by_check(check_coinbase(frames))
    assert (r["sequence"].status, r["sequence"].detail) == ("FAIL", "1 gaps in 30 frames (first: 11 -> 13)")


def test_malformed_frames_and_a_skewed_clock_fail():
    frames = coinbase_session()
    frames[3] = Frame(frames[3].data[:40], frames[3].ts_recv)
    late = [dataclasses.replace(f, ts_recv=f.ts_recv + 10 * 10**9) for f in frames]
    r = by_check(check_coinbase(late))
    assert r["frames parse"].status == "FAIL"
    assert r["frames parse"].detail.startswith("1 of 31 malformed; first (#3)")
    assert r["clock offset"].status == "FAIL" and "limit 2 s" in r["clock offset"].detail


def test_nothing_received_fails():
    for venue in ("binance", "kraken", "coinbase", "coingecko"):
        results = check_frames(venue, [])
        assert any(r.status == "FAIL" for r in results), venue
        assert by_check(results)["frames parse"].detail == "no frames received"


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="venue"):
        check_frames("bitstamp", [])
    with pytest.raises(TypeError, match="Frame"):
        check_coingecko(['{"bitcoin":{"usd":1}}'])
    with pytest.raises(ValueError, match="seconds"):
        capture("kraken", 0)
    with pytest.raises(ValueError, match="venues"):
        run_doctor(["kraken", "nope"], seconds=1)


def test_table_lists_every_result():
    results = [CheckResult("kraken", "checksums", "PASS", "3 of 3 book messages verified"),
               CheckResult("coinbase", "sequence", "FAIL", "1 gaps")]
    lines = render_table(results).splitlines()
    assert lines[0].split() == ["venue", "check", "result", "detail"]
    assert lines[1].split()[:3] == ["kraken", "checksums", "PASS"]
    assert lines[2].split()[:3] == ["coinbase", "sequence", "FAIL"]


@pytest.mark.parametrize("venue, name", [("binance", "BinanceConnector"), ("kraken", "KrakenConnector"),
                                         ("coinbase", "CoinbaseConnector"),
                                         ("coingecko", "CoinGeckoConnector")])
def test_live_capture_goes_through_the_connector_with_its_default_endpoints(venue, name):
    """Built, not started: no test reaches the internet."""
    from hftsig import connectors

    cls = getattr(connectors, name)
    conn = _recording_connector(venue, list(DEFAULT_SYMBOLS[venue]), [], None, 5.0)
    assert isinstance(conn, cls)
    assert conn.rest_url == cls(list(DEFAULT_SYMBOLS[venue])).rest_url
    if venue != "coingecko":
        assert conn.ws_url == cls.default_ws_url


# -- the simulators ---------------------------------------------------------------------------------
@pytest.fixture
def sim():
    with SimulatedExchanges(["BTC-USD", "ETH-USD"], exchanges=("kraken", "coinbase"), seed=3,
                            rate=20.0, trade_rate=5.0) as s:
        yield s


def capture_with_fault(sim, venue, fault, **kw):
    """Capture ``venue`` for 3 s, injecting ``fault`` once the connector is connected."""
    out = {}
    t = threading.Thread(target=lambda: out.setdefault("frames", capture(
        venue, 3.0, endpoints=sim.connector_kwargs(venue))))
    t.start()
    assert sim.wait_for_connections(venue, 1, timeout=10.0)
    sim.inject(venue, fault, **kw)
    t.join()
    return out["frames"]


def test_simulated_kraken_and_coinbase_pass(sim):
    for venue in ("kraken", "coinbase"):
        frames = capture(venue, 2.0, endpoints=sim.connector_kwargs(venue))
        results = check_frames(venue, frames)
        assert all(r.ok for r in results), render_table(results)


def test_a_bad_kraken_checksum_from_the_simulator_fails(sim):
    frames = capture_with_fault(sim, "kraken", "bad_checksum")
    r = by_check(check_kraken(frames))
    assert r["checksums"].status == "FAIL" and "mismatched" in r["checksums"].detail


def test_a_dropped_coinbase_frame_from_the_simulator_fails(sim):
    frames = capture_with_fault(sim, "coinbase", "gap")
    r = by_check(check_coinbase(frames))
    assert r["sequence"].status == "FAIL"


def test_run_doctor_prints_the_table():
    out = io.StringIO()
    assert run_doctor(["coingecko"], seconds=1.5, simulate=True, out=out) == 0
    text = out.getvalue()
    assert "coingecko  frames parse  PASS" in text
    assert text.rstrip().endswith("no check failed (3 checks)")


# -- the command line -------------------------------------------------------------------------------
def doctor(*args, timeout=120):
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "hftsig", "doctor", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=env)


def test_doctor_simulate_passes_every_check():
    proc = doctor("--simulate", "--seconds", "3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    table = proc.stdout
    for venue, check in [("binance", "book sync"), ("kraken", "checksums"), ("coinbase", "sequence"),
                         ("coingecko", "prices")]:
        assert any(line.startswith(venue) and check in line and "PASS" in line
                   for line in table.splitlines()), table
    assert "FAIL" not in table
    assert table.splitlines()[-1] == "hftsig doctor: no check failed (15 checks)"


def test_doctor_usage_errors_exit_2():
    for args in (["--venues", "binance,nope"], ["--seconds", "0"], ["--seconds", "soon"]):
        proc = doctor(*args)
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        assert "hftsig doctor" in proc.stderr or "usage" in proc.stderr


def test_doctor_help(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["doctor", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for opt in ("--simulate", "--seconds", "--venues"):
        assert opt in out
