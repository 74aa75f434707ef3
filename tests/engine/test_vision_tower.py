"""The vision tower: several images in one pass, the kernels' attention and GELU on converted
towers, row pieces with the same bits.

GIVEN the lively tiny model WHEN images run through the tower whole, in row pieces or several in
one pass, in fp32, bf16 or int8 THEN each gives what it gives alone, within the stated bound of the
exact fp32 tower, and where the kernels run they really ran.
"""

from __future__ import annotations

import copy

import pytest
import torch


def test_several_images_through_the_vision_tower_in_one_pass_equal_each_alone(lively):
    from tests.engine.engine_helpers import picture
    from vision.engine import ChatMessage, PixelBudget
    from vision.engine.preprocess import Preprocessor
    from vision.engine.vision_tower import ImageEncoding, advance_encodings

    pre = Preprocessor(lively.tokenizer, lively.processor.image_processor, lively.processor.chat_template)
    images = [picture(1), picture(3, (300, 90)), picture(6, (400, 330))]
    prompt = pre.prepare([ChatMessage("user", tuple(images))], PixelBudget.for_task("chat"), 8192)
    inputs = [pre.pixel_values(image) for image in prompt.images]
    visual = lively.model.model.visual
    together = [ImageEncoding(visual, p, g) for p, g in inputs]
    alone = [ImageEncoding(visual, p, g) for p, g in inputs]
    assert len({job.patches for job in together}) == 3  # different sizes in one pass
    blocks = len(lively.model.model.visual.blocks)
    calls = []
    original = lively.model.model.visual.blocks[0].forward
    lively.model.model.visual.blocks[0].forward = lambda *a, **k: (
        calls.append(a[0].shape[0]) or original(*a, **k)
    )
    try:
        advance_encodings(together, blocks)
    finally:
        del lively.model.model.visual.blocks[0].forward
    assert calls == [sum(p.shape[0] for p, _ in inputs)]  # block 0 ran once, over all three images
    for job in alone:
        assert job.step(blocks)
    for a, b in zip(together, alone, strict=True):
        assert torch.allclose(a.result.embeds, b.result.embeds, atol=1e-5)
        for x, y in zip(a.result.deepstack, b.result.deepstack, strict=True):
            assert torch.allclose(x, y, atol=1e-5)


@pytest.mark.parametrize("vision_format", ["bf16", "int8"])
def test_vision_on_the_kernels_prefill_attention(lively, monkeypatch, vision_format):
    """A bf16 or int8 vision tower attends through the kernels' prefill attention on AVX-512 BF16
    CPUs (int8: q, k, v rounded to bf16 for it, the hidden state stays fp32). Against the exact
    fp32 tower its image features are as close as the same tower on SDPA (measured: bf16 1.47 /
    0.99 % relative L2 vs SDPA's 1.47 / 0.94 %; int8 3.93 / 2.25 % vs 3.91 / 2.14 %; bound: 10 %
    more, plus 0.2 points). A block run in row pieces (keys and values packed once) gives the
    whole block's result; two images in one pass give what each gives alone."""
    from tests.engine.engine_helpers import picture
    from vision.engine import ChatMessage, PixelBudget, vision_blocks
    from vision.engine.preprocess import Preprocessor
    from vision.engine.quant import quantize_qwen3vl
    from vision.engine.vision_tower import ImageEncoding, advance_encodings

    model = copy.deepcopy(lively.model)
    quantize_qwen3vl(model, lm_format="fp32", vision_format=vision_format)
    pre = Preprocessor(lively.tokenizer, lively.processor.image_processor, lively.processor.chat_template)
    prompt = pre.prepare(
        [ChatMessage("user", (picture(2), picture(4, (300, 200))))], PixelBudget.for_task("chat"), 8192
    )
    inputs = [pre.pixel_values(image) for image in prompt.images]
    blocks = len(model.model.visual.blocks)

    def encode(visual: torch.nn.Module, pieces: int | None = None) -> list[torch.Tensor]:
        out = []
        for p, g in inputs:
            job = ImageEncoding(visual, p, g)
            if pieces is None:
                assert job.step(blocks)
            else:
                while not job.step_rows(pieces):
                    pass
            out.append(job.result.embeds)
        return out

    visual = model.model.visual
    whole, in_pieces = encode(visual), encode(visual, pieces=7)
    together = [ImageEncoding(visual, p, g) for p, g in inputs]
    advance_encodings(together, blocks)
    exact = encode(lively.model.model.visual)  # the fp32 tower: SDPA whatever the CPU
    monkeypatch.setattr(vision_blocks.kernels, "flash_available", lambda head_dim: False)
    sdpa = encode(visual)
    dtype = {"bf16": torch.bfloat16, "int8": torch.float32}[vision_format]
    for w, p, t, s_, e in zip(whole, in_pieces, together, sdpa, exact, strict=True):
        assert w.dtype == dtype
        ours, theirs = ((x.float() - e).norm() / e.norm() for x in (w, s_))
        assert ours <= 1.1 * theirs + 0.002, (ours, theirs)
        assert torch.equal(t.result.embeds, w)
        # row pieces: the same attention rows; the projections and MLP over 7 rows may round
        # differently from one call over all rows (GEMMs pick their blocking by M)
        assert (p.float() - w.float()).norm() / e.norm() <= 0.01
    if (
        vision_blocks.kernels.bf16_ops_available()
    ):  # the kernels' attention really ran: its result is not SDPA's bit for bit
        assert not torch.equal(whole[0], sdpa[0])


@pytest.mark.parametrize("vision_format", ["fp32", "int8"])
def test_a_quantized_vision_towers_mlp_runs_its_gelu_on_the_kernels(lively, monkeypatch, vision_format):
    """int8 vision weights with fp32 activations: every block's MLP takes its tanh GELU from the
    kernels (in place, counted here), and the MLP's output equals the module's own (torch's GELU)
    within 1e-5 relative L2: the GELUs differ by a few fp32 ulps, the int8 linears round far more.
    The exact fp32 tower keeps the module (no kernel call), bit for bit."""
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionMLP

    from vision.engine import kernels, vision_blocks
    from vision.engine.quant import quantize_qwen3vl

    if kernels.module() is None:
        pytest.fail("the kernels did not build here")
    model = copy.deepcopy(lively.model)
    quantize_qwen3vl(model, lm_format="fp32", vision_format=vision_format)
    calls: list[tuple[int, ...]] = []
    real = kernels.gelu_tanh_
    monkeypatch.setattr(
        vision_blocks.kernels, "gelu_tanh_", lambda x: calls.append(tuple(x.shape)) or real(x)
    )
    blocks = model.model.visual.blocks
    x = torch.randn(37, blocks[0].mlp.linear_fc1.in_features, generator=torch.Generator().manual_seed(5))
    for block in blocks:
        got, want = block.mlp(x), Qwen3VLVisionMLP.forward(block.mlp, x)  # the module's own GELU
        if vision_format == "fp32":
            assert torch.equal(got, want)
        else:
            assert (got - want).norm() / want.norm() <= 1e-5
    width = blocks[0].mlp.linear_fc1.out_features
    assert calls == ([] if vision_format == "fp32" else [(37, width)] * len(blocks))


def test_a_quantized_vision_blocks_qkv_and_rotary_come_from_one_kernel_call(lively, monkeypatch):
    """int8 vision weights, fp32 activations: a block's q, k (rotary) and v for the kernels'
    attention come from one `vision_qkv_rope_bf16` call per block (counted), bit for bit what
    transformers' rotary and .bfloat16() give on the same projection."""
    from transformers.models.qwen3_vl.modeling_qwen3_vl import apply_rotary_pos_emb_vision

    from vision.engine import kernels, vision_blocks
    from vision.engine.quant import quantize_qwen3vl
    from vision.engine.vision_tower import ImageEncoding

    if kernels.module() is None:
        pytest.fail("the kernels did not build here")
    model = copy.deepcopy(lively.model)
    quantize_qwen3vl(model, lm_format="fp32", vision_format="int8")
    visual = model.model.visual
    flat = visual.patch_embed.proj.in_channels * 2 * visual.patch_embed.proj.kernel_size[1] ** 2
    job = ImageEncoding(visual, torch.randn(4 * 6, flat), torch.tensor([[1, 4, 6]]))
    calls = []
    real = kernels.vision_qkv_rope_bf16
    monkeypatch.setattr(
        vision_blocks.kernels, "vision_qkv_rope_bf16", lambda *a: calls.append(a[0].shape) or real(*a)
    )
    attn = visual.blocks[0].attn
    x = visual.blocks[0].norm1(job.hidden)
    got = vision_blocks.vision_qkv(attn, x, job.position_embeddings, bf16=True)
    q, k, v = attn.qkv(x).reshape(x.shape[0], 3, attn.num_heads, -1).permute(1, 0, 2, 3).unbind(0)
    q, k = apply_rotary_pos_emb_vision(q, k, *job.position_embeddings)
    assert calls == [(x.shape[0], 3 * attn.dim)]
    for ours, theirs in zip(got, (q, k, v), strict=True):
        assert torch.equal(ours, theirs.bfloat16())


def test_a_quantized_towers_many_rows_run_in_pieces_with_the_same_bits(lively, monkeypatch, kernel_path):
    """int8 vision weights, fp32 activations, several images in one pass: past VISION_PIECE_ROWS
    rows a block's qkv (with its rotary) and its MLP run in row pieces (no 50-70 MB fresh output
    per block), and every image's features are bit for bit those of one whole-rows pass. On every
    kernel path: with the kernels' bf16 attention (AVX-512 BF16) and with SDPA (any other)."""
    from tests.engine.engine_helpers import picture
    from vision.engine import ChatMessage, PixelBudget, kernels, vision_blocks
    from vision.engine.preprocess import Preprocessor
    from vision.engine.quant import quantize_qwen3vl
    from vision.engine.vision_tower import ImageEncoding, advance_encodings

    if kernels.module() is None:
        pytest.fail("the kernels did not build here")
    model = copy.deepcopy(lively.model)
    quantize_qwen3vl(model, lm_format="fp32", vision_format="int8")
    pre = Preprocessor(lively.tokenizer, lively.processor.image_processor, lively.processor.chat_template)
    images = [picture(1), picture(3, (300, 90)), picture(6, (400, 330))]
    prompt = pre.prepare([ChatMessage("user", tuple(images))], PixelBudget.for_task("chat"), 8192)
    inputs = [pre.pixel_values(image) for image in prompt.images]
    visual = model.model.visual
    blocks = len(model.model.visual.blocks)
    rows = sum(p.shape[0] for p, _ in inputs)
    pieces: list[int] = []
    real_mlp_rows, real_qkv_rows = vision_blocks._vision_mlp_rows, vision_blocks._vision_qkv_rows
    monkeypatch.setattr(
        vision_blocks, "_vision_mlp_rows", lambda mlp, x: pieces.append(x.shape[0]) or real_mlp_rows(mlp, x)
    )
    qkv_pieces: list[int] = []
    monkeypatch.setattr(
        vision_blocks,
        "_vision_qkv_rows",
        lambda attn, x, *a: qkv_pieces.append(x.shape[0]) or real_qkv_rows(attn, x, *a),
    )

    def encode(limit: int) -> list:
        monkeypatch.setattr(vision_blocks, "VISION_PIECE_ROWS", limit)
        jobs = [ImageEncoding(visual, p, g) for p, g in inputs]
        advance_encodings(jobs, blocks)
        return jobs

    whole = encode(1 << 30)
    assert pieces == qkv_pieces == [rows] * blocks
    pieces.clear()
    qkv_pieces.clear()
    cut = encode(16)
    assert pieces == qkv_pieces == ([16] * (rows // 16) + ([rows % 16] if rows % 16 else [])) * blocks
    for a, b in zip(cut, whole, strict=True):
        assert torch.equal(a.result.embeds, b.result.embeds)
        for x, y in zip(a.result.deepstack, b.result.deepstack, strict=True):
            assert torch.equal(x, y)


def test_a_quantized_block_without_the_kernels_attention_has_the_modules_bits(
    lively, monkeypatch, kernel_path
):
    """Where the kernels' bf16 attention does not run (no AVX-512 BF16, or a kernel path forced
    below it), a quantized tower's block still runs in the runner (its row pieces) with
    transformers' attention: bit for bit `Qwen3VLVisionBlock.forward`, whole and in pieces of 16
    rows, over two images in one pass (one attention span each)."""
    from transformers.models.qwen3_vl.modeling_qwen3_vl import Qwen3VLVisionBlock

    from vision.engine import kernels, vision_blocks
    from vision.engine.quant import quantize_qwen3vl
    from vision.engine.vision_tower import ImageEncoding

    model = copy.deepcopy(lively.model)
    quantize_qwen3vl(model, lm_format="fp32", vision_format="int8")
    visual = model.model.visual
    block = visual.blocks[0]
    if kernels.flash_available(block.attn.head_dim):
        pytest.skip(f"the kernels' bf16 attention runs on the {kernel_path} path here (tested above)")
    flat = visual.patch_embed.proj.in_channels * 2 * visual.patch_embed.proj.kernel_size[1] ** 2
    gen = torch.Generator().manual_seed(9)
    jobs = [
        ImageEncoding(visual, torch.randn(h * w, flat, generator=gen), torch.tensor([[1, h, w]]))
        for h, w in ((4, 6), (6, 8))
    ]
    hidden = torch.cat([job.hidden for job in jobs])
    cu_seqlens = torch.tensor([0, 24, 24 + 48], dtype=torch.int32)
    cos = torch.cat([job.position_embeddings[0] for job in jobs])
    sin = torch.cat([job.position_embeddings[1] for job in jobs])
    assert block.runs_own_arithmetic(hidden) and not block.kernel_attention(hidden)
    with torch.inference_mode():
        want = Qwen3VLVisionBlock.forward(
            block, hidden, cu_seqlens=cu_seqlens, position_embeddings=(cos, sin)
        )
        for limit in (1 << 30, 16):
            monkeypatch.setattr(vision_blocks, "VISION_PIECE_ROWS", limit)
            got = block(hidden, cu_seqlens=cu_seqlens, max_seqlen=None, position_embeddings=(cos, sin))
            assert torch.equal(got, want), (limit, (got - want).abs().max())
