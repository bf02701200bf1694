"""Probes on frozen features: the poster's tables (a) and (b).

Table (a) is the accuracy of the model's own heads (f_y→y, f_zi→zi) on the Validation,
Inverted and Balanced test sets: :func:`head_accuracy_table`.

Table (b), disentanglement, trains *fresh* probes on frozen features to predict every label
from every feature part (z_i from f_y, y from f_zi, z_j from f_zi): :func:`probe_matrix`.
Following the brief (§4), a probe is fitted on one half of the Balanced set and scored on the
other, disjoint half; on the Balanced set the labels are independent of each other, so a
probe above chance has found information about that label *in that part of the features*.
Ideal off-diagonal accuracy is chance (50% for a balanced binary label).
:func:`leakage_score` condenses the matrix into one number.

Everything here works on plain arrays or tensors; nothing knows how the features were made.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

PROBES = ("logreg", "knn")


def as_numpy(x, name: str, ndim: int | None = None) -> np.ndarray:
    """``x`` (numpy array, torch tensor on any device, or list) as a numpy array, checked."""
    if hasattr(x, "detach"):  # torch.Tensor, without importing torch here
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    if ndim is not None and x.ndim != ndim:
        shape = "(n,)" if ndim == 1 else "(n, d)"
        raise ValueError(f"{name} must have shape {shape}, got shape {x.shape}")
    return x


def _features(x, name: str) -> np.ndarray:
    x = as_numpy(x, name)
    if x.ndim == 1:  # a one-dimensional part, e.g. a single logit
        x = x[:, None]
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"features {name!r} must have shape (n, d) with d ≥ 1, got {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
        raise ValueError(f"features {name!r} contain NaN/inf or are not numeric")
    return x.astype(np.float64, copy=False)


def _labels(x, name: str) -> np.ndarray:
    x = as_numpy(x, f"labels {name!r}", ndim=1)
    if np.issubdtype(x.dtype, np.floating):
        if not np.all(x == np.round(x)):
            raise ValueError(f"labels {name!r} must be class indices (integers), got fractions; "
                             "binarise continuous factors first")
        x = x.astype(np.int64)
    return x


def chance_level(labels) -> float:
    """Majority-class rate in % : the accuracy of always predicting the most frequent class.

    50.0 for a balanced binary label, 10.0 for ten balanced classes."""
    labels = as_numpy(labels, "labels", ndim=1)
    if labels.size == 0:
        raise ValueError("chance_level needs at least one label")
    _, counts = np.unique(labels, return_counts=True)
    return 100.0 * counts.max() / labels.size


def accuracy(pred, target) -> float:
    """Accuracy in % of ``pred`` against ``target``; ``pred`` is class indices (n,) or
    scores/logits/probabilities (n, C), of which the argmax is taken."""
    pred, target = as_numpy(pred, "pred"), as_numpy(target, "target", ndim=1)
    if pred.ndim == 2:
        pred = pred.argmax(axis=1)
    if pred.shape != target.shape:
        raise ValueError(f"pred has {pred.shape[0]} samples but target has {target.shape[0]}")
    if target.size == 0:
        raise ValueError("accuracy of an empty set is undefined")
    return 100.0 * float(np.mean(pred == target))


def split_halves(labels: Mapping[str, object] | object, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Disjoint (train, test) index arrays covering every sample, stratified and seeded.

    Stratified on the joint combination of all labels given (a dict of label arrays, or one
    array): within every group of samples sharing the same labels, a seeded random half goes
    to train and the rest to test (the train side gets the extra sample of an odd group), so
    both halves keep the label frequencies of the whole set up to one sample per group.
    """
    columns = list(labels.values()) if isinstance(labels, Mapping) else [labels]
    columns = [as_numpy(c, "labels", ndim=1) for c in columns]
    n = columns[0].shape[0]
    if any(c.shape[0] != n for c in columns):
        raise ValueError("all label arrays must have the same length")
    if n < 2:
        raise ValueError(f"need at least 2 samples to split into halves, got {n}")
    group = np.unique(np.stack(columns, axis=1), axis=0, return_inverse=True)[1].reshape(-1)
    order = np.random.default_rng(seed).permutation(n)
    order = order[np.argsort(group[order], kind="stable")]  # grouped, shuffled within groups
    g = group[order]
    starts = np.r_[0, np.flatnonzero(np.diff(g)) + 1]  # first position of each group
    rank = np.arange(n) - np.repeat(starts, np.diff(np.r_[starts, n]))  # position in group
    in_train = rank % 2 == 0
    return np.sort(order[in_train]), np.sort(order[~in_train])


def make_probe(probe: str = "logreg", k: int = 30, seed: int = 0):
    """A fresh, unfitted sklearn probe on standardised features.

    ``logreg``: StandardScaler + LogisticRegression (L2, C=1, lbfgs, multinomial for >2
    classes). ``knn``: StandardScaler + KNeighborsClassifier(k). Standardising the kNN probe
    too keeps one large-scale dimension from dominating the distance."""
    if probe == "logreg":
        return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    if probe == "knn":
        if k < 1:
            raise ValueError(f"k must be ≥ 1, got {k}")
        return make_pipeline(StandardScaler(), KNeighborsClassifier(n_neighbors=k))
    raise ValueError(f"unknown probe {probe!r}; choose one of {PROBES}")


def own_label(part: str, labels) -> str | None:
    """The label a feature part is trained to predict, by the naming convention ``f_<label>``
    (``f_y``→``y``, ``f_z1``→``z1``); ``None`` if there is none among ``labels``."""
    name = part[2:] if part.startswith("f_") else None
    return name if name in labels else None


def probe_matrix(parts: Mapping[str, object], labels: Mapping[str, object], *,
                 probe: str = "logreg", k: int = 30, seed: int = 0) -> pd.DataFrame:
    """Disentanglement matrix (poster table (b)): accuracy in % of a fresh probe per cell.

    Rows are feature parts (``f_y``, ``f_z1``, …), columns are labels (``y``, ``z1``, …); cell
    (p, l) is the test accuracy of a probe (:func:`make_probe`) trained to predict label l
    from part p. All cells share one split (:func:`split_halves`: disjoint halves of the given
    set, stratified on all labels jointly, seeded), so pass the *Balanced* test set.

    Diagonal cells (a part predicting its own label, ``f_<label>``→``<label>``) are computed
    but flagged: they measure what the part is for (table (a)-like), not leakage. The flags
    and context travel in ``matrix.attrs``: ``diagonal`` (list of (part, label) cells),
    ``chance`` ({label: majority-class rate in % on the test half}), ``probe``, ``k``,
    ``seed``, ``n_train``, ``n_test``. :func:`leakage_score` reads them.
    """
    if not parts or not labels:
        raise ValueError("probe_matrix needs at least one feature part and one label")
    make_probe(probe, k, seed)  # validates probe and k before any work
    X = {p: _features(x, p) for p, x in parts.items()}
    Y = {lab: _labels(y, lab) for lab, y in labels.items()}
    n = {name: a.shape[0] for name, a in {**X, **Y}.items()}
    if len(set(n.values())) != 1:
        raise ValueError(f"all parts and labels must have the same number of samples, got {n}")
    train, test = split_halves(Y, seed)
    if len(test) < 2:
        raise ValueError(f"only {len(train) + len(test)} samples: too few to probe")

    acc = pd.DataFrame(np.nan, index=list(X), columns=list(Y), dtype=float)
    for label, y in Y.items():
        y_train, y_test = y[train], y[test]
        for part, x in X.items():
            if np.unique(y_train).size < 2:  # nothing to learn: predict the only class seen
                model = DummyClassifier(strategy="most_frequent")
            else:
                model = make_probe(probe, min(k, len(train)), seed)
            model.fit(x[train], y_train)
            acc.loc[part, label] = accuracy(model.predict(x[test]), y_test)
    acc.index.name, acc.columns.name = "part", "label"
    acc.attrs.update(
        diagonal=[(p, own_label(p, Y)) for p in X if own_label(p, Y) is not None],
        chance={lab: chance_level(y[test]) for lab, y in Y.items()},
        probe=probe, k=k if probe == "knn" else None, seed=seed,
        n_train=len(train), n_test=len(test),
    )
    return acc


def leakage_score(matrix: pd.DataFrame, chance: Mapping[str, float] | None = None) -> float:
    """How far from diagonal a probe matrix is, in [0, 1]: 0 = disentangled, 1 = full leakage.

        leakage = mean over off-diagonal cells (p, l) of  min(1, |acc(p, l) − c_l| / (100 − c_l))

    with c_l the chance level of label l in % (``chance``, else ``matrix.attrs["chance"]``
    from :func:`probe_matrix`). Diagonal cells (``f_<label>``→``<label>``) and NaN cells
    are left out. Below-chance accuracy counts as a deviation too: on a held-out half it
    is either noise or anti-correlated information. This is mimmx's own summary, not a
    number from the poster.
    """
    chance = dict(chance if chance is not None else matrix.attrs.get("chance") or {})
    missing = [lab for lab in matrix.columns if lab not in chance]
    if missing:
        raise ValueError(f"no chance level for label(s) {missing}: pass chance={{label: %}} "
                         "or use a matrix from probe_matrix (it stores them in .attrs)")
    devs = []
    for part in matrix.index:
        for label in matrix.columns:
            acc = matrix.loc[part, label]
            if own_label(part, matrix.columns) == label or pd.isna(acc):
                continue
            c = chance[label]
            devs.append(min(1.0, abs(acc - c) / (100.0 - c)) if c < 100 else 0.0)
    if not devs:
        raise ValueError("the matrix has no off-diagonal cells to score")
    return float(np.mean(devs))


def head_accuracy_table(predictions: Mapping[str, Mapping[str, tuple]]) -> pd.DataFrame:
    """Poster table (a): accuracy in % of each head on each test set.

    ``predictions[head][test_set] = (pred, target)``, e.g.
    ``{"f_y→y": {"Val": (logits, y), "Inv": (...), "Bal": (...)}, "f_z1→z1": {...}}``;
    ``pred`` is class indices (n,) or scores (n, C) (argmax taken). Rows are heads and
    columns test sets, both in the order first given; a missing pair is NaN (the poster's
    Exp2 has no Inverted set for z2)."""
    table: dict[str, dict[str, float]] = {}
    for head, by_set in predictions.items():
        if not isinstance(by_set, Mapping):
            raise ValueError(f"predictions[{head!r}] must map test-set name -> (pred, target)")
        for test_set, pair in by_set.items():
            if not (isinstance(pair, tuple | list) and len(pair) == 2):
                raise ValueError(f"predictions[{head!r}][{test_set!r}] must be (pred, target)")
            table.setdefault(test_set, {})[head] = accuracy(*pair)
    frame = pd.DataFrame(table, index=list(predictions), dtype=float)
    frame.index.name, frame.columns.name = "head", "test_set"
    return frame
