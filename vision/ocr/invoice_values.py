"""Values read beside their labels: party names, invoice numbers, tax ids, dates and the
currency, with the rule that orders numeric dates such as 11/03/2026. No Django.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from vision.ocr.invoice_text import Label, party_name, plausible_party
from vision.ocr.invoice_types import AMBIGUOUS_DATE_FACTOR, CHECK_FAILED_FACTOR, Flag
from vision.ocr.labels import ADDRESS, fix_legal_form
from vision.ocr.lines import OcrResult
from vision.ocr.normalize import detect_currency, find_amounts, parse_date, unify
from vision.ocr.taxid import check_tax_id

if TYPE_CHECKING:
    from vision.ocr.invoice_page import PageReader

# A series prefix of letters may stand apart ("FT 2024/88", Portugal's legal form of a number).
NUMBER = r"(?:[A-Z]{1,4} (?=[A-Za-z0-9\-/_.]*\d))?[A-Za-z0-9][A-Za-z0-9\-/_.]*\d[A-Za-z0-9\-/_.]*"
_TAX_ID = r"[A-Z0-9][A-Z0-9\-. ]{5,}[A-Z0-9]"
# A part of an identifier made of letters and only the digits OCR mistakes for letters ("S0" in
# "S0-43406-B"): one of the two readings is wrong, and only the reviewer can tell which.
_LOOKALIKE_SEGMENT = re.compile(
    r"(?<![A-Za-z0-9])(?=[A-Za-z]*[0158])(?=[0158]*[A-Za-z])[A-Za-z0158]+(?![A-Za-z0-9])"
)
_NUMERIC_DATE = re.compile(r"(?<!\d)(\d{1,2})[/.-](\d{1,2})[/.-](\d{4}|\d{2})(?!\d)")


def date_order(ocrs: list[OcrResult], currency: str | None) -> tuple[bool, bool]:
    """(day first?, settled by the document itself?) for numeric dates such as 11/03/2026.

    A numeric date on any page whose first number exceeds 12 is day-first, whose second does is
    month-first: that settles it. Otherwise the currency's convention decides (USD month-first,
    everything else day-first) and ambiguous dates are flagged."""
    for ocr in ocrs:
        for line in ocr.lines:
            for m in _NUMERIC_DATE.finditer(unify(line.text)):
                if int(m[1]) > 12 and int(m[2]) <= 12:
                    return True, True
                if int(m[2]) > 12 and int(m[1]) <= 12:
                    return False, True
    return currency != "USD", False


def read_text(reader: PageReader, label: Label, name: str, pattern: str | None = None) -> None:
    """Record `name` from the first place beside `label` that holds it: a match of `pattern`
    (an invoice number, a tax id), or without one a text that can be a party's name."""
    for line, start, end, source in reader.candidates(label):
        chunk = line.text[start:end]
        if pattern:
            m = re.search(pattern, unify(chunk))
            if not m:
                continue
            reader.record(name, m.group().strip(" .-"), line, start + m.start(), start + m.end(), source)
        else:
            name_text = party_name(chunk)
            if not re.search(r"[^\W\d_]{2}", name_text) or ADDRESS.search(name_text):
                continue
            if not plausible_party(name_text):
                continue
            offset = chunk.find(name_text)
            reader.record(
                name,
                fix_legal_form(name_text),
                line,
                start + offset,
                start + offset + len(name_text),
                source,
            )
        return


def read_date(reader: PageReader, label: Label, name: str) -> None:
    """Record the first date beside `label`, flagged when its day and month could be swapped and
    the document does not settle the order."""
    for line, start, end, source in reader.candidates(label):
        chunk = line.text[start:end]
        value = parse_date(chunk, dayfirst=reader.dayfirst)
        if value is None:
            continue
        found = reader.record(name, value, line, start, end, source)
        m = _NUMERIC_DATE.search(unify(chunk))
        ambiguous = m is not None and int(m[1]) <= 12 and int(m[2]) <= 12 and int(m[1]) != int(m[2])
        if found and ambiguous and not reader.order_settled:
            found.confidence *= AMBIGUOUS_DATE_FACTOR
            order = "day-first" if reader.dayfirst else "month-first"
            reader.result.flags.append(
                Flag(
                    name,
                    "ambiguous_date",
                    f"'{chunk.strip()}' could be day- or month-first; read {order} by the currency",
                )
            )
        return


def read_tax_ids(reader: PageReader) -> None:
    """A tax id belongs to the party whose name or label comes last before it."""
    anchors = sorted(
        (reader.lines.index(reader.found_on[p]), p) for p in ("seller", "buyer") if p in reader.found_on
    )
    for label in reader.labels:
        if label.field != "tax_id":
            continue
        before = [party for index, party in anchors if index <= label.index]
        party = before[-1] if before else "seller"
        if f"{party}_tax_id" in reader.result.fields:
            party = "buyer" if party == "seller" else "seller"
        read_text(reader, label, f"{party}_tax_id", _TAX_ID)
        name = f"{party}_tax_id"
        found = reader.result.fields.get(name)
        if found and sum(c.isdigit() for c in found.value) < 4:
            del reader.result.fields[name]
        elif found and (checked := check_tax_id(found.value)) is not None and not checked.valid:
            found.confidence *= CHECK_FAILED_FACTOR
            reader.result.flags.append(
                Flag(
                    name,
                    "invalid_tax_id",
                    f"'{found.value}' is not a valid {checked.kind.replace('_', ' ')} number: its check digits do not match",
                )
            )


def read_currency(reader: PageReader) -> None:
    """The code or symbol printed with the totals, else with any amount, else anywhere."""
    if "currency" in reader.result.fields:
        return
    for name in ("total", "subtotal", "tax"):
        if name not in reader.found_on:
            continue
        row = reader.found_on[name].row
        for line in reader.rows.get(row, []):
            if code := detect_currency(line.text):
                reader.record("currency", code, line, 0, len(line.text), "symbol")
                reader.result.fields["currency"].box = reader.result.fields[name].box
                return
    for line in reader.lines:
        if line.row in reader.header_rows:
            continue
        if (code := detect_currency(line.text)) and find_amounts(line.text):
            reader.record("currency", code, line, 0, len(line.text), "page_symbol")
            return
    for line in reader.lines:  # a code in the text, beside no amount: a weak sign
        if code := detect_currency(line.text):
            reader.record("currency", code, line, 0, len(line.text), "page_word")
            return


def flag_lookalikes(reader: PageReader) -> None:
    """Flag an invoice number whose letters mix with digits OCR takes for them."""
    number = reader.result.fields.get("invoice_number")
    if number is not None and _LOOKALIKE_SEGMENT.search(number.value):
        number.confidence *= AMBIGUOUS_DATE_FACTOR
        reader.result.flags.append(
            Flag(
                "invoice_number",
                "lookalike_characters",
                f"'{number.value}' mixes letters with digits OCR confuses with them (0/O, 1/I, 5/S, 8/B)",
            )
        )
