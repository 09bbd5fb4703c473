"""Let ``torch.load(weights_only=True)`` read the checkpoints that mmengine writes.

Since torch 2.6, ``torch.load`` defaults to ``weights_only=True``: it unpickles only tensors,
containers and an allow-list of types. mmengine 0.10.7 calls ``torch.load`` without the argument,
and its checkpoints carry more than tensors: the message hub's ``HistoryBuffer`` objects (backed by
numpy arrays), numpy scalars in ``meta``, and so loading or resuming them fails with
``UnpicklingError: Weights only load failed``.

Rather than switching the safety check off (``weights_only=False`` or the
``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD`` variable, which would also run arbitrary code hidden in a
downloaded checkpoint), we add exactly the types mmengine itself writes to torch's allow-list.
Importing :mod:`mmcv_custom` (which every config and tool of this project does) is enough.
A checkpoint that contains anything else still fails, with torch's message naming the type; if the
file is trusted, pass that type to :func:`allow_globals`.
"""
from __future__ import annotations

import pickle

import torch

__all__ = ['mmengine_checkpoint_globals', 'allow_globals', 'register']


def _numpy_globals() -> list:
    import numpy as np

    try:  # numpy >= 2 moved the pickling helpers to numpy._core
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    dtype_classes = [type(np.dtype(t)) for t in (
        np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
        np.uint64, np.float16, np.float32, np.float64, np.complex64, np.complex128)]
    return [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype, *dtype_classes]


def _history_buffer_getattr(obj, name: str):
    """Stands in for ``builtins.getattr`` while unpickling.

    ``HistoryBuffer.__getstate__`` stores its statistics methods (``min``, ``mean``, ...), which
    pickle writes as ``getattr(HistoryBuffer, 'min')``. Allowing the real ``getattr`` would let a
    file read any attribute of any allowed object; this only resolves public methods of
    ``HistoryBuffer``.
    """
    from mmengine.logging.history_buffer import HistoryBuffer

    if obj is HistoryBuffer and not name.startswith('_') and callable(
            getattr(HistoryBuffer, name, None)):
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'checkpoint asks for getattr({obj!r}, {name!r}); only the statistics methods of '
        'mmengine HistoryBuffer are allowed by mmcv_custom.safe_load')


def mmengine_checkpoint_globals() -> list:
    """The non-tensor types found in checkpoints written by mmengine's Runner."""
    found = _numpy_globals()
    try:
        from mmengine.logging.history_buffer import HistoryBuffer
    except ImportError:  # mmengine is optional for the operator alone
        return found
    from mmengine.config.config import ConfigDict
    return found + [HistoryBuffer, ConfigDict, (_history_buffer_getattr, 'builtins.getattr')]


def allow_globals(*objs) -> None:
    """Add trusted types to ``torch.load``'s weights-only allow-list."""
    torch.serialization.add_safe_globals(list(objs))


def register() -> None:
    """Allow the types mmengine writes. Idempotent."""
    allow_globals(*mmengine_checkpoint_globals())


register()
