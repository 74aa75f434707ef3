"""Continuous batching: which sequences do what in the next step.

A step is at most one piece of vision work (vision-tower blocks of the images being encoded, several
images in one pass) plus one pass of the language model over a flat batch of segments: one token
for every decoding sequence and up to `prefill_chunk` prompt tokens of sequences being admitted.
New requests join at step boundaries, so a long page never holds running streams hostage: between
two of their tokens there is at most one vision piece and one prompt chunk.

The scheduler only decides and records: the engine runs the models on what `schedule` returns
(`model_calls`) and hands back what they produced (`update_from_vision`, `update_from_output`).
Public surface (called only by the engine thread): `add_request`, `schedule`, `update_from_vision`,
`update_from_output`, `fail`, `abort`. Everything else is private.
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import torch

from .config import EngineConfig
from .grammar import GrammarState
from .kv import PrefixCache, SequenceKV, VisionCache, prefix_hashes
from .language_model import Segment
from .preprocess import PreparedPrompt
from .sampling import Sampler, TextStream, choose_tokens
from .types import EngineRequest, FinishReason, StreamDelta, Timings, Usage
from .vision_tower import EncodedImage, ImageEncoding


class KVSource(Protocol):
    """What the scheduler needs of the language model: KV buffers for a sequence, and their size."""

    def new_kv(self, capacity: int) -> SequenceKV: ...

    def kv_bytes_per_token(self) -> int: ...


class SeqStatus(enum.IntEnum):
    """Ordered so that "finished" is one comparison."""

    WAITING = 0
    ENCODING = 1  # image features being computed
    PREFILLING = 2
    DECODING = 3
    FINISHED = 4


@dataclass
class PendingImage:
    """An image of the prompt whose features are still to be computed."""

    index: int  # its place among the prompt's images
    patches: int  # its rows in the vision tower (t * h * w of its patch grid)
    encoding: ImageEncoding | None = None  # made by the engine on the image's first vision step


@dataclass
class Sequence:
    request: EngineRequest
    prompt: PreparedPrompt
    sampler: Sampler
    text: TextStream
    emit: Callable[[StreamDelta], None]  # hands a delta to whoever streams this request
    submitted_at: float
    status: SeqStatus = SeqStatus.WAITING
    kv: SequenceKV | None = None
    prompt_done: int = 0  # prompt tokens whose KV is in `kv`
    cached_tokens: int = 0
    features: list[EncodedImage | None] = field(default_factory=list)  # per prompt image
    pending_images: list[PendingImage] = field(default_factory=list)  # in prompt order
    generated: list[int] = field(default_factory=list)
    tokens_sent: int = 0  # generated tokens already handed out in deltas
    hashes: list[bytes] = field(default_factory=list)
    timings: Timings = field(default_factory=Timings)
    started_at: float | None = None
    first_token_at: float | None = None
    cancel_reason: FinishReason | None = None
    grammar: GrammarState | None = None  # the request's constraint, advanced with each token

    @property
    def request_id(self) -> str:
        return self.request.request_id

    def kv_bytes_needed(self, bytes_per_token: int) -> int:
        return (self.prompt.length + self.request.sampling.max_tokens) * bytes_per_token


@dataclass
class ScheduledSegment:
    seq: Sequence
    segment: Segment
    phase: SeqStatus  # PREFILLING or DECODING at the time it was scheduled


@dataclass
class VisionWork:
    """The vision-tower work of one step: images advanced together, `blocks` blocks each."""

    images: list[tuple[Sequence, PendingImage]]
    blocks: int  # blocks per image in this step
    rows: int | None = None  # one large image alone: one piece of this many rows of its block instead

    @property
    def patches(self) -> int:
        return sum(image.patches for _, image in self.images)


@dataclass
class SchedulerOutput:
    """What the engine runs in one step."""

    vision: VisionWork | None  # vision-tower work, if any image is being encoded
    segments: list[ScheduledSegment]  # the language-model pass

    @classmethod
    def make_empty(cls) -> SchedulerOutput:
        return cls(vision=None, segments=[])

    @property
    def empty(self) -> bool:
        return self.vision is None and not self.segments


class Scheduler:
    def __init__(self, config: EngineConfig, kv: KVSource, eos_ids: frozenset[int]):
        self.config = config
        self.kv = kv
        self.eos_ids = eos_ids
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []
        self.prefix_cache = PrefixCache(config.kv_cache_mb * 2**20)
        self.vision_cache = VisionCache(config.vision_cache_mb * 2**20)
        self.bytes_per_token = kv.kv_bytes_per_token()
        self.max_running_bytes = config.max_running_kv_mb * 2**20
        self.steps = 0  # language-model passes so far (tests count these instead of timing)
        self.left_waiting = 0  # sequences that left the waiting queue (admitted or finished)

    # -- public surface -------------------------------------------------------------------------
    def add_request(self, seq: Sequence) -> None:
        """Queue a prepared sequence; it joins the running batch at a step boundary."""
        self.waiting.append(seq)

    def abort(self, request_id: str, reason: FinishReason) -> bool:
        for seq in list(self.waiting) + self.running:
            if seq.request_id == request_id and seq.status < SeqStatus.FINISHED:
                seq.cancel_reason = reason
                return True
        return False

    def schedule(self) -> SchedulerOutput:
        self._reap_cancelled()
        self._admit()
        out = SchedulerOutput.make_empty()
        for seq in self.running:
            if seq.status == SeqStatus.DECODING:
                out.segments.append(ScheduledSegment(seq, self._decode_segment(seq), SeqStatus.DECODING))
        out.vision = self._vision_work(decoding=bool(out.segments))
        if not self.config.interleave:
            budget = 1 << 30
        elif out.segments:  # streams are decoding: keep their token gaps short
            budget = self.config.prefill_chunk
        else:
            budget = max(self.config.prefill_chunk, self.config.solo_prefill_chunk)
        for seq in self.running:
            if seq.status != SeqStatus.PREFILLING or budget <= 0:
                continue
            n = min(budget, seq.prompt.length - seq.prompt_done)
            out.segments.append(ScheduledSegment(seq, self._prefill_segment(seq, n), SeqStatus.PREFILLING))
            budget -= n
        return out

    def update_from_vision(self, work: VisionWork, elapsed: float) -> None:
        """Record what the step's vision work produced: each finished image's features (also
        into the vision cache), its share of the time, and prefill once a sequence's images are
        all encoded."""
        patches = work.patches
        for seq, image in work.images:
            if seq.status >= SeqStatus.FINISHED:
                continue
            result = image.encoding.result if image.encoding is not None else None
            share = image.patches if result is None else 1
            seq.timings.vision_s += elapsed * (share / max(1, patches) if len(work.images) > 1 else 1.0)
            if result is None:
                continue
            seq.features[image.index] = result
            self.vision_cache.put(seq.prompt.images[image.index].cache_key, result, result.nbytes)
            seq.pending_images.remove(image)
            if not seq.pending_images:
                seq.status = SeqStatus.PREFILLING

    def fail(self, seq: Sequence, error: str) -> None:
        """Finish one sequence with an error (a bad image, a failed model call): the others go on."""
        self._finish(seq, FinishReason.ERROR, error=error)

    def update_from_output(self, out: SchedulerOutput, logits: torch.Tensor, elapsed: float) -> None:
        """Record what the language-model pass produced: sample, stream, finish."""
        self.steps += 1
        row = 0
        now = time.monotonic()
        choosing: list[tuple[Sequence, int]] = []  # (sequence, its logits row)
        for item in out.segments:
            seq, seg = item.seq, item.segment
            if seq.status >= SeqStatus.FINISHED:
                row += seg.want_logits
                continue
            if item.phase == SeqStatus.PREFILLING:
                seq.timings.prefill_s += elapsed
                seq.prompt_done += seg.input_ids.shape[0]
            else:
                seq.timings.decode_s += elapsed
            if not seg.want_logits:
                continue
            if seq.grammar is not None:
                try:
                    seq.grammar.mask_(logits[row])  # only what the constraint allows next
                except Exception as exc:
                    self._finish(seq, FinishReason.ERROR, error=f"grammar mask failed: {exc}")
                    row += 1
                    continue
            choosing.append((seq, row))
            row += 1
        for seq, token in self._choose(choosing, logits):
            seq.status = SeqStatus.DECODING
            self._on_token(seq, token, now)

    def _choose(
        self, choosing: list[tuple[Sequence, int]], logits: torch.Tensor
    ) -> list[tuple[Sequence, int]]:
        """Next tokens of the whole batch in one call; if that fails, row by row so only the
        request that fails (say, a bad grammar mask) is finished with an error."""
        if not choosing:
            return []
        rows = [r for _, r in choosing]
        batch = logits if rows == list(range(logits.shape[0])) else logits[rows]
        samplers = [seq.sampler for seq, _ in choosing]
        produced = [len(seq.generated) for seq, _ in choosing]
        try:
            return list(
                zip([seq for seq, _ in choosing], choose_tokens(batch, samplers, produced), strict=True)
            )
        except Exception:
            pass
        chosen = []
        for (seq, _), i in zip(choosing, range(len(choosing)), strict=True):
            try:
                chosen.append((seq, choose_tokens(batch[i : i + 1], [samplers[i]], [produced[i]])[0]))
            except Exception as exc:
                self._finish(seq, FinishReason.ERROR, error=f"sampling failed: {exc}")
        return chosen

    def fail_step(self, out: SchedulerOutput, exc: BaseException) -> None:
        for item in out.segments:
            if item.seq.status < SeqStatus.FINISHED:
                self.fail(item.seq, f"model step failed: {exc}")

    def expire(self, now: float) -> None:
        for seq in list(self.waiting) + self.running:
            deadline = seq.request.deadline
            if deadline is not None and now > deadline and seq.cancel_reason is None:
                seq.cancel_reason = FinishReason.TIMEOUT

    def shutdown(self) -> None:
        for seq in list(self.waiting) + self.running:
            self._finish(seq, FinishReason.ERROR, error="the engine shut down")

    @property
    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    # -- private --------------------------------------------------------------------------------
    def _reap_cancelled(self) -> None:
        for seq in list(self.waiting) + self.running:
            if seq.cancel_reason is not None and seq.status < SeqStatus.FINISHED:
                message = "deadline exceeded" if seq.cancel_reason == FinishReason.TIMEOUT else None
                self._finish(seq, seq.cancel_reason, error=message)

    def _running_bytes(self) -> int:
        return sum(s.kv_bytes_needed(self.bytes_per_token) for s in self.running)

    def _admit(self) -> None:
        while self.waiting and len(self.running) < self.config.max_batch_size:
            seq = self.waiting[0]
            need = seq.kv_bytes_needed(self.bytes_per_token)
            if self.running and self._running_bytes() + need > self.max_running_bytes:
                break  # memory limit: wait for a running sequence to finish
            self.waiting.popleft()
            self.left_waiting += 1
            try:
                self._start(seq)
            except Exception as exc:
                self._finish(seq, FinishReason.ERROR, error=f"could not start: {exc}")
                continue
            self.running.append(seq)

    def _start(self, seq: Sequence) -> None:
        now = time.monotonic()
        seq.started_at = now
        seq.timings.queue_s = now - seq.submitted_at
        prompt = seq.prompt
        capacity = prompt.length + seq.request.sampling.max_tokens
        seq.kv = self.kv.new_kv(capacity)
        seq.hashes = prefix_hashes(prompt.input_ids.tolist(), prompt.digests)
        if seq.request.use_prefix_cache:
            match = self.prefix_cache.lookup(seq.hashes, prompt.length - 1)
            if match is not None:
                seq.kv.copy_prefix_from(match.kv, match.tokens)
                seq.prompt_done = seq.cached_tokens = match.tokens
        # Only images with pads past the cached prefix need their features.
        needed = sorted({i for i in prompt.image_of_token[seq.prompt_done :] if i >= 0})
        seq.features = [None] * len(prompt.images)
        for index in needed:
            cached = self.vision_cache.get(prompt.images[index].cache_key)
            if cached is not None:
                seq.features[index] = cached
            else:
                t, h, w = prompt.images[index].grid_thw
                seq.pending_images.append(PendingImage(index, t * h * w))
        seq.status = SeqStatus.ENCODING if seq.pending_images else SeqStatus.PREFILLING

    def _vision_work(self, decoding: bool) -> VisionWork | None:
        """Every image still to encode joins, so images batch; while streams decode, one block per
        image and at most `vision_step_patches` patches (the first image always), so their token
        gaps stay short; with nobody decoding, `solo_vision_blocks_per_step` blocks."""
        if not self.config.interleave:
            blocks = 1 << 30
        elif decoding:
            blocks = self.config.vision_blocks_per_step
        else:
            blocks = max(self.config.vision_blocks_per_step, self.config.solo_vision_blocks_per_step)
        images: list[tuple[Sequence, PendingImage]] = []
        patches = 0
        for seq in self.running:
            if seq.status != SeqStatus.ENCODING:
                continue
            for image in seq.pending_images:
                if images and decoding and patches + image.patches > self.config.vision_step_patches:
                    return self._pieces(images, blocks, decoding)
                images.append((seq, image))
                patches += image.patches
        return self._pieces(images, blocks, decoding) if images else None

    def _pieces(self, images: list[tuple[Sequence, PendingImage]], blocks: int, decoding: bool) -> VisionWork:
        """While streams decode, an image too large for one short step (a full-page scan: one
        block is seconds) runs its block `vision_step_rows` rows at a time."""
        rows = self.config.vision_step_rows
        if decoding and self.config.interleave and len(images) == 1:
            image = images[0][1]
            if image.patches > rows or (image.encoding is not None and image.encoding.in_block):
                return VisionWork(images, blocks, rows)
        return VisionWork(images, blocks)

    def _decode_segment(self, seq: Sequence) -> Segment:
        pos = seq.prompt.next_position + len(seq.generated) - 1
        return Segment(
            kv=seq.kv,
            input_ids=torch.tensor([seq.generated[-1]], dtype=torch.long),
            positions=torch.full((3, 1), pos, dtype=torch.long),
            want_logits=True,
        )

    def _prefill_segment(self, seq: Sequence, n: int) -> Segment:
        prompt = seq.prompt
        start, end = seq.prompt_done, seq.prompt_done + n
        seg = Segment(
            kv=seq.kv,
            input_ids=prompt.input_ids[start:end],
            positions=prompt.positions[:, start:end],
            want_logits=end == prompt.length,
        )
        owners = prompt.image_of_token[start:end]
        if any(o >= 0 for o in owners):
            rows = self._image_rows(prompt, start, end)
            mask = torch.tensor([o >= 0 for o in owners])
            embeds, deepstack = [], None
            for image_index, first, last in rows:
                feat = seq.features[image_index]
                embeds.append(feat.embeds[first:last])
                parts = [d[first:last] for d in feat.deepstack]
                deepstack = (
                    parts if deepstack is None else [torch.cat(p) for p in zip(deepstack, parts, strict=True)]
                )
            seg.vis_mask = mask
            seg.vis_embeds = torch.cat(embeds)
            seg.deepstack = deepstack or []
        return seg

    @staticmethod
    def _image_rows(prompt: PreparedPrompt, start: int, end: int) -> list[tuple[int, int, int]]:
        """(image index, first row, end row) of the image features the tokens [start, end) use."""
        spans = []
        owners = prompt.image_of_token
        i = start
        while i < end:
            image_index = owners[i]
            if image_index < 0:
                i += 1
                continue
            first_of_image = i
            while first_of_image > 0 and owners[first_of_image - 1] == image_index:
                first_of_image -= 1
            j = i
            while j < end and owners[j] == image_index:
                j += 1
            spans.append((image_index, i - first_of_image, j - first_of_image))
            i = j
        return spans

    def _on_token(self, seq: Sequence, token: int, now: float) -> None:
        if seq.first_token_at is None:
            seq.first_token_at = now
        params = seq.sampler.params
        seq.generated.append(token)
        seq.sampler.accept(token)
        is_eos = token in self.eos_ids and not params.ignore_eos and len(seq.generated) > params.min_tokens
        if is_eos:
            seq.generated.pop()  # the end-of-turn token is not part of the answer
            self._finish(seq, FinishReason.STOP)
            return
        if seq.grammar is not None and not seq.grammar.advance(token):
            self._finish(seq, FinishReason.ERROR, error=f"constraint violated: {seq.grammar.error}")
            return
        delta = seq.text.push(token)
        if seq.text.stopped or (seq.grammar is not None and seq.grammar.stopped):
            # A stop string, or a constrained answer that is complete (only end-of-turn could follow).
            self._finish(seq, FinishReason.STOP, last_text=delta)
            return
        if len(seq.generated) >= params.max_tokens:
            self._finish(seq, FinishReason.LENGTH, last_text=delta)
            return
        if delta:
            seq.emit(StreamDelta(text=delta, token_ids=self._unsent(seq)))

    @staticmethod
    def _unsent(seq: Sequence) -> tuple[int, ...]:
        tokens = tuple(seq.generated[seq.tokens_sent :])
        seq.tokens_sent = len(seq.generated)
        return tokens

    def _finish(
        self, seq: Sequence, reason: FinishReason, *, error: str | None = None, last_text: str = ""
    ) -> None:
        if seq.status >= SeqStatus.FINISHED:
            return
        seq.status = SeqStatus.FINISHED
        if seq in self.running:
            self.running.remove(seq)
        elif seq in self.waiting:
            self.waiting.remove(seq)
            self.left_waiting += 1
        tail = last_text + (seq.text.push(None) if reason != FinishReason.ERROR else "")
        now = time.monotonic()
        t = seq.timings
        t.total_s = now - seq.submitted_at
        if seq.first_token_at is not None:
            t.first_token_s = seq.first_token_at - seq.submitted_at
            t.decode_s = now - seq.first_token_at
        usage = Usage(
            prompt_tokens=seq.prompt.length,
            image_tokens=seq.prompt.image_tokens,
            completion_tokens=len(seq.generated),
            cached_tokens=seq.cached_tokens,
        )
        if (
            seq.kv is not None
            and reason in (FinishReason.STOP, FinishReason.LENGTH)
            and seq.request.use_prefix_cache
        ):
            tokens = seq.prompt.input_ids.tolist() + seq.generated
            digests = seq.prompt.digests + [None] * len(seq.generated)
            self.prefix_cache.insert(seq.kv, prefix_hashes(tokens[: seq.kv.length], digests[: seq.kv.length]))
        if seq.kv is not None:
            seq.kv.release()  # its arena slot goes to the next sequence
        seq.kv = None
        seq.features = []
        seq.emit(
            StreamDelta(
                text=tail,
                token_ids=self._unsent(seq),
                finished=True,
                finish_reason=reason,
                error=error,
                usage=usage,
                timings=t,
            )
        )
