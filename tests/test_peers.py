"""The subpopulation-shift peers (GroupDRO, JTT, DFR) and the pieces they rest on, each on
data where the answer is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mimmx.config import RunConfig
from mimmx.methods import Dims, build_method
from mimmx.methods.catalogue import DFR_C, cell_index
from mimmx.scenarios.builder import SplitData
from mimmx.trainer import kept_evaluation, worst_group_accuracy


def marker_split(n: int, r: float, seed: int = 0) -> SplitData:
    """Blank 28×28 images whose only content is a marker (left: z = 0, right: z = 1), with
    P(z = y) = r: y itself cannot be read from the image, only the shortcut can."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    agree = torch.rand(n, generator=g) < r
    z = torch.where(agree, y, 1 - y)
    x = torch.zeros(n, 28, 28, dtype=torch.uint8)
    x[z == 0, 10:18, 2:8] = 255
    x[z == 1, 10:18, -8:-2] = 255
    return SplitData(x, y, z[:, None], torch.arange(n), "train")


def test_worst_group_accuracy_is_the_lowest_cell():
    y = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    z = torch.tensor([[0], [0], [1], [1], [0], [0], [1], [1]])
    pred = torch.tensor([0, 0, 0, 1, 0, 1, 1, 1])  # cells: 100, 50, 50, 100
    assert worst_group_accuracy(pred, y, z) == pytest.approx(50.0)
    assert worst_group_accuracy(y, y, z) == pytest.approx(100.0)


def test_cell_index_is_mixed_radix():
    y = torch.tensor([0, 1, 1])
    z = torch.tensor([[0, 2], [1, 0], [1, 2]])
    assert cell_index(y, z, 2, (2, 3)).tolist() == [2, 9, 11]  # (y·2 + z1)·3 + z2


def test_groupdro_weights_move_to_the_worst_group():
    """q_g ← q_g exp(η L_g), normalised; the y loss is Σ_g q_g L_g over the batch's groups."""
    cfg = RunConfig().override(["method.name=groupdro", "method.group_eta=0.5"]).method
    method = build_method(cfg, Dims(2, (2,), 2, (2,)), 1)
    y = torch.tensor([0, 0, 1, 1])
    z = torch.tensor([[0], [1], [0], [1]])
    logits = torch.tensor([[4.0, -4.0], [4.0, -4.0], [4.0, -4.0], [-4.0, 4.0]])  # cell (1, 0) wrong
    z_logits = torch.zeros(4, 2)
    losses = method.task_losses([logits, z_logits], y, z)
    per = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    q = torch.exp(0.5 * per) / torch.exp(0.5 * per).sum()  # from uniform q, one example per cell
    assert method.q.argmax().item() == cell_index(y[2:3], z[2:3], 2, (2,)).item()
    assert torch.allclose(method.q, q)
    assert losses[0].item() == pytest.approx(float((q * per).sum()), rel=1e-5)
    assert losses[1].item() == pytest.approx(float(np.log(2)), rel=1e-5)  # z head: plain CE


def test_jtt_error_set_is_the_shortcut_minority():
    """On images that show only the shortcut, ERM learns the marker, so its errors are exactly
    the training images whose marker disagrees with y; those are upweighted λ_up times."""
    data = marker_split(1200, r=0.9)
    cfg = RunConfig().override(["method.name=jtt", "method.jtt_epochs=2", "method.jtt_upweight=20.0",
                                "train.batch_size=60", "train.lr=0.003", "model.f_y_dim=2"])
    from mimmx.models.network import MIMMNet

    torch.manual_seed(0)
    model = MIMMNet("conv4", 2, [2], [2, 2], head="identity", width=8, separate_encoders=True)
    method = build_method(cfg.method, Dims(2, (2,), 2, (2,)), 4)
    method.setup(model, data, cfg.train, torch.Generator().manual_seed(0))
    minority = data.z[:, 0] != data.y
    agreement = (method.error_set == minority).float().mean().item()
    assert agreement > 0.97, agreement
    w = method.sample_weights(data.y, data.z)
    assert set(w.unique().tolist()) == {1.0, 20.0}
    assert torch.equal(w == 20.0, method.error_set)
    before = [p.clone() for p in model.parameters()]
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # stage 1 trained a copy


class _TwoFeatures(nn.Module):
    """A network whose penultimate features are hand-made: (brightness of the image's top half,
    brightness of its right half), read out to the y logits by one Linear (the 'last layer')."""

    def __init__(self):
        super().__init__()
        self.readout = nn.Linear(2, 2)

    def y_readout(self):
        return self.readout, 2

    def forward(self, x):
        h = x.shape[-2] // 2
        feats = torch.stack([x[:, 0, :h].mean((1, 2)), x[:, 0, :, -6:].mean((1, 2))], 1)
        logits = self.readout(feats)
        return [logits], [logits]


def test_dfr_refits_the_last_layer_on_the_core_feature():
    """ERM's readout uses the spurious feature (right marker); DFR refits it on held-out,
    cell-balanced images, where only the core feature (a bright top half, = y) predicts y, so
    the refit model is right whatever the marker says."""
    n = 400
    g = torch.Generator().manual_seed(1)
    y = torch.randint(0, 2, (n,), generator=g)
    z = torch.randint(0, 2, (n,), generator=g)  # balanced: independent of y
    x = torch.zeros(n, 28, 28, dtype=torch.uint8)
    x[y == 1, :14] += 80
    x[z == 1, :, -6:] = 255
    hold = SplitData(x, y, z[:, None], torch.arange(n), "train")
    model = _TwoFeatures()
    with torch.no_grad():  # a shortcut readout: y = 1 iff the right marker is bright
        model.readout.weight[:] = torch.tensor([[0.0, -10.0], [0.0, 10.0]])
        model.readout.bias.zero_()
    method = build_method(RunConfig().override(["method.name=dfr"]).method, Dims(2, (2,), 2, (2,)), 1)
    method.seed(0)

    def acc() -> float:
        with torch.no_grad():
            pred = model(x.unsqueeze(1).float() / 255)[1][0].argmax(1)
        return worst_group_accuracy(pred, y, z[:, None])

    assert acc() == 0.0  # the shortcut readout fails the cells where z ≠ y
    scenario = type("S", (), {"splits": {"holdout": hold}})()
    assert method.finish(model, scenario)
    assert acc() == 100.0
    assert method.chosen_c in DFR_C  # every cell right: the marker no longer decides


def test_a_posthoc_stage_is_the_kept_evaluation():
    history = [{"epoch": 1, "select": {"y": 90.0, "y_cell_balanced": 60.0}},
               {"epoch": 2, "select": {"y": 80.0, "y_cell_balanced": 70.0}},
               {"epoch": 2, "posthoc": "dfr", "select": {"y": 70.0, "y_cell_balanced": 65.0}}]
    assert kept_evaluation(history[:2], "y")["epoch"] == 1
    assert kept_evaluation(history, "y") is history[2]


def test_penalty_split_keeps_a_stratified_share_of_every_cell_out_of_the_losses():
    """method.penalty_split = ρ: round(ρ·n_c) images of every cell are reserved; the epochs
    never show them to the losses, and the penalty's batches come only from them."""
    data = marker_split(1000, r=0.9)
    cfg = RunConfig().override(["method.penalty_split=0.3"]).method
    method = build_method(cfg, Dims(2, (2,), 2, (2,)), 1)
    method.setup(nn.Linear(2, 2), data, RunConfig().train, torch.Generator().manual_seed(0))
    reserved = torch.ones(len(data), dtype=torch.bool)
    reserved[method.fit_idx] = False
    cells = cell_index(data.y, data.z, 2, (2,))
    for c in range(4):
        assert int(reserved[cells == c].sum()) == round(0.3 * int((cells == c).sum()))
    assert method.n_fit == len(data) - int(reserved.sum())
    order = method.epoch_order()
    assert sorted(order.tolist()) == sorted(method.fit_idx.tolist())  # a permutation of the rest
    drawn = torch.cat([method._draw() for _ in range(20)])
    assert reserved[drawn].all()
    assert len(set(cells[drawn].tolist())) == 4  # still cell-balanced: every cell drawn
    with pytest.raises(Exception, match="penalty_split"):
        m = build_method(RunConfig().override(["method.penalty_split=0.0001"]).method,
                         Dims(2, (2,), 2, (2,)), 1)
        m.setup(nn.Linear(2, 2), data, RunConfig().train, torch.Generator().manual_seed(0))


def test_resample_draws_the_losses_batches_cell_balanced_and_keeps_the_penalty_batches():
    """method.resample=true: the epoch's draws are cell-balanced (the 1 % cells as frequent as the
    others); off, the epoch is a permutation of the training set, as before."""
    data = marker_split(2000, r=0.9)
    cells = cell_index(data.y, data.z, 2, (2,))
    for resample in (False, True):
        method = build_method(RunConfig().override([f"method.resample={str(resample).lower()}"]).method,
                              Dims(2, (2,), 2, (2,)), 1)
        method.setup(nn.Linear(2, 2), data, RunConfig().train, torch.Generator().manual_seed(0))
        order = method.epoch_order()
        share = torch.bincount(cells[order], minlength=4).float() / len(order)
        if resample:
            assert (share - 0.25).abs().max() < 0.05, share
        else:
            assert sorted(order.tolist()) == list(range(len(data)))
        assert method.pen_weights is not None  # the penalty's batches stay balanced either way


def test_debiased_penalty_is_zero_in_expectation_for_an_independent_f_y():
    """method.debias: D(f_y, f_z) − D(f_y, f_z∘π). With f_y informative (it reads y) but
    independent of z, the plain dCor estimate on a batch of 150 sits well above zero; the
    debiased one averages to zero. Where f_y reads z it stays large."""
    g = torch.Generator().manual_seed(0)

    def mean_penalty(debias: bool, dependent: bool, n: int = 40) -> float:
        cfg = RunConfig().override(["method.name=dcor", f"method.debias={str(debias).lower()}"]).method
        m = build_method(cfg, Dims(2, (2,), 2, (2,)), 1)
        m.seed(0)
        values = []
        for _ in range(n):
            y, z = torch.randint(0, 2, (150,), generator=g), torch.randint(0, 2, (150, 1), generator=g)
            f_y = torch.randn(150, 2, generator=g) + 3 * y[:, None].float() + 3 * dependent * z.float()
            f_z = torch.randn(150, 2, generator=g) + 3 * z.float()
            values.append(float(m.penalty([f_y, f_z], y, z)[0]))
        return float(np.mean(values))

    bias = mean_penalty(debias=False, dependent=False)
    assert bias > 0.05  # the batch estimate's floor where there is nothing to pay for
    assert abs(mean_penalty(debias=True, dependent=False)) < bias / 5
    assert mean_penalty(debias=True, dependent=True) > 0.2  # dependence still costs


def test_penalised_factors_are_chosen_by_name_or_index_and_only_they_enter_the_penalty():
    """method.penalised: the penalty pairs f_y with the named factors' parts only, so f_y that
    reads the unpenalised factor costs no more than the floor, and reading the penalised one does."""
    from mimmx.errors import ConfigError

    dims = Dims(2, (2, 2), 2, (2, 2), ("marker", "intensity"))

    def method(penalised: str, name: str = "dcor"):
        return build_method(RunConfig().override([f"method.name={name}", f"method.penalised={penalised}"]).method,
                            dims, 1)

    assert method("all").factors == [0, 1]
    assert method("intensity").factors == [1]
    assert method("z2, marker").factors == [0, 1]
    with pytest.raises(ConfigError, match="'size' is not a factor.*marker, intensity"):
        method("size")
    with pytest.raises(ConfigError, match="first factor only"):
        method("intensity", name="mimm")

    g = torch.Generator().manual_seed(0)
    y, z = torch.randint(0, 2, (300,), generator=g), torch.randint(0, 2, (300, 2), generator=g)
    parts = [torch.randn(300, 2, generator=g) for _ in range(3)]
    parts[1] += 3 * z[:, :1].float()
    parts[2] += 3 * z[:, 1:].float()
    reads_marker = [parts[0] + 3 * z[:, :1].float(), parts[1], parts[2]]
    penalise_intensity, penalise_marker = method("intensity"), method("marker")
    assert float(penalise_intensity.penalty(reads_marker, y, z)[0]) < 0.15
    assert float(penalise_marker.penalty(reads_marker, y, z)[0]) > 0.4


def test_per_factor_batches_give_each_factor_its_own_balanced_share():
    """estimator.per_factor_batches: factor i's half of the penalty batch is balanced over
    (y, z_i) alone, so the double-minority cell keeps its share within that half instead of the
    quarter of the batch that joint balancing gives it; the penalty reads each half apart."""
    from types import SimpleNamespace

    from mimmx.errors import ConfigError

    g = torch.Generator().manual_seed(0)
    n = 20000
    y = torch.randint(0, 2, (n,), generator=g)
    z = torch.stack([torch.where(torch.rand(n, generator=g) < 0.9, y, 1 - y) for _ in range(2)], 1)
    over = ["method.estimator.per_factor=true", "method.name=dcor"]
    m = build_method(RunConfig().override(over + ["method.estimator.per_factor_batches=true"]).method,
                     Dims(2, (2, 2), 2, (2, 2)), 1)
    m.draw_weights = m.penalty_sample_weights(y, z).cpu()
    m.t = SimpleNamespace(cfg=SimpleNamespace(batch_size=20000), generator=g, device=torch.device("cpu"))
    idx = m._draw()
    first, second = idx[:10000], idx[10000:]
    for half, i in ((first, 0), (second, 1)):
        agree = (z[half, i] == y[half]).float().mean()
        other = (z[half, 1 - i] == y[half]).float().mean()
        assert abs(float(agree) - 0.5) < 0.02 and abs(float(other) - 0.9) < 0.02
    both_flip = ((z[idx] != y[idx, None]).all(1)).float().mean()
    assert float(both_flip) < 0.07  # joint balancing: 0.25
    f_y = torch.randn(20000, 2, generator=g)
    parts = [f_y, torch.randn(20000, 2, generator=g), torch.randn(20000, 2, generator=g)]
    assert [len(t) for t in m._share(1, *parts)] == [10000] * 3
    with pytest.raises(ConfigError, match="per_factor_batches needs"):
        build_method(RunConfig().override(["method.name=dcor", "method.estimator.per_factor_batches=true"]).method,
                     Dims(2, (2, 2), 2, (2, 2)), 1)


def test_penalty_batch_task_computes_the_penalty_on_the_losses_batch_with_one_encoder_pass_less():
    """method.penalty_batch=task: the encoder step's penalty sees the losses' own batch (its
    labels), and an update runs one network pass fewer than with a drawn penalty batch."""
    from mimmx.models.network import MIMMNet

    data = marker_split(600, r=0.9)
    net = MIMMNet("conv4", 2, [2], [2, 2], head="identity", width=4)
    passes = []
    net.register_forward_hook(lambda module, args, out: passes.append(len(args[0])))
    idx = torch.arange(150)
    for where, expected in (("drawn", 3), ("task", 2)):  # N_B = 2: encoder step + one estimator step
        cfg = RunConfig().override(["method.name=mimmx", "method.n_b=2", "method.resample=true",
                                    f"method.penalty_batch={where}"]).method
        method = build_method(cfg, Dims(2, (2,), 2, (2,)), 1)
        method.seed(0)
        method.setup(net, data, RunConfig().train, torch.Generator().manual_seed(0))
        seen = []

        def spy(parts, y, z, penalty=method.penalty, seen=seen):
            seen.append(y)
            return penalty(parts, y, z)

        method.penalty = spy
        passes.clear()
        kinds = [logs["kind"] for logs in method.update(idx, 0.0)]
        assert kinds == ["encoder", "estimator"] and len(passes) == expected, (where, passes)
        assert torch.equal(seen[0], data.y[idx]) == (where == "task")
    from mimmx.errors import ConfigError

    with pytest.raises(ConfigError, match="penalty_batch must be 'drawn' or 'task'"):
        m = build_method(RunConfig().override(["method.name=mimmx", "method.penalty_batch=own"]).method,
                         Dims(2, (2,), 2, (2,)), 1)
        m.setup(net, data, RunConfig().train, torch.Generator().manual_seed(0))


def test_gradient_scaling_caps_the_penalty_gradient_at_the_task_gradient():
    """method.grad_scaling: λ·D enters scaled by min(1, ‖∂L_task/∂f‖ / ‖∂(λ·D)/∂f‖), so a strong
    penalty's gradient on the features is as large as the task's and no larger, and a weak one
    is left as it is."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(0)
    y, z = torch.randint(0, 2, (150,), generator=g), torch.randint(0, 2, (150, 1), generator=g)
    base = [torch.randn(150, 2, generator=g) + 2 * z.float(), torch.randn(150, 2, generator=g) + 2 * z.float()]

    def scaled(lam: float) -> tuple[float, float, float]:
        cfg = RunConfig().override(["method.name=dcor", "method.grad_scaling=true", f"method.lam={lam}"]).method
        m = build_method(cfg, Dims(2, (2,), 2, (2,)), 1)
        parts = [p.clone().requires_grad_(True) for p in base]
        _, logs = m.encoder_loss(parts, parts, y, z, 0.0)
        task = F.cross_entropy(parts[0], y) + F.cross_entropy(parts[1], z[:, 0])
        pen = lam * logs["penalty_scale"] * m.penalty(parts, y, z)[0]

        def norm(loss: torch.Tensor) -> float:  # on every part it reaches (the penalty: f_y only)
            grads = torch.autograd.grad(loss, parts, allow_unused=True)
            return float(torch.cat([g_.flatten() for g_ in grads if g_ is not None]).norm())

        return logs["penalty_scale"], norm(task), norm(pen)

    scale, task, pen = scaled(1000.0)
    assert scale < 0.01 and pen == pytest.approx(task, rel=1e-4)
    scale, task, pen = scaled(0.001)
    assert scale == 1.0 and pen < task


@pytest.mark.parametrize("joint", [False, True])
def test_penalty_through_majority_stops_the_gradient_at_minority_images(joint):
    """method.penalty_through=majority: the penalty's gradient reaches f_y only on images whose
    (y, z_i) pairing is a majority one in training; "all" reaches every image. The estimate
    itself is the same either way."""
    from mimmx.models.network import MIMMNet

    data = marker_split(600, r=0.9)
    data = SplitData(data.x, data.y, torch.cat([data.z, data.z], 1), data.index, "train")  # two factors
    net = MIMMNet("conv4", 2, [2, 2], [2, 2, 2], head="identity", width=4)
    torch.manual_seed(0)
    f_y = torch.randn(40, 2, requires_grad=True)
    parts = [f_y, torch.randn(40, 2), torch.randn(40, 2)]
    y, z = data.y[:40], data.z[:40]
    majority = (z == y[:, None]).all(1)  # r = 0.9: agreeing with y is the majority pairing
    assert majority.any() and (~majority).any()
    values = {}
    for through in ("all", "majority"):
        cfg = RunConfig().override(["method.name=mimmx", f"method.penalty_through={through}",
                                    f"method.estimator.per_factor={str(not joint).lower()}"]).method
        torch.manual_seed(1)  # the same critics for both
        method = build_method(cfg, Dims(2, (2, 2), 2, (2, 2)), 1)
        method.seed(0)
        method.setup(net, data, RunConfig().train, torch.Generator().manual_seed(0))
        assert [m.tolist() for m in method.majority.values()] == [[[True, False], [False, True]]] * 2
        method.estimators.eval()  # batch statistics fixed: the value does not depend on the run
        f_y.grad = None
        pen, _ = method.penalty(parts, y, z)
        pen.backward()
        values[through] = float(pen.detach())
        reached = f_y.grad.abs().sum(1) > 0
        assert reached.all() if through == "all" else torch.equal(reached, majority), through
    assert values["all"] == pytest.approx(values["majority"])
    with pytest.raises(Exception, match="penalty_through"):
        RunConfig().override(["method.penalty_through=minority"])


def test_dls_penalty_weights_the_penalty_as_one_more_loss():
    """method.dls_penalty: L = Σ γ_i L_i + γ_D·λ·D, the γ's DLS's over [L_0..L_N, max(0, D)], so a
    met dependence (D ≤ 0) pays nothing; off, the γ's are over the losses alone and D enters at λ."""
    import torch.nn.functional as F

    from mimmx.errors import ConfigError
    from mimmx.models.dls import dls_gammas

    g = torch.Generator().manual_seed(0)
    y, z = torch.randint(0, 2, (150,), generator=g), torch.randint(0, 2, (150, 1), generator=g)
    parts = [torch.randn(150, 2, generator=g), torch.randn(150, 2, generator=g) + 2 * z.float()]
    losses = torch.stack([F.cross_entropy(parts[0], y), F.cross_entropy(parts[1], z[:, 0])])
    common = ["method.name=mimmx", "method.caw=false", "method.lam=2"]
    for on in (True, False):
        cfg = RunConfig().override([*common, f"method.dls_penalty={str(on).lower()}"]).method
        m = build_method(cfg, Dims(2, (2,), 2, (2,)), 1)
        for d in (0.3, -0.2):  # the estimate, fixed: this is about how it is weighed
            m.penalty = lambda *_, d=d: (torch.tensor(d), {})
            loss, logs = m.encoder_loss(parts, parts, y, z, 0.0)
            if on:
                gammas = dls_gammas(torch.cat([losses, torch.tensor([max(d, 0.0)])]), cfg.alpha_y, cfg.alpha_z)
                assert logs["gamma_penalty"] == pytest.approx(float(gammas[-1]))
                assert (logs["gamma_penalty"] == 0) == (d < 0) and abs(logs["gamma_penalty"] - 1) > 0.05
                expected = (gammas[:-1] * losses).sum() + 2 * gammas[-1] * d
            else:
                assert "gamma_penalty" not in logs
                expected = (dls_gammas(losses, cfg.alpha_y, cfg.alpha_z) * losses).sum() + 2 * d
            assert float(loss) == pytest.approx(float(expected), rel=1e-5), (on, d)
    with pytest.raises(ConfigError, match="dls_penalty"):
        build_method(RunConfig().override([*common, "method.dls_penalty=true", "method.dls=false"]).method,
                     Dims(2, (2,), 2, (2,)), 1)
