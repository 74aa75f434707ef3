// Elementwise pieces of the runner's fused bf16 decode ops (ops_fused.cpp: add_rms_norm_bf16,
// decode_qk_rope_store) on AVX-512F/BW, 16 lanes at a time, and the vision MLP's tanh GELU
// (gelu_tanh_f32_avx512, at the end). They round exactly as the scalar
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

// RMSNorm of one row of n (a multiple of 16) values: ops_fused.cpp's rms_row, vectorized with the same
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

// The tanh approximation of GELU, in place on n fp32 values (any n: the tail is masked):
// 0.5 x (1 + tanh(u)) = x / (1 + exp(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3). The sigmoid form
// needs no tanh and does not cancel where tanh(u) -> -1 (torch's form loses digits there). exp is
// Cephes' single-precision polynomial (error ~1 ulp) with the argument clamped to +-88 (x / (1 +
// e^88) is 0 to fp32's resolution there), scaled by 2^n with vscalefps. torch's vectorized
// F.gelu(approximate="tanh") takes 2.3 ms for a vision MLP's 560 x 4096 values on two cores.
void gelu_tanh_f32_avx512(float* x, int64_t n) {
  const __m512 k0 = _mm512_set1_ps(-2.f * 0.7978845608028654f);  // -2 sqrt(2/pi)
  const __m512 k1 = _mm512_set1_ps(0.044715f);
  const __m512 one = _mm512_set1_ps(1.f);
  const __m512 hi = _mm512_set1_ps(88.f), lo = _mm512_set1_ps(-88.f);
  const __m512 log2e = _mm512_set1_ps(1.44269504088896341f);
  const __m512 ln2_hi = _mm512_set1_ps(0.693359375f), ln2_lo = _mm512_set1_ps(-2.12194440e-4f);
  const __m512 p0 = _mm512_set1_ps(1.9875691500e-4f), p1 = _mm512_set1_ps(1.3981999507e-3f),
               p2 = _mm512_set1_ps(8.3334519073e-3f), p3 = _mm512_set1_ps(4.1665795894e-2f),
               p4 = _mm512_set1_ps(1.6666665459e-1f), p5 = _mm512_set1_ps(5.0000001201e-1f);
  for (int64_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? static_cast<__mmask16>(0xFFFF) : static_cast<__mmask16>((1u << (n - i)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    // a = -2u = -2 sqrt(2/pi) (v + 0.044715 v^3)
    __m512 a = _mm512_mul_ps(k0, _mm512_fmadd_ps(_mm512_mul_ps(k1, v), _mm512_mul_ps(v, v), v));
    a = _mm512_min_ps(_mm512_max_ps(a, lo), hi);
    // exp(a) = 2^e * exp(r), e = round(a log2e), r = a - e ln2 (ln2 in two parts)
    const __m512 e = _mm512_roundscale_ps(_mm512_mul_ps(a, log2e), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(e, ln2_hi, a);
    r = _mm512_fnmadd_ps(e, ln2_lo, r);
    const __m512 r2 = _mm512_mul_ps(r, r);
    __m512 y = _mm512_fmadd_ps(p0, r, p1);
    y = _mm512_fmadd_ps(y, r, p2);
    y = _mm512_fmadd_ps(y, r, p3);
    y = _mm512_fmadd_ps(y, r, p4);
    y = _mm512_fmadd_ps(y, r, p5);
    y = _mm512_fmadd_ps(y, r2, _mm512_add_ps(r, one));
    const __m512 ex = _mm512_scalef_ps(y, e);
    _mm512_mask_storeu_ps(x + i, m, _mm512_div_ps(v, _mm512_add_ps(one, ex)));
  }
}

// The vision tower's rotary for one fp32 head row of d values (d/2 a multiple of 16), rounded to
// bf16: out = bf16(x * cos + rotate_half(x) * sin), rotate_half(x)[t] = -x[t + d/2] for t < d/2,
// x[t - d/2] after; fp32 products and sum as transformers' apply_rotary_pos_emb_vision computes
// them (no fused multiply-add), then one rounding: the same bits as that function and .bfloat16().
void vision_rope_f32_bf16_avx512(const float* x, const float* cos, const float* sin, uint16_t* out, int64_t d) {
  const int64_t half = d / 2;
  const __m512i sign = _mm512_set1_epi32(static_cast<int>(0x80000000u));  // AVX-512F (no DQ xor_ps)
  for (int64_t t = 0; t < d; t += 16) {
    __m512 rot = _mm512_loadu_ps(x + (t < half ? t + half : t - half));
    if (t < half) rot = _mm512_castsi512_ps(_mm512_xor_si512(_mm512_castps_si512(rot), sign));
    __m512 a = _mm512_mul_ps(_mm512_loadu_ps(x + t), _mm512_loadu_ps(cos + t));
    __m512 b = _mm512_mul_ps(rot, _mm512_loadu_ps(sin + t));
    // Both products rounded before the sum: keeps g++ from contracting a mul and the add into
    // one fused multiply-add (AVX-512F has it), which rounds once and changes ~1 in 30,000 bits.
    __asm__("" : "+v"(a), "+v"(b));
    store(out + t, _mm512_add_ps(a, b));
  }
}

// n (a multiple of 16) fp32 values rounded to bf16 (nearest even), as .bfloat16() does.
void f32_to_bf16_avx512(const float* x, uint16_t* out, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) store(out + i, _mm512_loadu_ps(x + i));
}

}  // namespace vk
