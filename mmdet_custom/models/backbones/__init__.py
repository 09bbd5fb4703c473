"""The one InternImage class of :mod:`mmcv_custom`, registered in mmdet's ``MODELS``."""
from mmdet.registry import MODELS

from mmcv_custom.models.internimage import InternImage

MODELS.register_module(module=InternImage)

__all__ = ['InternImage']
