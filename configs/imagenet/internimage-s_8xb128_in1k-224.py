# InternImage-S on ImageNet-1K at 224x224: the published 300-epoch recipe, 8 GPUs x 128 images.
# Published: top-1 84.2, 50.08M params, 8G FLOPs.
_base_ = './internimage-t_8xb128_in1k-224.py'

checkpoint = 'https://huggingface.co/OpenGVLab/InternImage/resolve/main/internimage_s_1k_224.pth'
model = dict(
    backbone=dict(arch='s', drop_path_rate=0.4),
    head=dict(in_channels=640), init_cfg=dict(type='Pretrained', checkpoint=checkpoint))
