"""Parameters and FLOPs of a config's model, or of a published InternImage classifier.

FLOPs are counted as in the InternImage paper (multiply-accumulates of convs and linear layers, the
element-wise cost of norms/activations/pooling, plus DCNv3's sampling cost ``5 * n * k * c``), see
``mmcv_custom/flops.py``. The model is built on the ``meta`` device, so even InternImage-G costs no
memory or compute (``--device cpu`` runs a real forward instead).

    python tools/get_flops.py --size t                       # InternImage-T classifier at 224
    python tools/get_flops.py --size l --shape 384
    python tools/get_flops.py configs/coco/mask-rcnn_internimage-t_fpn_1x_coco.py --shape 800 1280
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

import torch
from mmengine.config import DictAction

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

DEFAULT_RES = dict(t=224, s=224, b=224, l=384, xl=384, h=640, g=512)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('config', nargs='?', help='config file (mmdet, mmseg or mmpretrain)')
    p.add_argument('--size', choices=sorted(DEFAULT_RES), help='published InternImage classifier (no config)')
    p.add_argument('--shape', type=int, nargs='+', help='input H [W] (default: 224/384/640/512 by size, '
                                                         '1280x800 for detection, 512x512 otherwise)')
    p.add_argument('--backbone-only', action='store_true', help='count the backbone alone')
    p.add_argument('--core-op', default=None, help="override the backbone's core_op (e.g. DCNv3_pytorch)")
    p.add_argument('--device', default='meta', help="'meta' (shapes only, default) or 'cpu'/'cuda'")
    p.add_argument('--cfg-options', nargs='+', action=DictAction, default={}, metavar='KEY=VALUE',
                   help='override config entries, as in tools/train.py (parsed by mmengine\'s '
                   'DictAction: numbers, booleans, None, lists and tuples; nothing is evaluated)')
    args = p.parse_args(argv)
    if (args.config is None) == (args.size is None):
        p.error('give either a CONFIG or --size')
    return args


def _scope_of(cfg) -> str:
    scope = cfg.get('default_scope')
    if scope:
        return scope
    imports = (cfg.get('custom_imports') or {}).get('imports', [])
    for name in ('mmdet', 'mmseg', 'mmpretrain'):
        if any(str(i).startswith(name) for i in imports):
            return name
    return 'mmpretrain'


def build(args):
    """(model, scope) on the requested device."""
    from mmengine.config import Config
    from mmengine.registry import DefaultScope

    if args.size:
        import mmpretrain_custom
        cfg_model, scope = mmpretrain_custom.models.internimage_cls_model(args.size), 'mmpretrain'
    else:
        cfg = Config.fromfile(args.config)
        if args.cfg_options:
            cfg.merge_from_dict(args.cfg_options)
        scope = _scope_of(cfg)
        cfg_model = cfg.model
        importlib.import_module({'mmdet': 'mmdet_custom', 'mmseg': 'mmseg_custom'}.get(scope, 'mmpretrain_custom'))
    if args.core_op:
        cfg_model['backbone']['core_op'] = args.core_op
    registry = importlib.import_module(f'{scope}.registry').MODELS
    importlib.import_module(f'{scope}.utils').register_all_modules(init_default_scope=False)
    with DefaultScope.overwrite_default_scope(scope), torch.device(args.device):
        model = registry.build(cfg_model)
    return model.eval(), scope


def forward_fn(model, scope: str, shape: tuple[int, int], device: str, backbone_only: bool):
    x = torch.zeros(1, 3, *shape, device=device)
    if backbone_only:
        return model.backbone if hasattr(model, 'backbone') else model, lambda: (
            model.backbone(x) if hasattr(model, 'backbone') else model(x))
    if scope == 'mmdet':
        from mmdet.structures import DetDataSample

        h, w = shape
        sample = DetDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w),
                                             batch_input_shape=(h, w), scale_factor=(1.0, 1.0)))
        return model, lambda: model(x, [sample], mode='tensor')
    return model, lambda: model(x, mode='tensor')


def main(argv=None):
    args = parse_args(argv)
    import mmcv_custom  # noqa: F401
    from mmcv_custom.flops import count_flops

    model, scope = build(args)
    if args.shape:
        shape = (args.shape[0], args.shape[-1]) if len(args.shape) <= 2 else None
        if shape is None:
            raise SystemExit('--shape takes H or H W')
    elif args.size:
        shape = (DEFAULT_RES[args.size],) * 2
    else:
        shape = (800, 1280) if scope == 'mmdet' else (512, 512)
    counted, run = forward_fn(model, scope, shape, args.device, args.backbone_only)
    try:
        flops, parts = count_flops(counted, run)
    except (NotImplementedError, RuntimeError) as e:
        if args.device != 'meta':
            raise
        print(f'meta forward failed ({type(e).__name__}: {str(e).splitlines()[0]}); counting on cpu',
              file=sys.stderr)
        args.device = 'cpu'
        model, scope = build(args)
        counted, run = forward_fn(model, scope, shape, 'cpu', args.backbone_only)
        flops, parts = count_flops(counted, run)
    params = sum(p.numel() for p in counted.parameters())
    what = f'InternImage-{args.size.upper()} classifier' if args.size else args.config
    if args.backbone_only:
        what += ' (backbone only)'
    print('=' * 40)
    print(f'Model: {what}')
    print(f'Input shape: (3, {shape[0]}, {shape[1]})')
    print(f'Flops: {flops / 1e9:.2f} GFLOPs  (DCNv3 sampling {parts["dcnv3_sampling"] / 1e9:.2f} G)')
    print(f'Params: {params / 1e6:.2f} M')
    print('=' * 40)
    return flops, params


if __name__ == '__main__':
    main()
