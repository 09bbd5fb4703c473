"""A small synthetic classification dataset in the ImageNet layout that mmpretrain reads.

::

    out_dir/
        train/<class>/<class>_000000.png ...
        val/<class>/<class>_000000.png ...
        meta/train.txt   meta/val.txt      # "<class>/<file> <label>" per line, as for ImageNet

Each image shows one shape of the class (:data:`CLASSES`) at a random position, size, angle and
colour on a textured background, so the label is the outline and nothing simpler.
"""
from __future__ import annotations

import os

import numpy as np

from .common import (
    contrasting_color,
    fill_polygon,
    make_rng,
    polygon_mask,
    shape_polygon,
    textured_background,
    write_image,
)

__all__ = ['CLASSES', 'generate', 'make_sample']

CLASSES: tuple[str, ...] = ('circle', 'triangle', 'square', 'cross')

_SPLITS = {'train': 1, 'val': 2}  # salts for the per-image random generators


def make_sample(rng: np.random.Generator, label: int, size: int) -> np.ndarray:
    """A (size, size, 3) RGB image with one shape of class ``label``."""
    # Half-contrast texture: the outline, not the background's stripes, should carry the label.
    img = (textured_background(rng, size, size) * 0.5 + 64).astype(np.uint8)
    radius = float(rng.uniform(0.28, 0.42)) * size
    cx, cy = (float(rng.uniform(radius + 1, size - radius - 1)) for _ in range(2))
    poly = shape_polygon(CLASSES[label], cx, cy, radius, float(rng.uniform(0, 2 * np.pi)))
    color = contrasting_color(rng, img[polygon_mask(poly, size, size)])
    fill_polygon(img, poly, color, rng=rng)
    return img


def generate(out_dir: str, seed: int = 0, num_train_per_class: int = 200,
             num_val_per_class: int = 50, size: int = 64) -> dict:
    """Write the dataset under ``out_dir``; the same arguments always give the same files.

    Args:
        out_dir: Dataset root (``data_root`` in the configs).
        seed: Seed of all random choices.
        num_train_per_class: Images per class in ``train``.
        num_val_per_class: Images per class in ``val``.
        size: Side of the square images in pixels.

    Returns:
        ``{'classes': CLASSES, 'train': n, 'val': n}`` (image counts).
    """
    if size < 32:
        raise ValueError(f'size must be >= 32 pixels, got {size}')
    per_class = {'train': int(num_train_per_class), 'val': int(num_val_per_class)}
    os.makedirs(os.path.join(out_dir, 'meta'), exist_ok=True)
    for split, n in per_class.items():
        lines = []
        for label, name in enumerate(CLASSES):
            for i in range(n):
                rng = make_rng(seed, _SPLITS[split], label, i)
                rel = f'{name}/{name}_{i:06d}.png'
                write_image(os.path.join(out_dir, split, rel), make_sample(rng, label, size))
                lines.append(f'{rel} {label}\n')
        with open(os.path.join(out_dir, 'meta', f'{split}.txt'), 'w') as f:
            f.writelines(lines)
    return {'classes': CLASSES, **{k: v * len(CLASSES) for k, v in per_class.items()}}
