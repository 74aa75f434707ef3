"""The engine's calls to its two models for one scheduled step: the vision tower on the step's
images, then the language model on its segments.

The scheduler decides what runs (`Scheduler.schedule`) and records what came out; this is the only
place that runs the models, and the place where a failing call is narrowed down to the request
that caused it, so one bad image or one bad prompt never takes the others down.
"""

from __future__ import annotations

import logging
import time

import torch

from .language_model import ModelRunner
from .preprocess import Preprocessor
from .scheduler import Scheduler, SchedulerOutput, SeqStatus, Sequence, VisionWork
from .vision_tower import ImageEncoding, advance_encodings

log = logging.getLogger(__name__)


class ModelCalls:
    """Runs a scheduled step on the models: `visual` (the vision tower) and `lm` (the language
    model's runner), with `pre` turning a prompt's images into the tower's patches."""

    def __init__(self, lm: ModelRunner, visual: torch.nn.Module, pre: Preprocessor):
        self.lm = lm
        self.visual = visual
        self.pre = pre

    def step(self, sched: Scheduler, out: SchedulerOutput) -> None:
        if out.vision is not None:
            self.encode(sched, out.vision)
        if not out.segments:
            return
        start = time.monotonic()
        try:
            logits = self.lm.forward([s.segment for s in out.segments])
        except Exception as exc:
            log.exception("batched step failed; retrying its sequences one by one")
            self._one_by_one(sched, out, exc)
            return
        sched.update_from_output(out, logits, time.monotonic() - start)

    def encode(self, sched: Scheduler, work: VisionWork) -> None:
        """The step's vision work: images new to the tower get their patches and embedding first,
        then every image advances (several at the same block in one pass)."""
        start = time.monotonic()
        running: list[tuple[Sequence, ImageEncoding]] = []
        for seq, image in work.images:
            if seq.status >= SeqStatus.FINISHED:
                continue
            if image.encoding is None:
                try:
                    pixels, grid = self.pre.pixel_values(seq.prompt.images[image.index])
                    image.encoding = ImageEncoding(self.visual, pixels, grid)
                except Exception as exc:
                    sched.fail(seq, f"image preprocessing failed: {exc}")
                    continue
            running.append((seq, image.encoding))
        try:
            advance_encodings([encoding for _, encoding in running], work.blocks, work.rows)
        except Exception:  # find the image that fails; the others carry on
            for seq, encoding in running:
                if seq.status >= SeqStatus.FINISHED or encoding.result is not None:
                    continue
                try:
                    encoding.step(work.blocks)
                except Exception as exc:  # a bad image fails its own request only
                    sched.fail(seq, f"vision encoding failed: {exc}")
        sched.update_from_vision(work, time.monotonic() - start)

    def _one_by_one(self, sched: Scheduler, out: SchedulerOutput, first_error: BaseException) -> None:
        """A failing batch must not take every request down: isolate the one that fails."""
        for item in out.segments:
            single = SchedulerOutput(vision=None, segments=[item])
            start = time.monotonic()
            try:
                logits = self.lm.forward([item.segment])
            except Exception as exc:
                sched.fail_step(single, exc)
                continue
            sched.update_from_output(single, logits, time.monotonic() - start)
