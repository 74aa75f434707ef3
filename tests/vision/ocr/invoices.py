"""Rendered test pages with known ground truth: invoices (English, Chinese) and text pages.

Everything is drawn with PIL from a seed, so a page is reproducible and its truth exact: the
field values, and where each value was drawn (`truth_boxes`) so tests can check the extractor
located it. Photo-like variants add a small rotation, blur, downscaling and JPEG compression.
Fonts come from Debian packages (fonts-dejavu-core, fonts-wqy-zenhei) that scripts/test.sh
installs.
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from PIL import Image, ImageDraw, ImageFilter, ImageFont

from tests.vision.ocr.invoice_gen_words import EN_ITEMS as GEN_ITEMS
from vision.ocr.invoice import SCALAR_FIELDS

FONT_PATHS = {
    "latin": ["/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"],
    "cjk": [
        "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
        "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
    ],
}
PAGE = (1100, 1400)  # ~130 dpi A4-ish: the size a phone photo or a fast scan arrives at
VARIANTS = ("clean", "photo", "small")  # as drawn; rotated ±2° + blur + JPEG; downscaled to 60%


class FontMissing(RuntimeError):
    pass


def font(kind: str, size: int) -> ImageFont.FreeTypeFont:
    for path in FONT_PATHS[kind]:
        if Path(path).is_file():
            return ImageFont.truetype(path, size)
    raise FontMissing(f"no {kind} font at {FONT_PATHS[kind]}: install fonts-dejavu-core fonts-wqy-zenhei")


def cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


@dataclass
class TruthItem:
    description: str
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal


@dataclass
class InvoiceTruth:
    invoice_number: str
    invoice_date: str  # ISO
    due_date: str | None
    seller: str
    seller_tax_id: str
    buyer: str
    buyer_tax_id: str
    currency: str
    items: list[TruthItem]
    subtotal: Decimal
    tax: Decimal
    total: Decimal
    lang: str = "en"
    truth_boxes: dict[str, tuple[float, float, float, float]] = field(default_factory=dict)

    def scalar_fields(self) -> dict[str, object]:
        return {name: getattr(self, name) for name in SCALAR_FIELDS}


EN_SELLERS = ["Acme Supplies Ltd", "Northwind Traders Inc", "Blue Harbor GmbH", "Kestrel Tools LLC"]
EN_BUYERS = ["Globex Corporation", "Initech Systems", "Umbrella Labs Ltd", "Stark Logistics"]
EN_ITEMS = GEN_ITEMS[:8]  # the first eight of the other generator's line items
ZH_SELLERS = ["上海远航贸易有限公司", "深圳华信电子有限公司", "杭州青山科技有限公司"]
ZH_BUYERS = ["北京星辰科技有限公司", "广州南方物流有限公司", "成都天府软件有限公司"]
ZH_ITEMS = ["办公用品", "打印纸", "墨盒", "技术服务费", "笔记本电脑", "显示器支架"]
EN_DATE_FORMATS = ["%Y-%m-%d", "%d %B %Y", "%B %d, %Y", "%d/%m/%Y", "%d-%b-%Y"]


def _fmt(value: Decimal, style: str) -> str:
    text = f"{value:,.2f}"
    if style == "eu":  # 1.234,50
        text = text.replace(",", "_").replace(".", ",").replace("_", ".")
    return text


def make_invoice(
    seed: int, lang: str = "en", *, alter_total: Decimal | None = None
) -> tuple[Image.Image, InvoiceTruth]:
    """One invoice page and its truth. `alter_total` prints that total instead of the right one."""
    rng = random.Random(seed)
    day = date(2023, 1, 1) + timedelta(days=rng.randrange(700))
    if lang == "en":
        day = day.replace(day=rng.randint(13, 28))  # d/m/Y stays unambiguous
    items = []
    for desc in rng.sample(EN_ITEMS if lang == "en" else ZH_ITEMS, rng.randint(2, 4)):
        qty = Decimal(rng.randint(1, 12))
        unit = cents(Decimal(rng.randint(150, 40000)) / 100)
        items.append(TruthItem(desc, qty, unit, cents(qty * unit)))
    subtotal = sum((x.amount for x in items), Decimal("0"))
    rate = Decimal(rng.choice(["0.20", "0.10", "0.07"] if lang == "en" else ["0.13", "0.06"]))
    tax = cents(subtotal * rate)
    total = subtotal + tax
    shown_total = alter_total if alter_total is not None else total
    if lang == "en":
        currency, symbol, style = rng.choice([("USD", "$", "us"), ("GBP", "£", "us"), ("EUR", "EUR ", "eu")])
        fmt = rng.choice(EN_DATE_FORMATS)
        truth = InvoiceTruth(
            invoice_number=f"INV-{day.year}-{rng.randint(100, 9999):04d}",
            invoice_date=day.isoformat(),
            due_date=(day + timedelta(days=30)).isoformat(),
            seller=rng.choice(EN_SELLERS),
            seller_tax_id=f"GB{rng.randint(100000000, 999999999)}",
            buyer=rng.choice(EN_BUYERS),
            buyer_tax_id=f"DE{rng.randint(100000000, 999999999)}",
            currency=currency,
            items=items,
            subtotal=subtotal,
            tax=tax,
            total=total,
            lang=lang,
        )
        page = _draw_en(truth, rate, fmt, symbol, style, shown_total)
    else:
        truth = InvoiceTruth(
            invoice_number=f"{rng.randint(10000000, 99999999)}",
            invoice_date=day.isoformat(),
            due_date=None,
            seller=rng.choice(ZH_SELLERS),
            seller_tax_id=f"91310115MA{rng.randint(10000000, 99999999)}",
            buyer=rng.choice(ZH_BUYERS),
            buyer_tax_id=f"91110108MA{rng.randint(10000000, 99999999)}",
            currency="CNY",
            items=items,
            subtotal=subtotal,
            tax=tax,
            total=total,
            lang=lang,
        )
        page = _draw_zh(truth, day, shown_total)
    return page, truth


class _Canvas:
    def __init__(self, truth: InvoiceTruth, kind: str) -> None:
        self.image = Image.new("RGB", PAGE, "white")
        self.draw = ImageDraw.Draw(self.image)
        self.truth = truth
        self.kind = kind

    def text(
        self, x: float, y: float, text: str, size: int = 24, *, right: bool = False, key: str | None = None
    ) -> None:
        face = font(self.kind, size)
        if right:
            x -= self.draw.textlength(text, font=face)
        self.draw.text((x, y), text, font=face, fill=(20, 20, 30))
        if key:
            self.truth.truth_boxes[key] = self.draw.textbbox((x, y), text, font=face)

    def labelled(self, x: float, y: float, label: str, value: str, key: str, size: int = 24) -> None:
        """'Label: value' drawn as one run, with the truth box around the value only."""
        face = font(self.kind, size)
        self.text(x, y, label, size)
        self.text(x + self.draw.textlength(label, font=face), y, value, size, key=key)


def _draw_en(
    t: InvoiceTruth, rate: Decimal, fmt: str, symbol: str, style: str, shown_total: Decimal
) -> Image.Image:
    c = _Canvas(t, "latin")
    c.text(60, 60, t.seller, 34, key="seller")
    c.text(1040, 60, "INVOICE", 40, right=True)
    c.text(60, 112, "14 Harbour Road, Leeds LS1 4AB")
    c.labelled(60, 150, "VAT No: ", t.seller_tax_id, "seller_tax_id")
    c.text(60, 240, "Bill To:")
    c.text(60, 280, t.buyer, key="buyer")
    c.labelled(60, 320, "Tax ID: ", t.buyer_tax_id, "buyer_tax_id")
    c.labelled(640, 240, "Invoice No: ", t.invoice_number, "invoice_number")
    c.labelled(640, 280, "Date: ", date.fromisoformat(t.invoice_date).strftime(fmt), "invoice_date")
    c.labelled(640, 320, "Due Date: ", date.fromisoformat(t.due_date or "").strftime(fmt), "due_date")
    y = 440
    c.text(60, y, "Description")
    c.text(620, y, "Qty", right=True)
    c.text(820, y, "Unit Price", right=True)
    c.text(1040, y, "Amount", right=True)
    c.draw.line((60, y + 38, 1040, y + 38), fill=(120, 120, 120), width=2)
    for item in t.items:
        y += 56
        c.text(60, y, item.description)
        c.text(620, y, str(item.quantity), right=True)
        c.text(820, y, _fmt(item.unit_price, style), right=True)
        c.text(1040, y, _fmt(item.amount, style), right=True)
    y += 90
    c.text(640, y, "Subtotal:")
    c.text(1040, y, _fmt(t.subtotal, style), right=True, key="subtotal")
    c.text(640, y + 48, f"VAT ({int(rate * 100)}%):")
    c.text(1040, y + 48, _fmt(t.tax, style), right=True, key="tax")
    c.text(640, y + 100, "Total:", 28)
    c.text(1040, y + 100, f"{symbol}{_fmt(shown_total, style)}", 28, right=True, key="total")
    c.text(60, y + 200, "Payment within 30 days. Thank you for your business.", 20)
    return c.image


def _draw_zh(t: InvoiceTruth, day: date, shown_total: Decimal) -> Image.Image:
    c = _Canvas(t, "cjk")
    c.text(550 - 140, 50, "增值税普通发票", 40)
    c.labelled(60, 150, "发票号码：", t.invoice_number, "invoice_number")
    c.labelled(640, 150, "开票日期：", f"{day.year}年{day.month:02d}月{day.day:02d}日", "invoice_date")
    c.labelled(60, 230, "购买方名称：", t.buyer, "buyer")
    c.labelled(60, 270, "纳税人识别号：", t.buyer_tax_id, "buyer_tax_id")
    c.labelled(60, 340, "销售方名称：", t.seller, "seller")
    c.labelled(60, 380, "纳税人识别号：", t.seller_tax_id, "seller_tax_id")
    y = 470
    c.text(60, y, "货物或应税劳务名称")
    c.text(620, y, "数量", right=True)
    c.text(820, y, "单价", right=True)
    c.text(1040, y, "金额", right=True)
    c.draw.line((60, y + 38, 1040, y + 38), fill=(120, 120, 120), width=2)
    for item in t.items:
        y += 56
        c.text(60, y, item.description)
        c.text(620, y, str(item.quantity), right=True)
        c.text(820, y, _fmt(item.unit_price, "us"), right=True)
        c.text(1040, y, _fmt(item.amount, "us"), right=True)
    y += 90
    c.text(60, y, "合计")
    c.text(1040, y, f"¥{_fmt(t.subtotal, 'us')}", right=True, key="subtotal")
    c.text(60, y + 50, "税额")
    c.text(1040, y + 50, f"¥{_fmt(t.tax, 'us')}", right=True, key="tax")
    c.text(60, y + 110, "价税合计（小写）", 28)
    c.text(1040, y + 110, f"¥{_fmt(shown_total, 'us')}", 28, right=True, key="total")
    return c.image


def degrade(image: Image.Image, variant: str, seed: int = 0) -> tuple[Image.Image, float]:
    """A photo-like copy of `image`, and the scale factor applied to its coordinates."""
    if variant == "clean":
        return image, 1.0
    if variant == "photo":
        angle = random.Random(seed).choice([-2.0, -1.2, 1.2, 2.0])
        tilted = image.rotate(angle, resample=Image.BICUBIC, fillcolor="white")
        return tilted.filter(ImageFilter.GaussianBlur(0.8)), 1.0
    if variant == "small":
        scale = 0.6
        return image.resize((int(image.width * scale), int(image.height * scale)), Image.LANCZOS), scale
    raise ValueError(variant)


def encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    if fmt == "JPEG":
        image.save(buffer, "JPEG", quality=80)
    else:
        image.save(buffer, "PNG")
    return buffer.getvalue()


def text_page(
    lines: list[str], kind: str, *, size: int = 28, columns: int = 1
) -> tuple[Image.Image, list[tuple[str, tuple[int, int, int, int]]]]:
    """A page of known text lines (reading order as given) and the box each was drawn in.

    With `columns=2`, lines alternate left and right cell of a row, so reading order must go
    left-to-right within a row before the next row.
    """
    image = Image.new("RGB", (1000, 120 + 70 * (len(lines) // columns + 1)), "white")
    draw = ImageDraw.Draw(image)
    face = font(kind, size)
    drawn = []
    for index, text in enumerate(lines):
        row, col = divmod(index, columns)
        x, y = 60 + 500 * col, 60 + 70 * row
        draw.text((x, y), text, font=face, fill="black")
        drawn.append((text, draw.textbbox((x, y), text, font=face)))
    return image, drawn
