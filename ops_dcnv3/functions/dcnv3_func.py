"""DCNv3 sampling: the compiled operator, its pure-PyTorch reference and the one place choosing.

Layout (channels-last, as published): input (N, H, W, G*D); offset (N, Ho, Wo, G*P*2) holding (x, y)
pairs; mask (N, Ho, Wo, G*P); output (N, Ho, Wo, G*D). P = kernel_h*kernel_w (minus the centre with
remove_center), point p = i*kernel_h + j with i the x tap and j the y tap. Sampling location along x:

    loc = wo*stride - pad + c + (i*dilation - c + offset_x) * offset_scale,  c = dilation*(k-1) // 2

and likewise along y. Bilinear sampling reads zero outside the image (a location in (-1, W) still
blends the border pixels with zeros, exactly like ``grid_sample(padding_mode='zeros')``). A point whose
location is not finite (NaN or infinite offsets) samples nothing, as a far-away one does: it adds zero
to the output and gets zero gradients, in the compiled kernels and the reference alike (the published
CUDA kernel's behaviour).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import _loader

__all__ = ['DCNv3Function', 'dcnv3', 'dcnv3_core_pytorch', 'dcnv3_device_math', 'check_dcnv3_args']

# Kernels are registered when ops_dcnv3._C is imported and never change afterwards; a frozen set keeps
# the compiled-vs-reference choice cheap and traceable by torch.compile.
_COMPILED_DEVICES = frozenset(_loader.compiled_devices())
_FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def _out_size(size: int, kernel: int, stride: int, pad: int, dilation: int) -> int:
    return (size + 2 * pad - (dilation * (kernel - 1) + 1)) // stride + 1


def check_dcnv3_args(input: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, kernel_h: int,
                     kernel_w: int, stride_h: int, stride_w: int, pad_h: int, pad_w: int,
                     dilation_h: int, dilation_w: int, group: int, group_channels: int,
                     remove_center: int) -> tuple[int, int, int]:
    """Validates the arguments of a DCNv3 call; returns (Ho, Wo, P)."""
    for name, t in (('input', input), ('offset', offset), ('mask', mask)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f'DCNv3: {name} must be a torch.Tensor, got {type(t).__name__}')
        if t.dim() != 4:
            raise ValueError(f'DCNv3: {name} must be a 4-D channels-last tensor, got shape '
                             f'{tuple(t.shape)}')
    for name, v in (('kernel_h', kernel_h), ('kernel_w', kernel_w), ('stride_h', stride_h),
                    ('stride_w', stride_w), ('dilation_h', dilation_h),
                    ('dilation_w', dilation_w), ('group', group),
                    ('group_channels', group_channels)):
        if v <= 0:
            raise ValueError(f'DCNv3: {name} must be a positive integer, got {v}')
    if pad_h < 0 or pad_w < 0:
        raise ValueError(f'DCNv3: pad_h and pad_w must be >= 0, got {pad_h} and {pad_w}')
    if remove_center and (kernel_h % 2 == 0 or kernel_w % 2 == 0):
        raise ValueError('DCNv3: remove_center needs an odd kernel (it drops the centre point), got '
                         f'kernel {kernel_h}x{kernel_w}')
    n, h, w, c = input.shape
    if c != group * group_channels:
        raise ValueError(f'DCNv3: input must have group*group_channels = {group}*{group_channels} = '
                         f'{group * group_channels} channels (last dim of (N, H, W, C)), got shape '
                         f'{tuple(input.shape)}')
    ho = _out_size(h, kernel_h, stride_h, pad_h, dilation_h)
    wo = _out_size(w, kernel_w, stride_w, pad_w, dilation_w)
    if ho <= 0 or wo <= 0:
        raise ValueError(f'DCNv3: input of spatial size {h}x{w} is smaller than the dilated kernel '
                         f'{kernel_h}x{kernel_w} (dilation {dilation_h}x{dilation_w}, pad '
                         f'{pad_h}x{pad_w})')
    points = kernel_h * kernel_w - int(bool(remove_center))
    if tuple(offset.shape) != (n, ho, wo, group * points * 2):
        raise ValueError(f'DCNv3: offset must have shape (N, Ho, Wo, group*P*2) = '
                         f'{(n, ho, wo, group * points * 2)} for input {tuple(input.shape)}, got '
                         f'{tuple(offset.shape)}')
    if tuple(mask.shape) != (n, ho, wo, group * points):
        raise ValueError(f'DCNv3: mask must have shape (N, Ho, Wo, group*P) = '
                         f'{(n, ho, wo, group * points)} for input {tuple(input.shape)}, got '
                         f'{tuple(mask.shape)}')
    if input.dtype not in _FLOAT_DTYPES:
        raise TypeError(f'DCNv3: input must be float32, float64, float16 or bfloat16, got '
                        f'{input.dtype}')
    for name, t in (('offset', offset), ('mask', mask)):
        if t.dtype != input.dtype:
            raise TypeError(f'DCNv3: {name} must have the dtype of input ({input.dtype}), got '
                            f'{t.dtype}')
        if t.device != input.device:
            raise ValueError(f'DCNv3: {name} must be on the device of input ({input.device}), got '
                             f'{t.device}')
    return ho, wo, points


def _kernel_taps(kernel: int, dilation: int, device, dtype) -> torch.Tensor:
    # Tap positions relative to the kernel's centre c = dilation*(k-1)//2.
    return torch.arange(kernel, device=device, dtype=dtype) * dilation - (dilation * (kernel - 1)) // 2


def dcnv3_core_pytorch(input: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, kernel_h: int,
                       kernel_w: int, stride_h: int, stride_w: int, pad_h: int, pad_w: int,
                       dilation_h: int, dilation_w: int, group: int, group_channels: int,
                       offset_scale: float, remove_center: int = 0) -> torch.Tensor:
    """Reference DCNv3 sampling with ``F.grid_sample`` (slow, differentiable, any device/dtype)."""
    ho, wo, points = check_dcnv3_args(input, offset, mask, kernel_h, kernel_w, stride_h, stride_w,
                                      pad_h, pad_w, dilation_h, dilation_w, group,
                                      group_channels, remove_center)
    n, h, w, c = input.shape
    if n == 0:  # grid_sample rejects empty batches; stay connected to the graph for autograd
        return input.new_zeros(0, ho, wo, c) + (input.sum() + offset.sum() + mask.sum()) * 0
    dev, dt = input.device, input.dtype
    # Regular kernel grid, points ordered x-major: p = i*kernel_h + j.
    tx = _kernel_taps(kernel_w, dilation_w, dev, dt)[:, None].expand(kernel_w, kernel_h).reshape(-1)
    ty = _kernel_taps(kernel_h, dilation_h, dev, dt)[None, :].expand(kernel_w, kernel_h).reshape(-1)
    if remove_center:
        keep = torch.arange(kernel_w * kernel_h, device=dev) != (kernel_w // 2) * kernel_h + kernel_h // 2
        tx, ty = tx[keep], ty[keep]
    # Top-left of each output's window plus the centre offset c, in input pixels.
    base_x = torch.arange(wo, device=dev, dtype=dt) * stride_w - pad_w + (dilation_w * (kernel_w - 1)) // 2
    base_y = torch.arange(ho, device=dev, dtype=dt) * stride_h - pad_h + (dilation_h * (kernel_h - 1)) // 2
    # grid_sample wants (2*loc + 1)/size - 1 (align_corners=False: pixel centres at +0.5), with
    # loc = base + (tap + offset)*scale. That is affine in the offset: one multiply-add over the
    # offsets against a constant of one image's size. Fewer full-size element-wise ops than
    # composing x and y apart, which is what an ONNX export of this function runs.
    grid_x = ((base_x[None, :, None] + tx * offset_scale) * 2 + 1) / w - 1  # (1, Wo, P)
    grid_y = ((base_y[:, None, None] + ty * offset_scale) * 2 + 1) / h - 1  # (Ho, 1, P)
    const = torch.stack((grid_x.expand(ho, wo, points), grid_y.expand(ho, wo, points)), dim=-1)
    const = const[:, :, None].expand(ho, wo, group, points, 2).reshape(ho, wo, group * points * 2)
    one = offset.new_ones(())  # sizes as tensors, so that a traced export keeps them dynamic
    slope = torch.stack((one * (2 * offset_scale / w), one * (2 * offset_scale / h)))
    grid = offset * slope.repeat(group * points) + const
    # A coordinate beyond +-3 is outside the image whatever its size, and non-finite locations
    # (NaN compares false) must sample nothing as in the compiled kernels (grid_sample would return
    # NaN): send both to -3. torch.where keeps their gradients at zero.
    outside = torch.full((), -3.0, device=dev, dtype=dt)
    grid = torch.where(grid.abs() < 3, grid, outside)
    grid = grid.view(n, ho, wo, group, points * 2).permute(0, 3, 1, 2, 4)
    grid = grid.reshape(n * group, ho, wo * points, 2)
    value = input.permute(0, 3, 1, 2).reshape(n * group, group_channels, h, w)
    sampled = F.grid_sample(value, grid, mode='bilinear', padding_mode='zeros', align_corners=False)
    weight = mask.reshape(n, ho, wo, group, points).permute(0, 3, 1, 2, 4)
    weight = weight.reshape(n * group, 1, ho, wo * points)
    out = (sampled * weight).view(n, group, group_channels, ho, wo, points).sum(-1)
    return out.permute(0, 3, 4, 1, 2).reshape(n, ho, wo, c)


def _dcnv3_compiled(input, offset, mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                    dilation_h, dilation_w, group, group_channels, offset_scale, remove_center):
    check_dcnv3_args(input, offset, mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                     dilation_h, dilation_w, group, group_channels, remove_center)
    if input.device.type not in _COMPILED_DEVICES:
        raise RuntimeError(_loader.missing_kernel_message(input.device.type))
    if torch.compiler.is_compiling() and torch.is_grad_enabled() and (
            input.requires_grad or offset.requires_grad or mask.requires_grad):
        # With dynamic shapes Inductor (torch 2.14) cannot order the symbolic strides of a view that
        # the graph saves for backward ("cannot determine truth value of Relational"), and the op's
        # operands are such views (the projections' matmuls, reshaped). A plain clone is removed as
        # a no-op, so the op gets copies in another layout (the kernels take any strides). Dynamo
        # does not tell user code whether sizes are symbolic, so compiled training graphs always
        # copy; inference graphs save nothing for backward and take the operands as they are.
        input, offset, mask = (t.contiguous(memory_format=torch.channels_last)
                               for t in (input, offset, mask))
    return torch.ops.ops_dcnv3.dcnv3_forward(
        input, offset, mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h,
        dilation_w, group, group_channels, float(offset_scale), int(bool(remove_center)))


def dcnv3(input: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, kernel_h: int, kernel_w: int,
          stride_h: int, stride_w: int, pad_h: int, pad_w: int, dilation_h: int, dilation_w: int,
          group: int, group_channels: int, offset_scale: float, remove_center: int = 0,
          use_reference: bool = False) -> torch.Tensor:
    """DCNv3 sampling on the compiled kernel for the input's device.

    This is the one place where compiled and reference paths are chosen. The ``grid_sample``
    reference runs only when asked for (``use_reference``, which is what
    :class:`~ops_dcnv3.modules.DCNv3_pytorch` does) or on the ``meta`` device, where nothing is
    computed. A device without a compiled kernel (a CUDA tensor on a CPU-only build, or no build at
    all) raises a RuntimeError naming the rebuild command, never silently falls back to the much
    slower and more memory-hungry reference.
    """
    args = (input, offset, mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h,
            dilation_w, group, group_channels, offset_scale, remove_center)
    if use_reference or input.device.type == 'meta':
        return dcnv3_core_pytorch(*args)
    return _dcnv3_compiled(*args)


def dcnv3_device_math(input: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, kernel_h: int,
                      kernel_w: int, stride_h: int, stride_w: int, pad_h: int, pad_w: int,
                      dilation_h: int, dilation_w: int, group: int, group_channels: int,
                      offset_scale: float, remove_center: int = 0) -> torch.Tensor:
    """The CUDA kernels' arithmetic, executed on the CPU (a test path; differentiable).

    Runs the per-element forward and backward functions that the CUDA kernels call per thread
    (``csrc/dcnv3_element.h``) over every element on the host, with a plain add in place of
    ``atomicAdd``, so that the CUDA math is tested without a GPU. Same arguments as
    :func:`dcnv3_core_pytorch`; CPU tensors only. Slow: use :func:`dcnv3` for real work.
    """
    check_dcnv3_args(input, offset, mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                     dilation_h, dilation_w, group, group_channels, remove_center)
    if input.device.type != 'cpu':
        raise ValueError('dcnv3_device_math: input must be a CPU tensor (it runs the CUDA kernels\' '
                         f'arithmetic on the host), got device {input.device}')
    if not _loader.is_loaded():
        raise RuntimeError(_loader.missing_kernel_message('cpu'))
    return torch.ops.ops_dcnv3.dcnv3_device_math_forward(
        input, offset, mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h,
        dilation_w, group, group_channels, float(offset_scale), int(bool(remove_center)))


class DCNv3Function:
    """The compiled DCNv3 operator behind the published ``DCNv3Function.apply`` signature.

    Differentiable through ``torch.library.register_autograd``. ``im2col_step`` is accepted for
    compatibility and ignored: the kernels take any batch size at once. Raises a RuntimeError naming
    the fix when the compiled kernel for the input's device is not there.
    """

    @staticmethod
    def apply(input: torch.Tensor, offset: torch.Tensor, mask: torch.Tensor, kernel_h: int,
              kernel_w: int, stride_h: int, stride_w: int, pad_h: int, pad_w: int, dilation_h: int,
              dilation_w: int, group: int, group_channels: int, offset_scale: float,
              im2col_step: int = 256, remove_center: int = 0) -> torch.Tensor:
        return _dcnv3_compiled(input, offset, mask, kernel_h, kernel_w, stride_h, stride_w, pad_h,
                               pad_w, dilation_h, dilation_w, group, group_channels, offset_scale,
                               remove_center)


def _differentiable_backward(input, offset, mask, grad_output, params):
    """Gradients of the reference w.r.t. (input, offset, mask), themselves differentiable."""
    # Saved tensors that do not require grad become leaves, so autograd.grad can reach them.
    leaves = [t if t.requires_grad else t.detach().requires_grad_() for t in (input, offset, mask)]
    out = dcnv3_core_pytorch(*leaves, *params)
    grads = torch.autograd.grad(out, leaves, grad_output, create_graph=True, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(leaves, grads)]


def _register_python_parts() -> None:
    """Fake (meta) kernels, autograd and autocast for the compiled operators."""

    def _forward_fake(input, offset, mask, kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w,
                      dilation_h, dilation_w, group, group_channels, offset_scale, remove_center):
        n, h, w, c = input.shape
        ho = _out_size(h, kernel_h, stride_h, pad_h, dilation_h)
        wo = _out_size(w, kernel_w, stride_w, pad_w, dilation_w)
        return input.new_empty(n, ho, wo, c)

    def _backward_fake(input, offset, mask, grad_output, kernel_h, kernel_w, stride_h, stride_w,
                       pad_h, pad_w, dilation_h, dilation_w, group, group_channels, offset_scale,
                       remove_center):
        return (torch.empty_like(input, memory_format=torch.contiguous_format),
                torch.empty_like(offset, memory_format=torch.contiguous_format),
                torch.empty_like(mask, memory_format=torch.contiguous_format))

    def _setup_context(ctx, inputs, output):
        ctx.save_for_backward(*inputs[:3])
        ctx.params = inputs[3:]

    def _make_backward(backward_op):
        def _backward(ctx, grad_output):
            input, offset, mask = ctx.saved_tensors
            if torch.is_grad_enabled():
                # create_graph=True (gradient penalties, Hessian-vector products): the compiled
                # backward has no derivative of its own, so the gradients come from the reference
                # instead, same values with a graph that can be differentiated again.
                grads = _differentiable_backward(input, offset, mask, grad_output, ctx.params)
            else:
                grads = backward_op(input, offset, mask, grad_output, *ctx.params)
            return tuple(grads) + (None,) * len(ctx.params)
        return _backward

    # The compiled operator and the host-executed CUDA arithmetic share schema, shapes and autograd.
    for prefix in ('dcnv3', 'dcnv3_device_math'):
        forward, backward = f'ops_dcnv3::{prefix}_forward', f'ops_dcnv3::{prefix}_backward'
        torch.library.register_fake(forward)(_forward_fake)
        torch.library.register_fake(backward)(_backward_fake)
        torch.library.register_autograd(
            forward, _make_backward(getattr(torch.ops.ops_dcnv3, f'{prefix}_backward')),
            setup_context=_setup_context)
    # Under CUDA autocast the linear layers feeding offset/mask/input may disagree in dtype: sample
    # in float32 always, like other precision-sensitive gather ops (grid_sample) do.
    torch.library.register_autocast('ops_dcnv3::dcnv3_forward', 'cuda', torch.float32)


if _loader.is_loaded():
    _register_python_parts()
