"""CUDA side of DCNv3: the extension builds and links with nvcc (no GPU needed), and the CUDA kernels
match the float64 CPU kernel where a GPU is visible."""
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch
from dcnv3_helpers import make_inputs

import ops_dcnv3
from ops_dcnv3.functions import DCNv3Function, dcnv3_core_pytorch


@pytest.mark.slow
@pytest.mark.nvcc
def test_cuda_extension_builds_and_registers_cuda_kernels(tmp_path, repo_root):
    # As on a build machine without a GPU: FORCE_CUDA, no architecture list, no visible device.
    env = dict(os.environ, FORCE_CUDA='1', CUDA_VISIBLE_DEVICES='',
               CUDA_HOME=os.environ.get('CUDA_HOME', '/usr/local/cuda'),
               MAX_JOBS=os.environ.get('MAX_JOBS', '2'))
    env.pop('TORCH_CUDA_ARCH_LIST', None)
    lib, tmp = tmp_path / 'lib', tmp_path / 'tmp'
    # build_ext with explicit build dirs writes nothing into the source tree.
    proc = subprocess.run(
        [sys.executable, 'setup.py', 'build_ext', '--build-lib', str(lib), '--build-temp', str(tmp)],
        cwd=repo_root, env=env, capture_output=True, text=True, timeout=3600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    so = lib / 'ops_dcnv3' / '_C.so'
    assert so.exists()
    # The default architectures: machine code for sm_80 and sm_90 plus compute_90 PTX, which the
    # driver JIT-compiles for any newer GPU.
    ninja = (tmp / 'build.ninja').read_text()
    gencodes = set(re.findall(r'-gencode[= ]arch=(compute_\d+),code=(\w+)', ninja))
    assert gencodes == {('compute_80', 'sm_80'), ('compute_90', 'sm_90'),
                        ('compute_90', 'compute_90')}, gencodes
    assert (tmp / 'ops_dcnv3' / 'csrc' / 'cuda' / 'dcnv3_cuda.o').exists()
    symbols = subprocess.run(['nm', '-C', '--defined-only', str(so)], capture_output=True,
                             text=True, check=True).stdout
    for kernel in ('dcnv3_forward_kernel', 'dcnv3_backward_kernel'):
        for dtype in ('float', 'double', 'c10::Half', 'c10::BFloat16'):
            assert any(kernel in line and f'({dtype} const*' in line for line in symbols.splitlines()), \
                (kernel, dtype)
    # The library links and registers CUDA kernels when loaded (no GPU needed for registration).
    pkg = tmp_path / 'pkg'
    shutil.copytree(os.path.join(repo_root, 'ops_dcnv3'), pkg / 'ops_dcnv3',
                    ignore=shutil.ignore_patterns('csrc', '*.so', '__pycache__'))
    shutil.copy(so, pkg / 'ops_dcnv3' / '_C.so')
    probe = subprocess.run(
        [sys.executable, '-c', 'import ops_dcnv3; print(ops_dcnv3.__file__); '
         'print(ops_dcnv3.load_error()); print(ops_dcnv3.compiled_devices())'],
        cwd=tmp_path, env=dict(os.environ, PYTHONPATH=str(pkg)), capture_output=True, text=True)
    lines = probe.stdout.splitlines()
    assert probe.returncode == 0 and len(lines) == 3, probe.stderr
    assert lines[0].startswith(str(pkg)) and lines[1] == 'None'
    assert lines[2] == "['cpu', 'cuda']"


CUDA_CONFIGS = [
    # (n, h, w, group, group_channels, kernel, stride, pad, dilation, offset_scale, remove_center)
    (2, 9, 7, 2, 16, 3, 1, 1, 1, 1.0, 0),
    (3, 8, 10, 3, 5, 5, 2, 2, 2, 0.5, 1),
    (1, 6, 6, 4, 8, 3, 2, 0, 1, 2.0, 1),
]


@pytest.mark.cuda
@pytest.mark.parametrize('cfg', CUDA_CONFIGS)
@pytest.mark.parametrize('dtype,tol', [(torch.float64, 1e-10), (torch.float32, 1e-5),
                                       (torch.float16, 5e-3), (torch.bfloat16, 3e-2)])
def test_cuda_matches_cpu_float64(cfg, dtype, tol):
    assert 'cuda' in ops_dcnv3.compiled_devices(), 'ops_dcnv3 was built without CUDA kernels'
    n, h, w, g, gc, k, s, p, d, scale, rc = cfg
    ins = [t.to(dtype) for t in make_inputs(n, h, w, g, gc, k, s, p, d, rc, offset_range=3.0)]
    args = (k, k, s, s, p, p, d, d, g, gc, scale)
    ref_in = [t.double().requires_grad_() for t in ins]
    ref = DCNv3Function.apply(*ref_in, *args, 256, rc)
    cuda_in = [t.cuda().requires_grad_() for t in ins]
    out = DCNv3Function.apply(*cuda_in, *args, 256, rc)
    assert out.dtype == dtype and out.is_cuda
    torch.testing.assert_close(out.double().cpu(), ref.detach(), rtol=0,
                               atol=tol * ref.abs().max().item())
    gout = torch.randn(ref.shape, dtype=torch.float64).to(dtype)
    ref.backward(gout.double())
    out.backward(gout.cuda())
    for got, want in zip(cuda_in, ref_in):
        torch.testing.assert_close(got.grad.double().cpu(), want.grad, rtol=0,
                                   atol=tol * max(want.grad.abs().max().item(), 1e-12))


@pytest.mark.cuda
def test_cuda_module_autocast_and_reference():
    from ops_dcnv3.modules import DCNv3, DCNv3_pytorch
    torch.manual_seed(0)
    fast, ref = DCNv3(32, group=2).cuda(), DCNv3_pytorch(32, group=2).cuda()
    with torch.no_grad():
        for prm in fast.parameters():
            prm.normal_(0, 0.3)
    ref.load_state_dict(fast.state_dict())
    x = torch.randn(2, 10, 12, 32, device='cuda')
    torch.testing.assert_close(fast(x), ref(x), rtol=1e-4, atol=1e-4)
    with torch.autocast('cuda', dtype=torch.float16):
        out = fast(x)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out.float(), ref(x), rtol=2e-2, atol=2e-2)
    # Batch 0 and grid_sample parity on the GPU.
    x0, off, m = (t.cuda() for t in make_inputs(0, 5, 5, 2, 3))
    assert DCNv3Function.apply(x0, off, m, 3, 3, 1, 1, 1, 1, 1, 1, 2, 3, 1.0, 256, 0).shape == (0, 5, 5, 6)
    x1, off, m = (t.cuda() for t in make_inputs(2, 5, 7, 2, 3))
    torch.testing.assert_close(
        DCNv3Function.apply(x1, off, m, 3, 3, 1, 1, 1, 1, 1, 1, 2, 3, 1.0, 256, 0),
        dcnv3_core_pytorch(x1, off, m, 3, 3, 1, 1, 1, 1, 1, 1, 2, 3, 1.0, 0))


@pytest.mark.cuda
def test_cuda_backward_reports_nondeterminism():
    # Float atomicAdd into grad_input: torch.use_deterministic_algorithms must hear about it.
    x, off, m = (t.float().cuda().requires_grad_() for t in make_inputs(1, 5, 6, 2, 3))
    out = DCNv3Function.apply(x, off, m, 3, 3, 1, 1, 1, 1, 1, 1, 2, 3, 1.0, 256, 0)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        with pytest.raises(RuntimeError, match='dcnv3_backward_cuda does not have a deterministic'):
            out.sum().backward()
    finally:
        torch.use_deterministic_algorithms(previous)
