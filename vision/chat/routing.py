"""Sticky routing: a conversation's next turn goes to the worker that served its last one.

That worker's prefix KV cache holds the conversation, so the follow-up prefills only the new
tokens. Each worker consumes its own queue `vision.w.<hostname>` next to the shared "vision"
queue (vision/worker.py adds it at start). Redis remembers conversation → hostname; a follow-up
goes to that worker's queue while its heartbeat says its engine is ready and no more than
STICKY_MAX_QUEUE_DEPTH messages wait there, else to the shared queue.

The conversation key is the client's explicit id when it sends one (X-Conversation-Id,
metadata.conversation_id or `user`), else a hash of the user and the conversation's opening
(first system and first user message, images by content hash), which every later turn resends.
"""

from __future__ import annotations

import hashlib
import json

from django.conf import settings

from vision.generation import GenerationSpec
from vision.heartbeat import SHARED_QUEUE, worker_queue_name

_KEY_PREFIX = "docplatform:conv:"


def conversation_key(*, user_id: int, spec: GenerationSpec, explicit_id: str | None) -> str:
    if explicit_id:
        material = {"user": user_id, "id": explicit_id}
    else:
        opening = []
        for role in ("system", "user"):
            first = next((m for m in spec.messages if m.role == role), None)
            if first is not None:
                opening.append(
                    [role, [{"image": p.image.sha256} if p.image else {"text": p.text} for p in first.parts]]
                )
        material = {"user": user_id, "opening": opening}
    return hashlib.sha256(json.dumps(material, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _worker_key(key: str) -> str:
    return f"{_KEY_PREFIX}{key}:worker"


async def route_pick(client, key: str, ready_workers: dict[str, dict]) -> tuple[str, str | None]:
    """→ (queue, sticky hostname or None) for the conversation `key`."""
    raw = await client.get(_worker_key(key))
    if raw is None:
        return SHARED_QUEUE, None
    hostname = raw.decode() if isinstance(raw, bytes) else raw
    queue = worker_queue_name(hostname)
    if hostname not in ready_workers or queue not in ready_workers[hostname].get("queues", []):
        return SHARED_QUEUE, None
    if await client.llen(queue) > settings.STICKY_MAX_QUEUE_DEPTH:
        return SHARED_QUEUE, None
    return queue, hostname


async def route_remember(client, key: str, hostname: str) -> None:
    if hostname:
        await client.set(_worker_key(key), hostname, ex=settings.STICKY_TTL_SECONDS)
