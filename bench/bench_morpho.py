"""Benchmark: the Morpho-MNIST table (metrics of every MNIST digit, plain/thin/thick).

The reference code (dccastro/Morpho-MNIST) works image by image: about 49 ms per digit for
measure + thin + thick on one core of the project machines, almost an hour for 70,000
digits. Target: the whole table in at most 3 minutes on 2 CPU cores.

    MIMMX_DATA=../shared/data python bench/bench_morpho.py              # full build, 2 cores
    python bench/bench_morpho.py --digits 5000 --cores 16 --workers 16  # a subset, more cores

Prints the hardware and its load, the single-process cost per digit, the build time (and
table load time), and the fidelity figures: train[0] against the released metrics, and mean
thickness of the plain, thin and thick digits. The build goes to a temporary cache folder,
unless --into-cache (then it is the real cache of `load_table()`).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RELEASED_TRAIN0 = {"area": 107.31, "length": 50.27, "thickness": 2.461, "slant": 0.2311,
                   "width": 14.54, "height": 19.85}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cores", type=int, default=2, help="pin to this many CPU cores (default 2)")
    ap.add_argument("--workers", type=int, default=None, help="build processes (default: --cores)")
    ap.add_argument("--digits", type=int, default=None, help="build a subset: the first N train digits")
    ap.add_argument("--into-cache", action="store_true", help="write the real cache, not a temporary one")
    args = ap.parse_args()

    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])
    workers = args.workers or args.cores
    tmp = None
    if not args.into_cache:
        tmp = tempfile.TemporaryDirectory(prefix="mimmx-morpho-bench-")
        os.environ["MIMMX_CACHE"] = tmp.name

    import torch

    from mimmx import data
    from mimmx.device import describe_device
    from mimmx.morpho import METRICS, build_table, compute_variants, load_table, measure

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"hardware: {describe_device(torch.device('cpu'))}; pinned to {cores} core(s), {workers} worker(s)")
    if torch.cuda.is_available():
        print(f"GPU present ({describe_device()}), not used: the pipeline's cost is CPU-bound "
              "(distance transforms, the sequential medial-axis pass)")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    train = data.load("mnist", "train").images.numpy()
    source = None if args.digits is None else {"train": train[: args.digits]}
    n_total = 70_000 if source is None else args.digits

    # one process, after a warm-up (numba kernel, lookup tables)
    compute_variants(train[:50])
    sample = train[:1000]
    t0, c0 = time.perf_counter(), time.process_time()
    for i in range(0, len(sample), 250):
        compute_variants(sample[i:i + 250])
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"one process: {1000 * wall / len(sample):.2f} ms/digit wall, {1000 * cpu / len(sample):.2f} ms/digit CPU "
          "(measure plain + thin + thick, make thin + thick)")

    t0, cpu0 = time.perf_counter(), _cpu_seconds()
    table = build_table(source=source, progress=True, workers=workers)
    build_s, build_cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    print(f"build: {n_total} digits in {build_s:.1f} s ({1000 * build_s / n_total:.2f} ms/digit, "
          f"{workers} workers) -> {table.path}")
    print(f"  CPU time of the build (all processes): {build_cpu:.0f} s, i.e. {build_cpu / cores:.0f} s "
          f"of wall-clock on {cores} otherwise idle core(s)")
    if source is not None:
        print(f"  extrapolated to 70,000 digits: {build_s * 70_000 / n_total:.0f} s")
    t0 = time.perf_counter()
    table = load_table(source=source, progress=False)
    print(f"load: {time.perf_counter() - t0:.2f} s")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    row = measure(train[:1]).iloc[0]
    print("train[0] vs released Morpho-MNIST:")
    for name in METRICS:
        ref = RELEASED_TRAIN0[name]
        print(f"  {name:9s} {row[name]:8.4f}  released {ref:8.4f}  ({100 * (row[name] / ref - 1):+.1f}%)")

    th = {v: table.metrics("train", v)["thickness"].to_numpy() for v in ("plain", "thin", "thick")}
    print(f"mean thickness over {len(th['plain'])} train digits: plain {th['plain'].mean():.3f}, "
          f"thin {th['thin'].mean():.3f}, thick {th['thick'].mean():.3f}; "
          f"thin < plain for {100 * np.mean(th['thin'] < th['plain']):.2f}%, "
          f"thick > plain for {100 * np.mean(th['thick'] > th['plain']):.2f}%")
    if tmp is not None:
        tmp.cleanup()


def _cpu_seconds() -> float:
    """User + system CPU time of this process and its finished children (the build's workers)."""
    import resource

    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


if __name__ == "__main__":
    main()
