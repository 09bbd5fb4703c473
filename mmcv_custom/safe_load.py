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

A file that is not a checkpoint at all (a text file, a Git LFS pointer, an HTML error page, a
truncated download) also fails inside the weights-only unpickler, and torch then advises retrying
with ``weights_only=False``: wrong advice, and unsafe. mmengine's loader of local files (which the
Runner, ``init_detector``/``init_model`` and our backbone loading all go through) is wrapped so
that such a file fails with :class:`NotACheckpointError`, naming the file and what it is instead.
"""
from __future__ import annotations

import io
import os.path as osp
import pickle
import zipfile

import torch

__all__ = ['mmengine_checkpoint_globals', 'allow_globals', 'register', 'NotACheckpointError',
           'checkpoint_file_problem']


class NotACheckpointError(ValueError):
    """A file that ``torch.save`` did not write (or that is damaged)."""


class _NoGlobalsUnpickler(pickle.Unpickler):
    """Reads plain data only: a file under inspection must not run or import anything."""

    def find_class(self, module, name):
        raise pickle.UnpicklingError(f'global {module}.{name}')


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


def checkpoint_file_problem(path: str) -> str | None:
    """Why ``path`` is not a file written by ``torch.save``, or ``None`` if it looks like one.

    ``torch.save`` writes a zip archive holding ``data.pkl`` or, in the legacy format, a pickle
    stream that starts with torch's magic number. Only the file's structure is looked at, so a
    real checkpoint that torch refuses for its content (a type outside the allow-list) passes.
    """
    if not osp.isfile(path):
        return None
    with open(path, 'rb') as f:
        head = f.read(1024)
    if not head:
        return 'the file is empty'
    if head.startswith(b'PK\x03\x04'):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError, ValueError):
            return 'it is a truncated or damaged zip archive (an interrupted download or copy?)'
        if any(n == 'data.pkl' or n.endswith('/data.pkl') for n in names):
            return None
        return 'it is a zip archive without the data.pkl that torch.save writes'
    if head.startswith(b'version https://git-lfs'):
        return 'it is a Git LFS pointer, not the file itself (fetch it with `git lfs pull`)'
    try:
        # from memory: a length field in random bytes must not make the unpickler read gigabytes
        magic = _NoGlobalsUnpickler(io.BytesIO(head)).load()
    except Exception:  # anything unreadable is not torch's legacy format: described below
        magic = None
    if type(magic) is int and magic == torch.serialization.MAGIC_NUMBER:
        return None
    if head[0] == pickle.PROTO[0]:
        return 'it is a pickle file not written by torch.save'
    if all(32 <= b < 127 or b in b'\t\n\r' for b in head):
        text = head.decode('ascii')
        return f'it is a text file, starting with {text[:40]!r} (an error page or a log?)'
    return ('it is neither a zip archive nor a pickle written by torch.save '
            f'(it starts with {head[:16]!r})')


def _checked(loader):
    """Wrap a checkpoint loader of mmengine so that non-checkpoints fail with their name."""
    if getattr(loader, '_names_non_checkpoints', False):
        return loader

    def load(filename, map_location=None):
        try:
            return loader(filename, map_location)
        except Exception as error:  # classified by the file, not by the error
            problem = checkpoint_file_problem(osp.expanduser(filename))
            if problem is None:  # a checkpoint after all: torch's own refusal stands
                raise
            # `from None`: torch's message would advise turning the weights-only check off
            raise NotACheckpointError(
                f'{filename} is not a readable checkpoint: {problem} (torch.load failed with '
                f'{type(error).__name__})') from None

    load._names_non_checkpoints = True
    load.__name__ = getattr(loader, '__name__', 'load_from_local')
    load.__doc__ = loader.__doc__
    return load


def register() -> None:
    """Allow the types mmengine writes and name non-checkpoint files. Idempotent."""
    allow_globals(*mmengine_checkpoint_globals())
    try:
        from mmengine.runner.checkpoint import CheckpointLoader
    except ImportError:  # mmengine is optional for the operator alone
        return
    # '' is the scheme of local paths; mmengine names the loader in its log from __name__
    CheckpointLoader.register_scheme('', _checked(CheckpointLoader._schemes['']), force=True)


register()
