# UperNet with InternImage-H (joint 427M -> ImageNet-22K pre-trained) on ADE20K, 896x896 crops,
# 160k iterations of 16 images. Published: mIoU 59.9 (single scale) / 60.3 (multi-scale + flip),
# 1.12B params, 3566G FLOPs. The published run used 16 GPUs x 1 image; 8 x 2 is the same batch
# (the head's SyncBN sees all 16 images either way). with_cp=False as published: see the README
# ("Headline systems") for the GPU memory this needs, and set model.backbone.with_cp=True to trade
# speed for memory (same results).
_base_ = './upernet_internimage-l_8xb2-160k_ade20k-640x640.py'

crop_size = (896, 896)
scale = (3584, 896)
num_classes = 150
pretrained = ('https://huggingface.co/OpenGVLab/InternImage/resolve/main/'
              'internimage_h_jointto22k_384.pth')
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        _delete_=True,
        type='InternImage',
        core_op='DCNv3',
        channels=320,
        depths=[6, 6, 32, 6],
        groups=[10, 20, 40, 80],
        mlp_ratio=4.,
        drop_path_rate=0.5,
        norm_layer='LN',
        layer_scale=None,
        offset_scale=1.0,
        post_norm=False,
        dw_kernel_size=5,
        res_post_norm=True,
        level2_post_norm=True,
        level2_post_norm_block_ids=[5, 11, 17, 23, 29],
        center_feature_scale=True,
        with_cp=False,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[320, 640, 1280, 2560]),
    auxiliary_head=dict(in_channels=1280))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadCheckedAnnotations', num_classes=num_classes),
    dict(type='RandomResize', scale=scale, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='ResizeToMultiple', size_divisor=32),
    dict(type='LoadCheckedAnnotations', num_classes=num_classes),
    dict(type='PackSegInputs')
]
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale=(int(scale[0] * r), int(scale[1] * r)), keep_ratio=True)
             for r in img_ratios],
            [dict(type='ResizeToMultiple', size_divisor=32)],
            [dict(type='RandomFlip', prob=0., direction='horizontal'),
             dict(type='RandomFlip', prob=1., direction='horizontal')],
            [dict(type='LoadCheckedAnnotations', num_classes=num_classes)],
            [dict(type='PackSegInputs')],
        ])
]
train_dataloader = dict(batch_size=2, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# lr 2e-5, layer-wise decay 0.95 over 50 (+2) layers, gradient clipping at 0.1 (L2 norm).
optim_wrapper = dict(
    optimizer=dict(lr=2e-5),
    clip_grad=dict(max_norm=0.1, norm_type=2),
    paramwise_cfg=dict(num_layers=50, layer_decay_rate=0.95, depths=[6, 6, 32, 6]))
