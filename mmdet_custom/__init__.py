"""InternImage for mmdet 3.x: importing this registers the backbone in mmdet's ``MODELS``.

Configs use ``custom_imports = dict(imports=['mmdet_custom'], allow_failed_imports=False)``.
"""
import mmcv_custom  # noqa: F401  (safe checkpoint loading, layer-decay constructor)

from .models import *  # noqa: F401,F403
