"""The paper's headline systems: DINO with InternImage-H/G and CB-InternImage-H (with their Objects365
stages), UperNet-H and Mask2Former-H (with its COCO-Stuff stage). Each builds on the meta device with
the published parameter count (3%) and carries the published recipe."""
from __future__ import annotations

import copy
import os.path as osp

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from published_rules import assert_every_parameter_follows_published_rule

from mmcv_custom.models.internimage import expand_arch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

# configs/coco/ configs of this file (test_coco_configs.py lists the others)
COCO_HEADLINE = (
    'dino-4scale_internimage-h_o365-pre_coco.py',
    'dino-4scale_cbinternimage-h_o365-pre_coco.py',
    'dino-4scale_internimage-g_o365-pre_coco.py',
)
# config -> published parameter count in millions (model zoo of OpenGVLab/InternImage: DINO H 1.1B,
# CB-H 2.2B, G 3.1B; UperNet-H 1.12B; Mask2Former-H 1.31B, also on COCO-Stuff-164k). The Objects365
# stages are the same models with 365 classes (no published count of their own).
PUBLISHED = {
    'coco/dino-4scale_internimage-h_o365-pre_coco.py': 1100,
    'coco/dino-4scale_cbinternimage-h_o365-pre_coco.py': 2200,
    'coco/dino-4scale_internimage-g_o365-pre_coco.py': 3100,
    'objects365/dino-4scale_internimage-h_objects365.py': 1100,
    'objects365/dino-4scale_cbinternimage-h_objects365.py': 2200,
    'objects365/dino-4scale_internimage-g_objects365.py': 3100,
    'ade20k/upernet_internimage-h_8xb2-160k_ade20k-896x896.py': 1120,
    'ade20k/mask2former_internimage-h_8xb2-80k_ade20k-896x896.py': 1310,
    'coco_stuff164k/mask2former_internimage-h_8xb2-80k_coco-stuff164k-896x896.py': 1310,
}
# config -> (lr, layer decay rate, configured num_layers, offset lr scale, with_cp), published
RECIPES = {
    'coco/dino-4scale_internimage-h_o365-pre_coco.py': (1e-4, 0.94, 50, 1e-3, True),
    'coco/dino-4scale_cbinternimage-h_o365-pre_coco.py': (1e-4, 0.94, 50, 1e-3, True),
    'coco/dino-4scale_internimage-g_o365-pre_coco.py': (1e-4, 0.94, 56, 1e-3, True),
    'ade20k/upernet_internimage-h_8xb2-160k_ade20k-896x896.py': (2e-5, 0.95, 50, 1.0, False),
    'ade20k/mask2former_internimage-h_8xb2-80k_ade20k-896x896.py': (1e-5, 0.95, 50, 1.0, False),
    'coco_stuff164k/mask2former_internimage-h_8xb2-80k_coco-stuff164k-896x896.py':
        (2e-5, 0.95, 50, 1.0, False),
}


def load(name: str) -> Config:
    cfg = Config.fromfile(osp.join(ROOT, 'configs', name))  # imports the *_custom package
    init_default_scope(cfg.default_scope)
    return cfg


def build_on_meta(cfg: Config) -> torch.nn.Module:
    if cfg.default_scope == 'mmdet':
        from mmdet.registry import MODELS
    else:
        from mmseg.registry import MODELS
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.init_cfg = None  # nothing to download
    with torch.device('meta'):
        return MODELS.build(model_cfg)


@pytest.mark.parametrize('name', sorted(PUBLISHED))
def test_param_count_matches_published(name):
    model = build_on_meta(load(name))
    n = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(n - PUBLISHED[name]) <= 0.03 * PUBLISHED[name], f'{name}: {n:.1f}M'


@pytest.mark.slow
@pytest.mark.parametrize('name', sorted(RECIPES))
def test_published_optimizer_and_memory_settings(name):
    lr, rate, num_layers, offset_scale, with_cp = RECIPES[name]
    cfg = load(name)
    assert cfg.model.backbone.with_cp is with_cp
    paramwise = cfg.optim_wrapper.paramwise_cfg
    assert (paramwise.num_layers, paramwise.layer_decay_rate) == (num_layers, rate)
    assert cfg.optim_wrapper.clip_grad == dict(max_norm=0.1, norm_type=2)
    model = build_on_meta(cfg)
    optim = build_optim_wrapper(model, cfg.optim_wrapper).optimizer
    # every parameter: the published layer-decay rule, restated on its own (for CB-H the rule sees
    # no `backbone.levels.*` names, so the composite backbone trains at the head's lr, as published)
    assert_every_parameter_follows_published_rule(
        model, optim, base_lr=lr, base_wd=cfg.optim_wrapper.optimizer.weight_decay, rate=rate,
        configured_num_layers=num_layers, depths=expand_arch(cfg.model.backbone.to_dict())['depths'],
        offset_lr_scale=offset_scale)


def test_dino_recipes_follow_the_published_configs():
    cfg = load('coco/dino-4scale_internimage-h_o365-pre_coco.py')
    assert cfg.model.dn_cfg.group_cfg.num_dn_queries == 1000
    assert cfg.model.data_preprocessor.pad_size_divisor == 32
    train = cfg.train_dataloader.dataset.pipeline
    assert [t.type for t in train] == ['LoadImageFromFile', 'LoadAnnotations', 'RandomFlip',
                                       'RandomResize', 'PackDetInputs']
    assert train[3].scale == [(2000, 600), (2000, 1800)]
    assert cfg.test_dataloader.dataset.pipeline[1].scale == (2000, 1000)
    assert cfg.train_dataloader.batch_size == 1
    assert (cfg.train_cfg.type, cfg.train_cfg.max_iters) == ('IterBasedTrainLoop', 20000)
    (warmup,) = cfg.param_scheduler
    assert (warmup.start_factor, warmup.end) == (0.001, 500)
    assert cfg.val_evaluator.type == 'CocoMetric'  # pycocotools
    # each COCO model starts from its own Objects365 stage
    for coco_name, o365 in (('dino-4scale_internimage-h_o365-pre_coco.py', 'dino-4scale_internimage-h_objects365'),
                            ('dino-4scale_internimage-g_o365-pre_coco.py', 'dino-4scale_internimage-g_objects365'),
                            ('dino-4scale_cbinternimage-h_o365-pre_coco.py',
                             'dino-4scale_cbinternimage-h_objects365')):
        coco_cfg = load(f'coco/{coco_name}')
        assert coco_cfg.load_from == f'work_dirs/{o365}/epoch_26.pth'
        stage = load(f'objects365/{o365}.py')
        assert stage.train_dataloader.dataset.type == 'Objects365V2Dataset'
        assert stage.model.bbox_head.num_classes == 365 and stage.train_cfg.max_epochs == 26
        assert stage.load_from is None
        assert stage.model.backbone.init_cfg.checkpoint.startswith('https://huggingface.co/OpenGVLab/')
        assert stage.model.type == coco_cfg.model.type


def test_cb_config_and_its_tta():
    cfg = load('coco/dino-4scale_cbinternimage-h_o365-pre_coco.py')
    assert (cfg.model.type, cfg.model.backbone.type) == ('CBDINO', 'CBInternImage')
    assert cfg.model.backbone.out_indices == [(0, 1, 2, 3), (1, 2, 3)]
    assert isinstance(cfg.model.neck, list) and cfg.model.neck[0].type == 'ChannelMapper'
    assert cfg.tta_model.type == 'DetTTAModel'
    model = build_on_meta(cfg)
    assert next(iter(model.neck.state_dict())).startswith('0.')  # published `neck.0.*` keys


def test_segmentation_recipes_follow_the_published_configs():
    up = load('ade20k/upernet_internimage-h_8xb2-160k_ade20k-896x896.py')
    m2f = load('ade20k/mask2former_internimage-h_8xb2-80k_ade20k-896x896.py')
    stuff = load('coco_stuff164k/mask2former_internimage-h_8xb2-80k_coco-stuff164k-896x896.py')
    for cfg in (up, m2f, stuff):
        assert cfg.model.backbone.drop_path_rate == 0.5
        assert cfg.model.data_preprocessor.size == (896, 896)
        resize = [t for t in cfg.train_dataloader.dataset.pipeline if t.type == 'RandomResize'][0]
        assert (resize.scale, resize.ratio_range) == ((3584, 896), (0.5, 2.0))
        assert cfg.train_dataloader.batch_size * 8 == 16
        assert cfg.tta_model.type == 'SegTTAModel'
        warmup, poly = cfg.param_scheduler
        assert (warmup.end, poly.power) == (1500, 1.0)
    assert up.train_cfg.max_iters == 160000 and m2f.train_cfg.max_iters == stuff.train_cfg.max_iters == 80000
    assert up.model.backbone.init_cfg.checkpoint.endswith('internimage_h_jointto22k_384.pth')
    head = m2f.model.decode_head
    assert (head.type, head.feat_channels, head.num_queries, head.num_classes) == (
        'Mask2FormerHead', 1024, 200, 150)
    assert head.transformer_decoder.num_layers == 9
    assert stuff.model.decode_head.num_classes == 171
    assert stuff.train_dataloader.dataset.type == 'COCOStuffDataset'
    assert m2f.load_from == ('work_dirs/mask2former_internimage-h_8xb2-80k_coco-stuff164k-896x896/'
                             'iter_80000.pth')
    assert stuff.model.backbone.init_cfg.checkpoint.endswith('internimage_h_jointto22k_384.pth')
    # published multi-scale test of Mask2Former-H: 768/896 .. 1024/896 of (3584, 896), with flips
    scales = [t.scale for t in m2f.tta_pipeline[1].transforms[0]]
    assert scales == [(int(3584 * r), int(896 * r)) for r in (768 / 896, 832 / 896, 1.0, 960 / 896, 1024 / 896)]
