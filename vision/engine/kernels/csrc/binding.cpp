// Python entry points of the int8 weight-only linear: activation quantization, the GEMM on the
// ISA the caller picked (checked against cpuid here), and the chunk dequantizer of the dense path.
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include "vk.h"

namespace {

enum Isa : int64_t { kRef = 0, kAvx2 = 1, kAvxVnni = 2, kAvx512Vnni = 3 };

bool cpu_supports(int64_t isa) {
  __builtin_cpu_init();
  const bool avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  switch (isa) {
    case kRef:
      return true;
    case kAvx2:
      return avx2;
    case kAvxVnni:
      return avx2 && __builtin_cpu_supports("avxvnni");
    case kAvx512Vnni:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vnni");
    default:
      return false;
  }
}

vk::GemmFn gemm_for(int64_t isa) {
  switch (isa) {
    case kAvx2:
      return vk::gemm_avx2();
    case kAvxVnni:
      return vk::gemm_avxvnni();
    case kAvx512Vnni:
      return vk::gemm_avx512vnni();
    default:
      return vk::gemm_ref();
  }
}

int64_t round_up(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

// x: (m, k) fp32 contiguous. packed: (n_panels, kp * 16) uint8. wscale, bias: (n_panels * 16,)
// fp32 (bias may be empty). Returns (m, n) fp32.
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& packed, const torch::Tensor& wscale,
                     const torch::Tensor& bias, int64_t n, int64_t isa) {
  TORCH_CHECK(cpu_supports(isa), "this CPU cannot run kernel ISA ", isa);
  TORCH_CHECK(x.dim() == 2 && x.scalar_type() == torch::kFloat && x.is_contiguous(), "x: (m, k) fp32 contiguous");
  TORCH_CHECK(packed.dim() == 2 && packed.scalar_type() == torch::kUInt8 && packed.is_contiguous());
  const int64_t m = x.size(0), k = x.size(1), kp = round_up(k, vk::kBlock);
  const int64_t n_panels = packed.size(0);
  TORCH_CHECK(packed.size(1) == kp * vk::kPanel, "packed weight does not match k=", k);
  TORCH_CHECK(n <= n_panels * vk::kPanel && wscale.numel() == n_panels * vk::kPanel);
  TORCH_CHECK(bias.numel() == 0 || bias.numel() == n_panels * vk::kPanel);
  auto y = torch::empty({m, n}, x.options());
  if (m == 0 || n == 0) return y;
  const int64_t nblk = kp / vk::kBlock;
  auto xq = torch::empty({m, kp}, x.options().dtype(torch::kInt8));
  auto xs = torch::empty({m, nblk}, x.options());
  auto xc = torch::empty({m, nblk}, x.options().dtype(torch::kInt));
  const vk::QuantFn quant = isa == kAvx512Vnni ? vk::quant_avx512() : vk::quant_ref();
  const float* xp = x.data_ptr<float>();
  int8_t* xqp = xq.data_ptr<int8_t>();
  float* xsp = xs.data_ptr<float>();
  int32_t* xcp = xc.data_ptr<int32_t>();
  at::parallel_for(0, m, 16, [&](int64_t b, int64_t e) { quant(xp, k, k, kp, b, e, xqp, xsp, xcp); });
  vk::Args a{packed.data_ptr<uint8_t>(),
             wscale.data_ptr<float>(),
             bias.numel() ? bias.data_ptr<float>() : nullptr,
             xqp,
             xsp,
             xcp,
             y.data_ptr<float>(),
             m,
             n,
             kp,
             n};
  const vk::GemmFn gemm = gemm_for(isa);
  // Contiguous panel ranges per thread: each thread streams its own part of the weights.
  at::parallel_for(0, n_panels, 1, [&](int64_t b, int64_t e) { gemm(a, b, e); });
  return y;
}

// Rows [n0, n1) of the dequantized weight (w - 128) * wscale as `dtype`: one chunk of the dense
// path's weight, so a many-row call never holds a full float copy.
torch::Tensor dequant(const torch::Tensor& packed, const torch::Tensor& wscale, int64_t k, int64_t n0, int64_t n1,
                      torch::ScalarType dtype) {
  const int64_t kp = round_up(k, vk::kBlock);
  TORCH_CHECK(n0 % vk::kPanel == 0 && n1 > n0 && packed.size(1) == kp * vk::kPanel);
  auto out = torch::empty({n1 - n0, k}, torch::TensorOptions().dtype(torch::kFloat));
  const uint8_t* w = packed.data_ptr<uint8_t>();
  const float* ws = wscale.data_ptr<float>();
  float* o = out.data_ptr<float>();
  at::parallel_for(n0, n1, 16, [&](int64_t b, int64_t e) {
    for (int64_t col = b; col < e; ++col) {
      const uint8_t* panel = w + (col / vk::kPanel) * kp * vk::kPanel + (col % vk::kPanel) * 4;
      const float s = ws[col];
      float* orow = o + (col - n0) * k;
      for (int64_t kk = 0; kk < k; ++kk)
        orow[kk] = static_cast<float>(static_cast<int32_t>(panel[(kk / 4) * vk::kGroupBytes + kk % 4]) - 128) * s;
    }
  });
  return dtype == torch::kFloat ? out : out.to(dtype);
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("cpu_supports", &cpu_supports, "whether this CPU runs kernel ISA i (0 ref, 1 avx2, 2 avxvnni, 3 avx512vnni)");
  m.def("linear", &linear, "int8 weight-only linear, int8 activations per 32-block",
        py::call_guard<py::gil_scoped_release>());
  m.def("dequant", &dequant, "columns [n0, n1) of the weight, dequantized", py::call_guard<py::gil_scoped_release>());
  m.attr("BLOCK") = vk::kBlock;
  m.attr("PANEL") = vk::kPanel;
}
