"""caption, vqa and chat jobs: one VLM generation over the job's first page (or its `pages`)."""

from __future__ import annotations

from django.conf import settings

from vision.engine.contract import SamplingParams
from vision.generation import GenerationSpec, SpecMessage, SpecPart
from vision.models import Job, JobStatus, JobTask
from vision.runners.types import EngineUnavailable, JobOutcome, JobRunContext

# The instruction of a caption job; vqa and chat jobs carry the user's text instead.
TASK_PROMPTS = {JobTask.CAPTION: "Describe this image."}


def job_generation_spec(job: Job) -> GenerationSpec:
    """The GenerationSpec of a job: its page images, then the task's instruction."""
    options = job.options or {}
    parts: list[SpecPart] = []
    if job.document is not None:
        pages = options.get("pages") or [1]
        parts.extend(SpecPart(image=image) for image in job.document.spec_images(pages))
    prompt = options.get("question") or options.get("message") or TASK_PROMPTS[JobTask(job.task)]
    parts.append(SpecPart(text=prompt))
    return job_spec(job, [SpecMessage(role="user", parts=parts)])


def job_spec(job: Job, messages: list[SpecMessage]) -> GenerationSpec:
    """A job's generation: its request id, token budget and deadline, no prefix caching."""
    return GenerationSpec(
        request_id=job.request_id,
        messages=messages,
        task=job.task,
        # Document jobs are extraction (OCR, captions, invoice fields): greedy, so the same page
        # gives the same answer; chat requests follow the model's generation_config.json instead.
        sampling=SamplingParams(max_tokens=job.max_tokens, temperature=0.0),
        deadline_s=float(settings.VISION_JOB_TIME_LIMIT),
        # A job is one-off: keeping its KV would only evict chats' reusable prefixes.
        use_prefix_cache=False,
    )


def generate(context: JobRunContext, spec: GenerationSpec):
    """Run `spec` on the worker's engine, streamed like any generation (progress and cancel
    work, best effort: Redis away drops stream events, not the job); a full engine queue raises
    EngineUnavailable, so the task retries later."""
    from vision.engine import EngineOverloaded
    from vision.inference import generate_to_stream

    try:
        return generate_to_stream(
            context.engine,
            spec,
            context.redis,
            worker=context.worker,
            on_delta=context.on_progress,
            best_effort=True,  # a job's stream is progress only; the stored result is what counts
        )
    except EngineOverloaded as exc:
        raise EngineUnavailable(str(exc)) from exc


def run_generation(context: JobRunContext) -> JobOutcome:
    from vision.engine import FinishReason
    from vision.inference import output_payload

    spec = job_generation_spec(context.job)
    output = generate(context, spec)
    payload = output_payload(output)
    outcome = JobOutcome(
        status=JobStatus.SUCCEEDED,
        text=output.text,
        finish_reason=output.finish_reason.value,
        usage=payload["usage"],
        timings=payload["timings"],
    )
    if output.finish_reason == FinishReason.CANCELLED:
        outcome.status, outcome.error, outcome.error_code = JobStatus.CANCELLED, "Cancelled.", "cancelled"
    elif output.finish_reason == FinishReason.TIMEOUT:
        outcome.status, outcome.error_code = JobStatus.FAILED, "deadline_exceeded"
        outcome.error = f"The job did not finish within its deadline of {spec.deadline_s:.0f} s."
    elif output.finish_reason == FinishReason.ERROR:
        outcome.status, outcome.error_code = JobStatus.FAILED, "generation_failed"
        outcome.error = f"The model could not run this job: {output.error}"
    return outcome
