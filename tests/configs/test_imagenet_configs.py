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

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CFG_DIR = os.path.join(ROOT, 'configs', 'imagenet')
SPEC = '/work/shared/spec/official_keys'

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


def published_keys(size: str) -> dict[str, tuple]:
    out = {}
    with open(os.path.join(SPEC, f'internimage_{size}_cls.tsv')) as f:
        for line in f.read().splitlines():
            key, shape = line.split('\t')
            out[key] = tuple(int(s) for s in shape.strip('()').split(',') if s.strip())
    return out


@pytest.mark.parametrize('size', list(PUBLISHED))
def test_config_builds_published_classifier(size):
    name, params_m, *_ = PUBLISHED[size]
    model = build_on_meta(load(name))
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == published_keys(size)
    n = sum(p.numel() for p in model.parameters())
    assert round(n / 1e6, 2) == params_m


@pytest.mark.parametrize('size', list(PUBLISHED))
def test_config_loads_published_checkpoint_and_evaluates_as_published(size):
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


@pytest.mark.parametrize('size', ['l', 'xl'])
def test_384_fine_tuning_recipe_and_layer_decay(size):
    cfg = load(PUBLISHED[size][0])
    assert cfg.train_cfg.max_epochs == 20
    assert cfg.train_dataloader.batch_size * 8 == cfg.auto_scale_lr.base_batch_size == 512
    assert cfg.optim_wrapper.optimizer.lr == 2e-5
    assert cfg.model.head.loss.label_smooth_val == 0.3
    assert not cfg.model.train_cfg  # no Mixup / CutMix
    assert 'RandomErasing' not in [t.type for t in cfg.train_dataloader.dataset.pipeline]
    assert cfg.model.backbone.with_cp

    # The published classification rule: the k-th block counted from the last gets lr x 0.9^k,
    # a level's downsample/norm that of the next level's first block, the heads the base lr.
    model = build_on_meta(cfg)
    wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    lrs = {n: g['lr'] for g in wrapper.optimizer.param_groups for n in g['param_names']}
    depths = cfg.model.backbone.depths
    ratios = {}
    k = 0
    for s in reversed(range(4)):
        for b in reversed(range(depths[s])):
            ratios[f'levels.{s}.blocks.{b}.'] = 0.9 ** k
            k += 1
    for s in range(3):
        ratios[f'levels.{s}.downsample.'] = ratios[f'levels.{s}.norm.'] = \
            ratios[f'levels.{s + 1}.blocks.0.']
    checked = 0
    for name, lr in lrs.items():
        if name.startswith('head.'):
            assert lr == pytest.approx(2e-5), name
            checked += 1
            continue
        key = next((r for r in ratios if name.startswith('backbone.' + r)), None)
        if key is not None:
            assert lr == pytest.approx(2e-5 * ratios[key]), name
            checked += 1
    assert checked > 0.95 * len(lrs)
