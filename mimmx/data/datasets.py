"""MNIST and Fashion-MNIST from their raw IDX files, verified by md5, as uint8 tensors.

Where the files are looked for, in this order (the first folder that has a file decides):
an explicit ``root`` argument, the environment variable ``MIMMX_DATA``, then ``./data``.
Inside a folder both this project's layout (``mnist/…``) and torchvision's
(``MNIST/raw/…``) are recognised, each file ``.gz`` or plain. A file whose checksum does not
match is reported as corrupted and never used.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple

import torch

from mimmx.data.idx import IDXFormatError, read_idx

ENV_VAR = "MIMMX_DATA"
CACHE_ENV_VAR = "MIMMX_CACHE"
SPLITS = ("train", "test")
_STEM = {"train": "train", "test": "t10k"}


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset: where its files live and the md5 of each (gzip as published, and plain)."""

    name: str
    folders: tuple[str, ...]  # sub-folders of a data root that may hold the files
    torchvision_class: str
    md5: dict[str, tuple[str, str]]  # file stem -> (md5 of .gz, md5 of plain)
    classes: tuple[str, ...]

    def stems(self, split: str) -> tuple[str, str]:
        s = _STEM[split]
        return f"{s}-images-idx3-ubyte", f"{s}-labels-idx1-ubyte"


DATASETS: dict[str, DatasetInfo] = {
    "mnist": DatasetInfo(
        name="mnist",
        folders=("mnist", "MNIST/raw"),
        torchvision_class="MNIST",
        md5={
            "train-images-idx3-ubyte": ("f68b3c2dcbeaaa9fbdd348bbdeb94873", "6bbc9ace898e44ae57da46a324031adb"),
            "train-labels-idx1-ubyte": ("d53e105ee54ea40749a09fcbcd1e9432", "a25bea736e30d166cdddb491f175f624"),
            "t10k-images-idx3-ubyte": ("9fb629c4189551a2d022fa330f9573f3", "2646ac647ad5339dbf082846283269ea"),
            "t10k-labels-idx1-ubyte": ("ec29112dd5afa0611ce80d1b7f02629c", "27ae3e4e09519cfbb04c329615203637"),
        },
        classes=tuple(str(d) for d in range(10)),
    ),
    "fashion-mnist": DatasetInfo(
        name="fashion-mnist",
        folders=("fashion-mnist", "FashionMNIST/raw"),
        torchvision_class="FashionMNIST",
        md5={
            "train-images-idx3-ubyte": ("8d4fb7e6c68d591d4c3dfef9ec88bf0d", "f4a8712d7a061bf5bd6d2ca38dc4d50a"),
            "train-labels-idx1-ubyte": ("25c81989df183df01b3e8a0aad5dffbe", "9018921c3c673c538a1fc5bad174d6f9"),
            "t10k-images-idx3-ubyte": ("bef4ecab320f06d8554ea6380940ec79", "8181f5470baa50b63fa0f6fddb340f0a"),
            "t10k-labels-idx1-ubyte": ("bb300cfdad3c16e7a12a480ee83cd310", "15d484375f8d13e6eb1aabb0c3f46965"),
        },
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                 "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
    ),
}


class DatasetNotFoundError(FileNotFoundError):
    """A dataset file is in none of the folders searched."""


class DatasetCorruptedError(ValueError):
    """A dataset file exists but its checksum or format is wrong."""


class Split(NamedTuple):
    images: torch.Tensor  # (N, 28, 28) uint8
    labels: torch.Tensor  # (N,) int64


@dataclass(frozen=True)
class FileStatus:
    dataset: str
    stem: str
    path: Path | None  # where it was found (None: missing)
    state: str  # "verified" | "corrupted" | "missing"


def search_roots(root: str | Path | None = None) -> list[Path]:
    """The folders searched for datasets, in order: ``root``, ``$MIMMX_DATA``, ``./data``, and
    the checkout's ``data/`` (for notebooks and scripts run from a sub-folder)."""
    roots = [root, os.environ.get(ENV_VAR) or None, "data", _project_data()]
    seen, out = set(), []
    for r in roots:
        if r is None:
            continue
        p = Path(r).expanduser().resolve()
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def _project_data() -> Path | None:
    """``data/`` of the source checkout holding this package (None when installed elsewhere)."""
    root = Path(__file__).resolve().parents[2]
    return root / "data" if (root / "pyproject.toml").is_file() and (root / "mimmx").is_dir() else None


def cache_dir(*parts: str) -> Path:
    """A writable folder for derived caches (Morpho-MNIST table, results): ``$MIMMX_CACHE``,
    else ``data/cache`` of the checkout (so notebooks run from ``notebooks/`` share it), else
    ``./data/cache``. ``$MIMMX_DATA`` may be read-only, so caches never go there."""
    default = (_project_data() or Path("data")) / "cache"
    base = Path(os.environ.get(CACHE_ENV_VAR) or default).expanduser().resolve()
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def default_download_root(root: str | Path | None = None) -> Path:
    """Where ``download`` writes: ``root`` if given, else ``$MIMMX_DATA``, else ``./data``."""
    return search_roots(root)[0]


def _info(name: str) -> DatasetInfo:
    try:
        return DATASETS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; choose one of {sorted(DATASETS)}") from None


def _candidates(info: DatasetInfo, stem: str, roots: list[Path]):
    for r in roots:
        for folder in info.folders:
            for fname in (stem + ".gz", stem):
                p = r / folder / fname
                if p.is_file():
                    yield p


def _stamp(*paths: Path) -> tuple:
    return tuple((p.stat().st_size, p.stat().st_mtime_ns) for p in paths)


def md5sum(path: Path) -> str:
    """md5 of a file, remembered while its size and mtime stay the same."""
    return _md5(path, _stamp(path))


@lru_cache(maxsize=64)
def _md5(path: Path, stamp: tuple) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _verify(info: DatasetInfo, stem: str, path: Path) -> bool:
    gz_md5, plain_md5 = info.md5[stem]
    return md5sum(path) == (gz_md5 if path.suffix == ".gz" else plain_md5)


def file_status(name: str, root: str | Path | None = None) -> list[FileStatus]:
    """Where each file of a dataset was found and whether its md5 matches the published one."""
    info = _info(name)
    roots = search_roots(root)
    out = []
    for stem in info.md5:
        path = next(_candidates(info, stem, roots), None)
        if path is None:
            out.append(FileStatus(name, stem, None, "missing"))
        else:
            out.append(FileStatus(name, stem, path, "verified" if _verify(info, stem, path) else "corrupted"))
    return out


def _not_found_message(info: DatasetInfo, stem: str, roots: list[Path]) -> str:
    searched = "\n".join(f"  - {r / f}" for r in roots for f in info.folders)
    return (
        f"{info.name}: {stem}(.gz) was not found. Folders searched:\n{searched}\n"
        "Fix it in one of two ways:\n"
        f"  1. point mimmx at a folder that has the files: export {ENV_VAR}=/path/to/data "
        f"(it must contain {info.folders[0]}/{stem}.gz), or pass root=... ;\n"
        "  2. download them (needs the network): python -m mimmx data download"
    )


def locate(name: str, stem: str, root: str | Path | None = None) -> Path:
    """Path of a verified file; a clear error if it is missing or corrupted."""
    info = _info(name)
    roots = search_roots(root)
    path = next(_candidates(info, stem, roots), None)
    if path is None:
        raise DatasetNotFoundError(_not_found_message(info, stem, roots))
    if not _verify(info, stem, path):
        raise DatasetCorruptedError(
            f"{path} is corrupted: its md5 does not match the published checksum. "
            f"Delete it and run `python -m mimmx data download`, or point {ENV_VAR} at a good copy."
        )
    return path


@lru_cache(maxsize=8)
def _read_pair(img_path: Path, lab_path: Path, stamp: tuple) -> Split:
    # ``stamp`` (sizes and mtimes) makes a replaced file miss the cache
    try:
        images, labels = read_idx(img_path), read_idx(lab_path)
    except IDXFormatError as err:
        raise DatasetCorruptedError(str(err)) from err
    if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
        raise DatasetCorruptedError(
            f"{img_path} / {lab_path}: shapes {tuple(images.shape)} and {tuple(labels.shape)} do not pair up"
        )
    return Split(images, labels.long())


def load(name: str, split: str = "train", root: str | Path | None = None) -> Split:
    """Load ``name`` (``"mnist"`` or ``"fashion-mnist"``) ``split`` (``"train"``/``"test"``).

    Returns ``Split(images, labels)``: images ``(N, 28, 28)`` uint8, labels ``(N,)`` int64.
    Files are verified on every call (md5, cached by size and mtime) and the decoded tensors
    are cached in memory: treat them as read-only.
    """
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; choose one of {SPLITS}")
    img_stem, lab_stem = _info(name).stems(split)
    paths = locate(name, img_stem, root), locate(name, lab_stem, root)
    return _read_pair(*paths, _stamp(*paths))


def download(name: str, root: str | Path | None = None) -> Path:
    """Fetch a dataset through torchvision into ``root`` (default ``./data``) and verify it."""
    import torchvision.datasets as tvd

    info = _info(name)
    target = default_download_root(root)
    target.mkdir(parents=True, exist_ok=True)
    cls = getattr(tvd, info.torchvision_class)
    try:
        for train in (True, False):
            cls(root=str(target), train=train, download=True)
    except Exception as err:  # torchvision raises RuntimeError/URLError/OSError depending on the failure
        raise DatasetNotFoundError(
            f"could not download {name} into {target}: {err}\n"
            f"Without network access, copy the IDX files into {target / info.folders[0]} "
            f"or set {ENV_VAR} to a folder that has them."
        ) from err
    for stem in info.md5:
        locate(name, stem, target)
    return target
