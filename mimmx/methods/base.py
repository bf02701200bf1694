"""The method interface and its registry.

A method is what a run optimises beyond the network itself: the encoder's loss, the extra
networks it trains (an estimator, an adversary, attention) and how it alternates their steps.
The trainer calls only this interface and knows no method by name.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mimmx.config import MethodConfig
from mimmx.errors import ConfigError
from mimmx.models.dls import alpha_y_schedule, dls_gammas

METHODS: dict[str, type[Method]] = {}


def cell_balancing_weights(y: Tensor, z: Tensor) -> Tensor:
    """Sampling weights w(x) ∝ 1 / count(y(x), z_1(x), ..., z_N(x)): every cell equally likely."""
    cells = torch.cat([y[:, None], z], 1)
    _, inverse, counts = torch.unique(cells, dim=0, return_inverse=True, return_counts=True)
    return 1.0 / counts[inverse].float()


def register(name: str):
    """Class decorator: ``@register("mimmx")`` adds the method to :data:`METHODS`."""

    def wrap(cls):
        cls.name = name
        METHODS[name] = cls
        return cls

    return wrap


@dataclass(frozen=True)
class Dims:
    """Sizes the method needs: feature parts and label cardinalities."""

    f_y: int
    f_z: tuple[int, ...]  # one sub-vector per factor
    n_y: int
    n_z: tuple[int, ...]


class Method(nn.Module):
    """The plain objective (the baseline): L = Σ_i γ_i L_i over the y head (i = 0) and the z_i
    heads, γ_i = 1, or Dynamic Loss Scaling when ``dls`` is on (poster eq. 2-3).

    Subclasses override :meth:`penalty` (a dependence term added with weight λ),
    :meth:`estimator_loss` (trained on detached features in the N_B − 1 steps between encoder
    steps) and :meth:`sample_weights`. Class attributes ``dls``/``caw`` fix a switch for the
    method (None: taken from the config).
    """

    name = "base"
    dls: bool | None = None
    caw: bool | None = None

    def __init__(self, cfg: MethodConfig, dims: Dims, n_epochs: int):
        super().__init__()
        self.cfg, self.dims, self.n_epochs = cfg, dims, n_epochs
        self.use_dls = cfg.dls if type(self).dls is None else type(self).dls
        self.use_caw = cfg.caw if type(self).caw is None else type(self).caw
        if cfg.n_b < 1:
            raise ConfigError(f"method.n_b must be ≥ 1, got {cfg.n_b}")

    # --- what the trainer asks ------------------------------------------------------------
    @property
    def has_estimator(self) -> bool:
        """True when the method trains networks of its own between encoder steps."""
        return any(p.requires_grad for p in self.parameters())

    @property
    def n_b(self) -> int:
        """Steps per cycle: one encoder step, then N_B − 1 estimator steps."""
        return self.cfg.n_b if self.has_estimator else 1

    def settings(self) -> dict:
        """The effective switches, recorded next to the results."""
        return {"method": self.name, "dls": self.use_dls, "caw": self.use_caw}

    def seed(self, seed: int) -> None:
        """Give every random part of the method (MINE's shuffles) one generator seeded with
        ``seed``, so that a run does not depend on torch's global RNG (two runs can train
        side by side in one process, as the app does, and stay reproducible)."""
        gen = torch.Generator().manual_seed(seed)
        for m in self.modules():
            if hasattr(m, "generator"):
                m.generator = gen

    def gammas(self, losses: Tensor, epoch: float) -> Tensor:
        """γ_0..γ_N: ones, or DLS γ_i = (L_i / L̄)^{α_i} with α_Y growing by β_Y over training."""
        if not self.use_dls:
            return torch.ones_like(losses)
        alpha_y = alpha_y_schedule(self.cfg.alpha_y, self.cfg.beta_y, epoch, self.n_epochs)
        return dls_gammas(losses.detach(), alpha_y, self.cfg.alpha_z)

    def penalty(self, parts: list[Tensor], y: Tensor, z: Tensor) -> tuple[Tensor | None, dict]:
        """The dependence term between f_y = parts[0] and f_z = parts[1:] (None: no term)."""
        return None, {}

    def estimator_loss(self, parts: list[Tensor], y: Tensor, z: Tensor) -> Tensor | None:
        return None

    def sample_weights(self, y: Tensor, z: Tensor) -> Tensor | None:
        """Per-example sampling weights for the training set (None: uniform)."""
        return None

    def penalty_sample_weights(self, y: Tensor, z: Tensor) -> Tensor | None:
        """Sampling weights for a separate batch on which the penalty and the estimator are
        computed (None: they use the training batch)."""
        return None

    def encoder_loss(self, parts: list[Tensor], logits: list[Tensor], y: Tensor, z: Tensor,
                     epoch: float, penalty_batch: tuple | None = None) -> tuple[Tensor, dict]:
        """L = Σ γ_i L_i + λ·penalty; ``epoch`` is fractional (e.g. 2.5). The penalty is computed
        on ``penalty_batch = (parts, y, z)`` when given (see :meth:`penalty_sample_weights`),
        else on the training batch."""
        targets = [y, *z.unbind(1)]
        losses = torch.stack([F.cross_entropy(lg, t) for lg, t in zip(logits, targets)])
        gammas = self.gammas(losses, epoch)
        loss = (gammas * losses).sum()
        logs = {f"loss_{k}": float(v) for k, v in zip(self.head_names, losses.detach())}
        logs.update({f"gamma_{k}": float(g) for k, g in zip(self.head_names, gammas)})
        pen_parts, pen_y, pen_z = penalty_batch or (parts, y, z)
        pen, pen_logs = self.penalty(pen_parts, pen_y, pen_z)
        if pen is not None:
            weight = self.cfg.lam * float(epoch >= self.cfg.warmup_epochs)
            if self.cfg.grad_scaling and weight > 0:
                weight *= self._gradient_ratio(loss, parts, weight * pen, pen_parts)
                logs["penalty_scale"] = weight / self.cfg.lam
            loss = loss + weight * pen
            logs["penalty"] = float(pen.detach())
            logs.update(pen_logs)
        logs["loss"] = float(loss.detach())
        return loss, logs

    @staticmethod
    def _gradient_ratio(task: Tensor, parts: list[Tensor], penalty: Tensor,
                        pen_parts: list[Tensor]) -> float:
        """min(1, ‖∂task/∂f‖ / ‖∂penalty/∂f‖) on the features f: the adaptive scaling that keeps
        the dependence term from drowning the task's gradient (gradients w.r.t. the features
        only, so the encoder's backward runs once)."""
        g_task = torch.autograd.grad(task, parts, retain_graph=True, allow_unused=True)
        g_pen = torch.autograd.grad(penalty, pen_parts, retain_graph=True, allow_unused=True)

        def norm(grads) -> float:
            return sum(float((g.detach() ** 2).sum()) for g in grads if g is not None) ** 0.5

        n_pen = norm(g_pen)
        return 1.0 if n_pen == 0.0 else min(1.0, norm(g_task) / n_pen)

    @property
    def head_names(self) -> list[str]:
        return ["y", *[f"z{i + 1}" for i in range(len(self.dims.f_z))]]


def build_method(cfg: MethodConfig, dims: Dims, n_epochs: int) -> Method:
    if cfg.name not in METHODS:
        raise ConfigError(f"unknown method {cfg.name!r} (config key method.name); "
                          f"choose one of {', '.join(sorted(METHODS))}")
    return METHODS[cfg.name](cfg, dims, n_epochs)
