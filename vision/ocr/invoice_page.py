"""One page as the layout extractor's readers see it: its lines by row, what has been found so far,
the places a label's value may be, and the one rule that records a field. No Django.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from vision.ocr.invoice_text import Label, is_label, strip_value
from vision.ocr.invoice_types import SOURCE_TRUST, Field, InvoiceExtraction
from vision.ocr.layout import span_box
from vision.ocr.lines import OcrLine, OcrResult


class PageReader:
    """A page being read. The readers (`vision.ocr.invoice_reader.read_page` and the modules it
    calls) take it as their first argument and add to its `result`."""

    def __init__(self, ocr: OcrResult, *, page: int, dayfirst: bool, order_settled: bool) -> None:
        self.lines = ocr.lines
        self.ocr = ocr
        self.page = page
        self.dayfirst = dayfirst
        self.order_settled = order_settled
        self.result = InvoiceExtraction()
        self.table_rows: set[int] = set()
        self.header_rows: set[int] = set()
        self.columns: list[tuple[str, float, float]] = []
        self.found_on: dict[str, OcrLine] = {}  # field → the line its value was read from
        # amount field → (value, line, start, end, source) from each of its labels, reading order
        self.amounts: dict[str, list[tuple[Decimal, OcrLine, int, int, str]]] = {}
        self.rates: list[Decimal] = []  # tax rates printed beside a tax label
        self.words_total: tuple[Decimal, OcrLine] | None = None  # a fapiao's 大写 amount
        self.labels: list[Label] = []  # every label on the page, reading order
        heights = sorted(x.height for x in self.lines) or [20.0]
        self.line_height = heights[len(heights) // 2]
        self.rows: dict[int, list[OcrLine]] = {}
        for line in self.lines:
            self.rows.setdefault(line.row, []).append(line)

    # -- values next to labels ------------------------------------------------------------

    def candidates(self, label: Label) -> list[tuple[OcrLine, int, int, str]]:
        """(line, start, end, source) places where the label's value may be, best first: the rest
        of the label's line, the cells right of it on its row (up to the next label), the cell
        below it (same column, next two rows, up to the next label)."""
        text = label.line.text
        start, end = strip_value(text, label.end, label.value_end)
        out = []
        if end > start:
            out.append((label.line, start, end, "same_line"))
        if label.value_end < len(text):
            return out  # another label follows on the same line: the value cannot be further right
        for other in self.right_of(label.line):
            if is_label(other.text):
                break
            s, e = strip_value(other.text, 0, len(other.text))
            if e > s:
                out.append((other, s, e, "right"))
        for other in self.below(label.line):
            if is_label(other.text):
                break
            s, e = strip_value(other.text, 0, len(other.text))
            if e > s:
                out.append((other, s, e, "below"))
        return out

    def right_of(self, line: OcrLine) -> list[OcrLine]:
        found = [x for x in self.rows.get(line.row, []) if x.bbox[0] >= line.bbox[2] - 4 and x is not line]
        return sorted(found, key=lambda x: x.bbox[0])

    def below(self, line: OcrLine) -> list[OcrLine]:
        """Lines in the next two rows that share the label's column: they overlap it horizontally,
        or start within two line heights of its left edge."""
        out = []
        for row in (line.row + 1, line.row + 2):
            cells = self.rows.get(row, [])
            if not cells or min(x.bbox[1] for x in cells) - line.bbox[3] > 3 * self.line_height:
                break
            same_column = []
            for other in cells:
                overlap = min(line.bbox[2], other.bbox[2]) - max(line.bbox[0], other.bbox[0])
                if overlap > 0 or abs(other.bbox[0] - line.bbox[0]) < 2 * self.line_height:
                    same_column.append((-overlap, other))
            if same_column:
                # the nearest line below; of lines about as near, the one most under the label
                top = min(other.bbox[1] for _, other in same_column)
                near = [c for c in same_column if c[1].bbox[1] - top < 0.5 * self.line_height]
                out.append(min(near, key=lambda x: x[0])[1])
                if row == line.row + 1:
                    break
        return out

    def record(self, name: str, value: Any, line: OcrLine, start: int, end: int, source: str) -> Field | None:
        if name in self.result.fields or value in (None, ""):
            return None
        box = span_box(line, start, end)
        found = Field(value, box, line.confidence * SOURCE_TRUST[source], source, self.page)
        self.result.fields[name] = found
        self.found_on[name] = line
        return found
