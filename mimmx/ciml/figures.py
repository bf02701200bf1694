"""Plotly figures and tables of the CIML experiment, for notebooks and the app.

Each function takes phantoms or a finished :class:`~mimmx.ciml.train.Results` and returns a
``plotly.graph_objects.Figure`` or a ``pandas.DataFrame``; nothing is shown or saved here.
"""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots

from mimmx.ciml.explain import contribution_shares, gate_maps, modality_contributions
from mimmx.ciml.models import CIML
from mimmx.ciml.phantom import MODALITIES, REGIONS, Phantoms
from mimmx.ciml.train import LABELS, SINGLE_LABELS, Results, predict_logits, summary

MODALITY_NAMES = dict(zip(MODALITIES, ("FLAIR", "T1", "T1ce", "T2"), strict=True))
REGION_NAMES = {"wt": "whole tumour", "tc": "tumour core", "et": "enhancing tumour"}


def _label_map(masks: torch.Tensor) -> torch.Tensor:
    """Nested masks (R, H, W) -> one map 0 none, 1 WT only, 2 TC only, 3 ET (the innermost wins)."""
    return masks.long().sum(0)


def _image(fig, z, row, col, colorscale="gray", zmin=None, zmax=None):
    fig.add_trace(go.Heatmap(z=z.cpu().numpy(), colorscale=colorscale, zmin=zmin, zmax=zmax,
                             showscale=False), row=row, col=col)


def _square(fig):
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x")
    fig.update_layout(margin=dict(l=10, r=10, t=40, b=10))
    for i, axis in enumerate(a for a in fig.layout if a.startswith("yaxis")):
        fig.layout[axis].scaleanchor = "x" if i == 0 else f"x{i + 1}"
    return fig


def phantom_figure(phantoms: Phantoms, indices: int | list[int] = 0) -> go.Figure:
    """One row per phantom: the four modalities and the nested regions (WT ⊃ TC ⊃ ET)."""
    indices = [indices] if isinstance(indices, int) else list(indices)
    titles = [MODALITY_NAMES[m] for m in MODALITIES] + ["WT ⊃ TC ⊃ ET"]
    fig = make_subplots(rows=len(indices), cols=5, horizontal_spacing=0.01, vertical_spacing=0.02,
                        subplot_titles=titles)
    for row, i in enumerate(indices, start=1):
        for col in range(4):
            _image(fig, phantoms.images[i, col], row, col + 1, zmin=-3, zmax=4)
        _image(fig, _label_map(phantoms.masks[i]), row, 5, "viridis", 0, 3)
    fig.update_layout(height=180 * len(indices) + 40, width=900)
    return _square(fig)


def _predictors(results: Results, seed: int) -> dict:
    """{row label: predict function} for every trained model of ``seed``."""
    out = {}
    for (method, s), model in results.models.items():
        if s != seed:
            continue
        if method == "ensemble":
            out.update({SINGLE_LABELS[m]: net.predict for m, net in model.members.items()})
        out[LABELS[method]] = model.predict
    return out


def prediction_figure(results: Results, index: int = 0, seed: int | None = None) -> go.Figure:
    """Ground truth and every method's prediction for one test phantom (0 none … 3 ET)."""
    seed = results.config.seeds[0] if seed is None else seed
    test = results.test
    preds = {name: predict_logits(f, test.images[index:index + 1])[0] > 0
             for name, f in _predictors(results, seed).items()}
    names = ["FLAIR", "T1ce", "ground truth", *preds]
    cols = len(names)
    fig = make_subplots(rows=1, cols=cols, subplot_titles=names, horizontal_spacing=0.01)
    _image(fig, test.images[index, 0], 1, 1, zmin=-3, zmax=4)
    _image(fig, test.images[index, 2], 1, 2, zmin=-3, zmax=4)
    _image(fig, _label_map(test.masks[index]), 1, 3, "viridis", 0, 3)
    for col, p in enumerate(preds.values(), start=4):
        _image(fig, _label_map(p), 1, col, "viridis", 0, 3)
    fig.update_layout(height=220, width=150 * cols)
    fig.update_annotations(font_size=10)
    return _square(fig)


def dice_table(results: Results) -> pd.DataFrame:
    """Dice (%) per region and method, mean over seeds (std columns when several seeds)."""
    s = summary(results.metrics)
    keys = [f"dice_{r}" for r in REGIONS] + ["dice_mean"]
    table = (100 * s[keys]).round(1)
    table.columns = ["Dice WT", "Dice TC", "Dice ET", "mean Dice"]
    if int(s["seeds"].max()) > 1:
        std = (100 * s[[k + "_std" for k in keys]]).round(1)
        std.columns = [c + " std" for c in table.columns]
        table = table.join(std)
    table["params"] = s["params"].astype(int)
    return table


def dice_figure(results: Results) -> go.Figure:
    """Grouped bars: Dice per region for every method (error bars: std over seeds)."""
    s = summary(results.metrics)
    fig = go.Figure()
    for r in REGIONS:
        fig.add_trace(go.Bar(name=REGION_NAMES[r], x=list(s.index), y=100 * s[f"dice_{r}"],
                             error_y=dict(type="data", array=100 * s[f"dice_{r}_std"])))
    fig.update_layout(barmode="group", yaxis_title="Dice (%)", yaxis_range=[0, 100], height=380,
                      title="Held-out phantom test set")
    return fig


def contribution_figure(results: Results, method: str = "ciml", index: int = 0,
                        seed: int | None = None) -> go.Figure:
    """Input × gradient maps: rows regions, columns modalities, for one test phantom."""
    seed = results.config.seeds[0] if seed is None else seed
    model = results.models.get((method, seed))
    if model is None:
        raise ValueError(f"no trained {method!r} model for seed {seed} in these results")
    test = results.test
    images, masks = test.images[index:index + 1], test.masks[index:index + 1]
    titles = [f"{REGION_NAMES[r]} ← {MODALITY_NAMES[m]}" for r in REGIONS for m in MODALITIES]
    fig = make_subplots(rows=3, cols=4, subplot_titles=titles, horizontal_spacing=0.01,
                        vertical_spacing=0.05)
    for row, region in enumerate(REGIONS, start=1):
        maps = modality_contributions(model.predict, images, masks, region)[0]
        for col in range(4):
            _image(fig, maps[col], row, col + 1, "hot", 0, float(maps.max()))
    fig.update_layout(height=620, width=640, title=f"{LABELS[method]}: which modality contributes where")
    fig.update_annotations(font_size=9)
    return _square(fig)


def contribution_frame(results: Results, method: str = "ciml", seed: int | None = None,
                       n: int = 32) -> pd.DataFrame:
    """Share (%) of each modality in the input × gradient mass per region, over ``n`` test phantoms."""
    seed = results.config.seeds[0] if seed is None else seed
    model = results.models[(method, seed)]
    test = results.test
    shares = contribution_shares(model.predict, test.images[:n], test.masks[:n])
    frame = 100 * pd.DataFrame(shares).T.rename(columns=MODALITY_NAMES)
    frame.index = [REGION_NAMES[r] for r in frame.index]
    return frame.round(1)


def gate_figure(results: Results, index: int = 0, seed: int | None = None) -> go.Figure:
    """CIML's gates a_{m←n}: rows primary segmentors, columns auxiliary modalities."""
    seed = results.config.seeds[0] if seed is None else seed
    model = results.models.get(("ciml", seed))
    if not isinstance(model, CIML):
        raise ValueError("these results have no CIML model; include 'ciml' in methods")
    gates = gate_maps(model, results.test.images[index:index + 1])
    mods = list(model.subtasks)
    titles = [f"{MODALITY_NAMES[m]} ← {MODALITY_NAMES[n]}" if m != n else "" for m in mods for n in mods]
    fig = make_subplots(rows=len(mods), cols=len(mods), subplot_titles=titles,
                        horizontal_spacing=0.01, vertical_spacing=0.04)
    for i, m in enumerate(mods, start=1):
        for j, n in enumerate(mods, start=1):
            z = gates[(m, n)][0] if m != n else torch.zeros(results.test.images.shape[-2:])
            _image(fig, z, i, j, "viridis", 0, 1)
    fig.update_layout(height=640, width=640, title="CIML gates: where segmentor m lets modality n in")
    fig.update_annotations(font_size=9)
    return _square(fig)


def history_figure(results: Results, key: str = "loss") -> go.Figure:
    """Training curves: ``key`` (loss, seg, kl, …) per epoch for every method and seed."""
    frame = pd.DataFrame(results.history)
    if key not in frame:
        raise ValueError(f"no {key!r} in the training history; have {sorted(frame.columns)}")
    fig = go.Figure()
    for (method, seed), part in frame.dropna(subset=[key]).groupby(["method", "seed"], sort=False):
        fig.add_trace(go.Scatter(x=part["epoch"], y=part[key], mode="lines+markers",
                                 name=f"{method} (seed {seed})"))
    fig.update_layout(xaxis_title="epoch", yaxis_title=key, height=340)
    return fig
