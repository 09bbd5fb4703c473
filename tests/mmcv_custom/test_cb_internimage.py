"""CBInternImage: feature shapes, the published CB-H key layout, loading published-layout weights,
and the composition restated on its own (the published CBNetV2 forward)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from official_keys import read_key_table

from mmcv_custom.models import CBInternImage, InternImage
from mmcv_custom.models.internimage import ARCHS

NARROW = dict(core_op='DCNv3', channels=16, depths=[1, 1, 2, 1], groups=[2, 4, 8, 16],
              drop_path_rate=0.0)
# Published CB-InternImage-H detector backbone (dino_4scale_cbinternimage_h_objects365_coco_ss.py)
CB_H = dict(ARCHS['h'], drop_path_rate=0.5, with_cp=True, out_indices=[(0, 1, 2, 3), (1, 2, 3)])
# Published: 2.2B params for the whole detector (2.18B on the LVIS table); the backbone is two
# InternImage-H (1073.12M each) without the second stem, plus the composition.
CB_H_BACKBONE_PARAMS_M = 2152.95


def randomize(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            base = 1.0 if name.endswith('weight') and p.ndim == 1 else 0.0
            p.copy_(base + 0.2 * torch.randn(p.shape, generator=g, dtype=p.dtype))


def test_forward_returns_each_members_maps():
    model = CBInternImage(out_indices=[(0, 1, 2, 3), (1, 2, 3)], **NARROW).eval()
    outs = model(torch.randn(2, 3, 64, 96))
    # the first member's stride-4 map is dropped (published), so both feed the same neck
    assert [[tuple(o.shape) for o in r] for r in outs] == [[(2, 32, 8, 12), (2, 64, 4, 6), (2, 128, 2, 3)]] * 2
    assert model.out_channels == [[16, 32, 64, 128], [32, 64, 128]]
    three = CBInternImage(out_indices=[(3,), (2,), (0, 3)], **NARROW).eval()
    outs = three(torch.randn(1, 3, 64, 64))
    assert [[tuple(o.shape) for o in r] for r in outs] == [[(1, 128, 2, 2)], [(1, 64, 4, 4)],
                                                           [(1, 16, 16, 16), (1, 128, 2, 2)]]


def test_cb_h_keys_and_shapes_equal_published():
    with torch.device('meta'):
        model = CBInternImage(**CB_H)
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    ref = read_key_table('cbinternimage_h_det')
    assert set(ours) == set(ref)
    assert ours == ref
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == CB_H_BACKBONE_PARAMS_M


def _published_layout_state(model: CBInternImage) -> dict:
    """A detector-style state dict (``backbone.`` prefix) with the published CB key names, built from
    the layout rule (member 0 = an InternImage, member 1 without stem + gammas, cb_linears i.j)."""
    single = InternImage(**{k: v for k, v in NARROW.items()}).state_dict()
    state = {f'backbone.cb_modules.0.{k}': torch.randn_like(v) for k, v in single.items()}
    state.update({f'backbone.cb_modules.1.{k}': torch.randn_like(v) for k, v in single.items()
                  if not k.startswith('patch_embed.')})
    widths = [16, 32, 64, 128]
    for i in range(4):
        state[f'backbone.cb_modules.1.gamma{i}'] = torch.randn(widths[i])
        for j in range(1, 4 - i):
            state[f'backbone.cb_linears.{i}.{j}.weight'] = torch.randn(widths[i], widths[i + j], 1, 1)
            state[f'backbone.cb_linears.{i}.{j}.bias'] = torch.randn(widths[i])
    state['neck.0.convs.0.conv.weight'] = torch.randn(8, 32, 1, 1)  # the rest of a detector
    return state


def test_published_layout_state_dict_loads_completely(tmp_path):
    model = CBInternImage(out_indices=[(0, 1, 2, 3), (1, 2, 3)], **NARROW)
    state = _published_layout_state(model)
    backbone = {k[len('backbone.'):]: v for k, v in state.items() if k.startswith('backbone.')}
    result = model.load_state_dict(backbone, strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    # the same file through init_cfg (a detector checkpoint: only `backbone.` is taken)
    path = tmp_path / 'cb_det.pth'
    torch.save({'state_dict': state}, path)
    fresh = CBInternImage(out_indices=[(0, 1, 2, 3), (1, 2, 3)],
                          init_cfg=dict(type='Pretrained', checkpoint=str(path)), **NARROW)
    fresh.init_weights()
    for k, v in fresh.state_dict().items():
        torch.testing.assert_close(v, backbone[k], msg=k)


def test_single_internimage_checkpoint_loads_into_every_member(tmp_path):
    single = InternImage(**NARROW)
    randomize(single)
    path = tmp_path / 'internimage_cls.pth'
    torch.save({'model': single.state_dict()}, path)  # published classifier layout: no prefix
    model = CBInternImage(init_cfg=dict(type='Pretrained', checkpoint=str(path)), **NARROW)
    model.init_weights()
    for k, v in single.state_dict().items():
        torch.testing.assert_close(model.cb_modules[0].state_dict()[k], v)
        if not k.startswith('patch_embed.'):
            torch.testing.assert_close(model.cb_modules[1].state_dict()[k], v)
    assert all(float(getattr(model.cb_modules[1], f'gamma{i}').abs().sum()) == 0 for i in range(4))


def _published_forward(model: CBInternImage, img: torch.Tensor) -> list[torch.Tensor]:
    """The published CBInternImage forward, restated: member 0 on the image, its NCHW level outputs
    composed by cb_linears (1x1 conv, nearest resize to (H/4 // 2**i, W/4 // 2**i)) into each level
    input of member 1 (x = x + gamma_i * feed_i), member 1 starting from member 0's stem output."""
    m0, m1 = model.cb_modules
    stem = m0.patch_embed(img)
    feats, x = [], stem
    for level in m0.levels:
        x, out = level(x)
        feats.append(out.permute(0, 3, 1, 2))
    h, w = stem.shape[1:3]
    x, outs = stem, []
    sd = model.state_dict()
    for i, level in enumerate(m1.levels):
        feed = 0
        for j in range(4 - i):
            y = feats[i + j]
            if j > 0:
                y = F.conv2d(y, sd[f'cb_linears.{i}.{j}.weight'], sd[f'cb_linears.{i}.{j}.bias'])
            if y.shape[2:] != (h, w):
                y = F.interpolate(y, size=(h, w), mode='nearest')
            feed = feed + y.permute(0, 2, 3, 1)
        x = x + sd[f'cb_modules.1.gamma{i}'] * feed
        x, out = level(x)
        outs.append(out.permute(0, 3, 1, 2))
        h, w = h // 2, w // 2
    return [feats[1], feats[2], feats[3]], [outs[1], outs[2], outs[3]]


def test_composition_equals_published_forward():
    model = CBInternImage(**NARROW).double().eval()
    randomize(model)
    img = torch.randn(1, 3, 32, 64, dtype=torch.float64)
    with torch.no_grad():
        ours = model(img)
        ref = _published_forward(model, img)
    for got, exp in zip(ours, ref):
        for a, b in zip(got, exp):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_zero_gammas_make_the_second_member_a_plain_internimage():
    model = CBInternImage(**NARROW).eval()
    randomize(model)
    for i in range(4):
        getattr(model.cb_modules[1], f'gamma{i}').data.zero_()
    single = InternImage(out_indices=(1, 2, 3), **NARROW).eval()
    state = {k: v for k, v in model.cb_modules[1].state_dict().items() if not k.startswith('gamma')}
    state.update({k: v for k, v in model.cb_modules[0].state_dict().items() if k.startswith('patch_embed.')})
    single.load_state_dict(state)
    img = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(model(img)[1], single(img)):
            torch.testing.assert_close(a, b)


@pytest.mark.parametrize('kwargs,match', [
    (dict(out_indices=[(0, 1, 2, 3)]), 'out_indices'),
    (dict(out_indices=[(0, 1), ()]), 'out_indices'),
    (dict(cb_del_stages=2), 'cb_del_stages'),
])
def test_bad_arguments_are_named(kwargs, match):
    with pytest.raises(ValueError, match=match):
        CBInternImage(**NARROW, **kwargs)


def test_bad_input_is_named():
    model = CBInternImage(**NARROW)
    with pytest.raises(ValueError, match='x must be an image batch'):
        model(torch.randn(3, 64, 64))
