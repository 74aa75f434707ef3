"""DocPlatform's vision engine: Qwen3-VL on CPU with continuous batching, prefix KV reuse,
vision-feature caching and streaming. Plain Python: no Django anywhere below this package.

Importing this package is cheap (no torch, no transformers: they load when an Engine is built), so
the web process imports its contract (`vision.engine.contract`, `vision.engine.constraints`) and
its plain types freely.
"""

from .config import EngineConfig
from .constraints import Constraint
from .contract import DEFAULT_MODEL, PixelBudget, SamplingParams
from .errors import EngineError, EngineNotReady, EngineOverloaded, InvalidRequest, RequestTooLong
from .types import (
    ChatMessage,
    EngineRequest,
    EngineStatus,
    FinishReason,
    ImagePart,
    RequestOutput,
    StreamDelta,
    TextPart,
    Timings,
    Usage,
)


def __getattr__(name: str):
    # Engine pulls in torch and transformers; keep `from vision.engine import EngineConfig` light.
    if name in ("Engine", "RequestHandle"):
        from . import engine

        return getattr(engine, name)
    raise AttributeError(name)


__all__ = [
    "DEFAULT_MODEL",
    "ChatMessage",
    "Constraint",
    "Engine",
    "EngineConfig",
    "EngineError",
    "EngineNotReady",
    "EngineOverloaded",
    "EngineRequest",
    "EngineStatus",
    "FinishReason",
    "ImagePart",
    "InvalidRequest",
    "PixelBudget",
    "RequestHandle",
    "RequestOutput",
    "RequestTooLong",
    "SamplingParams",
    "StreamDelta",
    "TextPart",
    "Timings",
    "Usage",
]
