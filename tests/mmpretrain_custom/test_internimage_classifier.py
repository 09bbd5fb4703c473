"""mmpretrain InternImage classifier: published key set and parameter counts, published checkpoints
load without conversion, logits equal the published forward, training step works."""
from __future__ import annotations

import os
import sys

import pytest
import torch
from mmengine.registry import DefaultScope
from mmpretrain.registry import MODELS as _MODELS

import mmpretrain_custom  # noqa: F401
from mmpretrain_custom.models import internimage_cls_model

sys.path.insert(0, os.path.join(os.path.dirname(__file__), '..', 'mmcv_custom'))
from official_keys import published_keys  # noqa: E402
from published_reference import classify  # noqa: E402
from test_internimage import randomize  # noqa: E402


class MODELS:  # noqa: N801
    """mmpretrain's registry under its own scope, whatever default scope earlier tests left."""

    @staticmethod
    def build(cfg):
        with DefaultScope.overwrite_default_scope('mmpretrain'):
            return _MODELS.build(cfg)


# Published parameter counts with the ImageNet head (millions, 2 decimals).
CLS_PARAMS = dict(t=29.92, s=50.08, b=97.46, l=223.33, xl=334.82, h=1089.64, g=3076.37)

TINY_CONV = dict(
    type='InternImageClassifier',
    backbone=dict(type='InternImage', core_op='DCNv3_pytorch', channels=16, depths=[1, 1, 2, 1],
                  groups=[2, 4, 8, 16], layer_scale=0.5, post_norm=True, out_indices=(3,),
                  drop_path_rate=0.0),
    head=dict(type='InternImageClsHead', num_classes=7, in_channels=128))
TINY_CLIP = dict(
    type='InternImageClassifier',
    backbone=dict(type='InternImage', core_op='DCNv3_pytorch', channels=16, depths=[1, 1, 2, 1],
                  groups=[2, 4, 8, 16], dw_kernel_size=5, res_post_norm=True, level2_post_norm=True,
                  level2_post_norm_block_ids=[1], center_feature_scale=True, out_indices=(2, 3),
                  drop_path_rate=0.0),
    head=dict(type='InternImageClipHead', num_classes=7, in_channels=128, embed_dim=64, num_heads=4,
              clip_embed_dim=48))


@pytest.mark.parametrize('size', ['t', 's', 'b', 'l', 'xl', 'h', 'g'])
def test_state_dict_is_exactly_published(size):
    with torch.device('meta'):
        model = MODELS.build(internimage_cls_model(size, core_op='DCNv3_pytorch'))
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == published_keys(size)
    n = sum(p.numel() for p in model.parameters())
    assert round(n / 1e6, 2) == CLS_PARAMS[size]


@pytest.mark.parametrize('cfg', [TINY_CONV, TINY_CLIP], ids=['conv_head', 'clip_head'])
def test_published_checkpoint_loads_and_logits_match_published_forward(tmp_path, cfg):
    from mmengine.runner import load_checkpoint

    src = MODELS.build(cfg).double().eval()
    randomize(src)
    published = src.state_dict()
    assert not any(k.startswith(('backbone.', 'head.conv_head', 'head.head')) for k in published)
    path = tmp_path / 'internimage_1k.pth'
    torch.save(dict(model=published, epoch=300, max_accuracy=0.0), path)  # published file layout

    model = MODELS.build(cfg).double().eval()
    load_checkpoint(model, str(path), map_location='cpu', strict=True)  # what `load_from` does
    img = torch.randn(2, 3, 64, 64, dtype=torch.float64)
    with torch.no_grad():
        logits = model(img, mode='tensor')
        head = dict(InternImageClsHead='conv', InternImageClipHead='clip')[cfg['head']['type']]
        ref = classify(img, published, cfg['backbone'], head, num_heads=cfg['head'].get('num_heads', 16))
    assert logits.shape == (2, 7)
    torch.testing.assert_close(logits, ref, rtol=1e-9, atol=1e-9)

    # torch's own load_state_dict accepts both the published and mmpretrain's prefixed layout.
    again = MODELS.build(cfg).double()
    again.load_state_dict(published, strict=True)
    prefixed = {('backbone.' + k if k.startswith(('patch_embed', 'levels')) else 'head.' + k): v
                for k, v in published.items()}
    again.load_state_dict(prefixed, strict=True)
    for k, v in again.state_dict().items():
        torch.testing.assert_close(v, published[k], msg=k)


def test_train_step_and_prediction():
    from mmengine.optim import build_optim_wrapper
    from mmpretrain.structures import DataSample

    model = MODELS.build(TINY_CONV)
    model.init_weights()
    assert model.training  # train_step and val_step below run in training mode (BN batch statistics)
    optim = build_optim_wrapper(model, dict(optimizer=dict(type='SGD', lr=0.01)))
    data = dict(inputs=torch.randint(0, 255, (2, 3, 32, 32), dtype=torch.uint8),
                data_samples=[DataSample().set_gt_label(i) for i in (1, 5)])
    labels = torch.tensor([1, 5])
    # ClsDataPreprocessor without mean/std only casts to float.
    inputs = model.data_preprocessor(data, True)['inputs']
    torch.testing.assert_close(inputs, data['inputs'].float(), rtol=0, atol=0)

    # The configured loss is ClsHead's default, plain cross-entropy (no label smoothing, weight 1)
    # averaged over the batch: -mean_i log_softmax(logits_i)[label_i], recomputed from the logits of
    # the same weights before the step.
    with torch.no_grad():
        logits = model(inputs, mode='tensor').double()
    expected_loss = -torch.log_softmax(logits, dim=1)[torch.arange(2), labels].mean()
    log_vars = model.train_step(data, optim)
    torch.testing.assert_close(log_vars['loss'].detach().double(), expected_loss, rtol=1e-5, atol=1e-5)

    preds = model.val_step(data)
    assert [p.pred_score.shape for p in preds] == [torch.Size([7])] * 2
    with torch.no_grad():  # the updated weights, as val_step used them
        logits = model(inputs, mode='tensor').double()
    exp = (logits - logits.max(dim=1, keepdim=True).values).exp()
    for i, p in enumerate(preds):
        torch.testing.assert_close(p.pred_score.sum().double(), torch.tensor(1.0, dtype=torch.float64),
                                   rtol=0, atol=1e-6)
        torch.testing.assert_close(p.pred_score.double(), exp[i] / exp[i].sum(), rtol=1e-5, atol=1e-6)
        assert p.pred_label.item() == int(logits[i].argmax())


def test_classifier_init_cfg_pretrained_reads_published_file(tmp_path):
    """`model.init_cfg=dict(type='Pretrained', checkpoint=...)` (as the ImageNet configs use it)."""
    src = MODELS.build(TINY_CONV)
    randomize(src, seed=3)
    path = tmp_path / 'internimage_1k.pth'
    torch.save(dict(model=src.state_dict()), path)
    model = MODELS.build(dict(TINY_CONV, init_cfg=dict(type='Pretrained', checkpoint=str(path))))
    model.init_weights()
    for k, v in src.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v, msg=k)


def test_clip_head_rejects_sizes_not_divisible_by_32():
    model = MODELS.build(TINY_CLIP).eval()
    with pytest.raises(ValueError, match='divisible by 32'):
        model(torch.randn(1, 3, 48, 48), mode='tensor')
