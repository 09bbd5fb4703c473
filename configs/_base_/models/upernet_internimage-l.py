# UperNet with InternImage-L, ImageNet-22K weights at 384.
_base_ = './upernet_internimage-t.py'

pretrained = ('https://huggingface.co/OpenGVLab/InternImage/resolve/main/'
              'internimage_l_22k_192to384.pth')
model = dict(
    backbone=dict(channels=160, depths=[5, 5, 22, 5], groups=[10, 20, 40, 80], drop_path_rate=0.4,
                  offset_scale=2.0, post_norm=True, init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=[160, 320, 640, 1280]),
    auxiliary_head=dict(in_channels=640))
