"""A seeded generator of invoice test pages with their ground truth, drawn with PIL.

`generate(seed)` makes one invoice: a layout, label wording, date and number formats, currency,
line items, distractor numbers and a damage class, all drawn from `random.Random(seed)`, so a
page is reproducible and its truth exact. `sample(n, seed)` spreads n invoices evenly over the
layouts and damage classes. Nothing here is tuned to the extractor; the wording tables are the
variety real invoices show, and the extractor is expected to read them through its own synonym
tables and geometry, not these strings.

Layouts (`LAYOUTS`):
- `right_box`: seller block top left, the meta fields (number, dates) in a framed box on the right,
  "Bill to" below, an item table, totals bottom right.
- `label_table`: a two-column label | value grid for parties and meta fields, items, and the
  totals as label | value rows too.
- `stacked`: a band of small capital labels with their values *below* them.
- `fapiao_grid`, `fapiao_stacked`: Chinese VAT fapiao (数电发票 with 购买方/销售方 side by side,
  and the older form with the parties stacked), 发票号码, 开票日期 as 2026年03月11日, items with
  税率/税额 columns, 合计, 价税合计 with 大写 and (小写)¥.
- `receipt`: a narrow till receipt, Subtotal, VAT 20 %, Amount due / Balance due / Grand total,
  card payment and change below.
- `multipage`: a `right_box`/`label_table` invoice over two PDF pages, totals on the last.

Damage classes (`DAMAGES`): `clean` (150 dpi PNG), `scan` (100-150 dpi, slight tilt, grey paper,
noise, JPEG 50-60) and `photo` (±3° rotation, perspective skew, uneven lighting, blur, noise,
100-150 dpi, JPEG 35-60).
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

LAYOUTS = ("right_box", "label_table", "stacked", "fapiao_grid", "fapiao_stacked", "receipt", "multipage")
DAMAGES = ("clean", "scan", "photo")
KEY_FIELDS = (
    "invoice_number", "invoice_date", "due_date", "seller", "buyer", "currency", "subtotal", "tax", "total",
)  # fmt: skip
BASE_DPI = 150  # pages are drawn at this resolution, then scaled to the damage's dpi
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


def cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


# -- wording -------------------------------------------------------------------------------------

NUMBER_LABELS = [
    "Invoice No.",
    "Invoice #",
    "Inv. Number",
    "Bill No.",
    "Invoice Number",
    "Invoice no:",
    "Invoice No",
]
DATE_LABELS = ["Date", "Invoice date", "Issued", "Date of issue", "Issue date", "Invoice Date:"]
DUE_LABELS = ["Due date", "Payment due", "Due", "Due by", "Pay by"]
SUBTOTAL_LABELS = ["Subtotal", "Sub-total", "Net amount", "Total excl. VAT", "Net total"]
TAX_LABELS = ["VAT {r} %", "VAT ({r}%)", "Tax ({r}%)", "Sales tax {r}%", "GST {r}%", "Tax"]
TOTAL_LABELS = ["Total", "Total due", "Amount due", "Balance due", "Grand total", "Total amount", "TOTAL"]
RECEIPT_TOTALS = ["Amount due", "Balance due", "Grand total", "TOTAL", "Total"]
BUYER_LABELS = ["Bill to", "Billed to", "Customer", "Sold to", "Invoice to", "Buyer"]
SELLER_LABELS = ["From", "Seller", "Supplier"]
OTHER_REFS = ["Order No.", "PO Number", "Customer No.", "Reference", "Account No."]

EN_FIRST = [
    "Acme", "Northwind", "Blue Harbor", "Kestrel", "Silverline", "Oakridge", "Redwood", "Brightpath",
    "Ironbridge", "Lakeside", "Meridian", "Summit", "Copperfield", "Greenleaf", "Harborview",
    "Pinecrest", "Westgate", "Falcon", "Riverside", "Starling", "Cobalt", "Juniper", "Alder", "Orion",
]  # fmt: skip
EN_SECOND = [
    "Supplies", "Traders", "Tools", "Logistics", "Systems", "Consulting", "Foods", "Print",
    "Electric", "Design", "Labs", "Media", "Builders", "Outfitters", "Analytics", "Textiles",
]  # fmt: skip
EN_SUFFIX = ["Ltd", "LLC", "Inc.", "GmbH", "S.A.", "B.V.", "plc", "Co.", "Limited", "AG", "Corp."]
PERSON_FIRST = ["Maria", "John", "Aisha", "Lars", "Chen", "Sofia", "Tom", "Priya"]
PERSON_LAST = ["Schmidt", "Okafor", "Jensen", "Garcia", "Novak", "Brennan", "Rossi", "Tanaka"]
EN_ITEMS = [
    "Steel bolts M8", "Printer paper A4", "Toner cartridge", "Consulting hours", "USB-C cable",
    "Office chair", "Desk lamp", "Safety gloves", "Web hosting (annual)", "Delivery charge",
    "Laptop stand", "Cleaning service", "Copy paper 80g", "Label printer", "Coffee beans 1kg",
    "Training session", "Packing tape", "Monitor 27in", "Software licence", "Maintenance visit",
]  # fmt: skip
RECEIPT_ITEMS = [
    "Coffee",
    "Croissant",
    "Sandwich",
    "Orange juice",
    "Muffin",
    "Tea",
    "Salad",
    "Water 0.5l",
    "Bagel",
]
STREETS = ["Harbour Road", "Market Street", "Mill Lane", "King's Avenue", "Station Road", "Hauptstrasse"]
CITIES = [
    "Leeds LS1 4AB",
    "Dublin D02 X285",
    "Berlin 10115",
    "Austin TX 78701",
    "Lyon 69002",
    "Bristol BS1 5TR",
]

ZH_CITY = ["上海", "北京", "深圳", "杭州", "广州", "成都", "南京", "武汉", "苏州", "重庆", "天津", "西安"]
ZH_WORD = [
    "远航",
    "华信",
    "青山",
    "星辰",
    "南方",
    "天府",
    "恒泰",
    "瑞丰",
    "金桥",
    "新源",
    "博远",
    "盛世",
    "嘉和",
]
ZH_TRADE = ["贸易", "电子", "科技", "物流", "软件", "建材", "食品", "文化传媒", "医疗器械", "信息技术"]
ZH_ITEMS = [
    "*办公用品*文件夹", "*纸制品*打印纸", "*计算机配套产品*墨盒", "*信息技术服务*技术服务费",
    "*计算机*笔记本电脑", "*金属制品*显示器支架", "*餐饮服务*餐费", "*运输服务*运输费", "*电子元件*电阻",
]  # fmt: skip
ZH_UNITS = ["个", "件", "箱", "次", "台", "套"]

# Currency of the invoice → (symbol, code, amount style, date order of numeric dates)
LOCALES = {
    "USD": ("$", "USD", "us", "mdy"),
    "EUR": ("€", "EUR", "eu", "dmy"),
    "GBP": ("£", "GBP", "us", "dmy"),
    "CNY": ("¥", "CNY", "us", "ymd"),
}

_DIGITS_ZH = "零壹贰叁肆伍陆柒捌玖"


def chinese_uppercase(value: Decimal) -> str:
    """1234.56 → 壹仟贰佰叁拾肆圆伍角陆分 (the 大写 amount on a fapiao)."""
    value = cents(value)
    yuan, fen = divmod(int(value * 100), 100)
    jiao, fen = divmod(fen, 10)

    def four(n: int) -> str:
        out, zero = "", False
        for unit, div in (("仟", 1000), ("佰", 100), ("拾", 10), ("", 1)):
            digit = n // div % 10
            if digit:
                if zero and out:
                    out += "零"
                out += _DIGITS_ZH[digit] + unit
                zero = False
            else:
                zero = True
        return out

    parts, pending_zero = "", False
    for group, unit in ((yuan // 10**8, "亿"), (yuan // 10**4 % 10**4, "万"), (yuan % 10**4, "")):
        if not group:
            pending_zero = bool(parts)
            continue
        if parts and (pending_zero or group < 1000):
            parts += "零"
        parts += four(group) + unit
        pending_zero = False
    text = (parts or "零") + "圆"
    if not jiao and not fen:
        return text + "整"
    if jiao:
        text += _DIGITS_ZH[jiao] + "角"
    elif fen:
        text += "零"
    if fen:
        text += _DIGITS_ZH[fen] + "分"
    return text


# -- truth --------------------------------------------------------------------------------------


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


# -- drawing ------------------------------------------------------------------------------------


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


def _date_format(rng: random.Random, order: str) -> str:
    numeric = {"mdy": "%m/%d/%Y", "dmy": rng.choice(["%d/%m/%Y", "%d.%m.%Y"]), "ymd": "%Y-%m-%d"}[order]
    return rng.choice([numeric, numeric, "%Y-%m-%d", "%d %B %Y", "%b %d, %Y", "%B %d, %Y", "%d-%b-%Y"])


def _company(rng: random.Random) -> str:
    name = f"{rng.choice(EN_FIRST)} {rng.choice(EN_SECOND)}"
    return f"{name} {rng.choice(EN_SUFFIX)}"


def _party(rng: random.Random) -> str:
    if rng.random() < 0.15:
        return f"{rng.choice(PERSON_FIRST)} {rng.choice(PERSON_LAST)}"
    return _company(rng)


def _zh_company(rng: random.Random) -> str:
    return f"{rng.choice(ZH_CITY)}{rng.choice(ZH_WORD)}{rng.choice(ZH_TRADE)}{rng.choice(['有限公司', '股份有限公司'])}"


def _invoice_number(rng: random.Random, year: int) -> str:
    n = rng.randint(1, 99999)
    return rng.choice(
        [
            f"INV-{year}-{n:04d}",
            f"{rng.choice('ABFRS')}-{rng.randint(10000, 99999)}",
            f"{year}/{n:05d}",
            f"F{year}-{n % 1000:03d}",
            f"{rng.randint(1000000, 99999999)}",
            f"SO-{rng.randint(10000, 99999)}-{rng.choice('ABC')}",
            f"{rng.choice(['IN', 'RE', 'BL'])}{rng.randint(100000, 999999)}",
        ]
    )


def _phone(rng: random.Random) -> str:
    return rng.choice(
        [
            f"+44 20 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}",
            f"({rng.randint(200, 999)}) {rng.randint(200, 999)}-{rng.randint(1000, 9999)}",
            f"+49 30 {rng.randint(100000, 999999)}",
        ]
    )


def _iban(rng: random.Random) -> str:
    digits = "".join(str(rng.randint(0, 9)) for _ in range(16))
    return f"{rng.choice(['GB', 'DE', 'FR', 'NL'])}{rng.randint(10, 99)} " + " ".join(
        digits[i : i + 4] for i in range(0, 16, 4)
    )


def _items(rng: random.Random, count: int, names: list[str], *, max_unit: int = 90000) -> list[Item]:
    out = []
    for desc in rng.sample(names, min(count, len(names))):
        qty = Decimal(rng.choice([1, 1, 2, 3, 4, 5, 6, 10, 12, 20, 25]))
        unit = cents(Decimal(rng.randint(90, max_unit)) / 100)
        out.append(Item(desc, qty, unit, cents(qty * unit)))
    return out


def _style(rng: random.Random, currency: str, rate: Decimal) -> Style:
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
    return Style(rng, currency, amount_style, place, _date_format(rng, order), rate, labels)


def _colon(rng: random.Random, label: str) -> str:
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
    rows = [(_colon(s.rng, s.labels["subtotal"]), s.money(t.subtotal), False)]
    rows.append((_colon(s.rng, s.labels["tax"]), s.money(t.tax), False))
    if s.rng.random() < 0.35:
        rows.insert(0, ("Previous balance:", s.number(cents(Decimal(s.rng.randint(0, 90000)) / 100)), False))
        rows.insert(1, ("Payments received:", "-" + s.number(Decimal("0")), False))
    rows.append((_colon(s.rng, s.labels["total"]), s.money(t.total, total=True), True))
    for label, value, bold in rows:
        c.text(x_label, y, label, size + (3 if bold else 0), bold=bold)
        c.text(x_right, y, value, size + (3 if bold else 0), bold=bold, align="right")
        y += size + 22
    return y


def _footer(c: Canvas, s: Style, x: int, y: int, width: int) -> None:
    rng = s.rng
    lines = [rng.choice(["Thank you for your business.", "Payment by bank transfer.", "Questions? Call us."])]
    if rng.random() < 0.7:
        lines.append(f"IBAN: {_iban(rng)}   BIC: {rng.choice(['NWBKGB2L', 'DEUTDEFF', 'BNPAFRPP'])}")
    if rng.random() < 0.6:
        lines.append(f"Tel: {_phone(rng)}   Reg. no. {rng.randint(1000000, 9999999)}")
    for line in lines:
        c.text(x, y, line, 18)
        y += 30


def _address(c: Canvas, s: Style, x: int, y: int, size: int = 19) -> int:
    c.text(x, y, f"{s.rng.randint(1, 220)} {s.rng.choice(STREETS)}", size)
    c.text(x, y + size + 8, s.rng.choice(CITIES), size)
    y += 2 * (size + 8)
    if s.rng.random() < 0.6:
        c.text(x, y, f"Tel {_phone(s.rng)}", size)
        y += size + 8
    return y


def _draw_right_box(t: Truth, s: Style, family: str, items: list[list[Item]]) -> list[Image.Image]:
    pages = []
    for index, page_items in enumerate(items):
        c = Canvas(A4, family)
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
                c.text(720, y, _colon(s.rng, label), 21)
                c.text(1140, y, value, 21, align="right")
                y += 50
            if s.rng.random() < 0.5:
                c.text(720, box[3] + 20, f"{s.labels['ref']} {s.rng.randint(10000, 99999)}", 19)
            y = 420
            c.text(80, y, _colon(s.rng, s.labels["buyer"]), 21, bold=True)
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


def _draw_label_table(t: Truth, s: Style, family: str, items: list[list[Item]]) -> list[Image.Image]:
    pages = []
    for index, page_items in enumerate(items):
        c = Canvas(A4, family)
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
                rows.append(("Phone", _phone(s.rng)))
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


def _draw_stacked(t: Truth, s: Style, family: str, items: list[list[Item]]) -> list[Image.Image]:
    c = Canvas(A4, family)
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


def _draw_receipt(t: Truth, s: Style, family: str, items: list[list[Item]]) -> list[Image.Image]:
    lines = len(items[0]) + 18
    c = Canvas((620, 140 + lines * 40), "mono")
    size = 20
    y = 50
    c.text(310, y, t.seller, 26, bold=True, align="center")
    y += 46
    c.text(310, y, f"{s.rng.randint(1, 220)} {s.rng.choice(STREETS)}", 18, align="center")
    y += 30
    c.text(310, y, f"Tel {_phone(s.rng)}", 18, align="center")
    y += 50
    c.text(40, y, f"{_colon(s.rng, s.labels['number'])} {t.invoice_number}", size)
    y += 32
    c.text(
        40,
        y,
        f"{_colon(s.rng, s.labels['date'])} {s.day(t.invoice_date)}  {s.rng.randint(8, 20)}:{s.rng.randint(0, 59):02d}",
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


def _draw_fapiao(
    t: Truth, s: Style, side_by_side: bool, buyer_id: str, seller_id: str, rate: Decimal
) -> list[Image.Image]:
    c = Canvas((1600, 1000), "cjk")
    rng = s.rng
    title = rng.choice(
        ["电子发票（增值税专用发票）", "电子发票（普通发票）", "增值税普通发票", "增值税专用发票"]
    )
    c.text(800, 40, title, 40, align="center")
    c.draw.line((600, 100, 1000, 100), fill=(150, 60, 60), width=3)
    c.text(1160, 60, "发票号码：", 22)
    c.text(1160 + c.width("发票号码：", 22), 60, t.invoice_number, 22)
    c.text(1160, 100, "开票日期：", 22)
    day = t.invoice_date
    c.text(1160 + c.width("开票日期：", 22), 100, f"{day.year}年{day.month:02d}月{day.day:02d}日", 22)
    x0, x1 = 60, 1540
    top = 160
    c.rect((x0, top, x1, 900))
    parties = [
        ("购买方信息" if side_by_side else "购买方", t.buyer or "", buyer_id),
        ("销售方信息" if side_by_side else "销售方", t.seller, seller_id),
    ]
    id_label = rng.choice(["统一社会信用代码/纳税人识别号：", "纳税人识别号："])
    if side_by_side:
        bottom = top + 150
        mid = (x0 + x1) // 2
        c.vline(mid, top, bottom)
        c.hline(x0, x1, bottom)
        for n, (party, name, tax_id) in enumerate(parties):
            bx = x0 if n == 0 else mid
            c.vline(bx + 50, top, bottom)
            for k, char in enumerate(party):
                c.text(bx + 14, top + 12 + k * 26, char, 20)
            c.text(bx + 66, top + 30, "名称：", 22)
            c.text(bx + 66 + c.width("名称：", 22), top + 30, name, 22)
            c.text(bx + 66, top + 88, id_label, 18)
            c.text(bx + 66 + c.width(id_label, 18), top + 88, tax_id, 18)
        y = bottom
    else:
        y = top
        for party, name, tax_id in parties[:1]:  # the seller's block comes below the totals
            bottom = y + 140
            c.vline(x0 + 50, y, bottom)
            for k, char in enumerate(party):
                c.text(x0 + 14, y + 20 + k * 34, char, 22)
            c.text(x0 + 66, y + 20, "名    称：", 22)
            c.text(x0 + 66 + c.width("名    称：", 22), y + 20, name, 22)
            c.text(x0 + 66, y + 60, id_label, 20)
            c.text(x0 + 66 + c.width(id_label, 20), y + 60, tax_id, 20)
            c.text(
                x0 + 66,
                y + 98,
                f"地 址、电 话：{rng.choice(ZH_CITY)}市{rng.randint(1, 99)}号 0{rng.randint(10, 99)}-{rng.randint(10000000, 99999999)}",
                18,
            )
            c.hline(x0, x1, bottom)
            y = bottom
    # item table
    cols = [x0 + 20, 560, 700, 780, 900, 1080, 1260, 1330, 1520]
    heads = ["项目名称", "规格型号", "单位", "数量", "单价", "金额", "税率/征收率", "", "税额"]
    c.text(cols[0], y + 14, heads[0], 20)
    for x, head in zip(cols[1:], heads[1:], strict=True):
        if head:
            c.text(x, y + 14, head, 20, align="right" if x > 700 else "left")
    y += 56
    tax_lines = []
    for item in t.items:
        line_tax = cents(item.amount * rate)
        tax_lines.append(line_tax)
        c.text(cols[0], y, item.description, 20)
        c.text(cols[2], y, rng.choice(ZH_UNITS), 20)
        c.text(cols[3], y, str(item.quantity), 20, align="right")
        c.text(cols[4], y, f"{item.unit_price:.2f}", 20, align="right")
        c.text(cols[5], y, f"{item.amount:.2f}", 20, align="right")
        c.text(cols[6], y, f"{rate * 100:.0f}%", 20, align="right")
        c.text(cols[8], y, f"{line_tax:.2f}", 20, align="right")
        y += 38
    y = max(y + 20, 560)
    c.text(cols[0] + 40, y, "合        计", 20)
    c.text(cols[5], y, f"¥{t.subtotal:.2f}", 20, align="right")
    c.text(cols[8], y, f"¥{t.tax:.2f}", 20, align="right")
    y += 50
    c.hline(x0, x1, y)
    c.text(cols[0], y + 18, "价税合计（大写）", 22)
    c.text(cols[0] + 260, y + 18, f"ⓧ{chinese_uppercase(t.total)}", 22)
    c.text(1100, y + 18, "（小写）", 22)
    c.text(1100 + c.width("（小写）", 22), y + 18, f"¥{t.total:.2f}", 22)
    y += 70
    c.hline(x0, x1, y)
    if not side_by_side:
        _, name, tax_id = parties[1]
        c.vline(x0 + 50, y, y + 140)
        for k, char in enumerate(parties[1][0]):
            c.text(x0 + 14, y + 20 + k * 34, char, 22)
        c.text(x0 + 66, y + 20, "名    称：", 22)
        c.text(x0 + 66 + c.width("名    称：", 22), y + 20, name, 22)
        c.text(x0 + 66, y + 60, id_label, 20)
        c.text(x0 + 66 + c.width(id_label, 20), y + 60, tax_id, 20)
        c.text(
            x0 + 66, y + 98, f"开户行及账号：{rng.choice(ZH_CITY)}银行 {rng.randint(10**15, 10**16 - 1)}", 18
        )
        y += 140
        c.hline(x0, x1, y)
    c.text(x0 + 20, y + 16, f"备注：电话 0{rng.randint(10, 99)}-{rng.randint(10000000, 99999999)}", 18)
    c.text(x0 + 20, 920, f"开票人：{rng.choice(['张伟', '王芳', '李娜', '刘洋'])}", 20)
    return [c.image]


# -- damage -------------------------------------------------------------------------------------


def _to_dpi(image: Image.Image, dpi: int) -> Image.Image:
    if dpi == BASE_DPI:
        return image
    scale = dpi / BASE_DPI
    return image.resize((round(image.width * scale), round(image.height * scale)), Image.LANCZOS)


def _noise(image: Image.Image, rng: np.random.Generator, sigma: float) -> Image.Image:
    array = np.asarray(image, dtype=np.float32)
    array = array + rng.normal(0, sigma, array.shape[:2])[..., None]
    return Image.fromarray(np.clip(array, 0, 255).astype(np.uint8))


def _lighting(image: Image.Image, rng: random.Random) -> Image.Image:
    """A shadow falling across the page: brightness from `low` to 1 along a random direction."""
    w, h = image.size
    angle = rng.uniform(0, 2 * np.pi)
    low = rng.uniform(0.55, 0.8)
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    ramp = np.cos(angle) * xs / w + np.sin(angle) * ys / h
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    gain = low + (1 - low) * ramp
    array = np.asarray(image, dtype=np.float32) * gain[..., None]
    tint = np.array([1.0, rng.uniform(0.96, 1.0), rng.uniform(0.88, 0.97)], dtype=np.float32)
    return Image.fromarray(np.clip(array * tint, 0, 255).astype(np.uint8))


def _perspective(image: Image.Image, rng: random.Random, amount: float) -> Image.Image:
    w, h = image.size
    j = [rng.uniform(-amount, amount) for _ in range(8)]
    src = [
        (0 + j[0] * w, 0 + j[1] * h),
        (w + j[2] * w, 0 + j[3] * h),
        (w + j[4] * w, h + j[5] * h),
        (0 + j[6] * w, h + j[7] * h),
    ]
    dst = [(0, 0), (w, 0), (w, h), (0, h)]
    coeffs = _perspective_coeffs(dst, src)
    return image.transform((w, h), Image.PERSPECTIVE, coeffs, Image.BICUBIC, fillcolor=(235, 235, 230))


def _perspective_coeffs(dst: list[tuple[float, float]], src: list[tuple[float, float]]) -> list[float]:
    rows = []
    for (x, y), (u, v) in zip(dst, src, strict=True):
        rows.append([x, y, 1, 0, 0, 0, -u * x, -u * y])
        rows.append([0, 0, 0, x, y, 1, -v * x, -v * y])
    a = np.array(rows, dtype=np.float64)
    b = np.array([c for point in src for c in point], dtype=np.float64)
    return np.linalg.solve(a, b).tolist()


def _damage(page: Image.Image, damage: str, rng: random.Random, truth: Truth) -> Image.Image:
    if damage == "clean":
        return page
    nrng = np.random.default_rng(rng.randrange(2**32))
    if damage == "scan":
        angle = rng.uniform(-0.8, 0.8)
        page = page.rotate(angle, resample=Image.BICUBIC, expand=False, fillcolor="white")
        page = Image.fromarray(
            (np.asarray(page, dtype=np.float32) * rng.uniform(0.88, 0.97)).astype(np.uint8)
        )
        page = _to_dpi(page, truth.dpi)
        return _noise(page, nrng, rng.uniform(3, 7))
    if damage == "photo":
        angle = truth.rotation
        page = page.rotate(angle, resample=Image.BICUBIC, expand=True, fillcolor=(230, 230, 225))
        page = _perspective(page, rng, rng.uniform(0.01, 0.03))
        page = _lighting(page, rng)
        page = page.filter(ImageFilter.GaussianBlur(rng.uniform(0.4, 0.9)))
        page = _to_dpi(page, truth.dpi)
        return _noise(page, nrng, rng.uniform(4, 9))
    raise ValueError(damage)


def _encode(pages: list[Image.Image], damage: str, truth: Truth) -> tuple[bytes, str, list[Image.Image]]:
    """The upload's bytes; the pages as a reader decodes them (JPEG artefacts included)."""
    decoded = []
    for page in pages:
        buffer = io.BytesIO()
        if damage == "clean":
            page.save(buffer, "PNG")
        else:
            page.save(buffer, "JPEG", quality=truth.jpeg_quality)
        decoded.append(Image.open(io.BytesIO(buffer.getvalue())).convert("RGB"))
    if len(pages) > 1:
        buffer = io.BytesIO()
        decoded[0].save(buffer, "PDF", save_all=True, append_images=decoded[1:], resolution=float(truth.dpi))
        return buffer.getvalue(), "application/pdf", decoded
    buffer = io.BytesIO()
    if damage == "clean":
        decoded[0].save(buffer, "PNG")
        return buffer.getvalue(), "image/png", decoded
    pages[0].save(buffer, "JPEG", quality=truth.jpeg_quality)
    return buffer.getvalue(), "image/jpeg", decoded


# -- the generator ------------------------------------------------------------------------------


def generate(seed: int, layout: str | None = None, damage: str | None = None) -> GeneratedInvoice:
    """One invoice from `seed` (layout and damage drawn from it unless given)."""
    rng = random.Random(seed)
    layout = layout or rng.choice(LAYOUTS)
    damage = damage or rng.choice(DAMAGES)
    chinese = layout.startswith("fapiao")
    day = date(2025, 1, 1) + timedelta(days=rng.randrange(540))
    currency = "CNY" if chinese else rng.choice(["USD", "EUR", "GBP", "EUR", "USD", "CNY"])
    rate = Decimal(
        rng.choice(["0.13", "0.06", "0.09"] if chinese else ["0.20", "0.19", "0.10", "0.07", "0.21", "0.05"])
    )
    if layout == "receipt":
        rate = Decimal(rng.choice(["0.20", "0.10", "0.07"]))
        count = rng.randint(1, 8)
        items = _items(rng, count, RECEIPT_ITEMS, max_unit=1500)
    elif layout == "multipage":
        items = _items(rng, rng.randint(6, 8), EN_ITEMS)
    else:
        items = _items(rng, rng.randint(1, 8), ZH_ITEMS if chinese else EN_ITEMS)
    subtotal = sum((x.amount for x in items), Decimal("0"))
    # a fapiao's tax is the sum of its lines' rounded taxes
    line_taxes = sum((cents(x.amount * rate) for x in items), Decimal("0"))
    tax = line_taxes if chinese else cents(subtotal * rate)
    total = subtotal + tax
    has_due = not chinese and layout != "receipt" and rng.random() < 0.7
    if chinese:
        number = (
            str(rng.randint(10**19, 10**20 - 1)) if rng.random() < 0.5 else f"{rng.randint(10**7, 10**8 - 1)}"
        )
        seller, buyer = _zh_company(rng), _zh_company(rng)
    else:
        number = _invoice_number(rng, day.year)
        seller = _company(rng)
        buyer = None if layout == "receipt" and rng.random() < 0.6 else _party(rng)
    truth = Truth(
        seed=seed, layout=layout, damage=damage, invoice_number=number, invoice_date=day,
        due_date=day + timedelta(days=rng.choice([14, 30, 45, 60])) if has_due else None,
        seller=seller, buyer=buyer, currency=currency, subtotal=subtotal, tax=tax, total=total,
        items=items, pages=2 if layout == "multipage" else 1,
        dpi=BASE_DPI if damage == "clean" else rng.randint(100, 150),
        jpeg_quality=None if damage == "clean" else (rng.randint(50, 60) if damage == "scan" else rng.randint(35, 60)),
        rotation=rng.uniform(-3, 3) if damage == "photo" else 0.0,
    )  # fmt: skip
    style = _style(rng, currency, rate)
    truth.date_format = "%Y年%m月%d日" if chinese else style.date_format
    family = rng.choice(["sans", "serif", "condensed"])
    if chinese:
        buyer_id = f"9111{rng.randint(10**13, 10**14 - 1)}"
        seller_id = f"9131{rng.randint(10**13, 10**14 - 1)}"
        pages = _draw_fapiao(truth, style, layout == "fapiao_grid", buyer_id, seller_id, rate)
    elif layout == "multipage":
        split = rng.randint(3, len(items) - 2)
        draw = rng.choice([_draw_right_box, _draw_label_table])
        pages = draw(truth, style, family, [items[:split], items[split:]])
    else:
        draw = {
            "right_box": _draw_right_box,
            "label_table": _draw_label_table,
            "stacked": _draw_stacked,
            "receipt": _draw_receipt,
        }[layout]
        pages = draw(truth, style, family, [items])
    damaged = [_damage(page, damage, rng, truth) for page in pages]
    data, mime, decoded = _encode(damaged, damage, truth)
    return GeneratedInvoice(truth, data, mime, decoded)


def sample(n: int, seed: int) -> list[tuple[int, str, str]]:
    """(seed, layout, damage) for n invoices: every layout × damage pair in turn, seeds from `seed`."""
    pairs = [(layout, damage) for layout in LAYOUTS for damage in DAMAGES]
    rng = random.Random(seed)
    rng.shuffle(pairs)
    return [(seed * 100_000 + i, *pairs[i % len(pairs)]) for i in range(n)]


def page_images(invoice: GeneratedInvoice, dpi: int = 150) -> list[Image.Image]:
    """The pages as the upload makes them: images as decoded, PDFs rendered with pdfium at `dpi`."""
    if invoice.mime != "application/pdf":
        return [Image.open(io.BytesIO(invoice.data)).convert("RGB")]
    import pypdfium2

    pdf = pypdfium2.PdfDocument(invoice.data)
    try:
        return [pdf[i].render(scale=dpi / 72).to_pil().convert("RGB") for i in range(len(pdf))]
    finally:
        pdf.close()
