"""Which modality contributes where: gradient maps for any model, gate maps for CIML.

``modality_contributions`` is input × gradient (Shrikumar et al., 2016; a pixel-level cousin of
the Grad-CAM maps the CIML paper shows): for region r and a model with logits ℓ_r,

    s_r = Σ_{pixels in G_r} ℓ_r(x),     S_m = |x_m ⊙ ∂s_r/∂x_m|   (one map per modality m),

lightly smoothed; ``contribution_shares`` normalises Σ S_m over modalities to shares that sum to
one. ``gate_maps`` returns CIML's cross-modality information gates a_{m←n}, upsampled to the
image size: where segmentor m lets auxiliary modality n in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mimmx.ciml.models import CIML
from mimmx.ciml.phantom import MODALITIES, REGIONS, _gaussian_blur


def modality_contributions(predict, images: torch.Tensor, masks: torch.Tensor, region: str,
                           smooth: float = 1.0) -> torch.Tensor:
    """Input × gradient maps (B, 4, H, W) of region ``region``'s evidence inside its true mask."""
    if region not in REGIONS:
        raise ValueError(f"unknown region {region!r}; choose one of {REGIONS}")
    r = REGIONS.index(region)
    x = images.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        logits = predict(x)
        score = (logits[:, r] * masks[:, r].float()).sum()
        (grad,) = torch.autograd.grad(score, x)
    maps = (x * grad).abs().detach()
    return _gaussian_blur(maps, smooth) if smooth > 0 else maps


def contribution_shares(predict, images, masks) -> dict[str, dict[str, float]]:
    """{region: {modality: share}}: each modality's part of the total input × gradient mass."""
    out = {}
    for region in REGIONS:
        mass = modality_contributions(predict, images, masks, region, smooth=0).sum((0, 2, 3))
        share = (mass / mass.sum().clamp_min(1e-12)).tolist()
        out[region] = dict(zip(MODALITIES, share, strict=True))
    return out


@torch.no_grad()
def gate_maps(model: CIML, images: torch.Tensor) -> dict[tuple[str, str], torch.Tensor]:
    """{(primary m, auxiliary n): a_{m←n} (B, H, W)}, bilinearly upsampled to the image size."""
    if not isinstance(model, CIML):
        raise ValueError(f"gate maps exist only for CIML models, got {type(model).__name__}")
    was_training = model.training
    model.eval()
    gates = model(images)["gates"]
    model.train(was_training)
    size = images.shape[-2:]
    return {k: F.interpolate(a, size=size, mode="bilinear", align_corners=False)[:, 0]
            for k, a in gates.items()}
