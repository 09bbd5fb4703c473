"""Safety nets that tools/train.py puts around mmengine's Runner.

* :class:`AtomicCheckpointHook`: mmengine's ``CheckpointHook`` deletes the oldest checkpoint
  *before* writing the new one and writes files in place, so with ``max_keep_ckpts=1`` a kill or
  a full disk during a save leaves no usable checkpoint and ``last_checkpoint`` naming a deleted
  file. This hook writes to a temporary file, syncs it, renames it onto the final name, then
  updates ``last_checkpoint`` (also atomically) and only then deletes old checkpoints.
* :class:`WorkDirLock`: stops a second training run from writing into a work dir that a live
  run is using.
* :func:`check_resume_state_dict` / :class:`ResumeCheckHook`: refuse to ``--resume`` from a
  checkpoint of another model with a message naming the file, instead of an error about
  optimizer parameter groups deep inside mmengine.
"""
from __future__ import annotations

import json
import logging
import os
import os.path as osp
import re
import socket
from typing import Mapping

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.registry import HOOKS
from mmengine.runner import Runner
from mmengine.runner.checkpoint import find_latest_checkpoint

from .checkpoint import CheckpointMismatchError, extract_state_dict

__all__ = [
    'AtomicCheckpointHook', 'WorkDirLock', 'WorkDirLockedError', 'LOCK_FILE',
    'ResumeCheckHook', 'CheckpointMismatchError', 'check_resume_state_dict',
]

# Suffix of the files being written; a leftover one is from a crashed save and is deleted.
PARTIAL = '.partial'


def _partial_path(path: str) -> str:
    """Hidden, same directory (so that ``os.replace`` is a rename), not matching ``*.pth``."""
    head, tail = osp.split(path)
    return osp.join(head, f'.{tail}{PARTIAL}')


def _fsync_dir(path: str) -> None:
    """Make a rename in ``path`` durable; some filesystems cannot sync a directory."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, 'O_DIRECTORY', 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _commit(partial: str, final: str) -> None:
    """Sync the finished ``partial`` file to disk and rename it onto ``final``."""
    fd = os.open(partial, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(partial, final)
    _fsync_dir(osp.dirname(final) or '.')


def _write_text_atomic(path: str, text: str) -> None:
    partial = _partial_path(path)
    with open(partial, 'w') as f:
        f.write(text)
    _commit(partial, path)


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` (same arguments) whose saves survive a crash at any point.

    Order of a save: write ``.<name>.partial`` in the output dir, fsync, ``os.replace`` it onto
    ``<name>``, rewrite ``last_checkpoint`` the same way, and only then remove the checkpoints
    beyond ``max_keep_ckpts``. At every moment ``last_checkpoint`` names a complete file. The
    price: for a moment the disk holds one checkpoint more than ``max_keep_ckpts``.

    Checkpoint contents (``keep_ckpt_ids``, ``last_ckpt`` in the message hub) are those of
    ``CheckpointHook``, so resumed runs behave the same. Remote backends and runners other than
    :class:`mmengine.runner.Runner` (e.g. DeepSpeed, which saves directories) get the new order
    but write in place.
    """

    def before_train(self, runner) -> None:
        super().before_train(runner)
        self._atomic = isinstance(self.file_backend, LocalBackend) and isinstance(runner, Runner)
        if self._atomic and is_main_process():
            # partial files of a crashed save: nobody else writes here (tools/train.py's lock)
            for folder in {self.out_dir, runner.work_dir}:
                if osp.isdir(folder):
                    for name in os.listdir(folder):
                        if name.startswith('.') and name.endswith(PARTIAL):
                            os.remove(osp.join(folder, name))

    def _save_checkpoint_with_step(self, runner, step, meta):
        # Same bookkeeping as CheckpointHook, but the file to delete is only remembered here.
        outdated = None
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids
                                            and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                outdated = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

        ckpt_filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, ckpt_filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)

        atomic = getattr(self, '_atomic', False)
        save_name = _partial_path(ckpt_filename) if atomic else ckpt_filename
        try:
            # Runner.save_checkpoint writes on the main process only.
            runner.save_checkpoint(
                self.out_dir,
                save_name,
                self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler,
                meta=meta,
                by_epoch=self.by_epoch,
                backend_args=self.backend_args,
                **self.args)
            if atomic and is_main_process():
                _commit(osp.join(self.out_dir, save_name), self.last_ckpt)
        except BaseException:
            # e.g. a full disk: free the space, keep the previous checkpoint as the last one
            partial = osp.join(self.out_dir, save_name)
            if atomic and is_main_process() and osp.isfile(partial):
                os.remove(partial)
            raise

        if not is_main_process():
            return
        _write_text_atomic(osp.join(runner.work_dir, 'last_checkpoint'), self.last_ckpt)

        if outdated is not None:
            path = self.file_backend.join_path(self.out_dir, self.filename_tmpl.format(outdated))
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # checkpoints saved by DeepSpeed are directories
                self.file_backend.rmtree(path)


# --------------------------------------------------------------------------- work-dir lock

LOCK_FILE = 'train.lock'


class WorkDirLockedError(RuntimeError):
    """Another live training run holds the work dir."""


def _global_rank(launcher: str) -> int:
    """This process's rank, known before mmengine initialises the process group."""
    if launcher == 'none':
        return 0
    import torch.distributed as dist
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    for var in ('RANK', 'SLURM_PROCID', 'OMPI_COMM_WORLD_RANK', 'PMI_RANK'):
        if os.environ.get(var, '').isdigit():
            return int(os.environ[var])
    return 0


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """``(state, start time)`` of a process from /proc, None where unreadable."""
    try:
        with open(f'/proc/{pid}/stat') as f:
            # the command name (field 2) may hold spaces and parentheses: split after it
            fields = f.read().rsplit(')', 1)[1].split()
    except (OSError, IndexError):
        return None
    return fields[0], fields[19]  # fields 3 and 22 of proc(5)


def _pid_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by another user
    stat = _proc_stat(pid)
    if stat is None:
        return True
    state, started = stat
    # a zombie has finished; another start time means the pid was reused
    return state != 'Z' and (start is None or started == start)


def _try_flock(fd: int) -> bool | None:
    """Lock ``fd`` exclusively: True, False if another process holds it, None if unsupported."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    except OSError:  # e.g. ENOLCK / EOPNOTSUPP on filesystems mounted without lock support
        return None
    return True


def _read_record(fd: int) -> dict:
    os.lseek(fd, 0, os.SEEK_SET)
    data = b''
    while chunk := os.read(fd, 4096):
        data += chunk
    try:
        record = json.loads(data.decode())
    except (UnicodeDecodeError, ValueError):
        return {}
    return record if isinstance(record, dict) and isinstance(record.get('pid'), int) else {}


class WorkDirLock:
    """An exclusive claim of a work dir by one training run (``<work_dir>/train.lock``).

    The file holds ``{"pid": ..., "host": ..., "start": ...}`` of the holder and is flock()ed
    while it runs. A second run stops with :class:`WorkDirLockedError` while the holder lives.
    A lock whose holder is gone (killed: no chance to delete the file) is stale; it is taken over
    with a warning. Liveness: on the same host the pid (with its start time, against pid reuse);
    from another host the flock, which the kernel or file server drops when the holder dies. On
    a filesystem without locks, a lock from another host cannot be verified and is respected.

    In distributed runs only global rank 0 takes the lock; the other ranks do nothing. Use as a
    context manager, which releases it also on exceptions.

    Args:
        work_dir: The run's work dir (created if missing).
        launcher: tools/train.py's ``--launcher``; ``'none'`` is always rank 0.
    """

    def __init__(self, work_dir: str, launcher: str = 'none') -> None:
        self.work_dir = work_dir
        self.path = osp.join(work_dir, LOCK_FILE)
        self.launcher = launcher
        self._fd: int | None = None
        self._record: dict | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _refusal(self, holder: dict, unverifiable: bool = False) -> WorkDirLockedError:
        who = f'pid {holder.get("pid", "?")} on {holder.get("host", "?")}'
        hint = (' (its liveness cannot be checked from this host on a filesystem without locks)'
                if unverifiable else '')
        return WorkDirLockedError(
            f'work dir {self.work_dir} is in use by another training run ({who}){hint}: two runs '
            f'would overwrite each other\'s checkpoints and logs. Wait for it to end, pass '
            f'another --work-dir, or delete {self.path} if that run is no longer alive.')

    def acquire(self) -> bool:
        """Take the lock on rank 0; returns whether this process holds it."""
        if self._fd is not None or _global_rank(self.launcher) != 0:
            return self.held
        os.makedirs(self.work_dir, exist_ok=True)
        me = dict(pid=os.getpid(), host=socket.gethostname())
        stat = _proc_stat(os.getpid())
        if stat is not None:
            me['start'] = stat[1]
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                flocked = _try_flock(fd)
                if flocked is False:
                    raise self._refusal(_read_record(fd))
                try:
                    same = os.path.samestat(os.fstat(fd), os.stat(self.path))
                except FileNotFoundError:
                    same = False
                if not same:  # the holder released (deleted) it between our open and flock
                    os.close(fd)
                    continue
                holder = _read_record(fd)
                if holder and (holder['pid'], holder.get('host')) != (me['pid'], me['host']):
                    if holder.get('host') == me['host']:
                        alive = _pid_alive(holder['pid'], holder.get('start'))
                    else:  # its flock would still be held: gone, unless there are no locks
                        alive = flocked is None
                    if alive:
                        raise self._refusal(holder, unverifiable=holder.get('host') != me['host'])
                    print_log(f'work dir {self.work_dir}: taking over the stale lock of pid '
                              f'{holder["pid"]} on {holder.get("host", "?")}, which no longer '
                              f'runs ({self.path})', logger='current', level=logging.WARNING)
                data = json.dumps(me).encode()
                os.ftruncate(fd, 0)
                os.pwrite(fd, data, 0)
                os.fsync(fd)
            except BaseException:
                os.close(fd)
                raise
            self._fd, self._record = fd, me
            return True

    def release(self) -> None:
        """Delete the lock file (if it is still ours) and drop the flock."""
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            # delete while still flocked, so that no other run can take this file meanwhile
            if _read_record(fd) == self._record:
                os.remove(self.path)
        except OSError:
            pass
        finally:
            os.close(fd)

    def __enter__(self) -> WorkDirLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()


# --------------------------------------------------------------------------- resume check

def check_resume_state_dict(model_state: Mapping, checkpoint: Mapping, filename: str,
                            min_fraction: float = 0.9) -> None:
    """Raise :class:`CheckpointMismatchError` unless ``checkpoint`` fits ``model_state``.

    It fits when at least ``min_fraction`` of the model's tensors are in the checkpoint's
    weights (``state_dict`` or ``model`` entry, a ``module.`` prefix removed) with the same shape;
    a partial fit is logged. A checkpoint this config wrote fits completely.

    Args:
        model_state: The model's ``state_dict()``.
        checkpoint: The loaded checkpoint.
        filename: Its path, for the message.
        min_fraction: The share of the model's tensors that must match.
    """
    shapes = {re.sub(r'^module\.', '', k): tuple(v.shape)
              for k, v in extract_state_dict(checkpoint).items() if hasattr(v, 'shape')}
    total = len(model_state)
    missing = [k for k, v in model_state.items() if shapes.get(k) != tuple(v.shape)]
    matched = total - len(missing)
    if matched >= min_fraction * total:
        if missing:
            print_log(f'--resume: {len(missing)} of the model\'s {total} tensors are not in '
                      f'{filename} with the same shape (e.g. {", ".join(missing[:5])})',
                      logger='current', level=logging.WARNING)
        return
    # a backbone-only or classification checkpoint: the model's backbone without the prefix
    backbone = {k: tuple(v.shape) for k, v in model_state.items() if k.startswith('backbone.')}
    in_backbone = sum(shapes.get(k[len('backbone.'):]) == s for k, s in backbone.items())
    if backbone and in_backbone >= len(backbone) / 2:
        cause = (f'{in_backbone} of the model\'s {len(backbone)} backbone tensors are in it '
                 'without the "backbone." prefix: it looks like a backbone-only or '
                 'classification checkpoint. To start from those weights, set load_from (or '
                 'the backbone\'s init_cfg) and train without --resume.')
    else:
        cause = ('it was probably written with another config (another model, size or number '
                 'of classes): resume with the config that wrote it.')
    raise CheckpointMismatchError(
        f'--resume: {filename} does not fit the model of this config: only {matched} of '
        f'{total} tensors of the model are in it with the same shape; {cause}')


class ResumeCheckHook(Hook):
    """Run :func:`check_resume_state_dict` on the checkpoint of ``--resume``.

    ``after_load_checkpoint`` sees the loaded checkpoint before the Runner applies any of it (model
    weights, optimizer state): no second read of a possibly large file. Highest priority: before
    other hooks (EMA) apply their part of it.
    """
    priority = 'HIGHEST'

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if not getattr(runner, '_resume', False):
            return  # load_from (fine-tuning) may load partial weights on purpose
        # the file Runner.load_or_resume chose
        filename = runner._load_from or find_latest_checkpoint(runner.work_dir)
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        check_resume_state_dict(model.state_dict(), checkpoint, str(filename))
