"""mmdet_custom.datasets.checks: COCO annotation files are checked up front, entry by entry in
what they accept and refuse, and cheaply on a COCO train2017-sized file."""
from __future__ import annotations

import json
import os
import os.path as osp
import time

import numpy as np
import pytest

from mmdet_custom.datasets.checks import (
                                          _annotation_problem,
                                          check_coco_annotations,
                                          check_datasets,
)

# COCO train2017: images and instance annotations
COCO_TRAIN_IMAGES = 118_287
COCO_TRAIN_ANNOTATIONS = 860_001


def write_synthetic_coco(path: str, num_images: int, num_annotations: int,
                         polygon_points: int = 20, img_dir: str | None = None,
                         seed: int = 0) -> None:
    """A valid COCO instances file of the given size (polygons of ``polygon_points`` points).

    Written as text from a pool of pre-formatted polygons, so that even COCO train2017's size
    (~400 MB with 20-point polygons) takes seconds. With ``img_dir``, the images are created
    there as empty files.
    """
    rng = np.random.default_rng(seed)
    pool = []
    for _ in range(257):
        xy = np.round(rng.uniform(0, 600, size=2 * polygon_points), 2)
        x0, y0 = xy[0::2].min(), xy[1::2].min()
        w, h = xy[0::2].max() - x0, xy[1::2].max() - y0
        pool.append((','.join(f'{v:.2f}' for v in xy), f'{x0:.2f},{y0:.2f},{w:.2f},{h:.2f}',
                     f'{w * h / 2:.1f}'))
    with open(path, 'w') as f:
        f.write('{"info":{"description":"synthetic"},"licenses":[],"images":[')
        f.write(','.join(f'{{"license":1,"file_name":"{i:012d}.jpg","height":480,"width":640,'
                         f'"date_captured":"2013-11-14 16:28:13","id":{i}}}'
                         for i in range(1, num_images + 1)))
        f.write('],"annotations":[')
        f.write(','.join(
            f'{{"segmentation":[[{poly}]],"area":{area},"iscrowd":0,'
            f'"image_id":{1 + i % num_images},"bbox":[{box}],"category_id":{1 + i % 80},'
            f'"id":{i + 1}}}'
            for i, (poly, box, area) in ((i, pool[i % len(pool)]) for i in range(num_annotations))))
        f.write('],"categories":[')
        f.write(','.join(f'{{"supercategory":"thing","id":{c},"name":"class{c}"}}'
                         for c in range(1, 81)))
        f.write(']}')
    if img_dir is not None:
        os.makedirs(img_dir, exist_ok=True)
        for i in range(1, num_images + 1):
            open(osp.join(img_dir, f'{i:012d}.jpg'), 'wb').close()


@pytest.fixture
def small(tmp_path):
    """A valid file of 5 images (present on disk) and 12 annotations, and its image folder."""
    ann_file, img_dir = str(tmp_path / 'instances.json'), str(tmp_path / 'images')
    write_synthetic_coco(ann_file, 5, 12, polygon_points=4, img_dir=img_dir)
    return ann_file, img_dir


def _rewrite(ann_file: str, change) -> None:
    with open(ann_file) as f:
        coco = json.load(f)
    change(coco)
    with open(ann_file, 'w') as f:
        json.dump(coco, f)


def test_valid_file_passes(small):
    check_coco_annotations(*small, training=True)


def _set(i, key, value):
    return lambda coco: coco['annotations'][i].__setitem__(key, value)


@pytest.mark.parametrize('change, index, message', [
    (_set(3, 'bbox', [1, 2, 3]), 3, 'bbox must be [x, y, w, h]'),
    (_set(7, 'bbox', [1, 2, -3, 4]), 7, 'with w, h >= 0'),
    (_set(4, 'bbox', [1, 2, '3', 4]), 4, 'bbox must be'),
    (_set(5, 'bbox', [1, 2, float('nan'), 4]), 5, 'finite numbers'),
    (_set(6, 'bbox', [1, 2, True, 4]), 6, 'bbox must be'),
    (_set(2, 'image_id', 999), 2, 'image_id 999, which is not in "images"'),
    (_set(2, 'image_id', [1]), 2, 'image_id [1], which is not in "images"'),
    (_set(9, 'category_id', 0), 9, 'category_id 0, which is not in "categories"'),
    (_set(1, 'segmentation', [[1, 2, 3, 4]]), 1, 'polygons'),
    (_set(1, 'segmentation', [[1, 2, 3, 4, 5, 6, 7]]), 1, 'polygons'),
    (_set(1, 'segmentation', [[1, 2, 3, 4, 5, None]]), 1, 'polygons'),
    (_set(1, 'segmentation', [1, 2, 3, 4, 5, 6]), 1, 'polygons'),
    (_set(11, 'segmentation', {'counts': 'abc'}), 11, 'RLE segmentation needs'),
    (_set(10, 'segmentation', 'abc'), 10, 'must be polygons or RLE'),
    (lambda coco: coco['annotations'].__setitem__(8, [1, 2]), 8, 'must be an object'),
])
def test_bad_annotation_is_named_with_its_index(small, change, index, message):
    ann_file, img_dir = small
    _rewrite(ann_file, change)
    with pytest.raises(ValueError) as info:
        check_coco_annotations(ann_file, img_dir)
    assert f'malformed annotation file {ann_file}: annotations[{index}]' in str(info.value)
    assert message in str(info.value)


def test_the_fast_path_accepts_what_the_entry_rule_accepts(small):
    """Valid edge cases pass both ways: RLE masks, no segmentation, int coordinates, w = 0."""
    ann_file, img_dir = small

    def change(coco):
        anns = coco['annotations']
        anns[0]['segmentation'] = {'counts': 'abc', 'size': [480, 640]}
        del anns[1]['segmentation']
        anns[2]['segmentation'] = [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12, 13, 14]]
        anns[3]['bbox'] = [0, 0, 0, 5]
    _rewrite(ann_file, change)
    with open(ann_file) as f:
        coco = json.load(f)
    ids = {img['id'] for img in coco['images']}
    cats = {c['id'] for c in coco['categories']}
    assert all(_annotation_problem(a, ids, cats) is None for a in coco['annotations'])
    check_coco_annotations(ann_file, img_dir, training=True)


def test_structure_problems_are_named(small):
    ann_file, img_dir = small
    _rewrite(ann_file, lambda coco: coco['images'][2].pop('file_name'))
    with pytest.raises(ValueError, match=r'images\[2\] needs "id" and "file_name"'):
        check_coco_annotations(ann_file, img_dir)
    _rewrite(ann_file, lambda coco: (coco['images'][2].update(file_name=f'{3:012d}.jpg'),
                                     coco['categories'].__setitem__(0, 'person')))
    with pytest.raises(ValueError, match=r'categories\[0\] needs "id" and "name"'):
        check_coco_annotations(ann_file)


def test_missing_image_file_is_named(small):
    ann_file, img_dir = small
    os.remove(osp.join(img_dir, f'{4:012d}.jpg'))
    with pytest.raises(FileNotFoundError) as info:
        check_coco_annotations(ann_file, img_dir)
    assert osp.join(img_dir, f'{4:012d}.jpg') in str(info.value) and 'images[3]' in str(info.value)
    check_coco_annotations(ann_file, None)  # without an image folder the files are not looked up
    with pytest.raises(FileNotFoundError, match='images'):
        check_coco_annotations(ann_file, str(osp.join(img_dir, 'nowhere')))


def test_check_datasets_walks_wrappers_and_checks_each_file_once(small, monkeypatch):
    from mmengine.config import Config

    from mmdet_custom.datasets import checks

    ann_file, img_dir = small
    root = osp.dirname(ann_file) + '/'
    leaf = dict(type='CocoDataset', data_root=root, ann_file='instances.json',
                data_prefix=dict(img='images/'))
    cfg = Config(dict(
        train_dataloader=dict(dataset=dict(type='RepeatDataset', times=2, dataset=leaf)),
        val_dataloader=dict(dataset=leaf), test_dataloader=dict(dataset=leaf)))
    calls = []
    monkeypatch.setattr(checks, 'check_coco_annotations', lambda *a, **k: calls.append((a, k)))
    check_datasets(cfg)
    assert calls == [((root + 'instances.json', root + 'images/'), {'training': True})]
    calls.clear()
    check_datasets(cfg, loaders=('test_dataloader',))
    assert calls == [((root + 'instances.json', root + 'images/'), {'training': False})]


@pytest.mark.slow
def test_a_train2017_sized_image_list_costs_little_beyond_parsing(tmp_path):
    """COCO train2017's 118,287 images (present on disk), one 20-point polygon each (59 MB of
    JSON): the whole check takes at most 2.5x the bare ``json.load`` that any reader of the file
    pays. Measured on the 2-core CI machine: 1.2x for this file, 1.3-1.4x for train2017's full
    860,001 annotations (``write_synthetic_coco(path, COCO_TRAIN_IMAGES, COCO_TRAIN_ANNOTATIONS,
    img_dir=...)``, 343 MB), where the validation itself costs a quarter of the parse."""
    ann_file, img_dir = str(tmp_path / 'instances_train.json'), str(tmp_path / 'train')
    write_synthetic_coco(ann_file, COCO_TRAIN_IMAGES, COCO_TRAIN_IMAGES, img_dir=img_dir)
    start = time.perf_counter()
    with open(ann_file, 'rb') as f:
        json.load(f)
    parse = time.perf_counter() - start
    start = time.perf_counter()
    check_coco_annotations(ann_file, img_dir, training=True)
    check = time.perf_counter() - start
    print(f'{osp.getsize(ann_file) / 2**20:.0f} MB: json.load {parse:.1f} s, check {check:.1f} s')
    assert check < 2.5 * parse, (parse, check)
    # and the last image missing is still found
    os.remove(osp.join(img_dir, f'{COCO_TRAIN_IMAGES:012d}.jpg'))
    with pytest.raises(FileNotFoundError, match=rf'images\[{COCO_TRAIN_IMAGES - 1}\]'):
        check_coco_annotations(ann_file, img_dir, training=True)
