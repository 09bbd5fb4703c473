// CUDA kernels of DCNv3 (float32, float64, float16, bfloat16; reduced types accumulate in float32).
//
// Both kernels give the channels of one item (position, group) to a team of lanes of a warp, each
// lane covering CPL consecutive channels loaded as one vector (dcnv3_element.h describes the
// layout; launch_config picks CPL and 32- or 64-bit indexing per call).
// Forward: each lane computes a point's taps once and accumulates its CPL channels.
// Backward: the team walks the item's points together; each lane adds its channels' share of the
// four corner dot products, a butterfly of warp shuffles sums them over the team, and one lane writes
// the point's offset and mask gradients (no atomics there). grad_input is scattered with atomicAdd
// into an opmath buffer (float32 for half types) converted at the end; a warp's atomics hit
// contiguous channels, as float2/float4 vector atomics on sm_90 and newer. Float atomics make the summation order, and so the last bits of grad_input,
// vary between runs: the backward reports itself to torch.use_deterministic_algorithms.
// The per-lane arithmetic lives in dcnv3_element.h, shared with a host launcher.
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
constexpr int kWarpsPerBlock = kThreads / element::kWarpSize;

// Blocks for `warps` warps of work; the kernels are grid-stride loops, so the grid may be smaller.
inline unsigned int num_blocks(int64_t warps) {
  return static_cast<unsigned int>(
      std::max<int64_t>(1, std::min<int64_t>((warps + kWarpsPerBlock - 1) / kWarpsPerBlock, int64_t(1) << 20)));
}

// The kernels are grid-stride loops over warps of items; all arithmetic is in element::forward_lane,
// element::backward_lane_point, element::team_allreduce and element::write_point_gradients
// (dcnv3_element.h), which the host launcher (cpu/dcnv3_device_math.cpp) runs on the CPU so that
// the tests execute it. Loop counters are 64-bit; index_t is what the arithmetic uses.
template <int CPL, typename scalar_t, typename index_t>
__global__ void __launch_bounds__(kThreads) dcnv3_forward_kernel(
    const scalar_t* __restrict__ input, const scalar_t* __restrict__ offset,
    const scalar_t* __restrict__ mask, scalar_t* __restrict__ output, const GeometryT<index_t> g,
    const element::LaneLayout layout, const int64_t items) {
  const int lane_id = threadIdx.x % element::kWarpSize;
  const int64_t per_warp = layout.items_per_warp();
  const int64_t warp = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / element::kWarpSize;
  const int64_t warps = int64_t(gridDim.x) * kWarpsPerBlock;
  for (int64_t item = warp * per_warp + lane_id / layout.team; item < items; item += warps * per_warp) {
    element::forward_lane<CPL>(input, offset, mask, output, g, layout, index_t(item),
                               lane_id % layout.team);
  }
}

template <int CPL, typename scalar_t, typename index_t>
__global__ void __launch_bounds__(kThreads) dcnv3_backward_kernel(
    const scalar_t* __restrict__ input, const scalar_t* __restrict__ offset,
    const scalar_t* __restrict__ mask, const scalar_t* __restrict__ grad_output,
    at::opmath_type<scalar_t>* __restrict__ grad_input, scalar_t* __restrict__ grad_offset,
    scalar_t* __restrict__ grad_mask, const GeometryT<index_t> g, const element::LaneLayout layout,
    const int64_t items) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int lane_id = threadIdx.x % element::kWarpSize;
  const int lane = lane_id % layout.team;
  const int64_t per_warp = layout.items_per_warp();
  const int64_t warp = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / element::kWarpSize;
  const int64_t warps = int64_t(gridDim.x) * kWarpsPerBlock;
  // The loop bound is the same for every lane of a warp, so all 32 lanes reach each shuffle.
  for (int64_t first = warp * per_warp; first < items; first += warps * per_warp) {
    const int64_t item64 = first + lane_id / layout.team;
    const bool active = item64 < items;
    const index_t item = active ? index_t(item64) : index_t(0);
    for (index_t p = 0; p < g.points; ++p) {
      element::Taps<opmath_t, index_t> t;
      opmath_t s[4] = {0, 0, 0, 0};
      const bool sampled = active && element::backward_lane_point<CPL>(
                                         input, offset, mask, grad_output, grad_input, g, layout,
                                         item, lane, p, t, s);
      element::team_allreduce(s, layout.team);
      if (active && lane == 0) {
        element::write_point_gradients(mask, grad_offset, grad_mask, g, item, p, sampled, t, s);
      }
    }
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
  const int64_t items = g.n * g.ho * g.wo * g.group;
  if (items == 0) return a.output;
  const LaunchConfig c = launch_config(g, {&a.input, &a.offset, &a.mask, &a.output}, {&a.input, &a.output});
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.input.scalar_type(), "dcnv3_forward_cuda", [&] {
    element::dispatch_launch<scalar_t>(c, [&](auto cpl, auto index) {
      constexpr int CPL = decltype(cpl)::value;
      using index_t = decltype(index);
      const element::LaneLayout layout = element::lane_layout(g.group_channels, CPL);
      const int64_t warps = (items + layout.items_per_warp() - 1) / layout.items_per_warp();
      dcnv3_forward_kernel<CPL, scalar_t, index_t><<<num_blocks(warps), kThreads, 0, stream>>>(
          a.input.const_data_ptr<scalar_t>(), a.offset.const_data_ptr<scalar_t>(),
          a.mask.const_data_ptr<scalar_t>(), a.output.mutable_data_ptr<scalar_t>(),
          g.as<index_t>(), layout, items);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
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
  const int64_t items = g.n * g.ho * g.wo * g.group;
  if (items > 0 && g.points > 0) {
    const LaunchConfig c = launch_config(
        g, {&a.input, &a.offset, &a.mask, &a.grad_output, &a.grad_input},
        {&a.input, &a.grad_output, &a.grad_input});
    const auto stream = c10::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, a.input.scalar_type(), "dcnv3_backward_cuda", [&] {
      element::dispatch_launch<scalar_t>(c, [&](auto cpl, auto index) {
        constexpr int CPL = decltype(cpl)::value;
        using index_t = decltype(index);
        const element::LaneLayout layout = element::lane_layout(g.group_channels, CPL);
        const int64_t warps = (items + layout.items_per_warp() - 1) / layout.items_per_warp();
        dcnv3_backward_kernel<CPL, scalar_t, index_t><<<num_blocks(warps), kThreads, 0, stream>>>(
            a.input.const_data_ptr<scalar_t>(), a.offset.const_data_ptr<scalar_t>(),
            a.mask.const_data_ptr<scalar_t>(), a.grad_output.const_data_ptr<scalar_t>(),
            a.grad_input.mutable_data_ptr<at::opmath_type<scalar_t>>(),
            a.grad_offset.mutable_data_ptr<scalar_t>(), a.grad_mask.mutable_data_ptr<scalar_t>(),
            g.as<index_t>(), layout, items);
        C10_CUDA_KERNEL_LAUNCH_CHECK();
      });
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
