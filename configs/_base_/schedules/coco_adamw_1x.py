# mmdet's 1x schedule (12 epochs, lr steps at 8 and 11) with AdamW (lr 1e-4, wd 0.05) and the
# layer-wise lr decay constructor. The constructor's grouping gives norms, biases and 1-D parameters
# no weight decay at any decay rate; configs set `paramwise_cfg` num_layers/depths for their size.
_base_ = 'mmdet::_base_/schedules/schedule_1x.py'

optim_wrapper = dict(
    optimizer=dict(_delete_=True, type='AdamW', lr=0.0001, weight_decay=0.05),
    constructor='CustomLayerDecayOptimizerConstructor',
    paramwise_cfg=dict(num_layers=30, layer_decay_rate=1.0, depths=[4, 4, 18, 4]))
