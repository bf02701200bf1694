"""Evaluation of one trained run, the poster's protocol (brief §4), as one :class:`Report`:

- ``heads``: table (a), the accuracy of each of the model's own heads (f_y→y, f_zi→zi) on the
  Validation, Inverted and Balanced sets;
- ``probes`` and ``leakage``: table (b), fresh probes (logistic regression, kNN with k = 30)
  predicting every label from every frozen feature part, fitted and scored on disjoint halves
  of the Balanced set (:func:`~mimmx.evaluation.probe_matrix`), and how far from diagonal each
  matrix is (:func:`~mimmx.evaluation.leakage_score`);
- ``mi``: a post-hoc MI estimate between frozen f_y and f_z from a freshly trained MINE
  (:func:`posthoc_mi`);
- ``embeddings``: 2-D embeddings of every part of the Balanced set (UMAP, t-SNE or PCA), as a
  tidy frame and as plotly figures coloured by y and by each z.

Every table is a tidy pandas DataFrame. Only the Balanced set and the test sets are *measured*
here; nothing is selected or tuned on them (the run's checkpoint was chosen on the confounded
``selection`` split by the trainer). :func:`load_run` rebuilds a trained run from its folder,
so that ``python -m mimmx evaluate RUN_DIR`` works on any run written by the trainer.
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mimmx.evaluation.embeddings import embedding_figure, embeddings_frame
from mimmx.evaluation.probes import PROBES, leakage_score, probe_matrix, split_halves
from mimmx.evaluation.tables import DASH, to_markdown

if TYPE_CHECKING:  # torch and the trainer are imported where needed: this module stays light
    import plotly.graph_objects as go
    import torch

    from mimmx.trainer import RunResult

TEST_SETS = ("validation", "inverted", "balanced")
# the poster's column names; "worst": the worst-group y accuracy on the Balanced set
SHORT = {"validation": "Val.", "inverted": "Inv.", "balanced": "Bal.", "worst": "Worst"}
EMBEDDINGS = ("umap", "tsne", "pca")


# ---------------------------------------------------------------------------- post-hoc MI


def posthoc_mi(f_y, f_z, labels=None, *, seed: int = 0, width: int = 128, steps: int = 300,
               batch_size: int = 256, lr: float = 1e-3, n_shuffles: int = 20,
               check_every: int = 10, device: str | torch.device | None = None) -> dict[str, float]:
    """I(f_y; f_z) in nats from a *fresh* MINE (Belghazi et al., ICML 2018) on frozen features.

    The samples are split into two disjoint halves (:func:`split_halves`, stratified on
    ``labels`` when given: the same halves as the probes). Each part is standardised with the
    first half's mean and std (MI is unchanged by invertible maps). A MINE (statistics network
    of ``width``, shuffled marginals, Belghazi's EMA-corrected gradient) is trained on 80% of the
    first half for ``steps`` Adam steps on random batches of ``batch_size``, ascending

        DV(T) = mean_i T(f_y_i, f_z_i) − log mean_j exp T(f_y_j, f_z_π(j))

    and every ``check_every`` steps DV is measured on the other 20%; the T with the best such
    score is kept (early stopping: a few hundred points are easy to memorise, and a memorising
    T drives the held-out DV far below zero). The estimate reported is DV of that T on the
    *second* half (eval mode, ``n_shuffles`` derangements for the marginal term), which neither
    trained nor chose it. Like every DV value it is a lower bound up to sampling noise (on
    correlated Gaussians with I = 1.66 nats it gives 1.3-1.5 from 500-1500 held-out points),
    and ≈ 0 when f_y and f_z are independent (T then stays near its start). Returns
    ``{"mi": held-out DV, "mi_train": DV on the fitting part, "n_train", "n_test"}``.
    Seeded; the global torch RNG is forked, not advanced.
    """
    import torch

    from mimmx.device import get_device
    from mimmx.models.estimators import MINE

    a = _as_tensor(f_y, "f_y")
    b = _as_tensor(f_z, "f_z")
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"f_y and f_z hold different numbers of samples ({a.shape[0]} vs "
                         f"{b.shape[0]}); pass features of the same images")
    if a.shape[0] < 8:
        raise ValueError(f"posthoc_mi needs at least 8 samples, got {a.shape[0]}")
    train, test = split_halves(labels if labels is not None else np.zeros(a.shape[0], int), seed)
    train, test = torch.as_tensor(train), torch.as_tensor(test)
    dev = get_device(device)

    def standardise(x: torch.Tensor) -> torch.Tensor:
        mean, std = x[train].mean(0), x[train].std(0).clamp_min(1e-6)
        return ((x - mean) / std).to(dev)

    a, b = standardise(a), standardise(b)
    n_stop = max(2, len(train) // 5)  # early-stopping part of the training half
    with torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else []), _one_thread(dev):
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        shuffled = train[torch.randperm(len(train), generator=gen)]
        fit, stop = shuffled[n_stop:].to(dev), shuffled[:n_stop].to(dev)
        batch = min(batch_size, len(fit))
        mine = MINE(a.shape[1], b.shape[1], width=width, marginals="shuffle", gradient="ema",
                    n_shuffles=1).to(dev)
        opt = torch.optim.Adam(mine.parameters(), lr=lr)
        best, best_state = -math.inf, None
        for step in range(steps + 1):
            if step % check_every == 0 or step == steps:  # keep the T that scores best on `stop`
                mine.eval()
                mine.n_shuffles = n_shuffles
                dv = mine.estimate(a[stop], b[stop])
                if dv > best:
                    best, best_state = dv, copy.deepcopy(mine.state_dict())
                mine.train()
                mine.n_shuffles = 1
            if step == steps:
                break
            idx = fit[torch.randperm(len(fit), generator=gen)[:batch].to(dev)]
            loss = mine.critic_loss(a[idx], b[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        mine.load_state_dict(best_state)
        mine.eval()
        mine.n_shuffles = n_shuffles
        test = test.to(dev)
        out = {"mi": mine.estimate(a[test], b[test]), "mi_train": mine.estimate(a[fit], b[fit])}
    return {**out, "n_train": len(train), "n_test": len(test)}


@contextlib.contextmanager
def _one_thread(device: torch.device):
    """One torch thread on the CPU while the (small) MINE trains: batches of a few hundred rows
    gain nothing from more, and threads spinning against each other on a shared machine make
    it many times slower."""
    import torch

    before = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _as_tensor(x, name: str) -> torch.Tensor:
    import torch

    x = torch.as_tensor(np.asarray(x.detach().cpu() if hasattr(x, "detach") else x),
                        dtype=torch.float32)
    if x.dim() == 1:
        x = x[:, None]
    if x.dim() != 2 or not torch.isfinite(x).all():
        raise ValueError(f"{name} must be finite features of shape (n, d), got {tuple(x.shape)}")
    return x


# ---------------------------------------------------------------------------- the report


@dataclass
class Report:
    """The evaluation of one run; every table tidy (one measurement per row).

    - ``heads``: ``head, test_set, accuracy`` (table (a); ``head`` "f_y→y", "f_z1→z1", …)
    - ``probes``: ``probe, part, label, accuracy, chance, diagonal`` (table (b);
      ``diagonal`` marks a part predicting its own label, which is not leakage)
    - ``leakage``: ``probe, leakage`` (0 = disentangled, 1 = full leakage)
    - ``mi``: ``pair, mi, mi_train, n_train, n_test`` (nats; "f_y;f_z" and one row per factor)
    - ``embeddings``: ``part, index, dim1, dim2, y, z1, …`` or None; ``figures``: part → figure
    - ``info``: label names, options, seed, set sizes
    """

    heads: pd.DataFrame
    probes: pd.DataFrame
    leakage: pd.DataFrame
    mi: pd.DataFrame
    embeddings: pd.DataFrame | None = None
    figures: dict[str, go.Figure] = field(default_factory=dict)
    info: dict = field(default_factory=dict)

    def heads_table(self) -> pd.DataFrame:
        """Table (a) of this run: heads × test sets (Val. / Inv. / Bal., and the worst group of
        the Balanced set for y), accuracy in %."""
        t = self.heads.pivot(index="head", columns="test_set", values="accuracy")
        t = t.reindex(index=pd.unique(self.heads["head"]),
                      columns=[s for s in SHORT if s in set(self.heads["test_set"])])
        return t.rename(columns=SHORT)

    def matrix(self, probe: str = "logreg") -> pd.DataFrame:
        """Table (b) of this run for one probe: parts × labels, accuracy in %."""
        d = self.probes[self.probes["probe"] == probe]
        if d.empty:
            raise ValueError(f"no {probe!r} probe in this report; it has "
                             f"{sorted(set(self.probes['probe']))}")
        return d.pivot(index="part", columns="label", values="accuracy").reindex(
            index=pd.unique(d["part"]), columns=pd.unique(d["label"]))

    def to_dict(self, embeddings: bool = False) -> dict:
        """JSON-ready: every table as a list of records (figures are left out; the embedding
        frame only with ``embeddings=True``, as it is large)."""
        out = {name: to_records(getattr(self, name)) for name in ("heads", "probes", "leakage", "mi")}
        out["info"] = self.info
        if embeddings and self.embeddings is not None:
            out["embeddings"] = to_records(self.embeddings)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> Report:
        emb = d.get("embeddings")
        return cls(*(pd.DataFrame.from_records(d[n]) for n in ("heads", "probes", "leakage")),
                   mi=pd.DataFrame.from_records(d.get("mi", []), columns=MI_COLUMNS),
                   embeddings=None if emb is None else pd.DataFrame.from_records(emb),
                   info=d.get("info", {}))

    def to_json(self, path: str | Path | None = None, embeddings: bool = False) -> str:
        text = json.dumps(self.to_dict(embeddings), indent=1, default=_json_default)
        if path is not None:
            Path(path).write_text(text)
        return text

    def to_markdown(self) -> str:
        """Tables (a) and (b) (one per probe; a part's own label in parentheses), leakage and
        post-hoc MI, with what each number means."""
        info = self.info
        lines = [f"## Evaluation of {info.get('name', 'a run')}", ""]
        if info.get("labels"):
            lines += ["Labels: " + "; ".join(f"{k} = {v}" for k, v in info["labels"].items()), ""]
        lines.append(to_markdown(self.heads_table().round(1),
                                 "(a) Accuracy [%] of each head (model chosen on the confounded "
                                 "selection split)"))
        for probe in pd.unique(self.probes["probe"]):
            m = self.matrix(probe)
            shown = m.round(1).astype(object).map(lambda v: DASH if pd.isna(v) else f"{v:.1f}")
            for part, label in _diagonal(self.probes, probe):
                shown.loc[part, label] = f"({m.loc[part, label]:.1f})"
            leak = float(self.leakage.set_index("probe").loc[probe, "leakage"])
            what = f"kNN (k = {info.get('k', 30)})" if probe == "knn" else "logistic regression"
            lines.append(to_markdown(
                shown, f"(b) Disentanglement, {what} probes on frozen features, fitted and scored "
                f"on disjoint halves of the Balanced set [%]; ideally chance off the diagonal "
                f"(in parentheses: a part's own label). Leakage score {leak:.3f} "
                "(0 = disentangled, 1 = full leakage)"))
        if not self.mi.empty:
            mi = self.mi.set_index("pair")[["mi", "mi_train"]].round(3)
            mi.columns = ["held-out half", "fitting part"]
            lines.append(to_markdown(
                mi, "Post-hoc MI [nats] from a fresh MINE on frozen Balanced-set features "
                "(≈ 0 when disentangled: on the Balanced set y and z are independent)"))
        return "\n".join(lines)


MI_COLUMNS = ["pair", "mi", "mi_train", "n_train", "n_test"]


def _diagonal(probes: pd.DataFrame, probe: str) -> list[tuple[str, str]]:
    d = probes[(probes["probe"] == probe) & probes["diagonal"]]
    return list(zip(d["part"], d["label"]))


def to_records(frame: pd.DataFrame) -> list[dict]:
    """A frame as a list of JSON-ready dicts with native Python values (exact floats, unlike
    ``DataFrame.to_json``, which rounds to 10 digits)."""
    return [{k: _native(v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def _native(v):
    return v.item() if isinstance(v, np.generic) else v


def _json_default(x):
    if isinstance(x, np.generic):
        return x.item()
    if isinstance(x, np.ndarray):
        return x.tolist()
    raise TypeError(f"{type(x).__name__} is not JSON serialisable")


def evaluate_result(result: RunResult, *, probes: Sequence[str] = PROBES, k: int = 30,
                    mi: bool = True, mi_steps: int = 300, embedding: str | None = "umap",
                    seed: int | None = None, max_points: int | None = None) -> Report:
    """Evaluate a trained run (``mimmx.trainer.train`` or :func:`mimmx.runs.load_run`): see the module
    docstring. ``seed`` (default: the run's) seeds the Balanced-set halves, the probes, the
    MINE and the embedding; ``embedding=None`` skips the embeddings (the slow part)."""
    if embedding is not None and embedding not in EMBEDDINGS:
        raise ValueError(f"unknown embedding {embedding!r}; choose one of {EMBEDDINGS} or None")
    bad = [p for p in probes if p not in PROBES]
    if bad:
        raise ValueError(f"unknown probe(s) {bad}; choose from {PROBES}")
    seed = result.config.seed if seed is None else seed
    scenario = result.scenario
    label_names = ["y", *[f"z{i + 1}" for i in range(len(scenario.factor_names))]]
    parts_names = [f"f_{n}" for n in label_names]

    import torch

    from mimmx.trainer import worst_group_accuracy

    feats = {split: result.features(split) for split in TEST_SETS}
    bal = feats["balanced"]
    heads = pd.DataFrame([
        {"head": f"f_{n}→{n}", "test_set": split,
         "accuracy": 100.0 * float((out[f"pred_{n}"] == out[n]).float().mean())}
        for n in label_names for split, out in feats.items()]  # head-major, as the poster
        + [{"head": "f_y→y", "test_set": "worst", "accuracy": worst_group_accuracy(
            bal["pred_y"], bal["y"], torch.stack([bal[n] for n in label_names[1:]], 1))}])

    parts = {p: bal[p].numpy() for p in parts_names}
    labels = {n: bal[n].numpy() for n in label_names}
    probe_rows, leak_rows = [], []
    for probe in probes:
        m = probe_matrix(parts, labels, probe=probe, k=k, seed=seed)
        diag = set(m.attrs["diagonal"])
        for part in m.index:
            for label in m.columns:
                probe_rows.append({"probe": probe, "part": part, "label": label,
                                   "accuracy": float(m.loc[part, label]),
                                   "chance": m.attrs["chance"][label],
                                   "diagonal": (part, label) in diag})
        leak_rows.append({"probe": probe, "leakage": leakage_score(m)})

    mi_rows = []
    if mi:
        f_z = np.concatenate([parts[p] for p in parts_names[1:]], axis=1)
        pairs = {"f_y;f_z": f_z}
        if len(parts_names) > 2:  # one estimate per factor too
            pairs.update({f"f_y;{p}": parts[p] for p in parts_names[1:]})
        for name, fz in pairs.items():
            est = posthoc_mi(parts["f_y"], fz, labels, seed=seed, steps=mi_steps)
            mi_rows.append({"pair": name, **est})

    emb, figures = None, {}
    if embedding is not None:
        emb = embeddings_frame(parts, labels, method=embedding, seed=seed, max_points=max_points)
        names = {"y": dict(enumerate(scenario.y_names)),
                 **{f"z{i + 1}": dict(enumerate(v)) for i, v in enumerate(scenario.z_values)}}
        for part, frame in emb.groupby("part", sort=False):
            figures[part] = embedding_figure(
                frame[["dim1", "dim2"]].to_numpy(), {n: frame[n].to_numpy() for n in label_names},
                title=f"{part} of the Balanced set ({embedding})", names=names)

    info = {
        "name": f"{method_name(result.method.settings())} on {result.config.scenario.name}, "
                f"seed {result.config.seed}",
        "labels": {"y": "primary task",
                   **{f"z{i + 1}": f for i, f in enumerate(scenario.factor_names)}},
        "seed": seed, "probes": list(probes), "k": k, "mi_steps": mi_steps if mi else None,
        "embedding": embedding, "n_balanced": len(bal["y"]),
        "sizes": {s: len(scenario.splits[s]) for s in scenario.splits},
    }
    return Report(heads, pd.DataFrame(probe_rows), pd.DataFrame(leak_rows),
                  pd.DataFrame(mi_rows, columns=MI_COLUMNS), emb, figures, info)


def method_name(settings: dict) -> str:
    """``{"method": "mimmx", "dls": True, "caw": False, …}`` → ``"mimmx +DLS"``."""
    return (settings["method"] + (" +DLS" if settings.get("dls") else "")
            + (" +CAW" if settings.get("caw") else ""))


def figures_html(figures: dict[str, go.Figure], path: str | Path) -> Path:
    """All figures in one HTML file (plotly.js from its CDN, so the file stays small)."""
    html = [fig.to_html(full_html=False, include_plotlyjs="cdn" if i == 0 else False)
            for i, fig in enumerate(figures.values())]
    Path(path).write_text("<html><head><meta charset='utf-8'></head><body>\n"
                          + "\n".join(html) + "\n</body></html>\n")
    return Path(path)


# ---------------------------------------------------------------------------- run folders
