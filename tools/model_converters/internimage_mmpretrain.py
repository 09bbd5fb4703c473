"""Convert InternImage ImageNet checkpoints between the published layout and mmpretrain's port.

The published files (and the classifiers this project trains) keep the weights under ``model`` with
the published keys; mmpretrain's ``projects/internimage_classification`` builds an
``ImageClassifier`` whose keys differ:

=======================================  ============================================
published                                mmpretrain port
=======================================  ============================================
``patch_embed.conv1/norm1/conv2/norm2``  ``backbone.patch_embed.0/1/3/4``
``levels.i.*``                           ``backbone.layers.i.*``
``...mlp.fc1.*`` / ``...mlp.fc2.*``      ``...mlp.layers.0.0.*`` / ``...mlp.layers.1.*``
``conv_head.*``, ``dcnv3_head_x3/x4.*``,  ``backbone.`` + the same name
``clip_projector.*``, ``fc_norm.*``
``head.weight`` / ``head.bias``          ``head.fc.weight`` / ``head.fc.bias``
``clip_projector.cross_dcn.k_bias``      (none: the port has no key bias)
=======================================  ============================================

The key bias of the H/G attention pooling is dropped on the way to mmpretrain and restored as zeros
on the way back: a bias added to every key shifts all attention logits of a query by the same
amount, which the softmax cancels, so both models compute the same function.

    python tools/model_converters/internimage_mmpretrain.py SRC DST [--to mmpretrain|published]

Without ``--to`` the direction is the other layout than SRC's. The mmpretrain file is written as
mmengine writes checkpoints (``state_dict`` + ``meta``), the published one as the published files
(``model``).
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys
from collections import OrderedDict
from typing import Mapping

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402

__all__ = ['published_to_mmpretrain', 'mmpretrain_to_published', 'detect_layout', 'convert_file']

# published stem module -> index in the port's nn.Sequential stem (2 is the activation)
_STEM = {'conv1': '0', 'norm1': '1', 'conv2': '3', 'norm2': '4'}
_STEM_BACK = {v: k for k, v in _STEM.items()}
_MLP = (('.mlp.fc1.', '.mlp.layers.0.0.'), ('.mlp.fc2.', '.mlp.layers.1.'))
_K_BIAS = 'clip_projector.cross_dcn.k_bias'
_CLS_HEAD = {'head.weight': 'head.fc.weight', 'head.bias': 'head.fc.bias'}


def _published_key_to_mmpretrain(key: str) -> str:
    if key in _CLS_HEAD:
        return _CLS_HEAD[key]
    root, _, rest = key.partition('.')
    if root == 'patch_embed':
        part, _, rest = rest.partition('.')
        if part not in _STEM:
            raise ValueError(f'unknown stem key {key!r}: expected patch_embed.{{{",".join(_STEM)}}}.*')
        return f'backbone.patch_embed.{_STEM[part]}.{rest}'
    if root == 'levels':
        key = 'layers.' + rest
        for ours, theirs in _MLP:
            key = key.replace(ours, theirs)
    return 'backbone.' + key


def _mmpretrain_key_to_published(key: str) -> str:
    back = {v: k for k, v in _CLS_HEAD.items()}
    if key in back:
        return back[key]
    if not key.startswith('backbone.'):
        raise ValueError(f'unknown key {key!r} for the InternImage port: expected backbone.* '
                         f'or {", ".join(back)}')
    key = key[len('backbone.'):]
    root, _, rest = key.partition('.')
    if root == 'patch_embed':
        index, _, rest = rest.partition('.')
        if index not in _STEM_BACK:
            raise ValueError(f'unknown stem key backbone.{key!r}: expected patch_embed.'
                             f'{{{",".join(_STEM_BACK)}}}.*')
        return f'patch_embed.{_STEM_BACK[index]}.{rest}'
    if root == 'layers':
        key = 'levels.' + rest
        for ours, theirs in _MLP:
            key = key.replace(theirs, ours)
    return key


def published_to_mmpretrain(state_dict: Mapping) -> OrderedDict:
    """Published keys -> the keys of mmpretrain's InternImage ``ImageClassifier`` (same tensors)."""
    return OrderedDict((_published_key_to_mmpretrain(k), v) for k, v in state_dict.items()
                       if k != _K_BIAS)


def mmpretrain_to_published(state_dict: Mapping) -> OrderedDict:
    """mmpretrain port keys -> published keys; the H/G key bias comes back as zeros."""
    out = OrderedDict()
    for key, value in state_dict.items():
        new = _mmpretrain_key_to_published(key)
        out[new] = value
        if new == 'clip_projector.cross_dcn.q_bias' and 'backbone.' + _K_BIAS not in state_dict:
            out[_K_BIAS] = torch.zeros_like(value)  # published order: q_bias, k_bias, v_bias
    return out


def detect_layout(state_dict: Mapping) -> str:
    """``'published'`` or ``'mmpretrain'``, from the keys of an InternImage classifier."""
    if any(k.startswith('backbone.layers.') for k in state_dict):
        return 'mmpretrain'
    if any(k.startswith('levels.') for k in state_dict):
        return 'published'
    roots = sorted({k.split('.', 1)[0] for k in state_dict})
    raise ValueError('not an InternImage classifier state dict: no "levels.*" (published) or '
                     f'"backbone.layers.*" (mmpretrain) keys; its keys start with {roots[:8]}')


def convert_file(src: str, dst: str, to: str | None = None) -> str:
    """Convert the checkpoint ``src`` into ``dst``; return the layout written."""
    from mmengine.runner.checkpoint import CheckpointLoader

    import mmcv_custom  # noqa: F401  (torch.load allow-list for mmengine checkpoints)
    from mmcv_custom.checkpoint import extract_state_dict

    checkpoint = CheckpointLoader.load_checkpoint(src, map_location='cpu')
    state_dict = extract_state_dict(checkpoint)
    if state_dict and all(k.startswith('module.') for k in state_dict):
        state_dict = OrderedDict((k[len('module.'):], v) for k, v in state_dict.items())
    layout = detect_layout(state_dict)
    to = to or ('published' if layout == 'mmpretrain' else 'mmpretrain')
    if to not in ('published', 'mmpretrain'):
        raise ValueError(f"to must be 'published' or 'mmpretrain', got {to!r}")
    if to == layout:
        raise ValueError(f'{src} is already in the {layout} layout')
    meta = dict(checkpoint.get('meta') or {}, converted_from=osp.basename(src))
    if to == 'mmpretrain':
        torch.save(dict(state_dict=published_to_mmpretrain(state_dict), meta=meta), dst)
    else:
        torch.save(dict(model=mmpretrain_to_published(state_dict), meta=meta), dst)
    return to


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('src', help='checkpoint to convert')
    parser.add_argument('dst', help='file to write')
    parser.add_argument('--to', choices=['mmpretrain', 'published'],
                        help='target layout (default: the other one)')
    args = parser.parse_args(argv)
    layout = convert_file(args.src, args.dst, args.to)
    print(f'{args.src} -> {args.dst} ({layout} layout)')


if __name__ == '__main__':
    main()
