# Cascade Mask R-CNN with InternImage-XL, ImageNet-22K weights at 384.
_base_ = './cascade-mask-rcnn_internimage-l_fpn.py'

pretrained = ('https://huggingface.co/OpenGVLab/InternImage/resolve/main/'
              'internimage_xl_22k_192to384.pth')
model = dict(
    backbone=dict(arch='xl', init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[192, 384, 768, 1536]))
