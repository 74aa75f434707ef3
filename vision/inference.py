"""Worker side: run a `GenerationSpec` on this worker's engine and relay it to its Redis stream.

The one adapter between the platform's types and the engine's (docs/architecture.md): jobs, batches and
/v1 chat all come through `spec_to_engine_request` and `generate_to_stream`. Imported only in
worker processes (it imports the engine, hence torch).
"""

from __future__ import annotations

import logging
import os
import queue
import time
from collections.abc import Callable

import redis
from django.conf import settings

from docplatform.metrics.recorder import WORKER_METRICS
from vision import streams
from vision.engine import (
    ChatMessage,
    EngineError,
    EngineRequest,
    FinishReason,
    ImagePart,
    InvalidRequest,
    PixelBudget,
    RequestOutput,
    TextPart,
    Timings,
    Usage,
)
from vision.engine.constraints import Constraint
from vision.faults import is_transient
from vision.generation import GenerationSpec
from vision.heartbeat import heartbeat_get, redis_client
from vision.media import MediaPathRefused, media_read

log = logging.getLogger(__name__)

CANCEL_POLL_S = 0.25  # how often a running generation checks whether its reader gave up
# "final" events of failed generations may carry `error_kind`, so readers can tell the client's
# fault (HTTP 400) from a worker that cannot serve right now (503); absent: an internal error.
ERROR_INVALID_REQUEST = "invalid_request"
ERROR_UNAVAILABLE = "unavailable"


def _load_image(path: str) -> ImagePart:
    try:
        data = media_read(path)  # a spec is built by our own web code, but never trust paths
    except MediaPathRefused as exc:
        raise InvalidRequest("image path outside the media storage") from exc
    except OSError as exc:
        if is_transient(exc):  # the media store is away for a moment: not the input's fault
            raise
        raise InvalidRequest(f"cannot read stored image: {exc}") from exc
    try:
        return ImagePart.from_bytes(data)
    except OSError as exc:
        raise InvalidRequest(f"cannot read stored image: {exc}") from exc


def spec_to_engine_request(spec: GenerationSpec) -> EngineRequest:
    messages = []
    for message in spec.messages:
        parts: list[TextPart | ImagePart] = []
        for part in message.parts:
            if part.image is not None:
                parts.append(_load_image(part.image.path))
            elif part.text is not None:
                parts.append(TextPart(part.text))
        messages.append(ChatMessage(role=message.role, content=tuple(parts)))
    budget = PixelBudget.for_task(
        spec.task,
        min_pixels=settings.VISION_MIN_PIXELS,
        chat_max=settings.VISION_MAX_PIXELS_CHAT,
        document_max=settings.VISION_MAX_PIXELS_DOCUMENT,
    )
    if spec.max_pixels:
        budget = PixelBudget(min(budget.min_pixels, spec.max_pixels), spec.max_pixels)
    return EngineRequest(
        request_id=spec.request_id,
        messages=messages,
        sampling=spec.sampling,
        task=spec.task,
        pixels=budget,
        deadline=time.monotonic() + spec.deadline_s,
        use_prefix_cache=spec.use_prefix_cache,
        constraint=Constraint.from_dict(spec.constraint) if spec.constraint else None,
    )


def output_payload(output: RequestOutput) -> dict:
    """The "final" stream event's data: what readers need to close a response."""
    return {
        "finish_reason": output.finish_reason.value,
        "error": output.error,
        "text": output.text,
        "usage": {
            "prompt_tokens": output.usage.prompt_tokens,
            "completion_tokens": output.usage.completion_tokens,
            "image_tokens": output.usage.image_tokens,
            "cached_tokens": output.usage.cached_tokens,
        },
        "timings": {k: round(v, 4) for k, v in vars(output.timings).items()},
    }


def failed_output(request_id: str, message: str) -> RequestOutput:
    return RequestOutput(request_id, "", [], FinishReason.ERROR, Usage(), Timings(), error=message)


def generate_to_stream(
    engine,
    spec: GenerationSpec,
    client,
    *,
    worker: str = "",
    on_delta: Callable[[str, int], bool | None] | None = None,
    best_effort: bool = False,
) -> RequestOutput:
    """Run `spec` on `engine`, append its events to the request's stream, return the output.

    `client` is a sync Redis client. `on_delta(text, tokens_so_far)` lets a job record progress;
    returning False stops the generation (the job's claim was lost). Bad input (unreadable image,
    prompt too long) ends the stream with an error event, not an exception: the reader always
    gets a "final" event.

    `best_effort` (async jobs): the stream is only progress for whoever watches, so a Redis that
    cannot be reached drops events (retried a little, `streams.BestEffortPublisher`) and the
    generation goes on. Otherwise (a /v1 chat, whose reader needs every token) a failed publish
    cancels the generation and raises.
    """
    if best_effort:
        publisher = streams.BestEffortPublisher(client, spec.request_id)

        def publish(type_: str, **fields) -> None:
            publisher.publish(type_, **fields)
    else:

        def publish(type_: str, **fields) -> None:
            streams.publish(client, spec.request_id, type_, **fields)

    def reader_status() -> tuple[bool, bool]:
        if not best_effort:
            return streams.reader_status(client, spec.request_id)
        try:
            return streams.reader_status(client, spec.request_id)
        except (redis.RedisError, OSError):  # Redis away: nobody can cancel meanwhile either
            return False, False

    publish("started", data={"worker": worker})
    try:
        handle = engine.submit(spec_to_engine_request(spec))
    except InvalidRequest as exc:
        output = failed_output(spec.request_id, str(exc))
        publish("final", data={**output_payload(output), "error_kind": ERROR_INVALID_REQUEST})
        return output
    try:
        tokens = 0
        last_poll = time.monotonic()
        last_token_at: float | None = None  # for the inter-token latency histogram (/metrics)
        had_reader = False  # jobs have no reader; a /v1 stream's web side holds a lease while it reads
        while not handle.finished:
            try:
                delta = handle.next_delta(timeout=CANCEL_POLL_S)
            except queue.Empty:
                delta = None
            if delta is not None and delta.token_ids:  # the last token may come with the final delta
                now = time.monotonic()
                if last_token_at is not None:
                    WORKER_METRICS.token_gap(now - last_token_at, len(delta.token_ids))
                elif len(delta.token_ids) > 1:  # tokens that came with the first one: no gap
                    WORKER_METRICS.token_gap(0.0, len(delta.token_ids) - 1)
                last_token_at = now
            if delta is not None and not delta.finished:
                tokens += len(delta.token_ids)
                if delta.text:
                    publish("delta", text=delta.text)
                if on_delta is not None and on_delta(delta.text, tokens) is False:
                    handle.cancel()
            if time.monotonic() - last_poll >= CANCEL_POLL_S:
                last_poll = time.monotonic()
                cancelled, reading = reader_status()
                had_reader = had_reader or reading
                if cancelled or (had_reader and not reading):  # asked to stop, or the reader vanished
                    handle.cancel()
    except BaseException:
        handle.cancel()  # nobody will read it (the stream is broken) or the job failed: free the slot
        raise
    output = handle.result()
    final = handle.final_delta
    if output.text and final is not None and final.text:
        publish("delta", text=final.text)
    publish("final", data=output_payload(output))
    WORKER_METRICS.request_finished(
        finish_reason=output.finish_reason.value,
        prompt_tokens=output.usage.prompt_tokens,
        completion_tokens=output.usage.completion_tokens,
        cached_tokens=output.usage.cached_tokens,
        first_token_s=output.timings.first_token_s,
        total_s=output.timings.total_s,
    )
    log.info(
        "generation %s finished: %s, %d+%d tokens (%d cached), %.2fs",
        spec.request_id,
        output.finish_reason.value,
        output.usage.prompt_tokens,
        output.usage.completion_tokens,
        output.usage.cached_tokens,
        output.timings.total_s,
    )
    return output


def _claim(client, request_id: str, worker: str) -> bool:
    """May this process generate `request_id`? A request can arrive twice: re-sent to the shared
    queue when the worker owning its sticky queue died (vision/chat/completion.py), or restored by
    the broker after a worker was lost. Two runs would interleave their tokens in one stream, so
    the first claims it; a later delivery runs only when the claimant's process is gone (its
    heartbeat expired, or the worker restarted under the same name with another pid)."""
    me = f"{worker}|{os.getpid()}"
    key = streams.claim_key(request_id)
    if client.set(key, me, nx=True, ex=streams.STREAM_TTL_S):
        return True
    holder = (client.get(key) or b"").decode()
    name, _, pid = holder.partition("|")
    beat = heartbeat_get(client, name)
    if beat is not None and str(beat.get("pid")) == pid:
        return False
    previous = client.set(key, me, ex=streams.STREAM_TTL_S, get=True)
    return (previous or b"").decode() == holder  # else another taker was quicker


def generate_spec_json_to_stream(spec_json: str, *, worker: str) -> RequestOutput | None:
    """What a generation task runs: `spec_json` on this worker's engine, events to its stream.

    Returns None without generating when the stream already has a final event (the task was
    redelivered after it finished) or the reader cancelled before the task started. A worker
    whose engine is not ready ends the stream with an "unavailable" error instead of raising.
    """
    from vision.worker import VisionEngineNotReady, get_vision_engine

    spec = GenerationSpec.from_json(spec_json)
    client = redis_client(settings.REDIS_URL, timeout=10.0)
    try:
        if any(event.final for event in streams.read_all(client, spec.request_id)):
            return None
        if not _claim(client, spec.request_id, worker):
            log.info("generation %s: already running on a live worker, delivery ignored", spec.request_id)
            return None
        if streams.cancel_requested(client, spec.request_id):
            output = RequestOutput(spec.request_id, "", [], FinishReason.CANCELLED, Usage(), Timings())
            streams.publish(client, spec.request_id, "final", data=output_payload(output))
            return output
        try:
            return generate_to_stream(get_vision_engine(), spec, client, worker=worker)
        except (VisionEngineNotReady, EngineError) as exc:
            output = failed_output(spec.request_id, str(exc))
            data = {**output_payload(output), "error_kind": ERROR_UNAVAILABLE, "worker": worker}
            streams.publish(client, spec.request_id, "final", data=data)
            return output
        except (redis.RedisError, OSError) as exc:
            # The stream broke off mid-answer (Redis away); the generation was cancelled. A reader
            # still waiting once Redis is back gets a 503-class end instead of waiting out its
            # timeout for a "final" that would never come.
            log.warning("generation %s: token stream broke off (%s); cancelled", spec.request_id, exc)
            output = failed_output(spec.request_id, f"the token stream broke off ({type(exc).__name__})")
            data = {**output_payload(output), "error_kind": ERROR_UNAVAILABLE, "worker": worker}
            streams.BestEffortPublisher(client, spec.request_id, retries=20).publish("final", data=data)
            return output
    finally:
        client.close()
