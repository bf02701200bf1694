"""``python -m mimmx cohort MANIFEST.csv [--preset chexpert | --config cohort.yaml] [--json]``:
load a cohort (reading and caching its images), print its summary and the contingency tables
of the scenario built from it."""

from __future__ import annotations

import argparse
import dataclasses
import json

from mimmx.errors import UserError
from mimmx.scenarios.cli import print_tables


def register(sub: argparse._SubParsersAction) -> None:
    from mimmx.scenarios.cohort import PRESETS

    p = sub.add_parser("cohort", help="your own cohort: a CSV manifest of images as a scenario")
    p.add_argument("manifest", help="CSV file, one row per image")
    how = p.add_mutually_exclusive_group()
    how.add_argument("--preset", choices=sorted(PRESETS),
                     help="the column names and rules of a known cohort")
    how.add_argument("--config", help="YAML file with CohortSpec fields (label, factors, ...)")
    p.add_argument("--image-root", dest="image_root",
                   help="folder the image paths are relative to (default: the manifest's folder)")
    p.add_argument("--image-size", dest="image_size", type=int, help="side of the resized images (28)")
    p.add_argument("--r", type=float, help="override every factor's training association P(z = y)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-cache", dest="cache", action="store_false", help="read every image again")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from mimmx.scenarios.cohort import CohortSpec, cohort_scenario, load_cohort, preset

    overrides = {k: v for k, v in (("image_root", args.image_root), ("image_size", args.image_size))
                 if v is not None}
    if args.preset:
        spec = preset(args.preset, args.manifest, **overrides)
    elif args.config:
        spec = CohortSpec.from_yaml(args.config, manifest=args.manifest, **overrides)
    else:
        raise UserError("say how to read the manifest: --preset chexpert, or --config cohort.yaml "
                        "naming the image, label and factor columns and their rules (see README, "
                        "'Your own cohort')")
    if args.r is not None:
        spec = dataclasses.replace(spec, factors=tuple(
            dataclasses.replace(f, r=args.r, table=None) for f in spec.factors))
    cohort = load_cohort(spec, cache=args.cache, progress=not args.json)
    sc = cohort_scenario(cohort, seed=args.seed)
    table = sc.contingency()
    if args.json:
        print(json.dumps({
            "cohort": cohort.summary(), "spec": spec.to_dict(), "seed": sc.seed,
            "story": sc.spec.story,
            "sizes": {s: len(d) for s, d in sc.splits.items()},
            "pools": cohort.counts().to_dict(orient="records"),
            "contingency": table.to_dict(orient="records"),
        }, indent=1, default=str))
        return 0
    print(cohort.describe() + "\n")
    pools = cohort.counts().pivot_table(index=["pool", "y"], columns=["factor", "z"], values="count",
                                        aggfunc="sum", sort=False)
    print("images per pool, y and factor value:\n" + pools.to_string() + "\n")
    print(f"{sc.spec.story}\n")
    print_tables(sc, lambda f: f"column {f.source}")
    return 0
