"""The corpus of real public invoices (tests/data/invoices/real): loading, reading each document the
way a user's invoice job does, and scoring the key fields. Shared by tests/vision/ocr/test_real_corpus.py
and `python -m bench invoice-accuracy --real`.

Each `<id>/` folder holds the document (`invoice.pdf` or `invoice.xml`) and `truth.json`:
issuer, language, split (`dev` | `heldout`, by issuer), kind (`pdf` | `pdf+xml` | `xml`) and the
eight key fields (null where the document does not show one), optionally `accept` (other spellings
of a party printed on the same page). SOURCES.md names each file's origin and licence.

A field is right when the reading equals the truth after normalisation: the exact ISO date, the
amount to the cent, the ISO currency code, the invoice number with outer whitespace removed, a
party's name case-folded with whitespace collapsed and punctuation stripped at the ends. A wrong
field is *flagged* when any flag names it; a wrong field without a flag is *silent*.

The XML's own values for the integrity test (`xml_fields`, `pdf_attached_xml`) are in
real_corpus_xml.py, re-exported here.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from tests.vision.ocr.real_corpus_xml import pdf_attached_xml, xml_fields  # noqa: F401 (re-exported)
from tests.vision.ocr.scoring import grouped, tally

CORPUS_DIR = Path(__file__).resolve().parents[2] / "data" / "invoices" / "real"
KEY_FIELDS = ("invoice_number", "invoice_date", "seller", "buyer", "subtotal", "tax", "total", "currency")
PARTY_FIELDS = ("seller", "buyer")
AMOUNT_FIELDS = ("subtotal", "tax", "total")
SPLITS = ("dev", "heldout")
# `scan`: a scan-like copy of one of the corpus's born-digital PDFs (`scan_copy`), image-only.
KINDS = {"pdf": "invoice.pdf", "pdf+xml": "invoice.pdf", "xml": "invoice.xml", "scan": "invoice.pdf"}
TRUTH_KEYS = ("issuer", "language", "split", "kind", "fields")

# How uploads render PDF pages (vision/services/documents.py _pdf_pages with the default settings):
# UPLOAD_PDF_DPI points-to-pixels, a huge page lowered to UPLOAD_MAX_PIXELS.
UPLOAD_PDF_DPI = 150
UPLOAD_MAX_PIXELS = 50_000_000


@dataclass(frozen=True)
class CorpusDoc:
    id: str
    path: Path
    issuer: str
    language: str
    split: str
    kind: str
    fields: dict[str, str | None]
    accept: dict[str, list[str]] = field(default_factory=dict)


def load_corpus(root: Path = CORPUS_DIR) -> list[CorpusDoc]:
    """Every document of the corpus, in folder-name order."""
    docs = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and (p / "truth.json").is_file()):
        truth = json.loads((folder / "truth.json").read_text(encoding="utf-8"))
        docs.append(
            CorpusDoc(
                id=folder.name,
                path=folder / KINDS[truth["kind"]],
                issuer=truth["issuer"],
                language=truth["language"],
                split=truth["split"],
                kind=truth["kind"],
                fields=truth["fields"],
                accept=truth.get("accept", {}),
            )
        )
    return docs


# --- reading ---------------------------------------------------------------------------------


def render_pdf(data: bytes) -> list:
    """The PDF's pages as RGB images, rendered as an upload renders them."""
    import pypdfium2

    from vision.ocr.pdf_render import render_page

    pdf = pypdfium2.PdfDocument(data)
    try:
        images = []
        for index in range(len(pdf)):
            page = pdf[index]
            try:
                images.append(render_page(page, dpi=UPLOAD_PDF_DPI, max_pixels=UPLOAD_MAX_PIXELS))
            finally:
                page.close()
        return images
    finally:
        pdf.close()


def read_document(path: Path) -> dict[str, Any]:
    """The reader's result for one document, as an invoice job without the VLM computes it
    (vision/runners/invoice.py, vision/runners/einvoice.py): an XML file from its XML alone; a PDF's
    pages rendered as on upload, read from their text layer where it agrees with the pixels (else
    OCR), through the layout extractor, then the embedded Factur-X / ZUGFeRD XML when there is
    one. The one place to switch when the job's entry point changes."""
    from vision.ocr.einvoice import EInvoiceError, combine, embedded_xml, read_einvoice_xml
    from vision.ocr.invoice import Flag
    from vision.ocr.pipeline import read_invoice_pages
    from vision.ocr.textlayer import read_pdf_pages

    data = Path(path).read_bytes()
    if Path(path).suffix.lower() == ".xml":
        return {**read_einvoice_xml(data).to_dict(), "page_sources": ["xml"]}
    images = render_pdf(data)
    read = read_pdf_pages(data, {n + 1: image for n, image in enumerate(images)})
    readings = [read[n + 1] for n in range(len(images))]
    reading = read_invoice_pages(images, readings=readings)
    extraction = reading.extraction
    try:
        xml = embedded_xml(data)
        if xml is not None:
            extraction = combine(extraction, read_einvoice_xml(xml))
    except EInvoiceError as exc:
        extraction.flags.append(Flag("*", "xml_unreadable", str(exc)))
    return {**extraction.to_dict(), "page_sources": [r.source for r in readings]}


# --- scoring ---------------------------------------------------------------------------------

_EDGE_PUNCT = re.compile(r"^[\W_]+|[\W_]+$")


def norm_party(value: Any) -> str | None:
    if value is None:
        return None
    text = " ".join(unicodedata.normalize("NFKC", str(value)).split()).casefold()
    return _EDGE_PUNCT.sub("", text) or None


def norm_amount(value: Any) -> str | None:
    if value is None or value == "":
        return None
    try:
        return str(Decimal(str(value).strip()).quantize(Decimal("0.01")))
    except InvalidOperation:
        return str(value)


def normalise(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if name in PARTY_FIELDS:
        return norm_party(value)
    if name in AMOUNT_FIELDS:
        return norm_amount(value)
    if name == "currency":
        return str(value).strip().upper() or None
    return str(value).strip() or None  # invoice_number, invoice_date (ISO)


@dataclass
class FieldScore:
    name: str
    expected: str | None
    got: Any
    right: bool
    flagged: bool


@dataclass
class DocScore:
    id: str
    issuer: str
    language: str
    split: str
    kind: str
    fields: list[FieldScore]
    page_sources: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def silent(self) -> list[FieldScore]:
        return [f for f in self.fields if not f.right and not f.flagged]


def score_document(doc: CorpusDoc, result: dict[str, Any]) -> DocScore:
    flagged = {f["field"] for f in result.get("flags", [])}
    scores = []
    for name in KEY_FIELDS:
        want, got = doc.fields.get(name), result.get(name)
        accepted = {normalise(name, want)} | {normalise(name, v) for v in doc.accept.get(name, [])}
        scores.append(FieldScore(name, want, got, normalise(name, got) in accepted, name in flagged))
    return DocScore(
        doc.id, doc.issuer, doc.language, doc.split, doc.kind, scores, list(result.get("page_sources", []))
    )


def _evaluate_one(doc: CorpusDoc) -> DocScore:
    try:
        return score_document(doc, read_document(doc.path))
    except Exception as exc:  # a document the reader cannot take is scored all wrong, unflagged
        score = score_document(doc, {})
        score.error = f"{type(exc).__name__}: {exc}"
        return score


def evaluate(docs: list[CorpusDoc], *, workers: int = 1) -> list[DocScore]:
    """Read and score every document, in corpus order (`workers` > 1: that many processes)."""
    if workers > 1:
        import multiprocessing

        with multiprocessing.get_context("fork").Pool(workers) as pool:
            return pool.map(_evaluate_one, docs, chunksize=1)
    return [_evaluate_one(doc) for doc in docs]


def summarize(scores: list[DocScore]) -> dict[str, Any]:
    """Per split: overall, per field, per language, per kind, the silent count and every miss."""
    out: dict[str, Any] = {}
    for split in SPLITS:
        part = [s for s in scores if s.split == split]
        every = [f for s in part for f in s.fields]
        by_field = grouped(part, lambda s, f: f.name)
        by_language = grouped(part, lambda s, f: s.language)
        by_kind = grouped(part, lambda s, f: s.kind)
        wrong = [f for f in every if not f.right]
        out[split] = {
            "documents": len(part),
            "issuers": len({s.issuer for s in part}),
            "overall": tally(every),
            "wrong": len(wrong),
            "wrong_flagged": sum(f.flagged for f in wrong),
            "silent": sum(not f.flagged for f in wrong),
            "right_flagged": sum(f.flagged for f in every if f.right),
            "by_field": {k: tally(by_field[k]) for k in KEY_FIELDS if k in by_field},
            "by_language": {k: tally(v) for k, v in sorted(by_language.items())},
            "by_kind": {k: tally(v) for k, v in sorted(by_kind.items())},
            "errors": {s.id: s.error for s in part if s.error},
            "misses": [
                {
                    "doc": s.id,
                    "field": f.name,
                    "expected": f.expected,
                    "got": f.got,
                    "flagged": f.flagged,
                }
                for s in part
                for f in s.fields
                if not f.right
            ],
        }
    return out


# --- scan-like copies ------------------------------------------------------------------------


def scan_copy(data: bytes, seed: str) -> bytes:
    """An image-only PDF of `data` as a flatbed scanner would give it back: each page rendered at
    150 dpi, tilted up to 0.8 degrees, greyed paper, resampled to 100-150 dpi, sensor noise, JPEG
    quality 45-65; every choice drawn from `seed` (the copy's id)."""
    import io
    import random
    import time

    import numpy as np
    from PIL import Image

    rng = random.Random(seed)
    nrng = np.random.default_rng(rng.randrange(2**32))
    dpi = rng.choice((100, 120, 150))
    quality = rng.randint(45, 65)
    pages = []
    for page in render_pdf(data):
        page = page.rotate(rng.uniform(-0.8, 0.8), resample=Image.BICUBIC, expand=False, fillcolor="white")
        scale = dpi / UPLOAD_PDF_DPI
        page = page.resize((round(page.width * scale), round(page.height * scale)), Image.LANCZOS)
        array = np.asarray(page, dtype=np.float32) * rng.uniform(0.88, 0.97)
        array = array + nrng.normal(0, rng.uniform(3, 7), array.shape[:2])[..., None]
        page = Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))
        buffer = io.BytesIO()
        page.save(buffer, "JPEG", quality=quality)
        pages.append(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    out = io.BytesIO()
    stamp = time.gmtime(1767225600)  # 2026-01-01, fixed: a copy is made again byte for byte
    pages[0].save(
        out,
        "PDF",
        save_all=True,
        append_images=pages[1:],
        resolution=float(dpi),
        creationDate=stamp,
        modDate=stamp,
    )
    return out.getvalue()
