"""Write the embedded demo datasets (synthetic, deterministic) under ``data/``.

    python tools/make_demo_data.py --task det|seg|cls|all [--out data] [--seed 0]

det: COCO-format instance segmentation (``data/demo_coco``), seg: ADE20K layout
(``data/demo_ade20k``), cls: ImageNet layout (``data/demo_imagenet``). The generators live in
``tools/demo_data/``; a task whose generator module is not there is reported and skipped.
"""
from __future__ import annotations

import argparse
import importlib
import os.path as osp
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

# task -> (generator module, sub-directory of --out)
TASKS = {
    'det': ('tools.demo_data.coco', 'demo_coco'),
    'seg': ('tools.demo_data.ade20k', 'demo_ade20k'),
    'cls': ('tools.demo_data.imagenet', 'demo_imagenet'),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument('--task', choices=[*TASKS, 'all'], default='all')
    parser.add_argument('--out', default=osp.join(ROOT, 'data'), help='parent directory')
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    tasks = list(TASKS) if args.task == 'all' else [args.task]
    for task in tasks:
        module_name, sub_dir = TASKS[task]
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name != module_name:
                raise
            if args.task != 'all':
                print(f'[demo-data] {task}: generator {module_name} is missing', file=sys.stderr)
                return 1
            print(f'[demo-data] {task}: skipped ({module_name} is not available)')
            continue
        out_dir = osp.join(args.out, sub_dir)
        start = time.time()
        module.generate(out_dir=out_dir, seed=args.seed)
        print(f'[demo-data] {task}: wrote {out_dir} in {time.time() - start:.1f} s')
    return 0


if __name__ == '__main__':
    sys.exit(main())
