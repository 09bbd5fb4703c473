"""InternImage in mmpretrain's registry: ours is the one registered, and another class of that name
(mmpretrain's projects/internimage_classification registers one) is never overwritten; importing
both stops with an error that names both, whichever comes first."""
from __future__ import annotations

import pytest
from mmengine.registry import Registry

from mmcv_custom.models.internimage import InternImage
from mmpretrain_custom.models.backbones import InternImageRegistryConflict, register_internimage


def _port_like(registry: Registry) -> type:
    """A class registered as the port registers its backbone: the decorator, no ``force``."""

    @registry.register_module()
    class InternImage:  # noqa: F811  (the name is the point)
        def __init__(self, stem_channels=64, stage_blocks=(3, 4, 18, 5)):
            self.stem_channels = stem_channels

    return InternImage


def test_ours_is_registered_in_mmpretrain():
    from mmpretrain.registry import MODELS
    from mmpretrain.utils import register_all_modules

    register_all_modules(init_default_scope=False)  # mmpretrain 1.2.0 itself has none
    assert MODELS.get('InternImage') is InternImage
    register_internimage(MODELS)  # again: nothing to do, no error
    assert MODELS.get('InternImage') is InternImage


def test_port_first_then_ours_is_a_clear_error_and_keeps_the_port():
    registry = Registry('model')
    port = _port_like(registry)
    with pytest.raises(InternImageRegistryConflict) as info:
        register_internimage(registry)
    msg = str(info.value)
    assert port.__module__ in msg and 'mmcv_custom.models.internimage' in msg
    assert 'Import only one' in msg and 'internimage_mmpretrain.py' in msg
    assert registry.get('InternImage') is port  # not clobbered


def test_ours_first_then_the_port_is_refused_and_keeps_ours():
    registry = Registry('model')
    register_internimage(registry)
    with pytest.raises(KeyError, match='InternImage is already registered in model at '
                                       'mmcv_custom.models.internimage'):
        _port_like(registry)
    assert registry.get('InternImage') is InternImage
