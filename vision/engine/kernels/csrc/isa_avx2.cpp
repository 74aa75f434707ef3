// Plain AVX2 (e.g. AMD Zen 2/3, Intel Haswell..Comet Lake): vpmaddubsw + vpmaddwd. vpmaddubsw
// multiplies unsigned by signed bytes and saturates pairs to int16, so the +128 weights would
// overflow; as llama.cpp does, take |w| as the unsigned side and move w's sign onto the
// activation (|w|, x <= 127: a pair sums to at most 32,258).
// Standard headers come before the target pragma: their inline functions must keep the default
// target (the linker may merge them with other files' copies); ours are in an anonymous namespace.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "vk.h"

#pragma GCC target("avx2,fma")
#include <immintrin.h>


namespace {

struct V {
  using I = __m256i;
  using F = __m256;
  struct W {
    __m256i abs, sign;
  };
  static constexpr int kHalves = 2;
  static constexpr int kLanes = 8;
  static constexpr bool kUnsigned = false;
  static constexpr int kMaxVec = 4;
  static inline W prep(const uint8_t* p) {
    const __m256i w = _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)),
                                       _mm256_set1_epi8(static_cast<char>(0x80)));  // back to signed
    return W{_mm256_abs_epi8(w), w};
  }
  static inline I dot(I acc, const W& w, I x) {
    const __m256i prod16 = _mm256_maddubs_epi16(w.abs, _mm256_sign_epi8(x, w.sign));
    return _mm256_add_epi32(acc, _mm256_madd_epi16(prod16, _mm256_set1_epi16(1)));
  }
  static inline I set1_i(int32_t v) { return _mm256_set1_epi32(v); }
  static inline F set1_f(float v) { return _mm256_set1_ps(v); }
  static inline F zero_f() { return _mm256_setzero_ps(); }
  static inline F cvt(I v) { return _mm256_cvtepi32_ps(v); }
  static inline F fma(F a, F b, F c) { return _mm256_fmadd_ps(a, b, c); }
  static inline F mul(F a, F b) { return _mm256_mul_ps(a, b); }
  // int4: the nibbles (0..15) are already the unsigned side of vpmaddubsw, no sign trick needed
  // (a pair sums to at most 2 * 15 * 127 = 3,810: no saturation).
  using W4 = __m256i;
  static inline void unpack4(const uint8_t* p, W4* lo, W4* hi) {
    const __m256i raw = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)), mask = _mm256_set1_epi8(0x0f);
    *lo = _mm256_and_si256(raw, mask);
    *hi = _mm256_and_si256(_mm256_srli_epi16(raw, 4), mask);
  }
  static inline I dot4(I acc, W4 w, I x) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), _mm256_set1_epi16(1)));
  }
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
    *mr = m == 1 ? 1 : 2;
    *nr = m == 1 ? 2 : 1;
  }
};

#include "tile_impl.h"

void gemm(const vk::Args& a, int64_t pb, int64_t pe) { run(a, pb, pe); }
void gemm4(const vk::Args& a, int64_t pb, int64_t pe) { run<true>(a, pb, pe); }

}  // namespace

namespace vk {
GemmFn gemm_avx2() { return &gemm; }
GemmFn gemm4_avx2() { return &gemm4; }
DotPeakFn dot_peak_avx2() { return &dot_peak; }
}  // namespace vk
