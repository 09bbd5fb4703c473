"""A small synthetic instance-segmentation dataset in COCO format.

Each image is a textured background with one to ``max_objects`` filled shapes (circle,
triangle, square, ...: one category per shape) that do not overlap, so every polygon is also the
exact visible mask. Colours are random (shapes must be told apart by outline, not by colour)
and always contrast with the background they cover. Layout::

    OUT_DIR/train/000000.png ...
    OUT_DIR/val/000000.png ...
    OUT_DIR/annotations/instances_train.json
    OUT_DIR/annotations/instances_val.json

The content is a pure function of ``seed`` and the size arguments.
"""
from __future__ import annotations

import json
import os
import os.path as osp

import numpy as np

from .common import (
    SHAPES,
    contrasting_color,
    fill_polygon,
    make_rng,
    place_shapes,
    polygon_mask,
    shape_polygon,
    textured_background,
    write_image,
)

__all__ = ['CLASSES', 'generate', 'make_split']

CLASSES: tuple[str, ...] = SHAPES[:3]  # circle, triangle, square
_SPLIT_SALT = {'train': 1, 'val': 2}


def _render(rng: np.random.Generator, size: int, classes, max_objects: int):
    """One image and its instances as (category index, polygon, mask)."""
    img = textured_background(rng, size, size)
    num = int(rng.integers(1, max_objects + 1))
    # Radii relative to the image: small enough that up to max_objects fit without overlap.
    placements = place_shapes(rng, size, size, num, len(classes), min_radius=size * 0.09,
                              max_radius=size * 0.22, max_overlap=0.0)
    instances = []
    for p in placements:
        # rounded as written to the json, so that the painted pixels are the annotated ones
        poly = np.round(shape_polygon(classes[p.label], p.cx, p.cy, p.radius, p.angle), 2)
        covered = polygon_mask(poly, size, size)
        color = contrasting_color(rng, img[covered], min_distance=110.0)
        mask = fill_polygon(img, poly, color, rng=rng)
        instances.append((p.label, poly, mask))
    return img, instances


def make_split(out_dir: str, split: str, num_images: int, seed: int = 0, image_size: int = 128,
               classes=CLASSES, max_objects: int = 4) -> str:
    """Write the images of one split and its COCO json; returns the json path."""
    if split not in _SPLIT_SALT:
        raise ValueError(f'split must be one of {sorted(_SPLIT_SALT)}, got {split!r}')
    img_dir = osp.join(out_dir, split)
    os.makedirs(img_dir, exist_ok=True)
    images, annotations = [], []
    for idx in range(num_images):
        rng = make_rng(seed, _SPLIT_SALT[split], idx)
        img, instances = _render(rng, image_size, classes, max_objects)
        file_name = f'{idx:06d}.png'
        write_image(osp.join(img_dir, file_name), img)
        images.append(dict(id=idx + 1, file_name=file_name, height=image_size, width=image_size))
        for label, poly, mask in instances:
            x0, y0 = poly.min(axis=0)
            x1, y1 = poly.max(axis=0)
            annotations.append(dict(
                id=len(annotations) + 1,
                image_id=idx + 1,
                category_id=label + 1,
                segmentation=[[round(float(v), 2) for v in poly.reshape(-1)]],
                area=float(mask.sum()),
                bbox=[round(float(x0), 2), round(float(y0), 2),
                      round(float(x1 - x0), 2), round(float(y1 - y0), 2)],
                iscrowd=0))
    coco = dict(
        info=dict(description=f'InternImage synthetic shapes demo ({split}), seed {seed}'),
        images=images,
        annotations=annotations,
        categories=[dict(id=i + 1, name=name, supercategory='shape')
                    for i, name in enumerate(classes)])
    ann_dir = osp.join(out_dir, 'annotations')
    os.makedirs(ann_dir, exist_ok=True)
    ann_file = osp.join(ann_dir, f'instances_{split}.json')
    with open(ann_file, 'w') as f:
        json.dump(coco, f)
    return ann_file


def generate(out_dir: str = 'data/demo_coco', seed: int = 0, num_train: int = 400,
             num_val: int = 80, image_size: int = 128, max_objects: int = 4) -> dict:
    """Write the train and val splits; returns ``{split: annotation file}``."""
    return {
        'train': make_split(out_dir, 'train', num_train, seed, image_size, max_objects=max_objects),
        'val': make_split(out_dir, 'val', num_val, seed, image_size, max_objects=max_objects),
    }
