"""ADE20K UperNet configs: they build with the published sizes and recipe, test-time augmentation is
configured, and label maps are checked on loading."""
from __future__ import annotations

import copy
import os

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from published_rules import assert_every_parameter_follows_published_rule

from mmcv_custom.models.internimage import expand_arch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CFG_DIR = os.path.join(ROOT, 'configs', 'ade20k')

# size -> (config, published params in millions, crop, lr, layer decay, drop path, grad clip)
PUBLISHED = {
    't': ('upernet_internimage-t_8xb2-160k_ade20k-512x512.py', 59, 512, 6e-5, 1.0, 0.2, None),
    's': ('upernet_internimage-s_8xb2-160k_ade20k-512x512.py', 80, 512, 6e-5, 1.0, 0.3, None),
    'b': ('upernet_internimage-b_8xb2-160k_ade20k-512x512.py', 128, 512, 6e-5, 1.0, 0.4, None),
    'l': ('upernet_internimage-l_8xb2-160k_ade20k-640x640.py', 256, 640, 2e-5, 0.94, 0.4, 0.1),
    'xl': ('upernet_internimage-xl_8xb2-160k_ade20k-640x640.py', 368, 640, 2e-5, 0.94, 0.4, 0.1),
}
# Configured num_layers of the layer-decay rule (reference_numbers.md).
NUM_LAYERS = dict(t=30, s=33, b=33, l=37, xl=39)


def load(name: str) -> Config:
    import mmseg_custom  # noqa: F401  (registers InternImage and LoadCheckedAnnotations)
    init_default_scope('mmseg')
    return Config.fromfile(os.path.join(CFG_DIR, name))


def build_on_meta(cfg: Config) -> torch.nn.Module:
    """The segmentor of ``cfg`` without pre-trained weights (nothing is downloaded or allocated)."""
    from mmseg.registry import MODELS
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.backbone.init_cfg = None
    with torch.device('meta'):
        return MODELS.build(model_cfg)


@pytest.mark.parametrize('size', list(PUBLISHED))
def test_config_builds_with_published_param_count(size):
    name, params_m, *_ = PUBLISHED[size]
    model = build_on_meta(load(name))
    n = sum(p.numel() for p in model.parameters()) / 1e6
    assert abs(n - params_m) / params_m < 0.03, f'{name}: {n:.2f}M params, published {params_m}M'
    # The backbone's levels feed the heads with the channels they expect.
    c = model.backbone.channels if hasattr(model.backbone, 'channels') else None
    assert model.decode_head.in_channels == [c, 2 * c, 4 * c, 8 * c]
    assert model.auxiliary_head.in_channels == 4 * c


@pytest.mark.parametrize('size', list(PUBLISHED))
def test_config_has_published_recipe(size):
    name, _, crop, lr, decay, dpr, clip = PUBLISHED[size]
    cfg = load(name)
    assert cfg.model.backbone.init_cfg.checkpoint.startswith('https://huggingface.co/OpenGVLab/')
    assert cfg.model.backbone.drop_path_rate == dpr
    assert cfg.model.data_preprocessor.size == (crop, crop)
    crops = [t for t in cfg.train_dataloader.dataset.pipeline if t.type == 'RandomCrop']
    assert crops[0].crop_size == (crop, crop)
    assert cfg.train_dataloader.batch_size == 2  # x 8 GPUs
    assert cfg.train_cfg.max_iters == 160000
    warmup, poly = cfg.param_scheduler
    assert (warmup.type, warmup.end, poly.type, poly.power, poly.end) == (
        'LinearLR', 1500, 'PolyLR', 1.0, 160000)
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert cfg.optim_wrapper.optimizer.weight_decay == 0.05
    assert cfg.optim_wrapper.get('clip_grad', None) == (
        None if clip is None else dict(max_norm=clip, norm_type=2))
    # The test set and the multi-scale + flip set load checked annotations.
    for pipeline in (cfg.test_dataloader.dataset.pipeline, cfg.tta_pipeline[1].transforms[-2]):
        assert any(t.type == 'LoadCheckedAnnotations' and t.num_classes == 150 for t in pipeline)
    assert cfg.tta_model.type == 'SegTTAModel'
    scales = [t.scale for t in cfg.tta_pipeline[1].transforms[0]]
    assert len(scales) == 6 and (4 * crop, crop) in scales


# 't' has no decay (rate 1.0: every lr is the base lr); 'l' and 'xl' decay at 0.94, so the lr of every
# parameter depends on its layer id.
@pytest.mark.parametrize('size', ['t', 'l', 'xl'])
def test_optimizer_lr_follows_layer_decay_rule(size):
    name, _, _, lr, decay, *_ = PUBLISHED[size]
    cfg = load(name)
    depths = expand_arch(cfg.model.backbone.to_dict())['depths']  # `arch` names the size
    model = build_on_meta(cfg)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    lrs = {}
    for group in wrapper.optimizer.param_groups:
        for pname in group['param_names']:
            lrs[pname] = (group['lr'], group['weight_decay'])
    top = NUM_LAYERS[size] + 2
    assert lrs['backbone.patch_embed.conv1.weight'] == (pytest.approx(lr * decay ** (top - 1)), 0.05)
    assert lrs['decode_head.conv_seg.weight'] == (pytest.approx(lr), 0.05)
    assert lrs['decode_head.conv_seg.bias'][1] == 0.0
    assert lrs['backbone.levels.0.blocks.0.norm1.0.weight'][1] == 0.0
    # Every parameter: the layer id, lr and weight decay of the published rule, restated on its own.
    assert cfg.optim_wrapper.paramwise_cfg.num_layers == NUM_LAYERS[size]
    assert cfg.optim_wrapper.paramwise_cfg.depths == depths
    assert_every_parameter_follows_published_rule(
        model, wrapper.optimizer, base_lr=lr, base_wd=0.05, rate=decay,
        configured_num_layers=NUM_LAYERS[size], depths=depths)
    if size == 'l':  # hand-worked, depths [5, 5, 22, 5], ids 0..38: lr = 2e-5 * 0.94 ** (38 - id)
        # level 2, block 21: id 21 + 1 + 10 = 32
        assert lrs['backbone.levels.2.blocks.21.dcn.offset.weight'] == (
            pytest.approx(2e-5 * 0.94 ** 6), 0.05)
        # level 0's downsample: id 1 + 5 = 6
        assert lrs['backbone.levels.0.downsample.conv.weight'] == (pytest.approx(2e-5 * 0.94 ** 32), 0.05)
    if cfg.optim_wrapper.get('clip_grad'):
        assert wrapper.clip_grad_kwargs['max_norm'] == 0.1


def _write_png(path, array) -> str:
    assert cv2.imwrite(str(path), array)
    return str(path)


def _load(transform_cfg: dict, path: str, reduce_zero_label: bool) -> np.ndarray:
    from mmseg.registry import TRANSFORMS
    init_default_scope('mmseg')
    transform = TRANSFORMS.build(transform_cfg)
    results = transform(dict(seg_map_path=path, reduce_zero_label=reduce_zero_label,
                             seg_fields=[]))
    return results['gt_seg_map']


@pytest.mark.parametrize('reduce_zero_label', [True, False])
def test_checked_loading_equals_mmseg_loading_on_valid_maps(tmp_path, reduce_zero_label):
    import mmseg_custom  # noqa: F401
    rng = np.random.default_rng(0)
    top = 150 if reduce_zero_label else 149
    label = rng.integers(0, top + 1, size=(23, 31), dtype=np.uint8)
    label[0, :5] = 255  # ignore index
    path = _write_png(tmp_path / 'ok.png', label)
    ours = _load(dict(type='LoadCheckedAnnotations', num_classes=150), path, reduce_zero_label)
    ref = _load(dict(type='LoadAnnotations'), path, reduce_zero_label)
    assert ours.dtype == ref.dtype == np.uint8
    np.testing.assert_array_equal(ours, ref)


@pytest.mark.parametrize('value,depth', [(151, np.uint8), (300, np.uint16)])
def test_checked_loading_rejects_values_outside_class_range(tmp_path, value, depth):
    import mmseg_custom  # noqa: F401
    label = np.ones((16, 16), dtype=depth)
    label[3, 4] = value
    path = _write_png(tmp_path / f'bad_{value}.png', label)
    with pytest.raises(ValueError,
                       match=rf"bad_{value}\.png' has values \[{value}\] outside the class range"):
        _load(dict(type='LoadCheckedAnnotations', num_classes=150), path, True)
    if depth == np.uint16:
        # mmseg alone wraps 300 to 44, a valid-looking class: the reason for the check.
        assert _load(dict(type='LoadAnnotations'), path, True)[3, 4] == 43


def test_checked_loading_rejects_bad_num_classes():
    from mmseg_custom.datasets import LoadCheckedAnnotations
    with pytest.raises(ValueError, match='num_classes'):
        LoadCheckedAnnotations(num_classes=0)
