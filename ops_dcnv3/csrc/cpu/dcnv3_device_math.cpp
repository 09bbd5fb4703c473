// Host launcher of the CUDA kernels' arithmetic: runs element::forward_element and
// element::backward_point (dcnv3_element.h), the functions the CUDA kernels call per thread, over
// every element on the CPU. It is a test path, not a fast one (cpu/dcnv3_cpu.cpp is the CPU
// operator): it makes every test run execute the CUDA math without a GPU.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include "dcnv3.h"
#include "dcnv3_element.h"

namespace ops_dcnv3 {
namespace {

at::Tensor dcnv3_device_math_forward(const at::Tensor& input, const at::Tensor& offset,
                                     const at::Tensor& mask, int64_t kernel_h, int64_t kernel_w,
                                     int64_t stride_h, int64_t stride_w, int64_t pad_h,
                                     int64_t pad_w, int64_t dilation_h, int64_t dilation_w,
                                     int64_t group, int64_t group_channels, double offset_scale,
                                     int64_t remove_center) {
  const Geometry g = check_and_geometry(input, offset, mask, kernel_h, kernel_w, stride_h, stride_w,
                                        pad_h, pad_w, dilation_h, dilation_w, group, group_channels,
                                        offset_scale, remove_center);
  TORCH_CHECK(input.device().is_cpu(), "dcnv3_device_math: tensors must be on the CPU");
  const ForwardArgs a = prepare_forward(g, input, offset, mask);
  const int64_t total = a.output.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.input.scalar_type(), "dcnv3_device_math_forward", [&] {
    const scalar_t* in_p = a.input.const_data_ptr<scalar_t>();
    const scalar_t* off_p = a.offset.const_data_ptr<scalar_t>();
    const scalar_t* msk_p = a.mask.const_data_ptr<scalar_t>();
    scalar_t* out_p = a.output.mutable_data_ptr<scalar_t>();
    // Output elements are independent (one CUDA thread each), so they may run in parallel here.
    at::parallel_for(0, total, 1024, [&](int64_t begin, int64_t end) {
      for (int64_t index = begin; index < end; ++index) {
        element::forward_element(in_p, off_p, msk_p, out_p, g, index);
      }
    });
  });
  return a.output;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> dcnv3_device_math_backward(
    const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
    const at::Tensor& grad_output, int64_t kernel_h, int64_t kernel_w, int64_t stride_h,
    int64_t stride_w, int64_t pad_h, int64_t pad_w, int64_t dilation_h, int64_t dilation_w,
    int64_t group, int64_t group_channels, double offset_scale, int64_t remove_center) {
  const Geometry g = check_and_geometry(input, offset, mask, kernel_h, kernel_w, stride_h, stride_w,
                                        pad_h, pad_w, dilation_h, dilation_w, group, group_channels,
                                        offset_scale, remove_center);
  TORCH_CHECK(input.device().is_cpu() && grad_output.device().is_cpu(),
              "dcnv3_device_math: tensors must be on the CPU");
  // The CUDA launcher's buffers: grad_input accumulates in opmath (float32 for half types).
  const BackwardArgs a = prepare_backward(g, input, offset, mask, grad_output);
  const int64_t total = a.mask.numel();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.input.scalar_type(), "dcnv3_device_math_backward", [&] {
    // One point after another: scatter_add is a plain add here, where the device adds atomically.
    for (int64_t index = 0; index < total; ++index) {
      element::backward_point(a.input.const_data_ptr<scalar_t>(), a.offset.const_data_ptr<scalar_t>(),
                              a.mask.const_data_ptr<scalar_t>(), a.grad_output.const_data_ptr<scalar_t>(),
                              a.grad_input.mutable_data_ptr<at::opmath_type<scalar_t>>(),
                              a.grad_offset.mutable_data_ptr<scalar_t>(),
                              a.grad_mask.mutable_data_ptr<scalar_t>(), g, index);
    }
  });
  return a.result();
}

}  // namespace

TORCH_LIBRARY_IMPL(ops_dcnv3, CPU, m) {
  m.impl("dcnv3_device_math_forward", &dcnv3_device_math_forward);
  m.impl("dcnv3_device_math_backward", &dcnv3_device_math_backward);
}

}  // namespace ops_dcnv3
