# InternImage-H ImageNet fine-tuning (internimage-h_in1k-640.py, the published recipe) with
# sharded data parallelism: torch FSDP through mmengine's FlexibleRunner, one FSDP unit per
# InternImageBlock, parameters, gradients and AdamW states sharded over the GPUs.
#   tools/dist_train.sh configs/imagenet/internimage-h_fsdp_in1k-640.py 8
_base_ = ['./internimage-h_in1k-640.py', '../_base_/runtime_fsdp.py']
