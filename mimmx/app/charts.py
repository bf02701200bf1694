"""Plotly figures and tables of the app, built from ``Job.snapshot()`` state (plain dicts)."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from mimmx.evaluation import embedding_panels

SPLIT_NAMES = {"validation": "Validation", "inverted": "Inverted", "balanced": "Balanced"}
SHARED_FIGURES = 64  # figures kept for every session of the server (the most recent)

_shared: OrderedDict = OrderedDict()
_shared_lock = threading.Lock()


def shared(identity, build: Callable[[], go.Figure | None]) -> go.Figure | None:
    """``build()``, made once per server for a hashable ``identity`` of its content and shared
    by every browser session (a class shows the same stored runs: thirty sessions would
    otherwise build thirty equal figures at the same moment, and plotly's figure building is
    what a redraw costs most). The figure must not be changed after."""
    with _shared_lock:
        if identity in _shared:
            _shared.move_to_end(identity)
            return _shared[identity]
    fig = build()  # outside the lock: two sessions may build it at once, both get an equal figure
    with _shared_lock:
        _shared[identity] = fig
        while len(_shared) > SHARED_FIGURES:
            _shared.popitem(last=False)
    return fig


def robustness_figure(frame: pd.DataFrame, scenario: str, r_now: float | None) -> go.Figure:
    """Inverted (solid) and Validation (dotted) y accuracy against r of the stored runs
    (:func:`mimmx.app.session.robustness`, drawn as ``mimmx sweep`` draws it), the sidebar's r
    marked. Without stored runs, the empty axes with a note: the page draws them from the start,
    which also has the browser load plotly's code (4.7 MB, over a second to parse on a busy
    core) before the first Train rather than after it."""
    from mimmx.runs.reproduce import sweep_figure

    fig = sweep_figure(frame, scenario)
    if frame.empty:
        fig.add_annotation(x=0.75, y=75, showarrow=False,
                           text="no stored run at these settings yet: Train adds one")
    if r_now is not None:
        fig.add_vline(x=r_now, line_dash="dash", line_color="black", annotation_text=f"r = {r_now:g}",
                      annotation_position="top")  # above the axes, clear of the curves
    fig.update_layout(title=None, height=380, yaxis_range=[0, 100], xaxis_range=[0.48, 1.01])
    return fig


def accuracy_frame(runs: dict) -> pd.DataFrame:
    """Tidy ``method, epoch, test_set, accuracy`` of the y head, from every run's eval events."""
    out = [{"method": label, "epoch": ev["epoch"], "test_set": name, "accuracy": ev["acc"][s]["y"]}
           for label, run in runs.items() for ev in run["history"]
           for s, name in SPLIT_NAMES.items() if s in ev["acc"]]
    return pd.DataFrame(out, columns=["method", "epoch", "test_set", "accuracy"])


def accuracy_figure(runs: dict) -> go.Figure:
    """Accuracy of f_y→y on Validation / Inverted / Balanced over the epochs, one panel per method."""
    df = accuracy_frame(runs)
    fig = px.line(df, x="epoch", y="accuracy", color="test_set", facet_col="method", markers=True,
                  range_y=[0, 100], template="plotly_white",
                  labels={"accuracy": "accuracy of y [%]", "test_set": "test set"})
    fig.add_hline(y=50, line_dash="dot", line_color="grey")
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))  # "method=X" -> "X"
    epochs = int(df["epoch"].max()) if len(df) else 1
    fig.update_xaxes(tick0=1, dtick=max(1, epochs // 10))
    fig.update_layout(height=340, margin={"t": 40})
    return fig


DYNAMICS_POINTS = 60  # points per loss / γ curve: means of consecutive encoder steps


def dynamics_frame(runs: dict, points: int = DYNAMICS_POINTS) -> pd.DataFrame:
    """Tidy ``method, epoch, panel, quantity, value``: the task losses and γ's of the encoder
    steps (they arrive from the first step on), as the means of at most ``points`` runs of
    consecutive steps (smoother to read and far lighter to draw than every step), and the
    method's dependence estimate at every evaluation."""
    frames = []
    for label, run in runs.items():
        steps = pd.DataFrame(run["steps"])
        keys = [k for k in steps.columns if _panel(k)]
        if keys:
            bins = np.arange(len(steps)) * min(points, len(steps)) // len(steps)
            means = steps[["epoch", *keys]].groupby(bins).mean()
            long = means.melt(id_vars="epoch", var_name="quantity", value_name="value").dropna()
            frames.append(long.assign(method=label, panel=long["quantity"].map(_panel)))
        estimates = [{"epoch": ev["epoch"], "value": ev["estimate"]}
                     for ev in run["history"] if ev.get("estimate") is not None]
        if estimates:
            frames.append(pd.DataFrame(estimates).assign(method=label, panel="weights",
                                                         quantity="MI estimate"))
    columns = ["method", "epoch", "panel", "quantity", "value"]
    return pd.concat(frames)[columns].reset_index(drop=True) if frames else pd.DataFrame(columns=columns)


def _panel(key: str) -> str | None:
    if key.startswith("loss_"):
        return "losses"
    if key.startswith("gamma_"):
        return "weights"
    return None


def dynamics_figure(runs: dict) -> go.Figure | None:
    """Top row: the cross-entropy of every head over the encoder steps; bottom row: the DLS
    weights γ (1 without DLS) and the MI estimate; one column per method (the page draws one
    method per figure, so that a run's chart is redrawn only at its own evaluations)."""
    df = dynamics_frame(runs)
    if df.empty:
        return None
    few = df.groupby(["method", "quantity"]).size().min() < 20  # too few for lines alone
    fig = px.line(df, x="epoch", y="value", color="quantity", facet_col="method", facet_row="panel",
                  category_orders={"panel": ["losses", "weights"]}, template="plotly_white",
                  markers=bool(few))
    fig.update_yaxes(matches=None)
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=")[-1]))
    fig.update_layout(height=420, margin={"t": 40})
    return fig


def factor_names(info: dict | None) -> dict[str, str]:
    """``{"z1": "marker", ...}``: the scenario's factor names by head (empty without ``info``)."""
    return {f"z{i + 1}": f["name"] for i, f in enumerate((info or {}).get("factors", []))}


def final_table(runs: dict, info: dict | None = None) -> pd.DataFrame:
    """One row per finished run: every head on every test set at the epoch chosen on the
    confounded selection split (the poster's table (a)); factor heads by name given ``info``."""
    names = factor_names(info)
    out = []
    for label, run in runs.items():
        best = (run.get("record") or {}).get("best")
        if not best:
            continue
        row = {"method": label, "epoch": best["epoch"], "cached": run["cached"]}
        for s, name in SPLIT_NAMES.items():
            for head, acc in best["acc"][s].items():
                row[f"{name} {names.get(head, head)}"] = round(acc, 1)
        out.append(row)
    return pd.DataFrame(out)


def probe_table(record: dict, info: dict | None = None) -> pd.DataFrame | None:
    """Table (b): logistic-regression probe accuracy of every label from every feature part;
    factors by name given ``info``."""
    probes = pd.DataFrame((record.get("report") or {}).get("probes", []))
    if probes.empty:
        return None
    names = factor_names(info)
    probes = probes[probes["probe"] == "logreg"].assign(
        part=lambda d: d["part"].map(lambda p: f"f_{names.get(p[2:], p[2:])}"),
        label=lambda d: d["label"].map(lambda c: names.get(c, c)))
    return probes.pivot(index="part", columns="label", values="accuracy").round(1)


def contingency_table(info: dict, split: str) -> pd.DataFrame:
    """Counts of (y, z) per factor in one split: rows y, columns factor / z."""
    df = pd.DataFrame(info["contingency"])
    df = df[df["split"] == split]
    return df.pivot_table(index="y", columns=["factor", "z"], values="count", sort=False)


def run_embedding_figure(records: list[dict] | None, info: dict | None, note: str = "") -> go.Figure | None:
    """One figure of a run's 2-D embeddings (records of ``session.embedding_records``), a panel
    per feature part, coloured by y or by each z (the buttons switch all panels); None if none."""
    df = pd.DataFrame(records or [])
    if df.empty:
        return None
    how = df["method"].iloc[0] if "method" in df.columns else "PCA"
    labels = [c for c in df.columns if c == "y" or (c.startswith("z") and c[1:].isdigit())]
    names = {}
    if info:
        names["y"] = dict(enumerate(info["y_names"]))
        for i, f in enumerate(info["factors"]):
            names[f"z{i + 1}"] = dict(enumerate(f["values"]))
    parts = dict(tuple(df.groupby("part", sort=False)))
    first = next(iter(parts.values()))  # every part embeds the same points, in the same order
    fig = embedding_panels({part: d[["dim1", "dim2"]].to_numpy() for part, d in parts.items()},
                           {k: first[k].to_numpy() for k in labels}, title=f"{how}{note}", names=names)
    fig.update_layout(height=380)
    return fig


def run_embeddings(run: dict) -> tuple[list[dict] | None, str]:
    """What the page shows of a run's features, and a note for the titles: the final
    embedding once the run is stored, else the live one (UMAP once it has one, else PCA)."""
    record = run.get("record") or {}
    if record.get("app_embeddings"):
        return record["app_embeddings"], ", Balanced set"
    live = run.get("live_umap") or run.get("live")
    if not live:
        return None, ""
    return live["records"], f", epoch {live['epoch']}, live"
