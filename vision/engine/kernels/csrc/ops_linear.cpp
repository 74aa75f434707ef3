// The linears' operators (ops.h): the int8 and int4 weight-only linears (activation quantization,
// then the GEMM of the path the caller picked), the chunk dequantizer of the dense path, the bf16
// GEMV of few rows, and the int8 dot-product peak.
#include <ATen/Parallel.h>
#include <algorithm>
#include <vector>

#include "ops.h"
#include "vk.h"

namespace ops {

namespace {

vk::GemmFn gemm4_for(int64_t isa) {
  switch (isa) {
    case kAvx2:
      return vk::gemm4_avx2();
    case kAvxVnni:
      return vk::gemm4_avxvnni();
    case kAvx512Vnni:
      return vk::gemm4_avx512vnni();
    default:
      return vk::gemm4_ref();
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

// Quantize x's rows, then run `gemm` over the column panels (both formats share this). x: (m, k)
// fp32 or bf16; the result has x's dtype. bf16 activations are widened here (exact) and the fp32
// result rounded to bf16 here (round to nearest even, as Tensor.to does): the same numbers as
// casting in Python, without two more dispatched ops per call (a decode step makes 113 calls).
torch::Tensor run_linear(const torch::Tensor& x_in, const torch::Tensor& packed, const float* wscale,
                         const torch::Tensor& bias, int64_t n, int64_t isa, vk::GemmFn gemm) {
  const bool bf16 = x_in.scalar_type() == torch::kBFloat16;
  const torch::Tensor x = x_in.contiguous();  // no copy for a contiguous x
  const int64_t m = x.size(0), k = x.size(1), kp = round_up(k, vk::kBlock);
  const int64_t n_panels = packed.size(0);
  auto y = torch::empty({m, n}, x.options());
  if (m == 0 || n == 0) return y;
  // bf16 rows are widened into a plain buffer here and the tiles round the result into y (the
  // same bits as Tensor.to, without two dispatched ops and two tensors per call, nor an fp32 copy
  // of the output: at prefill sizes a fresh 50 MB buffer cost ~14 ms of page faults per call).
  torch::Tensor xwide;  // fp32 buffer (torch::empty: no zero fill) for bf16 calls
  const float* xp;
  if (bf16) {
    xwide = torch::empty({m, k}, x.options().dtype(torch::kFloat));
    float* xw = xwide.data_ptr<float>();
    const at::BFloat16* src = x.data_ptr<at::BFloat16>();
    at::parallel_for(0, m, 16, [&](int64_t b, int64_t e) {
      for (int64_t i = b * k; i < e * k; ++i) xw[i] = static_cast<float>(src[i]);
    });
    xp = xw;
  } else {
    xp = x.data_ptr<float>();
  }
  float* yp = bf16 ? nullptr : y.data_ptr<float>();
  const int64_t nblk = kp / vk::kBlock;
  auto xq = torch::empty({m, kp}, x.options().dtype(torch::kInt8));
  auto xs = torch::empty({m, nblk}, x.options().dtype(torch::kFloat));
  auto xc = torch::empty({m, nblk}, x.options().dtype(torch::kInt));
  const vk::QuantFn quant = isa == kAvx512Vnni ? vk::quant_avx512() : vk::quant_ref();
  int8_t* xqp = xq.data_ptr<int8_t>();
  float* xsp = xs.data_ptr<float>();
  int32_t* xcp = xc.data_ptr<int32_t>();
  at::parallel_for(0, m, 16, [&](int64_t b, int64_t e) { quant(xp, k, k, kp, b, e, xqp, xsp, xcp); });
  vk::Args a{packed.data_ptr<uint8_t>(),
             wscale,
             bias.numel() ? bias.data_ptr<float>() : nullptr,
             xqp,
             xsp,
             xcp,
             yp,
             m,
             n,
             kp,
             n,
             bf16 ? reinterpret_cast<uint16_t*>(y.data_ptr<at::BFloat16>()) : nullptr};
  // Contiguous panel ranges per thread: each thread streams its own part of the weights.
  at::parallel_for(0, n_panels, 1, [&](int64_t b, int64_t e) { gemm(a, b, e); });
  return y;
}

void check_common(const torch::Tensor& x, const torch::Tensor& packed, int64_t isa) {
  check_isa(isa);
  TORCH_CHECK(x.dim() == 2 && (x.scalar_type() == torch::kFloat || x.scalar_type() == torch::kBFloat16),
              "x: (m, k) fp32 or bf16");
  TORCH_CHECK(packed.dim() == 2 && packed.scalar_type() == torch::kUInt8 && packed.is_contiguous());
}

// Rows [n0, n1) of the dequantized weight (w - 128) * wscale as fp32 or bf16: one chunk of the
// dense path's weight, so a many-row call never holds a full float copy. Reads each panel once,
// in order, and writes 16 output rows side by side.
template <typename T>
void dequant_panels(const uint8_t* w, const float* ws, int64_t k, int64_t kp, int64_t n0, int64_t n1, T* o) {
  at::parallel_for(n0 / vk::kPanel, (n1 + vk::kPanel - 1) / vk::kPanel, 1, [&](int64_t pb, int64_t pe) {
    for (int64_t p = pb; p < pe; ++p) {
      const uint8_t* panel = w + p * kp * vk::kPanel;
      const int64_t cols = std::min<int64_t>(vk::kPanel, n1 - p * vk::kPanel);
      for (int64_t j = 0; j < cols; ++j) {
        const int64_t col = p * vk::kPanel + j;
        const float s = ws[col];
        T* orow = o + (col - n0) * k;
        const int64_t full = k / 4;  // whole k-groups, then the tail of a k that is not a multiple of 4
        for (int64_t g = 0; g < full; ++g) {
          const uint8_t* src = panel + g * vk::kGroupBytes + j * 4;
          for (int t = 0; t < 4; ++t)
            orow[g * 4 + t] = static_cast<T>(static_cast<float>(static_cast<int32_t>(src[t]) - 128) * s);
        }
        for (int64_t kk = full * 4; kk < k; ++kk) {
          const uint8_t v = panel[(kk / 4) * vk::kGroupBytes + j * 4 + kk % 4];
          orow[kk] = static_cast<T>(static_cast<float>(static_cast<int32_t>(v) - 128) * s);
        }
      }
    }
  });
}

}  // namespace

// x: (m, k) fp32 or bf16. packed: (n_panels, kp * 16) uint8. wscale, bias: (n_panels * 16,)
// fp32 (bias may be empty). Returns (m, n) in x's dtype.
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& packed, const torch::Tensor& wscale,
                     const torch::Tensor& bias, int64_t n, int64_t isa) {
  check_common(x, packed, isa);
  const int64_t kp = round_up(x.size(1), vk::kBlock), n_panels = packed.size(0);
  TORCH_CHECK(packed.size(1) == kp * vk::kPanel, "packed weight does not match k=", x.size(1));
  TORCH_CHECK(n <= n_panels * vk::kPanel && wscale.numel() == n_panels * vk::kPanel);
  TORCH_CHECK(bias.numel() == 0 || bias.numel() == n_panels * vk::kPanel);
  return run_linear(x, packed, wscale.data_ptr<float>(), bias, n, isa, gemm_for(isa));
}

// int4 group-wise (layout in vk.h: nibbles and scales in one stream). packed: (n_panels,
// kp/32 * 320) uint8, 4-byte aligned; bias: (n_panels * 16,) fp32 or empty. Returns (m, n) in x's dtype.
torch::Tensor linear4(const torch::Tensor& x, const torch::Tensor& packed, const torch::Tensor& bias, int64_t n,
                      int64_t isa) {
  check_common(x, packed, isa);
  const int64_t kp = round_up(x.size(1), vk::kBlock), n_panels = packed.size(0);
  TORCH_CHECK(packed.size(1) == kp / vk::kBlock * vk::kBlockBytes4, "packed int4 weight does not match k=",
              x.size(1));
  TORCH_CHECK(reinterpret_cast<uintptr_t>(packed.data_ptr<uint8_t>()) % 4 == 0, "packed int4: 4-byte aligned");
  TORCH_CHECK(n <= n_panels * vk::kPanel);
  TORCH_CHECK(bias.numel() == 0 || bias.numel() == n_panels * vk::kPanel);
  return run_linear(x, packed, nullptr, bias, n, isa, gemm4_for(isa));
}

// dequant_panels' rows [n0, n1) of an int8 weight of k columns, as fp32 or bf16.
torch::Tensor dequant(const torch::Tensor& packed, const torch::Tensor& wscale, int64_t k, int64_t n0, int64_t n1,
                      torch::ScalarType dtype) {
  const int64_t kp = round_up(k, vk::kBlock);
  TORCH_CHECK(n0 % vk::kPanel == 0 && n1 > n0 && packed.size(1) == kp * vk::kPanel);
  TORCH_CHECK(dtype == torch::kFloat || dtype == torch::kBFloat16, "dequant to fp32 or bf16");
  auto out = torch::empty({n1 - n0, k}, torch::TensorOptions().dtype(dtype));
  const uint8_t* w = packed.data_ptr<uint8_t>();
  const float* ws = wscale.data_ptr<float>();
  if (dtype == torch::kFloat) {
    dequant_panels(w, ws, k, kp, n0, n1, out.data_ptr<float>());
  } else {
    dequant_panels(w, ws, k, kp, n0, n1, out.data_ptr<at::BFloat16>());
  }
  return out;
}

// bf16 linear of few rows (decode) on AVX-512 BF16 (gemv_bf16.cpp): x (m, k) bf16, weight (n, k)
// bf16 as nn.Linear keeps it, bias (n,) bf16 or empty. Returns (m, n) bf16. Parallel over weight
// rows: each thread streams its own part of the weight.
torch::Tensor linear_bf16(const torch::Tensor& x_in, const torch::Tensor& w_in, const torch::Tensor& bias_in) {
  TORCH_CHECK(x_in.scalar_type() == torch::kBFloat16 && w_in.scalar_type() == torch::kBFloat16, "bf16 x and weight");
  TORCH_CHECK(x_in.dim() == 2 && w_in.dim() == 2 && x_in.size(1) == w_in.size(1), "x (m, k), weight (n, k)");
  const torch::Tensor x = x_in.contiguous(), w = w_in.contiguous();
  const int64_t m = x.size(0), k = x.size(1), n = w.size(0);
  const bool has_bias = bias_in.numel() > 0;
  TORCH_CHECK(!has_bias || (bias_in.scalar_type() == torch::kBFloat16 && bias_in.numel() == n), "bias: (n,) bf16");
  const torch::Tensor bias = has_bias ? bias_in.contiguous() : bias_in;
  auto y = torch::empty({m, n}, x.options());
  if (m == 0 || n == 0) return y;
  const vk::GemvArgs a{reinterpret_cast<const uint16_t*>(x.data_ptr<at::BFloat16>()),
                       reinterpret_cast<const uint16_t*>(w.data_ptr<at::BFloat16>()),
                       has_bias ? reinterpret_cast<const uint16_t*>(bias.data_ptr<at::BFloat16>()) : nullptr,
                       reinterpret_cast<uint16_t*>(y.data_ptr<at::BFloat16>()),
                       m,
                       n,
                       k};
  constexpr int64_t kRowsPerItem = 64;
  at::parallel_for(0, (n + kRowsPerItem - 1) / kRowsPerItem, 1, [&](int64_t b, int64_t e) {
    vk::gemv_bf16(a, b * kRowsPerItem, std::min(n, e * kRowsPerItem));
  });
  return y;
}

// This CPU's int8 multiply-add peak on kernel ISA `isa` (1..3): every thread of torch's pool runs
// `iters` rounds of the tile's dot product on registers only. Returns the multiply-adds done in all;
// the caller times the call.
int64_t int8_dot_peak(int64_t isa, int64_t iters) {
  TORCH_CHECK(isa >= kAvx2 && isa <= kAvx512Vnni, "no int8 dot-product loop for ISA ", isa);
  const vk::DotPeakFn fn = isa == kAvx512Vnni ? vk::dot_peak_avx512vnni()
                           : isa == kAvxVnni  ? vk::dot_peak_avxvnni()
                                              : vk::dot_peak_avx2();
  const int64_t threads = at::get_num_threads();
  std::vector<int64_t> done(static_cast<size_t>(threads), 0);
  at::parallel_for(0, threads, 1, [&](int64_t b, int64_t e) {
    for (int64_t t = b; t < e; ++t) done[static_cast<size_t>(t)] = fn(iters);
  });
  int64_t total = 0;
  for (int64_t d : done) total += d;
  return total;
}

}  // namespace ops
