"""Evaluation of a trained run (report tables, post-hoc MI, load_run, `evaluate` CLI) and the
`reproduce` / `sweep` commands end to end, all on tiny real configurations."""

import json

import numpy as np
import pytest

from mimmx.cli import main
from mimmx.config import RunConfig
from mimmx.evaluation.report import Report, evaluate_result, posthoc_mi
from mimmx.runs import ResultStore, load_run, write_run
from mimmx.trainer import train

TINY = ["scenario.name=exp2", "scenario.n_train=600", "scenario.n_selection=200",
        "scenario.n_test=200", "train.epochs=1", "train.batch_size=60", "train.device=cpu",
        "method.estimator.width=32", "method.n_b=3",
        "method.lam=0.5"]


@pytest.fixture(scope="module")
def tiny_run(real_data, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run") / "exp2-baseline"
    cfg = RunConfig().override(TINY + ["method.name=baseline", "train.epochs=2"])
    result = train(cfg)
    write_run(result, run_dir)
    return result


@pytest.fixture(scope="module")
def report(tiny_run):
    return evaluate_result(tiny_run, mi_steps=40, embedding="pca")


def test_report_tables_have_the_poster_shape(tiny_run, report):
    heads = report.heads_table()
    assert list(heads.index) == ["f_y→y", "f_z1→z1", "f_z2→z2"]
    assert list(heads.columns) == ["Val.", "Inv.", "Bal.", "Worst"]
    # the run holds the model chosen on the selection split, so its heads reproduce that event
    best = tiny_run.best["acc"]
    assert heads.loc["f_y→y", "Inv."] == pytest.approx(best["inverted"]["y"])
    assert heads.loc["f_y→y", "Worst"] == pytest.approx(tiny_run.best["worst"]["balanced"])
    assert heads.loc["f_y→y", "Worst"] <= min(heads.loc["f_y→y", ["Val.", "Inv.", "Bal."]])
    assert heads[["Worst"]].iloc[1:].isna().all().all()  # the worst group is y's only
    assert heads.loc["f_z2→z2", "Val."] == pytest.approx(best["validation"]["z2"])

    assert len(report.probes) == 2 * 3 * 3  # probes × parts × labels
    diag = report.probes[report.probes["diagonal"]]
    assert sorted(zip(diag["probe"], diag["part"], diag["label"])) == sorted(
        (p, f"f_{lab}", lab) for p in ("knn", "logreg") for lab in ("y", "z1", "z2"))
    assert report.matrix("knn").shape == (3, 3)
    assert set(report.leakage["probe"]) == {"logreg", "knn"}
    assert report.leakage["leakage"].between(0, 1).all()
    assert list(report.mi["pair"]) == ["f_y;f_z", "f_y;f_z1", "f_y;f_z2"]

    md = report.to_markdown()
    cell = report.matrix("logreg").loc["f_z1", "z1"]
    assert f"({cell:.1f})" in md  # the diagonal is marked
    assert "| f_y→y |" in md and "Leakage score" in md

    n = report.info["n_balanced"]
    assert len(report.embeddings) == 3 * n and set(report.figures) == {"f_y", "f_z1", "f_z2"}
    again = Report.from_dict(json.loads(report.to_json()))
    assert again.heads.equals(report.heads) and again.probes.equals(report.probes)


def test_posthoc_mi_knows_dependence_from_independence():
    rng = np.random.default_rng(0)
    f_y = rng.normal(size=(1200, 2))
    rho = 0.9  # I = −½ log(1 − ρ²) per dimension = 1.66 nats for two
    f_z = rho * f_y + np.sqrt(1 - rho**2) * rng.normal(size=(1200, 2))
    dependent = posthoc_mi(f_y, f_z, seed=0, steps=200)
    independent = posthoc_mi(f_y, rng.normal(size=(1200, 6)), seed=0, steps=200)
    assert 1.0 < dependent["mi"] < 1.8
    assert abs(independent["mi"]) < 0.05
    assert posthoc_mi(f_y, f_z, seed=0, steps=200) == dependent  # seeded


def test_load_run_rebuilds_the_trained_run(tiny_run, report):
    loaded = load_run(tiny_run.run_dir)
    assert loaded.config == tiny_run.config and loaded.best == tiny_run.best
    again = evaluate_result(loaded, probes=["logreg"], mi=False, embedding=None)
    assert again.heads.equals(report.heads)
    assert again.probes.equals(report.probes[report.probes["probe"] == "logreg"])


def test_evaluate_command_on_a_run_folder(tiny_run, capsys):
    assert main(["evaluate", str(tiny_run.run_dir), "--embedding", "pca", "--no-mi"]) == 0
    printed = capsys.readouterr().out
    assert "(a) Accuracy" in printed and "(b) Disentanglement" in printed
    saved = json.loads((tiny_run.run_dir / "evaluation.json").read_text())
    assert len(saved["probes"]) == 18 and saved["mi"] == []
    assert (tiny_run.run_dir / "embeddings.html").is_file()
    assert main(["evaluate", str(tiny_run.run_dir / "nothing")]) == 2
    assert "does not exist" in capsys.readouterr().err


def _cut(path, n: int) -> bool:
    """Truncate a file to its first ``n`` bytes, as a killed writer would have left it."""
    path.write_bytes(path.read_bytes()[:n])
    return True


@pytest.mark.parametrize("damage, message", [
    (lambda d: d / "config.yaml", "not a run folder or a checkpoint"),  # `evaluate some.yaml`
    (lambda d: _cut(d / "checkpoint.pt", 500) and d, "not a readable mimmx checkpoint"),
    (lambda d: _cut(d / "metrics.jsonl", 300) and d, "metrics.jsonl, line 1, is not valid JSON"),
    (lambda d: _cut(d / "summary.json", 20) and d, "summary.json is not valid JSON"),
    (lambda d: (d / "checkpoint.pt").unlink() or d, "no checkpoint.pt in it"),
])
def test_evaluate_names_what_is_wrong_with_a_damaged_run(tiny_run, tmp_path, capsys, damage, message):
    import shutil

    run = shutil.copytree(tiny_run.run_dir, tmp_path / "run")
    target = damage(run)
    assert main(["evaluate", str(target), "--embedding", "none", "--no-mi"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_reproduce_end_to_end_and_reuse(real_data, tmp_path, monkeypatch, capsys):
    from mimmx.runs import jobs as results
    from mimmx.runs.reproduce import reproduce

    monkeypatch.setitem(results.EVAL_OPTIONS, "mi_steps", 40)  # the default for CLI and library
    store = ResultStore(tmp_path / "store")
    out = tmp_path / "results"
    res = reproduce("exp2", 2, overrides=TINY[1:], rows_wanted=["baseline", "mimmx"], out=out,
                    store=store)
    md = (out / "exp2.md").read_text()
    assert "±" in md and "(a) Classification accuracy" in md and "(b) Disentanglement" in md
    assert "| Baseline |" in md and "| MIMM-X + DLS + CAW |" in md and "| f_z1 |" in md
    assert "mean ± std over 2 seeds" in md and "Commit" in md and "Hardware: CPU" in md
    assert "best cell-balanced y accuracy" in md  # the default train.select, named in the table
    assert "| method | f_y→y Val. | f_y→y Inv. | f_y→y Bal. | f_z1→z1 Val. |" in md  # poster order
    assert "| MIMM-X + DLS + CAW | " in md.split("beside the poster")[1]  # the poster's exp2 row:
    assert "| 86.3 | 70.4 | 76.5 |" in md.split("beside the poster")[1]    # 86.3 / 70.4 / 76.5
    twin = json.loads((out / "exp2.json").read_text())
    assert twin["runs"] == 4 and twin["trained"] == 4 and twin["seeds"] == [0, 1]
    assert len(twin["tables"]["heads"]) == 4 * 10  # rows × seeds × (3 heads × 3 sets + y's worst group)
    heads = res.tables.heads
    baseline_inv = heads[(heads["method"] == "Baseline") & (heads["head"] == "f_y→y")
                         & (heads["test_set"] == "inverted")]
    assert sorted(baseline_inv.seed) == [0, 1]

    import mimmx.trainer

    monkeypatch.setattr(mimmx.trainer, "train", lambda *a, **k: pytest.fail("retrained"))
    # through the command line: every (config, seed) now comes from the store
    argv = ["reproduce", "exp2", "--seeds", "2", "--rows", "baseline", "mimmx",
            "--out", str(out), "--store", str(store.root)] + [f"--set={o}" for o in TINY[1:]]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "[4/4]" in printed
    assert "exp2 MIMM-X + DLS + CAW seed 1 (stored)" in printed  # progress names the row
    twin = json.loads((out / "exp2.json").read_text())
    assert twin["reused"] == 4 and twin["select"] == ["y_cell_balanced"]


def test_every_row_is_read_against_the_oracle():
    import pandas as pd

    from mimmx.runs.reproduce import against_oracle

    rows = [{"method": m, "seed": s, "head": "f_y→y", "test_set": t, "accuracy": v + s}
            for m, inv, worst in (("Baseline", 30.0, 10.0), ("Oracle (no confounding)", 88.0, 80.0))
            for s in (0, 2) for t, v in (("validation", 95.0), ("inverted", inv), ("worst", worst))]
    table = against_oracle(pd.DataFrame(rows))
    assert table.loc["Baseline"].tolist() == ["31.0", "-58.0", "11.0", "-70.0"]
    assert table.loc["Oracle (no confounding)", "Inv. − Oracle"] == "0.0"
    assert against_oracle(pd.DataFrame(rows[:6])) is None  # no Oracle row, no comparison


def test_sweep_end_to_end(real_data, tmp_path):
    from mimmx.runs.reproduce import sweep

    res = sweep("exp2", ["baseline", "mimmx"], [0.6, 0.95], 1, overrides=TINY[1:],
                out=tmp_path, store=ResultStore(tmp_path / "store"),
                eval_options={"probes": ["logreg"], "mi": False})
    assert len(res.frame) == 4 and set(res.frame["r"]) == {0.6, 0.95}
    assert {"method", "r", "seed", "inverted", "validation"} <= set(res.frame.columns)
    assert len(res.figure.data) == 4  # (inverted, validation) × methods
    md = (tmp_path / "sweep_exp2.md").read_text()
    assert "| Baseline |" in md and "Inverted set" in md
    assert (tmp_path / "sweep_exp2.html").stat().st_size > 1000
    with pytest.raises(Exception, match="unknown method"):
        sweep("exp2", ["mimx"], [0.9], 1, out=None, store=ResultStore(tmp_path / "store"))
