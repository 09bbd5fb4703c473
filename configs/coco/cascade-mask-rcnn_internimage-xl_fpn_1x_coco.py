# Cascade Mask R-CNN with InternImage-XL (ImageNet-22K pre-training, 384), 1x schedule.
# Published: box AP 55.3, mask AP 48.1, 387M params.
_base_ = [
    '../_base_/models/cascade-mask-rcnn_internimage-xl_fpn.py', 'mmdet::_base_/datasets/coco_instance.py',
    '../_base_/schedules/coco_adamw_1x.py', '../_base_/default_runtime_det.py'
]

optim_wrapper = dict(paramwise_cfg=dict(num_layers=39, layer_decay_rate=0.94, depths=[5, 5, 24, 5]))
