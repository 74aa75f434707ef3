"""Sticky routing decisions against a real Redis (isolated database): stick while the worker is
ready and its own queue is short, else fall back to the shared queue."""

from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio as aredis

from tests.conftest import redis_db_url
from vision.chat.routing import SHARED_QUEUE, conversation_key, route_pick, route_remember
from vision.generation import GenerationSpec, SpecImage, SpecMessage, SpecPart
from vision.heartbeat import worker_queue_name

pytestmark = pytest.mark.integration

WORKER = "vision-1@host"
READY = {
    WORKER: {
        "hostname": WORKER,
        "queues": ["vision", worker_queue_name(WORKER)],
        "engine": {"state": "ready"},
    }
}


def _spec(*texts: str, image: str = "abc") -> GenerationSpec:
    messages = [SpecMessage("system", [SpecPart(text="sys")])]
    messages.append(SpecMessage("user", [SpecPart(image=SpecImage("p.png", image)), SpecPart(text=texts[0])]))
    for text in texts[1:]:
        messages += [
            SpecMessage("assistant", [SpecPart(text="ok")]),
            SpecMessage("user", [SpecPart(text=text)]),
        ]
    return GenerationSpec(request_id="r", messages=messages)


def test_conversation_key_follows_the_opening_not_the_later_turns():
    first = conversation_key(user_id=1, spec=_spec("hi"), explicit_id=None)
    assert conversation_key(user_id=1, spec=_spec("hi", "more", "again"), explicit_id=None) == first
    assert conversation_key(user_id=2, spec=_spec("hi"), explicit_id=None) != first
    assert conversation_key(user_id=1, spec=_spec("hi", image="other"), explicit_id=None) != first
    explicit = conversation_key(user_id=1, spec=_spec("hi"), explicit_id="c-42")
    assert conversation_key(user_id=1, spec=_spec("something else"), explicit_id="c-42") == explicit


def test_route_pick(redis_url, settings):
    url = redis_db_url(redis_url, 10)
    redis.Redis.from_url(url).flushdb()
    settings.STICKY_MAX_QUEUE_DEPTH = 2

    async def scenario() -> list:
        client = aredis.Redis.from_url(url)
        try:
            picks = [await route_pick(client, "conv", READY)]  # never served: shared
            await route_remember(client, "conv", WORKER)
            picks.append(await route_pick(client, "conv", READY))  # sticky
            picks.append(await route_pick(client, "conv", {}))  # worker gone: shared
            await client.rpush(worker_queue_name(WORKER), "m1", "m2", "m3")  # deeper than 2
            picks.append(await route_pick(client, "conv", READY))
            return picks
        finally:
            await client.aclose()

    picks = asyncio.run(scenario())
    assert picks == [
        (SHARED_QUEUE, None),
        (worker_queue_name(WORKER), WORKER),
        (SHARED_QUEUE, None),
        (SHARED_QUEUE, None),
    ]
