# Objects365 V2 pre-training of DINO-InternImage-H: the stage that
# configs/coco/dino-4scale_internimage-h_o365-pre_coco.py fine-tunes (its `load_from` is this config's
# last checkpoint). The paper trains 26 epochs on Objects365 from the joint-pretrained backbone; the
# published code has no config for this stage, so everything else (optimizer, lr, batch) is the COCO
# recipe's, run by epoch: constant lr after warm-up. mmdet's Objects365V2Dataset, evaluated with
# pycocotools (CocoMetric) at the end of training.
_base_ = '../coco/dino-4scale_internimage-h_o365-pre_coco.py'

load_from = None
pretrained = ('https://huggingface.co/OpenGVLab/InternImage/resolve/main/'
              'internimage_h_jointto22k_384.pth')
model = dict(
    backbone=dict(init_cfg=dict(_delete_=True, type='Pretrained', checkpoint=pretrained)),
    bbox_head=dict(num_classes=365))

dataset_type = 'Objects365V2Dataset'
data_root = 'data/Objects365/Obj365_v2/'
train_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/zhiyuan_objv2_train.json',
        data_prefix=dict(img='train/'),
        filter_cfg=dict(filter_empty_gt=True, min_size=32),
        pipeline={{_base_.train_pipeline}}))
val_dataloader = dict(
    dataset=dict(
        _delete_=True,
        type=dataset_type,
        data_root=data_root,
        ann_file='annotations/zhiyuan_objv2_val.json',
        data_prefix=dict(img='val/'),
        test_mode=True,
        pipeline={{_base_.test_pipeline}}))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/zhiyuan_objv2_val.json')
test_evaluator = val_evaluator

max_epochs = 26
train_cfg = dict(_delete_=True, type='EpochBasedTrainLoop', max_epochs=max_epochs,
                 val_interval=max_epochs)
default_hooks = dict(checkpoint=dict(by_epoch=True, interval=1, max_keep_ckpts=3, save_best=None))
log_processor = dict(by_epoch=True)
