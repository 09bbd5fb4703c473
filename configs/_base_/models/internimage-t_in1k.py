# The published InternImage-T ImageNet-1K classifier and its training-time parts: Mixup/CutMix, label
# smoothing 0.1, EMA of the weights.
custom_imports = dict(imports=['mmpretrain_custom', 'mmpretrain_custom.engine'],
                      allow_failed_imports=False)

# The published ImageNet-1K weights: evaluated by `tools/test.py CONFIG <this url>` and loaded
# by the model when it is built (set `model.init_cfg=None` to train from scratch as published).
checkpoint = 'https://huggingface.co/OpenGVLab/InternImage/resolve/main/internimage_t_1k_224.pth'
model = dict(
    type='InternImageClassifier',
    backbone=dict(
        type='InternImage', arch='t', core_op='DCNv3', mlp_ratio=4., drop_path_rate=0.1,
        norm_layer='LN', with_cp=False, out_indices=(3, )),
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

# EMA of the weights with decay 0.9999 (mmpretrain's EMAHook that also reads published files).
custom_hooks = [
    dict(type='PublishedCheckpointEMAHook', momentum=1e-4, priority='ABOVE_NORMAL'),
]
