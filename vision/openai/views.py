"""`/v1` views: async Django views (no DRF: its views are sync) that translate HTTP ↔ `vision.chat`.

Every failure leaves as an OpenAI error object (`errors.py`), including 401/404/405/413/429/5xx.
The chat view makes one service call (`vision.chat.service`), which waits on the request's Redis
Stream with redis.asyncio, so a waiting or streaming client costs no thread; a client that
disconnects cancels its generation (Django cancels the view task, or closes the streaming
iterator, `vision.openai.sse`; both paths set the stream's cancel key).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from docplatform.errors import ApplicationError
from vision.chat.completion import PreparedChat
from vision.chat.service import chat_complete, chat_stream
from vision.openai import responses
from vision.openai.auth import authenticate
from vision.openai.errors import QUEUE_ERRORS, OpenAIError, error_response, queue_unavailable
from vision.openai.parsing import (
    decode_body,
    model_ids,
    parse_chat_request,
    read_body_bounded,
    served_model_name,
)
from vision.openai.sse import chat_sse_response

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
            except QUEUE_ERRORS as exc:
                logger.warning("%s: queue unavailable: %s", request.path, exc)
                return error_response(queue_unavailable())
            except Exception:
                logger.exception("unhandled error in %s", request.path)
                return error_response(OpenAIError(500, "Internal server error.", code="internal_error"))

        return csrf_exempt(wrapper)

    return decorate


@openai_view("GET")
async def models_list(request: HttpRequest) -> HttpResponse:
    await authenticate(request)
    return JsonResponse({"object": "list", "data": [responses.model_payload(served_model_name())]})


@openai_view("GET")
async def model_detail(request: HttpRequest, model_id: str) -> HttpResponse:
    await authenticate(request)
    if model_id not in model_ids():
        raise OpenAIError(
            404, f"The model `{model_id[:200]}` does not exist.", param="model", code="model_not_found"
        )
    return JsonResponse(responses.model_payload(model_id))


@openai_view("POST")
async def chat_completions(request: HttpRequest) -> HttpResponse:
    scope = await authenticate(request, key_scope="write")
    body = decode_body(read_body_bounded(request))
    chat_request = parse_chat_request(body, conversation_header=request.headers.get("X-Conversation-Id"))
    bypass = "no-cache" in request.headers.get("Cache-Control", "").lower()
    if chat_request.stream:
        stream = await chat_stream(scope=scope, request=chat_request, bypass_cache=bypass)
        response = chat_sse_response(stream, request)
        for name, value in _headers(stream.prepared, cache=stream.cache, queue=stream.queue).items():
            response[name] = value
        return response
    reply = await chat_complete(scope=scope, request=chat_request, bypass_cache=bypass)
    headers = _headers(reply.prepared, cache=reply.cache, queue=reply.queue)
    headers[WORKER_HEADER] = reply.completion.worker
    return JsonResponse(responses.completion_payload(reply.prepared, reply.completion), headers=headers)


def _headers(prepared: PreparedChat, *, cache: str, queue: str) -> dict[str, str]:
    return {CACHE_HEADER: cache, REQUEST_ID_HEADER: prepared.spec.request_id, QUEUE_HEADER: queue}
