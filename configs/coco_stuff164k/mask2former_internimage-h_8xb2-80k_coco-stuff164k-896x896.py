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

crop_size = (896, 896)
scale = (3584, 896)
train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadCheckedAnnotations', num_classes=num_classes),
    dict(type='RandomResize', scale=scale, ratio_range=(0.5, 2.0), keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=scale, keep_ratio=True),
    dict(type='ResizeToMultiple', size_divisor=32),
    dict(type='LoadCheckedAnnotations', num_classes=num_classes),
    dict(type='PackSegInputs')
]
img_ratios = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TestTimeAug',
        transforms=[
            [dict(type='Resize', scale=(int(scale[0] * r), int(scale[1] * r)), keep_ratio=True)
             for r in img_ratios],
            [dict(type='ResizeToMultiple', size_divisor=32)],
            [dict(type='RandomFlip', prob=0., direction='horizontal'),
             dict(type='RandomFlip', prob=1., direction='horizontal')],
            [dict(type='LoadCheckedAnnotations', num_classes=num_classes)],
            [dict(type='PackSegInputs')],
        ])
]
dataset_type = 'COCOStuffDataset'
data_root = 'data/coco_stuff164k'
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='images/train2017', seg_map_path='annotations/train2017'),
        pipeline=train_pipeline))
val_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        data_prefix=dict(img_path='images/val2017', seg_map_path='annotations/val2017'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(optimizer=dict(lr=2e-5))
train_cfg = dict(val_interval=8000)
