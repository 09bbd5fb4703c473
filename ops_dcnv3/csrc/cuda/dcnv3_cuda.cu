// CUDA kernels of DCNv3 (float32, float64, float16, bfloat16; reduced types accumulate in float32).
//
// Forward: one thread per output element (position, group, channel); neighbouring threads read
// neighbouring channels of the same pixels, so loads coalesce.
// Backward: one thread per (position, group, point). It walks the group's channels, so the location
// and mask gradients need no cross-thread reduction; grad_input is scattered with atomicAdd into an
// opmath buffer (float32 for half types) converted at the end.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
// c10 stream/guard headers only: ATen/cuda/CUDAContext.h pulls in cuBLAS/cuSPARSE headers that
// a minimal CUDA toolkit does not ship.
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>

#include <algorithm>

#include "dcnv3.h"

namespace ops_dcnv3 {
namespace {

constexpr int kThreads = 256;

inline unsigned int num_blocks(int64_t total) {
  return static_cast<unsigned int>(std::min<int64_t>((total + kThreads - 1) / kThreads, int64_t(1) << 30));
}

// Bilinear taps of a location; false when it lies outside (-1, size) (NaN/inf included), in which
// case nothing is sampled. Taps outside the image get index -1.
template <typename opmath_t>
__device__ __forceinline__ bool make_taps(opmath_t loc_x, opmath_t loc_y, int64_t h, int64_t w,
                                          int64_t c, int64_t idx[4], opmath_t coef[4],
                                          opmath_t& lx, opmath_t& ly) {
  if (!(loc_x > opmath_t(-1) && loc_y > opmath_t(-1) && loc_x < opmath_t(w) && loc_y < opmath_t(h))) {
    return false;
  }
  const int64_t x0 = static_cast<int64_t>(floor(loc_x));
  const int64_t y0 = static_cast<int64_t>(floor(loc_y));
  const int64_t x1 = x0 + 1, y1 = y0 + 1;
  lx = loc_x - opmath_t(x0);
  ly = loc_y - opmath_t(y0);
  const opmath_t hx = opmath_t(1) - lx, hy = opmath_t(1) - ly;
  const bool vx0 = x0 >= 0, vx1 = x1 < w, vy0 = y0 >= 0, vy1 = y1 < h;
  idx[0] = (vy0 && vx0) ? (y0 * w + x0) * c : -1;
  idx[1] = (vy0 && vx1) ? (y0 * w + x1) * c : -1;
  idx[2] = (vy1 && vx0) ? (y1 * w + x0) * c : -1;
  idx[3] = (vy1 && vx1) ? (y1 * w + x1) * c : -1;
  coef[0] = hy * hx;
  coef[1] = hy * lx;
  coef[2] = ly * hx;
  coef[3] = ly * lx;
  return true;
}

template <typename scalar_t>
__global__ void dcnv3_forward_kernel(const scalar_t* __restrict__ input,
                                     const scalar_t* __restrict__ offset,
                                     const scalar_t* __restrict__ mask,
                                     scalar_t* __restrict__ output, const Geometry g,
                                     const int64_t total) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t C = g.channels(), D = g.group_channels, P = g.points;
  const opmath_t scale = static_cast<opmath_t>(g.offset_scale);
  const int64_t ci = g.kernel_w / 2, cj = g.kernel_h / 2;
  for (int64_t index = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; index < total;
       index += int64_t(blockDim.x) * gridDim.x) {
    const int64_t d = index % D;
    const int64_t grp = (index / D) % g.group;
    const int64_t pos = index / C;
    const int64_t wo = pos % g.wo, ho = (pos / g.wo) % g.ho, n = pos / (g.wo * g.ho);
    const scalar_t* img = input + n * g.h * g.w * C + grp * D + d;
    const scalar_t* off = offset + (pos * g.group + grp) * P * 2;
    const scalar_t* msk = mask + (pos * g.group + grp) * P;
    const opmath_t base_x = opmath_t(wo * g.stride_w - g.pad_w + g.center_x());
    const opmath_t base_y = opmath_t(ho * g.stride_h - g.pad_h + g.center_y());
    opmath_t acc = 0;
    int64_t p = 0;
    for (int64_t i = 0; i < g.kernel_w; ++i) {
      for (int64_t j = 0; j < g.kernel_h; ++j) {
        if (g.remove_center && i == ci && j == cj) continue;
        const opmath_t loc_x =
            base_x + (opmath_t(i * g.dilation_w - g.center_x()) + opmath_t(off[2 * p])) * scale;
        const opmath_t loc_y =
            base_y + (opmath_t(j * g.dilation_h - g.center_y()) + opmath_t(off[2 * p + 1])) * scale;
        int64_t idx[4];
        opmath_t coef[4], lx, ly;
        if (make_taps(loc_x, loc_y, g.h, g.w, C, idx, coef, lx, ly)) {
          opmath_t val = 0;
#pragma unroll
          for (int q = 0; q < 4; ++q) {
            if (idx[q] >= 0) val += coef[q] * opmath_t(img[idx[q]]);
          }
          acc += opmath_t(msk[p]) * val;
        }
        ++p;
      }
    }
    output[index] = static_cast<scalar_t>(acc);
  }
}

template <typename scalar_t>
__global__ void dcnv3_backward_kernel(const scalar_t* __restrict__ input,
                                      const scalar_t* __restrict__ offset,
                                      const scalar_t* __restrict__ mask,
                                      const scalar_t* __restrict__ grad_output,
                                      at::opmath_type<scalar_t>* __restrict__ grad_input,
                                      scalar_t* __restrict__ grad_offset,
                                      scalar_t* __restrict__ grad_mask, const Geometry g,
                                      const int64_t total) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t C = g.channels(), D = g.group_channels, P = g.points;
  const opmath_t scale = static_cast<opmath_t>(g.offset_scale);
  const int64_t center_point = (g.kernel_w / 2) * g.kernel_h + g.kernel_h / 2;
  for (int64_t index = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; index < total;
       index += int64_t(blockDim.x) * gridDim.x) {
    const int64_t p = index % P;
    const int64_t grp = (index / P) % g.group;
    const int64_t pos = index / (P * g.group);
    const int64_t wo = pos % g.wo, ho = (pos / g.wo) % g.ho, n = pos / (g.wo * g.ho);
    // Kernel point of this slot, x-major (p = i*kh + j), skipping the centre with remove_center.
    const int64_t q = (g.remove_center && p >= center_point) ? p + 1 : p;
    const int64_t i = q / g.kernel_h, j = q % g.kernel_h;
    const opmath_t loc_x = opmath_t(wo * g.stride_w - g.pad_w + g.center_x()) +
                           (opmath_t(i * g.dilation_w - g.center_x()) + opmath_t(offset[2 * index])) * scale;
    const opmath_t loc_y = opmath_t(ho * g.stride_h - g.pad_h + g.center_y()) +
                           (opmath_t(j * g.dilation_h - g.center_y()) + opmath_t(offset[2 * index + 1])) * scale;
    int64_t idx[4];
    opmath_t coef[4], lx, ly;
    if (!make_taps(loc_x, loc_y, g.h, g.w, C, idx, coef, lx, ly)) {
      grad_offset[2 * index] = grad_offset[2 * index + 1] = grad_mask[index] = scalar_t(0);
      continue;
    }
    const opmath_t m = static_cast<opmath_t>(mask[index]);
    const int64_t img_base = n * g.h * g.w * C + grp * D;
    const scalar_t* img = input + img_base;
    opmath_t* gimg = grad_input + img_base;
    const scalar_t* gout = grad_output + pos * C + grp * D;
    opmath_t s[4] = {0, 0, 0, 0};
    for (int64_t d = 0; d < D; ++d) {
      const opmath_t go = static_cast<opmath_t>(gout[d]);
#pragma unroll
      for (int t = 0; t < 4; ++t) {
        if (idx[t] >= 0) {
          s[t] += go * opmath_t(img[idx[t] + d]);
          atomicAdd(gimg + idx[t] + d, coef[t] * m * go);
        }
      }
    }
    const opmath_t hx = opmath_t(1) - lx, hy = opmath_t(1) - ly;
    grad_mask[index] = static_cast<scalar_t>(coef[0] * s[0] + coef[1] * s[1] + coef[2] * s[2] + coef[3] * s[3]);
    grad_offset[2 * index] = static_cast<scalar_t>(scale * m * (hy * (s[1] - s[0]) + ly * (s[3] - s[2])));
    grad_offset[2 * index + 1] = static_cast<scalar_t>(scale * m * (hx * (s[2] - s[0]) + lx * (s[3] - s[1])));
  }
}

at::Tensor dcnv3_forward_cuda(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                              int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w,
                              int64_t pad_h, int64_t pad_w, int64_t dilation_h, int64_t dilation_w,
                              int64_t group, int64_t group_channels, double offset_scale,
                              int64_t remove_center) {
  const Geometry g = check_and_geometry(input, offset, mask, kernel_h, kernel_w, stride_h, stride_w,
                                        pad_h, pad_w, dilation_h, dilation_w, group, group_channels,
                                        offset_scale, remove_center);
  TORCH_CHECK(input.is_cuda(), "dcnv3_forward_cuda: tensors must be on a CUDA device");
  const c10::cuda::CUDAGuard guard(input.device());
  const at::Tensor in = input.contiguous(), off = offset.contiguous(), msk = mask.contiguous();
  at::Tensor output = at::empty({g.n, g.ho, g.wo, g.channels()}, in.options());
  const int64_t total = output.numel();
  if (total == 0) return output;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.scalar_type(), "dcnv3_forward_cuda", [&] {
    dcnv3_forward_kernel<scalar_t><<<num_blocks(total), kThreads, 0, stream>>>(
        in.const_data_ptr<scalar_t>(), off.const_data_ptr<scalar_t>(), msk.const_data_ptr<scalar_t>(),
        output.mutable_data_ptr<scalar_t>(), g, total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> dcnv3_backward_cuda(
    const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
    const at::Tensor& grad_output, int64_t kernel_h, int64_t kernel_w, int64_t stride_h,
    int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dilation_h, int64_t dilation_w,
    int64_t group, int64_t group_channels, double offset_scale, int64_t remove_center) {
  const Geometry g = check_and_geometry(input, offset, mask, kernel_h, kernel_w, stride_h, stride_w,
                                        pad_h, pad_w, dilation_h, dilation_w, group, group_channels,
                                        offset_scale, remove_center);
  TORCH_CHECK(input.is_cuda() && grad_output.device() == input.device(),
              "dcnv3_backward_cuda: tensors must be on one CUDA device");
  TORCH_CHECK(grad_output.sizes() == at::IntArrayRef({g.n, g.ho, g.wo, g.channels()}),
              "dcnv3_backward: grad_output must be (", g.n, ", ", g.ho, ", ", g.wo, ", ",
              g.channels(), "), got ", grad_output.sizes());
  const c10::cuda::CUDAGuard guard(input.device());
  const at::Tensor in = input.contiguous(), off = offset.contiguous(), msk = mask.contiguous();
  const at::Tensor gout = grad_output.to(in.scalar_type()).contiguous();
  at::Tensor grad_input = at::zeros(in.sizes(), in.options().dtype(at::toOpMathType(in.scalar_type())));
  at::Tensor grad_offset = at::empty(off.sizes(), off.options());
  at::Tensor grad_mask = at::empty(msk.sizes(), msk.options());
  const int64_t total = msk.numel();
  if (total > 0) {
    const auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, in.scalar_type(), "dcnv3_backward_cuda", [&] {
      dcnv3_backward_kernel<scalar_t><<<num_blocks(total), kThreads, 0, stream>>>(
          in.const_data_ptr<scalar_t>(), off.const_data_ptr<scalar_t>(),
          msk.const_data_ptr<scalar_t>(), gout.const_data_ptr<scalar_t>(),
          grad_input.mutable_data_ptr<at::opmath_type<scalar_t>>(),
          grad_offset.mutable_data_ptr<scalar_t>(), grad_mask.mutable_data_ptr<scalar_t>(), g, total);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return {grad_input.to(in.scalar_type()), grad_offset, grad_mask};
}

}  // namespace

TORCH_LIBRARY_IMPL(ops_dcnv3, CUDA, m) {
  m.impl("dcnv3_forward", &dcnv3_forward_cuda);
  m.impl("dcnv3_backward", &dcnv3_backward_cuda);
}

}  // namespace ops_dcnv3
