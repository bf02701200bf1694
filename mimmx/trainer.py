"""One trainer for every method: the loop.

Data stay on the device as uint8 tensors and batches are index gathers (no DataLoader, no
per-sample Python). Each method owns its steps (``Method.setup / epoch_order / update /
finish``, see :mod:`mimmx.methods.base`); the trainer runs the epochs, evaluates, keeps the
model and reports. Model selection uses the confounded ``selection`` split only
(``train.select``: its y accuracy, or its cell-balanced y accuracy); the test sets are measured
at every evaluation but never chosen on. A method's stage after training (DFR's refit) runs on
the kept model, and its evaluation becomes the run's ``best``.

Progress leaves through callbacks: ``callback(event: dict)`` with ``event["type"]`` in
``start | step | eval | end``; a callback returning True stops training after that event. The
``start`` event carries the live ``model`` (for callbacks that embed features as it trains).
"""

from __future__ import annotations

import copy
import dataclasses
import math
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mimmx.config import RunConfig
from mimmx.device import configure_threads, get_device
from mimmx.errors import ConfigError, DivergedError, RunWarning
from mimmx.methods import METHODS, Dims, Method, build_method
from mimmx.methods.base import batches_of
from mimmx.models.network import MIMMNet
from mimmx.scenarios import TEST_SETS, Scenario, ScenarioSpec, get_spec
from mimmx.scenarios.cache import cached_build

Callback = Callable[[dict], "bool | None"]
_INIT_LOCK = threading.Lock()
EVAL_SPLITS = ("selection", *TEST_SETS)
# images per forward pass when evaluating: 256 runs at ~4,600 images/s on one CPU thread where
# 2,000 ran at ~2,000 (the activations of a big batch fall out of cache; bench/bench_train.py)
EVAL_BATCH = 256


def build_scenario(cfg: RunConfig, spec: ScenarioSpec | None = None) -> Scenario:
    """The scenario of a config; ``scenario.r`` replaces every factor's correlation strength,
    ``scenario.y_noise`` the spec's label noise. ``spec``: build this variant of the named
    scenario instead (e.g. other factors, as ``bench/study.py`` does)."""
    s = cfg.scenario
    spec = spec or get_spec(s.name)
    overrides = {k: getattr(s, k) for k in ("n_train", "n_selection", "n_test", "y_noise")
                 if getattr(s, k) is not None}
    overrides["confounded"] = s.confounded
    if METHODS.get(cfg.method.name, Method).holdout:  # DFR refits on cell-balanced held-out images
        overrides["n_holdout"] = overrides.get("n_selection", spec.n_selection)
    if s.r is not None:
        if any(f.r is None for f in spec.factors):
            raise ConfigError(f"scenario.r: scenario {s.name!r} gives its factors as tables, not r; "
                              "remove scenario.r")
        overrides["factors"] = tuple(dataclasses.replace(f, r=s.r) for f in spec.factors)
    return cached_build(dataclasses.replace(spec, **overrides), cfg.seed)


@dataclass
class RunResult:
    config: RunConfig
    scenario: Scenario
    model: MIMMNet
    method: Method
    history: list[dict] = field(default_factory=list)  # the eval events
    best: dict | None = None  # the eval event chosen on the selection split
    run_dir: Path | None = None
    wall_time: float = 0.0
    images_per_second: float = 0.0

    @torch.no_grad()
    def features(self, split: str, batch_size: int = EVAL_BATCH) -> dict[str, torch.Tensor]:
        """Frozen features and labels of a split: {"f_y", "f_z1", ..., "y", "z1", ..., "pred_y", ...}."""
        return split_features(self.model, self.scenario.splits[split], batch_size)


@torch.no_grad()
def split_features(model: MIMMNet, split, batch_size: int = EVAL_BATCH) -> dict[str, torch.Tensor]:
    """Every feature part, every head's prediction, the y head's logits and every label of
    ``split``, on the CPU (``{"f_y", "f_z1", …, "pred_y", …, "logits_y", "y", "z1", …}``), computed in eval mode in batches of
    ``batch_size``; the model's mode is restored afterwards (training can go on)."""
    was_training = model.training
    model.eval()
    try:
        return _forward(model, split, batch_size)
    finally:
        model.train(was_training)


def _forward(model: MIMMNet, split, batch_size: int) -> dict[str, torch.Tensor]:
    device = next(model.parameters()).device
    parts, preds, y_logits = None, None, []
    for start in range(0, len(split), batch_size):
        x = batches_of(split.x[start:start + batch_size].to(device))
        p, logits = model(x)
        p, pr = [t.cpu() for t in p], [lg.argmax(1).cpu() for lg in logits]
        y_logits.append(logits[0].float().cpu())
        parts = [[t] for t in p] if parts is None else [a + [t] for a, t in zip(parts, p)]
        preds = [[t] for t in pr] if preds is None else [a + [t] for a, t in zip(preds, pr)]
    names = ["y", *[f"z{i + 1}" for i in range(split.z.shape[1])]]
    out = {}
    for k, n in enumerate(names):
        out[f"f_{n}"] = torch.cat(parts[k])
        out[f"pred_{n}"] = torch.cat(preds[k])
    out["logits_y"] = torch.cat(y_logits)
    out["y"] = split.y.cpu()
    for i in range(split.z.shape[1]):
        out[f"z{i + 1}"] = split.z[:, i].cpu()
    return out


def kept_evaluation(history: Sequence[dict], select: str) -> dict:
    """The eval event a run keeps under ``select`` (:data:`SELECT`): the best
    ``ev["select"][select]``, the latest among equals, exactly as :func:`train` keeps it, so
    that the other rule's model can be read off a finished run's history. A run with a stage
    after training (DFR) kept the model of its ``posthoc`` event (what the stage would have made
    of the other rule's epoch is not in the history)."""
    posthoc = [ev for ev in history if ev.get("posthoc")]
    if posthoc:
        return posthoc[-1]
    evals = [ev for ev in history if ev.get("select")]
    return max(reversed(evals), key=lambda ev: ev["select"][select])


def cell_accuracies(pred: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """y accuracy (%) in every cell c = (y, z_1..z_N) present, (n_cells,)."""
    _, cell = torch.unique(torch.cat([y[:, None], z], 1), dim=0, return_inverse=True)
    right = torch.zeros(int(cell.max()) + 1).index_add_(0, cell, (pred == y).float())
    return 100.0 * right / torch.bincount(cell)


def cell_balanced_accuracy(pred: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> float:
    """y accuracy (%) with every cell c = (y, z_1..z_N) present weighing the same:
    (1/|C|) Σ_c acc_c. On a confounded split a shortcut is right on the large cells and wrong on
    the small ones, so it scores well on plain accuracy but not here."""
    return float(cell_accuracies(pred, y, z).mean())


def worst_group_accuracy(pred: torch.Tensor, y: torch.Tensor, z: torch.Tensor) -> float:
    """min_c acc_c (%): the lowest y accuracy over the cells (groups) c = (y, z_1..z_N) present,
    the subpopulation-shift field's headline metric (on the Balanced set every cell is there)."""
    return float(cell_accuracies(pred, y, z).min())


def evaluate(model: MIMMNet, method: Method, scenario: Scenario, splits=EVAL_SPLITS) -> dict:
    """Accuracy (%) of every head on every split, the worst-group y accuracy of every split
    (``worst``); on the selection split (when evaluated) the scores a model can be kept by
    (``select``: :data:`SELECT`) and the method's dependence estimate (when it has one)."""
    acc, worst, estimate, select = {}, {}, None, None
    for s in splits:
        out = split_features(model, scenario.splits[s])
        names = ["y", *[f"z{i + 1}" for i in range(len(scenario.spec.factors))]]
        acc[s] = {n: 100.0 * float((out[f"pred_{n}"] == out[n]).float().mean()) for n in names}
        z = torch.stack([out[n] for n in names[1:]], 1)
        worst[s] = worst_group_accuracy(out["pred_y"], out["y"], z)
        if s == "selection":
            select = {"y": acc[s]["y"], "y_cell_balanced": cell_balanced_accuracy(out["pred_y"], out["y"], z)}
        if s == "selection" and hasattr(method, "estimate"):
            device = next(model.parameters()).device
            parts = [out[f"f_{n}"][:1000].to(device) for n in names]
            z = scenario.splits[s].z[:1000].to(device)
            y = scenario.splits[s].y[:1000].to(device)
            try:
                method.eval()
                estimate = method.estimate(parts, z, y)
            finally:
                method.train()
    return {"acc": acc, "worst": worst, "estimate": estimate, "select": select}


def eval_subsets(scenario: Scenario, size: int | None, seed: int) -> Scenario:
    """``scenario`` with each test set cut to a seeded random ``size`` images (None: unchanged);
    the selection split stays whole, so model selection does not change."""
    if size is None:
        return scenario
    if size < 1:
        raise ConfigError(f"eval_size must be ≥ 1 image per test set (or None for all), got {size}")
    gen = torch.Generator().manual_seed(seed)
    splits = dict(scenario.splits)
    for name in TEST_SETS:
        s = splits[name]
        if len(s) > size:
            keep = torch.randperm(len(s), generator=gen)[:size].sort().values
            splits[name] = s.take(keep)
    return dataclasses.replace(scenario, splits=splits)


KNOBS = "lower train.lr or method.lam (a run that diverges is not stored or scored)"


def check_finite(model: MIMMNet, method: Method, epoch: int) -> None:
    """Stop (:class:`~mimmx.errors.DivergedError`) when a weight or a running statistic of the
    network or the method is no longer finite: a loss can stay finite while BatchNorm's
    running variance or a weight overflows, and such a model only predicts one class."""
    for owner, module in (("network", model), ("method", method)):
        for name, t in (*module.named_parameters(), *module.named_buffers()):
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):
                raise DivergedError(f"training diverged: the {owner}'s {name} became non-finite by "
                                    f"epoch {epoch}; {KNOBS}")


def warn_if_at_chance(result: RunResult) -> None:
    """Warn when the kept model's y accuracy on the selection split is at chance (within
    2 points of the majority class's share): the run trained, but learnt nothing of y."""
    y = result.scenario.splits["selection"].y
    majority = 100.0 * float(torch.bincount(y).max()) / len(y)
    acc = result.best["acc"]["selection"]["y"]
    if acc <= majority + 2.0:
        warnings.warn(f"the kept model is at chance: y accuracy {acc:.1f} % on the selection "
                      f"split, where always answering the majority class gives {majority:.1f} %. "
                      "It learnt nothing of y; try fewer constraints (a smaller method.lam), a "
                      "smaller train.lr or more train.epochs", RunWarning, stacklevel=3)


def build_model(cfg: RunConfig, scenario: Scenario, device) -> tuple[MIMMNet, Method]:
    """The untrained network and method of ``cfg`` (a checkpoint's state dicts fit these)."""
    n_factors = len(scenario.spec.factors)
    dims = Dims(cfg.model.f_y_dim, (cfg.model.f_z_dim,) * n_factors, scenario.n_y, tuple(scenario.n_z),
                tuple(scenario.factor_names))
    model = MIMMNet.from_config(cfg.model, [dims.n_y, *dims.n_z]).to(device)
    if cfg.train.channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model, build_method(cfg.method, dims, cfg.train.epochs).to(device)


def _prepare(cfg: RunConfig, scenario: Scenario) -> tuple[MIMMNet, Method, torch.device, int]:
    """The seeded network and method, set up on the training split; the steps per epoch."""
    device = get_device(cfg.train.device)
    configure_threads()
    with _INIT_LOCK:  # the initial weights come from torch's global RNG: one run at a time
        torch.manual_seed(cfg.seed)
        model, method = build_model(cfg, scenario, device)
    method.seed(cfg.seed)
    train_split = scenario.splits["train"].to(device)
    n, batch = len(train_split), cfg.train.batch_size
    size = tuple(train_split.x.shape[-2:])
    if not 0 <= cfg.train.shift < min(size) // 2:
        raise ConfigError(f"train.shift must be an integer from 0 to {min(size) // 2 - 1} "
                          f"(pixels, for {size} images), got {cfg.train.shift}")
    if not 0 <= cfg.train.rotate <= 180:
        raise ConfigError(f"train.rotate must be a number of degrees from 0 to 180, got {cfg.train.rotate}")
    if not 0 <= cfg.train.elastic <= min(size) / 4:
        raise ConfigError(f"train.elastic must be an RMS displacement from 0 to {min(size) / 4:g} pixels "
                          f"(for {size} images), got {cfg.train.elastic}")
    method.setup(model, train_split, cfg.train, torch.Generator(device="cpu").manual_seed(cfg.seed))
    if method.n_fit < batch:
        which = "training images" if method.n_fit == n else "images the losses train on"
        raise ConfigError(f"train.batch_size = {batch} exceeds the {method.n_fit} {which}")
    return model, method, device, method.n_fit // batch


def train(cfg: RunConfig, scenario: Scenario | None = None, callbacks: Iterable[Callback] = (),
          eval_size: int | None = None) -> RunResult:
    """Train ``cfg`` (building its scenario unless given); :func:`mimmx.runs.write_run` saves
    the result as a run folder. ``eval_size``: measure the test sets during training on that
    many images each (a seeded subsample, for a live view); the selection split, hence the
    chosen model, is unchanged."""
    t0 = time.perf_counter()
    callbacks = list(callbacks)
    scenario = scenario or build_scenario(cfg)
    model, method, device, steps_per_epoch = _prepare(cfg, scenario)
    tr = cfg.train

    result = RunResult(cfg, scenario, model, method)
    best_state = None
    eval_scenario = eval_subsets(scenario, eval_size, cfg.seed)

    def emit(event: dict) -> bool:
        return any(bool(cb(event)) for cb in callbacks)

    stop = emit({"type": "start", "model": model, "config": cfg.to_dict(), "method": method.settings(),
                 "sizes": {k: len(v) for k, v in scenario.splits.items()}, "device": str(device)})
    step, seen = 0, 0
    t_train = time.perf_counter()
    for epoch in range(tr.epochs):
        if stop:
            break
        order = method.epoch_order()
        for b in range(steps_per_epoch):
            batch = order[b * tr.batch_size:(b + 1) * tr.batch_size]
            progress = epoch + b / steps_per_epoch
            for logs in method.update(batch, progress):
                kind = logs.pop("kind")
                if not math.isfinite(logs.get("loss", logs.get("estimator_loss", 0.0))):
                    raise DivergedError(f"training diverged: the {kind} loss became non-finite at "
                                        f"epoch {progress:.2f} (step {step + 1}); {KNOBS}")
                step += 1
                seen += tr.batch_size
                if emit({"type": "step", "step": step, "epoch": progress, "kind": kind, **logs}):
                    stop = True
                    break
            if stop:
                break
        check_finite(model, method, epoch + 1)
        last = epoch == tr.epochs - 1 or stop
        if (epoch + 1) % tr.eval_every == 0 or last:
            ev = {"type": "eval", "epoch": epoch + 1, "step": step, **evaluate(model, method, eval_scenario),
                  "images_per_second": seen / (time.perf_counter() - t_train)}
            if method.has_estimator:  # keep the estimator's BN statistics from drifting with eval
                method.train()
            result.history.append(ev)
            if result.best is None or ev["select"][tr.select] >= result.best["select"][tr.select]:
                result.best = ev
                best_state = copy.deepcopy(model.state_dict())
            if emit(ev):
                stop = True
    result.images_per_second = seen / max(time.perf_counter() - t_train, 1e-9)
    if best_state is not None:
        model.load_state_dict(best_state)
    if method.finish(model, scenario):  # a stage after training (DFR): the kept model changed
        ev = {"type": "eval", "epoch": result.best["epoch"], "step": step, "posthoc": method.name,
              **evaluate(model, method, eval_scenario)}
        result.history.append(ev)
        result.best = ev
        emit(ev)
    result.wall_time = time.perf_counter() - t0
    warn_if_at_chance(result)
    emit({"type": "end", "best": result.best, "wall_time": result.wall_time,
          "images_per_second": result.images_per_second, "stopped": stop})
    return result
