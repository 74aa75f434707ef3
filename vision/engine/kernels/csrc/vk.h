// Shared declarations of the int8 weight-only linear kernels (no torch headers: the ISA files are
// compiled for instruction sets the build machine's baseline lacks, and must not instantiate
// inline torch code that the linker could then pick for every CPU).
#pragma once
#include <cstdint>
#include <cstring>

namespace vk {

// Columns per panel: one 512-bit register of int32 lanes (two 256-bit halves on AVX2).
constexpr int kPanel = 16;
// Activation quantization block along K (one fp32 scale per block per row), as llama.cpp's Q8_0.
constexpr int kBlock = 32;
// Bytes of one k-group of a panel: 16 columns x 4 consecutive k (one dpbusd operand).
constexpr int kGroupBytes = kPanel * 4;

struct Args {
  // Packed weights: [n_panels][kp/4][16 columns][4 k] bytes, each w + 128 (uint8).
  const uint8_t* w;
  const float* wscale;  // [np] per output channel (0 in the padding)
  const float* bias;    // [n] or nullptr
  const int8_t* xq;     // [m][kp] quantized activations, zero padded
  const float* xscale;  // [m][kp / kBlock]
  const int32_t* xcorr; // [m][kp / kBlock]: -128 * sum of the block's xq (unsigned-weight trick)
  float* y;             // [m][ldy] fp32, or nullptr when y16 is set
  int64_t m, n, kp, ldy;
  uint16_t* y16 = nullptr;  // [m][ldy] bf16 (round to nearest even, as Tensor.to) instead of y
};

// fp32 -> bf16 bits, round to nearest even, NaN -> 0x7fc0: c10::BFloat16's conversion exactly.
inline uint16_t bf16_rne(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fc0;
  return static_cast<uint16_t>((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

// int4 group-wise (Q4_0 x Q8_0, as llama.cpp): the same Args with
//   w:      [n_panels][kp/32 blocks] of 320 bytes: 256 bytes of nibbles, [4 pairs][16 columns][4 k],
//           then the block's 16 fp32 column scales (one stream per panel, as llama.cpp keeps the
//           scale beside its quants: one prefetch stream instead of two). Byte (pair p, column c,
//           t) holds q + 8 of k = 32 b + 4 p + t in its low nibble and of k = 32 b + 4 (p + 4) + t
//           in its high nibble (q in [-8, 7]), so one 64-byte load gives two dpbusd operands;
//   wscale: unused (nullptr);
//   xcorr:  as for int8 (-128 * block sum); the int4 tile starts each block at xcorr / 16 = -8 * sum.
constexpr int kPairBytes = kGroupBytes;                  // one 64-byte load: two k-groups of 16 columns
constexpr int kNibbleBytes4 = kPanel * kBlock / 2;       // 256 bytes of weights per panel per block
constexpr int kBlockBytes4 = kNibbleBytes4 + kPanel * 4;  // + 16 fp32 scales: 320

using GemmFn = void (*)(const Args&, int64_t panel_begin, int64_t panel_end);
// Quantize rows [r0, r1) of x (m x k fp32, row stride ldx) into xq/xscale/xcorr (row stride kp).
using QuantFn = void (*)(const float* x, int64_t ldx, int64_t k, int64_t kp, int64_t r0, int64_t r1,
                         int8_t* xq, float* xscale, int32_t* xcorr);

// Each returns nullptr-free function pointers; which one may run is decided by the caller
// (Python's kernels.Isa, from the CPU's flags: nothing here reads cpuid).
GemmFn gemm_avx512vnni();
GemmFn gemm_avxvnni();
GemmFn gemm_avx2();
GemmFn gemm_ref();
GemmFn gemm4_avx512vnni();
GemmFn gemm4_avxvnni();
GemmFn gemm4_avx2();
GemmFn gemm4_ref();
QuantFn quant_avx512();
QuantFn quant_ref();
// Register-only int8 dot-product loops (tile_impl.h dot_peak): multiply-adds done by `iters` rounds.
using DotPeakFn = int64_t (*)(int64_t iters);
DotPeakFn dot_peak_avx2();
DotPeakFn dot_peak_avxvnni();
DotPeakFn dot_peak_avx512vnni();
inline volatile int32_t dot_peak_sink = 0;

// Decode attention (attn_impl.h, built once per ISA file): one sequence's `groups` query heads
// sharing one KV head.
// q: groups rows of head_dim bf16, q_head_stride apart; k, v: `len` rows, kv_row_stride apart;
// scores: groups * len floats of scratch; out: groups rows of head_dim bf16, contiguous.
struct AttnArgs {
  int64_t groups, head_dim, q_head_stride, kv_row_stride;
  float scale;
};
using AttnFn = void (*)(const AttnArgs&, const uint16_t* q, const uint16_t* k, const uint16_t* v, int64_t len,
                        float* scores, uint16_t* out);
AttnFn attn_avx512();
AttnFn attn_avx2();
int attn_max_groups();
int attn_max_head_dim();

// Prefill attention (flash_avx512bf16.cpp, AVX-512 BF16 only): query rows of several heads against
// packed keys and values (see that file for the packing), fp32 online softmax, bf16 out.
constexpr int kFlashKeyBlock = 64;  // keys per block; packed keys are padded to a whole block
struct FlashArgs {
  const uint16_t* q;  // row i of head h at q + h * q_head_stride + i * q_row_stride (head_dim contiguous)
  int64_t q_head_stride, q_row_stride;
  const uint32_t* kpack;  // [kv head][nk_padded / 16][head_dim / 2][16]
  const uint32_t* vpack;  // [kv head][nk_padded / 2][head_dim]
  int64_t nk, nk_padded, head_dim, groups;  // query head h uses kv head h / groups
  int64_t causal;    // -1: every key; else query row i of the call sees keys j <= i + causal
  float scale_log2;  // softmax scale * log2(e)
  uint16_t* out;     // row i, head h at out + i * out_row_stride + h * head_dim
  int64_t out_row_stride;
};
bool flash_head_dim_supported(int64_t head_dim);
// Keys [16 tile, 16 tile + 16) of one KV head (rows k_row / v_row apart; keys >= nk packed as 0).
void flash_pack_tile(const uint16_t* k, int64_t k_row, const uint16_t* v, int64_t v_row, int64_t nk, int64_t d,
                     int64_t tile, uint32_t* kpack, uint32_t* vpack);
// Query rows [q0, q0 + rows) of one head (q0 counts in the call's rows, as `causal` does).
void flash_rows(const FlashArgs& a, int64_t head, int64_t q0, int64_t rows);
int flash_rows_per_item();

// bf16 x bf16 linear for few rows (gemv_bf16.cpp, AVX-512 BF16 only), weights as nn.Linear keeps
// them: y[m][n] = round_bf16(sum_k x[m][k] w[n][k] + bias[n]), fp32 sums.
struct GemvArgs {
  const uint16_t* x;     // [m][k] bf16
  const uint16_t* w;     // [n][k] bf16
  const uint16_t* bias;  // [n] bf16 or nullptr
  uint16_t* y;           // [m][n] bf16
  int64_t m, n, k;
};
void gemv_bf16(const GemvArgs& a, int64_t n0, int64_t n1);  // weight rows [n0, n1)

// Elementwise pieces of the fused bf16 decode ops (fused_avx512.cpp, AVX-512F/BW, rows of a
// multiple of 16 values), bit-identical to the scalar code; ops_fused.cpp runs them on path 3.
void add_bf16_avx512(uint16_t* h, const uint16_t* d, int64_t n);  // h = bf16(h + d)
void rms_bf16_avx512(const uint16_t* x, const uint16_t* w, uint16_t* out, int64_t n, float eps);
void rope_bf16_avx512(const uint16_t* x, const uint16_t* cos, const uint16_t* sin, uint16_t* out, int64_t d);
void gelu_tanh_f32_avx512(float* x, int64_t n);
void vision_rope_f32_bf16_avx512(const float* x, const float* cos, const float* sin, uint16_t* out, int64_t d);
void f32_to_bf16_avx512(const float* x, uint16_t* out, int64_t n);
// The same two on AVX2 (fused_avx2.cpp, 8 lanes: d/2 and n multiples of 8), bit-identical.
void vision_rope_f32_bf16_avx2(const float* x, const float* cos, const float* sin, uint16_t* out, int64_t d);
void f32_to_bf16_avx2(const float* x, uint16_t* out, int64_t n);

}  // namespace vk
