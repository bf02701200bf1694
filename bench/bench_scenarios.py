"""Scenario build time: every named scenario from the cached data (datasets on disk, the
Morpho-MNIST table built), first build in a fresh process and a rebuild with another seed.

    python bench/bench_scenarios.py
"""

from __future__ import annotations

import os
import time

from mimmx.device import describe_device
from mimmx.scenarios import SCENARIOS, build_named


def main() -> None:
    print(f"hardware: {describe_device()}; load average {os.getloadavg()[0]:.2f}")
    for name in SCENARIOS:
        t = time.perf_counter()
        build_named(name, seed=0)
        first = time.perf_counter() - t
        t = time.perf_counter()
        sc = build_named(name, seed=1)
        again = time.perf_counter() - t
        sizes = ", ".join(f"{k} {len(v)}" for k, v in sc.splits.items())
        print(f"{name:8s} first {first:5.2f} s, again {again:5.2f} s  ({sizes})")


if __name__ == "__main__":
    main()
