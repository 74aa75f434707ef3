"""The engine's fused bf16 ops on every kernel path this CPU runs: RMSNorm (alone, after the
residual add, and with the decode rows' rotary and KV writes), the vision tower's q/k rotary, the
tanh GELU, and the decode and prefill attention, against the separate torch ops or float64.

Kernel paths: tests of one op take the `kernel_path` fixture (tests/engine/conftest.py: each of
kernels.ISAS forced in turn, `ref` always; a path this CPU cannot execute is skipped with that
reason).
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from vision.engine import kernels

from .kernel_helpers import FLASH_CPU, NO_BF16


@pytest.mark.parametrize(
    "shape, heads",
    [
        ((1, 2048), None),
        ((9, 2048), None),
        ((300, 2048), None),
        ((3, 2051), None),
        ((1, 32, 128), (0, 16)),
        ((5, 32, 128), (16, 24)),
    ],
)
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
