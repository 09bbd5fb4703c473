# The embedded classification demo: the InternImage-T ImageNet recipe (published head, AdamW with
# the Swin/timm settings, label smoothing, EMA) on the synthetic ImageNet-layout shapes of
# `tools/make_demo_data.py --task cls`, shrunk to run on two CPU cores: 64x64 images, a narrow
# and shallow backbone trained from scratch, light augmentation, a short schedule.
# `make demo-cls` trains and evaluates it.
_base_ = '../imagenet/internimage-t_8xb128_in1k-224.py'

data_root = 'data/demo_imagenet'
metainfo = dict(classes=('circle', 'triangle', 'square', 'cross'))
num_classes = 4
img_size = 64

# Width: 16 channels at stride 4 (group channels 16, as in T) and one or two blocks per level.
# No ImageNet weights exist for this width: it starts from scratch.
_channels = 16
model = dict(
    backbone=dict(channels=_channels, depths=[1, 1, 2, 1], groups=[1, 2, 4, 8],
                  drop_path_rate=0.0),
    head=dict(num_classes=num_classes, in_channels=_channels * 8),
    train_cfg=dict(_delete_=True),
    init_cfg=None)
data_preprocessor = dict(num_classes=num_classes)

# Light augmentation: a tiny model trained from scratch for minutes does not learn the shapes
# through Mixup/CutMix, RandAugment and random erasing (it stays at chance), so the demo keeps only
# the random resized crop (at least half the image) and the flip of the recipe.
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=img_size, crop_ratio_range=(0.5, 1.0), backend='pillow',
         interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
__sizes = dict(ResizeEdge=dict(scale=img_size), CenterCrop=dict(crop_size=img_size))
test_pipeline = [dict(t, **__sizes.get(t.type, {})) for t in _base_.test_pipeline]
_dataset = dict(type='ImageNet', data_root=data_root, metainfo=metainfo)
# Worker processes only compete with the model for the two cores.
train_dataloader = dict(
    batch_size=16,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(**_dataset, split='train', pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=50,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(**_dataset, split='val', pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='Accuracy', topk=(1, ))
test_evaluator = val_evaluator

# Schedule: from scratch at a higher lr, warm-up and cosine over a few epochs, evaluated at the
# end; the EMA horizon (1 / momentum iterations) shrinks with the schedule.
max_epochs = 40
train_cfg = dict(by_epoch=True, max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=True, end=2, convert_to_iter_based=True),
    dict(type='CosineAnnealingLR', eta_min=1e-5, by_epoch=True, begin=2, end=max_epochs,
         convert_to_iter_based=True),
]
optim_wrapper = dict(optimizer=dict(lr=2e-3))
auto_scale_lr = dict(base_batch_size=32)
custom_hooks = [
    dict(type='PublishedCheckpointEMAHook', momentum=0.02, priority='ABOVE_NORMAL'),
]

default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=max_epochs, max_keep_ckpts=1))
log_processor = dict(window_size=10)

# A fixed seed (weights, augmentation, sampler order): a rerun on the same machine prints the
# same numbers (tests/tools/test_demo_reproducible.py).
randomness = dict(seed=0)
