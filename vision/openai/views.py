"""`/v1` views: async Django views (no DRF: its views are sync) that translate HTTP ↔ `vision.chat`.

Every failure leaves as an OpenAI error object (`errors.py`), including 401/404/405/413/429/5xx.
The chat view waits on the request's Redis Stream with redis.asyncio, so a waiting or streaming
client costs no thread; a client that disconnects cancels its generation (Django cancels the view
task, or closes the streaming iterator, and both paths set the stream's cancel key).
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import redis
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.views.decorators.csrf import csrf_exempt
from kombu.exceptions import OperationalError as BrokerError

from docplatform.errors import ApplicationError
from vision.chat.completion import (
    Completion,
    PreparedChat,
    chat_cached,
    chat_cancel,
    chat_finish,
    chat_keep_answer,
    chat_prepare,
    chat_relay,
    chat_submit,
)
from vision.chat.json_output import json_answer_check
from vision.connections import async_redis
from vision.openai import responses
from vision.openai.auth import authenticate
from vision.openai.errors import OpenAIError, error_response
from vision.openai.parsing import decode_body, model_ids, parse_chat_request

logger = logging.getLogger(__name__)

CACHE_HEADER = "X-DocPlatform-Cache"
WORKER_HEADER = "X-DocPlatform-Worker"
REQUEST_ID_HEADER = "X-Request-Id"
QUEUE_HEADER = "X-DocPlatform-Queue"  # "vision" (shared) or a worker's own queue (sticky)

View = Callable[..., Awaitable[HttpResponse]]


def openai_view(*methods: str) -> Callable[[View], View]:
    """Method check (405) and the error boundary: whatever goes wrong, an OpenAI error object."""

    def decorate(view: View) -> View:
        @functools.wraps(view)
        async def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            if request.method not in methods:
                response = error_response(
                    OpenAIError(
                        405,
                        f"Method {request.method} not allowed; use {', '.join(methods)}.",
                        code="method_not_allowed",
                    )
                )
                response["Allow"] = ", ".join(methods)
                return response
            try:
                return await view(request, *args, **kwargs)
            except (OpenAIError, ApplicationError) as exc:
                return error_response(exc)
            except (redis.RedisError, BrokerError, OSError) as exc:
                logger.warning("%s: queue unavailable: %s", request.path, exc)
                return error_response(
                    OpenAIError(
                        503,
                        "The request queue is unavailable; retry shortly.",
                        code="queue_unavailable",
                        retry_after=5,
                    )
                )
            except Exception:
                logger.exception("unhandled error in %s", request.path)
                return error_response(OpenAIError(500, "Internal server error.", code="internal_error"))

        return csrf_exempt(wrapper)

    return decorate


@openai_view("GET")
async def models_list(request: HttpRequest) -> HttpResponse:
    await authenticate(request)
    return JsonResponse({"object": "list", "data": [responses.model_payload(m) for m in model_ids()]})


@openai_view("GET")
async def model_detail(request: HttpRequest, model_id: str) -> HttpResponse:
    await authenticate(request)
    if model_id not in model_ids():
        raise OpenAIError(
            404, f"The model `{model_id[:200]}` does not exist.", param="model", code="model_not_found"
        )
    return JsonResponse(responses.model_payload(model_id))


def read_body_bounded(request: HttpRequest) -> bytes:
    limit = settings.OPENAI_MAX_BODY_BYTES
    too_big = OpenAIError(413, f"The request body is larger than {limit} bytes.", code="request_too_large")
    length = request.META.get("CONTENT_LENGTH") or ""
    if length.isdigit() and int(length) > limit:
        raise too_big
    data = request.read(limit + 1)
    if len(data) > limit:
        raise too_big
    return data


@openai_view("POST")
async def chat_completions(request: HttpRequest) -> HttpResponse:
    user = await authenticate(request)
    body = decode_body(read_body_bounded(request))
    chat_request = parse_chat_request(body, conversation_header=request.headers.get("X-Conversation-Id"))
    bypass = "no-cache" in request.headers.get("Cache-Control", "").lower()
    client = async_redis()
    prepared = await chat_prepare(user=user, request=chat_request)

    cached = None if bypass else await chat_cached(client, prepared)
    queue = "" if cached else await chat_submit(client, prepared)
    cache_state = (
        "hit"
        if cached
        else ("bypass" if bypass and prepared.cache_key else ("miss" if prepared.cache_key else "off"))
    )
    headers = {CACHE_HEADER: cache_state, REQUEST_ID_HEADER: prepared.spec.request_id, QUEUE_HEADER: queue}

    if chat_request.stream:
        response = SSEResponse(sse_stream(client, prepared, cached))
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"  # proxies must pass chunks on as they come
        for name, value in headers.items():
            response[name] = value
        return response

    completion = cached or await _wait(client, prepared)
    completion = await _validated(prepared, completion)
    headers[WORKER_HEADER] = completion.worker
    return JsonResponse(responses.completion_payload(prepared, completion), headers=headers)


async def _validated(prepared: PreparedChat, completion: Completion) -> Completion:
    """Apply response_format, then keep the answer in the conversation."""
    response_format = prepared.request.response_format
    if response_format.wants_json:
        completion.text = json_answer_check(completion.text, response_format)
    await chat_keep_answer(prepared, completion)
    return completion


async def _wait(client, prepared: PreparedChat) -> Completion:
    worker, final = "", None
    try:
        async for event in chat_relay(client, prepared):
            if event.type == "started":
                worker = event.data.get("worker", "")
            elif event.final:
                final = event
    except asyncio.CancelledError:  # the client went away: Django cancels the view task
        await asyncio.shield(chat_cancel(client, prepared))
        raise
    return await chat_finish(client, prepared, final, worker=worker, text=final.data.get("text", ""))


class SSEResponse(StreamingHttpResponse):
    """A text/event-stream response that closes its source when the client goes away.

    On a disconnect Django cancels the response task and closes the iterator it holds, but that
    is a wrapper: the source generator is left suspended and its cleanup (cancelling the
    generation) would only run at garbage collection. Closing it here runs it at once.
    """

    def __init__(self, source: AsyncIterator[bytes]):
        super().__init__(source, content_type="text/event-stream")
        self._source = source

    async def __aiter__(self):
        try:
            async for part in super().__aiter__():
                yield part
        finally:
            await self._source.aclose()


async def sse_stream(client, prepared: PreparedChat, cached: Completion | None) -> AsyncIterator[bytes]:
    request = prepared.request
    buffer_answer = request.response_format.wants_json  # checked whole before any of it is sent
    include_usage = request.include_usage
    finished = cached is not None

    def chunk(**kwargs) -> bytes:
        return responses.sse(responses.chunk_payload(prepared, include_usage=include_usage, **kwargs))

    try:
        yield chunk(delta={"role": "assistant", "content": ""})
        if cached is not None:
            completion = cached
            if not buffer_answer:
                yield chunk(delta={"content": completion.text})
        else:
            worker, pieces, final = "", [], None
            async for event in chat_relay(client, prepared):
                if event.type == "started":
                    worker = event.data.get("worker", "")
                elif event.type == "delta" and event.text:
                    pieces.append(event.text)
                    if not buffer_answer:
                        yield chunk(delta={"content": event.text})
                elif event.final:
                    final = event
            finished = True
            completion = await chat_finish(client, prepared, final, worker=worker, text="".join(pieces))
        completion = await _validated(prepared, completion)
        if buffer_answer:
            yield chunk(delta={"content": completion.text})
        yield chunk(delta={}, finish_reason=completion.finish_reason)
        if include_usage:
            yield chunk(usage=responses.usage_payload(completion))
        yield responses.sse("[DONE]")
    except (OpenAIError, ApplicationError) as exc:
        finished = True
        error = exc if isinstance(exc, OpenAIError) else OpenAIError.from_application_error(exc)
        yield responses.sse(error.payload())
    except (redis.RedisError, OSError) as exc:
        logger.warning("chat %s: stream broke off: %s", prepared.spec.request_id, exc)
        yield responses.sse(
            OpenAIError(503, "The token stream broke off; retry.", code="stream_unavailable").payload()
        )
    finally:
        if not finished:  # closed early: the client disconnected (or the server is stopping)
            await asyncio.shield(chat_cancel(client, prepared))
