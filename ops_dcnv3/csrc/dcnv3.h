// Shared declarations of the DCNv3 operator: argument bundle and checks used by every backend.
#pragma once

#include <ATen/ATen.h>
#include <c10/macros/Macros.h>

#include <cstdint>

namespace ops_dcnv3 {

// Geometry of one call. Sizes follow the channels-last layout of the published op:
// input (N, H, W, G*D), offset (N, Ho, Wo, G*P*2) as (x, y) pairs, mask (N, Ho, Wo, G*P).
struct Geometry {
  int64_t n, h, w, ho, wo;
  int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
  int64_t group, group_channels, points;
  double offset_scale;
  bool remove_center;
  // Centre of the dilated kernel, c = dilation*(k-1)//2: the regular grid is scaled around it.
  C10_HOST_DEVICE int64_t center_x() const { return dilation_w * (kernel_w - 1) / 2; }
  C10_HOST_DEVICE int64_t center_y() const { return dilation_h * (kernel_h - 1) / 2; }
  C10_HOST_DEVICE int64_t channels() const { return group * group_channels; }
};

// Validates shapes/dtypes/devices (the Python wrapper gives friendlier errors first; these guard the
// raw torch.ops entry points against out-of-bounds access) and returns the geometry.
Geometry check_and_geometry(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                            int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w,
                            int64_t pad_h, int64_t pad_w, int64_t dilation_h, int64_t dilation_w,
                            int64_t group, int64_t group_channels, double offset_scale,
                            int64_t remove_center);

}  // namespace ops_dcnv3
