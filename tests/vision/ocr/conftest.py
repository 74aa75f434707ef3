"""OCR results of the rendered test pages, computed once per session: OCR costs 1-3 s a page on
two shared cores, so every test reads the same few pages."""

from __future__ import annotations

import io
from dataclasses import dataclass

import pytest
from PIL import Image

from tests.vision.ocr.invoices import InvoiceTruth, degrade, encode, make_invoice
from vision.ocr.engine import OcrResult

# (seed, language, variant, file format): each language in every variant, both formats.
INVOICE_PAGES = [
    (11, "en", "clean", "PNG"),
    (12, "en", "photo", "JPEG"),
    (13, "en", "small", "JPEG"),
    (21, "zh", "clean", "PNG"),
    (22, "zh", "photo", "JPEG"),
    (23, "zh", "small", "PNG"),
]


@dataclass
class Page:
    name: str
    truth: InvoiceTruth
    variant: str
    scale: float  # truth boxes × scale = page pixels (downscaled variant)
    ocr: OcrResult


@pytest.fixture(scope="session")
def invoice_pages() -> list[Page]:
    from vision.ocr.engine import ocr_image

    pages = []
    for seed, lang, variant, fmt in INVOICE_PAGES:
        drawn, truth = make_invoice(seed, lang)
        degraded, scale = degrade(drawn, variant, seed)
        image = Image.open(io.BytesIO(encode(degraded, fmt)))
        pages.append(Page(f"{lang}-{variant}-{fmt.lower()}", truth, variant, scale, ocr_image(image)))
    return pages
