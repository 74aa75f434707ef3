"""The seller and the buyer where no label names them: the seller from the page heading or the
legal line of a letterhead or footer, the buyer from the addressee's block. No Django.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from vision.ocr.invoice_text import is_label, plausible_party
from vision.ocr.invoice_types import Flag
from vision.ocr.labels import ADDRESS, COMPANY, TITLE, fix_legal_form
from vision.ocr.lines import OcrLine

if TYPE_CHECKING:
    from vision.ocr.invoice_page import PageReader

# A seller's letterhead, never an addressee's block: its web address and bank details.
_LETTERHEAD = re.compile(r"www\.|https?:|\biban\b|\bbic\b|\bswift\b", re.I)


def seller_from_heading(reader: PageReader) -> None:
    """No seller label: invoices put the issuer's name at the top, in the largest type. Take,
    from the lines above the first labelled field, the tallest that is neither a title, a
    label nor an address, preferring one that looks like a company."""
    if "seller" in reader.result.fields or reader.page > 1:
        return
    first_label_y = min(
        (x.line.bbox[1] for x in reader.labels if x.field not in ("other_ref", "tax_id")),
        default=reader.ocr.height / 3,
    )
    top = [
        x
        for x in reader.lines
        if x.bbox[1] < max(first_label_y, reader.ocr.height * 0.08)
        and x.bbox[1] < reader.ocr.height / 3
        and not TITLE.search(x.text.strip())
        and not is_label(x.text)
        and not ADDRESS.search(x.text)
        and re.search(r"[^\W\d_]{2}", x.text)
        and plausible_party(x.text)
    ]
    line = max(top, key=lambda x: x.height * (1.3 if COMPANY.search(x.text) else 1.0)) if top else None
    if line is not None and COMPANY.search(line.text):
        reader.record(
            "seller", fix_legal_form(line.text.strip(" :|")), line, 0, len(line.text), "company_heading"
        )
        return
    # No company name at the top: the issuer's legal line (a footer "Free SAS au capital de …",
    # a letterhead "Müller GmbH · Hauptstr. 1") names it with its legal form.
    if _seller_from_legal_line(reader):
        return
    if line is not None:
        reader.record("seller", fix_legal_form(line.text.strip(" :|")), line, 0, len(line.text), "heading")


def _seller_from_legal_line(reader: PageReader) -> bool:
    """The first line outside the buyer's block that starts with a name ending in a legal form
    (up to a separator: ',', ' - ', '·', '|'). Lines after a buyer label belong to the buyer."""
    buyer_rows = set()
    for label in reader.labels:
        if label.field == "buyer":
            buyer_rows |= {label.line.row, label.line.row + 1, label.line.row + 2, label.line.row + 3}
    buyer = reader.result.fields.get("buyer")
    for line in reader.lines:
        if line.row in buyer_rows or line.row in reader.table_rows or is_label(line.text):
            continue
        head = re.split(r"\s[-–·|•]\s|;|\s{2,}", line.text.strip())[0].strip()
        forms = list(COMPANY.finditer(head))
        if not forms:
            continue
        end = forms[0].end()
        for form in forms[1:]:  # "Müller GmbH & Co. KG", "Foo Co., Ltd."
            if form.start() - end > 6:
                break
            end = form.end()
        name = head[:end].strip(" ,")
        if forms[0].start() == 0:  # "SARL au capital de …": the name is a line of the block above
            above = _name_above(reader, line)
            if above is None:
                continue
            line, name = above, above.text.strip(" ,:|")
        if len(name.split()) > 6 or not plausible_party(name):
            continue
        if buyer is not None and name.lower() == str(buyer.value).lower():
            continue
        at = line.text.find(name)
        reader.record("seller", fix_legal_form(name), line, max(at, 0), max(at, 0) + len(name), "legal_line")
        return True
    return False


def _blocks(lines: list[OcrLine]) -> list[list[OcrLine]]:
    """Lines stacked into blocks: each next line starts at the same x, a similar height, less
    than a line's height below the last (an address block, a letterhead)."""
    blocks: list[list[OcrLine]] = []
    used: set[int] = set()
    ordered = sorted(lines, key=lambda x: (x.bbox[1], x.bbox[0]))
    for start in ordered:
        if id(start) in used:
            continue
        block = [start]
        while True:
            last = block[-1]
            following = [
                x
                for x in ordered
                if id(x) not in used
                and x is not last
                and x.bbox[1] > last.bbox[1] + 0.5 * last.height
                and abs(x.bbox[0] - last.bbox[0]) <= 0.6 * last.height
                and x.bbox[1] - last.bbox[3] <= 0.9 * last.height
                and 0.7 <= x.height / max(last.height, 1.0) <= 1.4
            ]
            if not following:
                break
            block.append(min(following, key=lambda x: x.bbox[1]))
            used.add(id(block[-1]))
        used.add(id(start))
        blocks.append(block)
    return blocks


def buyer_from_address_block(reader: PageReader) -> None:
    """No buyer label: the addressee's block (a name over a street and a postcode, as in an
    envelope window) in the upper half of the first page, not the seller's own block. The
    evidence is the layout alone, so the buyer is flagged `no_label`."""
    if "buyer" in reader.result.fields or reader.page > 1:
        return
    top = min(
        [reader.ocr.height * 0.5, *(min(x.bbox[1] for x in reader.rows[r]) for r in reader.header_rows)]
    )
    pool = [
        x
        for x in reader.lines
        if x.bbox[1] < top and x.row not in reader.table_rows and x.row not in reader.header_rows
    ]
    seller_line = reader.found_on.get("seller")
    seller = str(reader.result.value("seller") or "").casefold()
    for block in _blocks(pool):
        if not 2 <= len(block) <= 7 or seller_line in block:
            continue
        if any(_LETTERHEAD.search(x.text) for x in block):
            continue
        if not any(ADDRESS.search(x.text) for x in block[1:]) and not _under_return_address(
            reader, block[0], seller
        ):
            continue
        first = block[0]
        name = first.text.strip(" ,:|")
        if ADDRESS.search(name) or is_label(name) or TITLE.search(name) or not plausible_party(name):
            continue
        if seller and (name.casefold() in seller or seller in name.casefold()):
            continue
        found = reader.record("buyer", fix_legal_form(name), first, 0, len(first.text), "address_block")
        if found is not None:
            reader.result.flags.append(
                Flag(
                    "buyer",
                    "no_label",
                    f"no buyer label on the page: '{name}' is the first line of an address block",
                )
            )
        return


def _under_return_address(reader: PageReader, first: OcrLine, seller: str) -> bool:
    """Whether an envelope window's return address (the seller's name and address on one small
    line) sits just above `first`, in its column."""
    if not seller:
        return False
    return any(
        0 <= first.bbox[1] - x.bbox[3] < 10 * first.height
        and abs(x.bbox[0] - first.bbox[0]) < 2 * first.height
        and seller in x.text.casefold()
        and ADDRESS.search(x.text)
        for x in reader.lines
    )


def _name_above(reader: PageReader, line: OcrLine) -> OcrLine | None:
    """The nearest line above `line` in its block (a footer's lines run close together) that
    can be a name: an address or contact line between them is passed over."""
    index = reader.lines.index(line)
    bottom = line.bbox[1]
    for other in reversed(reader.lines[:index]):
        if other.row == line.row or min(other.bbox[2], line.bbox[2]) <= max(other.bbox[0], line.bbox[0]):
            continue
        if bottom - other.bbox[3] > 1.5 * max(line.height, other.height):
            return None
        if (
            not ADDRESS.search(other.text)
            and not is_label(other.text)
            and plausible_party(other.text.strip())
        ):
            return other
        bottom = min(bottom, other.bbox[1])
    return None
