"""Input builders shared by the DCNv3 operator tests."""
import torch


def out_size(size, k, s, p, d):
    return (size + 2 * p - (d * (k - 1) + 1)) // s + 1


def make_inputs(n=2, h=6, w=7, group=2, group_channels=3, k=3, stride=1, pad=1, dilation=1,
                remove_center=0, dtype=torch.float64, device='cpu', offset_range=2.0, seed=0):
    """Random input/offset/mask; offsets reach past the borders so zero padding is exercised."""
    gen = torch.Generator().manual_seed(seed)
    ho, wo = out_size(h, k, stride, pad, dilation), out_size(w, k, stride, pad, dilation)
    points = k * k - remove_center
    x = torch.randn(n, h, w, group * group_channels, generator=gen, dtype=torch.float64)
    off = (torch.rand(n, ho, wo, group * points * 2, generator=gen, dtype=torch.float64) * 2 - 1)
    mask = torch.rand(n, ho, wo, group * points, generator=gen, dtype=torch.float64)
    return [t.to(device=device, dtype=dtype) for t in (x, off * offset_range, mask)]
