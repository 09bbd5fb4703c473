"""InternImage and CBInternImage of :mod:`mmcv_custom`, registered in mmdet's ``MODELS``."""
from mmdet.registry import MODELS

from mmcv_custom.models.cb_internimage import CBInternImage
from mmcv_custom.models.internimage import InternImage

MODELS.register_module(module=InternImage)
MODELS.register_module(module=CBInternImage)

__all__ = ['InternImage', 'CBInternImage']
