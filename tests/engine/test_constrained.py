"""Constrained decoding through the real engine on the tiny random checkpoint.

GIVEN a lively tiny model, whose free answers are byte soup WHEN a request carries a constraint
(JSON schema, regex, choice) THEN every answer that ends with `stop` parses and validates against
its schema, greedy and sampled, alone and in a batch with free requests, streamed and not; the
same requests without the constraint fail validation, so the constraint is what makes them pass.
"""

from __future__ import annotations

import json
import re
import threading

import jsonschema
import pytest

from tests.engine.engine_helpers import ask, picture, text
from vision.engine import Engine, EngineConfig, FinishReason
from vision.engine.constraints import (
    choice_constraint,
    json_object_constraint,
    json_schema_constraint,
    regex_constraint,
)

# String lengths are bounded: random weights never choose to close a string on their own.
SCHEMAS = {
    "nested_objects": {
        "type": "object",
        "properties": {
            "customer": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "maxLength": 10},
                    "address": {
                        "type": "object",
                        "properties": {
                            "city": {"type": "string", "maxLength": 10},
                            "zip": {"type": "string", "pattern": "^[0-9]{5}$"},
                        },
                        "required": ["city", "zip"],
                        "additionalProperties": False,
                    },
                },
                "required": ["name", "address"],
                "additionalProperties": False,
            }
        },
        "required": ["customer"],
        "additionalProperties": False,
    },
    "array_bounds": {
        "type": "array",
        "items": {"type": "integer", "minimum": -5, "maximum": 5},
        "minItems": 2,
        "maxItems": 4,
    },
    "enums": {
        "type": "object",
        "properties": {
            "status": {"enum": ["paid", "unpaid", "void"]},
            "priority": {"type": "string", "enum": ["low", "high"]},
            "lines": {
                "type": "array",
                "items": {"enum": [1, 2, 3]},
                "minItems": 1,
                "maxItems": 3,
            },
        },
        "required": ["status", "priority", "lines"],
        "additionalProperties": False,
    },
    "number_bounds": {
        "type": "object",
        "properties": {
            "total": {"type": "number", "minimum": 0, "maximum": 1000},
            "count": {"type": "integer", "exclusiveMinimum": 0, "maximum": 50},
            "ratio": {"type": "number", "minimum": -1, "maximum": 1},
        },
        "required": ["total", "count", "ratio"],
        "additionalProperties": False,
    },
    "required_fields": {
        "type": "object",
        "properties": {
            "id": {"type": "string", "minLength": 2, "maxLength": 8},
            "note": {"type": ["string", "null"], "maxLength": 8},
            "paid": {"type": "boolean"},
        },
        "required": ["id", "paid"],
        "additionalProperties": False,
    },
    "string_patterns": {
        "type": "object",
        "properties": {
            "code": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"},
            "date": {"type": "string", "pattern": "^20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"},
            "email": {"type": "string", "pattern": "^[a-z]{1,8}@[a-z]{1,8}\\.(com|org)$"},
        },
        "required": ["code", "date", "email"],
        "additionalProperties": False,
    },
}
MAX_TOKENS = 160  # compact JSON of the schemas above is well under 100 tokens of this vocabulary
GREEDY = {"temperature": 0.0}
SAMPLED = {"temperature": 1.0, "top_p": 0.95, "seed": 11}


@pytest.fixture(scope="module")
def engine(lively, tiny_checkpoint):
    engine = Engine(EngineConfig(model=str(tiny_checkpoint), threads=2, prefill_chunk=32), loaded=lively)
    engine.load(timeout=60)
    yield engine
    engine.shutdown()


def request(name: str, sampling: dict, *, constrained: bool = True, max_tokens: int = MAX_TOKENS, **extra):
    req = ask(
        (picture(len(name) % 5), text(f"Fill in the {name} form as JSON.")),
        max_tokens,
        ignore_eos=False,
        **sampling,
        **extra,
    )
    if constrained:
        req.constraint = json_schema_constraint(SCHEMAS[name], name=name)
    return req


def assert_valid(name: str, output) -> None:
    assert output.finish_reason == FinishReason.STOP, (name, output.finish_reason, output.text)
    jsonschema.validate(json.loads(output.text), SCHEMAS[name])


def fails_validation(name: str, text_out: str) -> bool:
    try:
        jsonschema.validate(json.loads(text_out), SCHEMAS[name])
    except (ValueError, jsonschema.ValidationError):
        return True
    return False


@pytest.mark.parametrize("sampling", [GREEDY, SAMPLED], ids=["greedy", "sampled"])
@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_constrained_answer_validates_and_the_free_one_does_not(engine, name, sampling):
    constrained = engine.generate(request(name, sampling), timeout=120)
    assert_valid(name, constrained)
    free = engine.generate(request(name, sampling, constrained=False), timeout=120)
    assert fails_validation(name, free.text), free.text


def test_constrained_and_free_requests_share_a_batch_streamed(engine):
    names = sorted(SCHEMAS)
    alone = {n: engine.generate(request(n, GREEDY), timeout=120).token_ids for n in names}
    free_alone = engine.generate(request(names[0], GREEDY, constrained=False, max_tokens=40), timeout=120)

    steps_before = engine.steps
    handles = {n: engine.submit(request(n, GREEDY)) for n in names}
    handles["free-1"] = engine.submit(request(names[0], GREEDY, constrained=False, max_tokens=40))
    handles["free-2"] = engine.submit(request(names[1], SAMPLED, constrained=False, max_tokens=40))
    streamed = {key: [] for key in handles}

    def drain(key: str) -> None:
        streamed[key] = list(handles[key])

    readers = [threading.Thread(target=drain, args=(key,)) for key in handles]
    for reader in readers:
        reader.start()
    for reader in readers:
        reader.join(timeout=300)
    outputs = {key: handle.result(timeout=5) for key, handle in handles.items()}

    for n in names:
        assert_valid(n, outputs[n])
        assert outputs[n].token_ids == alone[n]  # the batch changes nothing, grammar or not
        assert "".join(d.text for d in streamed[n]) == outputs[n].text
        assert len(streamed[n]) > 2  # it really streamed, not one final blob
    assert outputs["free-1"].token_ids == free_alone.token_ids
    assert outputs["free-1"].finish_reason == FinishReason.LENGTH
    longest = max(len(o.token_ids) for o in outputs.values())
    assert engine.steps - steps_before < sum(len(o.token_ids) for o in outputs.values())
    assert engine.steps - steps_before >= longest  # decoded together: fewer steps than one by one


def test_length_mid_json_is_reported_as_length(engine):
    out = engine.generate(request("nested_objects", GREEDY, max_tokens=6), timeout=60)
    assert out.finish_reason == FinishReason.LENGTH
    assert len(out.token_ids) == 6
    assert out.text.startswith("{")
    with pytest.raises(ValueError):
        json.loads(out.text)


def test_json_object_is_an_object_or_ends_with_length(engine):
    outcomes = []
    for seed in range(4):
        req = ask((text("Any JSON object."),), 200, ignore_eos=False, temperature=1.0, seed=seed)
        req.constraint = json_object_constraint()
        out = engine.generate(req, timeout=120)
        outcomes.append(out.finish_reason)
        assert out.text.startswith("{")
        if out.finish_reason == FinishReason.STOP:
            assert isinstance(json.loads(out.text), dict)
        else:
            assert out.finish_reason == FinishReason.LENGTH and len(out.token_ids) == 200
    assert set(outcomes) <= {FinishReason.STOP, FinishReason.LENGTH}


def test_regex_and_choice(engine):
    req = ask((text("A ticket code."),), 40, ignore_eos=False, temperature=1.0, seed=5)
    req.constraint = regex_constraint(r"[A-Z]{3}-[0-9]{2,4}")
    out = engine.generate(req, timeout=60)
    assert out.finish_reason == FinishReason.STOP
    assert re.fullmatch(r"[A-Z]{3}-[0-9]{2,4}", out.text), out.text

    labels = ["invoice", "receipt", "purchase order"]
    seen = set()
    for seed in range(6):
        req = ask(
            (picture(seed), text("Which kind of document?")), 20, ignore_eos=False, temperature=1.0, seed=seed
        )
        req.constraint = choice_constraint(labels)
        out = engine.generate(req, timeout=60)
        assert out.finish_reason == FinishReason.STOP
        assert out.text in labels
        seen.add(out.text)
    free = engine.generate(
        ask((picture(0), text("Which kind of document?")), 20, ignore_eos=False), timeout=60
    )
    assert free.text not in labels


def test_prefix_reuse_gives_the_same_constrained_answer(engine):
    first = engine.generate(request("enums", GREEDY), timeout=60)
    again = engine.generate(request("enums", GREEDY), timeout=60)
    recompute = engine.generate(request("enums", GREEDY, use_prefix_cache=False), timeout=60)
    assert again.usage.cached_tokens > 0
    assert first.token_ids == again.token_ids == recompute.token_ids
    assert_valid("enums", again)


def test_stop_string_still_ends_a_constrained_answer(engine):
    probe = engine.generate(request("string_patterns", GREEDY), timeout=60)
    assert_valid("string_patterns", probe)
    out = engine.generate(request("string_patterns", GREEDY, stop=('"date"',)), timeout=60)
    assert out.finish_reason == FinishReason.STOP
    assert out.text == probe.text[: probe.text.find('"date"')]


def test_cancel_a_constrained_request(lively, tiny_checkpoint):
    engine = Engine(EngineConfig(model=str(tiny_checkpoint), threads=2), loaded=lively).load(60)
    try:
        req = ask((text("Any JSON object."),), 100_000, ignore_eos=False, temperature=1.0, seed=1)
        req.constraint = json_object_constraint()
        handle = engine.submit(req)
        assert not handle.next_delta(timeout=30).finished
        handle.cancel()
        out = handle.result(timeout=30)
        assert out.finish_reason == FinishReason.CANCELLED
        assert engine.status().running == 0
    finally:
        engine.shutdown()


def test_a_schema_compiles_once_and_the_cache_is_bounded(lively, tiny_checkpoint):
    engine = Engine(EngineConfig(model=str(tiny_checkpoint), threads=2), loaded=lively).load(60)
    try:
        grammars = engine._grammars
        grammars.capacity = 2
        for _ in range(3):
            engine.generate(request("enums", GREEDY, max_tokens=4), timeout=60)
        assert grammars.stats() == {"entries": 1, "hits": 2, "misses": 1}
        for name in ("array_bounds", "number_bounds", "enums"):
            engine.generate(request(name, GREEDY, max_tokens=4), timeout=60)
        assert grammars.stats()["entries"] == 2
        assert grammars.stats()["misses"] == 4  # "enums" was evicted and compiled again
    finally:
        engine.shutdown()
