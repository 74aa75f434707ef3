"""response_format checks at the validation-unit level, with scripted answers (the tiny random
model never writes JSON; the live test covers its error path end to end)."""

import pytest

from vision.chat.json_output import InvalidJsonAnswer, json_answer_check, json_instruction
from vision.chat.types import ResponseFormat

SCHEMA = {
    "type": "object",
    "properties": {"total": {"type": "number"}, "currency": {"type": "string"}},
    "required": ["total", "currency"],
    "additionalProperties": False,
}


def test_valid_json_object_passes_and_a_code_fence_is_removed():
    fmt = ResponseFormat(type="json_object")
    assert json_answer_check('{"a": 1}', fmt) == '{"a": 1}'
    assert json_answer_check('```json\n{"a": 1}\n```', fmt) == '{"a": 1}'


@pytest.mark.parametrize("answer", ["Sure! Here it is", '{"a": 1', "", "[1, 2]", "42"])
def test_json_object_errors_say_why(answer):
    with pytest.raises(InvalidJsonAnswer) as caught:
        json_answer_check(answer, ResponseFormat(type="json_object"))
    assert caught.value.status_code == 422
    assert "JSON" in caught.value.message


def test_json_schema_success_and_failure_names_the_field():
    fmt = ResponseFormat(type="json_schema", schema=SCHEMA, name="invoice")
    assert json_answer_check('{"total": 12.5, "currency": "EUR"}', fmt)
    with pytest.raises(InvalidJsonAnswer) as caught:
        json_answer_check('{"total": "twelve", "currency": "EUR"}', fmt)
    assert "invoice" in caught.value.message and "total" in caught.value.message
    with pytest.raises(InvalidJsonAnswer, match="currency"):
        json_answer_check('{"total": 1}', fmt)


def test_instruction_carries_the_schema():
    assert '"currency"' in json_instruction(ResponseFormat(type="json_schema", schema=SCHEMA, name="x"))
    assert "JSON" in json_instruction(ResponseFormat(type="json_object"))
