"""The benchmark tools: tools/benchmark.py (InternImage-T beside ConvNeXt-T, their ratio) and
tools/benchmark_dcnv3.py (the operator against its reference and, on CUDA, DCNv4)."""
from __future__ import annotations

import importlib.util
import os
import re

import pytest
import torch


@pytest.mark.slow  # builds two full-size classifiers
def test_benchmark_prints_both_models_and_ratio(capsys):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    spec = importlib.util.spec_from_file_location('benchmark', os.path.join(root, 'tools', 'benchmark.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    medians = tool.main(['--size', 't', '--baseline', 'convnext-t', '--batch', '1', '--shape', '32',
                         '--warmup', '0', '--iters', '1', '--device', 'cpu'])
    out = capsys.readouterr().out
    assert len(medians) == 2 and all(m > 0 for m in medians)
    assert re.search(r'InternImage-T .* images/s', out) and re.search(r'ConvNeXt-T .* images/s', out)
    ratio = float(re.search(r'latency: ([0-9.]+)x', out).group(1))
    assert abs(ratio - medians[0] / medians[1]) < 0.01


def _load_tool(name: str):
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    spec = importlib.util.spec_from_file_location(name, os.path.join(root, 'tools', f'{name}.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_dcnv3_benchmark_times_compiled_and_reference_per_dtype(capsys):
    tool = _load_tool('benchmark_dcnv3')
    rows = tool.main(['--device', 'cpu', '--batch', '1', '--repeats', '1', '--warmup', '0',
                      '--stages', '4', '--dtype', 'float32', 'bfloat16'])
    out = capsys.readouterr().out
    assert [(r['dtype'], r['backward']) for r in rows] == [
        ('float32', False), ('float32', True), ('bfloat16', False), ('bfloat16', True)]
    assert all(r['shape'] == (7, 512, 32) and r['compiled'] > 0 and r['reference'] > 0 for r in rows)
    assert len(re.findall(r'^(float32|bfloat16) +7x7x512/32 +fwd', out, re.M)) == 4
    assert 'dcnv4=not installed' in out  # DCNv4 is timed on CUDA only, where installed


def test_dcnv4_operands_pack_offsets_and_mask_padded_to_8():
    tool = _load_tool('benchmark_dcnv3')
    tensors = tool.make_case(2, 5, 64, 4, torch.float32, 'cpu', False)
    x, packed = tool.make_dcnv4_case(tensors, 4, True)
    assert packed.shape == (2, 5, 5, 112)  # 4 groups * 9 points * 3 = 108, padded to 112
    assert torch.equal(packed[..., :72], tensors[1]) and torch.equal(packed[..., 72:108], tensors[2])
    assert not packed[..., 108:].any() and x.requires_grad and packed.requires_grad
