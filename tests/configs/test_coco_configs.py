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
    found = {osp.basename(p) for p in glob.glob(osp.join(COCO, '*.py'))}
    assert found == set(PUBLISHED)


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
    assert cfg.optim_wrapper.constructor == 'CustomLayerDecayOptimizerConstructor'
    assert cfg.optim_wrapper.paramwise_cfg.num_layers == num_layers
    assert cfg.optim_wrapper.paramwise_cfg.depths == cfg.model.backbone.depths
    model = _build_on_meta(cfg)
    optim = build_optim_wrapper(model, cfg.optim_wrapper).optimizer
    assert type(optim).__name__ == 'AdamW'
    lrs = {g['lr'] for g in optim.param_groups}
    # heads get the full lr; the stem gets rate ** (num_layers + 1) of it
    assert max(lrs) == pytest.approx(lr)
    assert min(lrs) == pytest.approx(lr * rate ** (num_layers + 1))
    # norms, biases and other 1-D parameters have no weight decay, matrices do (except the
    # deformable-attention sampling offsets of DINO, as published)
    for group in optim.param_groups:
        for pname, p in zip(group['param_names'], group['params']):
            if p.ndim == 1:
                assert group['weight_decay'] == 0, pname
            elif 'norm' not in pname and 'sampling_offsets' not in pname:
                assert group['weight_decay'] == cfg.optim_wrapper.optimizer.weight_decay, pname


def test_ms_3x_schedule_and_augmentation():
    cfg = Config.fromfile(osp.join(COCO, 'mask-rcnn_internimage-t_fpn_ms-3x_coco.py'),
                          import_custom_modules=False)
    assert cfg.train_cfg.max_epochs == 36
    steps = [s for s in cfg.param_scheduler if s.type == 'MultiStepLR']
    assert steps[0].milestones == [27, 33]
    choice = [t for t in cfg.train_dataloader.dataset.pipeline if t.type == 'RandomChoice']
    assert len(choice) == 1 and len(choice[0].transforms) == 2  # resize, or resize-crop-resize
