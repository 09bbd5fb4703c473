"""Every COCO config builds its model with the published parameter count and its optimizer.

Models are built on the meta device (no memory, no init) with the ImageNet ``init_cfg`` removed,
so nothing is downloaded. Published sizes are rounded to 1M; we allow 3%.
"""
from __future__ import annotations

import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from published_rules import assert_every_parameter_follows_published_rule, param_settings

from mmcv_custom.models.internimage import expand_arch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
COCO = osp.join(ROOT, 'configs', 'coco')

# config -> published parameter count (millions) from the model zoo
PUBLISHED = {
    'mask-rcnn_internimage-t_fpn_1x_coco.py': 49,
    'mask-rcnn_internimage-t_fpn_ms-3x_coco.py': 49,
    'mask-rcnn_internimage-s_fpn_1x_coco.py': 69,
    'mask-rcnn_internimage-s_fpn_ms-3x_coco.py': 69,
    'mask-rcnn_internimage-b_fpn_1x_coco.py': 115,
    'mask-rcnn_internimage-b_fpn_ms-3x_coco.py': 115,
    'cascade-mask-rcnn_internimage-l_fpn_1x_coco.py': 277,
    'cascade-mask-rcnn_internimage-l_fpn_ms-3x_coco.py': 277,
    'cascade-mask-rcnn_internimage-xl_fpn_1x_coco.py': 387,
    'cascade-mask-rcnn_internimage-xl_fpn_ms-3x_coco.py': 387,
    'dino-4scale_internimage-t_8xb2-12e_coco.py': 49,
    'dino-4scale_internimage-l_8xb2-12e_coco.py': 241,
}
# config -> (lr, layer decay rate, configured num_layers) of the published recipe
RECIPES = {
    'mask-rcnn_internimage-t_fpn_1x_coco.py': (1e-4, 1.0, 30),
    'mask-rcnn_internimage-s_fpn_1x_coco.py': (1e-4, 1.0, 33),
    'mask-rcnn_internimage-b_fpn_1x_coco.py': (1e-4, 1.0, 33),
    'cascade-mask-rcnn_internimage-l_fpn_1x_coco.py': (1e-4, 0.94, 37),
    'cascade-mask-rcnn_internimage-xl_fpn_1x_coco.py': (1e-4, 0.94, 39),
    'cascade-mask-rcnn_internimage-l_fpn_ms-3x_coco.py': (2e-4, 0.9, 37),
    'cascade-mask-rcnn_internimage-xl_fpn_ms-3x_coco.py': (2e-4, 0.9, 39),
    'dino-4scale_internimage-t_8xb2-12e_coco.py': (1e-4, 0.9, 30),
    'dino-4scale_internimage-l_8xb2-12e_coco.py': (1e-4, 0.9, 37),
}


def test_every_coco_config_is_listed():
    import glob

    from test_headline_configs import COCO_HEADLINE  # Objects365-pre-trained H/G/CB-H, tested there
    found = {osp.basename(p) for p in glob.glob(osp.join(COCO, '*.py'))}
    assert found == set(PUBLISHED) | set(COCO_HEADLINE)


def _load(name: str) -> Config:
    cfg = Config.fromfile(osp.join(COCO, name))  # imports mmdet_custom (custom_imports)
    assert cfg.default_scope == 'mmdet'
    assert cfg.model.backbone.type == 'InternImage'
    assert cfg.model.backbone.init_cfg.checkpoint.startswith(
        'https://huggingface.co/OpenGVLab/InternImage/resolve/main/internimage_')
    cfg.model.backbone.init_cfg = None  # nothing to download
    return cfg


def _build_on_meta(cfg: Config) -> torch.nn.Module:
    from mmdet.registry import MODELS
    init_default_scope('mmdet')
    with torch.device('meta'):
        return MODELS.build(cfg.model)


@pytest.mark.parametrize('name', sorted(PUBLISHED))
def test_param_count_matches_published(name):
    model = _build_on_meta(_load(name))
    params = sum(p.numel() for p in model.parameters()) / 1e6
    expected = PUBLISHED[name]
    assert abs(params - expected) <= 0.03 * expected, f'{name}: {params:.2f}M vs {expected}M'


@pytest.mark.parametrize('name', sorted(RECIPES))
def test_optimizer_uses_published_layer_decay(name):
    lr, rate, num_layers = RECIPES[name]
    cfg = _load(name)
    depths = expand_arch(cfg.model.backbone.to_dict())['depths']  # `arch` names the size
    assert cfg.optim_wrapper.constructor == 'CustomLayerDecayOptimizerConstructor'
    assert cfg.optim_wrapper.paramwise_cfg.num_layers == num_layers
    assert cfg.optim_wrapper.paramwise_cfg.depths == depths
    model = _build_on_meta(cfg)
    optim = build_optim_wrapper(model, cfg.optim_wrapper).optimizer
    assert type(optim).__name__ == 'AdamW'
    lrs = {g['lr'] for g in optim.param_groups}
    # heads get the full lr; the stem gets rate ** (num_layers + 1) of it
    assert max(lrs) == pytest.approx(lr)
    assert min(lrs) == pytest.approx(lr * rate ** (num_layers + 1))
    # Every parameter: the layer id, lr and weight decay of the published rule, restated on its own
    # (norms, biases and other 1-D parameters have no weight decay, matrices do, except norms and the
    # deformable-attention sampling offsets of DINO, as published).
    assert_every_parameter_follows_published_rule(
        model, optim, base_lr=lr, base_wd=cfg.optim_wrapper.optimizer.weight_decay, rate=rate,
        configured_num_layers=num_layers, depths=depths,
        offset_lr_scale=cfg.optim_wrapper.paramwise_cfg.get('offset_lr_scale', 1.0))


def test_layer_decay_spot_checks_cascade_l_1x():
    """Hand-worked: InternImage-L, depths [5, 5, 22, 5], num_layers 37 + 2 = 39 (ids 0..38), lr 1e-4,
    rate 0.94, weight decay 0.05; lr = 1e-4 * 0.94 ** (38 - id)."""
    cfg = _load('cascade-mask-rcnn_internimage-l_fpn_1x_coco.py')
    model = _build_on_meta(cfg)
    got = param_settings(build_optim_wrapper(model, cfg.optim_wrapper).optimizer)
    expected = {
        # stem: id 0
        'backbone.patch_embed.conv1.weight': (1e-4 * 0.94 ** 38, 0.05),
        # level 0, block 0: id 0 + 1 = 1; a 1-D layer scale: no decay
        'backbone.levels.0.blocks.0.gamma1': (1e-4 * 0.94 ** 37, 0.0),
        # level 1, block 2: id 2 + 1 + 5 = 8
        'backbone.levels.1.blocks.2.dcn.offset.weight': (1e-4 * 0.94 ** 30, 0.05),
        # level 2's downsample: id 1 + 5 + 5 + 22 = 33
        'backbone.levels.2.downsample.conv.weight': (1e-4 * 0.94 ** 5, 0.05),
        'backbone.levels.2.downsample.norm.1.weight': (1e-4 * 0.94 ** 5, 0.0),
        # level 3, block 4 (the last): id 4 + 1 + 32 = 37
        'backbone.levels.3.blocks.4.mlp.fc2.weight': (1e-4 * 0.94, 0.05),
        # neck and heads: id 38, the full lr
        'neck.lateral_convs.0.conv.weight': (1e-4, 0.05),
        'neck.lateral_convs.0.conv.bias': (1e-4, 0.0),
    }
    for name, (lr, wd) in expected.items():
        assert got[name][:2] == (pytest.approx(lr, rel=1e-9), wd), name


def test_ms_3x_schedule_and_augmentation():
    cfg = Config.fromfile(osp.join(COCO, 'mask-rcnn_internimage-t_fpn_ms-3x_coco.py'),
                          import_custom_modules=False)
    assert cfg.train_cfg.max_epochs == 36
    steps = [s for s in cfg.param_scheduler if s.type == 'MultiStepLR']
    assert steps[0].milestones == [27, 33]
    choice = [t for t in cfg.train_dataloader.dataset.pipeline if t.type == 'RandomChoice']
    assert len(choice) == 1 and len(choice[0].transforms) == 2  # resize, or resize-crop-resize
