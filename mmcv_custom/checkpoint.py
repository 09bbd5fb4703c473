"""Loading published InternImage checkpoints as they are.

The published files keep the weights under ``model`` (classification) or ``state_dict`` (detection and
segmentation, with ``backbone.`` prefixes), sometimes with DataParallel's ``module.`` prefix. A
backbone's ``init_cfg=dict(type='Pretrained', checkpoint=..., prefix=...)`` picks the weights out
and loads them with mmengine's loader (``revise_keys`` strips the prefixes), so no offline conversion
is needed. A classifier file in the published layout (what this project's classifier writes too)
counts as mmpretrain's ``backbone.*`` / ``head.*`` (:func:`published_classifier_parts`), so the
usual ``prefix='backbone.'`` picks its backbone.

Loading is non-strict (published files carry a classification head a detection backbone lacks),
so a checkpoint of another model would load silently as "everything missing".
:func:`check_state_dict_match` refuses that, naming the file and the likely cause; it guards the
backbone's ``init_cfg=dict(type='Pretrained')`` here, and whole-model loads by mmengine (Runner
``load_from``, mmdet/mmseg/mmpretrain ``init_*`` and inferencers) within
:func:`checked_whole_model_loading`.
"""
from __future__ import annotations

import contextlib
import logging
from collections import Counter, OrderedDict
from typing import Iterator, Mapping, Union

import torch
import torch.nn as nn
from mmengine.logging import print_log
from mmengine.runner import checkpoint as mmengine_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader

__all__ = ['extract_state_dict', 'published_classifier_parts', 'load_backbone_state_dict',
           'CheckpointMismatchError', 'check_state_dict_match', 'checked_whole_model_loading',
           'BACKBONE_REVISE_KEYS', 'PUBLISHED_BACKBONE_ROOTS']

# Prefixes a backbone's pretrained file may carry in front of the backbone's own keys: DataParallel's
# and a whole model's (mmengine ``revise_keys``, applied in order).
BACKBONE_REVISE_KEYS = [(r'^module\.', ''), (r'^backbone\.', '')]
# The backbone's top-level modules in a published classifier file; everything else there
# (``conv_head``, ``head``, the CLIP-style head of H/G) is the classification head.
PUBLISHED_BACKBONE_ROOTS = ('patch_embed', 'levels')

# Top-level parts of mmdet/mmseg models that a classification checkpoint never has.
_DENSE_PARTS = ('neck', 'rpn_head', 'roi_head', 'bbox_head', 'mask_head', 'decode_head',
                'auxiliary_head')
_PRETRAINED = "init_cfg=dict(type='Pretrained', checkpoint=...)"


class CheckpointMismatchError(ValueError):
    """A checkpoint that does not fit the model it is being loaded into."""


def extract_state_dict(checkpoint: Mapping) -> OrderedDict:
    """The weights of a loaded checkpoint: its ``state_dict`` or ``model`` entry, else itself."""
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f'checkpoint must be a dict, got {type(checkpoint).__name__}')
    for key in ('state_dict', 'model'):
        if key in checkpoint and isinstance(checkpoint[key], Mapping):
            return OrderedDict(checkpoint[key])
    return OrderedDict(checkpoint)


def published_classifier_parts(state_dict: Mapping) -> OrderedDict:
    """A published-layout classifier state dict under mmpretrain's ``backbone.`` / ``head.`` names.

    The published ImageNet files, and the classifiers this project saves, keep ``patch_embed.*``,
    ``levels.*``, ``conv_head.*``, ``head.*``... at the top level. Here the backbone's keys (under
    :data:`PUBLISHED_BACKBONE_ROOTS`) get ``backbone.`` and the rest ``head.``; a state dict that
    has no top-level backbone key is returned as it is (already prefixed, or not a classifier).
    """
    if not any(k.split('.', 1)[0] in PUBLISHED_BACKBONE_ROOTS for k in state_dict):
        return OrderedDict(state_dict)
    return OrderedDict(
        (('backbone.' if k.split('.', 1)[0] in PUBLISHED_BACKBONE_ROOTS else 'head.') + k, v)
        for k, v in state_dict.items())


def _weights(state: Mapping) -> dict:
    """The tensors of ``state`` that count as weights.

    BatchNorm's ``num_batches_tracked`` counters are left out: they are not weights, and
    mmengine does not report them as missing either.
    """
    return {k: v for k, v in state.items()
            if isinstance(v, torch.Tensor) and not k.endswith('num_batches_tracked')}


def _fits(state: Mapping, key: str, like: torch.Tensor) -> bool:
    value = state.get(key)
    return isinstance(value, torch.Tensor) and value.shape == like.shape


def _best_prefix(keys: Mapping, into: Mapping) -> tuple[str, int]:
    """The prefix ``p`` for which most ``p + rest`` of ``keys`` have ``rest`` fitting ``into``."""
    counts = Counter()
    for key, value in keys.items():
        for i, char in enumerate(key):
            if char == '.' and _fits(into, key[i + 1:], value):
                counts[key[:i + 1]] += 1
    return counts.most_common(1)[0] if counts else ('', 0)


def _likely_causes(own: dict, ckpt_state: Mapping, matched: int, shape_diff: list[str],
                   whole_model: bool) -> list[str]:
    """Guesses, most specific first, at why ``ckpt_state`` does not fit the model ``own``."""
    causes = []
    ckpt = _weights(ckpt_state)
    nested = [k for k, v in ckpt_state.items() if isinstance(v, Mapping)
              and any(isinstance(t, torch.Tensor) for t in v.values())]
    if nested:
        where = "'state_dict'" if whole_model else "'state_dict' or 'model'"
        cause = f'the file keeps its weights under {nested[0]!r}, not under {where}'
        if whole_model and nested[0] == 'model':
            cause += (' (the layout of the published ImageNet classification checkpoints: give '
                      f"such a file to the backbone's {_PRETRAINED} and train)")
        causes.append(cause)
    if shape_diff and len(shape_diff) >= matched:
        k = shape_diff[0]
        causes.append(
            f'{len(shape_diff)} tensors have the right names but other shapes (e.g. {k}: '
            f'{tuple(ckpt[k].shape)} in the file, {tuple(own[k].shape)} in the model): the file '
            'holds a model of another size (width, depths, number of classes), so the config is '
            'not the one it was trained with')
    head = [k for k in ckpt if k.startswith(('head.', 'conv_head.')) and k not in own]
    dense = {k.split('.', 1)[0] for k in own}.intersection(_DENSE_PARTS)
    if whole_model and head and dense:
        causes.append(
            f'the file is a classification checkpoint (it has a classification head: {head[0]}) '
            f"given to a detector or segmentor: it belongs in the backbone's {_PRETRAINED} for "
            'training; test and run the checkpoint that training writes')
    elif whole_model:
        # the file fits one part of the model once that part's prefix is added: backbone weights
        part, count = _best_prefix(own, ckpt)
        if count > matched:
            causes.append(
                f"the file holds weights of the model's {part[:-1]} alone ({count} tensors fit "
                f"there), e.g. a pretrained backbone: give it to the {part[:-1]}'s "
                f'{_PRETRAINED} rather than loading it as the whole model')
    prefix, count = _best_prefix(ckpt, own)
    if count > matched:
        if whole_model:
            causes.append(f'the keys of the file carry a prefix {prefix!r} that the model\'s do '
                          f'not ({count} tensors fit without it): it was saved from another '
                          'model type or wrapper')
        else:
            causes.append(f'the weights for this model are under {prefix!r} ({count} tensors fit '
                          f"there): set init_cfg=dict(type='Pretrained', checkpoint=..., "
                          f'prefix={prefix!r})')
    if not causes:
        causes.append('the checkpoint is of another model than the config builds: use the '
                      'config it was trained with' if whole_model else
                      'the file holds no weights of this backbone (another architecture?)')
    return causes


def check_state_dict_match(model_state: Mapping, ckpt_state: Mapping, source: str,
                           whole_model: bool, model_name: str = 'the model') -> tuple[int, int]:
    """Refuse weights that leave (most of) a model at its random initialisation.

    A tensor matches when the checkpoint has it under the same name with the same shape. The
    load is refused when no tensor matches; and, when ``ckpt_state`` is meant to be the whole
    model (testing, inference), when more than half of the tensors do not match or some
    top-level part (e.g. the neck or a head) gets none. Missing and unexpected keys of an
    accepted load are left to the loader to log.

    Args:
        model_state: The model's tensors under the names it loads (its ``state_dict()``).
        ckpt_state: The weights about to be loaded, with keys as they will be loaded.
        source: The checkpoint's file name, for the message.
        whole_model: Whether the checkpoint should provide the whole model (rather than, e.g.,
            a backbone's pretrained weights).
        model_name: The model's name, for the message.

    Returns:
        ``(matched, total)`` tensor counts.

    Raises:
        CheckpointMismatchError: Naming ``source``, the counts and the likely cause.
    """
    own = _weights(model_state)
    total = len(own)
    matched = [k for k, v in own.items() if _fits(ckpt_state, k, v)]
    shape_diff = [k for k, v in own.items()
                  if isinstance(ckpt_state.get(k), torch.Tensor) and not _fits(ckpt_state, k, v)]
    empty_parts = []
    if whole_model:
        parts = dict.fromkeys(k.split('.', 1)[0] for k in own if '.' in k)
        hit = {k.split('.', 1)[0] for k in matched}
        empty_parts = [p for p in parts if p not in hit]
    n = len(matched)
    if total == 0 or (n and not (whole_model and (2 * n < total or empty_parts))):
        return n, total
    ckpt = _weights(ckpt_state)
    msg = (f'{source} does not fit the model: {n} of {total} tensors of {model_name} are in it '
           f'with the same name and shape ({total - n - len(shape_diff)} missing from the file, '
           f'{len(shape_diff)} with another shape; '
           + (f"{len(ckpt) - n} of the file's {len(ckpt)} tensors unused)" if ckpt else
              'the file has no tensor at the top level)'))
    if n and empty_parts:
        msg += f', and no tensor for {", ".join(empty_parts)}'
    left = f'{total - n} of its tensors' if n else 'the whole model'
    msg += (f'. Loading it would leave {left} at the random initialisation. Likely cause: '
            + '; or '.join(
                _likely_causes(own, ckpt_state, n, shape_diff, whole_model)) + '.')
    raise CheckpointMismatchError(msg)


def _loadable_state(model: nn.Module) -> dict:
    """The tensors ``model`` loads, under the names its ``_load_from_state_dict`` looks for.

    Unlike ``state_dict()``, these names are not changed by state-dict hooks (the InternImage
    classifier saves the published names but loads under its own ``backbone.``/``head.``).
    """
    out = {}
    for name, module in model.named_modules(remove_duplicate=False):
        prefix = f'{name}.' if name else ''
        for key, param in module._parameters.items():
            if param is not None:
                out[prefix + key] = param
        for key, buf in module._buffers.items():
            if buf is not None and key not in module._non_persistent_buffers_set:
                out[prefix + key] = buf
    return out


@contextlib.contextmanager
def _checked_before_loading(model: nn.Module, source: str, whole_model: bool) -> Iterator[dict]:
    """Within the block, a load into ``model`` is checked before anything is copied.

    The check runs as ``model``'s last load pre-hook, so it sees the weights as they are loaded:
    after mmengine's ``revise_keys`` and the model's own key mapping (a published checkpoint
    unwrapped and renamed by the InternImage classifier). Yields a dict that receives the load's
    ``matched``, ``missing`` and ``unexpected`` keys.
    """
    result: dict = {}

    def check(_, weights, prefix, *args) -> None:
        if not prefix:  # the whole model, before its children load anything
            result['matched'] = check_state_dict_match(
                _loadable_state(model), weights, source, whole_model=whole_model,
                model_name=type(model).__name__)[0]

    def collect(_, incompatible) -> None:  # the root's post hook runs last, with every key
        result['missing'] = [k for k in incompatible.missing_keys
                             if not k.endswith('num_batches_tracked')]
        result['unexpected'] = list(incompatible.unexpected_keys)

    handles = [model.register_load_state_dict_pre_hook(check),
               model.register_load_state_dict_post_hook(collect)]
    try:
        yield result
    finally:
        for handle in handles:
            handle.remove()


@contextlib.contextmanager
def checked_whole_model_loading(source: str) -> Iterator[None]:
    """Check every whole-model load by mmengine within the block before it happens.

    mmengine's Runner (``load_from``), the ``init_detector``/``init_model`` functions and the
    inferencers of mmdet, mmseg and mmpretrain all load through
    ``mmengine.runner.checkpoint.load_state_dict``, with the weights picked out of the file they
    read. Wrapping that one function checks what they load without reading the file again or
    copying their loaders. Use it only around code that loads the one checkpoint ``source``.

    Args:
        source: The checkpoint file, for the message.

    Raises:
        CheckpointMismatchError: From :func:`check_state_dict_match` (``whole_model=True``).
    """
    from mmengine.model import BaseTTAModel, is_model_wrapper

    original = mmengine_checkpoint.load_state_dict

    def checked_load_state_dict(module, state_dict, strict=False, logger=None):
        model = module
        # the module that receives the weights, unwrapped as mmengine does (DDP, TTA)
        while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
            model = model.module
        with _checked_before_loading(model, source, whole_model=True):
            return original(module, state_dict, strict, logger)

    mmengine_checkpoint.load_state_dict = checked_load_state_dict
    try:
        yield
    finally:
        mmengine_checkpoint.load_state_dict = original


def load_backbone_state_dict(
        module: nn.Module,
        checkpoint: Union[str, Mapping],
        prefix: str | None = None,
        map_location: str = 'cpu',
        logger: str = 'current',
) -> tuple[list[str], list[str]]:
    """Load a (published) checkpoint into ``module`` non-strictly through mmengine's loader.

    The weights are the file's ``state_dict`` or ``model`` entry (or the file itself). With
    ``prefix``, only the keys that start with it are used, with it removed (as mmengine's
    ``PretrainedInit``); in a published-layout classifier file the backbone counts as
    ``backbone.`` (:func:`published_classifier_parts`). mmengine then strips ``module.`` and
    ``backbone.`` (:data:`BACKBONE_REVISE_KEYS`), loads, and logs missing, unexpected and
    other-shaped keys.

    Args:
        module: The model to load into.
        checkpoint: Path/URL understood by mmengine's ``CheckpointLoader``, or a loaded checkpoint.
        prefix: The part of the file to load, e.g. ``'backbone.'``.
        map_location: Where to load tensors.
        logger: mmengine logger name.

    Returns:
        ``(missing_keys, unexpected_keys)``.

    Raises:
        CheckpointMismatchError: When no tensor of ``module`` matches the checkpoint (nothing is
            loaded then).
        ValueError: When no key of the file starts with ``prefix``.
    """
    source = checkpoint if isinstance(checkpoint, str) else '<state dict>'
    if isinstance(checkpoint, str):
        checkpoint = CheckpointLoader.load_checkpoint(checkpoint, map_location=map_location)
    state_dict = extract_state_dict(checkpoint)
    if prefix:
        if not prefix.endswith('.'):
            prefix += '.'
        parts = published_classifier_parts(state_dict)
        state_dict = OrderedDict((k[len(prefix):], v) for k, v in parts.items()
                                 if k.startswith(prefix))
        if not state_dict:
            roots = sorted({k.split('.', 1)[0] + '.' for k in parts})
            raise ValueError(f'no key of {source} starts with prefix {prefix!r} (its keys start '
                             f'with {", ".join(roots[:8])})')
    with _checked_before_loading(module, source, whole_model=False) as result:
        mmengine_checkpoint._load_checkpoint_to_model(
            module, {'state_dict': state_dict}, strict=False, logger=logger,
            revise_keys=BACKBONE_REVISE_KEYS)
    print_log(f'loaded {result["matched"]} tensors from {source} into {type(module).__name__}',
              logger=logger, level=logging.INFO)
    return result['missing'], result['unexpected']
