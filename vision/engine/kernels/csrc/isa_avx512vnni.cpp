// AVX-512 VNNI: one vpdpbusd multiplies 16 columns x 4 k of unsigned (+128) weights by 4 signed
// activation bytes broadcast to every lane. Intel Ice Lake and later, AMD Zen 4 and later.
// Standard headers come before the target pragma: their inline functions must keep the default
// target (the linker may merge them with other files' copies); ours are in an anonymous namespace.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "vk.h"

#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,fma")
#include <immintrin.h>


namespace {

struct V {
  using I = __m512i;
  using F = __m512;
  using W = __m512i;
  static constexpr int kHalves = 1;
  static constexpr int kLanes = 16;
  static constexpr bool kUnsigned = true;
  static constexpr int kMaxVec = 12;  // 12 int32 + 12 fp32 accumulators + weights < 32 zmm
  static inline W prep(const uint8_t* p) { return _mm512_loadu_si512(p); }
  static inline I dot(I acc, W w, I x) { return _mm512_dpbusd_epi32(acc, w, x); }
  static inline I set1_i(int32_t v) { return _mm512_set1_epi32(v); }
  static inline F set1_f(float v) { return _mm512_set1_ps(v); }
  static inline F zero_f() { return _mm512_setzero_ps(); }
  static inline F cvt(I v) { return _mm512_cvtepi32_ps(v); }
  static inline F fma(F a, F b, F c) { return _mm512_fmadd_ps(a, b, c); }
  static inline F mul(F a, F b) { return _mm512_mul_ps(a, b); }
  using W4 = __m512i;
  static inline void unpack4(const uint8_t* p, W4* lo, W4* hi) {
    const __m512i raw = _mm512_loadu_si512(p), mask = _mm512_set1_epi8(0x0f);
    *lo = _mm512_and_si512(raw, mask);
    *hi = _mm512_and_si512(_mm512_srli_epi16(raw, 4), mask);
  }
  static inline I dot4(I acc, W4 w, I x) { return _mm512_dpbusd_epi32(acc, w, x); }
  static inline F loadu_f(const float* p) { return _mm512_loadu_ps(p); }
  static inline void store_f(float* p, F v, int n) {
    if (n == kLanes) {
      _mm512_storeu_ps(p, v);
    } else {
      _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1), v);
    }
  }
  // Decode (m <= 8): every row in one tile, so the weights stream once; few rows leave room for
  // more panels side by side (more independent loads in flight). Prefill: 4 rows x 3 panels.
  static inline void choose(int64_t m, int* mr, int* nr) {
    if (m <= 8) {
      *mr = static_cast<int>(m);
      *nr = m <= 2 ? 4 : (m <= 4 ? 2 : 1);
    } else {
      *mr = 4;
      *nr = 3;
    }
  }
};

#include "tile_impl.h"
#include "quant_impl.h"

// Vectorized form of quant_rows for full blocks (same arithmetic, same rounding).
void quant_rows_512(const float* x, int64_t ldx, int64_t k, int64_t kp, int64_t r0, int64_t r1, int8_t* xq,
                    float* xscale, int32_t* xcorr) {
  if (k % vk::kBlock != 0) {
    quant_rows(x, ldx, k, kp, r0, r1, xq, xscale, xcorr);
    return;
  }
  static_assert(vk::kBlock == 32, "two 16-lane vectors per block");
  const int64_t nblk = kp / vk::kBlock;
  const __m512 absmask = _mm512_castsi512_ps(_mm512_set1_epi32(0x7fffffff));
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * ldx;
    int8_t* qr = xq + r * kp;
    for (int64_t b = 0; b < nblk; ++b) {
      const __m512 a0 = _mm512_loadu_ps(xr + b * 32), a1 = _mm512_loadu_ps(xr + b * 32 + 16);
      const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_and_ps(a0, absmask), _mm512_and_ps(a1, absmask)));
      const float inv = amax > 0.f ? 127.f / amax : 0.f;
      const __m512 vi = _mm512_set1_ps(inv);
      const __m512i q0 = _mm512_cvtps_epi32(
          _mm512_roundscale_ps(_mm512_mul_ps(a0, vi), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
      const __m512i q1 = _mm512_cvtps_epi32(
          _mm512_roundscale_ps(_mm512_mul_ps(a1, vi), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
      // |q| <= 127 by construction (x * 127 / max|x|); saturating packs keep it so if rounding says 127.5.
      _mm_storeu_si128(reinterpret_cast<__m128i*>(qr + b * 32), _mm512_cvtsepi32_epi8(q0));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(qr + b * 32 + 16), _mm512_cvtsepi32_epi8(q1));
      const int32_t sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
      xscale[r * nblk + b] = amax / 127.f;
      xcorr[r * nblk + b] = -128 * sum;
    }
  }
}

void gemm(const vk::Args& a, int64_t pb, int64_t pe) { run(a, pb, pe); }
void gemm4(const vk::Args& a, int64_t pb, int64_t pe) { run<true>(a, pb, pe); }

}  // namespace

namespace vk {
GemmFn gemm_avx512vnni() { return &gemm; }
GemmFn gemm4_avx512vnni() { return &gemm4; }
DotPeakFn dot_peak_avx512vnni() { return &dot_peak; }
QuantFn quant_avx512() { return &quant_rows_512; }
}  // namespace vk
