# Cascade Mask R-CNN with InternImage-XL, 3x multi-scale (recipe of the L 3x config, drop path 0.6).
# Published: box AP 56.2, mask AP 48.8, 387M params.
_base_ = './cascade-mask-rcnn_internimage-l_fpn_ms-3x_coco.py'

pretrained = ('https://huggingface.co/OpenGVLab/InternImage/resolve/main/'
              'internimage_xl_22k_192to384.pth')
model = dict(
    backbone=dict(
        channels=192,
        depths=[5, 5, 24, 5],
        groups=[12, 24, 48, 96],
        drop_path_rate=0.6,
        init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[192, 384, 768, 1536]))

optim_wrapper = dict(paramwise_cfg=dict(num_layers=39, depths=[5, 5, 24, 5]))
