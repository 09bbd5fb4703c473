"""Shared by the deployment tools: building a model from its config, the exported tensor modules,
preprocessing an image as the config's test pipeline does, and ONNX Runtime sessions.

What is exported, per task (the input is always the data preprocessor's output: normalised,
padded, (N, 3, H, W) float32):

- classification (mmpretrain): ``logits`` (N, num_classes), before softmax;
- segmentation (mmseg, whole-image): ``seg_logits`` (N, K, H, W), resized to the input size as
  mmseg's ``predict_by_feat`` does;
- detection (mmdet, RPN + ``StandardRoIHead`` detectors: Mask R-CNN, Faster R-CNN): the main file
  holds backbone + neck + RPN head (FPN features and the RPN's per-level scores and box deltas); the
  RoI heads go to sibling files ``<name>.roi_bbox.onnx`` / ``<name>.roi_mask.onnx`` taking ``rois``
  (K, 5) and the features -> the heads' raw outputs (multi-level RoIAlign included). Proposal NMS,
  box decoding, NMS and mask pasting are mmdet's own functions, run by ``ort_infer.py``.
"""
from __future__ import annotations

import contextlib
import os
import os.path as osp
import sys
from collections.abc import Iterator, Sequence

import torch
import torch.nn as nn

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

TASKS = ('mmpretrain', 'mmseg', 'mmdet')


class DeployError(ValueError):
    """Bad input to a deployment tool; the message names the argument."""


def load_config(config: str):
    """The config and its task scope; a config that builds no model is refused."""
    from mmengine.config import Config

    if not osp.isfile(config):
        raise DeployError(f'CONFIG {config!r} does not exist')
    cfg = Config.fromfile(config)
    if not isinstance(cfg.get('model'), dict):
        raise DeployError(f'CONFIG {config!r} defines no `model` to export (a dataset, schedule or '
                          'runtime config?): give a full model config such as '
                          'configs/imagenet/internimage-t_8xb128_in1k-224.py')
    scope = cfg.get('default_scope')
    if scope not in TASKS:
        raise DeployError(f'CONFIG {config!r} has default_scope {scope!r}; the deployment tools '
                          f'handle {list(TASKS)}')
    return cfg, scope


def build_model(cfg, scope: str, checkpoint: str | None = None) -> nn.Module:
    """The config's model in eval mode on the CPU, with ``checkpoint`` loaded (checked to fit).

    Without a checkpoint the weights are the constructors' random ones (no pretrained download).
    """
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner import load_checkpoint

    import mmcv_custom  # noqa: F401  the InternImage backbone and the checkpoint allow-list
    import mmcv_custom.safe_load  # noqa: F401
    from mmcv_custom.checkpoint import checked_whole_model_loading

    init_default_scope(scope)
    model_cfg = cfg.model.copy()
    _drop_pretrained(model_cfg)
    model = MODELS.build(model_cfg)
    meta = dict(cfg.get('metainfo') or {})
    if checkpoint is not None:
        if not osp.isfile(checkpoint):
            raise DeployError(f'CHECKPOINT {checkpoint!r} does not exist')
        with checked_whole_model_loading(checkpoint):
            ckpt = load_checkpoint(model, checkpoint, map_location='cpu', logger='silent')
        meta = ckpt.get('meta', {}).get('dataset_meta') or meta
    model.dataset_meta = meta
    return model.eval()


def _drop_pretrained(cfg) -> None:
    # Exports carry the checkpoint's weights or random ones: never fetch ImageNet weights by URL.
    if isinstance(cfg, dict):
        init = cfg.get('init_cfg')
        if isinstance(init, dict) and init.get('type') == 'Pretrained':
            cfg['init_cfg'] = None
        for v in cfg.values():
            _drop_pretrained(v)
    elif isinstance(cfg, (list, tuple)):
        for v in cfg:
            _drop_pretrained(v)


class ClsExport(nn.Module):
    """Image -> classification logits."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.model(image, mode='tensor')


class SegExport(nn.Module):
    """Image -> per-pixel class logits at the input size (whole-image inference)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        from mmseg.models.utils import resize

        logits = self.model._forward(image)
        return resize(logits, size=image.shape[2:], mode='bilinear',
                      align_corners=self.model.decode_head.align_corners)


class DetExport(nn.Module):
    """Image -> FPN features, then the RPN's per-level class scores and box deltas."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:
        feats = self.model.extract_feat(image)
        cls_scores, bbox_preds = self.model.rpn_head(feats)
        return (*feats, *cls_scores, *bbox_preds)


def _pool_matrix(size: int, out: int, like: torch.Tensor) -> torch.Tensor:
    """(out, size) averaging weights of adaptive average pooling along one axis."""
    m = like.new_zeros(out, size)
    for i in range(out):
        start, end = (i * size) // out, -((-(i + 1) * size) // out)
        m[i, start:end] = 1.0 / (end - start)
    return m


class MatmulAdaptiveAvgPool2d(nn.Module):
    """``nn.AdaptiveAvgPool2d`` as two matrix products: same bins and weights, exportable where the
    output size does not divide the input size (UperNet's pyramid pooling, scale 3 or 6 on 16x16),
    which torch's ONNX exporter refuses. The matrices are fixed at the traced input size."""

    def __init__(self, output_size):
        super().__init__()
        self.output_size = output_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = int(x.shape[-2]), int(x.shape[-1])
        oh, ow = (self.output_size if isinstance(self.output_size, (tuple, list))
                  else (self.output_size, self.output_size))
        oh, ow = oh or h, ow or w
        return _pool_matrix(h, oh, x) @ x @ _pool_matrix(w, ow, x).t()


@contextlib.contextmanager
def exportable_pooling(model: nn.Module, dynamic: bool) -> Iterator[None]:
    """Within the block, adaptive average pools with outputs larger than 1x1 are matrix products."""
    swaps = []
    for parent in model.modules():
        for name, child in parent.named_children():
            if isinstance(child, nn.AdaptiveAvgPool2d) and child.output_size not in (1, (1, 1)):
                swaps.append((parent, name, child))
    if swaps and dynamic:
        raise DeployError(f'--dynamic: {type(model).__name__} has adaptive average pooling to '
                          f'{swaps[0][2].output_size} (a pyramid pooling module), which ONNX can only '
                          'express for a fixed input size: export without --dynamic, with --shape')
    try:
        for parent, name, child in swaps:
            setattr(parent, name, MatmulAdaptiveAvgPool2d(child.output_size))
        yield
    finally:
        for parent, name, child in swaps:
            setattr(parent, name, child)


def multilevel_roi_align(extractor: nn.Module, feats: Sequence[torch.Tensor],
                         rois: torch.Tensor) -> torch.Tensor:
    """mmdet's ``SingleRoIExtractor`` in exportable form.

    Each RoI is pooled on the level that ``extractor.map_roi_levels`` assigns it; instead of
    gathering the RoIs of each level (data-dependent shapes), every level pools all RoIs and a
    mask keeps the assigned one. torchvision's ``roi_align`` is mmcv's ``RoIAlign`` (avg pooling,
    same sampling) and exports to the standard ``RoiAlign``.
    """
    from torchvision.ops import roi_align

    levels = extractor.map_roi_levels(rois, len(feats))
    out = None
    for i, (feat, layer) in enumerate(zip(feats, extractor.roi_layers)):
        if getattr(layer, 'pool_mode', 'avg') != 'avg':
            raise DeployError('RoI extractor: only average-pooled RoIAlign layers can be exported')
        pooled = roi_align(feat, rois, layer.output_size, layer.spatial_scale,
                           layer.sampling_ratio, layer.aligned)
        pooled = pooled * (levels == i).to(pooled.dtype).view(-1, 1, 1, 1)
        out = pooled if out is None else out + pooled
    return out


class RoIExport(nn.Module):
    """(rois (K, 5), FPN features...) -> a RoI head's raw outputs (scores and deltas, or masks)."""

    def __init__(self, extractor: nn.Module, head: nn.Module):
        super().__init__()
        self.extractor = extractor
        self.head = head

    def forward(self, rois: torch.Tensor, *feats: torch.Tensor):
        n = self.extractor.num_inputs
        return self.head(multilevel_roi_align(self.extractor, feats[:n], rois))


def roi_stages(model: nn.Module) -> list[tuple[str, nn.Module, nn.Module]]:
    """(file suffix, RoI extractor, head) of the bbox and mask heads of a ``StandardRoIHead``."""
    from mmdet.models.roi_heads import StandardRoIHead

    roi_head = model.roi_head
    if type(roi_head) is not StandardRoIHead:
        raise DeployError(f'detection export handles StandardRoIHead detectors (Mask R-CNN, Faster '
                          f'R-CNN); {type(roi_head).__name__} is not exported yet')
    return [(f'roi_{kind}', getattr(roi_head, f'{kind}_roi_extractor'),
             getattr(roi_head, f'{kind}_head'))
            for kind in ('bbox', 'mask') if getattr(roi_head, f'with_{kind}', False)]


def sibling_path(path: str, suffix: str) -> str:
    """``model.onnx`` -> ``model.<suffix>.onnx``."""
    base, ext = osp.splitext(path)
    return f'{base}.{suffix}{ext or ".onnx"}'


def inference_pipeline(cfg, scope: str) -> list:
    """The config's test pipeline without annotation loaders (inference has no labels)."""
    pipeline = cfg.get('test_pipeline') or cfg.test_dataloader.dataset.pipeline
    return [t for t in pipeline if 'Annotations' not in t['type']]


def preprocess(model: nn.Module, cfg, scope: str, image: str) -> tuple[torch.Tensor, list]:
    """``image`` through the test pipeline and the model's data preprocessor: (input, samples)."""
    from mmengine.dataset import Compose
    from mmengine.registry import init_default_scope

    init_default_scope(scope)
    data = Compose(inference_pipeline(cfg, scope))(dict(img_path=image))
    batch = model.data_preprocessor(dict(inputs=[data['inputs']],
                                         data_samples=[data['data_samples']]), False)
    return batch['inputs'], batch['data_samples']


def model_uses_custom_ops(path: str) -> bool:
    import onnx

    from ops_dcnv3.onnx import DCNV3_DOMAIN

    proto = onnx.load(path, load_external_data=False)
    return any(o.domain == DCNV3_DOMAIN for o in proto.opset_import)


def ort_session(path: str, threads: int | None = None):
    """An ONNX Runtime CPU session; registers the DCNv3 custom-op library when the file uses it."""
    import onnxruntime as ort

    from ops_dcnv3.onnx import custom_op_library

    if not osp.isfile(path):
        raise DeployError(f'MODEL {path!r} does not exist')
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    if model_uses_custom_ops(path):
        opts.register_custom_ops_library(custom_op_library())
    return ort.InferenceSession(path, opts, providers=['CPUExecutionProvider'])


def run_session(session, *inputs: torch.Tensor) -> list[torch.Tensor]:
    feed = {i.name: t.detach().cpu().numpy() for i, t in zip(session.get_inputs(), inputs)}
    return [torch.from_numpy(o) for o in session.run(None, feed)]


def env_threads(threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)
        os.environ.setdefault('OMP_NUM_THREADS', str(threads))
