"""Time the compiled DCNv3 operator against the grid_sample reference on InternImage-T stage shapes.

Both paths run in the same process on the same tensors, interleaved, after a warm-up; the table shows
medians, the speed-up of the compiled kernel, and its achieved memory bandwidth (the minimum traffic
of the op: read input/offset/mask, write output; backward adds grad_output and the three gradients)
relative to a measured memcpy bandwidth.

    python tools/benchmark_dcnv3.py --device cpu --repeats 10 --batch 8
"""
from __future__ import annotations

import argparse
import functools
import statistics
import time

import torch

from ops_dcnv3 import compiled_devices
from ops_dcnv3.functions import dcnv3

# InternImage-T: (resolution, channels, groups) of the four stages at 224 px; group_channels 16.
STAGES = [(56, 64, 4), (28, 128, 8), (14, 256, 16), (7, 512, 32)]
KERNEL = 3


def _sync(device: torch.device) -> None:
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def _time(fn, device: torch.device) -> float:
    _sync(device)
    start = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - start


def memcpy_bandwidth(device: torch.device, repeats: int) -> float:
    """Bytes/s of a large tensor copy (read + write counted)."""
    src = torch.empty(64 * 2**20 // 4, dtype=torch.float32, device=device).normal_()
    dst = torch.empty_like(src)
    for _ in range(2):
        dst.copy_(src)
    times = [_time(lambda: dst.copy_(src), device) for _ in range(max(repeats, 5))]
    return 2 * src.numel() * src.element_size() / statistics.median(times)


def make_case(batch: int, size: int, channels: int, groups: int, dtype, device, requires_grad: bool):
    gen = torch.Generator().manual_seed(0)
    points = KERNEL * KERNEL
    x = torch.randn(batch, size, size, channels, generator=gen)
    offset = torch.randn(batch, size, size, groups * points * 2, generator=gen)
    mask = torch.randn(batch, size, size, groups, points, generator=gen).softmax(-1).flatten(-2)
    return [t.to(device=device, dtype=dtype).requires_grad_(requires_grad) for t in (x, offset, mask)]


def run_op(tensors, groups: int, use_reference: bool, backward: bool, grad=None):
    x, offset, mask = tensors
    out = dcnv3(x, offset, mask, KERNEL, KERNEL, 1, 1, 1, 1, 1, 1, groups, x.shape[-1] // groups,
                1.0, 0, use_reference=use_reference)
    if backward:
        for t in tensors:
            t.grad = None
        out.backward(grad)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cpu', help='cpu or cuda')
    parser.add_argument('--repeats', type=int, default=10, help='timed runs per measurement')
    parser.add_argument('--warmup', type=int, default=2, help='untimed runs first')
    parser.add_argument('--batch', type=int, default=8)
    parser.add_argument('--dtype', default='float32', choices=['float32', 'float16', 'bfloat16'])
    parser.add_argument('--threads', type=int, default=None, help='torch.set_num_threads (CPU)')
    args = parser.parse_args()

    device = torch.device(args.device)
    dtype = getattr(torch, args.dtype)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type not in compiled_devices():
        raise SystemExit(f'no compiled DCNv3 kernel for {device.type!r} (have {compiled_devices()})')
    bandwidth = memcpy_bandwidth(device, args.repeats)
    print(f'device={device} dtype={args.dtype} batch={args.batch} threads={torch.get_num_threads()} '
          f'repeats={args.repeats} memcpy={bandwidth / 1e9:.1f} GB/s')
    header = (f"{'stage shape (HxWxC/G)':<22} {'pass':<9} {'compiled ms':>12} {'reference ms':>13} "
              f"{'speed-up':>9} {'GB/s':>7} {'% memcpy':>9}")
    print(header)
    print('-' * len(header))
    elem = torch.empty((), dtype=dtype).element_size()
    for size, channels, groups in STAGES:
        for backward in (False, True):
            tensors = make_case(args.batch, size, channels, groups, dtype, device, backward)
            grad = torch.randn(tensors[0].shape, dtype=dtype, device=device) if backward else None
            runs = {
                ref: functools.partial(run_op, tensors, groups, ref, backward, grad)
                for ref in (False, True)
            }
            times = {False: [], True: []}
            with torch.set_grad_enabled(backward):
                for _ in range(args.warmup):
                    for fn in runs.values():
                        fn()
                for _ in range(args.repeats):  # interleaved, so drifts hit both paths alike
                    for ref, fn in runs.items():
                        times[ref].append(_time(fn, device))
            fast, slow = statistics.median(times[False]), statistics.median(times[True])
            io = sum(t.numel() for t in tensors) + tensors[0].numel()  # inputs + output
            traffic = io * (2 if backward else 1) * elem  # backward reads/writes the same again
            label = f'{size}x{size}x{channels}/{groups}'
            print(f"{label:<22} {'fwd+bwd' if backward else 'fwd':<9} {fast * 1e3:>12.3f} "
                  f'{slow * 1e3:>13.3f} {slow / fast:>8.2f}x {traffic / fast / 1e9:>7.1f} '
                  f'{100 * traffic / fast / bandwidth:>8.1f}%')


if __name__ == '__main__':
    main()
