"""DCNv3 operator: compiled CPU kernels vs an independent loop oracle and the grid_sample reference."""
import os
from pathlib import Path

import pytest
import torch
from dcnv3_helpers import loop_oracle, make_inputs, out_size

from ops_dcnv3.functions import DCNv3Function, dcnv3, dcnv3_core_pytorch

pytestmark = pytest.mark.usefixtures('compiled_cpu')


def compiled(x, off, m, k, s, p, d, group, gc, scale, rc):
    return DCNv3Function.apply(x, off, m, k, k, s, s, p, p, d, d, group, gc, scale, 256, rc)


def reference(x, off, m, k, s, p, d, group, gc, scale, rc):
    return dcnv3_core_pytorch(x, off, m, k, k, s, s, p, p, d, d, group, gc, scale, rc)


# (n, h, w, group, group_channels, kernel, stride, pad, dilation, offset_scale, remove_center):
# together these cover kernel 3/5, stride 1/2, pad 0/1/2, dilation 1/2, offset_scale 0.5/1/2,
# remove_center, H != W, odd group_channels and batch 0/1/3.
CONFIGS = [
    (1, 5, 6, 2, 3, 3, 1, 1, 1, 1.0, 0),
    (3, 6, 5, 1, 4, 3, 2, 0, 1, 0.5, 0),
    (1, 7, 5, 2, 5, 3, 1, 2, 2, 2.0, 1),
    (1, 6, 8, 3, 2, 5, 1, 2, 1, 1.0, 0),
    (3, 7, 6, 2, 3, 5, 2, 1, 1, 2.0, 1),
    (1, 9, 7, 1, 3, 5, 2, 2, 2, 0.5, 0),
    (1, 5, 6, 2, 1, 3, 1, 0, 2, 1.0, 1),
    (0, 5, 5, 2, 3, 3, 1, 1, 1, 1.0, 0),
]


@pytest.mark.parametrize('cfg', CONFIGS, ids=lambda c: 'n{}h{}w{}g{}d{}k{}s{}p{}dil{}os{}rc{}'.format(*c))
def test_forward_matches_reference_float64(cfg):
    n, h, w, g, gc, k, s, p, d, scale, rc = cfg
    x, off, m = make_inputs(n, h, w, g, gc, k, s, p, d, rc)
    out = compiled(x, off, m, k, s, p, d, g, gc, scale, rc)
    ref = reference(x, off, m, k, s, p, d, g, gc, scale, rc)
    assert out.shape == (n, out_size(h, k, s, p, d), out_size(w, k, s, p, d), g * gc)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('cfg', [CONFIGS[0], CONFIGS[2], CONFIGS[4]], ids=['k3', 'k3dil2rc', 'k5s2rc'])
def test_forward_matches_loop_oracle(cfg):
    n, h, w, g, gc, k, s, p, d, scale, rc = cfg
    x, off, m = make_inputs(min(n, 1), h, w, g, gc, k, s, p, d, rc)
    want = loop_oracle(x, off, m, k, k, s, s, p, p, d, d, g, gc, scale, rc)
    torch.testing.assert_close(compiled(x, off, m, k, s, p, d, g, gc, scale, rc), want,
                               rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(reference(x, off, m, k, s, p, d, g, gc, scale, rc), want,
                               rtol=1e-12, atol=1e-12)


def test_non_square_kernel_pad_and_stride():
    # kernel 3x5, stride (2, 1), pad (0, 2), dilation (1, 2): every H/W argument used on its own axis.
    x, _, _ = make_inputs(2, 6, 9, 2, 3)
    ho, wo = out_size(6, 3, 2, 0, 1), out_size(9, 5, 1, 2, 2)
    gen = torch.Generator().manual_seed(1)
    off = torch.randn(2, ho, wo, 2 * 15 * 2, generator=gen, dtype=torch.float64)
    m = torch.rand(2, ho, wo, 2 * 15, generator=gen, dtype=torch.float64)
    args = (3, 5, 2, 1, 0, 2, 1, 2, 2, 3, 1.5)
    out = DCNv3Function.apply(x, off, m, *args, 256, 0)
    torch.testing.assert_close(out, dcnv3_core_pytorch(x, off, m, *args, 0), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(out, loop_oracle(x, off, m, *args, 0), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize('use_reference', [False, True])
def test_point_order_and_offset_pairs(use_reference):
    # One-hot masks pick single points: point p = i*kh + j with i the x tap, offsets are (x, y).
    x = torch.randn(1, 5, 6, 4, dtype=torch.float64)
    zeros_off = torch.zeros(1, 5, 6, 9 * 2, dtype=torch.float64)
    for i, j in [(1, 1), (2, 1), (1, 0), (0, 2)]:
        m = torch.zeros(1, 5, 6, 9, dtype=torch.float64)
        m[..., i * 3 + j] = 1
        out = dcnv3(x, zeros_off, m, 3, 3, 1, 1, 1, 1, 1, 1, 1, 4, 1.0, 0,
                    use_reference=use_reference)
        want = torch.nn.functional.pad(x.permute(0, 3, 1, 2), (1, 1, 1, 1))
        want = want[:, :, j:j + 5, i:i + 6].permute(0, 2, 3, 1)
        torch.testing.assert_close(out, want)
    # A learned offset of +1 in x on the centre point reads the right neighbour.
    m = torch.zeros(1, 5, 6, 9, dtype=torch.float64)
    m[..., 4] = 1
    off = zeros_off.clone()
    off[..., 2 * 4] = 1.0
    out = dcnv3(x, off, m, 3, 3, 1, 1, 1, 1, 1, 1, 1, 4, 1.0, 0, use_reference=use_reference)
    torch.testing.assert_close(out[:, :, :5], x[:, :, 1:])
    torch.testing.assert_close(out[:, :, 5], torch.zeros_like(out[:, :, 5]))


@pytest.mark.parametrize('cfg', [CONFIGS[0], CONFIGS[2], CONFIGS[4]], ids=['k3', 'k3dil2rc', 'k5s2rc'])
def test_gradcheck(cfg):
    n, h, w, g, gc, k, s, p, d, scale, rc = cfg
    x, off, m = make_inputs(min(n, 2), min(h, 5), min(w, 5), g, gc, k, s, p, d, rc,
                            offset_range=1.5)
    # Keep sampling locations off the integer grid, where bilinear sampling has kinks.
    off = off + 0.123
    inputs = [t.clone().requires_grad_() for t in (x, off, m)]
    assert torch.autograd.gradcheck(
        lambda a, b, c: compiled(a, b, c, k, s, p, d, g, gc, scale, rc), inputs, eps=1e-6,
        atol=1e-7)


def test_backward_matches_reference():
    n, h, w, g, gc, k, s, p, d, scale, rc = CONFIGS[4]
    x, off, m = make_inputs(n, h, w, g, gc, k, s, p, d, rc, offset_range=3.0)
    grads = []
    for fn in (compiled, reference):
        ins = [t.clone().requires_grad_() for t in (x, off, m)]
        out = fn(*ins, k, s, p, d, g, gc, scale, rc)
        out.backward(torch.cos(torch.arange(out.numel(), dtype=out.dtype)).view_as(out))
        grads.append([t.grad for t in ins])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_backward_deterministic_across_thread_counts():
    x, off, m = make_inputs(3, 8, 8, 4, 8, dtype=torch.float32, offset_range=4.0)
    args = (3, 3, 1, 1, 1, 1, 1, 1, 4, 8, 1.0)
    gout = torch.randn(3, 8, 8, 32)
    results = []
    threads = torch.get_num_threads()
    try:
        for nt in (1, max(2, threads), 1):
            torch.set_num_threads(nt)
            results.append(torch.ops.ops_dcnv3.dcnv3_backward(x, off, m, gout, *args, 0))
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


@pytest.mark.parametrize('dtype,tol', [(torch.float32, 1e-5), (torch.float16, 5e-3),
                                       (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize('cfg', [CONFIGS[2], CONFIGS[3], CONFIGS[4]], ids=['k3dil2rc', 'k5', 'k5s2rc'])
def test_reduced_precision_vs_float64(cfg, dtype, tol):
    # Inputs are rounded to `dtype` first so the comparison measures the kernel, not the rounding.
    n, h, w, g, gc, k, s, p, d, scale, rc = cfg
    x, off, m = (t.to(dtype) for t in make_inputs(n, h, w, g, gc, k, s, p, d, rc))
    x64, off64, m64 = (t.double().requires_grad_() for t in (x, off, m))
    ins = [t.clone().requires_grad_() for t in (x, off, m)]
    out = compiled(*ins, k, s, p, d, g, gc, scale, rc)
    want = compiled(x64, off64, m64, k, s, p, d, g, gc, scale, rc)
    assert out.dtype == dtype
    # Relative to the output's magnitude: tolerance `tol` (float32 1e-5, float16 5e-3, bfloat16 2e-2).
    mag = want.abs().max().item()
    torch.testing.assert_close(out.double(), want.detach(), rtol=0, atol=tol * mag)
    gout = torch.randn(want.shape, dtype=torch.float64).to(dtype)
    out.backward(gout)
    want.backward(gout.double())
    for got, ref in zip(ins, (x64, off64, m64)):
        assert got.grad.dtype == dtype
        mag = ref.grad.abs().max().item()
        torch.testing.assert_close(got.grad.double(), ref.grad, rtol=0, atol=tol * mag)


def test_non_contiguous_inputs():
    x, off, m = make_inputs(2, 6, 7, 2, 3)
    # Channels-first storage viewed as channels-last, and strided slices.
    xs = x.permute(0, 3, 1, 2).contiguous().permute(0, 2, 3, 1)
    offs = torch.cat([off, off], dim=-1)[..., ::2]
    ms = m.transpose(1, 2).contiguous().transpose(1, 2)
    assert not (xs.is_contiguous() or offs.is_contiguous() or ms.is_contiguous())
    offc = offs.contiguous()
    want = compiled(x, offc, m, 3, 1, 1, 1, 2, 3, 1.0, 0)
    torch.testing.assert_close(compiled(xs, offs, ms, 3, 1, 1, 1, 2, 3, 1.0, 0), want)
    torch.testing.assert_close(reference(xs, offs, ms, 3, 1, 1, 1, 2, 3, 1.0, 0), want)


@pytest.mark.parametrize('fn', [compiled, reference], ids=['compiled', 'reference'])
def test_empty_batch_forward_and_backward(fn):
    x, off, m = (t.requires_grad_() for t in make_inputs(0, 5, 6, 2, 3))
    out = fn(x, off, m, 3, 1, 1, 1, 2, 3, 1.0, 0)
    assert out.shape == (0, 5, 6, 6)
    out.sum().backward()
    assert x.grad.shape == x.shape and off.grad.shape == off.shape and m.grad.shape == m.shape


@pytest.mark.parametrize('fn', [compiled, reference], ids=['compiled', 'reference'])
@pytest.mark.parametrize('value', [1e6, -1e6, 1e30, float('inf'), float('-inf'), float('nan')])
def test_far_out_of_image_and_non_finite_offsets_sample_zeros(value, fn):
    # Both paths agree: such a point samples nothing and gets zero gradients (the published kernel's
    # behaviour); NaN never leaks into the other points.
    x, off, m = (t.requires_grad_() for t in make_inputs(1, 5, 5, 2, 3))
    far = torch.full_like(off, value).requires_grad_()
    out = fn(x, far, m, 3, 1, 1, 1, 2, 3, 1.0, 0)
    assert torch.equal(out, torch.zeros_like(out))
    out.backward(torch.ones_like(out))
    for t in (x, far, m):
        assert torch.equal(t.grad, torch.zeros_like(t.grad))
    # Only the first point of group 0 astray: the rest equals the loop oracle without that point.
    x2, off2, m2 = make_inputs(1, 5, 5, 2, 3, seed=3)
    stray = off2.clone()
    stray[..., :2] = value
    ins = [t.clone().requires_grad_() for t in (x2, stray, m2)]
    out = fn(*ins, 3, 1, 1, 1, 2, 3, 1.0, 0)
    dropped = m2.clone()
    dropped[..., 0] = 0
    want = loop_oracle(x2, off2, dropped, 3, 3, 1, 1, 1, 1, 1, 1, 2, 3, 1.0, 0)
    torch.testing.assert_close(out, want, rtol=1e-12, atol=1e-12)
    out.backward(torch.ones_like(out))
    assert all(torch.isfinite(t.grad).all() for t in ins)
    assert torch.equal(ins[1].grad[..., :2], torch.zeros_like(ins[1].grad[..., :2]))
    assert torch.equal(ins[2].grad[..., 0], torch.zeros_like(ins[2].grad[..., 0]))


def published_formulation(x, off, mask, k, s, p, d, group, gc, scale, rc):
    """The published reference's construction, restated: zero-pad the input, build normalised
    reference points (linspace from c + 0.5) and a normalised dilation grid, add offsets divided by
    the padded size, grid_sample with align_corners=False. Square kernel/stride/pad/dilation only."""
    import torch.nn.functional as F
    x = F.pad(x, [0, 0, p, p, p, p])
    n, hp, wp, _ = x.shape
    _, ho, wo, _ = off.shape
    c = (d * (k - 1)) // 2
    ys = torch.linspace(c + 0.5, c + 0.5 + (ho - 1) * s, ho, dtype=x.dtype)
    xs = torch.linspace(c + 0.5, c + 0.5 + (wo - 1) * s, wo, dtype=x.dtype)
    ry, rx = torch.meshgrid(ys, xs, indexing='ij')
    ref = torch.stack((rx / wp, ry / hp), -1).reshape(1, ho, wo, 1, 2)
    taps = torch.linspace(-c, -c + (k - 1) * d, k, dtype=x.dtype)
    gx, gy = torch.meshgrid(taps, taps, indexing='ij')  # x-major point order
    grid = torch.stack((gx / wp, gy / hp), -1).reshape(-1, 1, 2).repeat(1, group, 1).permute(1, 0, 2)
    grid = grid.reshape(1, 1, 1, group * k * k, 2)
    loc = (ref + grid * scale).repeat(n, 1, 1, 1, 1)
    if rc:
        centre = (k * k - 1) // 2
        keep = [i for i in range(group * k * k) if (i - centre) % (k * k) != 0]
        loc = loc[:, :, :, keep]
    points = k * k - rc
    norm = torch.tensor([wp, hp], dtype=x.dtype).repeat(group * points)
    loc = loc.flatten(3, 4) + off * scale / norm
    grids = (2 * loc - 1).view(n, ho * wo, group, points, 2).transpose(1, 2).flatten(0, 1)
    value = x.view(n, hp * wp, group * gc).transpose(1, 2).reshape(n * group, gc, hp, wp)
    sampled = F.grid_sample(value, grids, mode='bilinear', padding_mode='zeros', align_corners=False)
    m = mask.view(n, ho * wo, group, points).transpose(1, 2).reshape(n * group, 1, ho * wo, points)
    out = (sampled * m).sum(-1).view(n, group * gc, ho * wo)
    return out.transpose(1, 2).reshape(n, ho, wo, -1)


@pytest.mark.parametrize('cfg', [c for c in CONFIGS if c[0] > 0], ids=lambda c: 'k{5}s{6}p{7}dil{8}os{9}rc{10}'.format(*c))
def test_matches_published_reference_formulation(cfg):
    n, h, w, g, gc, k, s, p, d, scale, rc = cfg
    x, off, m = make_inputs(n, h, w, g, gc, k, s, p, d, rc)
    want = published_formulation(x, off, m, k, s, p, d, g, gc, scale, rc)
    torch.testing.assert_close(compiled(x, off, m, k, s, p, d, g, gc, scale, rc), want,
                               rtol=1e-12, atol=1e-12)


def test_cpu_backward_allowed_under_deterministic_algorithms():
    # The CPU backward has no atomics (results do not depend on the thread count, see above), so it
    # must not trip torch.use_deterministic_algorithms; the CUDA backward does (test_dcnv3_cuda).
    x, off, m = (t.requires_grad_() for t in make_inputs(1, 5, 6, 2, 3))
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        compiled(x, off, m, 3, 1, 1, 1, 2, 3, 1.0, 0).sum().backward()
    finally:
        torch.use_deterministic_algorithms(previous)
    assert x.grad is not None and off.grad is not None and m.grad is not None


def test_double_backward_gradgradcheck():
    # create_graph=True (gradient penalties, Hessian-vector products) gets real second derivatives,
    # checked against finite differences of the first derivatives.
    x, off, m = make_inputs(1, 4, 4, 2, 3, offset_range=1.5)
    inputs = [t.clone().requires_grad_() for t in (x, off + 0.123, m)]
    assert torch.autograd.gradgradcheck(
        lambda a, b, c: compiled(a, b, c, 3, 1, 1, 1, 2, 3, 1.0, 0), inputs, eps=1e-6, atol=1e-6)
    # A gradient penalty's gradient equals the one through the grid_sample reference.
    hvps = []
    for fn in (compiled, reference):
        ins = [t.detach().clone().requires_grad_() for t in inputs]
        grads = torch.autograd.grad(fn(*ins, 3, 1, 1, 1, 2, 3, 1.0, 0).square().sum(), ins,
                                    create_graph=True)
        hvps.append(torch.autograd.grad(sum(g.square().sum() for g in grads), ins))
    for a, b in zip(*hvps):
        assert a.abs().max() > 1  # non-trivial second derivatives
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_first_order_backward_runs_the_compiled_kernel():
    # Only create_graph=True takes the reference route; a plain backward stays on the kernel.
    x, off, m = (t.requires_grad_() for t in make_inputs(1, 5, 5, 2, 3))
    with torch.autograd.profiler.profile() as prof:
        compiled(x, off, m, 3, 1, 1, 1, 2, 3, 1.0, 0).sum().backward()
    names = [e.name for e in prof.function_events]
    assert names.count('ops_dcnv3::dcnv3_backward') == 1
    assert not any('grid_sampler' in n for n in names)


def test_backward_bands_batch1_match_reference_and_thread_counts():
    # Batch 1 at 24x24 splits the backward into several bands of rows; offsets of up to 4 pixels
    # make bands spill into rows they do not own. The result must equal the float64 reference
    # (float32 tolerance) and be bitwise the same with 1, 2 and 3 threads.
    x, off, m = make_inputs(1, 24, 24, 2, 16, dtype=torch.float32, offset_range=4.0)
    args = (3, 3, 1, 1, 1, 1, 1, 1, 2, 16, 1.0)
    gout = torch.randn(1, 24, 24, 32)
    backward, forward = [], []
    threads = torch.get_num_threads()
    try:
        for nt in (1, 2, 3):
            torch.set_num_threads(nt)
            backward.append(torch.ops.ops_dcnv3.dcnv3_backward(x, off, m, gout, *args, 0))
            forward.append(torch.ops.ops_dcnv3.dcnv3_forward(x, off, m, *args, 0))
    finally:
        torch.set_num_threads(threads)
    for i in (1, 2):
        assert torch.equal(forward[0], forward[i])
        for a, b in zip(backward[0], backward[i]):
            assert torch.equal(a, b)
    ins = [t.double().requires_grad_() for t in (x, off, m)]
    out = dcnv3_core_pytorch(*ins, *args, 0)
    out.backward(gout.double())
    torch.testing.assert_close(forward[0].double(), out.detach(), rtol=1e-5, atol=1e-5)
    for got, ref in zip(backward[0], ins):
        torch.testing.assert_close(got.double(), ref.grad, rtol=1e-4, atol=1e-4)


def test_portable_kernels_match_reference(tmp_path):
    # The kernels are compiled twice on x86-64 (portable and AVX2+FMA, picked at run time);
    # DCNV3_CPU_ISA=baseline forces the portable ones, in a fresh process.
    import subprocess
    import sys
    script = tmp_path / 'check.py'
    script.write_text(
        'import torch\n'
        'from dcnv3_helpers import make_inputs\n'
        'from ops_dcnv3.functions import dcnv3, dcnv3_core_pytorch\n'
        'torch.manual_seed(0)\n'
        'for dtype, tol in ((torch.float32, 1e-4), (torch.float64, 1e-10)):\n'
        '    x, off, m = make_inputs(2, 12, 12, 2, 16, dtype=dtype, offset_range=3.0)\n'
        '    args = (3, 3, 1, 1, 1, 1, 1, 1, 2, 16, 1.0, 0)\n'
        '    a = [t.clone().requires_grad_() for t in (x, off, m)]\n'
        '    b = [t.double().requires_grad_() for t in (x, off, m)]\n'
        '    g = torch.randn(2, 12, 12, 32)\n'
        '    dcnv3(*a, *args).backward(g.to(dtype))\n'
        '    dcnv3_core_pytorch(*b, *args).backward(g.double())\n'
        '    for u, v in zip(a, b):\n'
        '        torch.testing.assert_close(u.grad.double(), v.grad, rtol=tol, atol=tol)\n'
        '    torch.testing.assert_close(dcnv3(*a, *args).double(), dcnv3_core_pytorch(*b, *args),\n'
        '                               rtol=tol, atol=tol)\n'
        'print("ok")\n')
    here = Path(__file__).resolve().parent
    env = dict(os.environ, DCNV3_CPU_ISA='baseline',
               PYTHONPATH=os.pathsep.join([str(here), str(here.parents[1])]))
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0 and 'ok' in proc.stdout, proc.stderr[-2000:]
