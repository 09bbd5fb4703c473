# InternImage-XL on ImageNet-1K at 384x384: the published fine-tuning of the ImageNet-22K model
# (20 epochs, 8 GPUs x 64 images). Published: top-1 88.0, 334.82M params, 163G FLOPs.
_base_ = './internimage-l_8xb64_in1k-384.py'

checkpoint = ('https://huggingface.co/OpenGVLab/InternImage/resolve/main/'
              'internimage_xl_22kto1k_384.pth')
pretrained_22k = ('https://huggingface.co/OpenGVLab/InternImage/resolve/main/'
                  'internimage_xl_22k_192to384.pth')
_depths = [5, 5, 24, 5]
model = dict(
    backbone=dict(arch='xl', depths=_depths, drop_path_rate=0.2),
    head=dict(in_channels=1536),
    init_cfg=dict(type='Pretrained', checkpoint=checkpoint))

optim_wrapper = dict(paramwise_cfg=dict(depths=_depths))
