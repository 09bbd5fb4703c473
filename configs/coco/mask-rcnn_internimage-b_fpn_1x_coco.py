# Mask R-CNN with InternImage-B, 1x schedule. Published: box AP 48.8, mask AP 44.0, 115M params.
_base_ = ['../_base_/models/mask-rcnn_internimage-b_fpn.py', 'mmdet::_base_/datasets/coco_instance.py',
          '../_base_/schedules/coco_adamw_1x.py', '../_base_/default_runtime_det.py']

optim_wrapper = dict(paramwise_cfg=dict(num_layers=33, depths=[4, 4, 21, 4]))
