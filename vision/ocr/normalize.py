"""Normalise what OCR and the VLM read: amounts to `Decimal`, dates to `datetime.date`,
currency symbols and names to ISO 4217 codes. No Django, no models; shared by the layout
extractor and the VLM layer so both sides of a comparison speak the same values."""

from __future__ import annotations

import functools
import re
import unicodedata
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

CENT = Decimal("0.01")

# Symbols and words that name a currency. "¥" is read as CNY: the Chinese invoices we target
# (增值税发票) use it; a Japanese invoice says 円/JPY next to it, and that word wins.
CURRENCY_WORDS = {
    "USD": "USD", "US$": "USD", "EUR": "EUR", "EURO": "EUR", "EUROS": "EUR", "GBP": "GBP",
    "CNY": "CNY", "RMB": "CNY", "JPY": "JPY", "CHF": "CHF", "SFR": "CHF", "CAD": "CAD", "C$": "CAD",
    "AUD": "AUD", "A$": "AUD", "NZD": "NZD", "HKD": "HKD", "HK$": "HKD", "SGD": "SGD", "S$": "SGD",
    "INR": "INR", "RS.": "INR", "SEK": "SEK", "DKK": "DKK", "NOK": "NOK", "ISK": "ISK", "PLN": "PLN",
    "ZŁ": "PLN", "CZK": "CZK", "KČ": "CZK", "HUF": "HUF", "RON": "RON", "BGN": "BGN", "TRY": "TRY",
    "BRL": "BRL", "R$": "BRL", "MXN": "MXN", "ZAR": "ZAR", "KRW": "KRW", "AED": "AED",
    "人民币": "CNY", "元": "CNY", "円": "JPY",
}  # fmt: skip
CURRENCY_SYMBOLS = {
    "$": "USD",
    "€": "EUR",
    "£": "GBP",
    "¥": "CNY",
    "￥": "CNY",
    "₹": "INR",
    "₩": "KRW",
    "₺": "TRY",
}

_FULLWIDTH = str.maketrans("０１２３４５６７８９，．：／－（）", "0123456789,.:/-()")
# A number inside running text: digits with ',', '.' or "'" between them. A space is not a
# separator here: OCR joins neighbouring table cells with one ("2 125.00" is qty 2, price 125).
# Not after a letter, '-' or '/': the digits of "INV-2024-0042" or "3/5" are not amounts.
_AMOUNT = re.compile(r"(?<![\w.,/\-])\d+(?:[.,']\d+)*")
_ENGLISH_MONTHS = [
    ("jan", "january"), ("feb", "february"), ("mar", "march"), ("apr", "april"),
    ("may",), ("jun", "june"), ("jul", "july"), ("aug", "august"),
    ("sep", "sept", "september"), ("oct", "october"), ("nov", "november"), ("dec", "december"),
]  # fmt: skip
# The languages whose month names dates may carry (CLDR's, through Babel): German, French, Dutch,
# Spanish, Italian, Portuguese, Polish, Swedish, Danish, Norwegian, Finnish, Czech.
MONTH_LOCALES = ("de", "fr", "nl", "es", "it", "pt", "pl", "sv", "da", "nb", "fi", "cs")


def _fold(text: str) -> str:
    """Lower case without diacritics: 'März' → 'marz', 'févr.' → 'fevr.'."""
    return "".join(c for c in unicodedata.normalize("NFKD", text.lower()) if not unicodedata.combining(c))


@functools.cache
def _months() -> dict[str, int]:
    """Folded month name → month number, English first, then each of MONTH_LOCALES in its wide,
    abbreviated and stand-alone forms. A name two languages give different months is dropped."""
    from babel.dates import get_month_names

    names: dict[str, int] = {}
    clashes: set[str] = set()
    for month, words in enumerate(_ENGLISH_MONTHS, start=1):
        for word in words:
            names[word] = month
    for locale in MONTH_LOCALES:
        for width in ("wide", "abbreviated"):
            for context in ("format", "stand-alone"):
                for month, name in get_month_names(width, context=context, locale=locale).items():
                    word = _fold(name).strip(".")
                    if len(word) < 3 or not word.isalpha():
                        continue
                    if names.setdefault(word, month) != month:
                        clashes.add(word)
    for word in clashes:
        del names[word]
    return names


@functools.cache
def _month_pattern() -> str:
    return "|".join(re.escape(w) for w in sorted(_months(), key=len, reverse=True))


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
    raw = unify(str(text)).replace("\u00a0", " ").replace("\u202f", " ").replace("\u2009", " ").strip()
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


# A label's value may group thousands with a space ("1 250,00 €", French, Polish, Swedish; a no-break
# or thin space in a PDF's text): digits in groups of three after a space, and a decimal part.
_SPACED_AMOUNT = re.compile(
    r"(?<![\w.,/\-])\d{1,3}(?:[ \u00a0\u202f\u2009]\d{3})+[.,]\d{2}(?![\d.,])|" + _AMOUNT.pattern
)


def find_amounts(text: str, *, spaced: bool = False) -> list[tuple[Decimal, int, int]]:
    """Every number in `text` with its character span, left to right. With `spaced`, thousands
    grouped by spaces are one number (for a label's value; a table row's cells may be joined by
    one space, "2 125.00" is then a quantity and a price)."""
    text = unify(text)
    found = []
    for match in (_SPACED_AMOUNT if spaced else _AMOUNT).finditer(text):
        value = parse_amount(match.group())
        if value is not None:
            found.append((value, match.start(), match.end()))
    return found


def money(value: Decimal | None) -> Decimal | None:
    return None if value is None else value.quantize(CENT, rounding=ROUND_HALF_UP)


def detect_currency(text: str) -> str | None:
    """ISO code named in `text` by a word (EUR, RMB, 人民币) or else a symbol ($, €, ¥)."""
    plain = unify(text)
    upper = plain.upper()
    for word, code in CURRENCY_WORDS.items():
        if re.fullmatch(r"[A-Z]{3}", word):
            # an ISO code is written in capitals, or beside a figure ("Eur 12"): "try" in a
            # sentence is no Turkish lira
            if re.search(rf"(?<![^\W\d_]){word}(?![^\W\d_])", plain) or re.search(
                rf"(?<![^\W\d_]){word}\s?-?\d|\d\s?{word}(?![^\W\d_])", upper
            ):
                return code
        elif (
            re.search(rf"(?<![^\W\d_]){re.escape(word)}(?![^\W\d_])", upper)
            if word.isascii() or word[-1] in "ŁČ"
            else word in upper
        ):
            return code
    if re.search(r"(?<![^\W\d_])RS\.?\s?-?(?=\d)", upper):  # "Rs 1939", "Rs.450": Indian rupees
        return "INR"
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
    return fixed if fixed != word and fixed.lower() in _months() else word


_ERAS = {"令和": 2018, "平成": 1988}  # Japanese era years: 令和6年 is 2024


def parse_date(text: str | None, *, dayfirst: bool = True) -> date | None:
    """Many spellings of a date → `date`.

    2024-03-05, 2024/3/5, 2024.03.05, 2024年3月5日, 令和6年3月5日, 20240305, 5 March 2024,
    March 5, 2024, 05-Mar-2024, 19. April 2014, 1er mars 2024, 5 de marzo de 2024, 5 maja 2024
    (month names of English and MONTH_LOCALES), 05/03/2024 (day first unless `dayfirst=False` or
    the first number exceeds 12).
    """
    if not text:
        return None
    text = unify(str(text)).strip()
    if m := re.search(r"(令和|平成)\s*(\d{1,2}|元)\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日?", text):
        year = _ERAS[m[1]] + (1 if m[2] == "元" else int(m[2]))
        return _valid(year, int(m[3]), int(m[4]))
    if m := re.search(r"(\d{4})\s*年\s*(\d{1,2})\s*月\s*(\d{1,2})\s*日?", text):
        return _valid(int(m[1]), int(m[2]), int(m[3]))
    if m := re.search(r"(?<!\d)(\d{4})[-/.](\d{1,2})[-/.](\d{1,2})(?!\d)", text):
        return _valid(int(m[1]), int(m[2]), int(m[3]))
    if m := re.search(r"(?<!\d)(\d{1,2})\s?[-/.]\s?(\d{1,2})\s?[-/.]\s?(\d{2}|\d{4})(?!\d)", text):
        first, second, year = int(m[1]), int(m[2]), int(m[3])
        if first > 12 or (dayfirst and second <= 12):
            return _valid(year, second, first)
        return _valid(year, first, second)
    text = _MONTH_TOKEN.sub(_month_letters, text)
    folded = _fold(text)  # month names compared without case and diacritics
    months = _month_pattern()
    if m := re.search(
        rf"(?<!\d)(\d{{1,2}})(?:st|nd|rd|th|er|e|o|º|°)?\.?[\s\-/.]*(?:de\s+)?({months})(?![^\W\d_])\.?[\s\-/.,]*(?:de\s+)?(\d{{4}})",
        folded,
    ):
        return _valid(int(m[3]), _months()[m[2]], int(m[1]))
    if m := re.search(
        rf"(?<![^\W\d_])({months})(?![^\W\d_])\.?\s*(\d{{1,2}})(?:st|nd|rd|th)?,?\s*(\d{{4}})", folded
    ):
        return _valid(int(m[3]), _months()[m[1]], int(m[2]))
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
