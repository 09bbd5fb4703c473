"""tools/benchmark.py runs InternImage-T beside ConvNeXt-T in one process and prints their ratio."""
from __future__ import annotations

import importlib.util
import os
import re

import pytest


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
