"""The Morpho-MNIST processing pipeline for a whole batch of digits at once.

Reference: Castro et al., "Morpho-MNIST", JMLR 20(178), 2019, and its code
(dccastro/Morpho-MNIST, ``morphomnist/morpho.py`` ``ImageMorphology``). Per digit:

1. upsample 28×28 → 112×112 with ``skimage.transform.pyramid_expand(order=3)`` (cubic spline
   zoom, clipped to the input range, then a Gaussian of σ = 2·scale/6), stored as uint8;
2. binarise at half the intensity range: ``hires >= min + threshold · (max − min)``;
3. Euclidean distance map to the background, and the medial axis (skeleton).

:class:`Morphology` does this for ``N`` digits with batched numpy/scipy calls. Three places
are our own code rather than a library call, because the library works one image at a time,
is slow at this size, or would make a digit's result depend on the rest of its batch:

- the zoom of ``pyramid_expand``/``pyramid_reduce`` is a linear map per axis, applied here as
  one matrix product for the whole batch (``A · X · Aᵀ``); the matrices are built *by*
  ``scipy.ndimage.zoom`` (its response to unit vectors), so they are the library's operator.
  The result equals ``pyramid_expand`` up to floating-point rounding (rarely ±1 grey level);
- ``skimage.morphology.medial_axis`` breaks ties between pixels at the same distance with a
  fresh random permutation of all foreground pixels of the array it gets: it is not
  reproducible, and on a batch it would tie a digit's skeleton to its neighbours. We keep its
  algorithm (same lookup table, same order: distance, then "cornerness", then a tie-breaker)
  but break ties with a fixed pseudo-random rank per pixel *position* (seed :data:`TIE_SEED`),
  so each digit's skeleton is deterministic and independent of the batch. Its one-pass
  removal loop is inherently sequential, so it is a small numba kernel
  (:func:`_medial_axis_kernel`); the tests check it equals skimage's given the same ties;
- the exact Euclidean distance transform is a numba kernel over the whole batch
  (:func:`_edt_in_boxes`, the same distances as ``scipy.ndimage.distance_transform_edt``):
  scipy's needs a Python call per digit and computes a full feature transform, which made it
  a third of the table build;
- everything else is scipy/numpy on the (N, 112, 112) stack: 3×3 neighbourhood counts with a
  (1, 3, 3) footprint never mix digits.
"""

from __future__ import annotations

from functools import lru_cache

import numba
import numpy as np
from scipy import ndimage as ndi

from mimmx.errors import UserError

SIZE = 28  # MNIST images are 28×28
TIE_SEED = 0  # seed of the per-position tie-breaking ranks of the medial axis


class MorphoInputError(UserError, ValueError):
    """Images or parameters that Morpho-MNIST cannot process; the message says how to fix it."""


def is_tensor(x) -> bool:
    """Whether ``x`` is a torch tensor (without importing torch: worker processes stay light)."""
    return type(x).__module__.startswith("torch") and hasattr(x, "detach")


def as_images(images, name: str = "images") -> np.ndarray:
    """Check and return ``images`` as a C-contiguous numpy uint8 array (N, 28, 28)."""
    if is_tensor(images):
        images = images.detach().cpu().numpy()
    if not isinstance(images, np.ndarray):
        raise MorphoInputError(
            f"{name} must be a uint8 torch tensor or numpy array of shape (N, 28, 28), "
            f"got {type(images).__name__}"
        )
    if images.dtype != np.uint8:
        raise MorphoInputError(
            f"{name} must have dtype uint8 (grey levels 0..255, as mimmx.data.load gives), "
            f"got {images.dtype}; convert with (x * 255).round().to(torch.uint8) if x is in [0, 1]"
        )
    if images.ndim == 2 and images.shape == (SIZE, SIZE):
        raise MorphoInputError(
            f"{name} must be a batch of shape (N, 28, 28), got one image of shape (28, 28); "
            "pass images[None] for a single digit"
        )
    if images.ndim != 3 or images.shape[1:] != (SIZE, SIZE):
        raise MorphoInputError(f"{name} must have shape (N, 28, 28), got {tuple(images.shape)}")
    constant = np.ptp(images.reshape(len(images), -1), axis=1) == 0
    if constant.any():
        raise MorphoInputError(
            f"{name}: image(s) {np.flatnonzero(constant)[:10].tolist()} are blank (one grey level "
            "everywhere): a digit needs ink to be measured or perturbed"
        )
    return np.ascontiguousarray(images)


def check_scale_threshold(scale: int, threshold: float) -> None:
    if not (isinstance(scale, (int, np.integer)) and 2 <= scale <= 8):
        raise MorphoInputError(f"scale must be an integer in 2..8 (the reference uses 4), got {scale!r}")
    if not 0.0 < threshold < 1.0:
        raise MorphoInputError(f"threshold must be in (0, 1) (the reference uses 0.5), got {threshold!r}")


# ---------------------------------------------------------------------------------------------
# up- and downsampling: skimage.transform.pyramid_expand / pyramid_reduce, batched


@lru_cache(maxsize=8)
def _zoom_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) matrix of ``scipy.ndimage.zoom`` as ``skimage.transform.resize`` calls it
    (cubic spline, ``grid_mode=True``, skimage's 'reflect' = ndimage's 'mirror'), one axis."""
    eye = np.eye(n_in)
    cols = [ndi.zoom(e, n_out / n_in, order=3, mode="mirror", grid_mode=True) for e in eye]
    return np.ascontiguousarray(np.stack(cols, axis=1))


def _smooth(x: np.ndarray, scale: int) -> np.ndarray:
    """The Gaussian of skimage's pyramids (σ = 2·scale/6, ndimage 'reflect'), per image."""
    return ndi.gaussian_filter(x, sigma=(0.0, 2 * scale / 6.0, 2 * scale / 6.0), mode="reflect")


def _zoom(x: np.ndarray, n_out: int) -> np.ndarray:
    """Cubic-spline resize of each (n, n) image to (n_out, n_out), clipped to its own range
    (``resize(..., clip=True)``). x: (N, n, n) float64."""
    a = _zoom_matrix(x.shape[-1], n_out)  # (n_out, n)
    num, n = len(x), x.shape[-1]
    out = np.matmul(a, (x.reshape(num * n, n) @ a.T).reshape(num, n, n_out))  # A X Aᵀ
    np.maximum(out, x.min(axis=(1, 2), keepdims=True), out=out)
    return np.minimum(out, x.max(axis=(1, 2), keepdims=True), out=out)


def upsample(images: np.ndarray, scale: int = 4) -> np.ndarray:
    """uint8 (N, 28, 28) → uint8 (N, 28·scale, 28·scale): ``(255 · pyramid_expand(x, scale,
    order=3)).astype(uint8)``, as the reference's ``ImageMorphology``."""
    x = np.multiply(images, 1.0 / 255, dtype=np.float64)  # skimage's img_as_float
    up = _smooth(_zoom(x, SIZE * scale), scale)
    return (255.0 * up).astype(np.uint8)


def downscale(hires: np.ndarray, scale: int = 4) -> np.ndarray:
    """bool or float (N, 28·scale, 28·scale) → uint8 (N, 28, 28):
    ``(255 · pyramid_reduce(x, scale, order=3)).astype(uint8)``, the reference's ``downscale``."""
    x = _smooth(hires.astype(np.float64), scale)
    return (255.0 * _zoom(x, hires.shape[-1] // scale)).astype(np.uint8)


# ---------------------------------------------------------------------------------------------
# distance maps and the medial axis

_BIG = 1e9  # sentinel distance for "no such pixel in this image"


def _bounding_boxes(mask: np.ndarray, margin: int) -> np.ndarray:
    """(N, 4) int boxes [r0, r1, c0, c1) around the True pixels of each image, grown by
    ``margin`` and clipped to the image; an image without True pixels gets an empty box."""
    n, h, w = mask.shape
    rows, cols = mask.any(axis=2), mask.any(axis=1)
    r0 = np.where(rows.any(1), rows.argmax(1), h)
    r1 = np.where(rows.any(1), h - rows[:, ::-1].argmax(1), h)
    c0 = np.where(cols.any(1), cols.argmax(1), w)
    c1 = np.where(cols.any(1), w - cols[:, ::-1].argmax(1), w)
    return np.stack([np.maximum(r0 - margin, 0), np.minimum(r1 + margin, h),
                     np.maximum(c0 - margin, 0), np.minimum(c1 + margin, w)], axis=1)


def distance_to_background(binary: np.ndarray) -> np.ndarray:
    """``scipy.ndimage.distance_transform_edt`` of each image (distance of every foreground
    pixel to the nearest background pixel *of the same image*; background pixels get 0).

    Computed on the foreground's bounding box grown by one pixel: exact, because that ring is
    background wherever it lies inside the image, and the nearest background pixel outside the
    box is never nearer than its projection onto the ring."""
    out = np.zeros(binary.shape)
    _edt_in_boxes(~binary, _bounding_boxes(binary, 1), out)
    return out


def distance_to_foreground(binary: np.ndarray, limit: int) -> np.ndarray:
    """Distance of every pixel to the nearest foreground pixel of the same image, exact where
    it is ≤ ``limit`` (farther pixels get :data:`_BIG`). Computed on the foreground's bounding
    box grown by ``limit + 1``, which holds every pixel within ``limit`` of the foreground."""
    out = np.full(binary.shape, _BIG)
    _edt_in_boxes(binary, _bounding_boxes(binary, limit + 1), out)
    return out


@numba.njit(cache=True, nogil=True)
def _edt_in_boxes(target, boxes, out):  # pragma: no cover - compiled
    """Exact Euclidean distance to the nearest ``target`` pixel inside each image's box,
    written into ``out`` there. target (N, H, W) bool; boxes (N, 4) [r0, r1, c0, c1).

    The same distances as ``scipy.ndimage.distance_transform_edt`` of the box (scipy's needs
    a Python call per box and computes a full feature transform: it was a third of the table
    build). Felzenszwalb & Huttenlocher (2012), "Distance transforms of sampled functions":
    squared distances along columns, then the lower envelope of parabolas along rows; all
    values are exact integers until the final square root."""
    inf = np.inf
    for n in range(target.shape[0]):
        r0, r1, c0, c1 = boxes[n, 0], boxes[n, 1], boxes[n, 2], boxes[n, 3]
        h, w = r1 - r0, c1 - c0
        if h <= 0 or w <= 0:
            continue
        g = np.empty((h, w))  # squared distance to the nearest target in the same column
        for j in range(w):
            d = inf
            for i in range(h):
                d = 0.0 if target[n, r0 + i, c0 + j] else d + 1.0
                g[i, j] = d
            d = inf
            for i in range(h - 1, -1, -1):
                d = 0.0 if target[n, r0 + i, c0 + j] else d + 1.0
                g[i, j] = min(g[i, j], d) ** 2
        v = np.empty(w, np.int64)  # parabolas of the lower envelope
        z = np.empty(w + 1)  # and where each starts
        for i in range(h):
            f = g[i]
            k = -1
            for q in range(w):
                if f[q] == inf:
                    continue
                s = -inf
                while k >= 0:
                    p = v[k]
                    s = ((f[q] + q * q) - (f[p] + p * p)) / (2.0 * (q - p))
                    if s > z[k]:
                        break
                    k -= 1
                if k < 0:
                    s = -inf
                k += 1
                v[k], z[k] = q, s
            if k < 0:
                continue  # no target in this row's reach: leave ``out`` as it is
            z[k + 1] = inf
            m = 0
            for q in range(w):
                while z[m + 1] < q:
                    m += 1
                p = v[m]
                out[n, r0 + i, c0 + q] = np.sqrt((q - p) * (q - p) + f[p])


def _pattern(index: int) -> np.ndarray:
    """3×3 pattern whose pixel k (raster order) is bit k of ``index``."""
    return ((index >> np.arange(9)) & 1).reshape(3, 3).astype(bool)


@lru_cache(maxsize=1)
def _keep_table() -> np.ndarray:
    """(512,) uint8: 1 where the centre pixel of a 3×3 configuration stays in the medial axis.

    skimage's rule: a foreground centre is kept if removing it changes the number of
    8-connected components of the neighbourhood, or if the neighbourhood (centre included)
    holds fewer than 3 foreground pixels."""
    eight = np.ones((3, 3), bool)
    table = np.zeros(512, np.uint8)
    for index in range(512):
        if index & 16:
            p = _pattern(index)
            q = _pattern(index & ~16)
            table[index] = (ndi.label(p, eight)[1] != ndi.label(q, eight)[1]) or p.sum() < 3
    return table


@lru_cache(maxsize=4)
def _tie_ranks(h: int, w: int) -> np.ndarray:
    """(h, w) int64: a fixed random rank for every pixel position (the medial-axis tie-breaker)."""
    return np.random.default_rng(TIE_SEED).permutation(h * w).reshape(h, w).astype(np.int64)


@numba.njit(cache=True, nogil=True)
def _medial_axis_kernel(binary, distance, ranks, table):  # pragma: no cover - compiled
    """skimage's medial-axis thinning, image by image. binary (N, H, W) uint8; distance
    (N, H, W) float64 to the background; ranks (H, W) int64; table (512,) uint8.

    Per image: order the foreground pixels by (d2, cornerness, rank), then visit them once in
    that order, setting each to ``table[its 3×3 configuration]`` (bit k = neighbour k in raster
    order, centre = bit 4) in the image being thinned. The squared distance is an exact
    integer, so ordering by it is ordering by the distance."""
    n_img, h, w = binary.shape
    result = binary.copy()
    for n in range(n_img):
        img = binary[n]
        out = result[n]
        fg = np.flatnonzero(img)
        key = np.empty(fg.size, np.int64)
        for k in range(fg.size):
            i, j = fg[k] // w, fg[k] % w
            ones = 0  # foreground pixels in the 3×3 neighbourhood, centre included
            for di in range(max(i - 1, 0), min(i + 2, h)):
                for dj in range(max(j - 1, 0), min(j + 2, w)):
                    ones += img[di, dj]
            d2 = np.int64(np.rint(distance[n, i, j] ** 2))
            key[k] = (d2 * 10 + (9 - ones)) * (h * w) + ranks[i, j]
        for k in np.argsort(key):
            i, j = fg[k] // w, fg[k] % w
            acc = 16
            if i > 0:
                if j > 0 and out[i - 1, j - 1]:
                    acc += 1
                if out[i - 1, j]:
                    acc += 2
                if j < w - 1 and out[i - 1, j + 1]:
                    acc += 4
            if j > 0 and out[i, j - 1]:
                acc += 8
            if j < w - 1 and out[i, j + 1]:
                acc += 32
            if i < h - 1:
                if j > 0 and out[i + 1, j - 1]:
                    acc += 64
                if out[i + 1, j]:
                    acc += 128
                if j < w - 1 and out[i + 1, j + 1]:
                    acc += 256
            out[i, j] = table[acc]
    return result


def medial_axis(binary: np.ndarray, distance: np.ndarray, tie_ranks: np.ndarray | None = None) -> np.ndarray:
    """Medial axis of each image of ``binary`` (N, H, W) bool, given its distance map.

    The algorithm of ``skimage.morphology.medial_axis``: foreground pixels are visited by
    increasing distance to the background, then increasing "cornerness" (background pixels in
    the 3×3 neighbourhood: corners go last), then a tie-breaking rank, and each is removed
    unless the lookup table keeps it. ``tie_ranks`` (H, W) defaults to :func:`_tie_ranks`."""
    n, h, w = binary.shape
    ranks = _tie_ranks(h, w) if tie_ranks is None else np.ascontiguousarray(tie_ranks, np.int64)
    skeleton = _medial_axis_kernel(binary.view(np.uint8), distance, ranks, _keep_table())
    return skeleton.view(bool)


class Morphology:
    """The reference's ``ImageMorphology`` for a batch: ``images`` (N, 28, 28) uint8.

    Attributes (all (N, 28·scale, 28·scale)): ``hires`` uint8 upsampled images, ``binary``
    bool, ``distance`` float64 distance of ink to background, ``skeleton`` bool medial axis.
    """

    def __init__(self, images, threshold: float = 0.5, scale: int = 4):
        check_scale_threshold(scale, threshold)
        self.images = as_images(images)
        self.threshold, self.scale = threshold, scale
        self.hires = upsample(self.images, scale)
        lo = self.hires.min(axis=(1, 2), keepdims=True).astype(np.float64)
        hi = self.hires.max(axis=(1, 2), keepdims=True).astype(np.float64)
        self.binary = self.hires >= lo + (hi - lo) * threshold
        self.distance = distance_to_background(self.binary)
        self.skeleton = medial_axis(self.binary, self.distance)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def mean_thickness(self) -> np.ndarray:
        """(N,) thickness = 2 · mean distance on the skeleton / scale (low-resolution pixels)."""
        n, i, j = np.nonzero(self.skeleton)
        on_skeleton = np.bincount(n, weights=self.distance[n, i, j], minlength=len(self))
        return 2.0 * on_skeleton / np.bincount(n, minlength=len(self)) / self.scale

    def downscale(self, hires: np.ndarray) -> np.ndarray:
        """Map a (perturbed) high-resolution image back to uint8 (N, 28, 28)."""
        return downscale(hires, self.scale)
