# Objects365 V2 pre-training of DINO-InternImage-G: the stage that
# configs/coco/dino-4scale_internimage-g_o365-pre_coco.py fine-tunes. The recipe of
# ./dino-4scale_internimage-h_objects365.py with the G model (same notes).
_base_ = './dino-4scale_internimage-h_objects365.py'

pretrained = ('https://huggingface.co/OpenGVLab/InternImage/resolve/main/'
              'internimage_g_pretrainto22k_384.pth')
model = dict(
    backbone=dict(arch='g', init_cfg=dict(_delete_=True, type='Pretrained', checkpoint=pretrained)),
    neck=dict(in_channels=[1024, 2048, 4096]))

optim_wrapper = dict(paramwise_cfg=dict(num_layers=56, depths=[2, 2, 48, 4]))
