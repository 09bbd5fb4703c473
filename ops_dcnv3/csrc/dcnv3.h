// Shared declarations of the DCNv3 operator: argument bundle and checks used by every backend.
#pragma once

#include <ATen/ATen.h>
#include <c10/macros/Macros.h>

#include <cstdint>
#include <initializer_list>
#include <tuple>

namespace ops_dcnv3 {

// Geometry of one call. Sizes follow the channels-last layout of the published op:
// input (N, H, W, G*D), offset (N, Ho, Wo, G*P*2) as (x, y) pairs, mask (N, Ho, Wo, G*P).
// The CUDA kernels index with 32-bit integers where every tensor allows it (GeometryT<int32_t>);
// everything else uses the 64-bit Geometry.
template <typename index_t>
struct GeometryT {
  index_t n, h, w, ho, wo;
  index_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  index_t group, group_channels, points;
  double offset_scale;
  bool remove_center;
  // Centre of the dilated kernel, c = dilation*(k-1)//2: the regular grid is scaled around it.
  C10_HOST_DEVICE index_t center_x() const { return dilation_w * (kernel_w - 1) / 2; }
  C10_HOST_DEVICE index_t center_y() const { return dilation_h * (kernel_h - 1) / 2; }
  C10_HOST_DEVICE index_t channels() const { return group * group_channels; }
  // The same geometry in another index type (the caller checks that the sizes fit).
  template <typename other_t>
  GeometryT<other_t> as() const {
    return {other_t(n),          other_t(h),          other_t(w),          other_t(ho),
            other_t(wo),         other_t(kernel_h),   other_t(kernel_w),   other_t(stride_h),
            other_t(stride_w),   other_t(pad_h),      other_t(pad_w),      other_t(dilation_h),
            other_t(dilation_w), other_t(group),      other_t(group_channels), other_t(points),
            offset_scale,        remove_center};
  }
};
using Geometry = GeometryT<int64_t>;

// Validates shapes/dtypes/devices (the Python wrapper gives friendlier errors first; these guard the
// raw torch.ops entry points against out-of-bounds access) and returns the geometry.
Geometry check_and_geometry(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                            int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w,
                            int64_t pad_h, int64_t pad_w, int64_t dilation_h, int64_t dilation_w,
                            int64_t group, int64_t group_channels, double offset_scale,
                            int64_t remove_center);

// Contiguous operands and the output of a forward call, shared by every backend's launcher.
struct ForwardArgs {
  at::Tensor input, offset, mask;  // contiguous
  at::Tensor output;               // (N, Ho, Wo, C), uninitialised
};
ForwardArgs prepare_forward(const Geometry& g, const at::Tensor& input, const at::Tensor& offset,
                            const at::Tensor& mask);

// Contiguous operands and gradient buffers of a backward call. grad_input accumulates in the
// opmath type (float32 for half types), zero-initialised; the offset and mask gradients are written
// once per point, so they start uninitialised.
struct BackwardArgs {
  at::Tensor input, offset, mask, grad_output;  // contiguous, grad_output in input's dtype
  at::Tensor grad_input, grad_offset, grad_mask;
  // The gradients to return, grad_input converted back to the input's dtype.
  std::tuple<at::Tensor, at::Tensor, at::Tensor> result() const {
    return {grad_input.to(input.scalar_type()), grad_offset, grad_mask};
  }
};
// Also checks grad_output's shape against the geometry.
BackwardArgs prepare_backward(const Geometry& g, const at::Tensor& input, const at::Tensor& offset,
                              const at::Tensor& mask, const at::Tensor& grad_output);

// Launch parameters of the CUDA kernels, shared with their host launcher (cpu/dcnv3_device_math.cpp)
// so that both run the same lane layout. `cpl` channels per lane: the widest vector (at most 16
// bytes of the first vector-accessed tensor, at most 8 channels) that divides group_channels and
// to which every tensor the kernels read or write channel vectors of is aligned (each at cpl of its
// own elements); 1 (scalar loads) otherwise, e.g. for odd
// group_channels or without 32-bit indexing. `index32`: every tensor is small enough for 32-bit
// index arithmetic (the environment variable DCNV3_INDEX_BITS=64 turns it off).
struct LaunchConfig {
  int cpl;
  bool index32;
};
LaunchConfig launch_config(const Geometry& g, std::initializer_list<const at::Tensor*> tensors,
                           std::initializer_list<const at::Tensor*> vector_accessed);

}  // namespace ops_dcnv3
