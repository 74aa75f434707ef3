"""Generation parameters the web side, the worker and the engine share: the sampling fields, the
per-task pixel budgets, the output constraints, the weight-format grammar and the physical-core
count (the default thread count), each defined once.

Plain Python: no Django, no torch, no import of `vision.engine`. The web process builds
`GenerationSpec`s from these without loading the engine, the settings take their pixel defaults
from here, and `vision.engine` uses the same `SamplingParams` class (re-exported there).
"""

from __future__ import annotations

import enum
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

# Pixel budgets per task. One merged image token covers 32x32 pixels (patch 16, merge 2), so
# max_pixels / 1024 is the most image tokens a request can cost. A chat photo is described well
# from ~640 tokens; a document page needs 8-10 pt text to stay legible, ~1,000 tokens for an A4
# page (about 120 dpi), while a native 150 dpi A4 scan would be ~2,100 tokens and ~100 s of vision
# tower in fp32 on two AVX2 cores. These are the defaults of the VISION_*_PIXELS settings, which
# the worker passes to the engine, and the engine's own defaults for plain-Python callers (CLI,
# benchmarks).
TOKEN_PIXELS = 32 * 32
DEFAULT_MIN_PIXELS = 64 * TOKEN_PIXELS
CHAT_MAX_PIXELS = 640 * TOKEN_PIXELS
DOCUMENT_MAX_PIXELS = 1000 * TOKEN_PIXELS
DOCUMENT_TASKS = frozenset({"ocr", "invoice", "extract"})


@dataclass(frozen=True)
class SamplingDefaults:
    """What a request that leaves a sampling field unset gets: the checkpoint's
    `generation_config.json`, as transformers' `generate` and vLLM do. The engine reads the file at
    load (`vision.engine.loader.sampling_defaults`) and applies it in `Engine.submit`: the web side
    never knows the model's defaults and passes unset fields through as None. Only keys present in
    the file count; a field it does not set keeps the neutral value (greedy when `do_sample` is
    absent). Qwen3-VL-2B-Instruct ships do_sample true, top_k 20, top_p 0.8, temperature 0.7."""

    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0  # 0: no top-k cut
    top_p: float = 1.0
    repetition_penalty: float = 1.0

    @classmethod
    def from_dict(cls, data: dict) -> SamplingDefaults:
        """From the parsed generation_config.json; unknown or malformed values keep the defaults."""
        kinds = {
            "do_sample": bool,
            "temperature": float,
            "top_k": int,
            "top_p": float,
            "repetition_penalty": float,
        }
        values = {}
        for name, kind in kinds.items():
            value = data.get(name)
            if isinstance(value, bool) != (kind is bool) or not isinstance(value, int | float):
                continue
            values[name] = kind(value)
        return replace(cls(), **values)


@dataclass(frozen=True)
class SamplingParams:
    """How to pick the answer's tokens: carried by `ChatRequest.sampling`, `GenerationSpec.sampling`
    and `EngineRequest.sampling` alike, so a new field is added here once."""

    max_tokens: int = 256
    # None = not set by the request: the engine fills it from the checkpoint's generation_config.json
    # (`SamplingDefaults`) in `Engine.submit`. Set temperature 0 for greedy.
    temperature: float | None = None  # 0 means greedy
    top_p: float | None = None  # nucleus over the (top-k) candidates; 1 = off
    top_k: int | None = None  # keep the k most likely tokens; 0 = off
    repetition_penalty: float | None = None  # transformers' CTRL-style penalty on seen tokens; 1 = off
    seed: int | None = None  # with temperature > 0, makes sampling repeatable
    stop: tuple[str, ...] = ()
    min_tokens: int = 0  # end-of-turn is suppressed until this many tokens are out
    ignore_eos: bool = False  # benchmarks force exact output lengths with random weights

    def resolved(self, defaults: SamplingDefaults) -> SamplingParams:
        """Every unset field filled from `defaults`; an explicit temperature wins over do_sample."""
        temperature = self.temperature
        if temperature is None:
            temperature = defaults.temperature if defaults.do_sample else 0.0
        return replace(
            self,
            temperature=temperature,
            top_p=defaults.top_p if self.top_p is None else self.top_p,
            top_k=defaults.top_k if self.top_k is None else self.top_k,
            repetition_penalty=(
                defaults.repetition_penalty if self.repetition_penalty is None else self.repetition_penalty
            ),
        )

    @property
    def greedy(self) -> bool:
        """Greedy for sure: temperature 0. An unset temperature may still mean sampling (the
        checkpoint's defaults decide), so it does not count as greedy here."""
        return self.temperature is not None and self.temperature <= 0.0

    @property
    def deterministic(self) -> bool:
        """Greedy, or sampling with a seed: the same input gives the same answer (answer cache)."""
        return self.greedy or self.seed is not None


# -- output constraints --------------------------------------------------------------------------
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


# The weight-format setting (VISION_DTYPE): one format for the whole model, or one per part. The
# settings check it at start-up (a bad deploy fails early, in the web process too) and the engine
# resolves it at load; both ask these functions.
WEIGHT_FORMATS: tuple[str, ...] = ("fp32", "bf16", "int8", "int4", "w8a8")
WEIGHT_FORMAT_PARTS: tuple[str, ...] = ("lm", "vision")


def weight_format_parts(setting: str) -> dict[str, str]:
    """Parse the weight-format setting: {"*": fmt} for one value ("auto", "int8", ...), else
    {part: fmt} for the parts given ("lm=int8,vision=bf16"). Raises ValueError naming the fault."""
    allowed = ("auto", *WEIGHT_FORMATS)
    text = (setting or "").strip().lower()
    if not text:
        raise ValueError(
            f"empty weight-format setting; expected one of {', '.join(allowed)} or 'lm=..,vision=..'"
        )
    if "=" not in text:
        if text not in allowed:
            raise ValueError(f"unknown weight format {setting!r}; expected one of {', '.join(allowed)}")
        return {"*": text}
    parts: dict[str, str] = {}
    for item in text.split(","):
        name, sep, value = (s.strip() for s in item.partition("="))
        if not sep or name not in WEIGHT_FORMAT_PARTS:
            raise ValueError(
                f"bad weight-format part {item.strip()!r} in {setting!r}; expected lm=<fmt> or vision=<fmt>"
            )
        if name in parts:
            raise ValueError(f"{name!r} given twice in weight-format setting {setting!r}")
        if value not in allowed:
            raise ValueError(
                f"unknown weight format {value!r} for {name} in {setting!r}; expected one of {', '.join(allowed)}"
            )
        parts[name] = value
    return parts


def resolve_formats(setting: str) -> tuple[str, str]:
    """The weight-format setting as (lm, vision); either may be "auto" (a part left out is)."""
    parts = weight_format_parts(setting)
    if "*" in parts:
        return parts["*"], parts["*"]
    return parts.get("lm", "auto"), parts.get("vision", "auto")


def physical_cores() -> int:
    """Physical cores this process may run on: the default engine thread count (hyper-threads
    share one core's matmul units, so the engine gains nothing from them). Distinct (package,
    core) pairs of the allowed CPUs in sysfs; the allowed CPU count where sysfs is missing."""
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    cores: set[tuple[str, str]] = set()
    for cpu in allowed:
        topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
        try:
            package = (topology / "physical_package_id").read_text().strip()
            core = (topology / "core_id").read_text().strip()
        except OSError:
            return max(len(allowed), 1)
        cores.add((package, core))
    return max(len(cores), 1)
