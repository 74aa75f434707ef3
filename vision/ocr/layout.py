"""Geometry helpers over OCR lines: where a span of a line's text sits on the page, and which
line lies right of or below another. Shared by the invoice extractor and the VLM cross-check."""

from __future__ import annotations

import unicodedata

from vision.ocr.lines import BBox, OcrLine


def _char_width(char: str) -> float:
    # Relative advance widths: CJK and full-width forms are square, Latin about half, spaces
    # less. Good to a few pixels on printed text, which is all a highlight box needs.
    if unicodedata.east_asian_width(char) in ("W", "F"):
        return 1.0
    if char.isspace():
        return 0.3
    return 0.55


def span_box(line: OcrLine, start: int, end: int) -> BBox:
    """Axis-aligned box of characters `start:end` of `line.text`, by proportional advance."""
    text = line.text
    start, end = max(0, start), min(len(text), end)
    if start == 0 and end >= len(text):
        return line.bbox
    widths = [_char_width(c) for c in text]
    total = sum(widths) or 1.0
    x0, _, x1, _ = line.bbox
    left = x0 + (x1 - x0) * sum(widths[:start]) / total
    right = x0 + (x1 - x0) * sum(widths[:end]) / total
    return (round(left, 1), line.bbox[1], round(right, 1), line.bbox[3])


def union(boxes: list[BBox]) -> BBox | None:
    if not boxes:
        return None
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )
