# UperNet (mmseg's R-50 model) with InternImage-T, ImageNet-1K weights at 224; ADE20K's 150 classes.
_base_ = 'mmseg::_base_/models/upernet_r50.py'
custom_imports = dict(imports=['mmseg_custom'], allow_failed_imports=False)

pretrained = 'https://huggingface.co/OpenGVLab/InternImage/resolve/main/internimage_t_1k_224.pth'
model = dict(
    pretrained=None,
    backbone=dict(
        _delete_=True, type='InternImage', arch='t', core_op='DCNv3', mlp_ratio=4.,
        drop_path_rate=0.2, norm_layer='LN', layer_scale=1.0, with_cp=False,
        out_indices=(0, 1, 2, 3),
        init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(num_classes=150, in_channels=[64, 128, 256, 512]),
    auxiliary_head=dict(num_classes=150, in_channels=256),
    test_cfg=dict(mode='whole'))
