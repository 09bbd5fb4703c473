"""ONNX export of DCNv3 in two forms, and the ONNX Runtime custom-op library that runs the second.

- ``'gridsample'``: every DCNv3 layer is lowered to standard ONNX operators by exporting the
  ``grid_sample`` reference (:func:`ops_dcnv3.functions.dcnv3_core_pytorch`: ``GridSample``,
  opset >= 16, plus element-wise ops). Any runtime that implements the standard runs the file.
- ``'custom'``: every DCNv3 layer becomes one ``DCNv3`` node of the ``ops_dcnv3`` domain (version 1)
  with the operator's arguments as attributes. ONNX Runtime runs it with the custom-op library
  built from the same C++ CPU kernel as ``ops_dcnv3._C`` (``csrc/onnxruntime/``,
  ``make deploy-ortlib``); other runtimes need their own implementation of the node.

Exporting uses torch's TorchScript-based exporter (``torch.onnx.export(..., dynamo=False)``):
it traces the model in seconds where the dynamo exporter takes minutes for InternImage, and the
custom node comes from a symbolic registered for ``ops_dcnv3::dcnv3_forward``.
"""
from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch

from .modules.dcnv3 import DCNv3

__all__ = ['DCNV3_DOMAIN', 'DCNV3_DOMAIN_VERSION', 'FORMS', 'MIN_OPSET', 'dcnv3_export_form',
           'register_dcnv3_symbolic', 'custom_op_library', 'ORT_LIBRARY_NAME']

DCNV3_DOMAIN = 'ops_dcnv3'
DCNV3_DOMAIN_VERSION = 1
FORMS = ('gridsample', 'custom')
# GridSample entered the standard in opset 16.
MIN_OPSET = 16
ORT_LIBRARY_NAME = 'libdcnv3_onnxruntime.so'
_HERE = os.path.dirname(os.path.abspath(__file__))
_ROOT = os.path.dirname(_HERE)


def _dcnv3_symbolic(g, input, offset, mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                    dilation_h, dilation_w, group, group_channels, offset_scale, remove_center):
    from torch.onnx import symbolic_helper as sh

    ints = dict(kernel_h=kernel_h, kernel_w=kernel_w, stride_h=stride_h, stride_w=stride_w,
                pad_h=pad_h, pad_w=pad_w, dilation_h=dilation_h, dilation_w=dilation_w,
                group=group, group_channels=group_channels, remove_center=remove_center)
    attrs = {f'{k}_i': sh._get_const(v, 'i', k) for k, v in ints.items()}
    attrs['offset_scale_f'] = sh._get_const(offset_scale, 'f', 'offset_scale')
    out = g.op(f'{DCNV3_DOMAIN}::DCNv3', input, offset, mask, **attrs)
    # Same dtype and rank as the input; the spatial size depends on the attributes only.
    out.setType(input.type().with_sizes([None] * 4) if input.type().dim() == 4 else input.type())
    return out


def register_dcnv3_symbolic(opset: int) -> None:
    """Map ``ops_dcnv3::dcnv3_forward`` to one custom-domain ``DCNv3`` node in ``opset``."""
    torch.onnx.register_custom_op_symbolic('ops_dcnv3::dcnv3_forward', _dcnv3_symbolic, opset)


@contextlib.contextmanager
def dcnv3_export_form(model: torch.nn.Module, form: str) -> Iterator[int]:
    """Within the block, ``model``'s DCNv3 layers export in ``form`` ('gridsample' or 'custom').

    'gridsample' pins every :class:`~ops_dcnv3.modules.DCNv3` layer to the ``grid_sample``
    reference (same numbers as the compiled kernel up to float rounding); 'custom' keeps the
    compiled operator, whose symbolic must be registered (:func:`register_dcnv3_symbolic`).
    Yields the number of DCNv3 layers; the layers are restored afterwards.
    """
    if form not in FORMS:
        raise ValueError(f'--dcnv3 must be one of {FORMS}, got {form!r}')
    layers = [m for m in model.modules() if isinstance(m, DCNv3)]
    saved = [m.__dict__.get('use_reference') for m in layers]
    try:
        for m in layers:
            if form == 'gridsample':
                m.use_reference = True
            elif m.use_reference:
                # DCNv3_pytorch layers would lower to GridSample: keep 'custom' meaning one node each.
                m.use_reference = False
        yield len(layers)
    finally:
        for m, value in zip(layers, saved):
            if value is None:
                m.__dict__.pop('use_reference', None)
            else:
                m.use_reference = value


def custom_op_library(build_dir: str | None = None) -> str:
    """Path of the ONNX Runtime custom-op library for ``DCNv3`` nodes.

    Raises:
        FileNotFoundError: naming the command that builds it, when it has not been built.
    """
    build_dir = build_dir or os.environ.get('DCNV3_ORT_BUILD_DIR') or os.path.join(
        _ROOT, 'build', 'onnxruntime')
    path = os.path.join(build_dir, ORT_LIBRARY_NAME)
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f'the ONNX Runtime custom-op library for DCNv3 is not built ({path} is missing): run '
            '`make deploy-ortlib` (or `bash tools/deploy/build_ort_ops.sh`) in the repository '
            "root, or export with --dcnv3 gridsample, which needs no library")
    return path
