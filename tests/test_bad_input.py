"""Bad input, as a new user types it: one row per case, input → exit status and message.

Every case here must end in a clear message (exit 2, no traceback) or in the outcome named.
The cases that need a trained run or a store live beside their module: damaged run folders in
test_report.py (truncated checkpoint, metrics.jsonl, summary.json; ``evaluate`` on a YAML file),
edited or incomplete store records, failed jobs and killed pool parents in test_results.py.
"""

import numpy as np
import pytest
import yaml
from PIL import Image

from mimmx.cli import main
from mimmx.config import RunConfig
from mimmx.errors import RunWarning
from mimmx.scenarios.cohort import CohortError, CohortSpec

CONFIG = "configs/exp2/baseline.yaml"
TINY = ["scenario.n_train=600", "scenario.n_selection=200", "scenario.n_test=200",
        "train.epochs=2", "train.batch_size=60", "train.device=cpu"]


def _sets(*pairs: str) -> list[str]:
    return [a for p in pairs for a in ("--set", p)]


# (case, arguments after `python -m mimmx`, what stderr must say)
CLI_CASES = [
    ("λ infinite", ["train", CONFIG, *_sets("method.lam=.inf")], "must be a finite number"),
    ("λ not a number", ["train", CONFIG, *_sets("method.lam=.nan")], "must be a finite number"),
    ("λ negative", ["train", CONFIG, *_sets("method.lam=-1")], "'method.lam' must be ≥ 0, got -1.0"),
    ("α_Y negative", ["train", CONFIG, *_sets("method.alpha_y=-1")], "'method.alpha_y' must be ≥ 0"),
    ("an estimator the method ignores", ["train", "configs/exp2/mimmx.yaml",
                                          *_sets("method.estimator.name=dcor")], "would be ignored"),
    ("no training images", ["train", CONFIG, *_sets("scenario.n_train=0")],
     "'scenario.n_train' must be ≥ 1, got 0"),
    ("negative training images", ["train", CONFIG, *_sets("scenario.n_train=-5")],
     "'scenario.n_train' must be ≥ 1"),
    ("a network of width 0", ["train", CONFIG, *_sets("model.width=0")], "'model.width' must be ≥ 1"),
    ("a batch larger than the training set", ["train", CONFIG, *_sets(*TINY, "train.batch_size=700")],
     "train.batch_size = 700 exceeds the 600 training images"),
    ("a batch larger than what the penalty split leaves", ["train", "configs/exp2/dcor.yaml",
                                                          *_sets(*TINY, "train.batch_size=500",
                                                                 "method.penalty_split=0.5")],
     "images the losses train on"),
    ("r above 1", ["train", CONFIG, *_sets("scenario.r=1.5")], "'scenario.r' must be in [0, 1]"),
    ("a text where a number goes", ["train", CONFIG, *_sets("train.lr=fast")],
     "'train.lr' must be a number, got 'fast'"),
    ("an unknown key", ["train", CONFIG, *_sets("train.learning_rate=0.1")],
     "unknown config key 'train.learning_rate'"),
    ("a missing config file", ["train", "nowhere.yaml"], "nowhere.yaml"),
    ("evaluate a folder that is not there", ["evaluate", "runs/nothing-here"], "does not exist"),
    ("sweep r above 1", ["sweep", "--r", "1.5", "--seeds", "1"], "must lie in [0, 1]"),
    ("zero seeds", ["reproduce", "exp2", "--seeds", "0"], "--seeds must be ≥ 1"),
    ("an unknown row", ["reproduce", "exp2", "--rows", "nonsense"], "unknown row(s) ['nonsense']"),
]


@pytest.mark.parametrize("case, argv, message", CLI_CASES, ids=[c[0] for c in CLI_CASES])
def test_cli_refuses_with_a_clear_message(case, argv, message, capsys, tmp_path):
    assert main(argv + (["--out", str(tmp_path)] if argv[0] in ("train", "sweep", "reproduce") else [])) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err, err


def test_numbers_as_people_type_them_are_accepted():
    cfg = RunConfig().override(["train.lr=1e-4", "method.lam=1E2", "method.alpha_y=.5"])
    assert (cfg.train.lr, cfg.method.lam, cfg.method.alpha_y) == (1e-4, 100.0, 0.5)
    path = RunConfig().to_yaml()
    d = yaml.safe_load(path)
    d["train"]["lr"] = "1e-3"  # what YAML 1.1 makes of `lr: 1e-3`
    assert RunConfig.from_dict(d).train.lr == 1e-3


def test_a_diverging_run_stops_with_a_message_and_writes_nothing(real_data, capsys, tmp_path):
    argv = ["train", CONFIG, *_sets(*TINY, "train.lr=1.0e+8"), "--quiet", "--out", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "training diverged" in err and "lower train.lr" in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []  # no run folder: never stored or scored


@pytest.mark.parametrize("command", [["train", CONFIG, *_sets(*TINY), "--quiet"],
                                     ["reproduce", "exp2", "--seeds", "1", *_sets(*TINY)],
                                     ["sweep", "--scenario", "exp2", "--r", "0.9", "--seeds", "1"]],
                         ids=["train", "reproduce", "sweep"])
def test_out_pointing_at_a_file_is_refused_before_training(command, capsys, tmp_path, monkeypatch):
    import mimmx.trainer

    monkeypatch.setattr(mimmx.trainer, "train", lambda *a, **k: pytest.fail("trained"))
    (tmp_path / "file").write_text("")
    assert main([*command, "--out", str(tmp_path / "file")]) == 2
    assert "is a file, not a folder" in capsys.readouterr().err


def test_a_factor_with_no_minority_cells_warns(real_data):
    from mimmx.trainer import build_scenario

    with pytest.warns(RunWarning, match="no minority cells"):
        build_scenario(RunConfig().override(["scenario.name=exp2", "scenario.r=1.0", *TINY]))


def test_a_balanced_set_too_small_for_its_cells_warns(real_data):
    from mimmx.trainer import build_scenario

    with pytest.warns(RunWarning, match=r"balanced set \(4 images\) has no image in 4 of its 8 cells"):
        build_scenario(RunConfig().override(["scenario.name=exp2", "scenario.n_test=4", *TINY[:2]]))


# (case, a change to a valid cohort YAML, what the error must say)
COHORT_CASES = [
    ("r as a word", {"factors": [{"column": "sex", "r": "high"}]}, "factors[0].r must be a number, got 'high'"),
    ("image size as a word", {"image_size": "big"}, "cohort.image_size must be an integer, got 'big'"),
    ("n_train as a word", {"n_train": "abc"}, "cohort.n_train must be an integer, got 'abc'"),
    ("table as a word", {"factors": [{"column": "sex", "table": "abc"}]},
     "factors[0].table must be a list of rows of numbers"),
    ("a table row of words", {"factors": [{"column": "sex", "table": [["a", "b"], [0.5, 0.5]]}]},
     "factors[0].table[0][0] must be a number, got 'a'"),
    ("a column that is not text", {"label": {"column": 3}}, "label.column must be text, got 3"),
    ("an unknown key", {"imagesize": 28}, "unknown key 'imagesize'"),
]


@pytest.mark.parametrize("case, change, message", COHORT_CASES, ids=[c[0] for c in COHORT_CASES])
def test_cohort_yaml_names_the_key_and_the_type(case, change, message, tmp_path):
    d = {"manifest": "m.csv", "label": {"column": "effusion", "values": {1: 1, 0: 0}}, **change}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(d))
    with pytest.raises(CohortError) as err:
        CohortSpec.from_yaml(tmp_path / "c.yaml")
    assert message in str(err.value)


def test_cohort_yaml_numbers_as_text_are_read():
    spec = CohortSpec.from_dict({"manifest": "m.csv", "test_fraction": "0.3",
                                 "label": {"column": "y", "lt": "1e-3"}})
    assert spec.test_fraction == 0.3 and spec.label.lt == 1e-3


@pytest.mark.parametrize("column, message", [("effusion", "the label (column 'effusion') has one value"),
                                             ("sex", "factor 'sex' (column 'sex') has one value")])
def test_a_cohort_column_with_one_value_is_named(tmp_path, column, message):
    from mimmx.scenarios.cohort import ColumnRule, cohort_scenario

    rng = np.random.default_rng(0)
    lines = ["path,effusion,sex,patient"]
    for i in range(40):
        Image.fromarray(rng.integers(0, 255, (28, 28), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        y, sex = (1 if column == "effusion" else i % 2), ("M" if column == "sex" else "MF"[i % 2])
        lines.append(f"{i}.png,{y},{sex},p{i}")
    (tmp_path / "m.csv").write_text("\n".join(lines) + "\n")
    spec = CohortSpec(manifest=str(tmp_path / "m.csv"), group_column="patient",
                      label=ColumnRule("effusion", values={1: 1, 0: 0}),
                      factors=(ColumnRule("sex", values={"F": 0, "M": 1}),))
    with pytest.raises(CohortError, match=message.replace("(", r"\(").replace(")", r"\)")):
        cohort_scenario(spec, cache=False)
