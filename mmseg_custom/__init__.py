"""InternImage for mmsegmentation 1.x: importing this registers the backbone in mmseg's ``MODELS``.

Configs use ``custom_imports = dict(imports=['mmseg_custom'], allow_failed_imports=False)``.
"""
import mmcv_custom  # noqa: F401  (safe checkpoint loading, layer-decay constructor)

from .datasets import *  # noqa: F401,F403
from .models import *  # noqa: F401,F403
