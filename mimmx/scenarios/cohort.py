"""Your own cohort: a CSV manifest of images turned into a confounded scenario.

The manifest has one row per image: the image's path, the primary label y and one column per
spurious factor z_i. A ``CohortSpec`` says how each column becomes a binary code (categorical
values mapped to 0/1, numeric values cut by ``lt`` / ``gt``; everything else is dropped), which
rows to keep (``filter``) and how the rows split into a train and a test pool. ``load_cohort``
reads the images (grayscale, resized to ``image_size``², cached), ``cohort_scenario`` hands the
pools and codes to :func:`mimmx.scenarios.build`, which subsamples them so that the training
set has the requested P(y, z_i) and the Validation / Inverted / Balanced sets theirs.

Example (the ``CHEXPERT`` preset)::

    Path,Sex,Age,Frontal/Lateral,Pleural Effusion
    CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg,Female,68,Frontal,1.0

y = Pleural Effusion (1.0 → 1, 0.0 → 0; −1.0 "uncertain" and blank "not mentioned" dropped),
z_1 = Sex (Female → 0, Male → 1; "Unknown" dropped), z_2 = Age (< 50 → young, > 60 → old,
50–60 dropped), frontal views only, train/test pools split by patient.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import math
import os
import re
import types
import typing
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml
from PIL import Image

from mimmx import data
from mimmx.errors import UserError
from mimmx.scenarios.builder import (
    TEST_SETS,
    FactorSpec,
    InfeasibleScenarioError,
    Scenario,
    ScenarioSpec,
    _conditionals,
    build,
    cell_counts,
    split_conditionals,
)
from mimmx.scenarios.presets import SLEEVE_GROUPS

CACHE_VERSION = 1  # bump when the way images are read or resized changes


class CohortError(UserError, ValueError):
    """A manifest, rule or image that cannot be used; the message names it."""


# --- the specification ----------------------------------------------------------------------

@dataclass(frozen=True)
class ColumnRule:
    """How one manifest column becomes a code (y ∈ {0..K−1}, z ∈ {0, 1}); other rows are dropped.

    Either ``values``, a mapping raw value → code (categorical; a ``null`` / ``""`` key maps blank
    cells), or numeric cuts: value < ``lt`` → 0, value > ``gt`` → 1 (both given: values in
    [lt, gt] are dropped; one given: it is the only cut). Blank cells are dropped unless mapped.
    For a factor, ``r`` (P(z = y)) or ``table`` (P(y, z), rows y) sets its association with y in
    the training set; neither: the association observed in the cohort's train pool.
    """

    column: str
    name: str | None = None  # the factor's name (default: the column's name, lower case)
    values: dict | None = None
    lt: float | None = None
    gt: float | None = None
    names: tuple[str, ...] | None = None  # a name per code (default: from the rule)
    r: float | None = None
    table: tuple[tuple[float, ...], ...] | None = None
    analogue: str = ""

    @property
    def key(self) -> str:
        return self.name or self.column.lower()

    def cuts(self) -> tuple[str, str]:
        """The numeric rule in words: the condition for code 0 and for code 1."""
        c = self.column
        if self.lt is not None and self.gt is not None:
            return f"{c} < {_show(self.lt)}", f"{c} > {_show(self.gt)}"
        if self.lt is not None:
            return f"{c} < {_show(self.lt)}", f"{c} >= {_show(self.lt)}"
        return f"{c} <= {_show(self.gt)}", f"{c} > {_show(self.gt)}"

    def value_names(self) -> tuple[str, ...]:
        if self.names is not None:
            return tuple(self.names)
        if self.values is not None:
            codes = sorted(set(self.values.values()))
            return tuple("/".join(_show(k) for k, v in self.values.items() if v == c) for c in codes)
        return self.cuts()

    def describe(self) -> str:
        names = self.value_names()
        if self.values is not None:
            parts = [f"{_show(k)} → {v} ({names[v] if v < len(names) else v})"
                     for k, v in self.values.items()]
            return f"{self.column}: {', '.join(parts)}, others dropped"
        parts = [f"{cut} → {v} ({names[v]})" for v, cut in enumerate(self.cuts())]
        return f"{', '.join(parts)}, others dropped"


@dataclass(frozen=True)
class CohortSpec:
    """A cohort: the manifest, the rules that turn its columns into y and z, and the sizes.

    Image paths are relative to ``image_root`` (default: the manifest's folder, or its parent
    when the paths start with the manifest folder's name, as CheXpert's do). The train / test
    pools come from ``split_column`` (rows whose value is in ``test_values`` are test) or else
    from a seeded ``test_fraction`` of the groups (``group_column``, or the first match of
    ``group_pattern`` in the path, e.g. a patient id; default: every row its own group), so that
    no patient is in both pools. Sizes left ``None`` are the largest the pools allow.
    """

    manifest: str
    label: ColumnRule
    factors: tuple[ColumnRule, ...] = ()
    image_column: str = "path"
    image_root: str | None = None
    filter: dict[str, Any] = field(default_factory=dict)  # column -> allowed value(s)
    image_size: int = 28
    split_column: str | None = None
    test_values: tuple[str, ...] = ("test",)
    test_fraction: float = 0.2
    group_column: str | None = None
    group_pattern: str | None = None
    split_seed: int = 0
    name: str = "cohort"
    p_y: tuple[float, ...] | None = None
    n_train: int | None = None
    n_selection: int | None = None  # None: n_train // 10
    n_test: int | None = None  # per test set

    # --- YAML ------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return _plain(dataclasses.asdict(self))

    def to_yaml(self, path: str | Path | None = None) -> str:
        text = yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CohortSpec:
        d = dict(_checked(cls, d, "cohort"))
        for key, what in (("manifest", "the CSV file"), ("label", "the primary label's column rule")):
            if key not in d:
                raise CohortError(f"cohort: the key {key!r} ({what}) is missing")
        d["label"] = _rule(d["label"], "label")
        d["factors"] = tuple(_rule(f, f"factors[{i}]") for i, f in enumerate(d.get("factors") or ()))
        for key in ("test_values", "p_y"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        d["filter"] = dict(d.get("filter") or {})
        return cls(**d)

    @classmethod
    def from_yaml(cls, path: str | Path, **overrides) -> CohortSpec:
        """Read a spec; a relative ``manifest`` in the file is relative to the file's folder."""
        path = Path(path)
        if not path.is_file():
            raise CohortError(f"cohort config {path} does not exist")
        try:
            d = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise CohortError(f"{path} is not valid YAML: {err}") from err
        if not isinstance(d, dict):
            raise CohortError(f"{path}: the top level must be a mapping of CohortSpec fields")
        if d.get("manifest") and not Path(d["manifest"]).expanduser().is_absolute():
            d["manifest"] = str(path.parent / d["manifest"])  # relative to the YAML file
        d.update({k: v for k, v in overrides.items() if v is not None})
        return cls.from_dict(d)


def _plain(x):
    """Tuples to lists, recursively, so that yaml.safe_dump accepts it."""
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _checked(cls, d, where: str) -> dict:
    """``d`` with its keys known to ``cls`` and its values of the fields' types (numbers given
    as text, as YAML 1.1 reads ``1e-3``, become numbers); the message names key and type."""
    if not isinstance(d, dict):
        raise CohortError(f"{where} must be a mapping, got {d!r}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise CohortError(f"{where}: unknown key {unknown[0]!r}; "
                          f"valid keys: {', '.join(sorted(names))}")
    hints = typing.get_type_hints(cls)
    return {k: _typed(hints[k], v, f"{where}.{k}") for k, v in d.items()}


_NUMBER = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_EXPECTED = {str: "text", int: "an integer", float: "a number", dict: "a mapping"}


def _typed(tp, v, key: str):
    """``v`` checked against the type hint ``tp`` (str, int, float, dict, tuple[X, ...] and
    their Optional forms; other hints, such as the nested rules, are checked by their reader)."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        if v is None:
            return None
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if typing.get_origin(tp) is tuple:
        inner = typing.get_args(tp)[0]
        if inner is ColumnRule:
            return v
        if not isinstance(v, (list, tuple)):
            what = ("a list of rows of numbers (P(y, z), one row per y)" if key.endswith(".table")
                    else f"a list of {_EXPECTED.get(inner, 'lists')}")
            raise CohortError(f"{key} must be {what}, got {v!r}")
        if inner is str:  # names and split values: any scalar (a manifest's values may be numbers)
            bad = [x for x in v if not isinstance(x, (str, int, float)) or isinstance(x, bool)]
            if bad:
                raise CohortError(f"{key} must be a list of values, got {bad[0]!r} in it")
            return tuple(v)
        return tuple(_typed(inner, x, f"{key}[{i}]") for i, x in enumerate(v))
    if typing.get_origin(tp) is dict:
        tp = dict
    if tp is float and isinstance(v, str) and _NUMBER.fullmatch(v.strip()):
        v = float(v)
    ok = {str: lambda: isinstance(v, str), dict: lambda: isinstance(v, dict),
          int: lambda: isinstance(v, int) and not isinstance(v, bool),
          float: lambda: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
    if tp in ok and not ok[tp]():
        raise CohortError(f"{key} must be {_EXPECTED[tp]}, got {v!r}")
    return float(v) if tp is float else v


def _rule(d, where: str) -> ColumnRule:
    d = dict(_checked(ColumnRule, d, where))
    if "column" not in d:
        raise CohortError(f"{where}: the key 'column' is missing")
    if d.get("names") is not None:
        d["names"] = tuple(d["names"])
    if d.get("table") is not None:
        d["table"] = tuple(tuple(row) for row in d["table"])
    return ColumnRule(**d)


def _show(v) -> str:
    if v is None or (isinstance(v, float) and np.isnan(v)):
        return "blank"
    if isinstance(v, float) and v.is_integer():
        return f"{v:.1f}"
    return str(v)


CHEXPERT = CohortSpec(
    manifest="",
    name="chexpert",
    image_column="Path",
    label=ColumnRule("Pleural Effusion", name="effusion", values={1.0: 1, 0.0: 0},
                     names=("no effusion", "effusion")),
    factors=(
        ColumnRule("Sex", name="sex", values={"Female": 0, "Male": 1}, names=("female", "male"),
                   r=0.9, analogue="sex"),
        ColumnRule("Age", name="age", lt=50, gt=60, names=("young", "old"), r=0.9, analogue="age"),
    ),
    filter={"Frontal/Lateral": "Frontal"},
    group_pattern=r"(patient\d+)",
)
"""CheXpert (Irvin et al., AAAI 2019) as in the MIMM-X poster's Exp2: y = pleural effusion,
z_1 = sex, z_2 = age (< 50 young, > 60 old), frontal views. The label's −1.0 (uncertain) and
blank (not mentioned; often read as negative elsewhere) are dropped, so y is only the
radiologist-report's explicit positives and negatives. Pools are split by patient."""

PRESETS: dict[str, CohortSpec] = {"chexpert": CHEXPERT}


def preset(name: str, manifest: str | Path, **overrides) -> CohortSpec:
    """A preset with its manifest path (and any other fields) filled in."""
    try:
        spec = PRESETS[name]
    except KeyError:
        raise CohortError(f"unknown cohort preset {name!r}; choose one of {sorted(PRESETS)}") from None
    return dataclasses.replace(spec, manifest=str(manifest), **overrides)


# --- the loaded cohort ----------------------------------------------------------------------

@dataclass
class Cohort:
    """The kept rows of a manifest with their images and codes, split into two pools."""

    spec: CohortSpec
    rows: pd.DataFrame  # the kept manifest rows (original index) plus columns y, z names, pool
    images: torch.Tensor  # (n, image_size, image_size) uint8, in the order of `rows`
    y: torch.Tensor  # (n,) int64
    z: torch.Tensor  # (n, N) int64 in {0, 1}
    test: torch.Tensor  # (n,) bool: in the test pool
    n_manifest: int
    dropped: dict[str, int]  # rule -> rows it dropped (rules applied in order)
    image_root: Path
    from_cache: bool

    def __len__(self) -> int:
        return len(self.y)

    @property
    def y_names(self) -> tuple[str, ...]:
        return self.spec.label.value_names()

    def pool(self, name: str) -> torch.Tensor:
        """Indices (into ``rows``) of the ``"train"`` or ``"test"`` pool."""
        return torch.nonzero(self.test if name == "test" else ~self.test).flatten()

    def base(self) -> dict[str, data.Split]:
        """The pools as the builder's ``base``: ``{"train": Split, "test": Split}``."""
        return {s: data.Split(self.images[self.pool(s)], self.y[self.pool(s)])
                for s in ("train", "test")}

    def attributes(self) -> dict[str, dict[str, torch.Tensor]]:
        """The factor codes as the builder's natural ``attributes`` (keyed by column)."""
        return {f.column: {s: self.z[self.pool(s), i] for s in ("train", "test")}
                for i, f in enumerate(self.spec.factors)}

    def counts(self) -> pd.DataFrame:
        """Tidy counts of (y, z_i) in each pool."""
        rows = []
        for s in ("train", "test"):
            idx = self.pool(s)
            y = self.y[idx]
            for i, f in enumerate(self.spec.factors):
                names = f.value_names()
                c = torch.bincount(y * 2 + self.z[idx, i], minlength=2 * len(self.y_names))
                for yv, yn in enumerate(self.y_names):
                    for zv in range(2):
                        rows.append({"pool": s, "factor": f.key, "y": yn, "z": names[zv],
                                     "count": int(c[2 * yv + zv])})
        return pd.DataFrame(rows)

    def summary(self) -> dict[str, Any]:
        return {
            "manifest": self.spec.manifest, "image_root": str(self.image_root),
            "image_size": self.spec.image_size, "rows": self.n_manifest, "dropped": self.dropped,
            "kept": len(self), "pools": {s: len(self.pool(s)) for s in ("train", "test")},
            "label": self.spec.label.describe(),
            "factors": {f.key: f.describe() for f in self.spec.factors},
            "from_cache": self.from_cache,
        }

    def describe(self) -> str:
        s = self.summary()
        lines = [f"cohort {self.spec.name}: {s['manifest']} ({s['rows']} rows), "
                 f"images in {s['image_root']}", f"y = {s['label']}"]
        lines += [f"z {k} = {v}" for k, v in s["factors"].items()]
        lines += [f"dropped by {rule}: {n}" for rule, n in s["dropped"].items()]
        lines.append(f"kept {s['kept']} images at {s['image_size']}x{s['image_size']}"
                     f" ({'from the cache' if s['from_cache'] else 'read from the files'}): "
                     f"train pool {s['pools']['train']}, test pool {s['pools']['test']}")
        return "\n".join(lines)


# --- loading --------------------------------------------------------------------------------

def _read_manifest(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise CohortError(f"manifest {path} does not exist")
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise CohortError(f"manifest {path} is not a readable CSV file: {err}") from err
    if table.empty:
        raise CohortError(f"manifest {path} has no rows")
    return table


def _check_columns(spec: CohortSpec, table: pd.DataFrame, path: Path) -> None:
    needed = [spec.image_column, spec.label.column, *[f.column for f in spec.factors],
              *spec.filter, spec.split_column, spec.group_column]
    missing = [c for c in dict.fromkeys(needed) if c is not None and c not in table.columns]
    if missing:
        close = [difflib.get_close_matches(c, list(map(str, table.columns)), 1) for c in missing]
        hints = [f"{c!r} (did you mean {m[0]!r}?)" if m else repr(c) for c, m in zip(missing, close)]
        raise CohortError(f"manifest {path} has no column {', '.join(hints)}; "
                          f"its columns are: {', '.join(map(str, table.columns))}")


def _matches(column: pd.Series, key) -> np.ndarray:
    """Rows whose cell equals ``key`` (numbers compared as numbers; None / "" match blanks)."""
    if key is None or (isinstance(key, str) and key.strip() == ""):
        return column.isna().to_numpy() | (column.astype(str).str.strip() == "").to_numpy()
    if pd.api.types.is_numeric_dtype(column):
        try:
            return (column.to_numpy(dtype=float) == float(key))
        except (TypeError, ValueError):
            return np.zeros(len(column), dtype=bool)
    return (column.astype("string").str.strip() == str(key).strip()).fillna(False).to_numpy(dtype=bool)


def _code(rule: ColumnRule, column: pd.Series, where: str, binary: bool) -> np.ndarray:
    """The code of every row under ``rule``: (n,) int64, −1 where the row is dropped."""
    if (rule.values is None) == (rule.lt is None and rule.gt is None):
        raise CohortError(f"{where} ({rule.column!r}): give either values (a mapping) or lt / gt cuts")
    code = np.full(len(column), -1, dtype=np.int64)
    if rule.values is not None:
        allowed = {0, 1} if binary else None
        for k, v in rule.values.items():
            if not isinstance(v, (int, np.integer)) or v < 0 or (allowed and v not in allowed):
                raise CohortError(f"{where} ({rule.column!r}): value {k!r} maps to {v!r}; codes must be "
                                  + ("0 or 1" if binary else "integers 0, 1, ..."))
            code[_matches(column, k)] = v
        return code
    if rule.lt is not None and rule.gt is not None and rule.lt > rule.gt:
        raise CohortError(f"{where} ({rule.column!r}): lt = {rule.lt} is above gt = {rule.gt}")
    numbers = pd.to_numeric(column, errors="coerce")
    bad = numbers.isna() & column.notna() & (column.astype(str).str.strip() != "")
    if bad.any():
        raise CohortError(f"{where} ({rule.column!r}): cuts lt / gt need numbers, but the column "
                          f"holds {column[bad].iloc[0]!r} (and {int(bad.sum()) - 1} more "
                          "non-numbers); map its values instead")
    v = numbers.to_numpy(dtype=float)  # NaN (blank) satisfies no comparison: dropped
    if rule.lt is not None:
        code[v < rule.lt] = 0
        code[v > rule.gt if rule.gt is not None else v >= rule.lt] = 1
    else:
        code[v <= rule.gt] = 0
        code[v > rule.gt] = 1
    return code


def _image_root(spec: CohortSpec, manifest: Path, paths: pd.Series) -> Path:
    if spec.image_root is not None:
        root = Path(spec.image_root).expanduser()
        return root if root.is_absolute() else manifest.parent / root
    first = Path(str(paths.iloc[0]))
    if not (manifest.parent / first).exists() and (manifest.parent.parent / first).exists():
        return manifest.parent.parent  # CheXpert: paths start with the manifest's own folder
    return manifest.parent


def _pools(spec: CohortSpec, rows: pd.DataFrame) -> np.ndarray:
    """True where the row is in the test pool."""
    if spec.split_column is not None:
        values = rows[spec.split_column].astype(str).str.strip().str.lower()
        return values.isin([str(v).lower() for v in spec.test_values]).to_numpy()
    if not 0.0 < spec.test_fraction < 1.0:
        raise CohortError(f"test_fraction = {spec.test_fraction} must be between 0 and 1")
    if spec.group_column is not None:
        groups = rows[spec.group_column].astype(str)
    elif spec.group_pattern is not None:
        pattern = spec.group_pattern
        if not re.compile(pattern).groups:
            pattern = f"({pattern})"  # str.extract needs a group: the whole match
        paths = rows[spec.image_column].astype(str)
        groups = paths.str.extract(pattern, expand=True)[0].fillna(paths)  # no match: its own group
    else:
        groups = pd.Series(np.arange(len(rows)))
    codes, uniques = pd.factorize(groups)
    perm = np.random.default_rng(spec.split_seed).permutation(len(uniques))
    sizes = np.bincount(codes, minlength=len(uniques))[perm]
    before = np.cumsum(sizes) - sizes  # rows in the groups drawn before this one
    test_group = np.zeros(len(uniques), dtype=bool)
    test_group[perm[before < spec.test_fraction * len(rows)]] = True
    return test_group[codes]


def load_cohort(spec: CohortSpec, cache: bool = True, progress: bool = False,
                workers: int | None = None) -> Cohort:
    """Read the manifest, apply the rules and load the kept images.

    Rows are dropped, in this order, by ``filter``, the label rule and each factor rule (the
    summary counts each). Images are read with Pillow as 8-bit grayscale (16-bit and float images
    are min–max scaled), resized to ``image_size``² with Lanczos (antialiased) resampling, and
    cached in ``data.cache_dir("cohorts")`` under a hash of the image size and every kept image's
    path, size and modification time: a changed or replaced file is read again.
    """
    manifest = Path(spec.manifest).expanduser()
    table = _read_manifest(manifest)
    _check_columns(spec, table, manifest)
    for what, names in (("factor name", [f.key for f in spec.factors]),
                        ("factor column", [f.column for f in spec.factors])):
        if len(set(names)) < len(names):
            raise CohortError(f"cohort {spec.name!r}: each {what} may appear once, got {names}")
    if spec.image_size < 1:
        raise CohortError(f"image_size = {spec.image_size} must be a positive number of pixels")

    keep = np.ones(len(table), dtype=bool)
    dropped: dict[str, int] = {}

    def drop(reason: str, ok: np.ndarray) -> None:
        nonlocal keep
        dropped[reason] = int((keep & ~ok).sum())
        keep &= ok

    for column, allowed in spec.filter.items():
        allowed = allowed if isinstance(allowed, (list, tuple, set)) else [allowed]
        ok = np.logical_or.reduce([_matches(table[column], a) for a in allowed])
        drop(f"filter {column} in {list(allowed)}", ok)
    y = _code(spec.label, table[spec.label.column], "label", binary=False)
    drop(f"label {spec.label.column}", y >= 0)
    z = np.zeros((len(table), len(spec.factors)), dtype=np.int64)
    for i, f in enumerate(spec.factors):
        z[:, i] = _code(f, table[f.column], f"factors[{i}]", binary=True)
        drop(f"factor {f.key} ({f.column})", z[:, i] >= 0)
    if not keep.any():
        counts = ", ".join(f"{k}: {n}" for k, n in dropped.items())
        raise CohortError(f"manifest {manifest}: no row is left after the rules ({counts}); "
                          "check the rules' values against the manifest's")

    rows = table[keep].copy()
    rows["y"] = y[keep]
    for i, f in enumerate(spec.factors):
        rows[f.key] = z[keep, i]
    rows["pool"] = np.where(_pools(spec, rows), "test", "train")
    root = _image_root(spec, manifest, rows[spec.image_column])
    paths = [root / str(p) for p in rows[spec.image_column]]
    images, from_cache = _load_images(paths, spec.image_size, cache, progress, workers)
    test = torch.as_tensor(np.array(rows["pool"] == "test"))
    return Cohort(spec, rows, images, torch.from_numpy(y[keep]), torch.from_numpy(z[keep]), test,
                  len(table), dropped, root, from_cache)


def _cache_key(paths: list[Path], size: int) -> str:
    """sha256 of the image size and every file's path, size and mtime; also reports missing files."""
    h = hashlib.sha256(f"v{CACHE_VERSION}:{size}".encode())
    missing = []
    for p in paths:  # one stat per file: I/O, no way to vectorise
        try:
            st = p.stat()
        except OSError:
            missing.append(p)
            continue
        h.update(f"\n{os.path.abspath(p)}:{st.st_size}:{st.st_mtime_ns}".encode())
    if missing:
        shown = "\n  ".join(str(p) for p in missing[:5])
        raise CohortError(f"{len(missing)} of {len(paths)} image files are missing, e.g.:\n  {shown}\n"
                          "check the manifest's image column and image_root (paths are relative to "
                          "the manifest's folder unless image_root is given)")
    return h.hexdigest()[:24]


def _read_image(path: Path, size: int) -> np.ndarray:
    """One image as uint8 (size, size): grayscale, resized with Lanczos (antialiased)."""
    try:
        with Image.open(path) as im:
            im.draft("L", (size, size))  # JPEG: decode at a reduced scale that is still ≥ size
            if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):  # 16-bit / float: min–max to 8 bits
                a = np.asarray(im, dtype=np.float32)
                lo, hi = float(a.min()), float(a.max())
                im = Image.fromarray(((a - lo) / max(hi - lo, 1e-12) * 255).round().astype(np.uint8))
            else:
                im = im.convert("L")
            im = im.resize((size, size), Image.Resampling.LANCZOS)
            return np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError) as err:  # UnidentifiedImageError is an OSError
        raise CohortError(f"cannot read image {path}: {err}") from err


def _load_images(paths: list[Path], size: int, cache: bool, progress: bool,
                 workers: int | None) -> tuple[torch.Tensor, bool]:
    key = _cache_key(paths, size)
    file = data.cache_dir("cohorts") / f"{key}.npy"
    if cache and file.is_file():
        try:
            images = np.load(file)
            if images.shape == (len(paths), size, size):
                return torch.from_numpy(images), True
        except (OSError, ValueError):
            pass  # a broken cache file: read the images again
    workers = workers or min(4, os.cpu_count() or 1)
    with ThreadPoolExecutor(workers) as pool:  # Pillow releases the GIL while decoding
        it = pool.map(_read_image, paths, [size] * len(paths))
        if progress:
            from tqdm.auto import tqdm

            it = tqdm(it, total=len(paths), desc="cohort images", unit="image")
        images = np.stack(list(it)) if paths else np.zeros((0, size, size), np.uint8)
    if cache:
        tmp = file.with_suffix(f".{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            np.save(f, images)
        os.replace(tmp, file)
    return torch.from_numpy(images), False


# --- the scenario ---------------------------------------------------------------------------

def _check_two_values(cohort: Cohort) -> None:
    """A scenario needs at least two values of y and of every factor among the kept rows."""
    spec = cohort.spec
    for what, rule, codes in (("the label", spec.label, cohort.y),
                              *((f"factor {f.key!r}", f, cohort.z[:, i]) for i, f in enumerate(spec.factors))):
        kept = torch.unique(codes).tolist()
        if len(kept) < 2:
            names = rule.value_names()
            value = names[kept[0]] if kept and kept[0] < len(names) else kept
            raise CohortError(f"cohort {spec.name!r}: {what} (column {rule.column!r}) has one value "
                              f"in every kept row ({value!r}); it needs at least two. Check its "
                              "rule against the manifest's values, or the filter")


def scenario_spec(cohort: Cohort) -> ScenarioSpec:
    """The builder's spec: every factor natural, read from the cohort's codes (threshold 0.5)."""
    _check_two_values(cohort)
    spec = cohort.spec
    factors = []
    for i, f in enumerate(spec.factors):
        r, table = f.r, f.table
        if r is None and table is None:  # the association the cohort itself has (train pool)
            train = cohort.pool("train")
            n_y = len(cohort.y_names)
            c = torch.bincount(cohort.y[train] * 2 + cohort.z[train, i], minlength=2 * n_y)
            table = tuple(tuple(row) for row in (c.view(n_y, 2) / len(train)).tolist())
        factors.append(FactorSpec(f.key, "natural", f.column, r=r, table=table, threshold=0.5,
                                  analogue=f.analogue))
    sspec = ScenarioSpec(name=spec.name, dataset=spec.name, factors=tuple(factors),
                         y_names=cohort.y_names, p_y=spec.p_y, story=_story(cohort))
    return _sized(sspec, cohort)


def _story(cohort: Cohort) -> str:
    spec = cohort.spec
    assoc = []
    for f in spec.factors:
        if f.r is not None:
            assoc.append(f"{f.key} at P(z = y) = {f.r}")
        elif f.table is not None:
            assoc.append(f"{f.key} at the table P(y, z) = {[list(r) for r in f.table]}")
        else:
            assoc.append(f"{f.key} as observed in the cohort")
    return (f"Your cohort {Path(spec.manifest).name}: y = {spec.label.column} "
            f"({' / '.join(cohort.y_names)}), z = "
            + ", ".join(f"{f.column} ({' / '.join(f.value_names())})" for f in spec.factors) + ".\n"
            f"Training co-occurrence is set by subsampling real images: {', '.join(assoc) or 'none'}. "
            "Anything else that differs between the groups in these images (scanner, view, devices, "
            "disease severity) is left as the cohort has it and is not controlled.")


def _sized(sspec: ScenarioSpec, cohort: Cohort) -> ScenarioSpec:
    """Fill in the sizes left None with the largest that the pools allow."""
    spec = cohort.spec
    p_y, cond = _conditionals(sspec, len(cohort.y_names))
    n_f = len(spec.factors)
    available = {}
    for s in ("train", "test"):
        idx = cohort.pool(s)
        key = cohort.y[idx].clone()
        for i in range(n_f):
            key = key * 2 + cohort.z[idx, i]  # the builder's pool key: y, then each natural z
        available[s] = torch.bincount(key, minlength=len(p_y) * 2 ** n_f).numpy()

    def fits(pool: str, plan: list[tuple[str, int]]) -> bool:
        need = np.zeros_like(available[pool])
        for split, n in plan:
            for cell, k in cell_counts(n, p_y, split_conditionals(cond, split)).items():
                key = cell[0]
                for zv in cell[1:]:
                    key = key * 2 + zv
                need[key] += k
        return bool((need <= available[pool]).all())

    def largest(ok) -> int:
        lo, hi = 0, int(available["train"].sum() + available["test"].sum())
        while lo < hi:  # the largest n with ok(n), by bisection
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if ok(mid) else (lo, mid - 1)
        while lo > 0 and not ok(lo):  # rounding can make ok() not quite monotone
            lo -= 1
        return lo

    def n_sel(n_train: int) -> int:
        return spec.n_selection if spec.n_selection is not None else max(n_train // 10, 1)

    n_train = spec.n_train if spec.n_train is not None else largest(
        lambda n: fits("train", [("train", n), ("selection", n_sel(n))]))
    n_selection = n_sel(n_train)
    n_test = spec.n_test if spec.n_test is not None else largest(
        lambda n: fits("test", [(t, n) for t in TEST_SETS]))
    if n_train < 10 or n_test < 1:
        raise InfeasibleScenarioError(
            f"cohort {spec.name!r}: its pools (train {int(available['train'].sum())}, test "
            f"{int(available['test'].sum())} images) allow only n_train = {n_train}, n_test = "
            f"{n_test} at these tables; soften r / the tables, or add images to the rarest cells")
    return dataclasses.replace(sspec, n_train=n_train, n_selection=n_selection, n_test=n_test)


def cohort_scenario(cohort: Cohort | CohortSpec, seed: int = 0, **load_kw) -> Scenario:
    """The cohort as a confounded scenario: train / selection from the train pool, validation /
    inverted / balanced from the test pool (see :mod:`mimmx.scenarios.builder`)."""
    if isinstance(cohort, CohortSpec):
        cohort = load_cohort(cohort, **load_kw)
    sspec = scenario_spec(cohort)
    sc = build(sspec, seed, base=cohort.base(), attributes=cohort.attributes())
    sc.z_values = [f.value_names() for f in cohort.spec.factors]
    return sc


# --- an example cohort ----------------------------------------------------------------------

EXAMPLE_SITES = ("Riverside", "Northgate")


def write_example_cohort(folder: str | Path, n: int = 5000, seed: int = 0, r_site: float = 0.7,
                         uncertain: float = 0.08, blank: float = 0.05, lateral: float = 0.1,
                         root: str | Path | None = None) -> Path:
    """Write a small cohort that looks like a clinical export; returns the manifest's path.

    ``folder/images/*.png`` holds ``n`` Fashion-MNIST images (28×28, official train split, drawn
    without replacement) and ``folder/cohort.csv`` one row per image: ``path, patient_id, study,
    view, site, sex, age, effusion``. Patients have one to three studies and keep their
    diagnosis, site, sex and age (+1 year per study). The ground truth y ("effusion") is the
    garment: long sleeves (pullover, coat, shirt) vs T-shirt / dress.

    What the rules have to deal with: ``effusion`` is ``present`` / ``absent``, but a fraction
    ``uncertain`` of the reports say ``uncertain`` and ``blank`` are empty; ``sex`` is
    ``Female`` / ``Male`` with about 3 % of patients ``Unknown``; ``age`` is in years (20–89);
    a fraction ``lateral`` of the views are ``LATERAL`` (the image turned by 90°), the rest
    ``PA`` or ``AP``.

    The shortcut: the hospital. In the cohort itself P(site = y) = ``r_site`` (Northgate, the
    referral centre, sees most effusions), and Northgate's scanner leaves a trace in every image:
    a raised background (``40 + 0.8 · pixel``) and a burnt-in label, a white 3×6 bar in the
    top-right corner. Sex and age leave none.
    """
    if n < 1 or not 0.0 <= r_site <= 1.0:
        raise CohortError(f"write_example_cohort: need n ≥ 1 and 0 ≤ r_site ≤ 1, got n = {n}, "
                          f"r_site = {r_site}")
    if uncertain < 0 or blank < 0 or uncertain + blank > 1 or not 0 <= lateral <= 1:
        raise CohortError("write_example_cohort: uncertain, blank and lateral are fractions in "
                          "[0, 1] (uncertain + blank ≤ 1)")
    rng = np.random.default_rng(seed)
    fashion = data.load("fashion-mnist", "train", root=root)
    labels = fashion.labels.numpy()

    # patients: 1-3 studies each, with one diagnosis, site, sex and age per patient
    studies = rng.integers(1, 4, n)  # more than enough patients for n rows
    patient = np.repeat(np.arange(n), studies)[:n]  # (n,) patient index per row
    first = np.cumsum(studies) - studies  # each patient's first row
    study = np.arange(n) - first[patient] + 1  # 1, 2, 3 within a patient
    n_pat = patient[-1] + 1
    y_p = rng.integers(0, 2, n_pat)
    site_p = np.where(rng.random(n_pat) < r_site, y_p, 1 - y_p)
    sex_p = np.where(rng.random(n_pat) < 0.03, "Unknown",
                     np.where(rng.random(n_pat) < 0.5, "Female", "Male"))
    age_p = rng.integers(20, 88, n_pat)
    y, site = y_p[patient], site_p[patient]

    # one image per row from its y's garment classes, none twice
    index = np.zeros(n, dtype=np.int64)
    for v, classes in enumerate(SLEEVE_GROUPS):  # T-shirt, dress | pullover, coat, shirt
        pool = rng.permutation(np.flatnonzero(np.isin(labels, classes)))
        rows = np.flatnonzero(y == v)
        if len(rows) > len(pool):
            raise CohortError(f"write_example_cohort: n = {n} needs more images than "
                              f"Fashion-MNIST's {len(pool)} of group {classes}")
        index[rows] = pool[:len(rows)]
    images = fashion.images.numpy()[index].astype(np.float32)  # (n, 28, 28)
    view = rng.choice(np.array(["PA", "AP"], dtype=object), n, p=[0.65, 0.35])
    view[rng.random(n) < lateral] = "LATERAL"
    is_lateral = view == "LATERAL"
    images[is_lateral] = np.rot90(images[is_lateral], axes=(1, 2))
    north = site == 1
    images[north] = 40 + 0.8 * images[north]  # Northgate's raised background
    images[north, 1:4, 21:27] = 255  # and its burnt-in label, whatever the view
    images = images.round().clip(0, 255).astype(np.uint8)

    report = rng.random(n)
    effusion = np.where(y == 1, "present", "absent").astype(object)
    effusion[report < uncertain] = "uncertain"
    effusion[(report >= uncertain) & (report < uncertain + blank)] = ""
    ids = np.char.add("P", np.char.zfill((patient + 1).astype(str), 5))
    paths = [f"images/{p}_study{s}_{v.lower()}.png" for p, s, v in zip(ids, study, view)]
    manifest = pd.DataFrame({
        "path": paths, "patient_id": ids, "study": study, "view": view,
        "site": np.array(EXAMPLE_SITES)[site], "sex": sex_p[patient],
        "age": age_p[patient] + study - 1, "effusion": effusion})

    folder = Path(folder)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    for path, image in zip(paths, images):  # one file per image: I/O, no way to vectorise
        Image.fromarray(image).save(folder / path)
    csv = folder / "cohort.csv"
    manifest.to_csv(csv, index=False)
    return csv
