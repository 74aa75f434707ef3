"""Normalise what OCR and the VLM read: amounts to `Decimal`, dates to `datetime.date`,
currency symbols and names to ISO 4217 codes. No Django, no models; shared by the layout
extractor and the VLM layer so both sides of a comparison speak the same values."""

from __future__ import annotations

import re
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

CENT = Decimal("0.01")

# Symbols and words that name a currency. "¥" is read as CNY: the Chinese invoices we target
# (增值税发票) use it; a Japanese invoice says 円/JPY next to it, and that word wins.
CURRENCY_WORDS = {
    "USD": "USD", "US$": "USD", "EUR": "EUR", "GBP": "GBP", "CNY": "CNY", "RMB": "CNY",
    "JPY": "JPY", "CHF": "CHF", "CAD": "CAD", "AUD": "AUD", "HKD": "HKD", "INR": "INR",
    "人民币": "CNY", "元": "CNY", "円": "JPY",
}  # fmt: skip
CURRENCY_SYMBOLS = {"$": "USD", "€": "EUR", "£": "GBP", "¥": "CNY", "￥": "CNY", "₹": "INR"}

_FULLWIDTH = str.maketrans("０１２３４５６７８９，．：／－（）", "0123456789,.:/-()")
# A number inside running text: digits with ',', '.' or "'" between them. A space is not a
# separator here: OCR joins neighbouring table cells with one ("2 125.00" is qty 2, price 125).
# Not after a letter, '-' or '/': the digits of "INV-2024-0042" or "3/5" are not amounts.
_AMOUNT = re.compile(r"(?<![\w.,/\-])\d+(?:[.,']\d+)*")
_MONTHS = {
    name: index
    for index, names in enumerate(
        [
            ("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"),
            ("may",), ("jun", "june"), ("jul", "july"), ("aug", "august"),
            ("sep", "sept", "september"), ("oct", "october"), ("nov", "november"),
            ("dec", "december"),
        ],
        start=1,
    )
    for name in names
}  # fmt: skip


def unify(text: str) -> str:
    """Full-width digits and punctuation (common in Chinese OCR output) to ASCII."""
    return text.translate(_FULLWIDTH)


def parse_amount(text: str | int | float | Decimal | None) -> Decimal | None:
    """'1,234.50', '1.234,50', '1 234,50', '¥1,234.50', '$ 12', '(12.00)', 'EUR 3,5' → Decimal.

    The decimal separator is the last of ',' and '.' when both occur; a lone separator followed
    by exactly three digits in groups (1,234 / 1.234.567) is a thousands separator, otherwise a
    decimal one. Returns None when the text holds no number.
    """
    if text is None or isinstance(text, bool):
        return None
    if isinstance(text, (int, Decimal)):
        return Decimal(text)
    if isinstance(text, float):
        return Decimal(str(text))
    raw = unify(str(text)).replace("\u00a0", " ").strip()
    negative = raw.startswith(("-", "−", "(")) or raw.endswith(")")
    digits = re.sub(r"[^\d.,' ]", "", raw).strip().replace("'", "")
    digits = re.sub(r"(?<=\d) (?=\d{3}\b)", "", digits).replace(" ", "")
    if not re.search(r"\d", digits):
        return None
    last_comma, last_dot = digits.rfind(","), digits.rfind(".")
    if last_comma >= 0 and last_dot >= 0:
        decimal_sep = "," if last_comma > last_dot else "."
    elif last_comma >= 0 or last_dot >= 0:
        sep = "," if last_comma >= 0 else "."
        grouped = re.fullmatch(rf"\d{{1,3}}(\{sep}\d{{3}})+", digits)
        decimal_sep = None if grouped else sep
    else:
        decimal_sep = None
    thousands = {",", "."} - ({decimal_sep} if decimal_sep else set())
    for sep in thousands:
        digits = digits.replace(sep, "")
    if decimal_sep == ",":
        digits = digits.replace(",", ".")
    if digits.count(".") > 1 or digits.strip(".") == "":
        return None
    try:
        value = Decimal(digits.strip("."))
    except InvalidOperation:
        return None
    return -value if negative else value


def find_amounts(text: str) -> list[tuple[Decimal, int, int]]:
    """Every number in `text` with its character span, left to right."""
    text = unify(text)
    found = []
    for match in _AMOUNT.finditer(text):
        value = parse_amount(match.group())
        if value is not None:
            found.append((value, match.start(), match.end()))
    return found


def money(value: Decimal | None) -> Decimal | None:
    return None if value is None else value.quantize(CENT, rounding=ROUND_HALF_UP)


def detect_currency(text: str) -> str | None:
    """ISO code named in `text` by a word (EUR, RMB, 人民币) or else a symbol ($, €, ¥)."""
    upper = unify(text).upper()
    for word, code in CURRENCY_WORDS.items():
        if re.search(rf"(?<![A-Z]){re.escape(word)}(?![A-Z])", upper) if word.isascii() else word in upper:
            return code
    for symbol, code in CURRENCY_SYMBOLS.items():
        if symbol in upper:
            return code
    return None


def normalize_currency(value: str | None) -> str | None:
    if not value:
        return None
    value = str(value).strip()
    return detect_currency(value) or (value.upper() if re.fullmatch(r"[A-Za-z]{3}", value) else None)


def _valid(year: int, month: int, day: int) -> date | None:
    if year < 100:
        year += 2000
    try:
        return date(year, month, day)
    except ValueError:
        return None


# OCR reads the letters of a month name as look-alike digits ("0ct", "Ju1y", "5ep"): inside a
# word of letters, 0/1/5 are o/l/s. Only tokens that then spell a month are rewritten.
_MONTH_TOKEN = re.compile(
    r"(?<![A-Za-z0-9])(?=[A-Za-z0-9]*[A-Za-z][A-Za-z0-9]*[A-Za-z])[A-Za-z015]{3,9}(?![A-Za-z0-9])"
)
_LOOKALIKE = str.maketrans("015", "ols")


def _month_letters(m: re.Match[str]) -> str:
    word = m.group()
    fixed = word.translate(_LOOKALIKE)
    return fixed if fixed != word and fixed.lower() in _MONTHS else word


def parse_date(text: str | None, *, dayfirst: bool = True) -> date | None:
    """Many spellings of a date → `date`.

    2024-03-05, 2024/3/5, 2024.03.05, 2024年3月5日, 20240305, 5 March 2024, March 5, 2024,
    05-Mar-2024, 05/03/2024 (day first unless `dayfirst=False` or the first number exceeds 12).
    """
    if not text:
        return None
    text = unify(str(text)).strip()
    if m := re.search(r"(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日?", text):
        return _valid(int(m[1]), int(m[2]), int(m[3]))
    if m := re.search(r"(?<!\d)(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?!\d)", text):
        return _valid(int(m[1]), int(m[2]), int(m[3]))
    if m := re.search(r"(?<!\d)(\d{1,2})[-/.](\d{1,2})[-/.](\d{2}|\d{4})(?!\d)", text):
        first, second, year = int(m[1]), int(m[2]), int(m[3])
        if first > 12 or (dayfirst and second <= 12):
            return _valid(year, second, first)
        return _valid(year, first, second)
    text = _MONTH_TOKEN.sub(_month_letters, text)
    months = "|".join(sorted(_MONTHS, key=len, reverse=True))
    if m := re.search(
        rf"(?<!\d)(\d{{1,2}})(?:st|nd|rd|th)?[\s\-/.]*({months})\.?[\s\-/.,]*(\d{{4}})", text, re.I
    ):
        return _valid(int(m[3]), _MONTHS[m[2].lower()], int(m[1]))
    if m := re.search(rf"\b({months})\.?\s*(\d{{1,2}})(?:st|nd|rd|th)?,?\s*(\d{{4}})", text, re.I):
        return _valid(int(m[3]), _MONTHS[m[1].lower()], int(m[2]))
    if m := re.fullmatch(r"(\d{4})(\d{2})(\d{2})", text):
        return _valid(int(m[1]), int(m[2]), int(m[3]))
    return None


def date_is_ambiguous(text: str) -> bool:
    """A numeric d/m/y date whose day and month could swap (both ≤ 12 and different)."""
    m = re.search(r"(?<!\d)(\d{1,2})[-/.](\d{1,2})[-/.](\d{2}|\d{4})(?!\d)", unify(text))
    return bool(m) and int(m[1]) <= 12 and int(m[2]) <= 12 and m[1].lstrip("0") != m[2].lstrip("0")


_ZH_DIGITS = {c: n for n, c in enumerate("零壹贰叁肆伍陆柒捌玖")} | {"两": 2, "〇": 0}
_ZH_SMALL_UNITS = {"拾": 10, "佰": 100, "仟": 1000}
_ZH_BIG_UNITS = {"万": 10_000, "亿": 100_000_000}


def parse_chinese_amount(text: str | None) -> Decimal | None:
    """The 大写 (capital numeral) amount of a fapiao: 壹仟贰佰叁拾肆圆伍角陆分 → 1234.56.

    OCR noise around it (ⓧ, ⊗, spaces, the label) is ignored. None when no 圆/元 amount is there.
    """
    if not text:
        return None
    m = re.search(
        r"[零壹贰叁肆伍陆柒捌玖两〇拾佰仟万亿]+[圆元](?:整|正)?(?:[零壹贰叁肆伍陆柒捌玖]角)?(?:零?[零壹贰叁肆伍陆柒捌玖]分)?",
        text,
    )
    if not m:
        return None
    yuan_part, _, rest = re.split(r"([圆元])", m.group(), maxsplit=1)
    total = section = digit = 0
    for char in yuan_part:
        if char in _ZH_DIGITS:
            digit = _ZH_DIGITS[char]
        elif char in _ZH_SMALL_UNITS:
            section += (digit or 1) * _ZH_SMALL_UNITS[char]
            digit = 0
        elif char in _ZH_BIG_UNITS:
            total += (section + digit) * _ZH_BIG_UNITS[char]
            section = digit = 0
    value = Decimal(total + section + digit)
    if j := re.search(r"([零壹贰叁肆伍陆柒捌玖])角", rest):
        value += Decimal(_ZH_DIGITS[j[1]]) / 10
    if f := re.search(r"([零壹贰叁肆伍陆柒捌玖])分", rest):
        value += Decimal(_ZH_DIGITS[f[1]]) / 100
    return money(value)
