# InternImage-T on ImageNet-1K at 224x224: the published 300-epoch recipe, 8 GPUs x 128 images.
# Published: top-1 83.5, 29.92M params, 5G FLOPs.
_base_ = [
    'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py',
    'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py',
    'mmpretrain::_base_/default_runtime.py',
]
custom_imports = dict(imports=['mmpretrain_custom', 'mmpretrain_custom.engine'],
                      allow_failed_imports=False)

img_size = 224
# The published ImageNet-1K weights: evaluated by `tools/test.py CONFIG <this url>` and loaded
# by the model when it is built (set `model.init_cfg=None` to train from scratch as published).
checkpoint = 'https://huggingface.co/OpenGVLab/InternImage/resolve/main/internimage_t_1k_224.pth'
model = dict(
    type='InternImageClassifier',
    backbone=dict(
        type='InternImage',
        core_op='DCNv3',
        channels=64,
        depths=[4, 4, 18, 4],
        groups=[4, 8, 16, 32],
        mlp_ratio=4.,
        drop_path_rate=0.1,
        norm_layer='LN',
        layer_scale=None,
        offset_scale=1.0,
        post_norm=False,
        with_cp=False,
        out_indices=(3, )),
    neck=None,
    # 1x1 conv to 1.5x channels, BN, GELU, average pool, linear (the published head).
    head=dict(
        type='InternImageClsHead',
        num_classes=1000,
        in_channels=512,
        cls_scale=1.5,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.1, mode='original'),
        cal_acc=False),
    # Mixup 0.8 / CutMix 1.0, one of the two per batch with equal probability (timm's switch 0.5).
    train_cfg=dict(augments=[dict(type='Mixup', alpha=0.8), dict(type='CutMix', alpha=1.0)]),
    init_cfg=dict(type='Pretrained', checkpoint=checkpoint))

# Train: mmpretrain's Swin pipeline is the published timm one (bicubic RandomResizedCrop, flip,
# RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25). Test: crop ratio 1.0 (short side
# resized bicubically to the crop size, then centre crop) instead of mmpretrain's 0.875.
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=img_size, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]
train_dataloader = dict(batch_size=128)
val_dataloader = dict(batch_size=128, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# AdamW, lr 5e-4 per 512 images (1e-3 at 1024), wd 0.05 except norms, biases and 1-D parameters,
# gradients clipped at norm 5; 20 warm-up epochs from 1e-6, cosine to 1e-5 at epoch 300 (schedule
# from the Swin base config, which matches the published one).
optim_wrapper = dict(clip_grad=dict(max_norm=5.0))
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
auto_scale_lr = dict(base_batch_size=1024)

# EMA of the weights with decay 0.9999 (mmpretrain's EMAHook that also reads published files).
custom_hooks = [
    dict(type='PublishedCheckpointEMAHook', momentum=1e-4, priority='ABOVE_NORMAL'),
]
