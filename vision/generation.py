"""What the web side asks a worker to generate: a small JSON-able spec with file references.

The web process validates a request (OpenAI body, job, portal chat), stores any images as files,
and hands the worker a `GenerationSpec`: ids, text and paths, never image bytes or model objects.
The worker turns it into an `EngineRequest` (vision/inference.py). This module imports neither
torch nor the engine, so the web process can build specs.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

from vision.engine.contract import SamplingParams


@dataclass
class SpecImage:
    path: str  # a stored media path (vision/media.py), relative to the storage: the stored upload
    sha256: str  # of the stored bytes; the engine's caches key on it


@dataclass
class SpecPart:
    text: str | None = None
    image: SpecImage | None = None


@dataclass
class SpecMessage:
    role: str  # system | user | assistant
    parts: list[SpecPart]


@dataclass
class GenerationSpec:
    request_id: str
    messages: list[SpecMessage]
    task: str = "chat"  # picks the default pixel budget
    sampling: SamplingParams = field(default_factory=lambda: SamplingParams(max_tokens=512))
    max_pixels: int | None = None  # override of the task's pixel budget
    deadline_s: float = 600.0  # the engine stops the request this long after the worker takes it
    use_prefix_cache: bool = True
    # The answer must match this (vision.engine.constraints.Constraint.to_dict()): JSON schema, JSON object,
    # regex or choice, enforced by the engine token by token. None: free text.
    constraint: dict[str, str] | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> GenerationSpec:
        data = json.loads(raw)
        messages = [
            SpecMessage(
                role=m["role"],
                parts=[
                    SpecPart(text=p.get("text"), image=SpecImage(**p["image"]) if p.get("image") else None)
                    for p in m["parts"]
                ],
            )
            for m in data.pop("messages")
        ]
        sampling = data.pop("sampling")
        sampling = SamplingParams(**{**sampling, "stop": tuple(sampling["stop"])})
        return cls(messages=messages, sampling=sampling, **data)

    @property
    def image_count(self) -> int:
        return sum(p.image is not None for m in self.messages for p in m.parts)
