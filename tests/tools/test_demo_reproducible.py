"""The three demos are reproducible: trained twice from their configs as `make demo*` runs them
(tools/dist_train.sh, two processes), they end with bit-identical weights, because the configs fix
mmengine's seed (weights, augmentation, sampler order)."""
from __future__ import annotations

import os
import sys

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from demo_helpers import demo_cfg_options, free_port, run_tool  # noqa: E402

from tools.demo_data import ade20k, coco, imagenet  # noqa: E402

DEMO = os.path.join(ROOT, 'configs', 'demo')
# config, data generator, a short schedule, the checkpoint it leaves
CASES = {
    'cls': ('internimage-micro_demo-imagenet-64.py',
            lambda d: imagenet.generate(d, num_train_per_class=2, num_val_per_class=1),
            ['train_cfg.max_epochs=1', 'train_cfg.val_interval=2',
             'train_dataloader.batch_size=2'],
            'epoch_1.pth'),
    'det': ('mask-rcnn_internimage-micro_fpn_demo-coco.py',
            lambda d: coco.generate(d, num_train=8, num_val=2, image_size=128),
            ['train_cfg.max_epochs=1', 'train_cfg.val_interval=2',
             'train_dataloader.batch_size=2'],
            'epoch_1.pth'),
    'seg': ('upernet_internimage-micro_demo-ade20k-128x128.py',
            lambda d: ade20k.generate(d, num_train=8, num_val=2),
            ['train_cfg.max_iters=3', 'train_cfg.val_interval=4',
             'default_hooks.checkpoint.interval=3', 'train_dataloader.batch_size=2'],
            'iter_3.pth'),
}


@pytest.mark.parametrize('task', sorted(CASES))
def test_demo_configs_fix_the_seed(task):
    from mmengine.config import Config

    cfg = Config.fromfile(os.path.join(DEMO, CASES[task][0]))
    assert isinstance(cfg.get('randomness', {}).get('seed'), int), \
        'a demo config without randomness.seed prints different numbers on every run'


def _weights(path) -> dict[str, torch.Tensor]:
    import mmcv_custom  # noqa: F401  (allows mmengine's checkpoint types under weights_only)

    return torch.load(str(path), map_location='cpu')['state_dict']


@pytest.mark.slow
@pytest.mark.parametrize('task', sorted(CASES))
def test_demo_training_twice_gives_identical_weights(tmp_path, task):
    config, generate, schedule, ckpt = CASES[task]
    data = tmp_path / 'data'
    generate(str(data))
    opts = demo_cfg_options(str(data))
    if task == 'det':  # the COCO evaluator (built with the validation loop) reads the annotations too
        ann = data / 'annotations' / 'instances_val.json'
        opts += [f'val_evaluator.ann_file={ann}', f'test_evaluator.ann_file={ann}']
    runs = []
    for name in ('a', 'b'):
        work = tmp_path / name
        run_tool(['bash', 'tools/dist_train.sh', os.path.join(DEMO, config), '2', '--work-dir',
                  str(work), '--cfg-options', *opts, *schedule],
                 PORT=str(free_port()))
        runs.append(_weights(work / ckpt))
    a, b = runs
    assert a.keys() == b.keys()
    differing = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differing, f'{len(differing)} of {len(a)} tensors differ, e.g. {differing[:3]}'
