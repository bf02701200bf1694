"""The MIMM network: φ_FE(x) = f = [f_y, f_z1, ..., f_zN], one classification head per part."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from mimmx.config import ModelConfig
from mimmx.errors import ConfigError
from mimmx.models.encoders import SplitHeads, build_encoder


class _Concat(nn.Module):
    def __init__(self, *encoders: nn.Module):
        super().__init__()
        self.encoders = nn.ModuleList(encoders)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([e(x) for e in self.encoders], dim=1)


class MIMMNet(nn.Module):
    """Encoder + split heads. ``forward(x) -> (parts, logits)``: parts = [f_y, f_z1, ...],
    logits = [y logits, z1 logits, ...]."""

    def __init__(self, encoder: str, f_y_dim: int, f_z_dims: list[int], n_classes: list[int],
                 head: str = ModelConfig.head, in_channels: int = 1, width: int | None = ModelConfig.width,
                 separate_encoders: bool = ModelConfig.separate_encoders,
                 z_encoders: str = ModelConfig.z_encoders):
        super().__init__()
        self.dims = [f_y_dim, *f_z_dims]
        kw = {"width": width} if encoder == "conv4" and width is not None else {}
        if z_encoders == "per_factor" and not separate_encoders:
            raise ConfigError("model.z_encoders=per_factor gives each f_z part its own encoder beside "
                              "f_y's: it needs model.separate_encoders=true")
        if separate_encoders:  # f = [φ_y(x), φ_z(x)] or [φ_y(x), φ_z1(x), ...]: no shared trunk
            z_groups = [[d] for d in f_z_dims] if z_encoders == "per_factor" else [f_z_dims]
            self.encoder = _Concat(*(build_encoder(encoder, sum(dims), in_channels=in_channels, **kw)
                                     for dims in [[f_y_dim], *z_groups]))
        else:
            self.encoder = build_encoder(encoder, sum(self.dims), in_channels=in_channels, **kw)
        self.heads = SplitHeads(self.dims, n_classes, head=head)

    @classmethod
    def from_config(cls, cfg: ModelConfig, n_classes: list[int]) -> MIMMNet:
        """The network of a ``model`` config section; ``n_classes`` = [n_y, n_z1, ..., n_zN]."""
        return cls(cfg.encoder, cfg.f_y_dim, [cfg.f_z_dim] * (len(n_classes) - 1), n_classes,
                   head=cfg.head, width=cfg.width, separate_encoders=cfg.separate_encoders,
                   z_encoders=cfg.z_encoders)

    def y_readout(self) -> tuple[nn.Linear, int]:
        """The last linear layer on the way to the y logits and how many of its output rows are
        the y logits: the y head (all rows) when heads are linear; with identity heads, the
        encoder's final Linear, whose first ``f_y_dim`` rows are f_y (DFR refits these)."""
        if self.heads.head == "linear":
            return self.heads.heads[0], self.heads.heads[0].out_features
        trunk = self.encoder.encoders[0] if isinstance(self.encoder, _Concat) else self.encoder
        linear = [m for m in trunk.modules() if isinstance(m, nn.Linear)][-1]
        return linear, self.dims[0]

    def forward(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        f = self.encoder(x)  # (B, d_y + Σ d_zi)
        parts = self.heads.split(f)
        # logits from the same part tensors, so gradients w.r.t. a part see every path
        return parts, [head(p) for head, p in zip(self.heads.heads, parts)]
