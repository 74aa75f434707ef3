"""OpenAI response shapes: chat.completion, chat.completion.chunk (SSE), model list."""

from __future__ import annotations

import json

from vision.chat.completion import Completion, PreparedChat


def usage_payload(completion: Completion) -> dict:
    return {
        "prompt_tokens": completion.prompt_tokens,
        "completion_tokens": completion.completion_tokens,
        "total_tokens": completion.prompt_tokens + completion.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": completion.cached_tokens},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def completion_payload(prepared: PreparedChat, completion: Completion) -> dict:
    return {
        "id": prepared.spec.request_id,
        "object": "chat.completion",
        "created": prepared.created,
        "model": prepared.request.model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": completion.text, "refusal": None},
                "logprobs": None,
                "finish_reason": completion.finish_reason,
            }
        ],
        "usage": usage_payload(completion),
        "system_fingerprint": None,
    }


def chunk_payload(
    prepared: PreparedChat,
    *,
    delta: dict | None = None,
    finish_reason: str | None = None,
    usage: dict | None = None,
    include_usage: bool = False,
) -> dict:
    chunk = {
        "id": prepared.spec.request_id,
        "object": "chat.completion.chunk",
        "created": prepared.created,
        "model": prepared.request.model,
        "system_fingerprint": None,
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    if include_usage:  # OpenAI: with include_usage every chunk has "usage": null but the last
        chunk["usage"] = usage
    return chunk


def sse(data: dict | str) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


def model_payload(model_id: str) -> dict:
    return {"id": model_id, "object": "model", "created": 0, "owned_by": "docplatform"}
