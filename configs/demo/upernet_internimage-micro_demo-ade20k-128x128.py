# The embedded segmentation demo: the real UperNet InternImage-T recipe (model, AdamW with the
# layer-wise decay constructor, poly schedule with warm-up, mmseg's ADE20K pipelines and IoUMetric)
# on the synthetic ADE20K-layout shapes of `tools/make_demo_data.py --task seg`, shrunk to run on
# two CPU cores: 128x128 images, a narrow and shallow backbone trained from scratch, a short
# schedule. `make demo-seg` trains and evaluates it.
_base_ = '../ade20k/upernet_internimage-t_8xb2-160k_ade20k-512x512.py'

data_root = 'data/demo_ade20k'
# Index i is PNG value i + 1; PNG value 0 (outline bands) is "unlabelled", as in ADE20K.
metainfo = dict(
    classes=('background', 'circle', 'triangle', 'square', 'cross'),
    palette=[(120, 120, 120), (230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48)])
num_classes = 5
crop_size = (128, 128)
scale = (512, 128)  # ADE20K's 4:1 bounding box at the demo's short side

# Width: 16 channels at stride 4 (group channels 16, as in T) and one or two blocks per level;
# the heads narrow with it. No ImageNet weights exist for this width: it starts from scratch.
# BN replaces mmseg's SyncBN, which torch only runs on GPUs.
_channels = 16
_depths = [1, 1, 2, 1]
norm_cfg = dict(type='BN', requires_grad=True)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(channels=_channels, depths=_depths, groups=[1, 2, 4, 8], drop_path_rate=0.0,
                  init_cfg=None),
    decode_head=dict(
        in_channels=[_channels, _channels * 2, _channels * 4, _channels * 8],
        channels=64,
        num_classes=num_classes,
        norm_cfg=norm_cfg),
    auxiliary_head=dict(
        in_channels=_channels * 4,
        channels=32,
        num_classes=num_classes,
        norm_cfg=norm_cfg))

# The ADE20K pipelines at the demo's scale, with a narrower training scale range (0.75-1.5 instead of
# 0.5-2.0: at 128 pixels a halved image leaves shapes too few pixels to tell apart) and multi-scale
# testing at 0.75-1.25.
__changes = dict(
    RandomResize=dict(scale=scale, ratio_range=(0.75, 1.5)), Resize=dict(scale=scale),
    RandomCrop=dict(crop_size=crop_size), LoadCheckedAnnotations=dict(num_classes=num_classes))
train_pipeline = [dict(t, **__changes.get(t.type, {})) for t in _base_.train_pipeline]
test_pipeline = [dict(t, **__changes.get(t.type, {})) for t in _base_.test_pipeline]
img_ratios = [0.75, 1.0, 1.25]
__tta = _base_.tta_pipeline[1]
tta_pipeline = [
    dict(_base_.tta_pipeline[0]),
    dict(__tta, transforms=[[
        dict(type='Resize', scale=(int(scale[0] * r), int(scale[1] * r)), keep_ratio=True)
        for r in img_ratios
    ]] + [[dict(t, **__changes.get(t.type, {})) for t in step] for step in __tta.transforms[1:]])
]
_dataset = dict(
    type='BaseSegDataset',
    data_root=data_root,
    metainfo=metainfo,
    img_suffix='.jpg',
    seg_map_suffix='.png',
    reduce_zero_label=True)
# Worker processes only compete with the model for the two cores.
train_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(**_dataset, pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=4,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(**_dataset, pipeline=test_pipeline))
test_dataloader = val_dataloader

# Schedule: from scratch at a higher lr than the fine-tuning recipe, evaluated at the end.
max_iters = 2000
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=100),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=100, end=max_iters),
]
optim_wrapper = dict(
    optimizer=dict(lr=2e-3),
    paramwise_cfg=dict(num_layers=sum(_depths), depths=_depths))

default_hooks = dict(
    logger=dict(interval=20),
    checkpoint=dict(interval=max_iters, max_keep_ckpts=1, save_best=None))
log_processor = dict(window_size=20)

# A fixed seed (weights, augmentation, sampler order): a rerun on the same machine prints the
# same numbers (tests/tools/test_demo_reproducible.py).
randomness = dict(seed=0)
