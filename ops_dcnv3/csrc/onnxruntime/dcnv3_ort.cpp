// ONNX Runtime custom-op library: the `DCNv3` node of the `ops_dcnv3` domain (version 1), as
// written by `ops_dcnv3.onnx` for `--dcnv3 custom` exports, on the CPU execution provider.
//
// The arithmetic is the CPU kernel of ops_dcnv3._C itself: cpu/dcnv3_cpu_dispatch.inc builds
// cpu/dcnv3_cpu_kernel.h here as it does in dcnv3_cpu.cpp (baseline and AVX2+FMA builds, picked at run
// time; DCNV3_CPU_ISA=baseline forces the first). Two names it
// uses come from a local `at` namespace instead of ATen: `opmath_type` (float32 accumulates in
// float32) and `parallel_for`, which runs on the session's intra-op thread pool
// (KernelContext_ParallelFor), so `intra_op_num_threads` governs the kernel like every other node.
// torch's headers are needed for the shared Geometry (dcnv3.h) at compile time only: the library
// links nothing of torch and loads into any ONNX Runtime >= 1.17 (C API version 17+).
//
// Build: tools/deploy/build_ort_ops.sh (`make deploy-ortlib`). Load:
//   so = onnxruntime.SessionOptions(); so.register_custom_ops_library(path)
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>
#undef ORT_API_MANUAL_INIT

#include <ATen/OpMathType.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "dcnv3.h"

#include "cpu/dcnv3_cpu_isa.h"

namespace dcnv3_ort {

using ops_dcnv3::Geometry;

// The context of the kernel call running on this thread, for parallel_for below.
thread_local const OrtKernelContext* tls_context = nullptr;

namespace at {

template <typename T>
using opmath_type = ::at::opmath_type<T>;

// ATen's contract: f(chunk_begin, chunk_end) over [begin, end) in chunks of at least `grain`.
template <typename F>
void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& f) {
  const int64_t n = end - begin;
  if (n <= 0) return;
  grain = std::max<int64_t>(grain, 1);
  // Enough chunks to balance a few threads; each chunk sets up its own scratch buffers once.
  const int64_t chunks = std::min<int64_t>((n + grain - 1) / grain, 64);
  if (chunks <= 1 || tls_context == nullptr) {
    f(begin, end);
    return;
  }
  struct Job {
    const F* f;
    int64_t begin, n, chunks;
  } job{&f, begin, n, chunks};
  auto run = [](void* data, size_t i) {
    const Job& j = *static_cast<const Job*>(data);
    const int64_t b = j.begin + j.n * static_cast<int64_t>(i) / j.chunks;
    const int64_t e = j.begin + j.n * (static_cast<int64_t>(i) + 1) / j.chunks;
    if (b < e) (*j.f)(b, e);
  };
  Ort::ThrowOnError(Ort::GetApi().KernelContext_ParallelFor(
      tls_context, run, static_cast<size_t>(chunks), 0, &job));
}

}  // namespace at

#include "cpu/dcnv3_cpu_dispatch.inc"

int64_t out_size(int64_t size, int64_t kernel, int64_t stride, int64_t pad, int64_t dilation) {
  return (size + 2 * pad - (dilation * (kernel - 1) + 1)) / stride + 1;
}

[[noreturn]] void fail(const std::string& what) {
  ORT_CXX_API_THROW("DCNv3: " + what, ORT_INVALID_ARGUMENT);
}

std::string shape_str(const std::vector<int64_t>& s) {
  std::string out = "(";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + ")";
}

struct DCNv3Kernel {
  Geometry attrs{};  // the attributes; sizes are filled in per call

  explicit DCNv3Kernel(const OrtKernelInfo* info) {
    Ort::ConstKernelInfo ki(info);
    auto i64 = [&](const char* name) { return ki.GetAttribute<int64_t>(name); };
    attrs.kernel_h = i64("kernel_h");
    attrs.kernel_w = i64("kernel_w");
    attrs.stride_h = i64("stride_h");
    attrs.stride_w = i64("stride_w");
    attrs.pad_h = i64("pad_h");
    attrs.pad_w = i64("pad_w");
    attrs.dilation_h = i64("dilation_h");
    attrs.dilation_w = i64("dilation_w");
    attrs.group = i64("group");
    attrs.group_channels = i64("group_channels");
    attrs.remove_center = i64("remove_center") != 0;
    attrs.offset_scale = ki.GetAttribute<float>("offset_scale");
    if (attrs.kernel_h <= 0 || attrs.kernel_w <= 0 || attrs.stride_h <= 0 || attrs.stride_w <= 0 ||
        attrs.dilation_h <= 0 || attrs.dilation_w <= 0 || attrs.group <= 0 ||
        attrs.group_channels <= 0 || attrs.pad_h < 0 || attrs.pad_w < 0) {
      fail("kernel, stride, dilation, group and group_channels must be positive and pad >= 0");
    }
    if (attrs.remove_center && (attrs.kernel_h % 2 == 0 || attrs.kernel_w % 2 == 0)) {
      fail("remove_center needs an odd kernel");
    }
    attrs.points = attrs.kernel_h * attrs.kernel_w - (attrs.remove_center ? 1 : 0);
  }

  // Errors (bad shapes, a failing thread pool) come back to ONNX Runtime as statuses.
  OrtStatusPtr ComputeV2(OrtKernelContext* context) {
    try {
      Compute(context);
    } catch (const Ort::Exception& e) {
      tls_context = nullptr;
      return Ort::GetApi().CreateStatus(e.GetOrtErrorCode(), e.what());
    } catch (const std::exception& e) {
      tls_context = nullptr;
      return Ort::GetApi().CreateStatus(ORT_FAIL, e.what());
    }
    return nullptr;
  }

  void Compute(OrtKernelContext* context) {
    Ort::KernelContext ctx(context);
    Ort::ConstValue input = ctx.GetInput(0), offset = ctx.GetInput(1), mask = ctx.GetInput(2);
    const std::vector<int64_t> in = input.GetTensorTypeAndShapeInfo().GetShape();
    const std::vector<int64_t> off = offset.GetTensorTypeAndShapeInfo().GetShape();
    const std::vector<int64_t> msk = mask.GetTensorTypeAndShapeInfo().GetShape();
    if (in.size() != 4) fail("input must be (N, H, W, C), got " + shape_str(in));
    Geometry g = attrs;
    g.n = in[0];
    g.h = in[1];
    g.w = in[2];
    g.ho = out_size(g.h, g.kernel_h, g.stride_h, g.pad_h, g.dilation_h);
    g.wo = out_size(g.w, g.kernel_w, g.stride_w, g.pad_w, g.dilation_w);
    if (g.ho <= 0 || g.wo <= 0) fail("input " + shape_str(in) + " is smaller than the kernel");
    if (in[3] != g.channels()) {
      fail("input has " + std::to_string(in[3]) + " channels, expected group*group_channels = " +
           std::to_string(g.channels()));
    }
    const std::vector<int64_t> want_off{g.n, g.ho, g.wo, g.group * g.points * 2};
    const std::vector<int64_t> want_msk{g.n, g.ho, g.wo, g.group * g.points};
    if (off != want_off) fail("offset must be " + shape_str(want_off) + ", got " + shape_str(off));
    if (msk != want_msk) fail("mask must be " + shape_str(want_msk) + ", got " + shape_str(msk));
    Ort::UnownedValue output = ctx.GetOutput(0, {g.n, g.ho, g.wo, g.channels()});
    if (g.n * g.ho * g.wo * g.channels() == 0) return;
    tls_context = context;
    forward_kernel<float>(input.GetTensorData<float>(), offset.GetTensorData<float>(),
            mask.GetTensorData<float>(), output.GetTensorMutableData<float>(), g);
    tls_context = nullptr;
  }
};

struct DCNv3Op : Ort::CustomOpBase<DCNv3Op, DCNv3Kernel, /*WithStatus=*/true> {
  OrtStatusPtr CreateKernelV2(const OrtApi& api, const OrtKernelInfo* info, void** kernel) const {
    try {
      *kernel = new DCNv3Kernel(info);
    } catch (const Ort::Exception& e) {
      return api.CreateStatus(e.GetOrtErrorCode(), e.what());
    }
    return nullptr;
  }
  const char* GetName() const { return "DCNv3"; }
  const char* GetExecutionProviderType() const { return "CPUExecutionProvider"; }
  size_t GetInputTypeCount() const { return 3; }
  ONNXTensorElementDataType GetInputType(size_t /*index*/) const {
    return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  }
  size_t GetOutputTypeCount() const { return 1; }
  ONNXTensorElementDataType GetOutputType(size_t /*index*/) const {
    return ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  }
};

// Sessions keep pointers to the op and its domain: both live as long as the library.
const DCNv3Op kDCNv3Op;
std::mutex domains_mutex;
std::vector<Ort::CustomOpDomain> domains;

}  // namespace dcnv3_ort

extern "C" __attribute__((visibility("default"))) OrtStatus* ORT_API_CALL
RegisterCustomOps(OrtSessionOptions* options, const OrtApiBase* api_base) {
  // Version 17 has everything used here (KernelContext_ParallelFor), so newer runtimes load it.
  const OrtApi* api = api_base->GetApi(17);
  if (api == nullptr) {
    return api_base->GetApi(1)->CreateStatus(
        ORT_FAIL, "the ops_dcnv3 custom-op library needs ONNX Runtime >= 1.17");
  }
  Ort::InitApi(api);
  try {
    Ort::CustomOpDomain domain("ops_dcnv3");
    domain.Add(&dcnv3_ort::kDCNv3Op);
    Ort::UnownedSessionOptions(options).Add(domain);
    std::lock_guard<std::mutex> lock(dcnv3_ort::domains_mutex);
    dcnv3_ort::domains.push_back(std::move(domain));
  } catch (const Ort::Exception& e) {
    return api->CreateStatus(e.GetOrtErrorCode(), e.what());
  } catch (const std::exception& e) {
    return api->CreateStatus(ORT_FAIL, e.what());
  }
  return nullptr;
}
