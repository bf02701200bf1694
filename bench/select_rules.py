"""Both model-selection rules on the same stored runs: for every row × seed of an experiment's
table (the default configs, ``train.select = y_cell_balanced``), the y accuracy of the model
each rule keeps, read from the run's evaluation history (ties go to the later epoch, as in
the trainer). Reads the results store only; a run not in it is reported, never trained.

    python bench/select_rules.py exp2 [--rows mimmx ...] [--set key=value ...] [--seeds 3] [--store DIR]

The rule effect on the same runs, free of seed and hardware differences: how
docs/results.md separates "the new rule" from "new runs". The last column, S, is the score the
default rule keeps a model by (its cell-balanced y accuracy on the selection split): the only
number the study may compare variants by (docs/study/why-mimmx-works-history.md §13).
"""

from __future__ import annotations

import argparse

from mimmx.config import SELECT
from mimmx.evaluation.tables import mean_std
from mimmx.runs import ResultStore, seeds_list
from mimmx.runs.experiments import row_config
from mimmx.runs.reproduce import select_rows
from mimmx.trainer import kept_evaluation


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("experiment")
    p.add_argument("--rows", nargs="+", help="only these rows (slugs, e.g. baseline mimmx)")
    p.add_argument("--set", dest="overrides", action="append", default=[],
                   help="a config override of every row, as in `reproduce --set` (repeatable)")
    p.add_argument("--seeds", default="3", help="seeds 0..N-1 (default 3)")
    p.add_argument("--store", help="results store folder (default: mimmx's)")
    args = p.parse_args()
    store = ResultStore(args.store)
    seeds = seeds_list(int(args.seeds))
    print(f"{args.experiment}{''.join(' --set ' + o for o in args.overrides)}: y accuracy [%] of "
          f"the model each rule keeps, mean ± std over seeds {seeds} (same runs)\n")
    print(f"| method | {' | '.join(f'{r} Val. | {r} Inv.' for r in SELECT)} | S | hardware |")
    print("| --- |" + " --- |" * (2 * len(SELECT) + 2))
    for row in select_rows(args.experiment, args.rows):
        recs = [store.get(row_config(args.experiment, row, s).override(args.overrides)) for s in seeds]
        if any(r is None for r in recs):
            sets = "".join(f" --set {o}" for o in args.overrides)
            print(f"| {row.label} | not in the store: run `python -m mimmx reproduce "
                  f"{args.experiment} --rows {row.slug}{sets}` first |")
            continue
        cells = []
        for rule in SELECT:
            picks = [kept_evaluation(r["history"], rule)["acc"] for r in recs]
            cells += [mean_std([a[split]["y"] for a in picks]) for split in ("validation", "inverted")]
        cells.append(mean_std([kept_evaluation(r["history"], "y_cell_balanced")["select"]["y_cell_balanced"]
                               for r in recs]))
        hardware = sorted({r["environment"].get("hardware", "?") for r in recs})
        print(f"| {row.label} | {' | '.join(cells)} | {'; '.join(hardware)} |")


if __name__ == "__main__":
    main()
