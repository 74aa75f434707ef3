"""Scheduling without head-of-line blocking, checked by counting steps (no timings in tests).

GIVEN two streams decoding WHEN a big page arrives THEN every step still gives both streams a
token, and the page is admitted in bounded pieces (one vision block, one prompt chunk per step).
"""

from __future__ import annotations

import math
import time
import weakref

import pytest

from tests.engine.engine_helpers import ask, make_lively, picture, text
from vision.engine import EngineConfig, PixelBudget
from vision.engine.language_model import ModelRunner
from vision.engine.model_calls import ModelCalls
from vision.engine.preprocess import Preprocessor
from vision.engine.sampling import Sampler, TextStream
from vision.engine.scheduler import Scheduler, SchedulerOutput, SeqStatus, Sequence

CHUNK = 16
# Each test's scheduler -> the preprocessor and the model calls it is stepped with (as the engine's).
_HARNESS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


@pytest.fixture(scope="module")
def parts(tiny_checkpoint):
    from vision.engine.pretrained import load_model

    loaded = load_model(str(tiny_checkpoint), progress=False)
    make_lively(loaded)
    pre = Preprocessor(loaded.tokenizer, loaded.processor.image_processor, loaded.processor.chat_template)
    return loaded, pre, ModelCalls(ModelRunner(loaded.model), loaded.model.model.visual, pre)


def _scheduler(parts, interleave: bool) -> Scheduler:
    loaded, pre, calls = parts
    config = EngineConfig(
        prefill_chunk=CHUNK, vision_blocks_per_step=1, interleave=interleave, max_batch_size=4
    )
    scheduler = Scheduler(config, calls.lm, frozenset(loaded.eos_token_ids))
    _HARNESS[scheduler] = (pre, calls)
    return scheduler


def _sequence(scheduler: Scheduler, request, events: list) -> Sequence:
    budget = request.pixels or PixelBudget.for_task(request.task)
    pre = _HARNESS[scheduler][0]
    prompt = pre.prepare(request.messages, budget, 1 << 20)
    return Sequence(
        request=request,
        prompt=prompt,
        sampler=Sampler(request.sampling, scheduler.eos_ids),
        text=TextStream(pre.tokenizer, ()),
        emit=events.append,
        submitted_at=time.monotonic(),
    )


def _step(scheduler: Scheduler) -> SchedulerOutput:
    out = scheduler.schedule()
    _HARNESS[scheduler][1].step(scheduler, out)
    return out


def _start_two_streams(scheduler: Scheduler) -> list[Sequence]:
    streams = [_sequence(scheduler, ask((text(f"Stream {i}."),), 10_000), []) for i in range(2)]
    for seq in streams:
        scheduler.add_request(seq)
    while any(s.status != SeqStatus.DECODING for s in streams):
        _step(scheduler)
    return streams


def _big_page(scheduler: Scheduler) -> Sequence:
    request = ask((picture(7, (900, 1270)), text("Read the whole page. " * 20)), 4)
    request.pixels = PixelBudget(64 * 1024, 300 * 1024)
    return _sequence(scheduler, request, [])


def test_running_streams_get_a_token_every_step_while_a_big_page_is_admitted(parts):
    scheduler = _scheduler(parts, interleave=True)
    streams = _start_two_streams(scheduler)
    page = _big_page(scheduler)
    scheduler.add_request(page)
    blocks = len(parts[2].visual.blocks)

    steps = 0
    vision_pieces = 0
    prefill_steps = 0
    while page.status < SeqStatus.DECODING:
        before = [len(s.generated) for s in streams]
        out = _step(scheduler)
        steps += 1
        # Both streams got exactly one token in this step, whatever else the step did.
        assert [len(s.generated) for s in streams] == [b + 1 for b in before]
        prefill = [s for s in out.segments if s.phase == SeqStatus.PREFILLING]
        assert sum(s.segment.input_ids.shape[0] for s in prefill) <= CHUNK
        if out.vision is not None:
            vision_pieces += 1
        prefill_steps += bool(prefill)
    assert vision_pieces == blocks  # the vision tower ran one block per step
    assert prefill_steps == math.ceil(page.prompt.length / CHUNK)
    assert page.prompt.image_tokens > 200  # a real page worth of image tokens
    assert steps >= blocks + prefill_steps - 1


def test_a_page_larger_than_a_step_runs_each_vision_block_in_row_pieces(parts):
    """GIVEN streams decoding WHEN a page with more patches than `vision_step_rows` arrives THEN
    each of its vision blocks runs as q/k/v of all rows plus bounded row pieces, one per step,
    and the streams still get a token every step."""
    scheduler = _scheduler(parts, interleave=True)
    scheduler.config.vision_step_rows = 256
    streams = _start_two_streams(scheduler)
    page = _big_page(scheduler)
    scheduler.add_request(page)
    blocks = len(parts[2].visual.blocks)
    vision_pieces = 0
    patches = None
    while page.status <= SeqStatus.ENCODING:
        before = [len(s.generated) for s in streams]
        out = _step(scheduler)
        assert [len(s.generated) for s in streams] == [b + 1 for b in before]
        if out.vision is not None:
            assert out.vision.rows == 256
            patches = patches or out.vision.patches
            vision_pieces += 1
    assert patches > 256
    assert vision_pieces == blocks * (1 + math.ceil(patches / 256))


def test_without_interleaving_the_page_is_admitted_in_one_go(parts):
    scheduler = _scheduler(parts, interleave=False)
    streams = _start_two_streams(scheduler)
    page = _big_page(scheduler)
    scheduler.add_request(page)
    before = [len(s.generated) for s in streams]
    out = _step(scheduler)
    assert out.vision is not None and page.status == SeqStatus.PREFILLING  # whole tower in one piece
    out = _step(scheduler)
    prefill = [s for s in out.segments if s.phase == SeqStatus.PREFILLING]
    assert prefill[0].segment.input_ids.shape[0] == page.prompt.length  # whole prompt in one pass
    assert page.status == SeqStatus.DECODING
    # The streams waited: two steps, but the page's whole admission happened between their tokens.
    assert [len(s.generated) for s in streams] == [b + 2 for b in before]


def test_batch_limit_and_admission_order(parts):
    scheduler = _scheduler(parts, interleave=True)
    events: list = []
    seqs = [_sequence(scheduler, ask((text(f"Request {i}."),), 3), events) for i in range(6)]
    for seq in seqs:
        scheduler.add_request(seq)
    _step(scheduler)
    assert len(scheduler.running) == 4  # max_batch_size
    assert [s.request_id for s in scheduler.running] == [s.request_id for s in seqs[:4]]
    while scheduler.has_work:
        _step(scheduler)
    finished = [e for e in events if e.finished]
    assert len(finished) == 6
    assert all(e.usage.completion_tokens == 3 for e in finished)


def test_memory_limit_holds_back_admission(parts):
    loaded, pre, calls = parts
    scheduler = _scheduler(parts, interleave=True)
    per_request = (
        pre.prepare(ask((text("Request 0."),), 3).messages, PixelBudget.for_task("chat"), 4096).length + 3
    )
    # Room for two requests' KV (prompt + max_tokens each), not three.
    scheduler.max_running_bytes = int(2.5 * per_request * scheduler.bytes_per_token)
    seqs = [_sequence(scheduler, ask((text(f"Request {i}."),), 3), []) for i in range(3)]
    for seq in seqs:
        scheduler.add_request(seq)
    _step(scheduler)
    assert len(scheduler.running) == 2 and len(scheduler.waiting) == 1
    while scheduler.has_work:
        _step(scheduler)
    assert all(s.status == SeqStatus.FINISHED for s in seqs)


def test_a_prompt_goes_in_bigger_pieces_when_nobody_is_decoding(parts):
    scheduler = _scheduler(parts, interleave=True)
    scheduler.config.solo_prefill_chunk = 4 * CHUNK
    seq = _sequence(scheduler, ask((text("Long prompt. " * 30),), 2), [])
    assert seq.prompt.length > 4 * CHUNK
    scheduler.add_request(seq)
    out = _step(scheduler)
    assert out.segments[0].segment.input_ids.shape[0] == 4 * CHUNK  # alone: the solo chunk
    streams = _start_two_streams(scheduler)  # now two streams decode
    assert all(s.status == SeqStatus.DECODING for s in streams)
    late = _sequence(scheduler, ask((text("Another long prompt. " * 30),), 2), [])
    scheduler.add_request(late)
    out = _step(scheduler)
    prefill = [s for s in out.segments if s.phase == SeqStatus.PREFILLING]
    assert sum(s.segment.input_ids.shape[0] for s in prefill) <= CHUNK  # streams running: small chunks


def test_images_admitted_together_are_encoded_in_the_same_passes(parts):
    scheduler = _scheduler(parts, interleave=True)
    scheduler.config.solo_vision_blocks_per_step = 1
    seqs = [_sequence(scheduler, ask((picture(i), text(f"Image {i}.")), 2), []) for i in range(3)]
    for seq in seqs:
        scheduler.add_request(seq)
    blocks = len(parts[2].visual.blocks)
    vision_steps = 0
    while any(s.status == SeqStatus.ENCODING or s.status == SeqStatus.WAITING for s in seqs):
        out = _step(scheduler)
        if out.vision is not None:
            vision_steps += 1
            assert len(out.vision.images) == 3  # all three images in every vision pass
    assert vision_steps == blocks  # not 3 x blocks


def test_with_nobody_decoding_the_vision_tower_takes_bigger_pieces(parts):
    scheduler = _scheduler(parts, interleave=True)
    scheduler.config.solo_vision_blocks_per_step = 2
    page = _big_page(scheduler)
    scheduler.add_request(page)
    blocks = len(parts[2].visual.blocks)
    vision_steps = 0
    while page.status <= SeqStatus.ENCODING:
        out = _step(scheduler)
        vision_steps += out.vision is not None
    assert vision_steps == math.ceil(blocks / 2)
