"""Layer-wise lr decay: the layer-id table of the published rule and the param groups it builds."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from mmcv_custom.layer_decay_optimizer_constructor import (
    CustomLayerDecayOptimizerConstructor,
    get_layer_id,
)

T_DEPTHS = [4, 4, 18, 4]
T_NUM_LAYERS = 30 + 2  # configured num_layers + 2

# (name, expected id) for InternImage-T, worked out by hand from the rule in reference_numbers.md.
T_TABLE = [
    ('backbone.patch_embed.conv1.weight', 0),
    ('backbone.patch_embed.norm2.1.bias', 0),
    ('backbone.levels.0.blocks.0.dcn.offset.weight', 1),
    ('backbone.levels.0.blocks.3.mlp.fc2.bias', 4),
    ('backbone.levels.0.downsample.conv.weight', 5),
    ('backbone.levels.0.norm.0.weight', 5),
    ('backbone.levels.1.blocks.0.norm1.0.weight', 5),  # = levels.0.downsample,
    ('backbone.levels.1.blocks.3.gamma1', 8),
    ('backbone.levels.1.downsample.norm.1.weight', 9),
    ('backbone.levels.2.blocks.0.dcn.input_proj.weight', 9),
    ('backbone.levels.2.blocks.17.mlp.fc1.weight', 26),
    ('backbone.levels.2.post_norms.2.0.weight', 11),
    ('backbone.levels.2.downsample.conv.weight', 27),
    ('backbone.levels.2.norm.0.bias', 27),
    ('backbone.levels.3.blocks.0.dcn.mask.bias', 27),
    ('backbone.levels.3.blocks.3.norm2.0.weight', 30),
    ('backbone.levels.3.norm.0.weight', 27),  # the last level's norm shares levels.2.downsample's id
    ('backbone.level_embeds', 0),
    ('neck.lateral_convs.0.conv.weight', 31),
    ('rpn_head.rpn_conv.weight', 31),
    ('head.fc.weight', 31),
    ('patch_embed.conv1.weight', 0),  # a bare backbone's names work too
    ('levels.2.blocks.5.mlp.fc1.weight', 14),
]


@pytest.mark.parametrize('name,expected', T_TABLE)
def test_layer_id_table_internimage_t(name, expected):
    assert get_layer_id(name, T_NUM_LAYERS, T_DEPTHS) == expected


def test_layer_ids_cover_every_block_once():
    """Each block of each level gets its own id, ids increase along the network."""
    ids = [get_layer_id(f'backbone.levels.{s}.blocks.{b}.norm1.0.weight', T_NUM_LAYERS, T_DEPTHS)
           for s, d in enumerate(T_DEPTHS) for b in range(d)]
    assert ids == list(range(1, sum(T_DEPTHS) + 1))


class _Toy(nn.Module):
    """Detector-shaped toy: a `backbone` with InternImage names and a `neck`."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.patch_embed = nn.Conv2d(3, 4, 3)
        self.backbone.levels = nn.ModuleList()
        for _ in range(4):
            level = nn.Module()
            level.blocks = nn.ModuleList([nn.Sequential(nn.Linear(4, 4), nn.LayerNorm(4))])
            level.norm = nn.Sequential(nn.LayerNorm(4))
            self.backbone.levels.append(level)
        self.backbone.levels[0].blocks[0][0].requires_grad_(False)  # frozen: left out
        self.neck = nn.Linear(4, 4)
        self.sampling_offsets = nn.Linear(4, 2)


def _build(scope: str, model: nn.Module, **paramwise):
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope

    cfg = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
               constructor='CustomLayerDecayOptimizerConstructor',
               paramwise_cfg=dict(num_layers=4, layer_decay_rate=0.5, depths=[1, 1, 1, 1], **paramwise))
    with DefaultScope.overwrite_default_scope(scope):
        return build_optim_wrapper(model, cfg)


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', 'mmpretrain'])
def test_constructor_is_found_from_each_package_and_builds_groups(scope):
    __import__(f'{scope}_custom' if scope != 'mmseg' else 'mmseg_custom')
    registry = __import__(f'{scope}.registry', fromlist=['OPTIM_WRAPPER_CONSTRUCTORS'])
    assert registry.OPTIM_WRAPPER_CONSTRUCTORS.get(
        'CustomLayerDecayOptimizerConstructor') is CustomLayerDecayOptimizerConstructor
    model = _Toy()
    wrapper = _build(scope, model, offset_lr_scale=0.1)
    groups = {g['group_name']: g for g in wrapper.optimizer.param_groups}
    names = {n: g for g in groups.values() for n in g['param_names']}
    top = 4 + 2 - 1  # num_layers - 1 with num_layers = 4 + 2
    lr = {n: g['lr'] for n, g in names.items()}
    wd = {n: g['weight_decay'] for n, g in names.items()}
    assert 'backbone.levels.0.blocks.0.0.weight' not in names  # frozen
    assert lr['backbone.patch_embed.weight'] == pytest.approx(1e-3 * 0.5 ** top)
    assert lr['backbone.levels.1.blocks.0.0.weight'] == pytest.approx(1e-3 * 0.5 ** (top - 2))
    assert lr['backbone.levels.3.blocks.0.0.weight'] == pytest.approx(1e-3 * 0.5 ** (top - 4))
    assert lr['backbone.levels.3.norm.0.weight'] == pytest.approx(1e-3 * 0.5 ** (top - 4))
    assert lr['neck.weight'] == pytest.approx(1e-3)
    assert lr['sampling_offsets.weight'] == pytest.approx(1e-3 * 0.1)
    assert wd['backbone.patch_embed.weight'] == 0.05 and wd['neck.weight'] == 0.05
    for n in ('backbone.patch_embed.bias', 'neck.bias', 'backbone.levels.2.blocks.0.1.weight',
              'backbone.levels.2.norm.0.weight', 'sampling_offsets.weight'):
        assert wd[n] == 0.0, n
    # Every trainable parameter is in exactly one group.
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(names) == sorted(trainable)
    assert sum(len(g['params']) for g in groups.values()) == len(trainable)
    # A step runs with these groups.
    loss = sum(p.sum() for p in model.parameters() if p.requires_grad)
    wrapper.update_params(loss)
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_missing_paramwise_key_is_named():
    with pytest.raises(KeyError, match='layer_decay_rate'):
        from mmengine.optim import build_optim_wrapper
        build_optim_wrapper(_Toy(), dict(optimizer=dict(type='AdamW', lr=1e-3),
                                         constructor='CustomLayerDecayOptimizerConstructor',
                                         paramwise_cfg=dict(num_layers=4, depths=[1, 1, 1, 1])))
