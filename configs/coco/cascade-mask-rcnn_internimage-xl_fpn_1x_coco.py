# Cascade Mask R-CNN with InternImage-XL (ImageNet-22K pre-training, 384), 1x schedule.
# Published: box AP 55.3, mask AP 48.1, 387M params.
_base_ = './cascade-mask-rcnn_internimage-l_fpn_1x_coco.py'

pretrained = ('https://huggingface.co/OpenGVLab/InternImage/resolve/main/'
              'internimage_xl_22k_192to384.pth')
model = dict(
    backbone=dict(
        channels=192,
        depths=[5, 5, 24, 5],
        groups=[12, 24, 48, 96],
        init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[192, 384, 768, 1536]))

optim_wrapper = dict(paramwise_cfg=dict(num_layers=39, depths=[5, 5, 24, 5]))
