"""`response_format` json_object / json_schema: the instruction that tells the model what to write.

Validity does not come from here: the answer is generated under the request's constraint
(`ChatRequest.constraint`, enforced by the engine token by token), so a finished answer parses and
matches the schema by construction, and one cut off at max_tokens ends with finish reason
`length`. The instruction only helps the model fill the schema with sensible values.
"""

from __future__ import annotations

import json

from vision.chat.types import ResponseFormat


def json_instruction(response_format: ResponseFormat) -> str:
    text = "Answer with one valid JSON value and nothing else: no prose, no code fences."
    if response_format.schema:
        text += " The JSON must match this JSON Schema: " + json.dumps(
            response_format.schema, ensure_ascii=False
        )
    return text


def choice_instruction(choices: list[str]) -> str:
    return (
        "Answer with exactly one of: " + ", ".join(json.dumps(c, ensure_ascii=False) for c in choices) + "."
    )
