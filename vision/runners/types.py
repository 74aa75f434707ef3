"""What a job runner gets and returns."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from vision.heartbeat import LOADING, CapabilityStatus
from vision.models import Job, JobStatus


class EngineUnavailable(Exception):
    """This worker's engine cannot take work now (still loading, off, or overloaded); the task
    retries later. `permanent` marks a failed load: the job fails at once with `reason`."""

    def __init__(self, reason: str, *, permanent: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.permanent = permanent


@dataclass
class JobOutcome:
    """What a runner returns; `job_run` stores it if the claim still holds."""

    status: JobStatus
    text: str = ""
    result: Any = None  # JSON-able structured result, or None
    finish_reason: str = ""
    error: str = ""
    error_code: str = ""
    usage: dict[str, int] = field(default_factory=dict)  # prompt/completion/image/cached tokens
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkerCapabilities:
    """What this worker process could run with when the job's message arrived: handed to the
    run loop by the task (`vision.tasks`, from `vision.worker`) and on to each runner."""

    engine: Any = None  # the vision engine when it is ready, else None
    # the engine's state ("starting", "loading", "ready", "error", "off", ...) and error, as its
    # heartbeat reports it: a VLM job's refusal says why
    engine_status: dict[str, Any] = field(default_factory=dict)
    ocr: CapabilityStatus = field(default_factory=lambda: CapabilityStatus(state=LOADING, reason=""))
    vlm: CapabilityStatus = field(default_factory=lambda: CapabilityStatus(state=LOADING, reason=""))


@dataclass
class JobRunContext:
    """What a runner gets: the claimed job and the worker's means to run it."""

    job: Job
    # vision.engine.Engine (worker only; never imported by web code); None for OCR and invoice
    # jobs on a worker whose VLM is not ready
    engine: Any
    redis: Any  # sync redis client for the token stream
    worker: str
    on_progress: Callable[[str, int], bool]  # (text, tokens so far) -> False: stop, claim lost
    capabilities: WorkerCapabilities = field(default_factory=WorkerCapabilities)


Runner = Callable[[JobRunContext], JobOutcome]
