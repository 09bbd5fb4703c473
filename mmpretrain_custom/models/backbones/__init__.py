"""The one InternImage class of :mod:`mmcv_custom`, registered in mmpretrain's ``MODELS``.

mmpretrain's ``projects/internimage_classification`` (not part of the mmpretrain package; imported
from its folder) registers another class under the same name, with other arguments and state-dict
keys. One registry holds one ``InternImage``, so the two cannot be imported into one process:
registering here never overwrites another class (no ``force``) and, when the port came first,
stops with an error that names both; the port imported after this package stops with mmengine's
``InternImage is already registered in model at mmcv_custom.models.internimage``. Checkpoints move
between the two with ``tools/model_converters/internimage_mmpretrain.py``.
"""
from mmengine.registry import Registry
from mmpretrain.registry import MODELS

from mmcv_custom.models.internimage import InternImage

__all__ = ['InternImage', 'InternImageRegistryConflict', 'register_internimage']


class InternImageRegistryConflict(KeyError):
    """Another class already holds the name ``InternImage`` in the registry."""

    def __str__(self) -> str:  # KeyError would print the message quoted, as a repr
        return str(self.args[0])


def register_internimage(registry: Registry = MODELS) -> None:
    """Register :class:`InternImage` in ``registry`` unless it is there already.

    Raises:
        InternImageRegistryConflict: Another class is registered as ``InternImage``.
    """
    existing = registry.module_dict.get('InternImage')
    if existing is InternImage:
        return
    if existing is not None:
        raise InternImageRegistryConflict(
            f"mmpretrain's registry already has an InternImage from {existing.__module__} "
            "(mmpretrain's projects/internimage_classification, imported first?); this project's "
            f'InternImage ({InternImage.__module__}) has the same name, other arguments and '
            'other state-dict keys, and one registry holds one of them. Import only one of the '
            'two in a process; tools/model_converters/internimage_mmpretrain.py converts '
            'checkpoints between them.')
    registry.register_module(module=InternImage)


register_internimage()
