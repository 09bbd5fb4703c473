"""tools/vis_sampling.py: the drawn points are where the DCNv3 offsets put them (recomputed here from
the module's offset/mask outputs with the operator's sampling formula), for classification, detection
and segmentation configs."""
from __future__ import annotations

import os
import sys

import cv2
import numpy as np
import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from tools import vis_sampling  # noqa: E402

CLS = os.path.join(ROOT, 'configs', 'demo', 'internimage-micro_demo-imagenet-64.py')
DET = os.path.join(ROOT, 'configs', 'demo', 'mask-rcnn_internimage-micro_fpn_demo-coco.py')
SEG = os.path.join(ROOT, 'configs', 'demo', 'upernet_internimage-micro_demo-ade20k-128x128.py')


def _image(path, size=96) -> str:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 255, (size, size + 32, 3), dtype=np.uint8)
    cv2.imwrite(str(path), img)
    return str(path)


def _randomize_offsets(backbone, seed=0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in backbone.named_parameters():
            if '.dcn.offset.' in name or '.dcn.mask.' in name:
                p.copy_(0.5 * torch.randn(p.shape, generator=g))


def test_drawn_points_lie_where_the_offsets_put_them(tmp_path):
    image_path = _image(tmp_path / 'img.png')
    image = cv2.imread(image_path)
    backbone, pre = vis_sampling.build_backbone(CLS)
    _randomize_offsets(backbone)
    x = vis_sampling.preprocess(image, pre)
    point = (70.0, 41.0)
    blocks = [(1, 0), (2, 1)]
    # Independent: the offset/mask Linear outputs of the blocks, and the operator's formula
    # loc = u*stride - pad + c + (tap*dilation - c + offset) * offset_scale (k 3, pad 1, c 1).
    outs = {}
    hooks = [backbone.levels[lv].blocks[b].dcn.__getattr__(n).register_forward_hook(
        lambda m, i, o, k=(lv, b, n): outs.__setitem__(k, o.detach()))
        for lv, b in blocks for n in ('offset', 'mask')]
    with torch.no_grad():
        backbone(x)
    for h in hooks:
        h.remove()
    got = vis_sampling.sampling_locations(backbone, x, point, blocks)
    panel = 384
    scale = panel / image.shape[0]
    picture = vis_sampling.draw(image, got, panel)
    path = str(tmp_path / 'vis.png')
    assert cv2.imwrite(path, picture)
    png = cv2.imread(path)
    assert png.shape == (panel, 2 * round(image.shape[1] * scale) + 4, 3)
    checked = 0
    for k, (lv, b) in enumerate(blocks):
        dcn = backbone.levels[lv].blocks[b].dcn
        stride = 4 * 2 ** lv
        off = outs[(lv, b, 'offset')][0]
        u = round((point[0] + 0.5) / stride - 0.5)
        v = round((point[1] + 0.5) / stride - 0.5)
        expected = np.zeros((dcn.group, 9, 2))
        for g in range(dcn.group):
            for p in range(9):
                tx, ty = p // 3, p % 3  # point p = i * kh + j, i the x tap
                dx, dy = off[v, u, (g * 9 + p) * 2].item(), off[v, u, (g * 9 + p) * 2 + 1].item()
                lx = u * 1 - 1 + 1 + (tx - 1 + dx) * dcn.offset_scale
                ly = v * 1 - 1 + 1 + (ty - 1 + dy) * dcn.offset_scale
                expected[g, p] = ((lx + 0.5) * stride - 0.5, (ly + 0.5) * stride - 0.5)
        np.testing.assert_allclose(got[k].points, expected, rtol=0, atol=1e-5)
        weights = torch.softmax(outs[(lv, b, 'mask')][0, v, u].reshape(dcn.group, 9).double(), -1)
        np.testing.assert_allclose(got[k].weights, weights.numpy(), atol=1e-6)
        # The PNG: each point's pixel has its group's colour, unless another group's dot may cover it.
        colors = vis_sampling.group_colors(dcn.group)
        x0 = k * (round(image.shape[1] * scale) + 4)
        px = np.rint((expected + 0.5) * scale - 0.5)
        for g in range(dcn.group):
            for p in range(9):
                cx, cy = px[g, p]
                if not (0 <= cx < round(image.shape[1] * scale) and 0 <= cy < panel):
                    continue
                near = np.hypot(px[..., 0] - cx, px[..., 1] - cy) <= 17
                near[g] = False
                qx, qy = vis_sampling.to_panel(got[k].query, scale)
                if near.any() or max(abs(cx - qx), abs(cy - qy)) <= 9:
                    continue
                assert tuple(png[int(cy), x0 + int(cx)]) == colors[g], (lv, b, g, p)
                checked += 1
    assert checked >= 10


@pytest.mark.parametrize('config', [DET, SEG, CLS], ids=['det', 'seg', 'cls'])
def test_cli_writes_one_panel_per_level(tmp_path, config):
    image = _image(tmp_path / 'img.png', size=64)
    out = tmp_path / 'out.png'
    vis_sampling.main([image, config, '--point', '20', '30', '--out', str(out), '--panel', '96'])
    png = cv2.imread(str(out))
    assert png.shape[0] == 96 and png.shape[1] == 4 * round(96 / 64 * 96) + 3 * 4


def test_bad_arguments_are_named(tmp_path):
    image = _image(tmp_path / 'img.png', size=64)
    with pytest.raises(ValueError, match='--point'):
        vis_sampling.main([image, CLS, '--point', '500', '3', '--out', str(tmp_path / 'o.png')])
    with pytest.raises(ValueError, match='--blocks'):
        vis_sampling.main([image, CLS, '--point', '5', '3', '--blocks', '7.0', '--out', str(tmp_path / 'o.png')])
    with pytest.raises(FileNotFoundError, match='IMAGE'):
        vis_sampling.main([str(tmp_path / 'none.png'), CLS, '--point', '5', '3', '--out', 'x.png'])
