"""tools/benchmark.py --mode train: each timed call is one training step (loss, backward, AdamW step)
of every model alike, reported in ms/step with the same ratio line as inference."""
from __future__ import annotations

import importlib.util
import os
import re

import pytest
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO_CLS = os.path.join(ROOT, 'configs', 'demo', 'internimage-micro_demo-imagenet-64.py')
DEMO_SEG = os.path.join(ROOT, 'configs', 'demo', 'upernet_internimage-micro_demo-ade20k-128x128.py')
TINY = ['--batch', '2', '--shape', '32', '--warmup', '0', '--iters', '1', '--device', 'cpu']


def _load_tool():
    spec = importlib.util.spec_from_file_location('benchmark', os.path.join(ROOT, 'tools', 'benchmark.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def _record_builds(tool, monkeypatch) -> list:
    """Wrap the model builders: [(module, {name: parameter copy at build time})] per built model."""
    built = []
    for fn in ('build_internimage', 'build_baseline'):
        def wrapper(args, _build=getattr(tool, fn)):
            entry = _build(args)
            built.append((entry[1], {n: p.detach().clone() for n, p in entry[1].named_parameters()}))
            return entry
        monkeypatch.setattr(tool, fn, wrapper)
    return built


def _changed_fraction(module, before: dict) -> float:
    changed = [not torch.equal(p.detach(), before[n]) for n, p in module.named_parameters()]
    return sum(changed) / len(changed)


@pytest.mark.parametrize('extra, suffix', [([], ''), (['--backbone-only'], ' backbone')],
                         ids=['classifier-loss', 'backbone-only'])
def test_train_mode_times_steps_and_updates_the_weights(extra, suffix, capsys, monkeypatch):
    tool = _load_tool()
    built = _record_builds(tool, monkeypatch)
    medians = tool.main([DEMO_CLS, '--mode', 'train', *extra, *TINY])
    out = capsys.readouterr().out
    assert len(medians) == 1 and medians[0] > 0
    assert re.search(r'^mode train \(AdamW lr 0\.0001\), device cpu', out, re.M)
    name = re.escape(os.path.basename(DEMO_CLS) + suffix)
    step_ms = float(re.search(rf'^{name} +latency +([0-9.]+) ms/step \(min [0-9.]+\) +[0-9.]+ images/s', out,
                              re.M).group(1))
    assert abs(step_ms - medians[0] * 1e3) < 0.1
    (module, before), = built
    assert module.training  # model.train() in train mode
    assert _changed_fraction(module, before) > 0.9  # one AdamW step moved (nearly) every parameter


def test_train_step_is_zero_grad_loss_backward_adamw():
    tool = _load_tool()
    module = torch.nn.Linear(3, 2)
    before = module.weight.detach().clone()
    step = tool.train_step(module, lambda x: module(x).square().mean())
    loss = step(torch.randn(4, 3))
    assert loss.requires_grad and module.weight.grad is not None
    assert not torch.equal(module.weight.detach(), before)
    # AdamW's first step moves every weight by about lr (the sign of its gradient)
    assert torch.allclose((module.weight.detach() - before).abs(), torch.full_like(before, tool.LR), rtol=0.02)


def test_train_mode_of_a_segmentor_config_needs_backbone_only(capsys):
    tool = _load_tool()
    with pytest.raises(SystemExit) as e:
        tool.main([DEMO_SEG, '--mode', 'train', *TINY])
    assert e.value.code == 2
    assert 'add --backbone-only' in capsys.readouterr().err


def test_inference_stays_the_default(capsys):
    tool = _load_tool()
    assert tool.parse_args(['--size', 't']).mode == 'inference'
    tool.main([DEMO_CLS, *TINY])
    out = capsys.readouterr().out
    assert re.search(r'^mode inference, device cpu', out, re.M) and ' ms/batch ' in out


@pytest.mark.slow  # builds two full-size classifiers and trains them one step each
def test_train_mode_internimage_t_beside_convnext_t(capsys, monkeypatch):
    # Another library's default scope left in the process (as earlier tests leave mmseg's) must not
    # change which registry the baseline classifier is built from.
    import mmseg.registry  # noqa: F401  (registers the mmseg scope)
    from mmengine.registry import DefaultScope
    tool = _load_tool()
    built = _record_builds(tool, monkeypatch)
    with DefaultScope.overwrite_default_scope('mmseg'):
        medians = tool.main(['--size', 't', '--baseline', 'convnext-t', '--mode', 'train', *TINY])
    out = capsys.readouterr().out
    assert len(medians) == 2 and all(m > 0 for m in medians)
    assert re.search(r'InternImage-T .* ms/step .* images/s', out)
    assert re.search(r'ConvNeXt-T .* ms/step .* images/s', out)
    ratio = float(re.search(r'^ratio InternImage-T / ConvNeXt-T latency: ([0-9.]+)x \(of minima', out,
                            re.M).group(1))
    assert abs(ratio - medians[0] / medians[1]) < 0.01
    assert len(built) == 2 and all(module.training for module, _ in built)
    assert all(_changed_fraction(module, before) > 0.9 for module, before in built)
