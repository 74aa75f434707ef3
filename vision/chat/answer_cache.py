"""Answers to deterministic requests, replayed from Redis without touching a worker.

A request is deterministic when it is greedy or seeded (`ChatRequest.deterministic`). Its key is a
sha256 over everything that decides the answer: the served model, every message with images by
their content hash, and the sampling parameters and response format. Entries are scoped to the
user unless ANSWER_CACHE_SHARED, live ANSWER_CACHE_TTL_SECONDS, and at most
ANSWER_CACHE_MAX_ENTRIES are kept (a sorted set by insertion time evicts the oldest).
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass

from django.conf import settings

from vision.generation import GenerationSpec

ENTRY_PREFIX = "docplatform:answer:"
INDEX_KEY = "docplatform:answer:index"


@dataclass(frozen=True)
class CachedAnswer:
    text: str
    finish_reason: str  # "stop" | "length"
    prompt_tokens: int
    completion_tokens: int
    created: int  # unix time of the original answer


def answer_cache_key(*, spec: GenerationSpec, model: str, response_format: dict, user_id: int) -> str:
    scope = "shared" if settings.ANSWER_CACHE_SHARED else f"user:{user_id}"
    canonical = {
        "model": model,
        "messages": [
            {
                "role": m.role,
                "parts": [{"image": p.image.sha256} if p.image else {"text": p.text} for p in m.parts],
            }
            for m in spec.messages
        ],
        **asdict(spec.sampling),
        "seed": None if spec.sampling.greedy else spec.sampling.seed,  # greedy ignores the seed
        "response_format": response_format,
        "constraint": spec.constraint,  # guided_choice / guided_regex change the answer too
        "pixels": [spec.task, spec.max_pixels],
    }
    digest = hashlib.sha256(json.dumps(canonical, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
    return f"{ENTRY_PREFIX}{scope}:{digest}"


async def answer_cache_get(client, key: str) -> CachedAnswer | None:
    raw = await client.get(key)
    if raw is None:
        return None
    try:
        return CachedAnswer(**json.loads(raw))
    except (ValueError, TypeError):
        await client.delete(key)
        return None


async def answer_cache_put(client, key: str, answer: CachedAnswer) -> None:
    ttl = settings.ANSWER_CACHE_TTL_SECONDS
    now = time.time()
    pipe = client.pipeline(transaction=True)
    pipe.set(key, json.dumps(asdict(answer)), ex=ttl)
    pipe.zadd(INDEX_KEY, {key: now})
    pipe.zremrangebyscore(INDEX_KEY, "-inf", now - ttl)  # expired entries leave the index too
    pipe.zcard(INDEX_KEY)
    *_, size = await pipe.execute()
    overflow = size - settings.ANSWER_CACHE_MAX_ENTRIES
    if overflow > 0:
        oldest = await client.zpopmin(INDEX_KEY, overflow)
        if oldest:
            await client.delete(*[member for member, _score in oldest])
