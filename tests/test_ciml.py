"""CIML: phantom generator, KL term, models, metrics, a short training run, config and CLI."""

from __future__ import annotations

import json
import math

import pytest
import torch

from mimmx.ciml import (
    CIML,
    MODALITIES,
    SUBTASKS,
    CIMLConfig,
    PhantomConfig,
    build_model,
    dice_scores,
    evaluate,
    gaussian_kl,
    hd95_scores,
    make_phantoms,
    train_model,
)
from mimmx.ciml.models import VariationalMessage
from mimmx.errors import ConfigError


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny networks: one CPU thread. Two threads contending with other processes on a shared
    2-core machine made a training step 25× slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SMALL = PhantomConfig(size=32, wt_radius=(0.32, 0.48), tc_scale=(0.5, 0.7), et_width=(0.35, 0.55))


def test_regions_nested_and_seeded():
    a, b, c = make_phantoms(24, seed=3), make_phantoms(24, seed=3), make_phantoms(24, seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.masks, b.masks)
    assert not torch.equal(a.masks, c.masks)
    wt, tc, et = a.masks.unbind(1)
    assert (tc <= wt).all() and (et <= tc).all() and (wt <= a.brain).all()
    assert (et.sum((1, 2)) > 0).all() and (tc & ~et).any() and (wt & ~tc).any()
    # tissue labels agree with the masks: 3 oedema = WT\TC, 4 core = TC\ET, 5 enhancing = ET
    assert torch.equal(a.tissue == 5, et) and torch.equal(a.tissue == 4, tc & ~et)
    assert torch.equal(a.tissue == 3, wt & ~tc)
    # z-scored inside the brain, zero outside
    inside = a.brain[:, None].expand_as(a.images)
    assert (a.images[~inside] == 0).all()
    per = a.images.transpose(0, 1)[inside.transpose(0, 1)].view(4, -1)
    assert per.mean(1).abs().max() < 0.05 and (per.std(1) - 1).abs().max() < 0.05


def _contrast(p, modality, inside, outside):
    """(mean inside − mean outside) / noise-free-ish pooled std, over the whole set."""
    x = p.images[:, MODALITIES.index(modality)]
    a, b = x[inside], x[outside]
    return float((a.mean() - b.mean()) / torch.cat([a - a.mean(), b - b.mean()]).std())


def test_each_modality_shows_its_regions_as_the_brats_prior_says():
    p = make_phantoms(64, seed=0)
    wt, tc, et = p.masks.unbind(1)
    brain_only = p.brain & ~wt
    oedema, necrosis = wt & ~tc, tc & ~et
    assert _contrast(p, "flair", wt, brain_only) > 1.5            # FLAIR shows WT
    assert abs(_contrast(p, "flair", tc, oedema)) < 0.5            # ... but hardly TC
    assert _contrast(p, "t1ce", et, necrosis) > 2.0                # T1ce: bright rim, dark core
    assert abs(_contrast(p, "t1ce", oedema, brain_only)) < 0.5     # ... oedema invisible
    assert _contrast(p, "t1", tc, oedema) < -0.4                   # T1: core dark (weakly)
    assert _contrast(p, "t2", wt, brain_only) > 1.0                # T2: WT bright
    assert abs(_contrast(p, "t2", necrosis, et)) > 1.0             # ... TC has its own contrast


@pytest.mark.parametrize("kwargs, match", [
    (dict(size=8), "size"),
    (dict(wt_radius=(0.4, 0.2)), "wt_radius"),
    (dict(tc_scale=(0.5, 1.5)), "tc_scale"),
    (dict(noise=(0.1, 0.1, 0.1)), "noise"),
    (dict(noise=(0.1, -0.1, 0.1, 0.1)), "noise"),
    (dict(bias=-1.0), "bias"),
    (dict(roughness=0.5), "roughness"),
    (dict(size=16, wt_radius=(0.05, 0.1)), "rim"),
])
def test_bad_generator_parameters_are_clear_errors(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        PhantomConfig(**kwargs)


def test_bad_phantom_count_is_a_clear_error():
    with pytest.raises(ConfigError, match="number of phantoms"):
        make_phantoms(0)


def test_kl_matches_closed_form_for_known_gaussians():
    mu = torch.tensor([0.0, 1.0, -2.0, 0.5])
    var = torch.tensor([1.0, 1.0, 0.25, 4.0])
    expected = torch.distributions.kl_divergence(
        torch.distributions.Normal(mu, var.sqrt()), torch.distributions.Normal(0.0, 1.0))
    assert torch.allclose(gaussian_kl(mu, var.log()), expected, atol=1e-6)
    # by hand: N(1, 1) -> 1/2; N(0, 2) -> (2 - log 2 - 1) / 2
    assert gaussian_kl(torch.tensor(1.0), torch.tensor(0.0)).item() == pytest.approx(0.5)
    assert gaussian_kl(torch.tensor(0.0), torch.tensor(math.log(2))).item() == pytest.approx(
        (1 - math.log(2)) / 2)


def test_vib_message_samples_its_gaussian_and_reports_its_kl():
    torch.manual_seed(0)
    vib = VariationalMessage(channels=3, message_channels=2)
    h = torch.randn(1, 3, 1, 1).expand(20000, 3, 1, 1)
    z, kl = vib(h)
    mu, logvar = vib.net(h[:1]).chunk(2, dim=1)
    assert torch.allclose(z.mean(0), mu[0], atol=0.03)
    assert torch.allclose(z.var(0), logvar[0].exp(), rtol=0.05)
    assert torch.allclose(kl[0], gaussian_kl(mu, logvar)[0])
    vib.eval()
    assert torch.equal(vib(h[:1])[0], mu)  # the mean at evaluation


@pytest.mark.parametrize("method", ["ensemble", "early_fusion", "ciml"])
def test_models_share_one_interface(method):
    torch.manual_seed(0)
    p = make_phantoms(4, seed=0, config=SMALL)
    model = build_model(method, CIMLConfig(width=4, phantom=SMALL))
    loss, stats = model.loss(p.images, p.masks)
    loss.backward()
    assert torch.isfinite(loss) and all(math.isfinite(v) for v in stats.values())
    assert model.predict(p.images).shape == (4, 3, 32, 32)
    with pytest.raises(ValueError, match="images must be"):
        model.predict(p.images[:, :3])


def test_ciml_follows_the_task_decomposition():
    torch.manual_seed(0)
    model = CIML(width=4, message_channels=2)
    out = model(make_phantoms(2, seed=1, config=SMALL).images)
    assert {m: z.shape[1] for m, z in out["subtask_logits"].items()} == {m: len(r) for m, r in SUBTASKS.items()}
    assert set(out["gates"]) == {(m, n) for m in MODALITIES for n in MODALITIES if m != n}
    a = torch.stack(list(out["gates"].values()))
    assert a.shape[1:] == (2, 1, 8, 8) and (a >= 0).all() and (a <= 1).all()
    assert model.experts("et") == ["t1ce"] and sorted(model.experts("wt")) == ["flair", "t2"]
    assert out["kl"] > 0
    with pytest.raises(ValueError, match="no segmentor predicts"):
        CIML(subtasks={"flair": ("wt",), "t1": ("tc",)})


def test_dice_and_hd95_on_known_masks():
    g = torch.zeros(1, 2, 20, 20, dtype=torch.bool)
    g[0, :, 5:10, 5:10] = True
    p = torch.zeros_like(g)
    p[0, 0, 5:10, 7:12] = True   # shifted by 2 px: overlap 15 of 25 + 25
    assert dice_scores(p, g)[0].tolist() == pytest.approx([30 / 50, 0.0])
    assert dice_scores(torch.zeros_like(g), torch.zeros_like(g)).tolist() == [[1.0, 1.0]]
    hd = hd95_scores(p, g)
    assert hd[0, 0] == pytest.approx(2.0) and hd[0, 1] == pytest.approx(math.hypot(20, 20))
    assert hd95_scores(g, g).max() == 0


def test_short_training_run_raises_dice():
    torch.manual_seed(0)
    config = CIMLConfig(methods=("ciml",), n_train=96, epochs=3, batch_size=16, lr=1e-2,
                        width=4, message_channels=4, phantom=SMALL)
    train, test = make_phantoms(96, seed=0, config=SMALL), make_phantoms(32, seed=99, config=SMALL)
    model = build_model("ciml", config)
    model.eval()
    before = evaluate(model.predict, test, hd95=False)["dice_mean"]
    history = train_model(model, train, config, seed=0)
    after = evaluate(model.predict, test, hd95=False)
    assert history[-1]["loss"] < history[0]["loss"]
    assert after["dice_mean"] > before + 0.25, (before, after)
    assert after["dice_wt"] > 0.6


def test_config_yaml_round_trip_and_errors(tmp_path):
    import yaml

    config = CIMLConfig(seeds=(1, 2), beta=0.01, phantom=SMALL)
    again = CIMLConfig.from_dict(yaml.safe_load(yaml.safe_dump(config.to_dict())))
    assert again == config
    with pytest.raises(ConfigError, match="unknown key"):
        CIMLConfig.from_dict({"epoch": 3})
    with pytest.raises(ConfigError, match="methods"):
        CIMLConfig(methods=("unet",))
    with pytest.raises(ConfigError, match="wt_radius"):
        CIMLConfig.from_dict({"phantom": {"wt_radius": [0.5, 0.1]}})


def test_cli_train_writes_a_run_folder(tmp_path, capsys):
    from mimmx.cli import main

    out = tmp_path / "run"
    code = main(["ciml", "train", "--fast", "--methods", "early_fusion", "--epochs", "1",
                 "--n-train", "32", "--out", str(out), "--quiet"])
    assert code == 0
    assert {"config.yaml", "metrics.json", "results.md"} <= {f.name for f in out.iterdir()}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["methods"] == ["early_fusion"] and "hardware" in metrics["environment"]
    assert "| early fusion |" in capsys.readouterr().out
    assert main(["ciml", "train", "--config", str(tmp_path / "missing.yaml")]) == 2
