# InternImage-H on ImageNet-1K at 640x640: the published 22K->1K fine-tuning recipe
# (`internimage_h_22kto1k_640.yaml`: 20 epochs, 2 warm-up, AdamW lr 2e-5 per 512 images, wd 0.05,
# layer decay 0.9 with DCN offsets at 0.1x, drop path 0.2, label smoothing 0.3, EMA 0.9999, grad clip
# 5, with_cp) on 8 GPUs x 16 images x 4 accumulation steps = 512, and the evaluation of the published
# model (bicubic resize of the short side to 640, centre crop 640). Published: top-1 89.6,
# 1089.64M params, 1478G FLOPs. This file trains with the Runner's DDP; a 1B model wants sharding:
# `internimage-h_fsdp_in1k-640.py` (torch FSDP) or the DeepSpeed ZeRO variants (README, "Sharded
# training").
_base_ = './internimage-l_8xb64_in1k-384.py'

img_size = 640
checkpoint = ('https://huggingface.co/OpenGVLab/InternImage/resolve/main/'
              'internimage_h_22kto1k_640.pth')
# Fine-tuning starts from the joint 427M-image -> 22K model (set model.init_cfg.checkpoint to it).
pretrained_22k = ('https://huggingface.co/OpenGVLab/InternImage/resolve/main/'
                  'internimage_h_jointto22k_384.pth')
_depths = [6, 6, 32, 6]
model = dict(
    backbone=dict(arch='h', depths=_depths, drop_path_rate=0.2, out_indices=(2, 3)),
    # Levels 2 and 3 fused, attention-pooled into a 768-d CLIP-style embedding, then linear.
    head=dict(
        _delete_=True,
        type='InternImageClipHead',
        num_classes=1000,
        in_channels=2560,
        loss=dict(type='LabelSmoothLoss', label_smooth_val=0.3, mode='original'),
        cal_acc=False),
    init_cfg=dict(type='Pretrained', checkpoint=checkpoint))

# The 384 fine-tuning pipelines at `img_size`.
__sizes = dict(RandomResizedCrop=dict(scale=img_size), ResizeEdge=dict(scale=img_size),
               CenterCrop=dict(crop_size=img_size))
train_pipeline = [dict(t, **__sizes.get(t.type, {})) for t in _base_.train_pipeline]
test_pipeline = [dict(t, **__sizes.get(t.type, {})) for t in _base_.test_pipeline]
train_dataloader = dict(batch_size=16, dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(batch_size=16, dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

# 16 images per GPU, gradients accumulated over 4 steps: 8 GPUs make the published 512 per update
# (lr, warm-up and schedule as in the L recipe, per 512 images).
optim_wrapper = dict(accumulative_counts=4, paramwise_cfg=dict(depths=_depths))
