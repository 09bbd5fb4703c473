# Mask2Former with InternImage-H on COCO-Stuff-164k (171 classes), 896x896 crops, 80k iterations of
# 16 images: the stage that configs/ade20k/mask2former_internimage-h_8xb2-80k_ade20k-896x896.py
# fine-tunes. Published: mIoU 52.6 / 52.8 (single / multi-scale), 1.31B params. The ADE20K model with
# COCO-Stuff data, 171 classes, lr 2e-5 and the backbone from the joint-pretrained InternImage-H.
_base_ = '../ade20k/mask2former_internimage-h_8xb2-80k_ade20k-896x896.py'

load_from = None
num_classes = 171
pretrained = ('https://huggingface.co/OpenGVLab/InternImage/resolve/main/'
              'internimage_h_jointto22k_384.pth')
model = dict(
    backbone=dict(init_cfg=dict(_delete_=True, type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(num_classes=num_classes,
                     loss_cls=dict(class_weight=[1.0] * num_classes + [0.1])))

# The ADE20K pipelines with the 171 classes checked on loading; multi-scale test at 0.5-1.75 x the
# (3584, 896) test scale, with flips.
__classes = dict(LoadCheckedAnnotations=dict(num_classes=num_classes))
train_pipeline = [dict(t, **__classes.get(t.type, {})) for t in _base_.train_pipeline]
test_pipeline = [dict(t, **__classes.get(t.type, {})) for t in _base_.test_pipeline]
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
__tta, __scale = _base_.tta_pipeline[1], _base_.scale
tta_pipeline = [
    dict(_base_.tta_pipeline[0]),
    dict(__tta, transforms=[[
        dict(type='Resize', scale=(int(__scale[0] * r), int(__scale[1] * r)), keep_ratio=True)
        for r in img_ratios
    ]] + [[dict(t, **__classes.get(t.type, {})) for t in ts] for ts in __tta.transforms[1:]])
]
dataset_type = 'COCOStuffDataset'
data_root = 'data/coco_stuff164k'
train_dataloader = dict(dataset=dict(
    _delete_=True, type=dataset_type, data_root=data_root, pipeline=train_pipeline,
    data_prefix=dict(img_path='images/train2017', seg_map_path='annotations/train2017')))
val_dataloader = dict(dataset=dict(
    _delete_=True, type=dataset_type, data_root=data_root, pipeline=test_pipeline,
    data_prefix=dict(img_path='images/val2017', seg_map_path='annotations/val2017')))
test_dataloader = val_dataloader

optim_wrapper = dict(optimizer=dict(lr=2e-5))
train_cfg = dict(val_interval=8000)
