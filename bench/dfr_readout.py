"""How far do a row's features carry y? DFR's readout refit (L1 logistic regression on the
scenario's cell-balanced held-out split, as the ``dfr`` method does) applied to other rows' kept
models, read from the results store. A diagnostic, never a choice: it uses factor labels.

    python -m mimmx reproduce exp1 --seeds 3 ...   (first: the stored runs)
    python bench/dfr_readout.py [--experiment exp1] [--rows Baseline "MIMM-X + DLS + CAW"] [--seeds 0 1 2]

Prints each run's kept model and the refit one (Val. / Inv. / Bal.), then mean ± std per row.
2 CPU cores: about 15 s a run (exp1, 5,000 held-out images).
"""

from __future__ import annotations

import argparse
import statistics as st

SETS = ("validation", "inverted", "balanced")


def refit(model, method, experiment: str, seed: int, scenario_overrides: list[str] = ()
          ) -> tuple[list[float], list[float]]:
    """(kept, refit): ``model``'s y accuracies on SETS as trained, and after DFR's readout refit
    (its y readout layer is replaced in place). ``scenario_overrides``: the run's own
    ``scenario.*`` overrides, so that DFR's held-out split is drawn beside the same training set."""
    from mimmx.runs.experiments import row_config, rows
    from mimmx.trainer import build_model, build_scenario, evaluate

    dfr_cfg = row_config(experiment, {r.label: r for r in rows(experiment)}["DFR"], seed).override(
        list(scenario_overrides))
    scenario = build_scenario(dfr_cfg)  # the same draws, with DFR's held-out split
    _, dfr = build_model(dfr_cfg, scenario, "cpu")
    dfr.seed(seed)
    model = model.cpu()
    kept = evaluate(model, method.cpu(), scenario, SETS)["acc"]
    dfr.finish(model, scenario)
    after = evaluate(model, dfr, scenario, SETS)["acc"]
    return [kept[s]["y"] for s in SETS], [after[s]["y"] for s in SETS]


def readout_refit(experiment: str, label: str, seed: int) -> tuple[list[float], list[float]]:
    """:func:`refit` on the stored run of row ``label`` and ``seed``."""
    from mimmx.runs.experiments import row_config, rows
    from mimmx.runs.store import ResultStore

    run = ResultStore().load_run(row_config(experiment, {r.label: r for r in rows(experiment)}[label], seed))
    return refit(run.model, run.method, experiment, seed)


def spread(values: list[float]) -> str:
    return f"{st.mean(values):.1f} ± {st.stdev(values):.1f}" if len(values) > 1 else f"{values[0]:.1f}"


def main() -> None:
    import torch

    p = argparse.ArgumentParser()
    p.add_argument("--experiment", default="exp1")
    p.add_argument("--rows", nargs="+", default=["Baseline", "MIMM-X", "MIMM-X + DLS + CAW", "GroupDRO"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    a = p.parse_args()
    torch.set_num_threads(1)
    print("| row | kept Val. / Inv. / Bal. | DFR readout Val. / Inv. / Bal. |\n| --- | --- | --- |")
    for label in a.rows:
        runs = [readout_refit(a.experiment, label, s) for s in a.seeds]
        cols = [" / ".join(spread([r[k][i] for r in runs]) for i in range(len(SETS))) for k in (0, 1)]
        print(f"| {label} | {cols[0]} | {cols[1]} |", flush=True)


if __name__ == "__main__":
    main()
