// Prefill attention (vision blocks, prompt chunks) on AVX-512 BF16: a flash-attention loop whose
// two products are `vdpbf16ps` (bf16 pairs multiplied and summed into fp32 lanes), with fp32
// online softmax. SDPA's CPU flash kernel reaches ~110-150 GFLOP/s on two Zen 4 cores; this one
// ~290 (two-core vdpbf16ps peak here ~450).
//
// Layouts (vk.h FlashArgs): keys and values are packed once per call (`flash_pack`) so that each
// 512-bit load is one vdpbf16ps operand:
//   keys:   [kv head][key tile of 16][head_dim / 2][16 keys] 32-bit words, word = (k[j][2p], k[j][2p+1]):
//           scores of 4 query rows x 64 keys take 4 loads and 4 broadcast q pairs per head_dim pair;
//   values: [kv head][key pair][head_dim] words, word = (v[2i][c], v[2i+1][c]): the output of 4 rows
//           x 64 columns takes 4 loads and 4 broadcast weight pairs per key pair.
// Padded keys (to a whole block) are zero and masked. Query rows go in blocks of kRows (a work item
// per head and block, parallel over both); each block runs over the key blocks of kCols keys with
// its running max, sum and output in L1.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "vk.h"

#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")
#include <immintrin.h>

namespace {

constexpr int kRows = 32;  // query rows per work item
constexpr int kCols = vk::kFlashKeyBlock;  // keys per block (64)
constexpr int kTiles = kCols / 16;

// 2^x for x <= 0 (scores minus their max, in log2 units); 0 below 2^-126 (and for -inf).
// Degree 5 after range reduction: relative error ~3e-6, far below the bf16 rounding of the weight.
inline __m512 exp2_neg(__m512 x) {
  const __mmask16 live = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-126.0f), _CMP_GE_OQ);
  const __m512 n = _mm512_roundscale_ps(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  const __m512 f = _mm512_sub_ps(x, n);  // [-0.5, 0.5]
  __m512 p = _mm512_set1_ps(1.3333558146428443e-3f);
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.6181291076284770e-3f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(5.5504108664821580e-2f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.4022650695910071e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.9314718055994531e-1f));
  p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(1.0f));
  return _mm512_maskz_mov_ps(live, _mm512_scalef_ps(p, n));
}

inline __m512 dot(__m512 acc, __m512i a, __m512i b) { return _mm512_dpbf16_ps(acc, (__m512bh)a, (__m512bh)b); }

inline __mmask16 first_lanes(int64_t n) {
  return n >= 16 ? static_cast<__mmask16>(0xffff) : (n <= 0 ? 0 : static_cast<__mmask16>((1u << n) - 1));
}

// One work item: `rows` (<= kRows) query rows of one head against keys [0, limit(row)).
template <int D>
void rows_block(const vk::FlashArgs& a, const uint32_t* kp, const uint32_t* vp, const uint16_t* q, int64_t rows,
                int64_t q0, uint16_t* out) {
  constexpr int DP = D / 2;   // q words per row
  constexpr int DV = D / 16;  // output vectors per row
  constexpr int CV = DV < 4 ? DV : 4;  // of them accumulated at once (4 rows x CV in registers)
  alignas(64) uint32_t qb[kRows][DP];
  alignas(64) float acc_o[kRows][D];
  alignas(64) float acc_l[kRows][16];
  alignas(64) uint16_t weights[4][kCols];
  float mx[kRows];
  for (int r = 0; r < kRows; ++r) {
    if (r < rows) {
      std::memcpy(qb[r], q + r * a.q_row_stride, D * 2);
    } else {
      std::memset(qb[r], 0, D * 2);
    }
    mx[r] = -INFINITY;
  }
  std::memset(acc_o, 0, sizeof(acc_o));
  std::memset(acc_l, 0, sizeof(acc_l));
  const bool causal = a.causal >= 0;
  // Row r sees keys [0, q0 + r + causal] when causal, else all nk.
  const int64_t kend = causal ? std::min(a.nk, q0 + rows + a.causal) : a.nk;
  const __m512 sl2 = _mm512_set1_ps(a.scale_log2);
  for (int64_t kb = 0; kb < kend; kb += kCols) {
    const uint32_t* kt = kp + (kb / 16) * DP * 16;
    const uint32_t* vt = vp + (kb / 2) * D;
    const bool edge = kb + kCols > a.nk || (causal && kb + kCols > q0 + a.causal + 1);
    for (int g = 0; g < rows; g += 4) {
      __m512 s[4][kTiles];
      for (int r = 0; r < 4; ++r)
        for (int t = 0; t < kTiles; ++t) s[r][t] = _mm512_setzero_ps();
      for (int d = 0; d < DP; ++d) {
        __m512i kv[kTiles];
        for (int t = 0; t < kTiles; ++t) kv[t] = _mm512_load_si512(kt + (t * DP + d) * 16);
        for (int r = 0; r < 4; ++r) {
          const __m512i qw = _mm512_set1_epi32(static_cast<int>(qb[g + r][d]));
          for (int t = 0; t < kTiles; ++t) s[r][t] = dot(s[r][t], kv[t], qw);
        }
      }
      for (int r = 0; r < 4; ++r) {
        const int rr = g + r;
        __m512 bmax = _mm512_set1_ps(-INFINITY);
        const int64_t lim = causal ? std::min(a.nk, q0 + rr + a.causal + 1) : a.nk;
        for (int t = 0; t < kTiles; ++t) {
          s[r][t] = _mm512_mul_ps(s[r][t], sl2);
          if (edge) s[r][t] = _mm512_mask_mov_ps(_mm512_set1_ps(-INFINITY), first_lanes(lim - kb - t * 16), s[r][t]);
          bmax = _mm512_max_ps(bmax, s[r][t]);
        }
        const float mnew = std::max(mx[rr], _mm512_reduce_max_ps(bmax));
        __m512 esum = _mm512_setzero_ps();
        if (mnew == -INFINITY) {  // nothing visible yet in this block (causal rows above it)
          for (int t = 0; t < kTiles; ++t) s[r][t] = _mm512_setzero_ps();
        } else {
          const __m512 m = _mm512_set1_ps(mnew);
          for (int t = 0; t < kTiles; ++t) {
            s[r][t] = exp2_neg(_mm512_sub_ps(s[r][t], m));
            esum = _mm512_add_ps(esum, s[r][t]);
          }
          if (mnew != mx[rr]) {  // rescale what was summed under the old max
            const __m512 alpha = _mm512_set1_ps(mx[rr] == -INFINITY ? 0.f : std::exp2(mx[rr] - mnew));
            for (int c = 0; c < DV; ++c)
              _mm512_store_ps(acc_o[rr] + c * 16, _mm512_mul_ps(_mm512_load_ps(acc_o[rr] + c * 16), alpha));
            _mm512_store_ps(acc_l[rr], _mm512_mul_ps(_mm512_load_ps(acc_l[rr]), alpha));
            mx[rr] = mnew;
          }
        }
        _mm512_store_ps(acc_l[rr], _mm512_add_ps(_mm512_load_ps(acc_l[rr]), esum));
        for (int t = 0; t < kTiles; t += 2)
          _mm512_store_si512(weights[r] + t * 16, (__m512i)_mm512_cvtne2ps_pbh(s[r][t + 1], s[r][t]));
      }
      const uint32_t* pw = reinterpret_cast<const uint32_t*>(weights);
      for (int c0 = 0; c0 < DV; c0 += CV) {
        __m512 o[4][CV];
        for (int r = 0; r < 4; ++r)
          for (int c = 0; c < CV; ++c) o[r][c] = _mm512_load_ps(acc_o[g + r] + (c0 + c) * 16);
        for (int j = 0; j < kCols / 2; ++j) {
          __m512i vv[CV];
          for (int c = 0; c < CV; ++c) vv[c] = _mm512_load_si512(vt + j * D + (c0 + c) * 16);
          for (int r = 0; r < 4; ++r) {
            const __m512i w = _mm512_set1_epi32(static_cast<int>(pw[r * (kCols / 2) + j]));
            for (int c = 0; c < CV; ++c) o[r][c] = dot(o[r][c], vv[c], w);
          }
        }
        for (int r = 0; r < 4; ++r)
          for (int c = 0; c < CV; ++c) _mm512_store_ps(acc_o[g + r] + (c0 + c) * 16, o[r][c]);
      }
    }
  }
  for (int r = 0; r < rows; ++r) {
    const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(_mm512_load_ps(acc_l[r])));
    for (int c = 0; c < DV; ++c) {
      const __m256bh b = _mm512_cvtneps_pbh(_mm512_mul_ps(_mm512_load_ps(acc_o[r] + c * 16), inv));
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + r * a.out_row_stride + c * 16), (__m256i)b);
    }
  }
}

}  // namespace

namespace vk {

bool flash_head_dim_supported(int64_t head_dim) {
  return head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 128;
}

// Keys [t * 16, t * 16 + 16) of one KV head into its packed key tile and value pairs.
void flash_pack_tile(const uint16_t* k, int64_t k_row, const uint16_t* v, int64_t v_row, int64_t nk, int64_t d,
                     int64_t tile, uint32_t* kp, uint32_t* vp) {
  const int64_t dp = d / 2;
  uint32_t* kt = kp + tile * dp * 16;
  for (int i = 0; i < 16; ++i) {
    const int64_t j = tile * 16 + i;
    const uint32_t* row = reinterpret_cast<const uint32_t*>(k + j * k_row);
    for (int64_t w = 0; w < dp; ++w) kt[w * 16 + i] = j < nk ? row[w] : 0u;
  }
  uint32_t* vt = vp + tile * 8 * d;
  for (int pair = 0; pair < 8; ++pair) {
    const int64_t j0 = tile * 16 + 2 * pair, j1 = j0 + 1;
    const uint16_t* r0 = v + j0 * v_row;
    const uint16_t* r1 = v + j1 * v_row;
    for (int64_t c = 0; c < d; ++c) {
      const uint32_t lo = j0 < nk ? r0[c] : 0u, hi = j1 < nk ? r1[c] : 0u;
      vt[pair * d + c] = lo | (hi << 16);
    }
  }
}

void flash_rows(const FlashArgs& a, int64_t head, int64_t q0, int64_t rows) {
  const int64_t kvh = head / a.groups;
  const uint32_t* kp = a.kpack + kvh * a.nk_padded * a.head_dim / 2;
  const uint32_t* vp = a.vpack + kvh * a.nk_padded * a.head_dim / 2;
  const uint16_t* q = a.q + head * a.q_head_stride + q0 * a.q_row_stride;
  uint16_t* out = a.out + q0 * a.out_row_stride + head * a.head_dim;
  for (int64_t r = 0; r < rows; r += kRows) {
    const int64_t n = std::min<int64_t>(kRows, rows - r);
    const uint16_t* qr = q + r * a.q_row_stride;
    uint16_t* orow = out + r * a.out_row_stride;
    switch (a.head_dim) {
      case 16:
        rows_block<16>(a, kp, vp, qr, n, q0 + r, orow);
        break;
      case 32:
        rows_block<32>(a, kp, vp, qr, n, q0 + r, orow);
        break;
      case 64:
        rows_block<64>(a, kp, vp, qr, n, q0 + r, orow);
        break;
      default:
        rows_block<128>(a, kp, vp, qr, n, q0 + r, orow);
    }
  }
}

int flash_rows_per_item() { return kRows; }

}  // namespace vk
