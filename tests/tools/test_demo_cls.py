"""The classification demo: deterministic ImageNet-layout data that the demo config reads, and a short
training through tools/dist_train.sh whose checkpoint tools/test.py evaluates with mmpretrain's
Accuracy."""
from __future__ import annotations

import os
import pickle
import re
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
CONFIG = os.path.join(ROOT, 'configs', 'demo', 'internimage-micro_demo-imagenet-64.py')

from demo_helpers import demo_cfg_options, free_port, read_tree, run_tool  # noqa: E402

from tools.demo_data import imagenet  # noqa: E402


def test_generate_is_deterministic_and_imagenet_shaped(tmp_path):
    a, b, c = tmp_path / 'a', tmp_path / 'b', tmp_path / 'c'
    info = imagenet.generate(str(a), seed=1, num_train_per_class=3, num_val_per_class=2)
    imagenet.generate(str(b), seed=1, num_train_per_class=3, num_val_per_class=2)
    imagenet.generate(str(c), seed=2, num_train_per_class=3, num_val_per_class=2)
    assert read_tree(str(a)) == read_tree(str(b)) != read_tree(str(c))
    k = len(imagenet.CLASSES)
    assert info == {'classes': imagenet.CLASSES, 'train': 3 * k, 'val': 2 * k}
    for split, n in (('train', 3), ('val', 2)):
        lines = (a / 'meta' / f'{split}.txt').read_text().splitlines()
        assert len(lines) == n * k
        for line in lines:
            rel, label = line.split(' ')
            assert rel.split('/')[0] == imagenet.CLASSES[int(label)]
            assert (a / split / rel).is_file()




def test_demo_config_reads_generated_data(tmp_path):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import DATASETS

    import mmpretrain_custom  # noqa: F401

    imagenet.generate(str(tmp_path), num_train_per_class=2, num_val_per_class=1)
    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict(dict(x.split('=') for x in demo_cfg_options(str(tmp_path))))
    init_default_scope('mmpretrain')
    train = DATASETS.build(cfg.train_dataloader.dataset)
    val = DATASETS.build(cfg.test_dataloader.dataset)
    k = len(imagenet.CLASSES)
    assert len(train) == 2 * k and len(val) == k
    assert train.metainfo['classes'] == imagenet.CLASSES
    labels = sorted(int(val[i]['data_samples'].gt_label) for i in range(k))
    assert labels == list(range(k))
    assert tuple(val[0]['inputs'].shape) == (3, 64, 64)






@pytest.mark.slow
def test_demo_trains_with_dist_train_and_test_prints_accuracy(tmp_path):
    data = tmp_path / 'data'
    imagenet.generate(str(data), num_train_per_class=4, num_val_per_class=3)
    work = tmp_path / 'work'
    opts = demo_cfg_options(str(data))
    run_tool(['bash', 'tools/dist_train.sh', CONFIG, '1', '--work-dir', str(work), '--cfg-options',
          *opts, 'train_cfg.max_epochs=2', 'train_cfg.val_interval=2',
          'default_hooks.checkpoint.interval=2'], PORT=str(free_port()))
    ckpt = work / 'epoch_2.pth'
    assert ckpt.is_file()

    dump = tmp_path / 'preds.pkl'
    out = run_tool([sys.executable, 'tools/test.py', CONFIG, str(ckpt), '--work-dir',
                str(tmp_path / 'test'), '--out', str(dump), '--cfg-options', *opts])
    printed = re.findall(r'accuracy/top1: ([0-9.]+)', out)
    assert printed, out[-3000:]
    # The printed top-1 is mmpretrain's Accuracy on the predictions the model made (dumped).
    with open(dump, 'rb') as f:
        results = pickle.load(f)
    assert len(results) == 3 * len(imagenet.CLASSES)
    pred = np.array([int(r['pred_label'][0]) for r in results])
    gt = np.array([int(r['gt_label'][0]) for r in results])
    assert float(printed[-1]) == pytest.approx(100.0 * (pred == gt).mean(), abs=1e-3)

    # The same weights in the published file layout (under `model`, published keys) evaluate
    # through the config's EMA hook to the same accuracy.
    import torch
    saved = torch.load(ckpt, map_location='cpu', weights_only=False)
    published = tmp_path / 'published.pth'
    torch.save(dict(model=saved['state_dict']), published)
    assert all(k.startswith(('patch_embed.', 'levels.', 'conv_head.', 'head.'))
               for k in saved['state_dict'])
    out = run_tool([sys.executable, 'tools/test.py', CONFIG, str(published), '--work-dir',
                str(tmp_path / 'test_published'), '--cfg-options', *opts])
    assert re.findall(r'accuracy/top1: ([0-9.]+)', out)[-1] == printed[-1]
