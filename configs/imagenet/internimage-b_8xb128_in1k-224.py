# InternImage-B on ImageNet-1K at 224x224: the published 300-epoch recipe, 8 GPUs x 128 images.
# Published: top-1 84.9, 97.46M params, 16G FLOPs.
_base_ = './internimage-t_8xb128_in1k-224.py'

checkpoint = 'https://huggingface.co/OpenGVLab/InternImage/resolve/main/internimage_b_1k_224.pth'
model = dict(
    backbone=dict(channels=112, depths=[4, 4, 21, 4], groups=[7, 14, 28, 56], drop_path_rate=0.5,
                  layer_scale=1e-5, post_norm=True),
    head=dict(in_channels=896), init_cfg=dict(type='Pretrained', checkpoint=checkpoint))
