"""The engine end to end on a small real scenario: every method trains, the run folder
round-trips, seeding, callbacks."""

import json

import pytest
import torch

from mimmx.config import RunConfig
from mimmx.errors import ConfigError
from mimmx.methods import METHODS, Dims, build_method
from mimmx.runs import write_run
from mimmx.runs.folder import RUN_FILES
from mimmx.trainer import (
    batches_of,
    build_model,
    build_scenario,
    cell_balanced_accuracy,
    kept_evaluation,
    train,
)

TINY = ["scenario.name=exp2", "scenario.n_train=900", "scenario.n_selection=200", "scenario.n_test=200",
        "train.epochs=3", "train.batch_size=60", "train.device=cpu",
        "train.lr=0.003", "method.estimator.width=32", "method.n_b=3", "method.lam=0.5"]


@pytest.fixture(scope="module")
def tiny_scenario(real_data):
    """With the holdout split DFR refits on (the other splits do not change with it)."""
    return build_scenario(RunConfig().override(TINY + ["method.name=dfr"]))


def _ce(ev):
    return sum(v for k, v in ev.items() if k.startswith("loss_"))


@pytest.mark.parametrize("name", sorted(METHODS))
def test_every_method_trains_and_lowers_its_loss(tiny_scenario, name):
    cfg = RunConfig().override(TINY + [f"method.name={name}"])
    steps = []
    result = train(cfg, tiny_scenario, callbacks=[lambda ev: steps.append(ev) if ev["type"] == "step" else None])
    enc = [ev for ev in steps if ev["kind"] == "encoder"]
    assert len(enc) >= 8
    assert _ce(enc[-1]) < _ce(enc[0]), name
    est = [ev for ev in steps if ev["kind"] == "estimator"]
    assert bool(est) == result.method.has_estimator
    assert result.best["acc"]["selection"]["y"] > 60.0


def test_run_folder_roundtrip(tiny_scenario, tmp_path):
    cfg = RunConfig().override(TINY + ["train.epochs=1"])
    result = train(cfg, tiny_scenario)
    assert write_run(result, tmp_path / "run") == result.run_dir == tmp_path / "run"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted(RUN_FILES)  # no temp files
    assert RunConfig.from_yaml(tmp_path / "run" / "config.yaml") == cfg
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["acc"] == result.history[-1]["acc"]
    env = json.loads((tmp_path / "run" / "environment.json").read_text())
    assert env["seed"] == cfg.seed and env["torch"] == torch.__version__
    ckpt = torch.load(tmp_path / "run" / "checkpoint.pt")
    assert ckpt["config"] == cfg.to_dict()
    result.model.load_state_dict(ckpt["model"])


def test_same_seed_same_result(tiny_scenario):
    cfg = RunConfig().override(TINY + ["train.epochs=1"])
    a, b = train(cfg, tiny_scenario), train(cfg, tiny_scenario)
    assert a.best["acc"] == b.best["acc"]
    for pa, pb in zip(a.model.parameters(), b.model.parameters()):
        assert torch.equal(pa, pb)


def test_eval_size_subsamples_test_sets_but_not_the_selection(tiny_scenario):
    cfg = RunConfig().override(TINY + ["method.name=mimmx", "train.epochs=2"])
    full, live = train(cfg, tiny_scenario), train(cfg, tiny_scenario, eval_size=50)
    for pa, pb in zip(full.model.parameters(), live.model.parameters()):
        assert torch.equal(pa, pb)  # evaluating fewer test images leaves training untouched
    for a, b in zip(full.history, live.history):
        assert a["acc"]["selection"] == b["acc"]["selection"]

    def on_50(acc):  # a share of 50 images is a multiple of 2 %; of 200 images, of 0.5 %
        return abs(acc / 2 - round(acc / 2)) < 1e-3

    assert all(on_50(ev["acc"][s]["y"]) for ev in live.history for s in ("validation", "inverted", "balanced"))
    assert not all(on_50(ev["acc"][s]["y"]) for ev in full.history for s in ("validation", "inverted"))
    with pytest.raises(ConfigError, match="eval_size"):
        train(cfg, tiny_scenario, eval_size=0)


def test_channels_last_is_the_same_network(tiny_scenario):
    cfg = RunConfig().override(TINY)
    torch.manual_seed(0)
    plain, _ = build_model(cfg, tiny_scenario, torch.device("cpu"))
    torch.manual_seed(0)
    fast, _ = build_model(cfg.override(["train.channels_last=true"]), tiny_scenario, torch.device("cpu"))
    conv = next(m for m in fast.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = batches_of(tiny_scenario.splits["validation"].x[:64])
    for a, b in zip(plain(x)[0], fast(x)[0]):
        assert torch.allclose(a, b, atol=1e-4)
    result = train(cfg.override(["train.channels_last=true", "train.epochs=1"]), tiny_scenario)
    assert result.best["acc"]["selection"]["y"] > 60.0


def test_callback_can_stop(tiny_scenario):
    events = []

    def stop_after_5(ev):
        events.append(ev)
        return ev["type"] == "step" and ev["step"] == 5

    result = train(RunConfig().override(TINY), tiny_scenario, callbacks=[stop_after_5])
    assert max(ev["step"] for ev in events if ev["type"] == "step") == 5
    assert events[-1]["type"] == "end" and events[-1]["stopped"]
    assert len(result.history) == 1  # one evaluation of the stopped model


def test_selection_never_uses_test_sets(tiny_scenario):
    cfg = RunConfig().override(TINY)
    result = train(cfg, tiny_scenario)
    rule = cfg.train.select
    assert result.best["select"][rule] == max(ev["select"][rule] for ev in result.history)


def test_cell_balanced_accuracy_does_not_reward_the_shortcut():
    """A shortcut (predict z_1) is right on 90 % of a confounded split but on half its cells."""
    y = torch.tensor([0] * 10 + [1] * 10)
    z = torch.tensor([[0, 0]] * 8 + [[1, 0], [0, 1]] + [[1, 1]] * 8 + [[0, 1], [1, 0]])
    shortcut = z[:, 0]
    assert int((shortcut == y).sum()) == 18  # 90 % right
    # six cells: right on y=0 (0,0), (0,1) and y=1 (1,1), (1,0); wrong on y=0 (1,0), y=1 (0,1)
    assert cell_balanced_accuracy(shortcut, y, z) == pytest.approx(100 * 4 / 6)
    assert cell_balanced_accuracy(y, y, z) == 100.0


@pytest.mark.parametrize("select", ["y", "y_cell_balanced"])
def test_the_kept_model_is_the_best_by_train_select(tiny_scenario, select):
    result = train(RunConfig().override(TINY + [f"train.select={select}"]), tiny_scenario)
    scores = [ev["select"][select] for ev in result.history]
    assert result.best["select"][select] == max(scores)
    # the model left in the result is the kept one: its score, recomputed, is the best
    f = result.features("selection")
    score = (100 * float((f["pred_y"] == f["y"]).float().mean()) if select == "y" else
             cell_balanced_accuracy(f["pred_y"], f["y"], torch.stack([f["z1"], f["z2"]], 1)))
    assert score == pytest.approx(max(scores), abs=1e-4)


def test_unknown_train_select_is_a_clear_error(tiny_scenario):
    with pytest.raises(ConfigError, match="'train.select' must be one of 'y', 'y_cell_balanced', got 'acc'"):
        train(RunConfig().override(TINY + ["train.select=acc"]), tiny_scenario)


@pytest.mark.parametrize("select, kept", [("y", 1), ("y_cell_balanced", 2)])
def test_train_select_decides_which_evaluation_is_kept(tiny_scenario, monkeypatch, select, kept):
    """Scripted scores: epoch 1 wins on plain accuracy, epoch 2 on the cell-balanced one."""
    import mimmx.trainer as trainer

    scores = iter([{"y": 90.0, "y_cell_balanced": 50.0}, {"y": 80.0, "y_cell_balanced": 70.0},
                   {"y": 85.0, "y_cell_balanced": 60.0}])
    real = trainer.evaluate
    monkeypatch.setattr(trainer, "evaluate", lambda *a, **k: {**real(*a, **k), "select": next(scores)})
    result = train(RunConfig().override(TINY + [f"train.select={select}"]), tiny_scenario)
    assert result.best["epoch"] == kept
    # read off the history afterwards, for either rule, whichever rule the run kept by
    assert kept_evaluation(result.history, select) is result.best
    assert kept_evaluation(result.history, "y")["epoch"] == 1
    assert kept_evaluation(result.history, "y_cell_balanced")["epoch"] == 2


def test_rebalance_weights_equalise_cells(tiny_scenario):
    cfg = RunConfig().override(TINY + ["method.name=rebalance"])
    tr = tiny_scenario.splits["train"]
    dims = Dims(4, (4, 4), 2, (2, 2))
    w = build_method(cfg.method, dims, 1).sample_weights(tr.y, tr.z)
    cell = tr.y * 4 + tr.z[:, 0] * 2 + tr.z[:, 1]
    mass = torch.zeros(8).index_add_(0, cell, w)
    assert torch.allclose(mass, torch.full((8,), float(w.sum()) / 8))


def test_unknown_method_is_a_clear_error(tiny_scenario):
    from mimmx.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown method 'mimx'"):
        train(RunConfig().override(TINY + ["method.name=mimx"]), tiny_scenario)


def test_scenario_r_override(real_data):
    cfg = RunConfig().override(TINY + ["scenario.r=0.7"])
    tr = build_scenario(cfg).splits["train"]
    assert float((tr.z[:, 0] == tr.y).float().mean()) == pytest.approx(0.7, abs=1e-2)
    from mimmx.errors import ConfigError

    with pytest.raises(ConfigError, match="tables"):
        build_scenario(RunConfig().override(["scenario.name=exp3", "scenario.r=0.7"]))


def test_caw_scorer_trains_with_the_critic(tiny_scenario):
    cfg = RunConfig().override(TINY + ["method.name=mimmx", "method.caw=true", "train.epochs=1"])
    result = train(cfg, tiny_scenario)
    est = result.method.estimators[0]
    assert type(est).__name__ == "CAWEstimator"
    # the scorer's output layer starts at zero (uniform attention); estimator steps move it
    assert est.caw.scorers[0][2].weight.abs().sum() > 0



def test_balanced_penalty_batches_make_y_and_z_independent(tiny_scenario, monkeypatch):
    """estimator.balanced: the estimator trains on cell-balanced batches, so within them y and z
    agree about half the time although the training split has them correlated (r = 0.9)."""
    from mimmx.methods.catalogue import MIMMX

    tr = tiny_scenario.splits["train"]
    assert float((tr.z[:, 0] == tr.y).float().mean()) > 0.85
    seen = []
    original = MIMMX.estimator_loss

    def spy(self, parts, y, z):
        seen.append(float((z[:, 0] == y).float().mean()))
        return original(self, parts, y, z)

    monkeypatch.setattr(MIMMX, "estimator_loss", spy)
    for balanced, low, high in ((True, 0.4, 0.6), (False, 0.85, 0.95)):
        seen.clear()
        cfg = RunConfig().override(TINY + ["method.name=mimmx", "train.epochs=1",
                                           f"method.estimator.balanced={balanced}"])
        train(cfg, tiny_scenario)
        assert low < sum(seen) / len(seen) < high, (balanced, sum(seen) / len(seen))


@pytest.mark.parametrize("alternation", ["per_step", "per_batch"])
def test_alternation_counts_encoder_and_estimator_steps(tiny_scenario, alternation):
    """per_step: every batch trains the encoder, then N_B − 1 estimator steps follow on drawn
    batches; per_batch (the original loop): the epoch's batches are shared, 1 in N_B trains the
    encoder."""
    cfg = RunConfig().override(TINY + ["method.name=mimmx", "train.epochs=1",
                                       f"method.alternation={alternation}"])
    kinds = []
    train(cfg, tiny_scenario, callbacks=[lambda ev: kinds.append(ev["kind"]) if ev["type"] == "step" else None])
    batches = len(tiny_scenario.splits["train"]) // cfg.train.batch_size  # 15
    n_enc = kinds.count("encoder")
    if alternation == "per_step":
        assert n_enc == batches and kinds.count("estimator") == batches * (cfg.method.n_b - 1)
        assert kinds[:cfg.method.n_b] == ["encoder"] + ["estimator"] * (cfg.method.n_b - 1)
    else:
        assert len(kinds) == batches and n_enc == -(-batches // cfg.method.n_b)


def test_estimator_batches_bank_runs_no_extra_encoder_pass(tiny_scenario, monkeypatch):
    """estimator_batches=bank: the N_B − 1 estimator steps train on the last N_B − 1 encoder
    steps' penalty-batch features (detached, newest first), so a cycle runs the encoder twice
    (training + penalty batch) instead of 2 + (N_B − 1) times."""
    from mimmx.methods.catalogue import MIMMX
    from mimmx.models.network import MIMMNet

    calls, seen = [], []
    forward, est_loss = MIMMNet.forward, MIMMX.estimator_loss
    monkeypatch.setattr(MIMMNet, "forward", lambda self, x: calls.append(len(x)) or forward(self, x))
    monkeypatch.setattr(MIMMX, "estimator_loss",
                        lambda self, parts, y, z: seen.append(parts[0]) or est_loss(self, parts, y, z))
    batches = len(tiny_scenario.splits["train"]) // 60  # N_B = 3: two estimator steps per batch
    for mode, per_cycle in (("forward", 2 + 2), ("bank", 2)):
        calls.clear(), seen.clear()
        cfg = RunConfig().override(TINY + ["method.name=mimmx", "train.epochs=1", "train.eval_every=5",
                                           f"method.estimator_batches={mode}"])
        train(cfg, tiny_scenario)
        training_calls = [c for c in calls if c == 60]  # evaluation passes use other sizes
        assert len(training_calls) == batches * per_cycle, mode
        assert len(seen) == batches * 2 and not seen[0].requires_grad
        if mode == "bank":  # cycle 2 trains on its own penalty batch, then on cycle 1's
            assert seen[2] is not seen[3] and seen[3] is seen[0] and seen[4] is not seen[2]
        else:
            assert len({id(t) for t in seen}) == len(seen)
    with pytest.raises(Exception, match="per_step"):
        train(RunConfig().override(TINY + ["method.name=mimmx", "method.estimator_batches=bank",
                                           "method.alternation=per_batch"]), tiny_scenario)


@pytest.mark.parametrize("caw", [False, True])
def test_per_factor_mean_is_the_sum_over_n(caw):
    """``estimator.reduce=mean``: the per-factor penalty is the summed one divided by N."""
    dims = Dims(4, (3, 3), 2, (2, 2))
    base = TINY + ["method.name=mimmx", f"method.caw={str(caw).lower()}", "method.estimator.per_factor=true"]
    torch.manual_seed(0)
    parts = [torch.randn(32, 4), torch.randn(32, 3), torch.randn(32, 3)]
    y, z = torch.randint(0, 2, (32,)), torch.randint(0, 2, (32, 2))
    pens = {}
    for reduce in ("sum", "mean"):
        torch.manual_seed(1)
        method = build_method(RunConfig().override(base + [f"method.estimator.reduce={reduce}"]).method, dims, 1)
        torch.manual_seed(2)
        pens[reduce], logs = method.penalty(parts, y, z)
        assert {"mi_z1", "mi_z2"} <= set(logs)
    assert pens["mean"].item() == pytest.approx(pens["sum"].item() / 2, rel=1e-5)
    with pytest.raises(ConfigError, match="must be one of 'sum', 'mean', got 'max'"):
        build_method(RunConfig().override(base + ["method.estimator.reduce=max"]).method, dims, 1)


@pytest.mark.parametrize("per_factor", [False, True])
def test_nonnegative_penalty_never_rewards_a_negative_estimate(per_factor):
    """``method.nonnegative``: each estimate D enters as max(0, D); the logs keep the raw D."""
    dims = Dims(4, (3, 3), 2, (2, 2))
    base = TINY + ["method.name=mimmx", "method.caw=false",
                   f"method.estimator.per_factor={str(per_factor).lower()}", "method.estimator.reduce=mean"]
    parts = [torch.randn(32, 4, requires_grad=True), torch.randn(32, 3), torch.randn(32, 3)]
    y, z = torch.randint(0, 2, (32,)), torch.randint(0, 2, (32, 2))
    estimates = [-0.3, 0.2] if per_factor else [-0.3]
    pens = {}
    for nonneg in (False, True):
        method = build_method(RunConfig().override(
            base + [f"method.nonnegative={str(nonneg).lower()}"]).method, dims, 1)
        for est, d in zip(method.estimators, estimates, strict=True):
            est.penalty = lambda f_y, *_, d=d: d * f_y.sum() / f_y.sum().detach()  # value d, grad
        pens[nonneg], _ = method.penalty(parts, y, z)
    if per_factor:  # the mean over the two factors
        assert pens[False].item() == pytest.approx((-0.3 + 0.2) / 2)
        assert pens[True].item() == pytest.approx((0.0 + 0.2) / 2)
    else:
        assert pens[False].item() == pytest.approx(-0.3)
        assert pens[True].item() == 0.0
        assert torch.autograd.grad(pens[True], parts[0])[0].abs().sum() == 0  # no pull below 0


@pytest.mark.parametrize("tau, expected", [(None, None), (0.001, 0.3), (1000.0, 0.2)])
def test_caw_temperature_moves_the_penalty_from_the_factors_mean_to_its_maximum(tau, expected):
    """Per-factor estimates D = (0.1, 0.3), reduce=mean: the penalty is (1/N)·Σ N·w_i·D_i with
    w = softmax(D / τ): the default τ = 0.1 gives weights (0.12, 0.88), a small τ the maximum
    (0.3), a large τ the mean (0.2)."""
    dims = Dims(4, (3, 3), 2, (2, 2))
    over = TINY + ["method.name=mimmx", "method.estimator.per_factor=true", "method.estimator.reduce=mean"]
    if tau is not None:
        over.append(f"method.caw_temperature={tau}")
    method = build_method(RunConfig().override(over).method, dims, 1)
    for est, d in zip(method.estimators, (0.1, 0.3), strict=True):
        est.penalty = lambda f_y, *_, d=d: torch.tensor(d)
    pen, logs = method.penalty([torch.randn(8, 4), torch.randn(8, 3), torch.randn(8, 3)],
                               torch.randint(0, 2, (8,)), torch.randint(0, 2, (8, 2)))
    if tau is None:
        w = torch.softmax(torch.tensor([0.1, 0.3]) / 0.1, 0)
        expected = float((w * torch.tensor([0.1, 0.3])).sum())
    assert pen.item() == pytest.approx(expected, abs=1e-4)
    with pytest.raises(ConfigError, match="caw_temperature"):
        RunConfig().override(["method.caw_temperature=0"])


def test_an_estimator_name_the_method_would_ignore_is_refused():
    dims = Dims(4, (3, 3), 2, (2, 2))
    with pytest.raises(ConfigError, match="'mimmx' always uses the 'mine' estimator"):
        build_method(RunConfig().override(["method.name=mimmx", "method.estimator.name=dcor"]).method,
                     dims, 1)
    for ok in (["method.name=dcor"], ["method.name=dcor", "method.estimator.name=dcor"]):
        assert build_method(RunConfig().override(ok).method, dims, 1).name == "dcor"


def test_random_shift_translates_each_image_by_its_own_offset():
    """x'[b, :, i, j] = x[b, :, i − dy_b, j − dx_b] inside the image, the edge row/column repeated
    outside; every offset within ±k, and k = 2 draws more than one offset."""
    from mimmx.methods.base import random_shift

    x = torch.rand(64, 1, 12, 10)
    gen = torch.Generator().manual_seed(0)
    d = torch.randint(-2, 3, (2, 64), generator=torch.Generator().manual_seed(0))
    out = random_shift(x, 2, gen)
    assert out.shape == x.shape
    for b in range(64):
        dy, dx = int(d[0, b]), int(d[1, b])
        rows = (torch.arange(12) - dy).clamp(0, 11)
        cols = (torch.arange(10) - dx).clamp(0, 9)
        assert torch.equal(out[b, 0], x[b, 0][rows][:, cols])
        assert torch.equal(out[b, 0, 2:-2, 2:-2], torch.roll(x[b, 0], (dy, dx), (0, 1))[2:-2, 2:-2])
    assert len({(int(a), int(c)) for a, c in d.T}) > 5


def test_random_rotation_turns_each_image_by_its_own_angle():
    """A bar through the centre comes out turned counter-clockwise (as displayed) by its image's
    own θ ~ U(−a, a): its pixels' principal axis is at θ (within a degree), the angles differ and
    stay within ±a; a = 0 leaves the images as they are."""
    from mimmx.methods.base import random_rotation

    x = torch.zeros(32, 1, 41, 41)
    x[:, 0, 20, 4:37] = 1.0  # a horizontal bar through the centre pixel
    out = random_rotation(x, 30.0, torch.Generator().manual_seed(0))
    theta = torch.empty(32).uniform_(-30.0, 30.0, generator=torch.Generator().manual_seed(0))
    coords = torch.stack(torch.meshgrid(torch.arange(41.0), torch.arange(41.0), indexing="ij"), -1) - 20
    for b in range(32):
        w = out[b, 0].flatten()
        p = coords.reshape(-1, 2)  # (row, col): row grows downwards
        cov = (w[:, None, None] * p[:, :, None] * p[:, None, :]).sum(0) / w.sum()
        axis = torch.linalg.eigh(cov).eigenvectors[:, -1]
        angle = torch.rad2deg(torch.atan2(-axis[0], axis[1]))  # counter-clockwise as displayed
        angle = (angle + 90) % 180 - 90
        assert abs(angle - theta[b]) < 1.0, (b, float(angle), float(theta[b]))
    assert theta.abs().max() <= 30 and theta.std() > 10
    assert torch.allclose(random_rotation(x, 0.0, torch.Generator()), x, atol=1e-6)


def test_random_elastic_moves_each_image_by_its_own_smooth_field():
    """On a ramp x(p) = column of p, a warp x'(p) = x(p + u(p)) reads back u's column part
    exactly (bilinear interpolation is exact on a linear image): away from the border its RMS
    is the asked length (both components share it equally in expectation), neighbouring pixels
    move alike (a field blurred by σ = 4 px), and each image has its own field; 0 is none."""
    from mimmx.methods.base import random_elastic

    n = 64
    ramp = torch.arange(n, dtype=torch.float64).expand(8, 1, n, n).contiguous()
    out = random_elastic(ramp, 2.0, torch.Generator().manual_seed(0))
    u = (out - ramp)[:, 0, 16:-16, 16:-16]  # the column displacement, away from the border
    rms = float(u.square().mean().sqrt())
    assert 2.0 / 2 ** 0.5 * 0.6 < rms < 2.0 / 2 ** 0.5 * 1.4, rms
    step = (u[:, :, 1:] - u[:, :, :-1]).square().mean().sqrt()
    assert step < 0.25 * rms  # smooth (σ = 4: 0.18 of it; white noise would give 1.41)
    assert (u[0] - u[1]).abs().mean() > 0.3 * rms  # its own field per image
    assert torch.allclose(random_elastic(ramp, 0.0, torch.Generator()), ramp)


@pytest.mark.filterwarnings("ignore:the kept model is at chance")
def test_penalty_rotate_turns_the_penalty_and_estimator_batches_only(tiny_scenario, monkeypatch):
    """method.penalty_rotate=30: every encoder pass of the penalty's batch and of the N_B − 1
    estimator steps turns its images by up to 30°, the losses' batch is not turned (train.rotate
    = 0): per training batch one unturned pass and N_B turned ones."""
    import mimmx.methods.base as base

    turned, passes = [], []
    rotation, forward = base.random_rotation, base.Trainee.forward
    monkeypatch.setattr(base, "random_rotation", lambda x, d, g: turned.append(d) or rotation(x, d, g))
    monkeypatch.setattr(base.Trainee, "forward", lambda self, idx, rotate=None: passes.append(rotate)
                        or forward(self, idx, rotate))
    cfg = RunConfig().override(TINY + ["method.name=mimmx", "train.epochs=1", "method.penalty_rotate=30",
                                       "method.estimator.balanced=true"])
    train(cfg, tiny_scenario)
    n_batches = 900 // 60
    assert passes.count(None) == n_batches and passes.count(30.0) == 3 * n_batches  # N_B = 3
    assert turned == [30.0] * (3 * n_batches)


@pytest.mark.filterwarnings("ignore:the kept model is at chance")
def test_train_shift_changes_training_not_evaluation(tiny_scenario, monkeypatch):
    """train.shift feeds the losses shifted images (a stored image only where the draw is (0, 0),
    1 in 25), while the evaluation passes see the images as stored; a shift too large for the
    images is refused."""
    from mimmx.models.network import MIMMNet

    stored = batches_of(tiny_scenario.splits["train"].x)
    seen = []
    forward = MIMMNet.forward
    monkeypatch.setattr(MIMMNet, "forward", lambda self, x: seen.append(x) or forward(self, x))
    cfg = RunConfig().override(TINY + ["method.name=baseline", "train.epochs=1", "train.shift=2"])
    train(cfg, tiny_scenario)
    flat = stored.flatten(1)
    first = [x for x in seen if len(x) == 60][0].flatten(1)  # the first training batch
    stored_hits = sum(int((flat == img).all(1).any()) for img in first)
    assert stored_hits < 12  # an unshifted draw is 1 in 25; a shifted image matches no stored one
    sel = batches_of(tiny_scenario.splits["selection"].x)
    assert any(torch.equal(x, sel) for x in seen)  # evaluation: the stored images
    with pytest.raises(ConfigError, match="train.shift"):
        train(RunConfig().override(TINY + ["method.name=baseline", "train.shift=14"]), tiny_scenario)
    with pytest.raises(ConfigError, match="train.rotate must be a number of degrees"):
        train(RunConfig().override(TINY + ["method.name=baseline", "train.rotate=-5"]), tiny_scenario)
    with pytest.raises(ConfigError, match="train.elastic must be an RMS displacement"):
        train(RunConfig().override(TINY + ["method.name=baseline", "train.elastic=9"]), tiny_scenario)
