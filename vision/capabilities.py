"""What the deployment can run now, from the workers' heartbeats: the one place that knows which
task needs which capability, which queue carries it, and how the fleet's capabilities add up.

Asked by `/readyz`, the portal (dashboard, upload page), job submission (a VLM job nobody can run
is refused with 503 `engine_unavailable`), `/v1` admission and the job runner. No Django, no
torch: the web process imports it.
"""

from __future__ import annotations

from dataclasses import dataclass

from vision.heartbeat import (
    CAPABILITIES,
    LOADING,
    OCR,
    OCR_QUEUE,
    READY,
    SHARED_QUEUE,
    UNAVAILABLE,
    VLM,
    WorkerHeartbeat,
    capability,
)

# The capability each task needs. Invoice jobs need only OCR: the layout extractor reads the
# fields, and the VLM cross-check is added when a worker has the VLM ready (else the extraction
# carries the flag `vlm_unavailable`).
TASK_NEEDS: dict[str, str] = {
    "ocr": OCR,
    "invoice": OCR,
    "caption": VLM,
    "vqa": VLM,
    "chat": VLM,
    "extract": VLM,  # OCR, then a generation constrained to the document type's schema
}
# The queue that carries work needing a capability (docs/architecture.md, "Queues").
CAPABILITY_QUEUE: dict[str, str] = {OCR: OCR_QUEUE, VLM: SHARED_QUEUE}

NO_WORKER_REASON = "no worker is online"
# The value of VISION_MODEL that runs an OCR-only deployment: no model, no download, no tuning.
NO_MODEL = "none"


def model_disabled_reason(*, engine: str, model: str) -> str | None:
    """Why a process configured with VISION_ENGINE=`engine`, VISION_MODEL=`model` has no VLM, or
    None when it loads a model (the worker's heartbeat and `manage.py extract` say the same)."""
    if engine == "off":
        return "VISION_ENGINE=off: this worker loads no model"
    if model.strip().lower() == NO_MODEL:
        return "VISION_MODEL=none: an OCR-only deployment, no model is loaded"
    return None


def task_queue(task: str) -> str:
    """The Celery queue of a job of this task."""
    return CAPABILITY_QUEUE[TASK_NEEDS[task]]


@dataclass(frozen=True)
class CapabilitySummary:
    """One capability over all live workers."""

    name: str  # OCR | VLM
    state: str  # READY (some worker has it), LOADING (none yet, some loading), UNAVAILABLE
    ready_workers: int
    loading_workers: int
    reason: str  # why it is not ready: the workers' reasons, "; "-joined ("" when ready)

    @property
    def ready(self) -> bool:
        return self.state == READY

    @property
    def coming(self) -> bool:
        """Ready, or loading on some worker: work queued for it will run."""
        return self.state in (READY, LOADING)

    def to_dict(self) -> dict:
        return {
            "state": self.state,
            "ready_workers": self.ready_workers,
            "loading_workers": self.loading_workers,
            "reason": self.reason,
        }


def capability_summary(beats: list[WorkerHeartbeat], name: str) -> CapabilitySummary:
    statuses = [capability(beat, name) for beat in beats]
    ready = sum(1 for s in statuses if s.get("state") == READY)
    loading = sum(1 for s in statuses if s.get("state") == LOADING)
    if ready:
        state, reason = READY, ""
    else:
        state = LOADING if loading else UNAVAILABLE
        reasons = list(dict.fromkeys(str(s.get("reason") or s.get("state") or "?") for s in statuses))
        reason = "; ".join(reasons) if reasons else NO_WORKER_REASON
    return CapabilitySummary(name, state, ready, loading, reason)


def capabilities_summary(beats: list[WorkerHeartbeat]) -> dict[str, CapabilitySummary]:
    return {name: capability_summary(beats, name) for name in CAPABILITIES}


# The deployment as a whole: everything runs, only OCR work runs, or nothing runs.
OK, DEGRADED = "ok", "degraded"


def deployment_status(summary: dict[str, CapabilitySummary]) -> str:
    """OK when every capability is ready, DEGRADED when some are (an OCR-only deployment:
    OCR and invoice jobs run, chat and captions do not), UNAVAILABLE when none is."""
    ready = [s.ready for s in summary.values()]
    if all(ready):
        return OK
    return DEGRADED if any(ready) else UNAVAILABLE


def summary_text(summary: dict[str, CapabilitySummary]) -> str:
    """One line for operators, e.g. "OCR ready, VLM unavailable: VISION_MODEL=none (…)"."""
    parts = []
    for name in CAPABILITIES:
        item = summary[name]
        text = f"{name.upper()} {item.state}"
        if not item.ready and item.reason:
            text += f": {item.reason}"
        parts.append(text)
    return ", ".join(parts)


@dataclass(frozen=True)
class TaskAvailability:
    """Can a job of this task run now, and if not, why (for the portal)."""

    task: str
    needs: str  # OCR | VLM
    state: str  # the state of the capability it needs
    reason: str  # why it cannot run yet ("" when it can)
    partial: bool = False  # runs, but without an optional part (invoice without the VLM check)

    @property
    def runs(self) -> bool:
        return self.state == READY


def tasks_availability(summary: dict[str, CapabilitySummary], tasks: list[str]) -> list[TaskAvailability]:
    out = []
    for task in tasks:
        needs = TASK_NEEDS[task]
        item = summary[needs]
        partial = task == "invoice" and item.ready and not summary[VLM].ready
        reason = summary[VLM].reason if partial else item.reason
        out.append(TaskAvailability(task, needs, item.state, reason, partial))
    return out


def vlm_refusal(summary: CapabilitySummary) -> tuple[str, int] | None:
    """Why work that needs the VLM is refused now, with the Retry-After seconds, or None when a
    worker has it ready. Loading: retry soon; unavailable everywhere: retry much later."""
    if summary.ready:
        return None
    if summary.state == LOADING:
        return (
            f"The vision-language model is still loading on {summary.loading_workers} worker(s); "
            "retry shortly.",
            10,
        )
    return f"No worker can run the vision-language model: {summary.reason}.", 60
