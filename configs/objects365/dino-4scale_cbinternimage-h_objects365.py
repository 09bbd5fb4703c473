# Objects365 V2 pre-training of DINO-CB-InternImage-H: the stage that
# configs/coco/dino-4scale_cbinternimage-h_o365-pre_coco.py fine-tunes. The recipe of
# ./dino-4scale_internimage-h_objects365.py (same notes) with the composite backbone; both members
# start from the joint-pretrained InternImage-H (CBInternImage loads a single-InternImage checkpoint
# into every member, the later ones without their stem; the composite weights `gamma` start at zero).
_base_ = './dino-4scale_internimage-h_objects365.py'

model = dict(
    type='CBDINO',
    backbone=dict(type='CBInternImage', out_indices=[(0, 1, 2, 3), (1, 2, 3)]),
    neck=[_base_.model.neck])  # the H model's neck as a one-element list (keys `neck.0.*`)
