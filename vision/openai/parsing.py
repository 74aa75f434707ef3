"""Parse and bound a `POST /v1/chat/completions` body the way OpenAI validates it.

Bytes in, `ChatRequest` out, or an `OpenAIError` naming the offending `param`. Pure apart from
`read_body_bounded` (the one read of the request body): no other I/O, no Django models, so the
hostile-input cases are cheap to test one by one.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.http import HttpRequest

from vision.chat.types import ROLES, ChatRequest, InputMessage, InputPart, ResponseFormat
from vision.engine.constraints import (
    Constraint,
    UnsupportedConstraint,
    choice_constraint,
    json_object_constraint,
    json_schema_constraint,
    regex_constraint,
)
from vision.engine.contract import InvalidSampling, SamplingParams
from vision.openai.errors import OpenAIError, invalid

MAX_JSON_DEPTH = 32  # a chat body nests ~6 deep; deeper is an attack on the parser, not a request
MAX_CONVERSATION_ID_LENGTH = 256
_ROLE_ALIASES = {"developer": "system"}


def served_model_name() -> str:
    """The one id GET /v1/models lists (never VISION_MODEL, a hub id or a folder on the server)."""
    return settings.VISION_SERVED_MODEL_NAME


def model_ids() -> tuple[str, ...]:
    """Every id a request may name: the served name first, then its aliases."""
    return tuple(
        dict.fromkeys((settings.VISION_SERVED_MODEL_NAME, settings.OPENAI_MODEL_ALIAS, settings.VISION_MODEL))
    )


def read_body_bounded(request: HttpRequest) -> bytes:
    """The request body, or 413 when it is larger than OPENAI_MAX_BODY_BYTES (read no further)."""
    limit = settings.OPENAI_MAX_BODY_BYTES
    too_big = OpenAIError(413, f"The request body is larger than {limit} bytes.", code="request_too_large")
    length = request.META.get("CONTENT_LENGTH") or ""
    if length.isdigit() and int(length) > limit:
        raise too_big
    data = request.read(limit + 1)
    if len(data) > limit:
        raise too_big
    return data


def decode_body(raw: bytes) -> dict[str, Any]:
    """Bytes → the top-level JSON object. Invalid UTF-8, invalid JSON, too deep: 400."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise invalid(
            f"The request body is not valid UTF-8 (byte {exc.start}).", code="invalid_encoding"
        ) from None
    _check_depth(text)
    try:
        body = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise invalid(
            f"We could not parse the JSON body of your request: {exc}", code="invalid_json"
        ) from None
    if not isinstance(body, dict):
        raise invalid("The request body must be a JSON object.", code="invalid_json")
    return body


def _check_depth(text: str) -> None:
    # Counts brackets outside strings in one pass, before json.loads recurses into them.
    depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise invalid(
                    f"The JSON body nests deeper than {MAX_JSON_DEPTH} levels.", code="invalid_json"
                )
        elif char in "]}":
            depth -= 1


def parse_chat_request(body: dict[str, Any], *, conversation_header: str | None = None) -> ChatRequest:
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("You must provide a model parameter.", param="model", code="missing_required_parameter")
    if model not in model_ids():
        raise OpenAIError(
            404,
            f"The model `{model[:200]}` does not exist. Available: {served_model_name()}.",
            param="model",
            code="model_not_found",
        )
    n = body.get("n", 1)
    if n is not None and (not _is_int(n) or n != 1):
        raise invalid("Only n=1 is supported.", param="n")
    messages = _messages(body.get("messages"))  # also bounds the images (OPENAI_MAX_IMAGES)
    stream = _bool(body, "stream", False)
    stream_options = body.get("stream_options")
    include_usage = False
    if stream_options is not None:
        if not isinstance(stream_options, dict):
            raise invalid("stream_options must be an object.", param="stream_options")
        if not stream:
            raise invalid("stream_options is only allowed when stream is true.", param="stream_options")
        include_usage = _bool(stream_options, "include_usage", False, prefix="stream_options.")
    sampling = _sampling(body)
    response_format = _response_format(body.get("response_format"))
    return ChatRequest(
        model=model,
        messages=messages,
        sampling=sampling,
        stream=stream,
        include_usage=include_usage,
        response_format=response_format,
        constraint=_constraint(body, response_format),
        conversation_id=_conversation_id(body, conversation_header),
    )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _bool(body: dict, name: str, default: bool, *, prefix: str = "") -> bool:
    value = body.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid(f"{prefix}{name} must be a boolean.", param=prefix + name)
    return value


def _given(body: dict, name: str, default: Any) -> Any:
    """The body's value, or `default` where it is left out or null."""
    value = body.get(name)
    return default if value is None else value


def _sampling(body: dict) -> SamplingParams:
    """The sampling fields as the contract's `SamplingParams`, which checks their bounds; its
    error names the field, which is the param (max_tokens may be spelled max_completion_tokens)."""
    name = "max_completion_tokens" if body.get("max_completion_tokens") is not None else "max_tokens"
    max_tokens = body.get(name)
    if max_tokens is None:
        max_tokens = min(settings.OPENAI_DEFAULT_MAX_TOKENS, settings.OPENAI_MAX_TOKENS_LIMIT)
    elif _is_int(max_tokens) and max_tokens > settings.OPENAI_MAX_TOKENS_LIMIT:  # this server's limit
        raise invalid(
            f"{name} must be between 1 and {settings.OPENAI_MAX_TOKENS_LIMIT}, got {max_tokens}.", param=name
        )
    try:
        return SamplingParams(
            max_tokens=max_tokens,
            # Left out: None, and the engine applies the model's generation_config.json (Qwen3-VL:
            # temperature 0.7, top_p 0.8, top_k 20), as vLLM's OpenAI server does.
            temperature=body.get("temperature"),
            top_p=body.get("top_p"),
            top_k=body.get("top_k"),  # vLLM's extension
            seed=body.get("seed"),
            stop=body.get("stop"),
            min_tokens=_given(body, "min_tokens", 0),
            ignore_eos=_given(body, "ignore_eos", False),
        )
    except InvalidSampling as exc:
        raise invalid(str(exc), param=name if exc.field == "max_tokens" else exc.field) from None


def _response_format(value: Any) -> ResponseFormat:
    if value is None:
        return ResponseFormat()
    if not isinstance(value, dict) or value.get("type") not in ("text", "json_object", "json_schema"):
        raise invalid(
            "response_format.type must be one of 'text', 'json_object', 'json_schema'.",
            param="response_format",
        )
    if value["type"] != "json_schema":
        return ResponseFormat(type=value["type"])
    spec = value.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
        raise invalid("response_format.json_schema needs a name.", param="response_format.json_schema.name")
    schema = spec.get("schema", {})
    if not isinstance(schema, dict):
        raise invalid(
            "response_format.json_schema.schema must be an object.",
            param="response_format.json_schema.schema",
        )
    from jsonschema import SchemaError, validators

    try:
        validators.validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        raise invalid(
            f"Invalid JSON schema: {exc.message}", param="response_format.json_schema.schema"
        ) from None
    strict = spec.get("strict")
    if strict is not None and not isinstance(strict, bool):
        raise invalid(
            "response_format.json_schema.strict must be a boolean.",
            param="response_format.json_schema.strict",
        )
    return ResponseFormat(type="json_schema", schema=schema, name=spec["name"][:64], strict=bool(strict))


def _constraint(body: dict, response_format: ResponseFormat) -> Constraint | None:
    """The constraint the answer is generated under: response_format json_object / json_schema, or
    vLLM's guided_choice / guided_regex. What the grammar compiler cannot enforce is a 400 that
    names the keyword and its JSON path in the schema (docs/structured-outputs.md)."""
    choice, regex = body.get("guided_choice"), body.get("guided_regex")
    asked = [
        name for name, value in (("guided_choice", choice), ("guided_regex", regex)) if value is not None
    ]
    if response_format.wants_json:
        asked.insert(0, "response_format")
    if len(asked) > 1:
        raise invalid(f"Only one of {', '.join(asked)} can be given.", param=asked[1])
    if response_format.type == "json_object":
        return json_object_constraint()
    if response_format.type == "json_schema":
        return _guided(
            lambda schema: json_schema_constraint(schema, name=response_format.name),
            response_format.schema or {},
            "response_format.json_schema.schema",
            code="unsupported_schema",
        )
    if choice is not None:
        if not isinstance(choice, list):
            raise invalid("guided_choice must be a list of strings.", param="guided_choice")
        return _guided(choice_constraint, choice, "guided_choice")
    if regex is not None:
        if not isinstance(regex, str):
            raise invalid("guided_regex must be a string.", param="guided_regex")
        return _guided(regex_constraint, regex, "guided_regex")
    return None


def _guided(build, value, param: str, *, code: str = "invalid_value") -> Constraint:
    try:
        return build(value)
    except UnsupportedConstraint as exc:
        raise invalid(f"{param}: {exc}", param=param, code=code) from None


def _conversation_id(body: dict, header: str | None) -> str | None:
    metadata = body.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise invalid("metadata must be an object.", param="metadata")
    user = body.get("user")
    if user is not None and not isinstance(user, str):
        raise invalid("user must be a string.", param="user")
    candidates = (header, (metadata or {}).get("conversation_id"), user)
    for value in candidates:
        if isinstance(value, str) and value.strip():
            return value.strip()[:MAX_CONVERSATION_ID_LENGTH]
    return None


def _messages(value: Any) -> tuple[InputMessage, ...]:
    if not isinstance(value, list) or not value:
        raise invalid("messages must be a non-empty array.", param="messages")
    if len(value) > settings.OPENAI_MAX_MESSAGES:
        raise invalid(f"At most {settings.OPENAI_MAX_MESSAGES} messages per request.", param="messages")
    images = 0
    parsed = []
    for index, message in enumerate(value):
        param = f"messages[{index}]"
        if not isinstance(message, dict):
            raise invalid(f"{param} must be an object.", param=param)
        role = _ROLE_ALIASES.get(message.get("role"), message.get("role"))
        if role not in ROLES:
            raise invalid(
                f"{param}.role must be one of 'system', 'developer', 'user', 'assistant'.",
                param=f"{param}.role",
            )
        parts = _content(message.get("content"), role, f"{param}.content")
        images += sum(p.image_url is not None for p in parts)
        if images > settings.OPENAI_MAX_IMAGES:  # stop early: a body may carry thousands
            raise invalid(
                f"Too many images: more than {settings.OPENAI_MAX_IMAGES} per request.",
                param="messages",
                code="too_many_images",
            )
        parsed.append(InputMessage(role=role, parts=parts))
    if parsed[-1].role == "assistant":
        raise invalid(
            "The last message must not be from the assistant.", param=f"messages[{len(parsed) - 1}]"
        )
    return tuple(parsed)


def _content(value: Any, role: str, param: str) -> tuple[InputPart, ...]:
    if isinstance(value, str):
        return (InputPart(text=value),)
    if value is None and role == "assistant":
        return (InputPart(text=""),)
    if not isinstance(value, list):
        raise invalid(f"{param} must be a string or an array of content parts.", param=param)
    parts = []
    for index, part in enumerate(value):
        part_param = f"{param}[{index}]"
        if not isinstance(part, dict):
            raise invalid(f"{part_param} must be an object.", param=part_param)
        kind = part.get("type")
        if kind == "text":
            if not isinstance(part.get("text"), str):
                raise invalid(f"{part_param}.text must be a string.", param=f"{part_param}.text")
            parts.append(InputPart(text=part["text"]))
        elif kind == "image_url":
            if role != "user":
                raise invalid(f"Images are only allowed in user messages ({part_param}).", param=part_param)
            parts.append(InputPart(image_url=_image_url(part.get("image_url"), f"{part_param}.image_url")))
        else:
            raise invalid(f"{part_param}.type must be 'text' or 'image_url'.", param=f"{part_param}.type")
    return tuple(parts)


def _image_url(value: Any, param: str) -> str:
    # OpenAI's form is {"url": ...}; many clients (and the article) send the URL as a bare string.
    url = value.get("url") if isinstance(value, dict) else value
    if not isinstance(url, str) or not url:
        raise invalid(f"{param} must be a URL string or an object with a 'url'.", param=param)
    return url
