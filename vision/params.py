"""Generation parameters the web side, the worker and the engine share: the sampling fields and the
per-task pixel budgets, each defined once.

Plain Python: no Django, no torch, no import of `vision.engine`. The web process builds
`GenerationSpec`s from these without loading the engine, the settings take their pixel defaults
from here, and `vision.engine` uses the same `SamplingParams` class (re-exported there).
"""

from __future__ import annotations

from dataclasses import dataclass

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
DOCUMENT_TASKS = frozenset({"ocr", "invoice"})


@dataclass(frozen=True)
class SamplingParams:
    """How to pick the answer's tokens: carried by `ChatRequest.sampling`, `GenerationSpec.sampling`
    and `EngineRequest.sampling` alike, so a new field is added here once."""

    max_tokens: int = 256
    temperature: float = 0.0  # 0 means greedy
    top_p: float = 1.0
    seed: int | None = None  # with temperature > 0, makes sampling repeatable
    stop: tuple[str, ...] = ()
    min_tokens: int = 0  # end-of-turn is suppressed until this many tokens are out
    ignore_eos: bool = False  # benchmarks force exact output lengths with random weights

    @property
    def greedy(self) -> bool:
        return self.temperature <= 0.0

    @property
    def deterministic(self) -> bool:
        """Greedy, or sampling with a seed: the same input gives the same answer (answer cache)."""
        return self.greedy or self.seed is not None
