"""The engine's contract: the parameters a caller hands the engine that the web process also builds
and checks without loading it. The sampling fields and the checkpoint's sampling defaults, the
per-task pixel budgets, the weight-format grammar and the default model are defined here once; the
output constraints are in `vision.engine.constraints`.

Plain Python, no torch: the web process imports this module (the settings take their defaults from
it, the /v1 parser and the job service build `SamplingParams`) while the engine's heavy modules
stay in the worker. `tests/docplatform/test_no_torch.py` holds that.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

# The model the engine loads when the caller names none (the VISION_MODEL setting's default).
DEFAULT_MODEL = "Qwen/Qwen3-VL-2B-Instruct"

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
class PixelBudget:
    min_pixels: int
    max_pixels: int

    @classmethod
    def for_task(
        cls,
        task: str,
        *,
        min_pixels: int = DEFAULT_MIN_PIXELS,
        chat_max: int = CHAT_MAX_PIXELS,
        document_max: int = DOCUMENT_MAX_PIXELS,
    ) -> PixelBudget:
        """Pages (ocr, invoice) get the document budget; photos, charts and chat the chat one."""
        max_pixels = document_max if task in DOCUMENT_TASKS else chat_max
        return cls(min(min_pixels, max_pixels), max_pixels)


# Bounds of the sampling fields, checked by `SamplingParams` itself: every caller (the /v1 parser,
# the job service, the worker reading a spec, the engine's own callers) gets the same answer and
# the same message. They are OpenAI's where it has one (temperature, stop) and vLLM's otherwise.
MAX_TEMPERATURE = 2.0
MAX_STOP_SEQUENCES = 4
MAX_STOP_LENGTH = 256  # characters per stop sequence
SEED_RANGE = (-(2**63), 2**64)  # a signed or unsigned 64-bit integer


class InvalidSampling(ValueError):
    """A sampling field out of its bounds; `field` names it. Raised when a `SamplingParams` is
    built, so a bad request never reaches the engine's queue."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(name: str, value: Any, low: float, high: float, *, low_open: bool = False) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidSampling(name, f"{name} must be a number.")
    if value > high or value < low or (low_open and value <= low):
        bracket = "(" if low_open else "["
        raise InvalidSampling(name, f"{name} must be in {bracket}{low:g}, {high:g}], got {value}.")
    return float(value)


def _temperature(value: Any) -> float | None:
    return _number("temperature", value, 0.0, MAX_TEMPERATURE)


def _top_p(value: Any) -> float | None:
    return _number("top_p", value, 0.0, 1.0, low_open=True)


def _top_k(value: Any) -> int | None:
    """-1 and 0 both turn the cut off (vLLM's convention); kept as 0."""
    if value is None:
        return None
    if not _is_int(value) or value < -1:
        raise InvalidSampling("top_k", "top_k must be an integer >= -1 (-1 or 0: no top-k cut).")
    return max(0, value)


def _repetition_penalty(value: Any) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise InvalidSampling(
            "repetition_penalty", f"repetition_penalty must be a number > 0, got {value!r}."
        )
    return float(value)


def _seed(value: Any) -> int | None:
    if value is None:
        return None
    if not _is_int(value) or not SEED_RANGE[0] <= value < SEED_RANGE[1]:
        raise InvalidSampling("seed", "seed must be a 64-bit integer.")
    return value


def _stop(value: Any) -> tuple[str, ...]:
    """A string or a list of strings, kept as a tuple."""
    if value is None:
        return ()
    items = (value,) if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not all(isinstance(s, str) for s in items):
        raise InvalidSampling("stop", "stop must be a string or a list of strings.")
    if len(items) > MAX_STOP_SEQUENCES:
        raise InvalidSampling("stop", f"stop takes at most {MAX_STOP_SEQUENCES} sequences.")
    if any(not s or len(s) > MAX_STOP_LENGTH for s in items):
        raise InvalidSampling("stop", f"Each stop sequence must be 1 to {MAX_STOP_LENGTH} characters.")
    return tuple(items)


@dataclass(frozen=True)
class SamplingDefaults:
    """What a request that leaves a sampling field unset gets: the checkpoint's
    `generation_config.json`, as transformers' `generate` and vLLM do. The engine reads the file at
    load (`vision.engine.pretrained.sampling_defaults`) and applies it in `Engine.submit`: the web side
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
        checks = {
            "temperature": _temperature,
            "top_k": _top_k,
            "top_p": _top_p,
            "repetition_penalty": _repetition_penalty,
        }
        values = {}
        for name, kind in kinds.items():
            value = data.get(name)
            if isinstance(value, bool) != (kind is bool) or not isinstance(value, int | float):
                continue
            if name in checks:
                try:  # out of SamplingParams' bounds: as malformed
                    checks[name](kind(value))
                except InvalidSampling:
                    continue
            values[name] = kind(value)
        return replace(cls(), **values)


@dataclass(frozen=True)
class SamplingParams:
    """How to pick the answer's tokens: carried by `ChatRequest.sampling`, `GenerationSpec.sampling`
    and `EngineRequest.sampling` alike, so a new field is added here once. Checks its own bounds
    when built (`InvalidSampling`), so an instance is always valid and nobody checks it again."""

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

    def __post_init__(self) -> None:
        """Check every field against its bounds (InvalidSampling naming the first bad one) and
        normalise: numbers to float, -1 top_k to 0, a stop string or list to a tuple."""
        if not _is_int(self.max_tokens) or self.max_tokens < 1:
            raise InvalidSampling(
                "max_tokens", f"max_tokens must be an integer >= 1, got {self.max_tokens!r}."
            )
        checked = {
            "temperature": _temperature(self.temperature),
            "top_p": _top_p(self.top_p),
            "top_k": _top_k(self.top_k),
            "repetition_penalty": _repetition_penalty(self.repetition_penalty),
            "seed": _seed(self.seed),
            "stop": _stop(self.stop),
        }
        if not _is_int(self.min_tokens) or not 0 <= self.min_tokens <= self.max_tokens:
            raise InvalidSampling(
                "min_tokens", f"min_tokens must be an integer between 0 and max_tokens ({self.max_tokens})."
            )
        if not isinstance(self.ignore_eos, bool):
            raise InvalidSampling("ignore_eos", "ignore_eos must be a boolean.")
        for name, value in checked.items():
            object.__setattr__(self, name, value)  # frozen: normalised in place, once

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
