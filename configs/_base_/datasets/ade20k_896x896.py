# The ADE20K data of `ade20k_512x512.py` at 1.75x (the published InternImage-H setting): images
# resized to 3584x896 (x0.5-2.0 in training, x0.5-1.75 for multi-scale testing), 896x896 crops.
_base_ = './ade20k_512x512.py'

crop_size = (896, 896)
scale = (3584, 896)
__sizes = dict(RandomResize=dict(scale=scale), Resize=dict(scale=scale),
               RandomCrop=dict(crop_size=crop_size))
train_pipeline = [dict(t, **__sizes.get(t.type, {})) for t in _base_.train_pipeline]
test_pipeline = [dict(t, **__sizes.get(t.type, {})) for t in _base_.test_pipeline]
__tta = _base_.tta_pipeline[1]
tta_pipeline = [
    dict(_base_.tta_pipeline[0]),
    dict(__tta, transforms=[[
        dict(type='Resize', scale=(int(scale[0] * r), int(scale[1] * r)), keep_ratio=True)
        for r in _base_.img_ratios
    ]] + __tta.transforms[1:])
]
train_dataloader = dict(dataset=dict(pipeline=train_pipeline))
val_dataloader = dict(dataset=dict(pipeline=test_pipeline))
test_dataloader = val_dataloader
