"""``python -m mimmx train CONFIG.yaml [--set key=value ...] [--out DIR]``."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train one run from a YAML config")
    p.add_argument("config", help="YAML file (see configs/); missing keys take their defaults")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set method.lam=0.5 (repeatable)")
    p.add_argument("--out", default="runs", help="parent folder of the run folder (default: runs)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)

    p = sub.add_parser("configs", help="(re)write configs/: one YAML per poster row and experiment")
    p.add_argument("--out", default="configs")
    p.set_defaults(func=write_configs)


def write_configs(args: argparse.Namespace) -> int:
    from mimmx.experiments import write_configs

    paths = write_configs(args.out)
    print(f"wrote {len(paths)} configs under {args.out}/")
    return 0


class ProgressBar:
    """Callback: a tqdm bar over steps, with the latest losses and evaluation."""

    def __init__(self, total: int):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total, unit="step", dynamic_ncols=True)

    def __call__(self, ev: dict) -> None:
        if ev["type"] == "step":
            self.bar.update(1)
            if ev["kind"] == "encoder" and ev["step"] % 20 == 1:
                self.bar.set_postfix(loss=f"{ev['loss']:.3f}", penalty=f"{ev.get('penalty', 0):.3f}")
        elif ev["type"] == "eval":
            acc = ev["acc"]
            self.bar.write(f"epoch {ev['epoch']:3d}  y acc  sel {acc['selection']['y']:5.1f}  "
                           f"val {acc['validation']['y']:5.1f}  inv {acc['inverted']['y']:5.1f}  "
                           f"bal {acc['balanced']['y']:5.1f}  ({ev['images_per_second']:.0f} img/s)")
        elif ev["type"] == "end":
            self.bar.close()


def run(args: argparse.Namespace) -> int:
    from mimmx.config import RunConfig
    from mimmx.trainer import build_scenario, train

    cfg = RunConfig.from_yaml(args.config).override(args.overrides)
    scenario = build_scenario(cfg)
    steps = cfg.train.epochs * (len(scenario.splits["train"]) // cfg.train.batch_size)
    run_dir = Path(args.out) / f"{cfg.scenario.name}-{cfg.method.name}-{cfg.hash()}"
    callbacks = [] if args.quiet else [ProgressBar(steps)]
    result = train(cfg, scenario, callbacks, run_dir=run_dir)
    best = result.best
    print(f"\nbest epoch {best['epoch']} (chosen on the selection split by {cfg.train.select}); accuracy %:")
    heads = list(best["acc"]["validation"])
    print(f"{'head':6s} " + " ".join(f"{s:>10s}" for s in best["acc"]))
    for h in heads:
        print(f"{h:6s} " + " ".join(f"{best['acc'][s][h]:10.1f}" for s in best["acc"]))
    print(f"wall time {result.wall_time:.1f} s, {result.images_per_second:.0f} training images/s; "
          f"run folder {run_dir}")
    return 0
