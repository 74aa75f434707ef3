"""invoice jobs: the selected pages (all by default) through OCR and the layout extractor
(identity fields from the first page, totals from the last), the first page through the VLM
cross-check; the result is an Extraction awaiting review (vision.services.extractions)."""

from __future__ import annotations

from vision.generation import SpecImage, SpecMessage, SpecPart
from vision.models import JobStatus
from vision.runners.generation import generate, job_spec
from vision.runners.ocr import page_images
from vision.runners.types import JobOutcome, JobRunContext
from vision.services.extractions import extraction_create_from_invoice


def run_invoice(context: JobRunContext) -> JobOutcome:
    from vision.engine import FinishReason
    from vision.ocr.pipeline import ModelFailed, read_invoice_pages
    from vision.ocr.vlm import invoice_prompt

    job = context.job
    pages = page_images(job)
    number, path, sha256, _ = pages[0]
    cancelled = False

    def ask_model(_image, ocr) -> str:
        nonlocal cancelled
        parts = [SpecPart(image=SpecImage(path, sha256)), SpecPart(text=invoice_prompt(ocr))]
        output = generate(context, job_spec(job, [SpecMessage("user", parts)]))
        if output.finish_reason == FinishReason.CANCELLED:
            cancelled = True
            return ""
        if output.finish_reason in (FinishReason.ERROR, FinishReason.TIMEOUT):
            raise ModelFailed(output.error or output.finish_reason.value)
        return output.text

    reading = read_invoice_pages([image for *_, image in pages], ask_model=ask_model)
    if cancelled:
        return JobOutcome(status=JobStatus.CANCELLED, error="Cancelled.", error_code="cancelled")
    extraction = extraction_create_from_invoice(document=job.document, reading=reading, job=job, page=number)
    result = {"extraction_id": extraction.pk, **reading.to_dict()}
    return JobOutcome(
        status=JobStatus.SUCCEEDED,
        result=result,
        finish_reason="stop",
        timings={"ocr_s": round(sum(p.elapsed_s for p in reading.pages), 3)},
    )
