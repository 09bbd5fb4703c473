"""The DCNv3 module (published parameter names, constructor and initialisation).

One implementation: :class:`DCNv3` runs the compiled kernel for the input's device and raises, naming
the rebuild command, where there is none; :class:`DCNv3_pytorch` is the same module pinned to the
``grid_sample`` reference (as the published ``DCNv3_pytorch``), so both load the same state dicts.
"""
from __future__ import annotations

import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from .. import _loader
from ..functions.dcnv3_func import dcnv3

__all__ = ['DCNv3', 'DCNv3_pytorch']


class to_channels_first(nn.Module):  # noqa: N801  (published name)
    """(N, H, W, C) -> (N, C, H, W)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2)


class to_channels_last(nn.Module):  # noqa: N801  (published name)
    """(N, C, H, W) -> (N, H, W, C)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 2, 3, 1)


def channels_last_to_conv_input(x: torch.Tensor) -> torch.Tensor:
    """(N, H, W, C) -> (N, C, H, W) for a convolution.

    Eagerly a permuted view: convolutions run channels-last strided inputs without a copy. Under
    torch.compile it is made contiguous, because with dynamic shapes Inductor (torch 2.14) cannot
    order the symbolic strides of a permuted convolution input ("cannot determine truth value of
    Relational"), which broke multi-scale training at the first recompilation.
    """
    x = x.permute(0, 3, 1, 2)
    return x.contiguous() if torch.compiler.is_compiling() else x


def build_norm_layer(dim: int, norm_layer: str, in_format: str = 'channels_last',
                     out_format: str = 'channels_last', eps: float = 1e-6) -> nn.Sequential:
    """Norm wrapped with the permutes its layout needs (parameter-free, so keys are ``.1.weight``)."""
    for name, fmt in (('in_format', in_format), ('out_format', out_format)):
        if fmt not in ('channels_last', 'channels_first'):
            raise ValueError(f"{name} must be 'channels_last' or 'channels_first', got {fmt!r}")
    layers: list[nn.Module] = []
    if norm_layer == 'BN':
        if in_format == 'channels_last':
            layers.append(to_channels_first())
        layers.append(nn.BatchNorm2d(dim))
        if out_format == 'channels_last':
            layers.append(to_channels_last())
    elif norm_layer == 'LN':
        if in_format == 'channels_first':
            layers.append(to_channels_last())
        layers.append(nn.LayerNorm(dim, eps=eps))
        if out_format == 'channels_first':
            layers.append(to_channels_first())
    else:
        raise ValueError(f"norm_layer must be 'BN' or 'LN', got {norm_layer!r}")
    return nn.Sequential(*layers)


def build_act_layer(act_layer: str) -> nn.Module:
    if act_layer == 'ReLU':
        return nn.ReLU(inplace=True)
    if act_layer == 'SiLU':
        return nn.SiLU(inplace=True)
    if act_layer == 'GELU':
        return nn.GELU()
    raise ValueError(f"act_layer must be 'ReLU', 'SiLU' or 'GELU', got {act_layer!r}")


def point_softmax(logits: torch.Tensor) -> torch.Tensor:
    """Softmax over the last dim (the P sampling points of a group), in float32 or wider.

    Same maths as ``F.softmax`` (max-subtracted exp, normalised). On CPU ATen's softmax over rows as
    short as P = 9 runs some 20x slower than this composition of vectorised element-wise ops, which
    made it as costly as the deformable sampling itself; elsewhere (and in an ONNX export)
    ``F.softmax`` is used.
    """
    if logits.device.type != 'cpu':
        return F.softmax(logits, -1)
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()
    if torch.onnx.is_in_onnx_export():
        # An ONNX export gets one Softmax node, which runtimes run fused.
        return F.softmax(logits, -1)
    e = (logits - logits.amax(-1, keepdim=True)).exp()
    return e / e.sum(-1, keepdim=True)


class DCNv3(nn.Module):
    """DCNv3 token mixer on channels-last features (N, H, W, C) -> (N, H, W, C).

    A depth-wise conv + norm + act branch predicts per-group sampling offsets and softmax-normalised
    modulation from the input; the sampled features come from ``input_proj(x)`` and go through
    ``output_proj``.

    Args:
        channels: Feature channels C.
        kernel_size: Deformable kernel size.
        dw_kernel_size: Kernel of the depth-wise conv predicting offsets (default: ``kernel_size``).
        stride: Sampling stride (1: offsets are predicted at the input resolution).
        pad: Sampling padding, ``dilation * (kernel_size - 1) // 2`` (the output keeps the input size).
        dilation: Kernel dilation.
        group: Groups G (each with C // G channels and its own offsets/masks).
        offset_scale: Scale of the kernel grid and the learned offsets.
        act_layer: Activation after the depth-wise conv.
        norm_layer: Norm after the depth-wise conv ('LN' or 'BN').
        center_feature_scale: Blend the output with ``input_proj(x)`` by a learned per-group gate
            (InternImage-H/G).
        remove_center: Drop the kernel's centre point (odd kernels only).
    """

    # DCNv3_pytorch sets this: same module, reference sampling only.
    use_reference: bool = False

    def __init__(self, channels: int = 64, kernel_size: int = 3, dw_kernel_size: int | None = None,
                 stride: int = 1, pad: int = 1, dilation: int = 1, group: int = 4,
                 offset_scale: float = 1.0, act_layer: str = 'GELU', norm_layer: str = 'LN',
                 center_feature_scale: bool = False, remove_center: bool = False):
        super().__init__()
        if channels % group != 0:
            raise ValueError(f'channels must be divisible by group, got channels={channels} and '
                             f'group={group}')
        if remove_center and kernel_size % 2 == 0:
            raise ValueError(f'remove_center needs an odd kernel_size, got {kernel_size}')
        # Offsets and masks are predicted per input pixel, so the sampling grid must keep the input's
        # size: stride 1 and "same" padding, pad = dilation*(kernel_size-1)/2.
        if stride != 1:
            raise ValueError(f'DCNv3: stride must be 1 (offsets and masks are predicted at the input '
                             f'resolution, so the output keeps it), got stride={stride}')
        if 2 * pad != dilation * (kernel_size - 1):
            raise ValueError(f'DCNv3: pad must be dilation*(kernel_size-1)/2 = '
                             f'{dilation * (kernel_size - 1) / 2:g} for kernel_size={kernel_size}, '
                             f'dilation={dilation} (the output keeps the input size), got pad={pad}')
        group_channels = channels // group
        if group_channels & (group_channels - 1):
            # Kept from the published module: power-of-two group widths vectorise best.
            warnings.warn(f'DCNv3: group_channels={group_channels} is not a power of 2, which is '
                          'slower in the compiled kernels', stacklevel=2)
        if not self.use_reference and not _loader.is_loaded():
            # Said once here, before the first forward raises: the reference is used only when
            # asked for, never as a silent fallback.
            warnings.warn(f'DCNv3: {_loader.missing_kernel_message("cpu")} Its forward will raise '
                          'until then.', stacklevel=2)
        dw_kernel_size = dw_kernel_size if dw_kernel_size is not None else kernel_size
        self.channels = channels
        self.kernel_size = kernel_size
        self.dw_kernel_size = dw_kernel_size
        self.stride = stride
        self.dilation = dilation
        self.pad = pad
        self.group = group
        self.group_channels = group_channels
        self.offset_scale = offset_scale
        self.center_feature_scale = center_feature_scale
        self.remove_center = int(remove_center)
        points = kernel_size * kernel_size - self.remove_center

        self.dw_conv = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=dw_kernel_size, stride=1,
                      padding=(dw_kernel_size - 1) // 2, groups=channels),
            build_norm_layer(channels, norm_layer, 'channels_first', 'channels_last'),
            build_act_layer(act_layer))
        self.offset = nn.Linear(channels, group * points * 2)
        self.mask = nn.Linear(channels, group * points)
        self.input_proj = nn.Linear(channels, channels)
        self.output_proj = nn.Linear(channels, channels)
        self._reset_parameters()
        if center_feature_scale:
            # Zero weights + zero bias: the gate starts at sigmoid(0) = 0.5, as published.
            self.center_feature_scale_proj_weight = nn.Parameter(torch.zeros(group, channels))
            self.center_feature_scale_proj_bias = nn.Parameter(torch.zeros(group))

    def _reset_parameters(self) -> None:
        # Zero offsets and uniform masks at init: the op starts as a plain (averaging) kernel.
        nn.init.constant_(self.offset.weight, 0.0)
        nn.init.constant_(self.offset.bias, 0.0)
        nn.init.constant_(self.mask.weight, 0.0)
        nn.init.constant_(self.mask.bias, 0.0)
        nn.init.xavier_uniform_(self.input_proj.weight)
        nn.init.constant_(self.input_proj.bias, 0.0)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.constant_(self.output_proj.bias, 0.0)

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        if input.dim() != 4 or input.shape[-1] != self.channels:
            raise ValueError(f'DCNv3: input must be channels-last (N, H, W, C) with C = channels = '
                             f'{self.channels}, got shape {tuple(input.shape)}'
                             + (' (channels-first? permute(0, 2, 3, 1) it)' if input.dim() == 4
                                and input.shape[1] == self.channels else ''))
        n, h, w, _ = input.shape
        x = self.input_proj(input)
        x_proj = x
        x1 = self.dw_conv(channels_last_to_conv_input(input))
        offset = self.offset(x1)
        mask = self.mask(x1).reshape(n, h, w, self.group, -1)
        # Softmax over the P points of each group; cast back as published (softmax may upcast).
        mask = point_softmax(mask).reshape(n, h, w, -1).to(x.dtype)
        x = dcnv3(x, offset, mask, self.kernel_size, self.kernel_size, self.stride, self.stride,
                  self.pad, self.pad, self.dilation, self.dilation, self.group,
                  self.group_channels, self.offset_scale, self.remove_center,
                  use_reference=self.use_reference)
        if self.center_feature_scale:
            scale = F.linear(x1, self.center_feature_scale_proj_weight,
                             self.center_feature_scale_proj_bias).sigmoid()
            scale = scale.repeat_interleave(self.group_channels, dim=-1)
            x = x * (1 - scale) + x_proj * scale
        return self.output_proj(x)

    def extra_repr(self) -> str:
        return (f'channels={self.channels}, kernel_size={self.kernel_size}, group={self.group}, '
                f'offset_scale={self.offset_scale}, remove_center={self.remove_center}, '
                f'use_reference={self.use_reference}')


class DCNv3_pytorch(DCNv3):  # noqa: N801  (published name)
    """:class:`DCNv3` pinned to the pure-PyTorch ``grid_sample`` reference."""

    use_reference = True


def _register() -> None:
    try:
        from mmengine.registry import MODELS
    except ImportError:  # mmengine is optional for the operator itself
        return
    for cls in (DCNv3, DCNv3_pytorch):
        MODELS.register_module(name=cls.__name__, module=cls, force=True)


_register()
