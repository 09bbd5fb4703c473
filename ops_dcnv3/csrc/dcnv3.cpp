// Operator schema of ops_dcnv3 (defined once here; backends register kernels with
// TORCH_LIBRARY_IMPL), the argument checks and launcher set-up every backend shares, and the Python
// module stub. The module is built against the limited Python API:
// it holds no functions, importing it only runs the static registrations.
#include <Python.h>
// (Python.h first, as it asks)
#include <ATen/OpMathType.h>
#include <torch/library.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <limits>
#include <string>

#include "dcnv3.h"

namespace ops_dcnv3 {

Geometry check_and_geometry(const at::Tensor& input, const at::Tensor& offset, const at::Tensor& mask,
                            int64_t kernel_h, int64_t kernel_w, int64_t stride_h, int64_t stride_w,
                            int64_t pad_h, int64_t pad_w, int64_t dilation_h, int64_t dilation_w,
                            int64_t group, int64_t group_channels, double offset_scale,
                            int64_t remove_center) {
  TORCH_CHECK(input.dim() == 4, "dcnv3: input must be (N, H, W, C), got ", input.sizes());
  TORCH_CHECK(offset.dim() == 4, "dcnv3: offset must be (N, Ho, Wo, G*P*2), got ", offset.sizes());
  TORCH_CHECK(mask.dim() == 4, "dcnv3: mask must be (N, Ho, Wo, G*P), got ", mask.sizes());
  TORCH_CHECK(kernel_h > 0 && kernel_w > 0 && stride_h > 0 && stride_w > 0 && dilation_h > 0 &&
                  dilation_w > 0 && group > 0 && group_channels > 0,
              "dcnv3: kernel, stride, dilation, group and group_channels must be positive");
  TORCH_CHECK(pad_h >= 0 && pad_w >= 0, "dcnv3: pad must be >= 0");
  TORCH_CHECK(!remove_center || (kernel_h % 2 == 1 && kernel_w % 2 == 1),
              "dcnv3: remove_center needs an odd kernel");
  TORCH_CHECK(offset.scalar_type() == input.scalar_type() && mask.scalar_type() == input.scalar_type(),
              "dcnv3: input, offset and mask must share a dtype, got ", input.scalar_type(), ", ",
              offset.scalar_type(), ", ", mask.scalar_type());
  TORCH_CHECK(offset.device() == input.device() && mask.device() == input.device(),
              "dcnv3: input, offset and mask must be on one device");
  Geometry g;
  g.n = input.size(0);
  g.h = input.size(1);
  g.w = input.size(2);
  g.kernel_h = kernel_h;
  g.kernel_w = kernel_w;
  g.stride_h = stride_h;
  g.stride_w = stride_w;
  g.pad_h = pad_h;
  g.pad_w = pad_w;
  g.dilation_h = dilation_h;
  g.dilation_w = dilation_w;
  g.group = group;
  g.group_channels = group_channels;
  g.offset_scale = offset_scale;
  g.remove_center = remove_center != 0;
  g.points = kernel_h * kernel_w - (g.remove_center ? 1 : 0);
  g.ho = (g.h + 2 * pad_h - (dilation_h * (kernel_h - 1) + 1)) / stride_h + 1;
  g.wo = (g.w + 2 * pad_w - (dilation_w * (kernel_w - 1) + 1)) / stride_w + 1;
  TORCH_CHECK(g.ho > 0 && g.wo > 0, "dcnv3: input ", input.sizes(), " is smaller than the kernel");
  TORCH_CHECK(input.size(3) == group * group_channels, "dcnv3: input has ", input.size(3),
              " channels, expected group*group_channels = ", group * group_channels);
  TORCH_CHECK(offset.size(0) == g.n && offset.size(1) == g.ho && offset.size(2) == g.wo &&
                  offset.size(3) == group * g.points * 2,
              "dcnv3: offset must be (", g.n, ", ", g.ho, ", ", g.wo, ", ", group * g.points * 2,
              "), got ", offset.sizes());
  TORCH_CHECK(mask.size(0) == g.n && mask.size(1) == g.ho && mask.size(2) == g.wo &&
                  mask.size(3) == group * g.points,
              "dcnv3: mask must be (", g.n, ", ", g.ho, ", ", g.wo, ", ", group * g.points,
              "), got ", mask.sizes());
  return g;
}

ForwardArgs prepare_forward(const Geometry& g, const at::Tensor& input, const at::Tensor& offset,
                            const at::Tensor& mask) {
  ForwardArgs a{input.contiguous(), offset.contiguous(), mask.contiguous(), {}};
  a.output = at::empty({g.n, g.ho, g.wo, g.channels()}, a.input.options());
  return a;
}

BackwardArgs prepare_backward(const Geometry& g, const at::Tensor& input, const at::Tensor& offset,
                              const at::Tensor& mask, const at::Tensor& grad_output) {
  TORCH_CHECK(grad_output.sizes() == at::IntArrayRef({g.n, g.ho, g.wo, g.channels()}),
              "dcnv3_backward: grad_output must be (", g.n, ", ", g.ho, ", ", g.wo, ", ",
              g.channels(), "), got ", grad_output.sizes());
  BackwardArgs a;
  a.input = input.contiguous();
  a.offset = offset.contiguous();
  a.mask = mask.contiguous();
  a.grad_output = grad_output.to(a.input.scalar_type()).contiguous();
  a.grad_input = at::zeros(a.input.sizes(),
                           a.input.options().dtype(at::toOpMathType(a.input.scalar_type())));
  a.grad_offset = at::empty(a.offset.sizes(), a.offset.options());
  a.grad_mask = at::empty(a.mask.sizes(), a.mask.options());
  return a;
}

LaunchConfig launch_config(const Geometry& g, std::initializer_list<const at::Tensor*> tensors,
                           std::initializer_list<const at::Tensor*> vector_accessed) {
  LaunchConfig cfg{1, true};
  // DCNV3_INDEX_BITS=64 forces 64-bit index arithmetic, so tests can run that form on small tensors.
  const char* bits = std::getenv("DCNV3_INDEX_BITS");
  if (bits != nullptr && std::string(bits) == "64") cfg.index32 = false;
  for (const at::Tensor* t : tensors) {
    cfg.index32 = cfg.index32 && t->numel() < std::numeric_limits<int32_t>::max();
  }
  // Tensors of 2**31 elements or more take the scalar layout: it keeps the number of compiled
  // kernels down, and at that size the kernels are bound by memory, not by instruction count.
  if (vector_accessed.size() == 0 || !cfg.index32) return cfg;
  const int64_t elem = (*vector_accessed.begin())->element_size();
  cfg.cpl = static_cast<int>(std::min<int64_t>(8, 16 / elem));
  const auto aligned = [&](int cpl) {
    if (g.group_channels % cpl != 0) return false;
    for (const at::Tensor* t : vector_accessed) {
      if (reinterpret_cast<uintptr_t>(t->const_data_ptr()) % (cpl * t->element_size()) != 0) {
        return false;
      }
    }
    return true;
  };
  while (cfg.cpl > 1 && !aligned(cfg.cpl)) cfg.cpl /= 2;
  return cfg;
}

}  // namespace ops_dcnv3

TORCH_LIBRARY(ops_dcnv3, m) {
  m.def(
      "dcnv3_forward(Tensor input, Tensor offset, Tensor mask, int kernel_h, int kernel_w, "
      "int stride_h, int stride_w, int pad_h, int pad_w, int dilation_h, int dilation_w, "
      "int group, int group_channels, float offset_scale, int remove_center) -> Tensor");
  m.def(
      "dcnv3_backward(Tensor input, Tensor offset, Tensor mask, Tensor grad_output, int kernel_h, "
      "int kernel_w, int stride_h, int stride_w, int pad_h, int pad_w, int dilation_h, "
      "int dilation_w, int group, int group_channels, float offset_scale, int remove_center) "
      "-> (Tensor, Tensor, Tensor)");
  // The CUDA kernels' per-element arithmetic run on the host (a CPU-only test path, same arguments).
  m.def(
      "dcnv3_device_math_forward(Tensor input, Tensor offset, Tensor mask, int kernel_h, "
      "int kernel_w, int stride_h, int stride_w, int pad_h, int pad_w, int dilation_h, "
      "int dilation_w, int group, int group_channels, float offset_scale, int remove_center) "
      "-> Tensor");
  m.def(
      "dcnv3_device_math_backward(Tensor input, Tensor offset, Tensor mask, Tensor grad_output, "
      "int kernel_h, int kernel_w, int stride_h, int stride_w, int pad_h, int pad_w, "
      "int dilation_h, int dilation_w, int group, int group_channels, float offset_scale, "
      "int remove_center) -> (Tensor, Tensor, Tensor)");
}

extern "C" {
// A module without methods: `import ops_dcnv3._C` loads the library and its registrations.
PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {
      PyModuleDef_HEAD_INIT, "_C", "DCNv3 operator kernels (torch.ops.ops_dcnv3)", -1, nullptr,
  };
  return PyModule_Create(&module_def);
}
}
