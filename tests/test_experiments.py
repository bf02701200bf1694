from pathlib import Path

import pytest

from mimmx.config import RunConfig
from mimmx.runs.experiments import EXPERIMENTS, config_files, row_config, rows

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def test_shipped_configs_match_the_experiment_table():
    files = config_files()
    shipped = {str(p.relative_to(CONFIGS)): p.read_text() for p in CONFIGS.rglob("*.yaml")}
    assert shipped == files, "configs/ is stale: run `python -m mimmx configs`"


def test_every_shipped_config_loads_complete():
    for p in CONFIGS.rglob("*.yaml"):
        cfg = RunConfig.from_yaml(p)
        assert cfg.scenario.name == p.parent.name


def test_poster_settings_per_experiment():
    full = {r.label: r for r in rows("exp1")}["MIMM-X + DLS + CAW"]
    c1 = row_config("exp1", full)
    assert (c1.method.alpha_y, c1.method.alpha_z, c1.method.beta_y, c1.method.n_b,
            c1.train.batch_size) == (0.3, 0.8, 0.01, 6, 150)
    # exp1-3's MIMM-X rows, and only those, take the study's settings (docs/study/session16.md,
    # session17.md, session20.md); every other row keeps the poster's λ
    for exp in ("exp1", "exp2", "exp3"):
        for row in rows(exp):
            m = row_config(exp, row).method
            assert (m.lam, m.resample, m.grad_scaling) == ((3.0, True, True) if row.method == "mimmx"
                                                           else (1.5, False, False)), (exp, row.label)
    c2 = row_config("exp2", full)
    assert (c2.method.alpha_z, c2.method.n_b, c2.train.batch_size) == (0.7, 5, 100)
    m = row_config("exp1_digits", full).method  # the other analogues keep the poster's
    assert (m.lam, m.resample, m.grad_scaling) == (1.5, False, False)
    plain = row_config("exp1", {r.label: r for r in rows("exp1")}["MIMM-X"])
    assert not plain.method.dls and not plain.method.caw
    assert {r.method for r in rows("exp1")} >= {"baseline", "baseline_dls_caw", "rebalance", "dcor",
                                                 "mmd", "adversarial", "mimm", "mimmx"}
    assert set(EXPERIMENTS) == {"exp1", "exp2", "exp3", "exp1_digits", "morpho", "fashion"}
    for exp in EXPERIMENTS:  # every table carries the unconfounded ceiling
        assert rows(exp)[0].slug == "oracle" and row_config(exp, rows(exp)[0]).scenario.confounded is False
    for exp in ("exp1", "exp2", "exp3"):
        assert {"groupdro", "jtt", "dfr"} <= {r.method for r in rows(exp)}


def test_only_the_mimmx_rows_use_one_mine_per_factor_averaged():
    for exp in ("exp1", "exp2", "exp3"):
        for row in rows(exp):
            e = row_config(exp, row).method.estimator
            assert (e.per_factor, e.reduce) == ((True, "mean") if row.method == "mimmx" else (False, "sum")), \
                (exp, row.label)


@pytest.mark.parametrize("experiment", sorted(EXPERIMENTS))
def test_every_row_builds_its_model(experiment, morpho_table):
    """The shipped settings fit each scenario (e.g. logit parts as wide as the class counts)."""
    import torch

    from mimmx.trainer import build_model, build_scenario

    scenario = build_scenario(row_config(experiment, rows(experiment)[0]))
    for row in rows(experiment):
        model, _ = build_model(row_config(experiment, row), scenario, torch.device("cpu"))
        parts, logits = model(torch.zeros(2, 1, 28, 28))
        assert [lg.shape[1] for lg in logits] == [scenario.n_y, *scenario.n_z]


RESULTS = CONFIGS.parent / "results"


def test_shipped_configs_hold_only_the_keys_their_method_reads_and_keep_their_hashes():
    import yaml

    from mimmx.config import MethodConfig
    from mimmx.methods.base import METHODS

    defaults = RunConfig().to_dict()["method"]
    for rel, text in config_files().items():
        exp, slug = rel[:-len(".yaml")].split("/")
        row = {r.slug: r for r in rows(exp)}[slug]
        cfg = row_config(exp, row)
        loaded = RunConfig.from_dict(yaml.safe_load(text))
        assert loaded.hash() == cfg.hash(), rel
        live = METHODS[cfg.method.name].live_keys(cfg.method)
        written = yaml.safe_load(text)["method"]
        flat = {**{k: v for k, v in written.items() if k != "estimator"},
                **{f"estimator.{k}": v for k, v in written.get("estimator", {}).items()}}
        for key, value in flat.items():
            default = (defaults["estimator"][key[10:]] if key.startswith("estimator.") else defaults[key])
            assert key in live or value != default, (rel, key)
        assert set(MethodConfig.__dataclass_fields__) - set(written) - {"estimator"}, rel  # some left out
    assert "lam" not in yaml.safe_load(config_files()["exp1/baseline.yaml"])["method"]
    assert "width" not in yaml.safe_load(config_files()["exp1/dcor.yaml"])["method"].get("estimator", {})
    assert "width" in yaml.safe_load(config_files()["exp1/mimmx.yaml"])["method"]["estimator"]
@pytest.mark.parametrize("path", sorted(RESULTS.glob("*.json")), ids=lambda p: p.stem)
def test_committed_tables_are_found_under_the_keys_the_rows_give_today(path):
    """Every run of a committed results table is stored under the hash its row's config has
    now, so `reproduce` finds it instead of training it again."""
    import json

    table = json.loads(path.read_text())
    if table.get("overrides"):
        pytest.skip("a table made with overrides")
    labels = {r.label: r for r in rows(table["experiment"])}
    runs = table["tables"]["runs"]
    assert runs
    # rows whose shipped setting changed after the table was made name the table that has them
    superseded = table.get("superseded", {})
    for label, newer in superseded.items():
        later = [run for run in json.loads((RESULTS / newer).read_text())["tables"]["runs"]
                 if run["method"] == label]
        assert later, (label, newer)
        assert all(row_config(table["experiment"], labels[label], seed=run["seed"]).hash() == run["key"]
                   for run in later), (label, newer)
    for run in (run for run in runs if run["method"] not in superseded):
        assert row_config(table["experiment"], labels[run["method"]], seed=run["seed"]).hash() == run["key"], \
            (run["method"], run["seed"])
