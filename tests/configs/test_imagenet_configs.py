"""ImageNet configs for mmpretrain: each builds the published classifier (exact keys and parameter
count) and carries the published training / evaluation recipe."""
from __future__ import annotations

import copy
import os

import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope
from official_keys import published_keys

from mmcv_custom.models.internimage import expand_arch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CFG_DIR = os.path.join(ROOT, 'configs', 'imagenet')

# size -> (config, exact published params in millions, resolution, checkpoint file)
PUBLISHED = {
    't': ('internimage-t_8xb128_in1k-224.py', 29.92, 224, 'internimage_t_1k_224.pth'),
    's': ('internimage-s_8xb128_in1k-224.py', 50.08, 224, 'internimage_s_1k_224.pth'),
    'b': ('internimage-b_8xb128_in1k-224.py', 97.46, 224, 'internimage_b_1k_224.pth'),
    'l': ('internimage-l_8xb64_in1k-384.py', 223.33, 384, 'internimage_l_22kto1k_384.pth'),
    'xl': ('internimage-xl_8xb64_in1k-384.py', 334.82, 384, 'internimage_xl_22kto1k_384.pth'),
    'h': ('internimage-h_in1k-640.py', 1089.64, 640, 'internimage_h_22kto1k_640.pth'),
    'g': ('internimage-g_in1k-512.py', 3076.37, 512, 'internimage_g_22kto1k_512.pth'),
}


def load(name: str) -> Config:
    import mmpretrain_custom  # noqa: F401  (registers InternImage, heads, classifier)
    init_default_scope('mmpretrain')
    return Config.fromfile(os.path.join(CFG_DIR, name))


def build_on_meta(cfg: Config) -> torch.nn.Module:
    """The classifier of ``cfg`` without its checkpoint (nothing downloaded or allocated)."""
    from mmpretrain.registry import MODELS
    model_cfg = copy.deepcopy(cfg.model)
    model_cfg.init_cfg = None
    model_cfg.data_preprocessor = copy.deepcopy(cfg.data_preprocessor)
    with torch.device('meta'):
        return MODELS.build(model_cfg)


@pytest.mark.parametrize('size', list(PUBLISHED))
def test_config_builds_published_classifier(size):
    name, params_m, *_ = PUBLISHED[size]
    model = build_on_meta(load(name))
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == published_keys(size)
    n = sum(p.numel() for p in model.parameters())
    assert round(n / 1e6, 2) == params_m


@pytest.mark.parametrize('size', list(PUBLISHED))
def test_config_points_at_published_checkpoint_and_evaluation_recipe(size):
    # Loading the published files themselves is tested in tests/mmpretrain_custom (published layout).
    name, _, res, ckpt = PUBLISHED[size]
    cfg = load(name)
    assert cfg.model.init_cfg == dict(type='Pretrained', checkpoint=cfg.checkpoint)
    assert cfg.checkpoint == f'https://huggingface.co/OpenGVLab/InternImage/resolve/main/{ckpt}'
    # Crop ratio 1.0: the short side resized (bicubic) to the crop size, then a centre crop.
    resize, crop = cfg.test_dataloader.dataset.pipeline[1:3]
    assert (resize.type, resize.scale, resize.edge, resize.interpolation) == (
        'ResizeEdge', res, 'short', 'bicubic')
    assert (crop.type, crop.crop_size) == ('CenterCrop', res)
    train_crop = cfg.train_dataloader.dataset.pipeline[1]
    assert (train_crop.type, train_crop.scale, train_crop.interpolation) == (
        'RandomResizedCrop', res, 'bicubic')
    assert cfg.custom_hooks == [
        dict(type='PublishedCheckpointEMAHook', momentum=1e-4, priority='ABOVE_NORMAL')]
    assert cfg.optim_wrapper.clip_grad == dict(max_norm=5.0)
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    assert cfg.optim_wrapper.optimizer.weight_decay == 0.05


@pytest.mark.parametrize('size', ['t', 's', 'b'])
def test_300_epoch_recipe(size):
    cfg = load(PUBLISHED[size][0])
    assert cfg.train_cfg.max_epochs == 300
    assert cfg.train_dataloader.batch_size * 8 == cfg.auto_scale_lr.base_batch_size == 1024
    assert cfg.optim_wrapper.optimizer.lr == pytest.approx(5e-4 * 1024 / 512)
    warmup, cosine = cfg.param_scheduler
    assert (warmup.type, warmup.start_factor, warmup.end) == ('LinearLR', 1e-3, 20)
    assert (cosine.type, cosine.eta_min, cosine.begin) == ('CosineAnnealingLR', 1e-5, 20)
    assert cfg.model.train_cfg.augments == [dict(type='Mixup', alpha=0.8),
                                           dict(type='CutMix', alpha=1.0)]
    assert cfg.model.head.loss == dict(type='LabelSmoothLoss', label_smooth_val=0.1,
                                       mode='original')
    types = {t.type: t for t in cfg.train_dataloader.dataset.pipeline}
    assert types['RandomErasing'].erase_prob == 0.25
    assert (types['RandAugment'].magnitude_level, types['RandAugment'].magnitude_std) == (9, 0.5)


@pytest.mark.parametrize('size', ['l', 'xl', 'h', 'g'])
def test_fine_tuning_recipe(size):
    cfg = load(PUBLISHED[size][0])
    assert cfg.train_cfg.max_epochs == 20
    assert cfg.auto_scale_lr.base_batch_size == 512
    if size in ('l', 'xl'):
        assert cfg.train_dataloader.batch_size * 8 == 512
    assert cfg.optim_wrapper.optimizer.lr == 2e-5
    assert cfg.model.head.loss.label_smooth_val == 0.3
    assert not cfg.model.train_cfg  # no Mixup / CutMix
    assert 'RandomErasing' not in [t.type for t in cfg.train_dataloader.dataset.pipeline]
    assert cfg.model.backbone.with_cp
    # Published drop path of the 22K->1K fine-tuning configs.
    assert cfg.model.backbone.drop_path_rate == dict(l=0.1, xl=0.2, h=0.2, g=0.4)[size]


def published_lr_and_wd(named_params, depths, base_lr, weight_decay, decay_ratio, dcn_lr_mul):
    """The published ImageNet fine-tuning rule, restated the way it is written: an ordered table of
    name fragments built from the last block backwards (`lr_decay_keywords`), the first fragment
    contained in a name gives its ratio (unlisted names 1.0), names mentioning a DCNv3 offset/gate
    get x dcn_lr_mul, and 1-D parameters and biases get no weight decay."""
    ratios = {}
    idx = 0
    for level in (3, 2, 1, 0):
        for j in range(depths[level]):
            ratios[f'levels.{level}.blocks.{depths[level] - j - 1}.'] = decay_ratio ** idx
            idx += 1
    ratios['patch_embed'] = ratios['levels.0.blocks.0.']
    for level in (0, 1, 2):
        ratios[f'levels.{level}.downsample'] = ratios[f'levels.{level + 1}.blocks.0.']
        ratios[f'levels.{level}.norm'] = ratios[f'levels.{level + 1}.blocks.0.']
    out = {}
    for name, p in named_params:
        ratio = next((v for k, v in ratios.items() if k in name), None)
        lr = base_lr * (ratio if ratio is not None else 1.0)
        if any(k in name for k in ('offset', 'attention_weights', 'center_feature_scale_proj',
                                   'alpha_beta')):
            lr *= dcn_lr_mul
        wd = 0.0 if (len(p.shape) == 1 or name.endswith('.bias')) else weight_decay
        out[name] = (lr, wd)
    return out


@pytest.mark.parametrize('size', ['l', 'xl', 'h', 'g'])
def test_every_parameter_gets_the_published_lr_and_weight_decay(size):
    cfg = load(PUBLISHED[size][0])
    backbone = expand_arch(cfg.model.backbone.to_dict())  # `arch` names the size
    model = build_on_meta(cfg)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    got = {}
    for group in wrapper.optimizer.param_groups:
        for name in group['param_names']:
            assert name not in got, name
            got[name] = (group['lr'], group['weight_decay'])
    named = list(model.named_parameters())
    want = published_lr_and_wd(named, backbone['depths'], 2e-5, 0.05, 0.9, 0.1)
    assert sorted(got) == sorted(want)  # every trainable parameter, once
    for name, (lr, wd) in want.items():
        assert got[name][0] == pytest.approx(lr, rel=1e-12), name
        assert got[name][1] == wd, name
    # Spot checks worked out by hand (L: 37 blocks, exponents count from the last block).
    if size == 'l':
        assert got['backbone.patch_embed.conv1.weight'][0] == pytest.approx(2e-5 * 0.9 ** 36)
        assert got['backbone.levels.1.downsample.conv.weight'][0] == pytest.approx(2e-5 * 0.9 ** 26)
        assert got['backbone.levels.3.blocks.4.dcn.offset.bias'] == (pytest.approx(2e-6), 0.0)
        assert got['backbone.levels.3.blocks.4.dcn.offset.weight'] == (pytest.approx(2e-6), 0.05)
        assert got['backbone.levels.2.downsample.norm.1.weight'] == (pytest.approx(2e-5 * 0.9 ** 4), 0.0)
        assert got['head.conv_head.0.weight'] == (pytest.approx(2e-5), 0.05)
        assert got['head.head.bias'] == (pytest.approx(2e-5), 0.0)
    if size == 'h':  # 50 blocks; H has per-level norms, the last one undecayed
        assert got['backbone.levels.3.norm.0.weight'] == (pytest.approx(2e-5), 0.0)
        assert got['backbone.levels.0.norm.0.weight'][0] == pytest.approx(2e-5 * 0.9 ** 43)
    # The DCN multiplier reaches the offsets of every block and (H/G) the centre-feature gates.
    dcn = [n for n in got if 'dcn.offset' in n or 'center_feature_scale_proj' in n]
    assert len(dcn) == sum(backbone['depths']) * (
        4 if backbone.get('center_feature_scale') else 2)
