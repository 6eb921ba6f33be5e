"""The fuzz harnesses (fuzz/): each runs clean on its seed corpus, every kept
regression input replays, and the oracles catch what they are meant to catch.

The fuzzing itself (``make fuzz``) runs under AddressSanitizer outside the
test suite; see docs/fuzzing.md.
"""
import os

import numpy as np
import pytest

from fuzz import targets
from fuzz.run import CORPUS, REGRESSIONS, replay_one

OPEN_FILE = os.path.join(REGRESSIONS, "OPEN")


def _files(directory):
    if not os.path.isdir(directory):
        return []
    return sorted(f for f in os.listdir(directory)
                  if not f.startswith(".") and os.path.isfile(os.path.join(directory, f)))


def _open_findings():
    """``{"target/file": reason}`` of kept inputs whose finding is not fixed yet."""
    out = {}
    if os.path.exists(OPEN_FILE):
        with open(OPEN_FILE) as fh:
            for line in fh:
                line = line.split("#", 1)[0].strip()
                if line:
                    name, _, reason = line.partition(" ")
                    out[name] = reason.strip()
    return out


@pytest.mark.parametrize("name", sorted(targets.TARGETS))
def test_harness_runs_clean_on_its_corpus(name):
    files = _files(os.path.join(CORPUS, name))
    assert files, f"no seed corpus for {name} (python -m fuzz.make_seeds)"
    for f in files:
        with open(os.path.join(CORPUS, name, f), "rb") as fh:
            data = fh.read()
        targets.TARGETS[name](data)


_REGRESSIONS = [f"{t}/{f}" for t in sorted(targets.TARGETS)
                for f in _files(os.path.join(REGRESSIONS, t))]
_OPEN = _open_findings()

@pytest.mark.parametrize("entry", [
    pytest.param(e, marks=pytest.mark.xfail(strict=True, reason=_OPEN[e]) if e in _OPEN else ())
    for e in _REGRESSIONS])
def test_regression_input_keeps_the_contract(entry):
    target, _, f = entry.partition("/")
    with open(os.path.join(REGRESSIONS, target, f), "rb") as fh:
        data = fh.read()
    # an open finding may be a hang: it fails after 5 s as well as after 30
    problem = replay_one(targets.TARGETS[target], data, timeout=5 if entry in _OPEN else 30,
                         memory_limit=4 << 30)
    assert problem is None, f"{entry}: {problem}"


def test_open_list_names_kept_inputs():
    missing = sorted(set(_OPEN) - set(_REGRESSIONS))
    assert not missing, f"fuzz/regressions/OPEN names inputs that are not there: {missing}"


# -- the oracles themselves ----------------------------------------------------

def _quote(**fields):
    from hftsig.market.ticks import empty_ticks
    t = empty_ticks(1)
    t["exchange"], t["kind"], t["symbol"], t["flags"] = 1, 1, b"BTC-USDT", 1
    t["ts_recv"], t["ts_event"] = targets.TS_RECV, 1
    t["bid_px"], t["bid_sz"], t["ask_px"], t["ask_sz"] = 1.0, 1.0, 2.0, 1.0
    for k, v in fields.items():
        t[k] = v
    return t


class _Parsed:
    last_type = "data"


@pytest.mark.parametrize("fields", [{"bid_sz": -1.0}, {"ask_px": float("inf")},
                                    {"bid_px": -2.0}, {"ts_event": -5}, {"symbol": b""},
                                    {"kind": 0}, {"flags": 0}])
def test_record_oracle_refuses_a_broken_record(fields):
    targets.check_records("binance", _quote(), _Parsed())  # the good record passes
    with pytest.raises(targets.Finding):
        targets.check_records("binance", _quote(**fields), _Parsed())


def test_record_oracle_wants_data_type_with_records():
    class Heartbeat:
        last_type = "heartbeat"
    with pytest.raises(targets.Finding):
        targets.check_records("binance", _quote(), Heartbeat())


@pytest.mark.parametrize("stream, want", [
    (b"\x81\x02hi", ([(1, b"hi")], "error", set())),
    (b"\x01\x01a\x89\x00\x80\x01b", ([(9, b""), (1, b"ab")], "error", set())),
    (b"\x81\x82abcd" + bytes([ord("h") ^ 97, ord("i") ^ 98]), ([], "error", set())),
    (b"\x88\x02\x03\xe8", ([(8, b"\x03\xe8")], "close", set())),
    (b"\x88\x04\x03\xe8\xff\xfe", ([], "error", set())),
    (b"\x0a\x00", ([], "error", set())),
    (b"\x82\x7f" + (1 << 40).to_bytes(8, "big"), ([], "refuse", set())),
    (b"\x80\x00", ([], "error", set())),
    (b"\x81\x01a\x8a\x7e\x00\x01p", ([(1, b"a"), (10, b"p")], "error", {1})),
    (b"\x88\x02\x03\xf4", ([(8, b"\x03\xf4")], "close", {0})),
])
def test_websocket_reference_reads_rfc6455(stream, want):
    assert targets.ws_reference(stream) == want


def test_book_model_matches_a_known_sequence():
    m = targets.BookModel(2, b"BTC-USD", 2)
    rec = dict(exchange=2, symbol=b"BTC-USD", kind=4, checksum=0, seq=1, ts_event=5)
    m.apply([{**rec, "side": 1, "price": p, "size": 1.0, "flags": f}
             for p, f in ((1.0, 2), (2.0, 0), (3.0, 1))])
    assert m.state() == ([(3.0, 1.0), (2.0, 1.0)], [], 1, 1, 5, None)
    with pytest.raises(ValueError):
        m.apply([{**rec, "side": 1, "price": 4.0, "size": 1.0, "flags": 1},
                 {**rec, "side": 1, "price": 5.0, "size": -1.0, "flags": 1}])
    assert m.state() == ([(3.0, 1.0), (2.0, 1.0)], [], 1, 1, 5, None)


def test_number_oracle_refuses_a_wrong_value(monkeypatch):
    # a parser that read "0.5" as 0.0 is caught
    real = targets.check_frame

    def wrong(venue, frame):
        ticks = real(venue, frame)
        if ticks is not None and len(ticks):
            ticks = ticks.copy()
            for f in ("bid_px", "bid_sz", "price", "size"):
                ticks[f] = np.where(np.isnan(ticks[f]), ticks[f], 0.0)
        return ticks
    targets.normalize_numbers(b"0.5")
    monkeypatch.setattr(targets, "check_frame", wrong)
    with pytest.raises(targets.Finding):
        targets.normalize_numbers(b"0.5")
