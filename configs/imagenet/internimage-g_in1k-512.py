# InternImage-G on ImageNet-1K at 512x512: the published 22K->1K fine-tuning recipe
# (`internimage_g_22kto1k_512.yaml`: as for InternImage-H, 8 GPUs x 16 images x 4 accumulation
# steps, but drop path 0.4) and the evaluation of the published model (bicubic resize of the
# short side to 512, centre crop 512). Published: top-1 90.1, 3076.37M params, 2700G FLOPs.
# A 3B model trains sharded: `internimage-g_fsdp_in1k-512.py` or the DeepSpeed ZeRO variants.
_base_ = './internimage-h_in1k-640.py'

img_size = 512
checkpoint = ('https://huggingface.co/OpenGVLab/InternImage/resolve/main/'
              'internimage_g_22kto1k_512.pth')
pretrained_22k = ('https://huggingface.co/OpenGVLab/InternImage/resolve/main/'
                  'internimage_g_pretrainto22k_384.pth')
_depths = [2, 2, 48, 4]
model = dict(
    backbone=dict(arch='g', depths=_depths, drop_path_rate=0.4),
    head=dict(in_channels=4096),
    init_cfg=dict(type='Pretrained', checkpoint=checkpoint))

# H's pipelines (the 384 fine-tuning ones) at `img_size`.
__sizes = dict(RandomResizedCrop=dict(scale=img_size), ResizeEdge=dict(scale=img_size),
               CenterCrop=dict(crop_size=img_size))
train_pipeline = [dict(t, **__sizes.get(t.type, {})) for t in _base_.train_pipeline]
test_pipeline = [dict(t, **__sizes.get(t.type, {})) for t in _base_.test_pipeline]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader

optim_wrapper = dict(paramwise_cfg=dict(depths=_depths))
