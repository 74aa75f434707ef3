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
        a.y[m * a.ldy + col] = std::fma(acc, a.wscale[col], a.bias ? a.bias[col] : 0.f);
      }
    }
  }
}

#include "quant_impl.h"

}  // namespace

namespace vk {
GemmFn gemm_ref() { return &gemm; }
QuantFn quant_ref() { return &quant_rows; }
}  // namespace vk
