"""Command line: ``python -m mimmx COMMAND ...`` (also installed as ``mimmx``).

Each command lives in the ``cli`` module of the highest layer it drives (``mimmx.runs.cli``:
train, configs, evaluate, reproduce, sweep; ``mimmx.scenarios.cli``: scenario, cohort), or in
the module that is its whole code (``mimmx.app.warm``), with ``register(subparsers)``; this
file only lists them. The library never prints; expected failures (missing data, a bad
config, an impossible scenario) print one clear message and exit with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from mimmx.errors import UserError

# one line per command module, in the order `--help` lists them
COMMANDS = [
    "mimmx.data.cli",
    "mimmx.ciml.cli",
    "mimmx.morpho.cli",
    "mimmx.scenarios.cli",
    "mimmx.runs.cli",
    "mimmx.app.warm",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mimmx", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from mimmx.data import DatasetCorruptedError, DatasetNotFoundError

    try:
        return args.func(args)
    except (UserError, DatasetNotFoundError, DatasetCorruptedError, ValueError) as err:
        print(f"mimmx {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
