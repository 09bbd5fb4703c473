"""Layer-wise lr decay: the layer-id table of the published rule and the param groups it builds."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from mmcv_custom.layer_decay_optimizer_constructor import (
    CustomLayerDecayOptimizerConstructor,
    get_cls_decay_exponent,
    get_layer_id,
    is_dcn_param,
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


L_DEPTHS = [5, 5, 22, 5]  # InternImage-L: 37 blocks

# (name, expected exponent k of layer_decay_rate ** k) of the published ImageNet fine-tuning rule for
# InternImage-L, worked out by hand: the k-th block counted from the last gets k (block g of the
# network, 0-based, gets 36 - g; level s starts at block 0, 5, 10, 32); the stem that of the first
# block; levels.i.downsample / levels.i.norm (i < 3) that of levels.{i+1}.blocks.0; the rest 0.
CLS_L_TABLE = [
    ('levels.3.blocks.4.mlp.fc2.weight', 0),  # the last block
    ('levels.3.blocks.0.dcn.offset.weight', 4),  # block 32
    ('levels.2.blocks.21.norm1.0.weight', 5),  # block 31
    ('levels.2.blocks.0.gamma1', 26),  # block 10
    ('levels.1.blocks.4.mlp.fc1.bias', 27),  # block 9
    ('levels.1.blocks.0.dcn.input_proj.weight', 31),  # block 5
    ('levels.0.blocks.4.dcn.mask.weight', 32),  # block 4
    ('levels.0.blocks.0.norm1.0.weight', 36),  # the first block
    ('patch_embed.conv1.weight', 36),  # = levels.0.blocks.0
    ('patch_embed.norm2.1.bias', 36),
    ('levels.0.downsample.conv.weight', 31),  # = levels.1.blocks.0
    ('levels.0.norm.0.weight', 31),
    ('levels.1.downsample.norm.1.bias', 26),  # = levels.2.blocks.0
    ('levels.1.norm.0.bias', 26),
    ('levels.2.downsample.conv.weight', 4),  # = levels.3.blocks.0
    ('levels.2.norm.0.weight', 4),
    ('levels.3.norm.0.weight', 0),  # everything else: the full lr
    ('levels.2.post_norms.1.0.weight', 0),
    ('head.fc.weight', 0),
    ('head.weight', 0),
    ('conv_head.0.weight', 0),
    ('clip_projector.cross_dcn.q.weight', 0),
    ('clip_projector.norm1_q.0.weight', 0),
    ('fc_norm.0.bias', 0),
    # mmpretrain's prefixed names work too
    ('backbone.levels.2.blocks.10.dcn.offset.weight', 16),  # block 20
    ('backbone.patch_embed.conv2.weight', 36),
    ('backbone.levels.1.downsample.conv.weight', 26),
    ('head.conv_head.0.weight', 0),
]


@pytest.mark.parametrize('name,expected', CLS_L_TABLE)
def test_cls_decay_exponent_table_internimage_l(name, expected):
    assert get_cls_decay_exponent(name, L_DEPTHS) == expected


def test_cls_decay_exponents_count_down_from_the_first_block():
    exps = [get_cls_decay_exponent(f'levels.{s}.blocks.{b}.mlp.fc1.weight', L_DEPTHS)
            for s, d in enumerate(L_DEPTHS) for b in range(d)]
    assert exps == list(range(36, -1, -1))


@pytest.mark.parametrize('name,expected', [
    ('levels.0.blocks.0.dcn.offset.weight', True),
    ('backbone.levels.1.blocks.2.dcn.offset.bias', True),
    ('levels.2.blocks.3.dcn.center_feature_scale_proj_weight', True),
    ('levels.2.blocks.3.dcn.center_feature_scale_proj_bias', True),
    ('levels.0.blocks.0.dcn.mask.weight', False),
    ('levels.0.blocks.0.dcn.input_proj.weight', False),
    ('levels.0.blocks.0.dcn.output_proj.weight', False),
    ('levels.0.blocks.0.dcn.dw_conv.0.weight', False),
    ('clip_projector.cross_dcn.q.weight', False),
    ('head.weight', False),
])
def test_is_dcn_param(name, expected):
    assert is_dcn_param(name) is expected


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


# (lr, weight decay) of every trainable parameter of _Toy with lr 1e-3, wd 0.05, num_layers 4 (+ 2 = 6
# ids), rate 0.5, offset_lr_scale 0.1, by hand: ids patch_embed 0, levels.s.blocks.0 s + 1,
# levels.s.norm s + 2 for s < 3 and 1 + 3 = 4 for s = 3, neck and sampling_offsets 5 (the top);
# lr = 1e-3 * 0.5 ** (5 - id); no decay for biases, LayerNorms (1-D, 'norm') and sampling_offsets.
TOY_EXPECTED = {
    'backbone.patch_embed.weight': (1e-3 * 0.5 ** 5, 0.05),
    'backbone.patch_embed.bias': (1e-3 * 0.5 ** 5, 0.0),
    # levels.0.blocks.0.0 is frozen
    'backbone.levels.0.blocks.0.1.weight': (1e-3 * 0.5 ** 4, 0.0),
    'backbone.levels.0.blocks.0.1.bias': (1e-3 * 0.5 ** 4, 0.0),
    'backbone.levels.0.norm.0.weight': (1e-3 * 0.5 ** 3, 0.0),
    'backbone.levels.0.norm.0.bias': (1e-3 * 0.5 ** 3, 0.0),
    'backbone.levels.1.blocks.0.0.weight': (1e-3 * 0.5 ** 3, 0.05),
    'backbone.levels.1.blocks.0.0.bias': (1e-3 * 0.5 ** 3, 0.0),
    'backbone.levels.1.blocks.0.1.weight': (1e-3 * 0.5 ** 3, 0.0),
    'backbone.levels.1.blocks.0.1.bias': (1e-3 * 0.5 ** 3, 0.0),
    'backbone.levels.1.norm.0.weight': (1e-3 * 0.5 ** 2, 0.0),
    'backbone.levels.1.norm.0.bias': (1e-3 * 0.5 ** 2, 0.0),
    'backbone.levels.2.blocks.0.0.weight': (1e-3 * 0.5 ** 2, 0.05),
    'backbone.levels.2.blocks.0.0.bias': (1e-3 * 0.5 ** 2, 0.0),
    'backbone.levels.2.blocks.0.1.weight': (1e-3 * 0.5 ** 2, 0.0),
    'backbone.levels.2.blocks.0.1.bias': (1e-3 * 0.5 ** 2, 0.0),
    'backbone.levels.2.norm.0.weight': (1e-3 * 0.5, 0.0),
    'backbone.levels.2.norm.0.bias': (1e-3 * 0.5, 0.0),
    'backbone.levels.3.blocks.0.0.weight': (1e-3 * 0.5, 0.05),
    'backbone.levels.3.blocks.0.0.bias': (1e-3 * 0.5, 0.0),
    'backbone.levels.3.blocks.0.1.weight': (1e-3 * 0.5, 0.0),
    'backbone.levels.3.blocks.0.1.bias': (1e-3 * 0.5, 0.0),
    'backbone.levels.3.norm.0.weight': (1e-3 * 0.5, 0.0),  # id 4, as levels.2's norm
    'backbone.levels.3.norm.0.bias': (1e-3 * 0.5, 0.0),
    'neck.weight': (1e-3, 0.05),
    'neck.bias': (1e-3, 0.0),
    'sampling_offsets.weight': (1e-3 * 0.1, 0.0),
    'sampling_offsets.bias': (1e-3 * 0.1, 0.0),
}


def _build(scope: str, model: nn.Module, **paramwise):
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope

    cfg = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
               constructor='CustomLayerDecayOptimizerConstructor',
               paramwise_cfg=dict(dict(num_layers=4, layer_decay_rate=0.5, depths=[1, 1, 1, 1]),
                                  **paramwise))
    with DefaultScope.overwrite_default_scope(scope):
        return build_optim_wrapper(model, cfg)


def _assert_first_adamw_step(model: nn.Module, wrapper, expected: dict) -> None:
    """One step on loss = sum of the trainable parameters moves each listed parameter as AdamW with
    its expected (lr, weight decay) does, and leaves frozen ones alone.

    Every gradient is 1, so AdamW's first step (betas (0.9, 0.999), eps 1e-8, bias-corrected:
    m_hat = g = 1, v_hat = g ** 2 = 1) gives p1 = p0 * (1 - lr * wd) - lr * 1 / (sqrt(1) + eps).
    """
    eps = 1e-8
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    loss = sum(p.sum() for p in model.parameters() if p.requires_grad)
    wrapper.update_params(loss)
    for n, p in model.named_parameters():
        if not p.requires_grad:
            assert torch.equal(p, before[n]), n
        elif n in expected:
            lr, wd = expected[n]
            torch.testing.assert_close(p.detach(), before[n] * (1 - lr * wd) - lr / (1 + eps),
                                       rtol=1e-7, atol=1e-12, msg=n)


@pytest.mark.parametrize('scope', ['mmdet', 'mmseg', 'mmpretrain'])
def test_constructor_is_found_from_each_package_and_builds_groups(scope):
    __import__(f'{scope}_custom' if scope != 'mmseg' else 'mmseg_custom')
    registry = __import__(f'{scope}.registry', fromlist=['OPTIM_WRAPPER_CONSTRUCTORS'])
    assert registry.OPTIM_WRAPPER_CONSTRUCTORS.get(
        'CustomLayerDecayOptimizerConstructor') is CustomLayerDecayOptimizerConstructor
    model = _Toy().double()  # float64: the AdamW step below is checked to 1e-7
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
    # Every parameter's lr and weight decay, worked out by hand ...
    assert sorted(TOY_EXPECTED) == sorted(trainable)
    for n, (lr_n, wd_n) in TOY_EXPECTED.items():
        assert (lr[n], wd[n]) == (pytest.approx(lr_n, rel=1e-12), wd_n), n
    # ... reach the optimizer: one AdamW step moves each parameter by them.
    _assert_first_adamw_step(model, wrapper, TOY_EXPECTED)


class _ClsToy(nn.Module):
    """Classifier-shaped toy with InternImage names as mmpretrain has them, depths [1, 1, 2, 1]."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Module()
        self.backbone.patch_embed = nn.Module()
        self.backbone.patch_embed.conv1 = nn.Conv2d(3, 4, 3)
        self.backbone.levels = nn.ModuleList()
        for i, depth in enumerate([1, 1, 2, 1]):
            level = nn.Module()
            level.blocks = nn.ModuleList()
            for _ in range(depth):
                block = nn.Module()
                block.dcn = nn.Module()
                block.dcn.offset = nn.Linear(4, 4)
                block.dcn.input_proj = nn.Linear(4, 4)
                block.dcn.center_feature_scale_proj_weight = nn.Parameter(torch.randn(2, 4))
                block.dcn.center_feature_scale_proj_bias = nn.Parameter(torch.randn(2))
                block.norm1 = nn.Sequential(nn.LayerNorm(4))
                block.gamma1 = nn.Parameter(torch.ones(4))
                level.blocks.append(block)
            level.norm = nn.Sequential(nn.LayerNorm(4))
            if i < 3:
                level.downsample = nn.Module()
                level.downsample.conv = nn.Conv2d(4, 4, 3, bias=False)
            self.backbone.levels.append(level)
        # A matrix whose name contains 'norm': decayed in classification mode (not in detection mode).
        self.backbone.levels[2].post_norms = nn.ModuleList([nn.Sequential(nn.Linear(4, 4))])
        self.head = nn.Module()
        self.head.conv_head = nn.Sequential(nn.Conv2d(4, 6, 1, bias=False))
        self.head.head = nn.Linear(6, 3)


# (lr, weight decay) with lr 1e-3, wd 0.05, rate 0.5, dcn_lr_mul 0.1, by hand: 5 blocks, exponents
# levels.0.blocks.0 4, levels.1.blocks.0 3, levels.2.blocks.0 2, levels.2.blocks.1 1, levels.3.blocks.0 0;
# the stem 4; levels.0/1/2 downsample and norm 3/2/0; levels.3.norm, post_norms and the head 0;
# x 0.1 for the DCN offsets and centre-feature-scale projections; no decay for 1-D and '.bias' only.
CLS_TOY_EXPECTED = {
    'backbone.patch_embed.conv1.weight': (1e-3 * 0.5 ** 4, 0.05),
    'backbone.patch_embed.conv1.bias': (1e-3 * 0.5 ** 4, 0.0),
    'backbone.levels.0.blocks.0.dcn.offset.weight': (1e-3 * 0.5 ** 4 * 0.1, 0.05),
    'backbone.levels.0.blocks.0.dcn.offset.bias': (1e-3 * 0.5 ** 4 * 0.1, 0.0),
    'backbone.levels.0.blocks.0.dcn.input_proj.weight': (1e-3 * 0.5 ** 4, 0.05),
    'backbone.levels.0.blocks.0.norm1.0.weight': (1e-3 * 0.5 ** 4, 0.0),
    'backbone.levels.0.downsample.conv.weight': (1e-3 * 0.5 ** 3, 0.05),
    'backbone.levels.0.norm.0.weight': (1e-3 * 0.5 ** 3, 0.0),
    'backbone.levels.1.blocks.0.gamma1': (1e-3 * 0.5 ** 3, 0.0),
    'backbone.levels.1.blocks.0.dcn.input_proj.bias': (1e-3 * 0.5 ** 3, 0.0),
    'backbone.levels.1.norm.0.bias': (1e-3 * 0.5 ** 2, 0.0),
    'backbone.levels.1.downsample.conv.weight': (1e-3 * 0.5 ** 2, 0.05),
    'backbone.levels.2.blocks.0.dcn.input_proj.weight': (1e-3 * 0.5 ** 2, 0.05),
    'backbone.levels.2.blocks.1.dcn.center_feature_scale_proj_weight': (1e-3 * 0.5 * 0.1, 0.05),
    'backbone.levels.2.blocks.1.dcn.center_feature_scale_proj_bias': (1e-3 * 0.5 * 0.1, 0.0),
    'backbone.levels.2.post_norms.0.0.weight': (1e-3, 0.05),
    'backbone.levels.2.post_norms.0.0.bias': (1e-3, 0.0),
    'backbone.levels.2.downsample.conv.weight': (1e-3, 0.05),
    'backbone.levels.2.norm.0.weight': (1e-3, 0.0),
    'backbone.levels.3.blocks.0.dcn.offset.weight': (1e-3 * 0.1, 0.05),
    'backbone.levels.3.blocks.0.dcn.input_proj.weight': (1e-3, 0.05),
    'backbone.levels.3.norm.0.weight': (1e-3, 0.0),
    'head.conv_head.0.weight': (1e-3, 0.05),
    'head.head.weight': (1e-3, 0.05),
    'head.head.bias': (1e-3, 0.0),
}


def test_classification_mode_groups_and_step():
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope

    import mmpretrain_custom  # noqa: F401

    model = _ClsToy().double()
    cfg = dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=0.05),
               constructor='CustomLayerDecayOptimizerConstructor',  # no num_layers: detection only
               paramwise_cfg=dict(mode='classification', layer_decay_rate=0.5, depths=[1, 1, 2, 1],
                                  dcn_lr_mul=0.1))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        wrapper = build_optim_wrapper(model, cfg)
    names = {n: g for g in wrapper.optimizer.param_groups for n in g['param_names']}
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())
    assert sum(len(g['params']) for g in wrapper.optimizer.param_groups) == len(names)
    for n, (lr_n, wd_n) in CLS_TOY_EXPECTED.items():
        assert (names[n]['lr'], names[n]['weight_decay']) == (pytest.approx(lr_n, rel=1e-12), wd_n), n
    _assert_first_adamw_step(model, wrapper, CLS_TOY_EXPECTED)


def test_unknown_mode_is_named():
    import mmdet_custom  # noqa: F401
    with pytest.raises(ValueError, match='mode'):
        _build('mmdet', _Toy(), mode='segmentation')


def test_missing_paramwise_key_is_named():
    with pytest.raises(KeyError, match='layer_decay_rate'):
        from mmengine.optim import build_optim_wrapper
        build_optim_wrapper(_Toy(), dict(optimizer=dict(type='AdamW', lr=1e-3),
                                         constructor='CustomLayerDecayOptimizerConstructor',
                                         paramwise_cfg=dict(num_layers=4, depths=[1, 1, 1, 1])))
