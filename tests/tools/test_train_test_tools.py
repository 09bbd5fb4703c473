"""tools/train.py, tools/test.py and the torchrun launchers on the embedded detection demo.

Every run trains the real demo config (Mask R-CNN + InternImage, `configs/demo/`) for a few
iterations on a tiny synthetic split, on CPU (gloo for the distributed runs).
"""
from __future__ import annotations

import importlib
import json
import os
import os.path as osp
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DEMO_CONFIG = osp.join(ROOT, 'configs', 'demo', 'mask-rcnn_internimage-micro_fpn_demo-coco.py')
TOOLS = osp.join(ROOT, 'tools')
sys.path.insert(0, ROOT)

import mmcv_custom.safe_load  # noqa: E402,F401  torch.load of mmengine checkpoints
from tools.demo_data.coco import generate  # noqa: E402


def _env(**extra) -> dict:
    env = dict(os.environ)
    env.update(OMP_NUM_THREADS='1', PYTHON=sys.executable, PYTHONUNBUFFERED='1',
               PYTHONPATH=ROOT + os.pathsep + env.get('PYTHONPATH', ''))
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _run(cmd: list[str], timeout: int = 600, **env) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(**env), capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, (
        f'{" ".join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}')
    return proc


@pytest.fixture(scope='module')
def tiny_data(tmp_path_factory) -> str:
    """8 training and 4 validation images of the demo dataset."""
    root = str(tmp_path_factory.mktemp('demo_coco'))
    generate(root, seed=0, num_train=8, num_val=4, image_size=128)
    return root + '/'


def write_config(path, data_root: str, max_epochs: int = 2, extra: str = '') -> str:
    """The demo config on the tiny split: 2 images per batch, deterministic, no validation."""
    text = f"""
_base_ = {DEMO_CONFIG!r}
data_root = {data_root!r}
train_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))
test_dataloader = dict(batch_size=2, dataset=dict(data_root=data_root))
test_evaluator = dict(ann_file=data_root + 'annotations/instances_val.json')
train_cfg = dict(max_epochs={max_epochs})
val_cfg = None
val_dataloader = None
val_evaluator = None
param_scheduler = [dict(type='LinearLR', start_factor=0.1, by_epoch=False, begin=0, end=4)]
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1, max_keep_ckpts=-1))
randomness = dict(seed=0, deterministic=True)
""" + extra
    path = str(path)
    with open(path, 'w') as f:
        f.write(text)
    return path


def _coco_eval(ann_file: str, preds: list[dict], classes: tuple[str, ...]) -> dict:
    """pycocotools' COCOeval stats for DumpDetResults' predictions, per 'bbox' and 'segm'."""
    import contextlib
    import io

    import numpy as np
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(ann_file)
    # label i is the i-th class of the config's metainfo; its category is the one of that name
    cat_of_name = {c['name']: c['id'] for c in gt.loadCats(gt.getCatIds())}
    cat_ids = [cat_of_name[name] for name in classes]
    img_of_file = {im['file_name']: im['id'] for im in gt.loadImgs(gt.getImgIds())}
    results = {'bbox': [], 'segm': []}
    for pred in preds:
        img_id = pred['img_id']
        assert img_of_file[osp.basename(pred['img_path'])] == img_id
        inst = pred['pred_instances']
        bboxes, scores = np.asarray(inst['bboxes'], float), np.asarray(inst['scores'], float)
        labels = np.asarray(inst['labels'], int)
        # the model keeps at most 100 per image: COCO's standard maxDets=100 sees them all, as
        # CocoMetric's (100, 300, 1000) do
        assert len(scores) <= 100
        for box, score, label, mask in zip(bboxes, scores, labels, inst['masks']):
            x0, y0, x1, y1 = box.tolist()
            common = dict(image_id=img_id, category_id=cat_ids[label], score=float(score))
            results['bbox'].append(dict(common, bbox=[x0, y0, x1 - x0, y1 - y0]))
            if not isinstance(mask, dict):  # a binary array: RLE-encode it
                mask = mask_utils.encode(np.asfortranarray(np.asarray(mask, dtype=np.uint8)))
            # segm results carry no bbox: the instance area (for area ranges) is the mask's
            results['segm'].append(dict(common, segmentation=mask))
    stats = {}
    for iou_type, dets in results.items():
        assert dets, f'no {iou_type} predictions to evaluate'
        with contextlib.redirect_stdout(io.StringIO()):
            ev = COCOeval(gt, gt.loadRes(dets), iou_type)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        stats[iou_type] = ev.stats
    return stats


def _state_dict(ckpt: str) -> dict:
    return torch.load(ckpt, map_location='cpu')['state_dict']


@pytest.mark.slow
def test_dist_train_two_processes(tmp_path, tiny_data):
    cfg = write_config(tmp_path / 'cfg.py', tiny_data, max_epochs=1)
    work_dir = tmp_path / 'work'
    proc = _run(['bash', osp.join(TOOLS, 'dist_train.sh'), cfg, '2', '--work-dir', str(work_dir)],
                PORT=29621)
    log = proc.stdout + proc.stderr
    assert 'GPU number: 2' in log  # mmengine's world size
    assert 'eta:' in log  # the progress line shows an ETA
    # 8 images, 2 processes x 2 images per step: 2 iterations per epoch
    assert 'Epoch(train) [1][2/2]' in log
    assert (work_dir / 'epoch_1.pth').is_file()


@pytest.mark.slow
def test_dist_train_two_nodes(tmp_path, tiny_data):
    """NNODES=2 with two NODE_RANKs on localhost, one process each."""
    cfg = write_config(tmp_path / 'cfg.py', tiny_data, max_epochs=1)
    work_dir = tmp_path / 'work'
    cmd = ['bash', osp.join(TOOLS, 'dist_train.sh'), cfg, '1', '--work-dir', str(work_dir)]
    common = dict(NNODES=2, MASTER_ADDR='127.0.0.1', PORT=29631)
    nodes = [subprocess.Popen(cmd, cwd=ROOT, env=_env(NODE_RANK=rank, **common),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in (0, 1)]
    outputs = []
    try:
        for node in nodes:
            outputs.append(node.communicate(timeout=600)[0])
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
    for rank, (node, out) in enumerate(zip(nodes, outputs)):
        assert node.returncode == 0, f'node {rank} failed:\n{out[-6000:]}'
    assert 'GPU number: 2' in outputs[0]
    assert 'Epoch(train) [1][2/2]' in outputs[0]
    assert (work_dir / 'epoch_1.pth').is_file()


@pytest.mark.slow
def test_resume_after_kill_matches_uninterrupted_run(tmp_path, tiny_data):
    max_epochs = 3
    cfg = write_config(tmp_path / 'cfg.py', tiny_data, max_epochs=max_epochs)
    train = [sys.executable, osp.join(TOOLS, 'train.py'), cfg]

    full = tmp_path / 'full'
    _run(train + ['--work-dir', str(full)])

    part = tmp_path / 'part'
    proc = subprocess.Popen(train + ['--work-dir', str(part)], cwd=ROOT, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        # mmengine writes `last_checkpoint` once epoch_1.pth is complete
        deadline = time.time() + 600
        while not (part / 'last_checkpoint').exists():
            assert proc.poll() is None, 'training exited before its first checkpoint'
            assert time.time() < deadline, 'no checkpoint after 10 minutes'
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not (part / f'epoch_{max_epochs}.pth').exists(), \
        'the run finished before it was killed; nothing was resumed'
    # keep only the first checkpoint, as if the kill had come right after it
    for later in range(2, max_epochs + 1):
        (part / f'epoch_{later}.pth').unlink(missing_ok=True)
    (part / 'last_checkpoint').write_text(str(part / 'epoch_1.pth'))

    resumed = _run(train + ['--work-dir', str(part), '--resume'])
    assert 'resumed epoch: 1' in (resumed.stdout + resumed.stderr).lower()
    expected = _state_dict(str(full / f'epoch_{max_epochs}.pth'))
    got = _state_dict(str(part / f'epoch_{max_epochs}.pth'))
    assert expected.keys() == got.keys()
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, msg=f'{name} differs after resume')
    # and training did change the weights (the comparison above is not vacuous)
    first = _state_dict(str(part / 'epoch_1.pth'))
    assert any(not torch.equal(first[k], v) for k, v in expected.items())


@pytest.mark.slow
def test_test_tool_and_image_demo_on_a_checkpoint(tmp_path, tiny_data):
    cfg = write_config(tmp_path / 'cfg.py', tiny_data, max_epochs=1)
    work_dir = tmp_path / 'work'
    _run([sys.executable, osp.join(TOOLS, 'train.py'), cfg, '--work-dir', str(work_dir)])
    ckpt = str(work_dir / 'epoch_1.pth')

    # one epoch on 8 images hardly detects anything: keep every RoI so that there are
    # predictions to evaluate and draw
    cfg_all = write_config(tmp_path / 'cfg_all.py', tiny_data, max_epochs=1,
                           extra='model = dict(test_cfg=dict(rcnn=dict(score_thr=0.0)))\n')
    out, show_dir = tmp_path / 'preds.pkl', tmp_path / 'vis'
    proc = _run([sys.executable, osp.join(TOOLS, 'test.py'), cfg_all, ckpt,
                 '--work-dir', str(tmp_path / 'test'), '--out', str(out),
                 '--show-dir', str(show_dir)])
    log = proc.stdout + proc.stderr
    # pycocotools' summary and mmdet's CocoMetric lines for boxes and masks
    assert 'Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]' in log
    import pickle
    with open(out, 'rb') as f:
        preds = pickle.load(f)
    assert len(preds) == 4  # one entry per validation image
    assert {'bboxes', 'scores', 'labels', 'masks'} <= preds[0]['pred_instances'].keys()
    assert len(list(show_dir.glob('*.png'))) == 4
    # The printed metrics are COCO's on the dumped predictions: evaluate them with pycocotools
    # directly, as the COCO result format prescribes, and compare with what the tool printed.
    ann_file = osp.join(tiny_data, 'annotations', 'instances_val.json')
    expected = _coco_eval(ann_file, preds, ('circle', 'triangle', 'square'))
    for iou_type, stats in expected.items():
        for i, name in enumerate(('mAP', 'mAP_50', 'mAP_75', 'mAP_s', 'mAP_m', 'mAP_l')):
            printed = re.findall(rf'coco/{iou_type}_{name}: (-?[0-9.]+)', log)
            assert printed, f'coco/{iou_type}_{name} not printed'
            # CocoMetric rounds to 3 decimals
            assert float(printed[-1]) == pytest.approx(stats[i], abs=5e-4 + 1e-9), \
                (iou_type, name, printed[-1], stats[i])

    image = osp.join(tiny_data, 'val', '000000.png')
    drawn = tmp_path / 'drawn.png'
    proc = _run([sys.executable, osp.join(TOOLS, 'image_demo.py'), image, cfg_all, ckpt,
                 '--out-file', str(drawn), '--score-thr', '0'])
    assert '100 detections above 0.0' in proc.stdout
    import cv2
    original, result = cv2.imread(image), cv2.imread(str(drawn))
    assert result.shape == original.shape
    assert (result != original).any()  # boxes and masks were drawn


def _broken_copy(tmp_path, tiny_data) -> str:
    root = tmp_path / 'broken'
    shutil.copytree(tiny_data, root)
    return str(root) + '/'


def _tool_error(cfg: str, tool: str = 'train') -> str:
    """Run tools/<tool>.py's main in this process; return the error it stops with."""
    main = importlib.import_module(f'tools.{tool}').main
    argv = [cfg] + (['missing.pth'] if tool == 'test' else [])
    with pytest.raises((FileNotFoundError, ValueError)) as info:
        main(argv + ['--work-dir', osp.join(osp.dirname(cfg), 'work')])
    return f'{info.type.__name__}: {info.value}'


def test_missing_image_is_named(tmp_path, tiny_data):
    root = _broken_copy(tmp_path, tiny_data)
    os.remove(osp.join(root, 'train', '000003.png'))
    err = _tool_error(write_config(tmp_path / 'cfg.py', root))
    assert 'FileNotFoundError' in err
    assert osp.join(root, 'train', '000003.png') in err
    assert 'instances_train.json' in err


@pytest.mark.parametrize('corrupt, message', [
    (lambda coco: coco['annotations'][0].update(bbox=[1, 2, 3]), 'bbox must be [x, y, w, h]'),
    (lambda coco: coco['annotations'][1].update(image_id=999), 'image_id 999'),
    (lambda coco: coco['annotations'][0].update(segmentation=[[1, 2, 3, 4]]), 'polygons'),
    (lambda coco: coco.pop('categories'), "'categories' must be a list"),
])
def test_malformed_annotation_is_named(tmp_path, tiny_data, corrupt, message):
    root = _broken_copy(tmp_path, tiny_data)
    ann_file = osp.join(root, 'annotations', 'instances_val.json')
    with open(ann_file) as f:
        coco = json.load(f)
    corrupt(coco)
    with open(ann_file, 'w') as f:
        json.dump(coco, f)
    cfg = write_config(tmp_path / 'cfg.py', root)
    err = _tool_error(cfg, tool='test')
    assert f'malformed annotation file {ann_file}' in err
    assert message in err


def test_truncated_json_is_named(tmp_path, tiny_data):
    root = _broken_copy(tmp_path, tiny_data)
    ann_file = osp.join(root, 'annotations', 'instances_train.json')
    with open(ann_file) as f:
        text = f.read()
    with open(ann_file, 'w') as f:
        f.write(text[: len(text) // 2])
    err = _tool_error(write_config(tmp_path / 'cfg.py', root))
    assert f'malformed annotation file {ann_file}: not valid JSON' in err


@pytest.mark.parametrize('split, emptied, message', [
    ('train', ('images', 'annotations'), 'it has 0 images and 0 annotations: a dataset needs images'),
    ('train', ('annotations',), 'annotations: training needs annotated images'),
    ('val', ('images', 'annotations'), 'it has 0 images and 0 annotations'),
])
def test_empty_annotation_file_is_named(tmp_path, tiny_data, split, emptied, message):
    # mmdet would stop later with "need at least one array to concatenate".
    root = _broken_copy(tmp_path, tiny_data)
    ann_file = osp.join(root, 'annotations', f'instances_{split}.json')
    with open(ann_file) as f:
        coco = json.load(f)
    for key in emptied:
        coco[key] = []
    with open(ann_file, 'w') as f:
        json.dump(coco, f)
    err = _tool_error(write_config(tmp_path / 'cfg.py', root))
    assert f'malformed annotation file {ann_file}' in err and message in err
