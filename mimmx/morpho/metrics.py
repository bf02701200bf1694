"""Morphometrics of a batch of digits: area, length, thickness, slant, width, height.

Definitions of Castro et al. (JMLR 2019, §2.1) and their code (``morphomnist/measure.py``),
on the upsampled (×scale) image of :class:`~mimmx.morpho.morphology.Morphology`; lengths are
reported in pixels of the 28×28 image, the slant in radians:

- area = (number of ink pixels) / scale²;
- length = Σ over skeleton links (1 per horizontal/vertical, √2 per diagonal) / scale;
- thickness = 2 · mean distance-to-background on the skeleton / scale;
- slant = arctan(−μ11 / μ02), image moments of the grey-level upsampled image;
- width, height: sides of the bounding parallelogram sheared by μ11/μ02, with ``bound_frac``
  of the ink mass (1% each side) trimmed by the mass distribution along each direction.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from mimmx.morpho.morphology import MorphoInputError, Morphology

METRICS = ("area", "length", "thickness", "slant", "width", "height")


def measure(images, *, threshold: float = 0.5, scale: int = 4, bound_frac: float = 0.02) -> pd.DataFrame:
    """The six Morpho-MNIST metrics of every digit.

    images: uint8 (N, 28, 28) tensor or array. Returns a DataFrame with columns
    :data:`METRICS` and N rows (index 0..N-1, in the order of ``images``).
    """
    return pd.DataFrame(metrics_of(Morphology(images, threshold, scale), bound_frac), columns=METRICS)


def metrics_of(morph: Morphology, bound_frac: float = 0.02) -> np.ndarray:
    """(N, 6) float64 metrics (columns :data:`METRICS`) of an already processed batch."""
    if not 0.0 <= bound_frac < 1.0:
        raise MorphoInputError(f"bound_frac must be in [0, 1) (the reference uses 0.02), got {bound_frac!r}")
    s = morph.scale
    area = morph.binary.sum(axis=(1, 2)) / s**2
    length = _skeleton_length(morph.skeleton) / s
    thickness = morph.mean_thickness
    slant, width, height = _shape(morph.hires.astype(np.float64), bound_frac)
    return np.stack([area, length, thickness, slant, width / s, height / s], axis=1)


def _skeleton_length(skel: np.ndarray) -> np.ndarray:
    """(N,) Σ of links between 8-neighbouring skeleton pixels: 1 straight, √2 diagonal (each link
    counted once, as the reference's correlation with [[0,0,0],[0,0,1],[√2,1,√2]])."""
    straight = (skel[:, :, :-1] & skel[:, :, 1:]).sum(axis=(1, 2)) + (skel[:, :-1] & skel[:, 1:]).sum(axis=(1, 2))
    diagonal = (skel[:, :-1, :-1] & skel[:, 1:, 1:]).sum(axis=(1, 2)) + (skel[:, :-1, 1:] & skel[:, 1:, :-1]).sum(axis=(1, 2))
    return straight + np.sqrt(2.0) * diagonal


def _shape(img: np.ndarray, bound_frac: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slant, and width and height (upsampled pixels) of the bounding parallelogram.

    img: (N, H, W) float64 grey levels; x = column, y = row. Moments:
    shear = μ11 / μ02, slant = arctan(−shear). The horizontal extent is measured on the
    sheared coordinate u = x + ½ − shear · (y − ȳ): cdf_h(t) = mass{u < t} / mass for
    t = 0..W−1, and cdf_v(t) = mass{y < t} / mass; the trimmed ends are where the cdfs cross
    bound_frac/2 and 1 − bound_frac/2 (linear interpolation, as ``np.interp``)."""
    n, h, w = img.shape
    x, y = np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64)
    rows = img.sum(axis=2)  # (N, H) mass per row
    m00 = rows.sum(axis=1)
    x_mean, y_mean = img.sum(axis=1) @ x / m00, rows @ y / m00
    mu11 = (img @ x) @ y / m00 - x_mean * y_mean
    mu02 = rows @ y**2 / m00 - y_mean**2
    shear = mu11 / mu02

    # cdf_h: pixel (y, x) has u < t iff t ≥ x + s_y, with the integer s_y = floor(½ − shear·(y − ȳ)) + 1
    s_y = np.floor(0.5 - shear[:, None] * (y - y_mean[:, None])).astype(np.int32) + 1  # (N, H)
    first = np.arange(w, dtype=np.int32) + s_y[:, :, None]  # (N, H, W) first t that counts it
    np.clip(first, 0, w, out=first)
    first += (np.arange(n, dtype=np.int32) * (w + 1))[:, None, None]
    hist = np.bincount(first.ravel(), weights=img.ravel(), minlength=n * (w + 1)).reshape(n, w + 1)
    cdf_h = np.cumsum(hist, axis=1)[:, :w] / m00[:, None]
    cdf_v = np.cumsum(rows, axis=1) / m00[:, None]  # mass{y <= t}; mass{y < t} is this shifted by one
    cdf_v = np.concatenate([np.zeros((n, 1)), cdf_v[:, :-1]], axis=1)

    lo, hi = bound_frac / 2, 1.0 - bound_frac / 2
    width = _interp(hi, cdf_h) - _interp(lo, cdf_h)
    height = _interp(hi, cdf_v) - _interp(lo, cdf_v)
    return np.arctan(-shear), width, height


def _interp(level: float, cdf: np.ndarray) -> np.ndarray:
    """Row-wise ``np.interp(level, cdf[n], arange(len))`` for non-decreasing ``cdf`` (N, L)."""
    n, length = cdf.shape
    j = (cdf <= level).sum(axis=1) - 1  # last index with cdf <= level
    inside = (j >= 0) & (j < length - 1)
    jc = np.clip(j, 0, length - 2)
    c0, c1 = cdf[np.arange(n), jc], cdf[np.arange(n), jc + 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = 1.0 / (c1 - c0) * (level - c0) + jc  # np.interp's slope · offset + start
    return np.where(inside, between, np.where(j < 0, 0.0, length - 1.0))
