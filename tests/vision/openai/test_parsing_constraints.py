"""response_format and guided_* become the request's constraint, or a 400 that says why."""

from __future__ import annotations

import pytest

from vision.engine.constraints import ConstraintKind
from vision.openai.errors import OpenAIError
from vision.openai.parsing import parse_chat_request

SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}


def _parse(**extra):
    return parse_chat_request(
        {"model": "qwen3-vl-2b", "messages": [{"role": "user", "content": "hi"}], **extra}
    )


def test_each_form_gives_its_constraint():
    assert _parse().constraint is None
    assert _parse(response_format={"type": "text"}).constraint is None
    assert _parse(response_format={"type": "json_object"}).constraint.kind == ConstraintKind.JSON_OBJECT
    request = _parse(
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "a", "schema": SCHEMA, "strict": True},
        }
    )
    assert request.constraint.kind == ConstraintKind.JSON_SCHEMA and request.constraint.schema == SCHEMA
    assert request.response_format.strict is True
    assert _parse(guided_choice=["x", "y"]).constraint.kind == ConstraintKind.CHOICE
    assert _parse(guided_regex="[0-9]+").constraint.kind == ConstraintKind.REGEX


@pytest.mark.parametrize(
    ("extra", "param", "code", "says"),
    [
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "t",
                        "schema": {
                            "type": "object",
                            "properties": {"tags": {"type": "array", "uniqueItems": True}},
                        },
                    },
                }
            },
            "response_format.json_schema.schema",
            "unsupported_schema",
            "'uniqueItems' at #/properties/tags",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {
                        "name": "t",
                        "schema": {
                            "type": "object",
                            "properties": {"p": {"type": "string", "pattern": "(?<=a)b"}},
                        },
                    },
                }
            },
            "response_format.json_schema.schema",
            "unsupported_schema",
            "#/properties/p/pattern",
        ),
        (
            {
                "response_format": {
                    "type": "json_schema",
                    "json_schema": {"name": "t", "schema": {"type": "object"}, "strict": "yes"},
                }
            },
            "response_format.json_schema.strict",
            "invalid_value",
            "boolean",
        ),
        ({"guided_choice": "yes"}, "guided_choice", "invalid_value", "list"),
        ({"guided_choice": []}, "guided_choice", "invalid_value", "non-empty"),
        ({"guided_regex": "(?=x)"}, "guided_regex", "invalid_value", "look-around"),
        ({"guided_regex": "a", "guided_choice": ["a"]}, "guided_regex", "invalid_value", "Only one of"),
        (
            {"response_format": {"type": "json_object"}, "guided_regex": "a"},
            "guided_regex",
            "invalid_value",
            "Only one of",
        ),
    ],
)
def test_what_cannot_be_enforced_is_a_400_that_says_why(extra, param, code, says):
    with pytest.raises(OpenAIError) as caught:
        _parse(**extra)
    assert caught.value.status == 400
    assert caught.value.param == param and caught.value.code == code
    assert says in caught.value.message


def test_a_schema_past_the_bounds_is_a_400():
    deep: dict = {"type": "integer"}
    for _ in range(20):
        deep = {"type": "object", "properties": {"x": deep}}
    with pytest.raises(OpenAIError) as caught:
        _parse(response_format={"type": "json_schema", "json_schema": {"name": "d", "schema": deep}})
    assert "deep" in caught.value.message and caught.value.code == "unsupported_schema"
    wide = {
        "type": "object",
        "properties": {f"f{i}": {"type": "string", "maxLength": 9} for i in range(2000)},
    }
    with pytest.raises(OpenAIError) as caught:
        _parse(response_format={"type": "json_schema", "json_schema": {"name": "w", "schema": wide}})
    assert "bytes" in caught.value.message
