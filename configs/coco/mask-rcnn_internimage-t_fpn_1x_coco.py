# Mask R-CNN with InternImage-T, 1x schedule (12 epochs, lr steps at 8 and 11).
# Published: box AP 47.2, mask AP 42.5, 49M params; 8 GPUs x 2 images.
_base_ = ['../_base_/models/mask-rcnn_internimage-t_fpn.py', 'mmdet::_base_/datasets/coco_instance.py',
          '../_base_/schedules/coco_adamw_1x.py', '../_base_/default_runtime_det.py']
