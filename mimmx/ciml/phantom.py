"""A seeded 2D multimodal brain-tumour phantom, standing in for BraTS (not available here).

Every image is built from a tissue label map, then rendered once per modality:

    tissue 0 background, 1 brain (with a smooth white/grey-matter texture), 2 CSF (ventricles),
           3 oedema (WT \\ TC), 4 necrotic / non-enhancing core (TC \\ ET), 5 enhancing tumour (ET)

Regions are nested by construction: the tumour core is a smaller star-shaped blob intersected
with the whole tumour, the enhancing tumour is the outer rim of the core (WT ⊃ TC ⊃ ET).

Each modality maps tissues to intensities following the BraTS radiological prior (table
``CONTRAST``), so that it shows a different subset of regions:

- FLAIR: oedema and core bright, CSF suppressed (dark)  -> whole tumour; core barely differs.
- T1:    core dark, oedema slightly dark, high noise   -> tumour core, weakly.
- T1ce:  enhancing rim very bright, necrosis dark      -> tumour core and enhancing tumour;
         oedema almost invisible.
- T2:    oedema bright, necrosis brighter, rim darker, but CSF bright too
         -> whole tumour and tumour core, with CSF as a look-alike that FLAIR resolves.

WT is therefore shown by FLAIR and T2 (redundant), TC by T1, T2 and T1ce (redundant), ET only
by T1ce (unique): no single modality suffices and the modalities repeat each other.

Rendering per modality: intensity table + texture, partial-volume blur (Gaussian), a smooth
multiplicative bias field, Rician noise sqrt((s + σε₁)² + (σε₂)²) (MRI magnitude noise), then
z-score normalisation inside the brain with the background set to 0, as BraTS preprocessing
does. Everything is batched torch; one ``torch.Generator`` seeds the whole set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from mimmx.errors import ConfigError

MODALITIES = ("flair", "t1", "t1ce", "t2")
REGIONS = ("wt", "tc", "et")
TISSUES = ("background", "brain", "csf", "oedema", "core", "enhancing")

# intensity of each tissue (columns, order of TISSUES) in each modality (rows, order of MODALITIES)
CONTRAST = torch.tensor([
    # bg   brain  csf   oedema core  enhancing
    [0.0, 1.00, 0.35, 2.00, 1.92, 1.92],  # FLAIR
    [0.0, 1.00, 0.40, 0.85, 0.55, 0.65],  # T1
    [0.0, 1.00, 0.40, 0.92, 0.50, 2.00],  # T1ce
    [0.0, 1.00, 2.20, 1.90, 2.45, 1.45],  # T2
])
# how strongly the white/grey-matter texture shows in each modality (sign: T2 inverts T1)
TEXTURE = torch.tensor([0.10, 0.18, 0.14, -0.18])


@dataclass
class PhantomConfig:
    """Parameters of the phantom generator. Radii are fractions of half the image size."""

    size: int = 64                                  # images are size × size pixels
    wt_radius: tuple[float, float] = (0.22, 0.38)   # whole-tumour mean radius, uniform range
    tc_scale: tuple[float, float] = (0.35, 0.75)    # core radius / whole-tumour radius
    et_width: tuple[float, float] = (0.30, 0.55)    # enhancing rim width / core radius
    noise: tuple[float, float, float, float] = (0.15, 0.25, 0.20, 0.18)  # Rician σ per modality
    bias: float = 0.15                              # bias-field strength (log-intensity amplitude)
    blur: float = 0.6                               # partial-volume blur σ in pixels (0: none)
    roughness: float = 0.12                         # boundary irregularity of the blobs

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Raise :class:`ConfigError` naming the first bad parameter and its valid range."""
        if not isinstance(self.size, int) or self.size < 16:
            raise ConfigError(f"phantom size must be an integer >= 16 pixels, got {self.size!r}")
        for name, lo_ok, hi_ok in (("wt_radius", 0.0, 0.6), ("tc_scale", 0.0, 1.0),
                                   ("et_width", 0.0, 1.0)):
            rng = getattr(self, name)
            if len(rng) != 2 or not (lo_ok < rng[0] <= rng[1] <= hi_ok):
                raise ConfigError(
                    f"phantom {name} must be a range (low, high) with {lo_ok} < low <= high "
                    f"<= {hi_ok}, got {tuple(rng)!r}")
        if len(self.noise) != len(MODALITIES) or any(s < 0 for s in self.noise):
            raise ConfigError(
                f"phantom noise must give one σ >= 0 per modality {MODALITIES}, got {self.noise!r}")
        for name in ("bias", "blur", "roughness"):
            if getattr(self, name) < 0:
                raise ConfigError(f"phantom {name} must be >= 0, got {getattr(self, name)!r}")
        if self.roughness >= 0.3:
            raise ConfigError(f"phantom roughness must be < 0.3 (blobs stay star-shaped), "
                              f"got {self.roughness!r}")
        # the smallest enhancing rim must still cover about a pixel
        rim_px = self.wt_radius[0] * self.tc_scale[0] * self.et_width[0] * self.size / 2
        if rim_px < 0.5:
            raise ConfigError(
                f"the thinnest enhancing rim would be {rim_px:.2f} px wide at size {self.size}; "
                "increase size, wt_radius, tc_scale or et_width")


@dataclass
class Phantoms:
    """A set of phantoms. ``images`` (N, 4, H, W) float32 in MODALITIES order, z-scored in the
    brain; ``masks`` (N, 3, H, W) bool in REGIONS order (WT ⊃ TC ⊃ ET); ``tissue`` (N, H, W)
    int64 labels (TISSUES order); ``brain`` (N, H, W) bool."""

    images: torch.Tensor
    masks: torch.Tensor
    tissue: torch.Tensor
    brain: torch.Tensor
    seed: int = 0
    config: PhantomConfig = field(default_factory=PhantomConfig)

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device) -> Phantoms:
        return Phantoms(self.images.to(device), self.masks.to(device), self.tissue.to(device),
                        self.brain.to(device), self.seed, self.config)


def make_phantoms(n: int, seed: int = 0, config: PhantomConfig | None = None) -> Phantoms:
    """Generate ``n`` phantoms, deterministically from ``seed`` (on the CPU; move with ``.to``)."""
    config = config or PhantomConfig()
    config.validate()
    if not isinstance(n, int) or n < 1:
        raise ConfigError(f"number of phantoms must be a positive integer, got {n!r}")
    g = torch.Generator().manual_seed(int(seed))
    s = config.size

    def uniform(lo, hi, *shape):
        return lo + (hi - lo) * torch.rand(*shape, generator=g)

    # pixel coordinates in [-1, 1]
    ax = torch.linspace(-1, 1, s)
    y, x = torch.meshgrid(ax, ax, indexing="ij")  # (H, W)

    # brain: an ellipse with random semi-axes and a slight rotation
    a, b = uniform(0.70, 0.85, n, 1, 1), uniform(0.82, 0.95, n, 1, 1)
    rot = uniform(-0.2, 0.2, n, 1, 1)
    xr = x * torch.cos(rot) + y * torch.sin(rot)
    yr = -x * torch.sin(rot) + y * torch.cos(rot)
    brain = (xr / a) ** 2 + (yr / b) ** 2 < 1  # (N, H, W)

    # ventricles (CSF): two ellipses either side of the midline
    v_dx, v_y = uniform(0.10, 0.16, n, 1, 1), uniform(-0.15, 0.05, n, 1, 1)
    v_a, v_b = uniform(0.06, 0.10, n, 1, 1), uniform(0.18, 0.28, n, 1, 1)
    csf = torch.zeros_like(brain)
    for side in (-1, 1):
        csf |= ((xr - side * v_dx) / v_a) ** 2 + ((yr - v_y) / v_b) ** 2 < 1

    # whole tumour: a star-shaped blob r < r_wt(θ) centred inside the brain
    r_wt = uniform(*config.wt_radius, n, 1, 1)
    angle, dist = uniform(0, 2 * math.pi, n, 1, 1), uniform(0.15, 0.50, n, 1, 1)
    cx, cy = a * dist * torch.cos(angle), b * dist * torch.sin(angle)
    wt, _ = _star_blob(x - cx, y - cy, r_wt, config.roughness, g)
    wt &= brain
    # tumour core: a smaller blob, shifted a little from the tumour's centre, cut to WT
    r_tc = r_wt * uniform(*config.tc_scale, n, 1, 1)
    shift = (r_wt - r_tc) * uniform(0, 0.8, n, 1, 1)
    t_angle = uniform(0, 2 * math.pi, n, 1, 1)
    tx, ty = cx + shift * torch.cos(t_angle), cy + shift * torch.sin(t_angle)
    tc, rho = _star_blob(x - tx, y - ty, r_tc, config.roughness, g)
    tc &= wt
    # enhancing tumour: the rim of the core, rho = r / r_tc(θ) in (1 - width, 1)
    et = tc & (rho > 1 - uniform(*config.et_width, n, 1, 1))

    tissue = brain.long()
    tissue[csf & brain] = 2
    tissue[wt] = 3
    tissue[tc] = 4
    tissue[et] = 5

    texture = _smooth_field(n, s, 8, g)  # (N, H, W), std ≈ 1
    images = CONTRAST[:, tissue].transpose(0, 1)  # (N, 4, H, W)
    images = images + TEXTURE.view(1, -1, 1, 1) * texture[:, None] * (tissue == 1)[:, None]
    if config.blur > 0:
        images = _gaussian_blur(images, config.blur)
    bias = torch.exp(config.bias * _smooth_field(n * 4, s, 3, g).view(n, 4, s, s))
    sigma = torch.tensor(config.noise).view(1, -1, 1, 1)
    e1, e2 = torch.randn(images.shape, generator=g), torch.randn(images.shape, generator=g)
    images = torch.sqrt((images * bias + sigma * e1) ** 2 + (sigma * e2) ** 2)

    inside = brain[:, None].expand_as(images)  # z-score inside the brain, background 0
    count = inside.sum((2, 3), keepdim=True)
    mean = (images * inside).sum((2, 3), keepdim=True) / count
    std = (((images - mean) * inside) ** 2).sum((2, 3), keepdim=True).div(count).sqrt()
    images = torch.where(inside, (images - mean) / std, torch.zeros(()))

    masks = torch.stack([wt, tc, et], dim=1)
    return Phantoms(images.float(), masks, tissue, brain, int(seed), config)


def _star_blob(dx, dy, radius, roughness, g):
    """Mask r < R(θ) with R(θ) = radius·(1 + Σ_k a_k cos(kθ + φ_k)), k = 2..4, and ρ = r / R(θ)."""
    n = radius.shape[0]
    r, theta = torch.sqrt(dx ** 2 + dy ** 2), torch.atan2(dy, dx)
    k = torch.arange(2, 5).view(1, -1, 1, 1)
    amp = roughness * torch.rand(n, 3, 1, 1, generator=g)
    phase = 2 * math.pi * torch.rand(n, 3, 1, 1, generator=g)
    boundary = radius * (1 + (amp * torch.cos(k * theta[:, None] + phase)).sum(1))
    rho = r / boundary
    return rho < 1, rho


def _smooth_field(n, size, coarse, g):
    """Low-frequency random field: coarse × coarse white noise upsampled bicubically, std 1."""
    noise = torch.randn(n, 1, coarse, coarse, generator=g)
    field_ = F.interpolate(noise, size=(size, size), mode="bicubic", align_corners=True)[:, 0]
    return field_ / field_.std(dim=(1, 2), keepdim=True).clamp_min(1e-6)


def _gaussian_blur(images, sigma):
    """Gaussian blur of (..., H, W) with σ in pixels and reflect padding, as B·X·Bᵀ with the
    1D blur matrix B (a batched matmul: much faster on the CPU than a depthwise convolution)."""
    size = images.shape[-1]
    radius = min(size - 1, max(1, int(math.ceil(3 * sigma))))
    t = torch.arange(-radius, radius + 1, dtype=images.dtype)
    kernel = torch.exp(-0.5 * (t / sigma) ** 2)
    kernel = kernel / kernel.sum()
    impulses = F.pad(torch.eye(size, dtype=images.dtype)[:, None], (radius, radius), mode="reflect")
    blur = F.conv1d(impulses, kernel.view(1, 1, -1))[:, 0].T  # (H, H): blur[i, j] = weight of j at i
    return blur @ images @ blur.T
