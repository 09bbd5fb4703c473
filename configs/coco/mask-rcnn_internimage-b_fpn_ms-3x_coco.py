# Mask R-CNN with InternImage-B, 3x multi-scale. Published: box AP 50.3, mask AP 44.8, 115M params.
_base_ = ['../_base_/models/mask-rcnn_internimage-b_fpn.py', '../_base_/datasets/coco_instance_ms-3x.py',
          '../_base_/schedules/coco_adamw_ms-3x.py', '../_base_/default_runtime_det.py']

optim_wrapper = dict(paramwise_cfg=dict(num_layers=33, depths=[4, 4, 21, 4]))
