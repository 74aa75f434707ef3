"""What the invoice readers produce: the field names, the confidence rules, and the extraction's
data types (`Field`, `Item`, `Check`, `Flag`, `InvoiceExtraction`) with their JSON shape.

Shared by the layout extractor, the VLM cross-check, the e-invoice reader and the review
services. No Django.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from vision.ocr.lines import BBox

SCALAR_FIELDS = (
    "invoice_number",
    "invoice_date",
    "due_date",
    "seller",
    "seller_tax_id",
    "buyer",
    "buyer_tax_id",
    "currency",
    "subtotal",
    "tax",
    "total",
)
AMOUNT_FIELDS = ("subtotal", "tax", "total")
DATE_FIELDS = ("invoice_date", "due_date")
IDENTITY_FIELDS = tuple(f for f in SCALAR_FIELDS if f not in AMOUNT_FIELDS)
REQUIRED = ("invoice_number", "invoice_date", "seller", "total")
LOW_CONFIDENCE = 0.8  # below this a field is flagged for a look
TOLERANCE = Decimal("0.01")  # one cent: printed amounts are rounded per line
AMBIGUOUS_DATE_FACTOR = 0.7  # an ambiguous date read by the currency's convention
CHECK_FAILED_FACTOR = 0.5
INFERRED_CONFIDENCE = 0.6  # an amount computed from the other two, not read

# How much a value found a given way is trusted, times the OCR confidence of its line.
# A seller taken from the page heading is a guess unless it looks like a company name.
SOURCE_TRUST = {
    "same_line": 1.0,
    "right": 0.97,
    "below": 0.92,
    "table": 0.95,
    "grid": 0.97,
    "heading": 0.75,
    "company_heading": 0.9,
    "symbol": 0.95,
    "label": 0.97,
    "page_symbol": 0.8,
    "words": 0.7,
    "legal_line": 0.82,
    "address_block": 0.6,
    "page_word": 0.7,
}


@dataclass
class Field:
    value: Any  # str, date or Decimal
    box: BBox | None  # where the value is on its page
    confidence: float
    source: str  # how it was found: a key of SOURCE_TRUST, "inferred" or "vlm"
    page: int = 1  # page number (1-based) the box is on


@dataclass
class Item:
    description: str
    quantity: Decimal | None
    unit_price: Decimal | None
    amount: Decimal | None
    box: BBox | None
    confidence: float
    page: int = 1


@dataclass
class Check:
    name: str  # item_<n>_qty_x_unit | items_sum_subtotal | items_sum_total_minus_tax | subtotal_plus_tax_total | tax_rate | total_in_words
    ok: bool
    expected: str  # what the other numbers imply
    found: str  # what the page says
    fields: tuple[str, ...]  # the fields the check involves


@dataclass
class Flag:
    field: str
    code: str  # missing | low_confidence | check_failed | ambiguous_date | inferred | vlm_disagrees | vlm_unparseable | ...
    reason: str


@dataclass
class InvoiceExtraction:
    fields: dict[str, Field] = field(default_factory=dict)
    items: list[Item] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    flags: list[Flag] = field(default_factory=list)
    # What the checks read besides the fields: tax rates printed beside the tax, a fapiao's total
    # in words. Stored with the extraction, so a reviewer's correction reruns every check.
    rates: list[Decimal] = field(default_factory=list)
    words_total: Decimal | None = None

    def value(self, name: str) -> Any:
        found = self.fields.get(name)
        return found.value if found else None

    def to_dict(self) -> dict[str, Any]:
        """JSON shape of the command line and the API: field names at the top level, ISO dates,
        amounts as decimal strings, plus items, checks, flags, confidence, box and the page of
        each box."""
        out: dict[str, Any] = {name: json_value(self.value(name)) for name in SCALAR_FIELDS}
        out["items"] = [
            {
                "description": item.description,
                "quantity": json_value(item.quantity),
                "unit_price": json_value(item.unit_price),
                "amount": json_value(item.amount),
                "box": list(item.box) if item.box else None,
                "confidence": round(item.confidence, 3),
                "page": item.page,
            }
            for item in self.items
        ]
        out["checks"] = [
            {"name": c.name, "ok": c.ok, "expected": c.expected, "found": c.found, "fields": list(c.fields)}
            for c in self.checks
        ]
        out["flags"] = [{"field": f.field, "code": f.code, "reason": f.reason} for f in self.flags]
        out["check_inputs"] = {
            "rates": [str(r) for r in self.rates],
            "words_total": json_value(self.words_total),
        }
        out["confidence"] = {name: round(f.confidence, 3) for name, f in self.fields.items()}
        out["box"] = {name: list(f.box) if f.box else None for name, f in self.fields.items()}
        out["field_pages"] = {name: f.page for name, f in self.fields.items()}
        return out


def json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date):
        return value.isoformat()
    return value
