"""Segmentation models: small U-Nets, the three baselines and CIML (a documented reconstruction).

Every model maps images (B, 4, H, W) in MODALITIES order to region logits (B, 3, H, W) in
REGIONS order (WT, TC, ET; multi-label, sigmoid per region as in BraTS region training), and
has the same small interface:

    loss(images, masks) -> (loss, {name: float})    what one training step minimises
    predict(images)     -> logits (B, 3, H, W)      region logits for evaluation

Baselines: ``SingleModality`` (one modality in, all regions out), ``Ensemble`` (one
SingleModality per modality, trained side by side, probabilities averaged; its members are
also the single-modality rows of the results), ``EarlyFusion`` (all four modalities stacked as
input channels of one U-Net; the registry gives it twice the width, so that its parameter
count matches the four-U-Net methods).

CIML (Shen et al., Neural Networks 180:106670, 2024, arXiv 2401.02717). The paper's method
section is not available to us and no official code exists, so the formulas below are OUR
RECONSTRUCTION from the paper's abstract and summary, not the authors' equations:

1. Task decomposition by expert prior (``SUBTASKS``): one segmentor per modality, predicting
   only the regions that modality is known to show (FLAIR→WT, T1→TC, T2→WT+TC, T1ce→TC+ET).
2. Message passing at the U-Net bottleneck: segmentor m receives from every auxiliary
   modality n ≠ m a message through
   - a variational information bottleneck (VIB, Alemi et al., ICLR 2017): a Gaussian encoder
     q(z | h_n) = N(μ_{m←n}, diag σ²_{m←n}) of the auxiliary features h_n, sampled with the
     reparametrisation z = μ + σ ⊙ ε (its mean at evaluation), and the KL term
     KL(q(z | h_n) ‖ N(0, I)) = ½ Σ (μ² + σ² − log σ² − 1), weighted by β in the loss;
   - a cross-modality information gate (CIG), a cross-modal spatial attention map
     a_{m←n} = sigmoid(W₂ ReLU(W₁ [h_m, h_n])) ∈ [0, 1]^{h×w} computed from BOTH the primary
     and the auxiliary features (1×1 convolutions W₁, W₂);
   - the message enters the primary stream residually: h_m ← h_m + W_o Σ_{n≠m} a_{m←n} ⊙ z_{m←n}.
   Rationale: segmentor m already sees x_m, so its segmentation loss only rewards z for what
   x_m lacks (I(z; y | x_m), the complementary part), while the KL term makes every nat that z
   carries about x_n cost β; redundant information lowers no loss yet costs KL, so it is
   dropped. The gate says where an auxiliary modality is let in: the interpretable
   "which modality contributes where" map.
3. Fusion: the logits of region r are a softmax-weighted mean over the segmentors that
   predict r (weights learned, one set per region, initialised equal). The loss is the
   segmentation loss of the fused output plus the mean of each segmentor's own subtask loss
   (mutual learning: every segmentor is supervised on its subtask) plus β·KL.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from mimmx.ciml.phantom import MODALITIES, REGIONS

# expert prior (BraTS): which regions each modality's segmentor predicts
SUBTASKS: dict[str, tuple[str, ...]] = {
    "flair": ("wt",),
    "t1": ("tc",),
    "t2": ("wt", "tc"),
    "t1ce": ("tc", "et"),
}


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, 1)) = ½ (μ² + σ² − log σ² − 1), elementwise (VIB's compression term)."""
    return 0.5 * (mu.pow(2) + logvar.exp() - logvar - 1)


def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy + soft Dice (1 − 2Σpy / (Σp + Σy)), per region over the batch,
    averaged over regions. logits, masks: (B, R, H, W)."""
    target = masks.float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    dims = (0, 2, 3)
    dice = (2 * (p * target).sum(dims) + 1) / (p.sum(dims) + target.sum(dims) + 1)
    return bce + (1 - dice).mean()


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    """Two 3×3 convolutions, each with batch norm and ReLU (the U-Net unit)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
        nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    """A small U-Net (Ronneberger et al., 2015): widths (w, 2w, 4w), two 2×2 poolings, so the
    image side must be divisible by 4. ``encode`` and ``decode`` are separate so that CIML can
    pass messages at the bottleneck (B, 4w, H/4, W/4)."""

    def __init__(self, in_channels: int, out_channels: int, width: int = 8):
        super().__init__()
        w = width
        self.enc1, self.enc2, self.bottleneck = conv_block(in_channels, w), conv_block(w, 2 * w), conv_block(2 * w, 4 * w)
        self.up2, self.dec2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2), conv_block(4 * w, 2 * w)
        self.up1, self.dec1 = nn.ConvTranspose2d(2 * w, w, 2, stride=2), conv_block(2 * w, w)
        self.head = nn.Conv2d(w, out_channels, 1)
        self.bottleneck_channels = 4 * w

    def encode(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        return (e1, e2), self.bottleneck(F.max_pool2d(e2, 2))

    def decode(self, skips, h):
        e1, e2 = skips
        d2 = self.dec2(torch.cat([self.up2(h), e2], 1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
        return self.head(d1)

    def forward(self, x):
        return self.decode(*self.encode(x))


def _check_images(images: torch.Tensor) -> None:
    if images.ndim != 4 or images.shape[1] != len(MODALITIES):
        raise ValueError(f"images must be (B, {len(MODALITIES)}, H, W) in order {MODALITIES}, "
                         f"got shape {tuple(images.shape)}")
    if images.shape[-1] % 4 or images.shape[-2] % 4:
        raise ValueError(f"image height and width must be divisible by 4 (two U-Net poolings), "
                         f"got {tuple(images.shape[-2:])}")


class SingleModality(nn.Module):
    """Baseline: a U-Net that sees one modality and predicts all three regions."""

    def __init__(self, modality: str, width: int = 8):
        super().__init__()
        if modality not in MODALITIES:
            raise ValueError(f"unknown modality {modality!r}; choose one of {MODALITIES}")
        self.modality, self.index = modality, MODALITIES.index(modality)
        self.unet = UNet(1, len(REGIONS), width)

    def predict(self, images):
        _check_images(images)
        return self.unet(images[:, self.index:self.index + 1])

    def loss(self, images, masks):
        loss = segmentation_loss(self.predict(images), masks)
        return loss, {"seg": loss.item()}


class EarlyFusion(nn.Module):
    """Baseline: the four modalities stacked as input channels of one U-Net."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.unet = UNet(len(MODALITIES), len(REGIONS), width)

    def predict(self, images):
        _check_images(images)
        return self.unet(images)

    def loss(self, images, masks):
        loss = segmentation_loss(self.predict(images), masks)
        return loss, {"seg": loss.item()}


class Ensemble(nn.Module):
    """Baseline: one SingleModality U-Net per modality, each trained on its own loss (the
    summed loss has disjoint parameters, so this equals four separate trainings); prediction
    averages the members' probabilities. ``member_logits`` gives the single-modality rows."""

    def __init__(self, width: int = 8):
        super().__init__()
        self.members = nn.ModuleDict({m: SingleModality(m, width) for m in MODALITIES})

    def member_logits(self, images) -> dict[str, torch.Tensor]:
        return {m: net.predict(images) for m, net in self.members.items()}

    def predict(self, images):
        probs = torch.stack([torch.sigmoid(z) for z in self.member_logits(images).values()])
        return torch.logit(probs.mean(0), eps=1e-6)

    def loss(self, images, masks):
        losses = {m: segmentation_loss(z, masks) for m, z in self.member_logits(images).items()}
        return sum(losses.values()), {f"seg_{m}": v.item() for m, v in losses.items()}


class CrossModalGate(nn.Module):
    """CIG (reconstruction): a_{m←n} = sigmoid(W₂ ReLU(W₁ [h_m, h_n])), one map (B, 1, h, w)."""

    def __init__(self, channels: int, hidden: int = 16):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(2 * channels, hidden, 1), nn.ReLU(inplace=True),
                                 nn.Conv2d(hidden, 1, 1))

    def forward(self, h_primary, h_auxiliary):
        return torch.sigmoid(self.net(torch.cat([h_primary, h_auxiliary], 1)))


class VariationalMessage(nn.Module):
    """VIB encoder (reconstruction): q(z | h_n) = N(μ, diag σ²) with (μ, log σ²) = W h_n (1×1
    convolution); returns z = μ + σ ⊙ ε when training (μ at evaluation) and the elementwise KL."""

    def __init__(self, channels: int, message_channels: int):
        super().__init__()
        self.net = nn.Conv2d(channels, 2 * message_channels, 1)

    def forward(self, h_auxiliary):
        mu, logvar = self.net(h_auxiliary).chunk(2, dim=1)
        logvar = logvar.clamp(-8, 8)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        return z, gaussian_kl(mu, logvar)


class CIML(nn.Module):
    """Complementary Information Mutual Learning (reconstruction; see the module docstring).

    ``forward`` returns a dict: ``logits`` (B, 3, H, W) fused; ``subtask_logits`` {m: (B, |SUBTASKS[m]|, H, W)};
    ``gates`` {(m, n): (B, 1, H/4, W/4)} the CIG map of auxiliary n for primary m; ``kl``, the
    KL term averaged over batch, positions and pairs, summed over message channels."""

    def __init__(self, width: int = 8, message_channels: int = 8, beta: float = 1e-3,
                 subtasks: dict[str, tuple[str, ...]] | None = None):
        super().__init__()
        self.subtasks = dict(subtasks or SUBTASKS)
        unknown = set(self.subtasks) - set(MODALITIES)
        bad = {r for rs in self.subtasks.values() for r in rs} - set(REGIONS)
        if unknown or bad or not self.subtasks:
            raise ValueError(f"subtasks must map modalities {MODALITIES} to regions {REGIONS}; "
                             f"unknown modalities {sorted(unknown)}, unknown regions {sorted(bad)}")
        missing = set(REGIONS) - {r for rs in self.subtasks.values() for r in rs}
        if missing:
            raise ValueError(f"no segmentor predicts region(s) {sorted(missing)}; "
                             "every region needs at least one modality in subtasks")
        self.beta = beta
        self.segmentors = nn.ModuleDict({m: UNet(1, len(rs), width) for m, rs in self.subtasks.items()})
        c = 4 * width
        self.pairs = [(m, n) for m in self.subtasks for n in self.subtasks if n != m]
        self.gates = nn.ModuleDict({f"{m}<-{n}": CrossModalGate(c) for m, n in self.pairs})
        self.messages = nn.ModuleDict({f"{m}<-{n}": VariationalMessage(c, message_channels)
                                       for m, n in self.pairs})
        self.inject = nn.ModuleDict({m: nn.Conv2d(message_channels, c, 1) for m in self.subtasks})
        # fusion weights: for each region, one logit per segmentor that predicts it
        self.fusion = nn.ParameterDict({r: nn.Parameter(torch.zeros(len(self.experts(r))))
                                        for r in REGIONS})

    def experts(self, region: str) -> list[str]:
        """The modalities whose segmentors predict ``region``."""
        return [m for m, rs in self.subtasks.items() if region in rs]

    def fusion_weights(self) -> dict[str, dict[str, float]]:
        """{region: {modality: weight}}, the learned softmax fusion weights."""
        return {r: dict(zip(self.experts(r), torch.softmax(self.fusion[r], 0).tolist(), strict=True))
                for r in REGIONS}

    def forward(self, images):
        _check_images(images)
        encoded = {m: self.segmentors[m].encode(images[:, MODALITIES.index(m)][:, None])
                   for m in self.subtasks}  # m -> (skips, h_m (B, 4w, H/4, W/4))
        gates, kls, subtask_logits = {}, [], {}
        for m in self.subtasks:
            skips, h_m = encoded[m]
            message = 0
            for n in self.subtasks:
                if n == m:
                    continue
                h_n = encoded[n][1]
                z, kl = self.messages[f"{m}<-{n}"](h_n)
                a = self.gates[f"{m}<-{n}"](h_m, h_n)
                message = message + a * z
                gates[(m, n)] = a
                kls.append(kl.sum(1).mean())
            if not isinstance(message, int):  # a lone segmentor has no auxiliary modalities
                h_m = h_m + self.inject[m](message)
            subtask_logits[m] = self.segmentors[m].decode(skips, h_m)
        fused = []
        for r in REGIONS:
            w = torch.softmax(self.fusion[r], 0)
            fused.append(sum(w[i] * subtask_logits[m][:, self.subtasks[m].index(r)]
                             for i, m in enumerate(self.experts(r))))
        kl = torch.stack(kls).mean() if kls else images.new_zeros(())
        return {"logits": torch.stack(fused, 1), "subtask_logits": subtask_logits,
                "gates": gates, "kl": kl}

    def predict(self, images):
        return self.forward(images)["logits"]

    def loss(self, images, masks):
        out = self.forward(images)
        fused = segmentation_loss(out["logits"], masks)
        subtask = torch.stack([
            segmentation_loss(z, masks[:, [REGIONS.index(r) for r in self.subtasks[m]]])
            for m, z in out["subtask_logits"].items()]).mean()
        loss = fused + subtask + self.beta * out["kl"]
        return loss, {"seg": fused.item(), "subtask": subtask.item(), "kl": out["kl"].item()}


METHODS = {
    "ensemble": lambda cfg: Ensemble(cfg.width),
    "early_fusion": lambda cfg: EarlyFusion(2 * cfg.width),  # about the others' parameter count
    "ciml": lambda cfg: CIML(cfg.width, cfg.message_channels, cfg.beta),
}
