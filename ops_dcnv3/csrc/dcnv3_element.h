// Per-lane arithmetic of DCNv3, shared by the CUDA kernels (cuda/dcnv3_cuda.cu) and a host
// launcher (cpu/dcnv3_device_math.cpp) that runs exactly these functions on the CPU, lane after
// lane, warp after warp. The launcher is what lets every test run execute the CUDA kernels' math
// without a GPU, so the CUDA kernels must do their arithmetic here and nowhere else.
//
// Lane layout (both kernels): the channels of one item (position, group) are spread over a team of
// lanes, a power of two <= 32 so that a warp holds whole teams; each lane covers `CPL` consecutive
// channels per chunk, loaded as one vector (float4, 2 x __half2, ...). Neighbouring lanes thus read
// and (in the backward) atomically add to neighbouring channels of the same pixel: one warp-level
// access touches a few contiguous segments instead of one pixel per lane. The taps and bilinear
// weights of a point are computed once per lane and reused for its CPL channels.
//
// Everything is C10_HOST_DEVICE, header-only and free of ATen calls. Where host and device differ
// (vector loads, atomics, the team reduction) both forms are here, side by side.
#pragma once

#include <ATen/OpMathType.h>
#include <c10/macros/Macros.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Exception.h>
#include <c10/util/Half.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#if defined(__CUDACC__)
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#endif

#include "dcnv3.h"

// `#pragma unroll` is nvcc's; the host compiler would only warn about it.
#if defined(__CUDACC__)
#define DCNV3_UNROLL _Pragma("unroll")
#else
#define DCNV3_UNROLL
#endif

namespace ops_dcnv3 {
namespace element {

constexpr int kWarpSize = 32;

// How a warp's lanes cover the items: `team` lanes per item, `chunks` rounds of team*cpl channels.
struct LaneLayout {
  int cpl;
  int team;
  int chunks;
  C10_HOST_DEVICE int items_per_warp() const { return kWarpSize / team; }
};

// The smallest power-of-two team (<= 32) whose lanes cover the group's channels in one chunk;
// wider groups take several chunks.
C10_HOST_DEVICE inline LaneLayout lane_layout(int64_t group_channels, int cpl) {
  const int64_t vectors = (group_channels + cpl - 1) / cpl;
  int team = 1;
  while (team < kWarpSize && team < vectors) team *= 2;
  return {cpl, team, static_cast<int>((vectors + team - 1) / team)};
}

// The four bilinear taps of one sampling point.
template <typename opmath_t, typename index_t>
struct Taps {
  index_t idx[4];    // element offsets (pixel * C) of the corners; -1 for a corner outside the image
  opmath_t coef[4];  // bilinear weights of the corners (y0,x0), (y0,x1), (y1,x0), (y1,x1)
  opmath_t lx, ly;   // fractional parts of the location, for the location gradient
};

// Kernel tap (i along x, j along y) of sampling point p: x-major order p = i*kernel_h + j, with the
// centre skipped under remove_center.
template <typename index_t>
C10_HOST_DEVICE inline void point_tap(const GeometryT<index_t>& g, index_t p, index_t& i, index_t& j) {
  const index_t centre = (g.kernel_w / 2) * g.kernel_h + g.kernel_h / 2;
  const index_t q = (g.remove_center && p >= centre) ? p + 1 : p;
  i = q / g.kernel_h;
  j = q % g.kernel_h;
}

// Sampling location of point p of output (ho, wo), given the point's learned offset (x, y):
//   loc = out*stride - pad + c + (tap*dilation - c + offset) * offset_scale,  c = dilation*(k-1)//2.
template <typename opmath_t, typename index_t>
C10_HOST_DEVICE inline void sampling_location(const GeometryT<index_t>& g, index_t ho, index_t wo,
                                              index_t p, opmath_t off_x, opmath_t off_y,
                                              opmath_t& loc_x, opmath_t& loc_y) {
  index_t i, j;
  point_tap(g, p, i, j);
  const opmath_t scale = static_cast<opmath_t>(g.offset_scale);
  loc_x = opmath_t(wo * g.stride_w - g.pad_w + g.center_x()) +
          (opmath_t(i * g.dilation_w - g.center_x()) + off_x) * scale;
  loc_y = opmath_t(ho * g.stride_h - g.pad_h + g.center_y()) +
          (opmath_t(j * g.dilation_h - g.center_y()) + off_y) * scale;
}

// Bilinear taps of a location. False when it lies outside (-1, size) on either axis (NaN and inf
// fail the comparisons too, so no index is formed from them): nothing is sampled there.
template <typename opmath_t, typename index_t>
C10_HOST_DEVICE inline bool make_taps(opmath_t loc_x, opmath_t loc_y, const GeometryT<index_t>& g,
                                      Taps<opmath_t, index_t>& t) {
  if (!(loc_x > opmath_t(-1) && loc_y > opmath_t(-1) && loc_x < opmath_t(g.w) &&
        loc_y < opmath_t(g.h))) {
    return false;
  }
  const index_t c = g.channels();
  const index_t x0 = static_cast<index_t>(floor(loc_x));
  const index_t y0 = static_cast<index_t>(floor(loc_y));
  const index_t x1 = x0 + 1, y1 = y0 + 1;
  t.lx = loc_x - opmath_t(x0);
  t.ly = loc_y - opmath_t(y0);
  const opmath_t hx = opmath_t(1) - t.lx, hy = opmath_t(1) - t.ly;
  const bool vx0 = x0 >= 0, vx1 = x1 < g.w, vy0 = y0 >= 0, vy1 = y1 < g.h;
  t.idx[0] = (vy0 && vx0) ? (y0 * g.w + x0) * c : index_t(-1);
  t.idx[1] = (vy0 && vx1) ? (y0 * g.w + x1) * c : index_t(-1);
  t.idx[2] = (vy1 && vx0) ? (y1 * g.w + x0) * c : index_t(-1);
  t.idx[3] = (vy1 && vx1) ? (y1 * g.w + x1) * c : index_t(-1);
  t.coef[0] = hy * hx;
  t.coef[1] = hy * t.lx;
  t.coef[2] = t.ly * hx;
  t.coef[3] = t.ly * t.lx;
  return true;
}

// Location and taps of point p of item = pos*G + grp (pos = (n, ho, wo)), read from the offsets.
template <typename scalar_t, typename opmath_t, typename index_t>
C10_HOST_DEVICE inline bool point_taps(const GeometryT<index_t>& g, const scalar_t* offset,
                                       index_t item, index_t p, Taps<opmath_t, index_t>& t) {
  const index_t pos = item / g.group;
  const index_t wo = pos % g.wo, ho = (pos / g.wo) % g.ho;
  const scalar_t* off = offset + (item * g.points + p) * 2;
  opmath_t loc_x, loc_y;
  sampling_location(g, ho, wo, p, opmath_t(off[0]), opmath_t(off[1]), loc_x, loc_y);
  return make_taps(loc_x, loc_y, g, t);
}

// ---- channel vectors: N consecutive channels, read and written as one aligned access ----

template <typename T, int N>
struct alignas(sizeof(T) * N) Vec {
  T val[N];
};

// v[k] = p[k] in opmath. On the device one vector load (the caller guarantees the alignment, see
// launch_config); half types are converted in pairs (__half2 / __nv_bfloat162).
template <int N, typename scalar_t, typename opmath_t>
C10_HOST_DEVICE inline void load_channels(const scalar_t* p, opmath_t (&v)[N]) {
#if defined(__CUDA_ARCH__)
  // Half types are loaded straight as pairs: converting through the address of a local copy would
  // put that copy in local memory.
  if constexpr (N % 2 == 0 && std::is_same_v<scalar_t, c10::Half>) {
    const Vec<__half2, N / 2> raw = *reinterpret_cast<const Vec<__half2, N / 2>*>(p);
DCNV3_UNROLL
    for (int k = 0; k < N / 2; ++k) {
      const float2 f = __half22float2(raw.val[k]);
      v[2 * k] = f.x;
      v[2 * k + 1] = f.y;
    }
  } else if constexpr (N % 2 == 0 && std::is_same_v<scalar_t, c10::BFloat16>) {
    const Vec<__nv_bfloat162, N / 2> raw = *reinterpret_cast<const Vec<__nv_bfloat162, N / 2>*>(p);
DCNV3_UNROLL
    for (int k = 0; k < N / 2; ++k) {
      const float2 f = __bfloat1622float2(raw.val[k]);
      v[2 * k] = f.x;
      v[2 * k + 1] = f.y;
    }
  } else {
    const Vec<scalar_t, N> raw = *reinterpret_cast<const Vec<scalar_t, N>*>(p);
DCNV3_UNROLL
    for (int k = 0; k < N; ++k) v[k] = opmath_t(raw.val[k]);
  }
#else
  for (int k = 0; k < N; ++k) v[k] = opmath_t(p[k]);
#endif
}

// p[k] = v[k] rounded to scalar_t; one vector store on the device.
template <int N, typename scalar_t, typename opmath_t>
C10_HOST_DEVICE inline void store_channels(scalar_t* p, const opmath_t (&v)[N]) {
#if defined(__CUDA_ARCH__)
  Vec<scalar_t, N> raw;
DCNV3_UNROLL
  for (int k = 0; k < N; ++k) raw.val[k] = static_cast<scalar_t>(v[k]);
  *reinterpret_cast<Vec<scalar_t, N>*>(p) = raw;
#else
  for (int k = 0; k < N; ++k) p[k] = static_cast<scalar_t>(v[k]);
#endif
}

// ---- forward ----

// One lane's share of an item's output: channels [d0, d0 + CPL) of every chunk, each the
// mask-weighted sum over the group's points of the bilinearly sampled input. The taps of a point
// serve all CPL channels of the lane.
template <int CPL, typename scalar_t, typename index_t>
C10_HOST_DEVICE inline void forward_lane(const scalar_t* input, const scalar_t* offset,
                                         const scalar_t* mask, scalar_t* output,
                                         const GeometryT<index_t>& g, const LaneLayout& layout,
                                         index_t item, int lane) {
  using opmath_t = at::opmath_type<scalar_t>;
  const index_t C = g.channels(), D = g.group_channels;
  const index_t grp = item % g.group, pos = item / g.group;
  const index_t n = pos / (g.wo * g.ho);
  const scalar_t* img = input + n * g.h * g.w * C + grp * D;
  const scalar_t* msk = mask + item * g.points;
  for (int chunk = 0; chunk < layout.chunks; ++chunk) {
    const index_t d0 = (index_t(chunk) * layout.team + lane) * CPL;
    if (d0 >= D) break;  // the team is rounded up to a power of two
    opmath_t acc[CPL];
DCNV3_UNROLL
    for (int k = 0; k < CPL; ++k) acc[k] = 0;
    for (index_t p = 0; p < g.points; ++p) {
      Taps<opmath_t, index_t> t;
      if (!point_taps(g, offset, item, p, t)) continue;
      const opmath_t m = static_cast<opmath_t>(msk[p]);
DCNV3_UNROLL
      for (int q = 0; q < 4; ++q) {
        if (t.idx[q] < 0) continue;
        opmath_t v[CPL];
        load_channels<CPL>(img + t.idx[q] + d0, v);
        const opmath_t w = m * t.coef[q];
DCNV3_UNROLL
        for (int k = 0; k < CPL; ++k) acc[k] += w * v[k];
      }
    }
    store_channels<CPL>(output + pos * C + grp * D + d0, acc);
  }
}

// ---- backward ----

// grad_input accumulation: lanes of many warps share pixels, so the device adds atomically; the
// host launcher runs one lane at a time and adds plainly.
template <typename T>
C10_HOST_DEVICE inline void scatter_add(T* address, T value) {
#if defined(__CUDA_ARCH__)
  atomicAdd(address, value);
#else
  *address += value;
#endif
}

// grad_input[k] += v[k] for a lane's CPL consecutive channels. sm_90 and newer add float2/float4
// vectors atomically (one 8/16-byte atomic per lane instead of two/four), older GPUs per channel.
template <int CPL, typename T>
C10_HOST_DEVICE inline void scatter_add_channels(T* address, const T (&v)[CPL]) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
  if constexpr (std::is_same_v<T, float> && CPL % 4 == 0) {
DCNV3_UNROLL
    for (int k = 0; k < CPL; k += 4) {
      atomicAdd(reinterpret_cast<float4*>(address + k), make_float4(v[k], v[k + 1], v[k + 2], v[k + 3]));
    }
    return;
  } else if constexpr (std::is_same_v<T, float> && CPL == 2) {
    atomicAdd(reinterpret_cast<float2*>(address), make_float2(v[0], v[1]));
    return;
  }
#endif
DCNV3_UNROLL
  for (int k = 0; k < CPL; ++k) scatter_add(address + k, v[k]);
}

// One lane's share of point p of an item: s[q] += go * v_q over the lane's channels (the dot
// products of grad_output with the corner values, completed by team_allreduce) and grad_input at
// each corner += coef_q * m * go. Returns false, leaving s at zero, when the point samples nothing.
template <int CPL, typename scalar_t, typename index_t>
C10_HOST_DEVICE inline bool backward_lane_point(
    const scalar_t* input, const scalar_t* offset, const scalar_t* mask,
    const scalar_t* grad_output, at::opmath_type<scalar_t>* grad_input, const GeometryT<index_t>& g,
    const LaneLayout& layout, index_t item, int lane, index_t p,
    Taps<at::opmath_type<scalar_t>, index_t>& t, at::opmath_type<scalar_t> (&s)[4]) {
  using opmath_t = at::opmath_type<scalar_t>;
DCNV3_UNROLL
  for (int q = 0; q < 4; ++q) s[q] = 0;
  if (!point_taps(g, offset, item, p, t)) return false;
  const index_t C = g.channels(), D = g.group_channels;
  const index_t grp = item % g.group, pos = item / g.group;
  const index_t base = pos / (g.wo * g.ho) * g.h * g.w * C + grp * D;
  const opmath_t m = static_cast<opmath_t>(mask[item * g.points + p]);
  for (int chunk = 0; chunk < layout.chunks; ++chunk) {
    const index_t d0 = (index_t(chunk) * layout.team + lane) * CPL;
    if (d0 >= D) break;
    opmath_t go[CPL];
    load_channels<CPL>(grad_output + pos * C + grp * D + d0, go);
DCNV3_UNROLL
    for (int q = 0; q < 4; ++q) {
      if (t.idx[q] < 0) continue;
      opmath_t v[CPL];
      load_channels<CPL>(input + base + t.idx[q] + d0, v);
      const opmath_t w = t.coef[q] * m;
      opmath_t add[CPL];
DCNV3_UNROLL
      for (int k = 0; k < CPL; ++k) {
        s[q] += go[k] * v[k];
        add[k] = w * go[k];
      }
      scatter_add_channels<CPL>(grad_input + base + t.idx[q] + d0, add);
    }
  }
  return true;
}

// Sums s over the lanes of each team (aligned groups of `team` lanes) with a butterfly: at step
// `mask` (team/2, ..., 1) every lane adds the value of lane ^ mask, so after log2(team) steps every
// lane of a team holds the team's sum, and lanes l and l ^ mask always add the same two numbers.
#if defined(__CUDACC__)
template <typename opmath_t>
__device__ inline void team_allreduce(opmath_t (&s)[4], int team) {
  for (int mask = team / 2; mask > 0; mask /= 2) {
DCNV3_UNROLL
    for (int q = 0; q < 4; ++q) s[q] += __shfl_xor_sync(0xffffffffu, s[q], mask);
  }
}
#endif

// The host's form of team_allreduce: the same butterfly over a whole warp's lanes, step by step
// (every lane reads its partner's value of the previous step, as __shfl_xor_sync does).
template <typename opmath_t>
inline void team_allreduce_host(opmath_t (&s)[kWarpSize][4], int team) {
  for (int mask = team / 2; mask > 0; mask /= 2) {
    opmath_t prev[kWarpSize][4];
    for (int l = 0; l < kWarpSize; ++l) {
      for (int q = 0; q < 4; ++q) prev[l][q] = s[l][q];
    }
    for (int l = 0; l < kWarpSize; ++l) {
      for (int q = 0; q < 4; ++q) s[l][q] = prev[l][q] + prev[l ^ mask][q];
    }
  }
}

// Offset and mask gradients of point p of an item from its corner dot products s (summed over the
// group's channels), written once by one lane of the team: d out / d mask = sum_q coef_q s_q;
// d out / d loc follows from the bilinear weights, and d loc / d offset = offset_scale. A point
// that samples nothing gets zeros (the gradient buffers start uninitialised).
template <typename scalar_t, typename opmath_t, typename index_t>
C10_HOST_DEVICE inline void write_point_gradients(const scalar_t* mask, scalar_t* grad_offset,
                                                  scalar_t* grad_mask, const GeometryT<index_t>& g,
                                                  index_t item, index_t p, bool sampled,
                                                  const Taps<opmath_t, index_t>& t,
                                                  const opmath_t (&s)[4]) {
  const index_t index = item * g.points + p;
  if (!sampled) {
    grad_offset[2 * index] = grad_offset[2 * index + 1] = grad_mask[index] = scalar_t(0);
    return;
  }
  const opmath_t m = static_cast<opmath_t>(mask[index]);
  const opmath_t scale = static_cast<opmath_t>(g.offset_scale);
  const opmath_t hx = opmath_t(1) - t.lx, hy = opmath_t(1) - t.ly;
  grad_mask[index] =
      static_cast<scalar_t>(t.coef[0] * s[0] + t.coef[1] * s[1] + t.coef[2] * s[2] + t.coef[3] * s[3]);
  grad_offset[2 * index] = static_cast<scalar_t>(scale * m * (hy * (s[1] - s[0]) + t.ly * (s[3] - s[2])));
  grad_offset[2 * index + 1] =
      static_cast<scalar_t>(scale * m * (hx * (s[2] - s[0]) + t.lx * (s[3] - s[1])));
}

// Calls fn(std::integral_constant<int, CPL>{}, index_t{}) with the compile-time form of a launch
// configuration: 32-bit indexing with the channel widths that fit a 16-byte vector of scalar_t, or
// 64-bit indexing with one channel per lane (launch_config never pairs it with another width).
template <typename scalar_t, typename Fn>
inline void dispatch_launch(const LaunchConfig& c, Fn&& fn) {
  if (!c.index32) {
    TORCH_CHECK(c.cpl == 1, "dcnv3: 64-bit indexing takes one channel per lane, got ", c.cpl);
    fn(std::integral_constant<int, 1>{}, int64_t{});
    return;
  }
  const auto with_width = [&](auto cpl) {
    if constexpr (decltype(cpl)::value * sizeof(scalar_t) <= 16) {
      fn(cpl, int32_t{});
    } else {
      TORCH_CHECK(false, "dcnv3: ", decltype(cpl)::value, " channels per lane exceed 16 bytes");
    }
  };
  switch (c.cpl) {
    case 8: with_width(std::integral_constant<int, 8>{}); break;
    case 4: with_width(std::integral_constant<int, 4>{}); break;
    case 2: with_width(std::integral_constant<int, 2>{}); break;
    default: with_width(std::integral_constant<int, 1>{}); break;
  }
}

}  // namespace element
}  // namespace ops_dcnv3
