"""Loads the compiled extension once and tells which device types it has kernels for."""
from __future__ import annotations

import importlib

import torch

_LOAD_ERROR: Exception | None = None
try:
    # Importing the module runs the TORCH_LIBRARY static initialisers that register the operators.
    importlib.import_module('ops_dcnv3._C')
except ImportError as e:  # a missing or stale build must not break `import ops_dcnv3`
    _LOAD_ERROR = e

OP_FORWARD = 'ops_dcnv3::dcnv3_forward'
_DISPATCH_KEYS = {'cpu': 'CPU', 'cuda': 'CUDA'}


def load_error() -> Exception | None:
    """The ImportError raised while loading ``ops_dcnv3._C``, or None when it loaded."""
    return _LOAD_ERROR


def is_loaded() -> bool:
    return _LOAD_ERROR is None


def has_kernel(device_type: str) -> bool:
    """Whether the compiled operator has a kernel for ``device_type`` ('cpu', 'cuda')."""
    key = _DISPATCH_KEYS.get(device_type)
    if _LOAD_ERROR is not None or key is None:
        return False
    return torch._C._dispatch_has_kernel_for_dispatch_key(OP_FORWARD, key)


def compiled_devices() -> list[str]:
    """Device types ('cpu', 'cuda') whose compiled DCNv3 kernels are loaded."""
    return [d for d in _DISPATCH_KEYS if has_kernel(d)]


def missing_kernel_message(device_type: str) -> str:
    """Why the compiled op cannot run on ``device_type``, the rebuild command, and the alternative."""
    alternative = ("or choose the slow grid_sample reference explicitly: core_op='DCNv3_pytorch' in "
                   'the InternImage config (the DCNv3_pytorch module, dcnv3_core_pytorch).')
    if _LOAD_ERROR is not None:
        return ('ops_dcnv3: the compiled extension ops_dcnv3._C could not be loaded '
                f'({_LOAD_ERROR}); build it with `pip install --no-build-isolation -e .` in the '
                f'repository root (`make setup` does it), {alternative}')
    return (f'ops_dcnv3: the compiled extension has no {device_type!r} kernel (built for '
            f'{compiled_devices()}); rebuild it with the CUDA toolkit: `FORCE_CUDA=1 pip install '
            '--no-build-isolation -e .` in the repository root (FORCE_CUDA=1 builds the CUDA kernels '
            f'even where no GPU is visible), {alternative}')
