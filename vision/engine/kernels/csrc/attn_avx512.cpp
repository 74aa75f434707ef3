// Decode attention for one (sequence, KV head): the `groups` query heads that share the KV head
// against its first `len` keys, bf16 in and out, fp32 inside. AVX-512F (bf16 is widened by a
// shift, no avx512_bf16 needed). Decode is one query row per head, so this is memory-bound: each
// key and value row is read once for all the group's heads. Two passes: scores, then softmax
// weights times values; exp is a degree-6 polynomial after range reduction (relative error
// ~2e-7, below fp32's 6e-8 x the 2^7 scale of a bf16 output step).
#include <cstdint>
#include <cstring>

#include "vk.h"

#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma")
#include <immintrin.h>

namespace {

inline __m512 load_bf16(const uint16_t* p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}

// Round to nearest even, as c10::BFloat16(float) (inputs here are finite).
inline void store_bf16(uint16_t* p, __m512 v) {
  const __m512i b = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(b, _mm512_set1_epi32(0x7fff)), lsb), 16);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(r));
}

inline __m512 exp512(__m512 x) {  // x <= 0 here (scores minus their max)
  x = _mm512_max_ps(x, _mm512_set1_ps(-87.3f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504089f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187e-06f), r);
  __m512 p = _mm512_set1_ps(1.0f / 720);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

constexpr int kMaxHeadVec = 16;  // head_dim <= 256
constexpr int kMaxGroups = 8;

// G query heads per KV head and HV vectors per head row known at compile time keep q and the
// output sums in registers (Qwen3-VL 2B: 2 and 8); 0 = taken from the arguments at run time.
template <int G, int HV>
void attend_t(const vk::AttnArgs& a, const uint16_t* q, const uint16_t* k, const uint16_t* v, int64_t len,
              float* scores, uint16_t* out) {
  const int hv = HV ? HV : static_cast<int>(a.head_dim / 16);
  const int groups = G ? G : static_cast<int>(a.groups);
  __m512 qv[kMaxGroups][kMaxHeadVec];
  for (int g = 0; g < groups; ++g)
    for (int i = 0; i < hv; ++i) qv[g][i] = _mm512_mul_ps(load_bf16(q + g * a.q_head_stride + i * 16), _mm512_set1_ps(a.scale));
  float mx[kMaxGroups];
  for (int g = 0; g < groups; ++g) mx[g] = -3.0e38f;
  for (int64_t j = 0; j < len; ++j) {
    const uint16_t* kr = k + j * a.kv_row_stride;
    __m512 kv[kMaxHeadVec];
    for (int i = 0; i < hv; ++i) kv[i] = load_bf16(kr + i * 16);
    for (int g = 0; g < groups; ++g) {
      __m512 s0 = _mm512_mul_ps(qv[g][0], kv[0]), s1 = _mm512_setzero_ps();
      for (int i = 1; i < hv; ++i) {
        if (i & 1) {
          s1 = _mm512_fmadd_ps(qv[g][i], kv[i], s1);
        } else {
          s0 = _mm512_fmadd_ps(qv[g][i], kv[i], s0);
        }
      }
      const float s = _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
      scores[g * len + j] = s;
      mx[g] = s > mx[g] ? s : mx[g];
    }
  }
  for (int g = 0; g < groups; ++g) {
    float* sg = scores + g * len;
    const __m512 m = _mm512_set1_ps(mx[g]);
    __m512 sum = _mm512_setzero_ps();
    int64_t j = 0;
    for (; j + 16 <= len; j += 16) {
      const __m512 e = exp512(_mm512_sub_ps(_mm512_loadu_ps(sg + j), m));
      _mm512_storeu_ps(sg + j, e);
      sum = _mm512_add_ps(sum, e);
    }
    if (j < len) {
      const __mmask16 mask = static_cast<__mmask16>((1u << (len - j)) - 1);
      const __m512 e = exp512(_mm512_sub_ps(_mm512_maskz_loadu_ps(mask, sg + j), m));
      _mm512_mask_storeu_ps(sg + j, mask, e);
      sum = _mm512_add_ps(sum, _mm512_maskz_mov_ps(mask, e));
    }
    const float inv = 1.0f / _mm512_reduce_add_ps(sum);
    for (int64_t t = 0; t < len; ++t) sg[t] *= inv;
  }
  __m512 acc[kMaxGroups][kMaxHeadVec];
  for (int g = 0; g < groups; ++g)
    for (int i = 0; i < hv; ++i) acc[g][i] = _mm512_setzero_ps();
  for (int64_t j = 0; j < len; ++j) {
    const uint16_t* vr = v + j * a.kv_row_stride;
    for (int i = 0; i < hv; ++i) {
      const __m512 vv = load_bf16(vr + i * 16);
      for (int g = 0; g < groups; ++g) acc[g][i] = _mm512_fmadd_ps(_mm512_set1_ps(scores[g * len + j]), vv, acc[g][i]);
    }
  }
  for (int g = 0; g < groups; ++g)
    for (int i = 0; i < hv; ++i) store_bf16(out + g * a.head_dim + i * 16, acc[g][i]);
}

void attend(const vk::AttnArgs& a, const uint16_t* q, const uint16_t* k, const uint16_t* v, int64_t len, float* scores,
            uint16_t* out) {
  if (a.head_dim == 128 && a.groups == 2) return attend_t<2, 8>(a, q, k, v, len, scores, out);
  if (a.head_dim == 128 && a.groups == 1) return attend_t<1, 8>(a, q, k, v, len, scores, out);
  if (a.head_dim == 128 && a.groups == 4) return attend_t<4, 8>(a, q, k, v, len, scores, out);
  if (a.head_dim == 64 && a.groups == 2) return attend_t<2, 4>(a, q, k, v, len, scores, out);
  attend_t<0, 0>(a, q, k, v, len, scores, out);
}

}  // namespace

namespace vk {
AttnFn attn_avx512() { return &attend; }
int attn_max_groups() { return kMaxGroups; }
int attn_max_head_dim() { return kMaxHeadVec * 16; }
}  // namespace vk
