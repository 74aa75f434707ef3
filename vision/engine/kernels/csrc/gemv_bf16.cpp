// bf16 weight x bf16 activation linear for few rows (decode) on AVX-512 BF16: each 64-byte load of
// a weight row (32 consecutive k) is one vdpbf16ps operand against the same 32 k of an activation
// row, so the weight needs no repacking (the model keeps nn.Linear's row-major (N, K) tensor, and a
// tied lm_head stays tied to the embedding). Each output is a 16-lane fp32 sum, reduced once at
// the end of K, plus the bias, rounded to nearest even.
//
// A tile is MR activation rows x NR weight rows; the weight rows are read once per tile of 8
// activation rows (a decode step of 8 sequences reads every weight once), in NR parallel streams.
// Measured on the 2-core EPYC (AVX-512 BF16, no AMX), weights from DRAM: M=1 reads 26-44 GB/s,
// about the read bandwidth, where oneDNN's bf16 GEMV (F.linear) read 14-18; M=8 reads 14-18 GB/s
// (F.linear 14-16): the 8x2 tile runs at about half the vdpbf16ps rate even from L2 (not 4 KiB
// aliasing: a padded row stride changed nothing), so Bf16Linear uses it up to 8 rows.
#include <algorithm>
#include <cstdint>
#include <cstring>

#include "vk.h"

#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")
#include <immintrin.h>

namespace {

constexpr int kAhead = 1024;  // bytes ahead in each weight row, into L2 (0 and 2048 measured: no better)

inline uint16_t round_bf16(float f) {  // nearest even, as c10::BFloat16 (finite inputs)
  uint32_t b;
  std::memcpy(&b, &f, 4);
  return static_cast<uint16_t>((b + 0x7fffu + ((b >> 16) & 1u)) >> 16);
}

inline __m512 dot(__m512 acc, __m512i a, __m512i b) { return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b); }

template <int MR, int NR>
void tile(const vk::GemvArgs& a, int64_t m0, int64_t n0) {
  __m512 acc[MR][NR];
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NR; ++j) acc[r][j] = _mm512_setzero_ps();
  const uint16_t* w[NR];
  for (int j = 0; j < NR; ++j) w[j] = a.w + (n0 + j) * a.k;
  const uint16_t* x[MR];
  for (int r = 0; r < MR; ++r) x[r] = a.x + (m0 + r) * a.k;
  int64_t k = 0;
  for (; k + 32 <= a.k; k += 32) {
    __m512i wv[NR];
    for (int j = 0; j < NR; ++j) {
      __builtin_prefetch(reinterpret_cast<const char*>(w[j] + k) + kAhead, 0, 2);
      wv[j] = _mm512_loadu_si512(w[j] + k);
    }
    for (int r = 0; r < MR; ++r) {
      const __m512i xv = _mm512_loadu_si512(x[r] + k);
      for (int j = 0; j < NR; ++j) acc[r][j] = dot(acc[r][j], wv[j], xv);
    }
  }
  if (k < a.k) {  // the tail: missing k load as 0 in both operands
    const __mmask32 keep = static_cast<__mmask32>((1ull << (a.k - k)) - 1);
    __m512i wv[NR];
    for (int j = 0; j < NR; ++j) wv[j] = _mm512_maskz_loadu_epi16(keep, w[j] + k);
    for (int r = 0; r < MR; ++r) {
      const __m512i xv = _mm512_maskz_loadu_epi16(keep, x[r] + k);
      for (int j = 0; j < NR; ++j) acc[r][j] = dot(acc[r][j], wv[j], xv);
    }
  }
  for (int r = 0; r < MR; ++r)
    for (int j = 0; j < NR; ++j) {
      float s = _mm512_reduce_add_ps(acc[r][j]);
      if (a.bias) {
        uint32_t bb = static_cast<uint32_t>(a.bias[n0 + j]) << 16;
        float bf;
        std::memcpy(&bf, &bb, 4);
        s += bf;
      }
      a.y[(m0 + r) * a.n + n0 + j] = round_bf16(s);
    }
}

// Rows [m0, m0 + mr) (mr <= 8) against weight rows [n0, n0 + nr) in tiles of NR rows.
template <int MR>
void rows(const vk::GemvArgs& a, int64_t m0, int64_t n0, int64_t n1) {
  constexpr int NR = MR <= 2 ? 8 : (MR <= 4 ? 4 : 2);  // 8 weight streams at M=1 (measured best)
  int64_t n = n0;
  for (; n + NR <= n1; n += NR) tile<MR, NR>(a, m0, n);
  for (; n < n1; ++n) tile<MR, 1>(a, m0, n);
}

using RowsFn = void (*)(const vk::GemvArgs&, int64_t, int64_t, int64_t);
constexpr RowsFn kRows[9] = {nullptr, &rows<1>, &rows<2>, &rows<3>, &rows<4>, &rows<5>, &rows<6>, &rows<7>, &rows<8>};

}  // namespace

namespace vk {

// Weight rows [n0, n1) for every activation row, 8 activation rows at a time (the weight block
// stays in L1/L2 between them).
void gemv_bf16(const GemvArgs& a, int64_t n0, int64_t n1) {
  constexpr int64_t kBlockRows = 64;  // weight rows per pass over the activation rows
  for (int64_t nb = n0; nb < n1; nb += kBlockRows) {
    const int64_t ne = std::min(n1, nb + kBlockRows);
    for (int64_t m = 0; m < a.m; m += 8) kRows[std::min<int64_t>(8, a.m - m)](a, m, nb, ne);
  }
}

}  // namespace vk
