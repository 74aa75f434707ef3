"""The meaning of a chat-completion request, parsed and bounded, free of HTTP and of the engine."""

from __future__ import annotations

from dataclasses import dataclass, field

from vision.engine.constraints import Constraint
from vision.engine.contract import SamplingParams

ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class InputPart:
    text: str | None = None
    image_url: str | None = None  # as sent: data: or http(s) URL; resolved to a Document later


@dataclass(frozen=True)
class InputMessage:
    role: str  # one of ROLES ("developer" is folded into "system")
    parts: tuple[InputPart, ...]


@dataclass(frozen=True)
class ResponseFormat:
    type: str = "text"  # text | json_object | json_schema
    schema: dict | None = None  # json_schema only: the JSON Schema the answer must satisfy
    name: str = ""
    strict: bool = (
        False  # accepted as OpenAI has it; the answer is constrained to the whole schema either way
    )

    @property
    def wants_json(self) -> bool:
        return self.type in ("json_object", "json_schema")


@dataclass(frozen=True)
class ChatRequest:
    model: str  # the id the client asked for (VISION_MODEL or its alias)
    messages: tuple[InputMessage, ...]
    # Unset temperature/top_p stay None: the engine applies the model's generation_config.json
    # (Qwen3-VL samples at 0.7), so only seeded or greedy (temperature 0) requests are cached.
    # min_tokens and ignore_eos are vLLM-style extensions (benchmarks, load tests): they force
    # exact output lengths on random weights.
    sampling: SamplingParams
    stream: bool = False
    include_usage: bool = False  # stream_options.include_usage: a last chunk with usage
    response_format: ResponseFormat = field(default_factory=ResponseFormat)
    # What the answer must match, enforced while it is generated: from response_format (json_object,
    # json_schema) or the vLLM-style guided_choice / guided_regex. None: free text.
    constraint: Constraint | None = None
    conversation_id: str | None = None  # explicit id: header, metadata.conversation_id or `user`

    @property
    def deterministic(self) -> bool:
        """Greedy, or sampling with a seed: the same input gives the same answer (answer cache)."""
        return self.sampling.deterministic

    @property
    def image_count(self) -> int:
        return sum(p.image_url is not None for m in self.messages for p in m.parts)
