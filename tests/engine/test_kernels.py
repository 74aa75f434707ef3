"""The engine's int8 and int4 kernels: every ISA path this CPU runs, on every linear shape of the 2B model
and odd tails, against a float reference; CPU detection; the fallback when nothing can be built.

Two references:
- exact: the kernels' own arithmetic in float64 (activations rounded to int8 per block of 32 the
  same way, integer dot products, per-block scales). The kernels sum in fp32, so they differ from
  it by fp32 rounding only: relative 1e-5 is ~100x what fp32 sums over 64-192 blocks give.
- float: the unquantized fp32 linear, within test_quant's int8 bound (weights + activations).
Every vector path must also equal the scalar path bit for bit: same integer dots, same fp32 order.

Kernel paths: tests of one op take the `kernel_path` fixture (tests/engine/conftest.py: each of
kernels.ISAS forced in turn, `ref` always; a path this CPU cannot execute is skipped with that
reason); tests that compare paths run every path in RUNNABLE against `ref` in one test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vision.engine import kernels
from vision.engine.linears import Int4Linear, Int8Linear, quantize_per_channel
from vision.engine.quant import quantize_linear

from .test_quant import ACT_ROUNDING, BOUNDS, rel_err

REPO = Path(__file__).resolve().parents[2]
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

_FLAGS = kernels.cpu_flags()
RUNNABLE = kernels.cpu_isas()
# The three CPU kinds the project's machines are drawn from, by the flags that matter here
# (/proc/cpuinfo names): what each runs.
CPU_KINDS = {
    "AMD EPYC, AVX2 only": ({"avx", "avx2", "fma", "sse4_2"}, ["ref", "avx2"], False),
    "AMD EPYC, AVX-512 VNNI + BF16": (
        {"avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "avx512_bf16"},
        ["ref", "avx2", "avx512vnni"],
        True,
    ),
    "Intel Xeon, AMX": (
        {"avx2", "fma", "avx_vnni", "avx512f", "avx512bw", "avx512vl", "avx512dq", "avx512_vnni", "avx512_bf16",
         "amx_bf16", "amx_int8", "amx_tile"},
        ["ref", "avx2", "avxvnni", "avx512vnni"],
        True,
    ),
}  # fmt: skip


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


def _case(n: int, k: int, rows: int, bias: bool = True) -> tuple[nn.Linear, torch.Tensor]:
    torch.manual_seed(n * 7919 + k * 31 + rows)
    lin = nn.Linear(k, n, bias=bias)
    nn.init.normal_(lin.weight, std=0.02)
    return lin, torch.randn(rows, k)


def _check_columns(n: int) -> torch.Tensor:
    """Output columns the float64 reference checks: all for small N, else a sample + the tail."""
    if n <= 2048:
        return torch.arange(n)
    picked = torch.randperm(n, generator=torch.Generator().manual_seed(n))[:512]
    return torch.cat([picked, torch.arange(n - 17, n)]).unique()


@pytest.fixture(scope="module")
def built() -> object:
    mod = kernels.module()
    assert mod is not None, "the kernels did not build on the test machine (g++ and ninja are required here)"
    return mod


@pytest.mark.parametrize("kind", sorted(CPU_KINDS))
def test_one_decision_per_cpu_kind(kind: str) -> None:
    """kernels.Isa, from a CPU's flags: the paths each of the three CPU kinds runs, and what the
    best one turns on (the AVX-512 BF16 ops, the decode attention's path, the vision loops)."""
    flags, paths, bf16 = CPU_KINDS[kind]
    assert kernels.cpu_isas(frozenset(flags)) == paths
    best = kernels.make_isa(paths[-1], frozenset(flags))
    assert best.bf16 is bf16 and best.attention == (3 if bf16 else 1) and best.vision_vector is bf16
    for lower in paths[:-1]:
        isa = kernels.make_isa(lower, frozenset(flags))
        assert not isa.bf16 and not isa.vision_vector and isa.attention == (0 if lower == "ref" else 1)
    assert kernels.Isa("torch").attention == 0 and not kernels.Isa("torch").ours


def test_cpu_detection_agrees_with_proc_cpuinfo(built) -> None:
    text = Path("/proc/cpuinfo").read_text()
    flags = set(next(line for line in text.splitlines() if line.startswith("flags")).split(":", 1)[1].split())
    assert flags == _FLAGS
    assert kernels.supported_isas() == RUNNABLE and RUNNABLE[0] == "ref"
    assert kernels.active_isa() == RUNNABLE[-1]  # the best path unless told otherwise
    assert kernels.isa().bf16 == ("avx512vnni" in RUNNABLE and "avx512_bf16" in flags)


def test_ops_use_torchs_threads(built) -> None:
    """The library shares torch's OpenMP pool: without -fopenmp ATen's parallel_for runs serially
    and every op here would use one core whatever torch.set_num_threads says."""
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert built.parallel_threads(64) == 2
        torch.set_num_threads(1)
        assert built.parallel_threads(64) == 1
    finally:
        torch.set_num_threads(before)


# multiply-adds per dot product of each path's tile: lanes x 4 bytes, times its independent chains
DOT_PEAK_MACS = {"avx2": 4 * 8 * 4, "avxvnni": 6 * 8 * 4, "avx512vnni": 12 * 16 * 4}


@pytest.mark.parametrize("isa", sorted(DOT_PEAK_MACS))
def test_int8_dot_peak_counts_every_threads_work(built, isa: str) -> None:
    """`int8_peak_gops` divides the loop's multiply-adds by its time: the count must be every
    thread's rounds (a loop left on one thread would halve the peak the batching bench states)."""
    from bench.machine import int8_peak_gops

    if isa not in RUNNABLE:
        assert int8_peak_gops(isa) is None  # never run where the CPU lacks it
        pytest.skip(f"this CPU lacks the {isa} kernel path")
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            assert built.int8_dot_peak(kernels.isa_index(isa), 1000) == threads * 1000 * DOT_PEAK_MACS[isa]
        peak = int8_peak_gops(isa, seconds=0.02)
        assert peak is not None and peak > 0
    finally:
        torch.set_num_threads(before)
    assert int8_peak_gops("ref") is None
    with pytest.raises(RuntimeError, match="no int8 dot-product loop"):
        built.int8_dot_peak(kernels.isa_index("ref"), 10)


@pytest.mark.parametrize("isa", kernels.ISAS)
def test_paths_this_cpu_cannot_run_are_refused(built, isa: str) -> None:
    if isa in RUNNABLE:
        with kernels.use_isa(isa):
            assert kernels.active_isa() == isa
    else:
        with pytest.raises(ValueError, match="cannot run here"), kernels.use_isa(isa):
            pass


def test_a_forced_path_changes_every_kernel(built, kernel_path: str) -> None:
    """use_isa (VISION_KERNEL_ISA's block form) forces one decision for all ops: the linears' path,
    the decode attention's, the AVX-512 BF16 ops and the vision loops follow it."""
    isa = kernels.isa()
    assert isa == kernels.make_isa(kernel_path) and kernels.active_isa() == kernel_path
    assert isa.attention == {"ref": 0, "avx2": 1, "avxvnni": 1, "avx512vnni": 3}[kernel_path]
    assert kernels.bf16_ops_available() is (kernel_path == "avx512vnni" and FLASH_CPU)
    x = torch.randn(64, 32)
    assert (kernels.gelu_tanh_(x.clone()) is None) is (kernel_path != "avx512vnni")
    lin, xs = _case(40, 64, 3)
    assert torch.equal(Int8Linear.from_linear(lin)(xs), _run_paths(lin, xs)["ref"])


def _run_paths(lin: nn.Linear, x: torch.Tensor) -> dict[str, torch.Tensor]:
    layer = Int8Linear.from_linear(lin)
    assert layer.packed_layout
    outs = {}
    for isa in RUNNABLE:
        with kernels.use_isa(isa):
            outs[isa] = layer(x)
    return outs


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


@pytest.mark.parametrize(
    "shape, heads",
    [((1, 2048), None), ((9, 2048), None), ((300, 2048), None), ((3, 2051), None), ((1, 32, 128), (0, 16)),
     ((5, 32, 128), (16, 24))],
)  # fmt: skip
def test_rms_norm_bf16_matches_f_rms_norm(
    built, kernel_path: str, shape: tuple[int, ...], heads: tuple[int, int] | None
) -> None:
    """The one-call bf16 RMSNorm against F.rms_norm, on rows and on head slices of a fused qkv
    (a strided view, as the runner passes). Same fp32 arithmetic; only the sum of squares runs in
    another order, so an output may differ by one bf16 step (2^-8 relative) where F.rms_norm's
    fp32 result sits next to a rounding boundary: at most 1 in 10^4 do."""
    gen = torch.Generator().manual_seed(sum(shape))
    base = (torch.randn(*shape, generator=gen) * 3).bfloat16()
    x = base if heads is None else base[:, heads[0] : heads[1]]
    w = (torch.rand(shape[-1], generator=gen) + 0.5).bfloat16()
    want = F.rms_norm(x, (shape[-1],), w, 1e-6)
    got = kernels.rms_norm_bf16(x, w, 1e-6)
    assert torch.equal(got, kernels.rms_norm_bf16(x, w, 1e-6, kernels.make_isa("ref")))  # bits of every path
    assert got.shape == want.shape and got.dtype == torch.bfloat16 and got.is_contiguous()
    differ = got != want
    assert differ.float().mean().item() <= 1e-4
    assert torch.all((got.float() - want.float()).abs()[differ] <= want.float().abs()[differ] * 2**-7)


def _rope_reference(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The runner's separate bf16 rotary ops (sin with its first half negated)."""
    return x * cos + x.roll(x.shape[-1] // 2, dims=-1) * sin


@pytest.mark.parametrize("rows, heads, d", [(560, 16, 64), (24, 4, 16), (3, 2, 34), (5, 3, 8)])
def test_vision_qkv_rope_bf16_is_transformers_rotary_then_bf16_bit_for_bit(
    built, kernel_path, rows, heads, d
) -> None:
    """A vision block's q/k rotary and the bf16 rounding of q, k and v in one call: the same bits as
    transformers' apply_rotary_pos_emb_vision on the (rows, 3, heads, d) view of the qkv output
    followed by .bfloat16(), on every kernel path (the op itself: AVX-512 loops on avx512vnni, AVX2
    loops on avx2 and avxvnni, scalar C++ on ref), on the 2B tower's heads, the tiny model's (half
    width 8: AVX2 only) and an odd half width (scalar on every path). The engine's wrapper runs it
    where the path has a vector loop, else None. So the AVX2 and AVX-512 loops give the same bits."""
    from transformers.models.qwen3_vl.modeling_qwen3_vl import apply_rotary_pos_emb_vision

    gen = torch.Generator().manual_seed(rows + heads + d)
    qkv = torch.randn(rows, 3 * heads * d, generator=gen) * 3
    angles = torch.rand(rows, d // 2, generator=gen) * 40
    emb = torch.cat([angles, angles], dim=-1)
    cos, sin = emb.cos(), emb.sin()
    q, k, v = qkv.reshape(rows, 3, heads, d).permute(1, 0, 2, 3).unbind(0)
    q, k = apply_rotary_pos_emb_vision(q, k, cos, sin)
    index = kernels.isa().index
    got = built.vision_qkv_rope_bf16(qkv, cos, sin, heads, index)
    assert got.shape == (3, rows, heads, d) and got.dtype == torch.bfloat16
    for ours, theirs in zip(got.unbind(0), (q, k, v), strict=True):
        assert torch.equal(ours, theirs.bfloat16())
    wrapped = kernels.vision_qkv_rope_bf16(qkv, cos, sin, heads)
    assert (wrapped is None) is (not kernels.isa().rope_vector)
    assert wrapped is None or torch.equal(wrapped, got)
    assert kernels.vision_qkv_rope_bf16(qkv.bfloat16(), cos, sin, heads) is None
    with pytest.raises(RuntimeError):
        built.vision_qkv_rope_bf16(qkv, cos[:, :-2].contiguous(), sin[:, :-2].contiguous(), heads, index)


@pytest.mark.parametrize("shape", [(560, 4096), (37,), (3, 5)])
def test_gelu_tanh_is_within_a_few_ulps_of_the_exact_function(built, kernel_path: str, shape) -> None:
    """The vision MLP's tanh GELU, in place: within 4e-7 + 2e-6 |y| of the function computed in
    float64, for values from -30 to 30 (both tails: x / (1 + e^88) and x itself), on every kernel
    path (AVX-512 loop on avx512vnni, scalar C++ below it), a vision MLP's shape and masked tails. torch's
    own F.gelu(approximate="tanh") is off by up to 5e-5 relative where tanh -> -1; ours is not."""
    gen = torch.Generator().manual_seed(sum(shape))
    x = torch.randn(shape, generator=gen) * 4
    x.view(-1)[:3] = torch.tensor([-30.0, 30.0, 0.0])[: x.numel()]
    d = x.double()
    want = d * 0.5 * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (d + 0.044715 * d**3)))
    y = x.clone()
    out = built.gelu_tanh_(y, kernels.isa().index)
    assert out.data_ptr() == y.data_ptr()  # in place
    err = (y.double() - want).abs()
    assert (err <= 4e-7 + 2e-6 * want.abs()).all(), err.max()
    assert (y - F.gelu(x, approximate="tanh")).abs().max() < 1e-4  # the function torch computes
    assert kernels.gelu_tanh_(x.t() if x.dim() == 2 else x.double()) is None  # not contiguous fp32
    # the engine's wrapper runs it only where the path has a vector loop (scalar exp: slower than torch)
    wrapped = kernels.gelu_tanh_(x.clone())
    assert (wrapped is None) is (not kernels.isa().vision_vector)
    assert wrapped is None or torch.equal(wrapped, y)


@pytest.mark.parametrize("rows, n", [(1, 2048), (8, 2048), (3, 2051), (2, 64)])
def test_add_rms_norm_bf16_is_the_add_and_the_norm_bit_for_bit(
    built, kernel_path: str, rows: int, n: int
) -> None:
    """The residual add with the RMSNorm after it, one call: the same bits as `hidden + delta`
    (torch's bf16 add) then rms_norm_bf16, on every kernel path (AVX-512 loops on avx512vnni), the
    2B width, an odd width (scalar on every path) and a small one; hidden is updated in place."""
    gen = torch.Generator().manual_seed(rows * n)
    hidden = (torch.randn(rows, n, generator=gen) * 4).bfloat16()
    delta = (torch.randn(rows, n, generator=gen) * 2).bfloat16()
    w = (torch.rand(n, generator=gen) + 0.5).bfloat16()
    want_hidden = hidden + delta
    want = kernels.rms_norm_bf16(want_hidden, w, 1e-6, kernels.make_isa("ref"))
    got = kernels.add_rms_norm_bf16(hidden, delta, w, 1e-6)
    assert torch.equal(hidden, want_hidden)
    assert torch.equal(got, want)
    assert (got.float() - F.rms_norm(want_hidden, (n,), w, 1e-6).float()).abs().max() < 0.1


@pytest.mark.parametrize("batch, heads, kv_heads, d", [(1, 16, 8, 128), (8, 16, 8, 128), (3, 4, 2, 16)])
def test_decode_qk_rope_store_is_the_separate_ops_bit_for_bit(
    built, kernel_path: str, batch: int, heads: int, kv_heads: int, d: int
) -> None:
    """Decode rows' q/k RMSNorm, rotary and KV writes in one call: the same bits as the runner's
    separate ops (rms_norm_bf16 per head, bf16 products and sum, indexed writes into the arena
    slots), on every kernel path (AVX-512 loops on avx512vnni), the 2B heads and the tiny model's."""
    gen = torch.Generator().manual_seed(batch * d)
    width = (heads + 2 * kv_heads) * d
    qkv = (torch.randn(batch, width, generator=gen) * 3).bfloat16()
    qn, kn = ((torch.rand(d, generator=gen) + 0.5).bfloat16() for _ in range(2))
    angle = torch.rand(batch, d, generator=gen) * 6
    cos = angle.cos().bfloat16()
    sin = angle.sin()
    sin = torch.cat([-sin[:, : d // 2], sin[:, d // 2 :]], dim=-1).bfloat16()
    slots = torch.randperm(10, generator=gen)[:batch]
    positions = torch.randint(0, 40, (batch,), generator=gen)
    keys, values = (torch.zeros(10, kv_heads, 48, d, dtype=torch.bfloat16) for _ in range(2))
    heads3 = qkv.view(batch, -1, d)
    ref = kernels.make_isa("ref")
    want_q = _rope_reference(
        kernels.rms_norm_bf16(heads3[:, :heads], qn, 1e-6, ref), cos[:, None], sin[:, None]
    )
    want_k = _rope_reference(
        kernels.rms_norm_bf16(heads3[:, heads : heads + kv_heads], kn, 1e-6, ref), cos[:, None], sin[:, None]
    )
    want_keys, want_values = keys.clone(), values.clone()
    want_keys[slots, :, positions] = want_k
    want_values[slots, :, positions] = heads3[:, heads + kv_heads :]
    q = kernels.decode_qk_rope_store(
        qkv, qn, kn, cos, sin, keys, values, slots, positions, heads, kv_heads, 1e-6
    )
    assert q.shape == (batch, heads, d) and q.is_contiguous()
    assert torch.equal(q, want_q)
    assert torch.equal(keys, want_keys) and torch.equal(values, want_values)
    assert keys.abs().sum() > 0
    with pytest.raises(RuntimeError, match="out of range"):
        kernels.decode_qk_rope_store(
            qkv, qn, kn, cos, sin, keys, values, slots, positions + 48, heads, kv_heads, 1e-6
        )


def _attention_fp64(
    q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, slot: int, n: int
) -> torch.Tensor:
    """(heads, head_dim): one decode row against keys [0, n) of `slot`, GQA as repeat_kv pairs heads."""
    groups = q.shape[0] // keys.shape[1]
    k = keys[slot, :, :n].double().repeat_interleave(groups, 0)
    v = values[slot, :, :n].double().repeat_interleave(groups, 0)
    weights = torch.softmax(q.double()[:, None, :] @ k.transpose(-1, -2) * q.shape[-1] ** -0.5, dim=-1)
    return (weights @ v)[:, 0]


@pytest.mark.parametrize("groups, head_dim", [(2, 128), (1, 128), (3, 64), (2, 48)])
def test_decode_attention_against_fp64(built, kernel_path: str, groups: int, head_dim: int) -> None:
    """The decode attention op on every kernel path (AVX-512F on avx512vnni, AVX2 on avx2 and
    avxvnni; ref has none and refuses, the runner takes SDPA there): each row against its own arena
    slot and length (1, odd, not a multiple of 16, the whole slot), within one bf16 step of fp64; a
    row's result does not depend on the other rows of the batch; a length past the slot is refused."""
    gen = torch.Generator().manual_seed(groups * head_dim)
    kv_heads, cap = 4, 300
    keys = (torch.randn(5, kv_heads, cap, head_dim, generator=gen) * 2).bfloat16()
    values = torch.randn(5, kv_heads, cap, head_dim, generator=gen).bfloat16()
    fused = (torch.randn(4, kv_heads * groups + 7, head_dim, generator=gen) * 2).bfloat16()
    q = fused[:, 3 : 3 + kv_heads * groups]  # a strided view, as the runner's q after rotary
    slots, lens = torch.tensor([4, 0, 2, 1]), torch.tensor([1, 77, 300, 16])

    def attend(*args: torch.Tensor) -> torch.Tensor:
        return kernels.decode_attention(*args, head_dim**-0.5)

    if kernels.isa().attention == 0:
        with pytest.raises(RuntimeError, match="no path 0"):
            attend(q, keys, values, slots, lens)
        return
    got = attend(q, keys, values, slots, lens)
    assert got.shape == (4, kv_heads * groups, head_dim) and got.dtype == torch.bfloat16
    for b in range(4):
        want = _attention_fp64(q[b], keys, values, int(slots[b]), int(lens[b]))
        assert torch.all((got[b].double() - want).abs() <= want.abs() * 2**-8 + 1e-6), b
        alone = attend(q[b : b + 1], keys, values, slots[b : b + 1], lens[b : b + 1])
        assert torch.equal(alone[0], got[b])
    with pytest.raises(RuntimeError, match="out of range"):
        attend(q, keys, values, slots, torch.tensor([1, 2, 301, 1]))


FLASH_CPU = kernels.NEEDS["avx512vnni"] | kernels.BF16_NEEDS <= _FLAGS
NO_BF16 = "this CPU lacks AVX-512 BF16 (the op refuses, checked above)"


def _prefill_fp64(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: int) -> torch.Tensor:
    """(nq, heads * head_dim): softmax attention in float64, GQA as repeat_kv pairs heads."""
    groups = q.shape[0] // k.shape[0]
    kk, vv = k.double().repeat_interleave(groups, 0), v.double().repeat_interleave(groups, 0)
    scores = q.double() @ kk.transpose(1, 2) * q.shape[-1] ** -0.5
    if causal >= 0:
        seen = torch.arange(k.shape[1])[None, :] <= (torch.arange(q.shape[1]) + causal)[:, None]
        scores = scores.masked_fill(~seen, float("-inf"))
    return (scores.softmax(-1) @ vv).transpose(0, 1).reshape(q.shape[1], -1)


# (heads, kv_heads, query rows, keys, head_dim, causal): the vision tower (16 x 64, every key),
# the 2B language model's prompt chunks (16 over 8 KV heads x 128, causal from 0 or after cached
# tokens), the tiny test model (16 and 32), one row and one key, tails off the 4-row group, the
# 32-row item and the 64-key block.
PREFILL_CASES = [
    (16, 16, 37, 37, 64, -1),
    (16, 16, 200, 333, 64, -1),
    (16, 8, 50, 50, 128, 0),
    (16, 8, 33, 130, 128, 97),
    (4, 2, 70, 90, 16, 20),
    (2, 1, 40, 40, 32, -1),
    (4, 4, 1, 1, 64, -1),
]


@pytest.mark.parametrize("case", PREFILL_CASES, ids=lambda c: "x".join(map(str, c)))
def test_prefill_attention_against_fp64(built, case: tuple[int, ...]) -> None:
    """The AVX-512 BF16 prefill attention on strided q/k/v views (as the runner passes them): within
    one bf16 step of each float64 value plus 1/1024 of the largest. The bound: the kernel rounds
    the softmax weights to bf16 (relative 2^-9 each, random in sign, so their sum errs far less)
    and the output once; fp32 sums add nothing visible. SDPA's bf16 kernel, for scale, meets the
    same bound on the same inputs. A CPU without AVX-512 BF16 refuses, and the runner's check says so."""
    heads, kv_heads, nq, nk, d, causal = case
    gen = torch.Generator().manual_seed(nq * 131 + nk)
    fused = (torch.randn(max(nq, nk), heads + 2 * kv_heads + 3, d, generator=gen) * 1.5).bfloat16()
    q = fused[:nq, 3 : 3 + heads].transpose(0, 1)  # (heads, nq, d), rows strided as the runner's
    k = fused[:nk, 3 + heads : 3 + heads + kv_heads].transpose(0, 1)
    v = fused[:nk, 3 + heads + kv_heads :].transpose(0, 1)
    assert kernels.flash_available(d) == FLASH_CPU
    with kernels.use_isa("avx2"):  # a path forced below it turns it off on every CPU
        assert not kernels.flash_available(d)
        with pytest.raises(RuntimeError, match="AVX-512 BF16"):
            kernels.pack_kv(k, v)
    if not FLASH_CPU:
        with pytest.raises(RuntimeError, match="AVX-512 BF16"):
            kernels.pack_kv(k, v)
        pytest.skip(NO_BF16)
    got = kernels.prefill_attention(q, kernels.pack_kv(k, v), d**-0.5, causal)
    want = _prefill_fp64(q, k, v, causal)
    assert got.shape == (nq, heads * d) and got.dtype == torch.bfloat16
    bound = want.abs() * 2**-8 + want.abs().max() * 2**-10
    assert torch.all((got.double() - want).abs() <= bound), (got.double() - want).abs().max()
    mask = None if causal < 0 else torch.arange(nk)[None, :] <= (torch.arange(nq) + causal)[:, None]
    sdpa = F.scaled_dot_product_attention(q[None], k[None], v[None], attn_mask=mask, enable_gqa=True)
    assert torch.all((sdpa[0].transpose(0, 1).reshape(nq, -1).double() - want).abs() <= bound)


def test_prefill_attention_rows_are_computed_alone(built) -> None:
    """Row pieces (the vision tower's step_rows, prompt chunks) give bit for bit what the whole call
    gives, whatever rows share a 32-row item, with `causal` shifted by the piece's first row; the
    output lands in a row slice of a larger buffer; wrong sizes are refused."""
    if not FLASH_CPU:  # what such a CPU does instead is checked in the test above
        assert not kernels.flash_available(64)
        pytest.skip(NO_BF16)
    gen = torch.Generator().manual_seed(5)
    heads, kv_heads, n, d = 8, 4, 150, 64
    q = torch.randn(heads, n, d, generator=gen).bfloat16()
    k, v = (torch.randn(kv_heads, n + 7, d, generator=gen).bfloat16() for _ in range(2))
    packed = kernels.pack_kv(k, v)
    for causal in (-1, 0, 7):
        whole = kernels.prefill_attention(q, packed, 0.125, causal)
        out = torch.zeros(n + 10, heads * d, dtype=torch.bfloat16)
        for start, end in ((0, 5), (5, 41), (41, 150)):
            shifted = causal if causal < 0 else causal + start
            kernels.prefill_attention(q[:, start:end], packed, 0.125, shifted, out[start + 3 : end + 3])
        assert torch.equal(out[3 : n + 3], whole), causal
        assert torch.count_nonzero(out[:3]) == 0 and torch.count_nonzero(out[n + 3 :]) == 0
    with pytest.raises(RuntimeError, match="nk does not match"):
        built.prefill_attention(q, packed.keys, packed.values, n + 64, 0.125, -1, whole)
    with pytest.raises(RuntimeError, match="past nk"):
        built.prefill_attention(q, packed.keys, packed.values, n + 7, 0.125, 8, whole)
    with pytest.raises(RuntimeError, match="head_dim"):
        built.attention_pack(k[..., :48], v[..., :48])


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


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **env}
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full_env, timeout=600, check=False
    )


_LAYER_SCRIPT = """
import logging, torch
from torch import nn
logging.basicConfig(level=logging.WARNING)
from vision.engine import kernels
from vision.engine.quant import Int8Linear
torch.manual_seed(0)
lin = nn.Linear(256, 64); nn.init.normal_(lin.weight, std=0.02)
layers = [Int8Linear.from_linear(lin) for _ in range(2)]
x = torch.randn(3, 256)
y = layers[0](x); layers[1](x)
err = ((y - lin(x)).norm() / lin(x).norm()).item()
print(kernels.active_isa(), layers[0].packed_layout, round(err, 5))
"""


def test_fallback_to_torch_op_when_the_build_fails(tmp_path: Path) -> None:
    """No compiler (a fresh build folder and a compiler that does not exist): one warning, and
    the layer runs torch's op with its usual accuracy."""
    result = _python(_LAYER_SCRIPT, XDG_CACHE_HOME=str(tmp_path), CXX=str(tmp_path / "no-such-c++"))
    assert result.returncode == 0, result.stderr
    isa, packed, err = result.stdout.split()
    assert (isa, packed) == ("torch", "False")
    assert float(err) < BOUNDS["int8"]
    warnings = [line for line in result.stderr.splitlines() if "engine kernels unavailable" in line]
    assert len(warnings) == 1, result.stderr


@pytest.mark.parametrize("isa", ["torch", *RUNNABLE])
def test_isa_forced_from_the_environment(built, isa: str) -> None:
    result = _python(_LAYER_SCRIPT, **{kernels.ISA_ENV: isa})
    assert result.returncode == 0, result.stderr
    got, packed, err = result.stdout.split()
    assert (got, packed) == (isa, str(isa != "torch"))
    assert float(err) < BOUNDS["int8"]


# ---------------------------------------------------------------- int4 group-wise (Q4_0 x Q8_0)

# Accuracy of int4 round-to-nearest vs fp32, for N(0, sigma) weights (as test_quant's _linear):
# one scale per block of 32 along K, step d = |signed extreme| / 8. The largest |w| of 32 Gaussian
# values is ~2.04 sigma on average, so d ~ 0.255 sigma and rounding errs by U(-d/2, d/2): std
# d / sqrt(12) ~ 0.074 sigma. Values of the opposite sign beyond 7.5 d clamp to 7 and err by up to
# a further d; with that the measured weight error is 0.084-0.094 (2048x2048: 0.086). As in
# test_quant, independent errors add in quadrature over K, so the relative output error is the
# relative weight error, ~0.09, and the int8 activation blocks add ~0.005 in quadrature. Bound
# 0.12. A lower bound too: an error below 0.06 would mean the layer is not really 4-bit.
INT4_BOUNDS = (0.06, 0.12)
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


_INT4_SCRIPT = """
import logging, torch
from torch import nn
logging.basicConfig(level=logging.WARNING)
from vision.engine import kernels
from vision.engine.quant import quantize_linear
torch.manual_seed(0)
lin = nn.Linear(256, 64); nn.init.normal_(lin.weight, std=0.02)
layer = quantize_linear(lin, "int4")
x = torch.randn(3, 256)
err = ((layer(x) - lin(x)).norm() / lin(x).norm()).item()
print(kernels.active_isa(), type(layer).__name__, layer.kernel_layout, round(err, 5))
"""


def test_int4_falls_back_to_torch_op_when_the_build_fails(tmp_path: Path) -> None:
    result = _python(_INT4_SCRIPT, XDG_CACHE_HOME=str(tmp_path), CXX=str(tmp_path / "no-such-c++"))
    assert result.returncode == 0, result.stderr
    isa, cls, packed, err = result.stdout.split()
    assert (isa, cls, packed) == ("torch", "Int4Linear", "False")
    assert float(err) < BOUNDS["int4"]
    warnings = [line for line in result.stderr.splitlines() if "engine kernels unavailable" in line]
    assert len(warnings) == 1 and "int4" in warnings[0], result.stderr


@pytest.mark.parametrize("isa", RUNNABLE)
def test_int4_isa_forced_from_the_environment(built, isa: str) -> None:
    result = _python(_INT4_SCRIPT, **{kernels.ISA_ENV: isa})
    assert result.returncode == 0, result.stderr
    got, cls, packed, err = result.stdout.split()
    assert (got, cls, packed) == (isa, "Int4Linear", "True")
    assert INT4_BOUNDS[0] < float(err) < INT4_BOUNDS[1]


def test_release_thread_pool_frees_the_calling_threads_openmp_workers(built) -> None:
    """A thread that ran a parallel op keeps an OpenMP pool (one worker per extra thread); with it
    left behind, libgomp manages more threads than CPUs and shortens every team's spin-waits.
    release_thread_pool() in that thread makes its workers exit (the process has fewer threads)."""
    import os
    import threading
    import time

    def tasks() -> int:
        return len(os.listdir("/proc/self/task"))

    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    seen: dict[str, object] = {}

    def work() -> None:
        torch.set_num_threads(2)
        x = torch.ones(1 << 24)
        assert built.parallel_threads(64) == 2  # this thread's pool now has its worker
        x.sum()
        seen["with_pool"] = tasks()
        seen["released"] = kernels.release_thread_pool()
        deadline = time.monotonic() + 5
        while tasks() >= seen["with_pool"] and time.monotonic() < deadline:
            time.sleep(0.01)
        seen["after"] = tasks()

    try:
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
    finally:
        torch.set_num_threads(previous)
    assert seen["released"] is True
    assert seen["after"] < seen["with_pool"], seen
