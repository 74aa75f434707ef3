"""What a page reading gives: its lines with their boxes, the page's result, and reading order.

The OCR engine (vision/ocr/engine.py) and the text layer reader (vision/ocr/textlayer.py) both
return an `OcrResult`, so the invoice reader, the field locator and the box drawing take either.
No Django, nothing heavy to import.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

Point = tuple[float, float]
BBox = tuple[float, float, float, float]  # x0, y0, x1, y1 in page pixels


@dataclass(frozen=True)
class OcrLine:
    text: str
    box: tuple[Point, Point, Point, Point]  # clockwise from top-left; a rotated quad on tilted pages
    bbox: BBox  # axis-aligned hull of `box`, what highlighters and geometry use
    confidence: float  # recogniser score, 0..1
    row: int = 0  # index of the visual row in reading order: lines on one row share it

    @property
    def height(self) -> float:
        return self.bbox[3] - self.bbox[1]

    @property
    def center_y(self) -> float:
        return (self.bbox[1] + self.bbox[3]) / 2


@dataclass
class OcrResult:
    width: int  # of the page as given (boxes are in these pixels)
    height: int
    lines: list[OcrLine] = field(default_factory=list)  # reading order: rows top-down, each left-right
    elapsed_s: float = 0.0
    # Where the lines came from: "ocr" (this engine) or "text_layer" (a PDF page's own text,
    # vision/ocr/textlayer.py); `source_reason` says why a page with a text layer was OCR'd.
    source: str = "ocr"
    source_reason: str = ""

    @property
    def text(self) -> str:
        """The page as text: one line per visual row, cells of a row separated by two spaces."""
        rows: dict[int, list[str]] = {}
        for line in self.lines:
            rows.setdefault(line.row, []).append(line.text)
        return "\n".join("  ".join(parts) for _, parts in sorted(rows.items()))

    @property
    def mean_confidence(self) -> float:
        return sum(x.confidence for x in self.lines) / len(self.lines) if self.lines else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "width": self.width,
            "height": self.height,
            "elapsed_s": round(self.elapsed_s, 3),
            "source": self.source,
            "source_reason": self.source_reason,
            "text": self.text,
            "lines": [
                {
                    "text": line.text,
                    "box": [[round(x, 1), round(y, 1)] for x, y in line.box],
                    "bbox": [round(v, 1) for v in line.bbox],
                    "confidence": round(line.confidence, 4),
                    "row": line.row,
                }
                for line in self.lines
            ],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> OcrResult:
        lines = [
            OcrLine(
                text=x["text"],
                box=tuple(tuple(p) for p in x["box"]),  # type: ignore[arg-type]
                bbox=tuple(x["bbox"]),  # type: ignore[arg-type]
                confidence=x["confidence"],
                row=x.get("row", 0),
            )
            for x in data.get("lines", [])
        ]
        return cls(
            data["width"],
            data["height"],
            lines,
            data.get("elapsed_s", 0.0),
            data.get("source", "ocr"),
            data.get("source_reason", ""),
        )


def skew(lines: list[OcrLine]) -> float:
    """The page's tilt as a slope (dy/dx), the median over the top edges of wide lines."""
    slopes = sorted(
        (line.box[1][1] - line.box[0][1]) / (line.box[1][0] - line.box[0][0])
        for line in lines
        if line.box[1][0] - line.box[0][0] > 3 * max(line.height, 1.0)
    )
    return slopes[len(slopes) // 2] if slopes else 0.0


def order_lines(lines: list[OcrLine]) -> list[OcrLine]:
    """Reading order: group lines into visual rows, rows top-down, lines in a row left-right.

    Rows are found on deskewed coordinates: on a photo tilted by 2° a label at the left margin
    and its amount at the right margin of the same row differ by ~35 px in y, more than a line's
    height. A line joins the current row when it overlaps the row vertically by at least half of
    the smaller height; two separate text rows never overlap that much.
    """
    slope = skew(lines)

    def span(line: OcrLine) -> tuple[float, float]:
        shift = slope * (line.bbox[0] + line.bbox[2]) / 2
        return line.bbox[1] - shift, line.bbox[3] - shift

    rows: list[list[OcrLine]] = []
    row_span = (0.0, 0.0)
    for line in sorted(lines, key=lambda x: (sum(span(x)) / 2, x.bbox[0])):
        top, bottom = span(line)
        if rows:
            overlap = min(row_span[1], bottom) - max(row_span[0], top)
            if overlap >= 0.5 * min(bottom - top, row_span[1] - row_span[0]):
                rows[-1].append(line)
                row_span = (min(row_span[0], top), max(row_span[1], bottom))
                continue
        rows.append([line])
        row_span = (top, bottom)
    ordered = []
    for index, row in enumerate(rows):
        for line in sorted(row, key=lambda x: x.bbox[0]):
            ordered.append(OcrLine(line.text, line.box, line.bbox, line.confidence, index))
    return ordered
