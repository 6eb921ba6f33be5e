"""The American put fitted on a Dask cluster, beside the in-process fit.

    python -m benchmarks.on_dask                       # 10M paths on the cluster, 1M in process
    python -m benchmarks.on_dask --n-paths 2000000     # a smaller cluster run
    python -m benchmarks.on_dask --skip-in-process

(The module is not called ``benchmarks/dask.py``: run as a script, that name
would shadow the ``dask`` package.)

Longstaff & Schwartz's put (S0=36, K=40, r=0.06, sigma=0.2, T=1, 50 dates;
finite-difference value 4.478) with :class:`hftsig.stopping.stoppers.SignatureStopper`
(depth 2, as in :mod:`benchmarks.stopping`).  The cluster run simulates the
paths on the workers (:func:`hftsig.distributed.on_dask.simulate`), persists them there,
fits (``n_dates + 1`` passes over the chunks) and values the rule on fresh
paths simulated on the workers; the in-process run does the same in one
process, in memory.  Reported: wall seconds, CPU seconds of the fit (summed
over the workers; the machine may be shared, so wall time is not all ours),
and the peak resident memory (``ru_maxrss``) of each worker process and of
the in-process run's process.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

S0, K, R, SIGMA, N_STEPS = 36.0, 40.0, 0.06, 0.2, 50


# the settings the published runs used (docs/distributed.md); "auto" would add a
# selection on a 60,000-path sample gathered to the client
SETTINGS = dict(lags=0, alpha=1e-6, sign_split=False)

def put(s):
    return np.maximum(K - s[..., 0], 0.0)


def _peak_rss_mib():
    # ru_maxrss is in KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_s():
    """CPU seconds of this process so far (the machine may be shared: wall time is not all ours)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def in_process(n_paths, n_eval, depth):
    """Fit and value in this process; run in a fresh one so that its peak is its own."""
    from hftsig.stopping import processes as paths
    from hftsig.stopping.stoppers import SignatureStopper

    t0 = time.perf_counter()
    x = paths.gbm(n_paths, N_STEPS, s0=S0, mu=R, sigma=SIGMA, T=1.0, random_state=0)
    t1, c1 = time.perf_counter(), _cpu_s()
    st = SignatureStopper(depth=depth, progress=False, **SETTINGS).fit(x, put, discount=R)
    t2, c2 = time.perf_counter(), _cpu_s()
    del x
    y = paths.gbm(n_eval, N_STEPS, s0=S0, mu=R, sigma=SIGMA, T=1.0, random_state=1)
    low = st.value(y, put)
    t3 = time.perf_counter()
    return dict(n_paths=n_paths, simulate_s=t1 - t0, fit_s=t2 - t1, fit_cpu_s=c2 - c1,
                value_s=t3 - t2, value=low.value, std_error=low.std_error, n_eval=n_eval,
                peak_rss_mib=_peak_rss_mib())


def on_cluster(n_paths, n_eval, depth, chunk_size, n_workers, memory_limit):
    import distributed

    from hftsig.distributed.on_dask import simulate
    from hftsig.stopping.stoppers import SignatureStopper

    # the workers' spill space goes to a temporary directory, not the cwd
    with tempfile.TemporaryDirectory(prefix="hftsig-dask-") as scratch, \
            distributed.LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                                     memory_limit=memory_limit, dashboard_address=":0",
                                     local_directory=scratch) as cluster, \
            distributed.Client(cluster) as client:
        kw = dict(s0=S0, mu=R, sigma=SIGMA, T=1.0)
        t0 = time.perf_counter()
        x = simulate("gbm", n_paths, N_STEPS, chunk_size=chunk_size, random_state=0, **kw)
        x = x.persist()
        distributed.wait(x)
        t1, c1 = time.perf_counter(), sum(client.run(_cpu_s).values())
        st = SignatureStopper(depth=depth, progress=False, **SETTINGS).fit(x, put, discount=R)
        t2, c2 = time.perf_counter(), sum(client.run(_cpu_s).values())
        del x
        y = simulate("gbm", n_eval, N_STEPS, chunk_size=chunk_size, random_state=1, **kw)
        low = st.value(y, put)
        t3 = time.perf_counter()
        peaks = client.run(_peak_rss_mib)
        return dict(n_paths=n_paths, chunk_size=chunk_size, n_workers=n_workers,
                    memory_limit=memory_limit, simulate_s=t1 - t0, fit_s=t2 - t1,
                    fit_cpu_s=c2 - c1,
                    value_s=t3 - t2, value=low.value, std_error=low.std_error, n_eval=n_eval,
                    n_passes=st.n_dates_ + 1, in_sample=st.in_sample_value_,
                    worker_peak_rss_mib=sorted(peaks.values()))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-paths", type=int, default=10_000_000, help="paths fitted on the cluster")
    ap.add_argument("--in-process-paths", type=int, default=1_000_000)
    ap.add_argument("--n-eval", type=int, default=1_000_000, help="fresh paths for the lower bound")
    ap.add_argument("--depth", type=int, default=2)
    ap.add_argument("--chunk-size", type=int, default=250_000)
    ap.add_argument("--n-workers", type=int, default=2)
    ap.add_argument("--memory-limit", default="4GiB", help="per worker")
    ap.add_argument("--skip-in-process", action="store_true")
    ap.add_argument("--in-process-only", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.in_process_only:
        print(json.dumps(in_process(args.in_process_paths, args.n_eval, args.depth)))
        return

    from benchmarks.machine import describe

    print(f"# benchmarks.on_dask: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
          f"{describe()}\n")
    rows = []
    if not args.skip_in_process:
        out = subprocess.run([sys.executable, "-m", "benchmarks.on_dask", "--in-process-only",
                              "--in-process-paths", str(args.in_process_paths),
                              "--n-eval", str(args.n_eval), "--depth", str(args.depth)],
                             capture_output=True, text=True, check=True, env=os.environ.copy())
        r = json.loads(out.stdout.strip().splitlines()[-1])
        rows.append((f"in process, {r['n_paths']:,} paths", r, f"{r['peak_rss_mib']:,.0f} (process)"))
    r = on_cluster(args.n_paths, args.n_eval, args.depth, args.chunk_size, args.n_workers,
                   args.memory_limit)
    peaks = " / ".join(f"{p:,.0f}" for p in r["worker_peak_rss_mib"])
    rows.append((f"LocalCluster {r['n_workers']}x1 thread, limit {r['memory_limit']}/worker, "
                 f"{r['n_paths']:,} paths in chunks of {r['chunk_size']:,}", r, f"{peaks} (workers)"))
    print(f"SignatureStopper(depth={args.depth}, lags=0, alpha=1e-6, sign_split=False), American put, {N_STEPS} dates "
          f"(FD value 4.478); lower bound on {args.n_eval:,} fresh paths\n")
    print("| run | simulate s | fit s | fit CPU s (all processes) | fit CPU us/path | value s "
          "| lower bound | peak RSS MiB |")
    print("|---|---:|---:|---:|---:|---:|---|---|")
    for name, r, peak in rows:
        print(f"| {name} | {r['simulate_s']:.1f} | {r['fit_s']:.1f} | {r['fit_cpu_s']:.1f} | "
              f"{1e6 * r['fit_cpu_s'] / r['n_paths']:.1f} | {r['value_s']:.1f} | "
              f"{r['value']:.4f} +- {r['std_error']:.4f} | {peak} |")


if __name__ == "__main__":
    main()
