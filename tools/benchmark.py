"""Inference throughput and latency of InternImage on the current device, optionally beside a baseline.

Models are timed in the same process, alternating one batch of each per round so that load from
other processes hits both alike; reported figures are medians over the rounds after warm-up.

    # InternImage-T vs mmpretrain's ConvNeXt-T classifiers, batch 8, 224x224, 2 threads
    python tools/benchmark.py --size t --baseline convnext-t --batch 8 --shape 224 --threads 2
    # a config's model (tensor mode) or only its backbone
    python tools/benchmark.py configs/coco/mask-rcnn_internimage-t_fpn_1x_coco.py --backbone-only --shape 800 1280
"""
from __future__ import annotations

import argparse
import importlib
import os
import statistics
import sys
import time

import torch
from mmengine.config import DictAction

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

BASELINES = {
    # mmpretrain ConvNeXt classifiers (backbone + global pool + norm + linear head).
    'convnext-t': dict(arch='tiny', channels=768),
    'convnext-s': dict(arch='small', channels=768),
    'convnext-b': dict(arch='base', channels=1024),
}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', nargs='?', help='config file (mmdet, mmseg or mmpretrain)')
    p.add_argument('--size', choices=['t', 's', 'b', 'l', 'xl', 'h', 'g'],
                   help='published InternImage classifier (no config)')
    p.add_argument('--backbone-only', action='store_true', help='time the backbone alone')
    p.add_argument('--baseline', choices=sorted(BASELINES), help='mmpretrain model timed beside it')
    p.add_argument('--batch', type=int, default=8)
    p.add_argument('--shape', type=int, nargs='+', default=[224], help='input H [W]')
    p.add_argument('--warmup', type=int, default=2, help='untimed rounds first')
    p.add_argument('--iters', type=int, default=5, help='timed rounds')
    p.add_argument('--threads', type=int, default=None, help='torch intra-op threads (default: as is)')
    p.add_argument('--core-op', default=None, help="override the backbone's core_op (DCNv3 / DCNv3_pytorch)")
    p.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    p.add_argument('--dtype', default='float32', choices=['float32', 'float16', 'bfloat16'])
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={}, metavar='KEY=VALUE',
                   help='override entries of CONFIG, as in tools/train.py (nothing is evaluated)')
    args = p.parse_args(argv)
    if args.cfg_options and args.config is None:
        p.error('--cfg-options needs a CONFIG')
    if (args.config is None) == (args.size is None):
        p.error('give either a CONFIG or --size')
    if len(args.shape) not in (1, 2):
        p.error('--shape takes H or H W')
    return args


def build_internimage(args):
    """(name, callable taking an image batch)."""
    from mmengine.registry import DefaultScope

    from tools.get_flops import _scope_of  # same config scope rules

    if args.size:
        import mmpretrain_custom
        cfg_model, scope = mmpretrain_custom.models.internimage_cls_model(args.size), 'mmpretrain'
        name = f'InternImage-{args.size.upper()}'
    else:
        from mmengine.config import Config

        cfg = Config.fromfile(args.config)
        if args.cfg_options:
            cfg.merge_from_dict(args.cfg_options)
        scope = _scope_of(cfg)
        importlib.import_module({'mmdet': 'mmdet_custom', 'mmseg': 'mmseg_custom'}.get(scope, 'mmpretrain_custom'))
        cfg_model, name = cfg.model, os.path.basename(args.config)
    if args.core_op:
        cfg_model['backbone']['core_op'] = args.core_op
    importlib.import_module(f'{scope}.utils').register_all_modules(init_default_scope=False)
    registry = importlib.import_module(f'{scope}.registry').MODELS
    with DefaultScope.overwrite_default_scope(scope):
        model = registry.build(cfg_model)
    if args.backbone_only:
        model, name = model.backbone, name + ' backbone'
        return name, model, model
    if scope == 'mmdet':
        from mmdet.structures import DetDataSample

        h, w = _hw(args)
        samples = [DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                                               batch_input_shape=(h, w), scale_factor=(1.0, 1.0)))
                   for _ in range(args.batch)]
        return name, model, lambda x: model(x, samples, mode='tensor')
    return name, model, lambda x: model(x, mode='tensor')


def build_baseline(args):
    from mmpretrain.models import ImageClassifier

    spec = BASELINES[args.baseline]
    model = ImageClassifier(
        backbone=dict(type='ConvNeXt', arch=spec['arch'], gap_before_final_norm=True),
        head=dict(type='LinearClsHead', num_classes=1000, in_channels=spec['channels']))
    name = 'ConvNeXt-' + spec['arch'][0].upper()
    if args.backbone_only:
        return name + ' backbone', model.backbone, model.backbone
    return name, model, lambda x: model(x, mode='tensor')


def _hw(args):
    return (args.shape[0], args.shape[-1])


def benchmark(runs, x, warmup: int, iters: int, sync) -> list[list[float]]:
    """Alternate one call of each run per round; per-run lists of timed seconds."""
    times = [[] for _ in runs]
    with torch.inference_mode():
        for r in range(warmup + iters):
            for i, run in enumerate(runs):
                sync()
                t = time.perf_counter()
                run(x)
                sync()
                if r >= warmup:
                    times[i].append(time.perf_counter() - t)
    return times


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    import mmcv_custom  # noqa: F401

    dtype = getattr(torch, args.dtype)
    entries = [build_internimage(args)]
    if args.baseline:
        entries.append(build_baseline(args))
    for _, module, _ in entries:
        module.to(device=args.device, dtype=dtype).eval()
    x = torch.randn(args.batch, 3, *_hw(args), device=args.device, dtype=dtype)
    sync = torch.cuda.synchronize if args.device.startswith('cuda') else (lambda: None)

    core = None
    for m in entries[0][1].modules():
        if type(m).__name__ in ('DCNv3', 'DCNv3_pytorch'):
            core = type(m).__name__
            break
    print(f'device {args.device} ({torch.get_num_threads()} threads), batch {args.batch}, '
          f'shape {_hw(args)}, dtype {args.dtype}, core_op {core}, warmup {args.warmup}, iters {args.iters}')
    times = benchmark([e[2] for e in entries], x, args.warmup, args.iters, sync)
    medians, mins = [], []
    for (name, _, _), t in zip(entries, times):
        mins.append(min(t))
        med = statistics.median(t)
        medians.append(med)
        print(f'{name:28s} latency {med * 1e3:9.1f} ms/batch (min {min(t) * 1e3:.1f})  '
              f'{args.batch / med:8.2f} images/s')
    if len(medians) == 2:
        print(f'ratio {entries[0][0]} / {entries[1][0]} latency: {medians[0] / medians[1]:.2f}x '
              f'(of minima {mins[0] / mins[1]:.2f}x, less sensitive to load from other processes)')
    return medians


if __name__ == '__main__':
    main()
