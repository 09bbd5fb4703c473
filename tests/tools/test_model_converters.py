"""tools/model_converters: the published <-> mmpretrain-port layouts of the ImageNet checkpoints,
backbone-only export, and the downstream ``init_cfg=dict(type='Pretrained', prefix='backbone.')``
idiom on a classifier checkpoint written by this project."""
from __future__ import annotations

import os.path as osp
import sys

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)
sys.path.insert(0, osp.join(ROOT, 'tests'))

from demo_helpers import save_initialised_checkpoint  # noqa: E402
from official_keys import published_keys, read_key_table  # noqa: E402

from tools.model_converters import export_backbone as export_tool  # noqa: E402
from tools.model_converters import internimage_mmpretrain as port  # noqa: E402

CLS = osp.join(ROOT, 'configs', 'demo', 'internimage-micro_demo-imagenet-64.py')
DET = osp.join(ROOT, 'configs', 'demo', 'mask-rcnn_internimage-micro_fpn_demo-coco.py')
SEG = osp.join(ROOT, 'configs', 'demo', 'upernet_internimage-micro_demo-ade20k-128x128.py')
SIZES = ('t', 's', 'b', 'l', 'xl', 'h', 'g')


def port_keys(size: str) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of mmpretrain's port (``projects/internimage_classification``) of the
    published ``size`` classifier, in state-dict order (tests/data/README.md)."""
    return read_key_table(f'internimage_{size}_mmpretrain')


def _meta_state(keys: dict) -> dict:
    return {k: torch.empty(shape, device='meta') for k, shape in keys.items()}


@pytest.mark.parametrize('size', SIZES)
def test_published_keys_become_the_ports_and_come_back(size):
    published = _meta_state(published_keys(size))
    theirs = port.published_to_mmpretrain(published)
    assert {k: tuple(v.shape) for k, v in theirs.items()} == port_keys(size)
    assert list(theirs) == list(port_keys(size))  # and in the port's order
    back = port.mmpretrain_to_published(theirs)
    assert list(back) == list(published)
    assert all(back[k].shape == v.shape for k, v in published.items())
    # the other way round from the port's own keys
    assert list(port.published_to_mmpretrain(port.mmpretrain_to_published(
        _meta_state(port_keys(size))))) == list(port_keys(size))
    assert port.detect_layout(published) == 'published'
    assert port.detect_layout(theirs) == 'mmpretrain'


def test_dropping_the_key_bias_does_not_change_the_attention_pooling():
    """The port has no key bias: a bias on every key shifts a query's logits alike (softmax)."""
    from mmpretrain_custom.models.heads.internimage_head import CrossAttention

    torch.manual_seed(0)
    attn = CrossAttention(32, num_heads=4, qkv_bias=True).double().eval()
    for name in ('q_bias', 'k_bias', 'v_bias'):
        torch.nn.init.normal_(getattr(attn, name))
    q, kv = torch.randn(3, 1, 32, dtype=torch.float64), torch.randn(3, 9, 32, dtype=torch.float64)
    with torch.no_grad():
        with_bias = attn(q, kv, kv)
        attn.k_bias.zero_()
        torch.testing.assert_close(attn(q, kv, kv), with_bias)


@pytest.fixture(scope='module')
def cls_checkpoint(tmp_path_factory) -> str:
    """The demo classifier saved as this project's Runner saves it (published keys)."""
    path = str(tmp_path_factory.mktemp('cls') / 'classifier.pth')
    save_initialised_checkpoint(CLS, path)
    return path


def _load(path: str) -> dict:
    import mmcv_custom.safe_load  # noqa: F401  (torch.load allow-list for mmengine checkpoints)
    return torch.load(path, map_location='cpu')


def test_files_convert_both_ways_with_the_same_tensors(tmp_path, cls_checkpoint):
    ours = _load(cls_checkpoint)['state_dict']
    theirs_path, back_path = str(tmp_path / 'mmpretrain.pth'), str(tmp_path / 'published.pth')
    port.main([cls_checkpoint, theirs_path])
    theirs = _load(theirs_path)
    assert theirs['meta']['dataset_meta']['classes'] == ('circle', 'triangle', 'square', 'cross')
    assert theirs['state_dict'].keys() == port.published_to_mmpretrain(ours).keys()
    assert 'head.fc.weight' in theirs['state_dict']
    assert 'backbone.patch_embed.0.weight' in theirs['state_dict']
    assert port.convert_file(theirs_path, back_path) == 'published'
    back = _load(back_path)['model']
    assert list(back) == list(ours)
    for k, v in ours.items():
        assert torch.equal(back[k], v), k
    with pytest.raises(ValueError, match='already in the published layout'):
        port.convert_file(cls_checkpoint, str(tmp_path / 'x.pth'), to='published')
    with pytest.raises(ValueError, match='not an InternImage classifier'):
        port.detect_layout({'encoder.weight': torch.zeros(1)})


def test_export_backbone_and_load_it_without_prefix(tmp_path, cls_checkpoint):
    from mmcv_custom.checkpoint import PUBLISHED_BACKBONE_ROOTS
    from mmcv_custom.models.internimage import InternImage

    ours = _load(cls_checkpoint)['state_dict']
    out = str(tmp_path / 'backbone.pth')
    export_tool.main([cls_checkpoint, out])
    exported = _load(out)
    expected = {k: v for k, v in ours.items() if k.startswith(('patch_embed.', 'levels.'))}
    assert list(exported['state_dict']) == list(expected)
    assert all(torch.equal(exported['state_dict'][k], v) for k, v in expected.items())
    assert 'dataset_meta' not in exported['meta']
    # the same backbone out of the port's layout and out of a detector-style file
    theirs = port.published_to_mmpretrain(ours)
    assert list(export_tool.backbone_state_dict(theirs)) == list(expected)
    dense = {'backbone.' + k: v for k, v in expected.items()}
    dense['neck.conv.weight'] = torch.zeros(1)
    assert list(export_tool.backbone_state_dict(dense)) == list(expected)
    # a backbone of the classifier's size loads the file without a prefix, every tensor
    model = InternImage(core_op='DCNv3_pytorch', channels=16, depths=[1, 1, 2, 1],
                        groups=[1, 2, 4, 8], init_cfg=dict(type='Pretrained', checkpoint=out))
    model.init_weights()
    assert model.state_dict().keys() == expected.keys()
    assert all(torch.equal(model.state_dict()[k], v) for k, v in expected.items())
    # the roots named as the backbone's are InternImage's parameterised children
    assert {n for n, m in model.named_children() if any(True for _ in m.parameters())} == \
        set(PUBLISHED_BACKBONE_ROOTS)
    with pytest.raises(ValueError, match='no backbone weights'):
        export_tool.backbone_state_dict({'encoder.weight': torch.zeros(1)})


@pytest.mark.parametrize('config, scope', [(DET, 'mmdet'), (SEG, 'mmseg')])
def test_pretrained_prefix_backbone_on_a_classifier_checkpoint(cls_checkpoint, config, scope):
    """The usual downstream idiom picks the classifier's backbone out of a file this project
    wrote (published keys, no ``backbone.`` in the file)."""
    import importlib

    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    ours = _load(cls_checkpoint)['state_dict']
    cfg = Config.fromfile(config)
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=cls_checkpoint,
                                       prefix='backbone.')
    registry = importlib.import_module(f'{scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(cfg.model)
        model.init_weights()
    backbone = model.backbone.state_dict()
    cls_backbone = {k: v for k, v in ours.items() if k.startswith(('patch_embed.', 'levels.'))}
    assert cls_backbone.keys() <= backbone.keys()
    for k, v in cls_backbone.items():
        assert torch.equal(backbone[k], v), k
    # the dense configs add layer scale, which an ImageNet-T-style classifier does not have
    assert {k.rsplit('.', 1)[-1] for k in backbone.keys() - cls_backbone.keys()} == {'gamma1', 'gamma2'}
