"""The MIMM-X study (docs/why-mimmx-works.md): train named variants of a poster row and print
one line each: y accuracy on Validation / Inverted / Balanced (model chosen on the confounded
selection split, by ``train.select``), linear-probe accuracy f_y -> z_i on the Balanced set,
wall time; and a second line with the accuracies of the model the other ``train.select`` rule
would have kept in the same run (``y`` or ``y_cell_balanced``).

    python bench/study.py --variant NAME "key=value key=value" [--variant ...] [--seeds 0 1 2]
        [--row "MIMM-X + DLS + CAW"] [--experiment exp1] [--jobs 2]

An override ``row=SLUG`` (baseline, dcor, mimm, mimmx_plain, mimmx_dls, mimmx_caw, mimmx, ...)
picks another row for that variant; ``factors=SOURCE,SOURCE`` swaps the scenario's factors for
other induced transforms at the same r (e.g. ``factors=marker,site``: exp1 without thickness).
``--readout`` adds DFR's readout refit on each kept model (``bench/dfr_readout.py``, a
diagnostic: how far the features carry y; about 15 s a run).
``control=permuted`` is a control, not a method: the penalty and its estimator see f_z (and z)
permuted across the batch, so there is no dependence to find and what acts on f_y is the
penalty's noise alone.

Each job runs on one torch thread; --jobs runs that many in parallel processes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor


def register_permuted(name: str) -> str:
    """Register "<name>_permuted": method ``name`` whose penalty and estimator see (f_z, z)
    permuted across the batch (one permutation per call, from the method's generator)."""
    import torch

    from mimmx.methods.base import METHODS

    base = METHODS[name]

    class Permuted(base):
        def _inputs(self, parts, z):
            f_y, f_zs, zs = super()._inputs(parts, z)
            perm = torch.randperm(len(f_y), generator=self.generator).to(f_y.device)
            return f_y, [f[perm] for f in f_zs], zs[perm]

    METHODS[f"{name}_permuted"] = Permuted
    return f"{name}_permuted"


def job(args: tuple) -> dict:
    experiment, row_label, name, overrides, seed, readout = args
    os.environ["MIMMX_THREADS"] = "1"
    import numpy as np

    from mimmx.evaluation import probe_matrix
    from mimmx.runs.experiments import row_config, rows
    from mimmx.scenarios import get_spec
    from mimmx.trainer import build_scenario, kept_evaluation, train

    pseudo = {k: o.split("=", 1)[1] for o in overrides for k in ("row", "factors", "control")
              if o.startswith(k + "=")}
    overrides = [o for o in overrides if o.split("=", 1)[0] not in pseudo]
    row = ({r.slug: r for r in rows(experiment)}[pseudo["row"]] if "row" in pseudo
           else {r.label: r for r in rows(experiment)}[row_label])
    cfg = row_config(experiment, row, seed=seed).override(overrides)
    if pseudo.get("control") == "permuted":
        cfg = cfg.override([f"method.name={register_permuted(cfg.method.name)}"])
    spec = get_spec(cfg.scenario.name)
    if "factors" in pseudo:  # same names and r, other transforms
        sources = pseudo["factors"].split(",")
        spec = dataclasses.replace(spec, factors=tuple(
            dataclasses.replace(f, source=src) for f, src in zip(spec.factors, sources, strict=True)))
    t = time.perf_counter()
    result = train(cfg, build_scenario(cfg, spec))
    wall = time.perf_counter() - t
    feats = result.features("balanced")
    n_z = len(result.scenario.spec.factors)
    labels = {f"z{i + 1}": feats[f"z{i + 1}"] for i in range(n_z)}
    parts = {"f_y": feats["f_y"], **{f"f_z{i + 1}": feats[f"f_z{i + 1}"] for i in range(n_z)}}
    m = probe_matrix(parts, labels, probe="logreg", seed=seed)
    acc = result.best["acc"]
    # the model the other train.select would have kept, from the same run's evaluations
    other = "y_cell_balanced" if cfg.train.select == "y" else "y"
    alt = kept_evaluation(result.history, other)
    if readout:  # last: the refit replaces the model's y readout
        from dfr_readout import refit
        scenario = [o for o in overrides if o.startswith("scenario.")]
        readout = dict(zip(("val", "inv", "bal"), refit(result.model, result.method, experiment, seed, scenario)[1]))
    return {"experiment": experiment, **({"factors": pseudo["factors"]} if "factors" in pseudo else {}),
            "select": cfg.train.select, "sel_cb": result.best["select"]["y_cell_balanced"],
            f"by_{other}": {"epoch": alt["epoch"], **{s: alt["acc"][s]["y"] for s in
                                                     ("selection", "validation", "inverted", "balanced")}},
            "variant": name, "seed": seed, "val": acc["validation"]["y"], "inv": acc["inverted"]["y"],
            "bal": acc["balanced"]["y"], "sel": acc["selection"]["y"], "epoch": result.best["epoch"],
            **{f"probe_z{i + 1}": float(m.loc["f_y", f"z{i + 1}"]) for i in range(n_z)},
            # every part's probes: off the diagonal, what a factor part knows of another factor
            "probes": {part: {z: float(m.loc[part, z]) for z in labels} for part in parts},
            "z_acc": [acc["validation"][f"z{i + 1}"] for i in range(n_z)],
            **({"readout": readout} if readout else {}),
            "wall": wall, "img_s": result.images_per_second, "overrides": overrides,
            "mi": result.best.get("estimate"), "history": [(e["epoch"], e["acc"]["selection"]["y"],
                                                            e["acc"]["inverted"]["y"],
                                                            e["select"]["y_cell_balanced"], e["acc"]["balanced"]["y"])
                                                           for e in result.history],
            "_np": np.__version__}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--variant", nargs=2, action="append", metavar=("NAME", "OVERRIDES"), required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--row", default="MIMM-X + DLS + CAW")
    p.add_argument("--experiment", default="exp1")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--log", default=None, help="append JSON lines here")
    p.add_argument("--readout", action="store_true", help="add DFR's readout refit on each kept model")
    a = p.parse_args()
    jobs = [(a.experiment, a.row, name, ov.split(), s, a.readout) for name, ov in a.variant for s in a.seeds]
    with ProcessPoolExecutor(a.jobs) as pool:
        for r in pool.map(job, jobs):
            print(f"{r['variant']:28s} s{r['seed']} val {r['val']:5.1f} inv {r['inv']:5.1f} bal {r['bal']:5.1f} "
                  f"| probe f_y->z " + " ".join(f"{r[k]:5.1f}" for k in r if k.startswith("probe_"))
                  + " | f_zi->zj " + " ".join(f"{acc:5.1f}" for part, row in r["probes"].items()
                                              if part != "f_y" for z, acc in row.items() if z != part[2:])
                  + f" | z acc {' '.join(f'{v:5.1f}' for v in r['z_acc'])} | ep {r['epoch']} "
                  f"| {r['wall']:5.0f}s {r['img_s']:5.0f} img/s", flush=True)
            (other, alt), = ((k, v) for k, v in r.items() if k.startswith("by_"))
            print(f"{'':28s}    kept {other[3:]}: val {alt['validation']:5.1f} inv {alt['inverted']:5.1f} "
                  f"bal {alt['balanced']:5.1f} | ep {alt['epoch']}", flush=True)
            if "readout" in r:
                print(f"{'':28s}    DFR readout: val {r['readout']['val']:5.1f} inv {r['readout']['inv']:5.1f} "
                      f"bal {r['readout']['bal']:5.1f}", flush=True)
            if a.log:
                with open(a.log, "a") as f:
                    f.write(json.dumps({k: v for k, v in r.items() if k != "_np"}) + "\n")


if __name__ == "__main__":
    main()
