# ImageNet-1K at 224, 128 images per GPU. Train: mmpretrain's Swin pipeline is the published timm one
# (bicubic RandomResizedCrop, flip, RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25). Test:
# crop ratio 1.0 (short side resized bicubically to the crop size, then centre crop) instead of
# mmpretrain's 0.875.
_base_ = 'mmpretrain::_base_/datasets/imagenet_bs64_swin_224.py'

img_size = 224
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
