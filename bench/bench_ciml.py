"""CIML speed: phantom generation, training throughput per method, and (``--full``) the whole
documented run (every method, one seed) against the issue's budget of 10 minutes on 2 CPU cores.

    .venv/bin/python bench/bench_ciml.py [--full] [--threads N] [--steps 10]

Prints the hardware and the machine load (1-minute load average), since a shared machine's
timings are noisy. Threads default to torch's choice; pass --threads 1 on a busy shared CPU.
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from mimmx.ciml import CIMLConfig, build_model, make_phantoms, markdown_table, run
from mimmx.device import describe_device, get_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="also time the full default run (seed 0)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--steps", type=int, default=10, help="training steps timed per method")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = CIMLConfig(threads=args.threads)
    device = get_device(config.device)
    print(f"hardware: {describe_device(device)}")
    print(f"load average (1 min) at start: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")

    start = time.perf_counter()
    make_phantoms(1000, seed=0, config=config.phantom)
    dt = time.perf_counter() - start
    print(f"phantom generation: {1000 / dt:,.0f} phantoms/s ({config.phantom.size}² px, 4 modalities)")

    train = make_phantoms(config.batch_size * 2, seed=1, config=config.phantom).to(device)
    images, masks = train.images[:config.batch_size], train.masks[:config.batch_size]
    for method in config.methods:
        torch.manual_seed(0)
        model = build_model(method, config).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=config.lr)
        for step in range(args.steps + 2):  # two warm-up steps
            if step == 2:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
            loss, _ = model.loss(images, masks)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        dt = (time.perf_counter() - start) / args.steps
        per_epoch = dt * config.n_train / config.batch_size
        print(f"{method:13s} {config.batch_size / dt:7.1f} images/s  "
              f"(≈ {per_epoch:.1f} s per epoch of {config.n_train})")

    if args.full:
        start = time.perf_counter()
        results = run(CIMLConfig(seeds=(0,), threads=args.threads))
        dt = time.perf_counter() - start
        print(markdown_table(results.metrics))
        print(f"full run (all methods, seed 0): {dt:.0f} s = {dt / 60:.1f} min; "
              f"load average (1 min) at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
