"""/v1 in the OpenAPI schema (/api/schema/, /api/docs/).

The /v1 views are plain async Django views that drf-spectacular cannot see, so this
post-processing hook adds their paths by hand: the request and response shapes OpenAI documents,
trimmed to what this server accepts.
"""

from __future__ import annotations

from vision.engine.contract import MAX_STOP_LENGTH, MAX_STOP_SEQUENCES, MAX_TEMPERATURE, SEED_RANGE

_STOP = {"type": "string", "minLength": 1, "maxLength": MAX_STOP_LENGTH}
_ERROR = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "message": {"type": "string"},
                "type": {"type": "string"},
                "param": {"type": "string", "nullable": True},
                "code": {"type": "string", "nullable": True},
            },
            "required": ["message", "type", "param", "code"],
        }
    },
}
_CONTENT_PART = {
    "oneOf": [
        {
            "type": "object",
            "properties": {"type": {"enum": ["text"]}, "text": {"type": "string"}},
            "required": ["type", "text"],
        },
        {
            "type": "object",
            "properties": {
                "type": {"enum": ["image_url"]},
                "image_url": {
                    "oneOf": [
                        {"type": "string", "description": "data: URL (or http(s) when enabled)"},
                        {"type": "object", "properties": {"url": {"type": "string"}}, "required": ["url"]},
                    ]
                },
            },
            "required": ["type", "image_url"],
        },
    ]
}
_REQUEST = {
    "type": "object",
    "required": ["model", "messages"],
    "properties": {
        "model": {
            "type": "string",
            "description": "The served model name (VISION_SERVED_MODEL_NAME, listed by GET /v1/models) or an alias: OPENAI_MODEL_ALIAS, VISION_MODEL.",
        },
        "messages": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["role"],
                "properties": {
                    "role": {"enum": ["system", "developer", "user", "assistant"]},
                    "content": {"oneOf": [{"type": "string"}, {"type": "array", "items": _CONTENT_PART}]},
                },
            },
        },
        "max_tokens": {"type": "integer", "minimum": 1},
        "max_completion_tokens": {"type": "integer", "minimum": 1},
        "temperature": {"type": "number", "minimum": 0, "maximum": MAX_TEMPERATURE},
        "top_p": {"type": "number", "exclusiveMinimum": 0, "maximum": 1},
        "top_k": {"type": "integer", "minimum": -1},
        "seed": {"type": "integer", "minimum": SEED_RANGE[0], "exclusiveMaximum": SEED_RANGE[1]},
        "stop": {"oneOf": [_STOP, {"type": "array", "items": _STOP, "maxItems": MAX_STOP_SEQUENCES}]},
        "n": {"type": "integer", "enum": [1]},
        "stream": {"type": "boolean"},
        "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
        "response_format": {
            "type": "object",
            "description": "json_object / json_schema: the answer is generated under the schema (constrained "
            "decoding), so a finished answer is valid; an unsupported schema keyword is a 400 naming it and "
            "its JSON path.",
            "properties": {
                "type": {"enum": ["text", "json_object", "json_schema"]},
                "json_schema": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "schema": {"type": "object"},
                        "strict": {"type": "boolean"},
                    },
                    "required": ["name"],
                },
            },
        },
        "guided_choice": {
            "type": "array",
            "items": {"type": "string"},
            "description": "vLLM-style extension: the answer is exactly one of these strings.",
        },
        "guided_regex": {
            "type": "string",
            "description": "vLLM-style extension: the answer matches this regular expression.",
        },
        "user": {"type": "string", "description": "Also used as the conversation id for sticky routing."},
        "metadata": {"type": "object", "properties": {"conversation_id": {"type": "string"}}},
    },
}
_USAGE = {
    "type": "object",
    "properties": {
        "prompt_tokens": {"type": "integer"},
        "completion_tokens": {"type": "integer"},
        "total_tokens": {"type": "integer"},
        "prompt_tokens_details": {"type": "object", "properties": {"cached_tokens": {"type": "integer"}}},
    },
}
_COMPLETION = {
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "object": {"enum": ["chat.completion"]},
        "created": {"type": "integer"},
        "model": {"type": "string"},
        "choices": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "index": {"type": "integer"},
                    "message": {
                        "type": "object",
                        "properties": {"role": {"type": "string"}, "content": {"type": "string"}},
                    },
                    "finish_reason": {"enum": ["stop", "length"]},
                },
            },
        },
        "usage": _USAGE,
    },
}
_MODELS = {
    "type": "object",
    "properties": {
        "object": {"enum": ["list"]},
        "data": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"id": {"type": "string"}, "object": {"enum": ["model"]}},
            },
        },
    },
}


def _errors(*codes: int) -> dict:
    return {
        str(code): {"description": "OpenAI error object", "content": {"application/json": {"schema": _ERROR}}}
        for code in codes
    }


def openai_paths(result: dict, generator, request, public) -> dict:
    """drf-spectacular POSTPROCESSING_HOOKS entry: add /v1/models and /v1/chat/completions."""
    # The same schemes as the DRF endpoints (a dp_ API key is sent the same way, as a Bearer token).
    security = [{name: []} for name in result.get("components", {}).get("securitySchemes", {})]
    result.setdefault("paths", {})
    result["paths"]["/v1/models"] = {
        "get": {
            "operationId": "v1_models_list",
            "tags": ["v1 (OpenAI-compatible)"],
            "summary": "The model ids this server answers to",
            "security": security,
            "responses": {
                "200": {"description": "", "content": {"application/json": {"schema": _MODELS}}},
                **_errors(401),
            },
        }
    }
    result["paths"]["/v1/chat/completions"] = {
        "post": {
            "operationId": "v1_chat_completions_create",
            "tags": ["v1 (OpenAI-compatible)"],
            "summary": "Chat about text and images, as OpenAI's chat completions",
            "description": (
                "With `stream: true` the answer comes as `text/event-stream`: `data: {chat.completion.chunk}` "
                "lines and `data: [DONE]`. Deterministic requests (temperature 0, or a seed) may be answered "
                "from the answer cache (header `X-DocPlatform-Cache: hit`); `Cache-Control: no-cache` "
                "bypasses it. `X-Conversation-Id` names the conversation for sticky routing."
            ),
            "security": security,
            "parameters": [
                {
                    "name": "X-Conversation-Id",
                    "in": "header",
                    "required": False,
                    "schema": {"type": "string"},
                },
                {"name": "Cache-Control", "in": "header", "required": False, "schema": {"type": "string"}},
            ],
            "requestBody": {"required": True, "content": {"application/json": {"schema": _REQUEST}}},
            "responses": {
                "200": {
                    "description": "A chat.completion, or an SSE stream of chunks",
                    "content": {
                        "application/json": {"schema": _COMPLETION},
                        "text/event-stream": {"schema": {"type": "string"}},
                    },
                },
                **_errors(400, 401, 404, 413, 415, 422, 429, 503, 504),
            },
        }
    }
    return result
