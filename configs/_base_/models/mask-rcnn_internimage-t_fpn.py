# Mask R-CNN (mmdet's R-50 FPN model) with InternImage-T, ImageNet-1K weights at 224.
_base_ = 'mmdet::_base_/models/mask-rcnn_r50_fpn.py'
custom_imports = dict(imports=['mmdet_custom'], allow_failed_imports=False)

pretrained = 'https://huggingface.co/OpenGVLab/InternImage/resolve/main/internimage_t_1k_224.pth'
# Detection and segmentation use layer scale 1.0 at every size (classification: none for T, 1e-5).
model = dict(
    backbone=dict(
        _delete_=True, type='InternImage', arch='t', core_op='DCNv3', mlp_ratio=4.,
        drop_path_rate=0.2, norm_layer='LN', layer_scale=1.0, with_cp=False,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[64, 128, 256, 512]))
