# InternImage-G ImageNet fine-tuning with DeepSpeed ZeRO-3 (parameters, gradients and optimizer
# states sharded) and the optimizer and parameters offloaded to CPU memory: the published
# least-memory option (`ds_config_zero3_offload.json`). Needs `deepspeed` (optional).
_base_ = ['./internimage-g_deepspeed-zero1_in1k-512.py']

strategy = dict(
    zero_optimization=dict(
        stage=3, offload_optimizer=dict(device='cpu'), offload_param=dict(device='cpu')))
# mmengine's EMAHook deep-copies the model, whose parameters ZeRO-3 partitions (empty on every
# rank): no EMA here. For the published EMA use the FSDP variant (ShardedEMAHook).
custom_hooks = []
