"""InternImage-T classifier latency: ONNX Runtime (both DCNv3 forms) vs PyTorch eager, on the CPU.

    python tools/deploy/benchmark_ort.py [--batch 1 8] [--shape 224] [--threads 2] [--repeat 10]

Random weights (latency does not depend on them). Each backend gets ``--threads`` intra-op threads.
The backends run in turn within every repeat (a shared VM's speed drifts by tens of percent from
minute to minute); the table gives the median latency per batch and the ratio to PyTorch eager.
"""
from __future__ import annotations

import argparse
import os.path as osp
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

from tools.deploy import common, export_onnx  # noqa: E402

CONFIG = osp.join(common.ROOT, 'configs', 'imagenet', 'internimage-t_8xb128_in1k-224.py')


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--batch', type=int, nargs='+', default=[1, 8])
    p.add_argument('--shape', type=int, default=224)
    p.add_argument('--threads', type=int, default=2)
    p.add_argument('--repeat', type=int, default=10)
    p.add_argument('--warmup', type=int, default=2)
    return p.parse_args(argv)


def interleaved_median_ms(fns: dict, repeat: int, warmup: int) -> dict:
    """Median latency of each function, run round-robin so that the CPU's drift hits all alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) * 1e3 for name, t in times.items()}


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for form in ('gridsample', 'custom'):
            paths[form] = osp.join(tmp, f'{form}.onnx')
            export_onnx.main([CONFIG, '--out', paths[form], '--dcnv3', form, '--dynamic',
                              '--shape', str(args.shape), str(args.shape)])
        model = common.ClsExport(random_model()).eval()
        sessions = {f: common.ort_session(p, threads=args.threads) for f, p in paths.items()}
        for batch in args.batch:
            x = torch.randn(batch, 3, args.shape, args.shape)
            fns = {'eager': torch.no_grad()(lambda x=x: model(x))}
            for form, session in sessions.items():
                feed = {session.get_inputs()[0].name: x.numpy()}
                fns[form] = lambda s=session, f=feed: s.run(None, f)
            rows.append(dict(batch=batch, **interleaved_median_ms(fns, args.repeat, args.warmup)))
    print(f'\nInternImage-T classifier, {args.shape}x{args.shape}, {args.threads} threads, median of '
          f'{args.repeat} runs (ms per batch; ratio to PyTorch eager)\n')
    print('| batch | PyTorch eager | ORT, DCNv3 custom op | ORT, DCNv3 gridsample |')
    print('|---|---|---|---|')
    for r in rows:
        print(f"| {r['batch']} | {r['eager']:.1f} | {r['custom']:.1f} "
              f"({r['custom'] / r['eager']:.2f}x) | {r['gridsample']:.1f} "
              f"({r['gridsample'] / r['eager']:.2f}x) |")
    return rows


def random_model():
    cfg, scope = common.load_config(CONFIG)
    torch.manual_seed(0)
    return common.build_model(cfg, scope)


if __name__ == '__main__':
    main()
