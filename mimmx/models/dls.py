"""Dynamic Loss Scaling (DLS), MIMM-X poster (Fay et al., FAIMI 2025), eq. (2) and (3):

    γ_i = (L_i / L̄)^{α_i},   L̄ = (1 / (N + 1)) Σ_{i=0..N} L_i,   α_0 = α_Y, α_i = α_Z (i ≥ 1)
    α_Y = α_Y,initial + (epoch / N_epoch) · β_Y

    L_MIMM-X = γ_0 L_0 + Σ_i γ_i L_i + λ φ_MINE(f_y, f_z)

A task whose loss is above the mean gets a weight above 1, so lagging tasks are pushed;
α_i sets how strongly. The γ's are weights, not objectives: they are computed from detached
losses, so no gradient flows through γ (otherwise the encoder could lower γ_i·L_i by moving
L̄ instead of L_i).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

__all__ = ["dls_gammas", "dls_loss", "alpha_y_schedule"]


def _as_losses(losses: Tensor | Sequence) -> Tensor:
    if not isinstance(losses, Tensor):
        losses = torch.stack([torch.as_tensor(v, dtype=torch.float32) for v in losses])
    if losses.dim() != 1 or losses.numel() < 2:
        raise ValueError("DLS needs a 1-D tensor of the N + 1 task losses [L_0 (y), L_1..L_N "
                         f"(factors)], at least 2; got shape {tuple(losses.shape)}")
    return losses


def dls_gammas(losses: Tensor | Sequence, alpha_y: float, alpha_z: float) -> Tensor:
    """γ (N + 1,), detached, for the losses [L_0, L_1, ..., L_N] (eq. 2).

    Losses must be ≥ 0 (cross-entropies); if they are all 0, every γ is 1.
    """
    losses = _as_losses(losses).detach()
    if not torch.isfinite(losses).all() or (losses < 0).any():
        raise ValueError(f"DLS needs finite, non-negative losses, got {losses.tolist()}")
    mean = losses.mean()
    if mean == 0:
        return torch.ones_like(losses)
    alphas = torch.full_like(losses, float(alpha_z))
    alphas[0] = float(alpha_y)
    return (losses / mean) ** alphas


def dls_loss(losses: Tensor | Sequence, alpha_y: float, alpha_z: float) -> Tensor:
    """Σ_i γ_i L_i with the γ's of :func:`dls_gammas` (constant weights): the task part of the
    MIMM-X loss. ``losses`` must be differentiable tensors for the result to be."""
    losses = _as_losses(losses)
    return (dls_gammas(losses, alpha_y, alpha_z) * losses).sum()


def alpha_y_schedule(alpha_y_initial: float, beta_y: float, epoch: float, n_epochs: int) -> float:
    """α_Y = α_Y,initial + (epoch / N_epoch) · β_Y (eq. 3).

    ``epoch`` is the number of completed epochs (0 during the first; a fraction for a per-step
    schedule), ``n_epochs`` the planned total. With the poster's β_Y = 0.01, α_Y grows by at
    most 0.01 over the run.
    """
    if n_epochs <= 0:
        raise ValueError(f"alpha_y_schedule: n_epochs must be positive, got {n_epochs}")
    if epoch < 0:
        raise ValueError(f"alpha_y_schedule: epoch must be ≥ 0, got {epoch}")
    return float(alpha_y_initial) + (float(epoch) / n_epochs) * float(beta_y)
