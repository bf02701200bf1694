"""2-D embeddings of frozen feature parts, coloured by y and by each z (brief §4; poster's
t-SNE figure: a disentangled f_y shows no separation by z).

Methods: ``umap`` (umap-learn), ``tsne`` (sklearn TSNE), ``pca`` (sklearn PCA). PCA is
instant; UMAP and t-SNE take seconds (on 2 CPU cores: UMAP ~5 s for 2000 points, t-SNE ~4-10 s
for 1000 and 4× that for 2000; see bench/bench_embeddings.py), so :func:`embeddings_frame`
embeds a seeded random subsample for them by default (:data:`MAX_POINTS`). UMAP's first call
in a process also compiles its numba kernels (~10–35 s on 2 cores): call
:func:`warm_up_umap` with ``background=True`` when an app starts. umap-learn and plotly are imported
lazily, so importing this module stays fast (and training needs neither).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mimmx.evaluation.probes import as_numpy

if TYPE_CHECKING:
    import plotly.graph_objects as go

METHODS = ("umap", "tsne", "pca")
# default subsample size per method in embeddings_frame (None: every point)
MAX_POINTS: dict[str, int | None] = {"umap": 2000, "tsne": 1000, "pca": None}


def embed(features, method: str = "umap", seed: int = 0, *, threads: int | None = None,
          **kw) -> np.ndarray:
    """(n, d) features → (n, 2) coordinates, seeded.

    ``umap``: ``umap.UMAP(n_neighbors=min(15, n−1), random_state=seed)``; ``tsne``:
    ``TSNE(perplexity=min(30, (n−1)/3), init="pca", random_state=seed)``; ``pca``:
    ``PCA(2)``. ``kw`` go to the estimator and override these defaults. Features with
    d ≤ 2 are returned as they are (as float, a zero column appended when d = 1): they are
    already a plane, and any method would only distort them (the original MIMM code's f_y is
    2-D). Every point given is embedded; subsample beforehand for speed (:func:`subsample`).

    ``threads`` caps the OpenMP/BLAS threads for the call (threadpoolctl); default: the
    libraries' own choice. On a shared, loaded machine 1 can be much faster: sklearn's t-SNE
    gradient runs on OpenMP, which stalls when its threads compete for busy cores (1000
    points: 36 s with 2 threads vs 8-11 s with 1, at load 7 on 2 cores).
    """
    if threads is not None:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=threads):
            return embed(features, method, seed, **kw)
    if method not in METHODS:
        raise ValueError(f"unknown embedding method {method!r}; choose one of {METHODS}")
    x = as_numpy(features, "features")
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"features must have shape (n, d) with n, d ≥ 1, got {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or not np.isfinite(x).all():
        raise ValueError("features contain NaN or inf (or are not numeric); cannot embed them")
    n, d = x.shape
    if d <= 2:
        return np.pad(x.astype(np.float64), ((0, 0), (0, 2 - d)))
    x = x.astype(np.float32, copy=False)  # what umap-learn and sklearn TSNE compute in
    if n < 3 and method != "pca":
        raise ValueError(f"{method} needs at least 3 points, got {n}")
    if method == "pca":
        from sklearn.decomposition import PCA

        out = PCA(n_components=min(2, n), random_state=seed, **kw).fit_transform(x)
        return np.pad(out, ((0, 0), (0, 2 - out.shape[1])))  # n = 1: one component only
    if method == "tsne":
        from sklearn.manifold import TSNE

        kw = {"perplexity": min(30.0, (n - 1) / 3), "init": "pca", "random_state": seed, **kw}
        return TSNE(n_components=2, **kw).fit_transform(x).astype(np.float64)
    import warnings

    import umap  # slow import (numba); only when asked for

    kw = {"n_neighbors": min(15, n - 1), "random_state": seed, **kw}
    with warnings.catch_warnings():  # "n_jobs overridden to 1 by setting random_state"
        warnings.filterwarnings("ignore", message=".*n_jobs.*", category=UserWarning)
        return umap.UMAP(n_components=2, **kw).fit_transform(x).astype(np.float64)


def warm_up_umap(background: bool = False) -> float | threading.Thread:
    """Run UMAP once on tiny random data so that numba compiles its kernels now, not at the
    user's first click. Returns the seconds it took, or with ``background=True`` the started
    daemon thread (``thread.join()`` to wait)."""
    if background:
        thread = threading.Thread(target=warm_up_umap, name="warm-up-umap", daemon=True)
        thread.start()
        return thread
    start = time.perf_counter()
    x = np.random.default_rng(0).normal(size=(64, 4))
    embed(x, "umap", seed=0, n_epochs=20)
    return time.perf_counter() - start


def subsample(n: int, max_points: int | None, seed: int = 0) -> np.ndarray:
    """Sorted indices of a seeded random subset of ``range(n)`` of size ≤ ``max_points``
    (all of them when ``max_points`` is None or ≥ n)."""
    if max_points is None or max_points >= n:
        return np.arange(n)
    if max_points < 1:
        raise ValueError(f"max_points must be ≥ 1, got {max_points}")
    return np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))


def embeddings_frame(parts: Mapping[str, object], labels: Mapping[str, object],
                     method: str = "pca", seed: int = 0,
                     max_points: int | None = None, **kw) -> pd.DataFrame:
    """Tidy table of the embedding of every feature part: columns ``part, index, dim1, dim2``
    and one column per label (``index`` is the sample's row in the inputs). The coordinates
    are not called x/y because the primary label is ``y``.

    Every part is embedded separately, on the same samples, so a point in the ``f_y`` panel
    and one in the ``f_z1`` panel with the same ``index`` are the same image.
    ``max_points`` (default :data:`MAX_POINTS`: 2000 for UMAP, 1000 for t-SNE, all for PCA)
    caps the number of samples, drawn at random with ``seed``."""
    if not parts:
        raise ValueError("embeddings_frame needs at least one feature part")
    arrays = {p: as_numpy(x, f"features {p!r}") for p, x in parts.items()}
    label_arrays = {lab: as_numpy(y, f"labels {lab!r}", ndim=1) for lab, y in labels.items()}
    n = {name: a.shape[0] for name, a in {**arrays, **label_arrays}.items()}
    if len(set(n.values())) != 1:
        raise ValueError(f"all parts and labels must have the same number of samples, got {n}")
    clash = set(label_arrays) & {"part", "index", "dim1", "dim2"}
    if clash:
        raise ValueError(f"label name(s) {sorted(clash)} clash with the frame's own columns; rename them")
    if method not in METHODS:
        raise ValueError(f"unknown embedding method {method!r}; choose one of {METHODS}")
    if max_points is None:
        max_points = MAX_POINTS[method]
    idx = subsample(next(iter(n.values())), max_points, seed)
    frames = []
    for part, x in arrays.items():
        xy = embed(x[idx], method, seed, **kw)
        frame = pd.DataFrame({"part": part, "index": idx, "dim1": xy[:, 0], "dim2": xy[:, 1]})
        for label, y in label_arrays.items():
            frame[label] = y[idx]
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def _palette(n: int) -> list[str]:
    from plotly.colors import qualitative

    colours = qualitative.Plotly if n <= 10 else qualitative.Alphabet
    return [colours[i % len(colours)] for i in range(n)]


def embedding_figure(coords, colour_by: Mapping[str, object], title: str = "",
                     names: Mapping[str, Mapping[object, str]] | None = None) -> go.Figure:
    """Scatter of (n, 2) ``coords``, coloured by one label at a time.

    One trace per value of each label (legend group ``"<label>=<value>"``); buttons above
    the plot switch which label colours the points (the first label is shown first), and the
    legend title names it. ``names[label][value]`` gives readable legend entries (for
    example ``{"z1": {0: "thin", 1: "thick"}}``). Hovering a point shows all its labels."""
    return embedding_panels({"": coords}, colour_by, title, names)


def embedding_panels(parts: Mapping[str, object], colour_by: Mapping[str, object], title: str = "",
                     names: Mapping[str, Mapping[object, str]] | None = None) -> go.Figure:
    """:func:`embedding_figure` for several feature parts of the same n points, side by side in
    one figure (``parts``: panel title -> (n, 2) coords): the buttons recolour every panel at
    once and the legend is shared. One figure instead of one per part is much lighter for a
    browser to redraw (the app redraws its live embeddings at every evaluation)."""
    if not parts:
        raise ValueError("embedding_panels needs at least one part")
    coords = {p: as_numpy(c, f"coords {p!r}" if p else "coords", ndim=2) for p, c in parts.items()}
    n = next(iter(coords.values())).shape[0]
    for p, c in coords.items():
        if c.shape != (n, 2):
            raise ValueError(f"coords{f' of {p!r}' if p else ''} must have shape ({n}, 2), got {c.shape}")
    if not colour_by:
        raise ValueError("colour_by needs at least one label to colour the points by")
    labels = {lab: as_numpy(y, f"labels {lab!r}", ndim=1) for lab, y in colour_by.items()}
    for lab, y in labels.items():
        if y.shape[0] != n:
            raise ValueError(f"label {lab!r} has {y.shape[0]} values for {n} points")
    names = names or {}
    # all labels of each point, for the hover box
    hover = np.full(n, "", dtype=object)
    for i, (lab, y) in enumerate(labels.items()):
        hover = hover + (", " if i else "") + f"{lab}=" + y.astype(str).astype(object)
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    scatter = go.Scattergl if n > 5000 else go.Scatter  # WebGL only when large

    titled = any(coords)
    fig = make_subplots(rows=1, cols=len(coords), subplot_titles=list(coords) if titled else None,
                        horizontal_spacing=0.06)
    owner = []  # label that each trace belongs to
    for i, (lab, y) in enumerate(labels.items()):
        values = np.unique(y)
        for value, colour in zip(values, _palette(len(values)), strict=True):
            mask = y == value
            for col, xy in enumerate(coords.values(), start=1):
                fig.add_trace(scatter(
                    x=xy[mask, 0], y=xy[mask, 1], mode="markers",
                    name=str(names.get(lab, {}).get(value, value)),
                    legendgroup=f"{lab}={value}", showlegend=col == 1, visible=i == 0,
                    marker={"color": colour, "size": 5, "opacity": 0.7},
                    text=hover[mask], hovertemplate="%{text}<extra></extra>",
                ), row=1, col=col)
                owner.append(lab)
    buttons = [
        {"label": f"colour by {lab}", "method": "update",
         "args": [{"visible": [o == lab for o in owner]}, {"legend.title.text": lab}]}
        for lab in labels
    ]
    first = next(iter(labels))
    fig.update_xaxes(title="dim 1")
    fig.update_yaxes(title="dim 2", col=1)
    fig.update_layout(
        title=title, legend={"title": {"text": first}, "itemsizing": "constant"},
        # above the plot: on the left under the title, or on the right above the panel titles
        updatemenus=[{"type": "buttons", "direction": "right", "buttons": buttons, "yanchor": "bottom",
                      **({"x": 1, "xanchor": "right", "y": 1.16} if titled else
                         {"x": 0, "xanchor": "left", "y": 1.02})}]
        if len(labels) > 1 else [],
        template="plotly_white", margin={"t": 100 if titled else 80},
    )
    return fig
