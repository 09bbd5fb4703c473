"""A small synthetic semantic-segmentation dataset in the ADE20K (ADEChallengeData2016) layout.

::

    out_dir/
        images/training/demo_000000.jpg ...      annotations/training/demo_000000.png ...
        images/validation/demo_000000.jpg ...    annotations/validation/demo_000000.png ...

Label maps are 8-bit PNGs with ADE20K's convention: 0 means "unlabelled" and becomes the ignore
index (255) under ``reduce_zero_label=True``; real classes start at 1. Here class 1 is the textured
``background`` and classes 2.. are the shapes of :data:`CLASSES`. As in hand-drawn ADE20K masks,
the one-pixel band on either side of every shape outline is left unlabelled (0), so that a
prediction is not judged on pixels whose class anti-aliasing makes ambiguous.
"""
from __future__ import annotations

import os

import cv2
import numpy as np

from .common import (
    contrasting_color,
    fill_polygon,
    make_rng,
    place_shapes,
    polygon_mask,
    shape_polygon,
    textured_background,
    write_image,
)

__all__ = ['CLASSES', 'generate', 'make_sample']

# Class names after ``reduce_zero_label`` (index i here is PNG value i + 1).
SHAPE_CLASSES: tuple[str, ...] = ('circle', 'triangle', 'square', 'cross')
CLASSES: tuple[str, ...] = ('background', *SHAPE_CLASSES)
PALETTE: tuple[tuple[int, int, int], ...] = (
    (120, 120, 120), (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48))

_SPLITS = {'training': 1, 'validation': 2}  # salts for the per-image random generators


def make_sample(rng: np.random.Generator, size: int, max_shapes: int = 4
                ) -> tuple[np.ndarray, np.ndarray]:
    """One (size, size, 3) RGB image and its (size, size) uint8 ADE20K-style label map."""
    img = textured_background(rng, size, size)
    label = np.ones((size, size), dtype=np.uint8)  # PNG value 1 = background
    num = int(rng.integers(1, max_shapes + 1))
    placements = place_shapes(rng, size, size, num, len(SHAPE_CLASSES),
                              min_radius=size * 0.12, max_radius=size * 0.25)
    for p in placements:
        poly = shape_polygon(SHAPE_CLASSES[p.label], p.cx, p.cy, p.radius, p.angle)
        under = img[polygon_mask(poly, size, size)]
        if under.size == 0:
            continue
        painted = fill_polygon(img, poly, contrasting_color(rng, under), rng=rng)
        label[painted] = p.label + 2  # PNG values 2.. are the shapes
    # Unlabelled band: any pixel whose 3x3 neighbourhood holds more than one class.
    kernel = np.ones((3, 3), np.uint8)
    edge = cv2.dilate(label, kernel) != cv2.erode(label, kernel)
    label[edge] = 0
    return img, label


def generate(out_dir: str, seed: int = 0, num_train: int = 1000, num_val: int = 50,
             size: int = 128, max_shapes: int = 4) -> dict:
    """Write the dataset under ``out_dir``; the same arguments always give the same files.

    Args:
        out_dir: Dataset root (``data_root`` in the configs).
        seed: Seed of all random choices.
        num_train: Images in ``images/training``.
        num_val: Images in ``images/validation``.
        size: Side of the square images in pixels.
        max_shapes: Most shapes drawn in one image (at least one is).

    Returns:
        ``{'classes': CLASSES, 'palette': PALETTE, 'training': n, 'validation': n}``.
    """
    if size < 32:
        raise ValueError(f'size must be >= 32 pixels, got {size}')
    counts = {'training': int(num_train), 'validation': int(num_val)}
    for split, n in counts.items():
        img_dir = os.path.join(out_dir, 'images', split)
        ann_dir = os.path.join(out_dir, 'annotations', split)
        os.makedirs(ann_dir, exist_ok=True)
        for i in range(n):
            img, label = make_sample(make_rng(seed, _SPLITS[split], i), size, max_shapes)
            write_image(os.path.join(img_dir, f'demo_{i:06d}.jpg'), img)
            path = os.path.join(ann_dir, f'demo_{i:06d}.png')
            if not cv2.imwrite(path, label):
                raise OSError(f'could not write label map {path!r}')
    return {'classes': CLASSES, 'palette': PALETTE, **counts}
