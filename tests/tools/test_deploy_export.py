"""tools/deploy: ONNX export of the classifier, UperNet and Mask R-CNN, run in ONNX Runtime against
PyTorch (the compiled DCNv3 kernel), and the tools' errors on bad input."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import torch

pytest.importorskip('onnxruntime')

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from demo_helpers import save_initialised_checkpoint  # noqa: E402

from mmcv_custom.checkpoint import CheckpointMismatchError  # noqa: E402
from tools.deploy import common, export_onnx, ort_infer  # noqa: E402
from tools.deploy.common import DeployError  # noqa: E402

CLS_T = os.path.join(ROOT, 'configs', 'imagenet', 'internimage-t_8xb128_in1k-224.py')
SEG_T = os.path.join(ROOT, 'configs', 'ade20k', 'upernet_internimage-t_8xb2-160k_ade20k-512x512.py')
DET_DEMO = os.path.join(ROOT, 'configs', 'demo', 'mask-rcnn_internimage-micro_fpn_demo-coco.py')
CLS_DEMO = os.path.join(ROOT, 'configs', 'demo', 'internimage-micro_demo-imagenet-64.py')


@pytest.fixture(scope='module')
def ort_library() -> str:
    subprocess.run(['bash', os.path.join(ROOT, 'tools', 'deploy', 'build_ort_ops.sh')], check=True,
                   cwd=ROOT, timeout=900)
    from ops_dcnv3.onnx import custom_op_library
    return custom_op_library()


def _model(config: str):
    cfg, scope = common.load_config(config)
    torch.manual_seed(0)  # as export_onnx.main builds it without a checkpoint
    return common.build_model(cfg, scope)


@pytest.mark.slow
@pytest.mark.parametrize('form', ['gridsample', 'custom'])
def test_classifier_logits_match_pytorch(tmp_path, form, ort_library):
    out = str(tmp_path / 'cls.onnx')
    export_onnx.main([CLS_T, '--out', out, '--dcnv3', form, '--dynamic'])
    wrapper = common.ClsExport(_model(CLS_T)).eval()
    session = common.ort_session(out, threads=2)
    for shape in ((2, 3, 224, 224), (1, 3, 192, 256)):  # batch and size differ from the export's
        x = torch.randn(shape)
        with torch.no_grad():
            expected = wrapper(x)
        got = common.run_session(session, x)[0]
        assert got.shape == expected.shape == (shape[0], 1000)
        assert (got - expected).abs().max() < 1e-4


@pytest.mark.slow
def test_upernet_logits_match_pytorch(tmp_path):
    out = str(tmp_path / 'seg.onnx')
    export_onnx.main([SEG_T, '--out', out, '--shape', '512', '512'])
    wrapper = common.SegExport(_model(SEG_T)).eval()
    x = torch.randn(1, 3, 512, 512)
    with torch.no_grad():
        expected = wrapper(x)
    got = common.run_session(common.ort_session(out, threads=2), x)[0]
    assert got.shape == expected.shape == (1, 150, 512, 512)
    assert (got - expected).abs().max() < 1e-3
    assert (got.argmax(1) == expected.argmax(1)).float().mean() >= 0.999


_DET_LINE = re.compile(r'^\s*(\S+) ([0-9.]+)  box \(([-0-9., ]+)\)$', re.M)


def _detections(text: str) -> list[tuple[str, float, list[float]]]:
    return [(m[1], float(m[2]), [float(v) for v in m[3].split(',')])
            for m in _DET_LINE.finditer(text)]


@pytest.mark.slow
def test_mask_rcnn_runner_matches_image_demo(tmp_path, capsys):
    from tools import image_demo
    from tools.demo_data import coco

    coco.generate(str(tmp_path / 'coco'), seed=0, num_train=1, num_val=1, image_size=128)
    image = str(tmp_path / 'coco' / 'val' / '000000.png')
    ckpt = str(tmp_path / 'det.pth')
    save_initialised_checkpoint(DET_DEMO, ckpt)
    out = str(tmp_path / 'det.onnx')
    diffs = export_onnx.main([DET_DEMO, ckpt, '--out', out, '--shape', '128', '128', '--dynamic',
                              '--verify', '--image', image])
    assert max(diffs.values()) < 1e-4
    capsys.readouterr()
    image_demo.main([image, DET_DEMO, ckpt, '--device', 'cpu', '--score-thr', '0'])
    expected = _detections(capsys.readouterr().out)
    drawn = str(tmp_path / 'drawn.png')
    ort_infer.main([DET_DEMO, out, image, '--score-thr', '0', '--out-file', drawn])
    got = _detections(capsys.readouterr().out)
    assert os.path.isfile(drawn)
    assert len(expected) == len(got) == 100
    # Every detection of the PyTorch model (apart from those tied with the 100th score, which
    # float rounding may swap) is found by the runner: same label and score, box within 1 pixel.
    cutoff = min(s for _, s, _ in expected) + 2e-3
    checked = 0
    for label, score, box in expected:
        if score <= cutoff:
            continue
        assert any(lb == label and abs(sc - score) <= 1e-3
                   and max(abs(a - b) for a, b in zip(bx, box)) <= 1.0
                   for lb, sc, bx in got), (label, score, box)
        checked += 1
    assert checked >= 20


def test_config_without_model_is_refused(tmp_path):
    cfg = tmp_path / 'no_model.py'
    cfg.write_text("default_scope = 'mmpretrain'\ntrain_cfg = dict(max_epochs=1)\n")
    with pytest.raises(DeployError, match='defines no `model`'):
        export_onnx.main([str(cfg), '--out', str(tmp_path / 'x.onnx')])


def test_unsupported_opset_is_refused(tmp_path):
    with pytest.raises(DeployError, match=r'--opset 13 is not supported.*GridSample'):
        export_onnx.main([CLS_DEMO, '--out', str(tmp_path / 'x.onnx'), '--opset', '13'])
    with pytest.raises(DeployError, match='--opset 99'):
        export_onnx.main([CLS_DEMO, '--out', str(tmp_path / 'x.onnx'), '--opset', '99'])


def test_checkpoint_of_another_model_is_refused(tmp_path):
    ckpt = str(tmp_path / 'cls.pth')
    save_initialised_checkpoint(CLS_DEMO, ckpt)
    with pytest.raises(CheckpointMismatchError, match='cls.pth'):
        export_onnx.main([DET_DEMO, ckpt, '--out', str(tmp_path / 'x.onnx'), '--shape', '128',
                          '128'])
    assert not (tmp_path / 'x.onnx').exists()


def test_missing_custom_op_library_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv('DCNV3_ORT_BUILD_DIR', str(tmp_path / 'nowhere'))
    from ops_dcnv3.onnx import custom_op_library
    with pytest.raises(FileNotFoundError, match='make deploy-ortlib'):
        custom_op_library()
