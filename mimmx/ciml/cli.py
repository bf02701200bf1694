"""``python -m mimmx ciml train|reproduce``: the CIML phantom experiment from the command line.

- ``train``: train the methods of a config (``--config run.yaml``, flags override it) and write
  a run folder (config.yaml, metrics.json, results.md).
- ``reproduce``: the documented experiment, every method over ``--seeds`` (default 0 1 2),
  with the default config; prints the markdown table that docs/ciml.md quotes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("ciml", help="CIML: complementary-information multimodal segmentation on phantoms")
    p.add_argument("action", choices=["train", "reproduce"])
    p.add_argument("--config", help="YAML file with CIMLConfig fields (train only)")
    p.add_argument("--methods", nargs="+", help="subset of: ensemble early_fusion ciml")
    p.add_argument("--seeds", nargs="+", type=int, help="seeds (reproduce default: 0 1 2)")
    p.add_argument("--epochs", type=int)
    p.add_argument("--n-train", type=int, dest="n_train")
    p.add_argument("--beta", type=float, help="CIML KL weight")
    p.add_argument("--device", help="cpu, cuda, cuda:N (default: $MIMMX_DEVICE, else CUDA if present)")
    p.add_argument("--threads", type=int,
                   help="torch CPU threads (default: torch's; 1 is faster on a busy shared CPU)")
    p.add_argument("--fast", action="store_true", help="tiny configuration (a smoke test, < 1 min)")
    p.add_argument("--out", help="run folder (default: runs/ciml/<action>-<time>)")
    p.add_argument("--quiet", action="store_true", help="no per-epoch progress lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mimmx.ciml.train import CIMLConfig, load_config, markdown_table, write_run
    from mimmx.ciml.train import run as run_experiment

    if args.config and args.action == "reproduce":
        from mimmx.errors import UserError

        raise UserError("reproduce uses the documented default config; use `ciml train --config`")
    config = load_config(args.config) if args.config else (CIMLConfig.fast() if args.fast else CIMLConfig())
    overrides = {k: getattr(args, k) for k in ("methods", "seeds", "epochs", "n_train", "beta", "device",
                                                "threads")
                 if getattr(args, k) is not None}
    if args.action == "reproduce" and "seeds" not in overrides:
        overrides["seeds"] = [0, 1, 2]
    config = CIMLConfig.from_dict({**config.to_dict(), **overrides})

    def progress(r: dict) -> None:
        extra = "".join(f" {k} {r[k]:.3f}" for k in ("kl",) if k in r)
        print(f"[seed {r['seed']}] {r['method']:12s} epoch {r['epoch']:3d}/{r['epochs']} "
              f"loss {r['loss']:.4f}{extra} ({r['seconds']:.1f} s)", flush=True)

    start = time.perf_counter()
    results = run_experiment(config, callback=None if args.quiet else progress)
    out = Path(args.out or f"runs/ciml/{args.action}-{time.strftime('%Y%m%d-%H%M%S')}")
    write_run(results, out)
    print()
    print(markdown_table(results.metrics))
    print(f"\n{results.environment['hardware']}; wall time {time.perf_counter() - start:.0f} s; "
          f"run folder {out}")
    return 0
