"""Building blocks shared by the synthetic demo datasets (COCO, ADE20K and ImageNet layouts).

Every generator draws filled shapes on a textured background from one ``numpy`` random
generator, so a dataset is a pure function of its seed. The pieces here:

- :func:`textured_background`: smooth colour noise plus stripes, so that a model has to find
  shapes by their outline and not by a flat background colour;
- :func:`shape_polygon`: the outline of a named shape (``SHAPES``) as a float polygon;
- :func:`place_shapes`: random, mostly non-overlapping placements in an image;
- :func:`fill_polygon` / :func:`polygon_mask`: rasterise a polygon onto an image or a mask;
- :func:`contrasting_color`: a fill colour that stands out from the pixels it covers;
- :func:`write_image`: save an RGB array (PNG or JPEG by suffix).
"""
from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass

import cv2
import numpy as np

__all__ = [
    'SHAPES', 'Placement', 'textured_background', 'shape_polygon', 'place_shapes',
    'fill_polygon', 'polygon_mask', 'contrasting_color', 'write_image', 'make_rng',
]

# Shapes whose outlines differ clearly even when small; the order is the class order.
SHAPES: tuple[str, ...] = ('circle', 'triangle', 'square', 'star', 'hexagon', 'cross')


def make_rng(seed: int, *salt: int) -> np.random.Generator:
    """A generator keyed by a seed and optional integers (split, image index)."""
    return np.random.default_rng([int(seed), *map(int, salt)])


def textured_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A (height, width, 3) uint8 RGB texture: low-frequency colour noise and faint stripes."""
    # Coarse noise upsampled bicubically gives soft blobs of colour.
    cells = int(rng.integers(3, 7))
    coarse = rng.uniform(40, 215, size=(cells, cells, 3)).astype(np.float32)
    img = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    # Oriented stripes add edges that are not object boundaries.
    angle = rng.uniform(0, math.pi)
    period = rng.uniform(6, 20)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = (xx * math.cos(angle) + yy * math.sin(angle)) * (2 * math.pi / period)
    img += (rng.uniform(8, 25) * np.sin(phase))[..., None]
    img += rng.normal(0, 6, size=img.shape).astype(np.float32)  # sensor-like grain
    return np.clip(img, 0, 255).astype(np.uint8)


def shape_polygon(kind: str, cx: float, cy: float, radius: float,
                  angle: float = 0.0) -> np.ndarray:
    """Outline of ``kind`` centred at (cx, cy) with circumradius ``radius``.

    Returns:
        (K, 2) float64 array of (x, y) vertices, counter-clockwise in image coordinates.
    """
    if kind == 'circle':
        ts = np.linspace(0, 2 * math.pi, 32, endpoint=False)
        rs = np.full_like(ts, radius)
    elif kind in ('triangle', 'square', 'hexagon'):
        n = {'triangle': 3, 'square': 4, 'hexagon': 6}[kind]
        ts = np.arange(n) * (2 * math.pi / n)
        rs = np.full_like(ts, radius)
    elif kind == 'star':
        ts = np.arange(10) * (math.pi / 5)
        rs = np.where(np.arange(10) % 2 == 0, radius, 0.45 * radius)
    elif kind == 'cross':
        # A plus sign: 12 vertices, arm half-width a third of the radius.
        a, r = radius / 3, radius
        pts = np.array([(a, r), (a, a), (r, a), (r, -a), (a, -a), (a, -r), (-a, -r),
                        (-a, -a), (-r, -a), (-r, a), (-a, a), (-a, r)], dtype=np.float64)
        c, s = math.cos(angle), math.sin(angle)
        rot = pts @ np.array([[c, s], [-s, c]])
        return rot + np.array([cx, cy])
    else:
        raise ValueError(f'kind must be one of {SHAPES}, got {kind!r}')
    ts = ts + angle
    return np.stack([cx + rs * np.cos(ts), cy + rs * np.sin(ts)], axis=1)


@dataclass
class Placement:
    """One shape to draw: its class index into the caller's shape list, centre, size, angle."""
    label: int
    cx: float
    cy: float
    radius: float
    angle: float


def place_shapes(rng: np.random.Generator, height: int, width: int, num: int,
                 num_classes: int, min_radius: float, max_radius: float,
                 max_overlap: float = 0.3, margin: float = 2.0,
                 tries: int = 50) -> list[Placement]:
    """Draw up to ``num`` placements that stay inside the image and overlap little.

    Two shapes may overlap by at most ``max_overlap`` times the smaller radius, so that every
    instance keeps most of its outline visible. Fewer than ``num`` come back when the image is
    too crowded after ``tries`` attempts per shape.
    """
    if not 0 < min_radius <= max_radius:
        raise ValueError(f'need 0 < min_radius <= max_radius, got {min_radius}, {max_radius}')
    if 2 * (max_radius + margin) > min(height, width):
        raise ValueError(f'max_radius={max_radius} does not fit in a {height}x{width} image')
    placed: list[Placement] = []
    for _ in range(num):
        for _ in range(tries):
            r = float(rng.uniform(min_radius, max_radius))
            cx = float(rng.uniform(r + margin, width - r - margin))
            cy = float(rng.uniform(r + margin, height - r - margin))
            ok = all(math.hypot(cx - p.cx, cy - p.cy) >= r + p.radius - max_overlap * min(r, p.radius)
                     for p in placed)
            if ok:
                placed.append(Placement(int(rng.integers(num_classes)), cx, cy, r,
                                        float(rng.uniform(0, 2 * math.pi))))
                break
    return placed


def polygon_mask(poly: np.ndarray, height: int, width: int) -> np.ndarray:
    """Boolean (height, width) mask of the polygon, rasterised by pycocotools.

    The same pixels as ``COCO.annToMask`` gives for the polygon as a COCO segmentation, so the
    painted shapes and their COCO annotations agree exactly.
    """
    from pycocotools import mask as mask_utils

    flat = np.asarray(poly, dtype=np.float64).reshape(-1).tolist()
    if len(flat) < 6:
        raise ValueError(f'poly must have at least 3 (x, y) vertices, got {len(flat) // 2}')
    with warnings.catch_warnings():  # pycocotools 2.0 vs numpy 2 `copy=` deprecation notice
        warnings.simplefilter('ignore', DeprecationWarning)
        rle = mask_utils.frPyObjects([flat], height, width)
        return mask_utils.decode(rle)[:, :, 0].astype(bool)


def fill_polygon(img: np.ndarray, poly: np.ndarray, color, shade: bool = True,
                 rng: np.random.Generator | None = None) -> np.ndarray:
    """Paint ``poly`` onto ``img`` (in place) and return the boolean mask of painted pixels.

    With ``shade`` the fill gets a gentle linear gradient (and a little noise when ``rng`` is
    given), so shapes are not perfectly flat either.
    """
    h, w = img.shape[:2]
    mask = polygon_mask(poly, h, w)
    if not mask.any():
        return mask
    fill = np.broadcast_to(np.asarray(color, dtype=np.float32), (h, w, 3)).copy()
    if shade:
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        x0, y0 = np.asarray(poly).mean(axis=0)
        span = max(np.ptp(np.asarray(poly)[:, 0]), 1.0)
        fill += (((xx - x0) + (yy - y0)) / span * 20.0)[..., None]
        if rng is not None:
            fill += rng.normal(0, 4, size=fill.shape).astype(np.float32)
    img[mask] = np.clip(fill[mask], 0, 255).astype(np.uint8)
    return mask


def contrasting_color(rng: np.random.Generator, under: np.ndarray,
                      min_distance: float = 90.0, tries: int = 20) -> tuple[int, int, int]:
    """A random RGB colour at least ``min_distance`` (Euclidean) from the mean of ``under``.

    ``under`` is the (M, 3) set of background pixels the shape will cover. Falls back to the
    colour farthest from that mean among the tries.
    """
    mean = np.asarray(under, dtype=np.float32).reshape(-1, 3).mean(axis=0)
    best, best_d = None, -1.0
    for _ in range(tries):
        c = rng.integers(0, 256, size=3)
        d = float(np.linalg.norm(c - mean))
        if d >= min_distance:
            return tuple(int(v) for v in c)
        if d > best_d:
            best, best_d = c, d
    return tuple(int(v) for v in best)


def write_image(path: str, img: np.ndarray) -> None:
    """Write an RGB uint8 array; the format follows the suffix (``.png``, ``.jpg``)."""
    os.makedirs(os.path.dirname(path) or '.', exist_ok=True)
    params = [cv2.IMWRITE_JPEG_QUALITY, 95] if path.lower().endswith(('.jpg', '.jpeg')) else []
    if not cv2.imwrite(path, cv2.cvtColor(img, cv2.COLOR_RGB2BGR), params):
        raise OSError(f'could not write image {path!r}')
