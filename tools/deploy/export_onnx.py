"""Export an InternImage model (classification, segmentation, detection) to ONNX.

    python tools/deploy/export_onnx.py CONFIG [CHECKPOINT] --out MODEL.onnx [--shape H W]
        [--batch N] [--dynamic] [--opset K] [--dcnv3 gridsample|custom] [--verify] [--image IMG]

Without CHECKPOINT the model keeps random weights (for trying the export). ``--dcnv3 gridsample``
(default) lowers DCNv3 to standard ONNX ops (GridSample, opset >= 16); ``--dcnv3 custom`` writes one
``ops_dcnv3::DCNv3`` node per layer, run by ONNX Runtime with the library of ``make deploy-ortlib``.
``--dynamic`` makes batch, height and width dynamic. ``--verify`` runs the file in ONNX Runtime on a
random input and on a real image (``--image``, else a synthetic one) and prints the max abs
difference from PyTorch (the compiled DCNv3 kernel). See tools/deploy/common.py for what each task
exports; detection also writes the RoI head files beside MODEL.onnx.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys
import tempfile
import warnings

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from ops_dcnv3.onnx import (  # noqa: E402
    DCNV3_DOMAIN,
    DCNV3_DOMAIN_VERSION,
    FORMS,
    MIN_OPSET,
    dcnv3_export_form,
    register_dcnv3_symbolic,
)
from tools.deploy import common  # noqa: E402
from tools.deploy.common import DeployError  # noqa: E402

DEFAULT_SHAPES = {'mmpretrain': (224, 224), 'mmseg': (512, 512), 'mmdet': (800, 1344)}


def max_opset() -> int:
    from torch.onnx import _constants

    return _constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET


def parse_args(argv=None):
    p = argparse.ArgumentParser(description='Export an InternImage model to ONNX.')
    p.add_argument('config')
    p.add_argument('checkpoint', nargs='?', default=None,
                   help='trained weights (default: random weights)')
    p.add_argument('--out', required=True, help='the .onnx file to write')
    p.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                   help='input height and width (default: 224 224 classification, 512 512 '
                        'segmentation, 800 1344 detection)')
    p.add_argument('--batch', type=int, default=1)
    p.add_argument('--dynamic', action='store_true', help='dynamic batch, height and width')
    p.add_argument('--opset', type=int, default=17)
    p.add_argument('--dcnv3', choices=FORMS, default='gridsample',
                   help='gridsample: standard ONNX ops; custom: one ops_dcnv3::DCNv3 node per layer')
    p.add_argument('--verify', action='store_true',
                   help='compare ONNX Runtime with PyTorch on a random and a real image')
    p.add_argument('--image', help='image for --verify (default: a synthetic one)')
    return p.parse_args(argv)


def check_args(args) -> None:
    top = max_opset()
    if not MIN_OPSET <= args.opset <= top:
        raise DeployError(f'--opset {args.opset} is not supported: DCNv3 export needs GridSample '
                          f'(opset >= {MIN_OPSET}) and the exporter writes opsets up to {top}')
    if args.batch < 1:
        raise DeployError(f'--batch must be >= 1, got {args.batch}')
    if args.shape is not None and min(args.shape) < 32:
        raise DeployError(f'--shape must be at least 32 x 32 (the backbone downsamples 32x), '
                          f'got {args.shape}')
    if args.image is not None and not osp.isfile(args.image):
        raise DeployError(f'--image {args.image!r} does not exist')


def _export(module: torch.nn.Module, inputs: tuple, path: str, input_names: list[str],
            output_names: list[str], dynamic_axes: dict | None, opset: int, custom: bool) -> None:
    module.eval()  # the exporter restores the wrapper's mode afterwards, recursively
    with warnings.catch_warnings():
        # The tracer warns about every Python-level shape check it folds: noise here.
        warnings.simplefilter('ignore')
        torch.onnx.export(
            module, inputs, path, dynamo=False, opset_version=opset, input_names=input_names,
            output_names=output_names, dynamic_axes=dynamic_axes, do_constant_folding=True,
            custom_opsets={DCNV3_DOMAIN: DCNV3_DOMAIN_VERSION} if custom else None)


def image_axes(dynamic: bool) -> dict | None:
    return {0: 'batch', 2: 'height', 3: 'width'} if dynamic else None


def export(args, cfg, scope: str, model: torch.nn.Module) -> list[str]:
    """Writes the ONNX file(s); returns their paths."""
    h, w = args.shape or DEFAULT_SHAPES[scope]
    image = torch.randn(args.batch, 3, h, w)
    custom = args.dcnv3 == 'custom'
    if custom:
        register_dcnv3_symbolic(args.opset)
    dyn = image_axes(args.dynamic)
    written = []
    with torch.no_grad(), dcnv3_export_form(model, args.dcnv3) as num_dcn, \
            common.exportable_pooling(model, args.dynamic):
        if scope == 'mmpretrain':
            _export(common.ClsExport(model), (image,), args.out, ['image'], ['logits'],
                    dyn and {'image': dyn, 'logits': {0: 'batch'}}, args.opset, custom)
            written.append(args.out)
        elif scope == 'mmseg':
            _export(common.SegExport(model), (image,), args.out, ['image'], ['seg_logits'],
                    dyn and {'image': dyn, 'seg_logits': dyn}, args.opset, custom)
            written.append(args.out)
        else:
            written += export_detector(model, image, args, custom)
    print(f'exported {type(model).__name__} ({num_dcn} DCNv3 layers, --dcnv3 {args.dcnv3}, '
          f'opset {args.opset}, input {tuple(image.shape)}{", dynamic" if args.dynamic else ""}) '
          f'to {", ".join(written)}')
    return written


def export_detector(model, image: torch.Tensor, args, custom: bool) -> list[str]:
    if not (hasattr(model, 'rpn_head') and hasattr(model, 'roi_head')):
        raise DeployError(f'detection export handles RPN + RoI-head detectors (Mask R-CNN); '
                          f'{type(model).__name__} of {args.config!r} is not one')
    stages = common.roi_stages(model)  # refuses unsupported RoI heads before exporting anything
    wrapper = common.DetExport(model).eval()
    feats = wrapper(image)
    levels = len(feats) // 3  # features, RPN scores, RPN deltas: one of each per level
    names = ([f'feat{i}' for i in range(levels)] + [f'rpn_cls{i}' for i in range(levels)]
             + [f'rpn_reg{i}' for i in range(levels)])
    dyn = image_axes(args.dynamic)
    axes = dyn and {'image': dyn, **{n: {0: 'batch', 2: f'{n}_h', 3: f'{n}_w'} for n in names}}
    _export(wrapper, (image,), args.out, ['image'], names, axes, args.opset, custom)
    written = [args.out]
    # RoI heads: a few proposals on the exported features; RoI count and feature sizes dynamic.
    feats = feats[:levels]
    hh, ww = image.shape[2:]
    rois = torch.tensor([[0, 4.0, 4.0, ww / 2, hh / 2], [0, 8.0, 2.0, ww - 1.0, hh - 1.0],
                         [0, 0.0, 0.0, 40.0, 30.0]])
    for suffix, extractor, head in stages:
        n = extractor.num_inputs
        module = common.RoIExport(extractor, head)
        outputs = module(rois, *feats[:n])
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        out_names = ['cls_score', 'bbox_pred'] if 'bbox' in suffix else ['mask_pred']
        out_names = out_names[:len(outputs)]
        axes = {'rois': {0: 'rois'}, **{f'feat{i}': {2: f'feat{i}_h', 3: f'feat{i}_w'}
                                        for i in range(n)},
                **{o: {0: 'rois'} for o in out_names}}
        path = common.sibling_path(args.out, suffix)
        _export(module, (rois, *feats[:n]), path, ['rois'] + [f'feat{i}' for i in range(n)],
                out_names, axes, args.opset, False)
        written.append(path)
    return written


def synthetic_image(path: str, h: int, w: int) -> str:
    from tools.demo_data.common import make_rng, textured_background, write_image

    write_image(path, textured_background(make_rng(0), h, w))
    return path


def verify(args, cfg, scope: str, model: torch.nn.Module, paths: list[str]) -> dict[str, float]:
    """Max abs difference between ONNX Runtime and PyTorch (compiled DCNv3) per input kind."""
    h, w = args.shape or DEFAULT_SHAPES[scope]
    wrapper = {'mmpretrain': common.ClsExport, 'mmseg': common.SegExport,
               'mmdet': common.DetExport}[scope](model).eval()
    session = common.ort_session(paths[0])
    torch.manual_seed(1)
    with tempfile.TemporaryDirectory() as tmp:
        image = args.image or synthetic_image(osp.join(tmp, 'verify.png'), h, w)
        real, _ = common.preprocess(model, cfg, scope, image)
    inputs = {'random': torch.randn(args.batch, 3, h, w)}
    if args.dynamic or tuple(real.shape[2:]) == (h, w):
        inputs['image'] = real
    else:
        print(f'verify: the image preprocesses to {tuple(real.shape[2:])}, not the static export '
              f'size {(h, w)}: export with --dynamic to run it; checking the random input only')
    diffs = {}
    for kind, x in inputs.items():
        with torch.no_grad():
            expected = wrapper(x)
        expected = expected if isinstance(expected, (tuple, list)) else (expected,)
        got = common.run_session(session, x)
        diffs[kind] = max(float((e - g).abs().max()) for e, g in zip(expected, got))
        print(f'verify ({kind} input {tuple(x.shape)}): max abs difference ONNX Runtime vs '
              f'PyTorch = {diffs[kind]:.3g}')
    return diffs


def main(argv=None) -> dict[str, float] | None:
    args = parse_args(argv)
    check_args(args)
    cfg, scope = common.load_config(args.config)
    torch.manual_seed(0)  # random weights (no CHECKPOINT) are reproducible
    model = common.build_model(cfg, scope, args.checkpoint)
    paths = export(args, cfg, scope, model)
    return verify(args, cfg, scope, model, paths) if args.verify else None


if __name__ == '__main__':
    try:
        main()
    except DeployError as e:
        sys.exit(f'error: {e}')
