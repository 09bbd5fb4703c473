# Mask R-CNN with InternImage-S, 1x schedule. Published: box AP 47.8, mask AP 43.3, 69M params.
_base_ = './mask-rcnn_internimage-t_fpn_1x_coco.py'

pretrained = 'https://huggingface.co/OpenGVLab/InternImage/resolve/main/internimage_s_1k_224.pth'
model = dict(
    backbone=dict(
        channels=80,
        depths=[4, 4, 21, 4],
        groups=[5, 10, 20, 40],
        drop_path_rate=0.3,
        post_norm=True,
        init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[80, 160, 320, 640]))

optim_wrapper = dict(paramwise_cfg=dict(num_layers=33, depths=[4, 4, 21, 4]))
