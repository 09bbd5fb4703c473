"""tools/image_demo.py for segmentation and classification configs (detection is covered with a
trained checkpoint in test_train_test_tools.py)."""
from __future__ import annotations

import os.path as osp
import sys

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

from tools import image_demo  # noqa: E402
from tools.demo_data.common import make_rng, textured_background, write_image  # noqa: E402

SEG = osp.join(ROOT, 'configs', 'demo', 'upernet_internimage-micro_demo-ade20k-128x128.py')
CLS = osp.join(ROOT, 'configs', 'demo', 'internimage-micro_demo-imagenet-64.py')


def _checkpoint(config: str, path: str) -> dict:
    """A freshly initialised model saved like mmengine does, with the dataset's meta."""
    cfg = Config.fromfile(config)
    init_default_scope(cfg.default_scope)
    from mmengine.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    meta = dict(cfg.metainfo)
    torch.save(dict(state_dict=model.state_dict(), meta=dict(dataset_meta=meta)), path)
    return meta


@pytest.fixture
def image(tmp_path) -> str:
    path = str(tmp_path / 'input.png')
    write_image(path, textured_background(make_rng(0), 96, 128))
    return path


@pytest.mark.slow
@pytest.mark.skipif(not osp.isfile(SEG), reason='segmentation demo config not present')
def test_segmentation_overlay(tmp_path, image, capsys):
    ckpt = str(tmp_path / 'seg.pth')
    meta = _checkpoint(SEG, ckpt)
    out = str(tmp_path / 'overlay.png')
    image_demo.main([image, SEG, ckpt, '--out-file', out, '--device', 'cpu'])
    printed = capsys.readouterr().out
    assert 'of the pixels' in printed and f'overlay written to {out}' in printed
    assert any(name in printed for name in meta['classes'])
    overlay, original = cv2.imread(out), cv2.imread(image)
    assert overlay.shape == original.shape
    assert not np.array_equal(overlay, original)  # the colour map is blended in


@pytest.mark.skipif(not osp.isfile(CLS), reason='classification demo config not present')
def test_classification_top5(tmp_path, image, capsys):
    ckpt = str(tmp_path / 'cls.pth')
    meta = _checkpoint(CLS, ckpt)
    image_demo.main([image, CLS, ckpt, '--device', 'cpu', '--topk', '5'])
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln[:2] in {f'{i}.' for i in range(1, 6)}]
    k = min(5, len(meta['classes']))
    assert len(lines) == k
    names = [ln.split()[1] for ln in lines]
    scores = [float(ln.split()[2]) for ln in lines]
    assert len(set(names)) == k and set(names) <= set(meta['classes'])
    assert scores == sorted(scores, reverse=True) and 0 <= scores[-1] <= scores[0] <= 1
    if k == len(meta['classes']):  # every class listed: the softmax scores sum to one
        assert sum(scores) == pytest.approx(1.0, abs=1e-3)


def test_unknown_scope_is_rejected(tmp_path, image):
    cfg = tmp_path / 'cfg.py'
    cfg.write_text("default_scope = 'mmengine'\n")
    with pytest.raises(ValueError, match="default_scope 'mmengine'"):
        image_demo.main([image, str(cfg), 'x.pth'])
