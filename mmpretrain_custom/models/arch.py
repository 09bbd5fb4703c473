"""Model configs of the published InternImage ImageNet classifiers."""
from __future__ import annotations

import copy

from mmcv_custom.models.internimage import ARCHS

__all__ = ['internimage_cls_model']


def internimage_cls_model(size: str, num_classes: int = 1000, core_op: str = 'DCNv3',
                          **backbone_kwargs) -> dict:
    """``model`` config of the published InternImage-``size`` ImageNet classifier.

    T..XL: last level -> :class:`InternImageClsHead`; H, G: levels 2 and 3 -> :class:`InternImageClipHead`.

    Args:
        size: ``'t'``, ``'s'``, ``'b'``, ``'l'``, ``'xl'``, ``'h'`` or ``'g'``.
        num_classes: Classes of the linear classifier.
        core_op: DCNv3 module name.
        **backbone_kwargs: Overrides of the backbone arguments (``drop_path_rate``, ``with_cp``...).
    """
    size = size.lower()
    if size not in ARCHS:
        raise ValueError(f'size must be one of {sorted(ARCHS)}, got {size!r}')
    arch = copy.deepcopy(ARCHS[size])
    num_features = arch['channels'] * 8
    clip = size in ('h', 'g')
    backbone = dict(type='InternImage', core_op=core_op, out_indices=(2, 3) if clip else (3,), **arch)
    backbone.update(backbone_kwargs)
    if clip:
        head = dict(type='InternImageClipHead', num_classes=num_classes, in_channels=num_features)
    else:
        head = dict(type='InternImageClsHead', num_classes=num_classes, in_channels=num_features,
                    cls_scale=1.5)
    return dict(type='InternImageClassifier', backbone=backbone, head=head)
