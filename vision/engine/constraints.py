"""Output constraints, part of the engine's contract: what a request's answer must match (a JSON
schema, any JSON object, a regex, or one of a few strings), with the bounds a caller may send.

Plain Python, no torch (llguidance's grammar compiler, a small Rust wheel, is imported when a
constraint is checked): the web side builds and checks a `Constraint` before anything is queued.
"""

from __future__ import annotations

import enum
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

# What a request's answer must match: a JSON schema, any JSON object, a regex, or one of a few
# strings. The web side builds and checks a `Constraint` (a /v1 response_format, a document type's
# schema, the invoice schema) and hands it to a worker as JSON (`to_dict` / `from_dict`, carried by
# `GenerationSpec.constraint`); the engine compiles it for its tokenizer and masks the logits with
# it (vision/engine/grammar.py), so the answer parses and validates by construction:
#
#     constraint = json_schema_constraint(schema, name="receipt")   # raises UnsupportedConstraint
#     EngineRequest(..., constraint=constraint)
#
# Checking needs only llguidance's grammar compiler (a 3 MB Rust wheel, no torch), so a bad schema
# is refused before anything is queued, with the keyword and the JSON path it cannot enforce.
# docs/structured-outputs.md has the whole story.

# Bounds on what a caller may send. A schema is compiled once per distinct text and cached, but a
# huge or deeply nested one is a denial of service on the worker (compile time, lexer states),
# and no document type or response_format needs more.
MAX_SCHEMA_BYTES = 32 * 1024  # of the schema as compact JSON
MAX_SCHEMA_DEPTH = 12  # nesting of subschemas (properties, items, anyOf, ...)
MAX_REGEX_CHARS = 2_000
MAX_CHOICES = 256
MAX_CHOICE_CHARS = 1_000  # per choice

# How the JSON is written. No free whitespace: a model may otherwise spend its whole budget on
# newlines (random weights do). The separators are json.dumps' defaults, the form models see most.
JSON_OPTIONS = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}

# Keys whose values are data, not subschemas; keys whose values map names to subschemas.
_VALUE_KEYS = frozenset({"enum", "const", "default", "examples", "required", "description", "title"})
_MAP_KEYS = frozenset({"properties", "patternProperties", "$defs", "definitions", "dependentSchemas"})


class ConstraintKind(enum.StrEnum):
    JSON_SCHEMA = "json_schema"
    JSON_OBJECT = "json_object"  # any JSON object (OpenAI's response_format json_object)
    REGEX = "regex"
    CHOICE = "choice"  # exactly one of a list of strings (vLLM's guided_choice)


class UnsupportedConstraint(ValueError):
    """The constraint cannot be enforced: a schema keyword the grammar compiler lacks, a bound
    passed, a bad regex. `feature` and `path` (a JSON pointer into the schema) say where."""

    def __init__(self, message: str, *, feature: str | None = None, path: str | None = None):
        super().__init__(message)
        self.feature = feature
        self.path = path


@dataclass(frozen=True)
class Constraint:
    kind: ConstraintKind
    text: str  # canonical: the schema as sorted compact JSON, the regex, or the choices as a JSON list
    name: str = ""  # the schema's name, for messages only (not part of the key)

    @property
    def key(self) -> str:
        """Cache key of the compiled grammar: the same schema text compiles once per worker."""
        return hashlib.sha256(f"{self.kind}\0{self.text}".encode()).hexdigest()

    @property
    def schema(self) -> dict[str, Any] | None:
        return json.loads(self.text) if self.kind == ConstraintKind.JSON_SCHEMA else None

    def grammar(self) -> str:
        """The llguidance grammar (a JSON string) this constraint compiles to."""
        import llguidance

        if self.kind == ConstraintKind.JSON_SCHEMA:
            return llguidance.LLMatcher.grammar_from_json_schema(self.text, defaults=JSON_OPTIONS)
        if self.kind == ConstraintKind.JSON_OBJECT:
            return llguidance.LLMatcher.grammar_from_json_schema({"type": "object"}, defaults=JSON_OPTIONS)
        if self.kind == ConstraintKind.REGEX:
            return llguidance.LLMatcher.grammar_from_regex(self.text)
        return llguidance.grammar_from("choice", self.text)

    def to_dict(self) -> dict[str, str]:
        return {"kind": self.kind.value, "text": self.text, "name": self.name}

    @classmethod
    def from_dict(cls, data: dict[str, str]) -> Constraint:
        return cls(kind=ConstraintKind(data["kind"]), text=data["text"], name=data.get("name", ""))


def json_schema_constraint(schema: dict[str, Any], *, name: str = "") -> Constraint:
    """A JSON schema as a checked constraint; raises UnsupportedConstraint naming what it can't do."""
    if not isinstance(schema, dict):
        raise UnsupportedConstraint("the JSON schema must be an object", path="#")
    text = json.dumps(schema, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if len(text.encode()) > MAX_SCHEMA_BYTES:
        raise UnsupportedConstraint(
            f"the JSON schema is {len(text.encode())} bytes; at most {MAX_SCHEMA_BYTES} are accepted",
            feature="size",
            path="#",
        )
    depth, where = _deepest(schema)
    if depth > MAX_SCHEMA_DEPTH:
        raise UnsupportedConstraint(
            f"the JSON schema nests {depth} levels deep at {where}; at most {MAX_SCHEMA_DEPTH} are accepted",
            feature="depth",
            path=where,
        )
    constraint = Constraint(ConstraintKind.JSON_SCHEMA, text, name)
    _check(constraint, schema)
    return constraint


def json_object_constraint() -> Constraint:
    return Constraint(ConstraintKind.JSON_OBJECT, "")


def regex_constraint(pattern: str) -> Constraint:
    if not isinstance(pattern, str) or not pattern:
        raise UnsupportedConstraint("the regex must be a non-empty string")
    if len(pattern) > MAX_REGEX_CHARS:
        raise UnsupportedConstraint(f"the regex is longer than {MAX_REGEX_CHARS} characters", feature="size")
    constraint = Constraint(ConstraintKind.REGEX, pattern)
    _check(constraint, None)
    return constraint


def choice_constraint(choices: list[str] | tuple[str, ...]) -> Constraint:
    if not isinstance(choices, (list, tuple)) or not choices:
        raise UnsupportedConstraint("choices must be a non-empty list of strings")
    if len(choices) > MAX_CHOICES:
        raise UnsupportedConstraint(f"at most {MAX_CHOICES} choices are accepted", feature="size")
    if any(not isinstance(c, str) or not c or len(c) > MAX_CHOICE_CHARS for c in choices):
        raise UnsupportedConstraint(f"each choice must be a string of 1 to {MAX_CHOICE_CHARS} characters")
    return Constraint(ConstraintKind.CHOICE, json.dumps(list(choices), ensure_ascii=False))


# -- checks ------------------------------------------------------------------------------------
def _check(constraint: Constraint, schema: dict[str, Any] | None) -> None:
    """Compile without a tokenizer (fast, no model needed) and turn an error into a precise one."""
    import llguidance

    is_error, messages = llguidance.LLMatcher.validate_grammar_with_warnings(constraint.grammar())
    if not is_error:
        return
    message = messages[0] if messages else "the grammar compiler refused it"
    if schema is None:
        raise UnsupportedConstraint(f"the regex is not supported: {_last_line(message)}", feature="regex")
    if message.startswith("Unimplemented keys:"):
        features = json.loads(message.removeprefix("Unimplemented keys:").strip())
        for path, key in _schema_keys(schema, "#"):
            if key in features:
                raise UnsupportedConstraint(
                    f"the JSON schema keyword '{key}' at {path} is not supported by constrained decoding",
                    feature=key,
                    path=path,
                )
    for path, key, value, _depth in _schema_items(schema, "#"):
        if key == "pattern" and isinstance(value, str):
            ok, errors = llguidance.LLMatcher.validate_grammar_with_warnings(
                llguidance.LLMatcher.grammar_from_regex(value)
            )
            if ok:  # validate_grammar_with_warnings returns (is_error, ...)
                raise UnsupportedConstraint(
                    f"the pattern at {path}/pattern is not supported: {_last_line(errors[0])}",
                    feature="pattern",
                    path=f"{path}/pattern",
                )
        if key == "$ref" and isinstance(value, str) and not value.startswith("#"):
            raise UnsupportedConstraint(
                f"the $ref at {path} points outside the schema ({value}); only local refs (#/...) work",
                feature="$ref",
                path=path,
            )
    raise UnsupportedConstraint(f"the JSON schema is not supported: {_last_line(message)}", path="#")


def _last_line(message: str) -> str:
    lines = [line.strip() for line in message.splitlines() if line.strip()]
    for line in lines:
        if line.startswith("error:"):
            return line.removeprefix("error:").strip()
    return lines[0] if lines else message


def _schema_items(node: Any, path: str, depth: int = 1) -> Iterator[tuple[str, str, Any, int]]:
    """(path of the subschema, keyword, value, nesting depth) for every keyword of every subschema."""
    if isinstance(node, list):
        for index, item in enumerate(node):
            yield from _schema_items(item, f"{path}/{index}", depth)
        return
    if not isinstance(node, dict):
        return
    for key, value in node.items():
        yield path, key, value, depth
        pointer = f"{path}/{_escape(key)}"
        if key in _VALUE_KEYS:
            continue
        if key in _MAP_KEYS and isinstance(value, dict):
            for name, sub in value.items():
                yield from _schema_items(sub, f"{pointer}/{_escape(name)}", depth + 1)
        elif isinstance(value, (dict, list)):
            yield from _schema_items(value, pointer, depth + 1)


def _schema_keys(node: Any, path: str) -> Iterator[tuple[str, str]]:
    for where, key, _value, _depth in _schema_items(node, path):
        yield f"{where}/{_escape(key)}", key


def _deepest(schema: dict[str, Any]) -> tuple[int, str]:
    """(levels of nested subschemas, JSON pointer of the deepest one)."""
    best = (1, "#")
    for path, _key, _value, depth in _schema_items(schema, "#"):
        if depth > best[0]:
            best = (depth, path)
    return best


def _escape(part: Any) -> str:
    return str(part).replace("~", "~0").replace("/", "~1")
