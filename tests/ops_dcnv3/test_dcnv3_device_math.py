"""The CUDA kernels' arithmetic executed on the CPU (``dcnv3_device_math``).

The CUDA kernels are grid-stride loops over ``element::forward_element`` and ``element::backward_point``
of ``csrc/dcnv3_element.h``; ``dcnv3_device_math`` runs those same functions on the host, so these tests
check the CUDA math on every run, GPU or not: float64 parity with the loop oracle, gradcheck, reduced
precision against float64 with the CUDA tests' tolerances, and the edge cases of the CPU operator.
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
]
IDS = ['k3', 'k3x5-s2x1-p0x2-d1x2', 'k2-s1x2-p1x0-d2x1', 'k4x2-d12', 'k5x3-rc', 'd16-rc', 'k1-rc-P0']


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


def test_cuda_kernels_call_the_shared_element_functions(repo_root):
    """The CUDA kernels hold no arithmetic of their own: they call the functions tested above."""
    csrc = os.path.join(repo_root, 'ops_dcnv3', 'csrc')
    with open(os.path.join(csrc, 'cuda', 'dcnv3_cuda.cu')) as f:
        cuda = f.read()
    code = re.sub(r'//[^\n]*', '', cuda)  # comments may name anything
    forward = code[code.index('__global__ void dcnv3_forward_kernel'):code.index('__global__ void dcnv3_backward_kernel')]
    backward = code[code.index('__global__ void dcnv3_backward_kernel'):code.index('at::Tensor dcnv3_forward_cuda')]
    assert 'element::forward_element(' in forward
    assert 'element::backward_point(' in backward
    for token in ('atomicAdd', 'floor', 'make_taps', 'coef', 'offset_scale', '*='):
        assert token not in forward + backward, token
    with open(os.path.join(csrc, 'cpu', 'dcnv3_device_math.cpp')) as f:
        host = re.sub(r'//[^\n]*', '', f.read())
    assert 'element::forward_element(' in host and 'element::backward_point(' in host
