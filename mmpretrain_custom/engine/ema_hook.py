"""mmpretrain's ``EMAHook`` for checkpoints that keep their weights under ``model``.

When a checkpoint is loaded (``load_from``, ``tools/test.py CONFIG CKPT``), mmpretrain's hook copies
``checkpoint['state_dict']`` into the EMA model. The published InternImage ImageNet files have no
``state_dict`` entry (their weights sit under ``model``), so evaluating them with an EMA config
stopped with ``KeyError: 'state_dict'``. This hook hands the weights over under that name first.
"""
from __future__ import annotations

from mmpretrain.engine.hooks import EMAHook
from mmpretrain.registry import HOOKS

from mmcv_custom.checkpoint import extract_state_dict

__all__ = ['PublishedCheckpointEMAHook']


@HOOKS.register_module()
class PublishedCheckpointEMAHook(EMAHook):
    """``EMAHook`` (same arguments) that also accepts published checkpoints (weights under ``model``)."""

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        if 'ema_state_dict' not in checkpoint and 'state_dict' not in checkpoint:
            # A new dict: the runner loads the model from the original one afterwards.
            checkpoint = {**checkpoint, 'state_dict': extract_state_dict(checkpoint)}
        super().after_load_checkpoint(runner, checkpoint)
