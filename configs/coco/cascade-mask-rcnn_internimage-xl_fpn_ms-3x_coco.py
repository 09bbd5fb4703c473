# Cascade Mask R-CNN with InternImage-XL, 3x multi-scale (recipe of the L 3x config, drop path 0.6).
# Published: box AP 56.2, mask AP 48.8, 387M params.
_base_ = [
    '../_base_/models/cascade-mask-rcnn_internimage-xl_fpn.py',
    '../_base_/datasets/coco_instance_ms-3x.py',
    '../_base_/schedules/cascade-mask-rcnn_adamw_ms-3x.py', '../_base_/default_runtime_det.py'
]

model = dict(backbone=dict(drop_path_rate=0.6))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=39, depths=[5, 5, 24, 5]))
