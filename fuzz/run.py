"""Run the fuzz targets of :mod:`fuzz.targets`.

Usage (from the repository root; ``make fuzz`` sets up the sanitizer build)::

    python -m fuzz.run TARGET [--seconds N]     # fuzz one target
    python -m fuzz.run --all --seconds N        # every target, N seconds in all
    python -m fuzz.run --replay [TARGET ...]    # corpus and regressions once each
    python -m fuzz.run --list

Engine: atheris (libFuzzer) when it imports, with the C extensions'
coverage when they were built with ``HFTSIG_SANITIZE=...,fuzzer-no-link``
and Python's from atheris' instrumentation of ``hftsig``, ``connectors`` and
``websocket``; otherwise a plain mutation loop over the corpus (no
coverage feedback; see docs/fuzzing.md).  Seeds come from
``fuzz/corpus/TARGET``; new coverage goes to ``build/fuzz/corpus/TARGET``;
an input that breaks the contract, crashes, hangs (> ``--timeout`` s) or
needs more than ``--rss-mb`` MiB is written to ``fuzz/regressions/TARGET/``
and the run fails.
"""
from __future__ import annotations

import argparse
import faulthandler
import hashlib
import os
import random
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# fuzz/asan.sh runs this from a copy of the tree (build/asan/tree): corpus,
# regressions and work files still belong to the checkout it names
DATA = os.environ.get("HFTSIG_FUZZ_DATA") or os.path.join(ROOT, "fuzz")
CORPUS = os.path.join(DATA, "corpus")
REGRESSIONS = os.path.join(DATA, "regressions")
WORK = os.environ.get("HFTSIG_FUZZ_WORK") or os.path.join(ROOT, "build", "fuzz")

# tokens the mutation loop splices in (libFuzzer finds its own with -use_value_profile)
_TOKENS = [b'"', b"{", b"}", b"[", b"]", b",", b":", b"-", b".", b"e", b"E+", b"0", b"9",
           b"null", b"true", b"1e400", b"-1", b"18446744073709551616", b"\\u0000", b"\xff",
           b'"symbol":', b'"data":', b'"price":', b'"qty":', b'"channel":', b'"type":']


def _inputs(directory):
    if not os.path.isdir(directory):
        return []
    return [os.path.join(directory, f) for f in sorted(os.listdir(directory))
            if not f.startswith(".") and os.path.isfile(os.path.join(directory, f))]


def _save(directory, data, prefix):
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"{prefix}-{hashlib.sha1(data).hexdigest()}")
    with open(path, "wb") as fh:
        fh.write(data)
    return path


def _mutate(rng, data, corpus):
    buf = bytearray(data)
    for _ in range(1 + rng.randrange(4)):
        op = rng.randrange(7)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] ^= 1 << rng.randrange(8)
        elif op == 1 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif op == 2:
            buf[pos:pos] = rng.choice(_TOKENS)
        elif op == 3 and buf:
            del buf[pos:pos + 1 + rng.randrange(8)]
        elif op == 4 and buf:
            start = rng.randrange(len(buf))
            buf[pos:pos] = buf[start:start + 1 + rng.randrange(16)]
        elif op == 5 and corpus:
            other = rng.choice(corpus)
            start = rng.randrange(len(other) + 1)
            buf[pos:] = other[start:]
        else:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(1 + rng.randrange(4)))
    return bytes(buf[:1 << 16])


def _mutation_loop(name, target, seconds, timeout):
    """Random mutations of the corpus; no coverage feedback."""
    corpus = []
    for path in _inputs(os.path.join(CORPUS, name)) + _inputs(os.path.join(WORK, "corpus", name)):
        with open(path, "rb") as fh:
            corpus.append(fh.read())
    corpus = corpus or [b""]
    rng = random.Random(int.from_bytes(os.urandom(8), "little"))
    current = os.path.join(WORK, f"{name}.current")
    os.makedirs(WORK, exist_ok=True)
    deadline = time.monotonic() + seconds
    runs = 0
    while time.monotonic() < deadline:
        data = _mutate(rng, rng.choice(corpus), corpus)
        # a segfault or a hang kills the process: the parent keeps this file
        with open(current, "wb") as fh:
            fh.write(data)
        faulthandler.dump_traceback_later(timeout, exit=True)
        try:
            target(data)
        except BaseException as exc:
            faulthandler.cancel_dump_traceback_later()
            path = _save(os.path.join(REGRESSIONS, name), data, "crash")
            print(f"{name}: FINDING {type(exc).__name__}: {exc}\n  input: {path}",
                  file=sys.stderr)
            raise
        runs += 1
    faulthandler.cancel_dump_traceback_later()
    os.unlink(current)
    print(f"{name}: {runs} inputs in {seconds:.0f} s (mutation loop), no finding")


def _atheris(name, target, seconds, timeout, rss_mb):
    import atheris
    work = os.path.join(WORK, "corpus", name)
    os.makedirs(work, exist_ok=True)
    crashes = os.path.join(REGRESSIONS, name)
    os.makedirs(crashes, exist_ok=True)
    args = [sys.argv[0], work, os.path.join(CORPUS, name),
            f"-max_total_time={max(1, int(seconds))}", f"-timeout={timeout}",
            f"-rss_limit_mb={rss_mb}", f"-malloc_limit_mb={rss_mb}",
            f"-artifact_prefix={crashes}/", "-max_len=65536", "-print_final_stats=1"]
    atheris.Setup(args, target)
    atheris.Fuzz()


def _instrumented_targets(use_atheris):
    if use_atheris:
        import atheris
        with atheris.instrument_imports(include=["hftsig", "connectors", "websocket", "fuzz"]):
            from fuzz import targets
    else:
        from fuzz import targets
    return targets.TARGETS


def replay_one(target, data, timeout, memory_limit=None):
    """None when ``data`` keeps the contract, else what went wrong.

    The input runs in a forked child: a finding may be a crash, a hang or a
    runaway allocation, and the inputs after it still get their turn.
    ``memory_limit`` (bytes of address space, not under ASan, which reserves
    terabytes) turns a runaway allocation into a MemoryError."""
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child
        os.close(rfd)
        try:
            if memory_limit:
                import resource
                resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
            target(data)
            msg = b""
        except BaseException as exc:
            msg = f"{type(exc).__name__}: {exc}".encode("utf-8", "replace") or b"?"
        os.write(wfd, msg[:4000])
        os._exit(0)
    os.close(wfd)
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        if time.monotonic() > deadline:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
            os.close(rfd)
            return f"still running after {timeout} s"
        time.sleep(0.005)
    with os.fdopen(rfd, "rb") as fh:
        msg = fh.read().decode("utf-8", "replace")
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        return msg or f"child ended with {code}"
    return msg or None


def replay(names, timeout):
    """Run every corpus and regression input of ``names`` once; return the failures."""
    from fuzz.targets import TARGETS
    failures = []
    for name in names:
        paths = _inputs(os.path.join(CORPUS, name)) + _inputs(os.path.join(REGRESSIONS, name))
        for path in paths:
            with open(path, "rb") as fh:
                data = fh.read()
            problem = replay_one(TARGETS[name], data, timeout)
            if problem is not None:
                failures.append((path, problem))
                print(f"{path}: {problem}", file=sys.stderr)
        print(f"{name}: {len(paths)} inputs replayed")
    return failures


def _run_all(args, names):
    """Each target in its own process (a crash ends only that one), time shared out."""
    share = max(5.0, args.seconds / len(names))
    failed = []
    for name in names:
        cmd = [sys.executable, "-m", "fuzz.run", name, "--seconds", str(share),
               "--timeout", str(args.timeout), "--rss-mb", str(args.rss_mb)]
        if args.engine:
            cmd += ["--engine", args.engine]
        print(f"== {name} ({share:.0f} s)", flush=True)
        rc = subprocess.call(cmd, cwd=ROOT)
        current = os.path.join(WORK, f"{name}.current")
        if rc != 0:
            failed.append(name)
            if os.path.exists(current):  # the mutation loop died on this input
                with open(current, "rb") as fh:
                    path = _save(os.path.join(REGRESSIONS, name), fh.read(), "crash")
                os.unlink(current)
                print(f"{name}: process ended with {rc}; input kept as {path}", file=sys.stderr)
    if failed:
        print(f"FINDINGS in: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"all {len(names)} targets ran {share:.0f} s each without a finding")
    return 0


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m fuzz.run", description=__doc__.split("\n")[0])
    ap.add_argument("targets", nargs="*")
    ap.add_argument("--all", action="store_true", help="every target, --seconds in all")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--timeout", type=int, default=20, help="seconds one input may take")
    ap.add_argument("--rss-mb", type=int, default=2048)
    ap.add_argument("--engine", choices=("atheris", "mutate"), default=None)
    ap.add_argument("--replay", action="store_true")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args(argv)
    if ROOT not in sys.path:
        sys.path.append(ROOT)  # (after the path's own hftsig: another tree may be tested)
    from fuzz.targets import TARGETS
    names = args.targets or list(TARGETS)
    unknown = [n for n in names if n not in TARGETS]
    if unknown:
        ap.error(f"unknown target(s) {unknown}; --list shows them")
    if args.list:
        print("\n".join(TARGETS))
        return 0
    if args.replay:
        return 1 if replay(names, args.timeout) else 0
    if args.all or len(names) > 1:
        return _run_all(args, names)
    try:
        import atheris  # noqa: F401
        have_atheris = True
    except ImportError:
        have_atheris = False
    engine = args.engine or ("atheris" if have_atheris else "mutate")
    if engine == "atheris" and not have_atheris:
        ap.error("atheris is not installed (pip install -e '.[fuzz]')")
    name = names[0]
    target = _instrumented_targets(engine == "atheris")[name]
    if engine == "atheris":
        _atheris(name, target, args.seconds, args.timeout, args.rss_mb)
    else:
        faulthandler.enable()
        _mutation_loop(name, target, args.seconds, args.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
