"""Stochastic depth is mmcv's ``DropPath``: no state-dict keys, identity in eval mode, and in training
the published (timm) rule: each sample's branch is dropped with ``drop_prob`` or scaled by
``1 / (1 - drop_prob)``."""
from __future__ import annotations

import os.path as osp
import sys

import pytest
import torch
from mmcv.cnn.bricks import DropPath

from mmcv_custom.models.internimage import ARCHS, InternImage

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))
from official_keys import published_keys  # noqa: E402

TINY = dict(core_op='DCNv3_pytorch', channels=16, depths=[1, 1, 2, 1], groups=[1, 2, 4, 8])


def test_blocks_use_the_library_drop_path_and_keep_the_published_keys():
    with torch.device('meta'):
        model = InternImage(drop_path_rate=0.4, **ARCHS['t'])
    drops = [m.drop_path for m in model.modules() if hasattr(m, 'drop_path')]
    assert len(drops) == sum(ARCHS['t']['depths'])
    # linear rule: the first block has rate 0 (no module), the last drop_path_rate
    assert isinstance(drops[0], torch.nn.Identity)
    assert all(type(d) is DropPath for d in drops[1:])
    assert drops[-1].drop_prob == pytest.approx(0.4)
    backbone = {k: v for k, v in published_keys('t').items()
                if k.startswith(('patch_embed.', 'levels.'))}
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == backbone


def test_eval_mode_is_the_model_without_drop_path():
    torch.manual_seed(0)
    plain = InternImage(drop_path_rate=0.0, **TINY).eval()
    dropped = InternImage(drop_path_rate=0.5, **TINY).eval()
    dropped.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(plain(x), dropped(x)):
            torch.testing.assert_close(a, b, rtol=0, atol=0)


@pytest.mark.parametrize('dtype', [torch.float32, torch.float64])
def test_training_drops_whole_samples_and_rescales_the_rest(dtype):
    p, n = 0.3, 4000
    module = DropPath(p).train()
    x = torch.randn(n, 3, 4, 5, dtype=dtype, requires_grad=True)
    torch.manual_seed(0)
    out = module(x)
    flat = out.detach().reshape(n, -1)
    kept = flat.ne(0).any(dim=1)
    # whole samples: all zero or none
    assert torch.equal(flat.ne(0).all(dim=1), kept)
    # the published rule on the same mask: x * mask / keep (to the last bit but one)
    mask = kept.to(dtype).view(n, 1, 1, 1)
    torch.testing.assert_close(out.detach(), x.detach() * mask / (1 - p), rtol=2 * torch.finfo(dtype).eps,
                               atol=0)
    # P(keep) = 1 - p: within 4 standard deviations over 4000 samples
    assert abs(kept.double().mean().item() - (1 - p)) < 4 * (p * (1 - p) / n) ** 0.5
    # the gradient flows through the kept samples, scaled alike
    out.sum().backward()
    torch.testing.assert_close(x.grad, mask.expand_as(x) / (1 - p), rtol=2 * torch.finfo(dtype).eps,
                               atol=0)
    # and the expectation is preserved: E[out] = x
    ones = torch.ones(n, 1, dtype=dtype)
    assert module(ones).mean().item() == pytest.approx(1.0, abs=4 * (p / (1 - p) / n) ** 0.5)
