"""The published layer-wise lr decay rule of InternImage's detection and segmentation fine-tuning,
restated on its own as a test oracle for the COCO and ADE20K configs (it shares no code with
``mmcv_custom.layer_decay_optimizer_constructor``).

Published rule (``get_num_layer_for_swin`` and ``CustomLayerDecayOptimizerConstructor`` of the
published mmdet/mmseg code), for full model parameter names (``backbone.levels.2.blocks.3.mlp.fc1.weight``)
and ``num_layers`` = the configured value + 2:

* ``backbone.patch_embed.*`` and ``*level_embeds*``: layer 0;
* ``backbone.levels.s.<x>.b.*`` with ``<x>`` not ``downsample``/``norm`` (blocks, level-2 post norms):
  ``b + 1 + sum(depths[:s])``;
* ``backbone.levels.s.downsample.*`` / ``backbone.levels.s.norm.*``: ``1 + sum(depths[:s + 1])`` for
  s = 0, 1, 2 and ``1 + sum(depths[:3])`` for s = 3;
* everything else (necks, heads): ``num_layers - 1``.

lr = ``base_lr * rate ** (num_layers - layer_id - 1)``, times ``offset_lr_scale`` for
``sampling_offsets``/``reference_points``; weight decay 0 for 1-D parameters, names ending in ``.bias``
and names containing ``norm``, ``relative_position`` or ``sampling_offsets``, else the base value.
"""
from __future__ import annotations

from typing import Sequence

import pytest
import torch


def published_layer_id(name: str, num_layers: int, depths: Sequence[int]) -> int:
    """Layer id of the full parameter name ``name`` (``num_layers``: configured + 2)."""
    if name.startswith('backbone.patch_embed'):
        return 0
    if 'level_embeds' in name:
        return 0
    if name.startswith('backbone.levels') or name.startswith('backbone.layers'):
        parts = name.split('.')
        stage = int(parts[2])
        if parts[3] not in ('downsample', 'norm'):
            return int(parts[4]) + 1 + sum(depths[:stage])
        if stage == 0:
            return 1 + depths[0]
        if stage == 1:
            return 1 + depths[0] + depths[1]
        return 1 + depths[0] + depths[1] + depths[2]  # stage 2, and stage 3's norm
    return num_layers - 1


def published_lr_and_wd(name: str, param: torch.Tensor, base_lr: float, base_wd: float, rate: float,
                        configured_num_layers: int, depths: Sequence[int],
                        offset_lr_scale: float = 1.0) -> tuple[float, float]:
    """(lr, weight decay) of parameter ``name`` under the published rule."""
    num_layers = configured_num_layers + 2
    layer_id = published_layer_id(name, num_layers, depths)
    lr = base_lr * rate ** (num_layers - layer_id - 1)
    if 'sampling_offsets' in name or 'reference_points' in name:
        lr *= offset_lr_scale
    no_decay = (len(param.shape) == 1 or name.endswith('.bias') or 'norm' in name
                or 'relative_position' in name or 'sampling_offsets' in name)
    return lr, 0.0 if no_decay else base_wd


def param_settings(optimizer) -> dict[str, tuple[float, float, torch.Tensor]]:
    """``name -> (lr, weight decay, parameter)`` over the optimizer's param groups; each name once."""
    out = {}
    for group in optimizer.param_groups:
        assert len(group['param_names']) == len(group['params'])
        for name, p in zip(group['param_names'], group['params']):
            assert name not in out, f'{name} is in two param groups'
            out[name] = (group['lr'], group['weight_decay'], p)
    return out


def assert_every_parameter_follows_published_rule(model: torch.nn.Module, optimizer, base_lr: float,
                                                  base_wd: float, rate: float,
                                                  configured_num_layers: int, depths: Sequence[int],
                                                  offset_lr_scale: float = 1.0) -> None:
    """Every trainable parameter of ``model`` is in exactly one group of ``optimizer``, under its own
    name, with the published lr and weight decay."""
    got = param_settings(optimizer)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert sorted(got) == sorted(trainable)
    for name, p in trainable.items():
        lr, wd, grouped = got[name]
        assert grouped is p, name
        exp_lr, exp_wd = published_lr_and_wd(name, p, base_lr, base_wd, rate, configured_num_layers,
                                             depths, offset_lr_scale)
        assert (lr, wd) == (pytest.approx(exp_lr, rel=1e-9), exp_wd), name
