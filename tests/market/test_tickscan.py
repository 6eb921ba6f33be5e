"""The C passes over tick arrays (hftsig/_ext/_tickscan.pyx) used by the aggregator
worker and the connectors, against plain Python loops."""
import numpy as np
import pytest

from hftsig._ext._tickscan import batch_latency, message_parts, scan_chunk, select
from hftsig.market.ticks import FLAG_LAST, KIND_QUOTE, KIND_STATUS, KIND_TRADE, empty_ticks

T0 = 1_700_000_000_000_000_000


def _random_ticks(n, seed):
    rng = np.random.default_rng(seed)
    t = empty_ticks(n)
    t["kind"] = rng.choice([KIND_QUOTE, KIND_TRADE, 3, 4, 5, 6], n, p=[.3, .1, .35, .1, .05, .1])
    t["exchange"] = rng.integers(1, 4, n)
    t["symbol"] = [s.encode() for s in rng.choice(["BTC-USD", "ETH-USD", "A", "SOL-USDT-XYZ12345"], n)]
    t["ts_recv"] = T0 + rng.integers(0, 50, n)  # many ties
    t["ts_event"] = t["ts_recv"] - rng.integers(0, 9, n)
    for f in ("bid_px", "bid_sz", "ask_px", "ask_sz"):
        t[f] = rng.standard_normal(n)
    t["flags"] = rng.choice([0, FLAG_LAST], n)
    t["checksum"] = rng.integers(0, 2**32, n)
    return t


def test_chunk_scan_matches_a_record_by_record_pass():
    """The C pass that sorts a chunk for the state update agrees with a plain loop:
    book keys in order of first appearance with their last record, per key the quote
    a sequential update ends on (newest ts_recv, last among equals), the rest in order."""
    t = _random_ticks(3000, 21)
    books, quotes, others = scan_chunk(t)
    want_books, want_quotes, want_others = {}, {}, []
    for i, r in enumerate(t.tolist()):
        key = (r[2], r[7])
        if r[3] in (3, 4):
            want_books.setdefault(key, None)
            want_books[key] = (i, r[0], r[1])
        elif r[3] == KIND_QUOTE:
            if key not in want_quotes or r[1] >= want_quotes[key][7]:
                want_quotes[key] = (r[2], r[7], r[8], r[9], r[10], r[11], r[0], r[1])
        else:
            want_others.append(i)
    assert [(ex, sy) for ex, sy, *_ in books] == list(want_books)
    assert [(i, te, tr) for _, _, i, te, tr in books] == list(want_books.values())
    assert sorted(quotes, key=lambda q: (q[0], q[1])) == sorted(
        want_quotes.values(), key=lambda q: (q[0], q[1]))
    assert others == want_others
    assert scan_chunk(empty_ticks(0)) == ([], [], [])
    with pytest.raises(TypeError, match="ticks"):
        scan_chunk(t[::2])


def test_batch_latency_takes_the_last_record_that_has_an_exchange_time():
    t = _random_ticks(50, 22)
    t["kind"][-3:] = KIND_STATUS
    t["kind"][-4] = KIND_TRADE
    wire, queue, newest = batch_latency(t, T0 + 10**6)
    assert wire == t["ts_recv"][-4] - t["ts_event"][-4]
    assert queue == T0 + 10**6 - t["ts_recv"][-1]
    assert newest == t["ts_recv"].max()
    t["kind"] = KIND_STATUS
    assert batch_latency(t, T0)[0] is None
    assert batch_latency(empty_ticks(0), 0) == (None, 0, 0)


def test_select_matches_python_filters():
    t = _random_ticks(800, 23)
    ktab = bytearray(256)
    ktab[KIND_TRADE] = ktab[3] = 1
    etab = bytearray(256)
    etab[2] = 1
    syms = {b"A", b"SOL-USDT-XYZ12345"}
    for k, e, s in [(bytes(ktab), b"", None), (b"", bytes(etab), None), (b"", b"", syms),
                    (bytes(ktab), bytes(etab), syms)]:
        mask, kept = select(t, k, e, s)
        want = np.ones(len(t), bool)
        if k:
            want &= np.isin(t["kind"], [KIND_TRADE, 3])
        if e:
            want &= t["exchange"] == 2
        if s is not None:
            want &= np.isin(t["symbol"], list(s))
        np.testing.assert_array_equal(mask, want)
        assert kept == want.sum()
    with pytest.raises(ValueError, match="256-byte"):
        select(t, b"x", b"", None)


def test_message_parts_split_at_symbol_changes_and_message_ends():
    t = _random_ticks(400, 24)
    parts = message_parts(t)
    assert parts[0][0] == 0 and parts[-1][1] == len(t)
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))
    rows = t.tolist()
    for start, stop, sym, kind, checksum in parts:
        run = rows[start:stop]
        assert {(r[2], r[7]) for r in run} == {(run[0][2], sym)}
        assert all(not (r[5] & FLAG_LAST) for r in run[:-1])
        assert kind == run[0][3] and checksum == run[-1][6]
        if stop < len(t) and not (run[-1][5] & FLAG_LAST):  # split only where the key changes
            assert (rows[stop][2], rows[stop][7]) != (run[-1][2], sym)
    assert message_parts(empty_ticks(0)) == []
