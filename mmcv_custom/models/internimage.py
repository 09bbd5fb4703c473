"""InternImage backbone (CVPR 2023), one implementation for mmdet, mmseg and mmpretrain.

InternImage is a hierarchical CNN whose token mixer is DCNv3, a grouped deformable convolution with
softmax-normalised modulation. Blocks run channels-last (N, H, W, C) like the published code, so
LayerNorm, MLP and DCNv3 need no permutes; the model takes and returns NCHW tensors.

Module names and nesting follow the published checkpoints exactly (``patch_embed``, ``levels.i.blocks.j``,
norms wrapped in ``nn.Sequential`` with parameter-free permutes, ...), so state dicts load without any
key conversion. The classification heads live in ``mmpretrain_custom/models/heads/internimage_head.py``.

Class names are not the published ones (those name a block one level up): our
:class:`InternImageBlock` (DCNv3 + MLP with residuals, keys ``levels.i.blocks.j.*``) is the published
``InternImageLayer``, and our :class:`InternImageStage` (a level: blocks, norm, downsample, keys
``levels.i.*``) is the published ``InternImageBlock``. The published sizes are :data:`ARCHS`
(``InternImage(arch='t')``).

Reference: Wang et al., "InternImage: Exploring Large-Scale Vision Foundation Models with Deformable
Convolutions", https://arxiv.org/abs/2211.05778.
"""
from __future__ import annotations

import functools
import inspect
import logging
from typing import Any, Sequence, Union

import torch
import torch.nn as nn
import torch.utils.checkpoint as cp
from mmcv.cnn.bricks import DropPath  # stochastic depth, as timm's: no parameters
from mmengine.logging import print_log
from mmengine.model import BaseModule

from ops_dcnv3.modules.dcnv3 import (
    build_act_layer,
    build_norm_layer,
    channels_last_to_conv_input,
    to_channels_first,
    to_channels_last,
)

from ..checkpoint import load_backbone_state_dict

__all__ = [
    'ToChannelsFirst', 'ToChannelsLast', 'build_norm', 'build_act', 'DropPath', 'StemLayer',
    'DownsampleLayer', 'MLPLayer', 'InternImageBlock', 'InternImageStage', 'InternImage',
    'get_core_op', 'ARCHS', 'arch_settings', 'expand_arch',
]

# Backbone arguments of the published ImageNet models (classification configs: T has no layer scale;
# the detection/segmentation configs use layer_scale=1.0 for T..XL).
ARCHS: dict[str, dict] = {
    't': dict(channels=64, depths=[4, 4, 18, 4], groups=[4, 8, 16, 32], offset_scale=1.0,
              layer_scale=None, post_norm=False),
    's': dict(channels=80, depths=[4, 4, 21, 4], groups=[5, 10, 20, 40], offset_scale=1.0,
              layer_scale=1e-5, post_norm=True),
    'b': dict(channels=112, depths=[4, 4, 21, 4], groups=[7, 14, 28, 56], offset_scale=1.0,
              layer_scale=1e-5, post_norm=True),
    'l': dict(channels=160, depths=[5, 5, 22, 5], groups=[10, 20, 40, 80], offset_scale=2.0,
              layer_scale=1e-5, post_norm=True),
    'xl': dict(channels=192, depths=[5, 5, 24, 5], groups=[12, 24, 48, 96], offset_scale=2.0,
               layer_scale=1e-5, post_norm=True),
    'h': dict(channels=320, depths=[6, 6, 32, 6], groups=[10, 20, 40, 80], offset_scale=1.0,
              layer_scale=None, post_norm=False, dw_kernel_size=5, res_post_norm=True,
              level2_post_norm=True, level2_post_norm_block_ids=[5, 11, 17, 23, 29],
              center_feature_scale=True),
    'g': dict(channels=512, depths=[2, 2, 48, 4], groups=[16, 32, 64, 128], offset_scale=1.0,
              layer_scale=None, post_norm=True, dw_kernel_size=5, res_post_norm=False,
              level2_post_norm=True, level2_post_norm_block_ids=[5, 11, 17, 23, 29, 35, 41, 47],
              center_feature_scale=True),
}


def arch_settings(arch: str) -> dict:
    """A copy of the backbone arguments of the published size ``arch`` (``'t'``, ..., ``'g'``)."""
    key = arch.lower() if isinstance(arch, str) else arch
    if key not in ARCHS:
        raise ValueError(f'arch must be one of {", ".join(map(repr, ARCHS))}, got {arch!r}')
    return {k: list(v) if isinstance(v, list) else v for k, v in ARCHS[key].items()}


def expand_arch(cfg: Any) -> Any:
    """A config (dict, list or value) with every InternImage ``arch=`` replaced by what it stands for.

    Does to a config what the backbone does to its arguments: the size arguments of ``arch`` fill
    those the dict does not give. Lets a config that names its size be read (``depths``, ...) or
    compared with one that spells the sizes out.
    """
    if isinstance(cfg, dict):
        cfg = {k: expand_arch(v) for k, v in cfg.items()}
        if cfg.get('type') in ('InternImage', 'CBInternImage') and cfg.get('arch') is not None:
            cfg = {**arch_settings(cfg.pop('arch')), **cfg}
        return cfg
    if isinstance(cfg, (list, tuple)):
        return type(cfg)(expand_arch(v) for v in cfg)
    return cfg


def _fill_from_arch(init):
    """``__init__`` decorator: ``arch=`` fills the size arguments that the caller did not pass."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        if kwargs.get('arch') is not None:
            given = signature.bind_partial(self, *args, **kwargs).arguments
            kwargs.update({k: v for k, v in arch_settings(kwargs['arch']).items() if k not in given})
        init(self, *args, **kwargs)

    return wrapper


# The permute wrappers, norm and activation builders are the operator package's, so that the DCNv3
# module and the backbone build their norms one way (the published keys depend on that layout).
ToChannelsFirst = to_channels_first
ToChannelsLast = to_channels_last
build_norm = build_norm_layer
build_act = build_act_layer


def get_core_op(core_op: str) -> type:
    """The DCNv3 module class named ``core_op`` from :mod:`ops_dcnv3.modules`."""
    try:
        from ops_dcnv3 import modules as dcn_modules
    except ImportError as e:  # pragma: no cover - only without the operator package
        raise ImportError('InternImage needs the ops_dcnv3 package (pip install -e . in the repo root)') from e
    op = getattr(dcn_modules, core_op, None)
    if not isinstance(op, type):
        raise ValueError(f"core_op must name a module of ops_dcnv3.modules ('DCNv3' or 'DCNv3_pytorch'), "
                         f'got {core_op!r}')
    return op


class StemLayer(nn.Module):
    """Two stride-2 3x3 convs: NCHW image in, channels-last features at 1/4 resolution out.

    Args:
        in_chans: Image channels.
        out_chans: Output channels (the first conv has half of them).
        act_layer: Activation between the convs.
        norm_layer: Norm after each conv.
    """

    def __init__(self, in_chans: int = 3, out_chans: int = 96, act_layer: str = 'GELU',
                 norm_layer: str = 'BN'):
        super().__init__()
        self.conv1 = nn.Conv2d(in_chans, out_chans // 2, kernel_size=3, stride=2, padding=1)
        self.norm1 = build_norm(out_chans // 2, norm_layer, 'channels_first', 'channels_first')
        self.act = build_act(act_layer)
        self.conv2 = nn.Conv2d(out_chans // 2, out_chans, kernel_size=3, stride=2, padding=1)
        self.norm2 = build_norm(out_chans, norm_layer, 'channels_first', 'channels_last')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.conv1(x)))
        return self.norm2(self.conv2(x))


class DownsampleLayer(nn.Module):
    """Stride-2 3x3 conv doubling the channels; channels-last in and out.

    Args:
        channels: Input channels.
        norm_layer: Norm after the conv.
    """

    def __init__(self, channels: int, norm_layer: str = 'LN'):
        super().__init__()
        self.conv = nn.Conv2d(channels, 2 * channels, kernel_size=3, stride=2, padding=1, bias=False)
        self.norm = build_norm(2 * channels, norm_layer, 'channels_first', 'channels_last')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.conv(channels_last_to_conv_input(x)))


class MLPLayer(nn.Module):
    """Two-layer MLP on the last dimension.

    Args:
        in_features: Input (and default output) features.
        hidden_features: Hidden features; defaults to ``in_features``.
        out_features: Output features; defaults to ``in_features``.
        act_layer: Hidden activation.
        drop: Dropout after the activation and after the output layer.
    """

    def __init__(self, in_features: int, hidden_features: int | None = None,
                 out_features: int | None = None, act_layer: str = 'GELU', drop: float = 0.0):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = build_act(act_layer)
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop(self.act(self.fc1(x)))
        return self.drop(self.fc2(x))


class InternImageBlock(nn.Module):
    """DCNv3 token mixer + MLP, each with a residual; channels-last in and out.

    Three residual layouts, as published: pre-norm ``x + f(norm(x))`` (default), post-norm
    ``x + norm(f(x))`` (``post_norm``) and pre+post-norm ``x + post(f(norm(x)))`` (``res_post_norm``,
    InternImage-H). ``layer_scale`` multiplies each branch by a learned per-channel ``gamma``.

    Args:
        core_op: DCNv3 module class.
        channels: Channels.
        groups: DCNv3 groups.
        mlp_ratio: MLP hidden width / channels.
        drop: Dropout in the MLP.
        drop_path: Stochastic depth of both branches.
        act_layer: Activation (MLP and the DCNv3 depth-wise conv).
        norm_layer: Norm inside DCNv3.
        post_norm: Post-norm residuals.
        layer_scale: Initial value of ``gamma1``/``gamma2``; ``None`` for no layer scale.
        offset_scale: DCNv3 offset (and kernel grid) scale.
        with_cp: Gradient checkpointing of the block while training.
        dw_kernel_size: Kernel of the DCNv3 depth-wise conv (default: the DCN kernel, 3).
        res_post_norm: Extra norm on each branch output (InternImage-H).
        center_feature_scale: DCNv3 center feature scale (InternImage-H/G).
        remove_center: DCNv3 without the kernel's center point.
    """

    def __init__(
            self,
            core_op: type,
            channels: int,
            groups: int,
            mlp_ratio: float = 4.0,
            drop: float = 0.0,
            drop_path: float = 0.0,
            act_layer: str = 'GELU',
            norm_layer: str = 'LN',
            post_norm: bool = False,
            layer_scale: float | None = None,
            offset_scale: float = 1.0,
            with_cp: bool = False,
            dw_kernel_size: int | None = None,
            res_post_norm: bool = False,
            center_feature_scale: bool = False,
            remove_center: bool = False,
    ):
        super().__init__()
        self.channels = channels
        self.groups = groups
        self.mlp_ratio = mlp_ratio
        self.with_cp = with_cp
        self.post_norm = post_norm

        self.norm1 = build_norm(channels, 'LN')
        self.dcn = core_op(
            channels=channels,
            kernel_size=3,
            stride=1,
            pad=1,
            dilation=1,
            group=groups,
            offset_scale=offset_scale,
            act_layer=act_layer,
            norm_layer=norm_layer,
            dw_kernel_size=dw_kernel_size,
            center_feature_scale=center_feature_scale,
            remove_center=remove_center,
        )
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = build_norm(channels, 'LN')
        self.mlp = MLPLayer(channels, int(channels * mlp_ratio), act_layer=act_layer, drop=drop)
        self.layer_scale = layer_scale is not None
        if self.layer_scale:
            self.gamma1 = nn.Parameter(layer_scale * torch.ones(channels))
            self.gamma2 = nn.Parameter(layer_scale * torch.ones(channels))
        # The norms exist whenever res_post_norm is set (that is the published state dict), but as
        # published they are only used without layer scale and without post-norm, which take precedence.
        if res_post_norm:
            self.res_post_norm1 = build_norm(channels, 'LN')
            self.res_post_norm2 = build_norm(channels, 'LN')
        self.res_post_norm = res_post_norm and not post_norm and not self.layer_scale

    def _scale(self, x: torch.Tensor, gamma_name: str) -> torch.Tensor:
        return getattr(self, gamma_name) * x if self.layer_scale else x

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.post_norm:
            x = x + self.drop_path(self._scale(self.norm1(self.dcn(x)), 'gamma1'))
            return x + self.drop_path(self._scale(self.norm2(self.mlp(x)), 'gamma2'))
        if self.res_post_norm:
            x = x + self.drop_path(self.res_post_norm1(self.dcn(self.norm1(x))))
            return x + self.drop_path(self.res_post_norm2(self.mlp(self.norm2(x))))
        x = x + self.drop_path(self._scale(self.dcn(self.norm1(x)), 'gamma1'))
        return x + self.drop_path(self._scale(self.mlp(self.norm2(x)), 'gamma2'))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.with_cp and x.requires_grad:
            # Non-reentrant checkpointing replays the saved RNG state, so DropPath/Dropout draw the
            # same masks in the recomputation and gradients equal the non-checkpointed ones.
            return cp.checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)


class InternImageStage(nn.Module):
    """A level of InternImage: ``depth`` blocks, a final norm and an optional downsample.

    Args:
        core_op: DCNv3 module class.
        channels: Channels of the level.
        depth: Number of blocks.
        groups: DCNv3 groups.
        downsample: Whether the level ends with a stride-2 conv doubling the channels.
        drop_path: Stochastic depth, one value for all blocks or one per block.
        post_norm: Post-norm blocks; such a level has no final norm unless
            ``center_feature_scale`` is set (as published).
        post_norm_block_ids: Blocks followed by an extra LayerNorm (InternImage-H/G, level 2).
        center_feature_scale: DCNv3 center feature scale.
        **block_kwargs: Further :class:`InternImageBlock` arguments.
    """

    def __init__(
            self,
            core_op: type,
            channels: int,
            depth: int,
            groups: int,
            downsample: bool = True,
            mlp_ratio: float = 4.0,
            drop: float = 0.0,
            drop_path: Union[float, Sequence[float]] = 0.0,
            act_layer: str = 'GELU',
            norm_layer: str = 'LN',
            post_norm: bool = False,
            offset_scale: float = 1.0,
            layer_scale: float | None = None,
            with_cp: bool = False,
            dw_kernel_size: int | None = None,
            post_norm_block_ids: Sequence[int] | None = None,
            res_post_norm: bool = False,
            center_feature_scale: bool = False,
            remove_center: bool = False,
    ):
        super().__init__()
        self.channels = channels
        self.depth = depth
        if isinstance(drop_path, (int, float)):
            drop_path = [float(drop_path)] * depth
        if len(drop_path) != depth:
            raise ValueError(f'drop_path must have one rate per block ({depth}), got {len(drop_path)}')
        self.blocks = nn.ModuleList([
            InternImageBlock(
                core_op=core_op,
                channels=channels,
                groups=groups,
                mlp_ratio=mlp_ratio,
                drop=drop,
                drop_path=drop_path[i],
                act_layer=act_layer,
                norm_layer=norm_layer,
                post_norm=post_norm,
                layer_scale=layer_scale,
                offset_scale=offset_scale,
                with_cp=with_cp,
                dw_kernel_size=dw_kernel_size,
                res_post_norm=res_post_norm,
                center_feature_scale=center_feature_scale,
                remove_center=remove_center,
            ) for i in range(depth)
        ])
        self.has_norm = not post_norm or center_feature_scale
        if self.has_norm:
            self.norm = build_norm(channels, 'LN')
        # Position of each post-normed block in `post_norms` (InternImage-H/G).
        self.post_norm_index = {}
        if post_norm_block_ids is not None:
            self.post_norm_index = {int(b): k for k, b in enumerate(post_norm_block_ids)}
            self.post_norms = nn.ModuleList([build_norm(channels, 'LN') for _ in post_norm_block_ids])
        self.downsample = DownsampleLayer(channels, norm_layer) if downsample else None

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns ``(input of the next level, this level's output before the downsample)``."""
        for i, blk in enumerate(self.blocks):
            x = blk(x)
            if i in self.post_norm_index:
                x = self.post_norms[self.post_norm_index[i]](x)
        if self.has_norm:
            x = self.norm(x)
        out = x
        if self.downsample is not None:
            x = self.downsample(x)
        return x, out


class InternImage(BaseModule):
    """InternImage backbone: NCHW image in, a list of NCHW feature maps (one per ``out_indices``) out.

    Level ``i`` has ``channels * 2**i`` channels at stride ``4 * 2**i``. Constructor arguments are those
    of the published detection/segmentation backbone, so its configs build unchanged.

    Args:
        core_op: DCNv3 module of :mod:`ops_dcnv3.modules`: ``'DCNv3'`` (compiled op) or
            ``'DCNv3_pytorch'`` (reference).
        channels: Channels of the first level.
        depths: Blocks per level.
        groups: DCNv3 groups per level.
        mlp_ratio: MLP hidden width / channels.
        drop_rate: Dropout after the stem and in the MLPs.
        drop_path_rate: Stochastic depth of the last block.
        drop_path_type: ``'linear'`` (0 to ``drop_path_rate`` over the blocks) or ``'uniform'``.
        act_layer: Activation.
        norm_layer: Norm of the stem, the downsamples and inside DCNv3 (``'LN'`` or ``'BN'``).
        layer_scale: Initial layer-scale value, ``None`` for none.
        offset_scale: DCNv3 offset scale.
        post_norm: Post-norm blocks.
        with_cp: Gradient checkpointing per block (same outputs and gradients, less memory).
        dw_kernel_size: DCNv3 depth-wise kernel (InternImage-H/G: 5).
        level2_post_norm: Extra norms after the blocks ``level2_post_norm_block_ids`` of level 2.
        level2_post_norm_block_ids: See ``level2_post_norm``.
        res_post_norm: Pre- and post-norm residual branches (InternImage-H).
        center_feature_scale: DCNv3 center feature scale (InternImage-H/G).
        remove_center: DCNv3 without the center sampling point.
        out_indices: Levels whose outputs are returned.
        frozen_stages: ``-1`` freezes nothing; ``0`` the stem; ``k >= 1`` the stem and levels
            ``0..k-1`` (parameters stop needing grad, norms stay in eval mode also after ``train()``).
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH)`` loads a published (or mmengine)
            checkpoint: weights under ``model``/``state_dict`` or at the top level, with optional
            ``module.``/``backbone.`` prefixes; other keys (classification head) are reported, not loaded.
        in_channels: Image channels (3; e.g. 4 for RGB-D inputs).
        pretrained: Checkpoint path, shorthand for ``init_cfg=dict(type='Pretrained', checkpoint=...)``
            (what mmseg's ``EncoderDecoder(pretrained=...)`` hands to its backbone).
        arch: A published size, ``'t'``, ``'s'``, ``'b'``, ``'l'``, ``'xl'``, ``'h'`` or ``'g'``
            (mmpretrain style): its entry of :data:`ARCHS` gives the size arguments (``channels``,
            ``depths``, ``groups``, ``offset_scale``, ``layer_scale``, ``post_norm`` and H/G's
            extras) that are not passed explicitly; explicit arguments win. The table holds the
            ImageNet values: detection/segmentation recipes pass ``layer_scale=1.0``.
    """

    @_fill_from_arch
    def __init__(
            self,
            core_op: str = 'DCNv3',
            channels: int = 64,
            depths: Sequence[int] = (3, 4, 18, 5),
            groups: Sequence[int] = (3, 6, 12, 24),
            mlp_ratio: float = 4.0,
            drop_rate: float = 0.0,
            drop_path_rate: float = 0.2,
            drop_path_type: str = 'linear',
            act_layer: str = 'GELU',
            norm_layer: str = 'LN',
            layer_scale: float | None = None,
            offset_scale: float = 1.0,
            post_norm: bool = False,
            with_cp: bool = False,
            dw_kernel_size: int | None = None,
            level2_post_norm: bool = False,
            level2_post_norm_block_ids: Sequence[int] | None = None,
            res_post_norm: bool = False,
            center_feature_scale: bool = False,
            remove_center: bool = False,
            out_indices: Sequence[int] = (0, 1, 2, 3),
            frozen_stages: int = -1,
            init_cfg: dict | None = None,
            pretrained: str | None = None,
            in_channels: int = 3,
            arch: str | None = None,
    ):
        if pretrained is not None:  # mmseg's EncoderDecoder passes its `pretrained` down
            if init_cfg is not None:
                raise ValueError('give either init_cfg or pretrained, not both')
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        super().__init__(init_cfg=init_cfg)
        self.arch = arch
        depths, groups = list(depths), list(groups)
        if len(depths) != len(groups):
            raise ValueError(f'depths and groups must have one entry per level, got {depths} and {groups}')
        if drop_path_type not in ('linear', 'uniform'):
            raise ValueError(f"drop_path_type must be 'linear' or 'uniform', got {drop_path_type!r}")
        self.num_levels = len(depths)
        out_indices = tuple(out_indices)
        for i in out_indices:
            if not 0 <= i < self.num_levels:
                raise ValueError(f'out_indices must lie in [0, {self.num_levels}), got {out_indices}')
        if not -1 <= frozen_stages <= self.num_levels:
            raise ValueError(f'frozen_stages must lie in [-1, {self.num_levels}], got {frozen_stages}')
        if level2_post_norm and level2_post_norm_block_ids is None:
            raise ValueError('level2_post_norm=True needs level2_post_norm_block_ids')

        self.core_op = core_op
        self.channels = channels
        self.depths = depths
        self.groups = groups
        self.mlp_ratio = mlp_ratio
        self.post_norm = post_norm
        self.out_indices = out_indices
        self.frozen_stages = frozen_stages
        self.level2_post_norm_block_ids = level2_post_norm_block_ids
        self.num_features = int(channels * 2 ** (self.num_levels - 1))
        self.out_channels = [int(channels * 2 ** i) for i in out_indices]
        op = get_core_op(core_op)

        self.in_channels = in_channels
        self.patch_embed = StemLayer(in_channels, channels, act_layer=act_layer, norm_layer=norm_layer)
        self.pos_drop = nn.Dropout(p=drop_rate)

        if drop_path_type == 'uniform':
            dpr = [float(drop_path_rate)] * sum(depths)
        else:
            dpr = [x.item() for x in torch.linspace(0, drop_path_rate, sum(depths), device='cpu')]
        self.levels = nn.ModuleList()
        for i in range(self.num_levels):
            self.levels.append(InternImageStage(
                core_op=op,
                channels=int(channels * 2 ** i),
                depth=depths[i],
                groups=groups[i],
                downsample=i < self.num_levels - 1,
                mlp_ratio=mlp_ratio,
                drop=drop_rate,
                drop_path=dpr[sum(depths[:i]):sum(depths[:i + 1])],
                act_layer=act_layer,
                norm_layer=norm_layer,
                post_norm=post_norm,
                offset_scale=offset_scale,
                layer_scale=layer_scale,
                with_cp=with_cp,
                dw_kernel_size=dw_kernel_size,
                post_norm_block_ids=level2_post_norm_block_ids if level2_post_norm and i == 2 else None,
                res_post_norm=res_post_norm,
                center_feature_scale=center_feature_scale,
                remove_center=remove_center,
            ))

        self.apply(init_linear_and_norm)
        # DCNv3 initialises its own projections (zero offsets/masks, xavier projections); redo that
        # after the generic Linear init above overwrote it.
        for m in self.modules():
            if isinstance(m, op) and hasattr(m, '_reset_parameters'):
                m._reset_parameters()
        self._freeze_stages()

    def _freeze_stages(self) -> None:
        if self.frozen_stages < 0:
            return
        frozen = [self.patch_embed] + list(self.levels[:self.frozen_stages])
        for m in frozen:
            m.eval()
            for p in m.parameters():
                p.requires_grad = False

    def train(self, mode: bool = True) -> InternImage:
        """Switch mode while keeping the frozen stages in eval mode."""
        super().train(mode)
        self._freeze_stages()
        return self

    def init_weights(self) -> None:
        """Load ``init_cfg`` ``Pretrained`` checkpoints in the published layout; else mmengine's init.

        Without ``init_cfg`` the weights stay as constructed (truncated-normal Linear layers,
        DCNv3's own initialisation). A checkpoint that matches none of the backbone's tensors
        raises :class:`~mmcv_custom.checkpoint.CheckpointMismatchError` (naming the file and the
        likely cause) instead of leaving the backbone at its random initialisation.
        """
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            if 'checkpoint' not in cfg:
                raise ValueError("init_cfg of type 'Pretrained' needs a 'checkpoint' path")
            load_backbone_state_dict(self, cfg['checkpoint'], prefix=cfg.get('prefix'),
                                     map_location=cfg.get('map_location', 'cpu'))
            self._is_init = True
            return
        if cfg is None:
            print_log(f'{type(self).__name__}: no pretrained weights (init_cfg=None), '
                      'keeping the constructor initialisation', logger='current', level=logging.DEBUG)
            return
        super().init_weights()

    def forward_levels(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Channels-last outputs (N, H, W, C) of every level, before its downsample."""
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != self.in_channels:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f'x must be an image batch of shape (N, {self.in_channels}, H, W), got {shape}')
        if not x.is_floating_point():
            raise TypeError(f'x must be a floating point tensor, got dtype {x.dtype}')
        x = self.pos_drop(self.patch_embed(x))
        outs = []
        for level in self.levels:
            x, out = level(x)
            outs.append(out)
        return outs

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        """NCHW feature maps of the levels in ``out_indices``."""
        outs = self.forward_levels(x)
        return [outs[i].permute(0, 3, 1, 2).contiguous() for i in self.out_indices]


def init_linear_and_norm(m: nn.Module) -> None:
    """Truncated-normal Linear weights, zero biases, unit LayerNorms (as published)."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
