"""``python -m mimmx data [list|download]``."""

from __future__ import annotations

import argparse
import sys

from mimmx import data
from mimmx.errors import UserError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="list the datasets, where they were found and whether they verify")
    p.add_argument("action", nargs="?", choices=["list", "download"], default="list")
    p.add_argument("--root", help="data folder to search first (default: $MIMMX_DATA, then ./data)")
    p.add_argument("--dataset", dest="datasets", action="append", choices=sorted(data.DATASETS),
                   help="limit to one dataset (repeatable)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    names = args.datasets or sorted(data.DATASETS)
    if args.action == "download":
        for name in names:
            statuses = data.file_status(name, args.root)
            if all(s.state == "verified" for s in statuses):
                print(f"{name}: already present and verified in {statuses[0].path.parent}")
                continue
            bad = [s for s in statuses if s.state == "corrupted"]
            if bad:
                raise UserError(
                    f"{name}: corrupted file(s) {', '.join(str(s.path) for s in bad)}; "
                    "delete them first, then download again"
                )
            target = data.download(name, args.root)
            print(f"{name}: downloaded and verified in {target}")
        return 0

    print("searched, in order: " + ", ".join(str(r) for r in data.search_roots(args.root)))
    ok = True
    for name in names:
        for s in data.file_status(name, args.root):
            where = str(s.path) if s.path else "-"
            print(f"{name:14s} {s.stem:26s} {s.state:9s} {where}")
            ok &= s.state == "verified"
    if not ok:
        print("some files are missing or corrupted: run `python -m mimmx data download` "
              f"or set {data.ENV_VAR} to a folder that has them", file=sys.stderr)
    return 0 if ok else 1
