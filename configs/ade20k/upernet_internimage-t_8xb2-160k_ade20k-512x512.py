# UperNet with InternImage-T on ADE20K, 512x512 crops, 160k iterations of 8 GPUs x 2 images.
# Published: mIoU 47.9 (single scale) / 48.1 (multi-scale + flip), 59M params, 944G FLOPs.
_base_ = [
    '../_base_/models/upernet_internimage-t.py', '../_base_/datasets/ade20k_512x512.py',
    '../_base_/schedules/ade20k_adamw_160k.py', 'mmseg::_base_/default_runtime.py'
]

model = dict(data_preprocessor=dict(size={{_base_.crop_size}}))
