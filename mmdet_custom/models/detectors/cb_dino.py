"""DINO on a composite backbone (:class:`~mmcv_custom.models.CBInternImage`), as published.

The composite backbone returns one feature tuple per member. Training runs the neck, the transformer
and the head on each member's features and adds the losses, the earlier members' weighted by
``cb_loss_weights`` (published: 0.5 for the first, 1 for the second; the "assistant" supervision of
CBNetV2). Inference uses the last member's features only.
"""
from __future__ import annotations

from typing import Sequence

import torch
from mmdet.models.detectors import DINO
from mmdet.registry import MODELS
from mmdet.structures import SampleList

__all__ = ['CBDINO']


@MODELS.register_module()
class CBDINO(DINO):
    """DINO whose backbone returns one feature tuple per composite member.

    Args:
        cb_loss_weights: Loss weight of each member, first to last; ``None``: 0.5 for every member
            but the last, 1 for the last (published).
        *args, **kwargs: :class:`mmdet.models.detectors.DINO` arguments.
    """

    def __init__(self, *args, cb_loss_weights: Sequence[float] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.cb_loss_weights = None if cb_loss_weights is None else [float(w) for w in cb_loss_weights]

    def _member_feats(self, batch_inputs: torch.Tensor) -> tuple:
        feats = self.backbone(batch_inputs)
        if not (isinstance(feats, (tuple, list)) and feats and isinstance(feats[0], (tuple, list))):
            raise TypeError('CBDINO needs a composite backbone (one feature tuple per member, e.g. '
                            f'CBInternImage), got {type(self.backbone).__name__}')
        return tuple(self.neck(f) if self.with_neck else f for f in feats)

    def extract_feat(self, batch_inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Features of the last member (used for inference)."""
        return self._member_feats(batch_inputs)[-1]

    def loss(self, batch_inputs: torch.Tensor, batch_data_samples: SampleList) -> dict:
        """DINO losses of every member, weighted; keys ``cb{k}.<loss name>``."""
        members = self._member_feats(batch_inputs)
        weights = self.cb_loss_weights or [0.5] * (len(members) - 1) + [1.0]
        if len(weights) != len(members):
            raise ValueError(f'cb_loss_weights has {len(weights)} entries for {len(members)} members')
        losses = {}
        for k, (feats, w) in enumerate(zip(members, weights)):
            head_inputs = self.forward_transformer(feats, batch_data_samples)
            member_losses = self.bbox_head.loss(**head_inputs, batch_data_samples=batch_data_samples)
            for name, value in member_losses.items():
                if 'loss' in name:
                    value = [v * w for v in value] if isinstance(value, (list, tuple)) else value * w
                losses[f'cb{k}.{name}'] = value
        return losses
