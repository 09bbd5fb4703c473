"""tools/test.py and tools/image_demo.py refuse a checkpoint of another model, and a file that is
not a checkpoint at all, instead of running the detector with random weights."""
from __future__ import annotations

import os.path as osp
import re
import subprocess
import sys
import traceback

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

from demo_helpers import save_initialised_checkpoint  # noqa: E402  demo model saved as mmengine does
from test_image_demo import CLS  # noqa: E402
from test_train_test_tools import DEMO_CONFIG, TOOLS, _env, write_config  # noqa: E402

from tools.demo_data.coco import generate  # noqa: E402
from tools.demo_data.common import make_rng, textured_background, write_image  # noqa: E402


@pytest.fixture(scope='module')
def data_root(tmp_path_factory) -> str:
    """Two training and two validation images of the demo dataset."""
    root = str(tmp_path_factory.mktemp('demo_coco'))
    generate(root, seed=0, num_train=2, num_val=2, image_size=128)
    return root + '/'


@pytest.fixture(scope='module')
def cls_checkpoint(tmp_path_factory) -> str:
    """The demo classification model (InternImage micro + head), saved like mmengine does."""
    path = str(tmp_path_factory.mktemp('ckpt') / 'classifier.pth')
    save_initialised_checkpoint(CLS, path)
    return path


@pytest.fixture
def not_a_checkpoint(tmp_path) -> str:
    """Random bytes named like a checkpoint: torch's own error would advise weights_only=False."""
    path = tmp_path / 'x.pth'
    path.write_bytes(bytes(make_rng(1).integers(0, 256, 4096, dtype='uint8')))
    return str(path)


def _failed_run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, f'{" ".join(cmd)} succeeded:\n{out[-4000:]}'
    return out


def _assert_names_the_mismatch(out: str, ckpt: str) -> None:
    assert 'CheckpointMismatchError' in out, out[-4000:]
    assert ckpt in out
    assert re.search(r'\b0 of \d+ tensors', out), out[-4000:]
    assert 'classification checkpoint' in out  # the likely cause
    assert "init_cfg=dict(type='Pretrained'" in out  # and what to do with such a file


def test_test_tool_refuses_a_classification_checkpoint(tmp_path, data_root, cls_checkpoint):
    cfg = write_config(tmp_path / 'cfg.py', data_root, max_epochs=1)
    out = _failed_run([sys.executable, osp.join(TOOLS, 'test.py'), cfg, cls_checkpoint,
                       '--work-dir', str(tmp_path / 'work')])
    _assert_names_the_mismatch(out, cls_checkpoint)
    assert 'coco/bbox_mAP' not in out  # nothing was evaluated


def test_image_demo_refuses_a_classification_checkpoint(tmp_path, cls_checkpoint):
    image = str(tmp_path / 'input.png')
    write_image(image, textured_background(make_rng(0), 96, 128))
    out = _failed_run([sys.executable, osp.join(TOOLS, 'image_demo.py'), image, DEMO_CONFIG,
                       cls_checkpoint, '--device', 'cpu', '--out-file', str(tmp_path / 'o.png')])
    _assert_names_the_mismatch(out, cls_checkpoint)
    assert 'detections above' not in out
    assert not (tmp_path / 'o.png').exists()


def _assert_not_readable(info: pytest.ExceptionInfo, path: str) -> None:
    text = ''.join(traceback.format_exception(info.type, info.value, info.tb))
    assert f'{path} is not a readable checkpoint' in str(info.value)
    # the whole traceback, chained errors included, never suggests switching the check off
    assert 'weights_only' not in text


def test_image_demo_names_a_file_that_is_not_a_checkpoint(tmp_path, not_a_checkpoint):
    from tools import image_demo
    image = str(tmp_path / 'input.png')
    write_image(image, textured_background(make_rng(0), 96, 128))
    with pytest.raises(ValueError) as info:
        image_demo.main([image, DEMO_CONFIG, not_a_checkpoint, '--device', 'cpu'])
    _assert_not_readable(info, not_a_checkpoint)


def test_test_tool_names_a_file_that_is_not_a_checkpoint(tmp_path, data_root, not_a_checkpoint):
    from tools import test as test_tool
    cfg = write_config(tmp_path / 'cfg.py', data_root, max_epochs=1)
    with pytest.raises(ValueError) as info:
        test_tool.main([cfg, not_a_checkpoint, '--work-dir', str(tmp_path / 'work')])
    _assert_not_readable(info, not_a_checkpoint)
