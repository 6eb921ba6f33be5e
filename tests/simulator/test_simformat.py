"""The simulators' text kernels (hftsig/_ext/_simformat.pyx) against the Python they replaced.

These kernels write the numbers, level lists, checksums, timestamps and
websocket frames of every simulated protocol; the references below are the
Python formatting they replaced, so the frames stay byte for byte what they
were.
"""
import json
import time
import zlib

import pytest


def _py_fixed(n, decimals):
    if decimals == 0:
        return str(n)
    sign, n = ("-", -n) if n < 0 else ("", n)
    whole, frac = divmod(n, 10**decimals)
    return "%s%d.%0*d" % (sign, whole, decimals, frac)


def _py_trim1(n, decimals):  # Kraken JSON numbers
    s = _py_fixed(n, decimals)
    if "." in s:
        s = s.rstrip("0")
        if s.endswith("."):
            s += "0"
    return s


def _py_trim0(n, decimals):  # Coinbase strings
    s = _py_fixed(n, decimals)
    if "." in s:
        s = s.rstrip("0").rstrip(".")
    return s


def _py_eight(n, decimals):  # Binance strings
    if decimals <= 8:
        return _py_fixed(n * 10 ** (8 - decimals), 8)
    return _py_fixed(n, decimals)


def test_format_number_equals_the_python_formatting():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from hftsig._ext._simformat import format_number
    from hftsig.simulator.market import format_fixed

    refs = {"fixed": _py_fixed, "trim1": _py_trim1, "trim0": _py_trim0, "eight": _py_eight}

    @settings(max_examples=400, deadline=None)
    @given(st.one_of(st.integers(-10**6, 10**6), st.integers(-2**63, 2**63 - 1)), st.integers(0, 18),
           st.sampled_from(sorted(refs)))
    def check(n, decimals, mode):
        if mode == "eight" and decimals <= 8 and abs(n) * 10 ** (8 - decimals) >= 2**63:
            n //= 10 ** (8 - decimals)
        assert format_number(n, decimals, mode) == refs[mode](n, decimals)
        assert format_fixed(n, decimals) == _py_fixed(n, decimals)

    check()
    for n, d in [(0, 0), (0, 5), (10, 1), (100, 2), (-1, 3), (2**63 - 1, 18), (-(2**63), 18), (-(2**63), 0)]:
        for mode, ref in refs.items():
            if mode == "eight" and d <= 8 and abs(n) * 10 ** (8 - d) >= 2**63:
                continue
            assert format_number(n, d, mode) == ref(n, d), (n, d, mode)


def test_format_number_rejects_bad_arguments():
    from hftsig._ext._simformat import coinbase_updates, format_number, kraken_levels

    with pytest.raises(ValueError, match="decimals"):
        format_number(1, 19)
    with pytest.raises(ValueError, match="decimals"):
        kraken_levels([(1, 2)], -1, 2)
    with pytest.raises(ValueError, match="mode"):
        format_number(1, 2, "nine")
    with pytest.raises(OverflowError):
        format_number(2**63, 2)
    with pytest.raises(TypeError):
        coinbase_updates([(1, 2)], 1, 1, "T")  # not (side, ticks, lots)


def _levels_strategy():
    from hypothesis import strategies as st

    return st.lists(st.tuples(st.integers(0, 10**12), st.integers(0, 10**12)), max_size=30)


def test_level_lists_equal_the_python_formatting():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from hftsig._ext._simformat import binance_levels, coinbase_updates, kraken_levels

    @settings(max_examples=200, deadline=None)
    @given(_levels_strategy(), st.integers(0, 10), st.integers(0, 10), st.lists(st.sampled_from([1, -1]), min_size=30))
    def check(levels, pd, qd, sides):
        assert kraken_levels(levels, pd, qd) == ",".join(
            '{"price":%s,"qty":%s}' % (_py_trim1(p, pd), _py_trim1(q, qd)) for p, q in levels)
        assert binance_levels(levels, pd, qd) == ",".join(
            '["%s","%s"]' % (_py_eight(p, pd), _py_eight(q, qd)) for p, q in levels)
        changes = [(s, p, q) for s, (p, q) in zip(sides, levels)]
        et = "2023-02-09T20:32:50.714964855Z"
        text = coinbase_updates(changes, pd, qd, et)
        assert text == ",".join(
            '{"side":"%s","event_time":"%s","price_level":"%s","new_quantity":"%s"}'
            % ("bid" if s > 0 else "offer", et, _py_trim0(p, pd), _py_trim0(q, qd)) for s, p, q in changes)
        assert json.loads("[%s]" % text) == [
            {"side": "bid" if s > 0 else "offer", "event_time": et, "price_level": _py_trim0(p, pd),
             "new_quantity": _py_trim0(q, qd)} for s, p, q in changes]

    check()
    assert kraken_levels(iter([(1, 1)]), 1, 1) == '{"price":0.1,"qty":0.1}'


def test_kraken_update_and_checksum_kernels_equal_the_python_ones():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from hftsig._ext._simformat import (
        kraken_checksum,
        kraken_levels,
        kraken_side_update,
    )

    def unique(levels):
        return list(dict(levels).items())

    @settings(max_examples=300, deadline=None)
    @given(_levels_strategy().map(unique), _levels_strategy().map(unique), st.sampled_from([10, 25, 100]),
           _levels_strategy().map(unique))
    def check(old, full, depth, other):
        old = old[:depth]
        # the Python diff of KrakenServer._book_update before the kernel
        od, new = dict(old), full[:depth]
        nd, still = dict(new), {p for p, _ in full}
        ref = [(p, 0) for p in od if p not in nd and p not in still]
        ref += [(p, q) for p, q in new if od.get(p) != q]
        assert kraken_side_update(old, full, depth, 2, 8) == (kraken_levels(ref, 2, 8), len(ref))
        parts = [str(x) for p, q in other[:10] for x in (p, q)] + [str(x) for p, q in full[:10] for x in (p, q)]
        assert kraken_checksum(full, other) == zlib.crc32("".join(parts).encode())

    check()


def test_rfc3339_kernel_equals_strftime():
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from hftsig._ext._simformat import rfc3339
    from hftsig.simulator._wsbase import rfc3339_ns, rfc3339_us

    def ref(ns, digits):
        s, rem = divmod(ns, 1_000_000_000)
        frac = f"{rem:09d}" if digits == 9 else f"{rem // 1000:06d}"
        return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) + "." + frac + "Z"

    @settings(max_examples=400, deadline=None)
    @given(st.integers(-(2**63), 2**63 - 1), st.sampled_from([6, 9]))  # years 1677..2262
    def check(ns, digits):
        assert rfc3339(ns, digits) == ref(ns, digits)

    check()
    for ns in (0, 951_782_400 * 10**9, 4_107_542_399 * 10**9 + 999_999_999, time.time_ns()):  # incl. 2000-02-29
        assert rfc3339_ns(ns) == ref(ns, 9) and rfc3339_us(ns) == ref(ns, 6)
    with pytest.raises(ValueError, match="digits"):
        rfc3339(0, 3)
    assert rfc3339_ns(-40_000_000_000 * 10**9) == ref(-40_000_000_000 * 10**9, 9)  # year 702: the Python path


def test_binance_accumulate_keeps_the_last_size_per_level():
    from hftsig._ext._simformat import accumulate, level_key

    acc = {}
    accumulate(acc, [[(1, 100, 5), (-1, 101, 2), (1, 99, 1)], [(1, 100, 0), (-1, 100, 7)]])
    assert acc == {level_key(1, 100): 0, level_key(-1, 101): 2, level_key(1, 99): 1, level_key(-1, 100): 7}
    assert sorted(((k >> 1, q) for k, q in acc.items() if k & 1), reverse=True) == [(100, 0), (99, 1)]
    assert sorted((k >> 1, q) for k, q in acc.items() if not k & 1) == [(100, 7), (101, 2)]


def test_batched_frames_are_the_frames_websockets_writes():
    # Queued data frames go out in one socket write built by ws_text_frames;
    # each must be byte for byte the frame websockets writes for send(text).
    from websockets.frames import Frame, Opcode

    from hftsig._ext._simformat import ws_text_frames

    payloads = [c * n for n in (0, 1, 125, 126, 127, 65535, 65536, 70001) for c in ("a", "é", "€")]
    assert ws_text_frames(payloads) == b"".join(
        Frame(Opcode.TEXT, p.encode()).serialize(mask=False) for p in payloads)
    assert ws_text_frames([]) == b""
    with pytest.raises(TypeError):
        ws_text_frames([b"bytes"])
