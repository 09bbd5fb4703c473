"""Inference or training throughput and latency of InternImage on the current device, optionally beside a baseline.

Models are timed in the same process, alternating one batch (inference) or one training step
(--mode train) of each per round so that load from other processes hits both alike; reported figures
are medians over the rounds after warm-up.

--mode train times one training step per call, for every model alike: model.train(), gradients on,
optimizer.zero_grad(set_to_none=True), the loss, loss.backward() and an AdamW step (lr 1e-4, the
optimizer of the published recipes). The loss is the classifier's own (mmpretrain mode='loss',
against fixed random labels) for --size and mmpretrain classifier configs; with --backbone-only it is
a stand-in, the mean of the output feature maps times fixed random weights. Detector and segmentor
configs need --backbone-only in train mode (their losses need annotations).

    # InternImage-T vs mmpretrain's ConvNeXt-T classifiers, batch 8, 224x224, 2 threads
    python tools/benchmark.py --size t --baseline convnext-t --batch 8 --shape 224 --threads 2
    # the same at batch 1 (latency of a single image)
    python tools/benchmark.py --size t --baseline convnext-t --batch 1 --shape 224 --threads 2
    # training steps (forward + loss + backward + AdamW step) of both classifiers
    python tools/benchmark.py --size t --baseline convnext-t --batch 8 --shape 224 --threads 2 --mode train
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


LR = 1e-4  # AdamW learning rate of --mode train


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', nargs='?', help='config file (mmdet, mmseg or mmpretrain)')
    p.add_argument('--size', choices=['t', 's', 'b', 'l', 'xl', 'h', 'g'],
                   help='published InternImage classifier (no config)')
    p.add_argument('--backbone-only', action='store_true', help='time the backbone alone')
    p.add_argument('--baseline', choices=sorted(BASELINES), help='mmpretrain model timed beside it')
    p.add_argument('--mode', choices=['inference', 'train'], default='inference',
                   help='inference: forward passes without autograd; train: training steps (loss, backward, '
                        'AdamW lr 1e-4) with the classifier loss, or with --backbone-only a stand-in loss '
                        '(outputs times fixed random weights, averaged); a detector or segmentor CONFIG needs --backbone-only (default: inference)')
    p.add_argument('--compile', action='store_true',
                   help='run every timed model under torch.compile (inductor), inference mode only; '
                        'compilation happens in the warm-up rounds')
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
    return p


def parse_args(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    if args.cfg_options and args.config is None:
        p.error('--cfg-options needs a CONFIG')
    if (args.config is None) == (args.size is None):
        p.error('give either a CONFIG or --size')
    if args.compile and args.mode == 'train':
        p.error('--compile times inference only')
    if len(args.shape) not in (1, 2):
        p.error('--shape takes H or H W')
    return args


def build_internimage(args):
    """(name, module, callable taking an image batch): the forward pass, or with --mode train the loss."""
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
        if args.mode == 'train' and not args.backbone_only and scope != 'mmpretrain':
            build_parser().error(f'--mode train times the loss of classifiers only: {args.config} is a {scope} '
                                 'model, whose loss needs annotations; add --backbone-only')
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
        return name, model, _output_loss(model) if args.mode == 'train' else model
    if args.mode == 'train':
        from mmpretrain.models import ImageClassifier

        if not isinstance(model, ImageClassifier):
            build_parser().error(f'--mode train times the loss of classifiers only: {name} builds a '
                                 f'{type(model).__name__}; add --backbone-only')
        return name, model, _classifier_loss(model, args)
    if scope == 'mmdet':
        from mmdet.structures import DetDataSample

        h, w = _hw(args)
        samples = [DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                                               batch_input_shape=(h, w), scale_factor=(1.0, 1.0)))
                   for _ in range(args.batch)]
        return name, model, lambda x: model(x, samples, mode='tensor')
    return name, model, lambda x: model(x, mode='tensor')


def build_baseline(args):
    from mmengine.registry import DefaultScope
    from mmpretrain.models import ImageClassifier

    spec = BASELINES[args.baseline]
    # The classifier builds its parts (data preprocessor, backbone, head) from the default scope's
    # registry, which another library may have set in this process: pin mmpretrain's.
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        model = ImageClassifier(
            backbone=dict(type='ConvNeXt', arch=spec['arch'], gap_before_final_norm=True),
            head=dict(type='LinearClsHead', num_classes=1000, in_channels=spec['channels']))
    name = 'ConvNeXt-' + spec['arch'][0].upper()
    if args.backbone_only:
        backbone = model.backbone
        return name + ' backbone', backbone, _output_loss(backbone) if args.mode == 'train' else backbone
    if args.mode == 'train':
        return name, model, _classifier_loss(model, args)
    return name, model, lambda x: model(x, mode='tensor')


def _hw(args):
    return (args.shape[0], args.shape[-1])


def _classifier_loss(model, args):
    """Image batch -> the mmpretrain classifier's own loss (``mode='loss'``) against fixed random labels."""
    from mmpretrain.structures import DataSample

    labels = torch.randint(model.head.num_classes, (args.batch,), generator=torch.Generator().manual_seed(0))
    samples = [DataSample().set_gt_label(int(label)).to(args.device) for label in labels]

    def loss(x):
        losses = model(x, samples, mode='loss')
        return sum(v for k, v in losses.items() if 'loss' in k)
    return loss


def _tensors(out):
    if isinstance(out, torch.Tensor):
        yield out
    elif isinstance(out, (list, tuple)):
        for o in out:
            yield from _tensors(o)
    elif isinstance(out, dict):
        for o in out.values():
            yield from _tensors(o)


def _output_loss(module):
    """Image batch -> a stand-in loss for a backbone: its output tensors times fixed random weights, averaged
    and summed (a plain mean would have no gradient through a final LayerNorm)."""
    weights = {}

    def loss(x):
        total = 0
        for i, t in enumerate(_tensors(module(x))):
            if i not in weights:
                weights[i] = torch.randn(t.shape, generator=torch.Generator().manual_seed(i)).to(t.device, t.dtype)
            total = total + (t * weights[i]).float().mean()
        return total
    return loss


def train_step(module, loss_fn, lr: float = LR):
    """Callable taking an image batch that runs one training step: zero_grad, loss, backward, AdamW step."""
    optimizer = torch.optim.AdamW([p for p in module.parameters() if p.requires_grad], lr=lr)

    def step(x):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(x)
        loss.backward()
        optimizer.step()
        return loss
    return step


def benchmark(runs, x, warmup: int, iters: int, sync, grad: bool = False) -> list[list[float]]:
    """Alternate one call of each run per round; per-run lists of timed seconds.

    ``grad``: run with autograd on (training steps); otherwise under ``torch.inference_mode()``.
    """
    times = [[] for _ in runs]
    with torch.enable_grad() if grad else torch.inference_mode():
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
    train = args.mode == 'train'
    for _, module, _ in entries:
        module.to(device=args.device, dtype=dtype).train(train)
    if train:  # optimizers over the parameters as moved to the device
        entries = [(name, module, train_step(module, loss)) for name, module, loss in entries]
    elif args.compile:
        entries = [(name + ' (compiled)', module, torch.compile(fn)) for name, module, fn in entries]
    x = torch.randn(args.batch, 3, *_hw(args), device=args.device, dtype=dtype)
    sync = torch.cuda.synchronize if args.device.startswith('cuda') else (lambda: None)

    core = None
    for m in entries[0][1].modules():
        if type(m).__name__ in ('DCNv3', 'DCNv3_pytorch'):
            core = type(m).__name__
            break
    print(f'mode {args.mode}' + (f' (AdamW lr {LR:g})' if train else '') + ', '
          f'device {args.device} ({torch.get_num_threads()} threads), batch {args.batch}, '
          f'shape {_hw(args)}, dtype {args.dtype}, core_op {core}, warmup {args.warmup}, iters {args.iters}')
    times = benchmark([e[2] for e in entries], x, args.warmup, args.iters, sync, grad=train)
    unit = 'step' if train else 'batch'
    medians, mins = [], []
    for (name, _, _), t in zip(entries, times):
        mins.append(min(t))
        med = statistics.median(t)
        medians.append(med)
        print(f'{name:28s} latency {med * 1e3:9.1f} ms/{unit} (min {min(t) * 1e3:.1f})  '
              f'{args.batch / med:8.2f} images/s')
    if len(medians) == 2:
        print(f'ratio {entries[0][0]} / {entries[1][0]} latency: {medians[0] / medians[1]:.2f}x '
              f'(of minima {mins[0] / mins[1]:.2f}x, less sensitive to load from other processes)')
    return medians


if __name__ == '__main__':
    main()
