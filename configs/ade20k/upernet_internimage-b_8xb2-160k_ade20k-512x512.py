# UperNet with InternImage-B on ADE20K, 512x512 crops, 160k iterations of 8 GPUs x 2 images.
# Published: mIoU 50.8 (single scale) / 51.3 (multi-scale + flip), 128M params, 1185G FLOPs.
_base_ = './upernet_internimage-t_8xb2-160k_ade20k-512x512.py'

pretrained = 'https://huggingface.co/OpenGVLab/InternImage/resolve/main/internimage_b_1k_224.pth'
model = dict(
    backbone=dict(arch='b', drop_path_rate=0.4,
                  init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[112, 224, 448, 896]),
    auxiliary_head=dict(in_channels=448))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=33, depths=[4, 4, 21, 4]))
