"""Background training for the app: build the configs of a request, train them side by side
in the scheduler's worker processes (:mod:`mimmx.app.workers`; one torch thread each, as many at
once as the machine has cores), and share their progress with the page through a lock-guarded
plain dict (``Job.snapshot()``). Finished configurations go to the results store
(:class:`mimmx.runs.ResultStore`, keyed by ``RunConfig.hash()``) and are shown at once the next
time.

Speed: built scenarios are kept in-process (:func:`scenario_for`; :func:`prebuild` builds the
page's current one, and starts the worker processes, in the background before Train is pressed;
while one is built, the job's phase says how far, chunk of fractures by chunk), and every
training step is shared with the page, so its loss/γ chart moves within a second of Train. At
every evaluation the worker embeds f_y and each f_z of a fixed Balanced subsample
(:data:`LIVE_POINTS`) with PCA (a few ms); when UMAP has warmed up, a helper thread here
re-embeds the latest features with UMAP, idling nine tenths of the time.
"""

from __future__ import annotations

import copy
import dataclasses
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import pandas as pd

# the modules the job's threads need (scenario builds, UMAP) are imported here, in the page's
# thread: modules first imported by two threads at once can trip CPython's compiler ("AST
# constructor recursion depth mismatch")
import sklearn.decomposition  # noqa: F401 - PCA, imported lazily by mimmx.evaluation.embeddings
import threadpoolctl  # noqa: F401 - likewise
import torch

import mimmx.morpho  # noqa: F401 - the scenarios' morphometric factors load it lazily
from mimmx.app.workers import Workers
from mimmx.config import RunConfig
from mimmx.device import get_device
from mimmx.errors import UserError
from mimmx.evaluation import embeddings_frame
from mimmx.methods.base import METHODS
from mimmx.models.network import MIMMNet
from mimmx.runs.experiments import row_config, rows
from mimmx.runs.store import ResultStore
from mimmx.scenarios import get_spec
from mimmx.scenarios.factors import reporting
from mimmx.trainer import build_model, build_scenario, split_features

TINY_ENV_VAR = "MIMMX_APP_TINY"  # "1": ~400 training images, 2 epochs (tests, quick demos)
STORE_ENV_VAR = "MIMMX_APP_RESULTS"  # results store folder (default: mimmx's own)
APP_EVAL = {"probes": ["logreg"], "mi": False, "embedding": "pca"}  # the app's quick evaluation
APP_EVAL_SIZE = 1000  # test-set images per split measured at each live evaluation (final: all)
MAX_POINTS = 600  # embedding points kept per run
LIVE_POINTS = 400  # Balanced-set points embedded at every evaluation during training
LIVE_UMAP = {"n_epochs": 100}  # a quicker UMAP for the live view
UMAP_DUTY = 0.1  # the live-UMAP thread computes at most this share of the time
SCENARIO_CACHE = 4  # built scenarios kept in-process
PARALLEL_RUNS = max(1, os.cpu_count() or 1)  # runs trained at once, one torch thread each
SLOTS_ENV_VAR = "MIMMX_APP_SLOTS"  # trainings at once on the whole server (default: the cores)
CLASS_ENV_VAR = "MIMMX_APP_CLASS"  # "1": class mode, the page shows stored runs and trains none
BUILDING = "building the scenario"  # the job's phase meanwhile; the build's progress is added


def tiny() -> bool:
    return os.environ.get(TINY_ENV_VAR, "").strip() not in ("", "0")


@dataclass
class Request:
    """What the user asked for on the page."""

    scenario: str = "exp1"
    methods: tuple[str, ...] = ("Baseline", "MIMM-X + DLS + CAW")  # row labels (mimmx.runs.experiments)
    r: float | None = None  # None: the scenario's own
    # None: the experiment's setting (mimmx.runs.experiments), else the config's default
    lam: float | None = None
    alpha_y: float | None = None
    alpha_z: float | None = None
    beta_y: float | None = None
    n_b: int | None = None
    epochs: int = 10
    n_train: int | None = None  # None: the scenario's default (tiny mode: 400)
    seed: int = 0


def default_request(scenario: str = "exp1") -> Request:
    """The poster's settings of an experiment, with the app's short default training."""
    labels = [r.label for r in rows(scenario)]
    shown = [m for m in ("Baseline", "MIMM-X + DLS + CAW", "MIMM") if m in labels]
    # the knobs of the app's MIMM-X (full) row where the scenario has one, else the experiment's
    row = next((r for r in rows(scenario) if r.label == "MIMM-X + DLS + CAW"), rows(scenario)[0])
    m = row_config(scenario, row).method
    r = get_spec(scenario).factors[0].r if takes_r(scenario) else None  # the slider's start
    return Request(scenario, tuple(shown[:2]), r, m.lam, m.alpha_y, m.alpha_z, m.beta_y, m.n_b,
                   2 if tiny() else 10)


R_GRID = (0.5, 0.7, 0.9, 0.99)  # the correlation strengths warm-cache stores for each scenario


def robustness(req: Request, results: ResultStore | None = None,
               r_values: tuple[float, ...] = R_GRID) -> pd.DataFrame:
    """y accuracy against r of every method of ``req.scenario`` that the store holds at the
    request's other settings (``r_values`` and the request's own r): one row per stored run,
    ``method, r, seed, validation, inverted, balanced`` (%), the layout of ``mimmx sweep``.
    Empty for scenarios whose factors are tables, not r. Every full rerun of every session's
    page asks for it, so the look-ups are kept until a record lands in the store (its folder's
    modification time changes)."""
    results = results or store()
    r_values = tuple(sorted({*r_values, *([req.r] if req.r is not None else [])}))
    key = (dataclasses.astuple(dataclasses.replace(req, methods=(), r=None)), r_values, tiny(),
           str(results.root), results.root.stat().st_mtime_ns)
    with _robustness_lock:
        if key not in _robustness_seen:
            if len(_robustness_seen) > 64:
                _robustness_seen.clear()
            _robustness_seen[key] = _robustness(req, results, r_values)
        return _robustness_seen[key].copy()


_robustness_seen: dict[tuple, pd.DataFrame] = {}
_robustness_lock = threading.Lock()


def _robustness(req: Request, results: ResultStore, r_values: tuple[float, ...]) -> pd.DataFrame:
    columns = ["method", "r", "seed", "validation", "inverted", "balanced"]
    if not takes_r(req.scenario):
        return pd.DataFrame(columns=columns)
    found = []
    for label in (r.label for r in rows(req.scenario)):
        for r in r_values:
            cfg = configs(dataclasses.replace(req, methods=(label,), r=r))[label]
            record = results.get(cfg)
            if record is not None:
                acc = record["best"]["acc"]
                found.append({"method": label, "r": cfg.scenario.r, "seed": cfg.seed,
                              **{s: acc[s]["y"] for s in ("validation", "inverted", "balanced")}})
    return pd.DataFrame(found, columns=columns)


def feature_dims(scenario: str) -> int:
    """The widest feature part (f_y or one f_z) of the scenario's rows."""
    model = row_config(scenario, rows(scenario)[0]).model
    return max(model.f_y_dim, model.f_z_dim)


def takes_r(scenario: str) -> bool:
    """Whether the scenario's factors are given by a correlation strength r (not by tables)."""
    return all(f.r is not None for f in get_spec(scenario).factors)


def configs(req: Request) -> dict[str, RunConfig]:
    """Method label -> the RunConfig of that poster row with the request's settings.
    Raises UserError (ConfigError) on bad values, naming them."""
    by_label = {r.label: r for r in rows(req.scenario)}
    unknown = [m for m in req.methods if m not in by_label]
    if unknown:
        raise UserError(f"method(s) {unknown} are not rows of {req.scenario}; "
                        f"choose from {list(by_label)}")
    if not req.methods:
        raise UserError("choose at least one method")
    knobs = {"method.lam": req.lam, "method.alpha_y": req.alpha_y, "method.alpha_z": req.alpha_z,
             "method.beta_y": req.beta_y, "method.n_b": req.n_b}
    changes = {k: v for k, v in knobs.items() if v is not None}
    changes.update({"train.epochs": req.epochs, "train.eval_every": 1, "train.channels_last": True})
    if req.r is not None:
        changes["scenario.r"] = req.r
    n_train = req.n_train if req.n_train is not None else (400 if tiny() else None)
    if n_train is not None:
        changes["scenario.n_train"] = n_train
    if tiny():
        changes.update({"scenario.n_selection": 200, "scenario.n_test": 200})
    return {m: _with(row_config(req.scenario, by_label[m], req.seed), changes) for m in req.methods}


def _with(cfg: RunConfig, changes: dict) -> RunConfig:
    """``cfg`` with ``changes``, leaving out the sidebar's ``method.*`` knobs its method does not
    read: a Baseline beside MIMM-X at λ = 3 is the stored Baseline, not a new key."""
    live = METHODS[cfg.method.name].live_keys(cfg.method)
    return cfg.replace({k: v for k, v in changes.items()
                        if not k.startswith("method.") or k.removeprefix("method.") in live})


def class_mode() -> bool:
    return os.environ.get(CLASS_ENV_VAR, "").strip() not in ("", "0")


class Scheduler:
    """Server-wide: every browser session of one app server shares it. At most ``slots``
    trainings run at once (default: the cores); a run asked for while the same configuration is
    training for another session joins it (waits for its record) instead of training twice;
    the others wait in line, first come first served, and can tell their place."""

    def __init__(self, slots: int | None = None, workers: Workers | None = None):
        self.slots = slots or int(os.environ.get(SLOTS_ENV_VAR) or PARALLEL_RUNS)
        if workers is not None and workers.n < self.slots:
            raise ValueError(f"{workers.n} training processes cannot serve {self.slots} slots")
        self._cond = threading.Condition()
        self._running: dict[str, threading.Event] = {}  # key -> set when its training ends
        self._queue: list[object] = []  # tickets waiting for a slot, in order
        self.workers = workers or Workers(self.slots)  # the training processes, one per slot
        self.trained: list[str] = []  # keys trained, in order (for tests and the load bench)
        self.peak = 0  # the most trainings that ran at once

    def claim(self, key: str, stop: threading.Event,
              waiting: Callable[[int], None]) -> bool | threading.Event:
        """Wait for a slot to train ``key``: True when granted (call :meth:`release` after
        training), the event of another session's training of the same key to wait for, or
        False when ``stop`` was set while waiting. ``waiting(place)`` is told the place in line
        (1: next) while waiting."""
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            try:
                while True:
                    if key in self._running:
                        return self._running[key]
                    place = self._queue.index(ticket) + 1
                    if stop.is_set():
                        return False
                    if place == 1 and len(self._running) < self.slots:
                        self._running[key] = threading.Event()
                        self.peak = max(self.peak, len(self._running))
                        self.trained.append(key)
                        return True
                    waiting(place)
                    self._cond.wait(0.5)
            finally:
                self._queue.remove(ticket)
                self._cond.notify_all()

    def release(self, key: str) -> None:
        with self._cond:
            self._running.pop(key).set()
            self._cond.notify_all()


SCHEDULER = Scheduler()


PAGE_TURNS = threading.BoundedSemaphore(PARALLEL_RUNS)  # page scripts drawn at once, server-wide
_turn = threading.local()


@contextmanager
def page_turn():
    """Draw a page (or a fragment of one) when it is its turn: at most :data:`PAGE_TURNS` at
    once on the whole server; re-entrant, so a fragment inside a page's run passes through.
    Every session's script runs in a thread of the server, and thirty of them redrawing at once
    (a class pressing Train) hold the GIL so long between them that the server's event loop,
    which answers every browser, waits seconds for its turn. In line, a thread waits without
    the GIL; the pages take as long in all as before, and the server keeps answering."""
    if getattr(_turn, "held", False):
        yield
        return
    with PAGE_TURNS:
        _turn.held = True
        try:
            yield
        finally:
            _turn.held = False


def store() -> ResultStore:
    return ResultStore(os.environ.get(STORE_ENV_VAR) or None)


# ------------------------------------------------------------------- built scenarios

_scenarios: dict[str, Future] = {}  # scenario key -> Future of the built Scenario
_scenarios_lock = threading.Lock()
_building: dict[str, str] = {}  # scenario key -> how far its build has got, while it is built


def _scenario_key(cfg: RunConfig) -> str:
    return f"{cfg.scenario}|seed={cfg.seed}"


def scenario_for(cfg: RunConfig):
    """The scenario of ``cfg``, built once per process (the last :data:`SCENARIO_CACHE` are
    kept). Threads asking for the same one while it is being built wait for that build."""
    key = _scenario_key(cfg)
    with _scenarios_lock:
        future = _scenarios.get(key)
        owner = future is None
        if owner:
            future = _scenarios[key] = Future()
            while len(_scenarios) > SCENARIO_CACHE:
                _scenarios.pop(next(iter(_scenarios)))
    if owner:
        def note(what: str, done: int, total: int) -> None:  # shown in the job's phase
            _building[key] = f"{what}: {done:,} of {total:,}"

        try:
            with reporting(note):
                future.set_result(build_scenario(cfg))
        except Exception as err:  # noqa: BLE001 - re-raised below, in every waiting thread
            with _scenarios_lock:
                _scenarios.pop(key, None)
            future.set_exception(err)
        finally:
            _building.pop(key, None)
    return future.result()


def prebuild(req: Request) -> threading.Thread | None:
    """Start the training processes (unless in class mode), and build the scenario of ``req``
    in a daemon thread unless it is built (or being built): the page calls it on every run, so
    Train finds both ready. Bad requests are left for Train to report."""
    try:
        cfg = next(iter(configs(req).values()))
    except UserError:
        return None
    if not class_mode():
        SCHEDULER.workers.start()  # their imports take seconds: not on the first Train
    with _scenarios_lock:
        if _scenario_key(cfg) in _scenarios:
            return None

    def build():
        try:
            info_of(cfg, scenario_for(cfg))  # what Train shows first, made now
        except Exception:  # noqa: BLE001, S110 - Train shows the error
            pass

    thread = threading.Thread(target=build, name="mimmx-app-prebuild", daemon=True)
    thread.start()
    return thread


# ------------------------------------------------------------------------------ the job


class Job:
    """One request's runs, led by a daemon thread (trained in the scheduler's worker processes).
    The page reads ``snapshot()``:
    ``{"status": "running"|"done"|"stopped"|"error", "error": str|None, "phase": str,
    "live_seconds": float, "runs": {label: {"key", "cached", "history": [eval events],
    "steps": [encoder-step logs], "live": {"epoch", "method", "records"} or None (PCA at the
    latest evaluation), "live_umap": likewise (UMAP, once warm), "record": final record or
    None}}, "scenario": {"contingency": records, "cells": ...}}``.

    ``embedding``: "umap" when UMAP has warmed up (``warm_up_umap``), else "pca";
    ``umap_ready`` (optional) is asked at every evaluation instead, so UMAP is swapped in
    as soon as a warm-up running in the background finishes."""

    def __init__(self, cfgs: dict[str, RunConfig], results: ResultStore | None = None,
                 embedding: str = "pca", umap_ready: Callable[[], bool] | None = None,
                 scheduler: Scheduler | None = None):
        self.cfgs = cfgs
        self.scheduler = scheduler or SCHEDULER
        self.embedding = embedding
        self.umap_ready = umap_ready or (lambda: embedding == "umap")
        self.results = results or store()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._umap_wake = threading.Event()
        self._umap_slot = None  # (label, epoch, parts, labels): the latest features for UMAP
        self._umap_thread = None
        self._state = {"status": "running", "error": None, "phase": "starting", "started": time.time(),
                       "live_seconds": 0.0,
                       "runs": {label: {"key": c.hash(), "cached": False, "history": [], "steps": [],
                                        "live": None, "live_umap": None, "record": None,
                                        "queued": None, "joined": False}
                                for label, c in cfgs.items()},
                       "scenario": None}
        self.thread = threading.Thread(target=self._run, name="mimmx-app-train", daemon=True)

    def matches(self, req: Request) -> bool:
        """Whether this job trains what ``req`` asks for (same methods and configurations)."""
        try:
            wanted = configs(req)
        except UserError:
            return False
        return {k: c.hash() for k, c in wanted.items()} == {k: c.hash() for k, c in self.cfgs.items()}

    def start(self) -> Job:
        self.thread.start()
        return self

    def stop(self) -> None:
        """Ask the trainer to stop after its current step (the callback returns True)."""
        self._stop.set()

    def snapshot(self, keys: tuple[str, ...] | None = None) -> dict:
        """A copy of the shared state; ``keys`` keeps only these keys of every run (a cheaper
        copy for charts that need no embeddings). The scenario info is shared, not copied: it
        is written once and never changed."""
        with self._lock:
            runs = {label: {k: v for k, v in run.items() if keys is None or k in keys}
                    for label, run in self._state["runs"].items()}
            out = copy.deepcopy({**self._state, "scenario": None, "runs": runs})
            out["scenario"] = self._state["scenario"]
        building = _building.get(_scenario_key(next(iter(self.cfgs.values()))))
        if building and out["phase"] == BUILDING:
            out["phase"] = f"{BUILDING} ({building})"
        return out

    @property
    def running(self) -> bool:
        return self.thread.is_alive()

    def _update(self, fn) -> None:
        with self._lock:
            fn(self._state)

    def _run(self) -> None:
        try:
            self._train_all()
            self._update(lambda s: s.update(status="stopped" if self._stop.is_set() else "done",
                                            phase="finished"))
        except Exception as err:  # noqa: BLE001 - shown to the user as a message, not a traceback
            msg = str(err) if isinstance(err, (UserError, ValueError)) else f"{type(err).__name__}: {err}"
            self._update(lambda s: s.update(status="error", error=msg, phase="failed"))
        finally:
            self._done.set()
            self._umap_wake.set()

    def _train_all(self) -> None:
        todo = {}
        for label, cfg in self.cfgs.items():  # cached records first: they show at once
            record = self.results.get(cfg)
            if record is None:
                todo[label] = cfg
            else:
                self._update(lambda s, label=label, record=record: s["runs"][label].update(
                    cached=True, record=record, history=record["history"],
                    steps=record.get("steps") or []))
        self._update(lambda s: s.update(phase=BUILDING))
        scenario = scenario_for(next(iter(self.cfgs.values())))
        info = info_of(next(iter(self.cfgs.values())), scenario)
        self._update(lambda s: s.update(scenario=info))
        for label, cfg in self.cfgs.items():  # stored by `mimmx reproduce`: no app embeddings yet
            if label not in todo:
                record = add_app_embeddings(self.results, cfg, scenario)
                self._update(lambda s, label=label, record=record: s["runs"][label].update(record=record))
        if not todo or self._stop.is_set():
            return
        if class_mode():
            raise UserError(f"class mode: this server shows stored runs only, and "
                            f"{' and '.join(todo)} at these settings is not stored. Choose settings "
                            "the lecturer stored (`python -m mimmx warm-cache`), or ask for them.")
        self._update(lambda s: s.update(phase="training " + " and ".join(todo)))
        with ThreadPoolExecutor(min(len(todo), PARALLEL_RUNS), thread_name_prefix="mimmx-app-run") as pool:
            runs = [pool.submit(self._train_one, label, cfg) for label, cfg in todo.items()]
            for run in runs:
                try:
                    run.result()
                except BaseException:
                    self._stop.set()  # the other runs end at their next step
                    raise

    def _train_one(self, label: str, cfg: RunConfig) -> None:
        """Train ``cfg`` in a worker process once the scheduler grants a slot, or join the
        session that trains it already."""
        key = cfg.hash()

        def waiting(place: int) -> None:
            self._update(lambda s: s["runs"][label].update(queued=place))

        claim = self.scheduler.claim(key, self._stop, waiting)
        self._update(lambda s: s["runs"][label].update(queued=None))
        if claim is False:  # stopped while waiting in line
            return
        if claim is not True:  # another session trains this configuration: wait for its record
            self._update(lambda s: s["runs"][label].update(joined=True))
            while not claim.wait(0.5):
                if self._stop.is_set():
                    return
            if self.results.get(cfg) is None:  # it stopped or failed there: train it here
                return self._train_one(label, cfg)
        try:
            record = self.results.get(cfg)  # finished elsewhere while this one waited
            if record is not None:
                self._update(lambda s: s["runs"][label].update(record=record, history=record["history"]))
                return
            print(f"mimmx app: training {label} {key}\n", end="", flush=True)  # one write, one line
            task = {"cfg": cfg.to_dict(), "eval_size": APP_EVAL_SIZE,
                    "eval_options": {"app": APP_EVAL, "history_eval_size": APP_EVAL_SIZE},
                    "env": {k: v for k, v in os.environ.items() if k.startswith("MIMMX_")}}
            with self.scheduler.workers.acquire() as worker:
                end = worker.train(task, lambda msg: self._event(label, msg), self._stop)
            if end[0] == "done" and not self._stop.is_set():
                self._store(label, cfg, *end[1:])
        finally:
            if claim is True:
                self.scheduler.release(key)

    def _event(self, label: str, msg: tuple) -> None:
        """One event of a training in a worker process (see :mod:`mimmx.app.workers`)."""
        kind = msg[0]
        if kind == "step":
            self._update(lambda s: s["runs"][label]["steps"].append(msg[1]))
        elif kind == "eval":
            self._update(lambda s: s["runs"][label]["history"].append(msg[1]))
        elif kind == "live":
            self._live(label, *msg[1:])

    def _store(self, label: str, cfg: RunConfig, record: dict, checkpoint: bytes,
               parts: dict, labels: dict) -> None:
        """Store a finished run's record; its embeddings are UMAP's when UMAP is warm here."""
        if self.umap_ready():
            record["app_embeddings"] = embedding_records_of(parts, labels, "umap")
        self.results.put(record, checkpoint)
        self._update(lambda s: s["runs"][label].update(record=self.results.get(cfg) or record))

    # ---------------------------------------------------------------- live embeddings

    def _live(self, label: str, epoch: int, records: list[dict], parts: dict, labels: dict,
              seconds: float) -> None:
        """Show the worker's PCA of every feature part on the live subsample; hand the features
        to the UMAP thread when UMAP is warm."""
        live = {"epoch": epoch, "method": "PCA", "records": records}

        def put(s):
            s["runs"][label]["live"] = live
            s["live_seconds"] += seconds

        self._update(put)
        if self.umap_ready():
            with self._lock:
                self._umap_slot = (label, epoch, parts, labels)
                if self._umap_thread is None:
                    self._umap_thread = threading.Thread(target=self._umap_loop, daemon=True,
                                                         name="mimmx-app-umap")
                    self._umap_thread.start()
            self._umap_wake.set()

    def _umap_loop(self) -> None:
        """UMAP of the latest features offered, then rest (1/UMAP_DUTY − 1) times as long."""
        while True:
            self._umap_wake.wait()
            with self._lock:
                slot, self._umap_slot = self._umap_slot, None
                self._umap_wake.clear()
            if self._done.is_set():
                return
            if slot is None:
                continue
            label, epoch, parts, labels = slot
            t0 = time.perf_counter()
            frame = embeddings_frame(parts, labels, "umap", threads=1, **LIVE_UMAP)
            live = {"epoch": epoch, "method": "UMAP", "records": _records(frame, "umap")}
            self._update(lambda s, label=label, live=live: s["runs"][label].update(live_umap=live))
            if self._done.wait((time.perf_counter() - t0) * (1 / UMAP_DUTY - 1)):
                return


def live_features(model: MIMMNet, split, idx: torch.Tensor) -> tuple[dict, dict]:
    """({"f_y", "f_z1", …}: (n, d) arrays, {"y", "z1", …}: (n,) arrays) of ``split[idx]``,
    computed in eval mode (the model's mode is restored: training goes on unchanged)."""
    out = split_features(model, split.take(idx))
    names = ["y", *[f"z{i + 1}" for i in range(split.z.shape[1])]]
    return {f"f_{n}": out[f"f_{n}"].float().numpy() for n in names}, {n: out[n].numpy() for n in names}


def _records(frame, method: str) -> list[dict]:
    rows = frame.assign(method=method.upper()).to_dict(orient="records")
    return [{k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()} for row in rows]


def final_features(result, split: str = "balanced") -> tuple[dict, dict]:
    """({"f_y", "f_z1", …}, {"y", "z1", …}) of a trained run on ``split``, as numpy arrays."""
    feats = result.features(split)
    names = ["y", *[f"z{i + 1}" for i in range(len(result.scenario.factor_names))]]
    return ({f"f_{n}": feats[f"f_{n}"].float().numpy() for n in names},
            {n: feats[n].numpy() for n in names})


def embedding_records_of(parts: dict, labels: dict, method: str = "pca") -> list[dict]:
    """2-D embedding (PCA or UMAP) of every feature part (a sample of :data:`MAX_POINTS`), as
    tidy records (``part, index, dim1, dim2, y, z1, …``; ``mimmx.evaluation.embeddings_frame``)."""
    return _records(embeddings_frame(parts, labels, method, max_points=MAX_POINTS), method)


def embedding_records(result, method: str = "pca", split: str = "balanced") -> list[dict]:
    """:func:`embedding_records_of` the features of a trained run on ``split``."""
    return embedding_records_of(*final_features(result, split), method)


def add_app_embeddings(results: ResultStore, cfg: RunConfig, scenario=None,
                       method: str = "pca") -> dict | None:
    """The stored record of ``cfg``, with the app's embeddings added (and stored) if it had
    none (records written by ``mimmx reproduce`` / ``warm-cache``); None if not stored."""
    from mimmx.trainer import RunResult

    record = results.get(cfg)
    if record is None or record.get("app_embeddings") or not results.checkpoint_path(cfg).is_file():
        return record
    scenario = scenario if scenario is not None else scenario_for(cfg)
    device = get_device()
    ckpt = torch.load(results.checkpoint_path(cfg), map_location=device, weights_only=True)
    model, _ = build_model(cfg, scenario, device)
    model.load_state_dict(ckpt["model"])
    record["app_embeddings"] = embedding_records(RunResult(cfg, scenario, model, None), method)
    results.put(record)
    return record


_infos: dict[str, dict] = {}  # scenario key -> its scenario_info (a class asks for one at once)


def info_of(cfg: RunConfig, scenario) -> dict:
    """:func:`scenario_info` of ``cfg``'s scenario, made once per process and shared (never
    changed)."""
    key = _scenario_key(cfg)
    with _scenarios_lock:
        info = _infos.get(key)
    if info is None:
        info = scenario_info(scenario)
        with _scenarios_lock:
            _infos[key] = info
            while len(_infos) > SCENARIO_CACHE:
                _infos.pop(next(iter(_infos)))
    return info


def scenario_info(scenario, per_cell: int = 6) -> dict:
    """What the page shows of a scenario: its story, label names, the contingency table
    (tidy records) and, per factor, a strip of ``per_cell`` training images per (y, z) cell."""
    train = scenario.splits["train"]
    cells = {}
    for i, f in enumerate(scenario.spec.factors):
        for yv, yname in enumerate(scenario.y_names):
            for zv, zname in enumerate(scenario.z_values[i]):
                idx = ((train.y == yv) & (train.z[:, i] == zv)).nonzero().flatten()[:per_cell]
                strip = train.x[idx].cpu().numpy()  # (k, 28, 28) uint8
                cells[(f.name, yname, zname)] = (np.concatenate(list(strip), axis=1)
                                                 if len(strip) else None)
    return {"story": scenario.spec.story, "y_names": list(scenario.y_names),
            "factors": [{"name": f.name, "analogue": f.analogue, "values": list(v)}
                        for f, v in zip(scenario.spec.factors, scenario.z_values)],
            "contingency": scenario.contingency().to_dict(orient="records"), "cells": cells}
