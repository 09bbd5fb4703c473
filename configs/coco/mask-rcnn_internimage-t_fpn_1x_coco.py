# Mask R-CNN with InternImage-T, 1x schedule (12 epochs, lr steps at 8 and 11).
# Published: box AP 47.2, mask AP 42.5, 49M params; 8 GPUs x 2 images.
_base_ = 'mmdet::mask_rcnn/mask-rcnn_r50_fpn_1x_coco.py'
custom_imports = dict(imports=['mmdet_custom'], allow_failed_imports=False)

pretrained = 'https://huggingface.co/OpenGVLab/InternImage/resolve/main/internimage_t_1k_224.pth'
model = dict(
    backbone=dict(
        _delete_=True,
        type='InternImage',
        core_op='DCNv3',
        channels=64,
        depths=[4, 4, 18, 4],
        groups=[4, 8, 16, 32],
        mlp_ratio=4.,
        drop_path_rate=0.2,
        norm_layer='LN',
        layer_scale=1.0,
        offset_scale=1.0,
        post_norm=False,
        with_cp=False,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 256, 512]))

# AdamW with layer-wise lr decay (rate 1.0 for T/S/B: the grouping still gives norms, biases and
# 1-D parameters no weight decay).
optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=0.0001, weight_decay=0.05),
    constructor='CustomLayerDecayOptimizerConstructor',
    paramwise_cfg=dict(num_layers=30, layer_decay_rate=1.0, depths=[4, 4, 18, 4]))

default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=3, save_best='auto'))
