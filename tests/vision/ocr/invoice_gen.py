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

The generator's parts: invoice_truth.py (the truth and the key fields), invoice_words.py (the
wording tables and random names and numbers), invoice_canvas.py (fonts, `Canvas`, `Style`),
invoice_layouts.py and invoice_fapiao.py (the layouts), invoice_damage.py (damage and encoding).
This module draws one invoice from them and is what the tests and benchmarks import.
"""

from __future__ import annotations

import io
import random
from datetime import date, timedelta
from decimal import Decimal

from PIL import Image

from tests.vision.ocr.invoice_gen_canvas import A4, FONTS, Canvas, Style, make_style
from tests.vision.ocr.invoice_gen_damage import damage_page, encode
from tests.vision.ocr.invoice_gen_fapiao import draw_fapiao
from tests.vision.ocr.invoice_gen_layouts import draw_label_table, draw_receipt, draw_right_box, draw_stacked
from tests.vision.ocr.invoice_gen_truth import BASE_DPI, KEY_FIELDS, GeneratedInvoice, Item, Truth, cents
from tests.vision.ocr.invoice_gen_words import (
    EN_ITEMS,
    RECEIPT_ITEMS,
    ZH_ITEMS,
    chinese_uppercase,
    company,
    invoice_number,
    line_items,
    party,
    zh_company,
)

__all__ = [
    "A4",
    "BASE_DPI",
    "DAMAGES",
    "FONTS",
    "KEY_FIELDS",
    "LAYOUTS",
    "Canvas",
    "GeneratedInvoice",
    "Item",
    "Style",
    "Truth",
    "cents",
    "chinese_uppercase",
    "generate",
    "page_images",
    "sample",
]

LAYOUTS = ("right_box", "label_table", "stacked", "fapiao_grid", "fapiao_stacked", "receipt", "multipage")
DAMAGES = ("clean", "scan", "photo")


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
        items = line_items(rng, count, RECEIPT_ITEMS, max_unit=1500)
    elif layout == "multipage":
        items = line_items(rng, rng.randint(6, 8), EN_ITEMS)
    else:
        items = line_items(rng, rng.randint(1, 8), ZH_ITEMS if chinese else EN_ITEMS)
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
        seller, buyer = zh_company(rng), zh_company(rng)
    else:
        number = invoice_number(rng, day.year)
        seller = company(rng)
        buyer = None if layout == "receipt" and rng.random() < 0.6 else party(rng)
    truth = Truth(
        seed=seed,
        layout=layout,
        damage=damage,
        invoice_number=number,
        invoice_date=day,
        due_date=day + timedelta(days=rng.choice([14, 30, 45, 60])) if has_due else None,
        seller=seller,
        buyer=buyer,
        currency=currency,
        subtotal=subtotal,
        tax=tax,
        total=total,
        items=items,
        pages=2 if layout == "multipage" else 1,
        dpi=BASE_DPI if damage == "clean" else rng.randint(100, 150),
        jpeg_quality=(
            None if damage == "clean" else (rng.randint(50, 60) if damage == "scan" else rng.randint(35, 60))
        ),
        rotation=rng.uniform(-3, 3) if damage == "photo" else 0.0,
    )
    style = make_style(rng, currency, rate)
    truth.date_format = "%Y年%m月%d日" if chinese else style.date_format
    # canvas=Canvas: this module's name, looked up on every call, so pdfgen.born_digital can swap in
    # a Canvas that records what is drawn
    family = rng.choice(["sans", "serif", "condensed"])
    if chinese:
        buyer_id = f"9111{rng.randint(10**13, 10**14 - 1)}"
        seller_id = f"9131{rng.randint(10**13, 10**14 - 1)}"
        pages = draw_fapiao(truth, style, layout == "fapiao_grid", buyer_id, seller_id, rate, canvas=Canvas)
    elif layout == "multipage":
        split = rng.randint(3, len(items) - 2)
        draw = rng.choice([draw_right_box, draw_label_table])
        pages = draw(truth, style, family, [items[:split], items[split:]], canvas=Canvas)
    else:
        draw = {
            "right_box": draw_right_box,
            "label_table": draw_label_table,
            "stacked": draw_stacked,
            "receipt": draw_receipt,
        }[layout]
        pages = draw(truth, style, family, [items], canvas=Canvas)
    damaged = [damage_page(page, damage, rng, truth) for page in pages]
    data, mime, decoded = encode(damaged, damage, truth)
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
