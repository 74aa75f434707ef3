"""Weight formats for the Qwen3-VL engine on CPU: fp32, bf16, int8, int4, w8a8.

Decode is bound by weight bytes read per token, the vision tower and prefill by FLOPs, so each
part of the model gets its own format (`quantize_qwen3vl`); `autotune` picks them by timing.

Kernels. We call torch's packed weight-only ops directly rather than torchao's `quantize_`:
measured on this project's avx512_bf16 EPYC (2 threads, 16 distinct 2048x6144 weights so they
stream from DRAM), one M=1 GEMV costs

    fp32 F.linear                             2.63 ms  (19 GB/s of weights)
    bf16 F.linear                             1.37 ms
    aten._weight_int8pack_mm, bf16 act        0.64 ms  (19 GB/s: at the DRAM floor)
    aten._weight_int8pack_mm, fp32 act        5.63 ms  (a scalar path, 9x slower)
    torchao Int8WeightOnlyConfig, bf16 model  1.99 ms  (3x slower than the raw op)
    torchao Int8WeightOnlyConfig, fp32 model 18.05 ms
    aten._weight_int4pack_mm_for_cpu, bf16    0.33-0.37 ms (group 32..128)
    aten._weight_int4pack_mm_for_cpu, fp32   10.8 ms
    w8a8 (per-token int8 act, torch._int_mm)  1.73 ms

and the AVX2-only EPYC shows the same fp32-activation cliff (10x). So every quantized layer casts
its input to bf16 for the matmul and casts the result back: callers keep fp32 in / fp32 out (the
cast of one activation row is noise next to reading the weights: 0.78 vs 0.64 ms above).
`torch.ao.quantization` is deprecated in torch 2.13 and is not used.

int8 and int4 now run on the engine's own kernels (`vision.engine.kernels`: int8 activations per block
of 32, VNNI / AVX2 integer dot products, one weight pass for up to 8 rows, a blocked GEMM for
prompt-sized calls; int4 as llama.cpp's Q4_0 x Q8_0) wherever they build; the torch ops above
remain the fallback. Measured
figures: `python -m bench kernels`, bench/results/kernels-*.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from vision.engine.contract import WEIGHT_FORMATS

FORMATS: tuple[str, ...] = WEIGHT_FORMATS  # the grammar of the setting lives in the contract
# Formats whose error is below what sampling noise or bf16 accumulation already give; `auto`
# picks only among these. int4 (round-to-nearest, no GPTQ/AWQ) and w8a8 (activation outliers in
# real Qwen models) can change answers and must be asked for.
NEAR_LOSSLESS: tuple[str, ...] = ("fp32", "bf16", "int8")

# int4 group size. Kernel speed is the same for 32..128 (0.33-0.37 ms above); what differs is
# accuracy vs. scale bytes. Plain round-to-nearest on N(0, 0.02) weights (2048x2048) gave a relative
# output error of 0.078 (g=32), 0.087 (g=64), 0.098 (g=128); bf16 scale+zero cost 1.0, 0.5, 0.25
# bit/weight.
# 64 keeps most of the accuracy of 32 for half its overhead (4.5 bits/weight in all).
INT4_GROUP_SIZE = 64

# Activations of the packed int8/int4 kernels: bf16 (see the table in the module docstring).
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
      dot products (AVX-512 VNNI, AVX-VNNI or AVX2 by cpuid). One pass over the weights serves
      up to 8 rows, and many-row calls (prefill, vision) are a blocked GEMM over the same bytes,
      so no call builds a float copy of the weight. Activation rounding adds a relative error of
      ~0.005 (tests/engine/test_kernels.py) to the weights' ~0.008.
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
            isa = kernels.active_isa()
            if isa == kernels.TORCH_OP:
                raise RuntimeError(
                    "this Int8Linear was packed for the engine kernels; build it again for torch's op"
                )
            bias = self.bias_padded if self.bias_padded is not None else _NO_BIAS
            # fp32 or bf16 in, the same dtype out (the kernel casts at its edges); other float
            # dtypes are cast here.
            xk = x2 if x2.dtype in (torch.float32, torch.bfloat16) else x2.float()
            y = kernels.module().linear(
                xk, self.packed, self.wscale, bias, self.out_features, kernels.isa_index(isa)
            )
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


class Int4Linear(nn.Module):
    """Weight-only int4 linear, group-wise along K. Two implementations, as Int8Linear:

    - our kernel (`vision.engine.kernels.linear4`, whenever the kernels build and no explicit
      group size is asked for): symmetric round-to-nearest, one fp32 scale per output channel per
      group of 32 (= the activation block, llama.cpp's Q4_0 x Q8_0), two weights per byte in
      the int8 panels' order; activations int8 per block of 32, integer dot products by cpuid.
      5 bits per weight with the scales. Relative error vs fp32 ~0.09 (tests/engine/test_kernels.py).
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
            isa = kernels.active_isa()
            if isa == kernels.TORCH_OP:
                raise RuntimeError(
                    "this Int4Linear was packed for the engine kernels; build it again for torch's op"
                )
            bias = self.bias_padded if self.bias_padded is not None else _NO_BIAS
            y = (
                kernels.module()
                .linear4(
                    x2.float().contiguous(),
                    self.packed,
                    bias,
                    self.out_features,
                    kernels.isa_index(isa),
                )
                .to(x.dtype)
            )
            return y.reshape(*x.shape[:-1], self.out_features)
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
    and random weights cannot show it. Its use is compute-bound work on CPUs with VNNI: on this
    EPYC a 512x1024->4096 GEMM took 7 ms vs 10 ms bf16 and 31 ms fp32; for M=1 decode it is
    slower than int8 weight-only (1.73 vs 0.64 ms) because of the per-call activation quantization.
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

    oneDNN's bf16 GEMV read weights at about half the memory bandwidth here (issue #15), and a
    bf16 decode step is nothing but weight reads. The kernel (`csrc/gemv_bf16.cpp`, AVX-512 BF16)
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


def use_bf16_kernel(module: nn.Module) -> int:
    """Make every plain bf16 nn.Linear under `module` (itself included) a Bf16Linear sharing its
    parameters, where the kernels run it (AVX-512 BF16); returns how many. A no-op elsewhere."""
    from . import kernels

    if not kernels.bf16_ops_available():
        return 0
    if type(module) is nn.Linear and module.weight.dtype == torch.bfloat16:
        module.__class__ = Bf16Linear  # same parameters, same state dict: only forward changes
        return 1
    changed = 0
    for _, _, _, lin in _linears(module):
        if type(lin) is nn.Linear and lin.weight.dtype == torch.bfloat16:
            lin.__class__ = Bf16Linear
            changed += 1
    return changed


class KeepFp32Linear(nn.Linear):
    """A Linear that `skip` exempted from bf16: stays fp32 inside a bf16 module, casts at its edges."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x.to(self.weight.dtype), self.weight, self.bias).to(x.dtype)


@dataclass
class FormatStats:
    layers: int = 0  # Linear layers now in this format
    bytes_before: int = 0  # their weight (+bias) bytes before conversion
    bytes_after: int = 0  # their weight + bias + scale bytes after


@dataclass
class QuantReport:
    # per format -> counts and bytes of the Linear layers converted to it ("fp32" for kept ones)
    formats: dict[str, FormatStats] = field(default_factory=dict)
    # non-Linear float params/buffers cast for bf16 (norms, embeddings, conv patch embed)
    other_params_cast: int = 0
    # True when a tied lm_head got its own quantized copy (embedding kept in its own format)
    untied_lm_head: bool = False

    @property
    def bytes_before(self) -> int:
        return sum(s.bytes_before for s in self.formats.values())

    @property
    def bytes_after(self) -> int:
        return sum(s.bytes_after for s in self.formats.values())

    def add(self, fmt: str, before: int, after: int) -> None:
        s = self.formats.setdefault(fmt, FormatStats())
        s.layers += 1
        s.bytes_before += before
        s.bytes_after += after

    def merge(self, other: QuantReport) -> QuantReport:
        out = QuantReport(
            other_params_cast=self.other_params_cast + other.other_params_cast,
            untied_lm_head=self.untied_lm_head or other.untied_lm_head,
        )
        for rep in (self, other):
            for fmt, s in rep.formats.items():
                t = out.formats.setdefault(fmt, FormatStats())
                t.layers += s.layers
                t.bytes_before += s.bytes_before
                t.bytes_after += s.bytes_after
        return out

    def summary(self) -> str:
        parts = [
            f"{fmt}: {s.layers} layers {s.bytes_before / 2**20:.1f}->{s.bytes_after / 2**20:.1f} MiB"
            for fmt, s in sorted(self.formats.items())
        ]
        if self.untied_lm_head:
            parts.append("lm_head untied")
        return "; ".join(parts)


def _tensor_bytes(*tensors: torch.Tensor | None) -> int:
    return sum(t.numel() * t.element_size() for t in tensors if t is not None)


def module_bytes(m: nn.Module) -> int:
    """Bytes of a (possibly quantized) linear layer's parameters and buffers."""
    return _tensor_bytes(*m.parameters(recurse=False), *m.buffers(recurse=False))


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise ValueError(f"unknown weight format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return fmt


def quantize_linear(lin: nn.Linear, fmt: str, *, int8_prefill_dtype: torch.dtype | None = None) -> nn.Module:
    """A replacement module for `lin` in `fmt` (int4 falls back to int8 for unsupported shapes)."""
    check_format(fmt)
    if fmt == "int8" or (fmt == "int4" and not Int4Linear.supports(lin)):
        return Int8Linear.from_linear(lin, int8_prefill_dtype)
    if fmt == "int4":
        return Int4Linear.from_linear(lin)
    if fmt == "w8a8":
        return W8A8Linear.from_linear(lin)
    raise ValueError(f"quantize_linear handles int8/int4/w8a8, not {fmt!r}")


def _linears(module: nn.Module) -> list[tuple[nn.Module, str, str, nn.Linear]]:
    """(parent, attribute, full name, linear) for every nn.Linear under `module`."""
    out = []
    for parent_name, parent in module.named_modules():
        for attr, child in parent.named_children():
            if isinstance(child, nn.Linear):
                full = f"{parent_name}.{attr}" if parent_name else attr
                out.append((parent, attr, full, child))
    return out


def format_of_module(m: nn.Module) -> str:
    if isinstance(m, Int4Linear):
        return "int4"
    if isinstance(m, Int8Linear):
        return "int8"
    if isinstance(m, W8A8Linear):
        return "w8a8"
    return "bf16" if m.weight.dtype == torch.bfloat16 else "fp32"


@torch.no_grad()
def quantize_module(
    module: nn.Module,
    fmt: str,
    *,
    skip: Callable[[str, nn.Linear], bool] | None = None,
    int8_prefill_dtype: torch.dtype | None = None,
) -> QuantReport:
    """Convert every nn.Linear under `module` to `fmt` in place; `skip(name, linear)` exempts some.

    `int8_prefill_dtype`: see Int8Linear (from `FormatChoice.int8_prefill_dtype`; None = packed
    kernel for every call, correct and decode-optimal everywhere).

    - fp32: casts float params to fp32 (a no-op for a fp32 model).
    - bf16: casts every float param/buffer of `module` to bf16; skipped Linears stay fp32 and
      cast at their edges (KeepFp32Linear).
    - int8 / int4 / w8a8: replace Linears with packed modules; everything else (norms,
      embeddings, convs) keeps its dtype, and so do activations in and out of each layer.
    """
    check_format(fmt)
    report = QuantReport()
    entries = _linears(module)
    skipped = {full for _, _, full, lin in entries if skip is not None and skip(full, lin)}

    if fmt in ("fp32", "bf16"):
        target = torch.float32 if fmt == "fp32" else torch.bfloat16
        linear_ids = {id(p) for _, _, _, lin in entries for p in lin.parameters()}
        before = {full: module_bytes(lin) for _, _, full, lin in entries}
        seen: set[int] = set()
        for t in list(module.parameters()) + list(module.buffers()):
            if t.is_floating_point() and t.dtype != target and id(t) not in linear_ids and id(t) not in seen:
                seen.add(id(t))
                report.other_params_cast += 1
        module.to(target)
        for parent, attr, full, lin in entries:
            if full in skipped and fmt == "bf16":
                keep = KeepFp32Linear(lin.in_features, lin.out_features, lin.bias is not None, device="meta")
                keep.weight = nn.Parameter(lin.weight.float(), requires_grad=False)
                if lin.bias is not None:
                    keep.bias = nn.Parameter(lin.bias.float(), requires_grad=False)
                setattr(parent, attr, keep)
                lin = keep
            report.add(format_of_module(lin), before[full], module_bytes(lin))
        return report

    for parent, attr, full, lin in entries:
        before = module_bytes(lin)
        if full in skipped:
            report.add(format_of_module(lin), before, before)
            continue
        new = quantize_linear(lin, fmt, int8_prefill_dtype=int8_prefill_dtype)
        setattr(parent, attr, new)
        report.add(format_of_module(new), before, module_bytes(new))
    return report


def _untie_config(config: object) -> None:
    for cfg in (config, getattr(config, "text_config", None)):
        if cfg is not None and getattr(cfg, "tie_word_embeddings", False):
            cfg.tie_word_embeddings = False


@torch.no_grad()
def quantize_qwen3vl(
    model: nn.Module,
    lm_format: str,
    vision_format: str,
    *,
    int8_prefill_dtype: torch.dtype | None = None,
) -> QuantReport:
    """Apply `lm_format` to the language model + lm_head and `vision_format` to the vision tower.

    `model` is a Qwen3VLForConditionalGeneration: `model.model.language_model` (Qwen3VLTextModel),
    `model.model.visual` (Qwen3VLVisionModel, incl. its patch mergers) and `model.lm_head`.

    The lm_head matters: Qwen3-VL-2B ties it to the 151936x2048 embedding, 311M params, ~20% of
    the weight bytes read per decoded token. With a quantized LM format the lm_head gets its own
    quantized copy and the tie is dropped (config too, so a later `tie_weights()` does not undo
    it); the embedding table keeps the LM's float dtype, since a lookup reads one row per token
    and costs nothing to keep exact. With bf16 the tie is kept (both are simply bf16).
    """
    check_format(lm_format)
    check_format(vision_format)
    inner = model.model
    lm_head = model.lm_head
    embed = inner.language_model.get_input_embeddings()
    tied = embed is not None and lm_head.weight is embed.weight
    head_bytes_before = _tensor_bytes(lm_head.weight)

    report = quantize_module(inner.visual, vision_format, int8_prefill_dtype=int8_prefill_dtype)
    report = report.merge(
        quantize_module(inner.language_model, lm_format, int8_prefill_dtype=int8_prefill_dtype)
    )
    if lm_format in ("fp32", "bf16"):
        # The embedding was cast with the language model; a tied lm_head shares that tensor.
        if not tied:
            report = report.merge(quantize_module(_Holder(lm_head), lm_format))
        else:
            # Same tensor as the embedding (already cast with the language model).
            report.add(lm_format, head_bytes_before, _tensor_bytes(lm_head.weight))
        if lm_format == "bf16":  # decode's few-row calls on the kernels' bf16 GEMV
            use_bf16_kernel(inner.language_model)
            use_bf16_kernel(model.lm_head)
        return report

    if tied:
        # Quantize from the embedding's (still float) weight into fresh buffers: this unties.
        src = nn.Linear(lm_head.in_features, lm_head.out_features, bias=False, device="meta")
        src.weight = nn.Parameter(embed.weight.detach(), requires_grad=False)
        lm_head = src
        _untie_config(model.config)
        report.untied_lm_head = True
    new = quantize_linear(lm_head, lm_format, int8_prefill_dtype=int8_prefill_dtype)
    model.lm_head = new
    report.add(format_of_module(new), head_bytes_before, module_bytes(new))
    return report


class _Holder(nn.Module):
    """Wraps one Linear so quantize_module can replace/cast it like any child."""

    def __init__(self, lin: nn.Module) -> None:
        super().__init__()
        self.lin = lin
