"""The engine's linear kernels: int8 and int4 (with the int4 packing) on every ISA path this CPU
runs, on every linear shape of the 2B model and odd tails, against a float reference; bf16 in and
out; the dense many-row path; the AVX-512 BF16 GEMV and the module that uses it.

Two references:
- exact: the kernels' own arithmetic in float64 (activations rounded to int8 per block of 32 the
  same way, integer dot products, per-block scales). The kernels sum in fp32, so they differ from
  it by fp32 rounding only: relative 1e-5 is ~100x what fp32 sums over 64-192 blocks give.
- float: the unquantized fp32 linear, within test_quant's int8 bound (weights + activations).
Every vector path must also equal the scalar path bit for bit: same integer dots, same fp32 order.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vision.engine import kernels
from vision.engine.linears import Int4Linear, Int8Linear, quantize_per_channel
from vision.engine.quant import quantize_linear

from .kernel_helpers import FLASH_CPU, INT4_BOUNDS, NO_BF16, RUNNABLE, _case, _run_paths
from .test_quant import ACT_ROUNDING, BOUNDS, rel_err

EXACT = 1e-5

# (out, in) of every linear of Qwen3-VL-2B, including the fused projections the runtime makes.
SHAPES_2B = {
    "q/o": (2048, 2048),
    "k/v": (1024, 2048),
    "gate/up": (6144, 2048),
    "down": (2048, 6144),
    "qkv fused": (4096, 2048),
    "gate+up fused": (12288, 2048),
    "vision qkv": (3072, 1024),
    "vision proj": (1024, 1024),
    "vision fc1": (4096, 1024),
    "vision fc2": (1024, 4096),
    "merger fc1": (4096, 4096),
    "merger fc2": (2048, 4096),
}
# N and K off the 16-column panel and the 32-wide block, and below them.
ODD_SHAPES = {
    "1x1": (1, 1),
    "17x33": (17, 33),
    "100x70": (100, 70),
    "37x1000": (37, 1000),
    "129x2047": (129, 2047),
}
# decode (1, odd, full tile of 8), a remainder tile, and a many-row call with a row remainder
ROWS = (1, 3, 8, 11, 37)


def reference(
    x: torch.Tensor, q: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """The kernels' arithmetic in float64: x rounded to int8 per block of 32 (fp32 scale math)."""
    m, k = x.shape
    kp = -(-k // kernels.BLOCK) * kernels.BLOCK
    xb = F.pad(x.float(), (0, kp - k)).view(m, -1, kernels.BLOCK)
    amax = xb.abs().amax(-1, keepdim=True)
    # fp32 127 / amax, divided as the C++ does (`127.0 / tensor` would multiply by a reciprocal)
    inv = torch.where(amax > 0, torch.full_like(amax, 127.0) / amax, torch.zeros_like(amax))
    xq = torch.round(xb * inv).clamp_(-127, 127).double()
    wq = F.pad(q, (0, kp - k)).view(q.shape[0], -1, kernels.BLOCK).double()
    dots = torch.einsum("mbk,nbk->mnb", xq, wq)  # exact integers
    y = (dots * (amax / 127.0).double().view(m, 1, -1)).sum(-1) * scales.double()
    return y if bias is None else y + bias.double()


def _check_columns(n: int) -> torch.Tensor:
    """Output columns the float64 reference checks: all for small N, else a sample + the tail."""
    if n <= 2048:
        return torch.arange(n)
    picked = torch.randperm(n, generator=torch.Generator().manual_seed(n))[:512]
    return torch.cat([picked, torch.arange(n - 17, n)]).unique()


@pytest.mark.parametrize("rows", ROWS)
@pytest.mark.parametrize(
    "shape", list(SHAPES_2B.values()) + list(ODD_SHAPES.values()), ids=[*SHAPES_2B, *ODD_SHAPES]
)
def test_every_path_on_every_shape(built, shape: tuple[int, int], rows: int) -> None:
    n, k = shape
    lin, x = _case(n, k, rows)
    outs = _run_paths(lin, x)
    q, scales = quantize_per_channel(lin.weight)
    cols = _check_columns(n)
    exact = reference(x, q[cols], scales[cols], lin.bias.detach()[cols])
    for isa, y in outs.items():
        assert y.shape == (rows, n) and y.dtype == torch.float32
        assert torch.equal(y, outs["ref"]), f"{isa} differs from the scalar path"
    assert rel_err(outs["ref"][:, cols], exact) < EXACT
    if k >= 256:  # the statistical bound needs enough terms per output
        with torch.no_grad():
            assert rel_err(outs["ref"], lin(x)) < BOUNDS["int8"]


def test_lm_head_full_size(built) -> None:
    """151936 x 2048: the largest weight (311 MB), split across threads, tail-free N."""
    n, k = 151936, 2048
    torch.manual_seed(1)
    q = torch.randint(-127, 128, (n, k), dtype=torch.int8)
    scales = torch.rand(n) * 1e-3 + 1e-4
    layer = Int8Linear(q, scales, None)
    cols = _check_columns(n)
    for rows in (1, 8):
        x = torch.randn(rows, k)
        outs = {}
        for isa in RUNNABLE[-2:]:  # the best path and the one below it
            with kernels.use_isa(isa):
                outs[isa] = layer(x)
        first, *others = outs.values()
        assert all(torch.equal(first, y) for y in others)
        assert rel_err(first[:, cols], reference(x, q[cols], scales[cols], None)) < EXACT


def test_bf16_activations_in_and_out(built) -> None:
    lin, x = _case(300, 512, 5)
    layer = Int8Linear.from_linear(lin)
    y = layer(x.bfloat16())
    assert y.dtype == torch.bfloat16
    # The kernel sees the bf16 values exactly; only the bf16 output rounding (2^-9) is added.
    assert rel_err(y, layer(x.bfloat16().float())) < 4e-3


@pytest.mark.parametrize("isa", [isa for isa in RUNNABLE if isa != "ref"] + ["ref"])
@pytest.mark.parametrize("fmt", ["int8", "int4"])
@pytest.mark.parametrize("rows", [1, 5, 37])
def test_bf16_output_is_the_fp32_output_rounded_bit_for_bit(built, isa: str, fmt: str, rows: int) -> None:
    """bf16 calls write bf16 from the tiles (no fp32 copy of the output): the same bits as the
    fp32 call on the same bf16 values followed by Tensor.to, on every path, for decode and
    prefill row counts and an output width with a tail (300 = 18 panels + 12 columns)."""
    lin, x = _case(300, 512, rows)
    xb = x.bfloat16()
    with kernels.use_isa(isa):
        layer = Int8Linear.from_linear(lin) if fmt == "int8" else Int4Linear.from_linear(lin)
        y = layer(xb)
        expected = layer(xb.float()).bfloat16()
    assert y.dtype == torch.bfloat16
    assert torch.equal(y.view(torch.int16), expected.view(torch.int16))


def test_outlier_channel_spoils_only_its_block(built) -> None:
    """Per-block activation scales: a 100x outlier (as real LLMs have) coarsens its own 32 values,
    not the whole row. With one scale per row the error here would be ~100x the usual ~0.005."""
    lin, x = _case(512, 2048, 4, bias=False)
    x[:, 5] *= 100.0
    layer = Int8Linear.from_linear(lin)
    with torch.no_grad():
        ref = x @ (layer.qweight.float() * layer.scales.float()[:, None]).T
    assert rel_err(layer(x), ref) < 0.02


@pytest.mark.parametrize("prefill_dtype", [torch.bfloat16, torch.float32])
def test_dense_prefill_runs_in_chunks(
    built, prefill_dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The dense many-row path dequantizes CHUNK_COLUMNS columns at a time, never the whole weight."""
    lin, x = _case(1000, 256, 40)
    layer = Int8Linear.from_linear(lin, prefill_dtype)
    monkeypatch.setattr(Int8Linear, "CHUNK_COLUMNS", 96)  # 11 chunks, the last one partial
    sizes: list[int] = []
    real = layer._dequant_chunk

    def spy(n0: int, n1: int, dtype: torch.dtype) -> torch.Tensor:
        sizes.append(n1 - n0)
        return real(n0, n1, dtype)

    monkeypatch.setattr(layer, "_dequant_chunk", spy)
    y = layer(x)
    assert sizes == [96] * 10 + [40]
    deq = layer.qweight.float() * layer.scales.float()[:, None]
    tol = 5e-3 if prefill_dtype == torch.bfloat16 else 1e-5
    assert rel_err(y, x @ deq.T + lin.bias.detach()) < tol


# ---------------------------------------------------------------- int4 group-wise (Q4_0 x Q8_0)

# INT4_BOUNDS (kernel_helpers.py, with its derivation): the int4 layer's error bounds against fp32.

# decode 1..9 (every tile height and one remainder), and a many-row call with a row remainder
ROWS4 = (1, 2, 3, 4, 5, 6, 7, 8, 9, 33)


def reference4(
    x: torch.Tensor, q: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None
) -> torch.Tensor:
    """Dequantized int4 weights x quantized activations in float64 (q: (N, Kp), scales (N, Kp/32))."""
    m, k = x.shape
    kp = q.shape[1]
    xb = F.pad(x.float(), (0, kp - k)).view(m, -1, kernels.BLOCK)
    amax = xb.abs().amax(-1, keepdim=True)
    inv = torch.where(amax > 0, torch.full_like(amax, 127.0) / amax, torch.zeros_like(amax))
    xq = torch.round(xb * inv).clamp_(-127, 127).double() * (amax / 127.0).double()  # (m, nblk, 32)
    wd = q.view(q.shape[0], -1, kernels.BLOCK).double() * scales.double()[..., None]  # (n, nblk, 32)
    y = torch.einsum("mbk,nbk->mn", xq, wd)
    return y if bias is None else y + bias.double()


def _int4_paths(layer, x: torch.Tensor, isas: list[str] = RUNNABLE) -> dict[str, torch.Tensor]:
    outs = {}
    for isa in isas:
        with kernels.use_isa(isa):
            outs[isa] = layer(x)
    return outs


def test_int4_packing_round_trips(built) -> None:
    torch.manual_seed(3)
    w = torch.randn(37, 70)
    q, scales = kernels.quantize_int4(w)
    assert q.shape == (37, 96) and scales.shape == (37, 3)
    assert int(q.min()) >= -8 and int(q.max()) <= 7 and bool((q[:, 70:] == 0).all())
    # the signed extreme of each block maps to -8 exactly, so every block uses the full range
    assert bool((q.view(37, 3, 32).amin(-1) == -8).all())
    packed = kernels.pack_int4(q, scales)
    assert packed.shape == (3, 3 * 320) and packed.dtype == torch.uint8  # 4 bits + 1 fp32 per 32
    q2, s2 = kernels.unpack_int4(packed, 37)
    assert torch.equal(q2, q) and torch.equal(s2, scales)
    # block 1 of panel 0, pair 2, column 3, t = 1: low nibble k = 32 + 9, high nibble k = 32 + 25
    assert int(packed[0, 320 + 2 * 64 + 3 * 4 + 1]) == (int(q[3, 41]) + 8) | ((int(q[3, 57]) + 8) << 4)
    # then the block's 16 column scales, fp32
    assert packed[0, 320 + 256 : 320 + 320].view(torch.float32)[3].item() == scales[3, 1].item()


def _int4_layer(n: int, k: int, seed_rows: int, bias: bool = True) -> tuple[nn.Linear, Int4Linear]:
    lin, _ = _case(n, k, seed_rows, bias)
    layer = Int4Linear.from_linear(lin)
    assert layer.kernel_layout
    return lin, layer


@pytest.mark.parametrize(
    "shape", list(SHAPES_2B.values()) + list(ODD_SHAPES.values()), ids=[*SHAPES_2B, *ODD_SHAPES]
)
def test_int4_every_path_on_every_shape(built, shape: tuple[int, int]) -> None:
    n, k = shape
    lin, layer = _int4_layer(n, k, 0)
    q, scales = kernels.quantize_int4(lin.weight)
    cols = _check_columns(n)
    for rows in ROWS4:
        x = torch.randn(rows, k, generator=torch.Generator().manual_seed(n + k + rows))
        outs = _int4_paths(layer, x)
        for isa, y in outs.items():
            assert y.shape == (rows, n) and y.dtype == torch.float32
            assert torch.equal(y, outs["ref"]), f"{isa} differs from the scalar path at M={rows}"
        exact = reference4(x, q[cols], scales[cols], lin.bias.detach()[cols])
        assert rel_err(outs["ref"][:, cols], exact) < EXACT, f"M={rows}"
        if k >= 256 and rows in (1, 9, 33):  # the statistical bound needs enough terms per output
            with torch.no_grad():
                err = rel_err(outs["ref"], lin(x))
            assert INT4_BOUNDS[0] < err < INT4_BOUNDS[1], f"M={rows}: {err}"


def test_int4_lm_head_full_size(built) -> None:
    """151936 x 2048 (195 MB packed) at M=1, every path."""
    n, k = 151936, 2048
    torch.manual_seed(2)
    q = torch.randint(-8, 8, (n, k), dtype=torch.int8)
    scales = torch.rand(n, k // kernels.BLOCK) * 1e-3 + 1e-4
    layer = Int4Linear(kernels.pack_int4(q, scales), None, None, k, n, kernels.BLOCK, kernel_layout=True)
    x = torch.randn(1, k)
    outs = _int4_paths(layer, x)
    assert all(torch.equal(outs["ref"], y) for y in outs.values())
    cols = _check_columns(n)
    assert rel_err(outs["ref"][:, cols], reference4(x, q[cols], scales[cols], None)) < EXACT


def test_int4_without_bias_and_bf16_in_out(built) -> None:
    lin, layer = _int4_layer(300, 512, 5, bias=False)
    x = torch.randn(5, 512)
    y = layer(x.bfloat16())
    assert y.dtype == torch.bfloat16
    assert rel_err(y, layer(x.bfloat16().float())) < 4e-3
    assert rel_err(layer(x), x @ layer.dequantized().T) < ACT_ROUNDING


def test_int4_format_uses_the_kernel(built) -> None:
    lin, _ = _case(256, 512, 1)
    layer = quantize_linear(lin, "int4")
    assert isinstance(layer, Int4Linear) and layer.kernel_layout and layer.group_size == kernels.BLOCK
    # 4 bits per weight + one fp32 scale per 32: 5 bits per weight
    assert layer.packed.numel() * 8 == 256 * 512 * 5


# ---------------------------------------------------------------- bf16 (AVX-512 BF16)

# (out, in) of the bf16 language model's linears (the lm_head separately below), and odd tails.
BF16_SHAPES = [
    (4096, 2048),
    (2048, 2048),
    (12288, 2048),
    (2048, 6144),
    (1, 1),
    (17, 33),
    (100, 70),
    (37, 1000),
]


@pytest.mark.parametrize("shape", BF16_SHAPES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_bf16_linear_against_fp64_and_f_linear(built, shape: tuple[int, int]) -> None:
    """The bf16 GEMV (AVX-512 BF16) at decode's row counts, bias or not: within one bf16 rounding of
    the float64 result plus fp32 summation error (bf16 x bf16 products are exact in fp32; the sum
    over K in fp32 errs by about K x 2^-24 of sum |x w|), and equal to F.linear's bf16 result or one
    step from it plus both fp32 sums' error (they run in another order; a cancelling sum then
    differs by more than a step of its small result). A CPU without AVX-512 BF16 refuses."""
    n, k = shape
    gen = torch.Generator().manual_seed(n * 31 + k)
    w = (torch.randn(n, k, generator=gen) * 0.05).bfloat16()
    bias = (torch.randn(n, generator=gen) * 0.1).bfloat16()
    if not FLASH_CPU:
        with pytest.raises(RuntimeError, match="AVX-512 BF16"):
            kernels.linear_bf16(torch.zeros(1, k, dtype=torch.bfloat16), w, bias)
        pytest.skip(NO_BF16)
    for rows in (1, 3, 8, 11, 16):
        x = torch.randn(rows, k, generator=gen).bfloat16()
        for b in (bias, None):
            got = built.linear_bf16(x, w, torch.empty(0) if b is None else b)
            want = x.double() @ w.double().t() + (0 if b is None else b.double())
            slack = (x.double().abs() @ w.double().abs().t()) * k * 2**-24 + 1e-30
            assert torch.all((got.double() - want).abs() <= want.abs() * 2**-8 + slack), (rows, b is None)
            theirs = F.linear(x, w, b)  # one bf16 step at that magnitude, plus both sums' error
            step = theirs.double().abs() * 2**-7 + 2 * slack
            assert torch.all((got.double() - theirs.double()).abs() <= step), (rows, b is None)


def test_bf16_linear_module_uses_the_kernel_for_few_rows(built) -> None:
    """Bf16Linear (what use_bf16_kernel makes of a bf16 nn.Linear) runs few-row bf16 calls on the
    kernel and the rest on F.linear; a tied weight stays the same tensor; fp32 calls stay F.linear."""
    from vision.engine.quant import Bf16Linear, use_bf16_kernel

    lin = nn.Linear(2048, 512).bfloat16()
    weight = lin.weight
    assert use_bf16_kernel(lin) == (1 if FLASH_CPU else 0)
    assert lin.weight is weight
    if not FLASH_CPU:
        assert type(lin) is nn.Linear
        pytest.skip(NO_BF16)
    assert isinstance(lin, Bf16Linear)
    x = torch.randn(2, 3, 2048).bfloat16()
    assert torch.equal(lin(x), built.linear_bf16(x.reshape(6, 2048), weight, lin.bias).reshape(2, 3, 512))
    many = torch.randn(Bf16Linear.KERNEL_MAX_ROWS + 1, 2048).bfloat16()
    assert torch.equal(lin(many), F.linear(many, weight, lin.bias))


def test_bf16_lm_head_full_size(built) -> None:
    """The tied bf16 lm_head (151936 x 2048, one call per decode step) on the kernel: within one
    bf16 step of F.linear (plus the fp32 sums' error) at batch 1 and 8."""
    if not FLASH_CPU:
        assert not kernels.bf16_ops_available()
        pytest.skip(NO_BF16)
    gen = torch.Generator().manual_seed(11)
    w = (torch.randn(151936, 2048, generator=gen) * 0.02).bfloat16()
    for rows in (1, 8):
        x = torch.randn(rows, 2048, generator=gen).bfloat16()
        got, theirs = built.linear_bf16(x, w, torch.empty(0)), F.linear(x, w)
        slack = (x.double().abs() @ w.double().abs().t()) * 2048 * 2**-24  # both fp32 sums' error
        assert torch.all((got.double() - theirs.double()).abs() <= theirs.double().abs() * 2**-7 + 2 * slack)
