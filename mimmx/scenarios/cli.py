"""``python -m mimmx scenario NAME [--seed S] [--json]``: the story and contingency tables."""

from __future__ import annotations

import argparse
import json

from mimmx.scenarios.presets import SCENARIOS


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("scenario", help="print a named scenario's story and contingency tables")
    p.add_argument("name", choices=sorted(SCENARIOS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


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
