# Mask R-CNN with InternImage-B, ImageNet-1K weights at 224.
_base_ = './mask-rcnn_internimage-t_fpn.py'

pretrained = 'https://huggingface.co/OpenGVLab/InternImage/resolve/main/internimage_b_1k_224.pth'
model = dict(
    backbone=dict(channels=112, depths=[4, 4, 21, 4], groups=[7, 14, 28, 56], drop_path_rate=0.4,
                  post_norm=True, init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[112, 224, 448, 896]))
