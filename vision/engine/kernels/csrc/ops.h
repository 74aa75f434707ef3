// The torch operators of the extension: declared here, bound to Python in binding.cpp, implemented
// by kind in ops_linear.cpp (the int8, int4 and bf16 linears, the dense path's dequantizer, the
// int8 peak), ops_fused.cpp (RMSNorm and the fused bf16 decode ops, the vision GELU and rotary),
// ops_attention.cpp (decode and prefill attention) and ops_threads.cpp (the OpenMP pool). They
// check their tensors, allocate the outputs and run the kernels of vk.h over torch's threads.
//
// Nothing here reads cpuid: every op takes its path from `isa` (the index of kernels.ISAS), which
// Python's `kernels.Isa` decided from the CPU's flags and VISION_KERNEL_ISA; the caller guarantees
// the CPU runs it. The AVX-512 BF16 ops (prefill attention, bf16 GEMV) are called only where
// `Isa.bf16` says so.
#pragma once
#include <cstdint>
#include <vector>
#include <torch/types.h>

namespace ops {

// The kernel paths, as kernels.ISAS orders them.
enum Isa : int64_t { kRef = 0, kAvx2 = 1, kAvxVnni = 2, kAvx512Vnni = 3 };

inline void check_isa(int64_t isa) {
  TORCH_CHECK(isa >= kRef && isa <= kAvx512Vnni, "kernel path index ", isa, " (0..3)");
}

// Whether the elementwise loops of path `isa` run 16-lane AVX-512F/BW code on rows of n values.
inline bool avx512_rows(int64_t isa, int64_t n) { return isa == kAvx512Vnni && n % 16 == 0; }

inline int64_t round_up(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

// ops_linear.cpp
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& packed, const torch::Tensor& wscale,
                     const torch::Tensor& bias, int64_t n, int64_t isa);
torch::Tensor linear4(const torch::Tensor& x, const torch::Tensor& packed, const torch::Tensor& bias, int64_t n,
                      int64_t isa);
torch::Tensor dequant(const torch::Tensor& packed, const torch::Tensor& wscale, int64_t k, int64_t n0, int64_t n1,
                      torch::ScalarType dtype);
torch::Tensor linear_bf16(const torch::Tensor& x_in, const torch::Tensor& w_in, const torch::Tensor& bias_in);
int64_t int8_dot_peak(int64_t isa, int64_t iters);

// ops_fused.cpp
torch::Tensor rms_norm_bf16(const torch::Tensor& x, const torch::Tensor& w, double eps, int64_t isa);
torch::Tensor add_rms_norm_bf16(torch::Tensor hidden, const torch::Tensor& delta, const torch::Tensor& w,
                                double eps, int64_t isa);
torch::Tensor decode_qk_rope_store(const torch::Tensor& qkv, const torch::Tensor& qn, const torch::Tensor& kn,
                                   const torch::Tensor& cos, const torch::Tensor& sin, torch::Tensor keys,
                                   torch::Tensor values, const torch::Tensor& slots,
                                   const torch::Tensor& positions, int64_t heads, int64_t kv_heads, double eps,
                                   int64_t isa);
torch::Tensor gelu_tanh_(torch::Tensor x, int64_t isa);
torch::Tensor vision_qkv_rope_bf16(const torch::Tensor& qkv, const torch::Tensor& cos, const torch::Tensor& sin,
                                   int64_t heads, int64_t isa);

// ops_attention.cpp
torch::Tensor decode_attention(const torch::Tensor& q, const torch::Tensor& keys, const torch::Tensor& values,
                               const torch::Tensor& slots, const torch::Tensor& lens, double scale, int64_t isa);
std::vector<torch::Tensor> attention_pack(const torch::Tensor& k, const torch::Tensor& v);
torch::Tensor prefill_attention(const torch::Tensor& q, const torch::Tensor& kpack, const torch::Tensor& vpack,
                                int64_t nk, double scale, int64_t causal, torch::Tensor out);

// ops_threads.cpp
int64_t parallel_threads(int64_t items);
int64_t release_thread_pool();

}  // namespace ops
