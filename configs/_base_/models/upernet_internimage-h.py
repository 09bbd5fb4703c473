# UperNet with InternImage-H, the joint 427M-image -> ImageNet-22K weights at 384: the L model with
# the H backbone (wider and deeper, 5x5 depth-wise kernels, residual and level-2 post-norms, centre
# feature scaling, no layer scale).
_base_ = './upernet_internimage-l.py'

pretrained = ('https://huggingface.co/OpenGVLab/InternImage/resolve/main/'
              'internimage_h_jointto22k_384.pth')
model = dict(
    backbone=dict(arch='h', drop_path_rate=0.5, layer_scale=None,
                  init_cfg=dict(checkpoint=pretrained)),
    decode_head=dict(in_channels=[320, 640, 1280, 2560]),
    auxiliary_head=dict(in_channels=1280))
