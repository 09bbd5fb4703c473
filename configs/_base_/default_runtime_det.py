# mmdet's runtime, keeping the last three epochs' checkpoints and the best one.
_base_ = 'mmdet::_base_/default_runtime.py'

default_hooks = dict(checkpoint=dict(interval=1, max_keep_ckpts=3, save_best='auto'))
