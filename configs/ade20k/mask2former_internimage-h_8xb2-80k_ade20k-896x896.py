# Mask2Former with InternImage-H on ADE20K, 896x896 crops, 80k iterations of 16 images, fine-tuned
# from the COCO-Stuff-164k stage (configs/coco_stuff164k/mask2former_internimage-h_8xb2-80k_coco-stuff164k-896x896.py).
# Published: mIoU 62.6 (single scale) / 62.9 (multi-scale + flip), 1.31B params, 4635G FLOPs. The
# published run used 16 GPUs x 1 image. mmseg 1.x's Mask2FormerHead (mmdet 3's Mask2Former) is the
# published head: 1024 channels, 200 queries, 32 heads, 4096-wide FFNs, 9 decoder layers; semantic
# maps from the class x mask product, as published.
#
# Not expressible without a key conversion: published Mask2Former checkpoints (mmseg 0.x / mmdet 2
# layout) load here for the backbone only; the COCO-Stuff stage of this repository is loaded instead.
_base_ = 'mmseg::mask2former/mask2former_r50_8xb2-160k_ade20k-512x512.py'
custom_imports = dict(imports=['mmseg_custom', 'mmdet.models'], allow_failed_imports=False)

# The COCO-Stuff stage's last checkpoint (tools/train.py's default work dir). Its 171-class
# classifier does not fit ADE20K's 150 classes and is left out with a warning (as published).
load_from = ('work_dirs/mask2former_internimage-h_8xb2-80k_coco-stuff164k-896x896/'
             'iter_80000.pth')

crop_size = (896, 896)
scale = (3584, 896)
num_classes = 150
embed_dims = 1024
model = dict(
    data_preprocessor=dict(size=crop_size),
    # with_cp=False as published; init_cfg=None: the whole segmentor comes from `load_from`
    backbone=dict(
        _delete_=True, type='InternImage', arch='h', core_op='DCNv3', mlp_ratio=4.,
        drop_path_rate=0.5, norm_layer='LN', with_cp=False, out_indices=(0, 1, 2, 3),
        init_cfg=None),
    decode_head=dict(
        in_channels=[320, 640, 1280, 2560],
        feat_channels=embed_dims,
        out_channels=embed_dims,
        num_classes=num_classes,
        num_queries=200,
        pixel_decoder=dict(
            encoder=dict(
                layer_cfg=dict(
                    self_attn_cfg=dict(embed_dims=embed_dims, num_heads=32),
                    ffn_cfg=dict(embed_dims=embed_dims, feedforward_channels=4096))),
            positional_encoding=dict(num_feats=embed_dims // 2)),
        positional_encoding=dict(num_feats=embed_dims // 2),
        transformer_decoder=dict(
            layer_cfg=dict(
                self_attn_cfg=dict(embed_dims=embed_dims, num_heads=32),
                cross_attn_cfg=dict(embed_dims=embed_dims, num_heads=32),
                ffn_cfg=dict(embed_dims=embed_dims, feedforward_channels=4096))),
        loss_cls=dict(class_weight=[1.0] * num_classes + [0.1])))

# Published pipelines (those of the UperNet-H config, ../_base_/datasets/ade20k_896x896.py, which a
# config based on mmseg's Mask2Former cannot inherit): random resize around (3584, 896), 896 crops.
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
# Published multi-scale test (the `_ms` config): 768/896 .. 1024/896 of the test scale, with flips.
img_ratios = [768. / 896., 832. / 896., 1.0, 960. / 896., 1024. / 896.]
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
val_dataloader = dict(batch_size=1, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# AdamW lr 1e-5, wd 0.05, layer-wise decay 0.95 over 50 (+2) layers (it replaces mmseg's 0.1x
# backbone lr and embedding rules), gradient clipping at 0.1; 1500 warm-up iterations, then poly.
optim_wrapper = dict(
    _delete_=True,
    type='OptimWrapper',
    optimizer=dict(type='AdamW', lr=1e-5, betas=(0.9, 0.999), weight_decay=0.05),
    clip_grad=dict(max_norm=0.1, norm_type=2),
    constructor='CustomLayerDecayOptimizerConstructor',
    paramwise_cfg=dict(num_layers=50, layer_decay_rate=0.95, depths=[6, 6, 32, 6]))
max_iters = 80000
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0, end=1500),
    dict(type='PolyLR', power=1.0, eta_min=0.0, by_epoch=False, begin=1500, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=2000)
default_hooks = dict(
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=2000, max_keep_ckpts=1,
                    save_best='mIoU'))
