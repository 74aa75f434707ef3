"""Structured outputs on /v1 with the official `openai` SDK against the live server, the real
worker and the tiny random checkpoint: the answers are constrained while they are generated
(docs/structured-outputs.md), so even random weights return JSON that matches the schema."""

from __future__ import annotations

import json
import re
from typing import Annotated, Literal

import jsonschema
import openai
import pytest
from pydantic import BaseModel, Field

pytestmark = pytest.mark.integration

TICKET = {
    "type": "object",
    "properties": {
        "code": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3}$"},
        "priority": {"enum": ["low", "normal", "high"]},
        "count": {"type": "integer", "minimum": 0, "maximum": 9},
        "tags": {"type": "array", "items": {"type": "string", "maxLength": 6}, "maxItems": 3},
    },
    "required": ["code", "priority", "count", "tags"],
    "additionalProperties": False,
}
ASK = [{"role": "user", "content": "File a support ticket for a broken printer."}]


@pytest.fixture
def client(live_api, ready_worker, make_api_user):
    _, key = make_api_user("structured")
    return openai.OpenAI(base_url=f"{live_api.url}/v1", api_key=key, max_retries=0, timeout=120)


def _schema_format(schema: dict, name: str = "ticket") -> dict:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": True}}


def test_json_schema_answer_is_valid_json_matching_the_schema(client):
    completion = client.chat.completions.create(
        model="qwen3-vl-2b",
        messages=ASK,
        max_tokens=200,
        temperature=0,
        response_format=_schema_format(TICKET),
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "stop"
    jsonschema.validate(json.loads(choice.message.content), TICKET)

    free = client.chat.completions.create(model="qwen3-vl-2b", messages=ASK, max_tokens=200, temperature=0)
    with pytest.raises((ValueError, jsonschema.ValidationError)):  # the constraint is what makes it valid
        jsonschema.validate(json.loads(free.choices[0].message.content), TICKET)


def test_streamed_json_schema_answer_streams_and_is_valid(client):
    stream = client.chat.completions.create(
        model="qwen3-vl-2b",
        messages=ASK,
        max_tokens=200,
        temperature=1.0,
        seed=3,
        stream=True,
        response_format=_schema_format(TICKET),
    )
    pieces, finish = [], None
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            pieces.append(chunk.choices[0].delta.content)
        if chunk.choices and chunk.choices[0].finish_reason:
            finish = chunk.choices[0].finish_reason
    assert finish == "stop"
    assert len(pieces) > 2  # streamed as generated, not held back for an after-check
    jsonschema.validate(json.loads("".join(pieces)), TICKET)


class Ticket(BaseModel):
    code: Annotated[str, Field(pattern=r"^[A-Z]{2}-[0-9]{3}$")]
    priority: Literal["low", "normal", "high"]
    count: Annotated[int, Field(ge=0, le=9)]
    summary: Annotated[str, Field(max_length=12)]


def test_sdk_parse_with_a_pydantic_model(client):
    completion = client.beta.chat.completions.parse(
        model="qwen3-vl-2b", messages=ASK, max_tokens=200, temperature=0, response_format=Ticket
    )
    ticket = completion.choices[0].message.parsed
    assert isinstance(ticket, Ticket)
    assert re.fullmatch(r"[A-Z]{2}-[0-9]{3}", ticket.code) and 0 <= ticket.count <= 9
    assert completion.choices[0].finish_reason == "stop"


def test_unsupported_schema_feature_is_a_400_naming_it_and_its_path(client):
    schema = {
        **TICKET,
        "properties": {**TICKET["properties"], "tags": {**TICKET["properties"]["tags"], "uniqueItems": True}},
    }
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="qwen3-vl-2b", messages=ASK, max_tokens=20, response_format=_schema_format(schema)
        )
    error = caught.value.body
    assert error["param"] == "response_format.json_schema.schema"
    assert "uniqueItems" in error["message"] and "#/properties/tags/uniqueItems" in error["message"]
    assert error["code"] == "unsupported_schema"


def test_schema_past_the_depth_bound_is_a_400(client):
    deep: dict = {"type": "integer"}
    for _ in range(14):  # arrays of arrays: 14 schema levels, well inside the body's JSON depth bound
        deep = {"type": "array", "items": deep}
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="qwen3-vl-2b", messages=ASK, max_tokens=20, response_format=_schema_format(deep, "deep")
        )
    assert "deep" in caught.value.body["message"] and caught.value.body["code"] == "unsupported_schema"


def test_length_mid_json_is_reported_as_length(client):
    completion = client.chat.completions.create(
        model="qwen3-vl-2b",
        messages=ASK,
        max_tokens=3,
        temperature=0,
        response_format={"type": "json_object"},
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "length"
    assert choice.message.content.startswith("{")
    with pytest.raises(ValueError):
        json.loads(choice.message.content)


def test_guided_choice_and_guided_regex(client):
    labels = ["invoice", "receipt", "delivery note"]
    for seed in range(3):
        completion = client.chat.completions.create(
            model="qwen3-vl-2b",
            messages=[{"role": "user", "content": "Which kind of document is this?"}],
            max_tokens=10,
            temperature=1.0,
            seed=seed,
            extra_body={"guided_choice": labels},
        )
        assert completion.choices[0].message.content in labels
        assert completion.choices[0].finish_reason == "stop"
    completion = client.chat.completions.create(
        model="qwen3-vl-2b",
        messages=[{"role": "user", "content": "A date, please."}],
        max_tokens=20,
        temperature=0,
        extra_body={"guided_regex": "20[0-9]{2}-(0[1-9]|1[0-2])-[0-2][0-9]"},
    )
    assert re.fullmatch(r"20[0-9]{2}-(0[1-9]|1[0-2])-[0-2][0-9]", completion.choices[0].message.content)
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="qwen3-vl-2b", messages=ASK, max_tokens=5, extra_body={"guided_regex": "(?=x)y"}
        )
    assert caught.value.body["param"] == "guided_regex"
