"""DCNv3 in ONNX: both export forms of ops_dcnv3.onnx run in ONNX Runtime with the module's numbers
(the custom form through the custom-op library built from the CPU kernel)."""
from __future__ import annotations

import os
import subprocess

import pytest
import torch

pytest.importorskip('onnxruntime')
import onnx  # noqa: E402

from ops_dcnv3.modules import DCNv3  # noqa: E402
from ops_dcnv3.onnx import (  # noqa: E402
    DCNV3_DOMAIN,
    custom_op_library,
    dcnv3_export_form,
    register_dcnv3_symbolic,
)

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope='module')
def ort_library() -> str:
    """The custom-op library, built (once, cached) by the script `make deploy-ortlib` runs."""
    subprocess.run(['bash', os.path.join(ROOT, 'tools', 'deploy', 'build_ort_ops.sh')], check=True,
                   cwd=ROOT, timeout=900)
    return custom_op_library()


def _session(path: str, library: str | None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    if library:
        opts.register_custom_ops_library(library)
    return ort.InferenceSession(path, opts, providers=['CPUExecutionProvider'])


def _module(remove_center: bool) -> DCNv3:
    torch.manual_seed(0)
    m = DCNv3(64, group=4, remove_center=remove_center).eval()
    # non-zero offsets and masks: sampling between pixels and outside the image
    torch.nn.init.normal_(m.offset.weight, std=0.5)
    torch.nn.init.normal_(m.mask.weight, std=0.5)
    return m


@pytest.mark.parametrize('form', ['gridsample', 'custom'])
@pytest.mark.parametrize('remove_center', [False, True])
def test_dcnv3_layer_runs_in_onnxruntime(tmp_path, form, remove_center, ort_library):
    m = _module(remove_center)
    path = str(tmp_path / f'{form}.onnx')
    x = torch.randn(2, 9, 11, 64)
    register_dcnv3_symbolic(17)
    with torch.no_grad(), dcnv3_export_form(m, form):
        torch.onnx.export(m, (x,), path, dynamo=False, opset_version=17, input_names=['x'],
                          custom_opsets={DCNV3_DOMAIN: 1},
                          dynamic_axes={'x': {0: 'n', 1: 'h', 2: 'w'}})
    ops = {(n.domain, n.op_type) for n in onnx.load(path).graph.node}
    if form == 'custom':
        assert (DCNV3_DOMAIN, 'DCNv3') in ops and ('', 'GridSample') not in ops
    else:
        assert ('', 'GridSample') in ops and all(d == '' for d, _ in ops)
    assert not m.__dict__.get('use_reference')  # the module is restored after the export
    session = _session(path, ort_library if form == 'custom' else None)
    for shape in ((2, 9, 11, 64), (1, 16, 5, 64)):  # the export size and another (dynamic axes)
        xx = torch.randn(shape)
        with torch.no_grad():
            expected = m(xx)
        got = torch.from_numpy(session.run(None, {'x': xx.numpy()})[0])
        assert got.shape == expected.shape
        assert (got - expected).abs().max() < 1e-5


def test_custom_op_rejects_bad_shapes(tmp_path, ort_library):
    """A DCNv3 node given an offset of the wrong size fails with a message naming it."""
    from onnx import TensorProto, helper

    node = helper.make_node('DCNv3', ['x', 'offset', 'mask'], ['y'], domain=DCNV3_DOMAIN,
                            kernel_h=3, kernel_w=3, stride_h=1, stride_w=1, pad_h=1, pad_w=1,
                            dilation_h=1, dilation_w=1, group=2, group_channels=8,
                            offset_scale=1.0, remove_center=0)
    io = [helper.make_tensor_value_info(n, TensorProto.FLOAT, None) for n in
          ('x', 'offset', 'mask', 'y')]
    graph = helper.make_graph([node], 'g', io[:3], io[3:])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17),
                                                    helper.make_opsetid(DCNV3_DOMAIN, 1)])
    path = str(tmp_path / 'bad.onnx')
    onnx.save(model, path)
    session = _session(path, ort_library)
    feed = dict(x=torch.randn(1, 4, 4, 16).numpy(), offset=torch.randn(1, 4, 4, 35).numpy(),
                mask=torch.randn(1, 4, 4, 18).numpy())
    with pytest.raises(Exception, match=r'offset must be \(1, 4, 4, 36\)'):
        session.run(None, feed)
    feed['offset'] = torch.zeros(1, 4, 4, 36).numpy()
    feed['mask'] = torch.full((1, 4, 4, 18), 1 / 9).numpy()
    y = session.run(None, feed)[0]
    # zero offsets and uniform masks: a 3x3 box filter with zero padding
    x = torch.from_numpy(feed['x']).permute(0, 3, 1, 2)
    box = torch.nn.functional.avg_pool2d(x, 3, 1, 1, count_include_pad=True).permute(0, 2, 3, 1)
    assert torch.allclose(torch.from_numpy(y), box, atol=1e-6)


def test_unknown_form_is_named():
    with pytest.raises(ValueError, match='--dcnv3'), dcnv3_export_form(_module(False), 'trt'):
        pass
