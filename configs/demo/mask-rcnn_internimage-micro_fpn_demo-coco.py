# The embedded detection demo: the real Mask R-CNN InternImage-T recipe (model, optimizer with
# layer-wise decay, hooks) on the synthetic shapes dataset of `tools/make_demo_data.py --task det`,
# shrunk to run on a laptop CPU: 128x128 images, a narrow and shallow backbone trained from
# scratch, a short schedule. The FPN and heads keep their structure but are 64 channels wide and
# sample fewer RoIs: at 256 channels they alone cost ~2 s per iteration on two CPU cores.
# `make demo` trains and evaluates it.
_base_ = '../coco/mask-rcnn_internimage-t_fpn_1x_coco.py'

data_root = 'data/demo_coco/'
metainfo = dict(
    classes=('circle', 'triangle', 'square'),
    palette=[(220, 20, 60), (0, 128, 255), (255, 200, 0)])
image_size = (128, 128)

# Backbone width: 16 channels at stride 4 (group channels stay 16, as in T), one or two blocks
# per stage; no ImageNet weights exist for it, so it starts from scratch.
_channels = 16
_depths = [1, 1, 2, 1]
_head_width = 64
model = dict(
    backbone=dict(channels=_channels, depths=_depths, groups=[1, 2, 4, 8], drop_path_rate=0.0,
                  init_cfg=None),
    neck=dict(in_channels=[_channels, _channels * 2, _channels * 4, _channels * 8],
              out_channels=_head_width),
    rpn_head=dict(in_channels=_head_width, feat_channels=_head_width),
    roi_head=dict(
        bbox_roi_extractor=dict(out_channels=_head_width),
        bbox_head=dict(in_channels=_head_width, fc_out_channels=256,
                       num_classes=len(metainfo['classes'])),
        mask_roi_extractor=dict(out_channels=_head_width),
        mask_head=dict(in_channels=_head_width, conv_out_channels=_head_width,
                       num_classes=len(metainfo['classes']))),
    # a few objects per image need far fewer proposals and RoI samples than COCO
    train_cfg=dict(rpn_proposal=dict(nms_pre=1000, max_per_img=300),
                   rcnn=dict(sampler=dict(num=128))),
    test_cfg=dict(rpn=dict(nms_pre=500, max_per_img=300)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_size, keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True, with_mask=True),
    dict(type='PackDetInputs',
         meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor')),
]
# Worker processes only compete with the model for a laptop's few cores.
__loader = dict(batch_size=4, num_workers=0, persistent_workers=False)
__data = dict(data_root=data_root, metainfo=metainfo)
train_dataloader = dict(**__loader, dataset=dict(
    **__data, ann_file='annotations/instances_train.json', data_prefix=dict(img='train/'),
    pipeline=train_pipeline))
val_dataloader = dict(**__loader, dataset=dict(
    **__data, ann_file='annotations/instances_val.json', data_prefix=dict(img='val/'),
    pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
test_evaluator = val_evaluator

# Schedule: from scratch at a higher lr than the fine-tuning recipe, evaluated at the end.
max_epochs = 12
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=100),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True, milestones=[9, 11],
         gamma=0.1),
]
optim_wrapper = dict(
    optimizer=dict(lr=0.001),
    paramwise_cfg=dict(num_layers=sum(_depths), depths=_depths))
auto_scale_lr = dict(base_batch_size=4)

# A progress line (with ETA) every 10 iterations; keep only the last checkpoint.
default_hooks = dict(
    logger=dict(interval=10),
    checkpoint=dict(interval=1, max_keep_ckpts=1, save_best=None))
log_processor = dict(window_size=10)

# A fixed seed (weights, augmentation, sampler order): a rerun on the same machine prints the
# same numbers (tests/tools/test_demo_reproducible.py).
randomness = dict(seed=0)
