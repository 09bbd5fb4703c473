"""Train a model from a config with mmengine's Runner.

One tool for every task of this project: the config's ``default_scope`` (``mmdet``, ``mmseg`` or
``mmpretrain``) selects the registries, and its ``custom_imports`` register InternImage there.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp] [--cfg-options k=v ...]
    tools/dist_train.sh CONFIG NPROC [same options]      # several processes / machines

Without a GPU, distributed runs use the gloo backend on CPU.
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
from mmengine.registry import RUNNERS  # noqa: E402
from mmengine.runner import Runner  # noqa: E402

import mmcv_custom  # noqa: E402,F401  torch.load allow-list for mmengine checkpoints
import mmcv_custom.safe_load  # noqa: E402,F401  (explicit: the package may import lazily)


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


def default_work_dir(config: str) -> str:
    return osp.join('./work_dirs', osp.splitext(osp.basename(config))[0])


def load_config(args: argparse.Namespace) -> Config:
    """Read the config and apply the command-line choices common to train and test."""
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
    return cfg


def build_runner(cfg: Config) -> Runner:
    if 'runner_type' in cfg:
        return RUNNERS.build(cfg)
    return Runner.from_cfg(cfg)


def main(argv: list[str] | None = None) -> Runner:
    args = parse_args(argv)
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
        if not osp.isfile(args.resume):
            raise FileNotFoundError(f'--resume: checkpoint {args.resume!r} does not exist')
        cfg.resume = True
        cfg.load_from = args.resume

    runner = build_runner(cfg)
    runner.train()
    return runner


if __name__ == '__main__':
    main()
