# Mask R-CNN with InternImage-S, 1x schedule. Published: box AP 47.8, mask AP 43.3, 69M params.
_base_ = ['../_base_/models/mask-rcnn_internimage-s_fpn.py', 'mmdet::_base_/datasets/coco_instance.py',
          '../_base_/schedules/coco_adamw_1x.py', '../_base_/default_runtime_det.py']

optim_wrapper = dict(paramwise_cfg=dict(num_layers=33, depths=[4, 4, 21, 4]))
