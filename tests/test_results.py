"""The results store (reuse, keys, atomic writes) and the job backends (local, pool, Ray) on
tiny real runs."""

import json
import os

import pytest

from mimmx import results
from mimmx.config import RunConfig
from mimmx.results import ResultStore, atomic_write, run_many

TINY = ["scenario.name=exp2", "scenario.n_train=600", "scenario.n_selection=200",
        "scenario.n_test=200", "train.epochs=1", "train.batch_size=60", "train.device=cpu",
        "method.estimator.width=32", "method.n_b=3",
        "method.lam=0.5"]
FAST = {"probes": ["logreg"], "mi": False}  # the backends are under test here, not the probes


def tiny(seed=0, method="mimmx"):
    return RunConfig().override(TINY + [f"seed={seed}", f"method.name={method}"])


def fake_job(config, threads=None, eval_options=None):
    """Stands in for run_job where only the store's bookkeeping is under test."""
    fake_job.calls.append(config["seed"])
    cfg = RunConfig.from_dict(config)
    record = {"format": results.FORMAT, "key": cfg.hash(), "config": config, "best": {"epoch": 1},
              "eval_options": results.eval_options_of(eval_options)}
    return {"record": record, "checkpoint": b"weights"}


@pytest.fixture
def fake(monkeypatch):
    fake_job.calls = []
    monkeypatch.setattr(results, "run_job", fake_job)
    return fake_job


def test_store_reuses_a_finished_run_and_never_retrains(real_data, tmp_path, monkeypatch):
    store = ResultStore(tmp_path)
    cfg = tiny()
    first = store.run_or_load(cfg, FAST)
    assert store.record_path(cfg).name == f"{cfg.hash()}.json" and store.checkpoint_path(cfg).is_file()
    assert first["best"]["acc"]["selection"]["y"] == max(
        ev["acc"]["selection"]["y"] for ev in first["history"])

    import mimmx.trainer

    def no_training(*a, **k):
        raise AssertionError("a stored configuration was trained again")

    monkeypatch.setattr(mimmx.trainer, "train", no_training)
    assert store.run_or_load(cfg, FAST) == first
    # the stored checkpoint is the selected model: its heads give the record's accuracies
    run = store.load_run(cfg)
    out = run.features("inverted")
    acc = 100.0 * float((out["pred_y"] == out["y"]).float().mean())
    assert acc == pytest.approx(first["best"]["acc"]["inverted"]["y"])


def test_key_is_the_config_hash_seed_included(tmp_path, fake):
    store = ResultStore(tmp_path)
    a, b = tiny(seed=0), tiny(seed=1)
    assert a.hash() != b.hash() and a.hash() == tiny(seed=0).hash()
    seen = []
    records = run_many([a, b, a], store, progress=lambda rec, reused: seen.append(reused))
    assert fake.calls == [0, 1]  # the duplicate ran once
    assert [r["config"]["seed"] for r in records] == [0, 1, 0]
    run_many([b, a], store, progress=lambda rec, reused: seen.append(reused))
    assert fake.calls == [0, 1] and seen == [False, False, True, True]
    assert sorted(r["key"] for r in store.records()) == sorted([a.hash(), b.hash()])


def test_other_evaluation_options_count_as_missing(tmp_path, fake):
    store = ResultStore(tmp_path)
    run_many([tiny()], store)
    run_many([tiny()], store)
    assert fake.calls == [0]
    run_many([tiny()], store, eval_options={"mi": False})
    assert fake.calls == [0, 0]
    with pytest.raises(Exception, match="unknown evaluation option"):
        run_many([tiny()], store, eval_options={"mine_steps": 10})


def test_writes_are_atomic(tmp_path, fake, monkeypatch):
    store = ResultStore(tmp_path)
    cfg = tiny()

    def killed(src, dst):  # the process dies between writing and renaming
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        run_many([cfg], store)
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []  # no record, no checkpoint, no temporary left
    assert store.get(cfg) is None

    # debris of a kill -9 (a temporary file) and a truncated record are not records
    (tmp_path / f".{cfg.hash()}.json.123-abc.tmp").write_text('{"format": 1, "key"')
    store.record_path(cfg).write_text('{"format": 1, "ke')
    assert store.get(cfg) is None and list(store.records()) == []
    fake_job.calls = []
    monkeypatch.setattr(results, "run_job", fake_job)
    rec = run_many([cfg], store)[0]
    assert fake_job.calls == [0] and store.get(cfg) == rec
    atomic_write(tmp_path / "x.json", b"{}")
    assert json.loads((tmp_path / "x.json").read_text()) == {}


def test_unknown_backend_is_a_clear_error(tmp_path):
    with pytest.raises(Exception, match="unknown backend 'slurm'"):
        run_many([tiny()], ResultStore(tmp_path), backend="slurm")


def _comparable(record):
    """What must not depend on where a job ran (timings and environment may)."""
    return record["key"], record["best"]["acc"], record["best"]["epoch"], record["report"]


@pytest.fixture(scope="module")
def local_records(real_data, tmp_path_factory):
    cfgs = [tiny(seed=0), tiny(seed=1, method="baseline")]
    store = ResultStore(tmp_path_factory.mktemp("local"))
    return cfgs, run_many(cfgs, store, threads=1, eval_options=FAST)


def test_pool_backend_gives_the_local_records(local_records, tmp_path):
    cfgs, local = local_records
    pooled = run_many(cfgs, ResultStore(tmp_path), backend="pool", workers=2, threads=1,
                      eval_options=FAST)
    assert [_comparable(r) for r in pooled] == [_comparable(r) for r in local]
    assert local[0]["key"] != local[1]["key"]


def test_ray_backend_on_a_local_instance(local_records, tmp_path):
    pytest.importorskip("ray", reason="ray is an optional extra: pip install 'mimmx[ray]'")
    cfgs, local = local_records
    remote = run_many(cfgs, ResultStore(tmp_path), backend="ray", workers=1, threads=1,
                      eval_options=FAST)
    assert [_comparable(r) for r in remote] == [_comparable(r) for r in local]
