// Python entry points of the int8 weight-only linear: activation quantization, the GEMM on the
// ISA the caller picked, and the chunk dequantizer of the dense path. Nothing here reads cpuid:
// every op takes its path from `isa` (the index of kernels.ISAS), which Python's `kernels.Isa`
// decided from the CPU's flags and VISION_KERNEL_ISA; the caller guarantees the CPU runs it. The
// AVX-512 BF16 ops (prefill attention, bf16 GEMV) are called only where `Isa.bf16` says so.
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <omp.h>
#include <vector>
#include <torch/extension.h>

#include "vk.h"

namespace {

enum Isa : int64_t { kRef = 0, kAvx2 = 1, kAvxVnni = 2, kAvx512Vnni = 3 };

void check_isa(int64_t isa) { TORCH_CHECK(isa >= kRef && isa <= kAvx512Vnni, "kernel path index ", isa, " (0..3)"); }

// Whether the elementwise loops of path `isa` run 16-lane AVX-512F/BW code on rows of n values.
bool avx512_rows(int64_t isa, int64_t n) { return isa == kAvx512Vnni && n % 16 == 0; }

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

int64_t round_up(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

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

void check_common(const torch::Tensor& x, const torch::Tensor& packed, int64_t isa) {
  check_isa(isa);
  TORCH_CHECK(x.dim() == 2 && (x.scalar_type() == torch::kFloat || x.scalar_type() == torch::kBFloat16),
              "x: (m, k) fp32 or bf16");
  TORCH_CHECK(packed.dim() == 2 && packed.scalar_type() == torch::kUInt8 && packed.is_contiguous());
}

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

// RMSNorm over the last axis of a bf16 tensor of 2 or 3 dims (the last contiguous, the others any
// stride: q/k norms run on views of the fused qkv output) with a bf16 weight, in F.rms_norm's
// arithmetic for bf16 (torch 2.13's composite): widen to fp32, r = rsqrt(mean(x^2) + eps),
// (x * r) * w in fp32, one rounding to bf16. One call instead of F.rms_norm's ~10 dispatched ops
// (casts, pow, mean, add, rsqrt, mul, mul, cast): a decode step makes 113 of them.
// One row: (x * r) * w in fp32 with r = 1 / sqrt(mean(x^2) + eps), one rounding to bf16. Every
// bf16 RMSNorm here goes through it, so all give the same bits.
inline void rms_row(const at::BFloat16* xr, const at::BFloat16* wp, at::BFloat16* orow, int64_t n, float eps,
                    int64_t isa) {
  if (avx512_rows(isa, n)) {  // the same arithmetic, 16 lanes at a time
    vk::rms_bf16_avx512(reinterpret_cast<const uint16_t*>(xr), reinterpret_cast<const uint16_t*>(wp),
                        reinterpret_cast<uint16_t*>(orow), n, eps);
    return;
  }
  constexpr int kLanes = 16;  // independent partial sums: the loop vectorizes
  float part[kLanes] = {};
  int64_t i = 0;
  for (; i + kLanes <= n; i += kLanes)
    for (int l = 0; l < kLanes; ++l) {
      const float v = static_cast<float>(xr[i + l]);
      part[l] += v * v;
    }
  float sum = 0.f;
  for (int l = 0; l < kLanes; ++l) sum += part[l];
  for (; i < n; ++i) {
    const float v = static_cast<float>(xr[i]);
    sum += v * v;
  }
  const float rs = 1.f / std::sqrt(sum / static_cast<float>(n) + eps);
  for (int64_t j = 0; j < n; ++j)
    orow[j] = static_cast<at::BFloat16>((static_cast<float>(xr[j]) * rs) * static_cast<float>(wp[j]));
}

torch::Tensor rms_norm_bf16(const torch::Tensor& x, const torch::Tensor& w, double eps, int64_t isa) {
  check_isa(isa);
  TORCH_CHECK(x.scalar_type() == torch::kBFloat16 && w.scalar_type() == torch::kBFloat16, "bf16 x and weight");
  TORCH_CHECK(x.dim() == 2 || x.dim() == 3, "x: (rows, n) or (a, b, n)");
  const int64_t n = x.size(-1);
  TORCH_CHECK(x.stride(-1) == 1 && w.dim() == 1 && w.numel() == n && w.is_contiguous(), "last axis contiguous");
  const int64_t a = x.dim() == 3 ? x.size(0) : 1, b = x.size(-2);
  const int64_t sa = x.dim() == 3 ? x.stride(0) : 0, sb = x.stride(-2);
  auto out = torch::empty(x.sizes(), x.options());  // contiguous
  const at::BFloat16* xp = x.data_ptr<at::BFloat16>();
  const at::BFloat16* wp = w.data_ptr<at::BFloat16>();
  at::BFloat16* op = out.data_ptr<at::BFloat16>();
  const float feps = static_cast<float>(eps);
  at::parallel_for(0, a * b, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) rms_row(xp + (r / b) * sa + (r % b) * sb, wp, op + r * n, n, feps, isa);
  });
  return out;
}

// The residual add and the RMSNorm after it, one call: hidden += delta in place (fp32 sum, one
// rounding to bf16: torch's bf16 add), then rms_norm_bf16 of the new hidden, returned.
torch::Tensor add_rms_norm_bf16(torch::Tensor hidden, const torch::Tensor& delta, const torch::Tensor& w,
                                double eps, int64_t isa) {
  check_isa(isa);
  TORCH_CHECK(hidden.scalar_type() == torch::kBFloat16 && delta.scalar_type() == torch::kBFloat16 &&
                  w.scalar_type() == torch::kBFloat16,
              "bf16 hidden, delta and weight");
  TORCH_CHECK(hidden.dim() == 2 && hidden.is_contiguous() && delta.sizes() == hidden.sizes() &&
                  delta.is_contiguous(),
              "hidden and delta: the same contiguous (rows, n)");
  const int64_t rows = hidden.size(0), n = hidden.size(1);
  TORCH_CHECK(w.dim() == 1 && w.numel() == n && w.is_contiguous(), "weight: (n,)");
  auto out = torch::empty_like(hidden);
  at::BFloat16* hp = hidden.data_ptr<at::BFloat16>();
  const at::BFloat16* dp = delta.data_ptr<at::BFloat16>();
  const at::BFloat16* wp = w.data_ptr<at::BFloat16>();
  at::BFloat16* op = out.data_ptr<at::BFloat16>();
  const float feps = static_cast<float>(eps);
  const bool vec = avx512_rows(isa, n);
  at::parallel_for(0, rows, 64, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      at::BFloat16* h = hp + r * n;
      const at::BFloat16* d = dp + r * n;
      if (vec) {
        vk::add_bf16_avx512(reinterpret_cast<uint16_t*>(h), reinterpret_cast<const uint16_t*>(d), n);
      } else {
        for (int64_t j = 0; j < n; ++j)
          h[j] = static_cast<at::BFloat16>(static_cast<float>(h[j]) + static_cast<float>(d[j]));
      }
      rms_row(h, wp, op + r * n, n, feps, isa);
    }
  });
  return out;
}

// What the runner's bf16 decode step does between the fused QKV projection and the attention, in
// one call: per decode row, RMSNorm of each query and key head (q_norm, k_norm), rotary on both
// (x * cos + roll(x, d/2) * sin, sin with its first half negated; each product and the sum
// rounded to bf16 as torch's bf16 ops round them), then the row's key and value heads written
// into its KV-arena slot at its position. Returns the queries, (B, heads, d) contiguous.
// qkv: (B, (heads + 2 kv_heads) * d); cos, sin: (B, d) (row stride free); keys, values:
// (slots, kv_heads, capacity, d); slots, positions: (B,) int64.
torch::Tensor decode_qk_rope_store(const torch::Tensor& qkv, const torch::Tensor& qn, const torch::Tensor& kn,
                                   const torch::Tensor& cos, const torch::Tensor& sin, torch::Tensor keys,
                                   torch::Tensor values, const torch::Tensor& slots,
                                   const torch::Tensor& positions, int64_t heads, int64_t kv_heads, double eps,
                                   int64_t isa) {
  check_isa(isa);
  const auto bf = torch::kBFloat16;
  TORCH_CHECK(qkv.scalar_type() == bf && qn.scalar_type() == bf && kn.scalar_type() == bf &&
                  cos.scalar_type() == bf && sin.scalar_type() == bf && keys.scalar_type() == bf &&
                  values.scalar_type() == bf,
              "bf16 tensors");
  TORCH_CHECK(keys.dim() == 4 && keys.is_contiguous() && values.sizes() == keys.sizes() && values.is_contiguous(),
              "keys, values: the same contiguous (slots, kv_heads, capacity, d)");
  const int64_t d = keys.size(3), cap = keys.size(2), nslots = keys.size(0);
  TORCH_CHECK(keys.size(1) == kv_heads && d % 2 == 0, "kv_heads and an even head_dim");
  const int64_t B = qkv.size(0), width = (heads + 2 * kv_heads) * d;
  TORCH_CHECK(qkv.dim() == 2 && qkv.size(1) == width && qkv.stride(1) == 1, "qkv: (B, (h + 2 kvh) * d)");
  TORCH_CHECK(qn.numel() == d && kn.numel() == d && qn.is_contiguous() && kn.is_contiguous(), "norm weights: (d,)");
  TORCH_CHECK(cos.dim() == 2 && sin.dim() == 2 && cos.size(0) == B && sin.size(0) == B && cos.size(1) == d &&
                  sin.size(1) == d && cos.stride(1) == 1 && sin.stride(1) == 1,
              "cos, sin: (B, d)");
  TORCH_CHECK(slots.scalar_type() == torch::kLong && positions.scalar_type() == torch::kLong &&
                  slots.numel() == B && positions.numel() == B && slots.is_contiguous() && positions.is_contiguous(),
              "slots, positions: (B,) int64");
  const int64_t* sp = slots.data_ptr<int64_t>();
  const int64_t* pp = positions.data_ptr<int64_t>();
  for (int64_t b = 0; b < B; ++b)
    TORCH_CHECK(sp[b] >= 0 && sp[b] < nslots && pp[b] >= 0 && pp[b] < cap, "slot or position out of range");
  auto q = torch::empty({B, heads, d}, qkv.options());
  const at::BFloat16* xp = qkv.data_ptr<at::BFloat16>();
  const at::BFloat16* cp = cos.data_ptr<at::BFloat16>();
  const at::BFloat16* snp = sin.data_ptr<at::BFloat16>();
  const at::BFloat16* qw = qn.data_ptr<at::BFloat16>();
  const at::BFloat16* kw = kn.data_ptr<at::BFloat16>();
  at::BFloat16* qp = q.data_ptr<at::BFloat16>();
  at::BFloat16* kp = keys.data_ptr<at::BFloat16>();
  at::BFloat16* vp = values.data_ptr<at::BFloat16>();
  const int64_t sx = qkv.stride(0), sc = cos.stride(0), ss = sin.stride(0), half = d / 2;
  const float feps = static_cast<float>(eps);
  const int64_t per_row = heads + 2 * kv_heads;
  const bool vec = avx512_rows(isa, half);
  at::parallel_for(0, B * per_row, 8, [&](int64_t i0, int64_t i1) {
    std::vector<at::BFloat16> normed(static_cast<size_t>(d));
    for (int64_t i = i0; i < i1; ++i) {
      const int64_t b = i / per_row, j = i % per_row;
      const at::BFloat16* src = xp + b * sx + j * d;
      const int64_t cell = (sp[b] * kv_heads) * cap + pp[b];  // (slot, head 0, position)
      if (j >= heads + kv_heads) {  // a value head: copied as it is
        std::memcpy(vp + (cell + (j - heads - kv_heads) * cap) * d, src, static_cast<size_t>(d) * 2);
        continue;
      }
      rms_row(src, j < heads ? qw : kw, normed.data(), d, feps, isa);
      at::BFloat16* dst = j < heads ? qp + (b * heads + j) * d : kp + (cell + (j - heads) * cap) * d;
      const at::BFloat16* cr = cp + b * sc;
      const at::BFloat16* sr = snp + b * ss;
      if (vec) {
        vk::rope_bf16_avx512(reinterpret_cast<const uint16_t*>(normed.data()), reinterpret_cast<const uint16_t*>(cr),
                             reinterpret_cast<const uint16_t*>(sr), reinterpret_cast<uint16_t*>(dst), d);
        continue;
      }
      for (int64_t t = 0; t < d; ++t) {
        const at::BFloat16 a = static_cast<at::BFloat16>(static_cast<float>(normed[t]) * static_cast<float>(cr[t]));
        const at::BFloat16 r = static_cast<at::BFloat16>(
            static_cast<float>(normed[(t + half) % d]) * static_cast<float>(sr[t]));
        dst[t] = static_cast<at::BFloat16>(static_cast<float>(a) + static_cast<float>(r));
      }
    }
  });
  return q;
}

// Attention of the decoding rows of a step, each against its own KV-arena slot. q: (B, heads,
// head_dim) bf16, last axis contiguous; keys, values: (slots, kv_heads, slot_tokens, head_dim) bf16
// contiguous (one layer of the arena); slots, lens: (B,) int64, row b attends keys [0, lens[b]) of
// slot slots[b]. Query head h uses KV head h / (heads / kv_heads), as repeat_kv pairs them.
// isa: 3 (AVX-512F) or 1 (AVX2 + FMA): kernels.Isa.attention. Returns (B, heads, head_dim) bf16.
// Each row is computed alone: the same numbers whatever the batch.
torch::Tensor decode_attention(const torch::Tensor& q, const torch::Tensor& keys, const torch::Tensor& values,
                               const torch::Tensor& slots, const torch::Tensor& lens, double scale, int64_t isa) {
  TORCH_CHECK(isa == kAvx512Vnni || isa == kAvx2, "decode_attention: no path ", isa, " (3 AVX-512F, 1 AVX2 + FMA)");
  TORCH_CHECK(q.scalar_type() == torch::kBFloat16 && keys.scalar_type() == torch::kBFloat16 &&
                  values.scalar_type() == torch::kBFloat16, "bf16 q, keys, values");
  TORCH_CHECK(q.dim() == 3 && q.stride(2) == 1, "q: (B, heads, head_dim), last axis contiguous");
  TORCH_CHECK(keys.dim() == 4 && keys.is_contiguous() && values.sizes() == keys.sizes() && values.is_contiguous());
  const int64_t batch = q.size(0), heads = q.size(1), hd = q.size(2);
  const int64_t kvh = keys.size(1), cap = keys.size(2);
  TORCH_CHECK(keys.size(3) == hd && heads % kvh == 0, "head_dim and heads must match the arena");
  const int64_t groups = heads / kvh;
  TORCH_CHECK(groups <= vk::attn_max_groups() && hd % 16 == 0 && hd <= vk::attn_max_head_dim(), "unsupported shape");
  TORCH_CHECK(slots.scalar_type() == torch::kLong && lens.scalar_type() == torch::kLong && slots.numel() == batch &&
              lens.numel() == batch);
  const torch::Tensor sl = slots.contiguous(), ln = lens.contiguous();
  const int64_t* slp = sl.data_ptr<int64_t>();
  const int64_t* lnp = ln.data_ptr<int64_t>();
  for (int64_t b = 0; b < batch; ++b)
    TORCH_CHECK(slp[b] >= 0 && slp[b] < keys.size(0) && lnp[b] >= 1 && lnp[b] <= cap, "slot or length out of range");
  auto out = torch::empty({batch, heads, hd}, q.options());
  const auto* qp = reinterpret_cast<const uint16_t*>(q.data_ptr<at::BFloat16>());
  const auto* kp = reinterpret_cast<const uint16_t*>(keys.data_ptr<at::BFloat16>());
  const auto* vp = reinterpret_cast<const uint16_t*>(values.data_ptr<at::BFloat16>());
  auto* op = reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>());
  const vk::AttnArgs args{groups, hd, q.stride(1), hd, static_cast<float>(scale)};
  const vk::AttnFn attend = isa == kAvx512Vnni ? vk::attn_avx512() : vk::attn_avx2();
  const int64_t q_row = q.stride(0);
  at::parallel_for(0, batch * kvh, 1, [&](int64_t t0, int64_t t1) {
    std::vector<float> scores;
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t b = t / kvh, h = t % kvh, len = lnp[b];
      scores.resize(static_cast<size_t>(groups * len));
      const int64_t base = (slp[b] * kvh + h) * cap * hd;
      attend(args, qp + b * q_row + h * groups * q.stride(1), kp + base, vp + base, len, scores.data(),
             op + (b * heads + h * groups) * hd);
    }
  });
  return out;
}

int64_t flash_padded(int64_t nk) { return round_up(nk, vk::kFlashKeyBlock); }

// Keys and values of a prefill attention, packed for `prefill_attention` (flash_avx512bf16.cpp):
// k, v: (kv_heads, nk, head_dim) bf16, last axis contiguous, any other strides. Returns the packed
// keys and values, each (kv_heads, padded nk * head_dim / 2) int32.
std::vector<torch::Tensor> attention_pack(const torch::Tensor& k, const torch::Tensor& v) {
  TORCH_CHECK(k.scalar_type() == torch::kBFloat16 && v.scalar_type() == torch::kBFloat16, "bf16 keys and values");
  TORCH_CHECK(k.dim() == 3 && k.sizes() == v.sizes() && k.stride(2) == 1 && v.stride(2) == 1,
              "keys, values: (kv_heads, nk, head_dim), last axis contiguous");
  const int64_t kvh = k.size(0), nk = k.size(1), d = k.size(2);
  TORCH_CHECK(nk >= 1 && vk::flash_head_dim_supported(d), "unsupported head_dim ", d, " or no keys");
  const int64_t nkp = flash_padded(nk), tiles = nkp / 16;
  auto kp = torch::empty({kvh, nkp * d / 2}, k.options().dtype(torch::kInt));
  auto vp = torch::empty({kvh, nkp * d / 2}, k.options().dtype(torch::kInt));
  const auto* k16 = reinterpret_cast<const uint16_t*>(k.data_ptr<at::BFloat16>());
  const auto* v16 = reinterpret_cast<const uint16_t*>(v.data_ptr<at::BFloat16>());
  auto* kpp = reinterpret_cast<uint32_t*>(kp.data_ptr<int32_t>());
  auto* vpp = reinterpret_cast<uint32_t*>(vp.data_ptr<int32_t>());
  at::parallel_for(0, kvh * tiles, 16, [&](int64_t a0, int64_t a1) {
    for (int64_t a = a0; a < a1; ++a) {
      const int64_t h = a / tiles;
      vk::flash_pack_tile(k16 + h * k.stride(0), k.stride(1), v16 + h * v.stride(0), v.stride(1), nk, d, a % tiles,
                          kpp + h * nkp * d / 2, vpp + h * nkp * d / 2);
    }
  });
  return {kp, vp};
}

// Attention of query rows against packed keys/values (`attention_pack` of nk keys), written into
// `out`. q: (heads, nq, head_dim) bf16, last axis contiguous; out: (nq, heads * head_dim) bf16, last
// axis contiguous (a row slice of a larger buffer is fine). causal: -1 for every key, else row i
// sees keys j <= i + causal (a prompt chunk after `causal` cached tokens). Each row is computed
// alone: the same numbers whatever rows are in the call. Returns out.
torch::Tensor prefill_attention(const torch::Tensor& q, const torch::Tensor& kpack, const torch::Tensor& vpack,
                                int64_t nk, double scale, int64_t causal, torch::Tensor out) {
  TORCH_CHECK(q.scalar_type() == torch::kBFloat16 && out.scalar_type() == torch::kBFloat16, "bf16 q and out");
  TORCH_CHECK(q.dim() == 3 && q.stride(2) == 1, "q: (heads, nq, head_dim), last axis contiguous");
  const int64_t heads = q.size(0), nq = q.size(1), d = q.size(2);
  TORCH_CHECK(vk::flash_head_dim_supported(d), "unsupported head_dim ", d);
  TORCH_CHECK(kpack.scalar_type() == torch::kInt && vpack.sizes() == kpack.sizes() && kpack.dim() == 2 &&
                  kpack.is_contiguous() && vpack.is_contiguous(), "packs from attention_pack");
  const int64_t kvh = kpack.size(0), nkp = flash_padded(nk);
  TORCH_CHECK(nk >= 1 && kpack.size(1) == nkp * d / 2, "nk does not match the packs");
  TORCH_CHECK(kvh >= 1 && heads % kvh == 0, "heads must be a multiple of kv_heads");
  TORCH_CHECK(causal >= -1, "causal: -1 or a key offset");
  TORCH_CHECK(causal == -1 || nq - 1 + causal < nk, "causal: the last row would see keys past nk");
  TORCH_CHECK(out.dim() == 2 && out.size(0) == nq && out.size(1) == heads * d && out.stride(1) == 1,
              "out: (nq, heads * head_dim), last axis contiguous");
  vk::FlashArgs a{};
  a.q = reinterpret_cast<const uint16_t*>(q.data_ptr<at::BFloat16>());
  a.q_head_stride = q.stride(0);
  a.q_row_stride = q.stride(1);
  a.kpack = reinterpret_cast<const uint32_t*>(kpack.data_ptr<int32_t>());
  a.vpack = reinterpret_cast<const uint32_t*>(vpack.data_ptr<int32_t>());
  a.nk = nk;
  a.nk_padded = nkp;
  a.head_dim = d;
  a.groups = heads / kvh;
  a.causal = causal;
  a.scale_log2 = static_cast<float>(scale * 1.4426950408889634);
  a.out = reinterpret_cast<uint16_t*>(out.data_ptr<at::BFloat16>());
  a.out_row_stride = out.stride(0);
  const int64_t per = vk::flash_rows_per_item(), blocks = (nq + per - 1) / per;
  at::parallel_for(0, heads * blocks, 1, [&](int64_t w0, int64_t w1) {
    for (int64_t w = w0; w < w1; ++w) {
      const int64_t h = w / blocks, q0 = (w % blocks) * per;
      vk::flash_rows(a, h, q0, std::min(per, nq - q0));
    }
  });
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

// How many threads one at::parallel_for of `items` work items ran on: what every op here relies on
// to use all cores (1 when the library was built without OpenMP, whatever torch's setting).
int64_t parallel_threads(int64_t items) {
  std::vector<int> used(static_cast<size_t>(at::get_num_threads()) + 1, 0);
  at::parallel_for(0, items, 1, [&](int64_t, int64_t) {
    const int t = at::get_thread_num();
    if (t >= 0 && t < static_cast<int>(used.size())) used[static_cast<size_t>(t)] = 1;
  });
  int64_t n = 0;
  for (int u : used) n += u;
  return n;
}

// GELU (tanh approximation) of a contiguous fp32 tensor, in place: the vision MLP's activation
// (transformers' gelu_pytorch_tanh). AVX-512F 16 lanes at a time (fused_avx512.cpp, sigmoid form
// with a polynomial exp, within a few fp32 ulps of the exact function) on path 3; scalar C++ with
// std::exp on the others. Parallel over blocks of 16k values.
torch::Tensor gelu_tanh_(torch::Tensor x, int64_t isa) {
  check_isa(isa);
  TORCH_CHECK(x.scalar_type() == torch::kFloat32 && x.is_contiguous(), "contiguous fp32 x");
  const bool vec = isa == kAvx512Vnni;
  float* p = x.data_ptr<float>();
  at::parallel_for(0, x.numel(), 16384, [&](int64_t i0, int64_t i1) {
    if (vec) {
      vk::gelu_tanh_f32_avx512(p + i0, i1 - i0);
      return;
    }
    for (int64_t i = i0; i < i1; ++i) {
      const float v = p[i];
      const float a = std::min(88.f, std::max(-88.f, -2.f * 0.7978845608028654f * (v + 0.044715f * v * v * v)));
      p[i] = v / (1.f + std::exp(a));
    }
  });
  return x;
}

// A vision block's q, k and v for the kernels' prefill attention, one call: the fused qkv
// projection's fp32 output (rows, 3 * heads * d), rotary on q and k with the tower's cos/sin
// (rows, d) fp32 (transformers' apply_rotary_pos_emb_vision), all three rounded to bf16 into one
// (3, rows, heads, d) tensor. Same bits as that function followed by .bfloat16() (tests). Replaces
// ~20 dispatched ops per block (casts, slices, neg, cat, mul, add): ~2.5 ms of a 560-patch block.
torch::Tensor vision_qkv_rope_bf16(const torch::Tensor& qkv, const torch::Tensor& cos, const torch::Tensor& sin,
                                   int64_t heads, int64_t isa) {
  check_isa(isa);
  TORCH_CHECK(qkv.scalar_type() == torch::kFloat32 && cos.scalar_type() == torch::kFloat32 &&
                  sin.scalar_type() == torch::kFloat32,
              "fp32 qkv, cos and sin");
  TORCH_CHECK(qkv.dim() == 2 && qkv.is_contiguous() && cos.is_contiguous() && sin.is_contiguous(),
              "contiguous qkv (rows, 3 * heads * d), cos and sin (rows, d)");
  const int64_t rows = qkv.size(0), width = qkv.size(1);
  TORCH_CHECK(heads > 0 && width % (3 * heads) == 0, "qkv width: 3 * heads * d");
  const int64_t d = width / (3 * heads), half = d / 2;
  TORCH_CHECK(d % 2 == 0 && cos.dim() == 2 && cos.size(0) == rows && cos.size(1) == d && sin.sizes() == cos.sizes(),
              "cos and sin: (rows, d), d even");
  const bool vec = avx512_rows(isa, half);
  const bool vec8 = (isa == kAvx2 || isa == kAvxVnni) && half % 8 == 0;  // fused_avx2.cpp
  auto out = torch::empty({3, rows, heads, d}, qkv.options().dtype(torch::kBFloat16));
  const float* src = qkv.data_ptr<float>();
  const float* cp = cos.data_ptr<float>();
  const float* sp = sin.data_ptr<float>();
  at::BFloat16* dst = out.data_ptr<at::BFloat16>();
  const int64_t plane = rows * heads * d;  // one of q, k, v in out
  at::parallel_for(0, rows, 16, [&](int64_t r0, int64_t r1) {
    for (int64_t r = r0; r < r1; ++r) {
      const float* c = cp + r * d;
      const float* s = sp + r * d;
      for (int part = 0; part < 3; ++part)
        for (int64_t h = 0; h < heads; ++h) {
          const float* x = src + r * width + (part * heads + h) * d;
          at::BFloat16* o = dst + part * plane + (r * heads + h) * d;
          if (part == 2) {  // v: rounded only
            if (vec) {
              vk::f32_to_bf16_avx512(x, reinterpret_cast<uint16_t*>(o), d);
            } else if (vec8) {
              vk::f32_to_bf16_avx2(x, reinterpret_cast<uint16_t*>(o), d);
            } else {
              for (int64_t t = 0; t < d; ++t) o[t] = static_cast<at::BFloat16>(x[t]);
            }
          } else if (vec) {
            vk::vision_rope_f32_bf16_avx512(x, c, s, reinterpret_cast<uint16_t*>(o), d);
          } else if (vec8) {
            vk::vision_rope_f32_bf16_avx2(x, c, s, reinterpret_cast<uint16_t*>(o), d);
          } else {
            for (int64_t t = 0; t < d; ++t) {
              const float rot = t < half ? -x[t + half] : x[t - half];
              const float a = x[t] * c[t];
              const float b = rot * s[t];
              o[t] = static_cast<at::BFloat16>(a + b);
            }
          }
        }
    }
  });
  return out;
}

// Frees the calling thread's OpenMP thread pool (its workers exit; the next parallel region from
// this thread makes a new one). libgomp cuts every team's spin-wait from ~300k to 1,000 rounds
// while it manages more threads than there are CPUs: a pool left behind by the thread that loaded
// the model (on two cores: its one idle worker) makes the engine thread's worker fall asleep
// between the step's ~170 parallel regions, and each region then waits for a futex wake-up.
int64_t release_thread_pool() { return omp_pause_resource_all(omp_pause_soft); }

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("linear", &linear, "int8 weight-only linear, int8 activations per 32-block",
        py::call_guard<py::gil_scoped_release>());
  m.def("linear4", &linear4, "int4 group-wise (32) weight-only linear, int8 activations per 32-block",
        py::call_guard<py::gil_scoped_release>());
  m.def("dequant", &dequant, "columns [n0, n1) of the weight, dequantized", py::call_guard<py::gil_scoped_release>());
  m.def("rms_norm_bf16", &rms_norm_bf16, "RMSNorm of bf16 rows (F.rms_norm's arithmetic), one call",
        py::call_guard<py::gil_scoped_release>());
  m.def("add_rms_norm_bf16", &add_rms_norm_bf16, "hidden += delta, then RMSNorm of it (bf16), one call",
        py::call_guard<py::gil_scoped_release>());
  m.def("decode_qk_rope_store", &decode_qk_rope_store,
        "decode rows: q/k RMSNorm, rotary, keys and values into their arena slots; returns q",
        py::call_guard<py::gil_scoped_release>());
  m.def("decode_attention", &decode_attention, "decode rows of a step against their KV-arena slots, bf16",
        py::call_guard<py::gil_scoped_release>());
  m.def("attention_pack", &attention_pack, "keys and values packed for prefill_attention",
        py::call_guard<py::gil_scoped_release>());
  m.def("prefill_attention", &prefill_attention, "query rows against packed keys/values into out, bf16",
        py::call_guard<py::gil_scoped_release>());
  m.def("linear_bf16", &linear_bf16, "bf16 linear of few rows (decode), weight as nn.Linear keeps it",
        py::call_guard<py::gil_scoped_release>());
  m.def("gelu_tanh_", &gelu_tanh_, "GELU (tanh approximation) of contiguous fp32 values, in place",
        py::arg("x"), py::arg("isa"), py::call_guard<py::gil_scoped_release>());
  m.def("vision_qkv_rope_bf16", &vision_qkv_rope_bf16,
        "a vision block's q/k (rotary) and v from its fp32 qkv output, as (3, rows, heads, d) bf16", py::arg("qkv"),
        py::arg("cos"), py::arg("sin"), py::arg("heads"), py::arg("isa"),
        py::call_guard<py::gil_scoped_release>());
  m.def("int8_dot_peak", &int8_dot_peak, "int8 multiply-adds of a register-only loop on every thread (time it)",
        py::call_guard<py::gil_scoped_release>());
  m.def("release_thread_pool", &release_thread_pool, "free the calling thread's OpenMP pool; 0 on success");
  m.def("parallel_threads", &parallel_threads, "threads one parallel_for of n items ran on",
        py::call_guard<py::gil_scoped_release>());
  m.attr("BLOCK") = vk::kBlock;
  m.attr("PANEL") = vk::kPanel;
}
