"""InternImage backbone: published keys and parameter counts, parity with the published forward,
checkpointing, freezing, checkpoint loading and input validation."""
from __future__ import annotations

import copy
import logging

import pytest
import torch
from official_keys import published_keys
from published_reference import backbone_levels

from mmcv_custom.models.internimage import ARCHS, InternImage

HEAD_ROOTS = ('conv_head.', 'head.', 'dcnv3_head_x4.', 'dcnv3_head_x3.', 'clip_projector.', 'fc_norm.')
# Published backbone-only parameter counts (millions, 2 decimals).
BACKBONE_PARAMS = dict(t=28.75, s=48.50, b=94.91, l=218.95, xl=328.97, h=1073.12, g=3052.78)

# Tiny variants exercising every published block/level layout (group channels 8, one or two blocks).
TINY = {
    't': dict(channels=16, depths=[1, 1, 2, 1], groups=[2, 4, 8, 16]),
    's': dict(channels=16, depths=[1, 1, 2, 1], groups=[2, 4, 8, 16], layer_scale=0.5, post_norm=True,
              offset_scale=2.0),
    'h': dict(channels=16, depths=[1, 1, 3, 1], groups=[2, 4, 8, 16], dw_kernel_size=5,
              res_post_norm=True, level2_post_norm=True, level2_post_norm_block_ids=[0, 2],
              center_feature_scale=True),
    'g': dict(channels=16, depths=[1, 1, 3, 1], groups=[2, 4, 8, 16], dw_kernel_size=5, post_norm=True,
              level2_post_norm=True, level2_post_norm_block_ids=[1, 2], center_feature_scale=True),
    'ls_pre': dict(channels=16, depths=[1, 1, 1, 1], groups=[2, 4, 8, 16], layer_scale=0.5),
}


def randomize(model: torch.nn.Module, seed: int = 0) -> None:
    """Non-trivial weights everywhere (incl. DCNv3 offsets/masks, which are initialised to zero)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith('weight') and p.ndim == 1:  # norm scales around 1
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=g, dtype=p.dtype))
            else:
                p.copy_(0.2 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        for name, b in model.named_buffers():
            if name.endswith('running_var'):
                b.copy_(0.5 + torch.rand(b.shape, generator=g, dtype=b.dtype))
            elif name.endswith('running_mean'):
                b.copy_(0.1 * torch.randn(b.shape, generator=g, dtype=b.dtype))


@pytest.mark.parametrize('size', ['t', 's', 'b', 'l', 'xl', 'h', 'g'])
def test_keys_shapes_and_param_count_equal_published(size):
    with torch.device('meta'):  # nothing allocated, also for H (1.1B) and G (3B)
        model = InternImage(core_op='DCNv3_pytorch', **ARCHS[size])
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    ref = {k: v for k, v in published_keys(size).items() if not k.startswith(HEAD_ROOTS)}
    assert set(ours) == set(ref)
    assert ours == ref
    n = sum(p.numel() for p in model.parameters())
    assert round(n / 1e6, 2) == BACKBONE_PARAMS[size]


def test_forward_returns_nchw_levels_in_out_indices():
    model = InternImage(core_op='DCNv3_pytorch', out_indices=(1, 3), drop_path_rate=0.0, **TINY['t']).eval()
    outs = model(torch.randn(2, 3, 64, 96))
    assert [tuple(o.shape) for o in outs] == [(2, 32, 8, 12), (2, 128, 2, 3)]
    assert model.out_channels == [32, 128]
    assert all(o.is_contiguous() for o in outs)


@pytest.mark.parametrize('variant', sorted(TINY))
def test_features_equal_published_forward(variant):
    arch = TINY[variant]
    model = InternImage(core_op='DCNv3_pytorch', drop_path_rate=0.0, **arch).double().eval()
    randomize(model)
    img = torch.randn(2, 3, 48, 48, dtype=torch.float64)
    with torch.no_grad():
        ours = model(img)
        ref = backbone_levels(img, model.state_dict(), arch)
    assert len(ours) == 4
    for o, r in zip(ours, ref):
        torch.testing.assert_close(o, r.permute(0, 3, 1, 2), rtol=1e-10, atol=1e-10)


def test_compiled_core_op_matches_reference_op():
    """'DCNv3' (compiled kernel) and 'DCNv3_pytorch' give the same features for the same weights."""
    ref = InternImage(core_op='DCNv3_pytorch', drop_path_rate=0.0, **TINY['h']).eval()
    randomize(ref)
    fast = InternImage(core_op='DCNv3', drop_path_rate=0.0, **TINY['h']).eval()
    fast.load_state_dict(ref.state_dict())
    img = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(fast(img), ref(img)):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_with_cp_same_outputs_and_gradients():
    arch = dict(TINY['s'], drop_path_rate=0.3, drop_rate=0.1)
    plain = InternImage(core_op='DCNv3_pytorch', **arch).double().train()
    randomize(plain)
    ckpt = InternImage(core_op='DCNv3_pytorch', with_cp=True, **arch).double().train()
    ckpt.load_state_dict(plain.state_dict())
    img = torch.randn(2, 3, 32, 32, dtype=torch.float64, requires_grad=True)
    results = []
    for model in (plain, ckpt):
        torch.manual_seed(123)  # same DropPath/Dropout draws
        x = img.detach().clone().requires_grad_()
        outs = model(x)
        loss = sum((o * torch.linspace(-1, 1, o.numel(), dtype=o.dtype).view_as(o)).sum() for o in outs)
        loss.backward()
        results.append((outs, x.grad, {k: p.grad.clone() for k, p in model.named_parameters()}))
    (o1, gx1, gp1), (o2, gx2, gp2) = results
    for a, b in zip(o1, o2):
        torch.testing.assert_close(a, b)
    torch.testing.assert_close(gx1, gx2)
    assert gp1.keys() == gp2.keys()
    for k in gp1:
        torch.testing.assert_close(gp1[k], gp2[k], msg=k)


def test_frozen_stages_stay_frozen_in_train_mode():
    model = InternImage(core_op='DCNv3_pytorch', frozen_stages=2, drop_path_rate=0.0, **TINY['t'])
    model.train()
    frozen = [model.patch_embed, model.levels[0], model.levels[1]]
    assert all(not p.requires_grad for m in frozen for p in m.parameters())
    assert all(not m.training for f in frozen for m in f.modules())
    assert all(p.requires_grad for m in model.levels[2:] for p in m.parameters())
    assert model.levels[2].training
    before = copy.deepcopy(model.patch_embed.state_dict())
    sum(o.sum() for o in model(torch.randn(1, 3, 32, 32))).backward()
    assert all(p.grad is None for m in frozen for p in m.parameters())
    assert model.levels[3].blocks[0].mlp.fc1.weight.grad is not None
    for k, v in model.patch_embed.state_dict().items():
        torch.testing.assert_close(v, before[k])

    stem_only = InternImage(core_op='DCNv3_pytorch', frozen_stages=0, **TINY['t']).train()
    assert not any(p.requires_grad for p in stem_only.patch_embed.parameters())
    assert all(p.requires_grad for p in stem_only.levels.parameters())


def test_bad_input_names_argument_and_expected_shape():
    model = InternImage(core_op='DCNv3_pytorch', **TINY['t'])
    with pytest.raises(ValueError, match=r'x must be .*\(N, 3, H, W\).*\(3, 32, 32\)'):
        model(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match=r'x must be .*\(N, 3, H, W\)'):
        model(torch.randn(1, 4, 32, 32))
    with pytest.raises(TypeError, match='x must be a floating point tensor'):
        model(torch.zeros(1, 3, 32, 32, dtype=torch.uint8))
    with pytest.raises(ValueError, match='out_indices'):
        InternImage(core_op='DCNv3_pytorch', out_indices=(4,), **TINY['t'])
    with pytest.raises(ValueError, match='core_op'):
        InternImage(core_op='DCNv9', **TINY['t'])
    with pytest.raises(ValueError, match='depths and groups'):
        InternImage(core_op='DCNv3_pytorch', channels=16, depths=[1, 1, 1], groups=[2, 4, 8, 16])


class _ListHandler(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.mark.parametrize('layout', ['model', 'state_dict_backbone', 'module_prefix'])
def test_init_cfg_pretrained_loads_published_checkpoint(tmp_path, layout):
    from mmengine.logging import MMLogger

    src = InternImage(core_op='DCNv3_pytorch', **TINY['s'])
    randomize(src, seed=1)
    weights = dict(src.state_dict())
    # The classification head is part of published ImageNet checkpoints.
    weights['conv_head.0.weight'] = torch.randn(192, 128, 1, 1)
    weights['head.weight'] = torch.randn(10, 192)
    weights['head.bias'] = torch.randn(10)
    if layout == 'model':  # published ImageNet file
        ckpt = dict(model=weights, epoch=299)
    elif layout == 'state_dict_backbone':  # mmdet/mmseg file
        ckpt = dict(state_dict={'backbone.' + k: v for k, v in weights.items()}, meta={})
    else:  # DataParallel prefix
        ckpt = dict(model={'module.' + k: v for k, v in weights.items()})
    path = tmp_path / 'published.pth'
    torch.save(ckpt, path)

    model = InternImage(core_op='DCNv3_pytorch', init_cfg=dict(type='Pretrained', checkpoint=str(path)),
                        **TINY['s'])
    logger = MMLogger.get_instance('test_internimage_load')
    handler = _ListHandler()
    logger.addHandler(handler)
    try:
        model.init_weights()
    finally:
        logger.removeHandler(handler)
    for k, v in src.state_dict().items():
        torch.testing.assert_close(model.state_dict()[k], v, msg=k)
    text = '\n'.join(handler.messages)
    assert 'unexpected key' in text and 'head.weight' in text and 'conv_head.0.weight' in text  # mmengine's log
    assert 'missing keys' not in text


def test_init_cfg_pretrained_reports_missing_keys(tmp_path):
    from mmengine.logging import MMLogger

    from mmcv_custom.checkpoint import load_backbone_state_dict

    src = InternImage(core_op='DCNv3_pytorch', **TINY['t'])
    weights = {k: v for k, v in src.state_dict().items() if not k.startswith('levels.3.')}
    model = InternImage(core_op='DCNv3_pytorch', **TINY['t'])
    logger = MMLogger.get_instance('test_internimage_missing')
    handler = _ListHandler()
    logger.addHandler(handler)
    try:
        missing, unexpected = load_backbone_state_dict(model, dict(model=weights))
    finally:
        logger.removeHandler(handler)
    assert missing and all(k.startswith('levels.3.') for k in missing)
    assert not unexpected
    assert any('missing keys' in m and 'levels.3.blocks.0.mlp.fc1.weight' in m for m in handler.messages)


def test_with_cp_saves_less_for_backward():
    """Checkpointed blocks keep only their inputs for backward, not every activation."""
    def saved_bytes(with_cp: bool) -> int:
        model = InternImage(core_op='DCNv3_pytorch', with_cp=with_cp, drop_path_rate=0.0,
                            **TINY['t']).train()
        total = 0

        def pack(t):
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        x = torch.randn(2, 3, 64, 64, requires_grad=True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(x)
        return total

    assert saved_bytes(True) < 0.5 * saved_bytes(False)
