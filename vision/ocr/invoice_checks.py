"""The checks of an invoice and the doubts they raise: qty × unit = amount, the items' sum, subtotal
+ tax = total, the printed tax rate, a fapiao's total in words; an amount inferred from the other
two; the flags (missing, check_failed, low_confidence) a reviewer is shown; and the IBANs printed
on the pages, an invalid one flagged (`invalid_iban`: a misread, or a changed bank account).

`invoice_checks` is the one function the pipeline and a reviewer's correction both run. No Django.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from vision.ocr.invoice_types import (
    AMOUNT_FIELDS,
    CHECK_FAILED_FACTOR,
    INFERRED_CONFIDENCE,
    LOW_CONFIDENCE,
    REQUIRED,
    TOLERANCE,
    Check,
    Field,
    Flag,
    InvoiceExtraction,
    Item,
)
from vision.ocr.lines import OcrResult
from vision.ocr.normalize import money
from vision.ocr.taxid import find_ibans

IBAN_FIELD = "iban"  # the page flag's field: the IBAN is not one of the invoice's fields


def invoice_checks(result: InvoiceExtraction) -> list[Check]:
    """Every check of an invoice, from its fields, items and check inputs: the one function the
    pipeline and a reviewer's correction (vision.services.extractions) both run."""
    return arithmetic_checks(
        items=result.items,
        subtotal=result.value("subtotal"),
        tax=result.value("tax"),
        total=result.value("total"),
        rates=result.rates,
        words_total=result.words_total,
    )


def checks_from_json(values: dict[str, Any], inputs: dict[str, Any]) -> list[Check]:
    """`invoice_checks` over stored JSON: an extraction's fields (decimal strings, items as
    dicts) and its `check_inputs`."""

    def dec(value: Any) -> Decimal | None:
        if value in (None, ""):
            return None
        try:
            return Decimal(str(value))
        except ArithmeticError:
            return None

    result = InvoiceExtraction(
        fields={
            name: Field(dec(values.get(name)), None, 1.0, "reviewer")
            for name in AMOUNT_FIELDS
            if dec(values.get(name)) is not None
        },
        items=[
            Item(
                str(x.get("description") or ""),
                dec(x.get("quantity")),
                dec(x.get("unit_price")),
                dec(x.get("amount")),
                None,
                1.0,
            )
            for x in values.get("items") or []
            if isinstance(x, dict)
        ],
        rates=[r for r in (dec(x) for x in inputs.get("rates") or []) if r is not None],
        words_total=dec(inputs.get("words_total")),
    )
    return invoice_checks(result)


def infer_amounts(result: InvoiceExtraction) -> None:
    """One of subtotal, tax and total missing: compute it from the other two (flagged)."""
    sub, tax, total = (result.value(n) for n in AMOUNT_FIELDS)
    amounts = [x.amount for x in result.items]
    if sub is None and (tax is None or total is None) and amounts and None not in amounts:
        sub = money(sum(amounts, Decimal("0")))
        result.fields["subtotal"] = Field(sub, None, INFERRED_CONFIDENCE, "inferred")
        result.flags.append(
            Flag("subtotal", "inferred", "subtotal not found on the page; the sum of the items")
        )
    inferred = None
    if total is None and sub is not None and tax is not None:
        inferred = ("total", sub + tax)
    elif tax is None and sub is not None and total is not None and total >= sub:
        inferred = ("tax", total - sub)
    elif sub is None and tax is not None and total is not None and total >= tax:
        inferred = ("subtotal", total - tax)
    if inferred:
        name, value = inferred
        result.fields[name] = Field(money(value), None, INFERRED_CONFIDENCE, "inferred")
        result.flags.append(
            Flag(name, "inferred", f"{name} not found on the page; computed from the other amounts")
        )


def flag_doubts(result: InvoiceExtraction) -> None:
    flags = result.flags
    wanted = REQUIRED + (("subtotal", "tax") if "total" in result.fields else ())
    for name in wanted:
        if name not in result.fields:
            flags.append(Flag(name, "missing", f"no {name.replace('_', ' ')} found on the page"))
    for check in result.checks:
        if check.ok:
            continue
        for name in check.fields:
            if name in result.fields:
                result.fields[name].confidence *= CHECK_FAILED_FACTOR
            flags.append(
                Flag(
                    name, "check_failed", f"{check.name}: expected {check.expected}, page says {check.found}"
                )
            )
    for name, found in result.fields.items():
        if found.confidence < LOW_CONFIDENCE and not any(f.field == name for f in flags):
            flags.append(
                Flag(name, "low_confidence", f"confidence {found.confidence:.2f} (found by {found.source})")
            )


def arithmetic_checks(
    *,
    items: list[Item],
    subtotal: Decimal | None,
    tax: Decimal | None,
    total: Decimal | None,
    rates: list[Decimal] | None = None,
    words_total: Decimal | None = None,
) -> list[Check]:
    """qty × unit = amount per item, items sum to the subtotal, subtotal + tax = total, the tax is
    the printed rate of the subtotal, and a fapiao's total in words equals the one in figures.

    When the page has no subtotal, the items are checked against total − tax instead. The tax
    rate check allows one cent per item (taxes rounded per line) and at least one cent.
    """
    checks = []
    for n, item in enumerate(items, start=1):
        if item.quantity is not None and item.unit_price is not None and item.amount is not None:
            expected = money(item.quantity * item.unit_price)
            checks.append(
                Check(
                    f"item_{n}_qty_x_unit",
                    abs(expected - item.amount) <= TOLERANCE,
                    str(expected),
                    str(item.amount),
                    (f"items[{n - 1}]",),
                )
            )
    amounts = [x.amount for x in items if x.amount is not None]
    if amounts and len(amounts) == len(items):
        items_sum = money(sum(amounts, Decimal("0")))
        if (
            subtotal is not None
            and total is not None
            and abs(items_sum - subtotal) > TOLERANCE
            and abs(items_sum - total) <= TOLERANCE
        ):
            # the items are printed with tax included (B2C pages): they sum to the total
            checks.append(Check("items_sum_total", True, str(items_sum), str(total), ("items", "total")))
        elif subtotal is not None:
            checks.append(
                Check(
                    "items_sum_subtotal",
                    abs(items_sum - subtotal) <= TOLERANCE,
                    str(items_sum),
                    str(subtotal),
                    ("items", "subtotal"),
                )
            )
        elif total is not None and tax is not None:
            net = money(total - tax)
            checks.append(
                Check(
                    "items_sum_total_minus_tax",
                    abs(items_sum - net) <= TOLERANCE,
                    str(items_sum),
                    str(net),
                    ("items", "tax", "total"),
                )
            )
    if subtotal is not None and tax is not None and total is not None:
        expected = money(subtotal + tax)
        checks.append(
            Check(
                "subtotal_plus_tax_total",
                abs(expected - total) <= TOLERANCE,
                str(expected),
                str(total),
                ("subtotal", "tax", "total"),
            )
        )
    if rates and subtotal is not None and tax is not None:
        rate = rates[0]
        expected = money(subtotal * rate)
        slack = TOLERANCE * max(1, len(items))
        checks.append(
            Check(
                "tax_rate",
                abs(expected - tax) <= slack,
                f"{expected} ({rate * 100:g}% of {subtotal})",
                str(tax),
                ("subtotal", "tax"),
            )
        )
    if words_total is not None and total is not None:
        checks.append(Check("total_in_words", words_total == total, str(words_total), str(total), ("total",)))
    return checks


def iban_flags(ocrs: list[OcrResult]) -> list[Flag]:
    """One `invalid_iban` flag for each IBAN printed after its label whose check digits, length
    or structure do not hold (python-stdnum), once per number across the pages."""
    flags, seen = [], set()
    for page, ocr in enumerate(ocrs, start=1):
        for line in ocr.lines:
            for found in find_ibans(line.text):
                if found.valid or found.compact in seen:
                    continue
                seen.add(found.compact)
                reason = f"the IBAN '{found.text}' on page {page} is not valid: {found.reason}"
                flags.append(Flag(IBAN_FIELD, "invalid_iban", reason))
    return flags
