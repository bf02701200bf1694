"""Dependence estimators: MINE against closed-form Gaussian MI, the all-pairs fast path against
the naive one, dCor against the ``dcor`` package, HSIC against MMD on explicit samples, the
gradient reversal sign."""

from __future__ import annotations

import math

import pytest
import torch

from mimmx.errors import ConfigError
from mimmx.models import estimators as E


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """One torch thread: on a loaded 2-core machine two spinning OpenMP threads make these
    small steps up to 100× slower. Restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def gaussians(n: int, d: int, rho: float, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """f_y ~ N(0, I_d), f_z = ρ f_y + sqrt(1 − ρ²) ε: I(f_y; f_z) = −d/2 · log(1 − ρ²) nats."""
    x, eps = torch.randn(n, d, generator=g), torch.randn(n, d, generator=g)
    return x, rho * x + math.sqrt(1 - rho**2) * eps


def train_mine(d: int, rho: float, marginals: str, gradient: str, steps: int | None = None,
               seed: int = 0) -> float:
    """Train a small MINE on fresh correlated Gaussians; its estimate on a held-out batch.
    About 4000 marginal pairs per step in both modes (64·63, or 512·8 shuffled)."""
    steps = steps or (200 if marginals == "all_pairs" else 300)
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(seed)
    mine = E.MINE(d, d, width=32, marginals=marginals, gradient=gradient, n_shuffles=8)
    opt = torch.optim.Adam(mine.parameters(), lr=5e-3)
    batch = 64 if marginals == "all_pairs" else 512
    for _ in range(steps):
        loss = mine.estimator_loss(*gaussians(batch, d, rho, g))
        opt.zero_grad()
        loss.backward()
        opt.step()
    return mine.estimate(*gaussians(1000, d, rho, g))


TOLERANCE = 0.1  # nats; observed errors ≤ 0.08 over seeds 0-3 for these settings


@pytest.mark.parametrize("marginals, gradient, d, rho", [
    ("all_pairs", "biased", 2, 0.8), ("all_pairs", "ema", 5, 0.5),
    ("shuffle", "biased", 5, 0.5), ("shuffle", "ema", 2, 0.8),
])
def test_mine_recovers_gaussian_mi(marginals, gradient, d, rho):
    true = -d / 2 * math.log(1 - rho**2)  # 1.022 and 0.719 nats
    assert train_mine(d, rho, marginals, gradient) == pytest.approx(true, abs=TOLERANCE)


@pytest.mark.parametrize("marginals", ["all_pairs", "shuffle"])
def test_mine_independent_is_near_zero(marginals):
    assert abs(train_mine(3, 0.0, marginals, "ema", steps=100)) < 0.02


@pytest.mark.parametrize("training", [True, False])
def test_split_first_layer_equals_naive_concat(training):
    """The all-pairs trick: same weights, same values, same gradients, same BatchNorm stats."""
    torch.manual_seed(0)
    fast = E.StatisticsNetwork(3, 2, width=16).double()
    fast.train()
    fast(torch.randn(40, 3, dtype=torch.float64), torch.randn(40, 2, dtype=torch.float64))
    naive = E.StatisticsNetwork(3, 2, width=16).double()
    naive.load_state_dict(fast.state_dict())  # non-trivial running stats and weights
    for net in (fast, naive):
        net.train(training)
    f_y = torch.randn(9, 3, dtype=torch.float64, requires_grad=True)
    f_z = torch.randn(7, 2, dtype=torch.float64, requires_grad=True)

    results = []
    for net, pairs in ((fast, fast.pairs), (naive, naive.pairs_naive)):
        s = pairs(f_y, f_z)  # (9, 7)
        (s.sin().sum()).backward()  # a generic downstream function
        grads = [f_y.grad.clone(), f_z.grad.clone()] + [p.grad.clone() for p in net.parameters()]
        f_y.grad = f_z.grad = None
        results.append((s.detach(), grads, [b.clone() for b in net.buffers()]))
    (s_fast, g_fast, b_fast), (s_naive, g_naive, b_naive) = results
    assert s_fast.shape == (9, 7)
    torch.testing.assert_close(s_fast, s_naive, rtol=1e-10, atol=1e-10)
    for a, b in zip(g_fast, g_naive):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-10)
    for a, b in zip(b_fast[:2], b_naive[:2]):  # running mean and var of the folded first BN
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
    # element check: s[i, j] is T on the concatenated pair
    net = naive.eval() if not training else None
    if net is not None:
        t = net(f_y[4:5], f_z[2:3], update_stats=False)
        torch.testing.assert_close(t[0], s_naive[4, 2])


def test_mine_fast_and_naive_give_the_same_dv_in_float32():
    torch.manual_seed(1)
    fast = E.MINE(2, 2, width=32, gradient="biased", marginals="all_pairs")
    naive = E.MINE(2, 2, width=32, gradient="biased", split_first_layer=False,
                     marginals="all_pairs")
    naive.load_state_dict(fast.state_dict())
    f_y, f_z = torch.randn(50, 2), torch.randn(50, 2)
    assert fast.penalty(f_y, f_z).item() == pytest.approx(naive.penalty(f_y, f_z).item(), abs=1e-5)


def test_dv_formula_all_pairs():
    """DV = mean diag − log mean exp over the B(B−1) off-diagonal pairs, by hand."""
    torch.manual_seed(2)
    mine = E.MINE(2, 3, width=8, gradient="biased", marginals="all_pairs").eval()
    f_y, f_z = torch.randn(6, 2), torch.randn(6, 3)
    s = mine.T.pairs(f_y, f_z)
    off = [s[i, j] for i in range(6) for j in range(6) if i != j]
    expected = s.diagonal().mean() - torch.log(torch.stack(off).exp().mean())
    assert mine.estimate(f_y, f_z) == pytest.approx(expected.item(), abs=1e-5)


def test_ema_gradient_rescales_the_denominator_gradient():
    """EMA mode: same value as biased, gradient of the log-mean-exp term × mean(e^T)/EMA."""
    torch.manual_seed(3)
    mine = E.MINE(2, 2, width=8, gradient="ema", ema_rate=0.3, marginals="all_pairs").eval()  # eval: fixed BN
    f_y, f_z = torch.randn(20, 2), torch.randn(20, 2)
    mine.dv(f_y, f_z)  # first call: EMA := current mean, ratio 1
    mine.log_ema -= 1.0  # pretend the running average is well below the current mean
    log_ema_before = mine.log_ema.clone()

    f_y2 = 3 * f_y + 1
    t_joint, lme = mine.scores(f_y2, f_z)
    g_joint = torch.autograd.grad(t_joint.mean(), list(mine.T.parameters()), allow_unused=True,
                                  retain_graph=True)
    g_lme = torch.autograd.grad(lme, list(mine.T.parameters()), allow_unused=True)
    new_log_ema = torch.logaddexp(log_ema_before + math.log(0.7), lme.detach() + math.log(0.3))
    ratio = torch.exp(lme.detach() - new_log_ema)
    assert abs(ratio.item() - 1) > 0.05  # the test is not vacuous

    dv = mine.dv(f_y2, f_z)
    assert dv.item() == pytest.approx((t_joint.mean() - lme).item(), abs=1e-6)
    torch.testing.assert_close(mine.log_ema, new_log_ema)
    grads = torch.autograd.grad(dv, list(mine.T.parameters()), allow_unused=True)
    for g, gj, gl in zip(grads, g_joint, g_lme):
        expected = (0 if gj is None else gj) - ratio * gl
        torch.testing.assert_close(g, expected, rtol=1e-5, atol=1e-7)


def test_mine_signs_and_no_side_effects_of_estimate():
    torch.manual_seed(4)
    mine = E.MINE(2, 2, width=8, marginals="all_pairs")
    f_y, f_z = torch.randn(16, 2), torch.randn(16, 2)
    assert mine.estimator_loss(f_y, f_z).item() == pytest.approx(-mine.penalty(f_y, f_z).item(),
                                                                 abs=1e-5)
    state = {k: v.clone() for k, v in mine.state_dict().items()}
    mine.estimate(f_y, f_z)
    for k, v in mine.state_dict().items():
        assert torch.equal(v, state[k]) or (v.isnan().all() and state[k].isnan().all()), k
    f_y.requires_grad_(True)
    mine.penalty(f_y, f_z).backward()
    assert f_y.grad is not None and f_y.grad.abs().sum() > 0  # the encoder gets a gradient


@pytest.mark.parametrize("marginals", ["all_pairs", "shuffle"])
def test_standardized_mine_cannot_be_lowered_by_shrinking_f_y(marginals):
    """``standardize=True``: the estimate is the same for f_y and 0.1·f_y + 3 (MI does not
    change); without it, shrinking f_y against f_z moves T's estimate."""
    g = torch.Generator().manual_seed(0)
    f_y, f_z = gaussians(256, 2, 0.8, g)
    values = {}
    for standardize in (False, True):
        torch.manual_seed(1)
        mine = E.MINE(2, 2, width=16, marginals=marginals, standardize=standardize)
        for scale, shift in ((1.0, 0.0), (0.1, 3.0)):
            mine.generator = torch.Generator().manual_seed(2)  # the same shuffles
            values[standardize, scale] = mine.dv(scale * f_y + shift, f_z, update_stats=False).detach().item()
    assert values[True, 1.0] == pytest.approx(values[True, 0.1], abs=1e-4)
    assert abs(values[False, 1.0] - values[False, 0.1]) > 1e-3


def test_shuffle_pairs_are_never_joint():
    perm = E._derangement(10, torch.device("cpu"))
    assert sorted(perm.tolist()) == list(range(10))
    assert (perm != torch.arange(10)).all()


def test_mine_rejects_bad_input():
    mine = E.MINE(2, 3, width=8, marginals="all_pairs")
    with pytest.raises(ValueError, match=r"f_z must have shape \(B, 3\)"):
        mine.penalty(torch.randn(8, 2), torch.randn(8, 2))
    with pytest.raises(ValueError, match="different batch sizes"):
        mine.penalty(torch.randn(8, 2), torch.randn(7, 3))
    with pytest.raises(ConfigError, match="marginals"):
        E.MINE(2, 2, marginals="pairs")


def test_distance_correlation_matches_dcor_package():
    dcor = pytest.importorskip("dcor")
    g = torch.Generator().manual_seed(5)
    x = torch.randn(60, 3, generator=g, dtype=torch.float64)
    y = x[:, :2] ** 2 + 0.5 * torch.randn(60, 2, generator=g, dtype=torch.float64)
    est = E.DistanceCorrelation(3, 2)
    assert est.estimate(x, y) == pytest.approx(dcor.distance_correlation(x.numpy(), y.numpy()),
                                               abs=1e-5)
    assert E.distance_correlation(x, y, squared=True).item() == pytest.approx(
        dcor.distance_correlation_sqr(x.numpy(), y.numpy()), abs=1e-5)
    # float32 input, float64 reference
    assert est.estimate(x.float(), y.float()) == pytest.approx(
        dcor.distance_correlation(x.numpy(), y.numpy()), abs=1e-4)


def test_distance_correlation_gradient_is_finite():
    x = torch.randn(30, 2, requires_grad=True)
    y = torch.cat([x[:10].detach(), torch.randn(20, 2)])  # repeated rows: zero distances
    E.DistanceCorrelation(2, 2).penalty(x, y).backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


def test_hsic_is_mmd_between_joint_and_product_of_marginals():
    """HSIC_b equals MMD² of the joint sample vs all B² product pairs, explicit product kernel."""
    g = torch.Generator().manual_seed(6)
    x, y = torch.randn(12, 2, generator=g, dtype=torch.float64), torch.randn(12, 1, generator=g,
                                                                              dtype=torch.float64)
    k, l_ = E._rbf_gram(x, (0.5, 1.0, 2.0)), E._rbf_gram(y, (0.5, 1.0, 2.0))
    n = 12
    joint = [(i, i) for i in range(n)]
    product = [(i, j) for i in range(n) for j in range(n)]

    def mean_kernel(p, q):
        return sum(k[a, c] * l_[b, d] for a, b in p for c, d in q) / (len(p) * len(q))

    mmd2 = mean_kernel(joint, joint) - 2 * mean_kernel(joint, product) + mean_kernel(product,
                                                                                       product)
    assert E.hsic(x, y).item() == pytest.approx(mmd2.item(), abs=1e-12)


def test_mmd_near_zero_when_independent_and_positive_when_dependent():
    g = torch.Generator().manual_seed(7)
    est = E.MMD(4, 4)
    f_y = torch.randn(200, 4, generator=g)
    independent = est.estimate(f_y, torch.randn(200, 4, generator=g))
    dependent = est.estimate(f_y, f_y.tanh() + 0.3 * torch.randn(200, 4, generator=g))
    assert 0 <= independent < 0.002
    assert dependent > 10 * independent
    # invariant to the scale of the features (median-heuristic bandwidth)
    assert est.estimate(10 * f_y, f_y.tanh()) == pytest.approx(est.estimate(f_y, f_y.tanh()),
                                                               rel=1e-4)


def test_adversary_gradient_on_f_y_is_reversed():
    torch.manual_seed(8)
    adv = E.AdversarialClassifier(3, 2, z_classes=[2, 3], hidden=8, grl_scale=0.7)
    f_y = torch.randn(10, 3, requires_grad=True)
    f_z = torch.randn(10, 2)
    z = torch.stack([torch.randint(0, 2, (10,)), torch.randint(0, 3, (10,))], dim=1)

    ce = adv.estimator_loss(f_y, f_z, z)  # detaches f_y: no gradient to it
    f_y_plain = f_y.detach().clone().requires_grad_(True)
    plain = adv._cross_entropies(f_y_plain, z).sum()
    plain.backward()
    penalty = adv.penalty(f_y, f_z, z)
    assert penalty.item() == pytest.approx(ce.item()) == pytest.approx(plain.item())
    adv.zero_grad()
    penalty.backward()
    torch.testing.assert_close(f_y.grad, -0.7 * f_y_plain.grad)
    head_grad = [p.grad.clone() for p in adv.parameters()]
    adv.zero_grad()
    adv.estimator_loss(f_y, f_z, z).backward()  # the heads themselves descend the CE
    for a, b in zip(head_grad, adv.parameters()):
        torch.testing.assert_close(a, b.grad)


def test_adversary_estimate_is_a_mutual_information_bound():
    torch.manual_seed(9)
    adv = E.AdversarialClassifier(1, 1, z_classes=[2], hidden=0)
    z = torch.randint(0, 2, (400, 1))
    f_y = (2.0 * z - 1).float() + 0.3 * torch.randn(400, 1)  # f_y reveals z
    opt = torch.optim.Adam(adv.parameters(), lr=0.1)
    for _ in range(100):
        loss = adv.estimator_loss(f_y, f_y, z)
        opt.zero_grad()
        loss.backward()
        opt.step()
    # H(z) ≈ log 2; near-perfect prediction leaves nearly all of it
    assert adv.estimate(f_y, f_y, z) == pytest.approx(math.log(2), abs=0.05)
    with pytest.raises(ValueError, match="needs the factor labels"):
        adv.penalty(f_y, f_y)


def test_parameter_free_estimators_have_no_estimator_loss():
    for name in ("dcor", "mmd"):
        est = E.build_estimator(name, 2, 2)
        assert not est.trainable and list(est.parameters()) == []
        assert est.estimator_loss(torch.randn(5, 2), torch.randn(5, 2)).item() == 0.0


def test_registry():
    assert set(E.ESTIMATORS) == {"mine", "dcor", "mmd", "adversarial"}
    assert isinstance(E.build_estimator("mine", 2, 2, width=16), E.MINE)
    from mimmx.config import EstimatorConfig

    default = E.build_estimator("mine", 2, 2)  # one default per knob: the config's
    assert (default.T.width, default.marginals) == (EstimatorConfig.width, EstimatorConfig.marginals)
    with pytest.raises(ConfigError, match="unknown estimator 'hsic'"):
        E.build_estimator("hsic", 2, 2)
    with pytest.raises(ConfigError, match="z_classes"):
        E.build_estimator("adversarial", 2, 2)
    with pytest.raises(ConfigError, match="estimator 'dcor'"):
        E.build_estimator("dcor", 2, 2, width=3)
