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


# Annotation files above this size (COCO train2017 is ~450 MB) are not parsed a second time.
_CHECK_MAX_BYTES = 100 * 1024 * 1024


def _bad(ann_file: str, what: str) -> ValueError:
    return ValueError(f'malformed annotation file {ann_file}: {what}')


def check_coco_annotations(ann_file: str, img_dir: str | None, training: bool = False) -> None:
    """Fail early, naming the file, on a COCO json that mmdet would choke on mid-run.

    Checks the structure of ``images``, ``annotations`` and ``categories``, that boxes are
    ``[x, y, w, h]`` with ``w, h >= 0``, that polygons have an even number (>= 6) of coordinates,
    that every annotation points at a listed image and category and, when ``img_dir`` is given,
    that every image file exists. A file without images (and, for ``training``, without
    annotations) is refused: mmdet would stop later with "need at least one array to concatenate".
    """
    import json
    import numbers

    if not osp.isfile(ann_file):
        raise FileNotFoundError(f'annotation file {ann_file} does not exist')
    if osp.getsize(ann_file) > _CHECK_MAX_BYTES:
        return
    try:
        with open(ann_file) as f:
            coco = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise _bad(ann_file, f'not valid JSON ({e})') from e
    if not isinstance(coco, dict):
        raise _bad(ann_file, 'the top level must be a JSON object')
    for key in ('images', 'annotations', 'categories'):
        if not isinstance(coco.get(key), list):
            raise _bad(ann_file, f'{key!r} must be a list')
    if not coco['images'] or (training and not coco['annotations']):
        raise _bad(ann_file, f'it has {len(coco["images"])} images and {len(coco["annotations"])} '
                   'annotations: ' + ('a dataset needs images' if not coco['images'] else
                                      'training needs annotated images'))
    image_ids = set()
    for i, img in enumerate(coco['images']):
        if not isinstance(img, dict) or not {'id', 'file_name'} <= img.keys():
            raise _bad(ann_file, f'images[{i}] needs "id" and "file_name", got {img!r}')
        image_ids.add(img['id'])
        if img_dir is not None:
            path = osp.join(img_dir, img['file_name'])
            if not osp.isfile(path):
                raise FileNotFoundError(
                    f'image file {path} (images[{i}] of {ann_file}) does not exist')
    cat_ids = set()
    for i, cat in enumerate(coco['categories']):
        if not isinstance(cat, dict) or not {'id', 'name'} <= cat.keys():
            raise _bad(ann_file, f'categories[{i}] needs "id" and "name", got {cat!r}')
        cat_ids.add(cat['id'])
    for i, ann in enumerate(coco['annotations']):
        where = f'annotations[{i}]'
        if not isinstance(ann, dict):
            raise _bad(ann_file, f'{where} must be an object, got {ann!r}')
        if ann.get('image_id') not in image_ids:
            raise _bad(ann_file, f'{where} (id {ann.get("id")}) has image_id '
                       f'{ann.get("image_id")!r}, which is not in "images"')
        if ann.get('category_id') not in cat_ids:
            raise _bad(ann_file, f'{where} (id {ann.get("id")}) has category_id '
                       f'{ann.get("category_id")!r}, which is not in "categories"')
        bbox = ann.get('bbox')
        if (not isinstance(bbox, list) or len(bbox) != 4
                or not all(isinstance(v, numbers.Real) for v in bbox) or min(bbox[2:]) < 0):
            raise _bad(ann_file, f'{where} (id {ann.get("id")}) bbox must be [x, y, w, h] '
                       f'with w, h >= 0, got {bbox!r}')
        seg = ann.get('segmentation')
        if isinstance(seg, list):
            for poly in seg:
                if (not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2
                        or not all(isinstance(v, numbers.Real) for v in poly)):
                    raise _bad(ann_file, f'{where} (id {ann.get("id")}) segmentation polygons '
                               f'must be flat [x1, y1, x2, y2, ...] lists of >= 3 points')
        elif isinstance(seg, dict):
            if not {'counts', 'size'} <= seg.keys():
                raise _bad(ann_file, f'{where} (id {ann.get("id")}) RLE segmentation needs '
                           '"counts" and "size"')
        elif seg is not None:
            raise _bad(ann_file, f'{where} (id {ann.get("id")}) segmentation must be '
                       f'polygons or RLE, got {type(seg).__name__}')


def _datasets(cfg_dataset):
    """The leaf dataset configs under dataset wrappers (RepeatDataset, ConcatDataset, ...)."""
    if not isinstance(cfg_dataset, dict):
        return
    if 'datasets' in cfg_dataset:
        for sub in cfg_dataset['datasets']:
            yield from _datasets(sub)
    elif 'dataset' in cfg_dataset:
        yield from _datasets(cfg_dataset['dataset'])
    else:
        yield cfg_dataset


def check_datasets(cfg: Config) -> None:
    """Validate the local COCO-format annotation files and images the config will read."""
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        for ds in _datasets((cfg.get(loader) or {}).get('dataset')):
            if 'coco' not in str(ds.get('type', '')).lower() or not ds.get('ann_file'):
                continue
            if ds.get('backend_args'):  # remote storage: nothing to stat locally
                continue
            root = ds.get('data_root') or ''
            ann_file = ds['ann_file']
            if not osp.isabs(ann_file):
                ann_file = osp.join(root, ann_file)
            prefix = (ds.get('data_prefix') or {}).get('img', '')
            img_dir = prefix if osp.isabs(prefix) else osp.join(root, prefix)
            check_coco_annotations(ann_file, img_dir, training=loader == 'train_dataloader')


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
    if not getattr(args, 'skip_data_check', False):
        check_datasets(cfg)
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
    if 'runner_type' in cfg:
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
        if not osp.isfile(args.resume):
            raise FileNotFoundError(f'--resume: checkpoint {args.resume!r} does not exist')
        cfg.resume = True
        cfg.load_from = args.resume

    use_atomic_checkpoints(cfg)
    # Before the Runner exists: building it already writes logs and the config into the work dir.
    with WorkDirLock(cfg.work_dir, launcher=args.launcher):
        runner = build_runner(cfg)
        runner.register_hook(RNGStateHook())
        runner.register_hook(ResumeCheckHook())
        runner.train()
    if owns_process_group:
        release_process_group(runner)
    return runner


if __name__ == '__main__':
    main()
