"""A trained run on disk: its checkpoint, its record, and the run folder, one writer and one
reader each.

- :func:`checkpoint` / :func:`checkpoint_bytes`: ``{"config", "model", "method"}`` (the
  config as a dict, the two state dicts), what :func:`load_run` rebuilds a run from.
- :func:`make_record`: the JSON record of a trained and evaluated run (config, key, the model
  kept on the selection split, the history, the report, wall times, environment), as the
  results store keeps it.
- :func:`write_run` / :func:`load_run`: the run folder of ``mimmx train``::

      config.yaml  metrics.jsonl (one eval event per line)  summary.json
      environment.json  checkpoint.pt

  Every file is written atomically (a temporary file, then a rename), the checkpoint first and
  ``summary.json`` last, so a folder with a summary is complete and a killed write leaves no
  half file behind.
"""

from __future__ import annotations

import io
import json
import os
import uuid
from pathlib import Path

import numpy as np
import torch

from mimmx.config import RunConfig
from mimmx.errors import UserError
from mimmx.runs.info import environment

FORMAT = 1  # record layout version
RUN_FILES = ("config.yaml", "metrics.jsonl", "environment.json", "checkpoint.pt", "summary.json")


def atomic_write(path: str | Path, data: bytes | str) -> None:
    """Write ``data`` to ``path`` so that readers see the old file or the whole new one, never
    a part: write a hidden temporary file beside it, flush it to disk, rename it over."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data.encode() if isinstance(data, str) else data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def json_default(x):
    """JSON for numpy and torch scalars and arrays."""
    if hasattr(x, "item") and getattr(x, "ndim", 0) == 0:
        return x.item()
    if hasattr(x, "tolist"):
        return x.tolist()
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")


def to_json(obj, indent: int | None = 1) -> str:
    return json.dumps(obj, indent=indent, default=json_default)


# ------------------------------------------------------------------------ checkpoint, record


def checkpoint(result) -> dict:
    """The checkpoint of a :class:`~mimmx.trainer.RunResult`: config dict and state dicts."""
    return {"config": result.config.to_dict(), "model": result.model.state_dict(),
            "method": result.method.state_dict()}


def checkpoint_bytes(result) -> bytes:
    buf = io.BytesIO()
    torch.save(checkpoint(result), buf)
    return buf.getvalue()


STEP_POINTS = 400  # encoder-step logs a record keeps (the means of runs of consecutive steps)


def step_means(steps: list[dict], points: int = STEP_POINTS) -> list[dict]:
    """At most ``points`` entries from encoder-step logs (numbers only): the means of runs of
    consecutive steps, so that a stored run can still draw its loss and γ curves."""
    if len(steps) <= points:
        return [dict(s) for s in steps]
    keys = sorted({k for s in steps for k in s})
    out = []
    for b in range(points):
        chunk = steps[b * len(steps) // points:(b + 1) * len(steps) // points]
        out.append({k: float(np.mean([s[k] for s in chunk if k in s])) for k in keys
                    if any(k in s for s in chunk)})
    return out


def make_record(result, report: dict | None, eval_options: dict | None, t_eval: float,
                **extra) -> dict:
    """The store's record of a trained run (JSON-ready): ``report`` is
    ``Report.to_dict()`` (None for a run kept without one, as the app's live runs), ``extra``
    adds fields (e.g. the app's embeddings, ``steps``: :func:`step_means` of the encoder steps)."""
    cfg = result.config
    device = next(result.model.parameters()).device
    record = {
        "format": FORMAT,
        "key": cfg.hash(),
        "config": cfg.to_dict(),
        "method": result.method.settings(),
        "best": result.best,  # the eval event chosen on the confounded selection split
        "history": result.history,
        "report": report,
        "eval_options": eval_options,
        "wall_time": {"train": result.wall_time, "evaluate": t_eval,
                      "total": result.wall_time + t_eval},
        "images_per_second": result.images_per_second,
        "environment": environment(device, cfg.seed),
        **extra,
    }
    return json.loads(to_json(record, indent=None))


# ------------------------------------------------------------------------------ run folder


def write_run(result, run_dir: str | Path) -> Path:
    """Write the run folder of ``result`` (see the module docstring), set ``result.run_dir``
    and return it."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise UserError(f"{run_dir} is a file, not a folder; choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = result.config
    device = next(result.model.parameters()).device
    atomic_write(run_dir / "checkpoint.pt", checkpoint_bytes(result))
    atomic_write(run_dir / "config.yaml", cfg.to_yaml())
    atomic_write(run_dir / "metrics.jsonl", "".join(to_json(ev, None) + "\n" for ev in result.history))
    atomic_write(run_dir / "environment.json", to_json(environment(device, cfg.seed)))
    atomic_write(run_dir / "summary.json", to_json({
        "best": result.best, "wall_time": result.wall_time,
        "images_per_second": result.images_per_second, "method": result.method.settings(),
        "config_hash": cfg.hash()}))
    result.run_dir = run_dir
    return run_dir


def read_metrics(path: str | Path) -> list[dict]:
    """The eval events of a ``metrics.jsonl``; a line that is not JSON (a truncated file) is an
    error naming the file and the line."""
    path = Path(path)
    events = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise UserError(f"{path}, line {n}, is not valid JSON ({err.msg}): the file is "
                            "truncated or was edited; train the run again") from None
    return events


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise UserError(f"{path} is not valid JSON ({err.msg} at line {err.lineno}): the file is "
                        "truncated or was edited; train the run again") from None


def load_run(path: str | Path, device: str | torch.device | None = None):
    """Rebuild a trained run (:class:`~mimmx.trainer.RunResult`) from a run folder
    (``checkpoint.pt``, and ``metrics.jsonl`` / ``summary.json`` when present) or from a
    checkpoint file alone.

    The scenario is rebuilt from the config (deterministic given the seed), the model and
    method from the checkpoint's weights. ``device`` defaults to
    :func:`mimmx.device.get_device`, not the config's, so a GPU run opens on a CPU machine."""
    from mimmx.device import get_device
    from mimmx.trainer import RunResult, build_model, build_scenario

    path = Path(path)
    if not path.exists():
        raise UserError(f"{path} does not exist; give a run folder written by "
                        "`python -m mimmx train CONFIG.yaml` (or its checkpoint.pt)")
    ckpt_path = path / "checkpoint.pt" if path.is_dir() else path
    if not ckpt_path.is_file():
        raise UserError(f"{path} is not a run folder (no checkpoint.pt in it); train one with "
                        "`python -m mimmx train CONFIG.yaml`")
    if ckpt_path.suffix != ".pt":
        raise UserError(f"{path} is not a run folder or a checkpoint (.pt); give the folder "
                        "written by `python -m mimmx train`")
    dev = get_device(device)
    try:
        ckpt = torch.load(ckpt_path, map_location=dev, weights_only=True)
        cfg = RunConfig.from_dict(ckpt["config"])
    except (RuntimeError, EOFError, KeyError, TypeError) as err:
        raise UserError(f"{ckpt_path} is not a readable mimmx checkpoint ({type(err).__name__}: "
                        f"{str(err)[:120]}); it may be truncated: train the run again") from None
    scenario = build_scenario(cfg)
    model, method = build_model(cfg, scenario, dev)
    model.load_state_dict(ckpt["model"])
    method.load_state_dict(ckpt["method"])
    result = RunResult(cfg, scenario, model, method, run_dir=path if path.is_dir() else None)
    if path.is_dir() and (path / "metrics.jsonl").is_file():
        result.history = read_metrics(path / "metrics.jsonl")
    if path.is_dir() and (path / "summary.json").is_file():
        summary = _read_json(path / "summary.json")
        result.best = summary.get("best")
        result.wall_time = summary.get("wall_time", 0.0)
        result.images_per_second = summary.get("images_per_second", 0.0)
    return result
