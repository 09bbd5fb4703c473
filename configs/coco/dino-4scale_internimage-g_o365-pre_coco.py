# DINO (4 feature scales) with InternImage-G, fine-tuned on COCO from the Objects365 stage
# (configs/objects365/dino-4scale_internimage-g_objects365.py). Published: box AP 64.2, 3.1B params.
# The recipe is InternImage-H's (./dino-4scale_internimage-h_o365-pre_coco.py) with the G backbone
# and layer decay over 56 layers.
#
# The published G head uses `EfficientFFN` (each FFN split into 4 column blocks, to save memory):
# the same parameters and function as mmdet's FFN, which is used here (its keys differ from the
# published checkpoint's; the backbone's are identical).
_base_ = './dino-4scale_internimage-h_o365-pre_coco.py'

load_from = 'work_dirs/dino-4scale_internimage-g_objects365/epoch_26.pth'

model = dict(
    backbone=dict(arch='g'),
    neck=dict(in_channels=[1024, 2048, 4096]))

optim_wrapper = dict(paramwise_cfg=dict(num_layers=56, depths=[2, 2, 48, 4]))
