"""Annotation loading that rejects label maps with values outside the class range.

mmseg's ``LoadAnnotations`` casts every label map to ``uint8`` and trusts its values: a map
written with the wrong palette or for another dataset silently trains on wrapped-around or
out-of-range class ids (the loss then ignores them or indexes past the classifier).
:class:`LoadCheckedAnnotations` checks the values as stored in the file and then lets mmseg's
loader do the loading itself (``reduce_zero_label``, the dataset's ``label_map``).

It also fits the upstream inference pipelines unchanged: ``MMSegInferencer`` and
``mmseg.apis.inference_model`` only drop the transform named ``LoadAnnotations`` from a config's
test pipeline, and given an image without a label map (no ``seg_map_path``) this transform
passes the sample through.
"""
from __future__ import annotations

import mmcv
import numpy as np
from mmengine import fileio
from mmseg.datasets.transforms import LoadAnnotations
from mmseg.registry import TRANSFORMS

__all__ = ['LoadCheckedAnnotations']


@TRANSFORMS.register_module()
class LoadCheckedAnnotations(LoadAnnotations):
    """``LoadAnnotations`` that raises on label values outside ``[0, num_classes)``.

    Values are checked as stored in the file, before mmseg's ``uint8`` cast, ``reduce_zero_label``
    and the dataset's ``label_map``. A stored value ``v`` is valid when it is ``ignore_index`` or
    when ``0 <= v < num_classes`` (``0 <= v <= num_classes`` with ``reduce_zero_label``, where 0 is
    "unlabelled" and ``v`` becomes class ``v - 1``). The check decodes the map once more than
    mmseg's loader does (about a millisecond for an ADE20K map).

    Args:
        num_classes: Number of classes the model predicts (150 for ADE20K).
        ignore_index: Stored value that marks unlabelled pixels; always allowed.
        reduce_zero_label: As in ``LoadAnnotations``; ``None`` takes the dataset's setting.
        **kwargs: Passed to ``LoadAnnotations`` (``imdecode_backend``, ``backend_args``).
    """

    def __init__(self, num_classes: int, ignore_index: int = 255,
                 reduce_zero_label: bool | None = None, **kwargs) -> None:
        if not isinstance(num_classes, int) or not 0 < num_classes < 255:
            raise ValueError(f'num_classes must be an int in [1, 254], got {num_classes!r}')
        super().__init__(reduce_zero_label=reduce_zero_label, **kwargs)
        self.num_classes = num_classes
        self.ignore_index = ignore_index

    def transform(self, results: dict) -> dict:
        if results.get('seg_map_path') is None:  # an image alone (inference): no label map
            return results
        return super().transform(results)

    def _check(self, seg: np.ndarray, path: str, reduce_zero_label: bool) -> None:
        if seg.ndim != 2:
            raise ValueError(f'label map {path!r} must be single-channel (H, W), '
                             f'got shape {tuple(seg.shape)}')
        if seg.dtype.kind not in 'ui':
            raise ValueError(f'label map {path!r} must hold integer class ids, got {seg.dtype}')
        top = self.num_classes if reduce_zero_label else self.num_classes - 1
        values = np.unique(seg)
        bad = values[((values < 0) | (values > top)) & (values != self.ignore_index)]
        if bad.size:
            raise ValueError(
                f'label map {path!r} has values {bad[:10].tolist()} outside the class range '
                f'[0, {top}] (num_classes={self.num_classes}, '
                f'reduce_zero_label={reduce_zero_label}, ignore_index={self.ignore_index})')

    def _load_seg_map(self, results: dict) -> None:
        path = results['seg_map_path']
        dataset_reduce = results.get('reduce_zero_label', False)
        reduce = dataset_reduce if self.reduce_zero_label is None else self.reduce_zero_label
        if reduce != dataset_reduce:
            raise ValueError(f'reduce_zero_label={reduce} here but the dataset has '
                             f'{dataset_reduce}; set it in one place')
        raw = mmcv.imfrombytes(fileio.get(path, backend_args=self.backend_args),
                               flag='unchanged', backend=self.imdecode_backend)
        if raw is None:
            raise ValueError(f'could not decode label map {path!r}')
        self._check(raw.squeeze(), path, reduce)
        results.setdefault('reduce_zero_label', reduce)
        super()._load_seg_map(results)

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_classes={self.num_classes}, '
                f'ignore_index={self.ignore_index}, reduce_zero_label={self.reduce_zero_label}, '
                f"imdecode_backend='{self.imdecode_backend}')")
