"""``python -m mimmx morpho measure|build``: Morpho-MNIST metrics of one digit, or the cached table."""

from __future__ import annotations

import argparse
import json
import time

from mimmx.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("morpho", help="Morpho-MNIST: measure a digit, or build the cached morpho table")
    actions = p.add_subparsers(dest="action", required=True)

    m = actions.add_parser("measure", help="print the six metrics of one MNIST digit")
    m.add_argument("--split", choices=["train", "test"], default="train")
    m.add_argument("--index", type=int, default=0, help="digit index within the split (default 0)")
    m.add_argument("--variant", choices=["plain", "thin", "thick"], default="plain",
                   help="measure the digit as it is (default), or its thin or thick version")
    m.add_argument("--json", action="store_true", help="print one JSON object")
    m.set_defaults(func=run_measure)

    b = actions.add_parser("build", help="build (or check) the cached table of all 70,000 digits")
    b.add_argument("--workers", type=int, default=None, help="processes (default: all usable CPUs)")
    b.add_argument("--rebuild", action="store_true", help="recompute even if the cache is up to date")
    b.add_argument("--no-progress", action="store_true", help="no progress bar")
    b.set_defaults(func=run_build)


def run_measure(args: argparse.Namespace) -> int:
    from mimmx import data
    from mimmx.morpho import measure, thick, thin

    images = data.load("mnist", args.split).images
    if not 0 <= args.index < len(images):
        raise UserError(f"--index must be in 0..{len(images) - 1} for the {args.split} split, got {args.index}")
    digit = images[args.index:args.index + 1]
    if args.variant != "plain":
        digit = (thin if args.variant == "thin" else thick)(digit)
    row = measure(digit).iloc[0]
    if args.json:
        print(json.dumps({k: float(v) for k, v in row.items()}))
    else:
        print(f"mnist {args.split}[{args.index}] ({args.variant})")
        for k, v in row.items():
            print(f"  {k:9s} {v:8.4f}{' rad' if k == 'slant' else ''}")
    return 0


def run_build(args: argparse.Namespace) -> int:
    from mimmx.morpho import load_table, table_path

    path = table_path()
    fresh = args.rebuild or not path.exists()
    start = time.perf_counter()
    table = load_table(progress=not args.no_progress, workers=args.workers, rebuild=args.rebuild)
    seconds = time.perf_counter() - start
    print(f"{'built' if fresh else 'up to date, loaded'} {table} in {seconds:.1f} s: {table.path}")
    return 0
