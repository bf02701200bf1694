"""Time one training step of the all-pairs MINE estimator: naive concatenation of all B² pairs
(as the original MIMM code) vs the split first layer (``StatisticsNetwork.pairs``).

A step = forward on the B² pairs, DV loss, backward, Adam step (``estimator_loss``), i.e. one
of the N_B − 1 estimator steps; the encoder's step costs about the same plus the encoder.
Each configuration runs in its own processes (so that its peak memory, max RSS, is its own),
alternating naive and split; the first step of each process is a warm-up and is not timed.

    python bench/bench_mine.py                       # B = 150 and 1000, width 400, f_y, f_z 2-D
    python bench/bench_mine.py --batch 150 --steps 20 --d-y 128 --d-z 128
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time


def one_config(batch: int, impl: str, width: int, d_y: int, d_z: int, steps: int,
               threads: int | None) -> dict:
    import torch

    from mimmx.device import get_device
    from mimmx.models import MINE

    if threads:
        torch.set_num_threads(threads)
    device = get_device()
    torch.manual_seed(0)
    mine = MINE(d_y, d_z, width=width, gradient="biased",
                split_first_layer=(impl == "split")).to(device)
    opt = torch.optim.Adam(mine.parameters(), lr=1e-4)
    f_y, f_z = torch.randn(batch, d_y, device=device), torch.randn(batch, d_z, device=device)
    times = []
    for step in range(steps + 1):  # the first step is a warm-up
        t0 = time.perf_counter()
        loss = mine.estimator_loss(f_y, f_z)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if step:
            times.append(time.perf_counter() - t0)
    return {"ms": [1e3 * t for t in times],
            "max_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def mem_available_gb() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable"):
                    return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("inf")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch", type=int, nargs="+", default=[150, 1000])
    p.add_argument("--width", type=int, default=400)
    p.add_argument("--d-y", type=int, default=2)
    p.add_argument("--d-z", type=int, default=2)
    p.add_argument("--steps", type=int, default=None,
                   help="timed steps per process (default 5 for B ≤ 300, else 2)")
    p.add_argument("--rounds", type=int, default=None,
                   help="processes per implementation, alternated (default 3 for B ≤ 300, else 1)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--single", nargs=2, metavar=("B", "IMPL"), help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.single:
        steps = args.steps or 3
        print(json.dumps(one_config(int(args.single[0]), args.single[1], args.width, args.d_y,
                                    args.d_z, steps, args.threads)))
        return

    import torch

    from mimmx.device import describe_device

    print(f"hardware: {describe_device()}")
    print(f"torch {torch.__version__}, threads {args.threads or torch.get_num_threads()}, "
          f"load average at start {os.getloadavg()}")
    print(f"MINE all-pairs, width {args.width}, d_y {args.d_y}, d_z {args.d_z}, "
          "Adam step on estimator_loss\n")
    print(f"{'B':>6} {'impl':>6} {'ms/step median':>15} {'min':>9} {'max RSS GB':>11} "
          f"{'steps':>6}")
    for batch in args.batch:
        # float32 activations of one (B², width) layer; the naive graph keeps about 9 of them
        layer_gb = batch**2 * args.width * 4 / 2**30
        steps = args.steps or (5 if batch <= 300 else 2)
        rounds = args.rounds or (3 if batch <= 300 else 1)
        times: dict[str, list[float]] = {"naive": [], "split": []}
        rss: dict[str, float] = {}
        # alternate the two implementations, so that a change in machine load hits both
        for _ in range(rounds):
            for impl in ("naive", "split"):
                if 10 * layer_gb > mem_available_gb():
                    print(f"{batch:>6} {impl:>6}   skipped: needs about {10 * layer_gb:.0f} GB, "
                          f"{mem_available_gb():.0f} GB available")
                    continue
                cmd = [sys.executable, __file__, "--single", str(batch), impl,
                       "--width", str(args.width), "--d-y", str(args.d_y), "--d-z", str(args.d_z),
                       "--steps", str(steps)]
                cmd += ["--threads", str(args.threads)] if args.threads else []
                out = subprocess.run(cmd, capture_output=True, text=True)
                if out.returncode:
                    print(f"{batch:>6} {impl:>6}   failed: {out.stderr.strip().splitlines()[-1:]}")
                    continue
                r = json.loads(out.stdout.strip().splitlines()[-1])
                times[impl] += r["ms"]
                rss[impl] = max(rss.get(impl, 0.0), r["max_rss_gb"])
        results = {}
        for impl, ms in times.items():
            if ms:
                results[impl] = statistics.median(ms)
                print(f"{batch:>6} {impl:>6} {results[impl]:>15.1f} {min(ms):>9.1f} "
                      f"{rss[impl]:>11.2f} {len(ms):>6}", flush=True)
        if len(results) == 2:
            print(f"{batch:>6}  speed-up split vs naive: {results['naive'] / results['split']:.2f}×")
    print(f"\nload average at end {os.getloadavg()}")


if __name__ == "__main__":
    main()
