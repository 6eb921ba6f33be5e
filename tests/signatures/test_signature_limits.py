"""Signature entry points against hostile arguments: right answer or TypeError/ValueError.

Sizes that wrap, depths that would hang, outputs beyond the memory limit, integer
arguments of every kind.  A regression of the memory guards would allocate
gigabytes, so those calls run in a child interpreter whose address space is
capped (it then fails with MemoryError or a crash instead of a ValueError);
calls that would hang carry a timeout so that a regression fails, not hangs.
"""
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from hftsig._ext import _logsignature, _signature
from hftsig.signatures import augmentations as transforms
from hftsig.signatures.logsignature import (
    logsig,
    logsiglength,
    lyndon_brackets,
    lyndon_words,
    sig_to_logsig,
)
from hftsig.signatures.signature import (
    SignatureStream,
    config_context,
    get_config,
    set_config,
    sig,
    sigcombine,
    siginv,
    sigjoin,
    siglength,
)
from hftsig.signatures.transformer import SignatureTransformer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GiB = 1 << 30
# enough for the interpreter, numpy and hftsig (~150 MB) and any call that
# is refused; far below what the regressions would allocate
CHILD_ADDRESS_SPACE = 1 * GiB


@pytest.fixture(autouse=True)
def default_limit(monkeypatch):
    """Every test starts from the default limit, whatever the environment says."""
    monkeypatch.delenv("HFTSIG_MAX_OUTPUT_BYTES", raising=False)
    previous = _signature.configured_max_output_bytes()
    _signature.set_max_output_bytes(None)
    yield
    _signature.set_max_output_bytes(previous)


def run_capped(statement):
    """Run ``statement`` in a child with a capped address space; return (code, outcome).

    The outcome is ``"RAISED|<type>|<message>"`` or ``"RETURNED"``; the code
    is the child's exit status (negative for a signal: a crash).
    """
    # the cap is set by the child itself: a preexec_fn is unsafe in a
    # process with threads, which pytest's may have
    program = textwrap.dedent("""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
        import numpy as np
        from hftsig.signatures.signature import *
        from hftsig.signatures.logsignature import *
        try:
        {statement}
        except Exception as exc:
            print("RAISED", type(exc).__name__, str(exc), sep="|")
        else:
            print("RETURNED")
    """).format(cap=CHILD_ADDRESS_SPACE,
                statement=textwrap.indent(textwrap.dedent(statement).strip(), "    "))
    env = {k: v for k, v in os.environ.items() if k != "HFTSIG_MAX_OUTPUT_BYTES"}
    env.update(PYTHONPATH=ROOT, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                          timeout=240, env=env, cwd=ROOT)
    return done.returncode, done.stdout.strip() or done.stderr.strip()[-500:]


# --- sizes that wrap or explode: refused before any allocation ------------------------------

CAPPED = {
    # malloc(8 * window * dim) wrapped to malloc(0) and the pushes wrote past it
    "stream_window_wraps": ("s = SignatureStream(1, 1, window=2**61 + 1)\n"
                            "for _ in range(5):\n    s.push(np.zeros(1))",
                            r"^window: SignatureStream\(dim=1, depth=1, window=2305843009213693953"
                            r", n_paths=None\) would take 16\.0 EiB"),
    "stream_paths_wrap": ("SignatureStream(1, 1, n_paths=2**61)",
                          r"^n_paths: .* would take 48\.0 EiB"),
    # 8.3 GiB of output and as much again of pieces, for a plain-looking call
    "sig_stream_too_large": ("sig(np.zeros((100000, 10)), 4, stream=True)",
                             r"^stream: the signatures of 99999 prefixes of 1 path \(float64 array "
                             r"of shape \(99999, 11110\), 8\.3 GiB\) .*would take 16\.6 GiB.*at="),
    "logsig_stream_too_large": ("logsig(np.zeros((100000, 10)), 4, stream=True)",
                                r"^stream: .*8\.3 GiB.*at="),
    # 9.4e10 Lyndon words listed one by one
    "lyndon_words_too_many": ("lyndon_words(10, 12)",
                              r"^depth: the 93549375919 Lyndon words of dim=10, depth=12 "
                              r"would take 24\.5 TiB"),
    "lyndon_words_huge_dim": ("lyndon_words(2**40, 1)", r"^dim: must be <= 2147483647"),
    "lyndon_words_huge_depth": ("lyndon_words(2, 2**64)", r"^depth: must be <= 60"),
    "lyndon_brackets_huge_depth": ("lyndon_brackets(2, 2**64)", r"^depth: must be <= 60"),
    # a 4 MiB signature whose Lyndon tables take tens of GiB
    "logsig_tables_too_large": ("logsig(np.random.default_rng(0).standard_normal((5, 2)), 18)",
                                r"^depth: .*Lyndon-basis tables .*basis='expanded'"),
    "sig_to_logsig_tables_too_large": ("sig_to_logsig(np.zeros(262142), 2, 17)",
                                       r"^depth: .*Lyndon-basis tables"),
}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("case", sorted(CAPPED))
def test_oversized_calls_are_refused_before_allocating(case):
    statement, message = CAPPED[case]
    code, outcome = run_capped(statement)
    assert code == 0, f"the child crashed ({code}): {outcome}"
    assert outcome.startswith("RAISED|ValueError|"), outcome
    assert re.search(message, outcome.removeprefix("RAISED|ValueError|")), outcome


# --- depths that hung: closed forms and range checks ----------------------------------------

@pytest.mark.timeout(30)
@pytest.mark.parametrize("call", [
    lambda: siglength(2, 2**40),
    lambda: logsiglength(2, 10**5),
    lambda: sig_to_logsig(np.zeros(6), 2, 2**40),
    lambda: siglength(2, 2**64),
    lambda: logsiglength(2, 2**64),
], ids=["siglength", "logsiglength", "sig_to_logsig", "siglength_2**64", "logsiglength_2**64"])
def test_huge_depth_is_refused_at_once(call):
    with pytest.raises(ValueError, match=r"^depth: must be <= 60, got \d+"):
        call()


def test_lengths_are_exact_up_to_the_deepest_level():
    assert siglength(2, 60) == 2**61 - 2
    assert siglength(1, 60) == 60
    assert siglength(2**31 - 1, 60) == sum((2**31 - 1) ** k for k in range(1, 61))
    # Witt's formula summed: Lyndon words up to length 60 over two letters
    assert logsiglength(2, 60) == sum(
        sum(_mobius(n // k) * 2**k for k in range(1, n + 1) if n % k == 0) // n
        for n in range(1, 61))
    assert logsiglength(2, 60) == 39105821092160479


def _mobius(n):
    primes = [p for p in range(2, n + 1) if n % p == 0 and all(p % q for q in range(2, p))]
    if any(n % (p * p) == 0 for p in primes):
        return 0
    return (-1) ** len(primes)


# --- integer arguments: one rule for every kind of integer ----------------------------------

X = np.cumsum(np.random.default_rng(3).standard_normal((6, 2)), axis=0)
S23 = sig(X, 3)

INT_ARGUMENTS = {
    # name: (call taking the hostile value, argument name in the message)
    "sig.depth": (lambda v: sig(X, v), "depth"),
    "sig.n_jobs": (lambda v: sig(X, 2, n_jobs=v), "n_jobs"),
    "logsig.depth": (lambda v: logsig(X, v), "depth"),
    "logsig.n_jobs": (lambda v: logsig(X, 2, n_jobs=v), "n_jobs"),
    "sig_to_logsig.dim": (lambda v: sig_to_logsig(S23, v, 3), "dim"),
    "sig_to_logsig.depth": (lambda v: sig_to_logsig(S23, 2, v), "depth"),
    "sig_to_logsig.n_jobs": (lambda v: sig_to_logsig(S23, 2, 3, n_jobs=v), "n_jobs"),
    "siglength.dim": (lambda v: siglength(v, 3), "dim"),
    "siglength.depth": (lambda v: siglength(2, v), "depth"),
    "logsiglength.dim": (lambda v: logsiglength(v, 3), "dim"),
    "logsiglength.depth": (lambda v: logsiglength(2, v), "depth"),
    "sigcombine.dim": (lambda v: sigcombine(S23, S23, v, 3), "dim"),
    "sigcombine.depth": (lambda v: sigcombine(S23, S23, 2, v), "depth"),
    "siginv.dim": (lambda v: siginv(S23, v, 3), "dim"),
    "siginv.depth": (lambda v: siginv(S23, 2, v), "depth"),
    "sigjoin.depth": (lambda v: sigjoin(S23, np.ones(2), v), "depth"),
    "SignatureStream.dim": (lambda v: SignatureStream(v, 2), "dim"),
    "SignatureStream.depth": (lambda v: SignatureStream(2, v), "depth"),
    "SignatureStream.window": (lambda v: SignatureStream(2, 2, window=v), "window"),
    "SignatureStream.n_paths": (lambda v: SignatureStream(2, 2, n_paths=v), "n_paths"),
    "SignatureTransformer.depth": (lambda v: SignatureTransformer(depth=v).fit(X[None]), "depth"),
    "SignatureTransformer.n_jobs": (lambda v: SignatureTransformer(n_jobs=v).fit(X[None]),
                                    "n_jobs"),
}
OUT_OF_RANGE = {
    "2**31": 2**31, "2**64": 2**64, "uint64_max": np.uint64(2**64 - 1), "10**5000": 10**5000,
    "-2**63": -(2**63),
}
WRONG_TYPE = {"True": True, "np.True_": np.True_, "2.0": 2.0, "np.float64(2)": np.float64(2),
              "'2'": "2", "None": None}


@pytest.mark.timeout(30)
@pytest.mark.parametrize("value", list(OUT_OF_RANGE.values()), ids=list(OUT_OF_RANGE))
@pytest.mark.parametrize("argument", sorted(INT_ARGUMENTS))
def test_integers_out_of_range_raise_value_error_naming_the_argument(argument, value):
    call, name = INT_ARGUMENTS[argument]
    if name in ("window", "n_paths") and value == 2**31:
        # in range, and small enough to allocate under a lowered limit: refused by size
        with config_context(max_output_bytes=1 << 20):
            with pytest.raises(ValueError, match=f"^{name}: .* would take"):
                call(value)
        return
    with pytest.raises(ValueError, match=f"^{name}: must be"):
        call(value)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("value", list(WRONG_TYPE.values()), ids=list(WRONG_TYPE))
@pytest.mark.parametrize("argument", sorted(INT_ARGUMENTS))
def test_non_integers_raise_type_error_naming_the_argument(argument, value):
    call, name = INT_ARGUMENTS[argument]
    if value is None and name in ("window", "n_paths", "n_jobs"):
        call(value)  # None is the documented default there (n_jobs: as in scikit-learn)
        return
    with pytest.raises(TypeError, match=f"^{name}: expected an int, got "):
        call(value)


@pytest.mark.parametrize("value", [np.uint8(3), np.int16(3), np.uint64(3), 3])
def test_integers_of_every_numpy_kind_are_accepted(value):
    np.testing.assert_array_equal(sig(X, value), sig(X, 3))
    assert siglength(2, value) == 14
    assert logsiglength(2, value) == 5
    assert SignatureStream(2, value, window=value, n_paths=value).siglength == 14


def test_huge_int_in_a_message_is_described_not_printed():
    # str() of a 5000-digit int raises ValueError of its own on Python >= 3.11
    with pytest.raises(ValueError, match=r"^depth: must be <= 60, got an int of 16610 bits$"):
        sig(X, 10**5000)


@pytest.mark.parametrize("call", [
    lambda: SignatureStream(2**31 - 1, 60),
    lambda: sigcombine(S23, S23, 2**31 - 1, 60),
    lambda: siginv(S23, 2**31 - 1, 60),
    lambda: lyndon_words(2**31 - 1, 60),
    lambda: SignatureTransformer(depth=60).fit(np.zeros((1, 2, 2**10))).get_feature_names_out(),
], ids=["SignatureStream", "sigcombine", "siginv", "lyndon_words", "feature_names"])
def test_largest_arguments_in_range_are_refused_by_size(call):
    # 10**560 coordinates: a size too large to print as a float
    with pytest.raises(ValueError, match=r"would take more than 2\*\*\d+ bytes"):
        call()


@pytest.mark.parametrize("n_jobs", [1024, -1024, -1, 2])
def test_n_jobs_in_range_still_work(n_jobs):
    np.testing.assert_allclose(sig(X[None].repeat(3, 0), 3, n_jobs=n_jobs)[0], S23, rtol=1e-12)


# --- at: indices beyond int64, unsigned, or not integers ------------------------------------

@pytest.mark.parametrize("at", [
    np.uint64([2**64 - 1]),  # was cast to -1: the last point
    np.uint64([2**63]),
    np.array([6], dtype=np.uint8),
    [2**64],  # an object array
    [2**63],
    [-(2**63) - 1],
    [1, 2**70],
], ids=["uint64_max", "uint64_2**63", "uint8_6", "2**64", "2**63", "-2**63-1", "mixed"])
def test_at_out_of_range_is_refused(at):
    with pytest.raises(ValueError, match=r"^at: index \d+|^at: index -\d+"):
        sig(X, 2, at=at)
    with pytest.raises(ValueError, match="^at: index"):
        logsig(X, 2, at=at)


@pytest.mark.parametrize("at", [[True], np.array([1.0]), [1, 2.5], ["1"], [None]])
def test_at_of_non_integers_is_refused(at):
    with pytest.raises(TypeError, match="^at: expected integer indices"):
        sig(X, 2, at=at)


def test_at_unsigned_and_python_ints_give_the_right_prefixes():
    want = sig(X, 3, at=[5, 0, 2])
    np.testing.assert_array_equal(sig(X, 3, at=np.uint64([5, 0, 2])), want)
    np.testing.assert_array_equal(sig(X, 3, at=np.array([5, 0, 2], dtype=object)), want)
    np.testing.assert_array_equal(sig(X, 3, at=np.uint8([5, 0, 2])), want)


# --- flags and transform arguments ----------------------------------------------------------

@pytest.mark.parametrize("flag", ["stream", "basepoint", "time_aug", "lead_lag"])
@pytest.mark.parametrize("value", ["yes", 1, np.array([1, 0]), None])
def test_flags_must_be_bools(flag, value):
    # a truthy string or number silently switched a transform on
    with pytest.raises(TypeError, match=f"^{flag}: expected a bool"):
        sig(X, 2, **{flag: value})
    with pytest.raises(TypeError, match=f"^{flag}: expected a bool"):
        logsig(X, 2, **{flag: value})


def test_numpy_bools_are_flags():
    np.testing.assert_array_equal(sig(X, 2, stream=np.True_), sig(X, 2, stream=True))


@pytest.mark.parametrize("name", ["start", "end"])
def test_time_augment_needs_finite_real_times(name):
    for bad in (np.nan, np.inf, 10**400):
        with pytest.raises(ValueError, match=f"^{name}: must be finite"):
            transforms.time_augment(X, **{name: bad})
    for bad in ("0", None, True, 1j):
        with pytest.raises(TypeError, match=f"^{name}: expected a real number"):
            transforms.time_augment(X, **{name: bad})
    assert transforms.time_augment(X, **{name: np.float32(0.5)}).shape == (6, 3)


# --- the memory limit -----------------------------------------------------------------------

def test_default_limit_is_two_gib():
    assert get_config() == {"max_output_bytes": 2 * GiB}


def test_limit_from_the_environment(monkeypatch):
    monkeypatch.setenv("HFTSIG_MAX_OUTPUT_BYTES", "10_000")
    assert get_config()["max_output_bytes"] == 10_000
    with pytest.raises(ValueError, match=r"^stream: .* would take .*, more than the limit of "
                                         r"9\.8 KiB .*at=.*HFTSIG_MAX_OUTPUT_BYTES"):
        sig(np.zeros((200, 2)), 2, stream=True)
    # set_config wins over the environment
    with config_context(max_output_bytes=GiB):
        assert sig(np.zeros((200, 2)), 2, stream=True).shape == (199, 6)
    for bad in ("lots", "-1", "0", "1e9", str(2**63)):
        monkeypatch.setenv("HFTSIG_MAX_OUTPUT_BYTES", bad)
        with pytest.raises(ValueError, match="^HFTSIG_MAX_OUTPUT_BYTES: expected a positive"):
            sig(X, 2)


def test_set_config_and_config_context():
    with config_context(max_output_bytes=12345):
        assert get_config()["max_output_bytes"] == 12345
        with config_context():  # None leaves the setting alone
            assert get_config()["max_output_bytes"] == 12345
    assert get_config()["max_output_bytes"] == 2 * GiB
    with pytest.raises(RuntimeError):
        with config_context(max_output_bytes=100):
            raise RuntimeError
    assert get_config()["max_output_bytes"] == 2 * GiB
    set_config(max_output_bytes=5 * GiB)
    assert get_config()["max_output_bytes"] == 5 * GiB
    with pytest.raises(ValueError, match="^max_output_bytes: must be >= 1"):
        set_config(max_output_bytes=0)
    with pytest.raises(TypeError, match="^max_output_bytes: expected an int"):
        set_config(max_output_bytes=1e9)
    with pytest.raises(TypeError, match="^max_output_bytes: expected an int"):
        set_config(max_output_bytes=True)
    assert get_config()["max_output_bytes"] == 5 * GiB


def test_limit_counts_output_and_working_buffers_exactly():
    from hftsig.signatures.signature import _SigPlan

    paths = np.cumsum(np.random.default_rng(4).standard_normal((3, 50, 2)), axis=1)
    for kwargs in (dict(), dict(stream=True), dict(at=[49, 3, 3, 0])):
        plan = _SigPlan(paths, 3, stream=kwargs.get("stream", False), at=kwargs.get("at"),
                        basepoint=False, time_aug=False, lead_lag=False, n_jobs=1)
        need = plan.nbytes()
        assert need >= plan.out_bytes() > 0
        with config_context(max_output_bytes=need):
            got = sig(paths, 3, **kwargs)
        np.testing.assert_array_equal(got, sig(paths, 3, **kwargs))
        argument = "stream" if "stream" in kwargs else "at" if "at" in kwargs else "path"
        with config_context(max_output_bytes=need - 1):
            with pytest.raises(ValueError, match=f"^{argument}: the signatures of "):
                sig(paths, 3, **kwargs)


def test_one_signature_beyond_the_limit_names_depth():
    with config_context(max_output_bytes=1000):
        with pytest.raises(ValueError, match=r"^depth: one signature of dim=2, depth=7 "
                                             r"\(254 coordinates\) would take 2\.0 KiB"):
            sig(X, 7)
        with pytest.raises(ValueError, match="^depth: one signature"):
            sigcombine(np.zeros(254), np.zeros(254), 2, 7)


def test_logsig_tables_count_against_the_limit():
    # dim=2, depth=10: a 16 KiB signature, Lyndon tables of a few MiB
    with config_context(max_output_bytes=1 << 20):
        with pytest.raises(ValueError, match=r"^depth: .*Lyndon-basis tables.*basis='expanded'"):
            logsig(X, 10)
        with pytest.raises(ValueError, match=r"^depth: .*Lyndon-basis tables"):
            sig_to_logsig(sig(X, 10), 2, 10)
        expanded = logsig(X, 10, basis="expanded")
    np.testing.assert_allclose(expanded, sig_to_logsig(sig(X, 10), 2, 10, basis="expanded"))
    assert logsig(X, 10).shape == (logsiglength(2, 10),)


def test_many_signatures_to_logsig_beyond_the_limit_names_signature():
    many = np.zeros((100_000, 14))
    with config_context(max_output_bytes=4 << 20):
        with pytest.raises(ValueError, match=r"^signature: the log-signatures \(5 coordinates "
                                             r"each\) of 100000 signatures"):
            sig_to_logsig(many, 2, 3)
        assert sig_to_logsig(many[:1000], 2, 3).shape == (1000, 5)


def test_stream_and_join_and_names_obey_the_limit():
    with config_context(max_output_bytes=100_000):
        with pytest.raises(ValueError, match=r"^window: SignatureStream\(dim=2, depth=2, "
                                             r"window=100000"):
            SignatureStream(2, 2, window=100_000)
        with pytest.raises(ValueError, match=r"^n_paths: SignatureStream\(dim=2, depth=2, "
                                             r"window=None, n_paths=10000\)"):
            SignatureStream(2, 2, n_paths=10_000)
        with pytest.raises(ValueError, match=r"^segment: the joined signatures \(shape "
                                             r"\(10000, 14\)\)"):
            sigjoin(S23, np.zeros((10_000, 2)), 3)
        with pytest.raises(ValueError, match="^depth: the 9382 Lyndon words"):
            lyndon_words(3, 10)
        with pytest.raises(ValueError, match="^depth: the brackets of the 9382 Lyndon words"):
            lyndon_brackets(3, 10)
        st = SignatureTransformer(depth=8).fit(np.zeros((1, 3, 3)))
        with pytest.raises(ValueError, match="^depth: the names of the 9840 signature"):
            st.get_feature_names_out()
        # what fits still works
        stream = SignatureStream(2, 2, window=100, n_paths=3)
        stream.push(np.ones((3, 2)))
        assert stream.signature.shape == (3, 6)


def test_stream_that_fits_still_computes_the_windowed_signature():
    # the size checks moved ahead of the allocations; the pushes are unchanged
    path = np.cumsum(np.random.default_rng(5).standard_normal((40, 2)), axis=0)
    stream = SignatureStream(2, 3, window=7, n_paths=2)
    for point in path:
        stream.push(np.stack([point, -point]))
    np.testing.assert_allclose(stream.signature[0], sig(path[-7:], 3), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(stream.signature[1], sig(-path[-7:], 3), rtol=1e-10, atol=1e-12)


# --- the private kernels refuse what would send them out of bounds --------------------------

def test_kernels_refuse_rows_of_the_wrong_length():
    rows = np.zeros((2, 5))  # not a signature length for dim=2, depth=2 (6)
    with pytest.raises(ValueError, match="^s1: rows of 5 entries"):
        _signature.combine(rows, rows, 2, 2)
    with pytest.raises(ValueError, match="^s: rows of 5 entries"):
        _signature.inverse(rows, 2, 2)
    with pytest.raises(ValueError, match="^s: rows of 5 entries"):
        _signature.join_inplace(rows, np.zeros((2, 2)), 2)
    with pytest.raises(ValueError, match="^s2: shape"):
        _signature.combine(np.zeros((2, 6)), np.zeros((1, 6)), 2, 2)
    with pytest.raises(ValueError, match="^siglength: dim=2147483647, depth=60"):
        _signature.siglength(2**31 - 1, 60)  # wrapped around to a small number before


def test_kernel_refuses_unsorted_or_outside_indices():
    paths = np.zeros((1, 5, 2))
    for at in ([3, 1], [5], [-1]):
        with pytest.raises(ValueError, match="^at: indices must be sorted and within the path"):
            _signature.sig_at(paths, 2, np.array(at, dtype=np.int64),
                              np.arange(len(at), dtype=np.int64), 1)


def test_tensor_log_refuses_sizes_that_overflow():
    s = np.zeros((1, 6))
    with pytest.raises(ValueError, match="^signature: rows do not have siglength"):
        _logsignature.tensor_log(s, np.empty_like(s), 2**40, 2, 1)
    with pytest.raises(ValueError, match="^signature: rows do not have siglength"):
        _logsignature.tensor_log(s, np.empty_like(s), 0, 2, 1)

