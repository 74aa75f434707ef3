"""The invoice generator's Latin layouts (`right_box`, `label_table`, `stacked`, `receipt`, and
`multipage` as one of the first two over several pages), drawn on a `Canvas` class the caller
passes (pdfgen.born_digital swaps in one that records what is drawn), and the blocks they share:
the item table, the totals, the address and the footer."""

from __future__ import annotations

import random
from decimal import Decimal

from PIL import Image

from tests.vision.ocr.invoice_gen_canvas import A4, Canvas, Style
from tests.vision.ocr.invoice_gen_truth import Item, Truth, cents
from tests.vision.ocr.invoice_gen_words import CITIES, LOCALES, RECEIPT_TOTALS, STREETS, iban, phone


def colon(rng: random.Random, label: str) -> str:
    return label if label.endswith(":") else label + rng.choice([":", ":", ""])


def _item_table(c: Canvas, s: Style, items: list[Item], x0: int, x1: int, y: int, size: int = 21) -> int:
    """Description | Qty | Unit price | Amount; returns the y below the table."""
    heads = s.rng.choice(
        [
            ("Description", "Qty", "Unit price", "Amount"),
            ("Item", "Quantity", "Price", "Total"),
            ("Description", "Qty", "Rate", "Line total"),
        ]
    )
    cols = [x0 + 10, x0 + int((x1 - x0) * 0.58), x0 + int((x1 - x0) * 0.78), x1 - 10]
    c.hline(x0, x1, y - 8)
    c.text(cols[0], y, heads[0], size, bold=True)
    for x, head in zip(cols[1:], heads[1:], strict=True):
        c.text(x, y, head, size, bold=True, align="right")
    y += size + 16
    c.hline(x0, x1, y - 6)
    for item in items:
        y += 10
        c.text(cols[0], y, item.description, size)
        c.text(cols[1], y, str(item.quantity), size, align="right")
        c.text(cols[2], y, s.number(item.unit_price), size, align="right")
        c.text(cols[3], y, s.number(item.amount), size, align="right")
        y += size + 14
    c.hline(x0, x1, y)
    return y + 24


def _totals_right(c: Canvas, s: Style, t: Truth, x_label: int, x_right: int, y: int, size: int = 22) -> int:
    rows = [(colon(s.rng, s.labels["subtotal"]), s.money(t.subtotal), False)]
    rows.append((colon(s.rng, s.labels["tax"]), s.money(t.tax), False))
    if s.rng.random() < 0.35:
        rows.insert(0, ("Previous balance:", s.number(cents(Decimal(s.rng.randint(0, 90000)) / 100)), False))
        rows.insert(1, ("Payments received:", "-" + s.number(Decimal("0")), False))
    rows.append((colon(s.rng, s.labels["total"]), s.money(t.total, total=True), True))
    for label, value, bold in rows:
        c.text(x_label, y, label, size + (3 if bold else 0), bold=bold)
        c.text(x_right, y, value, size + (3 if bold else 0), bold=bold, align="right")
        y += size + 22
    return y


def _footer(c: Canvas, s: Style, x: int, y: int, width: int) -> None:
    rng = s.rng
    lines = [rng.choice(["Thank you for your business.", "Payment by bank transfer.", "Questions? Call us."])]
    if rng.random() < 0.7:
        lines.append(f"IBAN: {iban(rng)}   BIC: {rng.choice(['NWBKGB2L', 'DEUTDEFF', 'BNPAFRPP'])}")
    if rng.random() < 0.6:
        lines.append(f"Tel: {phone(rng)}   Reg. no. {rng.randint(1000000, 9999999)}")
    for line in lines:
        c.text(x, y, line, 18)
        y += 30


def _address(c: Canvas, s: Style, x: int, y: int, size: int = 19) -> int:
    c.text(x, y, f"{s.rng.randint(1, 220)} {s.rng.choice(STREETS)}", size)
    c.text(x, y + size + 8, s.rng.choice(CITIES), size)
    y += 2 * (size + 8)
    if s.rng.random() < 0.6:
        c.text(x, y, f"Tel {phone(s.rng)}", size)
        y += size + 8
    return y


def draw_right_box(
    t: Truth, s: Style, family: str, items: list[list[Item]], *, canvas: type[Canvas]
) -> list[Image.Image]:
    pages = []
    for index, page_items in enumerate(items):
        c = canvas(A4, family)
        last = index == len(items) - 1
        if index == 0:
            c.text(80, 80, t.seller, 34, bold=True)
            _address(c, s, 80, 135)
            c.text(
                1160, 80, s.rng.choice(["INVOICE", "Invoice", "TAX INVOICE"]), 40, bold=True, align="right"
            )
            box = (700, 170, 1160, 170 + 50 * (3 if t.due_date else 2) + 30)
            c.rect(box)
            y = 190
            meta = [(s.labels["number"], t.invoice_number), (s.labels["date"], s.day(t.invoice_date))]
            if t.due_date:
                meta.append((s.labels["due"], s.day(t.due_date)))
            for label, value in meta:
                c.text(720, y, colon(s.rng, label), 21)
                c.text(1140, y, value, 21, align="right")
                y += 50
            if s.rng.random() < 0.5:
                c.text(720, box[3] + 20, f"{s.labels['ref']} {s.rng.randint(10000, 99999)}", 19)
            y = 420
            c.text(80, y, colon(s.rng, s.labels["buyer"]), 21, bold=True)
            c.text(80, y + 36, t.buyer or "", 23)
            _address(c, s, 80, y + 72)
            y = 640
        else:
            c.text(80, 80, t.seller, 26, bold=True)
            c.text(1160, 80, f"{s.labels['number']} {t.invoice_number}", 20, align="right")
            c.text(1160, 115, f"Page {index + 1} of {len(items)}", 18, align="right")
            y = 200
        y = _item_table(c, s, page_items, 80, 1160, y)
        if last:
            y = _totals_right(c, s, t, 700, 1150, y + 10)
            _footer(c, s, 80, max(y + 40, 1500), 1000)
        else:
            c.text(1160, y + 10, "Continued on next page", 19, align="right")
            c.text(80, 1650, f"Page {index + 1} of {len(items)}", 18)
        pages.append(c.image)
    return pages


def draw_label_table(
    t: Truth, s: Style, family: str, items: list[list[Item]], *, canvas: type[Canvas]
) -> list[Image.Image]:
    pages = []
    for index, page_items in enumerate(items):
        c = canvas(A4, family)
        last = index == len(items) - 1
        y = 90
        if index == 0:
            c.text(
                620,
                y,
                s.rng.choice(["INVOICE", "Invoice", "Commercial invoice"]),
                36,
                bold=True,
                align="center",
            )
            y += 90
            rows = [
                (s.rng.choice(["Seller", "Supplier", "From"]), t.seller),
                (s.rng.choice(["Buyer", "Customer", "Bill to"]), t.buyer or ""),
                (s.labels["number"].rstrip(":"), t.invoice_number),
                (s.labels["date"].rstrip(":"), s.day(t.invoice_date)),
            ]
            if t.due_date:
                rows.append((s.labels["due"], s.day(t.due_date)))
            if s.currency_place == "total_only" or s.rng.random() < 0.4:
                rows.append(("Currency", LOCALES[s.currency][1]))
            if s.rng.random() < 0.5:
                rows.append(("Phone", phone(s.rng)))
            x0, xm, x1 = 120, 460, 1120
            for label, value in rows:
                c.rect((x0, y, xm, y + 54))
                c.rect((xm, y, x1, y + 54))
                c.text(x0 + 16, y + 14, label, 21, bold=True)
                c.text(xm + 16, y + 14, value, 21)
                y += 54
            y += 60
        else:
            c.text(120, y, f"{t.seller} - {s.labels['number'].rstrip(':')} {t.invoice_number}", 20)
            y += 80
        y = _item_table(c, s, page_items, 120, 1120, y)
        if last:
            y += 10
            rows = [(s.labels["subtotal"], s.money(t.subtotal)), (s.labels["tax"], s.money(t.tax))]
            rows.append((s.labels["total"], s.money(t.total, total=True)))
            for n, (label, value) in enumerate(rows):
                c.rect((620, y, 880, y + 54))
                c.rect((880, y, 1120, y + 54))
                c.text(636, y + 14, label, 21, bold=n == 2)
                c.text(1104, y + 14, value, 21, bold=n == 2, align="right")
                y += 54
            _footer(c, s, 120, max(y + 60, 1500), 1000)
        else:
            c.text(1120, y + 10, "continued", 19, align="right")
        pages.append(c.image)
    return pages


def draw_stacked(
    t: Truth, s: Style, family: str, items: list[list[Item]], *, canvas: type[Canvas]
) -> list[Image.Image]:
    c = canvas(A4, family)
    c.text(80, 80, t.seller, 36, bold=True)
    y = _address(c, s, 80, 140)
    c.text(1160, 80, "INVOICE", 44, bold=True, align="right")
    y = max(y, 260) + 30
    c.hline(80, 1160, y)
    y += 20
    fields = [
        (s.labels["number"].rstrip(":"), t.invoice_number),
        (s.labels["date"].rstrip(":"), s.day(t.invoice_date)),
    ]
    if t.due_date:
        fields.append((s.labels["due"], s.day(t.due_date)))
    fields.append((s.labels["ref"].rstrip(":"), str(s.rng.randint(10000, 99999))))
    for n, (label, value) in enumerate(fields):
        x = 80 + n * 270
        c.text(x, y, label.upper(), 17, bold=True)
        c.text(x, y + 32, value, 22)
    y += 100
    c.hline(80, 1160, y)
    y += 30
    c.text(80, y, s.labels["buyer"].upper(), 17, bold=True)
    c.text(80, y + 32, t.buyer or "", 24)
    _address(c, s, 80, y + 70)
    y += 220
    y = _item_table(c, s, items[0], 80, 1160, y)
    y = _totals_right(c, s, t, 700, 1150, y + 10)
    _footer(c, s, 80, max(y + 40, 1500), 1000)
    return [c.image]


def draw_receipt(
    t: Truth, s: Style, family: str, items: list[list[Item]], *, canvas: type[Canvas]
) -> list[Image.Image]:
    lines = len(items[0]) + 18
    c = canvas((620, 140 + lines * 40), "mono")
    size = 20
    y = 50
    c.text(310, y, t.seller, 26, bold=True, align="center")
    y += 46
    c.text(310, y, f"{s.rng.randint(1, 220)} {s.rng.choice(STREETS)}", 18, align="center")
    y += 30
    c.text(310, y, f"Tel {phone(s.rng)}", 18, align="center")
    y += 50
    c.text(40, y, f"{colon(s.rng, s.labels['number'])} {t.invoice_number}", size)
    y += 32
    c.text(
        40,
        y,
        f"{colon(s.rng, s.labels['date'])} {s.day(t.invoice_date)}  {s.rng.randint(8, 20)}:{s.rng.randint(0, 59):02d}",
        size,
    )
    y += 32
    if t.buyer:
        c.text(40, y, f"Customer: {t.buyer}", size)
        y += 32
    c.text(40, y, "-" * 44, size)
    y += 32
    for item in items[0]:
        label = f"{item.quantity} x {item.description}" if item.quantity != 1 else item.description
        c.text(40, y, label, size)
        c.text(580, y, s.number(item.amount), size, align="right")
        y += 32
    c.text(40, y, "-" * 44, size)
    y += 36
    r = f"{t.tax / t.subtotal * 100:.0f}" if t.subtotal else "0"
    for label, value, bold in (
        (s.rng.choice(["Subtotal", "Sub-total", "Net"]), s.number(t.subtotal), False),
        (s.rng.choice([f"VAT {r} %", f"VAT {r}%", f"Tax {r}%"]), s.number(t.tax), False),
        (s.rng.choice(RECEIPT_TOTALS), s.money(t.total, total=True), True),
    ):
        c.text(40, y, label, size + (4 if bold else 0), bold=bold)
        c.text(580, y, value, size + (4 if bold else 0), bold=bold, align="right")
        y += 36 if not bold else 44
    paid = s.rng.choice(["Card", "Cash", "Visa"])
    tendered = t.total if paid != "Cash" else cents(t.total + Decimal(s.rng.randint(0, 2000)) / 100)
    c.text(40, y, paid, size)
    c.text(580, y, s.number(tendered), size, align="right")
    y += 32
    c.text(40, y, "Change", size)
    c.text(580, y, s.number(cents(tendered - t.total)), size, align="right")
    y += 50
    c.text(
        310,
        y,
        f"VAT Reg No: GB {s.rng.randint(100, 999)} {s.rng.randint(1000, 9999)} {s.rng.randint(10, 99)}",
        17,
        align="center",
    )
    y += 30
    c.text(310, y, "Thank you!", 18, align="center")
    return [c.image.crop((0, 0, 620, min(c.image.height, y + 60)))]
