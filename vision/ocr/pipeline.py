"""One page in, a reviewed-ready reading out: OCR (or the page's text layer) → layout extractor → (optionally) the VLM
cross-check. Shared by the job runners and `manage.py extract`, so both give the same result.
No Django: how the model is asked (a worker's stream, a local engine) is the caller's
`ask_model(image, ocr) -> answer text`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from PIL import Image

from vision.ocr.engine import OcrResult, ocr_image
from vision.ocr.invoice import extract_invoice_pages
from vision.ocr.invoice_types import Flag, InvoiceExtraction
from vision.ocr.vlm import cross_check

AskModel = Callable[[Image.Image, OcrResult], str]


class ModelFailed(Exception):
    """The model could not answer (error, deadline); the layout result stands, flagged."""


@dataclass
class InvoiceReading:
    extraction: InvoiceExtraction
    ocr: OcrResult  # the first page's: the one the VLM saw
    used_vlm: bool
    pages: list[OcrResult] = field(default_factory=list)  # every page read, in order

    def to_dict(self) -> dict:
        return {
            **self.extraction.to_dict(),
            # where each page's lines came from ("text_layer" | "ocr"); `source` is the first's
            "page": {
                "width": self.ocr.width,
                "height": self.ocr.height,
                "source": self.ocr.source,
                "sources": [page.source for page in self.pages or [self.ocr]],
            },
            "used_vlm": self.used_vlm,
        }


def read_invoice(image: Image.Image, *, ask_model: AskModel | None = None) -> InvoiceReading:
    return read_invoice_pages([image], ask_model=ask_model)


def read_invoice_pages(
    images: list[Image.Image],
    *,
    ask_model: AskModel | None = None,
    readings: list[OcrResult] | None = None,
) -> InvoiceReading:
    """A document's pages through OCR and the layout extractor (identity fields from the first
    page, totals from the last); the VLM, when asked, cross-checks against the first page.
    `readings`: the pages already read (e.g. from a PDF's text layer, vision/ocr/textlayer.py),
    one per image; without it every image is OCR'd."""
    if readings is not None and len(readings) != len(images):
        raise ValueError(f"{len(readings)} readings for {len(images)} pages")
    ocrs = list(readings) if readings is not None else [ocr_image(image) for image in images]
    extraction = extract_invoice_pages(ocrs)
    if ask_model is not None:
        try:
            answer = ask_model(images[0], ocrs[0])
        except ModelFailed as exc:
            extraction.flags.append(Flag("*", "vlm_failed", f"the model could not answer: {exc}"))
        else:
            cross_check(extraction, ocrs[0], answer)
    return InvoiceReading(extraction, ocrs[0], ask_model is not None, ocrs)
