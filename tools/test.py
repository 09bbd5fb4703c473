"""Evaluate a checkpoint on a config's test split with mmengine's Runner.

    python tools/test.py CONFIG CHECKPOINT [--out results.pkl] [--show-dir DIR] [--tta]
    tools/dist_test.sh CONFIG CHECKPOINT NPROC [same options]

Works for detection, segmentation and classification configs (scope from ``default_scope``);
the metrics are the config's ``test_evaluator`` (COCO mAP through pycocotools for mmdet).
"""
from __future__ import annotations

import argparse
import os
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
for path in (ROOT, osp.dirname(osp.abspath(__file__))):
    if path not in sys.path:
        sys.path.insert(0, path)

from mmengine.config import DictAction  # noqa: E402
from train import build_runner, creates_process_group, load_config, release_process_group  # noqa: E402  (tools/train.py; imports mmcv_custom)

from mmcv_custom.checkpoint import checked_whole_model_loading  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a checkpoint.')
    parser.add_argument('config', help='config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='directory for the evaluation log and metrics')
    parser.add_argument('--out', help='dump the raw predictions to this .pkl file (for mmseg '
                        'a directory also works: prediction maps are written there)')
    parser.add_argument('--show-dir', help='draw predictions and save the images in this '
                        'directory (relative paths go under the work dir)')
    parser.add_argument('--tta', action='store_true',
                        help='test-time augmentation (needs tta_model and tta_pipeline in the config)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, default={},
                        help='override config entries')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--skip-data-check', action='store_true',
                        help='do not validate COCO annotation files and image paths up front')
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


def enable_visualization(cfg, scope: str, show_dir: str) -> None:
    """Turn on the config's visualization hook so that it saves drawn predictions."""
    hook = cfg.get('default_hooks', {}).get('visualization')
    if hook is None:
        raise RuntimeError('--show-dir needs default_hooks.visualization in the config')
    if scope == 'mmdet':
        hook.update(draw=True, test_out_dir=show_dir)
    elif scope == 'mmseg':
        hook.update(draw=True)
        cfg.visualizer['save_dir'] = show_dir
    elif scope == 'mmpretrain':
        hook.update(enable=True, out_dir=show_dir)
    else:
        raise RuntimeError(f'--show-dir is not supported for default_scope {scope!r}')


def main(argv: list[str] | None = None):
    args = parse_args(argv)
    owns_process_group = creates_process_group(args.launcher)
    cfg = load_config(args, check_loaders=('test_dataloader',))  # the split it evaluates
    scope = cfg.get('default_scope', 'mmengine')
    cfg.load_from = args.checkpoint
    if not osp.isfile(args.checkpoint) and '://' not in args.checkpoint:
        raise FileNotFoundError(f'checkpoint {args.checkpoint!r} does not exist')

    if args.show_dir:
        enable_visualization(cfg, scope, args.show_dir)

    if args.tta:
        if 'tta_model' not in cfg or 'tta_pipeline' not in cfg:
            raise RuntimeError('--tta needs tta_model and tta_pipeline in the config')
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model

    dump_file = None
    if args.out is not None:
        if args.out.endswith(('.pkl', '.pickle')):
            dump_file = args.out
        elif scope == 'mmseg':
            cfg.test_evaluator['output_dir'] = args.out
            cfg.test_evaluator['keep_results'] = True
        else:
            raise ValueError(f'--out must be a .pkl or .pickle file, got {args.out!r}')

    runner = build_runner(cfg)
    if dump_file is not None:
        if scope == 'mmdet':
            from mmdet.evaluation import DumpDetResults as Dump
        else:
            from mmengine.evaluator import DumpResults as Dump
        runner.test_evaluator.metrics.append(Dump(out_file_path=dump_file))
    # The Runner loads `load_from` non-strictly inside test(): a checkpoint of another model
    # would be evaluated as random weights (mAP 0, exit 0) unless refused as it is loaded.
    with checked_whole_model_loading(args.checkpoint):
        metrics = runner.test()
    if owns_process_group:  # before interpreter exit: see release_process_group in train.py
        release_process_group(runner)
    return metrics


if __name__ == '__main__':
    main()
