"""Sharded training (configs/_base_/runtime_fsdp.py) against DDP, in 2 CPU processes with gloo.

A narrow InternImage classifier (the classification demo) with the ImageNet fine-tuning
ingredients of the H/G recipes: layer-wise lr decay (classification rule), gradient clipping that
is active, with_cp, EMA. One epoch is one iteration (16 images, 2 processes x 8).
"""
from __future__ import annotations

import json
import os
import os.path as osp
import signal
import subprocess
import sys
import time

import pytest
import torch

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)
DEMO = osp.join(ROOT, 'configs', 'demo', 'internimage-micro_demo-imagenet-64.py')
FSDP_RUNTIME = osp.join(ROOT, 'configs', '_base_', 'runtime_fsdp.py')
TOOLS = osp.join(ROOT, 'tools')

from demo_helpers import free_port  # noqa: E402

import mmcv_custom.safe_load  # noqa: E402,F401  torch.load of mmengine checkpoints
from tools.demo_data import imagenet  # noqa: E402

MAX_NORM = 0.5  # below the demo's gradient norm (about 1.7): clipping acts on every step


def _config(path, data_root: str, fsdp: bool) -> str:
    bases = [DEMO, FSDP_RUNTIME] if fsdp else [DEMO]
    text = f"""
_base_ = {bases!r}
data_root = {data_root!r}
model = dict(backbone=dict(with_cp=True))
train_dataloader = dict(batch_size=8, dataset=dict(data_root=data_root))
test_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = None
val_cfg = None
val_evaluator = None
train_cfg = dict(max_epochs=2, val_interval=100)
optim_wrapper = dict(
    clip_grad=dict(max_norm={MAX_NORM}),
    constructor='CustomLayerDecayOptimizerConstructor',
    paramwise_cfg=dict(_delete_=True, mode='classification', layer_decay_rate=0.9,
                       dcn_lr_mul=0.1, depths=[1, 1, 2, 1]))
default_hooks = dict(logger=dict(interval=1), checkpoint=dict(interval=1, max_keep_ckpts=-1))
log_processor = dict(window_size=1)
randomness = dict(seed=0, deterministic=True)
"""
    with open(path, 'w') as f:
        f.write(text)
    return str(path)


def _env() -> dict:
    return {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHON': sys.executable,
            'PORT': str(free_port()), 'PYTHONUNBUFFERED': '1'}


def _dist_train(cfg: str, work_dir, *extra) -> list[str]:
    return ['bash', osp.join(TOOLS, 'dist_train.sh'), cfg, '2', '--work-dir', str(work_dir),
            *extra]


def _run(cmd: list[str]) -> str:
    proc = subprocess.run(cmd, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    return out


def _kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and all its descendants (torchrun starts its workers in new sessions)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir('/proc'):
        if entry.isdigit():
            try:
                with open(f'/proc/{entry}/stat') as f:
                    ppid = int(f.read().rsplit(')', 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    todo, tree = [pid], []
    while todo:
        p = todo.pop()
        tree.append(p)
        todo.extend(children.get(p, []))
    for p in tree:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _scalars(work_dir) -> dict[int, dict]:
    """Per-iteration training scalars (full precision) from mmengine's vis_data logs."""
    rows = {}
    for path in sorted(work_dir.glob('*/vis_data/scalars.json')):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if 'loss' in row:
                rows[row['step']] = row
    return rows


def _noise_gradient_params(checkpoint: dict) -> set[str]:
    """State-dict names (published keys) of parameters whose gradient is rounding noise.

    The loss does not depend on ``levels.3.norm``'s bias: the head's BatchNorm removes any
    per-channel shift. Its gradient is float noise (|g| ~ 1e-11), which differs in the last bits
    between DDP and FSDP (another memory layout of the same sums), and AdamW turns noise of any
    size into steps of about lr. Parameters with |g| < 1e-9 on every step (also the DCN
    depth-wise convs, whose gradient is zero while the zero-initialised offsets and masks are
    still near zero) are left out of the trained-weight and AdamW comparisons; the EMA weights and
    everything else must agree to float32 rounding.
    """
    groups = checkpoint['optimizer']['param_groups']
    out = set()
    for group in groups:
        for name, index in zip(group['param_names'], group['params']):
            state = checkpoint['optimizer']['state'][index]
            if float(state['exp_avg_sq'].max()) < 1e-18:  # |g| < 1e-9 on every step
                out.add(name[len('backbone.'):] if name.startswith('backbone.') else name)
    return out


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    """A DDP run, and an FSDP run killed after its first checkpoint then resumed."""
    tmp = tmp_path_factory.mktemp('fsdp')
    data = tmp / 'data'
    imagenet.generate(str(data), num_train_per_class=4, num_val_per_class=1)
    ddp_cfg = _config(tmp / 'ddp.py', str(data), fsdp=False)
    fsdp_cfg = _config(tmp / 'fsdp.py', str(data), fsdp=True)

    ddp = tmp / 'ddp'
    _run(_dist_train(ddp_cfg, ddp))

    fsdp = tmp / 'fsdp'
    proc = subprocess.Popen(_dist_train(fsdp_cfg, fsdp), cwd=ROOT, env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 600
        while not (fsdp / 'last_checkpoint').exists():
            assert proc.poll() is None, 'FSDP training exited before its first checkpoint'
            assert time.time() < deadline, 'no checkpoint after 10 minutes'
            time.sleep(0.05)
        _kill_tree(proc.pid)
    finally:
        if proc.poll() is None:
            _kill_tree(proc.pid)
        proc.wait()
    # as if the kill had come right after the first checkpoint
    (fsdp / 'epoch_2.pth').unlink(missing_ok=True)
    (fsdp / 'last_checkpoint').write_text(str(fsdp / 'epoch_1.pth'))
    first = _scalars(fsdp)
    resumed_log = _run(_dist_train(fsdp_cfg, fsdp, '--resume'))
    return dict(tmp=tmp, data=data, ddp=ddp, fsdp=fsdp, ddp_cfg=ddp_cfg,
                first=first, resumed_log=resumed_log)


@pytest.mark.slow
def test_fsdp_resumed_run_equals_ddp(runs):
    ddp, fsdp = runs['ddp'], runs['fsdp']
    assert 'FlexibleRunner' in (fsdp / 'fsdp.py').read_text()  # the dumped config
    assert 'resumed epoch: 1, iter: 1' in runs['resumed_log'], runs['resumed_log'][-3000:]
    # losses of every iteration (the first from the killed run, the second after --resume)
    want = _scalars(ddp)
    got = {**runs['first'], **_scalars(fsdp)}
    assert sorted(want) == sorted(got) == [1, 2]
    for step in (1, 2):
        assert got[step]['loss'] == pytest.approx(want[step]['loss'], abs=1e-5)
        # the same global gradient norm, clipped: FSDP clips over all shards, not per rank
        assert got[step]['grad_norm'] == pytest.approx(want[step]['grad_norm'], rel=1e-5)
        assert want[step]['grad_norm'] > MAX_NORM

    a = torch.load(ddp / 'epoch_2.pth', map_location='cpu')
    b = torch.load(fsdp / 'epoch_2.pth', map_location='cpu')
    noise = _noise_gradient_params(a)
    for key in ('state_dict', 'ema_state_dict'):  # EMA weights, and the trained ones
        assert a[key].keys() == b[key].keys()
        for name, value in a[key].items():
            if key == 'ema_state_dict' and name[len('module.'):] in noise:
                continue
            torch.testing.assert_close(b[key][name], value, msg=f'{key} {name}')
    assert 'patch_embed.conv1.weight' in b['state_dict']  # published keys, as with DDP

    # the layer-decay groups (built on the unsharded shapes) and the AdamW states per parameter
    names = [n for g in a['optimizer']['param_groups'] for n in g['param_names']]
    ids = [i for g in a['optimizer']['param_groups'] for i in g['params']]
    ddp_group = {n: (g['lr'], g['weight_decay'])
                 for g in a['optimizer']['param_groups'] for n in g['param_names']}
    fsdp_group = {n: (g['lr'], g['weight_decay'])
                  for g in b['optimizer']['param_groups'] for n in g['params']}
    assert fsdp_group == ddp_group
    assert ddp_group['backbone.levels.0.blocks.0.mlp.fc1.weight'][1] == 0.05  # 2-D: decayed
    assert ddp_group['backbone.levels.0.blocks.0.mlp.fc1.bias'][1] == 0.0
    for name, index in zip(names, ids):
        if name[len('backbone.'):] in noise:
            continue
        for stat, value in a['optimizer']['state'][index].items():
            torch.testing.assert_close(b['optimizer']['state'][name][stat], value,
                                       msg=f'{name} {stat}')


@pytest.mark.slow
def test_converted_file_equals_ddp_weights_and_tools_test_reads_it(runs):
    from tools.model_converters.sharded_to_published import convert

    ddp = torch.load(runs['ddp'] / 'epoch_2.pth', map_location='cpu')
    out = {}
    for weights in ('ema', 'trained'):
        out[weights] = runs['tmp'] / f'published_{weights}.pth'
        assert convert(str(runs['fsdp'] / 'epoch_2.pth'), str(out[weights]), weights) == 133
    ema = torch.load(out['ema'], map_location='cpu')
    trained = torch.load(out['trained'], map_location='cpu')
    assert set(ema) == {'model', 'meta'}
    noise = _noise_gradient_params(ddp)
    assert len(noise) < len(ddp['state_dict']) / 4, noise  # the comparison covers most weights
    for name, value in ddp['state_dict'].items():
        torch.testing.assert_close(ema['model'][name], value, msg=name)
        if name not in noise:
            torch.testing.assert_close(trained['model'][name],
                                       ddp['ema_state_dict'][f'module.{name}'], msg=name)
    assert any(not torch.equal(ema['model'][k], trained['model'][k]) for k in ema['model'])

    log = _run([sys.executable, osp.join(TOOLS, 'test.py'), runs['ddp_cfg'], str(out['ema']),
                '--work-dir', str(runs['tmp'] / 'test')])
    assert 'accuracy/top1:' in log
