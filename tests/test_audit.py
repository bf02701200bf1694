"""The shortcut audit: image attributes measure what they name; the audit ranks a planted
shortcut first and flags it, and flags neither noise nor an attribute that only follows y."""

import numpy as np
import pandas as pd
import pytest
import torch

from mimmx.evaluation.audit import audit, audit_markdown, image_attributes


def test_image_attributes_measure_what_they_name():
    images = torch.zeros(4, 28, 28, dtype=torch.uint8)
    images[0, :5, :5] = 255  # a marker in the top-left corner
    images[1, -5:, -5:] = 255  # bottom-right
    images[2, 10:18, 12:16] = 200  # a small blob in the middle
    images[3] = 120  # a flat grey image
    a = image_attributes(images)
    assert a["corner top-left"].idxmax() == 0 and a["corner bottom-right"].idxmax() == 1
    assert a["intensity"].idxmax() == 3 and a["contrast"][3] == pytest.approx(0.0)
    assert a["extent"][2] == pytest.approx(8 * 4 / 784)
    assert a["border"][2] == 0.0 and a["border"][0] > 0
    assert a["sharpness"][3] < a["sharpness"][2]


@pytest.fixture(scope="module")
def planted():
    """f_y reads y and, within each class, a binary shortcut s; 'follows y' is y plus noise."""
    gen = np.random.default_rng(0)
    n = 600
    y = gen.integers(0, 2, n)
    s = gen.integers(0, 2, n)  # independent of y, as on a Balanced set
    f_y = np.stack([2.0 * y + 1.5 * s + gen.normal(0, 0.5, n), gen.normal(0, 1, n)], 1)
    pred = (f_y[:, 0] > 1.75).astype(int)  # right on (y=1, s=1) and (y=0, s=0), often wrong else
    attributes = pd.DataFrame({"shortcut": s.astype(float), "follows y": y + gen.normal(0, 0.3, n),
                               **{f"noise {k}": gen.normal(0, 1, n) for k in range(8)}})
    table = audit(torch.tensor(f_y), torch.tensor(y), torch.tensor(pred), attributes,
                  kinds={"shortcut": "factor"}, n_bootstrap=50, seed=0)
    return table


def test_a_planted_shortcut_ranks_first_and_is_flagged(planted):
    top = planted.iloc[0]
    assert top.candidate == "shortcut" and top.kind == "factor" and top.flagged
    assert top.dcor_low <= top.dcor <= top.dcor_high and top.gap > 20
    others = planted.iloc[1:]
    assert not others["flagged"].any()  # noise, and what only follows y, pass the test
    assert planted.set_index("candidate").loc["follows y", "dcor"] < 0.2
    assert len(planted) == 10 and planted["p_adjusted"].between(0, 1).all()
    md = audit_markdown(planted)
    assert "| 1 | 1 | shortcut | factor |" in md


def test_audit_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match="same images"):
        audit(torch.zeros(5, 2), torch.zeros(5), torch.zeros(4), pd.DataFrame({"a": range(5)}))


def test_audit_command_on_a_run_folder(real_data, tmp_path, capsys):
    from mimmx.cli import main
    from mimmx.config import RunConfig
    from mimmx.runs import write_run
    from mimmx.trainer import train

    cfg = RunConfig().override(["scenario.name=exp2", "scenario.n_train=600", "scenario.n_selection=200",
                                "scenario.n_test=200", "train.epochs=2", "train.batch_size=60",
                                "train.device=cpu", "method.name=baseline"])
    run = write_run(train(cfg), tmp_path / "run")
    assert main(["audit", str(run), "--permutations", "99"]) == 0
    md = (run / "audit.md").read_text()
    assert "| marker | factor |" in md and "| intensity | factor |" in md
    assert "| intensity (measured) | image |" in md  # a factor's name never hides a measure
    assert "## Slices nobody named" in md and (run / "audit.html").stat().st_size > 1000
    assert main(["audit", str(run), "--permutations", "5"]) == 2
    assert "--permutations must be ≥ 19" in capsys.readouterr().err

    # the loop: MIMM-X with an audited measure as one more factor, audited before and after
    assert main(["audit", str(run), "--permutations", "19", "--add-factor", "corner top-left"]) == 0
    loop = (run / "audit-add-corner-top-left.md").read_text()
    assert "| before |" in loop and "| after |" in loop and "mimmx with 'corner top-left'" in loop
    assert main(["audit", str(run), "--permutations", "19", "--add-factor", "nose"]) == 2
    assert "'nose': not a candidate of this run; choose one of intensity" in capsys.readouterr().err


def test_measures_of_one_thing_form_one_family_ranked_by_its_strongest():
    """A binary factor and a measure that separates its two values (|γ| = 1 within each class)
    are one family; an unrelated attribute heads its own, even when it ranks between them."""
    gen = np.random.default_rng(1)
    n = 600
    y, s = gen.integers(0, 2, n), gen.integers(0, 2, n)
    f_y = np.stack([2.0 * y + 1.5 * s + gen.normal(0, 0.5, n), gen.normal(0, 1, n)], 1)
    corner = s * 0.6 + gen.uniform(0, 0.3, n)  # the shortcut's pixels: separates s's values
    attributes = pd.DataFrame({"shortcut": s.astype(float), "corner": corner,
                               **{f"noise {k}": gen.normal(0, 1, n) for k in range(4)}})
    table = audit(torch.tensor(f_y), torch.tensor(y), torch.tensor(f_y[:, 0] > 1.75).long(), attributes,
                  n_permutations=99, n_bootstrap=20, seed=0).set_index("candidate")
    top = table.index[0]
    assert {top, "shortcut", "corner"} == {"shortcut", "corner"}
    other = "corner" if top == "shortcut" else "shortcut"
    assert table.loc[other, "family"] == table.loc[top, "family"] == 1
    assert table.loc[other, "same_as"] == top and table.loc[top, "same_as"] == ""
    noise = table.drop(["shortcut", "corner"])
    assert sorted(noise["family"]) == [2, 3, 4, 5] and (noise["same_as"] == "").all()


def test_metadata_columns_become_candidates():
    from mimmx.evaluation.audit import metadata_attributes

    frame = pd.DataFrame({"age": [30, np.nan, 50, 70], "site": ["A", "B", "B", "A"],
                          "view": ["PA", "AP", "LAT", "PA"], "patient": ["p1", "p2", "p3", "p4"],
                          "scanner": ["x"] * 4})
    out, skipped = metadata_attributes(frame, max_levels=3)
    assert list(out["age"]) == [30, 50, 50, 70] and list(out["age missing"]) == [0, 1, 0, 0]
    assert [c for c in out if c.startswith("site")] == ["site = B"]  # two values: one indicator, the later
    assert {"view = PA", "view = AP", "view = LAT"} <= set(out)
    assert skipped == ["patient", "scanner"]  # an identifier, a constant


def test_cohort_metadata_follows_the_split_order(real_data, tmp_path):
    from mimmx.evaluation.audit import cohort_metadata
    from mimmx.scenarios.cohort import (
        CohortSpec,
        ColumnRule,
        cohort_scenario,
        load_cohort,
        write_example_cohort,
    )

    csv = write_example_cohort(tmp_path, n=600, seed=0, r_site=0.9, root=real_data)
    spec = CohortSpec(manifest=str(csv), group_column="patient_id",
                      label=ColumnRule("effusion", values={"absent": 0, "present": 1}),
                      factors=(ColumnRule("sex", values={"Female": 0, "Male": 1}),))
    cohort = load_cohort(spec, cache=False)
    split = cohort_scenario(cohort, seed=0).splits["balanced"]
    meta = cohort_metadata(cohort, split)
    assert len(meta) == len(split) and {"site", "age", "view"} <= set(meta) and "sex" not in meta
    north = torch.tensor((meta["site"] == "Northgate").to_numpy())
    assert (split.x[north, 1:4, 21:27] == 255).all()  # Northgate's burnt-in label, image by image
    assert not (split.x[~north, 1:4, 21:27] == 255).all(-1).all(-1).any()


def test_error_slices_find_the_group_the_errors_live_in():
    """Within each class, the images whose hidden attribute h is 1 sit apart in f_y and are
    misclassified; the worst slice is theirs, described by h, not by the noise columns."""
    from mimmx.evaluation.audit import error_slices, slices_figure, slices_markdown

    gen = np.random.default_rng(2)
    n = 800
    y, h = gen.integers(0, 2, n), (gen.random(n) < 0.15).astype(int)
    f_y = np.stack([np.where(h == 1, 1 - y, y) * 3.0 + gen.normal(0, 0.4, n), gen.normal(0, 1, n)], 1)
    pred = (f_y[:, 0] > 1.5).astype(int)  # wrong on (almost) every h = 1 image
    attributes = pd.DataFrame({"h": h.astype(float), **{f"noise {k}": gen.normal(0, 1, n) for k in range(5)}})
    images = torch.randint(0, 255, (n, 28, 28), dtype=torch.uint8)
    slices = error_slices(torch.tensor(f_y), torch.tensor(y), torch.tensor(pred), attributes,
                          images=images, per_class=4, seed=0)
    worst = slices.iloc[0]
    assert worst.accuracy < 10 and worst.attribute == "h" and worst.effect > 1
    assert set(h[worst.members]) == {1} and worst.errors > 80
    assert list(slices["accuracy"]) == sorted(slices["accuracy"])
    assert slices.groupby("y")["size"].sum().to_dict() == {c: int((y == c).sum()) for c in (0, 1)}
    assert "| 1 |" in slices_markdown(slices) and len(slices_figure(slices, images).data) == 4 * 8


def test_with_factor_adds_a_measured_factor_and_leaves_the_images_alone(real_data):
    from mimmx.config import RunConfig
    from mimmx.evaluation.audit import factor_values
    from mimmx.scenarios.builder import with_factor
    from mimmx.trainer import build_scenario

    sc = build_scenario(RunConfig().override(["scenario.name=exp2", "scenario.n_train=400",
                                              "scenario.n_selection=100", "scenario.n_test=100"]))
    values = factor_values(sc, "extent")
    new = with_factor(sc, "extent", values)
    assert new.factor_names == ["marker", "intensity", "extent"] and new.n_z == [2, 2, 2]
    median = float(values["train"].double().median())
    for s, d in new.splits.items():
        assert torch.equal(d.x, sc.splits[s].x) and torch.equal(d.z[:, :2], sc.splits[s].z)
        assert torch.equal(d.z[:, 2], (values[s] > median).long())
    assert np.allclose(new.cond[2].sum(1), 1) and sc.factor_names == ["marker", "intensity"]
    with pytest.raises(Exception, match="already a factor"):
        with_factor(new, "extent", values)
    # a 0 / 1 column whose median is 1 still splits into its two values
    ones = {s: (torch.arange(len(d)) % 3 > 0).double() for s, d in sc.splits.items()}
    assert torch.equal(with_factor(sc, "flag", ones).splits["train"].z[:, 2], ones["train"].long())
    with pytest.raises(Exception, match="one value on the training split"):
        with_factor(sc, "flat", {s: torch.ones(len(d)) for s, d in sc.splits.items()})


def test_an_attribute_that_only_changes_confidence_is_read_but_not_flagged():
    """f_y reads a shortcut s (it moves the decision towards class 1 in both classes) and an
    image quality q (it draws the score towards 0: opposite ways in the two classes). Both
    show in dCor; only s pushes the decision, so only s is flagged."""
    gen = np.random.default_rng(3)
    n = 800
    y, s, q = gen.integers(0, 2, n), gen.integers(0, 2, n), gen.uniform(0, 1, n)
    score = (2 * y - 1) * (2.5 - 2.0 * q) + 1.2 * (2 * s - 1) + gen.normal(0, 0.3, n)
    f_y = torch.tensor(np.stack([-score / 2, score / 2], 1))
    attributes = pd.DataFrame({"s": s.astype(float), "q": q, **{f"noise {k}": gen.normal(0, 1, n) for k in range(4)}})
    table = audit(f_y, torch.tensor(y), torch.tensor((score > 0).astype(int)), attributes,
                  score=torch.tensor(score), n_permutations=499, n_bootstrap=20, seed=0).set_index("candidate")
    assert table.loc["s", "flagged"] and table.loc["s", "push"] > 0.3
    assert table.loc["q", "p_adjusted"] < 0.05 and abs(table.loc["q", "push"]) < 0.1
    assert not table.loc["q", "flagged"]
    assert not table.drop(["s", "q"])["flagged"].any()
