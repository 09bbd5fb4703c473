"""One InternImage class in three registries; the same backbone config builds and runs inside an mmdet
(Mask R-CNN), an mmseg (UperNet) and an mmpretrain (classifier) model config."""
from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import DefaultScope

from mmcv_custom.models.internimage import InternImage

# The same dict goes into all three configs (the tiny twin of the published T backbone).
BACKBONE = dict(type='InternImage', core_op='DCNv3_pytorch', channels=16, depths=[1, 1, 2, 1],
                groups=[2, 4, 8, 16], mlp_ratio=4.0, drop_path_rate=0.1, norm_layer='LN',
                layer_scale=1.0, offset_scale=1.0, post_norm=False, with_cp=False,
                out_indices=(0, 1, 2, 3))
IN_CHANNELS = [16, 32, 64, 128]


def _mim_config(package: str, rel: str) -> Config:
    mod = __import__(package)
    return Config.fromfile(os.path.join(os.path.dirname(mod.__file__), '.mim', 'configs', rel))


def test_same_class_object_in_all_registries():
    from mmdet.registry import MODELS as DET
    from mmpretrain.registry import MODELS as CLS
    from mmseg.registry import MODELS as SEG

    import mmdet_custom  # noqa: F401
    import mmpretrain_custom  # noqa: F401
    import mmseg_custom  # noqa: F401
    from mmdet_custom.models.backbones import InternImage as DetInternImage
    from mmpretrain_custom.models.backbones import InternImage as ClsInternImage
    from mmseg_custom.models.backbones import InternImage as SegInternImage

    assert DET.get('InternImage') is SEG.get('InternImage') is CLS.get('InternImage') is InternImage
    assert DetInternImage is SegInternImage is ClsInternImage is InternImage


@pytest.mark.parametrize('package,others', [('mmdet_custom', ('mmseg',)), ('mmseg_custom', ('mmdet',)),
                                            ('mmcv_custom', ('mmdet', 'mmseg', 'mmpretrain'))])
def test_import_does_not_pull_in_other_task_packages(package, others):
    # (mmpretrain itself imports mmdet, so mmpretrain_custom is not checked against it.)
    code = (f'import sys, {package}; '
            f'bad = sorted({{m.split(".")[0] for m in sys.modules}} & set({others!r})); '
            'assert not bad, bad')
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    subprocess.run([sys.executable, '-c', code], check=True, cwd=root)


def test_backbone_config_builds_in_mmdet_mask_rcnn():
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules

    import mmdet_custom  # noqa: F401

    register_all_modules(init_default_scope=False)
    cfg = _mim_config('mmdet', '_base_/models/mask-rcnn_r50_fpn.py')
    cfg.model.backbone = copy.deepcopy(BACKBONE)
    cfg.model.neck.in_channels = IN_CHANNELS
    with DefaultScope.overwrite_default_scope('mmdet'):
        model = MODELS.build(cfg.model).eval()
    assert type(model.backbone) is InternImage
    with torch.no_grad():
        feats = model.extract_feat(torch.randn(1, 3, 64, 64))
    assert [f.shape[-1] for f in feats] == [16, 8, 4, 2, 1]


def test_backbone_config_builds_in_mmseg_upernet():
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    import mmseg_custom  # noqa: F401

    register_all_modules(init_default_scope=False)
    cfg = _mim_config('mmseg', '_base_/models/upernet_r50.py')
    cfg.model.pop('data_preprocessor')
    cfg.model.pretrained = None
    cfg.model.backbone = copy.deepcopy(BACKBONE)
    cfg.model.decode_head.in_channels = IN_CHANNELS
    cfg.model.decode_head.channels = 32
    cfg.model.decode_head.norm_cfg = dict(type='BN', requires_grad=True)
    cfg.model.auxiliary_head.in_channels = IN_CHANNELS[2]
    cfg.model.auxiliary_head.channels = 16
    cfg.model.auxiliary_head.norm_cfg = dict(type='BN', requires_grad=True)
    with DefaultScope.overwrite_default_scope('mmseg'):
        model = MODELS.build(cfg.model).eval()
    assert type(model.backbone) is InternImage
    with torch.no_grad():
        logits = model(torch.randn(1, 3, 64, 64), mode='tensor')
    assert logits.shape == (1, cfg.model.decode_head.num_classes, 16, 16)


def test_backbone_config_builds_in_mmpretrain_classifier():
    from mmpretrain.registry import MODELS
    from mmpretrain.utils import register_all_modules

    import mmpretrain_custom  # noqa: F401

    register_all_modules(init_default_scope=False)
    cfg = Config(dict(model=dict(
        type='InternImageClassifier', backbone=dict(copy.deepcopy(BACKBONE), out_indices=(3,)),
        head=dict(type='InternImageClsHead', num_classes=5, in_channels=IN_CHANNELS[-1]))))
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = MODELS.build(cfg.model).eval()
    assert type(model.backbone) is InternImage
    with torch.no_grad():
        assert model(torch.randn(2, 3, 64, 64), mode='tensor').shape == (2, 5)
