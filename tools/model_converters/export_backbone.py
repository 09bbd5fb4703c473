"""Export the backbone of a classifier (or any whole-model) checkpoint as a backbone-only file.

    python tools/model_converters/export_backbone.py CHECKPOINT OUT

CHECKPOINT may be a classifier trained here or a published ImageNet file (published keys,
:func:`mmcv_custom.checkpoint.published_classifier_parts` tells the backbone from the head), a file
of mmpretrain's InternImage port (converted first, see ``internimage_mmpretrain.py``), or a detector
or segmentor (its ``backbone.*``). OUT holds the backbone's own keys under ``state_dict``, the
layout a backbone's ``init_cfg=dict(type='Pretrained', checkpoint=OUT)`` reads without a prefix;
the classification head, optimizer and message-hub state are left out.
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
from mmengine.runner.checkpoint import CheckpointLoader  # noqa: E402

import mmcv_custom  # noqa: E402,F401  (torch.load allow-list for mmengine checkpoints)
from mmcv_custom.checkpoint import extract_state_dict, published_classifier_parts  # noqa: E402
from tools.model_converters.internimage_mmpretrain import mmpretrain_to_published  # noqa: E402

__all__ = ['backbone_state_dict', 'export_backbone']


def backbone_state_dict(state_dict: Mapping) -> OrderedDict:
    """The backbone's tensors of a whole-model state dict, under the backbone's own keys."""
    if state_dict and all(k.startswith('module.') for k in state_dict):
        state_dict = OrderedDict((k[len('module.'):], v) for k, v in state_dict.items())
    if any(k.startswith('backbone.layers.') for k in state_dict):  # mmpretrain's port
        state_dict = mmpretrain_to_published(state_dict)
    parts = published_classifier_parts(state_dict)
    out = OrderedDict((k[len('backbone.'):], v) for k, v in parts.items()
                      if k.startswith('backbone.'))
    if not out:
        roots = sorted({k.split('.', 1)[0] for k in state_dict})
        raise ValueError(f'no backbone weights found: expected published classifier keys '
                         f'(patch_embed.*, levels.*) or backbone.*; the keys start with {roots[:8]}')
    return out


def export_backbone(src: str, dst: str) -> int:
    """Write the backbone of checkpoint ``src`` to ``dst``; return the number of tensors."""
    checkpoint = CheckpointLoader.load_checkpoint(src, map_location='cpu')
    backbone = backbone_state_dict(extract_state_dict(checkpoint))
    meta = dict(checkpoint.get('meta') or {}, backbone_of=osp.basename(src))
    meta.pop('dataset_meta', None)  # the classes are the head's, which is not in the file
    torch.save(dict(state_dict=backbone, meta=meta), dst)
    return len(backbone)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('checkpoint', help='classifier (or whole-model) checkpoint')
    parser.add_argument('out', help='backbone-only file to write')
    args = parser.parse_args(argv)
    n = export_backbone(args.checkpoint, args.out)
    print(f'{n} backbone tensors of {args.checkpoint} written to {args.out}')


if __name__ == '__main__':
    main()
