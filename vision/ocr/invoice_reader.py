"""One page through the layout extractor: find its labels, then run the readers in order (item
table, fapiao grid, values beside labels, amounts, unlabelled parties, tax ids, currency) and
flag what is missing. No Django.
"""

from __future__ import annotations

import re

from vision.ocr.invoice_amounts import choose_amounts, read_amount, read_rate
from vision.ocr.invoice_fapiao import read_fapiao
from vision.ocr.invoice_page import PageReader
from vision.ocr.invoice_parties import buyer_from_address_block, seller_from_heading
from vision.ocr.invoice_table import read_table
from vision.ocr.invoice_text import Label
from vision.ocr.invoice_types import AMOUNT_FIELDS, DATE_FIELDS, Flag, InvoiceExtraction
from vision.ocr.invoice_values import (
    NUMBER,
    flag_lookalikes,
    read_currency,
    read_date,
    read_tax_ids,
    read_text,
)
from vision.ocr.labels import INVOICE_TITLE, LABEL_RE
from vision.ocr.normalize import detect_currency

_LABEL_FIELD = {"tax_total": "tax"}  # label groups that name another group's field
_QUALIFIER = re.compile(
    r"(?:\b(?:incl|inkl|including|inclusive|inklusive|excl|exkl|excluding|exclusive|exklusive|zzgl|zuz[üu]glich|"
    r"hors|avec|sans|con|sin|com|sem|met|zonder)\.?)\s*$",
    re.I,
)


def read_page(reader: PageReader) -> InvoiceExtraction:
    """Read one page: the item table, then every label and the value beside it, the fapiao grid,
    the amounts, the parties no label names, the tax ids and the currency, then the flags."""
    read_table(reader)
    for index, line in enumerate(reader.lines):
        if line.row in reader.header_rows:
            continue
        for m in LABEL_RE.finditer(line.text):
            kind = _LABEL_FIELD.get(m.lastgroup or "", m.lastgroup or "")
            # "Gesamtsumme (inkl. USt)", "Total (excl. VAT)": the tax word qualifies the label
            # before it and is no label of its own
            previous = reader.labels[-1] if reader.labels and reader.labels[-1].line is line else None
            if kind == "tax" and previous and _QUALIFIER.search(line.text[previous.end : m.start()]):
                continue
            reader.labels.append(Label(kind, line, index, m.start(), m.end(), 0))
    for n, label in enumerate(reader.labels):
        following = reader.labels[n + 1] if n + 1 < len(reader.labels) else None
        same = following is not None and following.line is label.line
        label.value_end = following.start if same else len(label.line.text)
    read_fapiao(reader)
    for label in reader.labels:
        kind = label.field
        if kind == "invoice_number":
            read_text(reader, label, kind, NUMBER)
        elif kind in DATE_FIELDS:
            read_date(reader, label, kind)
        elif kind in AMOUNT_FIELDS:
            if label.line.row in reader.table_rows:
                continue
            if kind == "tax":
                read_rate(reader, label)
            read_amount(reader, label, kind)
        elif kind in ("seller", "buyer"):
            read_text(reader, label, kind)
        elif kind == "currency":
            for line, start, end, _source in reader.candidates(label):
                if code := detect_currency(line.text[start:end]):
                    reader.record("currency", code, line, start, end, "label")
                    break
    choose_amounts(reader)
    seller_from_heading(reader)
    buyer_from_address_block(reader)
    read_tax_ids(reader)
    read_currency(reader)
    for party in ("seller", "buyer"):
        if party not in reader.result.fields and any(x.field == party for x in reader.labels):
            reader.result.flags.append(
                Flag(party, "missing", f"a {party} label is on the page but no name was read")
            )
    # An invoice is addressed to someone; a receipt often is not. A page titled as an invoice
    # with no buyer read has a garbled or unread buyer label, not a blank one.
    titled = any(INVOICE_TITLE.match(line.text.strip()) for line in reader.lines)
    if (
        titled
        and "buyer" not in reader.result.fields
        and not any(f.field == "buyer" for f in reader.result.flags)
    ):
        reader.result.flags.append(
            Flag("buyer", "missing", "the page is titled an invoice but no buyer was read")
        )
    flag_lookalikes(reader)
    return reader.result
