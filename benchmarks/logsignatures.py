"""Log-signature timings: hftsig.logsig against iisignature.logsig.

Run ``python -m benchmarks.logsignatures [--repeats N]``.  For each
(batch, length, dim, depth) the outputs are checked to agree first, then each
call is timed ``repeats`` times (the calls interleaved) and the median is printed, with the ratio
iisignature / hftsig.  iisignature is prepared once, outside the timing, with
its default methods, and called with its default method (compiled BCH);
hftsig runs single-threaded and with ``n_jobs=-1``.
"""
import argparse
import os
import platform
import time

import numpy as np

import hftsig

CASES = [(32, 1000, 5, 4), (128, 100, 3, 5), (64, 500, 4, 4), (1, 10000, 2, 6)]


def _median_seconds(fns, repeats):
    """Median wall time of each function, calls interleaved so that all of
    them see the same background load (the machine may be shared)."""
    for fn in fns:
        fn()
    times = [[] for _ in fns]
    for _ in range(repeats):
        for fn, bucket in zip(fns, times):
            start = time.perf_counter()
            fn()
            bucket.append(time.perf_counter() - start)
    return [float(np.median(t)) for t in times]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv)
    import iisignature

    rng = np.random.default_rng(0)
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, float64, median of {args.repeats}")
    print("| (batch, length, dim, depth) | iisignature ms | hftsig ms (1 thread) | ratio | hftsig ms (n_jobs=-1) | ratio |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for batch, length, dim, depth in CASES:
        x = rng.standard_normal((batch, length, dim)).cumsum(axis=1) * 0.01
        prep = iisignature.prepare(dim, depth)
        ours = hftsig.logsig(x, depth)
        theirs = iisignature.logsig(x, prep)
        np.testing.assert_allclose(ours, theirs, rtol=1e-8, atol=1e-10)
        t_ii, t_1, t_all = _median_seconds(
            [
                lambda: iisignature.logsig(x, prep),
                lambda: hftsig.logsig(x, depth),
                lambda: hftsig.logsig(x, depth, n_jobs=-1),
            ],
            args.repeats,
        )
        print(
            f"| ({batch}, {length}, {dim}, {depth}) | {1e3 * t_ii:.2f} | {1e3 * t_1:.2f} | "
            f"{t_ii / t_1:.1f}x | {1e3 * t_all:.2f} | {t_ii / t_all:.1f}x |"
        )


if __name__ == "__main__":
    main()
