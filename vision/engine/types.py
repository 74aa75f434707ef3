"""Plain data types that cross the engine boundary: the request and its messages, the streamed
deltas, the output and the engine's status.

Everything the worker, the CLI and the benchmarks hand to the engine, or get back from it, is one of
these dataclasses or a parameter type of the contract (`contract`, `constraints`): no dicts with
magic keys, no Django, no torch tensors.
"""

from __future__ import annotations

import enum
import hashlib
import io
from dataclasses import asdict, dataclass, field

from PIL import Image

from .constraints import Constraint
from .contract import PixelBudget, SamplingParams


class FinishReason(enum.StrEnum):
    """Why a request stopped; values are what the OpenAI API reports where it has a word for it."""

    STOP = "stop"  # end-of-turn token or a stop string
    LENGTH = "length"  # max_tokens reached
    CANCELLED = "cancelled"  # the caller cancelled (client went away, job cancelled)
    TIMEOUT = "timeout"  # the request's own deadline passed (the threads pool has no time limits)
    ERROR = "error"  # this request failed; the others in its batch carry on


@dataclass(frozen=True)
class ImagePart:
    """One image in a message, already decoded. `sha256` identifies the pixels for the caches."""

    image: Image.Image
    sha256: str

    @classmethod
    def from_bytes(cls, data: bytes) -> ImagePart:
        image = Image.open(io.BytesIO(data))
        image.load()
        return cls(image=image, sha256=hashlib.sha256(data).hexdigest())

    @classmethod
    def from_image(cls, image: Image.Image) -> ImagePart:
        rgb = image.convert("RGB")
        digest = hashlib.sha256(f"{rgb.size}".encode() + rgb.tobytes()).hexdigest()
        return cls(image=rgb, sha256=digest)


@dataclass(frozen=True)
class TextPart:
    text: str


@dataclass(frozen=True)
class ChatMessage:
    role: str  # "system" | "user" | "assistant"
    content: tuple[TextPart | ImagePart, ...]

    @classmethod
    def text(cls, role: str, text: str) -> ChatMessage:
        return cls(role=role, content=(TextPart(text),))


@dataclass
class EngineRequest:
    request_id: str
    messages: list[ChatMessage]
    sampling: SamplingParams = field(default_factory=SamplingParams)
    task: str = "chat"
    pixels: PixelBudget | None = None  # None: the task's default budget
    deadline: float | None = None  # time.monotonic() after which the request is stopped
    use_prefix_cache: bool = True
    # The answer must match this (JSON schema, JSON object, regex, choice): the logits are masked
    # at every step so it does by construction (vision/engine/grammar.py). None: free text.
    constraint: Constraint | None = None

    def anon_repr(self) -> str:
        """For logs: ids and counts, never prompt text."""
        images = sum(isinstance(p, ImagePart) for m in self.messages for p in m.content)
        kind = self.constraint.kind.value if self.constraint else None
        return (
            f"EngineRequest(id={self.request_id}, task={self.task}, messages={len(self.messages)}, "
            f"images={images}, constraint={kind})"
        )


@dataclass
class Usage:
    prompt_tokens: int = 0
    image_tokens: int = 0  # part of prompt_tokens
    completion_tokens: int = 0
    cached_tokens: int = 0  # prompt tokens whose KV came from the prefix cache

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Timings:
    queue_s: float = 0.0  # submit -> first work on it
    vision_s: float = 0.0  # vision tower, summed over its pieces
    prefill_s: float = 0.0  # language model over the prompt, summed over its chunks
    decode_s: float = 0.0  # first token -> last token
    first_token_s: float = 0.0  # submit -> first token
    total_s: float = 0.0


@dataclass
class StreamDelta:
    """One event of a request's stream. The last one has `finished` set and carries the totals."""

    text: str
    token_ids: tuple[int, ...] = ()
    finished: bool = False
    finish_reason: FinishReason | None = None
    error: str | None = None
    usage: Usage | None = None
    timings: Timings | None = None


@dataclass
class RequestOutput:
    request_id: str
    text: str
    token_ids: list[int]
    finish_reason: FinishReason
    usage: Usage
    timings: Timings
    error: str | None = None

    def to_dict(self) -> dict:
        data = asdict(self)
        data["finish_reason"] = self.finish_reason.value
        return data


@dataclass
class FormatVerdict:
    """What `auto` decided about number formats and on what evidence (autotune.FormatChoice in
    plain data): shown by the engine status, so the worker heartbeat and /readyz can show it."""

    lm: str  # language model + lm_head weights
    vision: str  # vision tower weights
    activations: str  # activations and KV cache of a quantized language model: "bf16" or "fp32"
    measured_at: str  # UTC ISO time of the measurement (a cached verdict keeps its own)
    from_cache: bool  # read from the per-CPU cache file rather than measured at this start
    calm: bool  # the machine was quiet while measuring (busy verdicts are used but not cached)
    source: str  # "synthetic" shapes, or "weights of <model>"
    load: dict = field(default_factory=dict)  # loadavg_1m, others_cpu, steal, seconds
    decode_token_s: dict[str, float] = field(default_factory=dict)  # format -> s/token at batch 1
    decode8_step_s: dict[str, float] = field(default_factory=dict)  # format -> s per batch-8 step
    prefill_token_s: dict[str, float] = field(default_factory=dict)  # format -> s per prompt token
    vision_gemm_s: dict[str, float] = field(default_factory=dict)  # format -> s, vision MLP
    score_s: dict[str, float] = field(default_factory=dict)  # format -> s for the workload it minimises
    activation_probe_s: dict[str, float] = field(default_factory=dict)  # "fp32"/"bf16" -> s
    cpu: str = ""
    threads: int = 0


@dataclass
class EngineStatus:
    state: str  # "stopped" | "loading" | "ready" | "error"
    model: str
    formats: dict[str, str] = field(default_factory=dict)  # {"lm": "int8", "vision": "bf16"}
    format_timings: dict = field(default_factory=dict)  # what `auto` measured, for /readyz and logs
    format_verdict: FormatVerdict | None = None  # `auto`'s verdict with its evidence and timestamp
    error: str | None = None
    threads: int = 0
    running: int = 0
    waiting: int = 0
    load_s: float = 0.0
    prefix_cache: dict = field(default_factory=dict)
    vision_cache: dict = field(default_factory=dict)  # {"entries", "mb", "max_mb", "hits", "misses"}

    def to_dict(self) -> dict:
        return asdict(self)
