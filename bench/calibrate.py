"""Calibration of the analogues (docs/study/session9.md): candidate primary tasks for exp1,
exp2 and exp3, judged on the Baseline and the unconfounded model (the Oracle) only.

Each candidate is a ScenarioSpec registered under its own name; each job trains the
experiment's Baseline row on it, confounded (``scenario.confounded=true``) or not (the Oracle),
and prints one JSON line: y accuracy on Validation / Inverted / Balanced, worst-group accuracy on
the Balanced set, the kept epoch, wall time.

    python bench/calibrate.py --candidates exp1_fracture exp2_pullover_coat --seeds 0 [--jobs 2]
        [--out docs/study/session9.jsonl]
    python bench/calibrate.py --summary docs/study/session9.jsonl   # the rule applied to the lines

Each job runs on one torch thread; --jobs runs that many in parallel (forked) processes.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor

from mimmx.scenarios import SCENARIOS
from mimmx.scenarios.builder import FactorSpec, ScenarioSpec

PULLOVER_COAT = ((2,), (4,))  # Fashion-MNIST classes 2 Pullover, 4 Coat
TSHIRT_SHIRT = ((0,), (6,))  # 0 T-shirt/top, 6 Shirt
EXP1_FACTORS = (FactorSpec("marker", "induced", "marker", r=0.9, analogue="sex"),
                FactorSpec("site", "induced", "site", r=0.9, analogue="dataset (NAKO/UKB)"))
EXP2_FACTORS = (FactorSpec("marker", "induced", "marker", r=0.9, analogue="sex"),
                FactorSpec("intensity", "induced", "intensity", r=0.9, analogue="age"))
EXP3_FACTORS = (FactorSpec("marker", "induced", "marker", table=((0.45, 0.05), (0.05, 0.45)), analogue="sex"),
                FactorSpec("brightness", "natural", "brightness", table=((0.19, 0.31), (0.12, 0.38)),
                           quantile=0.45, analogue="age"),
                FactorSpec("extent", "natural", "extent", table=((0.29, 0.21), (0.14, 0.36)),
                           quantile=0.45, analogue="CoD"))
PAIR_SIZES = dict(n_train=9000, n_selection=1000, n_test=600)  # 12,000 / 2,000 images per pair
MNIST_SIZES = dict(n_train=10000, n_selection=1000, n_test=3000)
# exp3's natural cells at the ratio table: the largest sizes every split of both rows supports
EXP3_SIZES = {"pullover_coat": dict(n_train=5000, n_selection=500, n_test=400),
              "tshirt_shirt": dict(n_train=4000, n_selection=400, n_test=400)}

# candidate -> (experiment whose rows and settings it takes, spec)
CANDIDATES: dict[str, tuple[str, ScenarioSpec]] = {
    "exp1_fracture": ("exp1", ScenarioSpec("exp1_fracture", "mnist", EXP1_FACTORS, y_source="fracture",
                                           **MNIST_SIZES)),
    "exp1_fracture2": ("exp1", ScenarioSpec("exp1_fracture2", "mnist", EXP1_FACTORS, y_source="fracture2",
                                            **MNIST_SIZES)),
    "exp1_fracture3": ("exp1", ScenarioSpec("exp1_fracture3", "mnist", EXP1_FACTORS, y_source="fracture3",
                                            **MNIST_SIZES)),
    "exp1_pullover_coat": ("exp1", ScenarioSpec("exp1_pullover_coat", "fashion-mnist", EXP1_FACTORS,
                                                y_groups=PULLOVER_COAT, **PAIR_SIZES)),
    "exp2_pullover_coat": ("exp2", ScenarioSpec("exp2_pullover_coat", "fashion-mnist", EXP2_FACTORS,
                                                y_groups=PULLOVER_COAT, **PAIR_SIZES)),
    "exp2_tshirt_shirt": ("exp2", ScenarioSpec("exp2_tshirt_shirt", "fashion-mnist", EXP2_FACTORS,
                                               y_groups=TSHIRT_SHIRT, **PAIR_SIZES)),
    "exp3_pullover_coat": ("exp3", ScenarioSpec("exp3_pullover_coat", "fashion-mnist", EXP3_FACTORS,
                                                y_groups=PULLOVER_COAT, **EXP3_SIZES["pullover_coat"])),
    "exp3_tshirt_shirt": ("exp3", ScenarioSpec("exp3_tshirt_shirt", "fashion-mnist", EXP3_FACTORS,
                                               y_groups=TSHIRT_SHIRT, **EXP3_SIZES["tshirt_shirt"])),
}


def job(args: tuple) -> dict:
    candidate, confounded, seed, extra = args
    os.environ["MIMMX_THREADS"] = "1"
    import torch

    from mimmx.runs.experiments import row_config, rows
    from mimmx.trainer import build_scenario, train

    torch.set_num_threads(1)
    experiment, _ = CANDIDATES[candidate]
    cfg = row_config(experiment, rows(experiment)[0], seed).override(
        [f"scenario.name={candidate}", f"scenario.confounded={str(confounded).lower()}",
         "train.channels_last=true", *extra])
    t0 = time.perf_counter()
    scenario = build_scenario(cfg)
    t_build = time.perf_counter() - t0
    result = train(cfg, scenario)
    out = result.features("balanced")
    cells = torch.stack([out["y"], *[out[f"z{i + 1}"] for i in range(len(scenario.factor_names))]], 1)
    _, cell = torch.unique(cells, dim=0, return_inverse=True)
    right = torch.zeros(int(cell.max()) + 1).index_add_(0, cell, (out["pred_y"] == out["y"]).float())
    acc = result.best["acc"]
    return {"candidate": candidate, "row": "Baseline" if confounded else "Oracle", "seed": seed,
            "extra": extra, "validation": acc["validation"]["y"], "inverted": acc["inverted"]["y"],
            "balanced": acc["balanced"]["y"],
            "worst_group": 100.0 * float((right / torch.bincount(cell)).min()),
            "epoch": result.best["epoch"], "select": result.best["select"],
            "build_s": round(t_build, 1), "wall_s": round(result.wall_time, 1)}


POSTER_INVERTED = {"exp1": 27.2, "exp2": 42.6, "exp3": 57.4}
ORACLE_FLOOR = {"exp1": 85.0, "exp2": 80.0, "exp3": 80.0}


def summary(path: str) -> str:
    """Mean ± std per candidate and row over the seeds in ``path`` (the last line of each
    (candidate, row, seed) counts), and the calibration rule's verdict (docs/study/session9.md)."""
    import pandas as pd

    from mimmx.evaluation.tables import mean_std

    lines = [json.loads(t) for t in open(path) if t.strip()]
    d = pd.DataFrame([x for x in lines if not x.get("extra")]).drop_duplicates(
        ["candidate", "row", "seed"], keep="last")
    out = ["| candidate | seeds | Baseline Val | Baseline Inv | Baseline Worst | Oracle Inv | Oracle Worst | verdict |",
           "|---|---|---|---|---|---|---|---|"]
    for cand, g in d.groupby("candidate", sort=False):
        exp = CANDIDATES[cand][0]
        b, o = g[g.row == "Baseline"], g[g.row == "Oracle"]
        seeds = sorted(set(b.seed) & set(o.seed))
        b, o = b[b.seed.isin(seeds)], o[o.seed.isin(seeds)]
        misses = {"Val ≥ 90": max(0.0, 90 - b.validation.mean()),
                  f"|Inv − {POSTER_INVERTED[exp]}| ≤ 10": max(0.0, abs(b.inverted.mean() - POSTER_INVERTED[exp]) - 10),
                  f"Oracle Inv ≥ {ORACLE_FLOOR[exp]:.0f}": max(0.0, ORACLE_FLOOR[exp] - o.inverted.mean())}
        verdict = ("qualifies" if not any(misses.values()) else
                   "misses " + ", ".join(f"{k} by {v:.1f}" for k, v in misses.items() if v))
        out.append(f"| {cand} | {len(seeds)} | {mean_std(b.validation)} | {mean_std(b.inverted)} | "
                   f"{mean_std(b.worst_group)} | {mean_std(o.inverted)} | {mean_std(o.worst_group)} | {verdict} |")
    return "\n".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--candidates", nargs="+", default=list(CANDIDATES), choices=list(CANDIDATES))
    ap.add_argument("--rows", nargs="+", default=["Baseline", "Oracle"], choices=["Baseline", "Oracle"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--set", nargs="*", default=[], help="extra key=value overrides")
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--out", default=None, help="append the JSON lines to this file too")
    ap.add_argument("--summary", default=None, help="print the rule's table for these JSON lines, train nothing")
    a = ap.parse_args()
    if a.summary:
        print(summary(a.summary))
        return
    for name, (_, spec) in CANDIDATES.items():
        SCENARIOS[name] = spec
    jobs = [(c, row == "Baseline", s, a.set) for s in a.seeds for c in a.candidates for row in a.rows]
    with ProcessPoolExecutor(a.jobs) as pool:
        for line in pool.map(job, jobs):
            text = json.dumps(line)
            print(text, flush=True)
            if a.out:
                with open(a.out, "a") as f:
                    f.write(text + "\n")


if __name__ == "__main__":
    main()
