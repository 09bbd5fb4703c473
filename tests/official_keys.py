"""The state-dict keys and shapes of the published InternImage checkpoints (tests/data/official_keys)."""
from __future__ import annotations

import gzip
import os

_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data', 'official_keys',
                     'internimage_{}_cls.tsv.gz')


def published_keys(size: str) -> dict[str, tuple[int, ...]]:
    """Keys and shapes of the published ``size`` ImageNet checkpoint, in checkpoint order."""
    out = {}
    with gzip.open(_PATH.format(size), 'rt') as f:
        for line in f.read().splitlines():
            key, shape = line.split('\t')
            out[key] = tuple(int(s) for s in shape.strip('()').split(',') if s.strip())
    return out
