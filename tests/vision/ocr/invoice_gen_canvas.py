"""The invoice generator's drawing surface: the fonts, a `Canvas` page (text, boxes and rules on a
PIL image) and the per-invoice `Style` (labels, amount, currency and date formats) every layout
draws with."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from tests.vision.ocr.invoice_gen_words import (
    BUYER_LABELS,
    DATE_LABELS,
    DUE_LABELS,
    LOCALES,
    NUMBER_LABELS,
    OTHER_REFS,
    SELLER_LABELS,
    SUBTOTAL_LABELS,
    TAX_LABELS,
    TOTAL_LABELS,
    date_format,
)

A4 = (1240, 1754)  # A4 at 150 dpi

FONTS = {
    "sans": "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "sans_bold": "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf",
    "serif": "/usr/share/fonts/truetype/dejavu/DejaVuSerif.ttf",
    "serif_bold": "/usr/share/fonts/truetype/dejavu/DejaVuSerif-Bold.ttf",
    "condensed": "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed.ttf",
    "condensed_bold": "/usr/share/fonts/truetype/dejavu/DejaVuSansCondensed-Bold.ttf",
    "mono": "/usr/share/fonts/truetype/dejavu/DejaVuSansMono.ttf",
    "mono_bold": "/usr/share/fonts/truetype/dejavu/DejaVuSansMono-Bold.ttf",
    "cjk": "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
}


def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    path = FONTS[name]
    if not Path(path).is_file():
        raise RuntimeError(f"font {path} missing: install fonts-dejavu-core fonts-wqy-zenhei")
    return ImageFont.truetype(path, size)


class Canvas:
    def __init__(self, size: tuple[int, int], family: str) -> None:
        self.image = Image.new("RGB", size, "white")
        self.draw = ImageDraw.Draw(self.image)
        self.family = family

    def face(self, size: int, bold: bool = False) -> ImageFont.FreeTypeFont:
        if self.family == "cjk":
            return _font("cjk", size)
        return _font(f"{self.family}_bold" if bold else self.family, size)

    def text(
        self, x: float, y: float, text: str, size: int = 22, *, bold: bool = False, align: str = "left"
    ) -> float:
        """Draw `text`; returns its right edge. `align` is left, right (x is the right edge) or center."""
        face = self.face(size, bold)
        width = self.draw.textlength(text, font=face)
        if align == "right":
            x -= width
        elif align == "center":
            x -= width / 2
        self.draw.text((x, y), text, font=face, fill=(25, 25, 35))
        return x + width

    def width(self, text: str, size: int = 22, bold: bool = False) -> float:
        return self.draw.textlength(text, font=self.face(size, bold))

    def rect(self, box: tuple[float, float, float, float], width: int = 2) -> None:
        self.draw.rectangle(box, outline=(90, 90, 100), width=width)

    def hline(self, x0: float, x1: float, y: float, width: int = 2) -> None:
        self.draw.line((x0, y, x1, y), fill=(110, 110, 120), width=width)

    def vline(self, x: float, y0: float, y1: float, width: int = 2) -> None:
        self.draw.line((x, y0, x, y1), fill=(110, 110, 120), width=width)


@dataclass
class Style:
    """Per-invoice choices every layout draws with."""

    rng: random.Random
    currency: str
    amount_style: str  # us 1,234.56 | eu 1.234,56 | plain 1234.56
    currency_place: str  # prefix_symbol | prefix_code | suffix_symbol | suffix_code | total_only
    date_format: str
    tax_rate: Decimal
    labels: dict[str, str]

    def number(self, value: Decimal) -> str:
        text = f"{value:,.2f}"
        if self.amount_style == "eu":
            return text.replace(",", "_").replace(".", ",").replace("_", ".")
        if self.amount_style == "plain":
            return text.replace(",", "")
        return text

    def money(self, value: Decimal, *, total: bool = False) -> str:
        symbol, code, _, _ = LOCALES[self.currency]
        text = self.number(value)
        place = self.currency_place
        if place == "total_only":
            place = "suffix_code" if total else "none"
        return {
            "prefix_symbol": f"{symbol}{text}",
            "prefix_code": f"{code} {text}",
            "suffix_symbol": f"{text} {symbol}",
            "suffix_code": f"{text} {code}",
            "none": text,
        }[place]

    def day(self, value: date) -> str:
        return value.strftime(self.date_format).replace(" 0", " ")


def make_style(rng: random.Random, currency: str, rate: Decimal) -> Style:
    _, _, amount_style, order = LOCALES[currency]
    if currency == "EUR" and rng.random() < 0.3:
        amount_style = "us"  # Irish and Dutch invoices print 1,234.56 €
    if rng.random() < 0.15:
        amount_style = "plain"
    place = rng.choice(["prefix_symbol", "prefix_code", "suffix_symbol", "suffix_code", "total_only"])
    r = f"{rate * 100:.0f}"
    labels = {
        "number": rng.choice(NUMBER_LABELS),
        "date": rng.choice(DATE_LABELS),
        "due": rng.choice(DUE_LABELS),
        "subtotal": rng.choice(SUBTOTAL_LABELS),
        "tax": rng.choice(TAX_LABELS).format(r=r),
        "total": rng.choice(TOTAL_LABELS),
        "buyer": rng.choice(BUYER_LABELS),
        "seller": rng.choice(SELLER_LABELS),
        "ref": rng.choice(OTHER_REFS),
    }
    return Style(rng, currency, amount_style, place, date_format(rng, order), rate, labels)
