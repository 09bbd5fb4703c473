# DeepSpeed ZeRO for the billion-parameter InternImages, as the published classification code
# trains them (`main_deepspeed.py`, `ds_config_zero1.json`): fp16 with autocast and dynamic loss
# scaling, ZeRO stage 1 (optimizer states sharded), gradients clipped at 5. Needs the optional
# package `deepspeed` (CUDA machines); tools/train.py stops with an error naming it otherwise.
# The config that inherits this also sets `optim_wrapper` to a `DeepSpeedOptimWrapper` (DeepSpeed
# clips and accumulates itself) and `strategy.gradient_accumulation_steps`.
runner_type = 'FlexibleRunner'
strategy = dict(
    type='DeepSpeedStrategy',
    fp16=dict(enabled=True, auto_cast=True, loss_scale=0, initial_scale_power=16),
    zero_optimization=dict(
        stage=1, offload_optimizer=dict(device='none'), offload_param=dict(device='none')),
    gradient_clipping=5.0)
