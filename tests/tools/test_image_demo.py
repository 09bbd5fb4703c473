"""tools/image_demo.py, a thin layer over DetInferencer, MMSegInferencer and mmpretrain's
ImageClassificationInferencer: on demo checkpoints of each task, what it prints and draws is what
the model predicts through the config's test pipeline (checked here without the inferencers). A
trained detector is run through it in test_train_test_tools.py."""
from __future__ import annotations

import os.path as osp
import re
import sys

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

from demo_helpers import save_initialised_checkpoint  # noqa: E402

from tools import image_demo  # noqa: E402
from tools.demo_data.common import make_rng, textured_background, write_image  # noqa: E402

DET = osp.join(ROOT, 'configs', 'demo', 'mask-rcnn_internimage-micro_fpn_demo-coco.py')
SEG = osp.join(ROOT, 'configs', 'demo', 'upernet_internimage-micro_demo-ade20k-128x128.py')
CLS = osp.join(ROOT, 'configs', 'demo', 'internimage-micro_demo-imagenet-64.py')


@pytest.fixture
def image(tmp_path) -> str:
    path = str(tmp_path / 'input.png')
    write_image(path, textured_background(make_rng(0), 96, 128))
    return path


def _test_inputs(pipeline: list, image: str) -> dict:
    """``image`` through a config's test pipeline (no label map), batched as the Runner does."""
    from mmengine.dataset import Compose
    data = Compose([t for t in pipeline if 'Annotations' not in t['type']])(dict(img_path=image))
    return dict(inputs=[data['inputs']], data_samples=[data['data_samples']])


@pytest.mark.slow
def test_detection_boxes_and_drawing(tmp_path, image, capsys):
    ckpt = str(tmp_path / 'det.pth')
    meta = save_initialised_checkpoint(DET, ckpt)
    out = str(tmp_path / 'boxes.png')
    image_demo.main([image, DET, ckpt, '--out-file', out, '--device', 'cpu', '--score-thr', '0'])
    printed = capsys.readouterr().out
    lines = re.findall(r'^\s*(\S+) ([0-9.]+)  box \(([-0-9., ]+)\)$', printed, re.M)

    # The reference: the checkpoint through the test pipeline and the detector's predict.
    from mmdet.apis import init_detector
    model = init_detector(DET, ckpt, device='cpu')
    init_default_scope('mmdet')
    with torch.no_grad():
        batch = model.data_preprocessor(_test_inputs(model.cfg.test_pipeline, image))
        pred = model.predict(batch['inputs'], batch['data_samples'])[0].pred_instances
    assert len(pred) > 0  # random weights still propose boxes: the comparison is not vacuous
    assert f'{len(pred)} detections above 0.0; drawn into {out}' in printed
    assert len(lines) == len(pred)
    for (name, score, box), s, label, b in zip(lines, pred.scores, pred.labels, pred.bboxes):
        assert name == meta['classes'][int(label)]
        assert float(score) == pytest.approx(float(s), abs=5e-4 + 1e-9)
        got = [float(v) for v in box.split(',')]
        assert got == pytest.approx(b.tolist(), abs=0.05 + 1e-6)
    drawn, original = cv2.imread(out), cv2.imread(image)
    assert drawn.shape == original.shape and (drawn != original).any()


@pytest.mark.slow
def test_segmentation_overlay(tmp_path, image, capsys):
    ckpt = str(tmp_path / 'seg.pth')
    meta = save_initialised_checkpoint(SEG, ckpt)
    out = str(tmp_path / 'overlay.png')
    image_demo.main([image, SEG, ckpt, '--out-file', out, '--device', 'cpu'])
    printed = capsys.readouterr().out
    assert f'overlay written to {out}' in printed

    # The reference: the same checkpoint through the test pipeline and the segmentor's predict,
    # as tools/test.py runs it, not through mmseg's inference API that the tool uses.
    from mmseg.apis import init_model
    model = init_model(SEG, ckpt, device='cpu')
    init_default_scope('mmseg')
    with torch.no_grad():
        batch = model.data_preprocessor(_test_inputs(model.cfg.test_pipeline, image))
        pred = model.predict(batch['inputs'], batch['data_samples'])[0]
    pred = pred.pred_sem_seg.data[0].numpy()
    original = cv2.imread(image)[:, :, ::-1]
    assert pred.shape == original.shape[:2]  # predicted at the input's resolution

    # one line per predicted class with its share of the pixels (to the printed 0.1 %)
    shares = {m.group(1): float(m.group(2)) for m in
              (re.match(r'\s*(\S+)\s+([0-9.]+)% of the pixels$', ln) for ln in printed.splitlines())
              if m}
    ids, counts = np.unique(pred, return_counts=True)
    expected = {meta['classes'][i]: 100 * c / pred.size for i, c in zip(ids, counts)}
    assert shares.keys() == expected.keys()
    for name, share in expected.items():
        assert shares[name] == pytest.approx(share, abs=0.05 + 1e-9), name

    # the overlay is the image blended half and half (--opacity 0.5) with the palette colour of
    # each pixel's class; only the small class-name tags mmseg draws on top differ
    overlay = cv2.imread(out)[:, :, ::-1].astype(int)
    assert overlay.shape == original.shape
    palette = np.asarray(meta['palette'])
    blend = (original * 0.5 + palette[pred] * 0.5).astype(int)
    assert (np.abs(overlay - blend).max(axis=2) <= 1).mean() > 0.8
    assert not np.array_equal(overlay, original)  # the colour map is blended in


def test_classification_top5(tmp_path, image, capsys):
    ckpt = str(tmp_path / 'cls.pth')
    meta = save_initialised_checkpoint(CLS, ckpt)
    image_demo.main([image, CLS, ckpt, '--device', 'cpu', '--topk', '5'])
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln[:2] in {f'{i}.' for i in range(1, 6)}]
    k = min(5, len(meta['classes']))
    assert len(lines) == k
    names = [ln.split()[1] for ln in lines]
    scores = [float(ln.split()[2]) for ln in lines]
    assert len(set(names)) == k and set(names) <= set(meta['classes'])
    assert scores == sorted(scores, reverse=True)

    # The reference: the checkpoint run by hand on the config's test pipeline, the softmax of
    # the head's logits (not mmpretrain's inferencer that the tool uses).
    from mmpretrain.apis import init_model
    model = init_model(CLS, ckpt, device='cpu').eval()
    init_default_scope('mmpretrain')
    with torch.no_grad():
        pipeline = Config.fromfile(CLS).test_dataloader.dataset.pipeline
        batch = model.data_preprocessor(_test_inputs(pipeline, image))
        logits = model(batch['inputs'], mode='tensor')
    probs = torch.softmax(logits[0], dim=0).tolist()
    assert len(probs) == len(meta['classes'])
    expected = sorted(zip(probs, meta['classes']), reverse=True)[:k]
    # the k best scores in order, and each printed name with its own score (4 decimals printed)
    assert scores == pytest.approx([p for p, _ in expected], abs=5e-5 + 1e-9)
    for name, score in zip(names, scores):
        assert score == pytest.approx(probs[meta['classes'].index(name)], abs=5e-5 + 1e-9), name
    if k == len(meta['classes']):  # every class listed: the softmax scores sum to one
        assert sum(scores) == pytest.approx(1.0, abs=1e-3)


def test_unknown_scope_is_rejected(tmp_path, image):
    cfg = tmp_path / 'cfg.py'
    cfg.write_text("default_scope = 'mmengine'\n")
    with pytest.raises(ValueError, match="default_scope 'mmengine'"):
        image_demo.main([image, str(cfg), 'x.pth'])
