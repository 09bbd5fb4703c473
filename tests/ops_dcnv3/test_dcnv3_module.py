"""DCNv3 module (published names and init, compiled vs reference path), torch.library integration,
error messages."""
import pytest
import torch
from dcnv3_helpers import make_inputs
from official_keys import published_keys

import ops_dcnv3
from ops_dcnv3.functions import DCNv3Function, dcnv3_core_pytorch
from ops_dcnv3.modules import DCNv3, DCNv3_pytorch

pytestmark = pytest.mark.usefixtures('compiled_cpu')


def _randomise(module: torch.nn.Module, seed: int = 0) -> None:
    # Published init zeroes offset/mask projections; random weights exercise real deformations.
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=p.dtype) * 0.5)


@pytest.mark.parametrize('kwargs', [
    dict(channels=16, group=2),
    dict(channels=12, group=4, kernel_size=5, pad=2, offset_scale=2.0, remove_center=True),
    dict(channels=16, group=2, dw_kernel_size=5, center_feature_scale=True, norm_layer='BN',
         act_layer='ReLU'),
], ids=['t-like', 'k5-rc-os2', 'cfs-dw5-bn'])
@pytest.mark.filterwarnings('ignore:DCNv3. group_channels=3 is not a power of 2')
def test_module_compiled_matches_reference_module(kwargs):
    torch.manual_seed(0)
    fast = DCNv3(**kwargs).double()
    ref = DCNv3_pytorch(**kwargs).double()
    _randomise(fast)
    ref.load_state_dict(fast.state_dict())
    fast.eval(), ref.eval()
    x = torch.randn(2, 7, 6, kwargs['channels'], dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = fast(xa)
    want = ref(xb)
    torch.testing.assert_close(out, want, rtol=1e-10, atol=1e-10)
    out.square().sum().backward()
    want.square().sum().backward()
    torch.testing.assert_close(xa.grad, xb.grad, rtol=1e-9, atol=1e-9)
    for (name, p), q in zip(fast.named_parameters(), ref.parameters()):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-9, atol=1e-9, msg=name)


def test_module_cpu_autocast_bfloat16():
    torch.manual_seed(0)
    module = DCNv3(channels=32, group=2)
    _randomise(module)
    x = torch.randn(2, 6, 7, 32)
    want = module(x)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        out = module(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), want, rtol=0, atol=5e-2 * want.abs().max().item())


@pytest.mark.parametrize('dtype', [torch.float64, torch.float32, torch.bfloat16])
def test_point_softmax_matches_softmax(dtype):
    from ops_dcnv3.modules.dcnv3 import point_softmax
    logits = (torch.randn(3, 4, 5, 2, 9, dtype=torch.float64) * 20).to(dtype)
    a, b = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    out = point_softmax(a)
    want = torch.softmax(b.double(), -1)
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    torch.testing.assert_close(out.double(), want, rtol=0, atol=tol)
    gout = torch.randn(out.shape, dtype=torch.float64)
    out.backward(gout.to(out.dtype))
    want.backward(gout)
    torch.testing.assert_close(a.grad.double(), b.grad.double(), rtol=0,
                               atol=1e-10 if dtype == torch.float64 else 2e-2)


def test_reference_module_runs_grid_sample_only():
    # DCNv3_pytorch never reaches the compiled operator; DCNv3 always does.
    x = torch.randn(1, 5, 5, 8)
    for cls, compiled_calls in ((DCNv3_pytorch, 0), (DCNv3, 1)):
        with torch.autograd.profiler.profile() as prof:
            cls(8, group=2)(x)
        names = [e.name for e in prof.function_events]
        assert sum(n == 'ops_dcnv3::dcnv3_forward' for n in names) == compiled_calls, cls
        assert ('aten::grid_sampler_2d' in names) == (compiled_calls == 0), cls


@pytest.mark.parametrize('arch,channels,group,cfs,dw', [('t', 64, 4, False, 3), ('h', 320, 10, True, 5)])
def test_state_dict_matches_published_keys(arch, channels, group, cfs, dw):
    prefix = 'levels.0.blocks.0.dcn.'
    want = {k[len(prefix):]: v for k, v in published_keys(arch).items() if k.startswith(prefix)}
    assert want  # the published block has a DCNv3 under this name
    module = DCNv3(channels=channels, group=group, dw_kernel_size=dw, center_feature_scale=cfs)
    got = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    assert got == want


def test_published_init():
    module = DCNv3(channels=16, group=2, center_feature_scale=True)
    for name in ('offset', 'mask'):
        assert torch.count_nonzero(getattr(module, name).weight) == 0
        assert torch.count_nonzero(getattr(module, name).bias) == 0
    for name in ('input_proj', 'output_proj'):
        weight = getattr(module, name).weight
        bound = (6 / (weight.shape[0] + weight.shape[1])) ** 0.5  # xavier_uniform
        assert weight.abs().max() <= bound and weight.std() > bound / 4
        assert torch.count_nonzero(getattr(module, name).bias) == 0
    assert torch.count_nonzero(module.center_feature_scale_proj_weight) == 0
    assert torch.count_nonzero(module.center_feature_scale_proj_bias) == 0
    # Zero offsets + uniform softmax mask: the op is a 3x3 box average of input_proj(x).
    x = torch.randn(1, 5, 5, 16)
    with torch.no_grad():
        module.output_proj.weight.copy_(torch.eye(16))
        module.center_feature_scale_proj_bias.fill_(-1e4)  # gate off
        out = module(x)
        proj = module.input_proj(x).permute(0, 3, 1, 2)
        box = torch.nn.functional.avg_pool2d(proj, 3, 1, 1, count_include_pad=True)
    torch.testing.assert_close(out, box.permute(0, 2, 3, 1), rtol=1e-5, atol=1e-5)


def test_module_validation():
    with pytest.raises(ValueError, match='divisible by group'):
        DCNv3(channels=10, group=4)
    with pytest.raises(ValueError, match='odd kernel_size'):
        DCNv3(channels=8, group=2, kernel_size=4, remove_center=True)
    with pytest.warns(UserWarning, match='power of 2'):
        DCNv3(channels=12, group=2)
    # Offsets are predicted per input pixel: the sampling grid must keep the input size.
    with pytest.raises(ValueError, match='stride must be 1 .* got stride=2'):
        DCNv3(channels=8, group=2, stride=2)
    with pytest.raises(ValueError, match=r'pad must be dilation\*\(kernel_size-1\)/2 = 2 .* got pad=1'):
        DCNv3(channels=8, group=2, kernel_size=5, pad=1)
    with pytest.raises(ValueError, match=r'pad must be .* = 2 for kernel_size=3, dilation=2'):
        DCNv3(channels=8, group=2, dilation=2)
    DCNv3(channels=8, group=2, kernel_size=3, dilation=2, pad=2)  # valid
    module = DCNv3(channels=8, group=2)
    with pytest.raises(ValueError, match=r'channels-last \(N, H, W, C\) with C = channels = 8, got '
                       r'shape \(2, 8, 5, 6\) \(channels-first\? permute'):
        module(torch.randn(2, 8, 5, 6))
    with pytest.raises(ValueError, match=r'got shape \(5, 6, 8\)$'):
        module(torch.randn(5, 6, 8))


def test_registered_in_mmengine_models():
    from mmengine.registry import MODELS
    module = MODELS.build(dict(type='DCNv3', channels=8, group=2))
    assert type(module) is DCNv3 and module.group == 2
    assert type(MODELS.build(dict(type='DCNv3_pytorch', channels=8, group=2))) is DCNv3_pytorch


def test_compiled_devices_have_working_kernels():
    assert 'cpu' in ops_dcnv3.compiled_devices()
    assert set(ops_dcnv3.compiled_devices()) <= {'cpu', 'cuda'}
    x, off, m = make_inputs(1, 5, 5, 2, 3)
    for device in ops_dcnv3.compiled_devices():
        if device == 'cuda' and not torch.cuda.is_available():
            continue  # registered (see test_dcnv3_cuda's build test) but not runnable here
        args = [t.to(device) for t in (x, off, m)] + [3, 3, 1, 1, 1, 1, 1, 1, 2, 3, 1.0, 0]
        torch.testing.assert_close(torch.ops.ops_dcnv3.dcnv3_forward(*args).cpu(),
                                   dcnv3_core_pytorch(x, off, m, 3, 3, 1, 1, 1, 1, 1, 1, 2, 3, 1.0, 0))


def test_cuda_tensor_without_cuda_kernels_raises_naming_the_fix(monkeypatch):
    # A CUDA input on a build without CUDA kernels must not silently run the grid_sample reference.
    # Fake CUDA tensors stand in for real ones (no GPU needed), and the compiled-device set is
    # narrowed to what a CPU-only build registers.
    from torch._subclasses.fake_tensor import FakeTensorMode

    import ops_dcnv3.functions.dcnv3_func as func
    monkeypatch.setattr(func, '_COMPILED_DEVICES', frozenset({'cpu'}))
    with FakeTensorMode(), torch.device('cuda'):
        module = DCNv3(channels=8, group=2)
        x = torch.empty(1, 5, 5, 8)
        assert x.device.type == module.offset.weight.device.type == 'cuda'
        with pytest.raises(RuntimeError) as info:
            module(x)
        # The reference runs where it is asked for.
        assert DCNv3_pytorch(channels=8, group=2)(x).shape == (1, 5, 5, 8)
    message = str(info.value)
    assert "no 'cuda' kernel" in message
    assert 'FORCE_CUDA=1 pip install --no-build-isolation -e .' in message
    assert "core_op='DCNv3_pytorch'" in message


def test_missing_kernel_fails_when_used_with_clear_message():
    x, off, m = (t.to('meta') for t in make_inputs(1, 5, 5, 2, 3))
    with pytest.raises(RuntimeError, match="no 'meta' kernel"):
        DCNv3Function.apply(x, off, m, 3, 3, 1, 1, 1, 1, 1, 1, 2, 3, 1.0, 256, 0)


def test_without_compiled_library():
    # `sys.modules[name] = None` makes importing the extension fail as a missing/broken build would:
    # import works, the module warns once when built, and the op and the module fail when used with a
    # message naming the fix; the reference module still runs.
    import subprocess
    import sys
    script = (
        'import sys, warnings, torch\n'
        'sys.modules["ops_dcnv3._C"] = None\n'
        'import ops_dcnv3\n'
        'from ops_dcnv3.functions import DCNv3Function\n'
        'from ops_dcnv3.modules import DCNv3, DCNv3_pytorch\n'
        'assert ops_dcnv3.compiled_devices() == [], ops_dcnv3.compiled_devices()\n'
        'x = torch.randn(1, 5, 5, 8)\n'
        'try:\n'
        '    DCNv3Function.apply(x, torch.zeros(1, 5, 5, 36), torch.zeros(1, 5, 5, 18), 3, 3, 1, 1,'
        ' 1, 1, 1, 1, 2, 4, 1.0, 256, 0)\n'
        'except RuntimeError as e:\n'
        '    print("ERR", e)\n'
        'with warnings.catch_warnings(record=True) as w:\n'
        '    warnings.simplefilter("always")\n'
        '    m = DCNv3(8, group=2)\n'
        'print("WARN", [str(i.message) for i in w])\n'
        'try:\n'
        '    m(x)\n'
        'except RuntimeError as e:\n'
        '    print("MODULE", e)\n'
        'print("REF", tuple(DCNv3_pytorch(8, group=2)(x).shape))\n')
    proc = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.splitlines()
    err = next(line for line in out if line.startswith('ERR '))
    assert 'ops_dcnv3: the compiled extension ops_dcnv3._C could not be loaded' in err
    assert 'pip install --no-build-isolation -e .' in err and "core_op='DCNv3_pytorch'" in err
    warn = next(line for line in out if line.startswith('WARN '))
    assert warn.count('could not be loaded') == 1 and 'will raise' in warn
    assert next(line for line in out if line.startswith('MODULE ')) == 'MODULE ' + err[4:]
    assert 'REF (1, 5, 5, 8)' in out


def test_opcheck():
    x, off, m = make_inputs(2, 5, 6, 2, 3, dtype=torch.float32)
    for requires_grad in (False, True):
        args = ([t.clone().requires_grad_(requires_grad) for t in (x, off, m)]
                + [3, 3, 1, 1, 1, 1, 1, 1, 2, 3, 1.0, 0])
        torch.library.opcheck(torch.ops.ops_dcnv3.dcnv3_forward.default, args)
    gout = torch.randn(2, 5, 6, 6)
    torch.library.opcheck(torch.ops.ops_dcnv3.dcnv3_backward.default,
                          [x, off, m, gout, 3, 3, 1, 1, 1, 1, 1, 1, 2, 3, 1.0, 0])


@pytest.mark.parametrize('backend', ['aot_eager', pytest.param('inductor', marks=pytest.mark.slow)])
def test_torch_compile_fullgraph(backend):
    torch.manual_seed(0)
    module = DCNv3(channels=16, group=2)
    _randomise(module)
    compiled = torch.compile(module, fullgraph=True, backend=backend)
    x = torch.randn(2, 6, 6, 16, requires_grad=True)
    out = compiled(x)
    out.sum().backward()
    grad = x.grad.clone()
    x.grad = None
    want = module(x)
    want.sum().backward()
    torch.testing.assert_close(out, want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grad, x.grad, rtol=1e-5, atol=1e-5)


# --- error messages --------------------------------------------------------------------------------

def _call(x, off, m, k=3, s=1, p=1, d=1, g=2, gc=3, rc=0, reference=False):
    fn = dcnv3_core_pytorch if reference else (
        lambda *a: DCNv3Function.apply(*a[:-1], 256, a[-1]))
    return fn(x, off, m, k, k, s, s, p, p, d, d, g, gc, 1.0, rc)


@pytest.mark.parametrize('reference', [False, True])
@pytest.mark.parametrize('case,error,pattern', [
    ('rank', ValueError, r'input must be a 4-D channels-last tensor'),
    ('channels', ValueError, r'input must have group\*group_channels = 2\*3 = 6 channels'),
    ('offset_shape', ValueError, r'offset must have shape \(N, Ho, Wo, group\*P\*2\) = \(1, 5, 5, 36\)'),
    ('mask_shape', ValueError, r'mask must have shape \(N, Ho, Wo, group\*P\) = \(1, 5, 5, 18\)'),
    ('dtype', TypeError, r'offset must have the dtype of input \(torch.float64\), got torch.float32'),
    ('device', ValueError, r'mask must be on the device of input \(cpu\), got meta'),
    ('even_remove_center', ValueError, r'remove_center needs an odd kernel'),
    ('stride', ValueError, r'stride_h must be a positive integer, got 0'),
    ('dilation', ValueError, r'dilation_h must be a positive integer, got -1'),
    ('int_dtype', TypeError, r'input must be float32, float64, float16 or bfloat16'),
])
def test_error_messages(case, error, pattern, reference):
    x, off, m = make_inputs(1, 5, 5, 2, 3)
    kw = {}
    if case == 'rank':
        x = x[0]
    elif case == 'channels':
        x = torch.cat([x, x[..., :1]], -1)
    elif case == 'offset_shape':
        off = off[..., :-2]
    elif case == 'mask_shape':
        m = m[:, :4]
    elif case == 'dtype':
        off = off.float()
    elif case == 'device':
        m = m.to('meta')
    elif case == 'even_remove_center':
        kw = dict(k=4, rc=1)
    elif case == 'stride':
        kw = dict(s=0)
    elif case == 'dilation':
        kw = dict(d=-1)
    elif case == 'int_dtype':
        x, off, m = (t.long() for t in (x, off, m))
    with pytest.raises(error, match=pattern):
        _call(x, off, m, reference=reference, **kw)


@pytest.mark.slow
def test_torch_compile_inductor_with_changing_input_sizes():
    # Multi-scale training: the second size recompiles with dynamic shapes (Inductor failed there
    # with "cannot determine truth value of Relational"); every size equals eager, with gradients.
    torch.manual_seed(0)
    module = DCNv3(channels=16, group=2)
    _randomise(module)
    compiled = torch.compile(module, backend='inductor')
    for hw in [(6, 6), (7, 9), (10, 5)]:
        x = torch.randn(2, *hw, 16, requires_grad=True)
        out = compiled(x)
        out.square().sum().backward()
        grad, x.grad = x.grad, None
        want = module(x)
        want.square().sum().backward()
        torch.testing.assert_close(out, want, rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(grad, x.grad, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_torch_compile_inductor_inference_with_changing_input_sizes():
    # Without grad the compiled graph hands the op its operands as they are (no layout copies);
    # dynamic shapes after the first recompilation must still work and equal eager.
    torch.manual_seed(0)
    module = DCNv3(channels=16, group=2).eval()
    _randomise(module)
    compiled = torch.compile(module, backend='inductor')
    with torch.no_grad():
        for hw in [(6, 6), (7, 9), (10, 5)]:
            x = torch.randn(2, *hw, 16)
            torch.testing.assert_close(compiled(x), module(x), rtol=1e-4, atol=1e-4)
