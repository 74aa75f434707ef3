// Portable scalar path (any CPU the compiler targets): the same arithmetic as the vector paths,
// used where none of them runs and as the reference the tests compare them with.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "vk.h"

namespace {

void gemm(const vk::Args& a, int64_t pb, int64_t pe) {
  const int64_t nblk = a.kp / vk::kBlock;
  const int64_t pstride = a.kp * vk::kPanel;
  for (int64_t p = pb; p < pe; ++p) {
    for (int j = 0; j < vk::kPanel; ++j) {
      const int64_t col = p * vk::kPanel + j;
      if (col >= a.n) break;
      for (int64_t m = 0; m < a.m; ++m) {
        const int8_t* xr = a.xq + m * a.kp;
        float acc = 0.f;
        for (int64_t b = 0; b < nblk; ++b) {
          int32_t dot = 0;
          for (int64_t k = b * vk::kBlock; k < (b + 1) * vk::kBlock; ++k) {
            const uint8_t wu = a.w[p * pstride + (k / 4) * vk::kGroupBytes + j * 4 + (k % 4)];
            dot += (static_cast<int32_t>(wu) - 128) * xr[k];
          }
          acc = std::fma(static_cast<float>(dot), a.xscale[m * nblk + b], acc);
        }
        const float out = std::fma(acc, a.wscale[col], a.bias ? a.bias[col] : 0.f);
        if (a.y16) {
          a.y16[m * a.ldy + col] = vk::bf16_rne(out);
        } else {
          a.y[m * a.ldy + col] = out;
        }
      }
    }
  }
}

// int4 (layout in vk.h): signed q * x summed exactly per block, then the same fp32 steps as the
// vector tiles: acc = fma(dot, xscale * wscale, acc) per block, y = acc + bias.
void gemm4(const vk::Args& a, int64_t pb, int64_t pe) {
  const int64_t nblk = a.kp / vk::kBlock;
  const int64_t pstride = nblk * vk::kBlockBytes4;
  for (int64_t p = pb; p < pe; ++p) {
    for (int j = 0; j < vk::kPanel; ++j) {
      const int64_t col = p * vk::kPanel + j;
      if (col >= a.n) break;
      for (int64_t m = 0; m < a.m; ++m) {
        const int8_t* xr = a.xq + m * a.kp;
        float acc = 0.f;
        for (int64_t b = 0; b < nblk; ++b) {
          const uint8_t* wb = a.w + p * pstride + b * vk::kBlockBytes4;
          int32_t dot = 0;
          for (int kk = 0; kk < vk::kBlock; ++kk) {
            const int g = kk / 4, t = kk % 4;
            const uint8_t byte = wb[(g % 4) * vk::kPairBytes + j * 4 + t];
            const int32_t q = static_cast<int32_t>(g < 4 ? (byte & 15) : (byte >> 4)) - 8;
            dot += q * xr[b * vk::kBlock + kk];
          }
          float ws;
          std::memcpy(&ws, wb + vk::kNibbleBytes4 + j * 4, 4);
          const float s = a.xscale[m * nblk + b] * ws;
          acc = std::fma(static_cast<float>(dot), s, acc);
        }
        const float out = acc + (a.bias ? a.bias[col] : 0.f);
        if (a.y16) {
          a.y16[m * a.ldy + col] = vk::bf16_rne(out);
        } else {
          a.y[m * a.ldy + col] = out;
        }
      }
    }
  }
}

#include "quant_impl.h"

}  // namespace

namespace vk {
GemmFn gemm_ref() { return &gemm; }
GemmFn gemm4_ref() { return &gemm4; }
QuantFn quant_ref() { return &quant_rows; }
}  // namespace vk
