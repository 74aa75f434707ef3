"""Invoice fields from OCR lines by layout: labels, neighbours, table columns and fapiao grid cells.

The first of the two layers that check each other (the VLM in `vision.ocr.vlm` is the second).
It needs no model beyond OCR, runs on every machine, and is what tests and benchmarks measure.
No Django.

Steps, per page: find label matches in every line (synonym tables in `vision.ocr.labels`); read
the value after the label on the same line, else in the cells right of it on the same row, else in
the cell below it; find the item table by its header row and assign cells to columns by x
position; read a fapiao's party blocks (名称 beside 购买方/销售方) and its 合计 / 价税合计 rows,
whose 大写 amount checks the 小写 one. Over the pages of a document: identity fields (number,
dates, parties, currency) from the first page that has them, amounts from the last. Then
normalise, infer a missing amount from the other two, run the arithmetic checks, and give every
field a box, a confidence and, where in doubt, a flag with the reason.

Dates like 11/03/2026 are read by one rule (`_date_order`): another numeric date on the document
whose day is above 12 settles the order; failing that the currency does (USD month-first, every
other currency day-first), and the date is flagged `ambiguous_date` with a lower confidence.

Where each step lives: `invoice_types` (field names, confidence rules, the data types and their
JSON), `invoice_reader` (one page: labels, then the readers in order) with `invoice_page` (the
page's state and geometry), `invoice_text` (label values, party names), `invoice_values`
(numbers, dates, tax ids, currency), `invoice_amounts`, `invoice_parties` (unlabelled seller and
buyer), `invoice_table`, `invoice_fapiao`; `invoice_checks` (arithmetic checks, inferred amounts,
flags). This module merges the pages and is the public entry.
"""

from __future__ import annotations

from decimal import Decimal

from vision.ocr.invoice_checks import (
    arithmetic_checks,
    checks_from_json,
    flag_doubts,
    iban_flags,
    infer_amounts,
    invoice_checks,
)
from vision.ocr.invoice_page import PageReader
from vision.ocr.invoice_reader import read_page
from vision.ocr.invoice_text import plausible_party
from vision.ocr.invoice_types import (
    AMBIGUOUS_DATE_FACTOR,
    AMOUNT_FIELDS,
    CHECK_FAILED_FACTOR,
    DATE_FIELDS,
    IDENTITY_FIELDS,
    INFERRED_CONFIDENCE,
    LOW_CONFIDENCE,
    REQUIRED,
    SCALAR_FIELDS,
    SOURCE_TRUST,
    TOLERANCE,
    Check,
    Field,
    Flag,
    InvoiceExtraction,
    Item,
    json_value,
)
from vision.ocr.invoice_values import date_order
from vision.ocr.lines import OcrResult
from vision.ocr.normalize import detect_currency

__all__ = [
    "AMBIGUOUS_DATE_FACTOR",
    "AMOUNT_FIELDS",
    "CHECK_FAILED_FACTOR",
    "DATE_FIELDS",
    "IDENTITY_FIELDS",
    "INFERRED_CONFIDENCE",
    "LOW_CONFIDENCE",
    "REQUIRED",
    "SCALAR_FIELDS",
    "SOURCE_TRUST",
    "TOLERANCE",
    "Check",
    "Field",
    "Flag",
    "InvoiceExtraction",
    "Item",
    "arithmetic_checks",
    "checks_from_json",
    "extract_invoice",
    "extract_invoice_pages",
    "invoice_checks",
    "json_value",
    "plausible_party",
]


def extract_invoice(ocr: OcrResult) -> InvoiceExtraction:
    """The layout extractor on one page: fields, items, checks and flags."""
    return extract_invoice_pages([ocr])


def extract_invoice_pages(ocrs: list[OcrResult]) -> InvoiceExtraction:
    """The layout extractor on a document's pages: identity fields from the first page that has
    them, amounts from the last (totals close a multi-page invoice), items in page order."""
    currency = next((c for o in ocrs if (c := detect_currency(o.text))), None)
    dayfirst, settled = date_order(ocrs, currency)
    readers = [
        PageReader(ocr, page=n, dayfirst=dayfirst, order_settled=settled)
        for n, ocr in enumerate(ocrs, start=1)
    ]
    pages = [read_page(reader) for reader in readers]
    result = InvoiceExtraction()
    for page in pages:
        result.items.extend(page.items)
        result.flags.extend(
            f for f in page.flags if f.field in IDENTITY_FIELDS and f.field not in result.fields
        )
        for name in IDENTITY_FIELDS:
            if name in page.fields and name not in result.fields:
                result.fields[name] = page.fields[name]
    rates: list[Decimal] = []
    words_total = None
    for reader, page in reversed(list(zip(readers, pages, strict=True))):
        if any(name in page.fields for name in AMOUNT_FIELDS):
            for name in AMOUNT_FIELDS:
                if name in page.fields:
                    result.fields[name] = page.fields[name]
            rates = reader.rates
            words_total = reader.words_total[0] if reader.words_total else None
            break
    infer_amounts(result)
    result.rates, result.words_total = rates, words_total
    result.checks = invoice_checks(result)
    flag_doubts(result)
    result.flags.extend(iban_flags(ocrs))
    return result
