"""Confounder Attention Weighter (CAW), MIMM-X poster (Fay et al., FAIMI 2025).

The poster says only that CAW "assigns adaptive attention weights to each spurious feature f_z
to emphasise relevant factors". Its formula is not published. **What follows is mimmx's
reconstruction, not the authors' method.**

Design
------
CAW sits between the encoder and the MI estimator. It takes the factor sub-vectors f_z1..f_zN,
computes softmax attention weights w over the N factors and passes the re-weighted vector

    f̃_z = [N·w_1·f_z1, ..., N·w_N·f_zN]   (B, Σ d_i)

to the estimator, which computes I(f_y; f̃_z). The factor N makes uniform weights (w_i = 1/N)
the identity, so CAW starts as plain MIMM.

Mode ``"learned"`` (default): per-sample weights from a small scorer on each sub-vector,

    s_bi = v_iᵀ tanh(W_i f_zi,b + c_i),   w_b = softmax_i(s_b / τ)   → weights (B, N)

(additive attention, one scorer per factor because the sub-vectors may differ in size; v_i is
zero at initialisation, so w starts uniform). The scorer is part of the *critic*: its parameters
are trained with the estimator's, on the estimator's critic objective (for MINE: ascending the
DV bound), while the encoder's step only sends gradients through it. :class:`CAWEstimator`
packages this: CAW + estimator behind the ordinary estimator interface, CAW's parameters
among the estimator's. The critic therefore learns
to amplify the factors in which it currently finds dependence on f_y, and the encoder's MI
penalty is steered to exactly those factors: the one f_y leaks most gets the largest gradient.

Why this stays a valid MI penalty: the weights depend on f_z only (never on f_y), so f̃_z =
g(f_z) is a function of f_z and, by the data-processing inequality, I(f_y; f̃_z) ≤ I(f_y; f_z).
A lower bound such as DV on I(f_y; f̃_z) is still a lower bound on the true leakage. Weights
computed per sample from f_y as well (e.g. f_y as the attention query) would break this: f̃_z
would then carry information about f_y through the weights themselves, and the penalty would
punish dependence that does not exist. The weights are *not* detached: they are a function of
f_z, and the encoder must see how moving f_z moves them.

Mode ``"dependence"``: batch-level weights (N,) from per-factor dependence scores,
w = softmax(s / τ), where s_i is given (``scores=``, e.g. per-factor MINE estimates) or computed
as dCor(f_y, f_zi) on detached features. These weights are detached constants. Note that a
batch-constant positive rescaling of a sub-vector does not change I(f_y; f_z) at all (MI is
invariant to invertible maps): in this mode CAW only changes what the estimator's network sees
first, not the quantity estimated. Its natural use is :meth:`CAW.combine`, which weights
*per-factor* penalties, Σ_i N·w_i·P_i with P_i = penalty(f_y, f_zi) from one estimator per
factor. With scores P_i, this is a soft maximum: τ → 0 minimises the worst factor's leakage,
τ → ∞ their mean.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from mimmx.errors import ConfigError
from mimmx.models.estimators import DependenceEstimator, distance_correlation

__all__ = ["CAW", "CAWEstimator"]


class CAW(nn.Module):
    """Confounder Attention Weighter (reconstruction; see the module docstring).

    ``forward(f_zs, f_y=None, scores=None)`` → (f̃_z (B, Σ z_dims), weights): weights are
    (B, N) in ``"learned"`` mode and (N,) in ``"dependence"`` mode; they sum to 1 over factors.
    ``temperature`` τ defaults to 1.0 (learned) or 0.1 (dependence: dCor scores lie in [0, 1]).
    """

    def __init__(self, z_dims: Sequence[int], mode: str = "learned", hidden: int = 16,
                 temperature: float | None = None):
        super().__init__()
        z_dims = [int(d) for d in z_dims]
        if not z_dims or min(z_dims) < 1:
            raise ConfigError(f"CAW: z_dims must list the size of each f_z part, got {z_dims}")
        if mode not in ("learned", "dependence"):
            raise ConfigError(f"CAW: mode must be 'learned' or 'dependence', got {mode!r}")
        temperature = (1.0 if mode == "learned" else 0.1) if temperature is None else temperature
        if temperature <= 0:
            raise ConfigError(f"CAW: temperature must be positive, got {temperature}")
        self.z_dims, self.mode, self.temperature = z_dims, mode, float(temperature)
        self.scorers = nn.ModuleList()
        if mode == "learned":
            for d in z_dims:
                scorer = nn.Sequential(nn.Linear(d, hidden), nn.Tanh(),
                                       nn.Linear(hidden, 1, bias=False))
                nn.init.zeros_(scorer[2].weight)  # uniform attention at the start
                self.scorers.append(scorer)

    @property
    def n_factors(self) -> int:
        return len(self.z_dims)

    def _check(self, f_zs: Sequence[Tensor]) -> None:
        dims = [f.shape[-1] if f.dim() == 2 else None for f in f_zs]
        if dims != self.z_dims or len({f.shape[0] for f in f_zs}) != 1:
            raise ValueError(f"CAW expects {self.n_factors} tensors f_zi of shapes "
                             f"(B, {self.z_dims}), got {[tuple(f.shape) for f in f_zs]}")

    def dependence_scores(self, f_zs: Sequence[Tensor], f_y: Tensor) -> Tensor:
        """dCor(f_y, f_zi) for each factor (N,), detached."""
        with torch.no_grad():
            return torch.stack([distance_correlation(f_y, f_z) for f_z in f_zs])

    def weights(self, f_zs: Sequence[Tensor], f_y: Tensor | None = None,
                scores: Tensor | None = None) -> Tensor:
        """Attention weights: (B, N) learned from f_z, or (N,) from dependence scores."""
        self._check(f_zs)
        if self.mode == "learned":
            s = torch.cat([scorer(f_z) for scorer, f_z in zip(self.scorers, f_zs)], dim=1)  # (B, N)
            return torch.softmax(s / self.temperature, dim=1)
        if scores is None:
            if f_y is None:
                raise ValueError("CAW(mode='dependence') needs f_y or explicit scores (N,)")
            scores = self.dependence_scores(f_zs, f_y)
        return self._softmax_scores(scores)

    def _softmax_scores(self, scores: Tensor) -> Tensor:
        scores = torch.as_tensor(scores).detach().float()
        if scores.shape != (self.n_factors,):
            raise ValueError(f"CAW: scores must have shape ({self.n_factors},), "
                             f"got {tuple(scores.shape)}")
        return torch.softmax(scores / self.temperature, dim=0)

    def forward(self, f_zs: Sequence[Tensor], f_y: Tensor | None = None,
                scores: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """(f̃_z = [N·w_i·f_zi]_i (B, Σ z_dims), weights (B, N) or (N,))."""
        w = self.weights(f_zs, f_y, scores)
        w_cols = w if w.dim() == 2 else w[None, :].expand(f_zs[0].shape[0], -1)  # (B, N)
        n = self.n_factors
        f_z = torch.cat([n * w_cols[:, i:i + 1] * f for i, f in enumerate(f_zs)], dim=1)
        return f_z, w

    def combine(self, penalties: Tensor, scores: Tensor | None = None) -> Tensor:
        """Σ_i N·w_i·P_i for per-factor penalties P (N,), w = softmax(scores / τ) with
        scores = P (detached) by default: a soft maximum over the factors' leakage."""
        if penalties.shape != (self.n_factors,):
            raise ValueError(f"CAW.combine: penalties must have shape ({self.n_factors},), "
                             f"got {tuple(penalties.shape)}")
        w = self._softmax_scores(penalties if scores is None else scores).to(penalties)
        return self.n_factors * (w * penalties).sum()


class CAWEstimator(DependenceEstimator):
    """A dependence estimator with a CAW in front: f_z (B, Σ z_dims) is split into f_z1..f_zN,
    re-weighted by ``caw`` and passed on. Same interface as any estimator, so a method uses it
    unchanged (N_B alternation included).

    - ``penalty`` = estimator.penalty(f_y, f̃_z): the encoder's gradient flows through CAW.
    - ``estimator_loss`` = estimator.critic_loss(f_y, f̃_z) on detached features: trains the
      estimator's parameters *and* a learned CAW's scorer (the critic side).
    - ``last_weights``: the CAW weights of the latest ``penalty`` call, detached, for logging.
    """

    def __init__(self, estimator: DependenceEstimator, caw: CAW):
        if sum(caw.z_dims) != estimator.d_z:
            raise ConfigError(f"CAWEstimator: the CAW's z_dims {caw.z_dims} sum to "
                              f"{sum(caw.z_dims)}, but the estimator expects d_z = {estimator.d_z}")
        super().__init__(estimator.d_y, estimator.d_z)
        self.estimator, self.caw = estimator, caw
        self.trainable = estimator.trainable or any(True for _ in caw.parameters())
        self.last_weights: Tensor | None = None

    def _weighted(self, f_y: Tensor, f_z: Tensor) -> tuple[Tensor, Tensor]:
        self._check(f_y, f_z, min_batch=1)
        return self.caw(list(torch.split(f_z, self.caw.z_dims, dim=1)), f_y.detach())

    def penalty(self, f_y: Tensor, f_z: Tensor, z: Tensor | None = None, y: Tensor | None = None) -> Tensor:
        f_z_weighted, w = self._weighted(f_y, f_z)
        self.last_weights = w.detach()
        return self.estimator.penalty(f_y, f_z_weighted, z, y)

    def critic_loss(self, f_y: Tensor, f_z: Tensor, z: Tensor | None = None, y: Tensor | None = None) -> Tensor:
        return self.estimator.critic_loss(f_y, self._weighted(f_y, f_z)[0], z, y)

    @torch.no_grad()
    def estimate(self, f_y: Tensor, f_z: Tensor, z: Tensor | None = None, y: Tensor | None = None) -> float:
        return self.estimator.estimate(f_y, self._weighted(f_y, f_z)[0], z, y)
