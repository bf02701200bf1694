"""The results store (reuse, keys, atomic writes, checksums) and the job backends (local,
pool, Ray; failures and killed parents) on tiny real runs."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from mimmx.config import RunConfig
from mimmx.runs import JobsFailed, ResultStore, jobs, run_many
from mimmx.runs.folder import FORMAT, atomic_write
from mimmx.runs.store import StoreWarning

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
    if config["seed"] in fake_job.fail:
        raise FloatingPointError(f"seed {config['seed']} diverged")
    cfg = RunConfig.from_dict(config)
    record = {"format": FORMAT, "key": cfg.hash(), "config": config, "method": {"method": "mimmx"},
              "best": {"epoch": 1, "acc": {"inverted": {"y": 50.0}}}, "history": [],
              "report": {"heads": []}, "eval_options": jobs.eval_options_of(eval_options),
              "wall_time": {"train": 1.0, "evaluate": 0.0, "total": 1.0}, "environment": {}}
    return {"record": record, "checkpoint": b"weights"}


@pytest.fixture
def fake(monkeypatch):
    fake_job.calls, fake_job.fail = [], set()
    monkeypatch.setattr(jobs, "run_job", fake_job)
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
    left = [f.name for f in tmp_path.iterdir()]
    assert left == [f".{cfg.hash()}.lock"]  # no record, no checkpoint, no temporary left
    assert store.get(cfg) is None

    # debris of a kill -9 (a temporary file) and a truncated record are not records
    (tmp_path / f".{cfg.hash()}.json.123-abc.tmp").write_text('{"format": 1, "key"')
    store.record_path(cfg).write_text('{"format": 1, "ke')
    with pytest.warns(StoreWarning, match="not valid JSON"):
        assert store.get(cfg) is None and list(store.records()) == []
    fake_job.calls = []
    monkeypatch.setattr(jobs, "run_job", fake_job)
    with pytest.warns(StoreWarning, match="not valid JSON"):
        rec = run_many([cfg], store)[0]
    assert fake_job.calls == [0] and store.get(cfg) == rec
    atomic_write(tmp_path / "x.json", b"{}")
    assert json.loads((tmp_path / "x.json").read_text()) == {}


@pytest.mark.parametrize("edit, problem", [
    (lambda r: r["best"]["acc"]["inverted"].update(y=99.9), "does not match its checksum"),
    (lambda r: r.update(report=None), "lacks report"),
    (lambda r: r.update(wall_time=None), "lacks wall_time"),
    (lambda r: r.update(format=0), "format is 0"),
])
def test_an_untrustworthy_record_is_reported_and_retrained(tmp_path, fake, edit, problem):
    store = ResultStore(tmp_path)
    cfg = tiny()
    first = run_many([cfg], store)[0]
    assert first["checksum"] and fake.calls == [0]
    record = json.loads(store.record_path(cfg).read_text())
    edit(record)
    store.record_path(cfg).write_text(json.dumps(record))  # edited by hand
    with pytest.warns(StoreWarning, match=problem):
        again = run_many([cfg], store)[0]
    assert fake.calls == [0, 0]  # trained again, not trusted
    assert again["best"]["acc"]["inverted"]["y"] == 50.0 and store.get(cfg) == again


def test_a_failed_job_is_named_and_the_finished_ones_are_kept(tmp_path, fake):
    store = ResultStore(tmp_path)
    fake.fail = {1}
    cfgs = [tiny(seed=s) for s in range(3)]
    with pytest.raises(JobsFailed, match=r"(?s)1 of 3 runs failed.*exp2 mimmx \+DLS \+CAW seed 1 .*diverged"):
        run_many(cfgs, store)
    assert store.get(cfgs[0]) and store.get(cfgs[2]) and store.get(cfgs[1]) is None
    fake.fail = set()
    run_many(cfgs, store)
    assert fake.calls == [0, 1, 2, 1]  # only the failed one runs again
    fake.fail = {5}
    with pytest.raises(FloatingPointError, match="seed 5 diverged"):  # alone: its own error
        run_many([tiny(seed=5)], store)


def test_a_key_another_process_trains_is_waited_for_and_reused(tmp_path, fake):
    import threading

    store = ResultStore(tmp_path)
    a, b = tiny(seed=0), tiny(seed=1)
    other = store.lock(a.hash())
    assert other.acquire(wait=False)  # another `reproduce` is training a
    done = []
    worker = threading.Thread(target=lambda: done.append(run_many([a, b], store)))
    worker.start()
    time.sleep(1.0)
    assert fake.calls == [1] and not done  # b trained here; a waited for
    store.put(fake_job(a.to_dict())["record"], b"weights")  # the other process stores a ...
    fake.calls.remove(0)
    other.release()  # ... and lets go
    worker.join(10)
    assert fake.calls == [1] and done[0][0] == store.get(a)  # a reused, never trained twice
    # a lock whose owner failed: the waiting process trains the key itself
    c = tiny(seed=2)
    other = store.lock(c.hash())
    other.acquire()
    worker = threading.Thread(target=lambda: done.append(run_many([c], store)))
    worker.start()
    time.sleep(0.5)
    other.release()
    worker.join(10)
    assert fake.calls == [1, 2] and done[1][0]["key"] == c.hash()


PARENT = """
import multiprocessing, os, sys, time
from mimmx.runs.jobs import _die_with_parent
def child(parent):
    _die_with_parent(parent)
    time.sleep(120)
if __name__ == "__main__":
    p = multiprocessing.get_context("spawn").Process(target=child, args=(os.getpid(),))
    p.start()
    print(p.pid, flush=True)
    time.sleep(120)
"""


def test_pool_workers_end_with_a_killed_parent(tmp_path):
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    parent = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    child = int(parent.stdout.readline())
    os.kill(parent.pid, signal.SIGKILL)  # `kill -9` of reproduce
    parent.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    os.kill(child, signal.SIGKILL)
    pytest.fail("the worker outlived its killed parent")


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


def test_step_means_keep_at_most_the_points_and_their_mean():
    from mimmx.runs.folder import step_means

    steps = [{"step": i, "loss": float(i)} for i in range(1000)]
    kept = step_means(steps, points=100)
    assert len(kept) == 100 and kept[0]["loss"] == pytest.approx(4.5)
    assert sum(k["loss"] for k in kept) / 100 == pytest.approx(499.5)
    assert step_means(steps[:7], points=100) == steps[:7]
