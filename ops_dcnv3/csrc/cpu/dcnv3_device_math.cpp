// Host launcher of the CUDA kernels' arithmetic: runs the per-lane functions of dcnv3_element.h
// that the CUDA kernels call, with the kernels' lane layout and launch configuration, emulating a
// warp as a loop over its 32 lanes (the backward's shuffle reduction by team_allreduce_host, the same
// butterfly). It is a test path, not a fast one (cpu/dcnv3_cpu.cpp is the CPU operator): it makes
// every test run execute the CUDA math without a GPU.
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
  const int64_t items = g.n * g.ho * g.wo * g.group;
  const LaunchConfig c = launch_config(g, {&a.input, &a.offset, &a.mask, &a.output}, {&a.input, &a.output});
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.input.scalar_type(), "dcnv3_device_math_forward", [&] {
    element::dispatch_launch<scalar_t>(c, [&](auto cpl, auto index) {
      constexpr int CPL = decltype(cpl)::value;
      using index_t = decltype(index);
      const GeometryT<index_t> gi = g.as<index_t>();
      const element::LaneLayout layout = element::lane_layout(g.group_channels, CPL);
      const int64_t per_warp = layout.items_per_warp();
      const scalar_t* in_p = a.input.const_data_ptr<scalar_t>();
      const scalar_t* off_p = a.offset.const_data_ptr<scalar_t>();
      const scalar_t* msk_p = a.mask.const_data_ptr<scalar_t>();
      scalar_t* out_p = a.output.mutable_data_ptr<scalar_t>();
      // Lanes of the forward do not interact (no shuffles), so warps may run in parallel here.
      at::parallel_for(0, (items + per_warp - 1) / per_warp, 64, [&](int64_t begin, int64_t end) {
        for (int64_t warp = begin; warp < end; ++warp) {
          for (int lane_id = 0; lane_id < element::kWarpSize; ++lane_id) {
            const int64_t item = warp * per_warp + lane_id / layout.team;
            if (item >= items) break;
            element::forward_lane<CPL>(in_p, off_p, msk_p, out_p, gi, layout, index_t(item),
                                       lane_id % layout.team);
          }
        }
      });
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
  const int64_t items = g.n * g.ho * g.wo * g.group;
  if (items == 0 || g.points == 0) return a.result();
  const LaunchConfig c = launch_config(
      g, {&a.input, &a.offset, &a.mask, &a.grad_output, &a.grad_input},
        {&a.input, &a.grad_output, &a.grad_input});
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.input.scalar_type(), "dcnv3_device_math_backward", [&] {
    using opmath_t = at::opmath_type<scalar_t>;
    element::dispatch_launch<scalar_t>(c, [&](auto cpl, auto index) {
      constexpr int CPL = decltype(cpl)::value;
      using index_t = decltype(index);
      const GeometryT<index_t> gi = g.as<index_t>();
      const element::LaneLayout layout = element::lane_layout(g.group_channels, CPL);
      const int64_t per_warp = layout.items_per_warp();
      const scalar_t* in_p = a.input.const_data_ptr<scalar_t>();
      const scalar_t* off_p = a.offset.const_data_ptr<scalar_t>();
      const scalar_t* msk_p = a.mask.const_data_ptr<scalar_t>();
      const scalar_t* gout_p = a.grad_output.const_data_ptr<scalar_t>();
      opmath_t* gin_p = a.grad_input.mutable_data_ptr<opmath_t>();
      scalar_t* goff_p = a.grad_offset.mutable_data_ptr<scalar_t>();
      scalar_t* gmsk_p = a.grad_mask.mutable_data_ptr<scalar_t>();
      // One warp after another (grad_input is added plainly here, where the device adds atomically);
      // within a warp, each point in three steps as the kernel's lanes run them: every lane's share,
      // the team reduction, the team's first lane writing the point's gradients.
      for (int64_t first = 0; first < items; first += per_warp) {
        for (index_t p = 0; p < gi.points; ++p) {
          element::Taps<opmath_t, index_t> taps[element::kWarpSize];
          opmath_t s[element::kWarpSize][4] = {};
          bool sampled[element::kWarpSize] = {};
          for (int lane_id = 0; lane_id < element::kWarpSize; ++lane_id) {
            const int64_t item = first + lane_id / layout.team;
            if (item >= items) continue;  // an idle lane adds zeros to the reduction
            sampled[lane_id] = element::backward_lane_point<CPL>(
                in_p, off_p, msk_p, gout_p, gin_p, gi, layout, index_t(item), lane_id % layout.team,
                p, taps[lane_id], s[lane_id]);
          }
          element::team_allreduce_host(s, layout.team);
          for (int lane_id = 0; lane_id < element::kWarpSize; lane_id += layout.team) {
            const int64_t item = first + lane_id / layout.team;
            if (item >= items) break;
            element::write_point_gradients(msk_p, goff_p, gmsk_p, gi, index_t(item), p,
                                           sampled[lane_id], taps[lane_id], s[lane_id]);
          }
        }
      }
    });
  });
  return a.result();
}

}  // namespace

TORCH_LIBRARY_IMPL(ops_dcnv3, CPU, m) {
  m.impl("dcnv3_device_math_forward", &dcnv3_device_math_forward);
  m.impl("dcnv3_device_math_backward", &dcnv3_device_math_backward);
}

}  // namespace ops_dcnv3
