# UperNet with InternImage-S on ADE20K, 512x512 crops, 160k iterations of 8 GPUs x 2 images.
# Published: mIoU 50.1 (single scale) / 50.9 (multi-scale + flip), 80M params, 1017G FLOPs.
_base_ = './upernet_internimage-t_8xb2-160k_ade20k-512x512.py'

pretrained = 'https://huggingface.co/OpenGVLab/InternImage/resolve/main/internimage_s_1k_224.pth'
model = dict(
    backbone=dict(arch='s', drop_path_rate=0.3,
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[80, 160, 320, 640]),
    auxiliary_head=dict(in_channels=320))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=33, depths=[4, 4, 21, 4]))
