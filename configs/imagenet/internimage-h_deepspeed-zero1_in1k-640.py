# InternImage-H ImageNet fine-tuning (internimage-h_in1k-640.py, the published recipe) with DeepSpeed
# ZeRO-1 and fp16, the published default: 8 GPUs x 16 images x 4 accumulation steps. Needs
# `deepspeed` (optional; `pip install deepspeed`); without it use internimage-h_fsdp_in1k-640.py.
_base_ = ['./internimage-h_in1k-640.py', '../_base_/runtime_deepspeed.py']

strategy = dict(gradient_accumulation_steps=4)
# DeepSpeed steps, clips and accumulates: same optimizer and layer-wise lr rule, no clip_grad here.
optim_wrapper = dict(
    _delete_=True,
    type='DeepSpeedOptimWrapper',
    optimizer=dict(type='AdamW', lr=2e-5, weight_decay=0.05, eps=1e-8, betas=(0.9, 0.999)),
    constructor='CustomLayerDecayOptimizerConstructor',
    paramwise_cfg=dict(
        mode='classification', layer_decay_rate=0.9, dcn_lr_mul=0.1,
        depths={{_base_.model.backbone.depths}}))
