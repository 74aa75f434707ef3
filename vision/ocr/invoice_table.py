"""The item table: found by its header row, each cell assigned to a column by its x position.
No Django.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import TYPE_CHECKING

from vision.ocr.invoice_types import SOURCE_TRUST, Item
from vision.ocr.labels import COLUMN_RES, LABEL_RE
from vision.ocr.layout import span_box, union
from vision.ocr.lines import OcrLine
from vision.ocr.normalize import find_amounts, money

if TYPE_CHECKING:
    from vision.ocr.invoice_page import PageReader


def read_table(reader: PageReader) -> None:
    header = None
    for row, cells in sorted(reader.rows.items()):
        columns = _header_columns(cells)
        names = {c[0] for c in columns}
        if len(names & {"description", "quantity", "unit_price", "amount"}) >= 3:
            header = row, columns
            break
    if header is None:
        return
    header_row, reader.columns = header
    reader.header_rows.add(header_row)
    last_y = max(x.bbox[3] for x in reader.rows[header_row])
    for row in range(header_row + 1, header_row + 3):
        # column titles set on two or three lines ("Preis" over "ohne MwSt."): no figures,
        # right under the header
        cells = reader.rows.get(row, [])
        if not cells or any(re.search(r"\d", x.text) for x in cells):
            break
        if min(x.bbox[1] for x in cells) - last_y > 0.5 * reader.line_height:
            break
        reader.header_rows.add(row)
        last_y = max(x.bbox[3] for x in cells)
    for row, cells in sorted(reader.rows.items()):
        if row <= max(reader.header_rows):
            continue
        if (
            LABEL_RE.search(" ".join(x.text for x in cells))
            or LABEL_RE.search("".join(x.text for x in cells))
            or min(x.bbox[1] for x in cells) - last_y > 3 * reader.line_height
        ):
            break
        item = _item(cells, reader.columns, reader.page)
        if item is None:
            break
        reader.result.items.append(item)
        reader.table_rows.add(row)
        last_y = max(x.bbox[3] for x in cells)


def _header_columns(cells: list[OcrLine]) -> list[tuple[str, float, float]]:
    """(column, x centre, right edge) of each column title found in a row."""
    found: list[tuple[str, float, float]] = []
    for line in cells:
        taken: list[tuple[int, int]] = []
        for name, pattern in COLUMN_RES:
            for m in pattern.finditer(line.text):
                if any(s < m.end() and m.start() < e for s, e in taken):
                    continue
                taken.append((m.start(), m.end()))
                box = span_box(line, m.start(), m.end())
                if not any(name == f[0] for f in found):
                    found.append((name, (box[0] + box[2]) / 2, box[2]))
    return sorted(found, key=lambda c: c[1])


def _item(cells: list[OcrLine], columns: list[tuple[str, float, float]], page: int) -> Item | None:
    description: list[str] = []
    numbers: dict[str, Decimal] = {}
    desc_x = next((c[1] for c in columns if c[0] == "description"), 0.0)
    numeric = [c for c in columns if c[0] not in ("description",)]
    first_numeric_x = min((c[1] for c in numeric), default=float("inf"))
    for line in cells:
        text = line.text
        if line.bbox[2] < (desc_x + first_numeric_x) / 2 + (first_numeric_x - desc_x) / 4:
            description.append(text.strip())  # the whole cell sits in the description column
            continue
        cursor = 0
        for value, start, end in find_amounts(text):
            if text[cursor:start].strip(" :$€£¥￥") and re.search(r"[^\W\d_]", text[cursor:start]):
                description.append(text[cursor:start].strip())
            box = span_box(line, start, end)
            centre, right = (box[0] + box[2]) / 2, box[2]
            column = min(numeric, key=lambda c: min(abs(c[1] - centre), abs(c[2] - right)))
            if column[0] in ("quantity", "unit_price", "amount") and column[0] not in numbers:
                numbers[column[0]] = value
            cursor = end
        if re.search(r"[^\W\d_]", text[cursor:]):
            description.append(text[cursor:].strip())
    if not numbers:
        return None  # a text-only row below the table (notes) ends it
    return Item(
        description=" ".join(d for d in description if d),
        quantity=numbers.get("quantity"),
        unit_price=money(numbers["unit_price"]) if "unit_price" in numbers else None,
        amount=money(numbers["amount"]) if "amount" in numbers else None,
        box=union([x.bbox for x in cells]),
        confidence=min(x.confidence for x in cells) * SOURCE_TRUST["table"],
        page=page,
    )
