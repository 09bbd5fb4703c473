"""``InternImage(arch=...)``: a published size in one word, explicit arguments winning."""
from __future__ import annotations

import pytest
import torch

from mmcv_custom.models.internimage import ARCHS, InternImage, arch_settings

# Backbone-only parameters of the published sizes, millions (the model zoo's counts without the head).
PUBLISHED_BACKBONE_PARAMS = dict(t=28.75, s=48.50, b=94.91, l=218.95, xl=328.97, h=1073.12, g=3052.78)


@pytest.mark.parametrize('size', ['t', 's', 'b', 'l', 'xl', 'h', 'g'])
def test_each_arch_builds_the_published_size(size):
    from mmdet.registry import MODELS

    import mmdet_custom  # noqa: F401  (registers InternImage in mmdet)
    with torch.device('meta'):  # no memory, also for H (1.1B) and G (3B)
        model = MODELS.build(dict(type='InternImage', arch=size, core_op='DCNv3_pytorch'))
    n = sum(p.numel() for p in model.parameters())
    assert round(n / 1e6, 2) == PUBLISHED_BACKBONE_PARAMS[size]
    assert model.arch == size
    assert model.channels == ARCHS[size]['channels'] and model.depths == ARCHS[size]['depths']


def test_arch_is_the_same_model_as_its_explicit_arguments():
    with torch.device('meta'):
        by_arch = InternImage(arch='XL')  # case does not matter
        explicit = InternImage(**ARCHS['xl'])
    assert {k: v.shape for k, v in by_arch.state_dict().items()} == {
        k: v.shape for k, v in explicit.state_dict().items()}


def test_explicit_arguments_override_the_arch():
    with torch.device('meta'):
        # the detection recipe's layer scale on T (the ImageNet T has none), a narrower S
        t = InternImage(arch='t', layer_scale=1.0)
        s = InternImage(arch='s', channels=40, post_norm=False)
        plain_t = InternImage(arch='t')
        # positional arguments count as explicit too
        positional = InternImage('DCNv3_pytorch', 48, arch='t')
    assert t.channels == 64 and t.levels[0].blocks[0].layer_scale
    assert not plain_t.levels[0].blocks[0].layer_scale
    assert s.channels == 40 and s.depths == [4, 4, 21, 4] and s.groups == [5, 10, 20, 40]
    assert not s.post_norm and not s.levels[0].blocks[0].post_norm
    assert positional.channels == 48 and positional.core_op == 'DCNv3_pytorch'


def test_arch_table_is_not_changed_by_a_model():
    before = {k: dict(v) for k, v in ARCHS.items()}
    settings = arch_settings('h')
    settings['depths'].append(1)
    settings['level2_post_norm_block_ids'][0] = 99
    assert ARCHS == before


@pytest.mark.parametrize('arch', ['xxl', 'tiny', 3])
def test_unknown_arch_names_the_valid_ones(arch):
    with pytest.raises(ValueError, match=r"arch must be one of 't', 's', 'b', 'l', 'xl', 'h', 'g', got"):
        InternImage(arch=arch)
