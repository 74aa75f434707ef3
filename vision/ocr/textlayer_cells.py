"""A text layer's characters grouped as OCR detection cuts a page: into words, words into visual
rows, neighbours in a row into cells unless a wide gap parts them (a table's columns). The cells
are `OcrLine`s in reading order, so the invoice reader's row and column logic takes them as it
takes OCR's. No Django, no pdfium.
"""

from __future__ import annotations

from dataclasses import dataclass

from vision.ocr.layout import union
from vision.ocr.lines import BBox, OcrLine, order_lines
from vision.ocr.textlayer_pdf import Char, PageText

# A gap wider than this many text heights between two words of a row starts a new cell, as
# OCR detection splits a row at column gaps (one space is ~0.27 of a DejaVu line's height).
CELL_GAP = 1.0

# Ligature characters (one code point for "fi") spelt out as their letters, as OCR reads them.
_LIGATURES = {
    "\ufb00": "ff",
    "\ufb01": "fi",
    "\ufb02": "fl",
    "\ufb03": "ffi",
    "\ufb04": "ffl",
    "\ufb05": "st",
    "\ufb06": "st",
}


@dataclass
class Word:
    """Characters of the layer that make one word, with their union box and the font of the first."""

    text: str
    bbox: BBox
    font: int = 0

    @property
    def height(self) -> float:
        return self.bbox[3] - self.bbox[1]


def _same_line(a: BBox, b: BBox) -> bool:
    overlap = min(a[3], b[3]) - max(a[1], b[1])
    return overlap >= 0.5 * min(a[3] - a[1], b[3] - b[1])


def words(text: PageText) -> list[Word]:
    """Runs of characters in pdfium's order, cut at spaces, line changes and backward jumps."""
    out: list[Word] = []
    run: list[Char] = []

    def close() -> None:
        if run:
            joined = "".join(_LIGATURES.get(c.text, c.text) for c in run)
            out.append(Word(joined, union([c.bbox for c in run]), run[0].font))
            run.clear()

    for char in text.chars:
        if not char.text or not char.upright:  # sideways runs (a margin note) are left out
            close()
            continue
        if run:
            last = run[-1].bbox
            height = min(last[3] - last[1], char.bbox[3] - char.bbox[1])
            gap = char.bbox[0] - last[2]
            # a backward jump starts before the last character does (the parts of a ligature, ffi,
            # share one box and continue the word)
            back = char.bbox[0] < last[0] - 0.25 * height
            if not _same_line(last, char.bbox) or back or gap > 0.5 * height:
                close()
        run.append(char)
    close()
    return out


def _line(text: str, bbox: BBox) -> OcrLine:
    x0, y0, x1, y1 = bbox
    return OcrLine(text, ((x0, y0), (x1, y0), (x1, y1), (x0, y1)), bbox, 1.0)


def text_lines(text: PageText, found: list[Word] | None = None) -> list[OcrLine]:
    """The layer as OCR lines: words grouped into visual rows (the OCR engine's `order_lines`),
    neighbours in a row joined into one cell unless a wide gap parts them; reading order and
    `row` as the engine gives them."""
    rows: dict[int, list[OcrLine]] = {}
    for line in order_lines([_line(w.text, w.bbox) for w in (words(text) if found is None else found)]):
        rows.setdefault(line.row, []).append(line)
    cells: list[OcrLine] = []
    for row in rows.values():
        # A row can hold text lines stacked beside a tall heading (a two-line address next to a big
        # title): each text line of the row makes its own cells, never one cell of both.
        stacked: list[list[OcrLine]] = []
        for word in row:
            home = next((s for s in stacked if _same_line(s[-1].bbox, word.bbox)), None)
            if home is None:
                stacked.append([word])
            else:
                home.append(word)
        for part in stacked:
            current = [part[0]]
            for word in part[1:]:
                last = current[-1]
                if word.bbox[0] - last.bbox[2] > CELL_GAP * min(last.height, word.height):
                    cells.append(_line(" ".join(w.text for w in current), union([w.bbox for w in current])))
                    current = [word]
                else:
                    current.append(word)
            cells.append(_line(" ".join(w.text for w in current), union([w.bbox for w in current])))
    return order_lines(cells)
