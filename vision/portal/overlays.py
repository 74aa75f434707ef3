"""What the job page draws over the page image: boxes from a job's structured result.

Two result shapes carry boxes: OCR lines (`{"lines": [{"text", "bbox" | "box"}]}`, optionally
per page under `"pages"`) and invoice extractions (`{"box": {field: [x0, y0, x1, y1]}}` plus
`items[].box`). Boxes are in the page image's pixels; the browser scales them with the image.
"""

from __future__ import annotations

import json
from typing import Any, TypedDict

# Invoice result keys that are not fields.
_NON_FIELDS = {
    "items", "checks", "flags", "confidence", "box", "lines", "pages", "page", "text", "width", "height",
    "extraction_id", "used_vlm", "elapsed_s",
}  # fmt: skip


class Overlay(TypedDict):
    page: int  # 1-based
    kind: str  # "line" | "field" | "item"
    label: str
    box: list[float]  # x0, y0, x1, y1


class InvoiceField(TypedDict):
    name: str
    value: Any
    confidence: float | None
    has_box: bool


def _box(value: Any) -> list[float] | None:
    """[x0, y0, x1, y1] from a bbox list or a 4-point quad."""
    if not isinstance(value, list | tuple) or not value:
        return None
    if len(value) == 4 and all(isinstance(v, int | float) for v in value):
        return [float(v) for v in value]
    if all(isinstance(p, list | tuple) and len(p) == 2 for p in value):
        xs, ys = [float(p[0]) for p in value], [float(p[1]) for p in value]
        return [min(xs), min(ys), max(xs), max(ys)]
    return None


def result_overlays(result: Any) -> list[Overlay]:
    if not isinstance(result, dict):
        return []
    overlays: list[Overlay] = []
    pages = result.get("pages") if isinstance(result.get("pages"), list) else [result]
    for number, page in enumerate(pages, start=1):
        if not isinstance(page, dict):
            continue
        page_no = page["page"] if isinstance(page.get("page"), int) else number
        for line in page.get("lines") or []:
            if isinstance(line, dict) and (box := _box(line.get("bbox") or line.get("box"))):
                overlays.append(Overlay(page=page_no, kind="line", label=str(line.get("text", "")), box=box))
    # An invoice reading covers one page; its "page" is that page's size, not a number.
    invoice_page = result["page"] if isinstance(result.get("page"), int) else 1
    if isinstance(result.get("box"), dict):
        for name, value in result["box"].items():
            if box := _box(value):
                overlays.append(Overlay(page=invoice_page, kind="field", label=str(name), box=box))
    for index, item in enumerate(result.get("items") or [], start=1):
        if isinstance(item, dict) and (box := _box(item.get("box"))):
            label = str(item.get("description") or f"item {index}")
            overlays.append(Overlay(page=invoice_page, kind="item", label=label, box=box))
    return overlays


SOURCES = ("text_layer", "ocr")  # where a page's text came from (vision/ocr/textlayer.py)


def page_sources(result: Any, numbers: list[int]) -> dict[int, str]:
    """Page number → where its text came from ("text_layer" | "ocr"), for the pages `numbers` a
    job read in order: OCR results say it per page, invoice readings in `page.sources` (one per
    page read), document-type answers in `source` for their one page."""
    if not isinstance(result, dict):
        return {}
    out: dict[int, str] = {}
    if isinstance(result.get("pages"), list):
        for page in result["pages"]:
            if isinstance(page, dict) and isinstance(page.get("page"), int) and page.get("source") in SOURCES:
                out[page["page"]] = page["source"]
    page = result.get("page")
    if isinstance(page, dict) and isinstance(page.get("sources"), list):
        for number, source in zip(numbers, page["sources"], strict=False):
            if source in SOURCES:
                out[number] = source
    elif isinstance(page, int) and result.get("source") in SOURCES:
        out[page] = result["source"]
    return out


def invoice_fields(result: Any) -> list[InvoiceField]:
    """The scalar fields of an invoice result, in the result's order, with their confidence."""
    if not isinstance(result, dict) or not isinstance(result.get("box") or result.get("confidence"), dict):
        return []
    confidence = result.get("confidence") if isinstance(result.get("confidence"), dict) else {}
    boxes = result.get("box") if isinstance(result.get("box"), dict) else {}
    return [
        InvoiceField(name=name, value=value, confidence=confidence.get(name), has_box=bool(boxes.get(name)))
        for name, value in result.items()
        if name not in _NON_FIELDS and not isinstance(value, dict | list)
    ]


def document_fields(result: Any) -> list[InvoiceField]:
    """The top-level fields of an extract job's result (a document type's answer), in the
    schema's order; nested values as JSON text."""
    if not isinstance(result, dict) or not isinstance(result.get("fields"), dict):
        return []
    confidence = result.get("confidence") if isinstance(result.get("confidence"), dict) else {}
    boxes = result.get("box") if isinstance(result.get("box"), dict) else {}
    return [
        InvoiceField(
            name=name,
            value=json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value,
            confidence=confidence.get(name),
            has_box=bool(boxes.get(name)),
        )
        for name, value in result["fields"].items()
    ]
