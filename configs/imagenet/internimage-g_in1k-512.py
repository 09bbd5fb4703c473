# InternImage-G on ImageNet-1K at 512x512: evaluation of the published 22K->1K model (bicubic
# resize of the short side to 512, centre crop 512). Published: top-1 90.1, 3076.37M params,
# 2700G FLOPs. Training settings as for InternImage-H (drop path 0.4).
_base_ = './internimage-h_in1k-640.py'

img_size = 512
checkpoint = ('https://huggingface.co/OpenGVLab/InternImage/resolve/main/'
              'internimage_g_22kto1k_512.pth')
_depths = [2, 2, 48, 4]
model = dict(
    backbone=dict(
        channels=512,
        depths=_depths,
        groups=[16, 32, 64, 128],
        drop_path_rate=0.4,
        post_norm=True,
        res_post_norm=False,
        level2_post_norm_block_ids=[5, 11, 17, 23, 29, 35, 41, 47]),
    head=dict(in_channels=4096),
    init_cfg=dict(type='Pretrained', checkpoint=checkpoint))

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
        hparams=dict(pad_val=[104, 116, 124], interpolation='bicubic')),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=img_size, edge='short', backend='pillow',
         interpolation='bicubic'),
    dict(type='CenterCrop', crop_size=img_size),
    dict(type='PackInputs'),
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(paramwise_cfg=dict(depths=_depths))
