"""Signature benchmark: hftsig against iisignature and pysiglib.

Run from the repository root::

    python -m benchmarks.signatures            # 9 repeats per timing
    python -m benchmarks.signatures --quick    # 3 repeats, fewer ticks
    python -m benchmarks.signatures --only backprop   # one group of rows
    python -m benchmarks.signatures --only sig_kernel # signature kernel (Goursat PDE) rows

Every row first checks that the libraries agree (``allclose``), then times
each with the median of repeated runs.  Ratios are peer time / hftsig time
(above 1: hftsig is faster).  A peer that is not installed prints ``n/a``.
pysiglib is imported after torch, which it needs.  Times are wall clock on
whatever else the machine is doing: quote them with the machine line.
"""
import argparse
import datetime
import statistics
import time

import numpy as np

import hftsig
from benchmarks.machine import describe

try:
    import iisignature
except ImportError:  # pragma: no cover - optional peer
    iisignature = None
try:
    import pysiglib
    import torch  # noqa: F401  (pysiglib needs torch imported first)
except ImportError:  # pragma: no cover - optional peer
    pysiglib = None

CASES = [(32, 1000, 5, 4), (1, 10000, 2, 6), (128, 100, 3, 5), (64, 500, 4, 4)]
PUSH_CASES = [(1, 3, 4), (1, 2, 4), (1, 3, 3), (64, 3, 4)]  # (n_paths, dim, depth)
N_DATES = 50
GROUPS = ("sig", "at", "logsig", "push", "backprop", "sig_kernel")
# (n paths, length, dim, dyadic_order): Gram matrices of n x n signature kernels
KERNEL_CASES = [(32, 100, 5, 0), (32, 100, 3, 2), (16, 400, 2, 1), (64, 50, 4, 1)]


def median_time(fn, repeats):
    fn()  # warm up (thread pools, caches, lazy imports)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def paired_speedup(slow, fast, pairs):
    """Median over interleaved pairs of time(slow) / time(fast).

    The host's speed drifts from second to second here (shared hardware under
    the VM), so two medians taken at different moments can disagree by 30%;
    timing the two calls back to back, pair after pair, compares like with like.
    """
    slow()
    fast()
    ratios = []
    for _ in range(pairs):
        t0 = time.perf_counter()
        slow()
        t1 = time.perf_counter()
        fast()
        t2 = time.perf_counter()
        ratios.append((t1 - t0) / (t2 - t1))
    return statistics.median(ratios)


def random_paths(batch, length, dim, seed=0):
    rng = np.random.default_rng(seed)
    return np.cumsum(rng.standard_normal((batch, length, dim)) / np.sqrt(length), axis=1)


def check(name, ours, theirs, rtol=1e-8):
    theirs = np.asarray(theirs, dtype=np.float64).reshape(np.shape(ours))
    scale = max(1.0, float(np.abs(theirs).max()))
    if not np.allclose(ours, theirs, rtol=rtol, atol=rtol * scale):
        err = float(np.abs(ours - theirs).max())
        raise AssertionError(f"{name}: outputs differ (max abs diff {err:.3g})")


class Table:
    def __init__(self):
        self.rows = []

    def add(self, op, case, unit, ours, ii, ps, note=""):
        self.rows.append((op, case, unit, ours, ii, ps, note))
        self.print_row(self.rows[-1])

    @staticmethod
    def header():
        print(f"| {'operation':<24} | {'(batch,length,dim,depth)':<24} | {'unit':<6} | "
              f"{'hftsig':>9} | {'iisignature':>11} | {'pysiglib':>9} | {'iisig/hft':>9} | "
              f"{'pysig/hft':>9} | note")
        print(f"|{'-' * 26}|{'-' * 26}|{'-' * 8}|{'-' * 11}|{'-' * 13}|{'-' * 11}|{'-' * 11}|"
              f"{'-' * 11}|------")

    @staticmethod
    def print_row(row):
        op, case, unit, ours, ii, ps, note = row

        def fmt(v, w):
            return f"{v:>{w}.3f}" if v is not None else f"{'n/a':>{w}}"

        def ratio(v):
            return f"{v / ours:>8.2f}x" if (v is not None and ours) else f"{'n/a':>9}"

        print(f"| {op:<24} | {str(case):<24} | {unit:<6} | {fmt(ours, 9)} | {fmt(ii, 11)} | "
              f"{fmt(ps, 9)} | {ratio(ii)} | {ratio(ps)} | {note}", flush=True)


def bench_sig(table, case, repeats):
    batch, length, dim, depth = case
    x = random_paths(batch, length, dim)
    ours = hftsig.sig(x, depth)
    ii = ps = None
    if iisignature is not None:
        check("iisignature.sig", ours, iisignature.sig(x, depth))
        ii = median_time(lambda: iisignature.sig(x, depth), repeats) * 1e3
    if pysiglib is not None:
        check("pysiglib.sig", ours, pysiglib.sig(x, depth, n_jobs=1))
        ps = median_time(lambda: pysiglib.sig(x, depth, n_jobs=1), repeats) * 1e3
    t1 = median_time(lambda: hftsig.sig(x, depth), repeats) * 1e3
    table.add("sig, 1 thread", case, "ms", t1, ii, ps)

    check("hftsig.sig n_jobs=-1", hftsig.sig(x, depth, n_jobs=-1), ours, rtol=1e-10)
    ps = None
    if pysiglib is not None:
        check("pysiglib.sig n_jobs=-1", ours, pysiglib.sig(x, depth, n_jobs=-1))
        ps = median_time(lambda: pysiglib.sig(x, depth, n_jobs=-1), repeats) * 1e3
    tall = median_time(lambda: hftsig.sig(x, depth, n_jobs=-1), repeats) * 1e3
    speedup = paired_speedup(lambda: hftsig.sig(x, depth), lambda: hftsig.sig(x, depth, n_jobs=-1),
                             5 * repeats)
    table.add("sig, n_jobs=-1", case, "ms", tall, None, ps,
              f"{speedup:.2f}x own 1-thread (paired); iisignature has no threads")


def bench_at(table, case, repeats):
    """Prefix signatures at N_DATES exercise dates (what optimal stopping needs)."""
    batch, length, dim, depth = case
    x = random_paths(batch, length, dim, seed=1)
    dates = np.unique(np.linspace(length // N_DATES, length - 1, N_DATES).astype(np.int64))
    ours = hftsig.sig(x, depth, at=dates)
    ii = ps = None
    if iisignature is not None:
        # iisignature's way: every prefix, then select
        def ii_at():
            return iisignature.sig(x, depth, 2)[:, dates - 1]
        check("iisignature stream", ours, ii_at())
        ii = median_time(ii_at, repeats) * 1e3
    if pysiglib is not None:
        # pysiglib's best way: signatures of the pieces between dates, joined by Chen
        bounds = np.concatenate([[0], dates])

        def ps_at():
            out = []
            acc = None
            for a, b in zip(bounds[:-1], bounds[1:]):
                piece = pysiglib.sig(np.ascontiguousarray(x[:, a:b + 1]), depth, n_jobs=1)
                acc = piece if acc is None else pysiglib.sig_combine(acc, piece, dim, depth)
                out.append(acc)
            return np.stack(out, axis=1)
        check("pysiglib pieces + sig_combine", ours, ps_at())
        ps = median_time(ps_at, repeats) * 1e3
    t = median_time(lambda: hftsig.sig(x, depth, at=dates), repeats) * 1e3
    table.add(f"sig at {len(dates)} dates", case, "ms", t, ii, ps,
              "iisignature: full stream then select; pysiglib: pieces + sig_combine")


def bench_logsig(table, case, repeats):
    batch, length, dim, depth = case
    if not hasattr(hftsig, "logsig"):
        print(f"  (logsig {case}: skipped, hftsig.logsig is not available on this branch)")
        return
    x = random_paths(batch, length, dim, seed=2)
    ours = hftsig.logsig(x, depth)
    ii = None
    if iisignature is not None:
        prep = iisignature.prepare(dim, depth)
        check("iisignature.logsig", ours, iisignature.logsig(x, prep), rtol=1e-7)
        ii = median_time(lambda: iisignature.logsig(x, prep), repeats) * 1e3
    t = median_time(lambda: hftsig.logsig(x, depth), repeats) * 1e3
    table.add("logsig (Lyndon)", case, "ms", t, ii, None, "pysiglib: not compared")


def bench_push(table, n_paths, dim, depth, n_ticks, window=None):
    """Per-tick cost of extending a running signature (one push / one join per tick)."""
    rng = np.random.default_rng(3)
    shape = (n_ticks, dim) if n_paths == 1 else (n_ticks, n_paths, dim)
    pts = np.cumsum(rng.standard_normal(shape) * 0.01, axis=0)
    ticks = list(pts)  # one array per tick, as a feed would deliver them
    incs = list(np.diff(pts, axis=0))

    st = hftsig.SignatureStream(dim, depth, window=window,
                                n_paths=None if n_paths == 1 else n_paths)

    def ours():
        st.reset()
        push = st.push
        for p in ticks:
            push(p)

    ours()
    if window is None:
        x = pts if n_paths == 1 else np.swapaxes(pts, 0, 1)
        check("SignatureStream", st.signature, hftsig.sig(x, depth), rtol=1e-9)
    t = median_time(ours, 5) / n_ticks * 1e6

    ii = ps = None
    if window is None and iisignature is not None:
        k = min(n_ticks - 1, 2000)

        def ii_run():
            s = np.zeros(hftsig.siglength(dim, depth)) if n_paths == 1 else \
                np.zeros((n_paths, hftsig.siglength(dim, depth)))
            for z in incs[:k]:
                s = iisignature.sigjoin(s, z, depth)
            return s
        x = pts[:k + 1] if n_paths == 1 else np.swapaxes(pts[:k + 1], 0, 1)
        check("iisignature.sigjoin", hftsig.sig(x, depth), ii_run(), rtol=1e-3)
        ii = median_time(ii_run, 3) / k * 1e6
    if window is None and pysiglib is not None:
        k = min(n_ticks - 1, 300)

        def ps_run():
            s = np.zeros(hftsig.siglength(dim, depth)) if n_paths == 1 else \
                np.zeros((n_paths, hftsig.siglength(dim, depth)))
            for z in incs[:k]:
                s = pysiglib.sig_join(s, z, dim, depth)
            return s
        x = pts[:k + 1] if n_paths == 1 else np.swapaxes(pts[:k + 1], 0, 1)
        check("pysiglib.sig_join", hftsig.sig(x, depth), ps_run(), rtol=1e-9)
        ps = median_time(ps_run, 3) / k * 1e6
    label = "SignatureStream.push" + (f" w={window}" if window else "")
    table.add(label, (n_paths, "tick", dim, depth), "us/tick", t, ii, ps,
              "peers: sigjoin / sig_join per tick" if window is None else "sliding window")


def bench_backprop(table, case, repeats):
    """dL/dpath given dL/dsig, one thread.  pysiglib's sig_backprop takes the
    signature as an argument (computed beforehand, not timed); hftsig and
    iisignature compute what they need of it themselves."""
    batch, length, dim, depth = case
    x = random_paths(batch, length, dim, seed=4)
    g = np.random.default_rng(5).standard_normal((batch, hftsig.siglength(dim, depth)))
    ours = hftsig.sigbackprop(g, x, depth)
    ii = ps = None
    if iisignature is not None:
        # iisignature returns float32 (computed in float64): compare at that precision
        check("iisignature.sigbackprop", ours, iisignature.sigbackprop(g, x, depth), rtol=1e-5)
        ii = median_time(lambda: iisignature.sigbackprop(g, x, depth), repeats) * 1e3
    if pysiglib is not None:
        s = pysiglib.sig(x, depth, n_jobs=1)
        check("pysiglib.sig_backprop", ours, pysiglib.sig_backprop(x, s, g, depth, n_jobs=1))
        ps = median_time(lambda: pysiglib.sig_backprop(x, s, g, depth, n_jobs=1), repeats) * 1e3
    t = median_time(lambda: hftsig.sigbackprop(g, x, depth), repeats) * 1e3
    table.add("sigbackprop, 1 thread", case, "ms", t, ii, ps,
              "pysiglib given the signature")
    return t, ii, ps


def bench_logsigbackprop(table, case, repeats):
    """dL/dpath given dL/dlogsig (Lyndon basis), one thread, against iisignature."""
    batch, length, dim, depth = case
    x = random_paths(batch, length, dim, seed=6)
    g = np.random.default_rng(7).standard_normal((batch, hftsig.logsiglength(dim, depth)))
    ours = hftsig.logsigbackprop(g, x, depth)
    ii = None
    if iisignature is not None:
        prep = iisignature.prepare(dim, depth)
        check("iisignature.logsigbackprop", ours, iisignature.logsigbackprop(g, x, prep),
              rtol=1e-5)
        ii = median_time(lambda: iisignature.logsigbackprop(g, x, prep), repeats) * 1e3
    t = median_time(lambda: hftsig.logsigbackprop(g, x, depth), repeats) * 1e3
    table.add("logsigbackprop (Lyndon)", case, "ms", t, ii, None, "pysiglib: not compared")
    return t, ii, None


def geometric_mean_ratios(name, rows):
    """Print the geometric mean over rows of peer time / hftsig time."""
    for label, k in (("iisignature", 1), ("pysiglib", 2)):
        r = [row[k] / row[0] for row in rows if row[k] is not None and row[0]]
        if r:
            print(f"{name}: geometric mean speedup over {label}: "
                  f"{float(np.exp(np.mean(np.log(r)))):.2f}x ({len(r)} cases)")


def bench_sig_kernel(table, case, repeats):
    """Gram matrices of signature kernels (Goursat PDE) against pysiglib's CPU solver.

    The ``sigkernel`` package (the PDE's reference implementation) is not on
    PyPI (it installs from its git repository only), so it is not compared.
    """
    n, length, dim, order = case
    X = random_paths(n, length, dim, seed=4)
    Y = random_paths(n, length, dim, seed=5)
    rows = [("sig_kernel_gram(X)", lambda: hftsig.sig_kernel_gram(X, dyadic_order=order),
             lambda: pysiglib.sig_kernel_gram(X, X, dyadic_order=order, n_jobs=1),
             "symmetric: n(n+1)/2 solves; pysiglib given X twice (its symmetric case)"),
            ("sig_kernel_gram(X, Y)",
             lambda: hftsig.sig_kernel_gram(X, Y, dyadic_order=order),
             lambda: pysiglib.sig_kernel_gram(X, Y, dyadic_order=order, n_jobs=1),
             "n*n solves each"),
            ("sig_kernel_gram rbf",
             lambda: hftsig.sig_kernel_gram(X, Y, dyadic_order=order, static_kernel="rbf",
                                            sigma=0.5),
             lambda: pysiglib.sig_kernel_gram(X, Y, dyadic_order=order, n_jobs=1,
                                              static_kernel=pysiglib.RBFKernel(0.5)),
             "rbf static kernel, exp(-|a-b|^2/sigma)")]
    for label, ours_fn, peer_fn, note in rows:
        ours = ours_fn()
        ps = None
        if pysiglib is not None:
            check(f"pysiglib {label}", ours, peer_fn(), rtol=1e-9)
            ps = median_time(peer_fn, repeats) * 1e3
        t = median_time(ours_fn, repeats) * 1e3
        table.add(f"{label}, 1 thread", case, "ms", t, None, ps, note)
    # gradients of sum(W * G) with respect to both batches
    W = np.random.default_rng(6).standard_normal((n, n))
    ours_fn = lambda: hftsig.sig_kernel_gram_backprop(W, X, Y, dyadic_order=order)  # noqa: E731
    ps = None
    if pysiglib is not None:
        def peer_fn():
            return pysiglib.sig_kernel_gram_backprop(W, X, Y, dyadic_order=order, n_jobs=1,
                                                     left_deriv=True, right_deriv=True)
        ours, theirs = ours_fn(), peer_fn()
        check("pysiglib sig_kernel_gram_backprop x", ours[0], theirs[0], rtol=1e-9)
        check("pysiglib sig_kernel_gram_backprop y", ours[1], theirs[1], rtol=1e-9)
        ps = median_time(peer_fn, repeats) * 1e3
    table.add("sig_kernel_gram_backprop, 1 thread", case, "ms",
              median_time(ours_fn, repeats) * 1e3, None, ps, "gradients w.r.t. X and Y")
    ours_fn = lambda: hftsig.sig_kernel_gram(X, Y, dyadic_order=order, n_jobs=-1)  # noqa: E731
    check("hftsig.sig_kernel_gram n_jobs=-1", ours_fn(),
          hftsig.sig_kernel_gram(X, Y, dyadic_order=order), rtol=1e-12)
    ps = None
    if pysiglib is not None:
        def peer_fn():
            return pysiglib.sig_kernel_gram(X, Y, dyadic_order=order, n_jobs=-1)
        check("pysiglib sig_kernel_gram n_jobs=-1", ours_fn(), peer_fn(), rtol=1e-9)
        ps = median_time(peer_fn, repeats) * 1e3
    table.add("sig_kernel_gram(X, Y), n_jobs=-1", case, "ms",
              median_time(ours_fn, repeats) * 1e3, None, ps, "")


def check_lead_lag_convention():
    """hftsig's lead-lag puts the lead channels first; pysiglib puts the lag first."""
    if pysiglib is None:
        print("lead-lag convention vs pysiglib: n/a (pysiglib not installed)")
        return
    from hftsig.signatures import augmentations as transforms

    x = np.random.default_rng(0).standard_normal((7, 3))
    theirs = np.asarray(pysiglib.transform_path(x, lead_lag=True))
    check("lead_lag", transforms.lead_lag(x),
          np.concatenate([theirs[:, 3:], theirs[:, :3]], axis=1))
    print("lead-lag convention: hftsig == pysiglib with the lead/lag blocks swapped")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="3 repeats and fewer ticks")
    ap.add_argument("--only", choices=GROUPS, action="append",
                    help="run only these groups of rows (repeatable; default: all)")
    args = ap.parse_args(argv)
    groups = args.only or GROUPS
    repeats = 3 if args.quick else 9
    n_ticks = 5000 if args.quick else 20000

    print(f"hftsig {hftsig.__version__} signature benchmark")
    print(f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}")
    print(f"machine: {describe()}")
    print(f"peers: iisignature {getattr(iisignature, '__version__', 'n/a')}, "
          f"pysiglib {getattr(pysiglib, '__version__', 'n/a')}")
    print(f"median of {repeats} runs; float64; ratio = peer time / hftsig time\n")
    if "sig" in groups:
        check_lead_lag_convention()
    table = Table()
    table.header()
    if "sig" in groups:
        for case in CASES:
            bench_sig(table, case, repeats)
    if "at" in groups:
        for case in CASES:
            bench_at(table, case, repeats)
    if "logsig" in groups:
        for case in CASES:
            bench_logsig(table, case, repeats)
    if "push" in groups:
        for n_paths, dim, depth in PUSH_CASES:
            bench_push(table, n_paths, dim, depth, n_ticks if n_paths == 1 else n_ticks // 10)
        bench_push(table, 1, 3, 4, n_ticks, window=100)
    if "backprop" in groups:
        rows = [bench_backprop(table, case, repeats) for case in CASES]
        geometric_mean_ratios("sigbackprop", rows)
        rows = [bench_logsigbackprop(table, case, repeats) for case in CASES]
        geometric_mean_ratios("logsigbackprop", rows)
    if "sig_kernel" in groups:
        print("| signature kernels: case = (n paths, length, dim, dyadic_order); "
              "the sigkernel package is not on PyPI, not compared")
        for case in KERNEL_CASES:
            bench_sig_kernel(table, case, repeats)


if __name__ == "__main__":
    main()
