# InternImage-H on ImageNet-1K at 640x640: evaluation of the published 22K->1K model (bicubic
# resize of the short side to 640, centre crop 640). Published: top-1 89.6, 1089.64M params,
# 1478G FLOPs. Training settings are the 384 fine-tuning recipe of InternImage-L (the published
# H fine-tuning also uses 20 epochs, lr 2e-5, layer decay 0.9, label smoothing 0.3).
_base_ = './internimage-l_8xb64_in1k-384.py'

img_size = 640
checkpoint = ('https://huggingface.co/OpenGVLab/InternImage/resolve/main/'
              'internimage_h_22kto1k_640.pth')
pretrained_22k = None  # fine-tuned from a joint 427M-image pre-training, not released as a file
_depths = [6, 6, 32, 6]
model = dict(
    backbone=dict(
        channels=320,
        depths=_depths,
        groups=[10, 20, 40, 80],
        drop_path_rate=0.2,
        layer_scale=None,
        offset_scale=1.0,
        post_norm=False,
        dw_kernel_size=5,
        res_post_norm=True,
        level2_post_norm=True,
        level2_post_norm_block_ids=[5, 11, 17, 23, 29],
        center_feature_scale=True,
        out_indices=(2, 3)),
    # Levels 2 and 3 fused, attention-pooled into a 768-d CLIP-style embedding, then linear.
    head=dict(
        _delete_=True,
        type='InternImageClipHead',
        num_classes=1000,
        in_channels=2560,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.3, mode='original'),
        cal_acc=False),
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
train_dataloader = dict(batch_size=8, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=8, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(paramwise_cfg=dict(depths=_depths))
