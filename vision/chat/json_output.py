"""`response_format` json_object / json_schema: the answer must be valid JSON (matching the schema).

The engine has no grammar-constrained decoding, so the answer is checked after generation and a
failure becomes an error that says why, instead of a 200 with broken JSON.
"""

from __future__ import annotations

import json
import re

from docplatform.errors import ApplicationError
from vision.chat.types import ResponseFormat

_FENCE = re.compile(r"^\s*```(?:json)?\s*\n(?P<body>.*?)\n?```\s*$", re.S)


class InvalidJsonAnswer(ApplicationError):
    status_code = 422
    code = "invalid_json_output"


def json_instruction(response_format: ResponseFormat) -> str:
    text = "Answer with one valid JSON value and nothing else: no prose, no code fences."
    if response_format.schema:
        text += " The JSON must match this JSON Schema: " + json.dumps(
            response_format.schema, ensure_ascii=False
        )
    return text


def json_answer_check(text: str, response_format: ResponseFormat) -> str:
    """→ the answer as JSON text (a surrounding ``` fence removed), or raise InvalidJsonAnswer."""
    match = _FENCE.match(text)
    body = match.group("body") if match else text.strip()
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise InvalidJsonAnswer(
            f"The model's answer is not valid JSON ({exc}); response_format {response_format.type} "
            "requires it. Retry, or raise max_tokens if the answer was cut off."
        ) from None
    if response_format.type == "json_object" and not isinstance(value, dict):
        raise InvalidJsonAnswer(
            "The model's answer is valid JSON but not an object, as json_object requires."
        )
    if response_format.schema is not None:
        from jsonschema import validators

        validator = validators.validator_for(response_format.schema)(response_format.schema)
        error = next(iter(sorted(validator.iter_errors(value), key=lambda e: list(e.path))), None)
        if error is not None:
            where = "/".join(str(p) for p in error.absolute_path) or "(root)"
            raise InvalidJsonAnswer(
                f"The model's answer does not match the JSON schema '{response_format.name}' at {where}: "
                f"{error.message}"
            )
    return body
