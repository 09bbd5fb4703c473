"""Time the compiled DCNv3 operator against the grid_sample reference on InternImage-T stage shapes.

All paths run in the same process on the same tensors, interleaved, after a warm-up; the table shows
medians, the speed-up of the compiled kernel, and its achieved memory bandwidth (the minimum traffic
of the op: read input/offset/mask, write output; backward adds grad_output and the three gradients)
relative to a measured memcpy bandwidth. On CUDA the shapes are taken at batch 64 and include
InternImage-H's first stage (at its 640 px fine-tuning resolution), and where the `DCNv4` package is
installed its operator is timed at the same shapes (its offsets and mask come packed in one tensor,
and it has no softmax, so it does slightly less work).

    python tools/benchmark_dcnv3.py --device cpu --repeats 10 --batch 8
    python tools/benchmark_dcnv3.py --batch 1 --scaling 2 --stages 1 --repeats 30   # 1 vs 2 threads
    python tools/benchmark_dcnv3.py --device cuda --dtype float32 float16 bfloat16
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
# InternImage-H's first stage at 640 px: 320 channels in 10 groups (group_channels 32).
H_STAGE1 = (160, 320, 10)
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


def dcnv4_function():
    """DCNv4's autograd function where the `DCNv4` package is installed, else None."""
    try:
        from DCNv4.functions import DCNv4Function
    except ImportError:
        return None
    return DCNv4Function


def make_dcnv4_case(tensors, groups: int, requires_grad: bool):
    """DCNv4's operands for the same shape: the input and one offset+mask tensor (G*P*3 channels,
    padded to a multiple of 8 as its module does). Only the sizes matter for timing: the values are
    not rearranged into DCNv4's per-group order."""
    x, offset, mask = tensors
    packed = torch.cat([offset.detach(), mask.detach()], -1)
    width = -(-packed.shape[-1] // 8) * 8
    packed = torch.nn.functional.pad(packed, (0, width - packed.shape[-1]))
    return [x.detach().clone().requires_grad_(requires_grad), packed.requires_grad_(requires_grad)]


def run_dcnv4(fn, tensors, groups: int, backward: bool, grad=None):
    x, offset_mask = tensors
    out = fn.apply(x, offset_mask, KERNEL, KERNEL, 1, 1, 1, 1, 1, 1, groups, x.shape[-1] // groups,
                   1.0, 256, 0)
    if backward:
        for t in tensors:
            t.grad = None
        out.backward(grad)
    return out


def measure(runs: dict, warmup: int, repeats: int, device: torch.device, grad_enabled: bool) -> dict:
    """Median seconds of each callable, run interleaved so that drifts hit all of them alike."""
    times = {name: [] for name in runs}
    with torch.set_grad_enabled(grad_enabled):
        for _ in range(warmup):
            for fn in runs.values():
                fn()
        for _ in range(repeats):
            for name, fn in runs.items():
                times[name].append(_time(fn, device))
    return {name: statistics.median(t) for name, t in times.items()}


def thread_scaling(args) -> list[dict]:
    """Compiled forward and backward with 1 and with ``args.scaling`` threads, alternating the
    thread count every few calls so that load from other processes hits both alike; min and
    median."""
    batch = args.batch or 8
    threads = (1, args.scaling)
    print(f'device=cpu batch={batch} threads {threads[0]} vs {threads[1]} repeats={args.repeats}')
    print(f"{'stage shape (HxWxC/G)':<22} {'pass':<8} {'1 thread ms':>12} {f'{threads[1]} threads ms':>14} "
          f"{'speed-up (min)':>15} {'(median)':>9}")
    rows = []
    saved = torch.get_num_threads()
    try:
        for size, channels, groups in (STAGES[i - 1] for i in (args.stages or [1, 2, 3, 4])):
            x, offset, mask = make_case(batch, size, channels, groups, torch.float32, 'cpu', False)
            grad = torch.randn(x.shape)
            ops = torch.ops.ops_dcnv3
            geometry = (KERNEL, KERNEL, 1, 1, 1, 1, 1, 1, groups, channels // groups, 1.0, 0)
            calls = {'fwd': functools.partial(ops.dcnv3_forward, x, offset, mask, *geometry),
                     'bwd': functools.partial(ops.dcnv3_backward, x, offset, mask, grad, *geometry)}
            for name, fn in calls.items():
                times = {t: [] for t in threads}
                for i in range(args.warmup + args.repeats):
                    for t in threads:
                        # A block of calls per thread count: the first one after a switch pays for
                        # waking the pool's threads and is not counted.
                        torch.set_num_threads(t)
                        fn()
                        for _ in range(3):
                            elapsed = _time(fn, torch.device('cpu'))
                            if i >= args.warmup:
                                times[t].append(elapsed)
                one, many = (min(times[t]) for t in threads)
                med1, medn = (statistics.median(times[t]) for t in threads)
                print(f"{f'{size}x{size}x{channels}/{groups}':<22} {name:<8} {one * 1e3:>12.3f} "
                      f"{many * 1e3:>14.3f} {one / many:>14.2f}x {med1 / medn:>8.2f}x")
                rows.append(dict(shape=(size, channels, groups), pass_=name, one=one, many=many))
    finally:
        torch.set_num_threads(saved)
    return rows


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--device', default='cpu', help='cpu or cuda')
    parser.add_argument('--repeats', type=int, default=10, help='timed runs per measurement')
    parser.add_argument('--warmup', type=int, default=2, help='untimed runs first')
    parser.add_argument('--batch', type=int, default=None, help='default: 8 on CPU, 64 on CUDA')
    parser.add_argument('--dtype', nargs='+', default=['float32'],
                        choices=['float32', 'float16', 'bfloat16'])
    parser.add_argument('--threads', type=int, default=None, help='torch.set_num_threads (CPU)')
    parser.add_argument('--scaling', type=int, default=None, metavar='N',
                        help='instead of the table: time the compiled forward and backward with 1 and '
                             'with N threads, interleaved, and print the speed-up (CPU)')
    parser.add_argument('--stages', type=int, nargs='+', default=None,
                        help='T stage indices 1-4 (default all), plus 5 for H stage 1 (default on CUDA)')
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    if args.scaling:
        return thread_scaling(args)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type not in compiled_devices():
        raise SystemExit(f'no compiled DCNv3 kernel for {device.type!r} (have {compiled_devices()})')
    batch = args.batch or (64 if device.type == 'cuda' else 8)
    shapes = STAGES + [H_STAGE1]
    chosen = args.stages or ([1, 2, 3, 4, 5] if device.type == 'cuda' else [1, 2, 3, 4])
    v4 = dcnv4_function() if device.type == 'cuda' else None
    bandwidth = memcpy_bandwidth(device, args.repeats)
    print(f'device={device} batch={batch} threads={torch.get_num_threads()} repeats={args.repeats} '
          f'memcpy={bandwidth / 1e9:.1f} GB/s dcnv4={"yes" if v4 else "not installed"}')
    header = (f"{'dtype':<9} {'stage shape (HxWxC/G)':<22} {'pass':<8} {'compiled ms':>12} "
              f"{'reference ms':>13} {'speed-up':>9} {'GB/s':>7} {'% memcpy':>9}")
    if v4:
        header += f" {'DCNv4 ms':>9} {'ours/DCNv4':>11}"
    print(header)
    print('-' * len(header))
    rows = []
    for dtype_name in args.dtype:
        dtype = getattr(torch, dtype_name)
        elem = torch.empty((), dtype=dtype).element_size()
        for size, channels, groups in (shapes[i - 1] for i in chosen):
            for backward in (False, True):
                tensors = make_case(batch, size, channels, groups, dtype, device, backward)
                grad = torch.randn(tensors[0].shape, dtype=dtype, device=device) if backward else None
                runs = {name: functools.partial(run_op, tensors, groups, name == 'reference',
                                                backward, grad)
                        for name in ('compiled', 'reference')}
                if v4:
                    runs['dcnv4'] = functools.partial(
                        run_dcnv4, v4, make_dcnv4_case(tensors, groups, backward), groups, backward,
                        grad)
                med = measure(runs, args.warmup, args.repeats, device, backward)
                fast = med['compiled']
                io = sum(t.numel() for t in tensors) + tensors[0].numel()  # inputs + output
                traffic = io * (2 if backward else 1) * elem  # backward reads/writes the same again
                label = f'{size}x{size}x{channels}/{groups}'
                line = (f"{dtype_name:<9} {label:<22} {'fwd+bwd' if backward else 'fwd':<8} "
                        f"{fast * 1e3:>12.3f} {med['reference'] * 1e3:>13.3f} "
                        f"{med['reference'] / fast:>8.2f}x {traffic / fast / 1e9:>7.1f} "
                        f'{100 * traffic / fast / bandwidth:>8.1f}%')
                if v4:
                    line += f" {med['dcnv4'] * 1e3:>9.3f} {fast / med['dcnv4']:>10.2f}x"
                print(line)
                rows.append(dict(dtype=dtype_name, shape=(size, channels, groups),
                                 backward=backward, **med))
    return rows


if __name__ == '__main__':
    main()
