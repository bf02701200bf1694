"""Scenario commands:

- ``scenario NAME [--seed S] [--json]``: a named scenario's story and contingency tables;
- ``cohort MANIFEST.csv [--preset chexpert | --config cohort.yaml] [--json]``: load a cohort
  (reading and caching its images), print its summary and the contingency tables of the
  scenario built from it.
"""

from __future__ import annotations

import argparse
import dataclasses
import json

from mimmx.errors import UserError
from mimmx.scenarios.presets import SCENARIOS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scenario", help="print a named scenario's story and contingency tables")
    p.add_argument("name", choices=sorted(SCENARIOS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)
    _register_cohort(sub)


def run(args: argparse.Namespace) -> int:
    from mimmx.scenarios import build_named

    sc = build_named(args.name, seed=args.seed)
    table = sc.contingency()
    if args.json:
        print(json.dumps({
            "name": sc.spec.name, "dataset": sc.spec.dataset, "seed": sc.seed, "story": sc.spec.story,
            "sizes": {s: len(d) for s, d in sc.splits.items()},
            "factors": [{"name": f.name, "kind": f.kind, "source": f.source, "analogue": f.analogue}
                        for f in sc.spec.factors],
            "thresholds": sc.thresholds,
            "contingency": table.to_dict(orient="records"),
        }, indent=1))
        return 0
    print(f"{sc.spec.name} ({sc.spec.dataset}, seed {sc.seed})\n{sc.spec.story}\n")
    print_tables(sc, lambda f: f"{f.kind}: {f.source}")
    return 0


def print_tables(sc, describe) -> None:
    """Sizes, then one counts (ratio) table per factor, splits in order; ``describe(factor)``
    says where the factor comes from."""
    table = sc.contingency()
    print("sizes: " + ", ".join(f"{s} {len(d)}" for s, d in sc.splits.items()))
    for f, values in zip(sc.spec.factors, sc.z_values):
        print(f"\nfactor {f.name} ({describe(f)}" + (f", ~ {f.analogue}" if f.analogue else "")
              + "): counts (ratio)")
        sub = table[table.factor == f.name]
        cells = sub.assign(cell=sub["count"].astype(str) + " (" + sub["ratio"].map("{:.3f}".format) + ")")
        pivot = cells.pivot(index=["split", "y"], columns="z", values="cell")
        order = [(s, y) for s in sc.splits for y in sc.y_names if (s, y) in pivot.index]
        print(pivot.loc[order, list(values)].to_string())


def _register_cohort(sub: argparse._SubParsersAction) -> None:
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
    p.set_defaults(func=run_cohort)


def run_cohort(args: argparse.Namespace) -> int:
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
