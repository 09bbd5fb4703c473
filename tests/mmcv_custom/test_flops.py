"""FLOPs counter: hand-counted small model, and the paper's figures for InternImage T/S/B/L/XL."""
from __future__ import annotations

import pytest
import torch
import torch.nn as nn

from mmcv_custom.flops import count_flops, dcnv3_flops


def test_counts_conv_linear_norm_act_by_hand():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5, bias=False))
    x = torch.randn(2, 3, 4, 4)
    total, parts = count_flops(model, lambda: model(x))
    conv = 2 * 8 * 4 * 4 * (3 * 9) + 2 * 8 * 4 * 4  # MACs + bias
    bn = 2 * 8 * 4 * 4 * 2  # affine
    relu = 2 * 8 * 4 * 4
    pool = 2 * 8 * 4 * 4
    linear = 2 * 8 * 5
    assert parts == {'modules': conv + bn + relu + pool + linear, 'dcnv3_sampling': 0}
    assert total == conv + bn + relu + pool + linear


def test_dcnv3_sampling_term_follows_paper_formula():
    from mmcv_custom.models.internimage import InternImage

    model = InternImage(core_op='DCNv3_pytorch', channels=16, depths=[1, 2, 1, 1], groups=[2, 4, 8, 16]).eval()
    _, parts = count_flops(model, lambda: model(torch.zeros(1, 3, 64, 64)))
    # Published get_flops.py: sum over levels of depth * 5 * (H/4/2^i * W/4/2^i) * 9 * C_i, worked out
    # by hand (kernel 3 without remove_center: 9 points; the stem has stride 4, each level halves):
    #   level 0: stride  4, 16x16 = 256 positions, C  16, depth 1: 5 * 256 * 9 *  16 * 1 = 184320
    #   level 1: stride  8,  8x8  =  64 positions, C  32, depth 2: 5 *  64 * 9 *  32 * 2 = 184320
    #   level 2: stride 16,  4x4  =  16 positions, C  64, depth 1: 5 *  16 * 9 *  64 * 1 =  46080
    #   level 3: stride 32,  2x2  =   4 positions, C 128, depth 1: 5 *   4 * 9 * 128 * 1 =  23040
    #   total = 184320 + 184320 + 46080 + 23040 = 437760 (= 45 * (4096 + 4096 + 1024 + 512))
    assert parts['dcnv3_sampling'] == 437760
    assert dcnv3_flops(256, 9, 16) == 184320  # the helper alone, level 0's term


# Paper FLOPs (G): T/S/B at 224, L/XL at 384; ours must be within 5%.
@pytest.mark.parametrize('size,res,paper', [('t', 224, 5), ('s', 224, 8), ('b', 224, 16),
                                            ('l', 384, 108), ('xl', 384, 163)])
def test_classifier_flops_within_5_percent_of_paper(size, res, paper):
    from mmengine.registry import DefaultScope
    from mmpretrain.registry import MODELS

    from mmpretrain_custom.models import internimage_cls_model

    with torch.device('meta'), DefaultScope.overwrite_default_scope('mmpretrain'):  # shapes only
        model = MODELS.build(internimage_cls_model(size, core_op='DCNv3_pytorch')).eval()
        x = torch.zeros(1, 3, res, res)
    total, _ = count_flops(model, lambda: model(x, mode='tensor'))
    assert abs(total / 1e9 - paper) / paper < 0.05


def test_get_flops_tool_reports_published_params_and_flops(capsys):
    import importlib.util
    import os

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    spec = importlib.util.spec_from_file_location('get_flops', os.path.join(root, 'tools', 'get_flops.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    flops, params = tool.main(['--size', 't', '--core-op', 'DCNv3_pytorch'])
    assert round(params / 1e6, 2) == 29.92
    assert abs(flops / 5e9 - 1) < 0.05
    assert 'Input shape: (3, 224, 224)' in capsys.readouterr().out
    _, backbone_params = tool.main(['--size', 't', '--backbone-only', '--core-op', 'DCNv3_pytorch'])
    assert round(backbone_params / 1e6, 2) == 28.75


def test_get_flops_cfg_options_are_parsed_not_evaluated(tmp_path):
    # A value that Python would execute stays a string; lists and numbers still parse.
    import importlib.util
    import os

    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    spec = importlib.util.spec_from_file_location('get_flops', os.path.join(root, 'tools', 'get_flops.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    marker = tmp_path / 'executed'
    config = os.path.join(root, 'configs', 'demo', 'internimage-micro_demo-imagenet-64.py')
    args = tool.parse_args([config, '--cfg-options',
                            f"model.head.loss=(__import__('os').system('touch {marker}'))",
                            'model.backbone.depths=[1,1,3,1]', 'model.backbone.drop_path_rate=0.5'])
    assert args.cfg_options['model.backbone.depths'] == [1, 1, 3, 1]
    assert args.cfg_options['model.backbone.drop_path_rate'] == 0.5
    # A leading parenthesis made the old parser eval() the value; DictAction reads a tuple of text.
    value = args.cfg_options['model.head.loss']
    assert not marker.exists() and 'system' in str(value) and not isinstance(value, int)
    with pytest.raises(TypeError):  # a tuple of text is no loss config: the build fails, nothing runs
        tool.build(args)
    assert not marker.exists()
