// CPU kernels of DCNv3 (float32, float64, bfloat16 and float16; reduced types accumulate in float32).
// The kernel bodies live in dcnv3_cpu_kernel.h, compiled twice on x86-64 (dcnv3_cpu_dispatch.inc): for
// the baseline ISA and for AVX2+FMA, picked at run time (the extension is built without -march flags so
// it stays portable).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "dcnv3.h"

#include "cpu/dcnv3_cpu_isa.h"

namespace ops_dcnv3 {
namespace {

#include "cpu/dcnv3_cpu_dispatch.inc"

// The kernels index pixels (y*W + x, up to one row and column past the image) with 32-bit integers.
void check_pixel_count(const Geometry& g, const char* name) {
  TORCH_CHECK((g.h + 1) * (g.w + 1) < std::numeric_limits<int32_t>::max(), name,
              ": input images of more than 2**31 pixels are not supported, got ", g.h, "x", g.w);
}

at::Tensor dcnv3_forward_cpu(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                             int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w,
                             int64_t pad_h, int64_t pad_w, int64_t dilation_h, int64_t dilation_w,
                             int64_t group, int64_t group_channels, double offset_scale,
                             int64_t remove_center) {
  const Geometry g = check_and_geometry(input, offset, mask, kernel_h, kernel_w, stride_h, stride_w,
                                        pad_h, pad_w, dilation_h, dilation_w, group, group_channels,
                                        offset_scale, remove_center);
  TORCH_CHECK(input.device().is_cpu(), "dcnv3_forward_cpu: tensors must be on the CPU");
  check_pixel_count(g, "dcnv3_forward_cpu");
  const ForwardArgs a = prepare_forward(g, input, offset, mask);
  if (a.output.numel() == 0) return a.output;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, a.input.scalar_type(), "dcnv3_forward_cpu", [&] {
    forward_kernel<scalar_t>(a.input.const_data_ptr<scalar_t>(), a.offset.const_data_ptr<scalar_t>(),
                             a.mask.const_data_ptr<scalar_t>(), a.output.mutable_data_ptr<scalar_t>(), g);
  });
  return a.output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> dcnv3_backward_cpu(
    const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
    const at::Tensor& grad_output, int64_t kernel_h, int64_t kernel_w, int64_t stride_h,
    int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dilation_h, int64_t dilation_w,
    int64_t group, int64_t group_channels, double offset_scale, int64_t remove_center) {
  const Geometry g = check_and_geometry(input, offset, mask, kernel_h, kernel_w, stride_h, stride_w,
                                        pad_h, pad_w, dilation_h, dilation_w, group, group_channels,
                                        offset_scale, remove_center);
  TORCH_CHECK(input.device().is_cpu() && grad_output.device().is_cpu(),
              "dcnv3_backward_cpu: tensors must be on the CPU");
  check_pixel_count(g, "dcnv3_backward_cpu");
  const BackwardArgs a = prepare_backward(g, input, offset, mask, grad_output);
  if (a.grad_output.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, a.input.scalar_type(), "dcnv3_backward_cpu", [&] {
      backward_kernel<scalar_t>(
          a.input.const_data_ptr<scalar_t>(), a.offset.const_data_ptr<scalar_t>(),
          a.mask.const_data_ptr<scalar_t>(), a.grad_output.const_data_ptr<scalar_t>(),
          a.grad_input.mutable_data_ptr<at::opmath_type<scalar_t>>(),
          a.grad_offset.mutable_data_ptr<scalar_t>(), a.grad_mask.mutable_data_ptr<scalar_t>(), g);
    });
  }
  return a.result();
}

}  // namespace

TORCH_LIBRARY_IMPL(ops_dcnv3, CPU, m) {
  m.impl("dcnv3_forward", &dcnv3_forward_cpu);
  m.impl("dcnv3_backward", &dcnv3_backward_cpu);
}

}  // namespace ops_dcnv3
