"""Both model-selection rules on the same stored runs: for every row × seed of an experiment's
table (the default configs, ``train.select = y_cell_balanced``), the y accuracy of the model
each rule keeps, read from the run's evaluation history (ties go to the later epoch, as in
the trainer). Reads the results store only; a run not in it is reported, never trained.

    python bench/select_rules.py exp2 [--seeds 3] [--store DIR]

The rule effect on the same runs, free of seed and hardware differences: how
docs/results.md separates "the new rule" from "new runs".
"""

from __future__ import annotations

import argparse
import statistics

from mimmx.experiments import row_config
from mimmx.reproduce import select_rows
from mimmx.results import ResultStore, seeds_list
from mimmx.trainer import SELECT


def kept(history: list[dict], rule: str) -> dict:
    """The eval event ``rule`` keeps: the best ``select[rule]``, the latest among equals."""
    evals = [e for e in history if e.get("select")]
    return max(reversed(evals), key=lambda e: e["select"][rule])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("experiment")
    p.add_argument("--seeds", default="3", help="seeds 0..N-1 (default 3)")
    p.add_argument("--store", help="results store folder (default: mimmx's)")
    args = p.parse_args()
    store = ResultStore(args.store)
    seeds = seeds_list(int(args.seeds))
    print(f"{args.experiment}: y accuracy [%] of the model each rule keeps, mean ± std over seeds "
          f"{seeds} (same runs)\n")
    print(f"| method | {' | '.join(f'{r} Val. | {r} Inv.' for r in SELECT)} | hardware |")
    print("| --- |" + " --- |" * (2 * len(SELECT) + 1))
    for row in select_rows(args.experiment):
        recs = [store.get(row_config(args.experiment, row, s)) for s in seeds]
        if any(r is None for r in recs):
            print(f"| {row.label} | not in the store: run `python -m mimmx reproduce "
                  f"{args.experiment}` first |")
            continue
        cells = []
        for rule in SELECT:
            picks = [kept(r["history"], rule)["acc"] for r in recs]
            for split in ("validation", "inverted"):
                v = [a[split]["y"] for a in picks]
                cells.append(f"{statistics.mean(v):.1f} ± {statistics.stdev(v) if len(v) > 1 else 0:.1f}")
        hardware = sorted({r["environment"].get("hardware", "?") for r in recs})
        print(f"| {row.label} | {' | '.join(cells)} | {'; '.join(hardware)} |")


if __name__ == "__main__":
    main()
