"""What the invoice generator writes: the label wordings, company and item names, addresses and
currencies real invoices show, the fapiao's 大写 amount, and the random invoice numbers, phone
numbers, IBANs and line items drawn from them."""

from __future__ import annotations

import random
from decimal import Decimal

from tests.vision.ocr.invoice_gen_truth import Item, cents

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
    "Acme",
    "Northwind",
    "Blue Harbor",
    "Kestrel",
    "Silverline",
    "Oakridge",
    "Redwood",
    "Brightpath",
    "Ironbridge",
    "Lakeside",
    "Meridian",
    "Summit",
    "Copperfield",
    "Greenleaf",
    "Harborview",
    "Pinecrest",
    "Westgate",
    "Falcon",
    "Riverside",
    "Starling",
    "Cobalt",
    "Juniper",
    "Alder",
    "Orion",
]
EN_SECOND = [
    "Supplies",
    "Traders",
    "Tools",
    "Logistics",
    "Systems",
    "Consulting",
    "Foods",
    "Print",
    "Electric",
    "Design",
    "Labs",
    "Media",
    "Builders",
    "Outfitters",
    "Analytics",
    "Textiles",
]
EN_SUFFIX = ["Ltd", "LLC", "Inc.", "GmbH", "S.A.", "B.V.", "plc", "Co.", "Limited", "AG", "Corp."]
PERSON_FIRST = ["Maria", "John", "Aisha", "Lars", "Chen", "Sofia", "Tom", "Priya"]
PERSON_LAST = ["Schmidt", "Okafor", "Jensen", "Garcia", "Novak", "Brennan", "Rossi", "Tanaka"]
EN_ITEMS = [
    "Steel bolts M8",
    "Printer paper A4",
    "Toner cartridge",
    "Consulting hours",
    "USB-C cable",
    "Office chair",
    "Desk lamp",
    "Safety gloves",
    "Web hosting (annual)",
    "Delivery charge",
    "Laptop stand",
    "Cleaning service",
    "Copy paper 80g",
    "Label printer",
    "Coffee beans 1kg",
    "Training session",
    "Packing tape",
    "Monitor 27in",
    "Software licence",
    "Maintenance visit",
]
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
    "*办公用品*文件夹",
    "*纸制品*打印纸",
    "*计算机配套产品*墨盒",
    "*信息技术服务*技术服务费",
    "*计算机*笔记本电脑",
    "*金属制品*显示器支架",
    "*餐饮服务*餐费",
    "*运输服务*运输费",
    "*电子元件*电阻",
]
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


def date_format(rng: random.Random, order: str) -> str:
    numeric = {"mdy": "%m/%d/%Y", "dmy": rng.choice(["%d/%m/%Y", "%d.%m.%Y"]), "ymd": "%Y-%m-%d"}[order]
    return rng.choice([numeric, numeric, "%Y-%m-%d", "%d %B %Y", "%b %d, %Y", "%B %d, %Y", "%d-%b-%Y"])


def company(rng: random.Random) -> str:
    name = f"{rng.choice(EN_FIRST)} {rng.choice(EN_SECOND)}"
    return f"{name} {rng.choice(EN_SUFFIX)}"


def party(rng: random.Random) -> str:
    if rng.random() < 0.15:
        return f"{rng.choice(PERSON_FIRST)} {rng.choice(PERSON_LAST)}"
    return company(rng)


def zh_company(rng: random.Random) -> str:
    return f"{rng.choice(ZH_CITY)}{rng.choice(ZH_WORD)}{rng.choice(ZH_TRADE)}{rng.choice(['有限公司', '股份有限公司'])}"


def invoice_number(rng: random.Random, year: int) -> str:
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


def phone(rng: random.Random) -> str:
    return rng.choice(
        [
            f"+44 20 {rng.randint(1000, 9999)} {rng.randint(1000, 9999)}",
            f"({rng.randint(200, 999)}) {rng.randint(200, 999)}-{rng.randint(1000, 9999)}",
            f"+49 30 {rng.randint(100000, 999999)}",
        ]
    )


_BANKS = {"GB": ("NWBK", "BARC", "LOYD", "HBUK"), "NL": ("ABNA", "INGB", "RABO", "TRIO")}


def iban(rng: random.Random) -> str:
    """A valid IBAN (its country's length and structure, ISO 7064 check digits), as real invoices
    print them: grouped by four."""
    from stdnum import iban as stdnum_iban

    digits = "".join(str(rng.randint(0, 9)) for _ in range(16))
    country = rng.choice(["GB", "DE", "FR", "NL"])
    rng.randint(10, 99)  # drawn as before, so the draws after it stay the same
    bban = {
        "GB": _BANKS["GB"][int(digits[0]) % 4] + digits[:14],  # bank code, sort code, account
        "DE": digits + digits[:2],  # 18 digits: bank code and account
        "FR": digits + digits[:7],  # 23 digits: bank, branch, account, key
        "NL": _BANKS["NL"][int(digits[0]) % 4] + digits[:10],
    }[country]
    number = country + stdnum_iban.calc_check_digits(country + "00" + bban) + bban
    return stdnum_iban.format(number)


def line_items(rng: random.Random, count: int, names: list[str], *, max_unit: int = 90000) -> list[Item]:
    out = []
    for desc in rng.sample(names, min(count, len(names))):
        qty = Decimal(rng.choice([1, 1, 2, 3, 4, 5, 6, 10, 12, 20, 25]))
        unit = cents(Decimal(rng.randint(90, max_unit)) / 100)
        out.append(Item(desc, qty, unit, cents(qty * unit)))
    return out
