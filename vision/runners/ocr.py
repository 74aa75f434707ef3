"""ocr jobs: every selected page read, from the PDF's text layer where it has a trustworthy one,
else by the OCR engine (vision/ocr/textlayer.py); the result has the lines with boxes and, per
page, its `source` ("text_layer" | "ocr"). `page_readings` is shared with the invoice and extract
runners, so every task reads a born-digital page from its own text."""

from __future__ import annotations

import io
import logging
from typing import TYPE_CHECKING

from vision.faults import is_transient
from vision.media import media_read
from vision.models import DocumentKind, Job, JobStatus
from vision.runners.types import JobOutcome, JobRunContext

if TYPE_CHECKING:
    from PIL import Image

    from vision.ocr.lines import OcrResult

logger = logging.getLogger(__name__)


def page_images(job: Job) -> list[tuple[int, str, str, Image.Image]]:
    """(number, path, sha256, image) of the job's pages: `pages` option, or all."""
    from PIL import Image

    pages = job.document.pages.order_by("number")
    wanted = (job.options or {}).get("pages")
    if wanted:
        pages = pages.filter(number__in=wanted)
    out = []
    for page in pages:
        with Image.open(io.BytesIO(media_read(page.file))) as image:
            out.append((page.number, page.file, page.sha256, image.convert("RGB")))
    return out


def page_readings(job: Job, pages: list[tuple[int, str, str, Image.Image]]) -> list[OcrResult]:
    """The reading of each of `pages` (from `page_images`): a PDF document's pages from their
    text layer when it agrees with the pixels, every other page by OCR."""
    from vision.ocr.engine import ocr_image

    if job.document.kind != DocumentKind.PDF:
        return [ocr_image(image) for *_, image in pages]
    from vision.ocr.textlayer import read_pdf_pages
    from vision.validators import PDFIUM_LOCK

    try:
        data = media_read(job.document.file)
    except OSError as exc:  # the page images are all a job needs: OCR them
        if is_transient(exc):  # the media store is away for a moment: the job runs again
            raise
        logger.warning("document %s: original unreadable (%s); its pages are OCR'd", job.document_id, exc)
        return [ocr_image(image) for *_, image in pages]
    read = read_pdf_pages(data, {number: image for number, _, _, image in pages}, lock=PDFIUM_LOCK)
    return [read[number] for number, *_ in pages]


def run_ocr(context: JobRunContext) -> JobOutcome:
    selected = page_images(context.job)
    pages = []
    for (number, *_), reading in zip(selected, page_readings(context.job, selected), strict=True):
        pages.append({"page": number, **reading.to_dict()})
    text = "\n\n".join(p["text"] for p in pages)
    timings = {"total_s": round(sum(p["elapsed_s"] for p in pages), 3)}
    return JobOutcome(
        status=JobStatus.SUCCEEDED, text=text, result={"pages": pages}, finish_reason="stop", timings=timings
    )
