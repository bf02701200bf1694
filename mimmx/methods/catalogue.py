"""Every comparison method of the poster (and the peer benchmark), one small class each.

| name               | objective                                             | DLS   | CAW   |
|--------------------|-------------------------------------------------------|-------|-------|
| baseline           | Σ L_i                                                 | off   | off   |
| baseline_dls_caw   | Σ γ_i L_i                                             | on    | on    |
| rebalance          | Σ γ_i L_i on a training set resampled to equal cells  | cfg   | cfg   |
| dcor               | Σ L_i + λ dCor(f_y, f_z)            (Székely 2007)    | off   | off   |
| mmd                | Σ L_i + λ HSIC(f_y, f_z), RBF kernels                 | off   | off   |
| adversarial        | Σ L_i + λ CE(adversary(GRL(f_y)), z)  (Ganin 2015)    | off   | off   |
| mimm               | Σ L_i + λ MINE(f_y, f_z1): one factor (Fay 2023)      | off   | off   |
| mimmx              | Σ γ_i L_i + λ MINE(f_y, CAW(f_z1..f_zN)) (Fay 2025)   | cfg   | cfg   |

"cfg": taken from ``method.dls`` / ``method.caw`` (the poster's ablation rows). CAW acts only
through the dependence term, so for ``baseline_dls_caw`` it has nothing to weight and the row
equals baseline + DLS; the name follows the poster's row.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mimmx.errors import ConfigError
from mimmx.methods.base import Dims, Method, cell_balancing_weights, register
from mimmx.models.caw import CAW, CAWEstimator
from mimmx.models.estimators import DependenceEstimator, build_estimator


@register("baseline")
class Baseline(Method):
    dls, caw = False, False


@register("baseline_dls_caw")
class BaselineDLSCAW(Method):
    dls, caw = True, True


@register("rebalance")
class Rebalance(Method):
    """Resample the training set so that every cell (y, z_1..z_N) is equally likely:
    w(x) ∝ 1 / count(y(x), z(x))."""

    def sample_weights(self, y: Tensor, z: Tensor) -> Tensor:
        return cell_balancing_weights(y, z)


class DependencePenalty(Method):
    """Σ γ_i L_i + λ · D(f_y, f_z) with a dependence estimator D from ``method.estimator``.

    Joint (default): D(f_y, [f_z1, ..., f_zN]) with one estimator; with CAW on, the estimator
    sees the CAW-weighted f̃_z and the CAW scorer trains with the critic (``CAWEstimator``).
    Per factor (``estimator.per_factor``): D = Σ_i D_i(f_y, f_zi), one estimator each; with CAW
    on, D = Σ_i N·w_i·D_i with w = softmax(D / τ), a soft maximum over the factors' leakage
    (``CAW.combine``). ``estimator.reduce = "mean"`` divides either by N (λ / N per factor).
    See ``mimmx.models.caw`` for the reconstruction and its rationale.
    """

    estimator_name: str | None = None  # None: method.estimator.name
    only_first_factor = False

    def __init__(self, cfg, dims: Dims, n_epochs: int):
        super().__init__(cfg, dims, n_epochs)
        e = cfg.estimator
        name = self.estimator_name or e.name
        self.factors = [0] if self.only_first_factor else list(range(len(dims.f_z)))
        z_dims = [dims.f_z[i] for i in self.factors]
        options = {"mine": dict(width=e.width, marginals=e.marginals, gradient=e.gradient,
                                ema_rate=e.ema_rate, conditional=e.conditional,
                                n_shuffles=e.n_shuffles),
                   "adversarial": dict(hidden=e.width)}.get(name, {})

        def make(d_z: int, factors: list[int]) -> DependenceEstimator:
            extra = {"z_classes": [dims.n_z[i] for i in factors]} if name == "adversarial" else {}
            return build_estimator(name, dims.f_y, d_z, **options, **extra)

        caw = self.use_caw and len(self.factors) > 1
        self.per_factor = e.per_factor and len(self.factors) > 1
        if e.reduce not in ("sum", "mean"):
            raise ConfigError(f"method.estimator.reduce must be 'sum' or 'mean', got {e.reduce!r}")
        self.scale = 1.0 / len(self.factors) if self.per_factor and e.reduce == "mean" else 1.0
        self.attention = None
        if self.per_factor:
            self.estimators = nn.ModuleList([make(d, [i]) for i, d in zip(self.factors, z_dims)])
            self.attention = CAW(z_dims, mode="dependence") if caw else None
        else:
            est = make(sum(z_dims), self.factors)
            self.estimators = nn.ModuleList([CAWEstimator(est, CAW(z_dims)) if caw else est])

    def settings(self) -> dict:
        e = self.cfg.estimator
        return {**super().settings(), "estimator": type(self.estimators[0]).__name__,
                "factors": self.factors, "per_factor": self.per_factor, "scale": self.scale,
                "lam": self.cfg.lam,
                "estimator_options": {"width": e.width, "marginals": e.marginals, "gradient": e.gradient}}

    def penalty_sample_weights(self, y: Tensor, z: Tensor) -> Tensor | None:
        """``estimator.balanced``: the penalty's batches are drawn with every cell
        (y, z_i of the penalised factors) equally likely."""
        return cell_balancing_weights(y, z[:, self.factors]) if self.cfg.estimator.balanced else None

    def _inputs(self, parts: list[Tensor], z: Tensor):
        return parts[0], [parts[1 + i] for i in self.factors], z[:, self.factors]

    def penalty(self, parts, y, z):
        f_y, f_zs, zs = self._inputs(parts, z)
        if self.cfg.one_sided:  # f_z is anchored by its own heads; only f_y is pushed away
            f_zs = [f.detach() for f in f_zs]
        if self.per_factor:
            terms = torch.stack([est.penalty(f_y, f_z, zs[:, [k]], y)
                                 for k, (est, f_z) in enumerate(zip(self.estimators, f_zs))])
            logs = {f"mi_z{i + 1}": float(t) for i, t in zip(self.factors, terms.detach())}
            if self.attention is None:
                return self.scale * terms.sum(), logs
            w = self.attention.weights(f_zs, scores=terms.detach())
            logs.update({f"caw_z{i + 1}": float(v) for i, v in zip(self.factors, w)})
            return self.scale * self.attention.combine(terms), logs
        est = self.estimators[0]
        pen = est.penalty(f_y, torch.cat(f_zs, 1), zs, y)
        w = getattr(est, "last_weights", None)
        logs = {} if w is None else {f"caw_z{i + 1}": float(v) for i, v in zip(self.factors, w.mean(0))}
        return pen, logs

    def estimator_loss(self, parts, y, z):
        f_y, f_zs, zs = self._inputs([p.detach() for p in parts], z)
        if self.per_factor:
            return sum(est.estimator_loss(f_y, f_z, zs[:, [k]], y)
                       for k, (est, f_z) in enumerate(zip(self.estimators, f_zs)))
        return self.estimators[0].estimator_loss(f_y, torch.cat(f_zs, 1), zs, y)

    @torch.no_grad()
    def estimate(self, parts: list[Tensor], z: Tensor, y: Tensor | None = None) -> float:
        """The estimator's current dependence value (e.g. MI in nats) on these features."""
        f_y, f_zs, zs = self._inputs(parts, z)
        if self.per_factor:
            return sum(est.estimate(f_y, f_z, zs[:, [k]], y)
                       for k, (est, f_z) in enumerate(zip(self.estimators, f_zs)))
        return self.estimators[0].estimate(f_y, torch.cat(f_zs, 1), zs, y)


@register("dcor")
class DCor(DependencePenalty):
    estimator_name, dls, caw = "dcor", False, False


@register("mmd")
class MMDPenalty(DependencePenalty):
    estimator_name, dls, caw = "mmd", False, False


@register("adversarial")
class Adversarial(DependencePenalty):
    estimator_name, dls, caw = "adversarial", False, False


@register("mimm")
class MIMM(DependencePenalty):
    """The original single-factor MIMM: MINE between f_y and the first factor's f_z1 only."""

    estimator_name, dls, caw, only_first_factor = "mine", False, False, True


@register("mimmx")
class MIMMX(DependencePenalty):
    estimator_name = "mine"
