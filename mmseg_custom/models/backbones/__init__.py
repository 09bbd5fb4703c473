"""The one InternImage class of :mod:`mmcv_custom`, registered in mmseg's ``MODELS``."""
from mmseg.registry import MODELS

from mmcv_custom.models.internimage import InternImage

MODELS.register_module(module=InternImage)

__all__ = ['InternImage']
