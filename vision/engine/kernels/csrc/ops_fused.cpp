// The elementwise operators (ops.h): RMSNorm of bf16 rows, the runner's fused bf16 decode ops
// (the residual add with its RMSNorm, the q/k norms, rotary and KV writes), and the vision
// towers' GELU and q/k/v rotary. On the avx512vnni path their loops run fused_avx512.cpp's
// 16-lane code (the vision rotary also fused_avx2.cpp's 8-lane code on avx2 and avxvnni), scalar
// C++ elsewhere: the same bits on every path (tests).
#include <ATen/Parallel.h>
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "ops.h"
#include "vk.h"

namespace ops {

namespace {

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

}  // namespace

// RMSNorm over the last axis of a bf16 tensor of 2 or 3 dims (the last contiguous, the others any
// stride: q/k norms run on views of the fused qkv output) with a bf16 weight, in F.rms_norm's
// arithmetic for bf16 (torch 2.13's composite): widen to fp32, r = rsqrt(mean(x^2) + eps),
// (x * r) * w in fp32, one rounding to bf16. One call instead of F.rms_norm's ~10 dispatched ops
// (casts, pow, mean, add, rsqrt, mul, mul, cast): a decode step makes 113 of them.
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

}  // namespace ops
