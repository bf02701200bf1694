"""Built scenarios on disk.

:func:`~mimmx.scenarios.builder.build` is deterministic in (spec, seed) and the dataset, so a
built scenario is written once under ``cache_dir("scenarios")`` and loaded afterwards (well under
a second, where exp1's fractures take 15-30 s to draw on two cores). The file name hashes the
spec, the seed, the dataset and the source code that draws the images (``mimmx/scenarios``,
``mimmx/morpho``, ``mimmx/data``): change any of them and the scenario is built anew (and the
files the old code drew for that scenario are removed). Files are
plain tensors (``torch.load(weights_only=True)``), written atomically; a file that cannot be read
is rebuilt, never trusted. The warnings a build gave (a factor without minority cells, a test set
too small for its cells) are kept with the file and given again on every load.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch

from mimmx.errors import RunWarning
from mimmx.scenarios.builder import Scenario, ScenarioSpec, SplitData, build

FORMAT = 2
ENV_OFF = "MIMMX_SCENARIO_CACHE"  # "0": always build


@functools.cache
def _code_fingerprint() -> str:
    """sha256 of the source files that decide what a scenario's images are."""
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for package in ("scenarios", "morpho", "data"):
        for path in sorted((root / package).glob("*.py")):
            h.update(path.name.encode() + path.read_bytes())
    return h.hexdigest()


def cache_key(spec: ScenarioSpec, seed: int) -> str:
    blob = json.dumps({"format": FORMAT, "spec": dataclasses.asdict(spec), "seed": seed,
                       "code": _code_fingerprint()}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def cached_build(spec: ScenarioSpec, seed: int = 0, folder: Path | None = None) -> Scenario:
    """``build(spec, seed)``, read from the cache when it was built before (written if not)."""
    if os.environ.get(ENV_OFF) == "0":
        return build(spec, seed)
    if folder is None:
        from mimmx.data import cache_dir

        folder = cache_dir("scenarios")
    code = _code_fingerprint()[:8]
    path = Path(folder) / f"{spec.name}-{code}-{cache_key(spec, seed)}.pt"
    if path.is_file():
        try:
            scenario, said = _load(path, spec, seed)
        except Exception:  # a truncated or foreign file: rebuild it
            path.unlink(missing_ok=True)
        else:
            for message in said:  # what building it warned about (e.g. empty cells) still holds
                warnings.warn(message, RunWarning, stacklevel=3)
            return scenario
    with warnings.catch_warnings(record=True) as caught:  # kept with the file, said on every load
        warnings.simplefilter("always")
        scenario = build(spec, seed)
    said = [str(w.message) for w in caught if issubclass(w.category, RunWarning)]
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    for other in Path(folder).glob(f"{spec.name}-*.pt"):  # this scenario drawn by older code
        name, drawn_by, _ = other.stem.rsplit("-", 2) if other.stem.count("-") >= 2 else ("", "", "")
        if name == spec.name and drawn_by != code:
            other.unlink(missing_ok=True)
    _save(scenario, said, path)
    return scenario


def _save(sc: Scenario, said: list[str], path: Path) -> None:
    blob = {"format": FORMAT, "warnings": said, "n_y": sc.n_y, "z_values": [list(v) for v in sc.z_values],
            "cond": [torch.from_numpy(np.asarray(c, dtype=np.float64)) for c in sc.cond],
            "p_y": torch.from_numpy(np.asarray(sc.p_y, dtype=np.float64)),
            "thresholds": dict(sc.thresholds),
            "splits": {name: {"x": s.x, "y": s.y, "z": s.z, "index": s.index, "source": s.source}
                       for name, s in sc.splits.items()}}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(blob, tmp)
        os.replace(tmp, path)
    except OSError:  # a read-only or full cache: the scenario is still returned
        tmp.unlink(missing_ok=True)


def _load(path: Path, spec: ScenarioSpec, seed: int) -> tuple[Scenario, list[str]]:
    blob = torch.load(path, weights_only=True)
    if blob.get("format") != FORMAT:
        raise ValueError(f"{path}: format {blob.get('format')}")
    splits = {name: SplitData(s["x"], s["y"], s["z"], s["index"], s["source"])
              for name, s in blob["splits"].items()}
    return Scenario(spec, seed, splits, blob["n_y"], [tuple(v) for v in blob["z_values"]],
                    [c.numpy() for c in blob["cond"]], blob["p_y"].numpy(), blob["thresholds"]), \
        list(blob["warnings"])
