"""The synthetic COCO-format demo dataset: deterministic, valid for pycocotools, exact masks."""
from __future__ import annotations

import filecmp
import json
import os
import os.path as osp
import sys
from collections import Counter

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

from mmdet_custom.datasets import check_coco_annotations  # noqa: E402
from tools import make_demo_data  # noqa: E402
from tools.demo_data import coco as demo_coco  # noqa: E402
from tools.demo_data.common import SHAPES, make_rng, place_shapes, polygon_mask, shape_polygon  # noqa: E402,I001


def _tree(root: str) -> list[str]:
    return sorted(osp.relpath(osp.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_same_seed_same_files_other_seed_other_images(tmp_path):
    a, b, c = (str(tmp_path / n) for n in 'abc')
    for out, seed in ((a, 0), (b, 0), (c, 1)):
        demo_coco.generate(out, seed=seed, num_train=4, num_val=2, image_size=96)
    assert _tree(a) == _tree(b) == _tree(c)
    assert all(filecmp.cmp(osp.join(a, f), osp.join(b, f), shallow=False) for f in _tree(a))
    assert not filecmp.cmp(osp.join(a, 'train', '000000.png'), osp.join(c, 'train', '000000.png'),
                           shallow=False)


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Binary dilation by a (2 radius + 1)^2 square, by shifting (no scipy needed)."""
    h, w = mask.shape
    padded = np.pad(mask, radius)
    out = np.zeros_like(mask)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out |= padded[dy:dy + h, dx:dx + w]
    return out


def test_annotations_match_the_pixels(tmp_path):
    out = str(tmp_path / 'demo')
    files = demo_coco.generate(out, seed=3, num_train=6, num_val=2, image_size=128)
    for split, ann_file in files.items():
        check_coco_annotations(ann_file, osp.join(out, split))  # the tools' own validation
        coco = COCO(ann_file)
        assert [c['name'] for c in coco.loadCats(coco.getCatIds())] == list(demo_coco.CLASSES)
        for img_id in coco.getImgIds():
            info = coco.loadImgs(img_id)[0]
            image = cv2.imread(osp.join(out, split, info['file_name']))
            assert image.shape == (info['height'], info['width'], 3)
            anns = coco.loadAnns(coco.getAnnIds(imgIds=img_id))
            assert 1 <= len(anns) <= 4
            rgb = image[:, :, ::-1].astype(np.float64)
            masks = [coco.annToMask(ann).astype(bool) for ann in anns]
            union = np.zeros(image.shape[:2], dtype=int)
            for i, (ann, m) in enumerate(zip(anns, masks)):
                union += m
                # the pixels, not pycocotools, decide: the fill is at least 110 (RGB distance)
                # from the background it covers (contrasting_color); shading, clipping and the
                # background changing between the shape and its surroundings cost some of that,
                # so a mask on the painted shape still stands out from a 2 px ring around it
                others = np.zeros_like(m)
                for j, o in enumerate(masks):
                    if j != i:
                        others |= _dilate(o, 1)
                ring = _dilate(m, 2) & ~m & ~others
                assert ring.sum() >= 0.5 * (_dilate(m, 2).sum() - m.sum())  # mostly uncovered
                inside, outside = rgb[m].mean(axis=0), rgb[ring].mean(axis=0)
                assert np.linalg.norm(inside - outside) > 50, (split, img_id, ann['id'])
                # and the mask holds one fill: uniform up to its shading (a +-20 ramp across the
                # shape) and noise, about 10 on average; a mask off by 3 px mixes in background
                # and averages 16 or more
                assert np.abs(rgb[m] - inside).max(axis=1).mean() < 15, (split, img_id, ann['id'])
                # area: the polygon's own (shoelace) area up to rasterisation at the outline
                poly = np.asarray(ann['segmentation'][0], dtype=np.float64).reshape(-1, 2)
                px, py = poly[:, 0], poly[:, 1]
                shoelace = 0.5 * abs(np.dot(px, np.roll(py, 1)) - np.dot(py, np.roll(px, 1)))
                assert ann['area'] == pytest.approx(shoelace, rel=0.05)
                assert ann['area'] == int(m.sum())  # and it is the count of painted pixels
                # bbox: the polygon's extent, and it holds the mask's pixels
                x, y, w, h = ann['bbox']
                np.testing.assert_allclose([x, y, x + w, y + h],
                                           [px.min(), py.min(), px.max(), py.max()], atol=1.0)
                ys, xs = np.nonzero(m)
                assert x - 1 <= xs.min() and xs.max() <= x + w + 1
                assert y - 1 <= ys.min() and ys.max() <= y + h + 1
                rle = mask_utils.frPyObjects(ann['segmentation'], info['height'], info['width'])
                assert mask_utils.area(mask_utils.merge(rle)) > 0
            assert union.max() <= 1  # instances do not overlap: polygons are the visible masks


@pytest.mark.parametrize('kind', SHAPES)
def test_shape_masks_have_the_expected_area(kind):
    poly = shape_polygon(kind, 50.0, 50.0, 30.0, angle=0.3)
    x, y = poly[:, 0], poly[:, 1]
    shoelace = 0.5 * abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1)))
    mask = polygon_mask(poly, 100, 100)
    assert mask.sum() == pytest.approx(shoelace, rel=0.05)


def test_placements_stay_inside_and_apart():
    rng = make_rng(0)
    for _ in range(20):
        ps = place_shapes(rng, 128, 128, 4, 3, 10, 28, max_overlap=0.0)
        for i, p in enumerate(ps):
            assert p.radius <= p.cx <= 128 - p.radius and p.radius <= p.cy <= 128 - p.radius
            for q in ps[i + 1:]:
                assert np.hypot(p.cx - q.cx, p.cy - q.cy) >= p.radius + q.radius - 1e-9


@pytest.mark.slow
def test_make_demo_data_det(tmp_path):
    assert make_demo_data.main(['--task', 'det', '--out', str(tmp_path)]) == 0
    root = tmp_path / 'demo_coco'
    # generate()'s defaults: 400 training and 80 validation images, each with one to
    # max_objects=4 shapes (the count is drawn uniformly, so every count occurs)
    for split, num_images in (('train', 400), ('val', 80)):
        with open(root / 'annotations' / f'instances_{split}.json') as f:
            coco = json.load(f)
        assert len(coco['images']) == num_images == len(os.listdir(root / split))
        image_ids = [im['id'] for im in coco['images']]
        assert len(set(image_ids)) == num_images
        ann_ids = [a['id'] for a in coco['annotations']]
        assert len(set(ann_ids)) == len(ann_ids)
        per_image = Counter(a['image_id'] for a in coco['annotations'])
        assert set(per_image) == set(image_ids)  # no image without shapes, no stray image_id
        assert set(per_image.values()) == {1, 2, 3, 4}
        assert len(coco['annotations']) == sum(per_image[i] for i in image_ids)
