# Mask R-CNN with InternImage-S, ImageNet-1K weights at 224.
_base_ = './mask-rcnn_internimage-t_fpn.py'

pretrained = 'https://huggingface.co/OpenGVLab/InternImage/resolve/main/internimage_s_1k_224.pth'
model = dict(
    backbone=dict(arch='s', drop_path_rate=0.3, init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[80, 160, 320, 640]))
