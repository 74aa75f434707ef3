"""The engine's contract: the parameters a caller hands the engine that the web process also builds
and checks without loading it. The sampling fields and the checkpoint's sampling defaults, the
per-task pixel budgets, the weight-format grammar and the default model are defined here once; the
output constraints are in `vision.engine.constraints`.

Plain Python, no torch: the web process imports this module (the settings take their defaults from
it, the /v1 parser and the job service build `SamplingParams`) while the engine's heavy modules
stay in the worker. `tests/docplatform/test_no_torch.py` holds that.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

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
