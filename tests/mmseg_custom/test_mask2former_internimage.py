"""A narrow copy of the Mask2Former-H ADE20K config (mmseg 1.x's Mask2FormerHead on mmdet 3) trains on
the demo ADE20K-layout data: finite losses that go down."""
from __future__ import annotations

import copy
import math
import os
import sys

import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
CONFIG = os.path.join(ROOT, 'configs', 'ade20k', 'mask2former_internimage-h_8xb2-80k_ade20k-896x896.py')

from tools.demo_data import ade20k  # noqa: E402

WIDTH = 32


def narrow_cfg(data_root: str) -> Config:
    cfg = Config.fromfile(CONFIG)
    num_classes = len(ade20k.CLASSES)  # PNG value i + 1 is class i; 0 (outlines) is ignored
    model = cfg.model
    model.data_preprocessor.size = (64, 64)
    model.backbone.update(core_op='DCNv3', channels=16, depths=[1, 1, 2, 1], groups=[1, 2, 4, 8],
                          level2_post_norm_block_ids=[1], drop_path_rate=0.0)
    head = model.decode_head
    head.update(in_channels=[16, 32, 64, 128], feat_channels=WIDTH, out_channels=WIDTH,
                num_classes=num_classes, num_queries=8)
    head.loss_cls.class_weight = [1.0] * num_classes + [0.1]
    head.pixel_decoder.encoder.num_layers = 1
    head.pixel_decoder.encoder.layer_cfg.self_attn_cfg.update(embed_dims=WIDTH, num_heads=4)
    head.pixel_decoder.encoder.layer_cfg.ffn_cfg.update(embed_dims=WIDTH, feedforward_channels=64)
    head.pixel_decoder.positional_encoding.num_feats = WIDTH // 2
    head.positional_encoding.num_feats = WIDTH // 2
    head.transformer_decoder.num_layers = 3
    for attn in ('self_attn_cfg', 'cross_attn_cfg'):
        head.transformer_decoder.layer_cfg[attn].update(embed_dims=WIDTH, num_heads=4)
    head.transformer_decoder.layer_cfg.ffn_cfg.update(embed_dims=WIDTH, feedforward_channels=64)
    head.train_cfg.num_points = 256
    cfg.train_dataloader.dataset = dict(
        type='BaseSegDataset', data_root=data_root, metainfo=dict(classes=ade20k.CLASSES),
        img_suffix='.jpg', seg_map_suffix='.png', reduce_zero_label=True,
        data_prefix=dict(img_path='images/training', seg_map_path='annotations/training'),
        pipeline=[dict(type='LoadImageFromFile'),
                  dict(type='LoadCheckedAnnotations', num_classes=num_classes),
                  dict(type='PackSegInputs')])
    return cfg


@pytest.fixture(autouse=True)
def one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.slow
def test_narrow_mask2former_trains_on_demo_data(tmp_path):
    from mmengine.optim import build_optim_wrapper
    from mmseg.registry import DATASETS, MODELS

    import mmseg_custom  # noqa: F401
    init_default_scope('mmseg')
    ade20k.generate(str(tmp_path), num_train=2, num_val=1, size=64)
    cfg = narrow_cfg(str(tmp_path))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    assert type(model.decode_head).__name__ == 'Mask2FormerHead'
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    samples = [dataset[i] for i in range(len(dataset))]
    batch = dict(inputs=[s['inputs'] for s in samples], data_samples=[s['data_samples'] for s in samples])
    optim_cfg = copy.deepcopy(cfg.optim_wrapper)  # the config's layer decay and clipping, larger lr
    optim_cfg.optimizer.lr = 1e-3
    optim = build_optim_wrapper(model, optim_cfg)
    model.train()
    totals = []
    for step in range(6):
        torch.manual_seed(step)  # the same point sampling in every run of the test
        log = model.train_step(batch, optim)
        totals.append(float(log['loss']))
    assert {'decode.loss_cls', 'decode.loss_mask', 'decode.loss_dice'} <= set(log)
    assert all(math.isfinite(t) for t in totals), totals
    assert sum(totals[-2:]) < sum(totals[:2]), totals
    # inference: semantic logits from the class x mask product, one map per class
    model.eval()
    with torch.no_grad():
        pred = model.test_step(dict(inputs=batch['inputs'][:1], data_samples=batch['data_samples'][:1]))
    assert pred[0].seg_logits.data.shape == (len(ade20k.CLASSES), 64, 64)
