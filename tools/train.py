"""Train a model from a config with mmengine's Runner.

One tool for every task of this project: the config's ``default_scope`` (``mmdet``, ``mmseg`` or
``mmpretrain``) selects the registries, and its ``custom_imports`` register InternImage there.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--cfg-options k=v ...]
    tools/dist_train.sh CONFIG NPROC [same options]      # several processes / machines

Without a GPU, distributed runs use the gloo backend on CPU. Checkpoints are written atomically,
one run at a time may use a work dir, and ``--resume`` refuses a checkpoint of another model
(:mod:`mmcv_custom.runner_safety`).
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys

# Run as a script from anywhere: the repository root holds the *_custom packages.
ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402
from mmengine.config import Config, ConfigDict, DictAction  # noqa: E402
from mmengine.hooks import CheckpointHook, Hook  # noqa: E402
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import mmcv_custom  # noqa: E402,F401  torch.load allow-list for mmengine checkpoints
import mmcv_custom.safe_load  # noqa: E402,F401  (explicit: the package may import lazily)
from mmcv_custom.runner_safety import ResumeCheckHook, WorkDirLock  # noqa: E402  (and the hook)
from mmcv_custom.sharded import check_strategy_dependencies, use_sharded_ema  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a model (detection, segmentation or '
                                     'classification) from an mmengine config.')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--work-dir', help='directory for logs and checkpoints '
                        '(default: ./work_dirs/<config name>)')
    parser.add_argument('--resume', nargs='?', type=str, const='auto', default=None,
                        help='resume from CKPT, or without a value from the latest checkpoint '
                        'in the work dir')
    parser.add_argument('--amp', action='store_true', help='mixed precision training (GPU)')
    parser.add_argument('--auto-scale-lr', action='store_true',
                        help='scale the lr by the actual batch size over auto_scale_lr.base_batch_size')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override config entries, e.g. train_cfg.max_epochs=2 '
                        'optim_wrapper.optimizer.lr=1e-3')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none',
                        help='job launcher (dist_train.sh passes pytorch)')
    parser.add_argument('--skip-data-check', action='store_true',
                        help='do not validate COCO annotation files and image paths up front')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK instead.
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def setup_device(cfg: Config, launcher: str) -> None:
    """Make a distributed run work without a GPU.

    mmengine assumes CUDA for distributed runs: it calls ``torch.cuda.set_device`` before
    creating the process group and gives DDP ``device_ids=[LOCAL_RANK]``. On a CPU-only machine
    we create the gloo process group ourselves (the Runner then skips its own initialisation)
    and let DDP wrap the CPU module without device ids.
    """
    if launcher == 'none' or torch.cuda.is_available():
        return
    env_cfg = cfg.setdefault('env_cfg', ConfigDict())
    dist_cfg = env_cfg.setdefault('dist_cfg', ConfigDict())
    dist_cfg['backend'] = 'gloo'
    wrapper = cfg.get('model_wrapper_cfg') or ConfigDict(type='MMDistributedDataParallel')
    wrapper['device_ids'] = None
    cfg.model_wrapper_cfg = wrapper
    if launcher == 'pytorch' and not torch.distributed.is_initialized():
        import datetime
        timeout = datetime.timedelta(seconds=dist_cfg.get('timeout', 1800))
        torch.distributed.init_process_group(backend='gloo', timeout=timeout)


# Checked before the Runner starts: every split train.py runs (the test split too, so that a
# broken file does not surface after hours of training).
TRAIN_CHECKED = ('train_dataloader', 'val_dataloader', 'test_dataloader')


def check_datasets(cfg: Config, loaders=TRAIN_CHECKED) -> None:
    """Check the local COCO annotation files and images of ``loaders`` before the run reads them.

    Detection configs only (:func:`mmdet_custom.datasets.check_datasets`); once per machine in a
    distributed run (local rank 0), as each machine reads its own files.
    """
    if cfg.get('default_scope') != 'mmdet' or os.environ.get('LOCAL_RANK', '0') != '0':
        return
    from mmdet_custom.datasets import check_datasets as check_detection_datasets
    check_detection_datasets(cfg, loaders)


def default_work_dir(config: str) -> str:
    return osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])


def load_config(args: argparse.Namespace, check_loaders=TRAIN_CHECKED) -> Config:
    """Read the config and apply the command-line choices common to train and test.

    Unless ``args.skip_data_check``, the datasets of ``check_loaders`` are checked up front.
    """
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    # precedence: command line > config > ./work_dirs/<config name>
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = default_work_dir(args.config)
    setup_device(cfg, args.launcher)
    if not getattr(args, 'skip_data_check', False):
        check_datasets(cfg, check_loaders)
    return cfg


class RNGStateHook(Hook):
    """Save the global random states in checkpoints and restore them on ``--resume``.

    mmengine re-seeds a resumed run with the original seed, so the random streams that the
    model and pipeline draw from globally (RoI sampling, random flips) restart instead of
    continuing, and a resumed run drifts from the uninterrupted one. With this hook the run
    continues bit for bit on CPU (given ``randomness.deterministic``).
    """
    priority = 'VERY_LOW'

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        import random

        import numpy as np
        checkpoint['rng_state'] = dict(python=random.getstate(), numpy=np.random.get_state(),
                                       torch=torch.get_rng_state())
        if torch.cuda.is_available():
            checkpoint['rng_state']['cuda'] = torch.cuda.get_rng_state_all()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        state = checkpoint.get('rng_state')
        if state is None or not getattr(runner, '_resume', False):
            return  # fine-tuning from load_from starts its own random streams
        import random

        import numpy as np
        random.setstate(state['python'])
        np.random.set_state(state['numpy'])
        torch.set_rng_state(state['torch'].cpu())
        if 'cuda' in state and torch.cuda.is_available() and \
                len(state['cuda']) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all([s.cpu() for s in state['cuda']])


def use_atomic_checkpoints(cfg: Config) -> None:
    """Save checkpoints with ``AtomicCheckpointHook`` where the config uses mmengine's hook.

    mmengine's ``CheckpointHook`` deletes the old checkpoint before writing the new one in place:
    a crash while saving leaves nothing to resume from. The replacement takes the same arguments
    (see :mod:`mmcv_custom.runner_safety`). Other checkpoint hooks are left as they are.
    """
    if cfg.get('default_hooks') is None:  # mmengine then registers its defaults
        cfg.default_hooks = ConfigDict()
    default_hooks = cfg.default_hooks
    if 'checkpoint' not in default_hooks:  # mmengine's default: CheckpointHook(interval=1)
        default_hooks['checkpoint'] = ConfigDict(type='CheckpointHook', interval=1)
    hook = default_hooks['checkpoint']
    if not isinstance(hook, dict):
        return  # disabled (None) or a hook object
    kind = hook.get('type')
    if kind is CheckpointHook or (isinstance(kind, str) and
                                  kind.rsplit('.', 1)[-1] == 'CheckpointHook'):
        hook['type'] = 'AtomicCheckpointHook'


def build_runner(cfg: Config) -> Runner:
    """The config's runner: mmengine's ``Runner``, or its ``runner_type`` (``FlexibleRunner`` for
    the sharded strategies of ``configs/_base_/runtime_fsdp.py``, whose EMA hook becomes
    ``ShardedEMAHook``; a DeepSpeed strategy without ``deepspeed`` installed stops here)."""
    if 'runner_type' in cfg:
        check_strategy_dependencies(cfg)
        use_sharded_ema(cfg)
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def creates_process_group(launcher: str) -> bool:
    """Whether a run with ``launcher`` initialises the default process group itself.

    Call before :func:`load_config`: :func:`setup_device` (gloo on CPU) or, on a GPU, the Runner
    creates it. A group that the caller initialised beforehand stays the caller's.
    """
    import torch.distributed as dist
    return launcher != 'none' and dist.is_available() and not dist.is_initialized()


def release_process_group(runner: Runner) -> None:
    """Destroy the default process group after a successful run, before the interpreter exits.

    Neither mmengine nor torch does it. Left alive, gloo's worker threads (``pt_gloo_runloop``)
    outlive ``main``, and one that drops the last reference to a finished collective
    after ``Py_FinalizeEx`` has begun needs the GIL to free its tensors: Python ends such a
    thread with ``pthread_exit``, whose forced unwinding through a ``noexcept`` frame aborts the
    process (``terminate called without an active exception``, SIGABRT) after training finished.

    Here the group is destroyed while the interpreter is fully alive: a barrier (every rank is
    past its last collective), ``destroy_process_group``, then the group's last owners go. DDP's
    reducer owns it too, so the runner's model is unwrapped from DDP (useless without its group)
    and the wrapper's reference cycles collected; the group object itself is dropped last, through
    its Python handle, whose destructor releases the GIL while it joins the worker threads (a
    worker may need the GIL to free its last collective's tensors). Not called when the run
    failed: the other ranks may never reach the barrier, and torchrun ends them.
    """
    import gc

    import torch.distributed as dist
    from mmengine.model import is_model_wrapper

    if not dist.is_initialized():
        return
    dist.barrier()
    group = dist.group.WORLD  # kept until the wrapper is gone, so that it is the last owner
    dist.destroy_process_group()
    if is_model_wrapper(runner.model):
        runner.model = runner.model.module
    gc.collect()
    del group  # ~ProcessGroupGloo joins its threads here, the GIL released


def main(argv: list[str] | None = None) -> Runner:
    """Train; return the Runner.

    When the run created the process group (``--launcher`` other than ``none``), the group is
    destroyed at the end of a successful run and the returned Runner's model is no longer
    wrapped in DDP (:func:`release_process_group`).
    """
    args = parse_args(argv)
    owns_process_group = creates_process_group(args.launcher)
    cfg = load_config(args)

    if args.amp:
        optim_wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if optim_wrapper == 'AmpOptimWrapper':
            print('--amp: the config already uses AmpOptimWrapper')
        elif optim_wrapper != 'OptimWrapper':
            raise ValueError(f'--amp works with optim_wrapper.type OptimWrapper, '
                             f'the config has {optim_wrapper!r}')
        else:
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.loss_scale = 'dynamic'

    if args.auto_scale_lr:
        if 'base_batch_size' not in cfg.get('auto_scale_lr', {}):
            raise RuntimeError('--auto-scale-lr needs auto_scale_lr.base_batch_size in the config')
        cfg.auto_scale_lr.enable = True

    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        if not osp.exists(args.resume):  # a file, or a directory for DeepSpeed checkpoints
            raise FileNotFoundError(f'--resume: checkpoint {args.resume!r} does not exist')
        cfg.resume = True
        cfg.load_from = args.resume

    use_atomic_checkpoints(cfg)
    # Before the Runner exists: building it already writes logs and the config into the work dir.
    with WorkDirLock(cfg.work_dir, launcher=args.launcher):
        runner = build_runner(cfg)
        runner.register_hook(RNGStateHook())
        if isinstance(runner, Runner):  # sharded strategies check in their own resume()
            runner.register_hook(ResumeCheckHook())
        runner.train()
    if owns_process_group:
        release_process_group(runner)
    return runner


if __name__ == '__main__':
    main()
