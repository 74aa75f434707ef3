// The vision tower's rotary and bf16 rounding of q, k and v (ops_fused.cpp vision_qkv_rope_bf16) on
// AVX2, 8 lanes at a time: the same arithmetic as fused_avx512.cpp's 16-lane loops and the scalar
// code (fp32 products, no fused multiply-add, one sum, round to nearest even with integer ops so
// denormals keep their value, NaN -> 0x7FC0), so every path gives the same bits (tests).
#include <cstdint>

#include "vk.h"

#pragma GCC target("avx2")
#include <immintrin.h>

namespace {

// 8 fp32 -> 8 bf16 bits, c10's round_to_nearest_even.
inline __m128i round_bf16(__m256 f) {
  const __m256i u = _mm256_castps_si256(f);
  const __m256i bias =
      _mm256_add_epi32(_mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1)), _mm256_set1_epi32(0x7FFF));
  __m256i r = _mm256_srli_epi32(_mm256_add_epi32(u, bias), 16);
  // |u| > 0x7F800000 (NaN): signed compare is right since the sign bit is cleared
  const __m256i nan = _mm256_cmpgt_epi32(_mm256_and_si256(u, _mm256_set1_epi32(0x7FFFFFFF)), _mm256_set1_epi32(0x7F800000));
  r = _mm256_blendv_epi8(r, _mm256_set1_epi32(0x7FC0), nan);
  // 8 x int32 (each < 65536) -> 8 x uint16
  const __m128i lo = _mm256_castsi256_si128(r), hi = _mm256_extracti128_si256(r, 1);
  return _mm_packus_epi32(lo, hi);
}

inline void store(uint16_t* p, __m256 f) { _mm_storeu_si128(reinterpret_cast<__m128i*>(p), round_bf16(f)); }

}  // namespace

namespace vk {

// fused_avx512.cpp's vision_rope_f32_bf16_avx512 on 8 lanes (d/2 a multiple of 8).
void vision_rope_f32_bf16_avx2(const float* x, const float* cos, const float* sin, uint16_t* out, int64_t d) {
  const int64_t half = d / 2;
  const __m256 sign = _mm256_castsi256_ps(_mm256_set1_epi32(static_cast<int>(0x80000000u)));
  for (int64_t t = 0; t < d; t += 8) {
    __m256 rot = _mm256_loadu_ps(x + (t < half ? t + half : t - half));
    if (t < half) rot = _mm256_xor_ps(rot, sign);
    __m256 a = _mm256_mul_ps(_mm256_loadu_ps(x + t), _mm256_loadu_ps(cos + t));
    __m256 b = _mm256_mul_ps(rot, _mm256_loadu_ps(sin + t));
    __asm__("" : "+x"(a), "+x"(b));  // both products rounded before the sum (no FMA contraction)
    store(out + t, _mm256_add_ps(a, b));
  }
}

// n (a multiple of 8) fp32 values rounded to bf16 (nearest even), as .bfloat16() does.
void f32_to_bf16_avx2(const float* x, uint16_t* out, int64_t n) {
  for (int64_t i = 0; i < n; i += 8) store(out + i, _mm256_loadu_ps(x + i));
}

}  // namespace vk
