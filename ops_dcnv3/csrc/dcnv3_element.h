// Per-element arithmetic of DCNv3, shared by the CUDA kernels (cuda/dcnv3_cuda.cu) and a host
// launcher (cpu/dcnv3_device_math.cpp) that runs exactly these functions on the CPU, one element
// after another. The launcher is what lets every test run execute the CUDA kernels' math without a
// GPU, so the CUDA kernels must do their arithmetic here and nowhere else.
//
// Everything is C10_HOST_DEVICE, header-only and free of ATen calls. The one place where host and
// device differ is scatter_add: atomicAdd on the device, a plain add on the host.
#pragma once

#include <ATen/OpMathType.h>
#include <c10/macros/Macros.h>

#include <cmath>
#include <cstdint>

#include "dcnv3.h"

// `#pragma unroll` is nvcc's; the host compiler would only warn about it.
#if defined(__CUDACC__)
#define DCNV3_UNROLL _Pragma("unroll")
#else
#define DCNV3_UNROLL
#endif

namespace ops_dcnv3 {
namespace element {

// The four bilinear taps of one sampling point.
template <typename opmath_t>
struct Taps {
  int64_t idx[4];    // element offsets (pixel * C) of the corners; -1 for a corner outside the image
  opmath_t coef[4];  // bilinear weights of the corners (y0,x0), (y0,x1), (y1,x0), (y1,x1)
  opmath_t lx, ly;   // fractional parts of the location, for the location gradient
};

// Kernel tap (i along x, j along y) of sampling point p: x-major order p = i*kernel_h + j, with the
// centre skipped under remove_center.
C10_HOST_DEVICE inline void point_tap(const Geometry& g, int64_t p, int64_t& i, int64_t& j) {
  const int64_t centre = (g.kernel_w / 2) * g.kernel_h + g.kernel_h / 2;
  const int64_t q = (g.remove_center && p >= centre) ? p + 1 : p;
  i = q / g.kernel_h;
  j = q % g.kernel_h;
}

// Sampling location of point p of output (ho, wo), given the point's learned offset (x, y):
//   loc = out*stride - pad + c + (tap*dilation - c + offset) * offset_scale,  c = dilation*(k-1)//2.
template <typename opmath_t>
C10_HOST_DEVICE inline void sampling_location(const Geometry& g, int64_t ho, int64_t wo, int64_t p,
                                              opmath_t off_x, opmath_t off_y, opmath_t& loc_x,
                                              opmath_t& loc_y) {
  int64_t i, j;
  point_tap(g, p, i, j);
  const opmath_t scale = static_cast<opmath_t>(g.offset_scale);
  loc_x = opmath_t(wo * g.stride_w - g.pad_w + g.center_x()) +
          (opmath_t(i * g.dilation_w - g.center_x()) + off_x) * scale;
  loc_y = opmath_t(ho * g.stride_h - g.pad_h + g.center_y()) +
          (opmath_t(j * g.dilation_h - g.center_y()) + off_y) * scale;
}

// Bilinear taps of a location. False when it lies outside (-1, size) on either axis (NaN and inf
// fail the comparisons too, so no index is formed from them): nothing is sampled there.
template <typename opmath_t>
C10_HOST_DEVICE inline bool make_taps(opmath_t loc_x, opmath_t loc_y, const Geometry& g,
                                      Taps<opmath_t>& t) {
  if (!(loc_x > opmath_t(-1) && loc_y > opmath_t(-1) && loc_x < opmath_t(g.w) &&
        loc_y < opmath_t(g.h))) {
    return false;
  }
  const int64_t c = g.channels();
  const int64_t x0 = static_cast<int64_t>(floor(loc_x));
  const int64_t y0 = static_cast<int64_t>(floor(loc_y));
  const int64_t x1 = x0 + 1, y1 = y0 + 1;
  t.lx = loc_x - opmath_t(x0);
  t.ly = loc_y - opmath_t(y0);
  const opmath_t hx = opmath_t(1) - t.lx, hy = opmath_t(1) - t.ly;
  const bool vx0 = x0 >= 0, vx1 = x1 < g.w, vy0 = y0 >= 0, vy1 = y1 < g.h;
  t.idx[0] = (vy0 && vx0) ? (y0 * g.w + x0) * c : -1;
  t.idx[1] = (vy0 && vx1) ? (y0 * g.w + x1) * c : -1;
  t.idx[2] = (vy1 && vx0) ? (y1 * g.w + x0) * c : -1;
  t.idx[3] = (vy1 && vx1) ? (y1 * g.w + x1) * c : -1;
  t.coef[0] = hy * hx;
  t.coef[1] = hy * t.lx;
  t.coef[2] = t.ly * hx;
  t.coef[3] = t.ly * t.lx;
  return true;
}

// Location and taps of point p of (position pos = (n, ho, wo), group grp), read from the offsets.
template <typename scalar_t, typename opmath_t>
C10_HOST_DEVICE inline bool point_taps(const Geometry& g, const scalar_t* offset, int64_t pos,
                                       int64_t grp, int64_t p, Taps<opmath_t>& t) {
  const int64_t wo = pos % g.wo, ho = (pos / g.wo) % g.ho;
  const scalar_t* off = offset + ((pos * g.group + grp) * g.points + p) * 2;
  opmath_t loc_x, loc_y;
  sampling_location(g, ho, wo, p, opmath_t(off[0]), opmath_t(off[1]), loc_x, loc_y);
  return make_taps(loc_x, loc_y, g, t);
}

// Bilinearly sampled value of one channel; `img` points at that channel of pixel (0, 0).
template <typename scalar_t, typename opmath_t>
C10_HOST_DEVICE inline opmath_t sample(const scalar_t* img, const Taps<opmath_t>& t) {
  opmath_t v = 0;
DCNV3_UNROLL
  for (int q = 0; q < 4; ++q) {
    if (t.idx[q] >= 0) v += t.coef[q] * opmath_t(img[t.idx[q]]);
  }
  return v;
}

// Forward of one output element, index = ((n*Ho + ho)*Wo + wo)*C + grp*D + d: the mask-weighted sum
// of the group's sampled points for channel d.
template <typename scalar_t>
C10_HOST_DEVICE inline void forward_element(const scalar_t* input, const scalar_t* offset,
                                            const scalar_t* mask, scalar_t* output,
                                            const Geometry& g, int64_t index) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t C = g.channels(), D = g.group_channels;
  const int64_t d = index % D, grp = (index / D) % g.group, pos = index / C;
  const int64_t n = pos / (g.wo * g.ho);
  const scalar_t* img = input + n * g.h * g.w * C + grp * D + d;
  const scalar_t* msk = mask + (pos * g.group + grp) * g.points;
  opmath_t acc = 0;
  for (int64_t p = 0; p < g.points; ++p) {
    Taps<opmath_t> t;
    if (point_taps(g, offset, pos, grp, p, t)) acc += opmath_t(msk[p]) * sample(img, t);
  }
  output[index] = static_cast<scalar_t>(acc);
}

// grad_input accumulation: threads of a CUDA kernel share pixels, so the device adds atomically; the
// host launcher runs one element at a time and adds plainly.
template <typename T>
C10_HOST_DEVICE inline void scatter_add(T* address, T value) {
#if defined(__CUDA_ARCH__)
  atomicAdd(address, value);
#else
  *address += value;
#endif
}

// One channel's share of a point's backward: s[q] += go * v_q (the dot products of grad_output with
// the corner values) and grad_input at each corner += coef_q * m * go. `img` and `gimg` point at the
// channel of pixel (0, 0).
template <typename scalar_t, typename opmath_t>
C10_HOST_DEVICE inline void backward_channel(const scalar_t* img, opmath_t* gimg,
                                             const Taps<opmath_t>& t, opmath_t m, opmath_t go,
                                             opmath_t s[4]) {
DCNV3_UNROLL
  for (int q = 0; q < 4; ++q) {
    if (t.idx[q] >= 0) {
      s[q] += go * opmath_t(img[t.idx[q]]);
      scatter_add(gimg + t.idx[q], t.coef[q] * m * go);
    }
  }
}

// Offset and mask gradients of a point from its corner dot products s (summed over the channels):
// d out / d mask = sum_q coef_q s_q; d out / d loc follows from the bilinear weights, and
// d loc / d offset = offset_scale.
template <typename opmath_t>
C10_HOST_DEVICE inline void point_gradients(const Taps<opmath_t>& t, opmath_t m, opmath_t scale,
                                            const opmath_t s[4], opmath_t& grad_off_x,
                                            opmath_t& grad_off_y, opmath_t& grad_mask) {
  const opmath_t hx = opmath_t(1) - t.lx, hy = opmath_t(1) - t.ly;
  grad_mask = t.coef[0] * s[0] + t.coef[1] * s[1] + t.coef[2] * s[2] + t.coef[3] * s[3];
  grad_off_x = scale * m * (hy * (s[1] - s[0]) + t.ly * (s[3] - s[2]));
  grad_off_y = scale * m * (hx * (s[2] - s[0]) + t.lx * (s[3] - s[1]));
}

// Backward of one sampling point, index = ((n*Ho + ho)*Wo + wo)*G*P + grp*P + p: walks the group's
// channels, scatters into grad_input (opmath buffer) and writes the point's offset/mask gradients.
template <typename scalar_t>
C10_HOST_DEVICE inline void backward_point(const scalar_t* input, const scalar_t* offset,
                                           const scalar_t* mask, const scalar_t* grad_output,
                                           at::opmath_type<scalar_t>* grad_input,
                                           scalar_t* grad_offset, scalar_t* grad_mask,
                                           const Geometry& g, int64_t index) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t C = g.channels(), D = g.group_channels, P = g.points;
  const int64_t p = index % P, grp = (index / P) % g.group, pos = index / (P * g.group);
  const int64_t n = pos / (g.wo * g.ho);
  Taps<opmath_t> t;
  if (!point_taps(g, offset, pos, grp, p, t)) {
    // Nothing sampled: zero gradients (the outputs start uninitialised).
    grad_offset[2 * index] = grad_offset[2 * index + 1] = grad_mask[index] = scalar_t(0);
    return;
  }
  const opmath_t m = static_cast<opmath_t>(mask[index]);
  const int64_t img_base = n * g.h * g.w * C + grp * D;
  const scalar_t* gout = grad_output + pos * C + grp * D;
  opmath_t s[4] = {0, 0, 0, 0};
  for (int64_t d = 0; d < D; ++d) {
    backward_channel(input + img_base + d, grad_input + img_base + d, t, m,
                     static_cast<opmath_t>(gout[d]), s);
  }
  opmath_t gx, gy, gm;
  point_gradients(t, m, static_cast<opmath_t>(g.offset_scale), s, gx, gy, gm);
  grad_offset[2 * index] = static_cast<scalar_t>(gx);
  grad_offset[2 * index + 1] = static_cast<scalar_t>(gy);
  grad_mask[index] = static_cast<scalar_t>(gm);
}

}  // namespace element
}  // namespace ops_dcnv3
