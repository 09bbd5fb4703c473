"""Refactoring the configs (shared ``configs/_base_`` files) left every recipe exactly as it was.

``tests/data/resolved_configs/<folder>/<config>.json.gz`` holds the fully resolved dict
(``Config.fromfile(path).to_dict()``: all bases merged, comments and layout gone) of each config that
existed before the refactor, written by ``tools/dump_resolved_configs.py``. Each config must still
resolve to the same dict, key for key, tuples and lists told apart. A backbone that names its size
(``arch='h'``) is compared with the size arguments the backbone fills in for that name (the dump
tool's ``expand_arch``; checked against the backbone below). Configs added later have no dump and
are not compared; a dump whose config is gone is an error (delete or rename both together).
"""
from __future__ import annotations

import glob
import os.path as osp
import re
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

from mmcv_custom.models.internimage import expand_arch  # noqa: E402
from tools.dump_resolved_configs import (  # noqa: E402
    TUPLE_TAG,
    dumps,
    loads,
    resolved_config,
    to_json_stable,
)

DUMPS = osp.join(ROOT, 'tests', 'data', 'resolved_configs')
STORED = sorted(osp.relpath(p, DUMPS)[:-len('.json.gz')]
                for p in glob.glob(osp.join(DUMPS, '*', '*.json.gz')))


def _differences(got, want, where='cfg'):
    """Paths at which two JSON-stable values differ (at most a few, for the failure message)."""
    if isinstance(got, dict) and isinstance(want, dict):
        out = [f'{where}.{k}: missing' for k in want.keys() - got.keys()]
        out += [f'{where}.{k}: not in the stored dict' for k in got.keys() - want.keys()]
        for k in want.keys() & got.keys():
            out += _differences(got[k], want[k], f'{where}.{k}')
        return out
    if isinstance(got, list) and isinstance(want, list) and len(got) == len(want):
        return [d for i, (g, w) in enumerate(zip(got, want)) for d in _differences(g, w, f'{where}[{i}]')]
    if got != want or type(got) is not type(want):
        return [f'{where}: {got!r} != stored {want!r}']
    return []


def test_the_dumps_cover_every_task_folder():
    assert len(STORED) >= 27
    assert {name.split('/')[0] for name in STORED} == {'coco', 'ade20k', 'imagenet', 'demo'}


@pytest.mark.parametrize('name', STORED)
def test_config_resolves_to_its_stored_dict(name):
    config = osp.join(ROOT, 'configs', name + '.py')
    assert osp.isfile(config), f'{name}.json.gz is stored but configs/{name}.py is gone'
    with open(osp.join(DUMPS, name + '.json.gz'), 'rb') as f:
        want = loads(f.read())
    got = resolved_config(config)
    diff = sorted(_differences(got, want))
    assert not diff, f'configs/{name}.py no longer resolves to the stored dict:\n' + '\n'.join(diff[:20])


def test_dump_format_keeps_tuples_and_is_byte_stable():
    cfg = dict(b=(1, 2), a=[1, 2], c=dict(d=None, e=1.0, f=(dict(g='x'),)))
    data = dumps(to_json_stable(cfg))
    assert data == dumps(to_json_stable(dict(reversed(list(cfg.items())))))
    back = loads(data)
    assert back['b'] == {TUPLE_TAG: [1, 2]} and back['a'] == [1, 2]
    assert back['c']['f'] == {TUPLE_TAG: [{'g': 'x'}]}
    assert _differences(to_json_stable(dict(cfg, b=[1, 2])), back) == [
        "cfg.b: [1, 2] != stored {'__tuple__': [1, 2]}"]
    with pytest.raises(TypeError, match=r'cfg\.x: set value'):
        to_json_stable(dict(x={1}))


@pytest.mark.parametrize('name', [n for n in STORED if not n.startswith('demo/')])
def test_config_backbone_is_its_published_size(name):
    """The sizes the configs spell out are those of the one table behind ``InternImage(arch=...)``.

    Detection and segmentation recipes use layer scale 1.0 at every size instead of the ImageNet value.
    """
    from mmcv_custom.models.internimage import arch_settings

    size = re.search(r'internimage-(t|s|b|l|xl|h|g)_', name).group(1)
    with open(osp.join(DUMPS, name + '.json.gz'), 'rb') as f:
        backbone = loads(f.read())['model']['backbone']
    want = arch_settings(size)
    if not name.startswith('imagenet/'):
        want['layer_scale'] = 1.0
    assert {k: backbone.get(k) for k in want} == want


@pytest.mark.parametrize('arch', ['t', 's', 'b', 'l', 'xl', 'h', 'g'])
def test_arch_expands_as_the_backbone_fills_it(arch):
    """``expand_arch`` gives what the backbone builds from ``arch`` (explicit arguments win)."""
    import torch

    from mmcv_custom.models.internimage import InternImage

    given = dict(arch=arch, depths=[1, 1, 1, 1], drop_path_rate=0.3, layer_scale=1.0)
    expanded = expand_arch(dict(type='InternImage', **given))
    assert 'arch' not in expanded and expanded['depths'] == [1, 1, 1, 1]
    expanded.pop('type')
    with torch.device('meta'):  # shapes only: H and G are billions of parameters at full depth
        by_arch, by_args = InternImage(**given), InternImage(**expanded)
    assert [(k, v.shape) for k, v in by_arch.state_dict().items()] == [
        (k, v.shape) for k, v in by_args.state_dict().items()]
    assert repr(by_arch) == repr(by_args)  # the same modules in the same places (norms, kernels)
