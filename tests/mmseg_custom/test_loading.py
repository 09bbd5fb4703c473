"""LoadCheckedAnnotations: mmseg's loader plus a range check, and harmless where the upstream
inference pipelines run a config's test pipeline on an image alone."""
from __future__ import annotations

import os.path as osp

import cv2
import numpy as np
import pytest
from mmengine.config import Config
from mmengine.dataset import Compose
from mmengine.registry import DefaultScope

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
ADE20K = osp.join(ROOT, 'configs', 'ade20k', 'upernet_internimage-t_8xb2-160k_ade20k-512x512.py')


@pytest.fixture
def image(tmp_path) -> str:
    path = str(tmp_path / 'image.jpg')
    cv2.imwrite(path, np.random.default_rng(0).integers(0, 256, (60, 80, 3), dtype=np.uint8))
    return path


def test_an_image_without_label_map_passes_through(image):
    from mmseg_custom.datasets import LoadCheckedAnnotations

    sample = dict(img_path=image, seg_fields=[])
    assert LoadCheckedAnnotations(num_classes=150)(dict(sample)) == sample
    assert LoadCheckedAnnotations(num_classes=150)(dict(sample, seg_map_path=None)) == \
        dict(sample, seg_map_path=None)


def test_the_configs_test_pipeline_runs_as_mmseg_inference_runs_it(image):
    """``mmseg.apis.inference_model`` and ``MMSegInferencer`` drop only ``LoadAnnotations``."""
    cfg = Config.fromfile(ADE20K)  # imports mmseg_custom
    pipeline = [t for t in cfg.test_pipeline if t['type'] != 'LoadAnnotations']
    assert any(t['type'] == 'LoadCheckedAnnotations' for t in pipeline)  # kept, and harmless
    with DefaultScope.overwrite_default_scope('mmseg'):
        data = Compose(pipeline)(dict(img_path=image))
    assert tuple(data['inputs'].shape[1:]) == (512, 704)  # test scale, then a multiple of 32
    assert 'gt_sem_seg' not in data['data_samples']


def test_a_label_map_is_loaded_by_mmseg_after_the_check(tmp_path):
    """Same map as mmseg's own loader (reduce_zero_label and label_map included)."""
    from mmseg.datasets.transforms import LoadAnnotations

    from mmseg_custom.datasets import LoadCheckedAnnotations

    label = np.random.default_rng(1).integers(0, 6, (17, 23), dtype=np.uint8)
    path = str(tmp_path / 'label.png')
    cv2.imwrite(path, label)
    sample = dict(seg_map_path=path, reduce_zero_label=True, label_map={2: 4, 4: 2})
    ours = LoadCheckedAnnotations(num_classes=5)(dict(sample, seg_fields=[]))
    ref = LoadAnnotations()(dict(sample, seg_fields=[]))
    np.testing.assert_array_equal(ours['gt_seg_map'], ref['gt_seg_map'])
    assert ours['seg_fields'] == ['gt_seg_map']
    label[0, 0] = 6  # one past the range with reduce_zero_label (classes 0..4 are stored 1..5)
    cv2.imwrite(path, label)
    with pytest.raises(ValueError, match=r"label\.png' has values \[6\] outside the class range"):
        LoadCheckedAnnotations(num_classes=5)(dict(sample, seg_fields=[]))
