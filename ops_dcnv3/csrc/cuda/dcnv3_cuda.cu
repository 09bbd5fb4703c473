// CUDA kernels of DCNv3 (float32, float64, float16, bfloat16; reduced types accumulate in float32).
//
// Forward: one thread per output element (position, group, channel); neighbouring threads read
// neighbouring channels of the same pixels, so loads coalesce.
// Backward: one thread per (position, group, point). It walks the group's channels, so the location
// and mask gradients need no cross-thread reduction; grad_input is scattered with atomicAdd into an
// opmath buffer (float32 for half types) converted at the end. Float atomics make the summation
// order, and so the last bits of grad_input, vary between runs: the backward reports itself to
// torch.use_deterministic_algorithms.
// The per-element arithmetic lives in dcnv3_element.h, shared with a host launcher.
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
#include "dcnv3_element.h"

namespace ops_dcnv3 {
namespace {

constexpr int kThreads = 256;

inline unsigned int num_blocks(int64_t total) {
  return static_cast<unsigned int>(std::min<int64_t>((total + kThreads - 1) / kThreads, int64_t(1) << 30));
}

// The kernels are grid-stride loops over the elements of element::forward_element /
// element::backward_point (dcnv3_element.h), which hold all of the arithmetic: the host launcher
// (cpu/dcnv3_device_math.cpp) runs the same functions on the CPU so that the tests execute it.
template <typename scalar_t>
__global__ void dcnv3_forward_kernel(const scalar_t* __restrict__ input,
                                     const scalar_t* __restrict__ offset,
                                     const scalar_t* __restrict__ mask,
                                     scalar_t* __restrict__ output, const Geometry g,
                                     const int64_t total) {
  for (int64_t index = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; index < total;
       index += int64_t(blockDim.x) * gridDim.x) {
    element::forward_element(input, offset, mask, output, g, index);
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
  for (int64_t index = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; index < total;
       index += int64_t(blockDim.x) * gridDim.x) {
    element::backward_point(input, offset, mask, grad_output, grad_input, grad_offset, grad_mask,
                            g, index);
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
  const ForwardArgs a = prepare_forward(g, input, offset, mask);
  const int64_t total = a.output.numel();
  if (total == 0) return a.output;
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.input.scalar_type(), "dcnv3_forward_cuda", [&] {
    dcnv3_forward_kernel<scalar_t><<<num_blocks(total), kThreads, 0, stream>>>(
        a.input.const_data_ptr<scalar_t>(), a.offset.const_data_ptr<scalar_t>(),
        a.mask.const_data_ptr<scalar_t>(), a.output.mutable_data_ptr<scalar_t>(), g, total);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return a.output;
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
  // Float atomicAdd into grad_input: the summation order varies from run to run.
  at::globalContext().alertNotDeterministic("dcnv3_backward_cuda");
  const c10::cuda::CUDAGuard guard(input.device());
  const BackwardArgs a = prepare_backward(g, input, offset, mask, grad_output);
  const int64_t total = a.mask.numel();
  if (total > 0) {
    const auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.input.scalar_type(), "dcnv3_backward_cuda", [&] {
      dcnv3_backward_kernel<scalar_t><<<num_blocks(total), kThreads, 0, stream>>>(
          a.input.const_data_ptr<scalar_t>(), a.offset.const_data_ptr<scalar_t>(),
          a.mask.const_data_ptr<scalar_t>(), a.grad_output.const_data_ptr<scalar_t>(),
          a.grad_input.mutable_data_ptr<at::opmath_type<scalar_t>>(),
          a.grad_offset.mutable_data_ptr<scalar_t>(), a.grad_mask.mutable_data_ptr<scalar_t>(), g,
          total);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  }
  return a.result();
}

}  // namespace

TORCH_LIBRARY_IMPL(ops_dcnv3, CUDA, m) {
  m.impl("dcnv3_forward", &dcnv3_forward_cuda);
  m.impl("dcnv3_backward", &dcnv3_backward_cuda);
}

}  // namespace ops_dcnv3
