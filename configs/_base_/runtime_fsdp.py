# Sharded data parallelism (torch FSDP) for the billion-parameter InternImages: inherit this file
# next to a model config (classification, detection or segmentation) to train it with mmengine's
# FlexibleRunner instead of the Runner's DDP:
#
#   _base_ = ['./internimage-h_in1k-640.py', '../_base_/runtime_fsdp.py']
#
# tools/train.py and tools/dist_train.sh run it unchanged (the runner type comes from here).
# Parameters, gradients and AdamW states are sharded over all processes (FULL_SHARD, the
# counterpart of DeepSpeed ZeRO-3 without offload); each InternImageBlock is one FSDP unit, so
# the backbone's `with_cp` recomputes a block inside its unit. Checkpoints: `state_dict_cfg='full'`,
# one file written by rank 0 in the layout of a DDP run (published keys), which tools/test.py,
# `load_from` and tools/model_converters/sharded_to_published.py read, and from which `--resume`
# continues with any number of processes. The optimizer wrapper (layer-wise lr decay included)
# is built on the unsharded model and gradients are clipped by the norm over all shards
# (mmcv_custom/sharded.py). The config that inherits this must import `mmcv_custom` (every
# InternImage config does, through mmdet_custom / mmseg_custom / mmpretrain_custom).
runner_type = 'FlexibleRunner'
strategy = dict(
    type='InternImageFSDPStrategy',
    model_wrapper=dict(
        type='MMFullyShardedDataParallel',
        auto_wrap_policy=dict(type='internimage_block_wrap_policy'),
        sharding_strategy='FULL_SHARD',
        # the optimizer and its paramwise rules see the original parameters, not flat buffers
        use_orig_params=True),
    state_dict_cfg='full')
