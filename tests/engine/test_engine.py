"""The engine end to end on the tiny checkpoint: real architecture, real tokenizer, real code path.

GIVEN a lively tiny model (see engine_helpers.make_lively) WHEN requests go through the engine
THEN greedy outputs match transformers' own generate, and batching, prefix reuse, the vision cache,
cancellation and failure isolation hold, checked by token identity and by counting steps.
"""

from __future__ import annotations

import math

import pytest
import torch

from tests.engine.engine_helpers import ask, picture, text
from vision.engine import (
    ChatMessage,
    Engine,
    EngineConfig,
    EngineNotReady,
    EngineOverloaded,
    FinishReason,
    InvalidRequest,
    PixelBudget,
    RequestTooLong,
    SamplingParams,
)


@pytest.fixture(scope="module")
def fused(lively):
    """The engine's production layout (q/k/v and gate/up fused at load) of the same weights;
    `lively` itself stays unfused for transformers' own generate, the reference."""
    import copy

    from vision.engine.fusion import fuse_projections

    loaded = copy.copy(lively)
    loaded.model = copy.deepcopy(lively.model)
    assert fuse_projections(loaded.model) > 0
    return loaded


@pytest.fixture
def engine(fused, tiny_checkpoint):
    engine = Engine(EngineConfig(model=str(tiny_checkpoint), threads=2, prefill_chunk=32), loaded=fused)
    engine.load(timeout=60)
    yield engine
    engine.shutdown()


def _reference_generate(lively, parts, max_tokens: int) -> list[int]:
    """transformers' own recipe: processor + generate, greedy."""
    image = parts[0].image
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": parts[1].text}]}]
    processor = lively.processor
    prompt = processor.apply_chat_template(conversation, tokenize=False, add_generation_prompt=True)
    budget = PixelBudget.for_task("chat")
    inputs = processor(
        text=[prompt],
        images=[image],
        return_tensors="pt",
        images_kwargs={"size": {"shortest_edge": budget.min_pixels, "longest_edge": budget.max_pixels}},
    )
    out = lively.model.generate(
        **inputs, max_new_tokens=max_tokens, min_new_tokens=max_tokens, do_sample=False, eos_token_id=None
    )
    return out[0, inputs["input_ids"].shape[1] :].tolist()


def test_greedy_output_matches_transformers_generate(engine, lively):
    parts = (picture(1), text("What is written on this page?"))
    ours = engine.generate(ask(parts, max_tokens=12), timeout=60)
    assert ours.error is None
    assert ours.token_ids == _reference_generate(lively, parts, 12)
    assert ours.finish_reason == FinishReason.LENGTH
    assert ours.usage.completion_tokens == 12


def test_image_encoding_matches_transformers_image_features(lively):
    from vision.engine.preprocess import Preprocessor
    from vision.engine.vision_tower import ImageEncoding

    pre = Preprocessor(lively.tokenizer, lively.processor.image_processor, lively.processor.chat_template)
    prompt = pre.prepare([ChatMessage("user", (picture(2), text("hi")))], PixelBudget.for_task("chat"), 4096)
    pixels, grid = pre.pixel_values(prompt.images[0])
    job = ImageEncoding(lively.model.model.visual, pixels, grid)
    steps = 1
    while not job.step(1):
        steps += 1
    assert steps == len(lively.model.model.visual.blocks)  # one block per piece
    with torch.inference_mode():
        ref = lively.model.model.get_image_features(pixels, grid.view(1, 3))
    assert torch.allclose(job.result.embeds, ref.pooler_output[0], atol=1e-5)
    for ours, theirs in zip(job.result.deepstack, ref.deepstack_features, strict=True):
        assert torch.allclose(ours, theirs[0], atol=1e-5)


def test_vision_blocks_run_in_row_pieces_match_transformers_image_features(lively):
    """A block split by rows (q/k/v of all rows, then attention + MLP 7 rows at a time) gives
    the image features of the whole-block forward."""
    from vision.engine.preprocess import Preprocessor
    from vision.engine.vision_tower import ImageEncoding

    pre = Preprocessor(lively.tokenizer, lively.processor.image_processor, lively.processor.chat_template)
    prompt = pre.prepare([ChatMessage("user", (picture(2), text("hi")))], PixelBudget.for_task("chat"), 4096)
    pixels, grid = pre.pixel_values(prompt.images[0])
    job = ImageEncoding(lively.model.model.visual, pixels, grid)
    rows = job.patches
    pieces = 1
    while not job.step_rows(7):
        pieces += 1
    assert rows > 7 and pieces == len(lively.model.model.visual.blocks) * (1 + math.ceil(rows / 7))
    with torch.inference_mode():
        ref = lively.model.model.get_image_features(pixels, grid.view(1, 3))
    # fp32 GEMMs over 7 rows round differently from one over all rows (measured: 3e-5 on values
    # up to 57, a relative 6e-7); whole blocks are bit-identical (the test above).
    assert torch.allclose(job.result.embeds, ref.pooler_output[0], rtol=1e-5, atol=1e-4)
    for ours, theirs in zip(job.result.deepstack, ref.deepstack_features, strict=True):
        assert torch.allclose(ours, theirs[0], rtol=1e-5, atol=1e-4)


def test_a_block_started_in_row_pieces_finishes_alone_when_images_batch(lively):
    """An image part-way through a block (row pieces) and a new one advance together: the first
    finishes its block on its own, the other runs block 0; both end as transformers' features."""
    from vision.engine.preprocess import Preprocessor
    from vision.engine.vision_tower import ImageEncoding, advance_encodings

    pre = Preprocessor(lively.tokenizer, lively.processor.image_processor, lively.processor.chat_template)
    inputs = []
    for seed in (2, 3):
        prompt = pre.prepare(
            [ChatMessage("user", (picture(seed), text("hi")))], PixelBudget.for_task("chat"), 4096
        )
        inputs.append(pre.pixel_values(prompt.images[0]))
    first, second = (ImageEncoding(lively.model.model.visual, pixels, grid) for pixels, grid in inputs)
    first.step_rows(7)
    first.step_rows(7)
    assert first.in_block and first.next_block == 0
    advance_encodings([first, second], 1)
    assert not first.in_block and (first.next_block, second.next_block) == (1, 1)
    while first.result is None or second.result is None:
        advance_encodings([first, second], 1)
    for job, (pixels, grid) in zip((first, second), inputs, strict=True):
        with torch.inference_mode():
            ref = lively.model.model.get_image_features(pixels, grid.view(1, 3))
        assert torch.allclose(job.result.embeds, ref.pooler_output[0], rtol=1e-5, atol=1e-4)


def test_positions_match_transformers_rope_index(lively):
    from vision.engine.preprocess import Preprocessor

    pre = Preprocessor(lively.tokenizer, lively.processor.image_processor, lively.processor.chat_template)
    messages = [ChatMessage("user", (picture(1), text("first"), picture(3, (300, 90)), text("second")))]
    prompt = pre.prepare(messages, PixelBudget.for_task("chat"), 4096)
    ids = prompt.input_ids[None]
    grids = torch.tensor([image.grid_thw for image in prompt.images])
    mm = (ids == pre.image_token_id).int()
    positions, delta = lively.model.model.get_rope_index(ids, mm, grids)
    assert torch.equal(prompt.positions, positions[:, 0])
    assert prompt.next_position == prompt.length + int(delta)


def test_batch_gives_the_same_tokens_as_each_alone(engine):
    requests = [
        ask((picture(i), text("Describe the picture. " + "Please be precise. " * i)), max_tokens=6 + 3 * i)
        for i in range(4)
    ]
    for r in requests:
        r.use_prefix_cache = False
    steps_before = engine.steps
    alone = [engine.generate(r, timeout=60).token_ids for r in requests]
    steps_alone = engine.steps - steps_before

    steps_before = engine.steps
    handles = [engine.submit(r) for r in requests]
    together = [h.result(timeout=60).token_ids for h in handles]
    steps_together = engine.steps - steps_before

    assert together == alone
    assert [len(t) for t in together] == [6, 9, 12, 15]
    # They really shared steps: the batch needs far fewer passes than the four runs in a row.
    assert steps_together < 0.7 * steps_alone


def test_three_turn_conversation_reuses_prefix_and_matches_recompute(engine):
    first = (picture(2), text("What is on this invoice?"))

    def conversation(use_cache: bool):
        history: list[ChatMessage] = []
        turns = []
        parts = first
        for turn in range(3):
            out = engine.generate(ask(parts, 8, history=history, use_prefix_cache=use_cache), timeout=60)
            turns.append(out)
            history = [*history, ChatMessage("user", parts), ChatMessage.text("assistant", out.text)]
            parts = (text(f"And what about line {turn + 2}?"),)
        return turns

    recomputed = conversation(False)
    reused = conversation(True)
    assert [t.token_ids for t in reused] == [t.token_ids for t in recomputed]
    assert reused[0].usage.cached_tokens == 0
    image_tokens = reused[0].usage.image_tokens
    for turn in (1, 2):
        # Everything up to the previous turn's answer (image included) came from the cache.
        assert reused[turn].usage.cached_tokens >= reused[turn - 1].usage.prompt_tokens > image_tokens
        assert reused[turn].timings.vision_s == 0  # the image was not encoded again
        assert recomputed[turn].usage.cached_tokens == 0
    stats = engine.status().prefix_cache
    assert stats["hits"] >= 2
    assert stats["reused_tokens"] >= reused[1].usage.cached_tokens + reused[2].usage.cached_tokens


def test_same_image_twice_is_encoded_once(engine):
    parts = (picture(4), text("Summarise."))
    before = engine.status().vision_cache
    first = engine.generate(ask(parts, 2, use_prefix_cache=False), timeout=60)
    second = engine.generate(
        ask((parts[0], text("Now list the totals.")), 2, use_prefix_cache=False), timeout=60
    )
    assert first.timings.vision_s > 0
    assert second.timings.vision_s == 0
    # What /metrics reports as vllm:mm_cache_queries / _hits.
    after = engine.status().vision_cache
    assert after["hits"] == before["hits"] + 1
    assert after["misses"] == before["misses"] + 1
    assert after["entries"] >= 1 and after["mb"] <= after["max_mb"]


def test_stream_deltas_concatenate_to_final_text(engine):
    handle = engine.submit(ask((picture(5), text("请描述这张图片。")), 24))
    deltas = list(handle)
    final = handle.result()
    assert deltas[-1].finished and deltas[-1].finish_reason == FinishReason.LENGTH
    assert "".join(d.text for d in deltas) == final.text
    assert sum(len(d.token_ids) for d in deltas) == 24 == len(final.token_ids)
    # Random weights emit arbitrary byte tokens, so broken characters can be part of the text
    # itself; clean Chinese streaming is checked with real text in test_sampling.py.


def test_stop_string_ends_the_answer(engine):
    probe = engine.generate(ask((picture(1), text("What is written on this page?")), 12), timeout=60)
    assert len(probe.text) > 4
    stop = probe.text[2:4]
    out = engine.generate(
        ask((picture(1), text("What is written on this page?")), 12, stop=(stop,)), timeout=60
    )
    assert out.finish_reason == FinishReason.STOP
    assert out.text == probe.text[: probe.text.find(stop)]


def test_seeded_sampling_repeats_and_differs_by_seed(engine):
    parts = (picture(3), text("Tell a story about this image."))
    a = engine.generate(ask(parts, 10, temperature=1.0, seed=7, use_prefix_cache=False), timeout=60)
    b = engine.generate(ask(parts, 10, temperature=1.0, seed=7, use_prefix_cache=False), timeout=60)
    others = {
        tuple(engine.generate(ask(parts, 10, temperature=1.0, seed=s), timeout=60).token_ids)
        for s in (8, 9, 10)
    }
    assert a.token_ids == b.token_ids
    assert others - {tuple(a.token_ids)}


def test_cancel_frees_the_slot(lively, tiny_checkpoint):
    engine = Engine(
        EngineConfig(model=str(tiny_checkpoint), threads=2, max_batch_size=1), loaded=lively
    ).load(60)
    try:
        long = engine.submit(ask((text("Write forever."),), 100_000))
        first = long.next_delta(timeout=30)  # it is running
        assert not first.finished
        queued = engine.submit(ask((text("Short one."),), 3))
        long.cancel()
        out = long.result(timeout=30)
        assert out.finish_reason == FinishReason.CANCELLED
        assert queued.result(timeout=30).finish_reason == FinishReason.LENGTH
        assert engine.status().running == 0
    finally:
        engine.shutdown()


def test_a_failing_request_fails_alone(engine, monkeypatch):
    good = ask((picture(1), text("Fine request.")), 10)
    bad = ask((picture(6), text("This image breaks preprocessing.")), 10)
    bad_digest = bad.messages[0].content[0].sha256
    pre = engine._pre
    original = pre.pixel_values

    def exploding(image):
        if image.sha256 == bad_digest:
            raise RuntimeError("corrupt pixels")
        return original(image)

    monkeypatch.setattr(pre, "pixel_values", exploding)
    good_handle = engine.submit(good)
    bad_handle = engine.submit(bad)
    bad_out = bad_handle.result(timeout=60)
    good_out = good_handle.result(timeout=60)
    assert bad_out.finish_reason == FinishReason.ERROR and "corrupt pixels" in bad_out.error
    assert good_out.finish_reason == FinishReason.LENGTH and len(good_out.token_ids) == 10
    # And the engine keeps serving.
    assert engine.generate(ask((text("Still there?"),), 2), timeout=60).error is None


def test_bad_input_is_refused_before_queueing(engine):
    with pytest.raises(InvalidRequest, match="aspect ratio"):
        engine.submit(ask((picture(0, (2000, 5)), text("thin"))))
    with pytest.raises(InvalidRequest, match="role"):
        engine.submit(ask((text("x"),), history=[ChatMessage.text("wizard", "hi")]))
    with pytest.raises(ValueError, match="max_tokens"):  # SamplingParams refuses it when built
        engine.submit(ask((text("x"),), 0))
    assert engine.status().waiting == 0


def test_prompt_limit_and_queue_limit(lively, tiny_checkpoint):
    config = EngineConfig(
        model=str(tiny_checkpoint), threads=2, max_batch_size=1, max_waiting=1, max_prompt_tokens=64
    )
    engine = Engine(config, loaded=lively).load(60)
    try:
        with pytest.raises(RequestTooLong):
            engine.submit(ask((text("word " * 100),)))
        running = engine.submit(ask((text("Run long."),), 100_000))
        running.next_delta(timeout=30)
        waiting = engine.submit(ask((text("Wait."),), 2))
        with pytest.raises(EngineOverloaded):
            engine.submit(ask((text("One too many."),), 2))
        running.cancel()
        assert waiting.result(timeout=30).error is None
    finally:
        engine.shutdown()


def test_deadline_stops_a_request(engine):
    import time

    request = ask((text("Never ending."),), 100_000)
    request.deadline = time.monotonic() + 0.5
    out = engine.generate(request, timeout=60)
    assert out.finish_reason == FinishReason.TIMEOUT
    assert out.error == "deadline exceeded"


def test_image_token_cost_is_known_before_running(engine):
    image = picture(3, (640, 480))
    budget = PixelBudget(64 * 1024, 100 * 1024)
    expected = engine.image_tokens(image, budget)
    request = ask((image, text("Count.")), 1)
    request.pixels = budget
    out = engine.generate(request, timeout=60)
    assert out.usage.image_tokens == expected
    assert expected <= 100  # max_pixels / (32 * 32)


def test_engine_reports_a_missing_model_clearly(tmp_path):
    engine = Engine(EngineConfig(model=str(tmp_path / "nowhere"), dtype="fp32"))
    with pytest.raises(EngineNotReady, match="nowhere"):
        engine.load(timeout=60)
    status = engine.status()
    assert status.state == "error" and "nowhere" in status.error
    with pytest.raises(EngineNotReady):
        engine.submit(ask((text("x"),)))


def test_sampling_params_are_validated(engine):
    request = ask((text("x"),))
    with pytest.raises(ValueError, match="temperature"):  # SamplingParams checks itself when built
        request.sampling = SamplingParams(max_tokens=2, temperature=-1)
        engine.submit(request)
    assert engine.status().waiting == 0


@pytest.mark.parametrize("dtype", ["bf16", "int8", "lm=int8,vision=bf16"])
def test_engine_runs_each_weight_format_end_to_end(tiny_checkpoint, dtype):
    engine = Engine(EngineConfig(model=str(tiny_checkpoint), dtype=dtype, threads=2)).load(timeout=120)
    try:
        status = engine.status()
        lm, _, vision = dtype.partition(",")
        assert status.formats["lm"] == lm.removeprefix("lm=")
        assert status.formats["vision"] == (vision.removeprefix("vision=") or lm)
        out = engine.generate(ask((picture(1), text("Describe it.")), 5), timeout=60)
        assert out.error is None and len(out.token_ids) == 5
    finally:
        engine.shutdown()


def test_auto_formats_are_measured_and_reported(tiny_checkpoint, tmp_path):
    config = EngineConfig(
        model=str(tiny_checkpoint), dtype="auto", threads=2, format_cache=tmp_path / "formats.json"
    )
    engine = Engine(config).load(timeout=120)
    try:
        status = engine.status()
        assert status.formats["lm"] in ("fp32", "bf16", "int8")
        assert status.formats["vision"] in ("fp32", "bf16", "int8")
        measured = status.format_timings["decode_token_s"]
        assert set(measured) == {"fp32", "bf16", "int8"}
        # auto picks the format that is fastest on its workload (prefill, batch-1 and batch-8
        # decode), or a more precise one within the margin; measured on the model's own weights.
        from vision.engine.autotune import PRECISION_MARGIN

        verdict = status.format_verdict
        assert verdict.lm == status.formats["lm"] and verdict.source.startswith("weights of")
        assert verdict.score_s[verdict.lm] <= min(verdict.score_s.values()) * (1 + PRECISION_MARGIN)
        assert verdict.measured_at and set(verdict.load) >= {"loadavg_1m", "others_cpu", "steal"}
        # Only a verdict taken on a calm machine is cached (a verdict from a busy machine would be kept for good).
        assert (tmp_path / "formats.json").exists() == verdict.calm
    finally:
        engine.shutdown()


def test_a_request_without_sampling_parameters_gets_the_checkpoint_defaults(engine):
    """The tiny checkpoint's generation_config.json is Qwen3-VL's (top_k 20, top_p 0.8,
    temperature 0.7, do_sample): an unset request must sample exactly as one that spells them out."""
    parts = (picture(3), text("Tell a story about this image."))
    unset = ask(parts, 10, use_prefix_cache=False, seed=5)
    unset.sampling = SamplingParams(max_tokens=10, ignore_eos=True, seed=5)
    spelled = ask(parts, 10, use_prefix_cache=False, seed=5, temperature=0.7, top_k=20, top_p=0.8)
    greedy = ask(parts, 10, use_prefix_cache=False)
    out_unset = engine.generate(unset, timeout=60).token_ids
    assert out_unset == engine.generate(spelled, timeout=60).token_ids
    assert out_unset != engine.generate(greedy, timeout=60).token_ids


def test_a_missing_model_fails_before_any_tuning(tmp_path, monkeypatch):
    from vision.engine import autotune

    def never(**_):
        raise AssertionError("tuned a model that does not exist")

    monkeypatch.setattr(autotune, "choose_formats", never)
    engine = Engine(
        EngineConfig(model=str(tmp_path / "nowhere"), dtype="auto", format_cache=tmp_path / "f.json")
    )
    with pytest.raises(EngineNotReady, match="nowhere"):
        engine.load(timeout=60)
    assert not (tmp_path / "f.json").exists()


def test_patch_embed_as_one_matrix_product_equals_the_convolution(lively):
    """The vision patch embedding runs as F.linear (its Conv3d has kernel == stride): equal to
    the module within fp32 rounding, and a convolution of another shape keeps the module."""
    from vision.engine.vision_tower import _patch_embed

    embed = lively.model.model.visual.patch_embed
    proj = embed.proj
    flat = proj.weight[0].numel()
    pixels = torch.randn(37, flat, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        ref = embed(pixels)
        ours = _patch_embed(embed, pixels)
    assert ours.shape == ref.shape
    assert torch.allclose(ours, ref, rtol=1e-5, atol=1e-5)
    assert not torch.equal(ours, torch.zeros_like(ours))
    strided = torch.nn.Module()
    strided.proj = torch.nn.Conv3d(proj.in_channels, 8, kernel_size=tuple(proj.kernel_size), stride=1)
    calls = []
    strided.forward = lambda x: calls.append(x) or x  # the module's own forward, recorded
    _patch_embed(strided, pixels)
    assert len(calls) == 1
