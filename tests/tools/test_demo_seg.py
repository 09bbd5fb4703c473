"""The segmentation demo: deterministic ADE20K-layout data that the demo config reads, and a short
training through tools/dist_train.sh whose checkpoint tools/test.py evaluates with mmseg's IoUMetric."""
from __future__ import annotations

import glob
import os
import re
import sys

import cv2
import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
CONFIG = os.path.join(ROOT, 'configs', 'demo', 'upernet_internimage-micro_demo-ade20k-128x128.py')

from demo_helpers import demo_cfg_options, free_port, read_tree, run_tool  # noqa: E402

from tools.demo_data import ade20k  # noqa: E402


def test_generate_is_deterministic_and_ade20k_shaped(tmp_path):
    a, b, c = tmp_path / 'a', tmp_path / 'b', tmp_path / 'c'
    info = ade20k.generate(str(a), seed=3, num_train=5, num_val=2, size=64)
    ade20k.generate(str(b), seed=3, num_train=5, num_val=2, size=64)
    ade20k.generate(str(c), seed=4, num_train=5, num_val=2, size=64)
    fa = read_tree(str(a))
    assert fa == read_tree(str(b))
    assert fa != read_tree(str(c))
    assert info['training'] == 5 and info['validation'] == 2
    for split, n in (('training', 5), ('validation', 2)):
        images = sorted(glob.glob(str(a / 'images' / split / '*.jpg')))
        labels = sorted(glob.glob(str(a / 'annotations' / split / '*.png')))
        assert len(images) == len(labels) == n
        for img_path, label_path in zip(images, labels):
            assert os.path.basename(img_path)[:-4] == os.path.basename(label_path)[:-4]
            label = cv2.imread(label_path, cv2.IMREAD_UNCHANGED)
            assert label.shape == (64, 64) and label.dtype == np.uint8
            values = set(np.unique(label).tolist())
            # 0 = unlabelled outline band, 1 = background, 2.. = shapes.
            assert values <= set(range(len(ade20k.CLASSES) + 1))
            assert {0, 1} <= values and max(values) >= 2




def test_demo_config_reads_generated_data_with_ignore_index(tmp_path):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS

    import mmseg_custom  # noqa: F401

    ade20k.generate(str(tmp_path), num_train=3, num_val=2)
    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict(dict(x.split('=') for x in demo_cfg_options(str(tmp_path))))
    init_default_scope('mmseg')
    train = DATASETS.build(cfg.train_dataloader.dataset)
    val = DATASETS.build(cfg.test_dataloader.dataset)
    assert len(train) == 3 and len(val) == 2
    assert train.metainfo['classes'] == ade20k.CLASSES
    sample = val[0]['data_samples']
    gt = sample.gt_sem_seg.data.numpy()
    raw = cv2.imread(sample.seg_map_path, cv2.IMREAD_UNCHANGED)
    # reduce_zero_label: PNG 0 -> 255 (ignored), v -> v - 1.
    np.testing.assert_array_equal(gt[0], np.where(raw == 0, 255, raw.astype(int) - 1))


def test_demo_data_with_out_of_range_label_fails_naming_the_file(tmp_path):
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS

    import mmseg_custom  # noqa: F401

    ade20k.generate(str(tmp_path), num_train=2, num_val=1)
    bad = tmp_path / 'annotations' / 'training' / 'demo_000001.png'
    label = cv2.imread(str(bad), cv2.IMREAD_UNCHANGED)
    label[5, 5] = len(ade20k.CLASSES) + 1  # one past the last class
    cv2.imwrite(str(bad), label)
    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict(dict(x.split('=') for x in demo_cfg_options(str(tmp_path))))
    init_default_scope('mmseg')
    train = DATASETS.build(cfg.train_dataloader.dataset)
    train[0]
    with pytest.raises(ValueError, match=r'demo_000001\.png.*outside the class range'):
        train[1]






def _miou_fromread_tree(pred_dir: str, gt_dir: str, num_classes: int) -> float:
    """mIoU (%) over the classes present in ground truth or prediction, ignoring PNG value 0."""
    inter = np.zeros(num_classes)
    union = np.zeros(num_classes)
    gt_files = sorted(glob.glob(os.path.join(gt_dir, '*.png')))
    assert gt_files
    for gt_path in gt_files:
        gt = cv2.imread(gt_path, cv2.IMREAD_UNCHANGED).astype(int) - 1
        pred = cv2.imread(os.path.join(pred_dir, os.path.basename(gt_path)),
                          cv2.IMREAD_UNCHANGED).astype(int) - 1  # written as class + 1
        valid = gt >= 0
        for c in range(num_classes):
            p, g = (pred == c) & valid, (gt == c) & valid
            inter[c] += (p & g).sum()
            union[c] += (p | g).sum()
    # IoUMetric gives NaN to classes absent from ground truth and prediction and skips them.
    with np.errstate(invalid='ignore', divide='ignore'):
        iou = inter / union
    return float(np.nanmean(iou) * 100)


@pytest.mark.slow
def test_demo_trains_with_dist_train_and_test_prints_iou_metric(tmp_path):
    data = tmp_path / 'data'
    ade20k.generate(str(data), num_train=8, num_val=3)
    work = tmp_path / 'work'
    opts = demo_cfg_options(str(data))
    run_tool(['bash', 'tools/dist_train.sh', CONFIG, '1', '--work-dir', str(work), '--cfg-options',
          *opts, 'train_cfg.max_iters=3', 'train_cfg.val_interval=3',
          'default_hooks.checkpoint.interval=3'], PORT=str(free_port()))
    ckpt = work / 'iter_3.pth'
    assert ckpt.is_file()

    preds = tmp_path / 'preds'
    out = run_tool([sys.executable, 'tools/test.py', CONFIG, str(ckpt), '--work-dir',
                str(tmp_path / 'test'), '--out', str(preds), '--cfg-options', *opts])
    printed = re.findall(r'mIoU: ([0-9.]+)', out)
    assert printed, out[-3000:]
    # The printed mIoU is IoUMetric's on the predictions the model made (dumped as PNGs).
    expected = _miou_fromread_tree(str(preds), str(data / 'annotations' / 'validation'),
                                len(ade20k.CLASSES))
    assert float(printed[-1]) == pytest.approx(expected, abs=0.006)
    assert 'background' in out and 'cross' in out  # the per-class table

    # Multi-scale + flip testing runs through the config's tta_model / tta_pipeline; its mIoU,
    # too, is the one of the merged predictions it dumps, recomputed from the label maps.
    tta_preds = tmp_path / 'tta_preds'
    out = run_tool([sys.executable, 'tools/test.py', CONFIG, str(ckpt), '--tta', '--work-dir',
                str(tmp_path / 'tta'), '--out', str(tta_preds), '--cfg-options', *opts])
    tta = re.findall(r'mIoU: ([0-9.]+)', out)
    assert tta, out[-3000:]
    assert len(glob.glob(str(tta_preds / '*.png'))) == 3  # one merged map per validation image
    expected = _miou_fromread_tree(str(tta_preds), str(data / 'annotations' / 'validation'),
                                len(ade20k.CLASSES))
    assert float(tta[-1]) == pytest.approx(expected, abs=0.006)
