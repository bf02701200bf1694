import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from mimmx.scenarios import (
    SCENARIOS,
    FactorSpec,
    InfeasibleScenarioError,
    ScenarioSpec,
    build,
    build_named,
    cell_counts,
    split_conditionals,
)

SMALL = dict(n_train=2000, n_selection=400, n_test=400)


@pytest.fixture(scope="module")
def exp2(real_data):
    return build_named("exp2", seed=3, **SMALL)


def _ratio(split, i, y, z):
    return float(((split.y == y) & (split.z[:, i] == z)).float().mean())


def test_exact_tables_for_r(exp2):
    r = 0.9
    for name, expect in [("train", r), ("selection", r), ("validation", r), ("inverted", 1 - r), ("balanced", 0.5)]:
        s = exp2.splits[name]
        for i in range(2):
            # P(z_i = y) by construction (counts are rounded, not sampled)
            agree = float((s.z[:, i] == s.y).float().mean())
            assert agree == pytest.approx(expect, abs=1 / len(s)), (name, i)
        assert float(s.y.float().mean()) == pytest.approx(0.5, abs=1 / len(s))


def test_inversion_flips_every_association(exp2):
    val, inv = exp2.splits["validation"], exp2.splits["inverted"]
    for i in range(2):
        for y in range(2):
            for z in range(2):
                assert _ratio(inv, i, y, z) == pytest.approx(_ratio(val, i, y, 1 - z), abs=2 / len(val))


def test_factors_independent_given_y(exp2):
    s = exp2.splits["train"]
    for y in range(2):
        m = s.y == y
        p1, p2 = s.z[m, 0].float().mean(), s.z[m, 1].float().mean()
        p12 = (s.z[m, 0] * s.z[m, 1]).float().mean()
        assert float(p12) == pytest.approx(float(p1 * p2), abs=2e-3)


def test_splits_disjoint_and_sources(exp2):
    by_source = {"train": [], "test": []}
    for name, s in exp2.splits.items():
        assert s.source == ("train" if name in ("train", "selection") else "test")
        by_source[s.source].append(s.index)
    for idx in by_source.values():
        cat = torch.cat(idx)
        assert len(cat.unique()) == len(cat)


def test_same_seed_same_splits_other_seed_differs(real_data, exp2):
    again = build_named("exp2", seed=3, **SMALL)
    other = build_named("exp2", seed=4, **SMALL)
    for name in exp2.splits:
        a, b = exp2.splits[name], again.splits[name]
        assert torch.equal(a.x, b.x) and torch.equal(a.z, b.z) and torch.equal(a.index, b.index)
    assert not torch.equal(exp2.splits["train"].index, other.splits["train"].index)


def test_induced_transforms_are_visible(exp2):
    s = exp2.splits["balanced"]
    left, right = s.z[:, 0] == 0, s.z[:, 0] == 1
    # the marker is drawn, then the whole image (marker included) gets the intensity change
    patch = torch.where(left.view(-1, 1, 1), s.x[:, 1:5, 1:5], s.x[:, 1:5, -5:-1])
    assert left.any() and right.any()
    assert (patch == torch.where(s.z[:, 1] == 1, 153, 255).view(-1, 1, 1).to(torch.uint8)).all()
    dark, normal = s.z[:, 1] == 1, s.z[:, 1] == 0
    assert s.x[dark].max() <= 153 and s.x[normal].max() == 255


def test_labels_follow_the_groups(exp2, real_data):
    from mimmx import data

    labels = data.load("fashion-mnist", "test").labels
    s = exp2.splits["validation"]
    groups = SCENARIOS["exp2"].y_groups
    expect = torch.tensor([0 if int(c) in groups[0] else 1 for c in labels[s.index]])
    assert torch.equal(s.y, expect)


def test_exp3_matches_the_poster_ratio_table(real_data):
    sc = build_named("exp3", seed=0)
    t = sc.contingency(["train"])
    for f in SCENARIOS["exp3"].factors:
        sub = t[t.factor == f.name]
        got = sub.sort_values(["y", "z"], key=lambda c: c.map({**{v: i for i, v in enumerate(sc.y_names)},
                                                                 **{v: i for i, v in enumerate(sc.z_values[sc.factor_names.index(f.name)])}}))
        assert np.abs(got["ratio"].to_numpy().reshape(2, 2) - np.array(f.table)).max() <= 0.01
    # natural factors are what was measured, not assigned: recompute from the base images
    from mimmx import data
    from mimmx.scenarios.factors import NATURAL, Context

    base = data.load("fashion-mnist", "train").images
    s = sc.splits["train"]
    i = sc.factor_names.index("brightness")
    values = NATURAL["brightness"](base[s.index], Context("fashion-mnist", "train", s.index, None))
    assert torch.equal((values > sc.thresholds["brightness"]).long(), s.z[:, i])


def test_fashion_border_patterns(real_data):
    sc = build_named("fashion", seed=0, n_train=1000, n_selection=200, n_test=1500)
    s = sc.splits["train"]
    assert float((s.z[:, 0] == s.y).float().mean()) == pytest.approx(0.9, abs=1e-3)
    left = s.z[:, 0] == 0  # pattern "L": left bar only
    assert (s.x[left][:, :, :3] == 255).all()
    inv = sc.splits["inverted"]
    # inverted, 10 values: P(z = y) = (1 - 0.9) / 9, up to rounding of the 10 diagonal cells
    assert float((inv.z[:, 0] == inv.y).float().mean()) == pytest.approx(0.1 / 9, abs=10 / len(inv))
    # and every class now mostly carries some other pattern
    for k in range(10):
        assert (inv.z[inv.y == k, 0] != k).float().mean() > 0.95


def test_cell_counts_exact_and_sum():
    counts = cell_counts(101, np.array([0.5, 0.5]), [np.array([[0.9, 0.1], [0.1, 0.9]])])
    assert sum(counts.values()) == 101
    assert counts[(0, 0)] in (45, 46) and counts[(0, 1)] == 5
    inv = split_conditionals([np.array([[0.9, 0.1], [0.2, 0.8]])], "inverted")[0]
    assert np.allclose(inv, [[0.1, 0.9], [0.8, 0.2]])


def _spec(**kw):
    base = dict(name="t", dataset="fashion-mnist", y_groups=((0, 3), (2, 4, 6)),
                factors=(FactorSpec("marker", "induced", "marker", r=0.9),), n_train=500,
                n_selection=100, n_test=100)
    base.update(kw)
    return ScenarioSpec(**base)


@pytest.mark.parametrize("factor, message", [
    (FactorSpec("marker", "induced", "marker", r=1.2), "r = 1.2 is outside"),
    (FactorSpec("marker", "induced", "marker", table=((0.5, 0.1), (0.1, 0.5))), "sums to 1.2"),
    (FactorSpec("marker", "induced", "marker", table=((0.5, 0.5),)), "shape"),
    (FactorSpec("marker", "induced", "marker", table=((0.6, -0.1), (0.25, 0.25))), "negative"),
    (FactorSpec("marker", "induced", "marker"), "exactly one of r or table"),
    (FactorSpec("marker", "induced", "blur", r=0.9), "unknown induced source"),
    (FactorSpec("marker", "induced", "thickness", r=0.9), "works on"),
    (FactorSpec("marker", "natural", "slant", r=0.9), "MNIST only"),
])
def test_infeasible_requests_name_the_factor(real_data, factor, message):
    with pytest.raises(Exception, match=message) as info:
        build(_spec(factors=(factor,)), seed=0)
    assert "marker" in str(info.value)


def test_too_few_images_names_split_and_cell(real_data):
    with pytest.raises(InfeasibleScenarioError, match=r"split 'train'.*cell \(y=0"):
        build(_spec(n_train=30000), seed=0)


def test_inconsistent_p_y_across_factors(real_data):
    f1 = FactorSpec("marker", "induced", "marker", table=((0.45, 0.05), (0.05, 0.45)))
    f2 = FactorSpec("intensity", "induced", "intensity", table=((0.3, 0.1), (0.3, 0.3)))
    with pytest.raises(InfeasibleScenarioError, match="intensity.*P\\(y\\)"):
        build(_spec(factors=(f1, f2)), seed=0)


def test_cli_json(real_data):
    out = subprocess.run([sys.executable, "-m", "mimmx", "scenario", "exp2", "--json"],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["sizes"]["train"] == SCENARIOS["exp2"].n_train
    assert {r["split"] for r in doc["contingency"]} == {"train", "selection", "validation", "inverted", "balanced"}


def test_replace_keeps_spec_frozen():
    spec = dataclasses.replace(SCENARIOS["exp2"], n_train=10)
    assert spec.n_train == 10 and SCENARIOS["exp2"].n_train == 9000


def test_sample_grid_shows_each_cell(exp2):
    from mimmx.scenarios import sample_figure, sample_grid

    grid, labels = sample_grid(exp2, "train", factor=0, per_cell=3)
    assert grid.shape == (4, 3, 28, 28) and len(labels) == 4
    # cell (y=0, marker=left): every shown image has the marker in the top-left corner
    assert (grid[0][:, 1:5, 1:5] > 0).all() and "left" in labels[0]
    assert "(" + str(int(((exp2.splits["train"].y == 0) & (exp2.splits["train"].z[:, 0] == 0)).sum())) + ")" in labels[0]
    fig = sample_figure(exp2, "train", factor=1, per_cell=3)
    assert len(fig.data) == 4
    # each title sits above its own cell's images: facets run top-down in the cells' order
    _, labels = sample_grid(exp2, "train", factor=1, per_cell=3)
    top_down = sorted(fig.layout.annotations, key=lambda a: -a.y)
    assert [a.text for a in top_down] == labels


def test_facet_titles_follow_the_images_not_plotlys_order():
    import numpy as np
    import plotly.express as px

    from mimmx.scenarios import facet_titles

    images = np.stack([np.full((4, 4), 10 * i, dtype=np.uint8) for i in range(7)])
    fig = px.imshow(images, facet_col=0, facet_col_wrap=5, binary_string=True)
    facet_titles(fig, [f"image {i}" for i in range(7)])
    # row-major reading order (top row left to right, then the next) gives the images' order
    reading = sorted(fig.layout.annotations, key=lambda a: (-round(a.y, 3), a.x))
    assert [a.text for a in reading] == [f"image {i}" for i in range(7)]


def test_label_noise_flips_y_at_its_rate_and_keeps_the_tables(real_data):
    from mimmx import data

    noisy = build_named("exp2", seed=3, y_noise=0.2, **SMALL)
    groups = SCENARIOS["exp2"].y_groups
    flipped = []
    for name, s in noisy.splits.items():
        labels = data.load("fashion-mnist", s.source).labels[s.index]
        group = torch.tensor([0 if int(c) in groups[0] else 1 for c in labels])
        flipped.append(s.y != group)
        # the factors follow the recorded y, exactly as without noise
        assert _ratio(s, 0, 0, 0) + _ratio(s, 0, 1, 1) == pytest.approx(
            {"inverted": 0.1, "balanced": 0.5}.get(name, 0.9), abs=2e-3)
    assert float(torch.cat(flipped).float().mean()) == pytest.approx(0.2, abs=0.02)  # 3,600 labels
    again = build_named("exp2", seed=3, y_noise=0.2, **SMALL)
    assert torch.equal(again.splits["train"].y, noisy.splits["train"].y)
    with pytest.raises(InfeasibleScenarioError, match=r"y_noise = 0.5 must be in \[0, 0.5\)"):
        build_named("exp2", seed=3, y_noise=0.5, **SMALL)


PAIR = ScenarioSpec("pair", "fashion-mnist", y_groups=((2,), (4,)), n_train=1000, n_selection=200, n_test=200,
                    factors=(FactorSpec("marker", "induced", "marker", r=0.9),
                             FactorSpec("intensity", "induced", "intensity", r=0.9)))


def test_unconfounded_training_keeps_the_test_sets(real_data):
    """confounded=False (the Oracle's data): train and selection with z independent of y and
    uniform, the same number of images, and the very same test sets."""
    conf = build(PAIR, seed=1)
    free = build(dataclasses.replace(PAIR, confounded=False), seed=1)
    for name in ("train", "selection"):
        s = free.splits[name]
        assert len(s) == len(conf.splits[name])
        for i in range(2):
            for y in range(2):
                for z in range(2):
                    assert _ratio(s, i, y, z) == pytest.approx(0.25, abs=2 / len(s)), (name, i, y, z)
    for name in ("validation", "inverted", "balanced"):
        a, b = conf.splits[name], free.splits[name]
        assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and torch.equal(a.z, b.z), name


def test_holdout_is_cell_balanced_unused_and_leaves_the_rest(real_data):
    plain = build(PAIR, seed=2)
    with_holdout = build(dataclasses.replace(PAIR, n_holdout=400), seed=2)
    hold = with_holdout.splits["holdout"]
    assert "holdout" not in plain.splits and len(hold) == 400 and hold.source == "train"
    cells = torch.unique(torch.cat([hold.y[:, None], hold.z], 1), dim=0, return_counts=True)[1]
    assert cells.tolist() == [50] * 8  # every (y, z1, z2) cell equally frequent
    for name in ("train", "selection"):
        assert torch.equal(plain.splits[name].index, with_holdout.splits[name].index)
        assert not set(hold.index.tolist()) & set(plain.splits[name].index.tolist())


def test_induced_y_fractures_any_digit(real_data):
    """y_source: y is an image transform (Morpho-MNIST fractures), so each y value takes digits
    of every class; y = 0 leaves the digit as written, y = 1 removes ink from it."""
    from mimmx import data

    spec = ScenarioSpec("frac", "mnist", y_source="fracture2", n_train=600, n_selection=100, n_test=100,
                        factors=(FactorSpec("marker", "induced", "marker", r=0.9),))
    sc = build(spec, seed=0)
    assert sc.y_names == ("intact", "fractured") and sc.n_y == 2
    s = sc.splits["train"]
    images, labels = data.load("mnist", "train")
    plain = images[s.index].clone()
    plain[s.z[:, 0] == 0, 1:5, 1:5] = 255  # the marker, as the factor draws it
    plain[s.z[:, 0] == 1, 1:5, -5:-1] = 255
    intact = s.y == 0
    assert torch.equal(s.x[intact], plain[intact])
    ink = lambda x: x.float().sum((1, 2))  # noqa: E731
    assert (ink(s.x[~intact]) < ink(plain[~intact])).float().mean() > 0.95
    for y in range(2):
        assert len(labels[s.index[s.y == y]].unique()) == 10
    assert build(spec, seed=0).splits["train"].x.equal(s.x)  # fractures are seeded


def test_fractures_report_their_progress_chunk_by_chunk_and_draw_as_all_at_once(real_data, monkeypatch):
    """Fractures are drawn FRACTURE_CHUNK digits at a time, each chunk reported to the build's
    ``reporting`` callback (what warm-cache draws its bars with), and give exactly the digits
    that one call on all of them gives."""
    from mimmx import data
    from mimmx.morpho import fracture
    from mimmx.scenarios.factors import Context, fractured, reporting

    monkeypatch.setattr("mimmx.scenarios.factors.FRACTURE_CHUNK", 40)
    images = data.load("mnist", "test").images[:150]
    index = torch.arange(150) * 7
    z = (torch.arange(150) % 3 != 0).long()  # 100 to fracture
    ctx = Context("mnist", "test", index, torch.Generator().manual_seed(0))
    calls = []
    with reporting(lambda *a: calls.append(a)):
        out = fractured(2)(images, z, ctx)
    assert calls == [("fracturing test-split digits", done, 100) for done in (0, 40, 80, 100)]
    b = z.bool()
    assert torch.equal(out[b], fracture(images[b], seed=1, indices=index[b].numpy(), num_frac=2))
    assert torch.equal(out[~b], images[~b])
    fractured(2)(images, z, ctx)  # outside the block: nobody is told
    assert len(calls) == 4


def test_scenario_cache_gives_the_built_scenario_and_rebuilds_what_it_cannot_read(real_data, tmp_path,
                                                                                   monkeypatch):
    from mimmx.scenarios import cache

    spec = _spec()
    built = cache.cached_build(spec, seed=1, folder=tmp_path)
    (path,) = tmp_path.glob("t-*.pt")
    calls = []
    monkeypatch.setattr(cache, "build", lambda *a: calls.append(a) or build(*a))
    loaded = cache.cached_build(spec, seed=1, folder=tmp_path)
    assert not calls  # read from the file
    for name, split in built.splits.items():
        got = loaded.splits[name]
        assert torch.equal(got.x, split.x) and torch.equal(got.y, split.y) and torch.equal(got.z, split.z)
        assert torch.equal(got.index, split.index) and got.source == split.source
    assert (loaded.z_values, loaded.n_y, loaded.thresholds) == (built.z_values, built.n_y, built.thresholds)
    assert all(np.array_equal(a, b) for a, b in zip(loaded.cond, built.cond))
    assert loaded.contingency().equals(built.contingency())
    cache.cached_build(spec, seed=2, folder=tmp_path)  # another seed, another file
    cache.cached_build(dataclasses.replace(spec, n_train=400), seed=1, folder=tmp_path)  # another spec
    assert len(calls) == 2 and len(list(tmp_path.glob("t-*.pt"))) == 3
    path.write_bytes(path.read_bytes()[:1000])  # truncated: rebuilt, never trusted
    again = cache.cached_build(spec, seed=1, folder=tmp_path)
    assert len(calls) == 3 and torch.equal(again.splits["train"].x, built.splits["train"].x)
    assert cache.cached_build(spec, seed=1, folder=tmp_path) and len(calls) == 3  # rewritten
    monkeypatch.setattr(cache, "_code_fingerprint", lambda: "f" * 64)  # the drawing code changed
    cache.cached_build(spec, seed=1, folder=tmp_path)
    assert len(calls) == 4 and [p.name.split("-")[1] for p in tmp_path.glob("t-*.pt")] == ["f" * 8]


def test_scenario_cache_gives_the_builds_warnings_on_every_load(real_data, tmp_path):
    from mimmx.errors import RunWarning
    from mimmx.scenarios import cache

    spec = _spec(factors=(FactorSpec("marker", "induced", "marker", r=1.0),))
    for _ in range(2):  # built, then read from the file: the empty minority cells are said both times
        with pytest.warns(RunWarning, match="no minority cells"):
            cache.cached_build(spec, seed=0, folder=tmp_path)
    assert len(list(tmp_path.glob("t-*.pt"))) == 1
