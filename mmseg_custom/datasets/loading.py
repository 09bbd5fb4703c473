"""Annotation loading that rejects label maps with values outside the class range.

mmseg's ``LoadAnnotations`` casts every label map to ``uint8`` and trusts its values: a map
written with the wrong palette or for another dataset silently trains on wrapped-around or
out-of-range class ids (the loss then ignores them or indexes past the classifier). The transform
here reads the map the same way but checks the raw values first and names the offending file.
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

    Values are checked as stored in the file, before ``reduce_zero_label`` and the dataset's
    ``label_map``. A stored value ``v`` is valid when it is ``ignore_index`` or when
    ``0 <= v < num_classes`` (``0 <= v <= num_classes`` with ``reduce_zero_label``, where 0 is
    "unlabelled" and ``v`` becomes class ``v - 1``).

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
        raw = mmcv.imfrombytes(fileio.get(path, backend_args=self.backend_args),
                               flag='unchanged', backend=self.imdecode_backend)
        if raw is None:
            raise ValueError(f'could not decode label map {path!r}')
        raw = raw.squeeze()
        reduce = results.get('reduce_zero_label', False) if self.reduce_zero_label is None \
            else self.reduce_zero_label
        if reduce != results.get('reduce_zero_label', reduce):
            raise ValueError(f'reduce_zero_label={reduce} here but the dataset has '
                             f'{results["reduce_zero_label"]}; set it in one place')
        self._check(raw, path, reduce)
        seg = raw.astype(np.uint8)
        if reduce:
            # 0 (unlabelled) -> 255, v -> v - 1; computed without uint8 underflow.
            seg = np.where(seg == 0, 255, seg - 1).astype(np.uint8)
            seg[seg == 254] = 255
        if results.get('label_map') is not None:
            original = seg.copy()
            for old_id, new_id in results['label_map'].items():
                seg[original == old_id] = new_id
        results['gt_seg_map'] = seg
        results['seg_fields'].append('gt_seg_map')

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(num_classes={self.num_classes}, '
                f'ignore_index={self.ignore_index}, reduce_zero_label={self.reduce_zero_label}, '
                f"imdecode_backend='{self.imdecode_backend}')")
