"""Background training for the app: build the configs of a request, run them one after
another in a daemon thread, and share their progress with the page through a lock-guarded
plain dict (``Job.snapshot()``). Finished configurations go to the results store
(:class:`mimmx.results.ResultStore`, keyed by ``RunConfig.hash()``) and are shown at once
the next time.
"""

from __future__ import annotations

import copy
import io
import os
import threading
import time
from dataclasses import dataclass

import numpy as np

# the modules the training thread needs are imported here, in the page's thread: modules
# first imported by two threads at once can trip CPython's compiler ("AST constructor
# recursion depth mismatch", seen once under AppTest)
import sklearn.decomposition  # noqa: F401 - PCA, imported lazily by mimmx.evaluation.embeddings
import threadpoolctl  # noqa: F401 - likewise
import torch

import mimmx.morpho  # noqa: F401 - the scenarios' morphometric factors load it lazily
from mimmx.config import RunConfig
from mimmx.errors import UserError
from mimmx.evaluation import embeddings_frame, evaluate_result
from mimmx.experiments import EXPERIMENTS, row_config, rows
from mimmx.results import FORMAT, ResultStore
from mimmx.runinfo import environment
from mimmx.scenarios import get_spec
from mimmx.trainer import build_scenario, train

TINY_ENV_VAR = "MIMMX_APP_TINY"  # "1": ~400 training images, 2 epochs (tests, quick demos)
STORE_ENV_VAR = "MIMMX_APP_RESULTS"  # results store folder (default: mimmx's own)
APP_EVAL = {"probes": ["logreg"], "mi": False, "embedding": "pca"}  # the app's quick evaluation
MAX_POINTS = 600  # embedding points kept per run


def tiny() -> bool:
    return os.environ.get(TINY_ENV_VAR, "").strip() not in ("", "0")


@dataclass
class Request:
    """What the user asked for on the page."""

    scenario: str = "exp1"
    methods: tuple[str, ...] = ("Baseline", "MIMM-X + DLS + CAW")  # row labels (mimmx.experiments)
    r: float | None = None  # None: the scenario's own
    lam: float = 1.5
    alpha_y: float = 0.3
    alpha_z: float = 0.8
    beta_y: float = 0.01
    n_b: int = 6
    epochs: int = 10
    n_train: int | None = None  # None: the scenario's default (tiny mode: 400)
    seed: int = 0


def default_request(scenario: str = "exp1") -> Request:
    """The poster's settings of an experiment, with the app's short default training."""
    m = EXPERIMENTS[scenario][0]["method"]
    labels = [r.label for r in rows(scenario)]
    methods = ("Baseline", labels[-1]) if labels[-1] != "Baseline" else ("Baseline",)
    defaults = RunConfig().method
    return Request(scenario, methods, None, m.get("lam", defaults.lam),
                   m.get("alpha_y", defaults.alpha_y), m.get("alpha_z", defaults.alpha_z),
                   m.get("beta_y", defaults.beta_y), m.get("n_b", defaults.n_b),
                   2 if tiny() else 10)


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
    if req.r is not None and not 0.0 <= req.r <= 1.0:
        raise UserError(f"r = {req.r} is not a probability; choose 0 ≤ r ≤ 1")
    sets = [f"method.lam={req.lam}", f"method.alpha_y={req.alpha_y}",
            f"method.alpha_z={req.alpha_z}", f"method.beta_y={req.beta_y}",
            f"method.n_b={req.n_b}", f"train.epochs={req.epochs}", "train.eval_every=1"]
    if req.r is not None:
        sets.append(f"scenario.r={req.r}")
    n_train = req.n_train if req.n_train is not None else (400 if tiny() else None)
    if n_train is not None:
        sets.append(f"scenario.n_train={n_train}")
    if tiny():
        sets += ["scenario.n_selection=200", "scenario.n_test=200"]
    return {m: row_config(req.scenario, by_label[m], req.seed).override(sets) for m in req.methods}


def store() -> ResultStore:
    return ResultStore(os.environ.get(STORE_ENV_VAR) or None)


# ------------------------------------------------------------------------------ the job


class Job:
    """One request's runs, trained in a daemon thread. The page reads ``snapshot()``:
    ``{"status": "running"|"done"|"stopped"|"error", "error": str|None, "phase": str,
    "runs": {label: {"key", "cached", "history": [eval events], "steps": [encoder-step logs],
    "record": final record or None}}, "scenario": {"contingency": records, "cells": ...}}``."""

    def __init__(self, cfgs: dict[str, RunConfig], results: ResultStore | None = None,
                 embedding: str = "pca"):
        self.cfgs = cfgs
        self.embedding = embedding  # "pca" | "umap" (warm UMAP up first: warm_up_umap)
        self.results = results or store()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._state = {"status": "running", "error": None, "phase": "starting", "started": time.time(),
                       "runs": {label: {"key": c.hash(), "cached": False, "history": [], "steps": [],
                                        "record": None} for label, c in cfgs.items()},
                       "scenario": None}
        self.thread = threading.Thread(target=self._run, name="mimmx-app-train", daemon=True)

    def start(self) -> Job:
        self.thread.start()
        return self

    def stop(self) -> None:
        """Ask the trainer to stop after its current step (the callback returns True)."""
        self._stop.set()

    def snapshot(self) -> dict:
        with self._lock:
            return copy.deepcopy(self._state)

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

    def _train_all(self) -> None:
        todo = {}
        for label, cfg in self.cfgs.items():  # cached records first: they show at once
            record = self.results.get(cfg)
            if record is None:
                todo[label] = cfg
            else:
                self._update(lambda s, label=label, record=record: s["runs"][label].update(
                    cached=True, record=record, history=record["history"]))
        self._update(lambda s: s.update(phase="building the scenario"))
        first = next(iter(self.cfgs.values()))
        scenario = build_scenario(first)
        info = scenario_info(scenario)
        self._update(lambda s: s.update(scenario=info))
        for label, cfg in todo.items():
            if self._stop.is_set():
                break
            self._update(lambda s, label=label: s.update(phase=f"training {label}"))
            same = cfg.scenario == first.scenario and cfg.seed == first.seed
            self._train_one(label, cfg, scenario if same else None)

    def _train_one(self, label: str, cfg: RunConfig, scenario) -> None:
        def callback(event: dict) -> bool:
            kind = event["type"]
            if kind == "eval":
                ev = {k: v for k, v in event.items() if k != "type"}
                self._update(lambda s: s["runs"][label]["history"].append(ev))
            elif kind == "step" and event.get("kind") == "encoder":
                ev = {k: v for k, v in event.items() if isinstance(v, (int, float))}
                self._update(lambda s: s["runs"][label]["steps"].append(ev))
            return self._stop.is_set()

        result = train(cfg, scenario, [callback])
        if self._stop.is_set():  # a stopped run is incomplete: shown, not stored
            return
        self._update(lambda s: s.update(phase=f"evaluating {label}"))
        t0 = time.perf_counter()
        report = evaluate_result(result, probes=("logreg",), mi=False, embedding=None)
        emb = embedding_records(result, self.embedding)
        device = next(result.model.parameters()).device
        record = {
            "format": FORMAT, "key": cfg.hash(), "config": cfg.to_dict(),
            "method": result.method.settings(), "best": result.best, "history": result.history,
            "report": report.to_dict(), "eval_options": {"app": APP_EVAL},
            "wall_time": {"train": result.wall_time, "evaluate": time.perf_counter() - t0},
            "images_per_second": result.images_per_second,
            "environment": environment(device, cfg.seed), "app_embeddings": emb,
        }
        buf = io.BytesIO()
        torch.save({"config": cfg.to_dict(), "model": result.model.state_dict(),
                    "method": result.method.state_dict()}, buf)
        self.results.put(record, buf.getvalue())
        self._update(lambda s: s["runs"][label].update(record=self.results.get(cfg) or record))


def embedding_records(result, method: str = "pca", split: str = "balanced") -> list[dict]:
    """2-D embedding (PCA or UMAP) of every feature part on (a sample of) the Balanced set, as
    tidy records (``part, index, dim1, dim2, y, z1, …``; ``mimmx.evaluation.embeddings_frame``)."""
    feats = result.features(split)
    labels = ["y", *[f"z{i + 1}" for i in range(len(result.scenario.factor_names))]]
    frame = embeddings_frame({f"f_{n}": feats[f"f_{n}"] for n in labels},
                             {n: feats[n] for n in labels}, method, max_points=MAX_POINTS)
    records = frame.assign(method=method.upper()).to_dict(orient="records")
    return [{k: (v.item() if isinstance(v, np.generic) else v) for k, v in row.items()}
            for row in records]


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
