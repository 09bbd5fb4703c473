# Cascade Mask R-CNN with InternImage-L (ImageNet-22K pre-training, 384), 1x schedule, layer-wise
# lr decay 0.94. Published: box AP 54.9, mask AP 47.7, 277M params; 8 GPUs x 2 images.
_base_ = [
    '../_base_/models/cascade-mask-rcnn_internimage-l_fpn.py', 'mmdet::_base_/datasets/coco_instance.py',
    '../_base_/schedules/coco_adamw_1x.py', '../_base_/default_runtime_det.py'
]

optim_wrapper = dict(paramwise_cfg=dict(num_layers=37, layer_decay_rate=0.94, depths=[5, 5, 22, 5]))
