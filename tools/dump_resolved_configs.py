"""Write each config's fully resolved dict as stable, gzipped JSON (the reference of a config refactor).

A config's resolved dict is ``Config.fromfile(path).to_dict()``: every base merged, every variable
substituted; comments and layout are not part of it. An InternImage backbone that names its size
(``arch='h'``) is written with the size arguments that name stands for, filled in exactly as the
backbone fills them (``mmcv_custom.models.internimage.expand_arch``; arguments the config gives
win), so naming the size and spelling it out resolve to the same recipe. The JSON keeps what
``json`` would lose (tuples are written as ``{"__tuple__": [...]}``), sorts keys and is gzipped
without a timestamp, so two dumps of the same recipe are the same bytes.

    python tools/dump_resolved_configs.py configs/coco configs/ade20k configs/imagenet configs/demo \\
        --out-dir tests/data/resolved_configs

writes ``tests/data/resolved_configs/coco/<config name>.json.gz`` and so on
(``tests/configs/test_resolved_configs.py`` compares the configs with these files).
"""
from __future__ import annotations

import argparse
import glob
import gzip
import json
import os
import os.path as osp
from typing import Any

from mmengine.config import Config

from mmcv_custom.models.internimage import expand_arch

TUPLE_TAG = '__tuple__'


def to_json_stable(obj: Any, where: str = 'cfg') -> Any:
    """``obj`` with tuples tagged and every container a plain dict/list (``where`` names bad values)."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if not isinstance(k, str):
                raise TypeError(f'{where}: key {k!r} is not a string; it has no stable JSON form')
            out[k] = to_json_stable(v, f'{where}.{k}')
        return out
    if isinstance(obj, tuple):
        return {TUPLE_TAG: [to_json_stable(v, f'{where}[{i}]') for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [to_json_stable(v, f'{where}[{i}]') for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    raise TypeError(f'{where}: {type(obj).__name__} value {obj!r} has no stable JSON form')


def resolved_config(path: str) -> dict:
    """The resolved dict of the config ``path`` (``arch`` expanded), in its stable JSON form."""
    cfg = Config.fromfile(path, import_custom_modules=False)
    return to_json_stable(expand_arch(cfg.to_dict()))


def dumps(resolved: dict) -> bytes:
    """Gzipped JSON of a resolved dict; the same dict always gives the same bytes."""
    text = json.dumps(resolved, sort_keys=True, indent=1) + '\n'
    return gzip.compress(text.encode(), mtime=0)


def loads(data: bytes) -> dict:
    """Inverse of :func:`dumps`."""
    return json.loads(gzip.decompress(data).decode())


def dump_path(out_dir: str, config: str) -> str:
    """``<out_dir>/<folder of the config>/<config name>.json.gz``."""
    folder = osp.basename(osp.dirname(osp.abspath(config)))
    name = osp.splitext(osp.basename(config))[0]
    return osp.join(out_dir, folder, name + '.json.gz')


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument('paths', nargs='+', help='config files or folders of configs (not recursive)')
    p.add_argument('--out-dir', required=True, help='folder of the dumps')
    args = p.parse_args(argv)
    configs = []
    for path in args.paths:
        if osp.isdir(path):
            configs += sorted(glob.glob(osp.join(path, '*.py')))
        elif osp.isfile(path):
            configs.append(path)
        else:
            raise SystemExit(f'paths: {path!r} is neither a config file nor a folder')
    for config in configs:
        out = dump_path(args.out_dir, config)
        os.makedirs(osp.dirname(out), exist_ok=True)
        with open(out, 'wb') as f:
            f.write(dumps(resolved_config(config)))
        print(out)


if __name__ == '__main__':
    main()
