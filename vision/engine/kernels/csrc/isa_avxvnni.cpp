// AVX-VNNI (VEX-encoded vpdpbusd on 256-bit registers): Intel Alder Lake / Sapphire Rapids and
// later, AMD Zen 5. A 16-column panel is two registers of 8 columns x 4 k.
// Standard headers come before the target pragma: their inline functions must keep the default
// target (the linker may merge them with other files' copies); ours are in an anonymous namespace.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "vk.h"

#pragma GCC target("avx2,fma,avxvnni")
#include <immintrin.h>


namespace {

struct V {
  using I = __m256i;
  using F = __m256;
  using W = __m256i;
  static constexpr int kHalves = 2;
  static constexpr int kLanes = 8;
  static constexpr bool kUnsigned = true;
  static constexpr int kMaxVec = 6;  // 16 ymm registers: 6 int32 + 6 fp32 accumulators, 2 weights
  static inline W prep(const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); }
  static inline I dot(I acc, W w, I x) { return _mm256_dpbusd_avx_epi32(acc, w, x); }
  static inline I set1_i(int32_t v) { return _mm256_set1_epi32(v); }
  static inline F set1_f(float v) { return _mm256_set1_ps(v); }
  static inline F zero_f() { return _mm256_setzero_ps(); }
  static inline F cvt(I v) { return _mm256_cvtepi32_ps(v); }
  static inline F fma(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static inline F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  using W4 = __m256i;
  static inline void unpack4(const uint8_t* p, W4* lo, W4* hi) {
    const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)), mask = _mm256_set1_epi8(0x0f);
    *lo = _mm256_and_si256(raw, mask);
    *hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask);
  }
  static inline I dot4(I acc, W4 w, I x) { return _mm256_dpbusd_avx_epi32(acc, w, x); }
  static inline F loadu_f(const float* p) { return _mm256_loadu_ps(p); }
  static inline void store_f(float* p, F v, int n) {
    if (n == kLanes) {
      _mm256_storeu_ps(p, v);
    } else {
      alignas(32) float tmp[8];
      _mm256_store_ps(tmp, v);
      for (int i = 0; i < n; ++i) p[i] = tmp[i];
    }
  }
  static inline void choose(int64_t m, int* mr, int* nr) {
    if (m == 1) {
      *mr = 1;
      *nr = 2;
    } else {
      *mr = m == 2 ? 2 : 3;
      *nr = 1;
    }
  }
};

#include "tile_impl.h"

void gemm(const vk::Args& a, int64_t pb, int64_t pe) { run(a, pb, pe); }
void gemm4(const vk::Args& a, int64_t pb, int64_t pe) { run<true>(a, pb, pe); }

}  // namespace

namespace vk {
GemmFn gemm_avxvnni() { return &gemm; }
GemmFn gemm4_avxvnni() { return &gemm4; }
DotPeakFn dot_peak_avxvnni() { return &dot_peak; }
}  // namespace vk
