"""Training throughput: images/s of one run (estimator steps included), and the step-time
ratio MIMM-X / baseline.

    python bench/bench_train.py [--scenario exp1] [--epochs 1] [--set key=value ...]

Also prints evaluation throughput (forward passes over the Validation set) at the trainer's
batch (``EVAL_BATCH``) and at 2,000 images per pass, the old default. ``--set
train.channels_last=true`` measures the channels-last layout (the app's).

Prints the hardware it ran on. The issue's target: exp1 MIMM-X with the four-convolution
encoder at >= 3,000 training images/s on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from mimmx.device import describe_device, get_device
from mimmx.runs.experiments import FULL_ROWS, row_config
from mimmx.trainer import EVAL_BATCH, build_scenario, train


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--scenario", default="exp1")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"hardware: {describe_device(get_device())}; load average {os.getloadavg()[0]:.2f}; "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    rows = {r.label: r for r in FULL_ROWS}
    scenario = None
    timing = {}
    for label in ("Baseline", "MIMM-X + DLS + CAW"):
        cfg = row_config("exp1", rows[label]).override([f"scenario.name={args.scenario}", f"train.epochs={args.epochs}",
                            "train.eval_every=1000", *args.overrides])
        scenario = scenario or build_scenario(cfg)
        t = time.perf_counter()
        result = train(cfg, scenario)
        timing[label] = result.images_per_second
        print(f"{label:22s} {result.images_per_second:8.0f} training images/s "
              f"(batch {cfg.train.batch_size}, N_B {cfg.method.n_b}, estimator "
              f"{cfg.method.estimator.name}/{cfg.method.estimator.marginals}/width "
              f"{cfg.method.estimator.width}; run {time.perf_counter() - t:.1f} s incl. eval)")
        for batch in (EVAL_BATCH, 2000):
            result.features("validation", batch)  # warm
            t = time.perf_counter()
            n = len(result.features("validation", batch)["y"])
            print(f"{'':22s} {n / (time.perf_counter() - t):8.0f} evaluation images/s (batch {batch})")
    ratio = timing["Baseline"] / timing["MIMM-X + DLS + CAW"]
    print(f"step-time ratio MIMM-X / baseline: {ratio:.2f}")


if __name__ == "__main__":
    main()
