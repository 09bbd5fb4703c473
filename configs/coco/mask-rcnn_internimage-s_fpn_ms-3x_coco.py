# Mask R-CNN with InternImage-S, 3x multi-scale. Published: box AP 49.7, mask AP 44.5, 69M params.
_base_ = ['../_base_/models/mask-rcnn_internimage-s_fpn.py', '../_base_/datasets/coco_instance_ms-3x.py',
          '../_base_/schedules/coco_adamw_ms-3x.py', '../_base_/default_runtime_det.py']

optim_wrapper = dict(paramwise_cfg=dict(num_layers=33, depths=[4, 4, 21, 4]))
