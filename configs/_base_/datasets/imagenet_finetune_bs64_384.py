# ImageNet-1K fine-tuning at 384, 64 images per GPU: the 224 data with RandAugment but no random
# erasing in training, and the crop-ratio-1.0 test pipeline at 384.
_base_ = './imagenet_bs128_224.py'

img_size = 384
bgr_mean = [103.53, 116.28, 123.675]
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=img_size, backend='pillow', interpolation='bicubic'),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(
        type='RandAugment',
        policies='timm_increasing',
        num_policies=2,
        total_level=10,
        magnitude_level=9,
        magnitude_std=0.5,
        hparams=dict(pad_val=[round(x) for x in bgr_mean], interpolation='bicubic')),
    dict(type='PackInputs'),
]
__sizes = dict(ResizeEdge=dict(scale=img_size), CenterCrop=dict(crop_size=img_size))
test_pipeline = [dict(t, **__sizes.get(t.type, {})) for t in _base_.test_pipeline]
train_dataloader = dict(batch_size=64, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=64, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
