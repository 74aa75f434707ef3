// Elementwise pieces of the runner's fused bf16 decode ops (binding.cpp: add_rms_norm_bf16,
// decode_qk_rope_store) on AVX-512F/BW, 16 lanes at a time. They round exactly as the scalar
// code and torch's bf16 ops do: fp32 arithmetic, round to nearest even (c10's
// round_to_nearest_even, NaN -> 0x7FC0), done with integer ops so denormals keep their value
// (vcvtneps2bf16 would flush them).
#include <cmath>
#include <cstdint>

#include "vk.h"

#pragma GCC target("avx512f,avx512bw,avx512vl")
#include <immintrin.h>

namespace {

inline __m512 widen(const uint16_t* p) {
  return _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p))), 16));
}

inline __m256i round_bf16(__m512 f) {
  const __m512i u = _mm512_castps_si512(f);
  const __m512i bias = _mm512_add_epi32(_mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1)),
                                        _mm512_set1_epi32(0x7FFF));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(u, bias), 16);
  const __mmask16 nan = _mm512_cmpgt_epu32_mask(_mm512_and_si512(u, _mm512_set1_epi32(0x7FFFFFFF)),
                                                _mm512_set1_epi32(0x7F800000));
  r = _mm512_mask_mov_epi32(r, nan, _mm512_set1_epi32(0x7FC0));
  return _mm512_cvtepi32_epi16(r);
}

inline void store(uint16_t* p, __m512 f) { _mm256_storeu_si256(reinterpret_cast<__m256i*>(p), round_bf16(f)); }

inline __m512 rounded(__m512 f) {  // f rounded to bf16 and widened back
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(round_bf16(f)), 16));
}

}  // namespace

namespace vk {

bool fused_avx512_ok(int64_t n) {
  __builtin_cpu_init();
  return n % 16 == 0 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw");
}

// RMSNorm of one row of n (a multiple of 16) values: binding.cpp's rms_row, vectorized with the same
// order of operations (16 partial sums of squares, no fused multiply-add, added up in lane order).
void rms_bf16_avx512(const uint16_t* x, const uint16_t* w, uint16_t* out, int64_t n, float eps) {
  __m512 part = _mm512_setzero_ps();
  for (int64_t i = 0; i < n; i += 16) {
    const __m512 v = widen(x + i);
    part = _mm512_add_ps(part, _mm512_mul_ps(v, v));
  }
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, part);
  float sum = 0.f;
  for (int l = 0; l < 16; ++l) sum += lanes[l];
  const float rs = 1.f / std::sqrt(sum / static_cast<float>(n) + eps);
  const __m512 r = _mm512_set1_ps(rs);
  for (int64_t i = 0; i < n; i += 16) store(out + i, _mm512_mul_ps(_mm512_mul_ps(widen(x + i), r), widen(w + i)));
}

// h[i] = bf16(h[i] + d[i]) for n (a multiple of 16) values.
void add_bf16_avx512(uint16_t* h, const uint16_t* d, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) store(h + i, _mm512_add_ps(widen(h + i), widen(d + i)));
}

// out = bf16(bf16(x * cos) + bf16(roll(x, d/2) * sin)) for one head row of d values (d/2 a
// multiple of 16): roll(x, d/2)[t] = x[t + d/2] for t < d/2, x[t - d/2] after.
void rope_bf16_avx512(const uint16_t* x, const uint16_t* cos, const uint16_t* sin, uint16_t* out, int64_t d) {
  const int64_t half = d / 2;
  for (int64_t t = 0; t < d; t += 16) {
    const int64_t r = t < half ? t + half : t - half;
    const __m512 a = rounded(_mm512_mul_ps(widen(x + t), widen(cos + t)));
    const __m512 b = rounded(_mm512_mul_ps(widen(x + r), widen(sin + t)));
    store(out + t, _mm512_add_ps(a, b));
  }
}

}  // namespace vk
