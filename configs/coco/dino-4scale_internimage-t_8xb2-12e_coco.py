# DINO (4 feature scales) with InternImage-T, 12 epochs. Published: box AP 53.9, 49M params.
# AdamW lr 1e-4, wd 1e-4, layer-wise lr decay 0.9, gradient clipping at 0.1.
_base_ = 'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py'
custom_imports = dict(imports=['mmdet_custom'], allow_failed_imports=False)

pretrained = 'https://huggingface.co/OpenGVLab/InternImage/resolve/main/internimage_t_1k_224.pth'
# Activation checkpointing, as published (saves memory at 1333x800); levels 1-3 feed the neck.
model = dict(
    backbone=dict(
        _delete_=True, type='InternImage', arch='t', core_op='DCNv3', mlp_ratio=4.,
        drop_path_rate=0.2, norm_layer='LN', layer_scale=1.0, with_cp=True, out_indices=(1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[128, 256, 512]))

optim_wrapper = dict(
    optimizer=dict(lr=0.0001, weight_decay=0.0001),
    constructor='CustomLayerDecayOptimizerConstructor',
    # the layer decay replaces the R50 recipe's 0.1x backbone lr
    paramwise_cfg=dict(_delete_=True, num_layers=30, layer_decay_rate=0.9, depths=[4, 4, 18, 4]))

default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=3, save_best='auto'))
