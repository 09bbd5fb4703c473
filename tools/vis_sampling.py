"""Where DCNv3 samples: the paper's Figure 5 for any classification, detection or segmentation config.

    python tools/vis_sampling.py IMAGE CONFIG [CHECKPOINT] --point X Y --out FILE.png \
        [--blocks 0.3 1.3 2.17 3.3] [--size 512] [--panel 256]

For the query pixel (X, Y) of IMAGE, every chosen DCNv3 block (default: the last block of each level)
contributes one panel: the image with the 3x3 (deformed) sampling points of each DCNv3 group in one
colour per group (the dot's area grows with the point's softmax weight), and the query pixel as a
white cross. Points are in image pixels: the level-``l`` grid cell ``u`` is the image pixel
``(u + 0.5) * stride_l - 0.5`` (stride 4, 8, 16, 32), and the sampling location of kernel tap ``t``
with offset ``d`` is ``u + (t - 1 + d) * offset_scale`` on that grid (the operator's formula with
kernel 3, padding 1, dilation 1). Runs on the CPU; without CHECKPOINT the weights are random.
For a composite backbone (CB-InternImage) the last member is shown.
"""
from __future__ import annotations

import argparse
import colorsys
import importlib
import os.path as osp
import sys
from dataclasses import dataclass

import cv2
import numpy as np
import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import mmcv_custom  # noqa: E402,F401  torch.load allow-list for mmengine checkpoints
from mmcv_custom.checkpoint import checked_whole_model_loading  # noqa: E402

STRIDES = (4, 8, 16, 32)


@dataclass
class Sampling:
    """Sampling points of one DCNv3 block at the query pixel.

    Attributes:
        block: ``(level, block index)``.
        points: (G, P, 2) sampling locations (x, y) in pixels of the network input.
        weights: (G, P) softmax-normalised modulation of each point.
        query: (x, y) of the query cell's centre in pixels of the network input.
    """
    block: tuple[int, int]
    points: np.ndarray
    weights: np.ndarray
    query: tuple[float, float]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Draw the DCNv3 sampling locations at one pixel')
    parser.add_argument('image', help='image file')
    parser.add_argument('config', help='classification, detection or segmentation config')
    parser.add_argument('checkpoint', nargs='?', default=None, help='checkpoint (default: random weights)')
    parser.add_argument('--point', type=float, nargs=2, required=True, metavar=('X', 'Y'),
                        help='query pixel in the image')
    parser.add_argument('--out', required=True, help='output PNG')
    parser.add_argument('--blocks', nargs='+', default=None, metavar='LEVEL.BLOCK',
                        help='blocks to show, e.g. 2.17 (default: the last block of each level)')
    parser.add_argument('--size', type=int, default=None,
                        help='resize the image so that its longer side has this many pixels')
    parser.add_argument('--panel', type=int, default=256, help='height of each panel in pixels')
    return parser.parse_args(argv)


def build_backbone(config: str, checkpoint: str | None = None):
    """``(backbone, data_preprocessor config)`` of ``config``, on the CPU, in eval mode."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    cfg = Config.fromfile(config)
    scope = cfg.get('default_scope', 'mmdet')
    init_default_scope(scope)
    registry = importlib.import_module(f'{scope}.registry').MODELS
    model_cfg = cfg.model
    model_cfg.backbone.init_cfg = None  # nothing downloaded; the checkpoint (if any) has it all
    if 'pretrained' in model_cfg:
        model_cfg.pretrained = None
    model = registry.build(model_cfg)
    if checkpoint is not None:
        from mmengine.runner import load_checkpoint
        with checked_whole_model_loading(checkpoint):
            load_checkpoint(model, checkpoint, map_location='cpu')
    backbone = model.backbone
    if hasattr(backbone, 'cb_modules'):
        members = backbone.cb_modules
        backbone.vis_levels = members[-1].levels
    else:
        backbone.vis_levels = backbone.levels
    return backbone.eval(), cfg.model.get('data_preprocessor', {})


def preprocess(image: np.ndarray, preprocessor: dict) -> torch.Tensor:
    """BGR uint8 image -> normalised (1, 3, H, W) float tensor, padded to a multiple of 32."""
    mean = np.array(preprocessor.get('mean', [123.675, 116.28, 103.53]), dtype=np.float32)
    std = np.array(preprocessor.get('std', [58.395, 57.12, 57.375]), dtype=np.float32)
    rgb = preprocessor.get('bgr_to_rgb', preprocessor.get('to_rgb', True))
    img = image[..., ::-1] if rgb else image
    x = (img.astype(np.float32) - mean) / std
    h, w = x.shape[:2]
    ph, pw = -h % 32, -w % 32
    x = np.pad(x, ((0, ph), (0, pw), (0, 0)))
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))[None]


def default_blocks(levels) -> list[tuple[int, int]]:
    return [(i, len(level.blocks) - 1) for i, level in enumerate(levels)]


def parse_blocks(specs: list[str], levels) -> list[tuple[int, int]]:
    out = []
    for spec in specs:
        try:
            level, block = (int(s) for s in spec.split('.'))
        except ValueError:
            raise ValueError(f'--blocks: {spec!r} is not LEVEL.BLOCK (e.g. 2.17)') from None
        if not (0 <= level < len(levels) and 0 <= block < len(levels[level].blocks)):
            raise ValueError(f'--blocks: {spec!r} is not a block of this backbone '
                             f'(depths {[len(lv.blocks) for lv in levels]})')
        out.append((level, block))
    return out


def sampling_locations(backbone, x: torch.Tensor, point: tuple[float, float],
                       blocks: list[tuple[int, int]]) -> list[Sampling]:
    """Sampling points of each block's DCNv3 at the grid cell that holds input pixel ``point``."""
    captured = {}
    hooks = []
    for lb in blocks:
        dcn = backbone.vis_levels[lb[0]].blocks[lb[1]].dcn
        for name in ('offset', 'mask'):
            hooks.append(getattr(dcn, name).register_forward_hook(
                lambda m, i, o, key=(lb, name): captured.__setitem__(key, o.detach())))
    try:
        with torch.no_grad():
            backbone(x)
    finally:
        for h in hooks:
            h.remove()
    out = []
    for lb in blocks:
        dcn = backbone.vis_levels[lb[0]].blocks[lb[1]].dcn
        if dcn.kernel_size != 3 or dcn.pad != 1 or dcn.dilation != 1 or dcn.stride != 1:
            raise ValueError(f'block {lb}: only kernel 3, pad 1, dilation 1, stride 1 is drawn')
        stride = STRIDES[lb[0]]
        offset, mask = captured[(lb, 'offset')], captured[(lb, 'mask')]
        _, h, w, _ = offset.shape
        u = int(np.clip(round((point[0] + 0.5) / stride - 0.5), 0, w - 1))
        v = int(np.clip(round((point[1] + 0.5) / stride - 0.5), 0, h - 1))
        g = dcn.group
        off = offset[0, v, u].reshape(g, -1, 2).double().numpy()
        num_points = off.shape[1]
        taps = [(i, j) for i in range(3) for j in range(3) if not (dcn.remove_center and i == j == 1)]
        tap = np.array(taps, dtype=np.float64)  # (P, 2): point p = i * 3 + j, i the x tap
        grid = np.array([u, v], dtype=np.float64) + (tap[None] - 1 + off) * dcn.offset_scale
        weights = torch.softmax(mask[0, v, u].reshape(g, num_points).double(), -1).numpy()
        out.append(Sampling(lb, (grid + 0.5) * stride - 0.5, weights,
                            ((u + 0.5) * stride - 0.5, (v + 0.5) * stride - 0.5)))
    return out


def group_colors(groups: int) -> list[tuple[int, int, int]]:
    """One saturated BGR colour per group, evenly spaced in hue."""
    out = []
    for k in range(groups):
        r, g, b = colorsys.hsv_to_rgb(k / groups, 1.0, 1.0)
        out.append((int(round(b * 255)), int(round(g * 255)), int(round(r * 255))))
    return out


def panel_scale(image_shape: tuple[int, int], panel: int) -> float:
    return panel / image_shape[0]


def to_panel(xy, scale: float) -> tuple[int, int]:
    """Input pixel (x, y) -> the panel pixel that shows it."""
    return int(round((xy[0] + 0.5) * scale - 0.5)), int(round((xy[1] + 0.5) * scale - 0.5))


def draw(image: np.ndarray, samplings: list[Sampling], panel: int = 256) -> np.ndarray:
    """One panel per block side by side: the image, the points (a colour per group), the query."""
    scale = panel_scale(image.shape[:2], panel)
    base = cv2.resize(image, (round(image.shape[1] * scale), panel), interpolation=cv2.INTER_NEAREST)
    base = (0.6 * base).astype(np.uint8)  # dimmed, so that the points stand out
    panels = []
    for s in samplings:
        canvas = base.copy()
        colors = group_colors(s.points.shape[0])
        # heaviest points last, so that they stay visible where points overlap
        order = sorted(((w, g, p) for g in range(s.points.shape[0]) for p, w in enumerate(s.weights[g])))
        for w, g, p in order:
            radius = max(2, int(round(2 + 6 * np.sqrt(w))))
            cv2.circle(canvas, to_panel(s.points[g, p], scale), radius, colors[g], -1, lineType=cv2.LINE_8)
        qx, qy = to_panel(s.query, scale)
        cv2.drawMarker(canvas, (qx, qy), (255, 255, 255), cv2.MARKER_CROSS, 14, 2)
        cv2.putText(canvas, f'level {s.block[0]} block {s.block[1]}', (4, 14), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4, (255, 255, 255), 1, cv2.LINE_AA)
        panels.append(canvas)
    sep = np.full((panel, 4, 3), 255, np.uint8)
    row = [panels[0]]
    for p in panels[1:]:
        row += [sep, p]
    return np.concatenate(row, axis=1)


def main(argv=None) -> None:
    args = parse_args(argv)
    image = cv2.imread(args.image, cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f'IMAGE: cannot read {args.image!r}')
    if args.size:
        f = args.size / max(image.shape[:2])
        image = cv2.resize(image, (round(image.shape[1] * f), round(image.shape[0] * f)),
                           interpolation=cv2.INTER_LINEAR)
    h, w = image.shape[:2]
    if not (0 <= args.point[0] < w and 0 <= args.point[1] < h):
        raise ValueError(f'--point {args.point[0]:g} {args.point[1]:g} lies outside the '
                         f'{w}x{h} image')
    backbone, preprocessor = build_backbone(args.config, args.checkpoint)
    blocks = parse_blocks(args.blocks, backbone.vis_levels) if args.blocks else default_blocks(
        backbone.vis_levels)
    samplings = sampling_locations(backbone, preprocess(image, preprocessor), tuple(args.point), blocks)
    if not cv2.imwrite(args.out, draw(image, samplings, args.panel)):
        raise OSError(f'--out: could not write {args.out!r}')
    print(f'wrote {args.out}: {len(samplings)} panels, '
          f'{samplings[0].points.shape[0]}..{samplings[-1].points.shape[0]} groups')


if __name__ == '__main__':
    main()
