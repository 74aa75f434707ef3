// Decode attention on AVX-512F (attn_impl.h): bf16 widened by a shift (no avx512_bf16 needed);
// exp is a degree-6 polynomial after range reduction (relative error ~2e-7, far below a bf16
// output step), 2^n by scalef.
#include <cstdint>
#include <cstring>

#include "vk.h"

#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,fma")
#include <immintrin.h>

namespace {

struct A {
  using F = __m512;
  static constexpr int kLanes = 16;
  static inline F zero() { return _mm512_setzero_ps(); }
  static inline F set1(float v) { return _mm512_set1_ps(v); }
  static inline F add(F a, F b) { return _mm512_add_ps(a, b); }
  static inline F sub(F a, F b) { return _mm512_sub_ps(a, b); }
  static inline F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  static inline F fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static inline float hsum(F v) { return _mm512_reduce_add_ps(v); }
  static inline F loadu(const float* p) { return _mm512_loadu_ps(p); }
  static inline void storeu(float* p, F v) { _mm512_storeu_ps(p, v); }
  static inline __mmask16 first(int n) { return static_cast<__mmask16>((1u << n) - 1); }
  static inline F loadn(const float* p, int n) { return _mm512_maskz_loadu_ps(first(n), p); }
  static inline void storen(float* p, F v, int n) { _mm512_mask_storeu_ps(p, first(n), v); }
  static inline F keep_first(F v, int n) { return _mm512_maskz_mov_ps(first(n), v); }
  static inline F load_bf16(const uint16_t* p);
  static inline void store_bf16(uint16_t* p, F v);
  static inline F exp(F x);
};

inline __m512 A::load_bf16(const uint16_t* p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}

// Round to nearest even, as c10::BFloat16(float) (inputs here are finite).
inline void A::store_bf16(uint16_t* p, __m512 v) {
  const __m512i b = _mm512_castps_si512(v);
  const __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(b, 16), _mm512_set1_epi32(1));
  const __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(b, _mm512_set1_epi32(0x7fff)), lsb), 16);
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), _mm512_cvtepi32_epi16(r));
}

inline __m512 A::exp(__m512 x) {  // x <= 0 here (scores minus their max)
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

#include "attn_impl.h"

}  // namespace

namespace vk {
AttnFn attn_avx512() { return &attend; }
int attn_max_groups() { return kMaxGroups; }
int attn_max_head_dim() { return kMaxHeadVec * 16; }
}  // namespace vk
