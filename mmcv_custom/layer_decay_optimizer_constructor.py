"""Layer-wise learning-rate decay for InternImage: the published detection/segmentation rule and the
published ImageNet fine-tuning rule.

``mode='detection'`` (default; mmdet and mmseg configs): every parameter gets a layer id, the stem 0,
block ``b`` of level ``s`` ``b + 1 + sum(depths[:s])``, a level's downsample and final norm the id after
its last block, heads and necks the top id; its lr is
``base_lr * layer_decay_rate ** (num_layers - layer_id - 1)`` with ``num_layers`` the configured value
plus 2. No weight decay for 1-D parameters, biases and names containing ``norm``.

``mode='classification'`` (ImageNet fine-tuning of L/XL/H/G): the ``k``-th block counted from the last
gets ``layer_decay_rate ** k``; the stem that of the first block; ``levels.i.downsample`` and
``levels.i.norm`` (i < 3) that of the first block of level ``i + 1``; everything else (``levels.3.norm``,
``levels.2.post_norms``, the heads) the full lr. Parameters whose name contains ``offset``,
``attention_weights``, ``center_feature_scale_proj`` or ``alpha_beta`` are further multiplied by
``dcn_lr_mul``. No weight decay for 1-D parameters and biases.

The constructor is registered in mmengine's root ``OPTIM_WRAPPER_CONSTRUCTORS``, which the mmdet, mmseg
and mmpretrain registries fall back to, so all their configs can name it.
"""
from __future__ import annotations

import json
import re
from typing import Sequence

import torch.nn as nn
from mmengine.dist import get_dist_info
from mmengine.logging import MMLogger
from mmengine.optim import DefaultOptimWrapperConstructor
from mmengine.registry import OPTIM_WRAPPER_CONSTRUCTORS

__all__ = ['get_layer_id', 'is_no_decay', 'get_cls_decay_exponent', 'is_dcn_param',
           'CustomLayerDecayOptimizerConstructor']

# Deformable-attention offsets of DETR-like heads (DINO): no weight decay, `offset_lr_scale`.
_OFFSET_NAMES = ('sampling_offsets', 'reference_points')
# Parameters of the DCNv3 layers that the published ImageNet fine-tuning trains at `dcn_lr_mul` x lr
# (the published rule names `attention_weights` and `alpha_beta` too; InternImage has neither).
_DCN_NAMES = ('offset', 'attention_weights', 'center_feature_scale_proj', 'alpha_beta')
_BLOCK = re.compile(r'levels\.(\d+)\.blocks\.(\d+)\.')
_LEVEL_TAIL = re.compile(r'levels\.(\d+)\.(downsample|norm)\.')


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


def get_cls_decay_exponent(name: str, depths: Sequence[int]) -> int:
    """Exponent ``k`` of ``layer_decay_rate ** k`` for ``name`` in the published ImageNet rule.

    Args:
        name: Parameter name, with or without the ``backbone.`` prefix.
        depths: Blocks per level.

    Returns:
        ``sum(depths) - 1 - g`` for the ``g``-th block of the network (0 for the last one); the first
        block's exponent for the stem; that of level ``i + 1``'s first block for ``levels.i.downsample``
        and ``levels.i.norm`` with ``i < len(depths) - 1``; ``0`` (the full lr) for everything else.
    """
    last = sum(depths) - 1
    block = _BLOCK.search(name)
    if block:
        return last - (sum(depths[:int(block[1])]) + int(block[2]))
    if 'patch_embed' in name:
        return last
    tail = _LEVEL_TAIL.search(name)
    if tail and int(tail[1]) < len(depths) - 1:
        return last - sum(depths[:int(tail[1]) + 1])
    return 0


def is_dcn_param(name: str) -> bool:
    """Whether the published ImageNet rule trains ``name`` at ``dcn_lr_mul`` x its lr."""
    return any(s in name for s in _DCN_NAMES)


def _detection_group(name: str, param, cfg: dict) -> tuple[str, float, bool]:
    num_layers = cfg['num_layers'] + 2
    layer_id = get_layer_id(name, num_layers, cfg['depths'])
    scale = cfg['layer_decay_rate'] ** (num_layers - layer_id - 1)
    no_decay = is_no_decay(name, param)
    group = f'layer_{layer_id}_{"no_decay" if no_decay else "decay"}'
    if any(s in name for s in _OFFSET_NAMES):
        group += '_offset_lr_scale'
        scale *= cfg.get('offset_lr_scale', 1.0)
    return group, scale, no_decay


def _classification_group(name: str, param, cfg: dict) -> tuple[str, float, bool]:
    exponent = get_cls_decay_exponent(name, cfg['depths'])
    scale = cfg['layer_decay_rate'] ** exponent
    no_decay = param.ndim == 1 or name.endswith('.bias')
    group = f'decay_exp_{exponent}_{"no_decay" if no_decay else "decay"}'
    if cfg.get('dcn_lr_mul') is not None and is_dcn_param(name):
        group += '_dcn_lr_mul'
        scale *= cfg['dcn_lr_mul']
    return group, scale, no_decay


_MODES = {
    'detection': (_detection_group, ('num_layers', 'layer_decay_rate', 'depths')),
    'classification': (_classification_group, ('layer_decay_rate', 'depths')),
}


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class CustomLayerDecayOptimizerConstructor(DefaultOptimWrapperConstructor):
    """Optimizer-wrapper constructor with InternImage's layer-wise lr decay.

    ``paramwise_cfg``:
        mode (str): ``'detection'`` (default: the detection/segmentation rule) or
            ``'classification'`` (the ImageNet fine-tuning rule); see the module docstring.
        num_layers (int): Configured number of layers (T 30, S/B 33, L 37, XL 39, H 50); detection.
        layer_decay_rate (float): Decay per layer.
        depths (list[int]): Blocks per level.
        offset_lr_scale (float): Extra lr factor of ``sampling_offsets``/``reference_points``
            (DINO heads). Default 1. Detection only.
        dcn_lr_mul (float | None): Extra lr factor of the DCNv3 offset and centre-feature-scale
            parameters. Default None (off). Classification only.
    """

    def add_params(self, params: list[dict], module: nn.Module, **kwargs) -> None:
        """Append one param group per (lr scale, decay / no decay) to ``params``."""
        cfg = self.paramwise_cfg
        mode = cfg.get('mode', 'detection')
        if mode not in _MODES:
            raise ValueError(f'CustomLayerDecayOptimizerConstructor: paramwise_cfg.mode must be one of '
                             f'{sorted(_MODES)}, got {mode!r}')
        group_of, required = _MODES[mode]
        for key in required:
            if key not in cfg:
                raise KeyError(f'CustomLayerDecayOptimizerConstructor needs paramwise_cfg.{key} '
                               f'(mode {mode!r})')
        logger = MMLogger.get_current_instance()

        groups: dict[str, dict] = {}
        for name, param in module.named_parameters():
            if not param.requires_grad:
                continue  # frozen
            group_name, scale, no_decay = group_of(name, param, cfg)
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
        logger.info(f'CustomLayerDecayOptimizerConstructor ({mode}): {len(groups)} param groups, '
                    f'decay rate {cfg["layer_decay_rate"]}')
        params.extend(groups.values())
