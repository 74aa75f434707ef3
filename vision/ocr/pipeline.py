"""One page in, a reviewed-ready reading out: OCR → layout extractor → (optionally) the VLM
cross-check. Shared by the job runners and `manage.py extract`, so both give the same result.
No Django: how the model is asked (a worker's stream, a local engine) is the caller's
`ask_model(image, ocr) -> answer text`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from PIL import Image

from vision.ocr.engine import OcrResult, ocr_image
from vision.ocr.invoice import Flag, InvoiceExtraction, extract_invoice
from vision.ocr.vlm import cross_check

AskModel = Callable[[Image.Image, OcrResult], str]


class ModelFailed(Exception):
    """The model could not answer (error, deadline); the layout result stands, flagged."""


@dataclass
class InvoiceReading:
    extraction: InvoiceExtraction
    ocr: OcrResult
    used_vlm: bool

    def to_dict(self) -> dict:
        return {
            **self.extraction.to_dict(),
            "page": {"width": self.ocr.width, "height": self.ocr.height},
            "used_vlm": self.used_vlm,
        }


def read_invoice(image: Image.Image, *, ask_model: AskModel | None = None) -> InvoiceReading:
    ocr = ocr_image(image)
    extraction = extract_invoice(ocr)
    if ask_model is not None:
        try:
            answer = ask_model(image, ocr)
        except ModelFailed as exc:
            extraction.flags.append(Flag("*", "vlm_failed", f"the model could not answer: {exc}"))
        else:
            cross_check(extraction, ocr, answer)
    return InvoiceReading(extraction, ocr, ask_model is not None)
