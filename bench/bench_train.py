"""Training throughput: the time of an epoch over the training set (estimator steps included)
and the epoch-time ratio MIMM-X / baseline (issue 21's cost target: at most 2).

    python bench/bench_train.py [--scenario exp1] [--epochs 1] [--set key=value ...]
        [--mimmx-set key=value ...]

Each method's epoch is split into its parts (the seconds of the encoder steps, of the estimator
steps' encoder passes and of their critic updates), so where a MIMM-X epoch's time goes is
measured, not guessed. ``--mimmx-set`` changes the MIMM-X row only (e.g. ``method.n_b=3``).

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
    p.add_argument("--mimmx-set", dest="mimmx_overrides", action="append", default=[])
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
                            "train.eval_every=1000", *args.overrides,
                            *(args.mimmx_overrides if label != "Baseline" else [])])
        scenario = scenario or build_scenario(cfg)
        t = time.perf_counter()
        clock = Clock()
        with Breakdown() as parts:
            result = train(cfg, scenario, [clock])
        timing[label] = clock.seconds
        n = len(scenario.splits["train"]) * args.epochs
        print(f"{label:22s} {n / clock.seconds:8.0f} training images/s, {clock.seconds / args.epochs:.2f} s "
              f"an epoch ({clock.steps.get('encoder', 0) // args.epochs} encoder steps, "
              f"{clock.steps.get('estimator', 0) // args.epochs} estimator steps; batch {cfg.train.batch_size}, N_B {cfg.method.n_b}, estimator "
              f"{cfg.method.estimator.name}/{cfg.method.estimator.marginals}/width "
              f"{cfg.method.estimator.width}; run {time.perf_counter() - t:.1f} s incl. eval)")
        print(f"{'':22s} an epoch: " + ", ".join(f"{name} {sec / args.epochs:.2f} s"
                                                 for name, sec in parts.seconds.items() if sec))
        for batch in (EVAL_BATCH, 2000):
            result.features("validation", batch)  # warm
            t = time.perf_counter()
            n = len(result.features("validation", batch)["y"])
            print(f"{'':22s} {n / (time.perf_counter() - t):8.0f} evaluation images/s (batch {batch})")
    ratio = timing["MIMM-X + DLS + CAW"] / timing["Baseline"]
    print(f"epoch-time ratio MIMM-X / baseline: {ratio:.2f}")


class Breakdown:
    """Times the parts of every update while active, by wrapping :class:`Method`'s step
    functions: the encoder steps (forward and backward passes, task batch and penalty batch),
    the estimator steps' encoder passes (``_features``) and their critic updates."""

    PARTS = {"encoder steps": "encoder_step", "estimator encoder passes": "_features",
             "estimator critic updates": "estimator_step"}

    def __enter__(self) -> Breakdown:
        from mimmx.methods.base import Method

        self.seconds = dict.fromkeys(self.PARTS, 0.0)
        self.saved = {attr: getattr(Method, attr) for attr in self.PARTS.values()}
        for name, attr in self.PARTS.items():
            setattr(Method, attr, self._timed(name, self.saved[attr]))
        return self

    def _timed(self, name: str, fn):
        def timed(*args, **kw):
            t = time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                self.seconds[name] += time.perf_counter() - t
        return timed

    def __exit__(self, *exc) -> None:
        from mimmx.methods.base import Method

        for attr, fn in self.saved.items():
            setattr(Method, attr, fn)


class Clock:
    """A trainer callback: the seconds from the start to the last update of the epochs (no
    evaluation inside: ``train.eval_every`` is past the end), and the updates by kind."""

    def __init__(self):
        self.t0 = self.t1 = 0.0
        self.steps: dict[str, int] = {}

    @property
    def seconds(self) -> float:
        return self.t1 - self.t0

    def __call__(self, event: dict) -> bool:
        if event["type"] == "start":
            self.t0 = time.perf_counter()
        elif event["type"] == "step":
            self.t1 = time.perf_counter()
            self.steps[event["kind"]] = self.steps.get(event["kind"], 0) + 1
        return False


if __name__ == "__main__":
    main()
