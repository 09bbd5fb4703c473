"""The state-dict keys and shapes of the published InternImage checkpoints (tests/data/official_keys)."""
from __future__ import annotations

import gzip
import os

_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'official_keys')


def read_key_table(name: str) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of ``tests/data/official_keys/<name>.tsv.gz``, in table order."""
    out = {}
    with gzip.open(os.path.join(_DIR, f'{name}.tsv.gz'), 'rt') as f:
        for line in f.read().splitlines():
            key, shape = line.split('\t')
            out[key] = tuple(int(s) for s in shape.strip('()').split(',') if s.strip())
    return out


def published_keys(size: str) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the published ``size`` ImageNet checkpoint, in checkpoint order."""
    return read_key_table(f'internimage_{size}_cls')
