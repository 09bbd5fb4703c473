"""Functional re-statement of the published InternImage forward pass, as a test oracle.

It reads weights straight from a state dict in the published key layout and follows the published
semantics step by step (residual layouts, level norms, level-2 post norms, DCNv3 module algebra,
classification heads), sharing no code with ``mmcv_custom`` except the DCNv3 sampling core
(``ops_dcnv3.functions.dcnv3_core_pytorch``, tested on its own by the operator's tests). Any
difference in module order, norm placement or key wiring of our implementation shows up as a mismatch.

The structure (layer scale, level norms, downsamples, post norms, head type) is decided by the
architecture arguments alone, as in the published constructor, never by which keys the state dict
has; every weight is read with ``sd[key]``, so a key the published layout has and ours lacks raises
``KeyError``.
"""
from __future__ import annotations

import torch.nn.functional as F


def _ln(x, sd, key, eps=1e-6):
    return F.layer_norm(x, x.shape[-1:], sd[key + '.weight'], sd[key + '.bias'], eps)


def _linear(x, sd, key):
    return F.linear(x, sd[key + '.weight'], sd[key + '.bias'])


def _dcnv3(x, sd, key, groups, offset_scale, dw_kernel, center_feature_scale):
    from ops_dcnv3.functions import dcnv3_core_pytorch

    n, h, w, c = x.shape
    proj = _linear(x, sd, key + '.input_proj')
    y = F.conv2d(x.permute(0, 3, 1, 2), sd[key + '.dw_conv.0.weight'], sd[key + '.dw_conv.0.bias'],
                 padding=(dw_kernel - 1) // 2, groups=c)
    y = F.gelu(_ln(y.permute(0, 2, 3, 1), sd, key + '.dw_conv.1.1'))
    offset = _linear(y, sd, key + '.offset')
    mask = _linear(y, sd, key + '.mask').reshape(n, h, w, groups, -1).softmax(-1).reshape(n, h, w, -1)
    out = dcnv3_core_pytorch(proj, offset, mask, 3, 3, 1, 1, 1, 1, 1, 1, groups, c // groups,
                             offset_scale, 0)
    if center_feature_scale:
        s = F.linear(y, sd[key + '.center_feature_scale_proj_weight'],
                     sd[key + '.center_feature_scale_proj_bias']).sigmoid()
        s = s.repeat_interleave(c // groups, dim=-1)
        out = out * (1 - s) + proj * s
    return _linear(out, sd, key + '.output_proj')


def _block(x, sd, key, arch, groups):
    def dcn(t):
        return _dcnv3(t, sd, key + '.dcn', groups, arch.get('offset_scale', 1.0),
                      arch.get('dw_kernel_size') or 3, arch.get('center_feature_scale', False))

    def mlp(t):
        return _linear(F.gelu(_linear(t, sd, key + '.mlp.fc1')), sd, key + '.mlp.fc2')

    # Published block: `self.layer_scale = layer_scale is not None`; gamma1/gamma2 exist iff it is set.
    layer_scale = arch.get('layer_scale') is not None
    post, res_post = arch.get('post_norm', False), arch.get('res_post_norm', False)
    if not layer_scale:
        if post:
            x = x + _ln(dcn(x), sd, key + '.norm1.0')
            return x + _ln(mlp(x), sd, key + '.norm2.0')
        if res_post:
            x = x + _ln(dcn(_ln(x, sd, key + '.norm1.0')), sd, key + '.res_post_norm1.0')
            return x + _ln(mlp(_ln(x, sd, key + '.norm2.0')), sd, key + '.res_post_norm2.0')
        x = x + dcn(_ln(x, sd, key + '.norm1.0'))
        return x + mlp(_ln(x, sd, key + '.norm2.0'))
    g1, g2 = sd[key + '.gamma1'], sd[key + '.gamma2']
    if post:
        x = x + g1 * _ln(dcn(x), sd, key + '.norm1.0')
        return x + g2 * _ln(mlp(x), sd, key + '.norm2.0')
    x = x + g1 * dcn(_ln(x, sd, key + '.norm1.0'))
    return x + g2 * mlp(_ln(x, sd, key + '.norm2.0'))


def backbone_levels(img, sd, arch):
    """Channels-last output of every level (before its downsample), published semantics."""
    x = F.conv2d(img, sd['patch_embed.conv1.weight'], sd['patch_embed.conv1.bias'], stride=2, padding=1)
    x = F.gelu(_ln(x.permute(0, 2, 3, 1), sd, 'patch_embed.norm1.1').permute(0, 3, 1, 2))
    x = F.conv2d(x, sd['patch_embed.conv2.weight'], sd['patch_embed.conv2.bias'], stride=2, padding=1)
    x = _ln(x.permute(0, 2, 3, 1), sd, 'patch_embed.norm2.1')
    post_ids = list(arch.get('level2_post_norm_block_ids') or []) if arch.get('level2_post_norm') else []
    outs = []
    num_levels = len(arch['depths'])
    for i, (depth, groups) in enumerate(zip(arch['depths'], arch['groups'])):
        for b in range(depth):
            x = _block(x, sd, f'levels.{i}.blocks.{b}', arch, groups)
            if i == 2 and b in post_ids:
                x = _ln(x, sd, f'levels.2.post_norms.{post_ids.index(b)}.0')
        if not arch.get('post_norm', False) or arch.get('center_feature_scale', False):
            x = _ln(x, sd, f'levels.{i}.norm.0')
        outs.append(x)
        if i < num_levels - 1:  # published: `downsample=(i < self.num_levels - 1)`
            x = F.conv2d(x.permute(0, 3, 1, 2), sd[f'levels.{i}.downsample.conv.weight'], stride=2, padding=1)
            x = _ln(x.permute(0, 2, 3, 1), sd, f'levels.{i}.downsample.norm.1')
    return outs


def classify(img, sd, arch, head, num_heads=16):
    """Published ImageNet logits: ``head='conv'`` (T..XL) or ``head='clip'`` (the CLIP-projector head of
    H and G; 16 heads)."""
    if head not in ('conv', 'clip'):
        raise ValueError(f"head must be 'conv' or 'clip', got {head!r}")
    outs = backbone_levels(img, sd, arch)
    if head == 'conv':
        x = F.conv2d(outs[-1].permute(0, 3, 1, 2), sd['conv_head.0.weight'])
        x = F.batch_norm(x, sd['conv_head.1.0.running_mean'], sd['conv_head.1.0.running_var'],
                         sd['conv_head.1.0.weight'], sd['conv_head.1.0.bias'], False, 0.0, 1e-5)
        x = F.gelu(x).mean((2, 3))
        return _linear(x, sd, 'head')
    x4 = F.conv2d(outs[3].permute(0, 3, 1, 2), sd['dcnv3_head_x4.0.weight'], sd['dcnv3_head_x4.0.bias'])
    x = F.pixel_shuffle(x4, 2) + F.conv2d(outs[2].permute(0, 3, 1, 2), sd['dcnv3_head_x3.weight'],
                                          sd['dcnv3_head_x3.bias'])
    x = x.flatten(2).transpose(1, 2)
    p = 'clip_projector.'
    q = _ln(x.mean(1, keepdim=True), sd, p + 'norm1_q.0')
    k = _ln(x, sd, p + 'norm1_k.0')
    v = _ln(x, sd, p + 'norm1_v.0')
    heads = num_heads
    b, n, c = k.shape

    def split(t, name):
        t = F.linear(t, sd[p + f'cross_dcn.{name}.weight'], sd[p + f'cross_dcn.{name}_bias'])
        return t.reshape(b, t.shape[1], heads, c // heads).transpose(1, 2)

    attn = (split(q, 'q') * (c // heads) ** -0.5) @ split(k, 'k').transpose(-2, -1)
    x = (attn.softmax(-1) @ split(v, 'v')).transpose(1, 2).reshape(b, 1, c)
    x = _linear(x, sd, p + 'cross_dcn.proj').squeeze(1)
    return _linear(_ln(x, sd, 'fc_norm.0'), sd, 'head')
