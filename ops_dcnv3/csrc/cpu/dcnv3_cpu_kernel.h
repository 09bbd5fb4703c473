// DCNv3 CPU kernel bodies. Included by dcnv3_cpu.cpp once per instruction set (inside a namespace,
// e.g. under `#pragma GCC target("avx2,fma")`), so this file has no includes and no include guard.
//
// Forward: parallel over output positions. Per (position, group) the bilinear taps of all points are
// computed once (4 pointers + 4 weights already multiplied by the mask) and shared by the group's D
// contiguous channels, which are processed in register blocks of 16/8 channels with compile-time
// length, so the inner multiply-adds vectorise. Taps outside the image point at a zero row.
// Backward: parallel over (batch, group) pairs. Each pair owns a disjoint slice of grad_input (its
// image, its D channels), so the scatter needs no atomics and the result does not depend on the
// number of threads.

// The four bilinear taps of one sampling point; index -1 marks a tap outside the image.
template <typename opmath_t>
struct Taps {
  int64_t idx[4];    // element offsets (pixel * C) in the image
  opmath_t coef[4];  // bilinear weights: (y0,x0), (y0,x1), (y1,x0), (y1,x1)
  opmath_t lx, ly;   // fractional parts, for the location gradient
};

// False when the location lies outside (-1, size) on either axis: nothing is sampled. NaN and
// infinite locations fail the comparisons too, so no out-of-bounds index is ever formed.
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

// out[0:len] = sum over taps of w * v[c0:c0+len]; LEN > 0 fixes the length at compile time.
template <int LEN, typename scalar_t, typename opmath_t>
inline void gather_block(const scalar_t* const* ptrs, const opmath_t* wts, int64_t ntaps, int64_t c0,
                         int64_t len, scalar_t* out) {
  constexpr int kMax = LEN > 0 ? LEN : 16;
  const int64_t n = LEN > 0 ? LEN : len;
  opmath_t acc[kMax] = {};
  for (int64_t t = 0; t < ntaps; ++t) {
    const scalar_t* v0 = ptrs[4 * t] + c0;
    const scalar_t* v1 = ptrs[4 * t + 1] + c0;
    const scalar_t* v2 = ptrs[4 * t + 2] + c0;
    const scalar_t* v3 = ptrs[4 * t + 3] + c0;
    const opmath_t w0 = wts[4 * t], w1 = wts[4 * t + 1], w2 = wts[4 * t + 2], w3 = wts[4 * t + 3];
#pragma omp simd
    for (int64_t d = 0; d < n; ++d) {
      acc[d] += w0 * opmath_t(v0[d]) + w1 * opmath_t(v1[d]) + w2 * opmath_t(v2[d]) +
                w3 * opmath_t(v3[d]);
    }
  }
  for (int64_t d = 0; d < n; ++d) out[c0 + d] = static_cast<scalar_t>(acc[d]);
}

template <typename scalar_t>
void forward_kernel(const scalar_t* __restrict input, const scalar_t* __restrict offset,
                    const scalar_t* __restrict mask, scalar_t* __restrict output, const Geometry& g) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t C = g.channels(), D = g.group_channels, P = g.points;
  const int64_t positions = g.n * g.ho * g.wo;
  const opmath_t scale = static_cast<opmath_t>(g.offset_scale);
  // A few thousand multiply-adds per task keep the scheduling overhead negligible.
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, g.group * P * D));
  at::parallel_for(0, positions, grain, [&](int64_t begin, int64_t end) {
    const std::vector<scalar_t> zeros(D, scalar_t(0));
    std::vector<const scalar_t*> ptrs(4 * P);
    std::vector<opmath_t> wts(4 * P);
    for (int64_t pos = begin; pos < end; ++pos) {
      const int64_t wo = pos % g.wo, ho = (pos / g.wo) % g.ho, n = pos / (g.wo * g.ho);
      const scalar_t* img = input + n * g.h * g.w * C;
      const scalar_t* off = offset + pos * g.group * P * 2;
      const scalar_t* msk = mask + pos * g.group * P;
      const opmath_t base_x = opmath_t(wo * g.stride_w - g.pad_w + g.center_x());
      const opmath_t base_y = opmath_t(ho * g.stride_h - g.pad_h + g.center_y());
      for (int64_t grp = 0; grp < g.group; ++grp) {
        const scalar_t* img_g = img + grp * D;
        int64_t ntaps = 0;
        for_each_point(g, [&](int64_t p, int64_t tap_x, int64_t tap_y) {
          const int64_t k = grp * P + p;
          const opmath_t loc_x = base_x + (opmath_t(tap_x) + opmath_t(off[2 * k])) * scale;
          const opmath_t loc_y = base_y + (opmath_t(tap_y) + opmath_t(off[2 * k + 1])) * scale;
          Taps<opmath_t> t;
          if (!make_taps(loc_x, loc_y, g.h, g.w, C, t)) return;
          const opmath_t m = static_cast<opmath_t>(msk[k]);
          for (int q = 0; q < 4; ++q) {
            ptrs[4 * ntaps + q] = t.idx[q] >= 0 ? img_g + t.idx[q] : zeros.data();
            wts[4 * ntaps + q] = t.coef[q] * m;
          }
          ++ntaps;
        });
        scalar_t* out = output + pos * C + grp * D;
        int64_t c0 = 0;
        for (; c0 + 16 <= D; c0 += 16) gather_block<16>(ptrs.data(), wts.data(), ntaps, c0, 16, out);
        if (c0 + 8 <= D) {
          gather_block<8>(ptrs.data(), wts.data(), ntaps, c0, 8, out);
          c0 += 8;
        }
        if (c0 < D) gather_block<0>(ptrs.data(), wts.data(), ntaps, c0, D - c0, out);
      }
    }
  });
}

// For one tap set and a block of channels: s[q] += <go, v_q>, grad_v_q += coef_q * m * go.
// `omp simd` (not a parallel region: -fopenmp is on anyway) asserts the rows don't alias, keeps GCC
// from fully unrolling the short fixed-length loop into scalar code before vectorising it, and lets
// the dot product reduce in vector lanes (a fixed order, so results stay deterministic).
template <int LEN, typename scalar_t, typename opmath_t>
inline void scatter_block(const scalar_t* const* v, opmath_t* const* gv, const opmath_t* wq,
                          const opmath_t* go, int64_t c0, int64_t len, opmath_t* s) {
  const int64_t n = LEN > 0 ? LEN : len;
  const opmath_t* g = go + c0;
  for (int q = 0; q < 4; ++q) {
    const scalar_t* vq = v[q] + c0;
    opmath_t* gq = gv[q] + c0;
    const opmath_t w = wq[q];
    opmath_t sq = 0;
#pragma omp simd reduction(+ : sq)
    for (int64_t d = 0; d < n; ++d) {
      sq += g[d] * opmath_t(vq[d]);
      gq[d] += w * g[d];
    }
    s[q] += sq;
  }
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
            const scalar_t* v[4];
            opmath_t* gv[4];
            opmath_t wq[4];
            for (int q = 0; q < 4; ++q) {
              v[q] = t.idx[q] >= 0 ? img_g + t.idx[q] : zeros.data();
              gv[q] = t.idx[q] >= 0 ? gimg_g + t.idx[q] : sink.data();
              wq[q] = t.coef[q] * m;
            }
            // Dot products of grad_output with the four corner values give the mask and location
            // gradients at once.
            opmath_t s[4] = {0, 0, 0, 0};
            int64_t c0 = 0;
            for (; c0 + 16 <= D; c0 += 16) scatter_block<16>(v, gv, wq, go.data(), c0, 16, s);
            if (c0 + 8 <= D) {
              scatter_block<8>(v, gv, wq, go.data(), c0, 8, s);
              c0 += 8;
            }
            if (c0 < D) scatter_block<0>(v, gv, wq, go.data(), c0, D - c0, s);
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
