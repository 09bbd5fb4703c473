"""CB-InternImage: the composite backbone (CBNetV2) of the paper's COCO record, on :class:`InternImage`.

Two or more InternImage backbones run one after the other on the same image. The first is a whole
InternImage; each later one shares the first one's stem output and, before each of its levels ``i``,
adds ``gamma_i * sum_{j >= i} resize(conv1x1(feat_j))`` of the previous backbone's level outputs
(the CBNetV2 "dense higher-level composition": every level of the previous backbone at or above
``i``, projected to level ``i``'s channels and resized to its grid). ``gamma_i`` starts at zero, so
at initialisation each later backbone computes what a lone InternImage would.

Module names follow the published CB checkpoints (``cb_modules.k.*``, ``cb_modules.k.gamma{i}`` for
``k >= 1``, ``cb_linears.i.j``; the later backbones have no ``patch_embed``), so their weights load
without conversion. In detection the published recipe trains on every backbone's features (the
earlier ones' losses weighted 0.5) and tests on the last one's: see
:class:`mmdet_custom.models.detectors.CBDINO`.

Reference: Liang et al., "CBNet: A Composite Backbone Network Architecture for Object Detection",
https://arxiv.org/abs/2107.00420 (CBNetV2).
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModule

from ..checkpoint import extract_state_dict, load_backbone_state_dict, published_classifier_parts
from .internimage import InternImage

__all__ = ['CBInternImage', 'CBMember']


class CBMember(InternImage):
    """One backbone of :class:`CBInternImage`: an InternImage whose levels can take extra inputs.

    A later member (``cb_idx >= 1``) has no stem (it reuses the first member's) and one zero-initialised
    ``gamma{i}`` per level, the weight of the features composed into that level's input.

    Args:
        cb_idx: Position in the composite (0: the first, whole backbone).
        **kwargs: :class:`InternImage` arguments.
    """

    def __init__(self, cb_idx: int, **kwargs):
        super().__init__(**kwargs)
        self.cb_idx = cb_idx
        if cb_idx > 0:
            # No stem: the first member's is shared. An Identity keeps `frozen_stages` working and
            # adds no state-dict key.
            self.patch_embed = nn.Identity()
            for i in range(self.num_levels):
                self.register_parameter(f'gamma{i}', nn.Parameter(torch.zeros(int(self.channels * 2 ** i))))

    def forward_composite(self, stem_out: torch.Tensor,
                          extra: Sequence[torch.Tensor] | None = None) -> list[torch.Tensor]:
        """Channels-last outputs of every level, before its downsample.

        Args:
            stem_out: Channels-last stem output (N, H/4, W/4, C), after ``pos_drop``.
            extra: Per-level channels-last inputs from the previous member (``None`` for the first).
        """
        x, outs = stem_out, []
        for i, level in enumerate(self.levels):
            if extra is not None:
                x = x + getattr(self, f'gamma{i}') * extra[i]
            x, out = level(x)
            outs.append(out)
        return outs


class CBInternImage(BaseModule):
    """Composite InternImage backbone (CBNetV2 with dense higher-level composition).

    Constructor arguments are those of the published ``CBInternImage``: InternImage's, plus one
    ``out_indices`` tuple per member. The forward returns one tuple of NCHW feature maps per member
    (a neck is applied to each; see :class:`~mmdet_custom.models.detectors.CBDINO`). As published,
    when the first member returns one map more than the last (``[(0, 1, 2, 3), (1, 2, 3)]``), its first
    map is dropped so that all members feed the same neck.

    Args:
        channels: Channels of the first level of every member (``None``: InternImage's default,
            or that of ``arch``).
        out_indices: One sequence of level indices per member (two or more members).
        cb_zero_init: Start every ``gamma`` at zero (published; ``False`` starts at one).
        cb_del_stages: Stages of the later members replaced by the first one's; only the published 1
            (the stem is shared) is supported.
        init_cfg: ``dict(type='Pretrained', checkpoint=...)``: a composite checkpoint (keys
            ``cb_modules.*``, e.g. a published CB-InternImage detector) loads as it is; a single
            InternImage checkpoint (ImageNet) loads into every member, as the published code does
            when CBNetV2 training starts.
        pretrained: Shorthand for ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)``.
        **kwargs: :class:`InternImage` arguments shared by all members (``depths``, ``groups``, ...).
    """

    def __init__(self, channels: int | None = None, out_indices: Sequence[Sequence[int]] = ((0, 1, 2, 3), (1, 2, 3)),
                 cb_zero_init: bool = True, cb_del_stages: int = 1, init_cfg: dict | None = None,
                 pretrained: str | None = None, **kwargs):
        if pretrained is not None:
            if init_cfg is not None:
                raise ValueError('give either init_cfg or pretrained, not both')
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        super().__init__(init_cfg=init_cfg)
        out_indices = [tuple(o) for o in out_indices]
        if len(out_indices) < 2 or not all(len(o) for o in out_indices):
            raise ValueError(f'out_indices must give one non-empty tuple of levels per member (two or '
                             f'more members), got {out_indices}')
        if cb_del_stages != 1:
            raise ValueError(f'cb_del_stages: only 1 (the later members share the stem) is supported, '
                             f'got {cb_del_stages}')
        self.out_indices = out_indices
        self.cb_zero_init = cb_zero_init
        self.cb_del_stages = cb_del_stages
        if channels is not None:
            kwargs['channels'] = channels
        self.cb_modules = nn.ModuleList(
            CBMember(cb_idx=k, out_indices=o, **kwargs) for k, o in enumerate(out_indices))
        first = self.cb_modules[0]
        self.channels = channels = first.channels
        self.depths = first.depths
        self.num_levels = first.num_levels
        # Level i of a later member receives every level j >= i of the previous one: a 1x1 conv from
        # level j's channels to level i's (the identity for j == i).
        widths = [int(channels * 2 ** i) for i in range(self.num_levels)]
        self.cb_linears = nn.ModuleList()
        for i in range(self.num_levels):
            self.cb_linears.append(nn.ModuleList(
                nn.Identity() if j == i else nn.Conv2d(widths[j], widths[i], 1)
                for j in range(i, self.num_levels)))
        if not cb_zero_init:
            with torch.no_grad():
                for m in self.cb_modules[1:]:
                    for i in range(self.num_levels):
                        getattr(m, f'gamma{i}').fill_(1.0)

    @property
    def out_channels(self) -> list[list[int]]:
        """Channels of each member's returned maps."""
        return [list(m.out_channels) for m in self.cb_modules]

    def init_weights(self) -> None:
        """Load ``init_cfg`` (composite or single-InternImage checkpoint); else keep the init."""
        cfg = self.init_cfg
        if cfg is None:
            print_log('CBInternImage: no pretrained weights (init_cfg=None), keeping the constructor '
                      'initialisation', logger='current', level=logging.DEBUG)
            return
        if not (isinstance(cfg, dict) and cfg.get('type') == 'Pretrained' and 'checkpoint' in cfg):
            raise ValueError(f"init_cfg must be dict(type='Pretrained', checkpoint=...), got {cfg}")
        from mmengine.runner import CheckpointLoader
        ckpt = CheckpointLoader.load_checkpoint(cfg['checkpoint'], map_location=cfg.get('map_location', 'cpu'))
        state = OrderedDict((k[len('module.'):] if k.startswith('module.') else k, v)
                            for k, v in extract_state_dict(ckpt).items())
        # A detector's (or classifier's) backbone is under `backbone.`; a bare backbone file has none.
        prefix = cfg.get('prefix') or (
            'backbone.' if any(k.startswith('backbone.') for k in published_classifier_parts(state)) else None)
        inner = [k[len(prefix):] if prefix and k.startswith(prefix) else k for k in state]
        if any(k.startswith('cb_modules.') for k in inner):
            load_backbone_state_dict(self, state, prefix=prefix)
        else:  # one InternImage's weights, into every member (the later ones have no stem)
            for m in self.cb_modules:
                load_backbone_state_dict(m, state, prefix=prefix)
        self._is_init = True

    def _compose(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Per-level channels-last inputs for the next member from ``feats`` (channels-last levels)."""
        out = []
        for i, linears in enumerate(self.cb_linears):
            size = feats[i].shape[1:3]  # the grid of level i, where the sum is added
            acc = 0
            for j, linear in zip(range(i, self.num_levels), linears):
                y = linear(feats[j].permute(0, 3, 1, 2))
                if tuple(y.shape[2:]) != tuple(size):
                    y = F.interpolate(y, size=size, mode='nearest')
                acc = acc + y.permute(0, 2, 3, 1)
            out.append(acc)
        return out

    def forward(self, x: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], ...]:
        """One tuple of NCHW maps (``out_indices[k]``) per member ``k``."""
        first = self.cb_modules[0]
        if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != first.in_channels:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f'x must be an image batch of shape (N, {first.in_channels}, H, W), got {shape}')
        stem = first.pos_drop(first.patch_embed(x))
        results, extra = [], None
        for k, member in enumerate(self.cb_modules):
            levels = member.forward_composite(stem, extra)
            results.append(tuple(levels[i].permute(0, 3, 1, 2).contiguous() for i in member.out_indices))
            if k < len(self.cb_modules) - 1:
                extra = self._compose(levels)
        last = len(results[-1])
        # Published: the first member's extra (stride-4) map is dropped when it has one map more.
        results = [r[1:] if len(r) == last + 1 else r for r in results]
        return tuple(results)

    def train(self, mode: bool = True) -> CBInternImage:
        """Switch mode; each member keeps its frozen stages in eval mode."""
        super().train(mode)
        for m in self.cb_modules:
            m.train(mode)
        return self
