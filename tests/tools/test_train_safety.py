"""tools/train.py's safety nets: atomic checkpoints, the work-dir lock, the resume check.

The training runs reuse the tiny detection demo of ``test_train_test_tools`` (its config writer,
data fixture and runner), a few iterations each on CPU.
"""
from __future__ import annotations

import json
import os
import os.path as osp
import signal
import socket
import subprocess
import sys

import pytest
import test_train_test_tools as base  # tests/tools is on sys.path, as for demo_helpers
import torch

ROOT = base.ROOT
TRAIN = [sys.executable, osp.join(base.TOOLS, 'train.py')]
CLS_CONFIG = osp.join(ROOT, 'configs', 'demo', 'internimage-micro_demo-imagenet-64.py')
# The lock file's name and format are part of the documented behaviour (README, "Checkpoint
# guarantees"); the tests write it by hand to simulate other runs.
LOCK = 'train.lock'
MAX_KEEP_1 = ['--cfg-options', 'default_hooks.checkpoint.max_keep_ckpts=1']

tiny_data = base.tiny_data  # the module-scoped fixture: 8 training and 4 validation images

# Fault injection for the child process only (never imported by the product): mmengine writes
# every checkpoint through LocalBackend.put; the N-th one that carries an epoch checkpoint is
# written halfway, synced, and the process is SIGKILLed, as by the OOM killer or a preemption.
KILL_SHIM = '''
import os
import signal

from mmengine.fileio.backends.local_backend import LocalBackend

_put = LocalBackend.put
_seen = []


def _put_then_die(self, obj, filepath):
    if 'epoch_' in os.path.basename(str(filepath)):
        _seen.append(filepath)
        if len(_seen) == int(os.environ['KILL_AT_CHECKPOINT']):
            with open(filepath, 'wb') as f:
                f.write(obj[: len(obj) // 2])
                f.flush()
                os.fsync(f.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
    return _put(self, obj, filepath)


LocalBackend.put = _put_then_die
'''


def _output(proc: subprocess.CompletedProcess) -> str:
    return proc.stdout + proc.stderr


def _train(args: list[str], **env) -> subprocess.CompletedProcess:
    """tools/train.py ARGS, whatever its exit status."""
    return subprocess.run(TRAIN + args, cwd=ROOT, env=base._env(**env), capture_output=True,
                          text=True, timeout=600)


def _write_lock(work_dir, pid: int) -> str:
    os.makedirs(work_dir, exist_ok=True)
    path = osp.join(work_dir, LOCK)
    with open(path, 'w') as f:
        json.dump(dict(pid=pid, host=socket.gethostname()), f)
    return path


# --------------------------------------------------------------------------- A: atomic saving

@pytest.mark.slow
def test_kill_while_saving_a_checkpoint_keeps_the_previous_one(tmp_path, tiny_data):
    cfg = base.write_config(tmp_path / 'cfg.py', tiny_data, max_epochs=2)
    full, part = tmp_path / 'full', tmp_path / 'part'
    base._run(TRAIN + [cfg, '--work-dir', str(full)] + MAX_KEEP_1)

    shim = tmp_path / 'shim'
    shim.mkdir()
    (shim / 'sitecustomize.py').write_text(KILL_SHIM)
    crashed = _train([cfg, '--work-dir', str(part)] + MAX_KEEP_1, KILL_AT_CHECKPOINT=2,
                     PYTHONPATH=f'{shim}{os.pathsep}{ROOT}')
    assert crashed.returncode == -signal.SIGKILL, _output(crashed)[-4000:]
    assert 'Saving checkpoint at 2 epochs' in _output(crashed)

    # What survives the kill is the complete epoch-1 checkpoint, and last_checkpoint names it.
    last = (part / 'last_checkpoint').read_text().strip()
    assert osp.isfile(last), f'last_checkpoint names {last}, which does not exist'
    assert osp.basename(last) == 'epoch_1.pth'
    assert not (part / 'epoch_2.pth').exists(), 'a half-written checkpoint has the final name'
    base._state_dict(last)  # loads

    resumed = base._run(TRAIN + [cfg, '--work-dir', str(part), '--resume'] + MAX_KEEP_1)
    log = _output(resumed).lower()
    assert 'resumed epoch: 1' in log
    assert 'stale' in log  # the killed run's work-dir lock was taken over
    expected = base._state_dict(str(full / 'epoch_2.pth'))
    got = base._state_dict(str(part / 'epoch_2.pth'))
    assert expected.keys() == got.keys()
    for name, value in expected.items():
        assert torch.equal(got[name], value), f'{name} differs after resume'
    # max_keep_ckpts=1 still holds once the new checkpoint is in place, and no partial file is left
    assert sorted(p.name for p in part.glob('*.pth')) == ['epoch_2.pth']
    assert not [p.name for p in part.iterdir() if p.name.endswith('.partial')]
    assert (part / 'last_checkpoint').read_text().strip() == str(part / 'epoch_2.pth')


# --------------------------------------------------------------------------- B: work-dir lock

def test_second_run_into_a_locked_work_dir_stops(tmp_path, tiny_data):
    cfg = base.write_config(tmp_path / 'cfg.py', tiny_data, max_epochs=1)
    work = tmp_path / 'work'
    holder = subprocess.Popen(['sleep', '600'])
    try:
        lock = _write_lock(work, holder.pid)
        proc = _train([cfg, '--work-dir', str(work)])
    finally:
        holder.kill()
        holder.wait()
    out = _output(proc)
    assert proc.returncode != 0
    message = out.strip().splitlines()[-1]
    assert str(work) in message and f'pid {holder.pid}' in message, out[-3000:]
    # it stopped before touching the work dir: no logs, no config dump, the holder's lock intact
    assert os.listdir(work) == [LOCK]
    assert json.loads(open(lock).read())['pid'] == holder.pid


@pytest.mark.slow
def test_stale_lock_is_taken_over_and_released(tmp_path, tiny_data):
    cfg = base.write_config(tmp_path / 'cfg.py', tiny_data, max_epochs=1)
    work = tmp_path / 'work'
    gone = subprocess.Popen(['true'])
    gone.wait()  # reaped: its pid is free
    _write_lock(work, gone.pid)
    proc = base._run(TRAIN + [cfg, '--work-dir', str(work)])
    out = _output(proc)
    assert 'stale' in out and f'pid {gone.pid}' in out
    assert (work / 'epoch_1.pth').is_file()
    assert not (work / LOCK).exists()  # released at exit


def test_only_rank_0_takes_the_lock(tmp_path, monkeypatch):
    from mmcv_custom.runner_safety import WorkDirLock, WorkDirLockedError

    holder = subprocess.Popen(['sleep', '600'])
    try:
        _write_lock(tmp_path, holder.pid)
        monkeypatch.setenv('RANK', '1')
        with WorkDirLock(str(tmp_path), launcher='pytorch') as lock:  # rank 1: no lock, no error
            assert not lock.held
        monkeypatch.setenv('RANK', '0')
        with pytest.raises(WorkDirLockedError, match=f'pid {holder.pid}'):
            WorkDirLock(str(tmp_path), launcher='pytorch').acquire()
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone now: rank 0 takes the lock over, and gives it back on an exception
    with pytest.raises(KeyError), WorkDirLock(str(tmp_path), launcher='pytorch') as lock:
        assert lock.held
        assert json.loads((tmp_path / LOCK).read_text())['pid'] == os.getpid()
        raise KeyError('training failed')
    assert not (tmp_path / LOCK).exists()


# --------------------------------------------------------------------------- C: resume check

def _classification_checkpoint(path) -> str:
    """A resumable checkpoint of the classification demo's model (another model than the
    detection demo's, with the same backbone)."""
    from mmengine.config import Config
    from mmengine.logging import MessageHub
    from mmengine.registry import init_default_scope
    from mmpretrain.registry import MODELS

    import mmpretrain_custom  # noqa: F401

    init_default_scope('mmpretrain')
    model = MODELS.build(Config.fromfile(CLS_CONFIG).model)
    optimizer = torch.optim.AdamW(model.parameters())
    hub = MessageHub.get_instance('classification_demo').state_dict()
    torch.save(dict(meta=dict(epoch=1, iter=4), state_dict=model.state_dict(), message_hub=hub,
                    optimizer=optimizer.state_dict()), str(path))
    return str(path)


@pytest.mark.slow
def test_resume_from_another_models_checkpoint_is_refused(tmp_path, tiny_data):
    cfg = base.write_config(tmp_path / 'cfg.py', tiny_data, max_epochs=1)
    ckpt = _classification_checkpoint(tmp_path / 'cls.pth')
    work = tmp_path / 'work'
    proc = _train([cfg, '--work-dir', str(work), '--resume', ckpt])
    out = _output(proc)
    assert proc.returncode != 0
    message = out.strip().splitlines()[-1]
    assert ckpt in message, out[-3000:]
    assert 'classification' in message and 'backbone' in message
    from mmcv_custom.runner_safety import CheckpointMismatchError
    assert CheckpointMismatchError.__name__ in message
    assert not (work / LOCK).exists()  # released although training failed


def test_resume_check_counts_matching_tensors():
    from mmcv_custom.runner_safety import CheckpointMismatchError, check_resume_state_dict

    model = {f'neck.conv{i}.weight': torch.zeros(4, 4) for i in range(8)}
    model.update({'backbone.stem.weight': torch.zeros(2), 'head.fc.weight': torch.zeros(3, 4)})
    same = {'state_dict': {k: v.clone() for k, v in model.items()}}
    check_resume_state_dict(model, same, 'same.pth')  # no error
    # another model: the head has another number of classes, the neck another width
    other = {'state_dict': {k: torch.zeros(5, 5) if k.startswith('neck.conv') and k < 'neck.conv5'
                            else torch.zeros(7, 4) if k.startswith('head') else v
                            for k, v in model.items()}}
    with pytest.raises(CheckpointMismatchError) as info:
        check_resume_state_dict(model, other, 'other.pth')
    message = str(info.value)
    assert 'other.pth' in message and '4 of 10 tensors' in message and 'another config' in message
    # one differing tensor (a DataParallel 'module.' prefix is accepted) is only a warning
    almost = {'state_dict': {'module.' + k: v for k, v in same['state_dict'].items()}}
    almost['state_dict']['module.head.fc.weight'] = torch.zeros(7, 4)
    check_resume_state_dict(model, almost, 'almost.pth')
