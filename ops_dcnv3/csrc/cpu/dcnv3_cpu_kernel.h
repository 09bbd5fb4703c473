// DCNv3 CPU kernel bodies. Included by dcnv3_cpu.cpp once per instruction set (inside a namespace,
// e.g. under `#pragma GCC target("avx2,fma")`), so this file has no includes and no include guard;
// DCNV3_KERNEL_AVX2 says whether AVX2 intrinsics may be used.
//
// Both directions work position by position. The sampling set-up of all G*P points of a position
// (location, floor, bilinear weights, corner indices, bounds) is one branch-free loop over the
// points in structure-of-arrays form, so the compiler vectorises it across points: at
// group_channels 16 this set-up, done point by point with branches, used to cost more than the
// channel arithmetic itself. The channel loops then run over register blocks of 16/8 channels of
// compile-time length. Corners outside the image point at a zero row (and, in the backward, a
// sink), so every point does the same work and no bound is tested in the channel loops.
//
// Forward: parallel over output positions; each output element is written by one thread.
// Backward: parallel over (image, band of output rows). grad_input is accumulated without atomics:
// a band adds directly into the input rows it owns (the rows under its outputs) and into a private
// buffer for rows owned by other bands (sampling near a band's edge, or far offsets); the private
// rows are added afterwards in band order. The bands depend on the shape only, never on the thread
// count, so the sums are formed in the same order with any number of threads.

// Sampling set-up of `count` consecutive points of one output position, as arrays over the points.
template <typename opmath_t>
struct Samples {
  explicit Samples(int64_t count)
      : f(static_cast<size_t>(11 * count)), i(static_cast<size_t>(6 * count)) {
    for (int q = 0; q < 4; ++q) {
      coef[q] = f.data() + q * count;
      weight[q] = f.data() + (7 + q) * count;
      corner[q] = i.data() + q * count;
    }
    frac_x = f.data() + 4 * count;
    frac_y = f.data() + 5 * count;
    mask = f.data() + 6 * count;
    row = i.data() + 4 * count;
    inside = i.data() + 5 * count;
  }
  std::vector<opmath_t> f;
  std::vector<int32_t> i;
  opmath_t* coef[4];    // bilinear weights of the corners (y0,x0), (y0,x1), (y1,x0), (y1,x1)
  opmath_t* weight[4];  // coef * mask
  int32_t* corner[4];   // pixel index y*W + x of each corner; -1 for a corner outside the image
  opmath_t* frac_x;     // fractional parts of the location, for the location gradient
  opmath_t* frac_y;
  opmath_t* mask;       // the point's modulation; 0 where nothing is sampled
  int32_t* row;         // y0, the row of corners 0 and 1
  int32_t* inside;      // 0 where the location lies outside (-1, size) or is not finite
};

// Kernel taps of the G*P points of a position relative to the kernel's centre, point k = grp*P + p
// in the published order p = i*kernel_h + j (centre skipped under remove_center).
template <typename opmath_t>
void point_taps(const Geometry& g, std::vector<opmath_t>& tap_x, std::vector<opmath_t>& tap_y) {
  tap_x.clear();
  tap_y.clear();
  const int64_t ci = g.kernel_w / 2, cj = g.kernel_h / 2;
  for (int64_t grp = 0; grp < g.group; ++grp) {
    for (int64_t i = 0; i < g.kernel_w; ++i) {
      for (int64_t j = 0; j < g.kernel_h; ++j) {
        if (g.remove_center && i == ci && j == cj) continue;
        tap_x.push_back(opmath_t(i * g.dilation_w - g.center_x()));
        tap_y.push_back(opmath_t(j * g.dilation_h - g.center_y()));
      }
    }
  }
}

// Fills `s` for points [0, count) of the position whose window centre is (base_x, base_y):
//   loc = base + (tap + offset) * offset_scale;
// a location outside (-1, size) on either axis, NaN and inf included (they fail the comparisons),
// samples nothing.
template <typename opmath_t>
inline void sample_points(const opmath_t* __restrict off, const opmath_t* __restrict msk,
                          const opmath_t* __restrict tap_x, const opmath_t* __restrict tap_y,
                          opmath_t base_x, opmath_t base_y, opmath_t scale, int32_t h, int32_t w,
                          int64_t count, Samples<opmath_t>& s) {
  opmath_t* __restrict c0 = s.coef[0];
  opmath_t* __restrict c1 = s.coef[1];
  opmath_t* __restrict c2 = s.coef[2];
  opmath_t* __restrict c3 = s.coef[3];
  opmath_t* __restrict w0 = s.weight[0];
  opmath_t* __restrict w1 = s.weight[1];
  opmath_t* __restrict w2 = s.weight[2];
  opmath_t* __restrict w3 = s.weight[3];
  int32_t* __restrict i0 = s.corner[0];
  int32_t* __restrict i1 = s.corner[1];
  int32_t* __restrict i2 = s.corner[2];
  int32_t* __restrict i3 = s.corner[3];
  opmath_t* __restrict fx = s.frac_x;
  opmath_t* __restrict fy = s.frac_y;
  opmath_t* __restrict m = s.mask;
  int32_t* __restrict rows = s.row;
  int32_t* __restrict in = s.inside;
  const opmath_t wf = opmath_t(w), hf = opmath_t(h);
#pragma omp simd
  for (int64_t k = 0; k < count; ++k) {
    opmath_t x = base_x + (tap_x[k] + off[2 * k]) * scale;
    opmath_t y = base_y + (tap_y[k] + off[2 * k + 1]) * scale;
    const bool ok = (x > opmath_t(-1)) & (y > opmath_t(-1)) & (x < wf) & (y < hf);
    // Clamped into [-1, size] (NaN goes to -1) so that the indices below are always formed from
    // finite values; `ok` discards them where the location was outside. Written as compares and
    // selects, and floor() as a corrected truncation, because std::floor and selects on `ok` keep
    // GCC from vectorising the loop.
    x = x > opmath_t(-1) ? x : opmath_t(-1);
    x = x < wf ? x : wf;
    y = y > opmath_t(-1) ? y : opmath_t(-1);
    y = y < hf ? y : hf;
    const int32_t xt = static_cast<int32_t>(x), yt = static_cast<int32_t>(y);
    const int32_t x0 = xt - (opmath_t(xt) > x), y0 = yt - (opmath_t(yt) > y);
    const opmath_t x0f = opmath_t(x0), y0f = opmath_t(y0);
    const opmath_t ax = x - x0f, ay = y - y0f;
    const opmath_t bx = opmath_t(1) - ax, by = opmath_t(1) - ay;
    const bool vx0 = x0 >= 0, vx1 = x0 + 1 < w, vy0 = y0 >= 0, vy1 = y0 + 1 < h;
    const int32_t pix = y0 * w + x0;
    i0[k] = (ok & vy0 & vx0) ? pix : -1;
    i1[k] = (ok & vy0 & vx1) ? pix + 1 : -1;
    i2[k] = (ok & vy1 & vx0) ? pix + w : -1;
    i3[k] = (ok & vy1 & vx1) ? pix + w + 1 : -1;
    const opmath_t k0 = by * bx, k1 = by * ax, k2 = ay * bx, k3 = ay * ax;
    c0[k] = k0;
    c1[k] = k1;
    c2[k] = k2;
    c3[k] = k3;
    fx[k] = ax;
    fy[k] = ay;
    const opmath_t mk = msk[k];  // read unconditionally: a masked load is slow on some CPUs
    const opmath_t mm = ok ? mk : opmath_t(0);
    m[k] = mm;
    w0[k] = k0 * mm;
    w1[k] = k1 * mm;
    w2[k] = k2 * mm;
    w3[k] = k3 * mm;
    rows[k] = y0;
    in[k] = ok;
  }
}

// The offsets and mask of a position in opmath: the tensors themselves for float/double, a
// converted copy for the half types.
template <typename scalar_t, typename opmath_t>
struct PositionInputs {
  explicit PositionInputs(int64_t count) {
    if constexpr (!std::is_same_v<scalar_t, opmath_t>) buf.resize(static_cast<size_t>(3 * count));
  }
  void load(const scalar_t* off, const scalar_t* msk, int64_t count) {
    if constexpr (std::is_same_v<scalar_t, opmath_t>) {
      offset = off;
      mask = msk;
    } else {
      opmath_t* o = buf.data();
      for (int64_t k = 0; k < 2 * count; ++k) o[k] = static_cast<opmath_t>(off[k]);
      for (int64_t k = 0; k < count; ++k) o[2 * count + k] = static_cast<opmath_t>(msk[k]);
      offset = o;
      mask = o + 2 * count;
    }
  }
  std::vector<opmath_t> buf;
  const opmath_t* offset = nullptr;
  const opmath_t* mask = nullptr;
};

// Everything a thread needs to set up the points of one position after another.
template <typename scalar_t>
struct PointSampler {
  using opmath_t = at::opmath_type<scalar_t>;
  PointSampler(const Geometry& g, const std::vector<opmath_t>& tap_x,
               const std::vector<opmath_t>& tap_y)
      : g(g), count(g.group * g.points), tap_x(tap_x), tap_y(tap_y), in(count), s(count) {}
  // Sets up all points of output position pos = (n, ho, wo).
  const Samples<opmath_t>& operator()(const scalar_t* offset, const scalar_t* mask, int64_t pos,
                                      int64_t ho, int64_t wo) {
    in.load(offset + pos * count * 2, mask + pos * count, count);
    sample_points(in.offset, in.mask, tap_x.data(), tap_y.data(),
                  opmath_t(wo * g.stride_w - g.pad_w + g.center_x()),
                  opmath_t(ho * g.stride_h - g.pad_h + g.center_y()),
                  static_cast<opmath_t>(g.offset_scale), static_cast<int32_t>(g.h),
                  static_cast<int32_t>(g.w), count, s);
    return s;
  }
  const Geometry& g;
  const int64_t count;
  const std::vector<opmath_t>& tap_x;
  const std::vector<opmath_t>& tap_y;
  PositionInputs<scalar_t, opmath_t> in;
  Samples<opmath_t> s;
};

// Calls fn(std::integral_constant<int, LEN>{}, c0, len) over the channels [0, D) in blocks of 16,
// then 8, then the rest (LEN 0: a run-time length), so the block loops have compile-time lengths.
template <typename Fn>
inline void for_channel_blocks(int64_t D, Fn&& fn) {
  int64_t c0 = 0;
  for (; c0 + 16 <= D; c0 += 16) fn(std::integral_constant<int, 16>{}, c0, int64_t(16));
  if (c0 + 8 <= D) {
    fn(std::integral_constant<int, 8>{}, c0, int64_t(8));
    c0 += 8;
  }
  if (c0 < D) fn(std::integral_constant<int, 0>{}, c0, D - c0);
}

// Addresses of the image rows that the corners of `count` points read, as integers (one
// vectorisable loop per corner): pixel * C + the point's group offset, or the zero row for a corner
// outside the image. The channel loops then only load an address per corner.
template <typename opmath_t>
inline void corner_rows(const Samples<opmath_t>& s, const int64_t* __restrict group_offset,
                        int64_t count, std::intptr_t image, std::intptr_t zero_row,
                        int32_t channels, int64_t elem_size, std::intptr_t* const* rows) {
  for (int q = 0; q < 4; ++q) {
    const int32_t* __restrict c = s.corner[q];
    std::intptr_t* __restrict r = rows[q];
#pragma omp simd
    for (int64_t k = 0; k < count; ++k) {
      const int64_t element = int64_t(c[k]) * int64_t(channels) + group_offset[k];
      r[k] = c[k] >= 0 ? image + std::intptr_t(element * elem_size) : zero_row;
    }
  }
}

// out[c0:c0+len] = sum over the points [k0, k0 + npoints) and their four corners of
// weight * image row; LEN > 0 fixes the length at compile time.
template <int LEN, typename scalar_t, typename opmath_t>
inline void gather_block(const Samples<opmath_t>& s, const std::intptr_t* const* rows, int64_t k0,
                         int64_t npoints, int64_t c0, int64_t len, scalar_t* out) {
  constexpr int kMax = LEN > 0 ? LEN : 16;
  const int64_t n = LEN > 0 ? LEN : len;
  opmath_t acc[kMax] = {};
  for (int64_t k = k0; k < k0 + npoints; ++k) {
    const scalar_t* v0 = reinterpret_cast<const scalar_t*>(rows[0][k]) + c0;
    const scalar_t* v1 = reinterpret_cast<const scalar_t*>(rows[1][k]) + c0;
    const scalar_t* v2 = reinterpret_cast<const scalar_t*>(rows[2][k]) + c0;
    const scalar_t* v3 = reinterpret_cast<const scalar_t*>(rows[3][k]) + c0;
    const opmath_t w0 = s.weight[0][k], w1 = s.weight[1][k], w2 = s.weight[2][k],
                   w3 = s.weight[3][k];
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
  const int64_t C = g.channels(), D = g.group_channels, P = g.points, K = g.group * P;
  const int64_t positions = g.n * g.ho * g.wo;
  std::vector<opmath_t> tap_x, tap_y;
  point_taps(g, tap_x, tap_y);
  std::vector<int64_t> group_offset(K);
  for (int64_t k = 0; k < K; ++k) group_offset[k] = (k / P) * D;
  // A few thousand multiply-adds per task keep the scheduling overhead negligible.
  const int64_t grain = std::max<int64_t>(1, 4096 / std::max<int64_t>(1, K * D));
  at::parallel_for(0, positions, grain, [&](int64_t begin, int64_t end) {
    const std::vector<scalar_t> zeros(D, scalar_t(0));
    std::vector<std::intptr_t> row_buf(4 * K);
    std::intptr_t* rows[4] = {row_buf.data(), row_buf.data() + K, row_buf.data() + 2 * K,
                              row_buf.data() + 3 * K};
    PointSampler<scalar_t> sampler(g, tap_x, tap_y);
    for (int64_t pos = begin; pos < end; ++pos) {
      const int64_t wo = pos % g.wo, ho = (pos / g.wo) % g.ho, n = pos / (g.wo * g.ho);
      const Samples<opmath_t>& s = sampler(offset, mask, pos, ho, wo);
      corner_rows(s, group_offset.data(), K, reinterpret_cast<std::intptr_t>(input + n * g.h * g.w * C),
                  reinterpret_cast<std::intptr_t>(zeros.data()), static_cast<int32_t>(C),
                  sizeof(scalar_t), rows);
      for (int64_t grp = 0; grp < g.group; ++grp) {
        scalar_t* out = output + pos * C + grp * D;
        const int64_t k0 = grp * P;
        for_channel_blocks(D, [&](auto block, int64_t c0, int64_t len) {
          gather_block<decltype(block)::value>(s, rows, k0, P, c0, len, out);
        });
      }
    }
  });
}

// For one point and a block of channels: s[q] += <go, v_q>, grad_v_q += w_q * go.
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

// How the backward splits an image's output rows: enough (image, band) tasks for a many-core
// machine even at batch 1, but bands of at least kMinBandRows rows so that most samples land in
// rows the band owns. A function of the shape only (never of the thread count).
constexpr int64_t kMinBackwardTasks = 32;
constexpr int64_t kMinBandRows = 4;
inline int64_t backward_bands(const Geometry& g) {
  const int64_t want = (kMinBackwardTasks + g.n - 1) / g.n;
  return std::max<int64_t>(1, std::min(want, g.ho / kMinBandRows));
}

// Where one band's grad_input rows go: rows [own_begin, own_end) of the image straight into
// grad_input, every other row into a private row of the band's own (zeroed when first used and
// added to grad_input after all bands finished). Private rows are separate small allocations, so
// a band that spills a few rows costs a few rows, not an image.
template <typename opmath_t>
struct BandTarget {
  opmath_t* grad_image = nullptr;  // grad_input of the image
  int64_t own_begin = 0, own_end = 0;
  int64_t row_elems = 0;  // W * C
  std::vector<std::unique_ptr<opmath_t[]>> spill;  // per image row: the private row, or null
  // The address of pixel `pix` (in row `row`) in the buffer this band accumulates it in.
  opmath_t* at(int64_t row, int64_t pix, int64_t C) {
    if (row >= own_begin && row < own_end) return grad_image + pix * C;
    std::unique_ptr<opmath_t[]>& r = spill[row];
    if (!r) r.reset(new opmath_t[row_elems]());
    return r.get() + (pix - row * (row_elems / C)) * C;
  }
};

// The float form of one point over all D channels for D % 8 == 0, with AVX2: the four dot products
// stay in vector registers and are reduced together at the end (three horizontal adds), where the
// generic form reduces each one lane by lane.
#if DCNV3_KERNEL_AVX2
inline void scatter_point_avx2(const float* const* v, float* const* gv, const float* wq,
                               const float* go, int64_t D, float* dot) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  __m256 acc2 = _mm256_setzero_ps(), acc3 = _mm256_setzero_ps();
  const __m256 w0 = _mm256_set1_ps(wq[0]), w1 = _mm256_set1_ps(wq[1]);
  const __m256 w2 = _mm256_set1_ps(wq[2]), w3 = _mm256_set1_ps(wq[3]);
  for (int64_t d = 0; d < D; d += 8) {
    const __m256 g = _mm256_loadu_ps(go + d);
    acc0 = _mm256_fmadd_ps(g, _mm256_loadu_ps(v[0] + d), acc0);
    acc1 = _mm256_fmadd_ps(g, _mm256_loadu_ps(v[1] + d), acc1);
    acc2 = _mm256_fmadd_ps(g, _mm256_loadu_ps(v[2] + d), acc2);
    acc3 = _mm256_fmadd_ps(g, _mm256_loadu_ps(v[3] + d), acc3);
    _mm256_storeu_ps(gv[0] + d, _mm256_fmadd_ps(w0, g, _mm256_loadu_ps(gv[0] + d)));
    _mm256_storeu_ps(gv[1] + d, _mm256_fmadd_ps(w1, g, _mm256_loadu_ps(gv[1] + d)));
    _mm256_storeu_ps(gv[2] + d, _mm256_fmadd_ps(w2, g, _mm256_loadu_ps(gv[2] + d)));
    _mm256_storeu_ps(gv[3] + d, _mm256_fmadd_ps(w3, g, _mm256_loadu_ps(gv[3] + d)));
  }
  // [a0+a1, a2+a3, b0+b1, b2+b3 | a4+a5, ...] -> [a0..3, b0..3, c0..3, d0..3 | a4..7, ...]
  const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(acc0, acc1), _mm256_hadd_ps(acc2, acc3));
  _mm_storeu_ps(dot, _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1)));
}
#endif

// Offset and mask gradients of the `count` points of a position from their corner dot products
// (dots[q * count + k]), for all points in one vectorisable loop: d out / d mask = sum_q coef_q s_q;
// d out / d loc follows from the bilinear weights, d loc / d offset = offset_scale. A point that
// samples nothing has mask 0 and dot products 0, so its gradients come out 0.
template <typename scalar_t, typename opmath_t>
inline void point_gradients(const Samples<opmath_t>& s, const opmath_t* __restrict dots,
                            opmath_t scale, int64_t count, scalar_t* __restrict grad_offset,
                            scalar_t* __restrict grad_mask) {
  const opmath_t* __restrict d0 = dots;
  const opmath_t* __restrict d1 = dots + count;
  const opmath_t* __restrict d2 = dots + 2 * count;
  const opmath_t* __restrict d3 = dots + 3 * count;
  const opmath_t* __restrict c0 = s.coef[0];
  const opmath_t* __restrict c1 = s.coef[1];
  const opmath_t* __restrict c2 = s.coef[2];
  const opmath_t* __restrict c3 = s.coef[3];
  const opmath_t* __restrict fx = s.frac_x;
  const opmath_t* __restrict fy = s.frac_y;
  const opmath_t* __restrict m = s.mask;
#pragma omp simd
  for (int64_t k = 0; k < count; ++k) {
    const opmath_t ax = fx[k], ay = fy[k];
    const opmath_t bx = opmath_t(1) - ax, by = opmath_t(1) - ay;
    grad_mask[k] = static_cast<scalar_t>(c0[k] * d0[k] + c1[k] * d1[k] + c2[k] * d2[k] +
                                         c3[k] * d3[k]);
    grad_offset[2 * k] =
        static_cast<scalar_t>(scale * m[k] * (by * (d1[k] - d0[k]) + ay * (d3[k] - d2[k])));
    grad_offset[2 * k + 1] =
        static_cast<scalar_t>(scale * m[k] * (bx * (d2[k] - d0[k]) + ax * (d3[k] - d1[k])));
  }
}

template <typename scalar_t>
void backward_kernel(const scalar_t* __restrict input, const scalar_t* __restrict offset,
                     const scalar_t* __restrict mask, const scalar_t* __restrict grad_output,
                     at::opmath_type<scalar_t>* __restrict grad_input,
                     scalar_t* __restrict grad_offset, scalar_t* __restrict grad_mask,
                     const Geometry& g) {
  using opmath_t = at::opmath_type<scalar_t>;
  const int64_t C = g.channels(), D = g.group_channels, P = g.points, K = g.group * P;
  const int64_t image = g.h * g.w * C;
  const opmath_t scale = static_cast<opmath_t>(g.offset_scale);
  std::vector<opmath_t> tap_x, tap_y;
  point_taps(g, tap_x, tap_y);
  const int64_t bands = backward_bands(g);
  std::vector<BandTarget<opmath_t>> targets(g.n * bands);
  std::vector<int64_t> group_offset(K);
  for (int64_t k = 0; k < K; ++k) group_offset[k] = (k / P) * D;
  // Input rows a band owns: those under its output rows (any partition of the rows is correct).
  const auto row_boundary = [&](int64_t band) -> int64_t {
    if (band == 0) return 0;
    if (band == bands) return g.h;
    const int64_t r = band * g.ho / bands * g.stride_h - g.pad_h + g.center_y();
    return std::clamp<int64_t>(r, 0, g.h);
  };
  at::parallel_for(0, g.n * bands, 1, [&](int64_t begin, int64_t end) {
    std::vector<opmath_t> go(D);
    std::vector<opmath_t> sink(D);  // scatter target of corners outside the image
    std::vector<opmath_t> dots(4 * K);  // per corner and point: <grad_output, corner value>
    const std::vector<scalar_t> zeros(D, scalar_t(0));
    std::vector<std::intptr_t> row_buf(8 * K);  // corner addresses in the input and grad_input
    std::intptr_t* value_rows[4];
    std::intptr_t* grad_rows[4];
    for (int q = 0; q < 4; ++q) {
      value_rows[q] = row_buf.data() + q * K;
      grad_rows[q] = row_buf.data() + (4 + q) * K;
    }
    PointSampler<scalar_t> sampler(g, tap_x, tap_y);
    for (int64_t task = begin; task < end; ++task) {
      const int64_t n = task / bands, band = task % bands;
      BandTarget<opmath_t>& target = targets[task];
      target.grad_image = grad_input + n * image;
      target.own_begin = row_boundary(band);
      target.own_end = row_boundary(band + 1);
      target.row_elems = g.w * C;
      target.spill.resize(g.h);
      const int64_t ho_begin = band * g.ho / bands, ho_end = (band + 1) * g.ho / bands;
      for (int64_t ho = ho_begin; ho < ho_end; ++ho) {
        for (int64_t wo = 0; wo < g.wo; ++wo) {
          const int64_t pos = (n * g.ho + ho) * g.wo + wo;
          const Samples<opmath_t>& s = sampler(offset, mask, pos, ho, wo);
          corner_rows(s, group_offset.data(), K, reinterpret_cast<std::intptr_t>(input + n * image),
                      reinterpret_cast<std::intptr_t>(zeros.data()), static_cast<int32_t>(C),
                      sizeof(scalar_t), value_rows);
          corner_rows(s, group_offset.data(), K, reinterpret_cast<std::intptr_t>(target.grad_image),
                      reinterpret_cast<std::intptr_t>(sink.data()), static_cast<int32_t>(C),
                      sizeof(opmath_t), grad_rows);
          for (int64_t grp = 0; grp < g.group; ++grp) {
            const scalar_t* gout = grad_output + pos * C + grp * D;
            const opmath_t* go_g = go.data();
            if constexpr (std::is_same_v<scalar_t, opmath_t>) {
              go_g = gout;
            } else {
              for (int64_t d = 0; d < D; ++d) go[d] = static_cast<opmath_t>(gout[d]);
            }
            for (int64_t p = 0; p < P; ++p) {
              const int64_t k = grp * P + p;
              opmath_t dot[4] = {0, 0, 0, 0};
              if (s.inside[k]) {
                const scalar_t* v[4];
                opmath_t* gv[4];
                // Both rows of the point in the band's own rows (the common case): the addresses
                // from the vectorised pass; otherwise through the band's spill rows.
                const bool owned = s.row[k] >= target.own_begin && s.row[k] + 1 < target.own_end;
                for (int q = 0; q < 4; ++q) {
                  const int32_t c = s.corner[q][k];
                  v[q] = reinterpret_cast<const scalar_t*>(value_rows[q][k]);
                  if (owned) {
                    gv[q] = reinterpret_cast<opmath_t*>(grad_rows[q][k]);
                  } else {
                    const int64_t row = s.row[k] + (q >= 2 ? 1 : 0);
                    gv[q] = c >= 0 ? target.at(row, c, C) + grp * D : sink.data();
                  }
                }
                const opmath_t wq[4] = {s.weight[0][k], s.weight[1][k], s.weight[2][k],
                                        s.weight[3][k]};
                // Dot products of grad_output with the four corner values give the mask and
                // location gradients at once.
                bool done = false;
#if DCNV3_KERNEL_AVX2
                if constexpr (std::is_same_v<scalar_t, float>) {
                  if (D % 8 == 0) {
                    scatter_point_avx2(v, gv, wq, go_g, D, dot);
                    done = true;
                  }
                }
#endif
                if (!done) {
                  for_channel_blocks(D, [&](auto block, int64_t c0, int64_t len) {
                    scatter_block<decltype(block)::value>(v, gv, wq, go_g, c0, len, dot);
                  });
                }
              }
              for (int q = 0; q < 4; ++q) dots[q * K + k] = dot[q];
            }
          }
          point_gradients(s, dots.data(), scale, K, grad_offset + pos * K * 2, grad_mask + pos * K);
        }
      }
    }
  });
  if (bands == 1) return;
  // Private rows into grad_input, band after band in a fixed order; rows are independent.
  at::parallel_for(0, g.n * g.h, 1, [&](int64_t begin, int64_t end) {
    for (int64_t nr = begin; nr < end; ++nr) {
      const int64_t n = nr / g.h, row = nr % g.h;
      opmath_t* dst = grad_input + n * image + row * g.w * C;
      for (int64_t band = 0; band < bands; ++band) {
        const opmath_t* src = targets[n * bands + band].spill[row].get();
        if (src == nullptr) continue;
#pragma omp simd
        for (int64_t e = 0; e < g.w * C; ++e) dst[e] += src[e];
      }
    }
  });
}
