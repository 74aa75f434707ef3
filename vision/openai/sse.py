"""Server-sent events for chat answers: OpenAI `chat.completion.chunk`s over text/event-stream.

Used by `POST /v1/chat/completions` with `stream: true` and by the portal chat, so both stream
the same chunks, error events and cancel-on-disconnect.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import redis
from django.http import HttpRequest, StreamingHttpResponse

from docplatform.errors import ApplicationError
from docplatform.metrics.web import OPEN_STREAMS, route_label
from vision.chat.completion import Completion
from vision.chat.service import ChatStream
from vision.openai import responses
from vision.openai.errors import OpenAIError

logger = logging.getLogger(__name__)


class SSEResponse(StreamingHttpResponse):
    """A text/event-stream response that closes its source when the client goes away.

    On a disconnect Django cancels the response task and closes the iterator it holds, but that
    is a wrapper: the source generator is left suspended and its cleanup (cancelling the
    generation) would only run at garbage collection. Closing it here runs it at once.
    """

    def __init__(self, source: AsyncIterator[bytes], *, route: str):
        super().__init__(source, content_type="text/event-stream")
        self._source = source
        self._route = route  # URL pattern, for the open-streams gauge on /metrics
        self["Cache-Control"] = "no-cache"
        self["X-Accel-Buffering"] = "no"  # proxies must pass chunks on as they come

    async def __aiter__(self):
        open_streams = OPEN_STREAMS.labels(self._route)
        open_streams.inc()
        try:
            async for part in super().__aiter__():
                yield part
        finally:
            open_streams.dec()
            await self._source.aclose()


def chat_sse_response(stream: ChatStream, request: HttpRequest) -> SSEResponse:
    return SSEResponse(chat_chunks(stream), route=route_label(request))


async def chat_chunks(stream: ChatStream) -> AsyncIterator[bytes]:
    """The stream as SSE chunks: the role, the text pieces, the finish reason, the usage (with
    stream_options.include_usage), `[DONE]`; a failure is one OpenAI error event."""
    prepared = stream.prepared
    include_usage = prepared.request.include_usage

    def chunk(**kwargs) -> bytes:
        return responses.sse(responses.chunk_payload(prepared, include_usage=include_usage, **kwargs))

    try:
        yield chunk(delta={"role": "assistant", "content": ""})
        completion: Completion | None = None
        async for item in stream:
            if isinstance(item, Completion):
                completion = item
            else:
                yield chunk(delta={"content": item})
        yield chunk(delta={}, finish_reason=completion.finish_reason)
        if include_usage:
            yield chunk(usage=responses.usage_payload(completion))
        yield responses.sse("[DONE]")
    except (OpenAIError, ApplicationError) as exc:
        error = exc if isinstance(exc, OpenAIError) else OpenAIError.from_application_error(exc)
        yield responses.sse(error.payload())
    except (redis.RedisError, OSError) as exc:
        logger.warning("chat %s: stream broke off: %s", prepared.spec.request_id, exc)
        yield responses.sse(
            OpenAIError(503, "The token stream broke off; retry.", code="stream_unavailable").payload()
        )
    finally:
        await stream.aclose()
