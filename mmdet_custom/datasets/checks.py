"""Check COCO-format annotation files before a run reads them.

mmdet reads a COCO json lazily and trusts it: a box with a negative size, a polygon with an odd
number of coordinates, an annotation of an image or category that is not listed, or a missing
image file stops (or silently corrupts) a run hours in, far from the file that caused it.
:func:`check_datasets` checks every local COCO annotation file a config's dataloaders will read
and names the file and the offending entry; ``tools/train.py`` and ``tools/test.py`` call it
(``--skip-data-check`` turns it off), and any other tool can.

The check is one pass of whole-column operations over the parsed file (element types, lengths and
sign checks on all boxes and polygon coordinates at once, image files looked up in one listing per
directory), so that a COCO train2017-sized file (118k images, 860k annotations) costs little
beyond parsing its JSON; the entry-by-entry walk that names the culprit only runs once a problem
is known to exist.
"""
from __future__ import annotations

import json
import math
import os
import os.path as osp
from collections.abc import Iterator
from itertools import chain, repeat
from typing import Any

import numpy as np

__all__ = ['check_coco_annotations', 'check_datasets', 'coco_datasets']

_NUMBER = (int, float)


def _bad(ann_file: str, what: str) -> ValueError:
    return ValueError(f'malformed annotation file {ann_file}: {what}')


def _is_number(v: Any) -> bool:
    try:
        return type(v) in _NUMBER and math.isfinite(v)
    except OverflowError:  # an int beyond float range
        return False


def _all_numbers(values: list) -> bool:
    """Whether every value is an ``int`` or a finite ``float`` (``bool`` and text are not).

    A finite sum certifies that every term is finite (an overflowing one only sends the caller
    to the entry-by-entry check).
    """
    if not set(map(type, values)) <= set(_NUMBER):
        return False
    try:
        return math.isfinite(sum(values))
    except OverflowError:  # an int beyond float range
        return False


def _listed(ann_file: str, items: list, what: str, keys: tuple[str, ...]) -> None:
    """Every entry of ``items`` is an object with ``keys``."""
    try:
        if set(map(type, items)) <= {dict} and all(k in item for item in items for k in keys):
            return
    except TypeError:
        pass
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not set(keys) <= item.keys():
            need = ' and '.join(f'"{k}"' for k in keys)
            raise _bad(ann_file, f'{what}[{i}] needs {need}, got {item!r}')


def _ids(values: list) -> set:
    return {v for v in values if v.__hash__ is not None}


def _annotation_problem(ann: Any, image_ids: set, cat_ids: set) -> str | None:
    """What is wrong with one annotation (None if nothing): the rule, entry by entry."""
    if not isinstance(ann, dict):
        return f'must be an object, got {ann!r}'
    ident = f'(id {ann.get("id")!r})'
    for key, ids, where in (('image_id', image_ids, 'images'),
                            ('category_id', cat_ids, 'categories')):
        value = ann.get(key)
        if value.__hash__ is None or value not in ids:
            return f'{ident} has {key} {value!r}, which is not in "{where}"'
    bbox = ann.get('bbox')
    if (not isinstance(bbox, list) or len(bbox) != 4 or not all(map(_is_number, bbox))
            or min(bbox[2:]) < 0):
        return f'{ident} bbox must be [x, y, w, h] (finite numbers) with w, h >= 0, got {bbox!r}'
    seg = ann.get('segmentation')
    if isinstance(seg, list):
        for poly in seg:
            if (not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2
                    or not all(map(_is_number, poly))):
                return (f'{ident} segmentation polygons must be flat [x1, y1, x2, y2, ...] '
                        'lists of >= 3 points')
    elif isinstance(seg, dict):
        if not {'counts', 'size'} <= seg.keys():
            return f'{ident} RLE segmentation needs "counts" and "size"'
    elif seg is not None:
        return f'{ident} segmentation must be polygons or RLE, got {type(seg).__name__}'
    return None


def _column(items: list, key: str) -> list:
    """``item.get(key)`` of every item (all dicts), at C speed."""
    return list(map(dict.get, items, repeat(key)))


def _annotations_look_valid(anns: list, image_ids: set, cat_ids: set) -> bool:
    """:func:`_annotation_problem` finds nothing in ``anns``: the same rule, column by column."""
    if not anns:
        return True
    if set(map(type, anns)) != {dict}:
        return False
    try:
        if not (set(_column(anns, 'image_id')) <= image_ids
                and set(_column(anns, 'category_id')) <= cat_ids):
            return False
    except TypeError:  # an unhashable id
        return False
    boxes = _column(anns, 'bbox')
    if set(map(type, boxes)) != {list} or set(map(len, boxes)) != {4}:
        return False
    if not _all_numbers(list(chain.from_iterable(boxes))):
        return False
    if (np.asarray(boxes, dtype=np.float64)[:, 2:] < 0).any():
        return False
    segs = _column(anns, 'segmentation')
    kinds = set(map(type, segs))
    if not kinds <= {list, dict, type(None)}:
        return False
    if list in kinds:
        polys = list(chain.from_iterable(filter(lambda s: type(s) is list, segs)))
        if polys:
            if set(map(type, polys)) != {list}:
                return False
            lengths = set(map(len, polys))
            if min(lengths) < 6 or any(n % 2 for n in lengths):
                return False
            if not _all_numbers(list(chain.from_iterable(polys))):
                return False
    return all('counts' in s and 'size' in s for s in segs if type(s) is dict)


def _files_in(folder: str) -> set:
    """Names of the files in ``folder`` (empty when it is missing or unreadable)."""
    try:
        with os.scandir(folder or '.') as it:
            return {e.name for e in it if e.is_file()}
    except OSError:
        return set()


def _missing_image(img_dir: str, file_names: list) -> int | None:
    """Index of the first image not found as a file under ``img_dir``; one listing per folder."""
    if set(map(type, file_names)) == {str} and not any('/' in n for n in file_names):
        # the usual layout, every image directly in img_dir: one set comparison
        files = _files_in(img_dir)
        if files.issuperset(file_names):
            return None
    listings: dict[str, set] = {}
    for i, name in enumerate(file_names):
        if type(name) is not str:
            return i
        folder, base = osp.split(osp.join(img_dir, name))
        if folder not in listings:
            listings[folder] = _files_in(folder)
        if base not in listings[folder]:
            return i
    return None


def check_coco_annotations(ann_file: str, img_dir: str | None = None,
                           training: bool = False) -> None:
    """Fail early, naming the file, on a COCO json that mmdet would choke on mid-run.

    Checks the structure of ``images``, ``annotations`` and ``categories``; that boxes are
    ``[x, y, w, h]`` of finite numbers with ``w, h >= 0``; that polygons have an even number
    (>= 6) of coordinates and RLE masks ``counts`` and ``size``; that every annotation points at a
    listed image and category and, when ``img_dir`` is given, that every image file exists. A
    file without images (and, for ``training``, without annotations) is refused: mmdet would
    stop later with "need at least one array to concatenate".

    Args:
        ann_file: The annotation file.
        img_dir: The folder the images' ``file_name`` are relative to; None skips the files.
        training: Whether the file is a training split (which needs annotations).

    Raises:
        FileNotFoundError: The annotation file or an image file does not exist.
        ValueError: ``malformed annotation file <ann_file>: <what and where>``.
    """
    if not osp.isfile(ann_file):
        raise FileNotFoundError(f'annotation file {ann_file} does not exist')
    try:
        with open(ann_file, 'rb') as f:
            coco = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _bad(ann_file, f'not valid JSON ({e})') from e
    if not isinstance(coco, dict):
        raise _bad(ann_file, 'the top level must be a JSON object')
    for key in ('images', 'annotations', 'categories'):
        if not isinstance(coco.get(key), list):
            raise _bad(ann_file, f'{key!r} must be a list')
    images, anns, cats = coco['images'], coco['annotations'], coco['categories']
    if not images or (training and not anns):
        raise _bad(ann_file, f'it has {len(images)} images and {len(anns)} annotations: '
                   + ('a dataset needs images' if not images else 'training needs annotated images'))
    _listed(ann_file, images, 'images', ('id', 'file_name'))
    _listed(ann_file, cats, 'categories', ('id', 'name'))
    image_ids = _ids([img['id'] for img in images])
    cat_ids = _ids([cat['id'] for cat in cats])
    if not _annotations_look_valid(anns, image_ids, cat_ids):
        for i, ann in enumerate(anns):
            problem = _annotation_problem(ann, image_ids, cat_ids)
            if problem:
                raise _bad(ann_file, f'annotations[{i}] {problem}')
    if img_dir is not None:
        i = _missing_image(img_dir, [img['file_name'] for img in images])
        if i is not None:
            path = osp.join(img_dir, str(images[i]['file_name']))
            raise FileNotFoundError(
                f'image file {path} (images[{i}] of {ann_file}) does not exist')


def _leaf_datasets(cfg_dataset) -> Iterator[dict]:
    """The leaf dataset configs under dataset wrappers (RepeatDataset, ConcatDataset, ...)."""
    if not isinstance(cfg_dataset, dict):
        return
    if 'datasets' in cfg_dataset:
        for sub in cfg_dataset['datasets']:
            yield from _leaf_datasets(sub)
    elif 'dataset' in cfg_dataset:
        yield from _leaf_datasets(cfg_dataset['dataset'])
    else:
        yield cfg_dataset


def coco_datasets(cfg, loaders=('train_dataloader', 'val_dataloader', 'test_dataloader')
                  ) -> Iterator[tuple[str, str, str]]:
    """``(loader, ann_file, img_dir)`` of each local COCO-format dataset of ``loaders``."""
    for loader in loaders:
        for ds in _leaf_datasets((cfg.get(loader) or {}).get('dataset')):
            if 'coco' not in str(ds.get('type', '')).lower() or not ds.get('ann_file'):
                continue
            if ds.get('backend_args'):  # remote storage: nothing to read locally
                continue
            root = ds.get('data_root') or ''
            ann_file = ds['ann_file']
            if not osp.isabs(ann_file):
                ann_file = osp.join(root, ann_file)
            prefix = (ds.get('data_prefix') or {}).get('img', '')
            img_dir = prefix if osp.isabs(prefix) else osp.join(root, prefix)
            yield loader, ann_file, img_dir


def check_datasets(cfg, loaders=('train_dataloader', 'val_dataloader', 'test_dataloader')) -> None:
    """:func:`check_coco_annotations` on each local COCO annotation file ``loaders`` read.

    Each file is checked once (``val`` and ``test`` often share one), as a training split when
    ``train_dataloader`` reads it.
    """
    files: dict[tuple[str, str], bool] = {}
    for loader, ann_file, img_dir in coco_datasets(cfg, loaders):
        key = (ann_file, img_dir)
        files[key] = files.get(key, False) or loader == 'train_dataloader'
    for (ann_file, img_dir), training in files.items():
        check_coco_annotations(ann_file, img_dir, training=training)
