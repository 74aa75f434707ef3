"""A Chinese VAT fapiao read by its grid: the 名称 cells of the 购买方 / 销售方 blocks, the 合计 row
and the 价税合计 row with the total in words (大写) and in figures (小写). No Django.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from vision.ocr.invoice_amounts import last_amount
from vision.ocr.invoice_text import party_name
from vision.ocr.layout import span_box
from vision.ocr.lines import OcrLine
from vision.ocr.normalize import find_amounts, money, parse_chinese_amount

if TYPE_CHECKING:
    from vision.ocr.invoice_page import PageReader


def read_fapiao(reader: PageReader) -> None:
    """A Chinese VAT fapiao: the parties are 名称 cells inside blocks labelled 购买方 / 销售方
    (often printed vertically, one character per OCR line); the 合计 row holds the subtotal
    under 金额 and the tax under 税额; 价税合计 holds the total in words (大写) and in figures
    (小写)."""
    names = [x for x in reader.lines if re.match(r"\s*名\s*称\s*[:：]", x.text)]
    if names:
        _fapiao_parties(reader, names)
    for _, cells in sorted(reader.rows.items()):
        text = "".join(x.text for x in cells)
        if re.search(r"(?<!价税)合\s*计", text) and "subtotal" not in reader.result.fields:
            _fapiao_sum_row(reader, cells)
        if "价税合计" in text or "大写" in text:
            _fapiao_total_row(reader, cells[0])


def _fapiao_parties(reader: PageReader, names: list[OcrLine]) -> None:
    markers = [
        (x, "buyer" if re.search(r"购|买", x.text) else "seller")
        for x in reader.lines
        if re.search(r"购|买|销|售", x.text) and len(x.text.strip()) <= 6
    ]
    assigned: dict[str, OcrLine] = {}
    for line in names:
        near = [
            (line.bbox[0] - m.bbox[2], party)
            for m, party in markers
            if m.bbox[2] <= line.bbox[0] + 4
            and m.bbox[1] - 3 * reader.line_height <= line.center_y <= m.bbox[3] + 3 * reader.line_height
        ]
        if near:
            party = min(near)[1]
        else:  # 数电发票: buyer left, seller right; older forms: buyer above, seller below
            others = [x for x in names if x is not line]
            if others and others[0].row == line.row:
                party = "buyer" if line.bbox[0] < others[0].bbox[0] else "seller"
            elif others:
                party = "buyer" if line.row < others[0].row else "seller"
            else:
                party = "buyer"
        if party in assigned:
            party = "seller" if party == "buyer" else "buyer"
        assigned[party] = line
    for party, line in assigned.items():
        name = party_name(line.text)
        if not name:
            right = reader.right_of(line)
            if not right:
                continue
            line, name = right[0], right[0].text.strip()
        offset = line.text.find(name)
        reader.record(party, name, line, offset, offset + len(name), "grid")


def _fapiao_sum_row(reader: PageReader, cells: list[OcrLine]) -> None:
    amounts = []
    for cell in cells:
        for value, s, e in find_amounts(cell.text):
            if "%" in cell.text[e : e + 2]:
                continue
            amounts.append((value, cell, s, e))
    if not amounts:
        return
    tax_x = next((c[1] for c in reader.columns if c[0] == "tax_amount"), None)
    if len(amounts) >= 2:
        (sub, sub_line, s1, e1), (tax, tax_line, s2, e2) = amounts[0], amounts[-1]
        if tax_x is not None and abs(span_box(sub_line, s1, e1)[2] - tax_x) < abs(
            span_box(tax_line, s2, e2)[2] - tax_x
        ):
            return  # the first amount sits under 税额: this is not a 金额 | 税额 row
        reader.record("subtotal", money(sub), sub_line, s1, e1, "grid")
        reader.record("tax", money(tax), tax_line, s2, e2, "grid")
    else:
        value, line, s, e = amounts[0]
        reader.record("subtotal", money(value), line, s, e, "grid")


def _fapiao_total_row(reader: PageReader, label_line: OcrLine) -> None:
    cells = [label_line, *reader.right_of(label_line)]
    text = " ".join(x.text for x in cells)
    if (words := parse_chinese_amount(text)) is not None:
        reader.words_total = (words, label_line)
    for n, cell in enumerate(cells):
        at = cell.text.find("小写")
        if at < 0 and n and "小写" not in text:
            at = 0
        if at < 0:
            continue
        amount = last_amount(cell.text[at:])
        if amount is None and n + 1 < len(cells):
            cell, at = cells[n + 1], 0
            amount = last_amount(cell.text)
        if amount is not None:
            value, s, e = amount
            reader.record("total", money(value), cell, at + s, at + e, "grid")
            return
