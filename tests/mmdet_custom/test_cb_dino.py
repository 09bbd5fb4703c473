"""CBDINO: a narrow copy of the CB-InternImage-H COCO config trains on the demo data (finite losses
that go down, both members supervised with the published weights) and predicts from the last member,
also through the config's test-time augmentation."""
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
CONFIG = os.path.join(ROOT, 'configs', 'coco', 'dino-4scale_cbinternimage-h_o365-pre_coco.py')

from tools.demo_data import coco  # noqa: E402

EMBED = 256  # transformer width: DINO's decoder hard-codes 256 (its 128-frequency box encoding)


def narrow_cfg(data_root: str) -> Config:
    """The CB-H config with a tiny composite backbone and DINO head on the demo data (64x64)."""
    cfg = Config.fromfile(CONFIG)
    model = cfg.model
    model.backbone.update(core_op='DCNv3', channels=16, depths=[1, 1, 2, 1], groups=[1, 2, 4, 8],
                          level2_post_norm_block_ids=[1], drop_path_rate=0.0, with_cp=False)
    model.neck[0].update(in_channels=[32, 64, 128], out_channels=EMBED, norm_cfg=dict(type='GN', num_groups=32))
    model.num_queries = 30
    model.test_cfg.max_per_img = 50  # at most num_queries x num_classes
    cfg.tta_model.tta_cfg.max_per_img = 50
    model.dn_cfg.group_cfg.num_dn_queries = 20
    for part in (model.encoder, model.decoder):
        part.num_layers = 1
    model.encoder.layer_cfg.self_attn_cfg.embed_dims = EMBED
    model.encoder.layer_cfg.ffn_cfg.update(embed_dims=EMBED, feedforward_channels=64)
    model.decoder.layer_cfg.self_attn_cfg.embed_dims = EMBED
    model.decoder.layer_cfg.cross_attn_cfg.embed_dims = EMBED
    model.decoder.layer_cfg.ffn_cfg.update(embed_dims=EMBED, feedforward_channels=64)
    model.positional_encoding.num_feats = EMBED // 2
    model.bbox_head.update(num_classes=len(coco.CLASSES), embed_dims=EMBED)
    pipeline = [dict(type='LoadImageFromFile'), dict(type='LoadAnnotations', with_bbox=True),
                dict(type='PackDetInputs')]
    cfg.train_dataloader.dataset.update(
        data_root=data_root, ann_file='annotations/instances_train.json',
        data_prefix=dict(img='train/'), metainfo=dict(classes=coco.CLASSES), pipeline=pipeline)
    return cfg


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: these small ops only lose time to thread hand-offs on a busy 2-core box."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope='module')
def demo_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('demo_coco'))
    coco.generate(root, num_train=2, num_val=1, image_size=64, max_objects=2)
    return root


def _batch(cfg: Config):
    from mmdet.registry import DATASETS
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    samples = [dataset[i] for i in range(len(dataset))]
    return dict(inputs=[s['inputs'] for s in samples], data_samples=[s['data_samples'] for s in samples])


@pytest.mark.slow
def test_narrow_cb_dino_trains_on_demo_data(demo_root):
    from mmdet.registry import MODELS
    from mmengine.optim import build_optim_wrapper

    import mmdet_custom  # noqa: F401
    init_default_scope('mmdet')
    torch.manual_seed(0)
    cfg = narrow_cfg(demo_root)
    model = MODELS.build(cfg.model)
    model.init_weights()
    assert type(model).__name__ == 'CBDINO' and type(model.backbone).__name__ == 'CBInternImage'
    # The config's optimizer (layer decay, clipping at 0.1) at a larger lr, to move within a few steps.
    optim_cfg = copy.deepcopy(cfg.optim_wrapper)
    optim_cfg.optimizer.lr = 1e-3
    optim = build_optim_wrapper(model, optim_cfg)
    batch = _batch(cfg)
    model.train()
    totals = []
    for step in range(6):
        torch.manual_seed(step)  # the same denoising noise draws in every run of the test
        log = model.train_step(batch, optim)
        totals.append(float(log['loss']))
        if step == 0:
            # both members are supervised, with the published weights 0.5 and 1
            keys = set(log)
            assert {'cb0.loss_cls', 'cb1.loss_cls', 'cb0.dn_loss_bbox', 'cb1.enc_loss_iou'} <= keys
    assert all(math.isfinite(t) for t in totals), totals
    assert sum(totals[-3:]) < sum(totals[:3]), totals
    # the composite weights are trained (they start at zero)
    assert model.backbone.cb_modules[1].gamma2.abs().sum() > 0


def test_losses_are_the_members_weighted(demo_root):
    """The first member's losses are 0.5 x a DINO's on its features, the second's 1 x."""
    from mmdet.registry import MODELS

    import mmdet_custom  # noqa: F401
    init_default_scope('mmdet')
    torch.manual_seed(0)
    cfg = narrow_cfg(demo_root)
    model = MODELS.build(cfg.model).train()  # no dropout or drop path in the narrow model
    model.init_weights()  # some DINO parameters are allocated uninitialised (torch.Tensor(n))
    model.backbone.cb_modules[1].gamma1.data.fill_(0.3)
    data = model.data_preprocessor(_batch(cfg), training=True)
    torch.manual_seed(1)
    losses = model.loss(data['inputs'], data['data_samples'])
    members = model._member_feats(data['inputs'])
    for k, w in ((0, 0.5), (1, 1.0)):
        torch.manual_seed(1)
        if k == 1:  # the head drew member 0's denoising queries first
            model.bbox_head.loss(**model.forward_transformer(members[0], data['data_samples']),
                                 batch_data_samples=data['data_samples'])
        ref = model.bbox_head.loss(**model.forward_transformer(members[k], data['data_samples']),
                                   batch_data_samples=data['data_samples'])
        for name in ('loss_cls', 'loss_bbox', 'dn_loss_iou', 'enc_loss_cls'):
            torch.testing.assert_close(losses[f'cb{k}.{name}'], w * ref[name])


def test_predicts_from_last_member_and_with_tta(demo_root):
    from mmdet.registry import MODELS, TRANSFORMS

    import mmdet_custom  # noqa: F401
    init_default_scope('mmdet')
    torch.manual_seed(0)
    cfg = narrow_cfg(demo_root)
    model = MODELS.build(copy.deepcopy(cfg.model)).eval()  # building edits the head's config
    model.init_weights()  # some DINO parameters are allocated uninitialised (torch.Tensor(n))
    model.backbone.cb_modules[1].gamma0.data.fill_(0.5)
    img = torch.rand(1, 3, 64, 64)
    feats = model.extract_feat(img)
    ref = model.neck(model.backbone(img)[1])
    assert len(feats) == 4
    for a, b in zip(feats, ref):
        torch.testing.assert_close(a, b)
    # The config's TTA: DetTTAModel over the augmented views of one demo image.
    tta_cfg = copy.deepcopy(cfg.tta_model)
    tta_cfg.module = cfg.model
    tta = MODELS.build(tta_cfg).eval()
    tta.module.load_state_dict(model.state_dict())
    pipeline = copy.deepcopy(cfg.tta_pipeline)
    pipeline[1].transforms[0] = [dict(type='Resize', scale=(64, s), keep_ratio=True) for s in (48, 64)]
    transform = TRANSFORMS.build(dict(type='Compose', transforms=pipeline))
    sample = transform(dict(img_path=os.path.join(demo_root, 'train', '000000.png'), img_id=0,
                            instances=[]))
    assert len(sample['inputs']) == 4  # two scales x two flips
    with torch.no_grad():
        out = tta.test_step(dict(inputs=[sample['inputs']], data_samples=[sample['data_samples']]))
    pred = out[0].pred_instances
    assert 0 < len(pred.bboxes) <= 50 and torch.isfinite(pred.bboxes).all()
