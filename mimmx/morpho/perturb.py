"""Morpho-MNIST perturbations, batched: thinning, thickening, swelling and fractures.

Castro et al. (JMLR 2019, §2.2) and their code (``morphomnist/perturb.py``). Each works on the
upsampled binary digit of :class:`~mimmx.morpho.morphology.Morphology` and maps the result
back to 28×28 with the reference's ``downscale`` (``pyramid_reduce``, order 3):

- thinning / thickening (global): erode / dilate with a disk of radius
  r = int(amount · scale · thickness / 2), thickness being the digit's mean thickness; the
  reference "global" set uses amount 0.7 for thinning and 1.0 for thickening. A binary
  erosion by a disk is "distance to the background > r" and a dilation is "distance to the
  ink ≤ r", so both are read off distance maps (exact, and one pass for any radii);
- swelling (local): a radial power warp, x ↦ c + (x − c)(|x − c|/R)^(γ−1) inside radius R
  around a random skeleton point c, with R = radius · √thickness / 2 · scale and γ = strength;
- fractures (local): ``num_frac`` strokes of width ``thickness`` cut across the pen stroke,
  perpendicular to the skeleton at random skeleton points away from tips and forks.

Randomness is per image: image k of a call draws from ``numpy.random.default_rng((seed,
indices[k]))``, so a digit's perturbation depends on the seed and its index only, never on
the rest of the batch or its position in it.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage import draw

from mimmx.morpho.morphology import (
    MorphoInputError,
    Morphology,
    distance_to_foreground,
    is_tensor,
)

THIN_AMOUNT = 0.7  # the reference "global" dataset's amounts
THICK_AMOUNT = 1.0


def thin(images, amount: float = THIN_AMOUNT, *, threshold: float = 0.5, scale: int = 4):
    """Thin each digit by ``amount`` (a fraction of its thickness, in [0, 1)): erosion by a
    disk of radius int(amount · scale · thickness / 2). Returns uint8 (N, 28, 28), a tensor if
    ``images`` is one."""
    _check_amount("thin", amount, 0.0, 1.0, upper_open=True)
    morph = Morphology(images, threshold, scale)
    return _like(images, morph.downscale(eroded(morph, amount)))


def thick(images, amount: float = THICK_AMOUNT, *, threshold: float = 0.5, scale: int = 4):
    """Thicken each digit by ``amount`` (a fraction of its thickness, in [0, 4]): dilation by a
    disk of radius int(amount · scale · thickness / 2). Returns uint8 (N, 28, 28), a tensor if
    ``images`` is one."""
    _check_amount("thick", amount, 0.0, 4.0)
    morph = Morphology(images, threshold, scale)
    return _like(images, morph.downscale(dilated(morph, amount)))


def disk_radius(morph: Morphology, amount: float) -> np.ndarray:
    """(N,) int radius of the thinning/thickening disk, int(amount · scale · thickness / 2)."""
    return (amount * morph.scale * morph.mean_thickness / 2.0).astype(np.int64)


def eroded(morph: Morphology, amount: float) -> np.ndarray:
    """Binary erosion of each digit by its disk: ink farther than r from the background."""
    return morph.distance > disk_radius(morph, amount)[:, None, None]


def dilated(morph: Morphology, amount: float) -> np.ndarray:
    """Binary dilation of each digit by its disk: pixels within r of the ink."""
    r = disk_radius(morph, amount)
    return distance_to_foreground(morph.binary, int(r.max())) <= r[:, None, None]


def swell(images, seed: int, indices=None, *, strength: float = 3.0, radius: float = 7.0,
          threshold: float = 0.5, scale: int = 4):
    """Swell each digit around one random skeleton point (the reference ``Swelling``:
    strength 3, radius 7 pixels of the 28×28 image, scaled by √thickness / 2).

    Image k's point is drawn by ``default_rng((seed, indices[k]))``; ``indices`` defaults to
    0..N−1 (pass the digits' dataset indices to make the result batch-independent)."""
    if not strength > 1.0:
        raise MorphoInputError(f"swell: strength must be > 1 (3 in the reference), got {strength!r}")
    if not radius > 0.0:
        raise MorphoInputError(f"swell: radius must be > 0 (7 in the reference), got {radius!r}")
    morph = Morphology(images, threshold, scale)
    rngs = _rngs(seed, indices, len(morph))
    centres = np.stack([_sample(morph.skeleton[k], rng, 1)[0] for k, rng in enumerate(rngs)])
    cy, cx = (centres[:, 0].astype(np.float64)[:, None, None], centres[:, 1].astype(np.float64)[:, None, None])
    big_r = (radius * np.sqrt(morph.mean_thickness) / 2.0 * scale)[:, None, None]

    n, h, w = morph.binary.shape
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float64)
    dx, dy = cols[None] - cx, rows[None] - cy
    distance = np.hypot(dx, dy)
    weight = (distance / big_r) ** (strength - 1)
    weight[distance > big_r] = 1.0
    # nearest-neighbour sampling of the binary image at the warped points, as skimage's
    # warp does for boolean images (order 0, zero outside); coordinate 0 is the image index
    coords = np.stack([np.broadcast_to(np.arange(n, dtype=np.float64)[:, None, None], (n, h, w)),
                       cy + weight * dy, cx + weight * dx])
    warped = ndi.map_coordinates(morph.binary.astype(np.float64), coords, order=0,
                                 mode="grid-constant", cval=0.0)
    return _like(images, morph.downscale(warped))


def fracture(images, seed: int, indices=None, *, thickness: float = 1.5, prune: float = 2.0,
             num_frac: int = 3, threshold: float = 0.5, scale: int = 4):
    """Add ``num_frac`` fractures to each digit (the reference ``Fracture``: thickness 1.5,
    tips and forks avoided within ``prune`` = 2 pixels, 3 fractures).

    A fracture is a line through a random skeleton point c, perpendicular to the skeleton
    (orientation ½·atan2(2μ11, μ20 − μ02) of the skeleton within 2 pixels of c), reaching
    0.5 pixel beyond the stroke on each side, erased with a disk brush of radius
    ceil((thickness · scale − 1) / 2). Seeding as in :func:`swell`."""
    if not thickness > 0.0:
        raise MorphoInputError(f"fracture: thickness must be > 0 (1.5 in the reference), got {thickness!r}")
    if not prune >= 0.0:
        raise MorphoInputError(f"fracture: prune must be >= 0 (2 in the reference), got {prune!r}")
    if not (isinstance(num_frac, (int, np.integer)) and num_frac >= 1):
        raise MorphoInputError(f"fracture: num_frac must be an integer >= 1, got {num_frac!r}")
    morph = Morphology(images, threshold, scale)
    rngs = _rngs(seed, indices, len(morph))
    n, h, w = morph.binary.shape

    pruned = _erase_near(morph.skeleton, _neighbours(morph.skeleton) == 1, int(prune * scale))
    pruned = _erase_near(pruned, _neighbours(pruned) == 3, int(prune * scale))
    centres = np.stack([  # (N, num_frac, 2) row, column
        _sample(pruned[k] if pruned[k].any() else morph.skeleton[k], rng, num_frac)
        for k, rng in enumerate(rngs)])
    img = np.repeat(np.arange(n), num_frac)
    ci, cj = centres[..., 0].ravel(), centres[..., 1].ravel()

    window = 2 * scale  # skeleton orientation around each centre
    padded = np.pad(morph.skeleton, ((0, 0), (window, window), (window, window)))
    offs = np.arange(2 * window + 1)
    patch = padded[img[:, None, None], ci[:, None, None] + offs[None, :, None],
                   cj[:, None, None] + offs[None, None, :]].astype(np.float64)
    angle = _orientation(patch) + np.pi / 2.0  # perpendicular to the stroke
    length = morph.distance[img, ci, cj] + 0.5 * scale
    normal = length[:, None] * np.stack([np.sin(angle), np.cos(angle)], axis=1)
    centre = np.stack([ci, cj], axis=1).astype(np.float64)
    p0, p1 = (centre + normal).astype(np.int64), (centre - normal).astype(np.int64)

    cuts = np.zeros_like(morph.binary)
    for k, a, b in zip(img, p0, p1):  # a few line rasterisations per image
        rr, cc = draw.line(a[0], a[1], b[0], b[1])
        inside = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
        cuts[k, rr[inside], cc[inside]] = True
    brush = int(np.ceil((thickness * scale - 1) / 2))
    out = _erase_near(morph.binary, cuts, brush)
    return _like(images, morph.downscale(out))


# ---------------------------------------------------------------------------------------------


def _check_amount(name: str, amount: float, lo: float, hi: float, upper_open: bool = False) -> None:
    ok = lo <= amount < hi if upper_open else lo <= amount <= hi
    if not (isinstance(amount, (int, float, np.floating, np.integer)) and ok):
        bracket = ")" if upper_open else "]"
        raise MorphoInputError(
            f"{name}: amount must be a fraction of the stroke thickness in [{lo}, {hi}{bracket}, "
            f"got {amount!r} (the reference uses {THIN_AMOUNT if name == 'thin' else THICK_AMOUNT})"
        )


def _like(images, out: np.ndarray):
    """``out`` as a torch tensor if ``images`` was one, else as a numpy array."""
    if is_tensor(images):
        import torch

        return torch.from_numpy(out)
    return out


def _rngs(seed: int, indices, n: int) -> list[np.random.Generator]:
    """One generator per image, from (seed, dataset index of the image)."""
    if not (isinstance(seed, (int, np.integer)) and seed >= 0):
        raise MorphoInputError(f"seed must be a non-negative integer, got {seed!r}")
    idx = np.arange(n) if indices is None else np.asarray(
        indices.cpu().numpy() if is_tensor(indices) else indices)
    if idx.shape != (n,) or not np.issubdtype(idx.dtype, np.integer) or (idx < 0).any():
        raise MorphoInputError(
            f"indices must be {n} non-negative integers (one dataset index per image), "
            f"got {idx.dtype} of shape {idx.shape}")
    return [np.random.default_rng((int(seed), int(i))) for i in idx]


def _sample(mask: np.ndarray, rng: np.random.Generator, num: int) -> np.ndarray:
    """(num, 2) random (row, column) points of ``mask``, drawn with replacement."""
    points = np.argwhere(mask)
    return points[rng.integers(len(points), size=num)]


def _neighbours(skel: np.ndarray) -> np.ndarray:
    """Number of 8-neighbours of each skeleton pixel (0 off the skeleton)."""
    ring = np.ones((1, 3, 3), np.uint8)
    ring[0, 1, 1] = 0
    return ndi.correlate(skel.view(np.uint8), ring, mode="constant") * skel


def _erase_near(mask: np.ndarray, seeds: np.ndarray, r: int) -> np.ndarray:
    """``mask`` with every pixel within distance r of a seed (a disk of radius r) cleared."""
    if not seeds.any():
        return mask.copy()
    return mask & (distance_to_foreground(seeds, r) > r)


def _orientation(patch: np.ndarray) -> np.ndarray:
    """(K,) orientation ½·atan2(2μ11, μ20 − μ02) of each (K, P, P) patch (x = column)."""
    p = patch.shape[-1]
    x = np.arange(p, dtype=np.float64)
    m00 = patch.sum(axis=(1, 2))
    cols, rows = patch.sum(axis=1), patch.sum(axis=2)
    xm, ym = cols @ x / m00, rows @ x / m00
    mu20 = cols @ x**2 / m00 - xm**2
    mu02 = rows @ x**2 / m00 - ym**2
    mu11 = (patch @ x) @ x / m00 - xm * ym
    return 0.5 * np.arctan2(2.0 * mu11, mu20 - mu02)
