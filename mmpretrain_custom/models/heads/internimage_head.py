"""The published InternImage ImageNet heads as mmpretrain classification heads.

Attribute names equal the published top-level module names (``conv_head``, ``head``, ``dcnv3_head_x4``,
``clip_projector``, ``fc_norm``...), so that a head's state dict is the published one's head part;
:class:`~mmpretrain_custom.models.classifiers.InternImageClassifier` removes the ``head.`` prefix.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models.heads import ClsHead
from mmpretrain.registry import MODELS

from mmcv_custom.models.internimage import build_act, build_norm, init_linear_and_norm

__all__ = ['CrossAttention', 'AttentionPoolingBlock', 'InternImageClsHead', 'InternImageClipHead']



class CrossAttention(nn.Module):
    """Multi-head attention of queries ``x`` over keys ``k`` and values ``v`` (B, N, C).

    q/k/v projections carry separate bias parameters (``q_bias``...), as in the published
    checkpoints (BEiT style).

    Args:
        dim: Channels of q, k and v.
        num_heads: Attention heads.
        qkv_bias: Learn q/k/v biases.
        qk_scale: Attention logit scale; default ``head_dim ** -0.5``.
        attn_drop: Dropout of the attention weights.
        proj_drop: Dropout after the output projection.
        out_dim: Output channels; default ``dim``.
    """

    def __init__(self, dim: int, num_heads: int = 8, qkv_bias: bool = False,
                 qk_scale: float | None = None, attn_drop: float = 0.0, proj_drop: float = 0.0,
                 out_dim: int | None = None):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f'dim ({dim}) must be divisible by num_heads ({num_heads})')
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.q = nn.Linear(dim, dim, bias=False)
        self.k = nn.Linear(dim, dim, bias=False)
        self.v = nn.Linear(dim, dim, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.k_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = self.k_bias = self.v_bias = None
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, out_dim or dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def _heads(self, x: torch.Tensor, linear: nn.Linear, bias: torch.Tensor | None) -> torch.Tensor:
        b, n, _ = x.shape
        return F.linear(x, linear.weight, bias).reshape(b, n, self.num_heads, -1).transpose(1, 2)

    def forward(self, x: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        q = self._heads(x, self.q, self.q_bias) * self.scale
        k = self._heads(k, self.k, self.k_bias)
        v = self._heads(v, self.v, self.v_bias)
        attn = self.attn_drop((q @ k.transpose(-2, -1)).softmax(dim=-1))
        x = (attn @ v).transpose(1, 2).flatten(2)
        return self.proj_drop(self.proj(x))


class AttentionPoolingBlock(nn.Module):
    """Pool tokens (B, N, C) to one vector (B, out_dim): the token mean attends to all tokens.

    Args:
        dim: Token channels.
        num_heads: Attention heads.
        qkv_bias: Learn q/k/v biases.
        norm_layer: Norm of queries, keys and values.
        out_dim: Output channels.
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, norm_layer: str = 'LN',
                 out_dim: int | None = None):
        super().__init__()
        self.norm1_q = build_norm(dim, norm_layer)
        self.norm1_k = build_norm(dim, norm_layer)
        self.norm1_v = build_norm(dim, norm_layer)
        self.cross_dcn = CrossAttention(dim, num_heads=num_heads, qkv_bias=qkv_bias, out_dim=out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = self.norm1_q(x.mean(1, keepdim=True))
        x = self.cross_dcn(q, k=self.norm1_k(x), v=self.norm1_v(x))
        return x.squeeze(1)


@MODELS.register_module()
class InternImageClsHead(ClsHead):
    """InternImage-T..XL head: 1x1 conv to ``cls_scale`` x channels, BN, act, avg pool, linear.

    Takes the last backbone output (N, C, H, W).

    Args:
        num_classes: Classes.
        in_channels: Channels of the last backbone level.
        cls_scale: Width of the 1x1 conv relative to ``in_channels``.
        act_layer: Activation after the BN.
        **kwargs: :class:`mmpretrain.models.heads.ClsHead` arguments (loss, topk, ...).
    """

    def __init__(self, num_classes: int, in_channels: int, cls_scale: float = 1.5,
                 act_layer: str = 'GELU', **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.in_channels = in_channels
        hidden = int(in_channels * cls_scale)
        self.conv_head = nn.Sequential(
            nn.Conv2d(in_channels, hidden, kernel_size=1, bias=False),
            build_norm(hidden, 'BN', 'channels_first', 'channels_first'),
            build_act(act_layer))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(hidden, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(init_linear_and_norm)

    def pre_logits(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        x = feats[-1]
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f'feats[-1] must have shape (N, {self.in_channels}, H, W), got {tuple(x.shape)}')
        return self.avgpool(self.conv_head(x)).flatten(1)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.head(self.pre_logits(feats))


@MODELS.register_module()
class InternImageClipHead(ClsHead):
    """InternImage-H/G head: levels 2 and 3 fused at level 2's stride, attention-pooled, normed, linear.

    Level 3 goes through a 1x1 conv and a pixel shuffle (``dcnv3_head_x4``), level 2 through a 1x1
    conv (``dcnv3_head_x3``); their sum is pooled by ``clip_projector`` and normed by ``fc_norm``.
    Takes the last two backbone outputs (use ``out_indices=(2, 3)``).

    Args:
        num_classes: Classes.
        in_channels: Channels of the last backbone level (level 2 has half).
        embed_dim: Channels of the fused map.
        upsample: Pixel-shuffle factor of level 3.
        num_heads: Attention-pooling heads.
        clip_embed_dim: Output channels of the attention pooling.
        norm_layer: Norm of the pooling block and ``fc_norm``.
        **kwargs: :class:`mmpretrain.models.heads.ClsHead` arguments.
    """

    def __init__(self, num_classes: int, in_channels: int, embed_dim: int = 1024, upsample: int = 2,
                 num_heads: int = 16, clip_embed_dim: int = 768, norm_layer: str = 'LN', **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.upsample = upsample
        self.dcnv3_head_x4 = nn.Sequential(
            nn.Conv2d(in_channels, embed_dim * upsample ** 2, kernel_size=1),
            nn.PixelShuffle(upsample))
        self.dcnv3_head_x3 = nn.Conv2d(in_channels // 2, embed_dim, kernel_size=1)
        self.clip_projector = AttentionPoolingBlock(embed_dim, num_heads=num_heads, qkv_bias=True,
                                                    norm_layer=norm_layer, out_dim=clip_embed_dim)
        self.fc_norm = build_norm(clip_embed_dim, norm_layer)
        self.head = nn.Linear(clip_embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(init_linear_and_norm)

    def pre_logits(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        if len(feats) < 2:
            raise ValueError('InternImageClipHead needs the outputs of levels 2 and 3 '
                             f'(backbone out_indices=(2, 3)), got {len(feats)} feature map(s)')
        x3, x4 = feats[-2], feats[-1]
        if x4.shape[1] != self.in_channels or x3.shape[1] != self.in_channels // 2:
            raise ValueError(f'feats[-2:] must have {self.in_channels // 2} and {self.in_channels} '
                             f'channels, got {x3.shape[1]} and {x4.shape[1]}')
        if tuple(x3.shape[-2:]) != (x4.shape[-2] * self.upsample, x4.shape[-1] * self.upsample):
            raise ValueError(f'level 2 ({tuple(x3.shape[-2:])}) must be {self.upsample}x level 3 '
                             f'({tuple(x4.shape[-2:])}) in size: use input sides divisible by 32')
        x = self.dcnv3_head_x4(x4) + self.dcnv3_head_x3(x3)
        x = x.flatten(2).transpose(1, 2)
        return self.fc_norm(self.clip_projector(x))

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.head(self.pre_logits(feats))
