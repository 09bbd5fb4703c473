"""No tool evaluates its input: no ``eval``/``exec``/``compile`` anywhere under tools/, and
``--cfg-options`` is read with mmengine's ``DictAction`` (which parses numbers, booleans, None,
lists and tuples and never runs anything) wherever a tool has it, as the config tools do."""
from __future__ import annotations

import ast
import glob
import importlib
import os.path as osp
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, ROOT)

TOOLS = sorted(glob.glob(osp.join(ROOT, 'tools', '**', '*.py'), recursive=True))
EVALUATORS = {'eval', 'exec', 'compile', '__import__'}


def _calls(tree: ast.AST):
    """``(call, name)``: ``f(...)`` and ``obj.f(...)`` are both named ``f``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.id if isinstance(f, ast.Name) else f.attr if isinstance(f, ast.Attribute) else None
            yield node, name


def _builtin_calls(tree: ast.AST):
    """Calls of the builtins: ``eval(...)``, ``builtins.eval(...)`` (not ``model.eval()``)."""
    for node, name in _calls(tree):
        f = node.func
        if isinstance(f, ast.Name) or (isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name)
                                       and f.value.id == 'builtins'):
            yield node, name


def _cfg_options_action(tree: ast.AST) -> str | None:
    for node, name in _calls(tree):
        if name == 'add_argument' and any(isinstance(a, ast.Constant) and a.value == '--cfg-options'
                                          for a in node.args):
            action = {k.arg: k.value for k in node.keywords}.get('action')
            return action.id if isinstance(action, ast.Name) else ast.dump(action)
    return None


def test_the_scan_sees_the_tools():
    names = {osp.relpath(p, ROOT) for p in TOOLS}
    assert {'tools/train.py', 'tools/test.py', 'tools/image_demo.py', 'tools/get_flops.py',
            'tools/benchmark.py'} <= names


@pytest.mark.parametrize('path', TOOLS, ids=lambda p: osp.relpath(p, ROOT))
def test_no_tool_evaluates_text(path):
    with open(path) as f:
        tree = ast.parse(f.read(), filename=path)
    found = [f'{name}() at line {node.lineno}' for node, name in _builtin_calls(tree)
             if name in EVALUATORS]
    assert not found, f'{osp.relpath(path, ROOT)} calls {", ".join(found)}'
    action = _cfg_options_action(tree)
    assert action in (None, 'DictAction'), \
        f'{osp.relpath(path, ROOT)} reads --cfg-options with {action}, not DictAction'


CONFIG = osp.join(ROOT, 'configs', 'demo', 'internimage-micro_demo-imagenet-64.py')
ARGV = {
    'train': [CONFIG],
    'test': [CONFIG, 'x.pth'],
    'image_demo': ['x.png', CONFIG, 'x.pth'],
    'get_flops': [CONFIG],
    'benchmark': [CONFIG],
}


@pytest.mark.parametrize('tool', sorted(ARGV))
def test_cfg_options_are_parsed_not_run(tool, tmp_path):
    marker = tmp_path / 'executed'
    module = importlib.import_module(f'tools.{tool}')
    args = module.parse_args(ARGV[tool] + [
        '--cfg-options', f"model.head.loss=__import__('os').system('touch {marker}')",
        'train_cfg.max_epochs=2', 'model.backbone.depths=[1,1,3,1]', 'x.flag=True'])
    options = args.cfg_options
    assert options['train_cfg.max_epochs'] == 2
    assert options['model.backbone.depths'] == [1, 1, 3, 1]
    assert options['x.flag'] is True
    assert isinstance(options['model.head.loss'], str) and 'system' in options['model.head.loss']
    assert not marker.exists()
