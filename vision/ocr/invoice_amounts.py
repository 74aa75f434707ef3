"""Subtotal, tax and total beside their labels: each label's amount is a candidate, and the choice
prefers the first ones in reading order unless others add up; tax rates printed beside the tax.
No Django.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import TYPE_CHECKING

from vision.ocr.invoice_text import Label
from vision.ocr.invoice_types import AMBIGUOUS_DATE_FACTOR, AMOUNT_FIELDS, TOLERANCE, Flag
from vision.ocr.labels import PERCENT
from vision.ocr.normalize import CURRENCY_SYMBOLS, find_amounts, money, unify

if TYPE_CHECKING:
    from vision.ocr.invoice_page import PageReader


def read_amount(reader: PageReader, label: Label, name: str) -> None:
    """Note the label's amount as a candidate for `name`; `_choose_amounts` decides."""
    found = []
    for line, start, end, source in reader.candidates(label):
        amount = last_amount(line.text[start:end])
        if amount is not None:
            found.append((amount, line, start, source))
            if source != "right":
                break
    # Cells right of a label hold a row of figures ("Total | 1 | 278.61 | 40.39 | 319.00"): the
    # label's amount is the last of them, the one with cents before a bare count.
    right = [x for x in found if x[3] == "right"]
    if right and found[0][3] == "right":
        cents = [x for x in right if re.search(r"[.,]\d{2}$", x[1].text[x[2] + x[0][1] : x[2] + x[0][2]])]
        found = [(cents or right)[-1]]
    if found:
        (value, s, e), line, start, source = found[0]
        reader.amounts.setdefault(name, []).append((money(value), line, start + s, start + e, source))


def choose_amounts(reader: PageReader) -> None:
    """Subtotal, tax and total from their labels' candidates: the first of each in reading
    order, unless another choice adds up (subtotal + tax = total) where the first ones do not:
    a page may print an "incl. VAT" subtotal beside the net amount, or a second total."""
    names = [n for n in AMOUNT_FIELDS if n not in reader.result.fields]
    options = {n: reader.amounts.get(n, [])[:4] for n in names}
    chosen = {n: opts[0] for n, opts in options.items() if opts}
    fixed = {n: reader.result.fields[n].value for n in AMOUNT_FIELDS if n in reader.result.fields}

    def value(name: str, pick: dict) -> Decimal | None:
        return fixed.get(name, pick[name][0] if name in pick else None)

    def adds_up(pick: dict) -> bool:
        sub, tax, total = (value(n, pick) for n in AMOUNT_FIELDS)
        return None not in (sub, tax, total) and abs(sub + tax - total) <= TOLERANCE

    if not adds_up(chosen) and all(n in fixed or options.get(n) for n in AMOUNT_FIELDS):
        best = None
        for sub in options.get("subtotal") or [None]:
            for tax in options.get("tax") or [None]:
                for total in options.get("total") or [None]:
                    pick = {
                        n: c for n, c in zip(AMOUNT_FIELDS, (sub, tax, total), strict=True) if c is not None
                    }
                    if adds_up(pick) and (value("tax", pick) or 0) > 0:
                        rank = sum(options[n].index(c) for n, c in pick.items())
                        if best is None or rank < best[0]:
                            best = (rank, pick)
        if best is not None:
            chosen = best[1]
    for name, (amount, line, start, end, source) in chosen.items():
        reader.record(name, amount, line, start, end, source)
    for name in names:  # another label gave a different amount: the reviewer should know
        others = {c[0] for c in options.get(name, [])} - {chosen[name][0]} if name in chosen else set()
        if others and not adds_up(chosen):
            found = reader.result.fields[name]
            found.confidence *= AMBIGUOUS_DATE_FACTOR
            reader.result.flags.append(
                Flag(
                    name,
                    "ambiguous_amount",
                    f"other {name} amounts on the page: {', '.join(str(x) for x in sorted(others))}",
                )
            )


def read_rate(reader: PageReader, label: Label) -> None:
    for m in PERCENT.finditer(unify(label.line.text[label.start : label.value_end + 8])):
        rate = Decimal(m[1].replace(",", ".")) / 100
        if 0 < rate < Decimal("0.5"):
            reader.rates.append(rate)


def last_amount(chunk: str) -> tuple[Decimal, int, int] | None:
    """The amount a label's value holds: the last number that is not a percentage, preferring
    one with decimals (a total) over a bare integer (a count, a day); its span includes a
    currency symbol or code glued before it."""
    found = [
        a for a in find_amounts(chunk, spaced=True) if not chunk[a[2] : a[2] + 2].strip().startswith("%")
    ]
    if not found:
        return None
    with_cents = [a for a in found if re.search(r"[.,]\d{2}$", chunk[a[1] : a[2]])]
    value, s, e = (with_cents or found)[-1]
    while s > 0 and not chunk[s - 1].isspace() and chunk[s - 1] not in ":：|":
        s -= 1
    if s > 0 and chunk[s - 1] == " " and chunk[:s].rstrip()[-1:] in CURRENCY_SYMBOLS:
        s -= 2
    return value, max(s, 0), e
