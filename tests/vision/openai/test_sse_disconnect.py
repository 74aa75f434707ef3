"""A client that goes away mid-answer cancels its generation: `/v1/chat/completions` and the portal
chat stream (the same SSE code, `vision.openai.sse`), web side only, no worker and no model.

The ASGI app (`docplatform.asgi.application`) is driven in this process, so the disconnect arrives
exactly when the test says. A fake worker stands in for the real one: a heartbeat with its own
queue, to which the conversation is routed, and a thread that takes the task message from that
queue and streams the request's Redis Stream events with `vision.streams.publish` until the cancel
key appears, as the worker does.
`tests/vision/openai/test_api_chat_live.py` checks the same against the real worker.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
import time

import pytest
import redis

from tests.vision.openai.asgi_driver import Disconnected, disconnect_after_chunks
from vision import streams
from vision.chat import routing
from vision.chat.admission import PENDING_KEY
from vision.heartbeat import heartbeat_delete, heartbeat_write, worker_queue_name

pytestmark = pytest.mark.integration

# The fake worker streams at most this long; a relay that missed the disconnect ends with it.
STREAM_LIMIT_S = 20.0


class FakeWorker(threading.Thread):
    """Takes one `vision.chat_generate` message from its own queue, then streams "started", one
    delta every few ms, and "final" (cancelled once a reader set the cancel key, else length after
    STREAM_LIMIT_S)."""

    def __init__(self, redis_url: str, hostname: str) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(redis_url)
        self.hostname = hostname
        self.queue = worker_queue_name(hostname)
        self.request_id = ""
        self.saw_cancel = False
        self.deltas = 0

    def run(self) -> None:
        taken = self.client.brpop([self.queue], timeout=60)  # kombu's Redis transport: LPUSH/BRPOP
        if taken is None:
            return
        self.request_id = request_id = json.loads(taken[1])["headers"]["id"]  # the Celery task id
        streams.publish(self.client, request_id, "started", data={"worker": self.hostname})
        limit = time.monotonic() + STREAM_LIMIT_S
        while time.monotonic() < limit:
            if streams.cancel_requested(self.client, request_id):
                self.saw_cancel = True
                break
            streams.publish(self.client, request_id, "delta", text="word ")
            self.deltas += 1
            time.sleep(0.005)
        usage = {"prompt_tokens": 5, "completion_tokens": self.deltas, "cached_tokens": 0}
        reason = "cancelled" if self.saw_cancel else "length"
        streams.publish(self.client, request_id, "final", data={"finish_reason": reason, "usage": usage})


@pytest.fixture
def fake_worker(redis_url):
    """A worker that only this test "runs": ready heartbeat, own queue (emptied afterwards)."""
    hostname = f"fake-{time.monotonic_ns()}@disconnect-test"
    worker = FakeWorker(redis_url, hostname)
    client = redis.Redis.from_url(redis_url)
    ready = {"state": "ready", "reason": ""}
    heartbeat_write(
        client,
        {
            "hostname": hostname,
            "pid": 1,
            "queues": ["vision", worker.queue],
            "pool": "threads",
            "started_at": time.time(),
            "ts": time.time(),
            "engine": {"state": "ready"},
            "capabilities": {"vlm": ready, "ocr": ready},
        },
        ttl_seconds=120,
    )
    yield worker
    heartbeat_delete(client, hostname)
    client.delete(worker.queue)


def _disconnect_after_three_chunks(
    worker: FakeWorker, *, user_id: int, path: str, headers: list[tuple[bytes, bytes]]
) -> tuple[dict[bytes, bytes], int]:
    """POST a streaming chat routed to the fake worker; report the client gone (http.disconnect)
    after three content chunks. → (response headers with b":status", content chunks received)."""
    from docplatform.asgi import application
    from vision.connections import async_redis

    conversation_id = f"disconnect-{time.monotonic_ns()}"
    body = json.dumps(
        {
            "model": "qwen3-vl-2b",
            "messages": [{"role": "user", "content": "Write a very long story."}],
            "max_tokens": 1000,
            "stream": True,
            "temperature": 1.0,  # not deterministic: no answer cache
            "user": conversation_id,  # the conversation id: routed to the fake worker's own queue
        }
    ).encode()

    async def scenario() -> Disconnected:
        key = routing.conversation_key(user_id=user_id, spec=None, explicit_id=conversation_id)
        await routing.route_remember(async_redis(), key, worker.hostname)
        return await disconnect_after_chunks(application, path, headers, body, timeout=STREAM_LIMIT_S + 5)

    worker.start()
    seen = asyncio.run(scenario())
    worker.join(timeout=STREAM_LIMIT_S + 10)
    return seen.headers, seen.content_chunks


def _assert_cancelled(
    worker: FakeWorker, received: dict[bytes, bytes], content_chunks: int, redis_url
) -> None:
    assert received.get(b":status") == b"200", received
    assert content_chunks >= 3
    request_id = worker.request_id
    assert request_id.startswith("chatcmpl-")
    # The reader set the cancel key while the fake worker was still streaming (not after it
    # gave up at STREAM_LIMIT_S), and freed the generation's admission slot.
    assert worker.saw_cancel, f"no cancel after the disconnect; {worker.deltas} deltas streamed"
    sync = redis.Redis.from_url(redis_url)
    assert sync.exists(streams.cancel_key(request_id))
    assert sync.zscore(PENDING_KEY, request_id) is None


def test_v1_disconnect_cancels_the_generation(make_api_user, fake_worker, redis_url):
    """GIVEN a streaming /v1 chat whose tokens keep coming WHEN the ASGI server reports the client
    gone after three chunks THEN the reader cancels the generation and frees its slot."""
    user, key = make_api_user()
    received, chunks = _disconnect_after_three_chunks(
        fake_worker,
        user_id=user.pk,
        path="/v1/chat/completions",
        headers=[(b"authorization", f"Bearer {key}".encode())],
    )
    assert received[b"x-request-id"].decode() == fake_worker.request_id
    _assert_cancelled(fake_worker, received, chunks, redis_url)


def test_portal_chat_disconnect_cancels_the_generation(make_api_user, fake_worker, redis_url):
    """The portal chat's stream (session login, CSRF) ends the same way."""
    from django.conf import settings
    from django.test import Client

    user, _ = make_api_user()
    browser = Client()
    browser.force_login(user)
    session = browser.cookies[settings.SESSION_COOKIE_NAME].value
    csrf = secrets.token_hex(16)  # 32 characters: a valid unmasked CSRF secret
    received, chunks = _disconnect_after_three_chunks(
        fake_worker,
        user_id=user.pk,
        path="/chat/stream/",
        headers=[
            (
                b"cookie",
                f"{settings.SESSION_COOKIE_NAME}={session}; {settings.CSRF_COOKIE_NAME}={csrf}".encode(),
            ),
            (b"x-csrftoken", csrf.encode()),
        ],
    )
    _assert_cancelled(fake_worker, received, chunks, redis_url)
