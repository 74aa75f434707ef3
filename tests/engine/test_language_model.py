"""The language-model runner's per-layer work: fused projections, batched decode attention, bf16 activations.

GIVEN the lively tiny model (real Qwen3-VL architecture, 4 query heads over 2 KV heads) WHEN
several sequences decode together THEN one attention call per layer gives what each sequence's own
attention gives, and fusing or quantizing fused layers changes nothing.
"""

from __future__ import annotations

import copy

import pytest
import torch

from vision.engine.fusion import fuse_projections
from vision.engine.kv import SequenceKV
from vision.engine.language_model import ModelRunner, Segment
from vision.engine.quant import quantize_linear


def _segment(kv, ids: list[int], start: int, want_logits: bool = True) -> Segment:
    n = len(ids)
    positions = torch.arange(start, start + n).expand(3, n)
    return Segment(kv=kv, input_ids=torch.tensor(ids), positions=positions, want_logits=want_logits)


def _prompts() -> list[list[int]]:
    generator = torch.Generator().manual_seed(0)
    return [torch.randint(10, 500, (n,), generator=generator).tolist() for n in (5, 17, 9, 30)]


def _private_copy(runner: ModelRunner, kv: SequenceKV) -> SequenceKV:
    private = SequenceKV(
        runner.num_layers, runner.num_kv_heads, runner.head_dim, runner.dtype, kv.capacity + 8
    )
    private.copy_prefix_from(kv, kv.length)
    assert private.slot is None
    return private


@pytest.mark.parametrize("gap", [False, True], ids=["dense-slots", "slot-gap"])
def test_batched_decode_attention_equals_per_sequence_attention(lively, gap):
    runner = ModelRunner(lively.model, kv_slots=6, kv_slot_tokens=64)
    prompts = _prompts()
    kvs = [runner.new_kv(40) for _ in range(len(prompts) + gap)]
    if gap:  # a finished sequence left slot 1 free: the batch view spans a slot nobody decodes
        kvs.pop(1).release()
    for kv, ids in zip(kvs, prompts, strict=True):
        runner.forward([_segment(kv, ids, 0)])
    private = [_private_copy(runner, kv) for kv in kvs]
    slots = sorted(kv.slot for kv in kvs)
    assert (slots == list(range(len(kvs)))) != gap

    step_tokens = [7, 8, 9, 10]
    for step in range(3):  # a few steps, so the arena keeps the new tokens right too
        batched = runner.forward(
            [_segment(kv, [t + step], kv.length) for kv, t in zip(kvs, step_tokens, strict=True)]
        )
        alone = torch.cat(
            [
                runner.forward([_segment(kv, [t + step], kv.length)])
                for kv, t in zip(private, step_tokens, strict=True)
            ]
        )
        assert batched.shape == alone.shape == (4, runner.model.lm_head.out_features)
        assert torch.allclose(batched, alone, atol=1e-4, rtol=1e-5), (batched - alone).abs().max()
        assert not torch.allclose(batched[0], batched[1])  # distinct sequences, distinct answers


def test_a_decode_row_and_a_prompt_chunk_share_a_step(lively):
    runner = ModelRunner(lively.model, kv_slots=4, kv_slot_tokens=64)
    first, second = _prompts()[:2]
    a = runner.new_kv(40)
    runner.forward([_segment(a, first, 0)])
    ref_a = _private_copy(runner, a)
    b = runner.new_kv(40)
    together = runner.forward([_segment(a, [3], a.length), _segment(b, second, 0)])
    b_alone = runner.new_kv(40)
    expected = torch.cat(
        [runner.forward([_segment(ref_a, [3], ref_a.length)]), runner.forward([_segment(b_alone, second, 0)])]
    )
    assert torch.allclose(together, expected, atol=1e-4, rtol=1e-5)


def test_fused_projections_give_the_same_logits(lively):
    fused = copy.deepcopy(lively.model)
    assert fuse_projections(fused) == len(fused.model.language_model.layers)
    assert not hasattr(fused.model.language_model.layers[0].self_attn, "q_proj")
    assert fuse_projections(fused) == 0  # idempotent
    plain, fast = ModelRunner(lively.model), ModelRunner(fused)
    ids = _prompts()[3]
    a, b = (
        plain.forward([_segment(plain.new_kv(40), ids, 0)]),
        fast.forward([_segment(fast.new_kv(40), ids, 0)]),
    )
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-5)


def test_a_fused_layer_quantizes_to_the_concatenation_of_its_parts(lively):
    """Per-output-channel int8 scales: quantizing the fused weight equals quantizing each part."""
    attn = lively.model.model.language_model.layers[0].self_attn
    parts = [attn.q_proj, attn.k_proj, attn.v_proj]
    fused = copy.deepcopy(lively.model)
    fuse_projections(fused)
    qkv = fused.model.language_model.layers[0].self_attn.qkv_proj
    x = torch.randn(3, qkv.in_features)
    for fmt in ("int8", "int4"):
        whole = quantize_linear(qkv, fmt)(x)
        split = torch.cat([quantize_linear(p, fmt)(x) for p in parts], dim=-1)
        assert torch.equal(whole, split), fmt


# bf16 keeps 8 significant bits: unit roundoff u = 2^-8 ~ 0.39 %. In the bf16 path every weight is
# rounded once and every activation after each of the ~10 rounded ops of a layer (projections
# accumulate in fp32 inside the kernels), so with independent errors the logits' relative error is
# about sqrt(2 layers x 10 + 1) x u ~ 1.8 % for this 2-layer model; measured 1.2 % (bf16 weights)
# and 2.1 % (int8 weights + bf16 activations vs int8 + fp32). The bound allows twice the estimate:
# 4 % relative L2 and 0.15 logit standard deviations for the largest single logit. A real 28-layer
# model's error grows with depth (~sqrt(28/2) x); the greedy-identity tests stay on fp32.
#
# With int8 weights the engine's kernels also round each activation row to int8 per block of 32
# (vision/engine/kernels), in both runs. A bf16 rounding that moves an activation across an int8
# step changes it by a whole step, block max / 127 (up to 2^-7 of the block's largest value), not
# by 2^-8 of itself: about twice bf16's own error per op. Measured 2.5-5.6 % relative L2 and up to
# 0.19 logit standard deviations on these prompts; the bound allows 8 % and 0.3.
BF16_REL_L2 = {"bf16": 0.04, "int8": 0.08}
BF16_MAX_STD = {"bf16": 0.15, "int8": 0.30}


@pytest.mark.parametrize("lm_format", ["bf16", "int8"])
def test_bf16_activations_stay_within_the_stated_bound_of_fp32(lively, lm_format):
    from vision.engine.quant import quantize_qwen3vl

    fused = copy.deepcopy(lively.model)
    fuse_projections(fused)
    reference_model = fused
    if lm_format == "int8":  # same int8 weights, only the activations differ
        quantize_qwen3vl(fused, lm_format="int8", vision_format="fp32")
    else:
        reference_model = copy.deepcopy(fused)
        quantize_qwen3vl(fused, lm_format="bf16", vision_format="fp32")
    fp32 = ModelRunner(reference_model, act_dtype=torch.float32)
    bf16 = ModelRunner(fused, act_dtype=torch.bfloat16)
    assert (fp32.dtype, bf16.dtype) == (torch.float32, torch.bfloat16)
    for ids in _prompts():
        ref = fp32.forward([_segment(fp32.new_kv(40), ids, 0)])[0]
        out = bf16.forward([_segment(bf16.new_kv(40), ids, 0)])[0]
        error = out - ref
        assert error.norm() / ref.norm() <= BF16_REL_L2[lm_format]
        assert error.abs().max() <= BF16_MAX_STD[lm_format] * ref.std()
        assert bf16.new_kv(1).keys[0].dtype == torch.bfloat16  # the KV cache is bf16 too


def test_bf16_decode_attention_op_batched_equals_alone_and_tracks_sdpa(lively):
    """bf16 activations decode through the kernels' attention op (AVX-512 or AVX2 CPUs): 4 sequences in
    one step give what each gives decoding alone in its own slot, and the logits stay within bf16
    noise of the same runner on SDPA (the op's fp32 softmax weights are the closer of the two)."""
    from vision.engine import kernels
    from vision.engine.quant import quantize_qwen3vl

    model = copy.deepcopy(lively.model)
    fuse_projections(model)
    quantize_qwen3vl(model, lm_format="bf16", vision_format="fp32")
    runners = [ModelRunner(model, act_dtype=torch.bfloat16, kv_slots=6, kv_slot_tokens=64) for _ in range(3)]
    batched, alone, sdpa = runners
    assert (batched._decode_attn is not None) == bool(
        kernels.module() is not None and kernels.isa().attention
    )
    sdpa._decode_attn = None
    prompts = _prompts()
    kvs = {id(r): [r.new_kv(40) for _ in prompts] for r in runners}
    for r in runners:
        for kv, ids in zip(kvs[id(r)], prompts, strict=True):
            r.forward([_segment(kv, ids, 0)])
    for step in range(3):
        tokens = [7 + step, 8 + step, 9 + step, 10 + step]
        together = batched.forward(
            [_segment(kv, [t], kv.length) for kv, t in zip(kvs[id(batched)], tokens, strict=True)]
        )
        one_by_one = torch.cat(
            [
                alone.forward([_segment(kv, [t], kv.length)])
                for kv, t in zip(kvs[id(alone)], tokens, strict=True)
            ]
        )
        reference = sdpa.forward(
            [_segment(kv, [t], kv.length) for kv, t in zip(kvs[id(sdpa)], tokens, strict=True)]
        )
        assert torch.allclose(together, one_by_one, atol=1e-4, rtol=1e-5), (together - one_by_one).abs().max()
        assert (together - reference).norm() / reference.norm() <= BF16_REL_L2["bf16"]
        assert not torch.allclose(together[0], together[1])


def test_a_kernel_path_forced_lower_lowers_the_decode_attention_path(lively):
    """VISION_KERNEL_ISA (here `use_isa`) simulates a smaller CPU for the attention op too: avx2
    runs its AVX2 path, ref falls back to SDPA; the default takes the best path the CPU runs."""
    from vision.engine import kernels
    from vision.engine.quant import quantize_qwen3vl

    model = copy.deepcopy(lively.model)
    quantize_qwen3vl(model, lm_format="bf16", vision_format="fp32")
    best = kernels.isa().attention
    assert best == (3 if kernels.active_isa() == "avx512vnni" else 1)  # every CPU kind has AVX2
    assert ModelRunner(model, act_dtype=torch.bfloat16)._attn_isa == best
    with kernels.use_isa("avx2"):
        runner = ModelRunner(model, act_dtype=torch.bfloat16)
        assert runner._attn_isa == 1 and runner.isa.name == "avx2" and not runner._flash
    with kernels.use_isa("ref"):
        runner = ModelRunner(model, act_dtype=torch.bfloat16)
        assert runner._decode_attn is None and runner._attn_isa == 0


def _flash_cpu() -> bool:
    from vision.engine import kernels

    return kernels.bf16_ops_available()


def test_bf16_prompt_chunks_on_the_kernels_prefill_attention_track_sdpa(lively, monkeypatch):
    """bf16 prompt chunks of 16 rows or more attend through the kernels' prefill attention (AVX-512
    BF16 CPUs), a first chunk causal from 0 and a later one after cached tokens: the logits stay
    within the bf16 bound of the same runner on SDPA, and the call really happened. Shorter chunks
    (and CPUs without AVX-512 BF16) keep SDPA."""
    from vision.engine import kernels, language_model
    from vision.engine.quant import quantize_qwen3vl

    model = copy.deepcopy(lively.model)
    fuse_projections(model)
    quantize_qwen3vl(model, lm_format="bf16", vision_format="fp32")
    flash, sdpa = ModelRunner(model, act_dtype=torch.bfloat16), ModelRunner(model, act_dtype=torch.bfloat16)
    assert flash._flash == _flash_cpu()
    sdpa._flash = False
    calls: list[int] = []
    original = kernels.prefill_attention
    monkeypatch.setattr(
        language_model.kernels,
        "prefill_attention",
        lambda q, *a, **k: calls.append(q.shape[1]) or original(q, *a, **k),
    )
    ids = _prompts()[3] + _prompts()[1]  # 47 tokens: chunks of 30 and 17
    for r in (flash, sdpa):
        kv = r.new_kv(64)
        first = r.forward([_segment(kv, ids[:30], 0)])
        second = r.forward([_segment(kv, ids[30:], 30)])
        short = r.forward([_segment(r.new_kv(16), ids[:5], 0)])
        if r is flash:
            got = (first, second, short)
    layers = len(lively.model.model.language_model.layers)
    assert calls == ([30] * layers + [17] * layers if _flash_cpu() else [])
    for ours, theirs in zip(got, (first, second, short), strict=True):
        assert (ours - theirs).norm() / theirs.norm() <= BF16_REL_L2["bf16"]
    assert torch.equal(got[2], short)  # 5 rows: SDPA in both


@pytest.mark.parametrize("lm_format", ["bf16", "int8"])
def test_fused_bf16_decode_ops_give_the_same_bits_as_the_ops_they_replace(lively, lm_format):
    """bf16 activations: the residual add with the RMSNorm after it (`add_rms_norm_bf16`) and the
    decode rows' q/k norms, rotary and KV writes (`decode_qk_rope_store`) are one kernel call each.
    They round where torch's ops round, so prompts and decode steps (4 sequences together, then one
    alone) give bit-identical logits and KV caches to the same runner on the separate ops."""
    from vision.engine import kernels
    from vision.engine.quant import quantize_qwen3vl

    if kernels.module() is None or not kernels.isa().attention:
        pytest.fail("the engine kernels (decode attention) must build on the test machine")
    model = copy.deepcopy(lively.model)
    fuse_projections(model)
    quantize_qwen3vl(model, lm_format=lm_format, vision_format="fp32")
    fused, plain = (
        ModelRunner(model, act_dtype=torch.bfloat16, kv_slots=6, kv_slot_tokens=64) for _ in range(2)
    )
    assert fused._qk_rope_store is not None and fused._add_rms_bf16 is not None
    plain._qk_rope_store = plain._add_rms_bf16 = None
    calls = []
    store = fused._qk_rope_store
    fused._qk_rope_store = lambda *args: calls.append(args[0].shape[0]) or store(*args)
    prompts = _prompts()
    kvs = {id(r): [r.new_kv(40) for _ in prompts] for r in (fused, plain)}
    for kv_f, kv_p, ids in zip(kvs[id(fused)], kvs[id(plain)], prompts, strict=True):
        assert torch.equal(fused.forward([_segment(kv_f, ids, 0)]), plain.forward([_segment(kv_p, ids, 0)]))
    for step in range(4):
        tokens = [7 + step, 8 + step, 9 + step, 10 + step][: 4 if step < 3 else 1]  # then one alone
        got = [
            r.forward([_segment(kv, [t], kv.length) for kv, t in zip(kvs[id(r)], tokens, strict=False)])
            for r in (fused, plain)
        ]
        assert torch.equal(got[0], got[1]), (got[0] - got[1]).abs().max()
        assert not torch.allclose(got[0][0], got[0][-1]) or len(tokens) == 1
    layers = len(model.model.language_model.layers)
    assert calls == [4] * (3 * layers) + [1] * layers
    for kv_f, kv_p in zip(kvs[id(fused)], kvs[id(plain)], strict=True):
        n = kv_f.length
        assert n == kv_p.length
        for layer in range(layers):
            assert torch.equal(kv_f.keys[layer][:, :n], kv_p.keys[layer][:, :n])
            assert torch.equal(kv_f.values[layer][:, :n], kv_p.values[layer][:, :n])
