// The attention operators (ops.h): decode rows against their KV-arena slots (attn_impl.h, built
// in attn_avx512.cpp and attn_avx2.cpp), and the prefill attention with its key/value packing
// (flash_avx512bf16.cpp, AVX-512 BF16 only).
#include <ATen/Parallel.h>
#include <algorithm>
#include <vector>

#include "ops.h"
#include "vk.h"

namespace ops {

namespace {

int64_t flash_padded(int64_t nk) { return round_up(nk, vk::kFlashKeyBlock); }

}  // namespace

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

}  // namespace ops
