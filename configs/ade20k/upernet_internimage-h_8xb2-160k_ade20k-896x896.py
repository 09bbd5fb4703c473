# UperNet with InternImage-H (joint 427M -> ImageNet-22K pre-trained) on ADE20K, 896x896 crops,
# 160k iterations of 16 images. Published: mIoU 59.9 (single scale) / 60.3 (multi-scale + flip),
# 1.12B params, 3566G FLOPs. The published run used 16 GPUs x 1 image; 8 x 2 is the same batch
# (the head's SyncBN sees all 16 images either way). with_cp=False as published: see the README
# ("Headline systems") for the GPU memory this needs, and set model.backbone.with_cp=True to trade
# speed for memory (same results).
_base_ = [
    '../_base_/models/upernet_internimage-h.py', '../_base_/datasets/ade20k_896x896.py',
    '../_base_/schedules/ade20k_adamw_160k.py', 'mmseg::_base_/default_runtime.py'
]

model = dict(data_preprocessor=dict(size={{_base_.crop_size}}))
# lr 2e-5, layer-wise decay 0.95 over 50 (+2) layers, gradient clipping at 0.1 (L2 norm).
optim_wrapper = dict(
    optimizer=dict(lr=2e-5),
    clip_grad=dict(max_norm=0.1, norm_type=2),
    paramwise_cfg=dict(num_layers=50, layer_decay_rate=0.95, depths=[6, 6, 32, 6]))
