"""Checkpoints of another model, and files that are not checkpoints, are refused with a message
that names the file and the likely cause (mmcv_custom.checkpoint and mmcv_custom.safe_load)."""
from __future__ import annotations

import os.path as osp
import pickle
import re
import traceback

import pytest
import torch
from mmengine.runner import checkpoint as mmengine_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader, load_checkpoint
from torch import nn

from mmcv_custom.checkpoint import (
                                    CheckpointMismatchError,
                                    check_state_dict_match,
                                    checked_whole_model_loading,
                                    load_backbone_state_dict,
)
from mmcv_custom.models.internimage import InternImage
from mmcv_custom.safe_load import NotACheckpointError

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CLS_DEMO = osp.join(ROOT, 'configs', 'demo', 'internimage-micro_demo-imagenet-64.py')
TINY = dict(core_op='DCNv3_pytorch', channels=16, depths=[1, 1, 1, 1], groups=[1, 2, 4, 8])


def _num_tensors(model: nn.Module) -> int:
    return sum(not k.endswith('num_batches_tracked') for k in model.state_dict())


class Backbone(nn.Module):
    def __init__(self, width: int = 8):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3)
        self.norm = nn.BatchNorm2d(width)
        self.layers = nn.Sequential(*(nn.Conv2d(width, width, 3) for _ in range(3)))


class Detector(nn.Module):
    """The top-level layout of an mmdet detector: backbone, neck and heads."""

    def __init__(self, width: int = 8, num_classes: int = 3):
        super().__init__()
        self.backbone = Backbone(width)
        self.neck = nn.Conv2d(width, 4, 1)
        self.roi_head = nn.Linear(4, num_classes)


def _save(path, state_dict: dict, **extra) -> str:
    torch.save(dict(meta=dict(), state_dict=state_dict, **extra), path)
    return str(path)


# ---- the rule -------------------------------------------------------------------------------

def test_a_matching_whole_model_passes():
    model = Detector()
    n = _num_tensors(model)
    assert check_state_dict_match(model.state_dict(), Detector().state_dict(), 'ok.pth',
                                  whole_model=True) == (n, n)


def test_nothing_matching_is_refused_with_counts_and_file():
    model = Backbone()
    with pytest.raises(CheckpointMismatchError) as info:
        check_state_dict_match(model.state_dict(), {'foo.weight': torch.zeros(2)}, '/x/other.pth',
                               whole_model=False, model_name='Backbone')
    msg = str(info.value)
    assert '/x/other.pth' in msg and 'Backbone' in msg
    assert f'0 of {_num_tensors(model)} tensors' in msg
    assert 'Likely cause' in msg


def test_part_of_a_backbone_is_accepted():
    """Loading into a backbone only needs something to match; the rest is logged by the loader."""
    model = Backbone()
    state = {k: v for k, v in model.state_dict().items() if k.startswith('stem.')}
    assert check_state_dict_match(model.state_dict(), state, 'p.pth', whole_model=False)[0] == 2


def test_whole_model_missing_most_tensors_is_refused():
    model = Detector()
    state = {k: v for k, v in model.state_dict().items() if k.startswith(('neck.', 'roi_head.'))}
    with pytest.raises(CheckpointMismatchError, match=rf'4 of {_num_tensors(model)} tensors'):
        check_state_dict_match(model.state_dict(), state, 'half.pth', whole_model=True)


def test_whole_model_with_a_part_entirely_missing_is_refused():
    """A classification checkpoint in mmpretrain's layout fills a detector's backbone only: most
    tensors match, but the neck and heads would stay random."""
    model = Detector()
    state = {k: v for k, v in model.state_dict().items() if k.startswith('backbone.')}
    state.update({'head.fc.weight': torch.zeros(10, 8), 'head.fc.bias': torch.zeros(10)})
    with pytest.raises(CheckpointMismatchError) as info:
        check_state_dict_match(model.state_dict(), state, 'cls.pth', whole_model=True)
    msg = str(info.value)
    assert 'no tensor for neck, roi_head' in msg
    assert 'classification checkpoint' in msg


def test_backbone_only_file_given_as_whole_model_points_to_init_cfg():
    """The published ImageNet layout (backbone keys without ``backbone.``) for a whole detector."""
    model = Detector()
    state = {k[len('backbone.'):]: v for k, v in model.state_dict().items()
             if k.startswith('backbone.')}
    state['head.weight'] = torch.zeros(10, 8)
    with pytest.raises(CheckpointMismatchError) as info:
        check_state_dict_match(model.state_dict(), state, 'in1k.pth', whole_model=True)
    msg = str(info.value)
    assert f'0 of {_num_tensors(model)} tensors' in msg
    assert "backbone's init_cfg=dict(type='Pretrained'" in msg


def test_other_sizes_are_named_as_a_config_mismatch():
    model = Detector(width=8)
    with pytest.raises(CheckpointMismatchError, match='another size'):
        check_state_dict_match(model.state_dict(), Detector(width=16).state_dict(), 'b.pth',
                               whole_model=True)


def test_nested_weights_are_named():
    """mmengine takes a checkpoint without ``state_dict`` as the weights themselves."""
    model = Detector()
    ckpt = dict(model=dict(model.state_dict()), epoch=3)
    with pytest.raises(CheckpointMismatchError, match="under 'model'"):
        check_state_dict_match(model.state_dict(), ckpt, 'published.pth', whole_model=True)


# ---- backbone init_cfg=Pretrained -------------------------------------------------------------

def test_pretrained_unrelated_checkpoint_raises(tmp_path):
    path = _save(tmp_path / 'unrelated.pth', {'encoder.conv.weight': torch.randn(4, 3, 3, 3),
                                               'decoder.fc.weight': torch.randn(2, 4)})
    model = InternImage(init_cfg=dict(type='Pretrained', checkpoint=path), **TINY)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as info:
        model.init_weights()
    assert path in str(info.value)
    assert f'0 of {_num_tensors(model)} tensors of InternImage' in str(info.value)
    for k, v in model.state_dict().items():  # refused before anything was loaded
        torch.testing.assert_close(v, before[k])


def test_pretrained_under_another_prefix_suggests_it(tmp_path):
    weights = InternImage(**TINY).state_dict()
    path = _save(tmp_path / 'enc.pth', {'encoder.' + k: v for k, v in weights.items()})
    model = InternImage(init_cfg=dict(type='Pretrained', checkpoint=path), **TINY)
    with pytest.raises(CheckpointMismatchError, match=re.escape("prefix='encoder.'")):
        model.init_weights()
    # ... and with the prefix it loads
    model = InternImage(init_cfg=dict(type='Pretrained', checkpoint=path, prefix='encoder.'), **TINY)
    model.init_weights()
    for k, v in weights.items():
        torch.testing.assert_close(model.state_dict()[k], v, msg=k)


def test_pretrained_published_classification_layout_still_loads(tmp_path):
    """The published ImageNet file: backbone keys under ``model``, the head keys unexpected."""
    src = InternImage(**TINY)
    weights = dict(src.state_dict(), **{'head.weight': torch.randn(10, 128),
                                         'head.bias': torch.randn(10)})
    path = tmp_path / 'in1k.pth'
    torch.save(dict(model=weights, epoch=299), path)
    model = InternImage(**TINY)
    missing, unexpected = load_backbone_state_dict(model, str(path))
    assert not missing and sorted(unexpected) == ['head.bias', 'head.weight']
    for k, v in src.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v, msg=k)


# ---- whole models through mmengine's loader ---------------------------------------------------

def test_checked_loading_refuses_before_loading(tmp_path):
    model = Detector()
    path = _save(tmp_path / 'cls.pth', {'patch_embed.weight': torch.zeros(3)})
    before = {k: v.clone() for k, v in model.state_dict().items()}
    original = mmengine_checkpoint.load_state_dict
    with pytest.raises(CheckpointMismatchError, match=re.escape(path)):
        with checked_whole_model_loading(path):
            load_checkpoint(model, path, map_location='cpu')
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k])
    assert mmengine_checkpoint.load_state_dict is original  # the hook is gone again


def test_checked_loading_loads_a_matching_checkpoint(tmp_path):
    src, model = Detector(), Detector()
    # DataParallel's prefix, which mmengine strips before loading
    path = _save(tmp_path / 'det.pth', {'module.' + k: v for k, v in src.state_dict().items()})
    with checked_whole_model_loading(path):
        load_checkpoint(model, path, map_location='cpu')
    for k, v in src.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v, msg=k)


@pytest.mark.parametrize('layout', ['published', 'mmpretrain'])
def test_checked_loading_sees_the_models_own_key_mapping(tmp_path, layout):
    """The InternImage classifier saves published names and maps files of both layouts (even a
    whole published file, weights under ``model``) in a load pre-hook: what it accepts passes."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    cfg = Config.fromfile(CLS_DEMO)  # imports mmpretrain_custom
    init_default_scope('mmpretrain')  # an earlier test may have left another library's scope
    src = MODELS.build(cfg.model)
    published = src.state_dict()
    if layout == 'published':
        ckpt = dict(model=published, epoch=300)
    else:
        ckpt = dict(state_dict={('backbone.' + k if k.startswith(('patch_embed', 'levels'))
                                 else 'head.' + k): v for k, v in published.items()})
    path = str(tmp_path / 'cls.pth')
    torch.save(ckpt, path)
    model = MODELS.build(cfg.model)
    with checked_whole_model_loading(path):
        load_checkpoint(model, path, map_location='cpu')
    for k, v in published.items():
        torch.testing.assert_close(model.state_dict()[k], v, msg=k)
    # and a file of another model is still refused through the same mapping
    other = _save(tmp_path / 'det.pth', Detector().state_dict())
    with pytest.raises(CheckpointMismatchError, match=r'0 of \d+ tensors of InternImageClassifier'):
        with checked_whole_model_loading(other):
            load_checkpoint(MODELS.build(cfg.model), other, map_location='cpu')


# ---- files that are not checkpoints -----------------------------------------------------------

NOT_CHECKPOINTS = {
    'text': (b'hello world\n', 'text'),
    'random': (bytes(range(256)) * 16, 'neither a zip archive'),
    'empty': (b'', 'empty'),
    'lfs': (b'version https://git-lfs.github.com/spec/v1\noid sha256:00\nsize 1\n', 'Git LFS'),
    'html': (b'<!DOCTYPE html><html><body>Not Found</body></html>', 'text'),
    'pickle': (pickle.dumps({'a': 1}), 'not written by torch.save'),
}


@pytest.mark.parametrize('kind', NOT_CHECKPOINTS)
def test_not_a_checkpoint_is_named(tmp_path, kind):
    content, why = NOT_CHECKPOINTS[kind]
    path = tmp_path / 'x.pth'
    path.write_bytes(content)
    with pytest.raises(NotACheckpointError) as info:
        CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
    assert f'{path} is not a readable checkpoint' in str(info.value)
    assert why in str(info.value)
    text = ''.join(traceback.format_exception(info.type, info.value, info.tb))
    assert 'weights_only' not in text  # no advice to switch the safety check off


def test_truncated_checkpoint_is_named(tmp_path):
    path = tmp_path / 'cut.pth'
    torch.save({'w': torch.zeros(1000)}, path)
    path.write_bytes(path.read_bytes()[:2000])
    with pytest.raises(NotACheckpointError, match='truncated or damaged'):
        CheckpointLoader.load_checkpoint(str(path), map_location='cpu')


def test_pretrained_not_a_checkpoint_is_named(tmp_path):
    path = tmp_path / 'x.pth'
    path.write_text('not weights')
    model = InternImage(init_cfg=dict(type='Pretrained', checkpoint=str(path)), **TINY)
    with pytest.raises(NotACheckpointError, match=re.escape(f'{path} is not a readable checkpoint')):
        model.init_weights()


@pytest.mark.parametrize('zipped', [True, False])
def test_real_checkpoints_still_load(tmp_path, zipped):
    path = tmp_path / 'ok.pth'
    torch.save({'state_dict': {'w': torch.arange(3.0)}}, path, _use_new_zipfile_serialization=zipped)
    ckpt = CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
    torch.testing.assert_close(ckpt['state_dict']['w'], torch.arange(3.0))


class Payload:
    """A type outside the allow-list: a real checkpoint that weights_only must keep refusing."""


def test_disallowed_globals_keep_torchs_refusal(tmp_path):
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': {}, 'payload': Payload()}, path)
    with pytest.raises(pickle.UnpicklingError) as info:
        CheckpointLoader.load_checkpoint(str(path), map_location='cpu')
    assert not isinstance(info.value, NotACheckpointError)
    assert 'Payload' in str(info.value)  # torch's message naming the refused type
