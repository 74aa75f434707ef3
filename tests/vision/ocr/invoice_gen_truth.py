"""The invoice generator's ground truth: what a generated invoice says (`Truth`, its `Item`s), the
file made from it (`GeneratedInvoice`), the key fields the extractor is scored on, and the rounding
every amount goes through (`cents`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from PIL import Image

KEY_FIELDS = (
    "invoice_number",
    "invoice_date",
    "due_date",
    "seller",
    "buyer",
    "currency",
    "subtotal",
    "tax",
    "total",
)
BASE_DPI = 150  # pages are drawn at this resolution, then scaled to the damage's dpi


def cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


@dataclass
class Item:
    description: str
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal


@dataclass
class Truth:
    seed: int
    layout: str
    damage: str
    invoice_number: str
    invoice_date: date
    due_date: date | None
    seller: str
    buyer: str | None
    currency: str
    subtotal: Decimal
    tax: Decimal
    total: Decimal
    items: list[Item] = field(default_factory=list)
    pages: int = 1
    date_format: str = ""
    dpi: int = BASE_DPI
    jpeg_quality: int | None = None
    rotation: float = 0.0

    def key_fields(self) -> dict[str, str | None]:
        """The key fields as the extractor's JSON spells them: ISO dates, cents as strings."""
        return {
            "invoice_number": self.invoice_number,
            "invoice_date": self.invoice_date.isoformat(),
            "due_date": self.due_date.isoformat() if self.due_date else None,
            "seller": self.seller,
            "buyer": self.buyer,
            "currency": self.currency,
            "subtotal": str(self.subtotal),
            "tax": str(self.tax),
            "total": str(self.total),
        }


@dataclass
class GeneratedInvoice:
    truth: Truth
    data: bytes  # the file a user would upload
    mime: str  # image/png | image/jpeg | application/pdf
    pages: list[Image.Image]  # the damaged pages, as in `data`

    @property
    def name(self) -> str:
        return f"{self.truth.seed}-{self.truth.layout}-{self.truth.damage}"
