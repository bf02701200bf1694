"""mimmx.evaluation on synthetic features whose answer is known: independent parts must probe
at chance, a part that carries z must give z away; tables must format exactly."""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd
import pytest
import torch

from mimmx.evaluation import (
    accuracy_table,
    chance_level,
    embed,
    embedding_figure,
    embedding_panels,
    embeddings_frame,
    head_accuracy_table,
    heads_to_tidy,
    leakage_score,
    matrix_to_tidy,
    mean_std,
    probe_matrix,
    probe_table,
    split_halves,
    subsample,
    to_markdown,
)

SLOW = os.environ.get("MIMMX_SLOW") == "1"


def synthetic(n: int = 4000, leak: bool = False, seed: int = 0):
    """y, z1, z2 independent balanced binary labels (a Balanced set); f_y depends on y only,
    f_zi on zi only; with ``leak`` f_y also carries z1 in one extra dimension."""
    rng = np.random.default_rng(seed)
    labels = {k: rng.integers(0, 2, n) for k in ("y", "z1", "z2")}
    parts = {
        "f_y": 2.0 * labels["y"][:, None] + rng.normal(size=(n, 4)),
        "f_z1": 2.0 * labels["z1"][:, None] + rng.normal(size=(n, 2)),
        "f_z2": 2.0 * labels["z2"][:, None] + rng.normal(size=(n, 3)),
    }
    if leak:
        parts["f_y"] = np.c_[parts["f_y"], 3.0 * labels["z1"] + rng.normal(size=n)]
    return parts, labels


def off_diagonal(matrix: pd.DataFrame) -> dict[tuple[str, str], float]:
    return {(p, lab): matrix.loc[p, lab] for p in matrix.index for lab in matrix.columns
            if p != f"f_{lab}"}


# --- split --------------------------------------------------------------------------------

def test_split_halves_disjoint_complete_stratified_seeded():
    rng = np.random.default_rng(1)
    y, z = rng.integers(0, 2, 1001), (rng.random(1001) < 0.2).astype(int)
    train, test = split_halves({"y": y, "z": z}, seed=3)
    assert np.intersect1d(train, test).size == 0
    assert np.array_equal(np.sort(np.r_[train, test]), np.arange(1001))
    assert abs(len(train) - len(test)) <= 4  # at most one extra per (y, z) group
    for a in (0, 1):
        for b in (0, 1):
            group = (y == a) & (z == b)
            assert abs(group[train].sum() - group[test].sum()) <= 1
    again, _ = split_halves({"y": y, "z": z}, seed=3)
    other, _ = split_halves({"y": y, "z": z}, seed=4)
    assert np.array_equal(train, again) and not np.array_equal(train, other)


def test_probe_matrix_uses_disjoint_halves():
    parts, labels = synthetic(n=999)
    m = probe_matrix(parts, labels)
    assert m.attrs["n_train"] + m.attrs["n_test"] == 999
    assert abs(m.attrs["n_train"] - m.attrs["n_test"]) <= 8  # 8 label groups


# --- probe matrix -------------------------------------------------------------------------

@pytest.mark.parametrize("probe", ["logreg", "knn"])
def test_independent_parts_probe_at_chance(probe):
    parts, labels = synthetic()
    m = probe_matrix(parts, labels, probe=probe, seed=0)
    assert list(m.index) == ["f_y", "f_z1", "f_z2"] and list(m.columns) == ["y", "z1", "z2"]
    for cell, acc in off_diagonal(m).items():
        assert abs(acc - 50) < 4, (cell, acc)  # 2000 test samples: 1 SE ≈ 1.1 points
    for p, lab in m.attrs["diagonal"]:
        assert m.loc[p, lab] > 90  # each part does predict its own label
    assert m.attrs["diagonal"] == [("f_y", "y"), ("f_z1", "z1"), ("f_z2", "z2")]
    assert leakage_score(m) < 0.06


@pytest.mark.parametrize("probe", ["logreg", "knn"])
def test_leaked_f_y_gives_z_away(probe):
    clean = leakage_score(probe_matrix(*synthetic(), probe=probe))
    m = probe_matrix(*synthetic(leak=True), probe=probe)
    assert m.loc["f_y", "z1"] > 90
    assert m.loc["f_y", "z2"] < 55  # only z1 leaked
    assert leakage_score(m) > clean + 0.1  # one of six cells near 1 lifts the mean by ~0.14


def test_probe_matrix_accepts_tensors_and_is_seeded():
    parts, labels = synthetic(n=600)
    tensors = {k: torch.from_numpy(v).float() for k, v in parts.items()}
    a = probe_matrix(tensors, {k: torch.from_numpy(v) for k, v in labels.items()}, seed=5)
    b = probe_matrix(parts, labels, seed=5)
    pd.testing.assert_frame_equal(a, b, atol=0.2)  # float32 vs float64 features
    c = probe_matrix(parts, labels, seed=6)
    assert not a.equals(c)


def test_multiclass_chance_is_ten_percent():
    rng = np.random.default_rng(2)
    digit = rng.integers(0, 10, 4000)
    assert 9 < chance_level(digit) < 12
    centres = rng.normal(size=(10, 5)) * 3
    parts = {"f_y": centres[digit] + rng.normal(size=(4000, 5)), "noise": rng.normal(size=(4000, 5))}
    m = probe_matrix(parts, {"y": digit}, probe="logreg")
    assert 9 < m.attrs["chance"]["y"] < 12
    assert m.loc["f_y", "y"] > 80
    assert m.loc["noise", "y"] < 14  # unrelated features: chance, not 50%
    assert leakage_score(m) < 0.05  # ("noise", "y") is the only off-diagonal cell


def test_chance_level_majority_rate():
    assert chance_level(np.array([0, 0, 0, 1])) == 75.0
    assert chance_level(torch.tensor([2, 2, 5, 7, 7])) == 40.0


def test_leakage_score_formula():
    m = pd.DataFrame({"y": [95.0, 75.0, 50.0], "z1": [100.0, 99.0, 25.0]},
                     index=["f_y", "f_z1", "f_z2"])
    # off-diagonal: (f_y,z1) |100-50|/50=1, (f_z1,y) |75-50|/50=.5, (f_z2,y) 0, (f_z2,z1) .5
    assert leakage_score(m, chance={"y": 50, "z1": 50}) == pytest.approx((1 + 0.5 + 0 + 0.5) / 4)
    with pytest.raises(ValueError, match="chance"):
        leakage_score(m)


def test_probe_matrix_bad_input_is_clear():
    parts, labels = synthetic(n=100)
    with pytest.raises(ValueError, match="unknown probe"):
        probe_matrix(parts, labels, probe="svm")
    with pytest.raises(ValueError, match="same number of samples"):
        probe_matrix(parts, {"y": labels["y"][:50]})
    with pytest.raises(ValueError, match="NaN"):
        probe_matrix({"f_y": np.full((100, 2), np.nan)}, labels)


# --- table (a) ----------------------------------------------------------------------------

def test_head_accuracy_table_values_and_layout():
    logits = np.array([[0.1, 0.9], [0.8, 0.2], [0.3, 0.7], [0.6, 0.4]])  # argmax 1, 0, 1, 0
    t = head_accuracy_table({
        "f_y→y": {"Val": (np.array([1, 0, 1, 1]), np.array([1, 0, 0, 1])),
                  "Inv": (logits, np.array([1, 1, 1, 1]))},
        "f_z1→z1": {"Val": (torch.tensor([1, 1]), torch.tensor([1, 1])),
                    "Bal": (np.array([0]), np.array([1]))},
    })
    assert list(t.index) == ["f_y→y", "f_z1→z1"] and list(t.columns) == ["Val", "Inv", "Bal"]
    assert t.loc["f_y→y", "Val"] == 75.0 and t.loc["f_y→y", "Inv"] == 50.0
    assert t.loc["f_z1→z1", "Val"] == 100.0 and t.loc["f_z1→z1", "Bal"] == 0.0
    assert np.isnan(t.loc["f_z1→z1", "Inv"])


# --- tables -------------------------------------------------------------------------------

def test_mean_std_exact_strings():
    assert mean_std([84.0, 86.0]) == "85.0 ± 1.4"  # sample std (ddof=1): √2
    assert mean_std([82.6, 82.8, 83.0], decimals=2) == "82.80 ± 0.20"
    assert mean_std([70.25]) == "70.2"  # one seed: no spread
    assert mean_std([np.nan, 50.0, 52.0]) == "51.0 ± 1.4"
    assert mean_std([]) == "–"


def test_accuracy_table_layout_and_markdown():
    rows = []
    for seed, (val, inv) in enumerate([(96.0, 27.0), (97.0, 28.0)]):
        rows += [("Baseline", seed, "f_y→y", "Val", val), ("Baseline", seed, "f_y→y", "Inv", inv)]
    rows += [("MIMM-X", 0, "f_y→y", "Val", 84.0), ("MIMM-X", 1, "f_y→y", "Val", 85.0),
             ("MIMM-X", 0, "f_y→y", "Inv", 82.0)]
    df = pd.DataFrame(rows, columns=["method", "seed", "head", "test_set", "accuracy"])
    t = accuracy_table(df)
    assert list(t.index) == ["Baseline", "MIMM-X"]  # order of first appearance, not sorted
    assert list(t.columns) == [("f_y→y", "Val"), ("f_y→y", "Inv")]
    assert t.loc["MIMM-X", ("f_y→y", "Inv")] == "82.0 (n=1)"
    with pytest.raises(ValueError, match="several rows per seed"):
        accuracy_table(pd.concat([df.assign(probe="knn"), df.assign(probe="logreg")]))
    assert to_markdown(t) == (
        "Accuracy [%] (mean ± std over 2 seeds)\n\n"
        "| method | f_y→y Val | f_y→y Inv |\n"
        "| --- | --- | --- |\n"
        "| Baseline | 96.5 ± 0.7 | 27.5 ± 0.7 |\n"
        "| MIMM-X | 84.5 ± 0.7 | 82.0 (n=1) |\n"
    )


def test_tidy_round_trip_and_probe_table():
    m = pd.DataFrame({"y": [97.0, 51.0], "z1": [70.0, 93.0]}, index=["f_y", "f_z1"])
    tidy = pd.concat([matrix_to_tidy(m + s, method="Baseline", seed=s) for s in (0, 2)])
    assert list(tidy.columns) == ["method", "seed", "part", "label", "accuracy"]
    t = probe_table(tidy)
    assert t.loc["f_y", ("Baseline", "y")] == "–"  # own label, as in the poster
    assert t.loc["f_y", ("Baseline", "z1")] == "71.0 ± 1.4"
    assert t.loc["f_z1", ("Baseline", "y")] == "52.0 ± 1.4"
    heads = head_accuracy_table({"f_y→y": {"Val": ([1, 1], [1, 0])}})
    assert heads_to_tidy(heads, method="A", seed=0).to_dict("records") == [
        {"method": "A", "seed": 0, "head": "f_y→y", "test_set": "Val", "accuracy": 50.0}]


# --- embeddings ---------------------------------------------------------------------------

def test_embed_pca_and_tsne_shapes_and_seeding():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 6))
    x[:60] += 4  # two clusters
    pca = embed(x, "pca")
    assert pca.shape == (120, 2)
    assert abs(pca[:60, 0].mean() - pca[60:, 0].mean()) > 5  # first component splits them
    tsne = embed(x, "tsne", seed=1, max_iter=250)
    assert tsne.shape == (120, 2) and np.isfinite(tsne).all()
    assert np.allclose(tsne, embed(x, "tsne", seed=1, max_iter=250, threads=1))


def test_embed_low_dimensional_features_pass_through():
    x = np.arange(10.0).reshape(5, 2)
    assert np.array_equal(embed(x, "umap"), x)  # d = 2: nothing to reduce, no UMAP run
    one = embed(torch.arange(5.0)[:, None], "tsne")
    assert one.shape == (5, 2) and np.array_equal(one[:, 0], np.arange(5.0))
    assert not one[:, 1].any()


def test_embed_bad_input_is_clear():
    with pytest.raises(ValueError, match="unknown embedding method 'isomap'"):
        embed(np.zeros((5, 3)), "isomap")
    with pytest.raises(ValueError, match="NaN"):
        embed(np.full((5, 3), np.nan), "pca")


@pytest.mark.skipif(not SLOW, reason="UMAP's first call compiles numba kernels (~20-40 s on "
                    "2 loaded cores); set MIMMX_SLOW=1 to run")
def test_embed_umap_small():
    from mimmx.evaluation import warm_up_umap

    thread = warm_up_umap(background=True)
    thread.join()
    rng = np.random.default_rng(0)
    x = rng.normal(size=(150, 6))
    x[:75] += 5
    start = time.perf_counter()
    xy = embed(x, "umap", seed=0)
    assert xy.shape == (150, 2) and time.perf_counter() - start < 20  # compiled already
    centre_gap = np.linalg.norm(xy[:75].mean(0) - xy[75:].mean(0))
    assert centre_gap > 3 * xy[:75].std(0).mean()  # the two clusters stay apart


def test_embedding_figure_one_trace_per_label_value():
    rng = np.random.default_rng(0)
    coords = rng.normal(size=(50, 2))
    y, z1 = rng.integers(0, 2, 50), rng.integers(0, 3, 50)
    fig = embedding_figure(coords, {"y": y, "z1": z1}, "f_y (PCA)",
                           names={"z1": {0: "thin", 1: "medium", 2: "thick"}})
    assert [t.legendgroup for t in fig.data] == ["y=0", "y=1", "z1=0", "z1=1", "z1=2"]
    assert [t.name for t in fig.data][2:] == ["thin", "medium", "thick"]
    assert [t.visible for t in fig.data] == [True, True, False, False, False]
    assert sum(len(t.x) for t in fig.data[:2]) == 50 and sum(len(t.x) for t in fig.data[2:]) == 50
    assert len(fig.data[3].x) == (z1 == 1).sum()
    buttons = fig.layout.updatemenus[0].buttons
    assert [b.label for b in buttons] == ["colour by y", "colour by z1"]
    assert buttons[1].args[0]["visible"] == [False, False, True, True, True]
    assert fig.layout.title.text == "f_y (PCA)"


def test_embedding_panels_share_legend_and_buttons_across_parts():
    rng = np.random.default_rng(1)
    parts = {"f_y": rng.normal(size=(40, 2)), "f_z1": rng.normal(size=(40, 2))}
    y, z1 = rng.integers(0, 2, 40), rng.integers(0, 2, 40)
    fig = embedding_panels(parts, {"y": y, "z1": z1}, "PCA")
    # per label value, one trace in each panel; only the first panel's enter the legend
    assert [t.legendgroup for t in fig.data] == ["y=0", "y=0", "y=1", "y=1", "z1=0", "z1=0", "z1=1", "z1=1"]
    assert [t.showlegend for t in fig.data] == [True, False] * 4
    assert [t.xaxis for t in fig.data[:2]] == ["x", "x2"]
    assert np.array_equal(fig.data[1].x, parts["f_z1"][y == 0, 0])
    assert fig.layout.updatemenus[0].buttons[1].args[0]["visible"] == [False] * 4 + [True] * 4
    assert [a.text for a in fig.layout.annotations] == ["f_y", "f_z1"]
    with pytest.raises(ValueError, match="must have shape"):
        embedding_panels({"f_y": parts["f_y"], "f_z1": parts["f_z1"][:30]}, {"y": y})


def test_embeddings_frame_subsamples_the_same_points_for_every_part():
    parts, labels = synthetic(n=500)
    f = embeddings_frame(parts, labels, method="pca", max_points=200, seed=3)
    assert list(f.columns) == ["part", "index", "dim1", "dim2", "y", "z1", "z2"]
    assert len(f) == 3 * 200 and list(pd.unique(f["part"])) == ["f_y", "f_z1", "f_z2"]
    by_part = [g["index"].to_numpy() for _, g in f.groupby("part", sort=False)]
    assert all(np.array_equal(by_part[0], i) for i in by_part)
    assert np.array_equal(f["z1"].to_numpy()[:200], labels["z1"][by_part[0]])
    assert len(embeddings_frame(parts, labels, method="pca")) == 3 * 500  # PCA: all points


def test_subsample_seeded_sorted_unique():
    idx = subsample(1000, 300, seed=1)
    assert len(idx) == 300 and len(np.unique(idx)) == 300 and np.all(np.diff(idx) > 0)
    assert np.array_equal(idx, subsample(1000, 300, seed=1))
    assert not np.array_equal(idx, subsample(1000, 300, seed=2))
    assert np.array_equal(subsample(50, 300), np.arange(50))
    with pytest.raises(ValueError, match="unknown embedding method"):
        embeddings_frame({"f_y": np.zeros((5, 3))}, {}, method="mds")
