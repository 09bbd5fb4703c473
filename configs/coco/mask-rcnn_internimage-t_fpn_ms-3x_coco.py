# Mask R-CNN with InternImage-T, 3x schedule (36 epochs, steps at 27 and 33) with the DETR-style
# multi-scale + random-crop augmentation. Published: box AP 49.1, mask AP 43.7.
_base_ = ['../_base_/models/mask-rcnn_internimage-t_fpn.py', '../_base_/datasets/coco_instance_ms-3x.py',
          '../_base_/schedules/coco_adamw_ms-3x.py', '../_base_/default_runtime_det.py']
