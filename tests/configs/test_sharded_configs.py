"""The InternImage-H/G fine-tuning recipes and their sharded variants (FSDP, DeepSpeed ZeRO)."""
from __future__ import annotations

import copy
import functools
import importlib.util
import os
import sys

import pytest
import torch
from mmengine.config import Config

from mmcv_custom.models.internimage import expand_arch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
CFG = os.path.join(ROOT, 'configs', 'imagenet')
HF = 'https://huggingface.co/OpenGVLab/InternImage/resolve/main/'

# size -> (recipe, resolution, drop path, 22K checkpoint the published fine-tuning starts from)
RECIPES = {
    'h': ('internimage-h_in1k-640.py', 640, 0.2, 'internimage_h_jointto22k_384.pth'),
    'g': ('internimage-g_in1k-512.py', 512, 0.4, 'internimage_g_pretrainto22k_384.pth'),
}
HAS_DEEPSPEED = importlib.util.find_spec('deepspeed') is not None


@functools.cache
def _load(name: str) -> Config:
    import mmpretrain_custom  # noqa: F401  (registers InternImage, the strategy, the hooks)
    return Config.fromfile(os.path.join(CFG, name))


def load(name: str) -> Config:
    return copy.deepcopy(_load(name))  # a copy: tests edit it


@pytest.mark.parametrize('size', list(RECIPES))
def test_published_22k_to_1k_recipe(size):
    name, res, drop_path, pretrained = RECIPES[size]
    cfg = load(name)
    # internimage_{h,g}_22kto1k_*.yaml: 20 epochs (2 warm-up from 0, cosine to 0), AdamW lr 2e-5
    # per 512 images, wd 0.05, layer decay 0.9, DCN lr x0.1, EMA 0.9999, clip 5, with_cp;
    # published DeepSpeed command: 16 images per GPU, 4 accumulation steps, 8 GPUs
    assert cfg.train_cfg.max_epochs == 20
    warmup, cosine = cfg.param_scheduler
    assert (warmup.type, warmup.end, cosine.type, cosine.begin, cosine.eta_min) == (
        'LinearLR', 2, 'CosineAnnealingLR', 2, 0.0)
    assert cfg.train_dataloader.batch_size == 16
    assert cfg.optim_wrapper.accumulative_counts == 4
    assert 16 * 4 * 8 == cfg.auto_scale_lr.base_batch_size == 512
    assert cfg.optim_wrapper.optimizer.lr == 2e-5
    assert cfg.optim_wrapper.optimizer.weight_decay == 0.05
    assert cfg.optim_wrapper.clip_grad == dict(max_norm=5.0)
    paramwise = cfg.optim_wrapper.paramwise_cfg
    assert (paramwise.mode, paramwise.layer_decay_rate, paramwise.dcn_lr_mul) == (
        'classification', 0.9, 0.1)
    assert paramwise.depths == expand_arch(cfg.model.backbone.to_dict())['depths']
    assert cfg.model.backbone.drop_path_rate == drop_path
    assert cfg.model.backbone.with_cp
    assert cfg.model.head.loss.label_smooth_val == 0.3
    assert [h.momentum for h in cfg.custom_hooks] == [1e-4]
    assert cfg.pretrained_22k == HF + pretrained
    assert cfg.train_dataloader.dataset.pipeline[1].scale == res


@pytest.mark.parametrize('size,res', [('h', 640), ('g', 512)])
def test_fsdp_variant_is_the_recipe_on_the_flexible_runner(size, res):
    recipe = load(RECIPES[size][0])
    cfg = load(f'internimage-{size}_fsdp_in1k-{res}.py')
    assert cfg.runner_type == 'FlexibleRunner'
    assert cfg.strategy.type == 'InternImageFSDPStrategy'
    assert cfg.strategy.state_dict_cfg == 'full'
    wrapper = cfg.strategy.model_wrapper
    assert wrapper.auto_wrap_policy == dict(type='internimage_block_wrap_policy')
    assert wrapper.use_orig_params and wrapper.sharding_strategy == 'FULL_SHARD'
    for key in ('model', 'optim_wrapper', 'param_scheduler', 'train_cfg', 'custom_hooks',
                'train_dataloader'):
        assert cfg[key] == recipe[key], key


@pytest.mark.parametrize('size,res', [('h', 640), ('g', 512)])
@pytest.mark.parametrize('zero', ['zero1', 'zero3-offload'])
def test_deepspeed_variants(size, res, zero):
    recipe = load(RECIPES[size][0])
    cfg = load(f'internimage-{size}_deepspeed-{zero}_in1k-{res}.py')
    assert cfg.runner_type == 'FlexibleRunner'
    strategy = cfg.strategy
    assert strategy.type == 'DeepSpeedStrategy'
    # ds_config_zero1.json / ds_config_zero3_offload.json of the published code
    assert strategy.fp16 == dict(enabled=True, auto_cast=True, loss_scale=0,
                                 initial_scale_power=16)
    assert strategy.gradient_clipping == 5.0
    assert strategy.gradient_accumulation_steps == 4
    stage, offload = (1, 'none') if zero == 'zero1' else (3, 'cpu')
    assert strategy.zero_optimization == dict(stage=stage, offload_optimizer=dict(device=offload),
                                              offload_param=dict(device=offload))
    optim = cfg.optim_wrapper
    assert optim.type == 'DeepSpeedOptimWrapper'
    assert 'clip_grad' not in optim and 'accumulative_counts' not in optim
    assert optim.optimizer == dict(type='AdamW', lr=2e-5, weight_decay=0.05, eps=1e-8,
                                   betas=(0.9, 0.999))
    assert optim.paramwise_cfg == recipe.optim_wrapper.paramwise_cfg
    assert cfg.model == recipe.model


@pytest.mark.skipif(HAS_DEEPSPEED, reason='deepspeed is installed')
@pytest.mark.parametrize('zero', ['zero1', 'zero3-offload'])
def test_deepspeed_config_without_deepspeed_names_the_package(tmp_path, zero):
    from tools.train import build_runner

    cfg = load(f'internimage-h_deepspeed-{zero}_in1k-640.py')
    cfg.work_dir = str(tmp_path)
    with pytest.raises(ImportError, match=r'DeepSpeedStrategy.*`deepspeed`.*pip install deepspeed'):
        build_runner(cfg)


def test_wrap_policy_makes_each_block_a_unit():
    from torch.distributed.fsdp.wrap import _recursive_wrap

    import mmcv_custom  # noqa: F401
    from mmcv_custom.models import InternImage
    from mmcv_custom.models.internimage import InternImageBlock
    from mmcv_custom.sharded import internimage_block_wrap_policy

    model = InternImage(channels=16, depths=[1, 1, 2, 1], groups=[1, 2, 4, 8])
    blocks = [m for m in model.modules() if isinstance(m, InternImageBlock)]
    wrapped = []

    def wrapper_cls(module, **kwargs):
        wrapped.append(module)
        return module

    _recursive_wrap(model, internimage_block_wrap_policy, wrapper_cls, ignored_modules=set(),
                    ignored_params=set(), only_wrap_children=True)
    assert wrapped == blocks and len(blocks) == 5
    assert internimage_block_wrap_policy(model, recurse=True, nonwrapped_numel=0)
    assert not internimage_block_wrap_policy(model.patch_embed, recurse=False, nonwrapped_numel=0)


def test_fsdp_configs_get_the_sharded_ema_hook():
    from mmcv_custom.sharded import use_sharded_ema

    fsdp = load('internimage-h_fsdp_in1k-640.py')
    assert use_sharded_ema(fsdp)
    assert [h.type for h in fsdp.custom_hooks] == ['ShardedEMAHook']
    assert fsdp.custom_hooks[0].momentum == 1e-4
    ddp = load('internimage-h_in1k-640.py')
    assert not use_sharded_ema(ddp)
    assert [h.type for h in ddp.custom_hooks] == ['PublishedCheckpointEMAHook']


def test_converter_refuses_what_it_cannot_merge(tmp_path):
    from tools.model_converters.sharded_to_published import convert

    local = tmp_path / 'epoch_1.pth'
    local.mkdir()
    torch.save({'state_dict': {}}, local / 'rank0.pth')
    with pytest.raises(ValueError, match="state_dict_cfg='full'"):
        convert(str(local), str(tmp_path / 'out.pth'))
    with pytest.raises(FileNotFoundError, match='does not exist'):
        convert(str(tmp_path / 'missing.pth'), str(tmp_path / 'out.pth'))
    with pytest.raises(ValueError, match="weights must be 'ema' or 'trained'"):
        convert(str(local), str(tmp_path / 'out.pth'), weights='last')
    if not HAS_DEEPSPEED:
        zero = tmp_path / 'epoch_2.pth'
        zero.mkdir()
        (zero / 'mp_rank_00_model_states.pt').write_bytes(b'')
        with pytest.raises(ImportError, match='`deepspeed`'):
            convert(str(zero), str(tmp_path / 'out.pth'))
