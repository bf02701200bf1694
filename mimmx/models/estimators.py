"""Dependence between the primary-task features f_y (B, d_y) and the spurious features f_z (B, d_z).

One interface, four estimators (registry :data:`ESTIMATORS`, factory :func:`build_estimator`):

=============== ====================================================== ==========
name            what ``penalty`` returns (the encoder minimises it)    trainable
=============== ====================================================== ==========
``mine``        Donsker–Varadhan lower bound on I(f_y; f_z), nats      yes
``dcor``        distance correlation dCor(f_y, f_z) (or dCor²)         no
``mmd``         HSIC = MMD²(P(f_y,f_z), P(f_y)P(f_z)), RBF kernels     no
``adversarial`` adversary's cross-entropy for z from f_y, through a    yes
                gradient reversal layer
=============== ====================================================== ==========

Conventions for every estimator:

- ``penalty(f_y, f_z, z)`` is differentiable w.r.t. ``f_y`` and ``f_z``; the method adds
  ``λ · penalty`` to the encoder's loss.
- ``estimator_loss(f_y, f_z, z)`` is what the estimator's own parameters minimise, on detached
  features (the N_B alternation lives in the method/trainer, not here). Parameter-free
  estimators (``trainable = False``) return a constant 0. It is ``critic_loss`` (the same
  objective without the detaching) on detached inputs; ``critic_loss`` exists so that a
  module in front of the estimator (a learned CAW, :class:`mimmx.models.caw.CAWEstimator`)
  can be trained as part of the critic.
- ``estimate(f_y, f_z, z)`` is the current value for logging: a float, no gradient, no change
  to any running statistic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mimmx.config import EstimatorConfig
from mimmx.errors import ConfigError

__all__ = [
    "DependenceEstimator", "StatisticsNetwork", "MINE", "DistanceCorrelation", "MMD",
    "AdversarialClassifier", "GradientReversal", "grad_reverse", "distance_correlation",
    "hsic", "ESTIMATORS", "build_estimator",
]


class DependenceEstimator(nn.Module):
    """Base class: dependence between f_y (B, d_y) and f_z (B, d_z). See the module docstring."""

    trainable: bool = False

    def __init__(self, d_y: int, d_z: int):
        super().__init__()
        for name, d in (("d_y", d_y), ("d_z", d_z)):
            if not isinstance(d, int) or d < 1:
                raise ConfigError(f"{type(self).__name__}: {name} must be a positive int, "
                                  f"got {d!r}")
        self.d_y, self.d_z = d_y, d_z

    def penalty(self, f_y: Tensor, f_z: Tensor, z: Tensor | None = None, y: Tensor | None = None) -> Tensor:
        raise NotImplementedError

    def critic_loss(self, f_y: Tensor, f_z: Tensor, z: Tensor | None = None, y: Tensor | None = None) -> Tensor:
        """What a critic (the estimator's parameters, or anything placed before it, such as a
        learned CAW) minimises, *without* detaching its inputs. Default: −penalty, i.e. the
        critic looks for as much dependence as it can find."""
        return -self.penalty(f_y, f_z, z, y)

    def estimator_loss(self, f_y: Tensor, f_z: Tensor, z: Tensor | None = None, y: Tensor | None = None) -> Tensor:
        """``critic_loss`` on detached features; a constant 0 (no gradient) when there is
        nothing to train (``trainable = False``)."""
        if not self.trainable:
            return f_y.new_zeros(())
        return self.critic_loss(f_y.detach(), f_z.detach(), z, y)

    @torch.no_grad()
    def estimate(self, f_y: Tensor, f_z: Tensor, z: Tensor | None = None, y: Tensor | None = None) -> float:
        return float(self.penalty(f_y, f_z, z, y))

    def _check(self, f_y: Tensor, f_z: Tensor, min_batch: int = 2) -> None:
        name = type(self).__name__
        if f_y.dim() != 2 or f_y.shape[1] != self.d_y:
            raise ValueError(f"{name}: f_y must have shape (B, {self.d_y}), got {tuple(f_y.shape)}")
        if f_z.dim() != 2 or f_z.shape[1] != self.d_z:
            raise ValueError(f"{name}: f_z must have shape (B, {self.d_z}), got {tuple(f_z.shape)}")
        if f_y.shape[0] != f_z.shape[0]:
            raise ValueError(f"{name}: f_y and f_z hold different batch sizes ({f_y.shape[0]} "
                             f"vs {f_z.shape[0]}); pass features of the same images")
        if f_y.shape[0] < min_batch:
            raise ValueError(f"{name}: needs a batch of at least {min_batch} samples, "
                             f"got {f_y.shape[0]}")


# --------------------------------------------------------------------------------------- MINE


class StatisticsNetwork(nn.Module):
    """MINE's statistics network T(f_y, f_z) as in the original MIMM code (lab-midas/MIMM):
    ``depth`` blocks Linear(width, no bias) + BatchNorm1d + ReLU on concat(f_y, f_z), then
    Linear(width → 1).

    BatchNorm: in training mode every block normalises with the statistics of the whole batch
    of pairs it is given (joint and marginal pairs together, B² rows in all-pairs mode), as the
    original does; in eval mode with the running statistics. ``update_stats=False`` uses the same
    normalisation without touching the running statistics (for logging).

    :meth:`pairs` evaluates T on every pair (f_y_i, f_z_j) cheaply: the first layer is linear
    without bias, W·[f_y; f_z] = W_y f_y + W_z f_z, so both halves are computed once per sample
    and the B_y × B_z grid is a broadcast sum. The first BatchNorm is folded in exactly: over the
    full grid, a_i + b_j has mean ā + b̄ and (biased) variance var(a) + var(b), since the cross
    term averages to zero. Blocks 2..depth still run on all B² rows: they dominate the cost when
    d_y + d_z ≪ width (see ``bench/bench_mine.py``). :meth:`pairs_naive` is the plain
    concatenate-every-pair version, kept as the reference.
    """

    def __init__(self, d_y: int, d_z: int, width: int = 400, depth: int = 3):
        super().__init__()
        if width < 1 or depth < 1:
            raise ConfigError(f"StatisticsNetwork: width and depth must be ≥ 1, "
                              f"got {width}, {depth}")
        self.d_y, self.d_z, self.width = d_y, d_z, width
        self.linears = nn.ModuleList(
            [nn.Linear(d_y + d_z if k == 0 else width, width, bias=False) for k in range(depth)])
        self.norms = nn.ModuleList([nn.BatchNorm1d(width) for _ in range(depth)])
        self.out = nn.Linear(width, 1)

    def _norm(self, k: int, h: Tensor, update_stats: bool) -> Tensor:
        bn = self.norms[k]
        if self.training:
            return F.batch_norm(h, bn.running_mean if update_stats else None,
                                bn.running_var if update_stats else None, bn.weight, bn.bias,
                                True, bn.momentum, bn.eps)
        return F.batch_norm(h, bn.running_mean, bn.running_var, bn.weight, bn.bias,
                            False, 0.0, bn.eps)

    def _tail(self, h: Tensor, update_stats: bool) -> Tensor:
        """Blocks 2..depth and the output layer; h: (M, width) after block 1. Returns (M,)."""
        for k in range(1, len(self.linears)):
            h = F.relu(self._norm(k, self.linears[k](h), update_stats), inplace=True)
        return self.out(h).squeeze(-1)

    def forward(self, f_y: Tensor, f_z: Tensor, update_stats: bool = True) -> Tensor:
        """T on row-wise pairs: f_y (M, d_y), f_z (M, d_z) → (M,)."""
        h = self.linears[0](torch.cat([f_y, f_z], dim=1))
        return self._tail(F.relu(self._norm(0, h, update_stats), inplace=True), update_stats)

    def pairs(self, f_y: Tensor, f_z: Tensor, update_stats: bool = True) -> Tensor:
        """T on every pair: S[i, j] = T(f_y_i, f_z_j), shape (B_y, B_z), split first layer."""
        n_y, n_z, w = f_y.shape[0], f_z.shape[0], self.width
        weight, bn = self.linears[0].weight, self.norms[0]  # weight: (width, d_y + d_z)
        a = f_y @ weight[:, :self.d_y].T  # (B_y, width)
        b = f_z @ weight[:, self.d_y:].T  # (B_z, width)
        if self.training:
            mean_a, mean_b = a.mean(0), b.mean(0)
            var = a.var(0, unbiased=False) + b.var(0, unbiased=False)  # over the grid a_i + b_j
            if update_stats:
                n = n_y * n_z  # BatchNorm1d keeps the unbiased variance of the n rows
                with torch.no_grad():
                    bn.running_mean.lerp_(mean_a + mean_b, bn.momentum)
                    bn.running_var.lerp_(var * n / max(n - 1, 1), bn.momentum)
        else:
            mean_a, mean_b, var = bn.running_mean, 0.0, bn.running_var
        scale = bn.weight * torch.rsqrt(var + bn.eps)
        a = (a - mean_a) * scale + bn.bias
        b = (b - mean_b) * scale
        h = (a[:, None, :] + b[None, :, :]).relu_().reshape(n_y * n_z, w)  # (B_y·B_z, width)
        return self._tail(h, update_stats).reshape(n_y, n_z)

    def pairs_naive(self, f_y: Tensor, f_z: Tensor, update_stats: bool = True) -> Tensor:
        """Reference for :meth:`pairs`: concatenate all B_y·B_z pairs, as the original code."""
        n_y, n_z = f_y.shape[0], f_z.shape[0]
        rows_y = f_y.repeat_interleave(n_z, dim=0)  # f_y_0 ×B_z, f_y_1 ×B_z, ...
        rows_z = f_z.repeat(n_y, 1)                 # f_z_0..f_z_{B_z-1}, repeated B_y times
        return self.forward(rows_y, rows_z, update_stats).reshape(n_y, n_z)


def _standardized(f: Tensor, eps: float = 1e-5) -> Tensor:
    """(f − mean) / (std + eps) over the batch (dim 0), per feature."""
    return (f - f.mean(0)) / (f.std(0, unbiased=False) + eps)


def _derangement(n: int, device: torch.device, generator: torch.Generator | None = None) -> Tensor:
    """A random permutation without fixed points: perm[i] ≠ i for all i (n ≥ 2)."""
    order = torch.randperm(n, generator=generator).to(device)
    shift = int(torch.randint(1, n, (), generator=generator))
    perm = torch.empty_like(order)
    perm[order] = order.roll(shift)
    return perm


def _derangement_within(y: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """A random permutation that maps every sample to another sample of the same class y
    (samples alone in their class map to themselves): shuffle, group by class, and send each
    sample to the next one in its group."""
    n = y.shape[0]
    order = torch.randperm(n, generator=generator).to(y.device)
    order = order[torch.argsort(y[order], stable=True)]  # grouped by class, random within
    _, counts = torch.unique_consecutive(y[order], return_counts=True)
    starts = torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    sizes = torch.repeat_interleave(counts, counts)
    pos = torch.arange(n, device=y.device)
    perm = torch.empty_like(order)
    perm[order] = order[starts + (pos - starts + 1) % sizes]
    return perm


class MINE(DependenceEstimator):
    """Mutual Information Neural Estimation (Belghazi et al., ICML 2018), Donsker–Varadhan bound:

        I(f_y; f_z) ≥ DV(T) = E_joint[T] − log E_marginal[e^T]

    estimated on a batch as ``mean_i T(f_y_i, f_z_i) − logmeanexp T(marginal pairs)`` (with
    ``logsumexp``). Marginal pairs, ``marginals=``:

    - ``"all_pairs"`` (default, as the original MIMM code): every (f_y_i, f_z_j), i ≠ j, B(B−1)
      pairs, evaluated with the split first layer (:meth:`StatisticsNetwork.pairs`). The original
      code averages a log-mean-exp per column j (over i ≠ j); here one log-mean-exp runs over
      all B(B−1) pairs, which is the DV formula itself. (By Jensen the per-column average is
      never above the pooled one, so the original's figure is never below this one.)
      Cost: B²·((depth − 1)·width² + width) multiply-adds per forward; with f_y, f_z of a few
      dimensions, blocks 2..depth are nearly all of it, so the time scales with B² and width².
    - ``"shuffle"``: ``n_shuffles`` random derangements, (f_y_i, f_z_π(i)) with π(i) ≠ i:
      B·n_shuffles pairs; linear instead of quadratic cost, noisier. The cheap choice for
      large batches (B = 1000 all-pairs is a million rows per step).

    BatchNorm in T sees joint and marginal pairs in one batch, as in the original.

    ``standardize=True``: f_y and f_z are each standardised over the batch, per dimension,
    f ← (f − mean_B f) / (std_B f + 10⁻⁵), before T (gradients flow through the batch
    statistics). MI is invariant to such a rescaling, but T's first BatchNorm normalises the
    sum W_y f_y + W_z f_z, so without it an encoder lowers the estimate by shrinking f_y
    against f_z rather than by removing what f_y shares with f_z.

    Gradient, ``gradient=``:

    - ``"biased"``: the plain gradient of DV (what the original code does). The gradient of
      log E[e^T] is E[e^T ∇T] / E[e^T] with a mini-batch denominator, hence biased.
    - ``"ema"`` (default): Belghazi's correction, the denominator replaced by an exponential
      moving average m ← (1 − r)·m + r·mean(e^T_marginal), r = ``ema_rate`` (0.01), kept in log
      space. Only the gradient changes: the returned value is still the DV estimate. The
      average is updated whenever a gradient is being computed (``penalty`` or
      ``estimator_loss``), and applies to both the encoder's and T's gradient.

    Signs: ``penalty`` = DV (the encoder minimises the estimated MI), ``estimator_loss`` =
    ``critic_loss`` = −DV (T ascends the bound), ``estimate`` = DV in nats. DV can be negative
    while T is poor.
    """

    trainable = True
    generator: torch.Generator | None = None  # of the shuffles (None: torch's global RNG)

    def __init__(self, d_y: int, d_z: int, width: int = EstimatorConfig.width, depth: int = 3,
                 marginals: str = EstimatorConfig.marginals, gradient: str = EstimatorConfig.gradient,
                 ema_rate: float = EstimatorConfig.ema_rate, n_shuffles: int = EstimatorConfig.n_shuffles,
                 split_first_layer: bool = True, conditional: bool = EstimatorConfig.conditional,
                 standardize: bool = EstimatorConfig.standardize):
        super().__init__(d_y, d_z)
        if marginals not in ("all_pairs", "shuffle"):
            raise ConfigError(f"MINE: marginals must be 'all_pairs' or 'shuffle', "
                              f"got {marginals!r}")
        if gradient not in ("biased", "ema"):
            raise ConfigError(f"MINE: gradient must be 'biased' or 'ema', got {gradient!r}")
        if not 0.0 < ema_rate <= 1.0:
            raise ConfigError(f"MINE: ema_rate must be in (0, 1], got {ema_rate}")
        if n_shuffles < 1:
            raise ConfigError(f"MINE: n_shuffles must be ≥ 1, got {n_shuffles}")
        self.marginals, self.gradient, self.ema_rate = marginals, gradient, ema_rate
        self.n_shuffles, self.split_first_layer = n_shuffles, split_first_layer
        self.conditional, self.standardize = conditional, standardize
        self.T = StatisticsNetwork(d_y, d_z, width, depth)
        self.register_buffer("log_ema", torch.tensor(float("nan")))  # log of the EMA of E[e^T]

    def scores(self, f_y: Tensor, f_z: Tensor, update_stats: bool = True,
               y: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """T on the joint pairs (B,) and log-mean-exp of T over the marginal pairs (scalar).
        Conditional: marginal pairs only within the same class y."""
        self._check(f_y, f_z)
        n = f_y.shape[0]
        if self.standardize:
            f_y, f_z = _standardized(f_y), _standardized(f_z)
        if self.conditional and (y is None or y.shape != (n,)):
            raise ValueError("MINE(conditional=True) needs the class labels y (B,) to pair "
                             "samples within a class")
        if self.marginals == "all_pairs":
            pairs = self.T.pairs if self.split_first_layer else self.T.pairs_naive
            s = pairs(f_y, f_z, update_stats)  # (B, B), s[i, j] = T(f_y_i, f_z_j)
            drop = torch.eye(n, dtype=torch.bool, device=s.device)
            if self.conditional:
                drop = drop | (y[:, None] != y[None, :])
            count = int(n * n - drop.sum())
            if count == 0:
                raise ValueError("MINE(conditional=True): no class has two samples in this batch")
            log_mean_exp = torch.logsumexp(s.masked_fill(drop, -math.inf).flatten(), 0)
            return s.diagonal(), log_mean_exp - math.log(count)
        if self.conditional:
            perms = [_derangement_within(y, self.generator) for _ in range(self.n_shuffles)]
        else:
            perms = [_derangement(n, f_y.device, self.generator) for _ in range(self.n_shuffles)]
        rows_y = torch.cat([f_y] * (1 + self.n_shuffles))
        rows_z = torch.cat([f_z] + [f_z[p] for p in perms])
        t = self.T(rows_y, rows_z, update_stats)  # (B·(1 + n_shuffles),)
        marginal = t[n:]
        return t[:n], torch.logsumexp(marginal, 0) - math.log(marginal.numel())

    def dv(self, f_y: Tensor, f_z: Tensor, update_stats: bool = True,
           y: Tensor | None = None) -> Tensor:
        """The DV estimate (scalar tensor), with the EMA-corrected gradient if configured."""
        t_joint, log_mean_exp = self.scores(f_y, f_z, update_stats, y)
        if self.gradient == "ema" and torch.is_grad_enabled() and update_stats:
            with torch.no_grad():
                new = log_mean_exp.detach()
                if torch.isnan(self.log_ema):
                    self.log_ema.copy_(new)
                else:  # log((1 − r)·m + r·e^new)
                    self.log_ema.copy_(torch.logaddexp(self.log_ema + math.log1p(-self.ema_rate),
                                                       new + math.log(self.ema_rate)))
                ratio = torch.exp(new - self.log_ema)  # mean(e^T) / m
            # value log_mean_exp, gradient ratio·∇log_mean_exp = E[e^T ∇T] / m
            log_mean_exp = log_mean_exp.detach() + ratio * (log_mean_exp - log_mean_exp.detach())
        return t_joint.mean() - log_mean_exp

    def penalty(self, f_y: Tensor, f_z: Tensor, z: Tensor | None = None, y: Tensor | None = None) -> Tensor:
        return self.dv(f_y, f_z, y=y)

    def critic_loss(self, f_y: Tensor, f_z: Tensor, z: Tensor | None = None, y: Tensor | None = None) -> Tensor:
        return -self.dv(f_y, f_z, y=y)

    @torch.no_grad()
    def estimate(self, f_y: Tensor, f_z: Tensor, z: Tensor | None = None, y: Tensor | None = None) -> float:
        return float(self.dv(f_y, f_z, update_stats=False, y=y))


# --------------------------------------------------------------------- distance correlation


def _pairwise_distances(x: Tensor) -> Tensor:
    """Euclidean distances (B, B), exact zeros on the diagonal, finite gradient everywhere."""
    sq = (x * x).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2.0 * x @ x.T).clamp_min(0.0)
    d2 = d2.masked_fill(torch.eye(x.shape[0], dtype=torch.bool, device=x.device), 0.0)
    positive = d2 > 0
    return torch.where(positive, torch.sqrt(torch.where(positive, d2, 1.0)), 0.0)


def _double_centre(d: Tensor) -> Tensor:
    return d - d.mean(0, keepdim=True) - d.mean(1, keepdim=True) + d.mean()


def distance_correlation(x: Tensor, y: Tensor, squared: bool = False) -> Tensor:
    """Distance correlation (Székely, Rizzo & Bakirov 2007), V-statistic form, as
    ``dcor.distance_correlation`` (``squared=False``) / ``dcor.distance_correlation_sqr``.

    With A, B the double-centred Euclidean distance matrices of x (B, d_x) and y (B, d_y):
    dCov² = mean(A∘B), dVar²_x = mean(A∘A), dCor² = dCov² / sqrt(dVar²_x · dVar²_y)
    (0 when a variable is constant). In [0, 1]; 0 iff independent (in the population).
    """
    a, b = _double_centre(_pairwise_distances(x)), _double_centre(_pairwise_distances(y))
    dcov2, dvar2_x, dvar2_y = (a * b).mean(), (a * a).mean(), (b * b).mean()
    denom = torch.sqrt(dvar2_x * dvar2_y)
    dcor2 = torch.where(denom > 0, dcov2 / torch.where(denom > 0, denom, 1.0), 0.0).clamp_min(0.0)
    # sqrt has an infinite slope at 0: clamp so the penalty's gradient stays finite
    return dcor2 if squared else torch.sqrt(dcor2.clamp_min(1e-12))


class DistanceCorrelation(DependenceEstimator):
    """Penalty dCor(f_y, f_z) (Székely et al. 2007), or dCor² with ``squared=True``. See
    :func:`distance_correlation`. Parameter-free; O(B²) time and memory."""

    def __init__(self, d_y: int, d_z: int, squared: bool = False):
        super().__init__(d_y, d_z)
        self.squared = squared

    def penalty(self, f_y: Tensor, f_z: Tensor, z: Tensor | None = None, y: Tensor | None = None) -> Tensor:
        self._check(f_y, f_z)
        return distance_correlation(f_y, f_z, self.squared)


# ------------------------------------------------------------------------------- MMD / HSIC


def _rbf_gram(x: Tensor, scales: Sequence[float]) -> Tensor:
    """Mean over s in ``scales`` of exp(−‖x_i − x_j‖² / (2 (s·σ)²)), σ = median off-diagonal
    distance of the batch (median heuristic, detached: a constant, not a learned quantity)."""
    d = _pairwise_distances(x)
    n = x.shape[0]
    off = d.detach()[~torch.eye(n, dtype=torch.bool, device=x.device)]
    sigma = off.median().clamp_min(1e-6) if off.numel() else d.new_tensor(1.0)
    d2 = d * d
    return torch.stack([torch.exp(-d2 / (2.0 * (s * sigma) ** 2)) for s in scales]).mean(0)


def hsic(x: Tensor, y: Tensor, scales: Sequence[float] = (0.5, 1.0, 2.0)) -> Tensor:
    """Biased HSIC (Gretton et al. 2005) with the kernels of :func:`_rbf_gram`:

        HSIC_b = tr(K H L H) / B²,   H = I − 11ᵀ/B

    which equals exactly the (biased, V-statistic) squared MMD between the empirical joint
    (1/B) Σ_i δ(x_i, y_i) and the empirical product of marginals (1/B²) Σ_ij δ(x_i, y_j) under
    the product kernel k((x, y), (x', y')) = k_x(x, x')·k_y(y, y'). ≥ 0; 0 under independence
    (in the population, for these characteristic kernels).
    """
    k, l_ = _rbf_gram(x, scales), _rbf_gram(y, scales)
    k_centred = k - k.mean(0, keepdim=True) - k.mean(1, keepdim=True) + k.mean()  # H K H
    return (k_centred * l_).mean()


class MMD(DependenceEstimator):
    """Kernel dependence penalty: MMD² between P(f_y, f_z) and P(f_y)·P(f_z), i.e. HSIC_b with
    the product of two kernels, each the mean of RBF kernels at bandwidths ``scales`` × (median
    pairwise distance of that batch). See :func:`hsic`. Parameter-free; O(B²)."""

    def __init__(self, d_y: int, d_z: int, scales: Sequence[float] = (0.5, 1.0, 2.0)):
        super().__init__(d_y, d_z)
        if not scales or any(s <= 0 for s in scales):
            raise ConfigError(f"MMD: scales must be positive bandwidth multipliers, got {scales!r}")
        self.scales = tuple(float(s) for s in scales)

    def penalty(self, f_y: Tensor, f_z: Tensor, z: Tensor | None = None, y: Tensor | None = None) -> Tensor:
        self._check(f_y, f_z)
        return hsic(f_y, f_z, self.scales)


# ------------------------------------------------------------------------- adversarial (GRL)


class GradientReversal(torch.autograd.Function):
    """Identity forward, gradient × (−scale) backward (Ganin & Lempitsky, ICML 2015)."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: float) -> Tensor:
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return -ctx.scale * grad, None


def grad_reverse(x: Tensor, scale: float = 1.0) -> Tensor:
    return GradientReversal.apply(x, scale)


class AdversarialClassifier(DependenceEstimator):
    """An adversary predicts each factor z_i from f_y (one head per factor: Linear, or a one-
    hidden-layer MLP with ``hidden`` units); f_z is not used. As in Müller, Fay et al. (MLMI 2024).

    Signs. ``penalty(f_y, f_z, z)`` = Σ_i CE(head_i(GRL(f_y)), z_i): its *value* is the
    adversary's cross-entropy, but the gradient reversal layer multiplies the gradient reaching
    f_y by −``grl_scale``. So an encoder descending ``λ·penalty`` ascends the adversary's
    cross-entropy (it removes what the adversary can read about z from f_y), while the heads'
    own parameters, if stepped on the same backward, descend it (Ganin's one-step form).
    ``estimator_loss`` = the same cross-entropy on detached f_y: the adversary's own training
    (``critic_loss``: without detaching).
    ``estimate`` = Σ_i (H(z_i) − CE_i) in nats, the Barber–Agakov lower bound on
    I(f_y; z_i) summed over factors (H from the batch's label frequencies); ``z`` is required.
    """

    trainable = True

    def __init__(self, d_y: int, d_z: int, z_classes: Sequence[int] | None = None,
                 hidden: int = 64, grl_scale: float = 1.0):
        super().__init__(d_y, d_z)
        if not z_classes or any(int(k) < 2 for k in z_classes):
            raise ConfigError("AdversarialClassifier needs z_classes: the number of classes of "
                              f"each spurious factor, e.g. [2, 2]; got {z_classes!r}")
        self.z_classes, self.grl_scale = [int(k) for k in z_classes], grl_scale

        def head(k: int) -> nn.Module:
            if hidden <= 0:
                return nn.Linear(d_y, k)
            return nn.Sequential(nn.Linear(d_y, hidden), nn.ReLU(), nn.Linear(hidden, k))

        self.heads = nn.ModuleList([head(k) for k in self.z_classes])

    def _cross_entropies(self, f_y: Tensor, z: Tensor | None) -> Tensor:
        """Per-factor cross-entropy (N,) of the heads on f_y."""
        n = len(self.z_classes)
        if z is None:
            raise ValueError("AdversarialClassifier needs the factor labels z (B, N) int")
        z = z[:, None] if z.dim() == 1 else z
        if z.dim() != 2 or z.shape != (f_y.shape[0], n):
            raise ValueError(f"AdversarialClassifier: z must have shape (B, {n}) = "
                             f"({f_y.shape[0]}, {n}), got {tuple(z.shape)}")
        return torch.stack([F.cross_entropy(h(f_y), z[:, i].long())
                            for i, h in enumerate(self.heads)])

    def penalty(self, f_y: Tensor, f_z: Tensor, z: Tensor | None = None, y: Tensor | None = None) -> Tensor:
        self._check(f_y, f_z, min_batch=1)
        return self._cross_entropies(grad_reverse(f_y, self.grl_scale), z).sum()

    def critic_loss(self, f_y: Tensor, f_z: Tensor, z: Tensor | None = None, y: Tensor | None = None) -> Tensor:
        self._check(f_y, f_z, min_batch=1)
        return self._cross_entropies(f_y, z).sum()

    @torch.no_grad()
    def estimate(self, f_y: Tensor, f_z: Tensor, z: Tensor | None = None, y: Tensor | None = None) -> float:
        self._check(f_y, f_z, min_batch=1)
        ce = self._cross_entropies(f_y, z)
        z = z[:, None] if z.dim() == 1 else z
        entropy = []
        for i, k in enumerate(self.z_classes):
            p = torch.bincount(z[:, i].long(), minlength=k).float() / z.shape[0]
            entropy.append(-(p[p > 0] * p[p > 0].log()).sum())
        return float((torch.stack(entropy).to(ce) - ce).sum())


# ------------------------------------------------------------------------------- registry

ESTIMATORS: dict[str, type[DependenceEstimator]] = {
    "mine": MINE,
    "dcor": DistanceCorrelation,
    "mmd": MMD,
    "adversarial": AdversarialClassifier,
}


def build_estimator(name: str, d_y: int, d_z: int, **kw) -> DependenceEstimator:
    """``ESTIMATORS[name](d_y, d_z, **kw)``, with a clear error for an unknown name or option."""
    if name not in ESTIMATORS:
        raise ConfigError(f"unknown estimator {name!r}; choose one of {sorted(ESTIMATORS)}")
    try:
        return ESTIMATORS[name](d_y, d_z, **kw)
    except TypeError as err:
        raise ConfigError(f"estimator {name!r}: {err}") from err
