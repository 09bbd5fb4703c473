# The published 300-epoch ImageNet schedule, which is mmpretrain's Swin one: AdamW, lr 5e-4 per 512
# images (1e-3 at 1024), wd 0.05 except norms, biases and 1-D parameters, 20 warm-up epochs from 1e-6,
# cosine to 1e-5 at epoch 300; and gradients clipped at norm 5.
_base_ = 'mmpretrain::_base_/schedules/imagenet_bs1024_adamw_swin.py'

optim_wrapper = dict(clip_grad=dict(max_norm=5.0))
train_cfg = dict(by_epoch=True, max_epochs=300, val_interval=1)
auto_scale_lr = dict(base_batch_size=1024)
