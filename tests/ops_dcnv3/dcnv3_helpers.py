"""Input builders and the loop oracle shared by the DCNv3 operator tests."""
import itertools
import math

import torch


def out_size(size, k, s, p, d):
    return (size + 2 * p - (d * (k - 1) + 1)) // s + 1


def make_inputs(n=2, h=6, w=7, group=2, group_channels=3, k=3, stride=1, pad=1, dilation=1,
                remove_center=0, dtype=torch.float64, device='cpu', offset_range=2.0, seed=0):
    """Random input/offset/mask; offsets reach past the borders so zero padding is exercised."""
    ins = make_inputs_2d(n, h, w, group, group_channels, k, k, stride, stride, pad, pad, dilation,
                         dilation, remove_center, dtype=dtype, offset_range=offset_range, seed=seed)
    return [t.to(device) for t in ins]


def loop_oracle(x, off, mask, kh, kw, sh, sw, ph, pw, dh, dw, group, gc, scale, rc):
    """The sampling formula of the spec written out point by point (slow, tiny shapes only)."""
    n, h, w, _ = x.shape
    ho, wo = out_size(h, kh, sh, ph, dh), out_size(w, kw, sw, pw, dw)
    cx, cy = dw * (kw - 1) // 2, dh * (kh - 1) // 2
    taps = [(i, j) for i in range(kw) for j in range(kh)
            if not (rc and i == kw // 2 and j == kh // 2)]
    out = torch.zeros(n, ho, wo, group * gc, dtype=x.dtype)

    def pixel(b, yy, xx, g):
        if 0 <= yy < h and 0 <= xx < w:
            return x[b, yy, xx, g * gc:(g + 1) * gc]
        return torch.zeros(gc, dtype=x.dtype)

    for b, oy, ox, g in itertools.product(range(n), range(ho), range(wo), range(group)):
        for p, (i, j) in enumerate(taps):
            q = g * len(taps) + p
            lx = ox * sw - pw + cx + (i * dw - cx + off[b, oy, ox, 2 * q].item()) * scale
            ly = oy * sh - ph + cy + (j * dh - cy + off[b, oy, ox, 2 * q + 1].item()) * scale
            x0, y0 = math.floor(lx), math.floor(ly)
            fx, fy = lx - x0, ly - y0
            v = ((1 - fy) * (1 - fx) * pixel(b, y0, x0, g) + (1 - fy) * fx * pixel(b, y0, x0 + 1, g)
                 + fy * (1 - fx) * pixel(b, y0 + 1, x0, g) + fy * fx * pixel(b, y0 + 1, x0 + 1, g))
            out[b, oy, ox, g * gc:(g + 1) * gc] += mask[b, oy, ox, q] * v
    return out


def make_inputs_2d(n, h, w, group, group_channels, kh, kw, sh, sw, ph, pw, dh, dw, rc=0,
                   dtype=torch.float64, offset_range=2.0, seed=0):
    """Like make_inputs, with every kernel/stride/pad/dilation argument given per axis."""
    gen = torch.Generator().manual_seed(seed)
    ho, wo = out_size(h, kh, sh, ph, dh), out_size(w, kw, sw, pw, dw)
    points = kh * kw - rc
    x = torch.randn(n, h, w, group * group_channels, generator=gen, dtype=torch.float64)
    off = (torch.rand(n, ho, wo, group * points * 2, generator=gen, dtype=torch.float64) * 2 - 1)
    mask = torch.rand(n, ho, wo, group * points, generator=gen, dtype=torch.float64)
    return [t.to(dtype) for t in (x, off * offset_range, mask)]
