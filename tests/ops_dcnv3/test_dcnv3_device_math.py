"""The CUDA kernels' arithmetic executed on the CPU (``dcnv3_device_math``).

The CUDA kernels are grid-stride loops over warps whose lanes call the per-lane functions of
``csrc/dcnv3_element.h`` (``forward_lane``, ``backward_lane_point``, ``team_allreduce``,
``write_point_gradients``); ``dcnv3_device_math`` runs those same functions on the host with the kernels'
lane layout, a warp emulated as a loop over its 32 lanes, so these tests check the CUDA math on every run,
GPU or not: float64 parity with the loop oracle, gradcheck, reduced precision against float64 with the
CUDA tests' tolerances, every lane layout (1-8 channels per lane, teams of 1-32 lanes, several chunks),
32- and 64-bit indexing, and the edge cases of the CPU operator.
"""
import os
import re

import pytest
import torch
from dcnv3_helpers import loop_oracle, make_inputs_2d, out_size

from ops_dcnv3.functions import DCNv3Function, dcnv3_core_pytorch, dcnv3_device_math

pytestmark = pytest.mark.usefixtures('compiled_cpu')

# (n, h, w, group, group_channels, kh, kw, sh, sw, ph, pw, dh, dw, offset_scale, remove_center):
# stride/pad/dilation differing per axis, even and non-square kernels, remove_center (P = 8, 24 and
# the 1x1 kernel's P = 0), group_channels 1/3/5/12 (not multiples of 8) and 16.
CONFIGS = [
    (2, 5, 6, 2, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1.0, 0),
    (1, 7, 9, 2, 5, 3, 5, 2, 1, 0, 2, 1, 2, 1.5, 0),
    (2, 6, 7, 3, 1, 2, 2, 1, 2, 1, 0, 2, 1, 0.5, 0),
    (1, 8, 6, 1, 12, 4, 2, 1, 1, 2, 1, 1, 1, 1.0, 0),
    (1, 7, 7, 2, 3, 5, 3, 2, 2, 2, 1, 1, 2, 2.0, 1),
    (2, 5, 5, 2, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1.0, 1),
    (1, 4, 5, 2, 3, 1, 1, 1, 1, 0, 0, 1, 1, 1.0, 1),
    # 72 channels: in float64 (2 per lane) 36 lanes' worth, so teams of 32 lanes in two chunks
    (1, 3, 4, 1, 72, 3, 3, 1, 1, 1, 1, 1, 1, 1.0, 0),
]
IDS = ['k3', 'k3x5-s2x1-p0x2-d1x2', 'k2-s1x2-p1x0-d2x1', 'k4x2-d12', 'k5x3-rc', 'd16-rc', 'k1-rc-P0',
       'd72-two-chunks']


def _args(cfg):
    n, h, w, g, gc, kh, kw, sh, sw, ph, pw, dh, dw, scale, rc = cfg
    return (kh, kw, sh, sw, ph, pw, dh, dw, g, gc, scale, rc)


def _inputs(cfg, dtype=torch.float64, offset_range=2.0, seed=0):
    n, h, w, g, gc, kh, kw, sh, sw, ph, pw, dh, dw, scale, rc = cfg
    return make_inputs_2d(n, h, w, g, gc, kh, kw, sh, sw, ph, pw, dh, dw, rc, dtype=dtype,
                          offset_range=offset_range, seed=seed)


@pytest.mark.parametrize('cfg', CONFIGS, ids=IDS)
def test_forward_matches_loop_oracle_float64(cfg):
    x, off, m = _inputs(cfg)
    out = dcnv3_device_math(x, off, m, *_args(cfg))
    n, h, w, g, gc, kh, kw, sh, sw, ph, pw, dh, dw = cfg[:13]
    assert out.shape == (n, out_size(h, kh, sh, ph, dh), out_size(w, kw, sw, pw, dw), g * gc)
    torch.testing.assert_close(out, loop_oracle(x, off, m, *_args(cfg)), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('cfg', CONFIGS, ids=IDS)
def test_gradcheck(cfg):
    x, off, m = _inputs(cfg, offset_range=1.5)
    # Keep sampling locations off the integer grid, where bilinear sampling has kinks.
    inputs = [t.clone().requires_grad_() for t in (x, off + 0.123, m)]
    # The full Jacobian of the widest case costs ~45 s; fast mode checks random projections of it.
    fast = sum(t.numel() for t in inputs) > 3600
    assert torch.autograd.gradcheck(lambda a, b, c: dcnv3_device_math(a, b, c, *_args(cfg)), inputs,
                                    eps=1e-6, atol=1e-7, fast_mode=fast)


@pytest.mark.parametrize('cfg', [c for c in CONFIGS if c[5] * c[6] - c[14] > 0], ids=lambda c: 'k{5}x{6}'.format(*c))
def test_backward_matches_grid_sample_reference(cfg):
    # The reference's gradients come from autograd through grid_sample: an independent derivation.
    x, off, m = _inputs(cfg, offset_range=3.0, seed=1)
    grads = []
    for fn in (dcnv3_device_math, dcnv3_core_pytorch):
        ins = [t.clone().requires_grad_() for t in (x, off, m)]
        out = fn(*ins, *_args(cfg))
        out.backward(torch.cos(torch.arange(out.numel(), dtype=out.dtype)).view_as(out))
        grads.append([t.grad for t in ins])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_empty_batch():
    cfg = (0,) + CONFIGS[1][1:]
    x, off, m = (t.requires_grad_() for t in _inputs(cfg))
    out = dcnv3_device_math(x, off, m, *_args(cfg))
    assert out.shape == (0, 3, 5, 10)  # Ho = (7 - 3) // 2 + 1, Wo = 9 + 2*2 - (2*4 + 1) + 1
    out.sum().backward()
    assert x.grad.shape == x.shape and off.grad.shape == off.shape and m.grad.shape == m.shape


@pytest.mark.parametrize('value', [1e6, -1e6, 1e30, float('inf'), float('-inf'), float('nan')])
def test_far_and_non_finite_offsets(value):
    # Far locations sample nothing (the oracle says so for finite ones); inf and NaN locations are
    # treated alike: zero output and zero gradients, as in the compiled CPU operator.
    cfg = CONFIGS[0]
    x, off, m = _inputs(cfg)
    far = torch.full_like(off, value)
    far[..., 2:] = off[..., 2:]  # only the first point of each output goes astray
    ins = [t.clone().requires_grad_() for t in (x, far, m)]
    out = dcnv3_device_math(*ins, *_args(cfg))
    cpu_ins = [t.clone().requires_grad_() for t in (x, far, m)]
    cpu = DCNv3Function.apply(*cpu_ins, *_args(cfg)[:-1], 256, 0)
    torch.testing.assert_close(out, cpu, rtol=1e-12, atol=1e-12)
    if abs(value) < float('inf'):
        torch.testing.assert_close(out, loop_oracle(x, far, m, *_args(cfg)), rtol=1e-12, atol=1e-12)
    gout = torch.randn(out.shape, dtype=out.dtype)
    out.backward(gout)
    cpu.backward(gout)
    for a, b in zip(ins, cpu_ins):
        assert torch.isfinite(a.grad).all()
        torch.testing.assert_close(a.grad, b.grad, rtol=1e-10, atol=1e-10)
    # The stray point (index 0 of group 0) gets zero offset and mask gradients.
    assert torch.equal(ins[1].grad[..., :2], torch.zeros_like(ins[1].grad[..., :2]))
    assert torch.equal(ins[2].grad[..., 0], torch.zeros_like(ins[2].grad[..., 0]))


# Tolerances of tests/ops_dcnv3/test_dcnv3_cuda.py (relative to the largest magnitude).
@pytest.mark.parametrize('dtype,tol', [(torch.float32, 1e-5), (torch.float16, 5e-3),
                                       (torch.bfloat16, 3e-2)])
@pytest.mark.parametrize('cfg', [CONFIGS[1], CONFIGS[4], CONFIGS[5]], ids=['k3x5', 'k5x3-rc', 'd16'])
def test_reduced_precision_vs_float64(cfg, dtype, tol):
    # Inputs are rounded to `dtype` first so the comparison measures the arithmetic, not the rounding.
    ins = [t.to(dtype) for t in _inputs(cfg, offset_range=3.0)]
    low = [t.clone().requires_grad_() for t in ins]
    ref = [t.double().requires_grad_() for t in ins]
    out = dcnv3_device_math(*low, *_args(cfg))
    want = dcnv3_device_math(*ref, *_args(cfg))
    assert out.dtype == dtype
    torch.testing.assert_close(out.double(), want.detach(), rtol=0,
                               atol=tol * want.abs().max().item())
    gout = torch.randn(want.shape, dtype=torch.float64).to(dtype)
    out.backward(gout)
    want.backward(gout.double())
    for got, exp in zip(low, ref):
        assert got.grad.dtype == dtype
        torch.testing.assert_close(got.grad.double(), exp.grad, rtol=0,
                                   atol=tol * exp.grad.abs().max().item())


def test_agrees_with_compiled_cpu_operator_float32():
    # Two implementations of one formula (the CPU kernels' blocked loops, the CUDA element code).
    cfg = (2, 9, 8, 4, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1.0, 0)
    x, off, m = _inputs(cfg, dtype=torch.float32, offset_range=4.0)
    args = _args(cfg)
    torch.testing.assert_close(dcnv3_device_math(x, off, m, *args),
                               DCNv3Function.apply(x, off, m, *args[:-1], 256, args[-1]),
                               rtol=1e-5, atol=1e-5)
    gout = torch.randn(2, 9, 8, 64)
    want = torch.ops.ops_dcnv3.dcnv3_backward(x, off, m, gout, *args)
    got = torch.ops.ops_dcnv3.dcnv3_device_math_backward(x, off, m, gout, *args)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_opcheck():
    cfg = CONFIGS[1]
    x, off, m = (t.float() for t in _inputs(cfg))
    for requires_grad in (False, True):
        args = [t.clone().requires_grad_(requires_grad) for t in (x, off, m)] + list(_args(cfg))
        torch.library.opcheck(torch.ops.ops_dcnv3.dcnv3_device_math_forward.default, args)


def test_errors_name_the_argument():
    x, off, m = _inputs(CONFIGS[0])
    with pytest.raises(ValueError, match=r'offset must have shape \(N, Ho, Wo, group\*P\*2\)'):
        dcnv3_device_math(x, off[..., :-2], m, *_args(CONFIGS[0]))
    with pytest.raises(ValueError, match='input must be a CPU tensor'):
        dcnv3_device_math(*(t.to('meta') for t in (x, off, m)), *_args(CONFIGS[0]))


# Lane layouts (channels per lane, lanes per item, chunks) that the launch configuration picks:
# float32 takes up to 4 channels per lane, float16/bfloat16 up to 8, float64 up to 2, odd
# group_channels 1; teams are the next power of two (idle lanes), at most 32 (then chunks).
LAYOUT_CASES = [
    (torch.float32, 16), (torch.float32, 12), (torch.float32, 6), (torch.float32, 5),
    (torch.float16, 16), (torch.float16, 24), (torch.bfloat16, 12), (torch.bfloat16, 3),
    (torch.float32, 260), (torch.float16, 264),
]


@pytest.mark.parametrize('dtype,gc', LAYOUT_CASES, ids=lambda v: str(v).replace('torch.', ''))
def test_lane_layouts_match_float64(dtype, gc):
    # Warps hold several items, the last warp is partly idle (15 items), teams round up.
    cfg = (1, 3, 5, 1, gc, 3, 3, 1, 1, 1, 1, 1, 1, 1.0, 0)
    test_reduced_precision_vs_float64(cfg, dtype, {torch.float32: 1e-5, torch.float16: 5e-3,
                                                   torch.bfloat16: 3e-2}[dtype])


@pytest.mark.parametrize('dtype', [torch.float32, torch.float16])
def test_unaligned_operands_take_the_scalar_path_with_equal_results(dtype):
    # An operand that starts one element past a vector boundary cannot be read as vectors: the
    # launch configuration falls back to one channel per lane. The forward adds each channel's terms
    # in the same order in every layout, so it is bitwise equal; the backward's dot products are
    # summed in another order (lanes, then the butterfly), so its gradients agree to rounding.
    cfg = (2, 6, 7, 2, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1.0, 0)
    x, off, m = (t.to(dtype) for t in _inputs(cfg, offset_range=3.0))
    shifted = torch.empty(x.numel() + 1, dtype=dtype)[1:].view_as(x)
    shifted.copy_(x)
    assert shifted.is_contiguous() and shifted.data_ptr() % 16 != 0
    args = _args(cfg)
    torch.testing.assert_close(dcnv3_device_math(shifted, off, m, *args),
                               dcnv3_device_math(x, off, m, *args), rtol=0, atol=0)
    gout = torch.randn(2, 6, 7, 32).to(dtype)
    got = torch.ops.ops_dcnv3.dcnv3_device_math_backward(shifted, off, m, gout, *args)
    want = torch.ops.ops_dcnv3.dcnv3_device_math_backward(x, off, m, gout, *args)
    tol = 1e-5 if dtype == torch.float32 else 2e-3
    for a, b in zip(got, want):
        torch.testing.assert_close(a.float(), b.float(), rtol=tol, atol=tol * b.abs().max().item())


def test_64bit_indexing_agrees_with_32bit(monkeypatch):
    # Small tensors index with 32-bit integers; DCNV3_INDEX_BITS=64 forces the 64-bit form of the
    # same code (one channel per lane), which tensors of 2**31 elements or more take. group_channels
    # 5 runs one channel per lane in both, so the backward's sums are added in the same order.
    cfg = CONFIGS[1]
    assert cfg[4] == 5
    x, off, m = _inputs(cfg, offset_range=3.0)
    gout = torch.randn(dcnv3_device_math(x, off, m, *_args(cfg)).shape, dtype=x.dtype)
    runs = []
    for bits in ('32', '64'):
        monkeypatch.setenv('DCNV3_INDEX_BITS', bits)
        runs.append((dcnv3_device_math(x, off, m, *_args(cfg)),
                     *torch.ops.ops_dcnv3.dcnv3_device_math_backward(x, off, m, gout, *_args(cfg))))
    for a, b in zip(*runs):
        assert torch.equal(a, b)
    torch.testing.assert_close(runs[1][0], loop_oracle(x, off, m, *_args(cfg)), rtol=1e-12, atol=1e-12)
    # float32 with 16 channels: four channels per lane in 32-bit, one in 64-bit. Each output channel
    # adds its terms in the same order either way; the backward's dot products are summed in another.
    cfg = CONFIGS[5]
    x, off, m = (t.float() for t in _inputs(cfg, offset_range=3.0))
    gout = torch.randn(dcnv3_device_math(x, off, m, *_args(cfg)).shape)
    runs = []
    for bits in ('32', '64'):
        monkeypatch.setenv('DCNV3_INDEX_BITS', bits)
        runs.append((dcnv3_device_math(x, off, m, *_args(cfg)),
                     *torch.ops.ops_dcnv3.dcnv3_device_math_backward(x, off, m, gout, *_args(cfg))))
    assert torch.equal(runs[0][0], runs[1][0])
    for a, b in zip(runs[0][1:], runs[1][1:]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_cuda_kernels_call_the_shared_element_functions(repo_root):
    """The CUDA kernels hold no arithmetic of their own: they call the functions tested above."""
    csrc = os.path.join(repo_root, 'ops_dcnv3', 'csrc')
    with open(os.path.join(csrc, 'cuda', 'dcnv3_cuda.cu')) as f:
        cuda = f.read()
    code = re.sub(r'//[^\n]*', '', cuda)  # comments may name anything
    forward = code[code.index('dcnv3_forward_kernel('):code.index('dcnv3_backward_kernel(')]
    backward = code[code.index('dcnv3_backward_kernel('):code.index('at::Tensor dcnv3_forward_cuda')]
    assert 'element::forward_lane<CPL>(' in forward
    for call in ('element::backward_lane_point<CPL>(', 'element::team_allreduce(',
                 'element::write_point_gradients('):
        assert call in backward, call
    for token in ('atomicAdd', '__shfl', 'floor', 'make_taps', 'coef', 'offset_scale', '*='):
        assert token not in forward + backward, token
    with open(os.path.join(csrc, 'cpu', 'dcnv3_device_math.cpp')) as f:
        host = re.sub(r'//[^\n]*', '', f.read())
    for call in ('element::forward_lane<CPL>(', 'element::backward_lane_point<CPL>(',
                 'element::team_allreduce_host(', 'element::write_point_gradients('):
        assert call in host, call
    # Both launchers derive the lane layout from the same launch configuration.
    for source in (code, host):
        assert 'launch_config(' in source and 'element::lane_layout(' in source

