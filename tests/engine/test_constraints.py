"""Building and checking constraints (no model): what is refused says what and where."""

from __future__ import annotations

import pytest

from vision.engine.constraints import (
    MAX_SCHEMA_BYTES,
    MAX_SCHEMA_DEPTH,
    Constraint,
    ConstraintKind,
    UnsupportedConstraint,
    choice_constraint,
    json_schema_constraint,
    regex_constraint,
)

ITEMS = {"type": "array", "items": {"type": "string", "maxLength": 5}}


@pytest.mark.parametrize(
    ("schema", "feature", "path"),
    [
        (
            {"type": "object", "properties": {"tags": {**ITEMS, "uniqueItems": True}}},
            "uniqueItems",
            "#/properties/tags/uniqueItems",
        ),
        ({"type": "object", "properties": {"a": {"not": {"type": "string"}}}}, "not", "#/properties/a/not"),
        (
            {"type": "array", "items": {"if": {"type": "string"}, "then": {"maxLength": 2}}},
            "if",
            "#/items/if",
        ),
        ({"type": "array", "contains": {"type": "integer"}}, "contains", "#/contains"),
        (
            {"type": "object", "properties": {"code": {"type": "string", "pattern": "(?=A)[A-Z]+"}}},
            "pattern",
            "#/properties/code/pattern",
        ),
        (
            {"type": "object", "properties": {"a": {"$ref": "https://example.com/a.json"}}},
            "$ref",
            "#/properties/a",
        ),
    ],
)
def test_unsupported_features_name_the_keyword_and_the_path(schema, feature, path):
    with pytest.raises(UnsupportedConstraint) as caught:
        json_schema_constraint(schema)
    assert caught.value.feature == feature
    assert caught.value.path == path
    assert feature in str(caught.value) and path in str(caught.value)


def test_a_property_named_like_a_keyword_is_not_mistaken_for_one():
    schema = {
        "type": "object",
        "properties": {"not": {"type": "string", "maxLength": 3}},
        "required": ["not"],
    }
    assert json_schema_constraint(schema).kind == ConstraintKind.JSON_SCHEMA


def test_schema_size_and_depth_are_bounded():
    big = {
        "type": "object",
        "properties": {f"field_{i}": {"type": "string", "maxLength": 9} for i in range(1200)},
    }
    with pytest.raises(UnsupportedConstraint) as caught:
        json_schema_constraint(big)
    assert caught.value.feature == "size" and str(MAX_SCHEMA_BYTES) in str(caught.value)

    deep: dict = {"type": "string"}
    for _ in range(MAX_SCHEMA_DEPTH + 1):
        deep = {"type": "object", "properties": {"x": deep}}
    with pytest.raises(UnsupportedConstraint) as caught:
        json_schema_constraint(deep)
    assert caught.value.feature == "depth"
    assert caught.value.path.startswith("#/properties/x/properties/x")

    ok: dict = {"type": "string"}
    for _ in range(MAX_SCHEMA_DEPTH - 1):
        ok = {"type": "object", "properties": {"x": ok}}
    json_schema_constraint(ok)


def test_same_schema_same_key_and_round_trip():
    a = json_schema_constraint(
        {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    )
    b = json_schema_constraint(
        {"required": ["a"], "properties": {"a": {"type": "integer"}}, "type": "object"}
    )
    c = json_schema_constraint({"type": "object", "properties": {"a": {"type": "number"}}, "required": ["a"]})
    assert a.key == b.key != c.key
    assert Constraint.from_dict(a.to_dict()) == a
    assert a.schema == {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}


def test_bad_regex_and_choices_are_refused():
    with pytest.raises(UnsupportedConstraint, match="look-around"):
        regex_constraint("(?<=x)y")
    with pytest.raises(UnsupportedConstraint):
        choice_constraint([])
    with pytest.raises(UnsupportedConstraint):
        choice_constraint(["ok", 3])
    assert choice_constraint(["yes", 'say "no"']).text == '["yes", "say \\"no\\""]'


@pytest.mark.parametrize("vocab", [768, 151_936, 100, 37])
def test_bitmask_application_matches_bit_by_bit(vocab):
    import torch

    from vision.engine.grammar import apply_bitmask_

    words = torch.randint(
        -(2**31),
        2**31 - 1,
        ((vocab + 31) // 32,),
        dtype=torch.int32,
        generator=torch.Generator().manual_seed(vocab),
    )
    words[0] = 0  # a word forbidding 32 tokens
    if len(words) > 2:
        words[1] = -1  # a word allowing 32 tokens
    logits = torch.randn(vocab)
    before = logits.clone()
    apply_bitmask_(logits, words)
    allowed = torch.tensor([(int(words[t // 32]) >> (t % 32)) & 1 == 1 for t in range(vocab)])
    assert torch.equal(logits[allowed], before[allowed])
    assert torch.isinf(logits[~allowed]).all() and (logits[~allowed] < 0).all()
    assert allowed.any() and (~allowed).any()
