"""InternImage for mmpretrain: the backbone, the published ImageNet heads and a classifier whose
state dict has the published keys, registered in mmpretrain's ``MODELS``.

Configs use ``custom_imports = dict(imports=['mmpretrain_custom'], allow_failed_imports=False)``.
"""
import mmcv_custom  # noqa: F401  (safe checkpoint loading, layer-decay constructor)

from . import engine  # noqa: F401  (EMA hook that reads published checkpoints)
from .models import *  # noqa: F401,F403
