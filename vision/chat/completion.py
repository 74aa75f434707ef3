"""A chat completion from request to answer: prepare → (answer cache) → submit → relay → finish.

`vision.chat.service` runs these steps for the /v1 view and the portal chat; they hold no HTTP.
The web side never runs the model: `chat_submit` enqueues the Celery task `vision.chat_generate` with the spec (text and
stored-image paths), and `chat_relay` reads the request's Redis Stream asynchronously.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

from django.conf import settings

from docplatform.aio import pooled_sync_to_async
from docplatform.errors import ApplicationError, ServiceUnavailable
from vision import streams
from vision.chat import admission, answer_cache, routing
from vision.chat.images import StoredImage, image_store
from vision.chat.json_output import choice_instruction, json_instruction
from vision.chat.types import ChatRequest
from vision.engine.constraints import ConstraintKind
from vision.generation import GenerationSpec, SpecImage, SpecMessage, SpecPart
from vision.heartbeat import aworker_alive
from vision.services.conversations import TurnAnswer, TurnMessage

logger = logging.getLogger(__name__)

# Slack over the engine's own deadline before the web side gives up waiting for "final".
_WAIT_SLACK_S = 30
# While no event arrives, how often the reader checks that its worker is still alive (one EXISTS).
_LIVENESS_CHECK_S = 2.0


class GenerationFailed(ApplicationError):
    status_code = 500
    code = "generation_failed"


class GenerationTimeout(ApplicationError):
    status_code = 504
    code = "generation_timeout"


class WorkerLost(ServiceUnavailable):
    code = "worker_lost"


@dataclass
class PreparedChat:
    request: ChatRequest
    spec: GenerationSpec
    user_id: int
    conversation_key: str
    conversation_pk: int | None  # the stored Conversation, None if not kept
    cache_key: str | None  # None: not deterministic, never cached
    created: int  # unix time, OpenAI's `created`
    queue: str = ""  # where chat_submit sent it: the shared queue or a worker's own (sticky)
    sticky_worker: str | None = None  # the worker owning `queue` when sticky
    submitted_at: float = 0.0  # time.monotonic() of the (last) enqueue


@dataclass
class Completion:
    text: str
    finish_reason: str  # OpenAI's: "stop" | "length"
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cache: str  # "hit" | "miss" | "bypass" | "off": the answer cache's part in this answer
    worker: str = ""


def _turn_messages(request: ChatRequest, images: dict[str, StoredImage]) -> list[TurnMessage]:
    return [
        TurnMessage(
            role=m.role,
            text="\n".join(p.text for p in m.parts if p.text),
            document_ids=tuple(images[p.image_url].document_id for p in m.parts if p.image_url is not None),
        )
        for m in request.messages
    ]


def _spec(request: ChatRequest, images: dict[str, StoredImage]) -> GenerationSpec:
    messages = [
        SpecMessage(
            role=m.role,
            parts=[
                SpecPart(image=SpecImage(path=images[p.image_url].path, sha256=images[p.image_url].sha256))
                if p.image_url is not None
                else SpecPart(text=p.text or "")
                for p in m.parts
            ],
        )
        for m in request.messages
    ]
    # An instruction helps the model fill the answer sensibly; the constraint makes it valid.
    instruction = None
    if request.response_format.wants_json:
        instruction = SpecPart(text=json_instruction(request.response_format))
    elif request.constraint is not None and request.constraint.kind == ConstraintKind.CHOICE:
        instruction = SpecPart(text=choice_instruction(json.loads(request.constraint.text)))
    if instruction is not None:
        if messages[0].role == "system":
            messages[0].parts.append(instruction)
        else:
            messages.insert(0, SpecMessage(role="system", parts=[instruction]))
    return GenerationSpec(
        request_id=f"chatcmpl-{uuid.uuid4().hex}",
        messages=messages,
        task="chat",
        sampling=request.sampling,
        deadline_s=float(settings.OPENAI_REQUEST_TIMEOUT_SECONDS),
        constraint=request.constraint.to_dict() if request.constraint else None,
    )


def _store_images(scope, request: ChatRequest) -> dict[str, StoredImage]:
    stored: dict[str, StoredImage] = {}
    for message in request.messages:
        for part in message.parts:
            if part.image_url is not None and part.image_url not in stored:
                stored[part.image_url] = image_store(scope=scope, url=part.image_url)
    return stored


def _record_request(scope, key: str, model: str, turns: list[TurnMessage]) -> int:
    from vision.services.conversations import conversation_record_request

    return conversation_record_request(scope=scope, key=key, model=model, messages=turns).pk


async def chat_prepare(*, scope, request: ChatRequest, keep_conversation: bool = True) -> PreparedChat:
    """Store the images (as Documents of the scope's organisation), build the spec and keys,
    record the turn."""
    user = scope.user
    images = await pooled_sync_to_async(_store_images)(scope, request)
    spec = _spec(request, images)
    key = routing.conversation_key(user_id=user.pk, spec=spec, explicit_id=request.conversation_id)
    conversation_pk = None
    if keep_conversation:
        conversation_pk = await pooled_sync_to_async(_record_request)(
            scope, key, request.model, _turn_messages(request, images)
        )
    cache_key = None
    if settings.ANSWER_CACHE_ENABLED and request.deterministic:
        cache_key = answer_cache.answer_cache_key(
            spec=spec,
            model=settings.VISION_MODEL,
            response_format={"type": request.response_format.type, "schema": request.response_format.schema},
            user_id=user.pk,
        )
    return PreparedChat(
        request=request,
        spec=spec,
        user_id=user.pk,
        conversation_key=key,
        conversation_pk=conversation_pk,
        cache_key=cache_key,
        created=int(time.time()),
    )


async def chat_cached(client, prepared: PreparedChat) -> Completion | None:
    """The answer from the answer cache, or None (not cacheable, or a miss)."""
    if prepared.cache_key is None:
        return None
    hit = await answer_cache.answer_cache_get(client, prepared.cache_key)
    if hit is None:
        return None
    return Completion(
        text=hit.text,
        finish_reason=hit.finish_reason,
        prompt_tokens=hit.prompt_tokens,
        completion_tokens=hit.completion_tokens,
        cached_tokens=hit.prompt_tokens,  # the whole prompt was served from cache
        cache="hit",
    )


async def chat_submit(client, prepared: PreparedChat) -> str:
    """Admission (429/503), route (sticky or shared queue), enqueue. → the queue used."""
    workers = await admission.admission_check(client)
    queue, sticky = await routing.route_pick(client, prepared.conversation_key, workers)
    await admission.pending_add(client, prepared.spec.request_id)
    try:
        await _enqueue(prepared, queue)
    except Exception:
        await admission.pending_remove(client, prepared.spec.request_id)
        raise
    prepared.sticky_worker = sticky
    logger.info(
        "chat %s enqueued on %s (sticky=%s, images=%d)",
        prepared.spec.request_id,
        queue,
        bool(sticky),
        prepared.spec.image_count,
    )
    return queue


async def _enqueue(prepared: PreparedChat, queue: str) -> None:
    from vision.tasks import chat_generate

    await pooled_sync_to_async(chat_generate.apply_async)(
        args=[prepared.spec.to_json()],
        # A second send (re-dispatch) needs its own Celery id; the worker-side claim on the
        # request id keeps the generation single (vision/inference.py).
        task_id=prepared.spec.request_id if not prepared.queue else f"{prepared.spec.request_id}-{queue}",
        queue=queue,
        routing_key=queue,
        # A message left in a dead worker's own queue must not run long after its reader left.
        expires=settings.OPENAI_REQUEST_TIMEOUT_SECONDS,
    )
    prepared.queue = queue
    prepared.submitted_at = time.monotonic()


async def _check_progress(client, prepared: PreparedChat, started_by: str) -> None:
    """Called while no event arrives. A generation whose worker died is noticed here instead of
    after the request timeout:
    - started, and its worker's heartbeat is gone: 503 worker_lost (its deltas may already be
      out, so it is not silently restarted), and the request is cancelled so a redelivery of the
      message skips it;
    - not started, sent to a worker's own queue (sticky) whose worker is gone, for longer than
      STICKY_START_TIMEOUT_SECONDS: nobody consumes that queue, so send it again to the shared
      queue (once)."""
    if started_by:
        if not await aworker_alive(client, started_by):
            await chat_cancel(client, prepared)
            raise WorkerLost(
                f"The worker running this request ({started_by}) stopped before it finished; retry.",
                retry_after=admission.RETRY_AFTER_NO_WORKER_S,
            )
        return
    waited = time.monotonic() - prepared.submitted_at
    if (
        prepared.queue != routing.SHARED_QUEUE
        and waited > settings.STICKY_START_TIMEOUT_SECONDS
        and not await aworker_alive(client, prepared.sticky_worker or "")
    ):
        logger.warning(
            "chat %s: not started after %.0f s on %s, whose worker is gone; sent to %s",
            prepared.spec.request_id,
            waited,
            prepared.queue,
            routing.SHARED_QUEUE,
        )
        await _enqueue(prepared, routing.SHARED_QUEUE)


def _raise_if_cancel_requested(request_id: str) -> None:
    """Re-raise a cancellation of the current task that something below swallowed.

    Django cancels the request's task when the client disconnects. redis-py sends every command
    under `asyncio.wait_for`, and Python 3.11's wait_for returns the inner result instead of
    raising when the cancel arrives after the inner send already finished (CPython gh-86296,
    fixed in 3.12). A relay cancelled in that window went on reading, and touching its reader
    lease, until the generation ended. The task still counts the request (`cancelling()`), so
    the relay honours it at its next step instead."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        logger.info("chat %s: a cancel of its reader was swallowed below; raised now", request_id)
        raise asyncio.CancelledError()


async def chat_relay(client, prepared: PreparedChat) -> AsyncIterator[streams.StreamEvent]:
    """Every event of the generation up to and including "final"; GenerationTimeout if none,
    WorkerLost when the worker that started it died. A cancel of the reading task is always
    raised here, even one a Redis call swallowed (`_raise_if_cancel_requested`)."""
    deadline = time.monotonic() + settings.OPENAI_REQUEST_TIMEOUT_SECONDS + _WAIT_SLACK_S
    after = "0-0"
    started_by = ""
    last_event = time.monotonic()
    last_touch = 0.0
    while True:
        _raise_if_cancel_requested(prepared.spec.request_id)
        if time.monotonic() - last_touch >= 1.0:  # the lease that tells the worker we still read
            last_touch = time.monotonic()
            await streams.atouch_reader(client, prepared.spec.request_id)
        if time.monotonic() > deadline:
            await chat_cancel(client, prepared)
            raise GenerationTimeout(
                f"No answer within {settings.OPENAI_REQUEST_TIMEOUT_SECONDS} s; the generation was cancelled."
            )
        events = await streams.aread(client, prepared.spec.request_id, after=after)
        _raise_if_cancel_requested(prepared.spec.request_id)
        for event in events:
            after = event.id
            if event.type == "started":
                started_by = event.data.get("worker", "")
            yield event
            if event.final:
                return
        if events:
            last_event = time.monotonic()
        elif time.monotonic() - last_event >= _LIVENESS_CHECK_S:
            last_event = time.monotonic()
            await _check_progress(client, prepared, started_by)


async def chat_cancel(client, prepared: PreparedChat) -> None:
    """The reader gave up (client disconnected, timeout): stop the generation, free its slot."""
    await streams.arequest_cancel(client, prepared.spec.request_id)
    await admission.pending_remove(client, prepared.spec.request_id)
    logger.info("chat %s cancelled by its reader", prepared.spec.request_id)


def _finish_reason(final: dict) -> str:
    reason = final.get("finish_reason")
    if reason in ("stop", "length"):
        return reason
    message = final.get("error") or f"generation ended with {reason}"
    kind = final.get("error_kind")
    if kind == "invalid_request":
        raise ApplicationError(message)
    if kind == "unavailable":
        raise ServiceUnavailable(f"The inference worker cannot serve right now: {message}", retry_after=10)
    if reason == "timeout":
        raise GenerationTimeout(f"The generation ran past its deadline: {message}")
    raise GenerationFailed(f"The generation failed: {message}")


async def chat_finish(
    client, prepared: PreparedChat, final: streams.StreamEvent, *, worker: str, text: str
) -> Completion:
    """After "final": free the slot, remember the worker, cache and keep the answer.

    Raises an ApplicationError when the generation did not end in stop/length."""
    await admission.pending_remove(client, prepared.spec.request_id)
    data = final.data
    usage = data.get("usage", {})
    finish_reason = _finish_reason(data)
    completion = Completion(
        text=text,
        finish_reason=finish_reason,
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", 0)),
        cached_tokens=int(usage.get("cached_tokens", 0)),
        cache="miss" if prepared.cache_key else "off",
        worker=worker,
    )
    await routing.route_remember(client, prepared.conversation_key, worker)
    if prepared.cache_key is not None:
        await answer_cache.answer_cache_put(
            client,
            prepared.cache_key,
            answer_cache.CachedAnswer(
                text=text,
                finish_reason=finish_reason,
                prompt_tokens=completion.prompt_tokens,
                completion_tokens=completion.completion_tokens,
                created=prepared.created,
            ),
        )
    return completion


async def chat_keep_answer(prepared: PreparedChat, completion: Completion) -> None:
    """Append the answer to the stored conversation (no-op when the chat is not kept)."""
    if prepared.conversation_pk is None:
        return
    from vision.models import Conversation
    from vision.services.conversations import conversation_record_answer

    def record() -> None:
        conversation = Conversation.objects.filter(pk=prepared.conversation_pk).first()
        if conversation is not None:
            conversation_record_answer(
                conversation=conversation,
                answer=TurnAnswer(
                    text=completion.text,
                    finish_reason=completion.finish_reason,
                    prompt_tokens=completion.prompt_tokens,
                    completion_tokens=completion.completion_tokens,
                    cached_tokens=completion.cached_tokens,
                ),
            )

    await pooled_sync_to_async(record)()
