"""The linear layers of the quantized and bf16 weight formats, each with nn.Linear's call
interface, so the model code calls them as it calls any Linear; `quant` swaps them in.

- `Int8Linear`, `Int4Linear`: weight-only int8 (per output channel) and int4 (per group along K).
  They run on the engine's own kernels (`vision.engine.kernels`: int8 activations per block of 32,
  integer dot products, one weight pass for up to 8 rows, a blocked GEMM for prompt-sized calls;
  int4 as llama.cpp's Q4_0 x Q8_0) wherever those build; torch's packed weight-only ops
  (`_weight_int8pack_mm`, `_weight_int4pack_mm_for_cpu`) are the fallback. Those torch ops are an
  order of magnitude slower with fp32 activations than with bf16 ones (a scalar path), so the
  fallback casts its input to bf16 for the matmul and the result back: callers keep fp32 in and
  fp32 out. torchao's `quantize_` wraps the same ops several times slower and is not used, nor is
  `torch.ao.quantization` (deprecated in torch 2.13). Measured figures: `python -m bench kernels`.
- `W8A8Linear`: dynamic per-token int8 activations x int8 weights (torch._int_mm), opt-in.
- `Bf16Linear`: a bf16 Linear whose few-row calls run on the kernels' bf16 GEMV.
- `KeepFp32Linear`: a Linear exempted from bf16 inside a bf16 module.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# int4 group size of torch's op. Kernel speed is the same for 32..128; what differs is accuracy
# vs. scale bytes. Plain round-to-nearest on N(0, 0.02) weights (2048x2048) gives a relative
# output error of 0.078 (g=32), 0.087 (g=64), 0.098 (g=128) for bf16 scale+zero costs of 1.0,
# 0.5, 0.25 bit/weight: 64 keeps most of the accuracy of 32 for half its overhead (4.5 bits/weight).
INT4_GROUP_SIZE = 64

# Activations of torch's packed int8/int4 ops: bf16 (their fp32 path is a scalar one).
_KERNEL_ACT_DTYPE = torch.bfloat16


def _flatten(x: torch.Tensor, in_features: int) -> torch.Tensor:
    return x.reshape(-1, in_features)


def quantize_per_channel(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric int8 per output channel: (q (N, K) int8, scales (N,) fp32), w ~ q * scales."""
    w = w.detach().float()
    # 127, not 128: symmetric range keeps -w and w exact mirror images.
    scales = (w.abs().amax(dim=1) / 127.0).clamp(min=1e-12)
    q = torch.round(w / scales[:, None]).clamp_(-127, 127).to(torch.int8)
    return q.contiguous(), scales


class Int8Linear(nn.Module):
    """Weight-only int8 linear: symmetric per-output-channel scales, any float activations.

    Two implementations, chosen once per process (`vision.engine.kernels.active_isa()`):
    - our kernel (`vision/engine/kernels/`): weights repacked at construction into 16-column
      panels; each call quantizes its activation rows to int8 per block of 32 and runs integer
      dot products (AVX-512 VNNI, AVX-VNNI or AVX2: the kernel path in force). One pass over the weights serves
      up to 8 rows, and many-row calls (prefill, vision) are a blocked GEMM over the same bytes,
      so no call builds a float copy of the weight. Activation rounding adds a relative error of
      ~0.005 (tests/engine/test_kernels_linears.py) to the weights' ~0.008.
    - torch's `_weight_int8pack_mm` (bf16 activations, a GEMV per row) where the kernels cannot
      be built: the weight is kept as (N, K) int8.

    `prefill_dtype` (from `autotune`, a per-CPU fact): calls of at least PREFILL_MIN_ROWS rows
    dequantize the weight in chunks of CHUNK_COLUMNS output columns and run a dense GEMM in that
    dtype (bf16 where it is native: AMX's bf16 GEMM outruns any int8 VNNI GEMM). A chunk is
    4 MB at K=2048 in bf16, never a whole copy of the weight.
    """

    PREFILL_MIN_ROWS = 32
    CHUNK_COLUMNS = 1024

    def __init__(
        self,
        qweight: torch.Tensor,
        scales: torch.Tensor,
        bias: torch.Tensor | None,
        prefill_dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        from . import kernels

        self.out_features, self.in_features = qweight.shape
        self.prefill_dtype = prefill_dtype  # dense-GEMM dtype for >= PREFILL_MIN_ROWS rows, or None
        self.packed_layout = kernels.active_isa() != kernels.TORCH_OP
        if self.packed_layout:
            self.register_buffer("packed", kernels.pack_int8(qweight))  # (N/16, Kp*16) uint8
            self.register_buffer("wscale", kernels.pad_to_panels(scales, self.out_features))  # (Np,) fp32
            self.register_buffer(
                "bias_padded", None if bias is None else kernels.pad_to_panels(bias, self.out_features)
            )
        else:
            self.register_buffer("qweight_nk", qweight)  # (N, K) int8
            # the torch op wants its scales in the activation dtype (bf16)
            self.register_buffer("scales_act", scales.to(_KERNEL_ACT_DTYPE))
        self.register_buffer("bias", bias)  # (N,) in the original float dtype, or None

    @classmethod
    def from_linear(cls, lin: nn.Linear, prefill_dtype: torch.dtype | None = None) -> Int8Linear:
        q, scales = quantize_per_channel(lin.weight)
        bias = None if lin.bias is None else lin.bias.detach().clone()
        return cls(q, scales, bias, prefill_dtype)

    @property
    def qweight(self) -> torch.Tensor:
        """(N, K) int8, whatever the storage layout (a copy when packed)."""
        from . import kernels

        if self.packed_layout:
            return kernels.unpack_int8(self.packed, self.out_features, self.in_features)
        return self.qweight_nk

    @property
    def scales(self) -> torch.Tensor:
        """(N,) per-channel scales (fp32 when packed, bf16 for the torch op)."""
        return self.wscale[: self.out_features] if self.packed_layout else self.scales_act

    def _dequant_chunk(self, n0: int, n1: int, dtype: torch.dtype) -> torch.Tensor:
        if self.packed_layout:
            from . import kernels

            return kernels.module().dequant(self.packed, self.wscale, self.in_features, n0, n1, dtype)
        return self.qweight_nk[n0:n1].to(dtype) * self.scales_act[n0:n1].to(dtype)[:, None]

    def _dense(self, x2: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """x2 @ W.T in `dtype`, dequantizing CHUNK_COLUMNS output columns at a time."""
        xd = x2.to(dtype)
        out = torch.empty(x2.shape[0], self.out_features, dtype=dtype)
        for n0 in range(0, self.out_features, self.CHUNK_COLUMNS):
            n1 = min(n0 + self.CHUNK_COLUMNS, self.out_features)
            out[:, n0:n1] = F.linear(xd, self._dequant_chunk(n0, n1, dtype))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from . import kernels

        flat = x.dim() == 2  # the runner's calls: (tokens, K), no reshape either way
        x2 = x if flat else _flatten(x, self.in_features)  # (B*T, K)
        if self.prefill_dtype is not None and x2.shape[0] >= self.PREFILL_MIN_ROWS:
            y = self._dense(x2, self.prefill_dtype).to(x.dtype)
            if self.bias is not None:
                y = y + self.bias.to(x.dtype)
        elif self.packed_layout:
            path = _kernel_path(self)
            # fp32 or bf16 in, the same dtype out (the kernel casts at its edges); other float
            # dtypes are cast here.
            xk = x2 if x2.dtype in (torch.float32, torch.bfloat16) else x2.float()
            y = kernels.module().linear(xk, self.packed, self.wscale, _bias(self), self.out_features, path)
            if y.dtype != x.dtype:
                y = y.to(x.dtype)
        else:
            y = torch.ops.aten._weight_int8pack_mm(x2.to(_KERNEL_ACT_DTYPE), self.qweight_nk, self.scales_act)
            y = y.to(x.dtype)
            if self.bias is not None:
                y = y + self.bias.to(x.dtype)
        return y if flat else y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        kernel = "packed panels" if self.packed_layout else "torch int8pack"
        return (
            f"in={self.in_features}, out={self.out_features}, int8 per-channel, {kernel}, "
            f"prefill={self.prefill_dtype}"
        )


_NO_BIAS = torch.empty(0)


def _kernel_path(layer: nn.Module) -> int:
    """The kernels' index of the path in force, for a layer packed for them (not for torch's op)."""
    from . import kernels

    isa = kernels.active_isa()
    if isa == kernels.TORCH_OP:
        raise RuntimeError(
            f"this {type(layer).__name__} was packed for the engine kernels; build it again for torch's op"
        )
    return kernels.isa_index(isa)


def _bias(layer: nn.Module) -> torch.Tensor:
    """A packed layer's bias padded to whole panels, or the empty tensor the kernels read as none."""
    return layer.bias_padded if layer.bias_padded is not None else _NO_BIAS


class Int4Linear(nn.Module):
    """Weight-only int4 linear, group-wise along K. Two implementations, as Int8Linear:

    - our kernel (`vision.engine.kernels.linear4`, whenever the kernels build and no explicit
      group size is asked for): symmetric round-to-nearest, one fp32 scale per output channel per
      group of 32 (= the activation block, llama.cpp's Q4_0 x Q8_0), two weights per byte in
      the int8 panels' order; activations int8 per block of 32, integer dot products on the kernel path in force.
      5 bits per weight with the scales. Relative error vs fp32 ~0.09 (tests/engine/test_kernels_linears.py).
    - torch's `_weight_int4pack_mm_for_cpu` (tinygemm layout, asymmetric scale + zero per group of
      `group_size`, bf16 activations): where the kernels are unavailable (logged once by
      `kernels.module()`), or when a caller passes `group_size`.
    """

    def __init__(
        self,
        packed: torch.Tensor,
        scales_zeros: torch.Tensor | None,
        bias: torch.Tensor | None,
        in_features: int,
        out_features: int,
        group_size: int,
        kernel_layout: bool = False,
    ) -> None:
        super().__init__()
        from . import kernels

        self.in_features, self.out_features, self.group_size = in_features, out_features, group_size
        # ours: packed (N/16, Kp/32 * 320) uint8, nibbles and fp32 scales (kernels.pack_int4);
        # torch's: packed (N, K/2) uint8 + scales_zeros (K/g, N, 2) bf16
        self.kernel_layout = kernel_layout
        self.register_buffer("packed", packed)
        self.register_buffer("scales_zeros", scales_zeros)
        self.register_buffer(
            "bias_padded",
            None if bias is None or not self.kernel_layout else kernels.pad_to_panels(bias, out_features),
        )
        self.register_buffer("bias", bias)

    @staticmethod
    def _kernels_available() -> bool:
        from . import kernels

        return kernels.active_isa() != kernels.TORCH_OP

    @classmethod
    def supports(cls, lin: nn.Linear, group_size: int = INT4_GROUP_SIZE) -> bool:
        """Whole groups along K: 32 on our kernel, `group_size` (64) on torch's op."""
        from . import kernels

        group = kernels.BLOCK if cls._kernels_available() else group_size
        return lin.in_features % group == 0 and lin.in_features % 2 == 0

    @classmethod
    def from_linear(cls, lin: nn.Linear, group_size: int | None = None) -> Int4Linear:
        from . import kernels

        n, k = lin.weight.shape
        bias = None if lin.bias is None else lin.bias.detach().clone()
        if group_size is None and cls._kernels_available():
            q, scales = kernels.quantize_int4(lin.weight)
            return cls(kernels.pack_int4(q, scales), None, bias, k, n, kernels.BLOCK, kernel_layout=True)
        group_size = group_size or INT4_GROUP_SIZE
        wg = lin.weight.detach().float().reshape(n, k // group_size, group_size)
        lo, hi = wg.amin(-1, keepdim=True), wg.amax(-1, keepdim=True)
        scale = ((hi - lo) / 15.0).clamp(min=1e-12)
        q = torch.round((wg - lo) / scale).clamp_(0, 15).to(torch.int32).reshape(n, k)
        # tinygemm dequantizes as (q - 8) * scale + zero, so zero = lo + 8 * scale gives q*scale+lo.
        zero = lo + 8.0 * scale
        scales_zeros = torch.cat([scale, zero], dim=-1).transpose(0, 1).contiguous()  # (K/g, N, 2)
        packed = torch.ops.aten._convert_weight_to_int4pack_for_cpu(q, 1)
        return cls(packed, scales_zeros.to(_KERNEL_ACT_DTYPE), bias, k, n, group_size)

    def dequantized(self) -> torch.Tensor:
        """(N, K) fp32 weight the kernel layout computes with (tests)."""
        from . import kernels

        assert self.kernel_layout, "only the kernel layout is dequantized here"
        q, s = kernels.unpack_int4(self.packed, self.out_features)
        nblk = s.shape[1]
        return (q.float().view(self.out_features, nblk, -1) * s[..., None]).view(self.out_features, -1)[
            :, : self.in_features
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from . import kernels

        x2 = _flatten(x, self.in_features)
        if self.kernel_layout:
            path = _kernel_path(self)
            y = kernels.module().linear4(
                x2.float().contiguous(), self.packed, _bias(self), self.out_features, path
            )
            return y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)
        y = torch.ops.aten._weight_int4pack_mm_for_cpu(
            x2.to(_KERNEL_ACT_DTYPE), self.packed, self.group_size, self.scales_zeros
        )
        y = y.to(x.dtype)
        if self.bias is not None:
            y = y + self.bias.to(x.dtype)
        return y.reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        kernel = "symmetric, packed panels" if self.kernel_layout else "asymmetric, torch int4pack"
        return f"in={self.in_features}, out={self.out_features}, int4 group={self.group_size}, {kernel}"


class W8A8Linear(nn.Module):
    """Dynamic int8 activations (symmetric, per token) x int8 weights (per output channel).

    Opt-in: real Qwen models have activation outliers that per-token quantization can damage,
    and random weights cannot show it. Its use is compute-bound work on CPUs with VNNI (a
    prompt-sized GEMM beats bf16 and fp32); for one-row decode it is slower than int8 weight-only
    because of the per-call activation quantization.
    """

    def __init__(self, qweight: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None) -> None:
        super().__init__()
        self.out_features, self.in_features = qweight.shape
        self.register_buffer("qweight", qweight)  # (N, K) int8; used as a (K, N) transposed view
        self.register_buffer("scales", scales)  # (N,) fp32
        self.register_buffer("bias", bias)

    @classmethod
    def from_linear(cls, lin: nn.Linear) -> W8A8Linear:
        q, scales = quantize_per_channel(lin.weight)
        return cls(q, scales, None if lin.bias is None else lin.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2 = _flatten(x, self.in_features).float()  # (T, K)
        x_scale = (x2.abs().amax(dim=1, keepdim=True) / 127.0).clamp(min=1e-12)  # (T, 1)
        xq = torch.round(x2 / x_scale).clamp_(-127, 127).to(torch.int8)
        acc = torch._int_mm(xq, self.qweight.t())  # (T, N) int32
        y = acc.float() * x_scale * self.scales
        if self.bias is not None:
            y = y + self.bias.float()
        return y.to(x.dtype).reshape(*x.shape[:-1], self.out_features)

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, w8a8 dynamic per-token"


class Bf16Linear(nn.Linear):
    """A bf16 Linear whose few-row bf16 calls (decode) run on the kernels' bf16 GEMV.

    oneDNN's bf16 GEMV reads weights at about half the memory bandwidth, and a bf16 decode step
    is nothing but weight reads. The kernel (`csrc/gemv_bf16.cpp`, AVX-512 BF16)
    reads the weight as nn.Linear keeps it, so nothing is copied and a tied lm_head stays tied;
    calls of more than KERNEL_MAX_ROWS rows (prefill, compute-bound) stay on F.linear. Made by
    `use_bf16_kernel` on CPUs that have AVX-512 BF16; outputs match F.linear to the last bf16 bit
    or one step (fp32 sums in another order).
    """

    KERNEL_MAX_ROWS = 8

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // self.in_features if self.in_features else 0
        from . import kernels

        if x.dtype != torch.bfloat16 or rows == 0 or rows > self.KERNEL_MAX_ROWS or not kernels.isa().bf16:
            return F.linear(x, self.weight, self.bias)  # (a path forced below AVX-512 BF16: torch's)

        bias = self.bias if self.bias is not None else _NO_BIAS
        y = kernels.linear_bf16(x.reshape(rows, self.in_features), self.weight, bias)
        return y.reshape(*x.shape[:-1], self.out_features)


class KeepFp32Linear(nn.Linear):
    """A Linear that `skip` exempted from bf16: stays fp32 inside a bf16 module, casts at its edges."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.to(self.weight.dtype), self.weight, self.bias).to(x.dtype)
