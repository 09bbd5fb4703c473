# InternImage-G ImageNet fine-tuning (internimage-g_in1k-512.py, the published recipe) with
# sharded data parallelism: torch FSDP through mmengine's FlexibleRunner, one FSDP unit per
# InternImageBlock, parameters, gradients and AdamW states sharded over the GPUs.
#   tools/dist_train.sh configs/imagenet/internimage-g_fsdp_in1k-512.py 8
_base_ = ['./internimage-g_in1k-512.py', '../_base_/runtime_fsdp.py']
