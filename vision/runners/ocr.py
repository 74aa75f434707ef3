"""ocr jobs: every selected page through the OCR engine; the result has the lines with boxes."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

from vision.models import Job, JobStatus
from vision.runners.types import JobOutcome, JobRunContext

if TYPE_CHECKING:
    from PIL import Image


def page_images(job: Job) -> list[tuple[int, str, str, Image.Image]]:
    """(number, path, sha256, image) of the job's pages: `pages` option, or all."""
    from PIL import Image

    pages = job.document.pages.order_by("number")
    wanted = (job.options or {}).get("pages")
    if wanted:
        pages = pages.filter(number__in=wanted)
    root = Path(settings.MEDIA_ROOT)
    out = []
    for page in pages:
        with Image.open(root / page.file) as image:
            out.append((page.number, page.file, page.sha256, image.convert("RGB")))
    return out


def run_ocr(context: JobRunContext) -> JobOutcome:
    from vision.ocr.engine import ocr_image

    pages = []
    for number, _, _, image in page_images(context.job):
        pages.append({"page": number, **ocr_image(image).to_dict()})
    text = "\n\n".join(p["text"] for p in pages)
    timings = {"total_s": round(sum(p["elapsed_s"] for p in pages), 3)}
    return JobOutcome(
        status=JobStatus.SUCCEEDED, text=text, result={"pages": pages}, finish_reason="stop", timings=timings
    )
