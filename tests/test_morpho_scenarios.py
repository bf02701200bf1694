"""The MNIST scenarios that need the Morpho-MNIST table (thin/thick digits): exp1_digits and morpho.

The table is built once per machine (about two minutes on 2 cores) into the cache folder and
loaded in under two seconds afterwards."""

import pytest
import torch

from mimmx.scenarios import build_named

SMALL = dict(n_train=2000, n_selection=400, n_test=600)


@pytest.fixture(scope="module")
def table(morpho_table):
    return morpho_table


def test_exp1_digits_thickness_is_the_morpho_perturbation(table):
    sc = build_named("exp1_digits", seed=0, **SMALL)
    s = sc.splits["balanced"]
    i_thick = sc.factor_names.index("thickness")
    i_site = sc.factor_names.index("site")
    plain_site = s.z[:, i_site] == 0  # site A leaves the pixels as they are
    thick = s.z[:, i_thick] == 1
    expect = torch.where(thick.view(-1, 1, 1), table.images("test", "thick")[s.index],
                         table.images("test", "thin")[s.index])
    assert torch.equal(s.x[plain_site], expect[plain_site])
    # measured stroke thickness agrees with the factor
    metrics = table.metrics("test", "plain")["thickness"].to_numpy()
    thin_t = table.metrics("test", "thin")["thickness"].to_numpy()[s.index[~thick].numpy()]
    thick_t = table.metrics("test", "thick")["thickness"].to_numpy()[s.index[thick].numpy()]
    assert thin_t.mean() < metrics.mean() < thick_t.mean()


def test_exp1_digits_site_changes_the_whole_image(table):
    sc = build_named("exp1_digits", seed=0, **SMALL)
    s = sc.splits["train"]
    site_b = s.z[:, sc.factor_names.index("site")] == 1
    # site B lifts the background (x' = 0.12 + ... ≈ 31 grey levels) and adds noise
    corner = s.x[:, :3, :3].float().mean(dim=(1, 2))  # MNIST corners are background
    assert corner[site_b].mean() > 20 and corner[~site_b].max() == 0
    assert s.x[site_b].float().std(dim=(1, 2)).mean() > 0


def test_exp1_digits_and_morpho_tables(table):
    for name, r in [("exp1_digits", 0.9), ("morpho", 0.9)]:
        sc = build_named(name, seed=1, **SMALL)
        for split, expect in [("train", r), ("inverted", 1 - r), ("balanced", 0.5)]:
            d = sc.splits[split]
            for i in range(d.z.shape[1]):
                assert float((d.z[:, i] == d.y).float().mean()) == pytest.approx(expect, abs=2 / len(d))
