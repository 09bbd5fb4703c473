"""FLOPs counting the way the InternImage paper reports them.

Forward hooks count multiply-accumulates of convolutions and linear layers plus the element-wise
cost of norms, activations and pooling (the rules of mmcv 1.x's ``get_model_complexity_info``, which
the published ``get_flops.py`` used), and add DCNv3's sampling cost, which no generic counter sees:
``5 * n * k * c`` per DCNv3 call for ``n`` output positions, ``k`` sampling points and ``c`` channels
(bilinear interpolation of 4 neighbours plus the modulation, per point and channel).

The model may live on the ``meta`` device: only shapes are needed, nothing is computed.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn

__all__ = ['dcnv3_flops', 'count_flops']

_ACTS = (nn.ReLU, nn.ReLU6, nn.GELU, nn.SiLU, nn.LeakyReLU, nn.PReLU, nn.ELU, nn.Sigmoid, nn.Hardswish)
_POOLS = (nn.AvgPool2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.AvgPool1d,
          nn.MaxPool1d, nn.AdaptiveAvgPool1d)
_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.LayerNorm, nn.GroupNorm, nn.InstanceNorm2d,
          nn.SyncBatchNorm)


def dcnv3_flops(n: int, k: int, c: int) -> int:
    """Sampling cost of DCNv3: ``n`` output positions, ``k`` points, ``c`` channels."""
    return 5 * n * k * c


def _is_dcnv3(m: nn.Module) -> bool:
    return type(m).__name__ in ('DCNv3', 'DCNv3_pytorch') and hasattr(m, 'group_channels')


def _leaf_flops(m: nn.Module, inputs: tuple, output) -> int:
    if not inputs or not isinstance(inputs[0], torch.Tensor) or not isinstance(output, torch.Tensor):
        return 0
    x = inputs[0]
    if isinstance(m, nn.modules.conv._ConvNd):
        per_out = (m.in_channels // m.groups) * int(torch.tensor(m.kernel_size).prod())
        return output.numel() * per_out + (output.numel() if m.bias is not None else 0)
    if isinstance(m, nn.Linear):
        return x.numel() // m.in_features * m.in_features * m.out_features
    if isinstance(m, _NORMS):
        affine = getattr(m, 'affine', getattr(m, 'elementwise_affine', False))
        return x.numel() * (2 if affine else 1)
    if isinstance(m, _ACTS):
        return output.numel()
    if isinstance(m, _POOLS):
        return x.numel()
    if isinstance(m, (nn.Upsample, nn.PixelShuffle)):
        return output.numel()
    return 0


def count_flops(model: nn.Module, run: Callable[[], object]) -> tuple[int, dict[str, int]]:
    """FLOPs of ``run()`` (a forward of ``model``), and their split by kind.

    Returns:
        ``(total, {'modules': ..., 'dcnv3_sampling': ...})``.
    """
    totals = {'modules': 0, 'dcnv3_sampling': 0}
    handles = []

    def leaf_hook(m, inputs, output):
        totals['modules'] += _leaf_flops(m, inputs, output)

    def dcn_hook(m, inputs, output):
        n, h, w, c = output.shape
        points = m.kernel_size * m.kernel_size - int(getattr(m, 'remove_center', 0))
        totals['dcnv3_sampling'] += dcnv3_flops(n * h * w, points, c)

    for m in model.modules():
        if _is_dcnv3(m):
            handles.append(m.register_forward_hook(dcn_hook))
        if not list(m.children()):
            handles.append(m.register_forward_hook(leaf_hook))
    try:
        with torch.no_grad():
            run()
    finally:
        for h in handles:
            h.remove()
    return sum(totals.values()), totals
