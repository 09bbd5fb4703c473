"""Task-agnostic OpenMMLab pieces: the InternImage backbone, layer-wise lr decay, checkpoint loading.

Importing this package also lets ``torch.load(weights_only=True)`` read mmengine checkpoints
(:mod:`mmcv_custom.safe_load`) and registers ``CustomLayerDecayOptimizerConstructor`` and
``AtomicCheckpointHook`` (which tools/train.py writes into the configs it runs, and so into the
configs it dumps) in mmengine's root registry, where mmdet, mmseg and mmpretrain configs find them.
"""
from . import safe_load  # noqa: F401
from .checkpoint import extract_state_dict, load_backbone_state_dict, published_classifier_parts
from .layer_decay_optimizer_constructor import (
                                                 CustomLayerDecayOptimizerConstructor,
                                                 get_layer_id,
                                                 is_no_decay,
)
from .models import InternImage
from .runner_safety import AtomicCheckpointHook  # noqa: F401  (registers it; see above)
from .sharded import InternImageFSDPStrategy  # noqa: F401  (registers it, ShardedEMAHook, the wrap policy)

__all__ = [
    'InternImage', 'CustomLayerDecayOptimizerConstructor', 'get_layer_id', 'is_no_decay',
    'extract_state_dict', 'published_classifier_parts', 'load_backbone_state_dict',
]
