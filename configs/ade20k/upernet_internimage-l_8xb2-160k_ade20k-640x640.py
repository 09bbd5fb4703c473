# UperNet with InternImage-L (ImageNet-22K pre-trained) on ADE20K, 640x640 crops, 160k iterations
# of 8 GPUs x 2 images, lr 2e-5 with layer-wise decay 0.94 and gradient clipping at 0.1 (L2 norm).
# Published: mIoU 53.9 (single scale) / 54.1 (multi-scale + flip), 256M params, 2526G FLOPs.
_base_ = [
    '../_base_/models/upernet_internimage-l.py', '../_base_/datasets/ade20k_640x640.py',
    '../_base_/schedules/ade20k_adamw_160k.py', 'mmseg::_base_/default_runtime.py'
]

model = dict(data_preprocessor=dict(size={{_base_.crop_size}}))
optim_wrapper = dict(
    optimizer=dict(lr=2e-5),
    clip_grad=dict(max_norm=0.1, norm_type=2),
    paramwise_cfg=dict(num_layers=37, layer_decay_rate=0.94, depths=[5, 5, 22, 5]))
