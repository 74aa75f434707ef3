"""A chat completion as one service call: `chat_complete` (wait for the whole answer) and
`chat_stream` (the answer as it comes). The /v1 view and the portal chat call these and only
translate HTTP; the steps behind them are `vision.chat.completion`.

Both run: store the images and record the turn → the answer cache (unless bypassed) → admission
and routing → enqueue `vision.chat_generate` → relay the request's Redis Stream → free the slot,
remember the worker, cache the answer → keep the answer in the conversation. A JSON
response_format needs no check afterwards: the answer is generated under its constraint.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import redis

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
from vision.chat.types import ChatRequest
from vision.connections import async_redis

logger = logging.getLogger(__name__)


@dataclass
class ChatReply:
    """A chat that was admitted or answered from the answer cache, with the whole answer."""

    prepared: PreparedChat
    cache: str  # the answer cache's part: "hit" | "miss" | "bypass" | "off"
    queue: str  # where the generation was sent (shared or a worker's own queue); "" on a hit
    completion: Completion


async def _start(client, *, scope, request: ChatRequest, bypass_cache: bool):
    prepared = await chat_prepare(scope=scope, request=request)
    cached = None if bypass_cache else await chat_cached(client, prepared)
    queue = "" if cached else await chat_submit(client, prepared)
    if cached:
        cache = "hit"
    elif not prepared.cache_key:
        cache = "off"
    else:
        cache = "bypass" if bypass_cache else "miss"
    return prepared, cached, queue, cache


async def _kept(prepared: PreparedChat, completion: Completion) -> Completion:
    """Keep the answer in the conversation."""
    await chat_keep_answer(prepared, completion)
    return completion


async def chat_complete(*, scope, request: ChatRequest, bypass_cache: bool = False) -> ChatReply:
    """The whole answer. Raises an ApplicationError (429/503 admission, generation errors); a
    caller cancelled while waiting (client gone) cancels the generation."""
    client = async_redis()
    prepared, cached, queue, cache = await _start(
        client, scope=scope, request=request, bypass_cache=bypass_cache
    )
    completion = cached or await _wait(client, prepared)
    return ChatReply(
        prepared=prepared, cache=cache, queue=queue, completion=await _kept(prepared, completion)
    )


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


class ChatStream:
    """A chat that was admitted or answered from the answer cache, its answer still to come.

    Iterate it for the answer's text pieces as they arrive, then one last item, the finished
    `Completion` (kept in the conversation). A constrained answer (JSON response_format,
    guided_*) streams like any other: it is valid as it is generated. Errors are raised from the
    iteration (ApplicationError, or a Redis error when the stream broke off). `aclose()` must be called when the reader is done:
    before the end it cancels the generation and frees its slot.
    """

    def __init__(self, client, prepared: PreparedChat, cached: Completion | None, *, queue: str, cache: str):
        self.prepared = prepared
        self.queue = queue
        self.cache = cache
        self._client = client
        self._finished = cached is not None
        self._items = self._run(cached)

    def __aiter__(self) -> AsyncIterator[str | Completion]:
        return self._items

    async def _run(self, cached: Completion | None) -> AsyncIterator[str | Completion]:
        prepared = self.prepared
        try:
            if cached is not None:
                completion = cached
                yield completion.text
            else:
                worker, pieces, final = "", [], None
                async for event in chat_relay(self._client, prepared):
                    if event.type == "started":
                        worker = event.data.get("worker", "")
                    elif event.type == "delta" and event.text:
                        pieces.append(event.text)
                        yield event.text
                    elif event.final:
                        final = event
                self._finished = True
                completion = await chat_finish(
                    self._client, prepared, final, worker=worker, text="".join(pieces)
                )
            completion = await _kept(prepared, completion)
            yield completion
        except ApplicationError:  # the generation is over (failed, timed out, worker lost)
            self._finished = True
            raise

    async def aclose(self) -> None:
        await self._items.aclose()
        if not self._finished:  # closed early: the client disconnected (or the server is stopping)
            self._finished = True
            try:
                await asyncio.shield(chat_cancel(self._client, self.prepared))
            except (redis.RedisError, OSError) as exc:  # Redis is away: so is the stream it would stop
                logger.warning("chat %s: cancel not sent: %s", self.prepared.spec.request_id, exc)


async def chat_stream(*, scope, request: ChatRequest, bypass_cache: bool = False) -> ChatStream:
    """Admit the chat (or find its answer in the cache) now, so admission errors (429/503) and
    bad input are raised before any response is sent; the answer comes from the returned stream."""
    client = async_redis()
    prepared, cached, queue, cache = await _start(
        client, scope=scope, request=request, bypass_cache=bypass_cache
    )
    return ChatStream(client, prepared, cached, queue=queue, cache=cache)
