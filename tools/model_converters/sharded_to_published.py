"""Turn a checkpoint of a sharded run (FSDP or DeepSpeed ZeRO) into one published-layout file.

    python tools/model_converters/sharded_to_published.py CHECKPOINT OUT [--weights ema|trained]

CHECKPOINT is one of

* a file written by ``InternImageFSDPStrategy`` (``configs/_base_/runtime_fsdp.py``, ``state_dict_cfg
  'full'``) or by a DDP run: one file, the layout of an mmengine checkpoint;
* a DeepSpeed checkpoint directory (``epoch_N.pth/`` of ``configs/_base_/runtime_deepspeed.py``):
  its ZeRO shards are merged into fp32 weights by ``deepspeed`` (optional; the error names it).

OUT holds the model weights alone, under ``model`` (the published ImageNet files' entry) with the
keys the model wrote (published keys for the InternImage classifier; detectors and segmentors keep
their ``backbone.`` / ``decode_head.`` keys), so ``tools/test.py CONFIG OUT``, ``load_from`` and a
backbone's ``init_cfg`` (published layout) read it; optimizer, schedulers and message hub are left
out. ``--weights ema`` (default) takes the EMA weights where the run kept an EMA (mmengine's
``EMAHook`` and ``ShardedEMAHook`` save them under ``state_dict``), ``trained`` the trained ones.
mmengine's FSDP ``local`` checkpoints (``rank*.pth`` directories of flat shards) are refused:
train with ``state_dict_cfg='full'``.
"""
from __future__ import annotations

import argparse
import glob
import os.path as osp
import sys
from collections import OrderedDict

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch  # noqa: E402

import mmcv_custom  # noqa: E402,F401  (torch.load allow-list for mmengine checkpoints)
from mmcv_custom.checkpoint import extract_state_dict  # noqa: E402

__all__ = ['load_weights', 'convert']


def _strip_module(state: dict) -> OrderedDict:
    if state and all(k.startswith('module.') for k in state):
        return OrderedDict((k[len('module.'):], v) for k, v in state.items())
    return OrderedDict(state)


def _from_file(path: str, weights: str) -> OrderedDict:
    checkpoint = torch.load(path, map_location='cpu')
    if not isinstance(checkpoint, dict):
        raise ValueError(f'{path} is not a checkpoint (a {type(checkpoint).__name__})')
    ema = checkpoint.get('ema_state_dict')
    if weights == 'trained' and ema is not None:
        # EMA hooks swap: `state_dict` holds the EMA, `ema_state_dict` the trained weights
        return OrderedDict((k[len('module.'):], v) for k, v in ema.items()
                           if k.startswith('module.'))
    return _strip_module(extract_state_dict(checkpoint))


def _from_deepspeed(path: str) -> OrderedDict:
    try:
        from deepspeed.utils.zero_to_fp32 import get_fp32_state_dict_from_zero_checkpoint
    except ImportError as e:
        raise ImportError(f'{path} is a DeepSpeed checkpoint directory: merging its ZeRO shards '
                          'needs the optional package `deepspeed` (pip install deepspeed)') from e
    parent, tag = osp.split(osp.normpath(path))
    return _strip_module(get_fp32_state_dict_from_zero_checkpoint(parent, tag=tag))


def load_weights(path: str, weights: str = 'ema') -> OrderedDict:
    """The full model weights of checkpoint ``path`` (file or DeepSpeed directory).

    Args:
        path: Checkpoint file, or directory of a DeepSpeed checkpoint.
        weights: ``'ema'`` or ``'trained'`` (only differ where the run kept an EMA; a DeepSpeed
            directory gives the trained fp32 weights).

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: ``weights`` is unknown, or ``path`` is an FSDP ``local`` directory or no checkpoint.
        ImportError: A DeepSpeed directory without ``deepspeed`` installed.
    """
    if weights not in ('ema', 'trained'):
        raise ValueError(f"weights must be 'ema' or 'trained', got {weights!r}")
    if not osp.exists(path):
        raise FileNotFoundError(f'checkpoint {path!r} does not exist')
    if osp.isfile(path):
        return _from_file(path, weights)
    if glob.glob(osp.join(path, 'rank*.pth')):
        raise ValueError(f'{path} holds mmengine FSDP "local" shards (flat parameters per rank), '
                         "which cannot be merged offline: train with state_dict_cfg='full' "
                         '(configs/_base_/runtime_fsdp.py)')
    if glob.glob(osp.join(path, '*model_states.pt')):
        if weights == 'ema':
            print(f'{path}: DeepSpeed checkpoints hold no EMA here; writing the trained weights')
        return _from_deepspeed(path)
    raise ValueError(f'{path} is a directory but neither a DeepSpeed checkpoint '
                     '(*model_states.pt) nor a checkpoint file')


def convert(src: str, dst: str, weights: str = 'ema') -> int:
    """Write the weights of ``src`` to ``dst`` under ``model``; return the number of tensors."""
    state = load_weights(src, weights)
    if not state:
        raise ValueError(f'{src} holds no weights')
    meta = dict(converted_from=osp.basename(osp.normpath(src)), weights=weights)
    torch.save(dict(model=state, meta=meta), dst)
    return len(state)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description='Sharded (FSDP / DeepSpeed ZeRO) checkpoint -> '
                                     'one published-layout file.')
    parser.add_argument('checkpoint', help='checkpoint file, or DeepSpeed checkpoint directory')
    parser.add_argument('out', help='output file')
    parser.add_argument('--weights', choices=['ema', 'trained'], default='ema',
                        help='EMA weights (default, where the run kept an EMA) or trained ones')
    args = parser.parse_args(argv)
    n = convert(args.checkpoint, args.out, args.weights)
    print(f'{args.out}: {n} tensors ({args.weights} weights of {args.checkpoint})')


if __name__ == '__main__':
    main()
