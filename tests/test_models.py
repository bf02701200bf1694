"""Encoders, split heads, Dynamic Loss Scaling and the Confounder Attention Weighter."""

from __future__ import annotations

import pytest
import torch

from mimmx.errors import ConfigError
from mimmx.models import (
    CAW,
    MINE,
    ConvEncoder,
    DenseNetEncoder,
    MIMMEncoder,
    SplitHeads,
    alpha_y_schedule,
    build_encoder,
    build_estimator,
    dls_gammas,
    dls_loss,
)
from mimmx.models.caw import CAWEstimator


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread (two spinning threads crawl on a loaded 2-core machine); restored."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------------------ encoders


def test_mimm_encoder_shape_and_layers():
    torch.manual_seed(0)
    enc = MIMMEncoder(feature_dim=4)
    assert enc(torch.rand(5, 1, 28, 28)).shape == (5, 4)
    assert enc.fc.in_features == 256 and enc.fc.out_features == 256
    convs = [m for m in enc.features if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [(1, 6), (6, 16), (16, 16)]


def test_mimm_encoder_rejects_other_sizes():
    enc = MIMMEncoder(feature_dim=4)
    with pytest.raises(ValueError, match="28×28"):
        enc(torch.rand(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        enc(torch.rand(2, 28, 28))


@pytest.mark.parametrize("size", [28, 96])
def test_conv_encoder_any_size(size):
    torch.manual_seed(0)
    enc = ConvEncoder(feature_dim=6, width=8)
    assert sum(isinstance(m, torch.nn.Conv2d) for m in enc.modules()) == 4
    f = enc(torch.rand(3, 1, size, size))
    assert f.shape == (3, 6)
    f.sum().backward()
    assert all(p.grad is not None for p in enc.parameters())


def test_conv_encoder_errors():
    with pytest.raises(ValueError, match="at least 8×8"):
        ConvEncoder(4)(torch.rand(2, 1, 4, 4))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        ConvEncoder(4, in_channels=3)(torch.rand(2, 1, 28, 28))


@pytest.mark.parametrize("size", [28, 32])
def test_densenet_encoder(size):
    torch.manual_seed(0)
    enc = DenseNetEncoder(feature_dim=8).eval()
    assert enc.net.features.conv0.kernel_size == (3, 3) and enc.net.features.conv0.stride == (1, 1)
    with torch.no_grad():
        assert enc(torch.rand(2, 1, size, size)).shape == (2, 8)
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        enc(torch.rand(2, 3, size, size))


def test_build_encoder():
    assert isinstance(build_encoder("mimm", 4), MIMMEncoder)
    enc = build_encoder("conv4", 10, in_channels=3, width=4)
    assert enc(torch.rand(1, 3, 28, 28)).shape == (1, 10)
    with pytest.raises(ConfigError, match="unknown encoder 'resnet'.*conv4"):
        build_encoder("resnet", 4)
    with pytest.raises(ConfigError, match="feature_dim"):
        build_encoder("conv4", 0)
    with pytest.raises(ConfigError, match="encoder 'mimm'"):
        build_encoder("mimm", 4, width=8)


# ---------------------------------------------------------------------------- split heads


def test_split_heads_identity_is_the_original_mimm_split():
    heads = SplitHeads([2, 2], [2, 2], head="identity")
    f = torch.arange(12.0).reshape(3, 4)
    f_y, f_z = heads.split(f)
    assert torch.equal(f_y, f[:, :2]) and torch.equal(f_z, f[:, 2:])
    logits = heads(f)
    assert torch.equal(logits[0], f_y) and torch.equal(logits[1], f_z)
    assert list(heads.parameters()) == []


def test_split_heads_linear_multi_factor():
    heads = SplitHeads([8, 4, 4], [2, 2, 3])
    f = torch.randn(5, 16)
    parts = heads.split(f)
    assert [p.shape for p in parts] == [(5, 8), (5, 4), (5, 4)]
    assert [lg.shape for lg in heads(f)] == [(5, 2), (5, 2), (5, 3)]
    heads(f)[2].sum().backward()  # the z_2 head sees only f_z2
    assert heads.heads[0].weight.grad is None and heads.heads[2].weight.grad is not None


def test_split_heads_errors():
    with pytest.raises(ConfigError, match="dims must equal n_classes"):
        SplitHeads([4, 2], [2, 2], head="identity")
    with pytest.raises(ConfigError, match="one entry"):
        SplitHeads([4, 2, 2], [2, 2])
    with pytest.raises(ValueError, match=r"\(B, 8\)"):
        SplitHeads([4, 4], [2, 2]).split(torch.randn(3, 7))


# ------------------------------------------------------------------------------------ DLS


def test_per_factor_z_encoders_keep_each_factor_part_to_its_own_encoder():
    from mimmx.models.network import MIMMNet

    torch.manual_seed(0)
    shared = MIMMNet("conv4", 2, [2, 2], [2, 2, 2], width=4)
    torch.manual_seed(0)
    per = MIMMNet("conv4", 2, [2, 2], [2, 2, 2], width=4, z_encoders="per_factor")
    assert len(shared.encoder.encoders) == 2 and len(per.encoder.encoders) == 3
    # f_y's encoder is drawn first either way: the same seed gives the same one
    assert all(torch.equal(a, b) for a, b in zip(shared.encoder.encoders[0].parameters(),
                                                 per.encoder.encoders[0].parameters()))
    x = torch.randn(4, 1, 28, 28)
    parts, logits = per(x)
    assert [p.shape[1] for p in parts] == [2, 2, 2]
    parts[1].sum().backward()  # f_z1 depends on its own encoder only
    grads = [any(p.grad is not None and p.grad.abs().sum() > 0 for p in e.parameters())
             for e in per.encoder.encoders]
    assert grads == [False, True, False]
    shared.zero_grad()
    shared(x)[0][1].sum().backward()  # with one z encoder, f_z1 and f_z2 share its trunk
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in shared.encoder.encoders[1].parameters())
    with pytest.raises(ConfigError, match="separate_encoders=true"):
        MIMMNet("conv4", 2, [2, 2], [2, 2, 2], width=4, separate_encoders=False, z_encoders="per_factor")


def test_dls_gammas_by_hand():
    losses = torch.tensor([1.0, 2.0, 3.0])  # mean 2
    gammas = dls_gammas(losses, alpha_y=0.3, alpha_z=0.8)
    # γ_0 = (1/2)^0.3, γ_1 = (2/2)^0.8, γ_2 = (3/2)^0.8
    torch.testing.assert_close(gammas, torch.tensor([0.8122523964, 1.0, 1.3831618672]))


def test_dls_gammas_are_constant_weights():
    losses = torch.tensor([0.5, 1.5], requires_grad=True)
    gammas = dls_gammas(losses, 0.3, 0.7)
    assert not gammas.requires_grad
    dls_loss(losses, 0.3, 0.7).backward()
    torch.testing.assert_close(losses.grad, gammas)  # d(Σ γ_i L_i)/dL_i = γ_i
    assert dls_gammas([0.0, 0.0], 0.3, 0.7).tolist() == [1.0, 1.0]
    assert dls_gammas([1.0, 1.0, 1.0], 0.3, 0.8).tolist() == [1.0, 1.0, 1.0]


def test_dls_errors():
    with pytest.raises(ValueError, match="1-D tensor"):
        dls_gammas(torch.tensor(1.0), 0.3, 0.8)
    with pytest.raises(ValueError, match="non-negative"):
        dls_gammas(torch.tensor([1.0, -1.0]), 0.3, 0.8)


def test_alpha_y_schedule():
    assert alpha_y_schedule(0.3, 0.01, 0, 100) == pytest.approx(0.3)
    assert alpha_y_schedule(0.3, 0.01, 50, 100) == pytest.approx(0.305)
    assert alpha_y_schedule(0.3, 0.01, 100, 100) == pytest.approx(0.31)
    assert alpha_y_schedule(0.3, 0.5, 2.5, 10) == pytest.approx(0.425)
    with pytest.raises(ValueError, match="n_epochs"):
        alpha_y_schedule(0.3, 0.01, 1, 0)


# ------------------------------------------------------------------------------------ CAW


def test_caw_learned_weights_sum_to_one_and_start_uniform():
    torch.manual_seed(0)
    caw = CAW([2, 3, 1])
    f_zs = [torch.randn(6, d) for d in (2, 3, 1)]
    f_z, w = caw(f_zs)
    assert w.shape == (6, 3)
    torch.testing.assert_close(w.sum(1), torch.ones(6))
    torch.testing.assert_close(f_z, torch.cat(f_zs, 1))  # uniform weights: identity


def test_caw_weights_are_differentiable():
    torch.manual_seed(1)
    caw = CAW([2, 2], temperature=0.5)
    for scorer in caw.scorers:
        torch.nn.init.normal_(scorer[2].weight)
    f_zs = [torch.randn(8, 2, requires_grad=True) for _ in range(2)]
    f_z, w = caw(f_zs)
    assert not torch.allclose(w, torch.full_like(w, 0.5))
    torch.testing.assert_close(w.sum(1), torch.ones(8))
    w[:, 0].sum().backward(retain_graph=True)
    assert f_zs[0].grad.abs().sum() > 0 and caw.scorers[0][0].weight.grad.abs().sum() > 0
    # the weights depend on f_z only: passing f_y changes nothing
    torch.testing.assert_close(caw(f_zs, f_y=torch.randn(8, 4))[1], w)


def test_caw_dependence_mode():
    g = torch.Generator().manual_seed(2)
    f_y = torch.randn(100, 2, generator=g)
    f_zs = [torch.randn(100, 2, generator=g), f_y + 0.3 * torch.randn(100, 2, generator=g)]
    caw = CAW([2, 2], mode="dependence")
    f_z, w = caw(f_zs, f_y)
    assert w.shape == (2,) and not w.requires_grad
    assert w.sum().item() == pytest.approx(1.0) and w[1] > 0.9  # the leaking factor
    torch.testing.assert_close(f_z[:, 2:], 2 * w[1] * f_zs[1])
    w_given = caw(f_zs, scores=torch.tensor([0.0, 0.1]))[1]
    torch.testing.assert_close(w_given, torch.softmax(torch.tensor([0.0, 1.0]), 0))
    with pytest.raises(ValueError, match="needs f_y"):
        caw(f_zs)


def test_caw_combine_is_a_soft_maximum():
    caw = CAW([1, 1], mode="dependence", temperature=0.1)
    p = torch.tensor([0.1, 0.3], requires_grad=True)
    w = torch.softmax(torch.tensor([1.0, 3.0]), 0)
    out = caw.combine(p)
    assert out.item() == pytest.approx(2 * (w * p).sum().item())
    out.backward()
    torch.testing.assert_close(p.grad, 2 * w)  # weights are constants


def test_caw_errors():
    with pytest.raises(ConfigError, match="mode"):
        CAW([2, 2], mode="soft")
    with pytest.raises(ValueError, match=r"\(B, \[2, 2\]\)"):
        CAW([2, 2])([torch.randn(4, 2), torch.randn(4, 3)])
    with pytest.raises(ConfigError, match="sum to 4"):
        CAWEstimator(MINE(2, 3, width=8), CAW([2, 2]))


def test_caw_learns_to_attend_to_the_leaking_factor():
    """As part of MINE's critic, a learned CAW up-weights the factor that depends on f_y."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    est = CAWEstimator(MINE(2, 4, width=32), CAW([2, 2]))
    assert est.trainable
    opt = torch.optim.Adam(est.parameters(), lr=5e-3)  # T's and CAW's parameters
    for _ in range(150):
        f_y = torch.randn(64, 2, generator=g)
        f_z1 = torch.randn(64, 2, generator=g)                        # independent of f_y
        f_z2 = 0.8 * f_y + 0.6 * torch.randn(64, 2, generator=g)      # leaks f_y
        loss = est.estimator_loss(f_y, torch.cat([f_z1, f_z2], 1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    f_y.requires_grad_(True)
    est.penalty(f_y, torch.cat([f_z1, f_z2], 1)).backward()
    assert est.last_weights.shape == (64, 2)
    assert est.last_weights[:, 1].mean() > 0.65  # started at 0.5
    assert f_y.grad.abs().sum() > 0


def test_caw_estimator_with_parameter_free_estimator():
    est = CAWEstimator(build_estimator("dcor", 2, 4), CAW([2, 2], mode="dependence"))
    assert not est.trainable
    f_y = torch.randn(20, 2)
    assert est.estimator_loss(f_y, torch.randn(20, 4)).item() == 0.0
    assert 0 <= est.estimate(f_y, torch.randn(20, 4)) <= 1
