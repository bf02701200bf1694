"""The morpho table: metrics of all 70,000 MNIST digits and of their thin and thick versions.

Built once (a few minutes on two cores, with a progress bar) into
``mimmx.data.cache_dir("morpho")`` as one ``.npz`` file whose name holds
:data:`ALGORITHM_VERSION` and a hash of the parameters and the data source: changing either
builds a new file, and an existing file is simply loaded (well under 2 s).

>>> table = load_table()
>>> table.images("train", "thin")      # uint8 tensor (60000, 28, 28)
>>> table.metrics("test", "thick")     # DataFrame (10000, 6): area, length, thickness, ...
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import multiprocessing
import os
import sys
import time
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mimmx.morpho import morphology
from mimmx.morpho.metrics import METRICS, metrics_of
from mimmx.morpho.morphology import MorphoInputError, Morphology, as_images
from mimmx.morpho.perturb import THICK_AMOUNT, THIN_AMOUNT, _check_amount, dilated, eroded

# Bump when a change to the code changes any stored number: every cached table is rebuilt.
ALGORITHM_VERSION = 1
SPLITS = ("train", "test")
VARIANTS = ("plain", "thin", "thick")
CHUNK = 250  # digits per work item


@dataclass(frozen=True)
class TableParams:
    """Everything that decides the table's numbers (hashed into the cache file name)."""

    thin_amount: float = THIN_AMOUNT
    thick_amount: float = THICK_AMOUNT
    threshold: float = 0.5
    scale: int = 4
    bound_frac: float = 0.02

    def validate(self) -> TableParams:
        _check_amount("thin", self.thin_amount, 0.0, 1.0, upper_open=True)
        _check_amount("thick", self.thick_amount, 0.0, 4.0)
        morphology.check_scale_threshold(self.scale, self.threshold)
        if not 0.0 <= self.bound_frac < 1.0:
            raise MorphoInputError(f"bound_frac must be in [0, 1), got {self.bound_frac!r}")
        return self


class MorphoTable:
    """Images and metrics of every digit, per split ("train", "test") and variant ("plain",
    "thin", "thick"). ``path`` is the cache file it was loaded from."""

    def __init__(self, arrays: dict[str, np.ndarray], params: TableParams, path: Path):
        self._arrays, self.params, self.path = arrays, params, path
        self.splits = tuple(s for s in SPLITS if f"{s}_plain_images" in arrays)

    def _get(self, split: str, variant: str, what: str) -> np.ndarray:
        if split not in self.splits:
            raise MorphoInputError(f"unknown split {split!r}; this table has {self.splits}")
        if variant not in VARIANTS:
            raise MorphoInputError(f"unknown variant {variant!r}; choose one of {VARIANTS}")
        return self._arrays[f"{split}_{variant}_{what}"]

    def images(self, split: str, variant: str = "plain"):
        """uint8 torch tensor (N, 28, 28) of one split and variant. It shares memory with the
        table: treat it as read-only (``.clone()`` before changing it)."""
        import torch

        return torch.from_numpy(self._get(split, variant, "images"))

    def metrics(self, split: str, variant: str = "plain") -> pd.DataFrame:
        """DataFrame (N rows, columns :data:`~mimmx.morpho.METRICS`) of one split and variant."""
        return pd.DataFrame(self._get(split, variant, "metrics"), columns=METRICS)

    @property
    def meta(self) -> dict:
        """How the table was built: version, parameters, source, seconds, workers."""
        return json.loads(str(self._arrays["meta"])) if "meta" in self._arrays else {}

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}: {len(self._get(s, 'plain', 'images'))}" for s in self.splits)
        return f"MorphoTable({sizes}; {self.path.name})"


def table_path(params: TableParams | None = None, source: dict | None = None) -> Path:
    """Cache file of the table for ``params`` and ``source`` (None: all of MNIST)."""
    from mimmx.data import cache_dir

    params = (params or TableParams()).validate()
    what = {"version": ALGORITHM_VERSION, "params": asdict(params), "tie_seed": morphology.TIE_SEED,
            "source": _source_id(source)}
    key = hashlib.sha256(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir("morpho") / f"morpho_v{ALGORITHM_VERSION}_{key}.npz"


def load_table(params: TableParams | None = None, *, source: dict | None = None,
               progress: bool = True, workers: int | None = None,
               rebuild: bool = False) -> MorphoTable:
    """The morpho table: loaded from the cache, or built there first (``rebuild`` forces it).

    source: None for MNIST (train 60,000 + test 10,000, from ``mimmx.data``), or a dict
    ``{split: uint8 (N, 28, 28)}`` (for tests and subsets). workers: processes for the build
    (default: every CPU this process may use)."""
    params = (params or TableParams()).validate()
    path = table_path(params, source)
    with _build_lock(path):  # two processes asking at once: one builds, the other then loads
        if path.exists() and not rebuild:
            try:
                with np.load(path) as f:
                    arrays = {k: f[k] for k in f.files}
                return MorphoTable(arrays, params, path)
            except (OSError, ValueError, zipfile.BadZipFile):  # unreadable: build it again
                pass
        return build_table(params, source=source, progress=progress, workers=workers)


@contextlib.contextmanager
def _build_lock(path: Path):
    """An exclusive ``flock`` on ``<table>.lock`` (none where fcntl does not exist)."""
    try:
        import fcntl
    except ImportError:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def build_table(params: TableParams | None = None, *, source: dict | None = None,
                progress: bool = True, workers: int | None = None) -> MorphoTable:
    """Compute the table and write it to :func:`table_path` (atomically). See :func:`load_table`."""
    params = (params or TableParams()).validate()
    images = _source_images(source)
    workers = workers or _available_cpus()
    arrays: dict[str, np.ndarray] = {}
    total = sum(len(x) for x in images.values())
    bar = _progress(total, progress)
    start = time.perf_counter()
    pool = _pool(workers) if workers > 1 else None
    try:
        for split, x in images.items():
            chunks = [(x[i:i + CHUNK], params) for i in range(0, len(x), CHUNK)]
            results = pool.imap(_process_chunk, chunks) if pool else map(_process_chunk, chunks)
            parts = []
            for (chunk, _), part in zip(chunks, results):
                parts.append(part)
                bar.update(len(chunk))
            for variant in VARIANTS:
                arrays[f"{split}_{variant}_images"] = (
                    x if variant == "plain" else np.concatenate([p[f"{variant}_images"] for p in parts]))
                arrays[f"{split}_{variant}_metrics"] = np.concatenate([p[f"{variant}_metrics"] for p in parts])
    finally:
        if pool:
            pool.close()
            pool.join()
        bar.close()
    path = table_path(params, source)
    meta = {"version": ALGORITHM_VERSION, "params": asdict(params), "source": _source_id(source),
            "seconds": round(time.perf_counter() - start, 1), "workers": workers}
    arrays["meta"] = np.array(json.dumps(meta))
    tmp = path.with_name(path.name + f".tmp{os.getpid()}.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, path)
    return MorphoTable(arrays, params, path)


def compute_variants(images, params: TableParams | None = None) -> dict[str, np.ndarray]:
    """Thin and thick versions of ``images`` and the metrics of all three variants:
    {"plain_metrics", "thin_metrics", "thick_metrics": (N, 6); "thin_images", "thick_images":
    uint8 (N, 28, 28)}. One :class:`Morphology` of the plain digits serves all three. A variant
    that lost all its ink (possible only for odd inputs) gets NaN metrics."""
    p = params or TableParams()
    morph = Morphology(images, p.threshold, p.scale)
    out = {"plain_metrics": metrics_of(morph, p.bound_frac)}
    for variant, hires in (("thin", eroded(morph, p.thin_amount)), ("thick", dilated(morph, p.thick_amount))):
        x = out[f"{variant}_images"] = morph.downscale(hires)
        inked = np.ptp(x.reshape(len(x), -1), axis=1) > 0
        metrics = np.full((len(x), len(METRICS)), np.nan)
        if inked.any():
            metrics[inked] = metrics_of(Morphology(x[inked], p.threshold, p.scale), p.bound_frac)
        out[f"{variant}_metrics"] = metrics
    return out


def _process_chunk(args) -> dict[str, np.ndarray]:
    images, params = args
    return compute_variants(images, params)


def _source_images(source: dict | None) -> dict[str, np.ndarray]:
    if source is None:
        from mimmx import data

        return {split: data.load("mnist", split).images.numpy() for split in SPLITS}
    unknown = set(source) - set(SPLITS)
    if unknown or not source:
        raise MorphoInputError(f"source must map some of {SPLITS} to images, got keys {sorted(source)}")
    return {split: as_images(source[split], f"source[{split!r}]") for split in SPLITS if split in source}


def _source_id(source: dict | None) -> str:
    """"mnist" for the full (md5-verified) MNIST, else a hash of the given images."""
    if source is None:
        return "mnist"
    h = hashlib.sha256()
    for split, x in sorted(_source_images(source).items()):
        h.update(split.encode() + str(x.shape).encode() + x.tobytes())
    return "images-" + h.hexdigest()[:16]


def _pool(workers: int):
    """Worker processes. On Linux they are forked: nothing is re-imported (so scripts need no
    ``if __name__ == "__main__"`` guard) and the workers use only numpy/scipy/numba, which are
    safe to fork; elsewhere the platform's default start method is used."""
    method = "fork" if sys.platform.startswith("linux") else None
    return multiprocessing.get_context(method).Pool(workers)


def _available_cpus() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool):
    if not enabled:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc="morpho table", unit="digit", smoothing=0.05)
