"""The general scenario builder: a primary label y and N spurious factors z_1..z_N, drawn
independently given y, turned into a confounded training set and three test sets.

For every split the joint distribution is P(y) · Π_i P_s(z_i | y), with
    training / selection / validation:  P_s(z_i | y) = P(z_i | y)
    inverted:                            P_s(z_i | y) = (1 − P(z_i | y)) / (K_i − 1)
                                         (binary: P(1 − z_i | y), every association flipped)
    balanced:                            P_s(z_i | y) = 1 / K_i
With ``y_noise`` = ε the recorded y of an image is its class group with probability 1 − ε
(the same labels in every split), so no classifier of the image alone exceeds 1 − ε.
The counts of every cell (y, z_1..z_N) are n · P rounded by largest remainder, so the
contingency tables are exact, not sampled. ``train`` and ``selection`` (the confounded split
for model selection) come from the official train split; ``validation``, ``inverted`` and
``balanced`` from the official test split. No image is in two splits.

Three options of a spec change this plan:
- ``y_source``: y is *induced* like a factor (an image transform chosen by y, e.g. Morpho-MNIST
  fractures), so any image of the dataset can carry either value of y;
- ``confounded=False``: ``train`` and ``selection`` are drawn with every z_i independent of y and
  uniform (P_s(z_i | y) = 1 / K_i): the unconfounded model's data, the Oracle row. The test sets
  stay those of the confounded spec (they depend on P(z_i | y) only through their own
  conditionals, which do not change);
- ``n_holdout`` > 0: a ``holdout`` split from the unused official-train images, cell-balanced
  (every (y, z_1..z_N) equally likely): group-labelled data outside training, for methods that
  refit on it (DFR).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from mimmx import data
from mimmx.errors import RunWarning, UserError
from mimmx.scenarios.factors import INDUCED, NATURAL, Context, check_factor_source

TEST_SETS = ("validation", "inverted", "balanced")
SPLITS = ("train", "selection", *TEST_SETS, "holdout")  # holdout: only when n_holdout > 0


class InfeasibleScenarioError(UserError, ValueError):
    """The requested distribution cannot be built (bad table, too few images for a cell)."""


@dataclass(frozen=True)
class FactorSpec:
    """One spurious factor z_i.

    Give its association with y either as ``r`` (binary: P(z = y) = r; K values: P(z = k | y = k)
    = r, the rest spread evenly) or as the joint ``table`` P(y, z) (rows y, columns z).
    ``kind="induced"``: ``source`` names a transform in ``INDUCED``; ``kind="natural"``: an
    attribute in ``NATURAL``, binarised as z = attribute > threshold (``threshold`` if given,
    else the ``quantile`` of the attribute over the official train split).
    """

    name: str
    kind: str
    source: str
    r: float | None = None
    table: tuple[tuple[float, ...], ...] | None = None
    threshold: float | None = None
    quantile: float = 0.5
    analogue: str = ""  # the medical factor it stands for, e.g. "sex"


@dataclass(frozen=True)
class ScenarioSpec:
    name: str
    dataset: str
    factors: tuple[FactorSpec, ...]
    y_groups: tuple[tuple[int, ...], ...] | None = None  # y = index of the group holding the class
    y_names: tuple[str, ...] | None = None
    # y induced by the transform INDUCED[y_source] (y_groups then only choose the usable classes)
    y_source: str | None = None
    p_y: tuple[float, ...] | None = None  # default: uniform (or the tables' row sums)
    # P(recorded y ≠ the image's class group): the image determines y only up to this rate, as
    # age is only partly readable from a brain MRI; a shortcut then pays at any training size
    y_noise: float = 0.0
    n_train: int = 20000
    n_selection: int = 2000
    n_test: int = 3000  # per test set
    n_holdout: int = 0  # cell-balanced images from the official train split, outside training
    confounded: bool = True  # False: train and selection with z independent of y (the Oracle's data)
    story: str = ""
    draws: str | None = None  # the name the random draws are seeded by (default: ``name``)


@dataclass
class SplitData:
    x: torch.Tensor  # (n, 28, 28) uint8
    y: torch.Tensor  # (n,) int64
    z: torch.Tensor  # (n, N) int64
    index: torch.Tensor  # (n,) index into the official split `source`
    source: str  # "train" | "test"

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device) -> SplitData:
        return SplitData(self.x.to(device), self.y.to(device), self.z.to(device), self.index, self.source)

    def take(self, idx: torch.Tensor) -> SplitData:
        """The images ``idx`` of this split (a subset, in that order)."""
        return SplitData(self.x[idx], self.y[idx], self.z[idx], self.index[idx], self.source)


@dataclass
class Scenario:
    spec: ScenarioSpec
    seed: int
    splits: dict[str, SplitData]
    n_y: int
    z_values: list[tuple[str, ...]]  # names of each factor's values
    cond: list[np.ndarray]  # P(z_i | y), (n_y, K_i), of the training distribution
    p_y: np.ndarray
    thresholds: dict[str, float] = field(default_factory=dict)

    @property
    def factor_names(self) -> list[str]:
        return [f.name for f in self.spec.factors]

    @property
    def n_z(self) -> list[int]:
        return [len(v) for v in self.z_values]

    @property
    def y_names(self) -> tuple[str, ...]:
        if self.spec.y_names:
            return self.spec.y_names
        if self.spec.y_source:
            return INDUCED[self.spec.y_source].values
        return tuple(str(k) for k in range(self.n_y))

    def contingency(self, splits=None) -> pd.DataFrame:
        """Tidy table of counts and ratios of (y, z_i) per split and factor."""
        rows = []
        for s in splits or self.splits:
            d = self.splits[s]
            for i, f in enumerate(self.spec.factors):
                k = self.n_z[i]
                counts = torch.bincount(d.y * k + d.z[:, i], minlength=self.n_y * k).view(self.n_y, k)
                for yv in range(self.n_y):
                    for zv in range(k):
                        c = int(counts[yv, zv])
                        rows.append({"split": s, "factor": f.name, "y": self.y_names[yv],
                                     "z": self.z_values[i][zv], "count": c, "ratio": c / max(len(d), 1)})
        return pd.DataFrame(rows)


def with_factor(scenario: Scenario, name: str, values: dict[str, torch.Tensor]) -> Scenario:
    """``scenario`` with one more factor, measured rather than drawn: z = value > the median of
    the training split's values (≥ when nothing is above it, as for a 0 / 1 column), for ``values`` (one number per image of every split, e.g. an
    audited attribute). The images and splits are unchanged, so the factor keeps whatever
    association with y the data have; ``cond`` holds the one observed on the training split."""
    if name in scenario.factor_names:
        raise UserError(f"{name!r} is already a factor of {scenario.spec.name}")
    missing = [s for s in scenario.splits if s not in values]
    if missing:
        raise UserError(f"with_factor: no values for the split(s) {', '.join(missing)}")
    train_values = torch.as_tensor(values["train"]).double()
    threshold = float(train_values.median())
    strict = bool((train_values > threshold).any())  # a two-valued attribute: its larger value
    if strict and not (train_values <= threshold).any() or not strict and train_values.min() == threshold:
        raise UserError(f"with_factor: {name!r} takes one value on the training split; it cannot be a factor")
    splits = {}
    for s, d in scenario.splits.items():
        v = torch.as_tensor(values[s]).double().flatten()
        if len(v) != len(d):
            raise UserError(f"with_factor: {len(v)} values for the {s} split's {len(d)} images")
        z = (v > threshold if strict else v >= threshold).long().to(d.z.device)
        splits[s] = SplitData(d.x, d.y, torch.cat([d.z, z[:, None]], 1), d.index, d.source)
    train = splits["train"]
    counts = torch.bincount(train.y * 2 + train.z[:, -1], minlength=scenario.n_y * 2).view(scenario.n_y, 2)
    cond = (counts.double() / counts.sum(1, keepdim=True).clamp_min(1)).numpy()
    factor = FactorSpec(name, "natural", f"measured:{name}", threshold=threshold)
    spec = dataclasses.replace(scenario.spec, factors=(*scenario.spec.factors, factor))
    return dataclasses.replace(scenario, spec=spec, splits=splits,
                               z_values=[*scenario.z_values, (f"{name} low", f"{name} high")],
                               cond=[*scenario.cond, cond],
                               thresholds={**scenario.thresholds, name: threshold})


# --- distributions ------------------------------------------------------------------------

def _conditionals(spec: ScenarioSpec, n_y: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """P(y) and P(z_i | y) for every factor, validated."""
    p_y = None if spec.p_y is None else np.asarray(spec.p_y, dtype=float)
    cond = []
    for f in spec.factors:
        k = INDUCED[f.source].n_values if f.kind == "induced" else 2
        if (f.r is None) == (f.table is None):
            raise InfeasibleScenarioError(f"factor {f.name!r}: give exactly one of r or table")
        if f.r is not None:
            if not 0.0 <= f.r <= 1.0:
                raise InfeasibleScenarioError(f"factor {f.name!r}: r = {f.r} is outside [0, 1]")
            if k != n_y:
                raise InfeasibleScenarioError(
                    f"factor {f.name!r}: r needs as many z values as y classes ({k} vs {n_y}); give a table")
            c = np.full((n_y, k), (1.0 - f.r) / (k - 1))
            np.fill_diagonal(c, f.r)
        else:
            t = np.asarray(f.table, dtype=float)
            if t.shape != (n_y, k):
                raise InfeasibleScenarioError(
                    f"factor {f.name!r}: table has shape {t.shape}, expected {(n_y, k)} (rows y, columns z)")
            if (t < 0).any():
                raise InfeasibleScenarioError(f"factor {f.name!r}: table has a negative cell")
            if abs(t.sum() - 1.0) > 1e-6:
                raise InfeasibleScenarioError(f"factor {f.name!r}: table sums to {t.sum():.4f}, not 1")
            rows = t.sum(1)
            if (rows == 0).any():
                raise InfeasibleScenarioError(f"factor {f.name!r}: table row y={int(np.argmin(rows))} is empty")
            if p_y is not None and not np.allclose(rows, p_y, atol=1e-6):
                raise InfeasibleScenarioError(
                    f"factor {f.name!r}: table rows give P(y) = {rows.round(4).tolist()}, "
                    f"but P(y) = {np.round(p_y, 4).tolist()} elsewhere")
            p_y = rows
            c = t / rows[:, None]
        cond.append(c)
    if p_y is None:
        p_y = np.full(n_y, 1.0 / n_y)
    if p_y.shape != (n_y,) or abs(p_y.sum() - 1) > 1e-6 or (p_y < 0).any():
        raise InfeasibleScenarioError(f"P(y) = {p_y.tolist()} is not a distribution over {n_y} classes")
    return p_y, cond


def _warn_no_minority(spec: ScenarioSpec, cond: list[np.ndarray]) -> None:
    """Warn for each factor whose P(z | y) leaves cells empty (r = 1 or 0, or a table with
    zeros): the training set then never shows those (y, z) pairs."""
    for f, c in zip(spec.factors, cond):
        if (c == 0).any():
            y, z = np.argwhere(c == 0)[0]
            given = f"r = {f.r}" if f.r is not None else "its table"
            warnings.warn(f"scenario {spec.name!r}, factor {f.name!r}: {given} leaves cells with no "
                          f"training images (e.g. y = {y}, z = {z}): no minority cells, so a model "
                          "can never see y and z disagree, and the Inverted set tests cells absent "
                          "from training. Use r < 1 to keep a few.", RunWarning, stacklevel=3)


def _warn_empty_cells(spec: ScenarioSpec, split: str, n: int, p_y: np.ndarray,
                      cond: list[np.ndarray]) -> None:
    """Warn when the Balanced set's ``n`` images are too few for every cell (y, z_1..z_N): its
    accuracy and worst group then say nothing of the empty cells."""
    cells = list(itertools.product(range(len(p_y)), *[range(c.shape[1]) for c in cond]))
    wanted = [c for c in cells if p_y[c[0]] * np.prod([cond[i][c[0], zi] for i, zi in enumerate(c[1:])]) > 0]
    empty = [c for c in wanted if c not in cell_counts(n, p_y, cond)]
    if empty:
        names = ["y", *[f.name for f in spec.factors]]
        shown = "; ".join(", ".join(f"{k}={v}" for k, v in zip(names, c)) for c in empty[:4])
        warnings.warn(f"scenario {spec.name!r}: the {split} set ({n} images) has no image in "
                      f"{len(empty)} of its {len(wanted)} cells ({shown}{'; …' if len(empty) > 4 else ''}); "
                      "its accuracy and worst group ignore them. Raise n_test.", RunWarning, stacklevel=3)


def split_conditionals(cond: list[np.ndarray], split: str) -> list[np.ndarray]:
    """P_s(z_i | y) of a split (see the module docstring)."""
    if split == "inverted":
        return [(1.0 - c) / (c.shape[1] - 1) for c in cond]
    if split == "balanced":
        return [np.full_like(c, 1.0 / c.shape[1]) for c in cond]
    return cond


def cell_counts(n: int, p_y: np.ndarray, cond: list[np.ndarray]) -> dict[tuple[int, ...], int]:
    """Counts per cell (y, z_1..z_N) summing to n: n · P(y) Π P(z_i|y), largest remainder."""
    cells = list(itertools.product(range(len(p_y)), *[range(c.shape[1]) for c in cond]))
    p = np.array([p_y[c[0]] * np.prod([cond[i][c[0], zi] for i, zi in enumerate(c[1:])]) for c in cells])
    return rounded_counts(n, cells, p)


def rounded_counts(n: int, cells: list[tuple[int, ...]], p: np.ndarray) -> dict[tuple[int, ...], int]:
    """Integer counts summing to n for cells of probability p (largest remainder: the floors of
    n·p, then one more for the cells with the largest fractional parts); empty cells left out."""
    exact = n * p
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    counts[order[: n - counts.sum()]] += 1
    return {c: int(k) for c, k in zip(cells, counts) if k > 0}


# --- building -----------------------------------------------------------------------------

def _generator(seed: int, *parts: str) -> torch.Generator:
    digest = hashlib.sha256(":".join([str(seed), *parts]).encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little"))


def _labels_y(spec: ScenarioSpec, labels: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Primary label per image (-1: the class is in no group and is not used). With an induced y
    every usable image is 0 here: its y is assigned when it is drawn."""
    if spec.y_source is not None:
        usable = torch.ones_like(labels, dtype=torch.bool)
        if spec.y_groups is not None:
            usable = torch.isin(labels, torch.tensor([c for g in spec.y_groups for c in g]))
        return torch.where(usable, 0, -1), INDUCED[spec.y_source].n_values
    if spec.y_groups is None:
        return labels.clone(), int(labels.max()) + 1
    lut = torch.full((int(labels.max()) + 1,), -1, dtype=torch.long)
    for g, classes in enumerate(spec.y_groups):
        lut[list(classes)] = g
    return lut[labels], len(spec.y_groups)


def _noisy_labels(y: torch.Tensor, n_y: int, rate: float, gen: torch.Generator) -> torch.Tensor:
    """Each used label (y ≥ 0) replaced with probability ``rate`` by another class, uniformly."""
    flip = (torch.rand(len(y), generator=gen) < rate) & (y >= 0)
    shift = torch.randint(1, n_y, (len(y),), generator=gen)
    return torch.where(flip, (y + shift) % n_y, y)


def build(spec: ScenarioSpec, seed: int = 0, root=None, base: dict | None = None,
          attributes: dict[str, dict[str, torch.Tensor]] | None = None) -> Scenario:
    """Build every split of ``spec`` deterministically from ``seed``.

    The base images are ``data.load(spec.dataset, split)`` for the official ``train`` and
    ``test`` splits, unless ``base`` gives them (``{"train": Split, "test": Split}``, e.g. a
    user's cohort). ``attributes`` supplies natural factors measured elsewhere (a cohort's CSV
    columns): ``{source: {"train": values (n,), "test": values (n,)}}``, used for factors whose
    ``source`` is a key of it.
    """
    attributes = attributes or {}
    if spec.y_source is not None:
        check_factor_source("induced", spec.y_source, spec.dataset, "y")
        if spec.y_noise > 0:
            raise InfeasibleScenarioError(f"scenario {spec.name!r}: y_noise needs a y read from the "
                                          "labels, not an induced y (y_source)")
    for f in spec.factors:
        if not (f.kind == "natural" and f.source in attributes):
            check_factor_source(f.kind, f.source, spec.dataset, f.name)
    base = base or {s: data.load(spec.dataset, s, root) for s in ("train", "test")}
    y_all = {}
    for s in base:
        y_all[s], n_y = _labels_y(spec, base[s].labels)
    if not 0.0 <= spec.y_noise < (n_y - 1) / n_y:
        raise InfeasibleScenarioError(f"scenario {spec.name!r}: y_noise = {spec.y_noise} must be in "
                                      f"[0, {(n_y - 1) / n_y:g}) (at {(n_y - 1) / n_y:g} y is pure noise)")
    if spec.y_noise > 0:
        y_all = {s: _noisy_labels(y, n_y, spec.y_noise, _generator(seed, spec.draws or spec.name, "y_noise", s))
                 for s, y in y_all.items()}
    p_y, cond = _conditionals(spec, n_y)
    if spec.confounded:
        _warn_no_minority(spec, cond)

    # natural attributes: measured on the plain images, thresholds from the official train split
    natural = [i for i, f in enumerate(spec.factors) if f.kind == "natural"]
    z_nat = {s: torch.zeros(len(base[s].labels), len(spec.factors), dtype=torch.long) for s in base}
    thresholds = {}
    for i in natural:
        f = spec.factors[i]
        if f.source in attributes:
            values = {s: torch.as_tensor(attributes[f.source][s]).double() for s in base}
        else:
            values = {s: NATURAL[f.source](base[s].images, Context(
                spec.dataset, s, torch.arange(len(base[s].labels)), _generator(seed, "natural")))
                for s in base}
        thr = f.threshold if f.threshold is not None else float(
            torch.quantile(values["train"][y_all["train"] >= 0].double(), f.quantile))
        thresholds[f.name] = thr
        for s in base:
            z_nat[s][:, i] = (values[s] > thr).long()

    train_like = "train" if spec.confounded else "balanced"  # the conditionals of train and selection
    plan = [("train", "train", spec.n_train, train_like), ("selection", "train", spec.n_selection, train_like),
            *[(t, "test", spec.n_test, t) for t in TEST_SETS]]
    if spec.n_holdout > 0:
        plan.append(("holdout", "train", spec.n_holdout, "balanced"))
    used = {s: torch.zeros(len(base[s].labels), dtype=torch.bool) for s in base}
    splits = {}
    for name, source, n, like in plan:
        if name == "balanced":
            _warn_empty_cells(spec, name, n, p_y, split_conditionals(cond, like))
        splits[name] = _draw(spec, name, source, n, seed, base[source], y_all[source], z_nat[source],
                             used[source], p_y, split_conditionals(cond, like), natural)
    z_values = [INDUCED[f.source].values if f.kind == "induced" else (f"{f.source} low", f"{f.source} high")
                for f in spec.factors]
    return Scenario(spec, seed, splits, n_y, z_values, cond, p_y, thresholds)


def _draw(spec, name, source, n, seed, base, y_all, z_nat, used, p_y, cond, natural) -> SplitData:
    """Pick images for every cell of one split, mark them used, and apply the induced factors."""
    counts = cell_counts(n, p_y, cond)
    gen = _generator(seed, spec.draws or spec.name, name)
    perm = torch.randperm(len(y_all), generator=gen)
    # the pool key of an image: y and its natural factor values (induced ones are assigned freely)
    key_of = y_all.clamp(max=0) if spec.y_source else y_all.clone()  # an induced y is not in the pool key
    for i in natural:
        key_of = key_of * 2 + z_nat[:, i]
    order = perm[~used[perm] & (y_all[perm] >= 0)]
    taken_idx, taken_cell = [], []
    needed: dict[int, list[tuple[int, ...]]] = {}
    for cell, k in counts.items():
        key = 0 if spec.y_source else cell[0]
        for i in natural:
            key = key * 2 + cell[1 + i]
        needed.setdefault(key, []).extend([cell] * k)
    for key, cells in needed.items():
        pool = order[key_of[order] == key]
        if len(pool) < len(cells):
            cell = cells[0]
            desc = ", ".join(([] if spec.y_source else
                              [f"y={spec.y_names[cell[0]] if spec.y_names else cell[0]}"]) +
                             [f"{spec.factors[i].name}={cell[1 + i]}" for i in natural]) or "any image"
            raise InfeasibleScenarioError(
                f"scenario {spec.name!r}, split {name!r}: the cell ({desc}) needs {len(cells)} images but "
                f"only {len(pool)} unused {source}-split images have these labels; lower n_"
                f"{'test' if source == 'test' else name} or soften the factor's table")
        # shuffle the cells so that induced values are assigned at random within the pool
        cell_perm = torch.randperm(len(cells), generator=gen).tolist()
        taken_idx.append(pool[: len(cells)])
        taken_cell.extend(cells[j] for j in cell_perm)
    index = torch.cat(taken_idx)
    cells = torch.tensor(taken_cell, dtype=torch.long)
    shuffle = torch.randperm(len(index), generator=gen)
    index, cells = index[shuffle], cells[shuffle]
    used[index] = True

    y, z = cells[:, 0], cells[:, 1:]
    x = base.images[index].clone()
    ctx = Context(spec.dataset, source, index, gen)
    if spec.y_source is not None:  # y's own transform first, on the plain images
        x = INDUCED[spec.y_source].fn(x, y, ctx)
    induced = sorted((i for i, f in enumerate(spec.factors) if f.kind == "induced"),
                     key=lambda i: INDUCED[spec.factors[i].source].stage)
    for i in induced:
        x = INDUCED[spec.factors[i].source].fn(x, z[:, i], ctx)
    return SplitData(x.contiguous(), y, z.contiguous(), index, source)


def sample_grid(scenario: Scenario, split: str = "train", factor: int = 0, per_cell: int = 6,
                seed: int = 0) -> tuple[torch.Tensor, list[str]]:
    """Example images of every cell (y, z_factor) of a split, for notebooks and the app.

    Returns images (n_cells, per_cell, 28, 28) uint8 (cells with fewer images are padded with
    black) and a label per cell, in row-major (y, z) order."""
    d = scenario.splits[split]
    gen = torch.Generator().manual_seed(seed)
    k = scenario.n_z[factor]
    cells, labels = [], []
    for yv in range(scenario.n_y):
        for zv in range(k):
            idx = torch.nonzero((d.y == yv) & (d.z[:, factor] == zv)).flatten()
            idx = idx[torch.randperm(len(idx), generator=gen)[:per_cell]]
            imgs = torch.zeros(per_cell, *d.x.shape[1:], dtype=torch.uint8)
            imgs[: len(idx)] = d.x[idx]
            cells.append(imgs)
            labels.append(f"y={scenario.y_names[yv]}, {scenario.factor_names[factor]}="
                          f"{scenario.z_values[factor][zv]} ({int(((d.y == yv) & (d.z[:, factor] == zv)).sum())})")
    return torch.stack(cells), labels


def facet_titles(fig, labels: list[str]) -> None:
    """Title each facet of a ``px.imshow(..., facet_col=0)`` figure with ``labels[i]``, i the
    image's index. Plotly lists the facet annotations from the bottom row up, each with the text
    ``facet_col=i``; the index in that text, not the annotation's position, names the image."""
    for annotation in fig.layout.annotations:
        annotation.text = labels[int(annotation.text.rsplit("=", 1)[1])]


def sample_figure(scenario: Scenario, split: str = "train", factor: int = 0, per_cell: int = 6,
                  seed: int = 0):
    """A plotly figure of :func:`sample_grid`: one row per cell, with the cell's count."""
    import plotly.express as px

    grid, labels = sample_grid(scenario, split, factor, per_cell, seed)
    n_cells, n, h, w = grid.shape
    mosaic = grid.permute(0, 2, 1, 3).reshape(n_cells, h, n * w)  # cells side by side per row
    fig = px.imshow(mosaic.numpy(), facet_col=0, facet_col_wrap=1, binary_string=True,
                    facet_row_spacing=0.04, height=110 * n_cells + 60)
    facet_titles(fig, labels)
    fig.update_xaxes(showticklabels=False).update_yaxes(showticklabels=False)
    fig.update_layout(title=f"{scenario.spec.name}: {split} samples per (y, {scenario.factor_names[factor]})",
                      margin=dict(l=10, r=10, t=60, b=10))
    return fig
