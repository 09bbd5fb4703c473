"""Smoke tests: the whole OpenMMLab stack imports and mmcv's compiled ops run on this machine."""
import importlib

import pytest
import torch


@pytest.mark.parametrize('module', [
    'mmcv.ops', 'mmdet.models', 'mmseg.models', 'mmpretrain.models', 'ops_dcnv3',
    'mmcv_custom', 'mmdet_custom', 'mmseg_custom', 'mmpretrain_custom',
])
def test_stack_imports(module):
    importlib.import_module(module)


def test_mmcv_compiled_ops_present():
    import mmcv
    from mmcv.utils import ext_loader

    assert mmcv.__version__ == '2.1.0'
    # load_ext asserts that each named function is in the extension; test_mmcv_nms_cpu and
    # test_mmcv_roi_align_cpu_matches_torchvision check what they compute.
    ext_loader.load_ext('_ext', ['nms', 'roi_align_forward'])


def test_mmcv_nms_cpu():
    from mmcv.ops import nms

    boxes = torch.tensor([[0., 0., 10., 10.], [1., 1., 11., 11.], [50., 50., 60., 60.],
                          [0., 0., 10., 9.]])
    scores = torch.tensor([0.9, 0.8, 0.7, 0.95])
    dets, keep = nms(boxes, scores, iou_threshold=0.5)
    # box 3 has the top score and overlaps boxes 0 and 1; box 2 stands alone
    assert keep.tolist() == [3, 2]
    torch.testing.assert_close(dets[:, 4], torch.tensor([0.95, 0.7]))


def test_mmcv_roi_align_cpu_matches_torchvision():
    from mmcv.ops import RoIAlign
    from torchvision.ops import roi_align

    torch.manual_seed(0)
    feats = torch.randn(2, 4, 16, 20, dtype=torch.float64)
    rois = torch.tensor([[0, 1.5, 2.0, 10.3, 12.7], [1, 0.0, 0.0, 19.0, 15.0],
                         [1, 5.2, 3.3, 6.1, 4.4]], dtype=torch.float64)
    ours = RoIAlign((5, 5), spatial_scale=0.5, sampling_ratio=2, aligned=True)(feats, rois)
    ref = roi_align(feats, rois, (5, 5), spatial_scale=0.5, sampling_ratio=2, aligned=True)
    assert ours.shape == (3, 4, 5, 5)
    torch.testing.assert_close(ours, ref)
