"""Loading published InternImage checkpoints as they are.

The published files keep the weights under ``model`` (classification) or ``state_dict`` (detection and
segmentation, with ``backbone.`` prefixes), sometimes with DataParallel's ``module.`` prefix. These helpers
pick the weights out and strip the prefixes, so no offline conversion is needed.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Mapping, Union

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader

__all__ = ['extract_state_dict', 'strip_prefixes', 'load_backbone_state_dict']


def extract_state_dict(checkpoint: Mapping) -> OrderedDict:
    """The weights of a loaded checkpoint: its ``state_dict`` or ``model`` entry, else itself."""
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f'checkpoint must be a dict, got {type(checkpoint).__name__}')
    for key in ('state_dict', 'model'):
        if key in checkpoint and isinstance(checkpoint[key], Mapping):
            return OrderedDict(checkpoint[key])
    return OrderedDict(checkpoint)


def strip_prefixes(state_dict: Mapping, prefixes=('module.', 'backbone.')) -> OrderedDict:
    """Remove each of ``prefixes`` (in order) from the keys that start with it."""
    out = OrderedDict(state_dict)
    for prefix in prefixes:
        out = OrderedDict((k[len(prefix):] if k.startswith(prefix) else k, v) for k, v in out.items())
    return out


def load_backbone_state_dict(
        module: nn.Module,
        checkpoint: Union[str, Mapping],
        prefix: str | None = None,
        map_location: str = 'cpu',
        logger: str = 'current',
) -> tuple[list[str], list[str]]:
    """Load a (published) checkpoint into ``module`` non-strictly and log what did not match.

    Args:
        module: The model to load into.
        checkpoint: Path/URL understood by mmengine's ``CheckpointLoader``, or a loaded checkpoint.
        prefix: If given, only keys starting with it are used, with it removed (as mmengine's
            ``PretrainedInit``); ``module.`` and ``backbone.`` prefixes are always stripped.
        map_location: Where to load tensors.
        logger: mmengine logger name.

    Returns:
        ``(missing_keys, unexpected_keys)``.
    """
    source = checkpoint if isinstance(checkpoint, str) else '<state dict>'
    if isinstance(checkpoint, str):
        checkpoint = CheckpointLoader.load_checkpoint(checkpoint, map_location=map_location)
    state_dict = extract_state_dict(checkpoint)
    if prefix:
        if not prefix.endswith('.'):
            prefix += '.'
        state_dict = OrderedDict((k[len(prefix):], v) for k, v in state_dict.items() if k.startswith(prefix))
        if not state_dict:
            raise ValueError(f'no key of {source} starts with prefix {prefix!r}')
    state_dict = strip_prefixes(state_dict)
    own = module.state_dict()
    # Shape mismatches would make load_state_dict raise; report them as unexpected instead.
    mismatched = {k: (tuple(v.shape), tuple(own[k].shape)) for k, v in state_dict.items()
                  if k in own and isinstance(v, torch.Tensor) and v.shape != own[k].shape}
    for k in mismatched:
        state_dict.pop(k)
    result = module.load_state_dict(state_dict, strict=False)
    missing, unexpected = list(result.missing_keys), list(result.unexpected_keys)
    print_log(f'loaded {len(state_dict) - len(unexpected)} tensors from {source} into '
              f'{type(module).__name__}', logger=logger, level=logging.INFO)
    if missing:
        print_log(f'missing keys in source state_dict: {", ".join(missing)}', logger=logger,
                  level=logging.WARNING)
    if unexpected:
        print_log(f'unexpected keys in source state_dict: {", ".join(unexpected)}', logger=logger,
                  level=logging.WARNING)
    if mismatched:
        print_log('size mismatch, not loaded: ' + ', '.join(
            f'{k} {src} (checkpoint) vs {dst} (model)' for k, (src, dst) in mismatched.items()),
            logger=logger, level=logging.WARNING)
    return missing, unexpected + list(mismatched)
