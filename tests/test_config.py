import hashlib
import json
import re

import pytest

from mimmx.config import RunConfig
from mimmx.errors import ConfigError


def test_yaml_roundtrip(tmp_path):
    cfg = RunConfig().override(["method.lam=0.25", "scenario.r=0.95", "method.estimator.gradient=biased",
                                "train.device=cpu"])
    path = tmp_path / "c.yaml"
    cfg.to_yaml(path)
    back = RunConfig.from_yaml(path)
    assert back == cfg and back.method.lam == 0.25 and back.scenario.r == 0.95
    assert back.hash() == cfg.hash() and RunConfig().hash() != cfg.hash()


def test_partial_yaml_takes_defaults(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("method:\n  name: baseline\ntrain:\n  epochs: 3\n")
    cfg = RunConfig.from_yaml(path)
    assert cfg.method.name == "baseline" and cfg.train.epochs == 3 and cfg.method.lam == 1.5


@pytest.mark.parametrize("text, message", [
    ("method:\n  lamda: 1.0\n", "method.lamda"),
    ("method:\n  estimator:\n    widht: 3\n", "method.estimator.widht"),
    ("train:\n  epochs: ten\n", "train.epochs.*integer"),
    ("method:\n  dls: 3\n", "method.dls.*true or false"),
    ("model: 3\n", "section model must be a mapping"),
    ("- a\n- b\n", "top level must be a mapping"),
    ("method: {name: [\n", "not valid YAML"),
])
def test_malformed_config_names_the_key(tmp_path, text, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_yaml(path)


def test_override_errors():
    with pytest.raises(ConfigError, match="unknown config key 'method.nope'"):
        RunConfig().override(["method.nope=1"])
    with pytest.raises(ConfigError, match="key=value"):
        RunConfig().override(["method.lam"])


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        RunConfig.from_yaml(tmp_path / "nope.yaml")


def test_keys_added_later_keep_old_hashes_at_their_neutral_value():
    cfg = RunConfig().override(["train.select=y"])  # select's neutral value is no longer the default
    legacy = cfg.to_dict()
    # a configuration stored before these keys existed
    del legacy["train"]["channels_last"], legacy["method"]["estimator"]["reduce"], legacy["scenario"]["y_noise"]
    del legacy["train"]["select"], legacy["scenario"]["confounded"], legacy["train"]["shift"], legacy["train"]["rotate"], legacy["train"]["elastic"]
    del legacy["method"]["estimator"]["standardize"], legacy["method"]["estimator"]["batch_size"]
    del legacy["method"]["estimator"]["per_factor_batches"], legacy["model"]["z_encoders"]
    for key in ("group_eta", "group_l2", "jtt_epochs", "jtt_upweight", "nonnegative", "penalty_split",
                "debias", "penalised", "resample", "penalty_batch", "penalty_through", "dls_penalty",
                "penalty_rotate", "caw_temperature"):
        del legacy["method"][key]
    old = hashlib.sha256(json.dumps(legacy, sort_keys=True).encode()).hexdigest()[:16]
    assert cfg.hash() == old
    for change in ("train.channels_last=true", "method.estimator.reduce=mean", "scenario.y_noise=0.1",
                   "train.select=y_cell_balanced", "scenario.confounded=false", "method.group_eta=0.1",
                   "method.group_l2=0.1", "method.jtt_epochs=1", "method.jtt_upweight=5.0",
                   "method.nonnegative=true", "method.estimator.standardize=true",
                   "method.penalty_split=0.2", "method.debias=true",
                   "method.estimator.batch_size=600", "method.penalised=z1",
                   "method.estimator.per_factor_batches=true", "model.z_encoders=per_factor",
                   "method.resample=true", "method.penalty_batch=task", "method.penalty_through=majority",
                   "method.dls_penalty=true", "train.shift=2", "train.rotate=10", "train.elastic=1.5",
                   "method.penalty_rotate=10", "method.caw_temperature=0.02"):
        assert cfg.override([change]).hash() != old, change
    assert RunConfig().hash() != old  # the default rule keeps models by the cell-balanced score


@pytest.mark.parametrize("override, message", [
    ("method.lam=-1", "'method.lam' must be ≥ 0, got -1.0"),
    ("method.alpha_y=-1", "'method.alpha_y' must be ≥ 0"),
    ("method.lam=.inf", "'method.lam' must be a finite number"),
    ("method.lam=.nan", "'method.lam' must be a finite number"),
    ("scenario.n_train=0", "'scenario.n_train' must be ≥ 1, got 0"),
    ("scenario.n_test=-5", "'scenario.n_test' must be ≥ 1"),
    ("model.width=0", "'model.width' must be ≥ 1"),
    ("train.lr=0", "'train.lr' must be > 0"),
    ("train.batch_size=1", "'train.batch_size' must be ≥ 2"),
    ("method.estimator.ema_rate=2", "'method.estimator.ema_rate' must be in (0, 1]"),
])
def test_out_of_range_values_are_refused_with_the_range(override, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        RunConfig().override([override])


def test_yaml_1_1_exponent_numbers_are_numbers(tmp_path):
    """YAML 1.1 reads ``1e-3`` (no dot) as a string; a float key takes it as the number."""
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 1e-3\nmethod:\n  lam: 2E+0\n")
    cfg = RunConfig.from_yaml(path)
    assert cfg.train.lr == 1e-3 and cfg.method.lam == 2.0
    assert RunConfig().override(["train.lr=1e-4"]).train.lr == 1e-4
    with pytest.raises(ConfigError, match="must be a number, got '1e-3x'"):
        RunConfig().override(["train.lr=1e-3x"])


def test_knobs_carry_their_help_in_the_config():
    from mimmx.config import field_help

    assert "(L_i / L̄)^α_Z" in field_help("method.alpha_z")
    assert "P(z = y)" in field_help("scenario.r") and "λ" in field_help("method.lam")
    with pytest.raises(KeyError, match="method.name"):
        field_help("method.name")
