"""DocPlatform's vision engine: Qwen3-VL on CPU with continuous batching, prefix KV reuse,
vision-feature caching and streaming. Plain Python: no Django anywhere below this package.

Importing this package is cheap; torch and transformers load when an Engine is built.
"""

from .config import DEFAULT_MODEL, EngineConfig
from .errors import EngineError, EngineNotReady, EngineOverloaded, InvalidRequest, RequestTooLong
from .types import (
    ChatMessage,
    Constraint,
    EngineRequest,
    EngineStatus,
    FinishReason,
    ImagePart,
    PixelBudget,
    RequestOutput,
    SamplingParams,
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
