"""Training-loop pieces for the mmpretrain configs: an EMA hook that reads published checkpoints."""
from .ema_hook import PublishedCheckpointEMAHook

__all__ = ['PublishedCheckpointEMAHook']
