# DINO (4 feature scales) with InternImage-L (ImageNet-22K pre-training, 384), 12 epochs.
# Published: box AP 57.6, 241M params.
_base_ = './dino-4scale_internimage-t_8xb2-12e_coco.py'

pretrained = ('https://huggingface.co/OpenGVLab/InternImage/resolve/main/'
              'internimage_l_22k_192to384.pth')
model = dict(
    backbone=dict(arch='l', drop_path_rate=0.4, with_cp=False,
                  init_cfg=dict(checkpoint=pretrained)),
    neck=dict(in_channels=[320, 640, 1280]))

optim_wrapper = dict(paramwise_cfg=dict(num_layers=37, depths=[5, 5, 22, 5]))
