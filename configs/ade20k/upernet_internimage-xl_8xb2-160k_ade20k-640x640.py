# UperNet with InternImage-XL (ImageNet-22K pre-trained) on ADE20K, 640x640 crops, 160k iterations
# of 8 GPUs x 2 images. Published: mIoU 55.0 (single scale) / 55.3 (multi-scale + flip),
# 368M params, 3142G FLOPs.
_base_ = './upernet_internimage-l_8xb2-160k_ade20k-640x640.py'

pretrained = ('https://huggingface.co/OpenGVLab/InternImage/resolve/main/'
              'internimage_xl_22k_192to384.pth')
model = dict(
    backbone=dict(arch='xl', init_cfg=dict(type='Pretrained', checkpoint=pretrained)),
    decode_head=dict(in_channels=[192, 384, 768, 1536]),
    auxiliary_head=dict(in_channels=768))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=39, depths=[5, 5, 24, 5]))
