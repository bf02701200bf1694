"""Your own cohort: a small cohort of PNGs (and a CheXpert-like one of JPEGs) written by the tests.

Each image is 40×40: a bright disc whose radius depends on y (6 or 12 pixels) and a 6×6 corner
marker whose side depends on sex, so that both are visible after resizing.
"""

import dataclasses
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.transform import resize

from mimmx.scenarios import InfeasibleScenarioError
from mimmx.scenarios.cohort import (
    CohortError,
    CohortSpec,
    ColumnRule,
    cohort_scenario,
    load_cohort,
    preset,
)

N = 400
AGES = np.array([30, 45, 55, 65, 80])  # 55 is between the cuts: dropped


def _picture(y: int, male: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:40, :40]
    radius = 12 if y else 6
    img = rng.integers(0, 30, (40, 40))
    img[(yy - 22) ** 2 + (xx - 20) ** 2 <= radius**2] = 220
    if male:
        img[:6, :6] = 255
    else:
        img[:6, -6:] = 255
    return img.astype(np.uint8)


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MIMMX_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def cohort_csv(tmp_path_factory):
    """400 PNGs in images/ and cohort.csv (path, effusion, sex, age, patient)."""
    root = tmp_path_factory.mktemp("cohort")
    (root / "images").mkdir()
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, N)
    male = rng.integers(0, 2, N)
    age = AGES[rng.integers(0, len(AGES), N)]
    lines = ["path,effusion,sex,age,patient"]
    for i in range(N):
        Image.fromarray(_picture(y[i], male[i], i)).save(root / "images" / f"img{i:03d}.png")
        lines.append(f"images/img{i:03d}.png,{y[i]},{'M' if male[i] else 'F'},{age[i]},p{i // 2}")
    (root / "cohort.csv").write_text("\n".join(lines) + "\n")
    return root / "cohort.csv", y, male, age


def _spec(csv, **kw) -> CohortSpec:
    return CohortSpec(
        manifest=str(csv), image_column="path", group_column="patient",
        label=ColumnRule("effusion", values={1: 1, 0: 0}, names=("no", "yes")),
        factors=(ColumnRule("sex", values={"F": 0, "M": 1}, r=0.75),
                 ColumnRule("age", lt=50, gt=60, names=("young", "old"), r=0.75)),
        **kw)


def test_load_maps_rules_drops_and_resizes(cohort_csv):
    csv, y, male, age = cohort_csv
    c = load_cohort(_spec(csv))
    kept = age != 55
    assert len(c) == kept.sum() and c.n_manifest == N
    assert c.dropped["factor age (age)"] == (~kept).sum()
    assert c.images.shape == (kept.sum(), 28, 28) and c.images.dtype == torch.uint8
    assert torch.equal(c.y, torch.as_tensor(y[kept]))
    assert torch.equal(c.z[:, 0], torch.as_tensor(male[kept]))
    assert torch.equal(c.z[:, 1], torch.as_tensor((age[kept] > 60).astype(np.int64)))
    # the pictures survive resizing: larger discs for y = 1, the marker's corner for sex
    disc = (c.images[:, 8:24, 8:20] > 128).float().mean((1, 2))
    assert disc[c.y == 1].min() > disc[c.y == 0].max()
    left, right = c.images[:, :3, :3].float().mean((1, 2)), c.images[:, :3, -3:].float().mean((1, 2))
    assert torch.equal(left > right, c.z[:, 0].bool())
    # Lanczos resizing agrees with scikit-image's antialiased resize of the original
    first = np.asarray(Image.open(csv.parent / c.rows["path"].iloc[0]))
    oracle = resize(first / 255.0, (28, 28), anti_aliasing=True) * 255
    assert np.abs(c.images[0].numpy() - oracle).mean() < 6
    # pools are split by patient (column), about 20% test
    pools = c.rows.groupby("patient")["pool"].nunique()
    assert (pools == 1).all()
    assert 0.15 < c.test.float().mean() < 0.25


def test_split_column(cohort_csv):
    import pandas as pd

    csv = cohort_csv[0]
    table = pd.read_csv(csv)
    table["split"] = np.where(np.arange(len(table)) % 4 == 0, "Test", "train")
    table.to_csv(csv.parent / "with_split.csv", index=False)
    c = load_cohort(_spec(csv.parent / "with_split.csv", split_column="split"))
    assert torch.equal(c.test, torch.as_tensor(c.rows.index.to_numpy() % 4 == 0))


def test_image_size_and_summary(cohort_csv):
    csv = cohort_csv[0]
    c = load_cohort(_spec(csv, image_size=16))
    assert c.images.shape[1:] == (16, 16)
    s = c.summary()
    assert s["kept"] == len(c) and s["pools"]["train"] + s["pools"]["test"] == len(c)
    assert "age < 50" in c.describe() and "dropped by factor age" in c.describe()


def test_cache_hit_and_invalidation(cohort_csv, tmp_path, monkeypatch):
    csv = cohort_csv[0]
    # a private copy of the cohort, so that changing an image does not affect other tests
    (tmp_path / "images").mkdir()
    for line in csv.read_text().splitlines()[1:41]:
        p = line.split(",")[0]
        (tmp_path / p).write_bytes((csv.parent / p).read_bytes())
    small = tmp_path / "small.csv"
    small.write_text("\n".join(csv.read_text().splitlines()[:41]) + "\n")
    spec = _spec(small)
    first = load_cohort(spec)
    assert not first.from_cache

    def fail(*a, **k):
        raise AssertionError("an image was read although the cache is valid")

    with monkeypatch.context() as m:
        m.setattr(Image, "open", fail)
        again = load_cohort(spec)
    assert again.from_cache and torch.equal(again.images, first.images)

    # a changed image (new content, new mtime) is read again
    path = tmp_path / first.rows["path"].iloc[0]
    Image.fromarray(np.full((40, 40), 255, np.uint8)).save(path)
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    changed = load_cohort(spec)
    assert not changed.from_cache
    assert (changed.images[0] == 255).all() and torch.equal(changed.images[1:], first.images[1:])


def test_missing_files(cohort_csv, tmp_path):
    csv = cohort_csv[0]
    lines = csv.read_text().splitlines()
    lines += [f"gone/img{i}.png,1,M,30,q{i}" for i in range(3)]
    bad = csv.parent / "with_missing.csv"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(CohortError, match=r"3 of 3\d\d image files are missing") as err:
        load_cohort(_spec(bad))
    assert "gone/img0.png" in str(err.value)


def test_unknown_column(cohort_csv):
    spec = _spec(cohort_csv[0])
    spec = dataclasses.replace(spec, label=dataclasses.replace(spec.label, column="efusion"))
    with pytest.raises(CohortError, match=r"no column 'efusion' \(did you mean 'effusion'\?\)") as err:
        load_cohort(spec)
    assert "path, effusion, sex, age, patient" in str(err.value)


def test_unreadable_image(tmp_path):
    (tmp_path / "ok.png").write_bytes(b"")
    Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really an image")
    (tmp_path / "m.csv").write_text("path,effusion,sex,age,patient\n"
                                    "ok.png,0,F,30,a\nbroken.png,1,M,70,b\n")
    with pytest.raises(CohortError, match="cannot read image .*broken.png"):
        load_cohort(_spec(tmp_path / "m.csv"))


def test_bad_rules_are_named(cohort_csv):
    spec = _spec(cohort_csv[0])
    with pytest.raises(CohortError, match="cuts lt / gt need numbers, but the column holds 'M'"):
        load_cohort(dataclasses.replace(spec, factors=(ColumnRule("sex", lt=1),)))
    with pytest.raises(CohortError, match="codes must be 0 or 1"):
        load_cohort(dataclasses.replace(spec, factors=(ColumnRule("sex", values={"F": 0, "M": 2}),)))
    with pytest.raises(CohortError, match="unknown key 'colum'"):
        CohortSpec.from_dict({"manifest": "x.csv", "label": {"colum": "y"}})


def test_sixteen_bit_images_are_scaled(tmp_path):
    a = np.tile(np.linspace(0, 4000, 40), (40, 1)).astype(np.uint16)
    Image.fromarray(a).save(tmp_path / "deep.png")
    (tmp_path / "m.csv").write_text("path,effusion,sex,age,patient\ndeep.png,1,M,70,a\n")
    img = load_cohort(_spec(tmp_path / "m.csv"), cache=False).images[0]
    assert img[:, 0].max() < 10 and img[:, -1].min() > 245  # full 8-bit range, not clipped at 255


@pytest.fixture(scope="module")
def chexpert_csv(tmp_path_factory):
    """A CheXpert-like folder: CheXpert-v1.0-small/train.csv with paths relative to its parent,
    uncertain (−1.0) and blank labels, lateral views, an 'Unknown' sex and several studies per patient."""
    root = tmp_path_factory.mktemp("chexpert")
    rng = np.random.default_rng(1)
    lines = ["Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Pleural Effusion"]
    for i in range(360):
        patient, view = f"patient{i // 3:05d}", "lateral" if i % 6 == 5 else "frontal"
        rel = f"CheXpert-v1.0-small/train/{patient}/study{i % 3 + 1}/view1_{view}.jpg"
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        y, male = int(rng.integers(0, 2)), int(rng.integers(0, 2))
        Image.fromarray(_picture(y, male, i)).save(root / rel, quality=95)
        label = {0: "0.0", 1: "1.0"}[y] if i % 10 not in (3, 7) else ("-1.0" if i % 10 == 3 else "")
        sex = "Unknown" if i == 8 else ("Male" if male else "Female")
        age = int(rng.choice([25, 40, 55, 70, 85]))
        ap = "AP" if view == "frontal" else ""
        lines.append(f"{rel},{sex},{age},{view.capitalize()},{ap},,{label}")
    (root / "CheXpert-v1.0-small").mkdir(exist_ok=True)
    csv = root / "CheXpert-v1.0-small" / "train.csv"
    csv.write_text("\n".join(lines) + "\n")
    return csv


def test_chexpert_preset(chexpert_csv):
    import pandas as pd

    table = pd.read_csv(chexpert_csv)
    c = load_cohort(preset("chexpert", chexpert_csv))
    assert c.image_root == chexpert_csv.parent.parent  # CheXpert paths start with its folder name
    frontal = table["Frontal/Lateral"] == "Frontal"
    labelled = table["Pleural Effusion"].isin([0.0, 1.0])
    sexed = table["Sex"].isin(["Female", "Male"])
    aged = (table["Age"] < 50) | (table["Age"] > 60)
    expect = table[frontal & labelled & sexed & aged]
    assert list(c.rows.index) == list(expect.index)
    assert c.dropped["filter Frontal/Lateral in ['Frontal']"] == (~frontal).sum()
    assert sum(c.dropped.values()) == len(table) - len(expect)
    assert torch.equal(c.y, torch.as_tensor(expect["Pleural Effusion"].to_numpy().astype(np.int64)))
    assert torch.equal(c.z[:, 0], torch.as_tensor(np.array(expect["Sex"] == "Male", np.int64)))
    assert torch.equal(c.z[:, 1], torch.as_tensor(np.array(expect["Age"] > 60, np.int64)))
    # no patient in both pools
    patient = c.rows["Path"].str.extract(r"(patient\d+)")[0]
    assert (c.rows.groupby(patient)["pool"].nunique() == 1).all()
    assert c.images.shape[1:] == (28, 28)


def test_cohort_scenario_tables_and_disjoint_splits(cohort_csv):
    csv = cohort_csv[0]
    c = load_cohort(_spec(csv))
    sc = cohort_scenario(c, seed=0)
    assert sc.z_values == [("F", "M"), ("young", "old")]
    assert sc.spec.n_train >= 40 and sc.spec.n_test >= 5  # sized to what the pools allow
    rows = {}
    for name, d in sc.splits.items():
        pool = c.pool("test" if d.source == "test" else "train")
        rows[name] = set(pool[d.index].tolist())
        assert len(rows[name]) == len(d)
        # the split's images and codes are the cohort's own
        assert torch.equal(d.x, c.images[pool[d.index]])
        assert torch.equal(d.y, c.y[pool[d.index]])
        assert torch.equal(d.z, c.z[pool[d.index]])
        assert all(c.rows["pool"].iloc[pool[d.index].numpy()] == d.source)
    names = list(rows)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not rows[a] & rows[b], (a, b)
    r = 0.75
    for name, expect in [("train", r), ("inverted", 1 - r), ("balanced", 0.5)]:
        d = sc.splits[name]
        for i in range(2):
            agree = float((d.z[:, i] == d.y).float().mean())
            assert agree == pytest.approx(expect, abs=1 / len(d) + 1e-9), (name, i)
    assert set(sc.contingency()["z"]) == {"F", "M", "young", "old"}
    with pytest.raises(InfeasibleScenarioError, match="lower n_train"):
        cohort_scenario(dataclasses.replace(c.spec, n_train=10_000))


def test_observed_association_is_kept(cohort_csv):
    spec = _spec(cohort_csv[0])
    spec = dataclasses.replace(spec, factors=tuple(dataclasses.replace(f, r=None)
                                                   for f in spec.factors))
    c = load_cohort(spec)
    sc = cohort_scenario(c)
    train = c.pool("train")
    for i in range(2):
        observed = float((c.z[train, i] == c.y[train]).float().mean())
        d = sc.splits["train"]
        assert float((d.z[:, i] == d.y).float().mean()) == pytest.approx(observed, abs=0.02)


def test_yaml_roundtrip_and_cli(cohort_csv, tmp_path, capsys):
    from mimmx.cli import main

    spec = _spec(cohort_csv[0])
    path = tmp_path / "cohort.yaml"
    spec.to_yaml(path)
    assert CohortSpec.from_yaml(path) == spec
    # a relative manifest is relative to the YAML file
    relative = path.read_text().replace(str(cohort_csv[0]), "cohort.csv")
    (cohort_csv[0].parent / "rel.yaml").write_text(relative)
    assert CohortSpec.from_yaml(cohort_csv[0].parent / "rel.yaml") == spec
    assert main(["cohort", str(cohort_csv[0]), "--config", str(path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["cohort"]["kept"] == int((cohort_csv[3] != 55).sum())
    train = [r for r in out["contingency"] if r["split"] == "train" and r["factor"] == "sex"]
    agree = sum(r["count"] for r in train if (r["y"], r["z"]) in {("no", "F"), ("yes", "M")})
    assert agree / out["sizes"]["train"] == pytest.approx(0.75, abs=0.01)
    assert main(["cohort", str(cohort_csv[0])]) == 2
    assert "--preset chexpert, or --config" in capsys.readouterr().err


def test_cli_chexpert_text(chexpert_csv, capsys):
    from mimmx.cli import main

    assert main(["cohort", str(chexpert_csv), "--preset", "chexpert", "--r", "0.7"]) == 0
    out = capsys.readouterr().out
    assert "dropped by filter Frontal/Lateral" in out and "factor age (column Age, ~ age)" in out
    assert "inverted" in out and "young" in out


def test_write_example_cohort(real_data, tmp_path):
    """The example cohort: a clinical-looking manifest with the rows rules must drop, one site,
    sex and age per patient, and a real shortcut (Northgate's mark in its images, site tied to y)."""
    import pandas as pd

    from mimmx.scenarios.cohort import write_example_cohort

    csv = write_example_cohort(tmp_path / "a", n=600, seed=1, r_site=0.7, root=real_data)
    m = pd.read_csv(csv)
    assert list(m.columns) == ["path", "patient_id", "study", "view", "site", "sex", "age", "effusion"]
    assert len(m) == 600 and all((csv.parent / p).is_file() for p in m["path"])
    assert write_example_cohort(tmp_path / "b", n=600, seed=1, root=real_data).read_text() == csv.read_text()
    assert (m.groupby("patient_id")[["site", "sex"]].nunique() == 1).all().all()
    assert (m.groupby("patient_id")["study"].apply(lambda s: list(s) == list(range(1, len(s) + 1)))).all()
    assert set(m["effusion"].fillna("")) == {"present", "absent", "uncertain", ""}
    assert set(m["sex"]) == {"Female", "Male", "Unknown"} and set(m["view"]) == {"PA", "AP", "LATERAL"}
    assert 20 <= m["age"].min() and m["age"].max() <= 89

    spec = CohortSpec(manifest=str(csv), group_column="patient_id",
                      label=ColumnRule("effusion", values={"present": 1, "absent": 0}),
                      factors=(ColumnRule("site", values={"Riverside": 0, "Northgate": 1}),))
    c = load_cohort(spec)
    assert c.dropped["label effusion"] == (~m["effusion"].isin(["present", "absent"])).sum()
    # Northgate's burnt-in label is in exactly its images (every view), unchanged at 28 x 28
    mark = c.images[:, 1:4, 21:27].flatten(1).min(1).values
    assert torch.equal(mark == 255, c.z[:, 0].bool())
    assert 0.6 < float((c.z[:, 0] == c.y).float().mean()) < 0.8  # P(site = y) ≈ r_site
    with pytest.raises(CohortError, match="r_site"):
        write_example_cohort(tmp_path / "c", n=10, r_site=1.5, root=real_data)
