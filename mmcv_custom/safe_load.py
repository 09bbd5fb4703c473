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


def mmengine_checkpoint_globals() -> list:
    """The non-tensor types found in checkpoints written by mmengine's Runner."""
    found = _numpy_globals()
    try:
        from mmengine.logging.history_buffer import HistoryBuffer
    except ImportError:  # mmengine is optional for the operator alone
        return found
    from mmengine.config.config import ConfigDict
    return found + [HistoryBuffer, ConfigDict]


def allow_globals(*objs) -> None:
    """Add trusted types to ``torch.load``'s weights-only allow-list."""
    torch.serialization.add_safe_globals(list(objs))


def register() -> None:
    """Allow the types mmengine writes. Idempotent."""
    allow_globals(*mmengine_checkpoint_globals())


register()
