"""Shortcut audit: which attribute of the images (or of a cohort's metadata) does a trained
model's f_y, and do its errors, depend on beyond what the task y explains?

For every candidate attribute a (a number per held-out image: measured from the image, a
metadata column, or a known factor listed among the others without telling which is which):

- **dependence within class**: dCor(f_y, a | y) = Σ_c (n_c / n) · dCor(f_y[y = c], a[y = c]),
  the distance correlation (Székely et al. 2007) inside each class, so that an attribute that
  merely follows y (a consequence of the task, such as a fracture's ink) scores ≈ 0;
- its **permutation test**: f_y permuted within each class (equivalently a), 999 times by default; p = (1 + #{perm
  ≥ observed}) / (1 + n_perm), and p · (number of candidates) (Bonferroni) against the level;
- a **bootstrap interval** (resampling images within each class; for dCor the basic interval
  2·dCor − q, since repeated images inflate it);
- **error slices**: y accuracy in each (y, a above / below its median) group, and the largest
  gap between the two halves of one class, in points (with its bootstrap interval).

Candidates rank by dCor(f_y, a | y). Measures of one thing (a marker and the intensity of the
corner it sits in) are grouped into **families**: two candidates are linked when they agree,
|γ| ≥ ``SAME`` for the Goodman–Kruskal γ = (C − D) / (C + D) over the pairs of images of one class
(C, D: pairs the two attributes order alike / oppositely; ties left out, so a binary factor and a
measure that separates its two values get |γ| = 1); a family is a linked group (single linkage),
ranked and headed by its strongest member. Distance matrices are double-centred once per class; a
permutation only reorders f_y's (dCov² = mean(A · B[p][:, p])), one matrix product for all
candidates per batch of permutations, so 999 permutations cost little.
See docs/audit.md for what each measure means and its pitfalls.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from mimmx.errors import UserError

LEVEL = 0.05  # family-wise, Bonferroni over the candidates
SAME = 0.7  # |γ| at which two candidates count as measures of one thing (one family)


# ----------------------------------------------------------------------------- candidates


def image_attributes(images: Tensor, morphometrics: bool = False) -> pd.DataFrame:
    """Attributes measurable from any grayscale images (N, H, W) uint8, one column each:
    intensity (mean), contrast (std), sharpness (variance of the Laplacian), noise (median
    |Laplacian| on the background), border (mean of the outer 3-pixel frame), the four corners
    (mean of a 5 × 5 patch each), extent (share of the image inside the ink's bounding box);
    with ``morphometrics``, Morpho-MNIST's area, length, thickness, slant, width, height."""
    x = images.float().div(255.0)
    n, h, w = x.shape
    lap = torch.nn.functional.conv2d(
        x[:, None], torch.tensor([[[[0.0, 1, 0], [1, -4, 1], [0, 1, 0]]]]), padding=1)[:, 0]
    background = x < 0.1
    frame = torch.ones(h, w, dtype=torch.bool)
    frame[3:-3, 3:-3] = False
    ink = x > 0.2
    rows, cols = ink.any(2), ink.any(1)

    def span(m: Tensor) -> Tensor:
        idx = torch.arange(m.shape[1]).expand_as(m)
        first = torch.where(m, idx, m.shape[1]).min(1).values
        last = torch.where(m, idx, -1).max(1).values
        return (last - first + 1).clamp_min(0).float()

    out = {
        "intensity": x.mean((1, 2)),
        "contrast": x.std((1, 2)),
        "sharpness": lap.var((1, 2)),
        "noise": torch.stack([lap[i][background[i]].abs().median() if background[i].any()
                              else lap.new_tensor(0.0) for i in range(n)]),
        "border": x[:, frame].mean(1),
        "corner top-left": x[:, :5, :5].mean((1, 2)),
        "corner top-right": x[:, :5, -5:].mean((1, 2)),
        "corner bottom-left": x[:, -5:, :5].mean((1, 2)),
        "corner bottom-right": x[:, -5:, -5:].mean((1, 2)),
        "extent": span(rows) * span(cols) / (h * w),
    }
    frame_df = pd.DataFrame({k: v.numpy() for k, v in out.items()})
    if morphometrics:
        from mimmx.morpho import measure

        frame_df = pd.concat([frame_df, measure(images.numpy()).reset_index(drop=True)], axis=1)
    return frame_df


def metadata_attributes(frame: pd.DataFrame, max_levels: int = 12) -> tuple[pd.DataFrame, list[str]]:
    """A manifest's columns as numeric candidates: a numeric column as it is (missing values:
    the median, plus a "COLUMN missing" indicator); a categorical one with two values as 0 / 1
    ("COLUMN = VALUE", the later value in sorted order), with 3 to ``max_levels`` values as one
    indicator per value; columns with
    more values (identifiers, paths) or one value are left out, and named in the second list."""
    out, skipped = {}, []
    for name in frame.columns:
        col = frame[name]
        if pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
            values = col.astype(float)
            if values.isna().any():
                out[f"{name} missing"] = values.isna().astype(float)
            values = values.fillna(values.median())
            if values.nunique() > 1:
                out[str(name)] = values
            else:
                skipped.append(str(name))
            continue
        levels = col.astype(str).where(col.notna(), "(missing)")
        values = sorted(levels.unique())
        if len(values) < 2 or len(values) > max_levels:
            skipped.append(str(name))
            continue
        for level in values[1:] if len(values) == 2 else values:  # named alike on any rows
            out[f"{name} = {level}"] = (levels == level).astype(float)
    return pd.DataFrame(out).reset_index(drop=True), skipped


def cohort_metadata(cohort, split) -> pd.DataFrame:
    """The manifest rows of the images of a cohort scenario's ``split``
    (:class:`~mimmx.scenarios.builder.SplitData`), in its order: every column but the image
    path, the label and the declared factors (the audit lists those by name already)."""
    rows = cohort.pool(split.source)[split.index.cpu()]
    drop = {cohort.spec.image_column, cohort.spec.label.column, "y", "pool",
            *(f.key for f in cohort.spec.factors), *(f.column for f in cohort.spec.factors)}
    manifest = cohort.rows.iloc[rows.numpy()]
    keep = [c for c in manifest.columns if c not in drop]
    return manifest[keep].reset_index(drop=True)


# ------------------------------------------------------------------------------- measures


def _centred(d: Tensor) -> Tensor:
    return d - d.mean(0, keepdim=True) - d.mean(1, keepdim=True) + d.mean()


def _distances(v: Tensor) -> Tensor:
    v = v.reshape(len(v), -1).double()
    v = (v - v.mean(0)) / v.std(0).clamp_min(1e-12)
    return torch.cdist(v, v)


@dataclass
class _Class:
    """One class's double-centred distance matrix of f_y and its dVar."""

    index: Tensor
    b: Tensor
    dvar_b: float


def _classes(f_y: Tensor, y: Tensor) -> list[_Class]:
    out = []
    for c in torch.unique(y):
        index = torch.nonzero(y == c).flatten()
        if len(index) < 4:
            continue
        b = _centred(_distances(f_y[index]))
        out.append(_Class(index, b, float((b * b).mean())))
    return out


def _centred_many(values: Tensor) -> Tensor:
    """The double-centred distance matrices of K one-dimensional attributes (K, m) -> (K, m, m),
    each standardised first (dCor does not depend on scale)."""
    v = values.double()
    v = ((v - v.mean(1, keepdim=True)) / v.std(1, keepdim=True).clamp_min(1e-12)).float()
    d = (v[:, :, None] - v[:, None, :]).abs()
    return d - d.mean(1, keepdim=True) - d.mean(2, keepdim=True) + d.mean((1, 2), keepdim=True)


def _dcor_within(classes: list[_Class], values: Tensor) -> Tensor:
    """dCor(f_y, a | y) of each row a of ``values`` (K, n): the classes' dCor weighted by their
    sizes."""
    n = sum(len(c.index) for c in classes)
    total = torch.zeros(len(values), dtype=torch.float64)
    for c in classes:
        am = _centred_many(values[:, c.index])
        dvar_a = (am * am).mean((1, 2)).double()
        dcov = (am * c.b.float()).mean((1, 2)).double()
        ok = (dvar_a > 1e-12) & (c.dvar_b > 0)
        dcor = (dcov.clamp_min(0) / (dvar_a * c.dvar_b).clamp_min(1e-300).sqrt()).sqrt()
        total += torch.where(ok, dcor, torch.zeros_like(dcor)) * len(c.index) / n
    return total


def _null_dcor(classes: list[_Class], values: Tensor, n_permutations: int,
               gen: torch.Generator, chunk: int = 32) -> Tensor:
    """dCor(f_y, a | y) of every candidate a (rows of ``values``, (K, n)) under
    ``n_permutations`` within-class permutations, (K, permutations). Permuting f_y's images
    permutes its centred distance matrix B alike (B[p][:, p]), and dCov² = mean(A ⊙ B) for every
    candidate at once is one matrix product, so the cost hardly grows with the candidates."""
    n = sum(len(c.index) for c in classes)
    total = torch.zeros(len(values), n_permutations)
    for c in classes:
        m = len(c.index)
        am = _centred_many(values[:, c.index])
        dvar_a = (am * am).mean((1, 2)).double()
        ok = (dvar_a > 1e-12) & (c.dvar_b > 0)
        am, b = am.flatten(1), c.b.float().flatten()
        perms = torch.stack([torch.randperm(m, generator=gen) for _ in range(n_permutations)])
        for start in range(0, n_permutations, chunk):
            p = perms[start:start + chunk]
            bp = b[(p[:, :, None] * m + p[:, None, :]).flatten(1)]  # (chunk, m²): B permuted
            dcov = (am @ bp.T).double() / (m * m)  # (K, chunk)
            dcor = (dcov.clamp_min(0) / (dvar_a[:, None] * c.dvar_b).clamp_min(1e-300).sqrt()).sqrt()
            total[:, start:start + chunk] += (dcor * ok[:, None]).float() * m / n
    return total


def _ranks(v: Tensor) -> Tensor:
    """Ranks along the last dimension, standardised (mean 0, variance 1): Spearman's ρ is then
    the mean of a product."""
    r = v.argsort(-1).argsort(-1).float()
    return (r - r.mean(-1, keepdim=True)) / r.std(-1, unbiased=False, keepdim=True).clamp_min(1e-12)


def _push(y: Tensor, score: Tensor, values: Tensor, n_permutations: int,
          gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """(push, its null (K, permutations)): push(a) = Σ_c (n_c / n) ρ_s(a, score | y = c), the
    within-class Spearman correlation between each attribute and the model's decision score
    (the logit of class 1 minus class 0), weighted by class size. A shortcut moves the decision
    towards the class the attribute goes with in training, in every class alike, so its push is
    far from 0; an attribute that only changes how sure the model is (a blurred image: scores
    drawn towards 0 in both classes) pushes the two classes opposite ways and cancels."""
    n = len(y)
    push = torch.zeros(len(values))
    null = torch.zeros(len(values), n_permutations)
    for c in torch.unique(y):
        idx = torch.nonzero(y == c).flatten()
        if len(idx) < 4:
            continue
        ra, rs = _ranks(values[:, idx].float()), _ranks(score[idx].float())
        perms = torch.stack([torch.randperm(len(idx), generator=gen) for _ in range(n_permutations)])
        push += (ra @ rs) / len(idx) * len(idx) / n
        null += (ra @ rs[perms].T) / len(idx) * len(idx) / n
    return push, null


def _upper_half(a: Tensor) -> Tensor:
    """a above its median (a two-valued attribute: its larger value)."""
    high = a > a.median()
    return high if high.any() else a >= a.median()


def _slice_gap(pred: Tensor, y: Tensor, high: Tensor) -> float:
    """The largest gap (points) in y accuracy between an attribute's two halves within a class."""
    gaps = []
    for c in torch.unique(y):
        m = y == c
        lo, hi = m & ~high, m & high
        if lo.any() and hi.any():
            acc = [100.0 * float((pred[s] == y[s]).float().mean()) for s in (lo, hi)]
            gaps.append(abs(acc[0] - acc[1]))
    return max(gaps) if gaps else 0.0


def agreement(values: pd.DataFrame, y: Tensor) -> pd.DataFrame:
    """|γ| between every two columns of ``values``: Goodman–Kruskal γ = (C − D) / (C + D) summed
    over the pairs of rows of one class of ``y`` (concordant C, discordant D, ties left out)."""
    a = torch.tensor(values.to_numpy(dtype=float)).T  # (k, n)
    concord = torch.zeros(len(a), len(a), dtype=torch.float64)
    ordered = torch.zeros_like(concord)
    for c in torch.unique(y):
        v = a[:, y == c]
        signs = torch.sign(v[:, :, None] - v[:, None, :]).flatten(1)  # (k, n_c²)
        concord += signs @ signs.T
        ordered += signs.abs() @ signs.abs().T
    gamma = (concord / ordered.clamp_min(1)).abs()
    return pd.DataFrame(gamma.numpy(), index=values.columns, columns=values.columns)


def _families(ranked: list[str], gamma: pd.DataFrame, same: float) -> tuple[list[int], list[str]]:
    """(family rank, head) of each candidate of ``ranked`` (strongest first): families are the
    groups linked by |γ| ≥ ``same`` (single linkage), ranked and headed by their strongest member."""
    head = {name: name for name in ranked}

    def find(name: str) -> str:
        while head[name] != name:
            name = head[name]
        return name

    for i, a in enumerate(ranked):
        for b in ranked[:i]:
            if gamma.loc[a, b] >= same:
                ra, rb = find(a), find(b)
                if ra != rb:  # the stronger root heads the merged family
                    first, second = sorted((ra, rb), key=ranked.index)
                    head[second] = first
    heads = list(dict.fromkeys(find(name) for name in ranked))
    return [heads.index(find(name)) + 1 for name in ranked], [find(name) for name in ranked]


def audit(f_y: Tensor, y: Tensor, pred: Tensor, attributes: pd.DataFrame, *,
          kinds: dict[str, str] | None = None, n_permutations: int = 999, n_bootstrap: int = 200,
          max_points: int = 800, seed: int = 0, level: float = LEVEL, same: float = SAME,
          score: Tensor | None = None) -> pd.DataFrame:
    """Rank the ``attributes`` (one row per image, one column per candidate) by how much f_y
    depends on them within each class of y, with the model's predictions ``pred`` for the error
    slices. One row per candidate, strongest first: ``candidate, kind, dcor, dcor_low,
    dcor_high, p, p_adjusted, push, p_push, flagged, gap, gap_low, gap_high, family, same_as`` (gap
    in points). With the model's decision ``score`` (binary y: logit 1 − logit 0), ``push`` is
    :func:`_push` and ``p_push`` its within-class permutation test, Bonferroni-adjusted; without
    it both are NaN. ``flagged``: p_adjusted < ``level`` and, with a score, p_push < ``level``
    too (f_y reads the attribute *and* it moves the decision). ``family``: the rank of the candidate's family
    (measures of one thing: groups linked by |γ| ≥ ``same``); ``same_as``: its head (the
    family's strongest member), or "" for a head. At most ``max_points`` images are used (a seeded subsample)."""
    if len(f_y) != len(attributes) or len(y) != len(f_y) or len(pred) != len(f_y):
        raise ValueError(f"f_y ({len(f_y)}), y ({len(y)}), pred ({len(pred)}) and the attributes "
                         f"({len(attributes)}) must describe the same images")
    gen = torch.Generator().manual_seed(seed)
    keep = torch.randperm(len(f_y), generator=gen)[:max_points].sort().values
    f_y, y, pred = f_y[keep].float(), y[keep], pred[keep]
    score = None if score is None else score[keep].float()
    values = attributes.iloc[keep.numpy()].reset_index(drop=True)
    classes = _classes(f_y, y)
    boots = [torch.cat([c.index[torch.randint(len(c.index), (len(c.index),), generator=gen)]
                        for c in classes]) for _ in range(n_bootstrap)]
    candidates = {}
    for name in values.columns:
        a = torch.tensor(values[name].to_numpy(dtype=float))
        if torch.isfinite(a).all() and float(a.std()) > 0.0:
            candidates[name] = (a, _upper_half(a))
    names = list(candidates)
    stack = torch.stack([a for a, _ in candidates.values()]) if candidates else torch.zeros(0, len(y))
    observed = _dcor_within(classes, stack)
    null = _null_dcor(classes, stack, n_permutations, gen)
    rows = [{"candidate": name, "kind": (kinds or {}).get(name, "image"), "dcor": float(obs),
             "p": (1.0 + float((null_a >= float(obs) - 1e-6).sum())) / (1.0 + n_permutations),
             "gap": _slice_gap(pred, y, candidates[name][1])}
            for name, obs, null_a in zip(names, observed, null)]
    if score is not None and len(rows):
        push, push_null = _push(y, score, stack, n_permutations, gen)
        for row, v, null_v in zip(rows, push, push_null):
            row.update(push=float(v), p_push=(1.0 + float((null_v.abs() >= abs(float(v)) - 1e-6).sum()))
                       / (1.0 + n_permutations))
    else:
        for row in rows:
            row.update(push=float("nan"), p_push=float("nan"))
    boot_dcor, boot_gap = [], []
    for idx in boots:  # one resample at a time: its classes' matrices serve every candidate
        boot_dcor.append(_dcor_within(_classes(f_y[idx], y[idx]), stack[:, idx]))
        boot_gap.append([_slice_gap(pred[idx], y[idx], high[idx]) for _, high in candidates.values()])
    dcors = torch.stack(boot_dcor, 1).numpy() if boots else np.full((len(rows), 1), np.nan)
    gaps = np.array(boot_gap).T if boots else np.full((len(rows), 1), np.nan)  # (K, resamples)
    for row, d, g in zip(rows, dcors, gaps):  # dCor: the basic interval, 2·dCor − q, as resampling
        # with replacement repeats images and inflates a V-statistic (its percentiles sit high)
        row.update(dcor_low=max(2 * row["dcor"] - float(np.percentile(d, 97.5)), 0.0),
                   dcor_high=2 * row["dcor"] - float(np.percentile(d, 2.5)),
                   gap_low=float(np.percentile(g, 2.5)), gap_high=float(np.percentile(g, 97.5)))
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["p_adjusted"] = (table["p"] * len(table)).clip(upper=1.0)
    table["p_push"] = (table["p_push"] * len(table)).clip(upper=1.0)
    table["flagged"] = (table["p_adjusted"] < level) & ((table["p_push"] < level) | table["p_push"].isna())
    cols = ["candidate", "kind", "dcor", "dcor_low", "dcor_high", "p", "p_adjusted", "push", "p_push",
            "flagged", "gap", "gap_low", "gap_high"]
    table = table[cols].sort_values("dcor", ascending=False, ignore_index=True)
    gamma = agreement(values[list(table["candidate"])], y)
    table["family"], heads = _families(list(table["candidate"]), gamma, same)
    table["same_as"] = [h if h != c else "" for h, c in zip(heads, table["candidate"])]
    return table


# ------------------------------------------------------------------- slices nobody named


def error_slices(embedding: Tensor, y: Tensor, pred: Tensor, attributes: pd.DataFrame, *,
                 images: Tensor | None = None, per_class: int = 6, min_size: int = 10,
                 n_components: int = 16, seed: int = 0) -> pd.DataFrame:
    """Slices of a held-out set that nobody named, in the spirit of JTT's error set and of slice
    discovery: within each class of y, k-means (``per_class`` clusters) on the standardised
    ``embedding`` (the model's f_y) beside the first ``n_components`` principal components of
    the ``images`` (each block weighted alike), so that a slice can follow image content the
    model does not encode. One row per slice of at least ``min_size`` images, worst first: ``slice, y,
    size, accuracy, class_accuracy, errors`` (the slice's share of its class's errors),
    ``attribute`` (the candidate whose slice mean differs most from the rest of the class),
    ``effect`` (that difference in the class's standard deviations), and ``members`` (the images' positions)."""
    from sklearn.cluster import KMeans

    parts = [embedding.reshape(len(embedding), -1).double()]
    if images is not None and n_components > 0:
        flat = images.reshape(len(images), -1).double() / 255.0
        flat = flat - flat.mean(0)
        _, _, v = torch.linalg.svd(flat, full_matrices=False)
        parts.append(flat @ v[:n_components].T)
    # each block standardised per column and scaled to the same total variance
    x = torch.cat([(p - p.mean(0)) / p.std(0).clamp_min(1e-12) / p.shape[1] ** 0.5 for p in parts], 1).numpy()
    right = (pred == y).numpy()
    values = attributes.to_numpy(dtype=float)
    rows = []
    for c in torch.unique(y).tolist():
        members = np.flatnonzero((y == c).numpy())
        k = min(per_class, len(members) // max(min_size, 1))
        if k < 2:
            continue
        labels = KMeans(k, n_init=4, random_state=seed).fit_predict(x[members])
        errors = max(int((~right[members]).sum()), 1)
        within = values[members]
        spread = within.std(0)
        spread[spread == 0] = np.inf
        for j in range(k):
            inside = members[labels == j]
            if len(inside) < min_size:
                continue
            inside = inside[np.argsort(right[inside], kind="stable")]  # errors first
            rest = members[labels != j]
            effect = (values[inside].mean(0) - values[rest].mean(0)) / spread
            best = int(np.nanargmax(np.abs(effect)))
            rows.append({"y": c, "size": len(inside), "accuracy": 100.0 * right[inside].mean(),
                         "class_accuracy": 100.0 * right[members].mean(),
                         "errors": 100.0 * (~right[inside]).sum() / errors,
                         "attribute": attributes.columns[best], "effect": float(effect[best]),
                         "members": inside.tolist()})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table = table.sort_values("accuracy", ignore_index=True)
    table.insert(0, "slice", range(1, len(table) + 1))
    return table


def slices_figure(slices: pd.DataFrame, images: Tensor, y_names=None, worst: int = 4, per_slice: int = 8):
    """The ``worst`` slices, one row each: up to ``per_slice`` of their images, errors first
    (plotly; titles name the slice, its class, accuracy and describing attribute)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    top = slices.head(worst)
    titles = []
    for r in top.to_dict("records"):
        name = y_names[r["y"]] if y_names else f"y={r['y']}"
        titles += [f"slice {r['slice']}: {name}, {r['accuracy']:.0f} % right, {r['attribute']} "
                   f"{'+' if r['effect'] > 0 else '−'}{abs(r['effect']):.1f} sd"] + [""] * (per_slice - 1)
    fig = make_subplots(rows=max(len(top), 1), cols=per_slice, subplot_titles=titles,
                        horizontal_spacing=0.01, vertical_spacing=0.08)
    for i, r in enumerate(top.to_dict("records")):
        for j, m in enumerate(r["members"][:per_slice]):
            fig.add_trace(go.Heatmap(z=images[m].flip(0).numpy(), colorscale="gray", showscale=False,
                                     hoverinfo="skip"), row=i + 1, col=j + 1)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, scaleanchor="x")
    left = fig.layout.xaxis.domain[0]
    fig.update_annotations(font_size=11, xanchor="left", x=left)  # each title starts its row
    fig.update_layout(title="Slices nobody named: the worst clusters of each class", height=150 * max(len(top), 1) + 80,
                      margin=dict(l=10, r=10, t=70, b=10))
    return fig


@dataclass
class AuditReport:
    """A run's audit on one held-out split: the ranked candidates (:func:`audit`), the slices
    nobody named (:func:`error_slices`), and what it needs to draw them."""

    table: pd.DataFrame
    slices: pd.DataFrame
    split: str
    images: Tensor  # the split's images, for the slices' figure
    y_names: tuple[str, ...]
    skipped: list[str]  # metadata columns left out (identifiers, constants)

    def markdown(self, title: str = "Shortcut audit") -> str:
        md = audit_markdown(self.table, title) + "\n" + slices_markdown(self.slices, self.y_names)
        if self.skipped:
            md += f"\nMetadata columns left out (one value, or too many to compare): {', '.join(self.skipped)}.\n"
        return md

    def figures(self) -> dict:
        return {"candidates": candidates_figure(self.table),
                "slices": slices_figure(self.slices, self.images, self.y_names)}


def run_attributes(result, split: str, morphometrics: bool | None = None,
                   metadata: pd.DataFrame | None = None) -> tuple[pd.DataFrame, dict[str, str], list[str]]:
    """The candidates of a run's ``split``: (attributes, their kinds, metadata columns left out)."""
    data = result.scenario.splits[split]
    if morphometrics is None:
        morphometrics = result.scenario.spec.dataset == "mnist"
    attributes = image_attributes(data.x.cpu(), morphometrics=morphometrics)
    names = result.scenario.factor_names
    attributes = attributes.rename(columns={n: f"{n} (measured)" for n in names if n in attributes})
    for i, name in enumerate(names):
        attributes[name] = data.z[:, i].cpu().numpy().astype(float)
    kinds, skipped = {name: "factor" for name in names}, []
    if metadata is not None:
        if len(metadata) != len(data.y):
            raise ValueError(f"metadata has {len(metadata)} rows; the {split} set has {len(data.y)} images")
        columns, skipped = metadata_attributes(metadata)
        columns = columns.rename(columns={c: f"{c} (metadata)" for c in columns if c in attributes})
        attributes = pd.concat([attributes, columns], axis=1)
        kinds |= {c: "metadata" for c in columns}
    return attributes, kinds, skipped


def audit_run(result, split: str = "balanced", *, morphometrics: bool | None = None,
              metadata: pd.DataFrame | None = None, **options) -> AuditReport:
    """The audit of a trained run (:class:`~mimmx.trainer.RunResult`) on one of its held-out
    ``split``: :func:`audit` of its f_y against the image attributes (with Morpho-MNIST's
    morphometrics on MNIST), the scenario's own factors, listed among them by name (kind
    "factor"), and the columns of ``metadata`` (one row per image of the split, e.g.
    :func:`cohort_metadata`; kind "metadata", see :func:`metadata_attributes`); and the
    :func:`error_slices` of its held-out errors."""
    out = result.features(split)
    attributes, kinds, skipped = run_attributes(result, split, morphometrics, metadata)
    logits = out["logits_y"]
    score = logits[:, 1] - logits[:, 0] if logits.shape[1] == 2 else None
    table = audit(out["f_y"], out["y"], out["pred_y"], attributes, kinds=kinds, score=score, **options)
    images = result.scenario.splits[split].x.cpu()
    slices = error_slices(out["f_y"], out["y"], out["pred_y"], attributes, images=images,
                          seed=options.get("seed", 0))
    return AuditReport(table, slices, split, images, tuple(result.scenario.y_names), skipped)


def factor_values(scenario, name: str, metadata: dict[str, pd.DataFrame] | None = None) -> dict[str, Tensor]:
    """One value per image of every split of ``scenario`` for the candidate ``name``: an image
    measure of :func:`image_attributes` (Morpho-MNIST's on MNIST), or a column of ``metadata``
    (split -> rows of that split) as :func:`metadata_attributes` names it over all the splits."""
    splits = list(scenario.splits)
    if metadata is not None and set(splits) <= set(metadata):
        columns, _ = metadata_attributes(pd.concat([metadata[s] for s in splits], ignore_index=True))
        if name in columns:
            values = torch.tensor(columns[name].to_numpy(dtype=float))
            return dict(zip(splits, values.split([len(metadata[s]) for s in splits])))
        known = list(columns.columns)
    else:
        known = []
    mnist = scenario.spec.dataset == "mnist"
    out = {}
    for split, data in scenario.splits.items():
        attributes = image_attributes(data.x.cpu())  # Morpho-MNIST's measures only when asked for
        if name not in attributes and mnist:
            attributes = image_attributes(data.x.cpu(), morphometrics=True)
        if name not in attributes:
            raise UserError(f"--add-factor {name!r}: not a candidate of this run; choose one of "
                            f"{', '.join(list(attributes.columns) + known)}")
        out[split] = torch.tensor(attributes[name].to_numpy(dtype=float))
    return out


def add_factor(result, name: str, method, split: str = "balanced", *,
               metadata: dict[str, pd.DataFrame] | None = None, **options):
    """Close the loop: train ``method`` (a MethodConfig, e.g. MIMM-X's) on the run's own data
    with the audited candidate ``name`` as one more factor (:func:`~mimmx.scenarios.builder.with_factor`:
    z = the candidate above its training median) and audit both runs on ``split``. Returns
    (the audit before, the audit after, the new run); :func:`before_after_markdown` reads them.
    The new run's config does not describe its scenario, so it is kept out of the results store."""
    from mimmx.scenarios.builder import with_factor
    from mimmx.trainer import train

    meta = metadata or {}
    scenario = with_factor(result.scenario, name, factor_values(result.scenario, name, meta))
    cfg = dataclasses.replace(result.config, method=method)
    after_run = train(cfg, scenario)
    before = audit_run(result, split, metadata=meta.get(split), **options)
    after = audit_run(after_run, split, metadata=meta.get(split), **options)
    return before, after, after_run


def before_after_markdown(name: str, before: AuditReport, after: AuditReport, runs: tuple) -> str:
    """The loop's report: y accuracy on the test sets, and the added factor's audit row
    (dCor, p, family), before and after training with it as a factor."""
    lines = [f"# {name!r} as a factor: before and after", "",
             f"Before: {runs[0].config.method.name} as trained; after: {runs[1].config.method.name} with "
             f"{name!r} as one more factor (z = {name} above its training median). Audit on the "
             f"{before.split} set.", "",
             "| | " + " | ".join(f"y acc {s} [%]" for s in ("validation", "inverted", "balanced"))
             + f" | dCor(f_y, {name} \\| y) | p (adjusted) | family |", "|---" * 7 + "|"]
    for label, report, run in (("before", before, runs[0]), ("after", after, runs[1])):
        row = report.table.set_index("candidate")
        key = name if name in row.index else f"{name} (measured)"
        r = row.loc[key] if key in row.index else None
        acc = " | ".join(f"{run.best['acc'][s]['y']:.1f}" for s in ("validation", "inverted", "balanced"))
        cand = f"{r.dcor:.3f} | {r.p_adjusted:.3g} | {r.family}" if r is not None else "– | – | –"
        lines.append(f"| {label} | {acc} | {cand} |")
    return "\n".join(lines) + "\n"


def candidates_figure(table: pd.DataFrame):
    """dCor(f_y, a | y) of every candidate with its bootstrap interval, strongest on top,
    coloured by whether the permutation test flags it; the family rank in the label."""
    import plotly.graph_objects as go

    t = table.iloc[::-1]
    labels = [f"{c} · family {f}" for c, f in zip(t["candidate"], t["family"])]
    colours = ["#d62728" if f else "#7f7f7f" for f in t["flagged"]]
    fig = go.Figure(go.Bar(x=t["dcor"], y=labels, orientation="h", marker_color=colours,
                           error_x=dict(type="data", symmetric=False, array=t["dcor_high"] - t["dcor"],
                                        arrayminus=t["dcor"] - t["dcor_low"]),
                           hovertext=[f"p (adjusted) {p:.3g}; push {u:+.2f} (p {q:.3g}); gap {g:.1f} points"
                                      for p, u, q, g in zip(t["p_adjusted"], t["push"], t["p_push"], t["gap"])]))
    fig.update_layout(title="What f_y depends on beyond y (red: flagged: f_y reads it and it moves the decision)",
                      xaxis_title="dCor(f_y, attribute | y)", height=120 + 22 * len(t),
                      margin=dict(l=10, r=10, t=50, b=40))
    return fig


def slices_markdown(slices: pd.DataFrame, y_names=None, worst: int = 6) -> str:
    """The worst slices as a markdown table."""
    lines = ["## Slices nobody named", "",
             "Clusters of each class (k-means on f_y and the images' principal components), worst "
             "first; attribute: the candidate whose mean in the slice differs most from the rest "
             "of its class, in standard deviations; errors: the slice's share of its class's errors.", ""]
    if slices.empty:
        return "\n".join(lines + ["No slice large enough to report.", ""])
    lines += ["| slice | class | images | right [%] | class right [%] | errors [%] | attribute | effect [sd] |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in slices.head(worst).to_dict("records"):
        name = y_names[r["y"]] if y_names else r["y"]
        lines.append(f"| {r['slice']} | {name} | {r['size']} | {r['accuracy']:.1f} | {r['class_accuracy']:.1f} | "
                     f"{r['errors']:.1f} | {r['attribute']} | {r['effect']:+.2f} |")
    return "\n".join(lines) + "\n"


def audit_markdown(table: pd.DataFrame, title: str = "Shortcut audit") -> str:
    """The audit as a markdown table, strongest candidate first, with its family."""
    lines = [f"# {title}", "",
             "dCor(f_y, a | y): distance correlation between f_y and the attribute within each class "
             "of y (0: f_y ignores it beyond y); 95 % bootstrap interval; p: within-class "
             f"permutation test, Bonferroni-adjusted over the candidates (flagged below {LEVEL}); "
             "gap: the largest difference in y accuracy between the attribute's lower and upper "
             "half within one class [points]; family: candidates that measure one thing "
             f"(linked by |Goodman–Kruskal γ| ≥ {SAME} within each class) share a rank; push: the "
             "within-class rank correlation between the attribute and the model's decision score, "
             "with its adjusted p (a shortcut pushes every class the same way); flagged: both tests "
             f"below {LEVEL}.", "",
             "| rank | family | candidate | kind | dCor | 95 % interval | p (adjusted) | push | p push | flagged | gap | 95 % interval |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for i, r in table.iterrows():
        family = f"{r.family}" + (f" (with {r.same_as})" if r.same_as else "")
        lines.append(f"| {i + 1} | {family} | {r.candidate} | {r.kind} | {r.dcor:.3f} | {r.dcor_low:.3f}–"
                     f"{r.dcor_high:.3f} | {r.p_adjusted:.3g} | {r.push:+.2f} | {r.p_push:.3g} | "
                     f"{'yes' if r.flagged else 'no'} | "
                     f"{r.gap:.1f} | {r.gap_low:.1f}–{r.gap_high:.1f} |")
    return "\n".join(lines) + "\n"
