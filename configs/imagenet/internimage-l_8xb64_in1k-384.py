# InternImage-L on ImageNet-1K at 384x384: the published fine-tuning of the ImageNet-22K model
# (20 epochs, 8 GPUs x 64 images, no Mixup/CutMix, label smoothing 0.3).
# Published: top-1 87.7, 223.33M params, 108G FLOPs.
_base_ = [
    '../_base_/models/internimage-t_in1k.py', '../_base_/datasets/imagenet_finetune_bs64_384.py',
    '../_base_/schedules/imagenet_finetune_20e.py', 'mmpretrain::_base_/default_runtime.py'
]

# The published 22K->1K weights (fine-tuning starts from `pretrained_22k`).
checkpoint = ('https://huggingface.co/OpenGVLab/InternImage/resolve/main/'
              'internimage_l_22kto1k_384.pth')
pretrained_22k = ('https://huggingface.co/OpenGVLab/InternImage/resolve/main/'
                  'internimage_l_22k_192to384.pth')
_depths = [5, 5, 22, 5]
model = dict(
    backbone=dict(arch='l', depths=_depths, drop_path_rate=0.1, with_cp=True),
    head=dict(
        in_channels=1280,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.3, mode='original')),
    train_cfg=dict(_delete_=True),
    init_cfg=dict(type='Pretrained', checkpoint=checkpoint))
