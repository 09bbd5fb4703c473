# UperNet with InternImage-L, ImageNet-22K weights at 384.
_base_ = './upernet_internimage-t.py'

pretrained = ('https://huggingface.co/OpenGVLab/InternImage/resolve/main/'
              'internimage_l_22k_192to384.pth')
model = dict(
    backbone=dict(arch='l', drop_path_rate=0.4, init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=[160, 320, 640, 1280]),
    auxiliary_head=dict(in_channels=640))
