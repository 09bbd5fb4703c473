# InternImage-T on ImageNet-1K at 224x224: the published 300-epoch recipe, 8 GPUs x 128 images.
# Published: top-1 83.5, 29.92M params, 5G FLOPs.
_base_ = [
    '../_base_/models/internimage-t_in1k.py', '../_base_/datasets/imagenet_bs128_224.py',
    '../_base_/schedules/imagenet_adamw_300e.py', 'mmpretrain::_base_/default_runtime.py'
]
