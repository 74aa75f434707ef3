"""The instructions that go with a constraint. Validity itself comes from constrained decoding
(tests/engine/test_constrained.py, and live in test_structured_outputs_live.py)."""

from vision.chat.json_output import choice_instruction, json_instruction
from vision.chat.types import ResponseFormat

SCHEMA = {
    "type": "object",
    "properties": {"total": {"type": "number"}, "currency": {"type": "string"}},
    "required": ["total", "currency"],
    "additionalProperties": False,
}


def test_instruction_carries_the_schema():
    assert '"currency"' in json_instruction(ResponseFormat(type="json_schema", schema=SCHEMA, name="x"))
    assert "JSON" in json_instruction(ResponseFormat(type="json_object"))


def test_choice_instruction_lists_the_choices():
    assert choice_instruction(["yes", 'a "b"']) == 'Answer with exactly one of: "yes", "a \\"b\\"".'
