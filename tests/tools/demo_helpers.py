"""Helpers shared by the demo tests of the segmentation and classification tasks."""
from __future__ import annotations

import glob
import os
import socket
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def read_tree(root: str) -> dict[str, bytes]:
    """Every file under ``root`` (relative path -> bytes), to compare generated datasets."""
    out = {}
    for path in sorted(glob.glob(os.path.join(root, '**', '*.*'), recursive=True)):
        with open(path, 'rb') as f:
            out[os.path.relpath(path, root)] = f.read()
    return out


def demo_cfg_options(data_root: str) -> list[str]:
    """``--cfg-options`` that point a demo config's three dataloaders at ``data_root``."""
    return [f'{loader}.dataset.data_root={data_root}'
            for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader')]


def free_port() -> int:
    """A free TCP port on the loopback interface, for torchrun's rendezvous."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run_tool(cmd: list[str], timeout: int = 900, **env) -> str:
    """Run a tool from the repository root with one OpenMP thread; return its output or fail."""
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, 'OMP_NUM_THREADS': '1', **env})
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def save_initialised_checkpoint(config: str, path: str, seed: int = 0) -> dict:
    """The config's model, freshly initialised, saved as mmengine's Runner saves checkpoints
    (``state_dict`` of ``model.state_dict()``, the dataset's classes under ``meta``); returns that
    meta. A demo checkpoint at the cost of a model build, for tests of loading and inference."""
    import torch
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    from mmengine.runner.checkpoint import weights_to_cpu

    cfg = Config.fromfile(config)
    init_default_scope(cfg.default_scope)
    torch.manual_seed(seed)
    model = MODELS.build(cfg.model)
    model.init_weights()
    meta = dict(cfg.metainfo)
    torch.save(dict(state_dict=weights_to_cpu(model.state_dict()), meta=dict(dataset_meta=meta)),
               path)
    return meta
