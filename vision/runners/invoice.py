"""invoice jobs: the selected pages (all by default) through OCR and the layout extractor
(identity fields from the first page, totals from the last), the first page through the VLM
cross-check; the result is an Extraction awaiting review (vision.services.extractions).

Invoice jobs need only OCR. When this worker's VLM is not ready (VISION_MODEL=none, a model that
failed to load or is still loading), the layout extractor's reading stands alone and carries the
flag `vlm_unavailable` with the reason, so the reviewer knows no model checked the fields."""

from __future__ import annotations

from vision.generation import SpecImage, SpecMessage, SpecPart
from vision.models import JobStatus
from vision.runners.generation import generate, job_spec
from vision.runners.ocr import page_images, page_readings
from vision.runners.types import JobOutcome, JobRunContext
from vision.services.extractions import extraction_create_from_invoice

# The flag an extraction read without the VLM cross-check carries (shown on the review pages).
VLM_UNAVAILABLE = "vlm_unavailable"


def run_invoice(context: JobRunContext) -> JobOutcome:
    from vision.engine import FinishReason
    from vision.models import DocumentKind
    from vision.ocr.invoice_types import Flag
    from vision.ocr.pipeline import ModelFailed, read_invoice_pages
    from vision.ocr.vlm import invoice_constraint, invoice_prompt
    from vision.runners.einvoice import run_einvoice, with_embedded_xml

    job = context.job
    if job.document.kind == DocumentKind.XML:  # an e-invoice's XML: no page (vision.runners.einvoice)
        return run_einvoice(context)
    pages = page_images(job)
    number, path, sha256, _ = pages[0]
    cancelled = False

    def ask_model(_image, ocr) -> str:
        nonlocal cancelled
        parts = [SpecPart(image=SpecImage(path, sha256)), SpecPart(text=invoice_prompt(ocr))]
        spec = job_spec(job, [SpecMessage("user", parts)])
        spec.constraint = invoice_constraint().to_dict()  # the answer is a valid invoice object
        output = generate(context, spec)
        if output.finish_reason == FinishReason.CANCELLED:
            cancelled = True
            return ""
        if output.finish_reason in (FinishReason.ERROR, FinishReason.TIMEOUT):
            raise ModelFailed(output.error or output.finish_reason.value)
        return output.text

    images = [image for *_, image in pages]
    readings = page_readings(job, pages)  # a PDF's text layer where it is good, else OCR
    if context.engine is None:
        reason = context.capabilities.vlm.get("reason") or "not ready"
        reading = read_invoice_pages(images, ask_model=None, readings=readings)
        reading.extraction.flags.append(
            Flag(
                "*",
                VLM_UNAVAILABLE,
                f"read by the layout extractor alone: the vision-language model was unavailable ({reason})",
            )
        )
    else:
        reading = read_invoice_pages(images, ask_model=ask_model, readings=readings)
    if cancelled:
        return JobOutcome(status=JobStatus.CANCELLED, error="Cancelled.", error_code="cancelled")
    reading.extraction = with_embedded_xml(job, reading.extraction)  # Factur-X / ZUGFeRD: the XML's
    extraction = extraction_create_from_invoice(document=job.document, reading=reading, job=job, page=number)
    result = {"extraction_id": extraction.pk, **reading.to_dict()}
    return JobOutcome(
        status=JobStatus.SUCCEEDED,
        result=result,
        finish_reason="stop",
        timings={"ocr_s": round(sum(p.elapsed_s for p in reading.pages), 3)},
    )
