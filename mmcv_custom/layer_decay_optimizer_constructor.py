"""Layer-wise learning-rate decay for InternImage (the published detection/segmentation rule).

Every parameter gets a layer id: the stem 0, block ``b`` of level ``s`` ``b + 1 + sum(depths[:s])``, a
level's downsample and final norm the id after its last block, heads and necks the top id; its lr is
``base_lr * layer_decay_rate ** (num_layers - layer_id - 1)`` with ``num_layers`` the configured value
plus 2. The constructor is registered in mmengine's root ``OPTIM_WRAPPER_CONSTRUCTORS``, which the
mmdet, mmseg and mmpretrain registries fall back to, so all their configs can name it.
"""
from __future__ import annotations

import json
from typing import Sequence

import torch.nn as nn
from mmengine.dist import get_dist_info
from mmengine.logging import MMLogger
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

__all__ = ['get_layer_id', 'is_no_decay', 'CustomLayerDecayOptimizerConstructor']

# Deformable-attention offsets of DETR-like heads (DINO): no weight decay, `offset_lr_scale`.
_OFFSET_NAMES = ('sampling_offsets', 'reference_points')


def get_layer_id(name: str, num_layers: int, depths: Sequence[int]) -> int:
    """Layer id of parameter ``name`` for layer-wise lr decay.

    Args:
        name: Parameter name, with or without the ``backbone.`` prefix
            (``backbone.levels.2.blocks.3.mlp.fc1.weight``).
        num_layers: Total number of layer ids (the configured ``num_layers`` + 2).
        depths: Blocks per level.

    Returns:
        ``0`` for the stem and ``level_embeds``; ``b + 1 + sum(depths[:s])`` for block ``b`` of level
        ``s`` (and ``post_norms.b`` of level ``s``); ``1 + sum(depths[:s + 1])`` for the downsample and
        norm of level ``s`` (the last level's norm shares the id of the level before it, as published);
        ``num_layers - 1`` for everything else.
    """
    if 'level_embeds' in name:
        return 0
    rest = name[len('backbone.'):] if name.startswith('backbone.') else name
    if rest.startswith('patch_embed.'):
        return 0
    parts = rest.split('.')
    if parts[0] not in ('levels', 'layers') or len(parts) < 3 or not parts[1].isdigit():
        return num_layers - 1
    stage = int(parts[1])
    if parts[2] in ('downsample', 'norm'):
        # The last level has no downsample; its norm takes the id of the level before's downsample.
        return 1 + sum(depths[:min(stage, len(depths) - 2) + 1])
    if len(parts) < 4 or not parts[3].isdigit():
        return num_layers - 1
    return int(parts[3]) + 1 + sum(depths[:stage])


def is_no_decay(name: str, param) -> bool:
    """No weight decay for 1-D parameters, biases, norms (and deformable-attention offsets)."""
    return (param.ndim == 1 or name.endswith('.bias') or 'norm' in name
            or 'relative_position' in name or 'sampling_offsets' in name)


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class CustomLayerDecayOptimizerConstructor(DefaultOptimWrapperConstructor):
    """Optimizer-wrapper constructor with InternImage's layer-wise lr decay.

    ``paramwise_cfg``:
        num_layers (int): Configured number of layers (T 30, S/B 33, L 37, XL 39, H 50).
        layer_decay_rate (float): Decay per layer.
        depths (list[int]): Blocks per level.
        offset_lr_scale (float): Extra lr factor of ``sampling_offsets``/``reference_points``
            (DINO heads). Default 1.
    """

    def add_params(self, params: list[dict], module: nn.Module, **kwargs) -> None:
        """Append one param group per (layer id, decay / no decay, offset) to ``params``."""
        cfg = self.paramwise_cfg
        for key in ('num_layers', 'layer_decay_rate', 'depths'):
            if key not in cfg:
                raise KeyError(f'CustomLayerDecayOptimizerConstructor needs paramwise_cfg.{key}')
        num_layers = cfg['num_layers'] + 2
        decay_rate = cfg['layer_decay_rate']
        depths = list(cfg['depths'])
        offset_lr_scale = cfg.get('offset_lr_scale', 1.0)
        logger = MMLogger.get_current_instance()

        groups: dict[str, dict] = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue  # frozen
            no_decay = is_no_decay(name, param)
            layer_id = get_layer_id(name, num_layers, depths)
            scale = decay_rate ** (num_layers - layer_id - 1)
            group_name = f'layer_{layer_id}_{"no_decay" if no_decay else "decay"}'
            if any(s in name for s in _OFFSET_NAMES):
                group_name += '_offset_lr_scale'
                scale *= offset_lr_scale
            if group_name not in groups:
                groups[group_name] = dict(
                    params=[], param_names=[], lr_scale=scale, group_name=group_name,
                    lr=scale * self.base_lr)
                if no_decay:
                    groups[group_name]['weight_decay'] = 0.0
                elif self.base_wd is not None:
                    groups[group_name]['weight_decay'] = self.base_wd
            groups[group_name]['params'].append(param)
            groups[group_name]['param_names'].append(name)

        if get_dist_info()[0] == 0:
            summary = {k: {f: g.get(f) for f in ('param_names', 'lr_scale', 'lr', 'weight_decay')}
                       for k, g in groups.items()}
            logger.debug(f'Param groups = {json.dumps(summary, indent=2)}')
        logger.info(f'CustomLayerDecayOptimizerConstructor: {len(groups)} param groups, '
                    f'decay rate {decay_rate}, {num_layers} layers')
        params.extend(groups.values())
