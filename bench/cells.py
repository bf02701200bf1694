"""y accuracy per cell of agreement: trains one poster row and prints, for the training split and
the test sets, how often the y head is right on the images whose factors agree with y
(``agree``) or disagree (``flip``), factor by factor. Tells memorising the few minority images
apart from learning them (docs/study/why-mimmx-works-history.md §8; docs/study/session12.md §1).

    MIMMX_DATA=../shared/data python bench/cells.py [--row mimmx] [--experiment exp1] [--seed 0]
        [key=value ...]
"""

from __future__ import annotations

import argparse
import itertools
import os


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("overrides", nargs="*", help="key=value changes to the row's config")
    p.add_argument("--row", default="mimmx", help="row slug (configs/<experiment>/<slug>.yaml)")
    p.add_argument("--experiment", default="exp1")
    p.add_argument("--seed", type=int, default=0)
    a = p.parse_args()
    os.environ.setdefault("MIMMX_THREADS", "1")

    from mimmx.runs.experiments import row_config, rows
    from mimmx.trainer import train

    row = {r.slug: r for r in rows(a.experiment)}[a.row]
    result = train(row_config(a.experiment, row, seed=a.seed).override(a.overrides))
    names = result.scenario.factor_names
    print(f"{a.experiment} {a.row} seed {a.seed} {' '.join(a.overrides)}: y accuracy [%] (images) "
          f"per cell, factors {', '.join(names)}")
    for split in ("train", "validation", "inverted", "balanced"):
        out = result.features(split)
        y = out["y"]
        agree = [out[f"z{i + 1}"] == y for i in range(len(names))]
        cells = []
        for pattern in itertools.product((True, False), repeat=len(names)):
            mask = y == y
            for a_i, want in zip(agree, pattern):
                mask &= a_i == want
            n = int(mask.sum())
            if n:
                acc = 100.0 * float((out["pred_y"][mask] == y[mask]).float().mean())
                label = "/".join("agree" if w else "flip" for w in pattern)
                cells.append(f"{label} {acc:5.1f} ({n})")
        print(f"  {split:10s} " + "  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
