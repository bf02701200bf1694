"""Spurious factors: *induced* ones (an image transform chosen by z) and *natural* ones (an
attribute measured from the image, binarised later by the builder).

Induced transforms act on a whole batch at once: ``fn(images, z, ctx) -> images`` with images
uint8 ``(n, 28, 28)`` and ``z`` int64 ``(n,)``. ``ctx`` says where the images come from (dataset,
official split, source indices) and carries the seeded generator for any noise.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

import torch
import torchvision.transforms.v2.functional as TF

from mimmx.errors import UserError


@dataclass
class Context:
    dataset: str  # "mnist" | "fashion-mnist"
    split: str  # official split the images come from: "train" | "test"
    index: torch.Tensor  # (n,) indices into that split
    generator: torch.Generator  # seeded; the only source of randomness


@dataclass(frozen=True)
class Induced:
    """An image transform selected per image by its factor value z ∈ {0..n_values-1}."""

    fn: Callable[[torch.Tensor, torch.Tensor, Context], torch.Tensor]
    n_values: int
    values: tuple[str, ...]  # a name per value, for tables and plots
    stage: int  # transforms that replace the image (thickness) run before pixel effects
    datasets: tuple[str, ...] = ("mnist", "fashion-mnist")
    description: str = ""


FRACTURE_CHUNK = 500  # digits fractured at once: a step of the progress, and bounded memory

# told how far a slow transform has got: callback(what, done, total), from done = 0 to total
_progress: ContextVar[Callable[[str, int, int], None] | None] = ContextVar("mimmx_scenario_progress",
                                                                          default=None)


@contextmanager
def reporting(callback: Callable[[str, int, int], None] | None) -> Iterator[None]:
    """Within this block (in this thread), slow transforms of a scenario build (the fractures,
    per :data:`FRACTURE_CHUNK` digits) call ``callback(what, done, total)``: once with done = 0,
    then after each chunk, the last time with done = total. ``warm-cache`` draws bars with it."""
    token = _progress.set(callback)
    try:
        yield
    finally:
        _progress.reset(token)


def _report(what: str, done: int, total: int) -> None:
    callback = _progress.get()
    if callback is not None:
        callback(what, done, total)


def _float(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255.0


def _uint8(x: torch.Tensor) -> torch.Tensor:
    return (x.clamp(0, 1) * 255.0).round().to(torch.uint8)


def morpho_pair(v0: str, v1: str) -> Callable[[torch.Tensor, torch.Tensor, Context], torch.Tensor]:
    """The transform that replaces each digit by its Morpho-MNIST variant v0 (z = 0) or v1 (z = 1);
    variants: "plain", "thin", "thick" (see :mod:`mimmx.morpho.table`)."""
    def fn(images: torch.Tensor, z: torch.Tensor, ctx: Context) -> torch.Tensor:
        from mimmx.morpho import load_table

        table = load_table()
        x0, x1 = table.images(ctx.split, v0)[ctx.index], table.images(ctx.split, v1)[ctx.index]
        return torch.where(z.view(-1, 1, 1).bool(), x1, x0)
    return fn


thickness = morpho_pair("thin", "thick")
thickness.__doc__ = "z = 0: the Morpho-MNIST thinned digit (amount 0.7); z = 1: the thickened one (amount 1.0)."


def site(images: torch.Tensor, z: torch.Tensor, ctx: Context) -> torch.Tensor:
    """Acquisition site, a scanner-like change of the whole image. z = 0: site A (as acquired);
    z = 1: site B, x' = 0.12 + 0.8·blur_σ=0.8(x)^0.6 + N(0, 0.06²): lifted background, gamma,
    softer edges and more noise."""
    b = z.bool()
    if not b.any():
        return images
    x = _float(images[b]).unsqueeze(1)
    x = TF.gaussian_blur(x, kernel_size=[5, 5], sigma=[0.8, 0.8]).squeeze(1)
    x = 0.12 + 0.8 * x.pow(0.6)
    noise = torch.randn(x.shape, generator=ctx.generator) * 0.06
    out = images.clone()
    out[b] = _uint8(x + noise)
    return out


def fractured(num_frac: int) -> Callable[[torch.Tensor, torch.Tensor, Context], torch.Tensor]:
    """z = 1: the digit with ``num_frac`` Morpho-MNIST fractures (breaks across the pen stroke,
    :func:`mimmx.morpho.fracture`); z = 0: the digit as written. A digit's fractures depend on
    its index in the official split only, so every scenario and seed breaks it the same way
    (and in chunks of :data:`FRACTURE_CHUNK` exactly as all at once)."""
    def fn(images: torch.Tensor, z: torch.Tensor, ctx: Context) -> torch.Tensor:
        from mimmx.morpho import fracture

        out = images.clone()
        where = z.bool().nonzero().flatten()
        seed, what = (0 if ctx.split == "train" else 1), f"fracturing {ctx.split}-split digits"
        for start in range(0, len(where), FRACTURE_CHUNK):
            _report(what, start, len(where))
            part = where[start:start + FRACTURE_CHUNK]
            out[part] = fracture(images[part], seed=seed, indices=ctx.index[part].numpy(),
                                 num_frac=num_frac)
        if len(where):
            _report(what, len(where), len(where))
        return out
    return fn


BORDER_PATTERNS = ("L", "R", "T", "B", "LR", "TB", "LT", "RB", "LB", "RT")


def border(images: torch.Tensor, z: torch.Tensor, ctx: Context) -> torch.Tensor:
    """MIMM's Fashion-MNIST factor: pattern z of white 3-pixel bars on the image border
    (L, R, T, B and the six pairs: ten patterns)."""
    out = images.clone()
    for k, pattern in enumerate(BORDER_PATTERNS):  # ten patterns, each set at once for its images
        sel = z == k
        if "L" in pattern:
            out[sel, :, :3] = 255
        if "R" in pattern:
            out[sel, :, -3:] = 255
        if "T" in pattern:
            out[sel, :3, :] = 255
        if "B" in pattern:
            out[sel, -3:, :] = 255
    return out


def marker(images: torch.Tensor, z: torch.Tensor, ctx: Context) -> torch.Tensor:
    """A bright 4×4 patch like an X-ray laterality marker: top-left corner (z = 0) or
    top-right (z = 1)."""
    out = images.clone()
    out[z == 0, 1:5, 1:5] = 255
    out[z == 1, 1:5, -5:-1] = 255
    return out


def intensity(images: torch.Tensor, z: torch.Tensor, ctx: Context) -> torch.Tensor:
    """A global intensity change: z = 1 scales the image by 0.6 (darker), z = 0 leaves it."""
    out = images.clone()
    b = z.bool()
    out[b] = _uint8(_float(images[b]) * 0.6)
    return out


INDUCED: dict[str, Induced] = {
    "thickness": Induced(thickness, 2, ("thin", "thick"), stage=0, datasets=("mnist",),
                         description="Morpho-MNIST thinning / thickening of the strokes"),
    "fracture": Induced(fractured(1), 2, ("intact", "fractured"), stage=0, datasets=("mnist",),
                        description="one Morpho-MNIST fracture across the pen stroke"),
    "fracture2": Induced(fractured(2), 2, ("intact", "fractured"), stage=0, datasets=("mnist",),
                         description="two Morpho-MNIST fractures across the pen stroke"),
    "fracture3": Induced(fractured(3), 2, ("intact", "fractured"), stage=0, datasets=("mnist",),
                         description="three Morpho-MNIST fractures (the reference's setting)"),
    "site": Induced(site, 2, ("site A", "site B"), stage=1,
                    description="scanner-like change: gamma, background, blur, noise"),
    "border": Induced(border, len(BORDER_PATTERNS), BORDER_PATTERNS, stage=1,
                      description="MIMM's ten white border-bar patterns"),
    "marker": Induced(marker, 2, ("left", "right"), stage=1,
                      description="a laterality-marker-like patch in a top corner"),
    "intensity": Induced(intensity, 2, ("normal", "dark"), stage=1,
                         description="a global intensity change"),
}


# --- natural attributes: images (n, 28, 28) uint8 + context -> float (n,) ------------------

def brightness(images: torch.Tensor, ctx: Context) -> torch.Tensor:
    """Mean intensity of the object's pixels (those above 10% of full scale), in [0, 1]."""
    x = _float(images)
    mask = x > 0.1
    return (x * mask).sum((1, 2)) / mask.sum((1, 2)).clamp(min=1)


def size(images: torch.Tensor, ctx: Context) -> torch.Tensor:
    """Object size: the number of pixels above 25% of full scale."""
    return (images > 64).sum((1, 2)).float()


def extent(images: torch.Tensor, ctx: Context) -> torch.Tensor:
    """Horizontal extent of the object: the number of columns holding a pixel above 10%."""
    return (images > 25).any(1).sum(1).float()


def _morphometric(name: str):
    def fn(images: torch.Tensor, ctx: Context) -> torch.Tensor:
        from mimmx.morpho import load_table

        values = load_table().metrics(ctx.split, "plain")[name].to_numpy()
        return torch.as_tensor(values, dtype=torch.float32)[ctx.index]

    fn.__doc__ = f"Morpho-MNIST {name} of the plain digit (MNIST only)."
    return fn


NATURAL: dict[str, Callable[[torch.Tensor, Context], torch.Tensor]] = {
    "brightness": brightness,
    "size": size,
    "extent": extent,
    **{m: _morphometric(m) for m in ("area", "length", "thickness", "slant", "width", "height")},
}
MORPHOMETRICS = ("area", "length", "thickness", "slant", "width", "height")


def check_factor_source(kind: str, source: str, dataset: str, name: str) -> None:
    """Clear error for an unknown transform/attribute or one that does not fit the dataset."""
    known = INDUCED if kind == "induced" else NATURAL if kind == "natural" else None
    if known is None:
        raise UserError(f"factor {name!r}: kind must be 'induced' or 'natural', not {kind!r}")
    if source not in known:
        raise UserError(f"factor {name!r}: unknown {kind} source {source!r}; choose one of {sorted(known)}")
    if kind == "induced" and dataset not in INDUCED[source].datasets:
        raise UserError(f"factor {name!r}: {source!r} works on {INDUCED[source].datasets}, not {dataset!r}")
    if kind == "natural" and source in MORPHOMETRICS and dataset != "mnist":
        raise UserError(f"factor {name!r}: Morpho-MNIST {source!r} is measured on MNIST only, not {dataset!r}")
