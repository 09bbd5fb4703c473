# Cascade Mask R-CNN with InternImage-L, 3x schedule with DETR-style multi-scale augmentation
# (batch 64, AdamW lr 2e-4, layer decay 0.9, EMA). Published: box AP 56.1, mask AP 48.5, 277M params.
_base_ = [
    '../_base_/models/cascade-mask-rcnn_internimage-l_fpn.py',
    '../_base_/datasets/coco_instance_ms-3x.py',
    '../_base_/schedules/cascade-mask-rcnn_adamw_ms-3x.py', '../_base_/default_runtime_det.py'
]

optim_wrapper = dict(paramwise_cfg=dict(num_layers=37, depths=[5, 5, 22, 5]))
