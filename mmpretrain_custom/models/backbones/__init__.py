"""The one InternImage class of :mod:`mmcv_custom`, registered in mmpretrain's ``MODELS``."""
from mmpretrain.registry import MODELS

from mmcv_custom.models.internimage import InternImage

MODELS.register_module(module=InternImage)

__all__ = ['InternImage']
