"""Feature encoders φ_FE: image x (B, C, H, W) in [0, 1] → feature vector f (B, feature_dim),
and :class:`SplitHeads`, which splits f into f_y, f_z1..f_zN and predicts y, z_1..z_N from them.

============== ============================================================ ============
name           architecture                                                 input
============== ============================================================ ============
``mimm``       the original MIMM encoder (lab-midas/MIMM)                   28 × 28 only
``conv4``      four conv blocks, the poster's Exp1 encoder (reconstruction) ≥ 8 × 8
``densenet121`` torchvision DenseNet-121, the poster's Exp2 encoder         ≥ 8 × 8
============== ============================================================ ============
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mimmx.errors import ConfigError

__all__ = ["MIMMEncoder", "ConvEncoder", "DenseNetEncoder", "ENCODERS", "build_encoder",
           "SplitHeads"]


def _check_images(owner: str, x: Tensor, in_channels: int, min_size: int,
                  exact_size: int | None = None) -> None:
    """Raise a ValueError naming ``owner`` unless x is (B, in_channels, H, W) of a usable size."""
    if x.dim() != 4 or x.shape[1] != in_channels:
        raise ValueError(f"{owner} expects images of shape (B, {in_channels}, H, W), got "
                         f"{tuple(x.shape)}; add the channel axis with x[:, None] if needed")
    h, w = x.shape[-2:]
    if exact_size is not None and (h, w) != (exact_size, exact_size):
        raise ValueError(f"{owner} is built for {exact_size}×{exact_size} images, got {h}×{w}; "
                         "resize, or use the 'conv4' or 'densenet121' encoder for other sizes")
    if min(h, w) < min_size:
        raise ValueError(f"{owner} needs images of at least {min_size}×{min_size}, got {h}×{w}")


class MIMMEncoder(nn.Module):
    """The original MIMM feature encoder (Fay et al. 2023; lab-midas/MIMM), for 28×28 inputs:
    Conv(C→6, 3) + ReLU + MaxPool2, Conv(6→16, 3) + ReLU, Conv(16→16, 3) + ReLU + MaxPool2
    (16×4×4 = 256), FC 256→256 + ReLU, FC 256→feature_dim (no activation: with feature_dim 4
    the halves are the logits of y and z, as in the original)."""

    input_size = 28

    def __init__(self, feature_dim: int = 4, in_channels: int = 1):
        super().__init__()
        self.feature_dim, self.in_channels = feature_dim, in_channels
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 6, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # 26 → 13
            nn.Conv2d(6, 16, 3), nn.ReLU(inplace=True),                            # 13 → 11
            nn.Conv2d(16, 16, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),          # 11 → 9 → 4
        )
        self.fc = nn.Linear(256, 256)
        self.fc_out = nn.Linear(256, feature_dim)

    def forward(self, x: Tensor) -> Tensor:
        _check_images("MIMMEncoder", x, self.in_channels, 28, exact_size=28)
        h = self.features(x).flatten(1)  # (B, 256)
        return self.fc_out(F.relu(self.fc(h)))


class ConvEncoder(nn.Module):
    """Four convolutional blocks, the poster's Exp1 encoder ("same feature encoder as in Fay et
    al. 2023 based on four convolutional layers"; its exact layers are not published, so this is
    a reconstruction): Conv3×3(pad 1) + BatchNorm + ReLU with channels w, 2w, 4w, 4w, a 2×2
    max-pool after each of the first three, global average pooling, FC 4w → feature_dim.
    Works for any input of at least 8×8 (28×28 digits, 96×96 or 256×256 scans)."""

    def __init__(self, feature_dim: int, in_channels: int = 1, width: int = 32):
        super().__init__()
        self.feature_dim, self.in_channels = feature_dim, in_channels
        channels = [in_channels, width, 2 * width, 4 * width, 4 * width]
        layers: list[nn.Module] = []
        for k in range(4):
            layers += [nn.Conv2d(channels[k], channels[k + 1], 3, padding=1, bias=False),
                       nn.BatchNorm2d(channels[k + 1]), nn.ReLU(inplace=True)]
            if k < 3:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(4 * width, feature_dim)

    def forward(self, x: Tensor) -> Tensor:
        _check_images("ConvEncoder", x, self.in_channels, 8)
        h = self.features(x).mean(dim=(2, 3))  # global average pool: (B, 4w)
        return self.fc(h)


class DenseNetEncoder(nn.Module):
    """DenseNet-121 (Huang et al. 2017; torchvision, ``weights=None``: trained from scratch, no
    download), the poster's Exp2 encoder, adapted to small single-channel images: the first
    convolution is 3×3 stride 1 (instead of 7×7 stride 2) with ``in_channels`` inputs, and the
    initial max-pool is removed, so a 28×28 image reaches the last dense block at 3×3 (96×96 at
    12×12). The classifier is Linear(1024 → feature_dim). Extra keywords go to
    ``torchvision.models.densenet121`` (e.g. ``memory_efficient=True``, ``drop_rate``)."""

    def __init__(self, feature_dim: int, in_channels: int = 1, **kw):
        super().__init__()
        from torchvision.models import densenet121

        self.feature_dim, self.in_channels = feature_dim, in_channels
        self.net = densenet121(weights=None, num_classes=feature_dim, **kw)
        self.net.features.conv0 = nn.Conv2d(in_channels, 64, 3, stride=1, padding=1, bias=False)
        nn.init.kaiming_normal_(self.net.features.conv0.weight)
        self.net.features.pool0 = nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        _check_images("DenseNetEncoder", x, self.in_channels, 8)
        return self.net(x)


ENCODERS: dict[str, type[nn.Module]] = {
    "mimm": MIMMEncoder,
    "conv4": ConvEncoder,
    "densenet121": DenseNetEncoder,
}


def build_encoder(name: str, feature_dim: int, in_channels: int = 1, **kw) -> nn.Module:
    """``ENCODERS[name](feature_dim, in_channels, **kw)``, with clear errors for bad arguments."""
    if name not in ENCODERS:
        raise ConfigError(f"unknown encoder {name!r}; choose one of {sorted(ENCODERS)}")
    if not isinstance(feature_dim, int) or feature_dim < 1:
        raise ConfigError(f"encoder {name!r}: feature_dim must be a positive int, "
                          f"got {feature_dim!r}")
    if not isinstance(in_channels, int) or in_channels < 1:
        raise ConfigError(f"encoder {name!r}: in_channels must be a positive int, "
                          f"got {in_channels!r}")
    try:
        return ENCODERS[name](feature_dim, in_channels=in_channels, **kw)
    except TypeError as err:
        raise ConfigError(f"encoder {name!r}: {err}") from err


class SplitHeads(nn.Module):
    """Splits f (B, Σ dims) into f_y (dims[0]) and f_z1..f_zN (dims[1:]) and predicts y from f_y
    and z_i from f_zi.

    ``head="identity"``: the part itself is the logits, as in the original MIMM code (needs
    dims[i] == n_classes[i]); ``head="linear"``: one Linear(dims[i] → n_classes[i]) per part.
    """

    def __init__(self, dims: Sequence[int], n_classes: Sequence[int], head: str = "linear"):
        super().__init__()
        dims, n_classes = [int(d) for d in dims], [int(k) for k in n_classes]
        if len(dims) < 2 or len(dims) != len(n_classes):
            raise ConfigError(f"SplitHeads: dims {dims} and n_classes {n_classes} need one entry "
                              "each for y and for every spurious factor (at least 2)")
        if min(dims) < 1 or min(n_classes) < 2:
            raise ConfigError(f"SplitHeads: dims must be ≥ 1 and n_classes ≥ 2, got {dims}, "
                              f"{n_classes}")
        if head == "identity":
            if dims != n_classes:
                raise ConfigError(f"SplitHeads(head='identity') uses each part as logits, so "
                                  f"dims must equal n_classes; got dims {dims}, n_classes "
                                  f"{n_classes} (use head='linear' otherwise)")
            self.heads = nn.ModuleList([nn.Identity() for _ in dims])
        elif head == "linear":
            self.heads = nn.ModuleList([nn.Linear(d, k) for d, k in zip(dims, n_classes)])
        else:
            raise ConfigError(f"SplitHeads: head must be 'identity' or 'linear', got {head!r}")
        self.dims, self.n_classes, self.head = dims, n_classes, head

    @property
    def feature_dim(self) -> int:
        return sum(self.dims)

    def split(self, f: Tensor) -> list[Tensor]:
        """[f_y, f_z1, ..., f_zN], shapes (B, dims[i])."""
        if f.dim() != 2 or f.shape[1] != self.feature_dim:
            raise ValueError(f"SplitHeads expects features of shape (B, {self.feature_dim}) "
                             f"(dims {self.dims}), got {tuple(f.shape)}")
        return list(torch.split(f, self.dims, dim=1))

    def forward(self, f: Tensor) -> list[Tensor]:
        """Logits per part: [(B, n_classes[0]), (B, n_classes[1]), ...]."""
        return [head(part) for head, part in zip(self.heads, self.split(f))]
