// CPU kernels of DCNv3 (float32, float64, bfloat16 and float16; reduced types accumulate in float32).
//
// Forward: parallel over output positions; per (position, group, point) the bilinear corner weights
// (already multiplied by the mask) are computed once and shared by the group's D contiguous channels,
// so the inner loop is a branch-free 4-term multiply-add the compiler vectorises.
// Backward: parallel over (batch, group) pairs. Each pair owns a disjoint slice of grad_input (its
// image, its D channels), so the scatter needs no atomics and the result does not depend on the
// number of threads.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cmath>
#include <vector>

#include "dcnv3.h"

namespace ops_dcnv3 {
namespace {

// The four bilinear taps of one sampling point. Taps outside the image point at a zero row and get
// weight 0, so callers run the same loop whatever the border situation.
template <typename opmath_t>
struct Taps {
  int64_t idx[4];     // element offsets (pixel * C) in the image, or -1 when outside
  opmath_t coef[4];   // bilinear weights: (y0,x0), (y0,x1), (y1,x0), (y1,x1)
  opmath_t lx, ly;    // fractional parts, for the location gradient
};

// Returns false when the location lies outside (-1, size) on either axis (nothing is sampled). NaN
// and infinite locations fail the comparisons and are skipped too: no out-of-bounds index is formed.
template <typename opmath_t>
inline bool make_taps(opmath_t loc_x, opmath_t loc_y, int64_t h, int64_t w, int64_t c,
                      Taps<opmath_t>& t) {
  if (!(loc_x > opmath_t(-1) && loc_y > opmath_t(-1) && loc_x < opmath_t(w) && loc_y < opmath_t(h))) {
    return false;
  }
  const int64_t x0 = static_cast<int64_t>(std::floor(loc_x));
  const int64_t y0 = static_cast<int64_t>(std::floor(loc_y));
  const int64_t x1 = x0 + 1, y1 = y0 + 1;
  t.lx = loc_x - opmath_t(x0);
  t.ly = loc_y - opmath_t(y0);
  const opmath_t hx = opmath_t(1) - t.lx, hy = opmath_t(1) - t.ly;
  const bool vx0 = x0 >= 0, vx1 = x1 < w, vy0 = y0 >= 0, vy1 = y1 < h;
  t.idx[0] = (vy0 && vx0) ? (y0 * w + x0) * c : -1;
  t.idx[1] = (vy0 && vx1) ? (y0 * w + x1) * c : -1;
  t.idx[2] = (vy1 && vx0) ? (y1 * w + x0) * c : -1;
  t.idx[3] = (vy1 && vx1) ? (y1 * w + x1) * c : -1;
  t.coef[0] = hy * hx;
  t.coef[1] = hy * t.lx;
  t.coef[2] = t.ly * hx;
  t.coef[3] = t.ly * t.lx;
  return true;
}

// Calls fn(point_index, x_tap, y_tap) for the kernel points in the published order p = i*kh + j.
template <typename Fn>
inline void for_each_point(const Geometry& g, Fn&& fn) {
  const int64_t ci = g.kernel_w / 2, cj = g.kernel_h / 2;
  int64_t p = 0;
  for (int64_t i = 0; i < g.kernel_w; ++i) {
    for (int64_t j = 0; j < g.kernel_h; ++j) {
      if (g.remove_center && i == ci && j == cj) continue;
      fn(p++, i * g.dilation_w - g.center_x(), j * g.dilation_h - g.center_y());
    }
  }
}

template <typename scalar_t>
void forward_kernel(const scalar_t* __restrict input, const scalar_t* __restrict offset,
                    const scalar_t* __restrict mask, scalar_t* __restrict output, const Geometry& g) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t C = g.channels(), D = g.group_channels, P = g.points;
  const int64_t positions = g.n * g.ho * g.wo;
  const opmath_t scale = static_cast<opmath_t>(g.offset_scale);
  // Aim for a few thousand multiply-adds per task so scheduling overhead stays negligible.
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, g.group * P * D));
  at::parallel_for(0, positions, grain, [&](int64_t begin, int64_t end) {
    std::vector<opmath_t> acc(D);
    const std::vector<scalar_t> zeros(D, scalar_t(0));
    for (int64_t pos = begin; pos < end; ++pos) {
      const int64_t wo = pos % g.wo, ho = (pos / g.wo) % g.ho, n = pos / (g.wo * g.ho);
      const scalar_t* img = input + n * g.h * g.w * C;
      const scalar_t* off = offset + pos * g.group * P * 2;
      const scalar_t* msk = mask + pos * g.group * P;
      const opmath_t base_x = opmath_t(wo * g.stride_w - g.pad_w + g.center_x());
      const opmath_t base_y = opmath_t(ho * g.stride_h - g.pad_h + g.center_y());
      for (int64_t grp = 0; grp < g.group; ++grp) {
        std::fill(acc.begin(), acc.end(), opmath_t(0));
        opmath_t* __restrict a = acc.data();
        const scalar_t* img_g = img + grp * D;
        for_each_point(g, [&](int64_t p, int64_t tap_x, int64_t tap_y) {
          const int64_t k = grp * P + p;
          const opmath_t loc_x = base_x + (opmath_t(tap_x) + opmath_t(off[2 * k])) * scale;
          const opmath_t loc_y = base_y + (opmath_t(tap_y) + opmath_t(off[2 * k + 1])) * scale;
          Taps<opmath_t> t;
          if (!make_taps(loc_x, loc_y, g.h, g.w, C, t)) return;
          const opmath_t m = static_cast<opmath_t>(msk[k]);
          const scalar_t* __restrict v[4];
          opmath_t wt[4];
          for (int q = 0; q < 4; ++q) {
            v[q] = t.idx[q] >= 0 ? img_g + t.idx[q] : zeros.data();
            wt[q] = t.coef[q] * m;
          }
          for (int64_t d = 0; d < D; ++d) {
            a[d] += wt[0] * opmath_t(v[0][d]) + wt[1] * opmath_t(v[1][d]) +
                    wt[2] * opmath_t(v[2][d]) + wt[3] * opmath_t(v[3][d]);
          }
        });
        scalar_t* out = output + pos * C + grp * D;
        for (int64_t d = 0; d < D; ++d) out[d] = static_cast<scalar_t>(a[d]);
      }
    }
  });
}

template <typename scalar_t>
void backward_kernel(const scalar_t* __restrict input, const scalar_t* __restrict offset,
                     const scalar_t* __restrict mask, const scalar_t* __restrict grad_output,
                     at::opmath_type<scalar_t>* __restrict grad_input,
                     scalar_t* __restrict grad_offset, scalar_t* __restrict grad_mask,
                     const Geometry& g) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t C = g.channels(), D = g.group_channels, P = g.points;
  const opmath_t scale = static_cast<opmath_t>(g.offset_scale);
  at::parallel_for(0, g.n * g.group, 1, [&](int64_t begin, int64_t end) {
    std::vector<opmath_t> go(D);
    std::vector<opmath_t> sink(D);  // scatter target of taps outside the image
    const std::vector<scalar_t> zeros(D, scalar_t(0));
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / g.group, grp = task % g.group;
      const scalar_t* img_g = input + n * g.h * g.w * C + grp * D;
      opmath_t* gimg_g = grad_input + n * g.h * g.w * C + grp * D;
      for (int64_t ho = 0; ho < g.ho; ++ho) {
        for (int64_t wo = 0; wo < g.wo; ++wo) {
          const int64_t pos = (n * g.ho + ho) * g.wo + wo;
          const scalar_t* gout = grad_output + pos * C + grp * D;
          for (int64_t d = 0; d < D; ++d) go[d] = static_cast<opmath_t>(gout[d]);
          const opmath_t* __restrict gop = go.data();
          const scalar_t* off = offset + pos * g.group * P * 2;
          const scalar_t* msk = mask + pos * g.group * P;
          scalar_t* goff = grad_offset + pos * g.group * P * 2;
          scalar_t* gmsk = grad_mask + pos * g.group * P;
          const opmath_t base_x = opmath_t(wo * g.stride_w - g.pad_w + g.center_x());
          const opmath_t base_y = opmath_t(ho * g.stride_h - g.pad_h + g.center_y());
          for_each_point(g, [&](int64_t p, int64_t tap_x, int64_t tap_y) {
            const int64_t k = grp * P + p;
            const opmath_t loc_x = base_x + (opmath_t(tap_x) + opmath_t(off[2 * k])) * scale;
            const opmath_t loc_y = base_y + (opmath_t(tap_y) + opmath_t(off[2 * k + 1])) * scale;
            Taps<opmath_t> t;
            if (!make_taps(loc_x, loc_y, g.h, g.w, C, t)) {
              // Nothing sampled: zero gradients (the outputs start uninitialised).
              goff[2 * k] = goff[2 * k + 1] = gmsk[k] = scalar_t(0);
              return;
            }
            const opmath_t m = static_cast<opmath_t>(msk[k]);
            const scalar_t* __restrict v[4];
            opmath_t* gv[4];
            for (int q = 0; q < 4; ++q) {
              v[q] = t.idx[q] >= 0 ? img_g + t.idx[q] : zeros.data();
              gv[q] = t.idx[q] >= 0 ? gimg_g + t.idx[q] : sink.data();
            }
            // Dot products of grad_output with the four corner values: they give the mask and
            // location gradients at once.
            opmath_t s[4] = {0, 0, 0, 0};
            for (int q = 0; q < 4; ++q) {
              const scalar_t* __restrict vq = v[q];
              opmath_t sq = 0;
              for (int64_t d = 0; d < D; ++d) sq += gop[d] * opmath_t(vq[d]);
              s[q] = sq;
              const opmath_t wq = t.coef[q] * m;
              opmath_t* __restrict gq = gv[q];
              for (int64_t d = 0; d < D; ++d) gq[d] += wq * gop[d];
            }
            const opmath_t hx = opmath_t(1) - t.lx, hy = opmath_t(1) - t.ly;
            const opmath_t dval_dx = hy * (s[1] - s[0]) + t.ly * (s[3] - s[2]);
            const opmath_t dval_dy = hx * (s[2] - s[0]) + t.lx * (s[3] - s[1]);
            gmsk[k] = static_cast<scalar_t>(t.coef[0] * s[0] + t.coef[1] * s[1] +
                                            t.coef[2] * s[2] + t.coef[3] * s[3]);
            goff[2 * k] = static_cast<scalar_t>(scale * m * dval_dx);
            goff[2 * k + 1] = static_cast<scalar_t>(scale * m * dval_dy);
          });
        }
      }
    }
  });
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
  const at::Tensor in = input.contiguous(), off = offset.contiguous(), msk = mask.contiguous();
  at::Tensor output = at::empty({g.n, g.ho, g.wo, g.channels()}, in.options());
  if (output.numel() == 0) return output;
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, in.scalar_type(), "dcnv3_forward_cpu", [&] {
    forward_kernel<scalar_t>(in.const_data_ptr<scalar_t>(), off.const_data_ptr<scalar_t>(),
                             msk.const_data_ptr<scalar_t>(), output.mutable_data_ptr<scalar_t>(), g);
  });
  return output;
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
  TORCH_CHECK(grad_output.sizes() == at::IntArrayRef({g.n, g.ho, g.wo, g.channels()}),
              "dcnv3_backward: grad_output must be (", g.n, ", ", g.ho, ", ", g.wo, ", ",
              g.channels(), "), got ", grad_output.sizes());
  const at::Tensor in = input.contiguous(), off = offset.contiguous(), msk = mask.contiguous();
  const at::Tensor gout = grad_output.to(in.scalar_type()).contiguous();
  const auto opmath = at::toOpMathType(in.scalar_type());
  at::Tensor grad_input = at::zeros(in.sizes(), in.options().dtype(opmath));
  at::Tensor grad_offset = at::empty(off.sizes(), off.options());
  at::Tensor grad_mask = at::empty(msk.sizes(), msk.options());
  if (gout.numel() > 0) {
    AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, in.scalar_type(), "dcnv3_backward_cpu", [&] {
      backward_kernel<scalar_t>(
          in.const_data_ptr<scalar_t>(), off.const_data_ptr<scalar_t>(),
          msk.const_data_ptr<scalar_t>(), gout.const_data_ptr<scalar_t>(),
          grad_input.mutable_data_ptr<at::opmath_type<scalar_t>>(),
          grad_offset.mutable_data_ptr<scalar_t>(), grad_mask.mutable_data_ptr<scalar_t>(), g);
    });
  }
  return {grad_input.to(in.scalar_type()), grad_offset, grad_mask};
}

}  // namespace

TORCH_LIBRARY_IMPL(ops_dcnv3, CPU, m) {
  m.impl("dcnv3_forward", &dcnv3_forward_cpu);
  m.impl("dcnv3_backward", &dcnv3_backward_cpu);
}

}  // namespace ops_dcnv3
